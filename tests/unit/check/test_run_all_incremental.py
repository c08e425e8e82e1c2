"""``run_all``'s incremental proof gives the dense checks' verdicts.

``Validators.run_all`` keeps per-mm states between runs
(``check/incremental.py``) and runs the dense checks only when a state
says something may be wrong.  Here random workloads run with the checker
on (so states are kept after every syscall, every mm through the cached
path), then something is broken behind the model's back -- mem_map fields,
descriptors, RSS counters -- and the next ``run_all`` must raise exactly
what the dense checks raise on the same state, or pass where they pass.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import contpte
from contpte.check.incremental import Incremental, young_mask
from contpte.check.validators import Validators
from contpte.errors import OutOfMemory, SegmentationFault
from contpte.mm.memmap import PG_anon, PG_anon_exclusive

PAGE = 4096


@pytest.fixture(autouse=True)
def _every_mm_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Incremental, "SMALL", -1)


def _outcome(f: object) -> tuple[str, str, str | None] | None:
    try:
        f()  # type: ignore[operator]
    except Exception as e:  # the exact outcome is compared
        return (type(e).__name__, str(e), getattr(e, "rule", None))
    return None


def _world(rng: random.Random) -> tuple[contpte.Machine, list[contpte.Process]]:
    kind = rng.choice(["64K", "4K", "2M", "mix", "16K"])
    m = contpte.Machine(
        arch=rng.choice(["arm64", "generic"]),
        memory="64M",
        mthp={kind: "always"} if kind in ("64K", "16K") else ({"64K": "always"} if kind == "mix" else {}),
        thp="always" if kind in ("2M", "mix") else "never",
        check=True,
    )
    p = m.spawn()
    procs = [p]
    a = p.mmap(8 << 20)
    a = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.write(a, rng.choice([2 << 20, 4 << 20, 64 << 10, 3 * PAGE]), 1)
    regions = [(p, a, 4 << 20)]
    if rng.random() < 0.5:
        s = p.mmap(1 << 20, flags="shared|anonymous")
        p.write(s, 64 << 10, 3)
    for _ in range(rng.randint(1, 6)):
        q = rng.choice(procs)
        what = rng.choice(["fork", "write", "read", "munmap", "mprotect", "dontneed", "pin", "exit", "fault"])
        _, base, size = regions[0]
        off = rng.randrange(0, size // PAGE) * PAGE
        n = rng.choice([1, 3, 16, 64, 600]) * PAGE
        n = min(n, size - off)
        try:
            if what == "fork":
                procs.append(q.fork())
            elif what == "write":
                q.write(base + off, n, rng.randrange(1, 1 << 20))
            elif what == "read":
                q.read(base + off, n)
            elif what == "munmap":
                q.munmap(base + off, n)
            elif what == "mprotect":
                q.mprotect(base + off, n, rng.choice(["r", "rw", "none"]))
            elif what == "dontneed":
                q.madvise(base + off, n, "dontneed")
            elif what == "pin":
                q.pin(base + off, n)
            elif what == "fault":
                q.write(base + off, PAGE, 7)
            elif what == "exit" and q is not p:
                q.exit()
                procs.remove(q)
        except (OSError, contpte.ModelUsageError, SegmentationFault, OutOfMemory):
            pass
    return m, procs


def _plant(m: contpte.Machine, procs: list[contpte.Process], rng: random.Random) -> str:
    k = m.kernel
    mem = k.memmap
    nr = mem.nr_frames
    used = np.flatnonzero(mem.head >= 0)
    mapped = np.flatnonzero(mem.mapcount > 0)
    pool = mapped if len(mapped) and rng.random() < 0.7 else used
    j = int(rng.choice(list(pool))) if len(pool) else rng.randrange(nr)
    what = rng.choice(
        [
            "mapcount",
            "entire",
            "refcount",
            "refneg",
            "head",
            "headother",
            "excl",
            "anon",
            "mapping",
            "free",
            "large",
            "zero",
            "pte_pfn",
            "pte_clear",
            "pte_write",
            "pte_free",
            "rss",
            "none",
        ]
    )
    tables = [(q, t) for q in procs for t in q.mm.space.tables.values()]
    if what == "mapcount":
        mem.mapcount[j] += rng.choice([-1, 1, 2])
    elif what == "entire":
        mem.entire_mapcount[j] += rng.choice([-1, 1])
    elif what == "refcount":
        mem.refcount[int(mem.head[j]) if mem.head[j] >= 0 else j] = rng.choice([0, 1, 2])
    elif what == "refneg":
        mem.refcount[rng.randrange(nr)] = -1
    elif what == "head":
        mem.head[j] = -1
    elif what == "headother":
        mem.head[j] = int(rng.choice(list(used))) if len(used) else j
    elif what == "excl":
        mem.flags[j] ^= PG_anon_exclusive
    elif what == "anon":
        h = int(mem.head[j]) if mem.head[j] >= 0 else j
        mem.flags[h] ^= PG_anon
    elif what == "mapping":
        h = int(mem.head[j]) if mem.head[j] >= 0 else j
        mem.mapping[h] = rng.choice([-1, 0, 1, 5])
    elif what == "free":
        mem.mapcount[rng.randrange(nr)] = 1
    elif what == "large":
        mem.entire_mapcount[rng.randrange(nr)] = 1
    elif what == "zero":
        mem.mapcount[k.zero_pfn] = 5
    elif what.startswith("pte_") and tables:
        _, t = rng.choice(tables)
        nz = np.flatnonzero(t.entries)
        i = int(rng.choice(list(nz))) if len(nz) else rng.randrange(len(t.entries))
        e = int(t.entries[i])
        arch = k.arch
        if what == "pte_pfn" and e:
            e2 = arch.pfn_pte(arch.pte_pfn(e) + rng.choice([1, -1, 16]), 0) | (
                e & ~arch.pfn_pte(arch.pte_pfn(e), 0)
            )
            t.poke(i, e2 & ((1 << 64) - 1))
        elif what == "pte_clear":
            t.poke(i, 0)
        elif what == "pte_write" and e:
            t.poke(i, arch.pte_mkwrite(e))
        elif what == "pte_free":
            free = np.flatnonzero(mem.head < 0)
            if len(free):
                t.poke(i, arch.pfn_pte(int(free[0]), arch.vm_get_page_prot(0x3)))
    elif what == "rss":
        rng.choice(procs).mm.rss[rng.choice([0, 1, 3])] += rng.choice([-1, 1])
    return what


@pytest.mark.parametrize("seed", range(60))
def test_incremental_and_dense_agree(seed: int) -> None:
    rng = random.Random(seed)
    m, procs = _world(rng)
    v = m.validators
    assert v.INCREMENTAL
    # clean model: the proof goes through without the dense checks
    assert v._inc.run()
    for _ in range(rng.randint(1, 3)):
        _plant(m, procs, rng)
    dense = _outcome(v._run_all_dense)
    assert _outcome(v.run_all) == dense
    # and again, now that the states were brought up to date
    assert _outcome(v.run_all) == dense


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("size", ["4K", "64K", "2M"])
def test_clean_runs_take_the_incremental_proof(arch: str, size: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean fork and CoW write are proved without the dense checks."""
    m = contpte.Machine(
        arch=arch,
        memory="64M",
        mthp={"64K": "always"} if size == "64K" else {},
        thp="always" if size == "2M" else "never",
        check=True,
    )
    dense = []
    real = Validators._run_all_dense
    monkeypatch.setattr(Validators, "_run_all_dense", lambda self: (dense.append(1), real(self))[1])
    p = m.spawn()
    a = p.mmap(8 << 20)
    a = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.write(a, 4 << 20, 1)
    c = p.fork()
    c2 = p.fork()
    p.write(a + 5 * PAGE, PAGE, 2)
    c.write(a + 70 * PAGE, 3 * PAGE, 3)
    c2.exit()
    assert not dense


