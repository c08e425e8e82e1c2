"""``run_all``'s sparse form (few frames mapped) gives the dense form's verdicts.

Random small worlds (PTE-mapped mTHP and order-0 pages, PMD-mapped THPs,
shared memory, pins, a fork), with random memmap corruption; the validators
run with ``Validators.SPARSE`` on and off must raise the same violation with
the same message, or both pass.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import contpte
from contpte.check.validators import Validators
from contpte.mm.memmap import PG_anon_exclusive


def _outcome(
    m: contpte.Machine, sparse: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, str | None] | None:
    monkeypatch.setattr(Validators, "SPARSE", sparse)
    try:
        m.validators.run_all()
    except Exception as e:  # the exact outcome is compared
        return (type(e).__name__, str(e), getattr(e, "rule", None))
    return None


@pytest.mark.parametrize("seed", range(40))
def test_sparse_and_dense_agree(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    kind = rng.choice(["64K", "4K", "2M", "mix"])
    m = contpte.Machine(
        arch=rng.choice(["arm64", "generic"]),
        memory="64M",
        mthp={"64K": "always"} if kind in ("64K", "mix") else {},
        thp="always" if kind in ("2M", "mix") else "never",
        check=False,
    )
    m.validators = Validators(m)
    p = m.spawn()
    a = p.mmap(8 << 20)
    a = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.write(a, rng.choice([2 << 20, 4 << 20, 64 << 10, 3 * 4096]), 1)
    if rng.random() < 0.5:
        s = p.mmap(1 << 20, flags="shared|anonymous")
        p.write(s, 64 << 10, 3)
    if rng.random() < 0.8:
        p.fork()
        if rng.random() < 0.5:
            p.write(a, 4096, 2)
    mem = m.kernel.memmap
    nr = mem.nr_frames
    used = np.flatnonzero(mem.head >= 0)
    for _ in range(rng.randint(0, 3)):
        what = rng.choice(
            ["mapcount", "entire", "refcount", "refneg", "head", "flags", "free", "large", "zero"]
        )
        j = int(rng.choice(list(used))) if len(used) and rng.random() < 0.8 else rng.randrange(nr)
        if what == "mapcount":
            mem.mapcount[j] += rng.choice([-1, 1, 2])
        elif what == "entire":
            mem.entire_mapcount[j] += rng.choice([-1, 1])
        elif what == "refcount":
            mem.refcount[j] = rng.choice([0, 1, 2])
        elif what == "refneg":
            mem.refcount[j] = -1
        elif what == "head":
            mem.head[j] = -1
        elif what == "flags":
            mem.flags[j] ^= PG_anon_exclusive
        elif what == "free":
            mem.mapcount[rng.randrange(nr)] = 1
        elif what == "large":
            mem.entire_mapcount[rng.randrange(nr)] = 1
        else:
            mem.mapcount[m.kernel.zero_pfn] = 5
    assert _outcome(m, True, monkeypatch) == _outcome(m, False, monkeypatch)
