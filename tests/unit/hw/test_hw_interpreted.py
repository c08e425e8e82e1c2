"""The hardware layer runs interpreted too (``CONTPTE_INTERPRETED=1``), with the same results.

The compiled modules are the same ``.py`` files; a subprocess imports them
from source and runs a few operations of every kind (walks, HAFDBS updates,
contiguous entries, TLBI by code and by name, the rule checker catching a
violation); the result must equal the compiled run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import contpte.hw.hardware as H
    from contpte.errors import InvariantViolation
    from contpte.hw.format import WS_CLEAN
    from contpte.hw.tlbi import TLBI_VALE1IS, DSB_ISH

    hw = H.Hardware(4096, seed=3)
    s = hw.new_space(1, "p")
    pool, fmt = hw.pool, hw.fmt
    slot = s.alloc_pte_table(0)
    base = slot << pool.shift
    for i in range(32):
        pool.store(base + i, fmt.mk_page(64 + i, cont=i >= 16, write=WS_CLEAN, af=False))
    hw.checker.ptl_release(s, slot)
    r1 = hw.access(0, s, 0, 32, True, 7)
    out = np.zeros(32, dtype=np.uint64)
    r2 = hw.access(1, s, 0, 32, False, None, out)
    hw.tlbi_op(TLBI_VALE1IS, 1, 0x3000, 3)
    hw.tlbi("VAE1IS", asid=1, va=0x4000)
    hw.dsb_op(DSB_ISH)
    for i in range(16, 32):
        pool.xchg(base + i, 0)
    rule = None
    try:
        pool.store(base + 16, fmt.mk_page(500))
    except InvariantViolation as e:
        rule = [e.rule, str(e)]
    print(json.dumps({
        "compiled": H.__file__.endswith(".py") is False,
        "r1": [r1[0], r1[1] is None],
        "r2": [r2[0], r2[1] is None],
        "out": out.tolist(),
        "tlbs": [[list(e.as_tuple()) for e in t] for t in hw.tlbs],
        "pool": [int(x) for x in np.asarray(pool.e)[base : base + 32]],
        "counters": hw.counters.snapshot(),
        "rule": rule,
    }))
    """
)


def run(interpreted: bool) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("CONTPTE_INTERPRETED", None)
    if interpreted:
        env["CONTPTE_INTERPRETED"] = "1"
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    out: dict[str, object] = json.loads(r.stdout)
    return out


def test_interpreted_equals_compiled() -> None:
    interp = run(True)
    comp = run(False)
    assert interp.pop("compiled") is False
    comp.pop("compiled")
    assert interp == comp
    assert interp["rule"] is not None and interp["rule"][0] == "bbm"  # type: ignore[index]