def test_second_fork_child_inherits_the_parents_state() -> None:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    a = p.mmap(4 << 20)
    p.write(a, 4 << 20, 1)
    p.fork()  # write-protects the parent
    inc = m.validators._inc
    pst = inc.states[id(p.mm)][1]
    c = p.fork()
    cst = inc.states[id(c.mm)][1]
    assert cst.maps is pst.maps and cst.fmaps is pst.fmaps
    m.check()


def test_fork_copy_violation_after_the_fast_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child table that differs from the parent's in more than the young bits
    goes through the per-entry ``fork-copy`` checks."""
    from contpte.mm import fork as fork_mod

    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    a = p.mmap(4 << 20)
    p.write(a, 4 << 20, 1)
    p.fork()
    real = fork_mod.dup_mmap

    def broken(mm: object, oldmm: object) -> int:
        ret = real(mm, oldmm)
        t = next(iter(mm.space.tables.values()))  # type: ignore[attr-defined]
        t.poke(5, 0)  # a page lost in the child
        return ret

    monkeypatch.setattr("contpte.system.process.dup_mmap", broken)
    with pytest.raises(contpte.InvariantViolation) as ei:
        p.fork()
    assert ei.value.rule == "fork-copy"


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_young_mask_is_the_access_flag(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="16M")
    a = m.arch
    y = young_mask(a)
    assert y and y == a.pte_mkyoung(0) ^ a.pte_mkold(a.pte_mkyoung(0))
    rng = np.random.default_rng(1)
    v = rng.integers(0, 2**63, 4096, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, 4096, dtype=np.uint64
    )
    w = v ^ np.uint64(y)
    dv, dw = a.ptes_decode(v), a.ptes_decode(w)
    for f in dv:
        if f != "young":
            assert np.array_equal(dv[f], dw[f]), f


@pytest.mark.parametrize("what", ["clear", "write", "hw_store", "free_table"])
def test_a_store_between_runs_is_caught(what: str) -> None:
    """Every descriptor write (a poke behind the model's back, a walker
    update, a table unhooked) lands in the store log: the next run sees it,
    with the dense verdict, and keeps no copy of the descriptors after."""
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"}, check=True)
    v = m.validators
    p = m.spawn()
    a = p.mmap(4 << 20)
    p.write(a, 4 << 20, 1)
    c = p.fork()
    m.check()
    space = c.mm.space
    assert space.log == [] and all(t.old is None for t in space.tables.values())
    key, t = next(iter(space.tables.items()))
    arch = m.kernel.arch
    e = int(t.entries[3])
    if what == "clear":
        t.poke(3, 0)
    elif what == "write":
        t.poke(3, arch.pte_mkwrite(e))
    elif what == "hw_store":
        t.hw_store(3, arch.pte_mkold(e) if arch.pte_young(e) else 0)
    else:
        space.free_pte_table(key)  # its pages unmapped without the rmap/RSS bookkeeping
    assert space.log == [t] and t.old is not None and int(t.old[3]) == e
    dense = _outcome(v._run_all_dense)
    assert _outcome(v.run_all) == dense
    if what == "hw_store" and arch.pte_young(e):
        assert dense is None  # only the Access flag: clean
    else:
        assert dense is not None
    assert space.log == [] and all(tt.old is None for tt in space.tables.values())
