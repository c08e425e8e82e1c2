#!/usr/bin/env python3
"""How much slower the core runs interpreted than compiled (docs/core.md).

    python benchmarks/interpreted.py [--size 64M]

Runs the same operations twice, each in a fresh interpreter: once on the
compiled core, once with ``CONTPTE_INTERPRETED=1`` (the same ``.py`` files,
interpreted).  Per backend (arm64, generic) and validator setting (off, on):
a private anonymous region of ``--size`` with 16K and 64K mTHP ``always``,
every page written once, then MADV_DONTNEED of one page in 37 (a fragmented
layout); then timed, each once: fork, the child's exit, mprotect of the
whole region to read-only, munmap of it.  Times are CPU time of the process
(``time.process_time``), so that other users of a shared machine weigh less
on them than on wall time; the table gives both runs and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

OPS = ("fork", "exit", "mprotect", "munmap")
CASES = [(arch, check) for arch in ("arm64", "generic") for check in (False, True)]


def measure(arch: str, check: bool, size: int) -> dict[str, float]:
    """Milliseconds of CPU time per operation, in this interpreter."""
    import contpte

    m = contpte.Machine(arch=arch, memory="1G", mthp={"16K": "always", "64K": "always"}, check=check)
    p = m.spawn()
    a = p.mmap(size, prot="rw", flags="private|anonymous")
    p.write(a, size, value=3)
    for i in range(0, size // 4096, 37):
        p.madvise(a + i * 4096, 4096, "dontneed")
    out: dict[str, float] = {}
    t = time.process_time()
    c = p.fork()
    out["fork"] = time.process_time() - t
    t = time.process_time()
    c.exit()
    out["exit"] = time.process_time() - t
    t = time.process_time()
    p.mprotect(a, size, "r")
    out["mprotect"] = time.process_time() - t
    t = time.process_time()
    p.munmap(a, size)
    out["munmap"] = time.process_time() - t
    p.exit()
    return {k: v * 1e3 for k, v in out.items()}


def worker(size: int) -> None:
    import contpte.mm.memory as memory

    res: dict[str, Any] = {"compiled": not memory.__file__.endswith(".py")}
    for arch, check in CASES:
        res[f"{arch}/{int(check)}"] = measure(arch, check, size)
    print(json.dumps(res))


def run(size: int, interpreted: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("CONTPTE_INTERPRETED", None)
    if interpreted:
        env["CONTPTE_INTERPRETED"] = "1"
    cmd = [sys.executable, __file__, "--worker", "--size", str(size)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def parse_size(s: str) -> int:
    units = {"K": 10, "M": 20, "G": 30}
    return int(s[:-1]) << units[s[-1].upper()] if s[-1].upper() in units else int(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="64M")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    if args.worker:
        worker(size)
        return 0
    comp = run(size, False)
    if not comp["compiled"]:
        print("the compiled core is not built: nothing to compare", file=sys.stderr)
        return 1
    interp = run(size, True)
    print(f"CPU ms per operation, {args.size} fragmented region; interpreted / compiled")
    print(f"{'backend':8} {'checks':6} " + " ".join(f"{op:>24}" for op in OPS))
    for arch, check in CASES:
        key = f"{arch}/{int(check)}"
        cells = []
        for op in OPS:
            c, i = comp[key][op], interp[key][op]
            cells.append(f"{i:8.1f} /{c:6.1f} = {i / c:4.0f}x")
        print(f"{arch:8} {'on' if check else 'off':6} " + " ".join(f"{x:>24}" for x in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
