"""The check after a syscall gives the dense check's verdict on what the syscall touched.

``Validators.after_syscall`` compares only the frames, folios and mms a
syscall touched (the store log's table diffs, the rmap hook, pins) with the
shadow; on any suspect it runs the dense check (``run_all``), which decides
the verdict and words the message.  Here random worlds are built with the
validators on, then broken behind the model's back -- mem_map fields, PTEs
poked into the pool (logged, so touched), RSS counters -- and the verdict
after the next syscall must be exactly the dense one on the same state
whenever what was broken is in the touched set.  What no syscall touched is
found by ``run_all`` and by the first syscall that touches it.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from test_check_shadow import BASE, SIZE, random_op, world
from world import PAGE, Proc, World, outcome

from contpte.mm.memmap import PG_anon, PG_anon_exclusive

PLANTS = [
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
    "zero",
    "pte_pfn",
    "pte_clear",
    "pte_write",
    "pte_free",
    "pte_protnone",
    "rss",
    "pin",
    "none",
]


def _mapped(w: World, procs: list[Proc]) -> list[tuple[Proc, int, int]]:
    """(process, va, pfn) of every present PTE."""
    a = w.arch
    out = []
    for q in procs:
        for va in range(BASE, BASE + SIZE, PAGE):
            pte = w.pte(q, va)
            if pte and a.pte_present(pte):
                out.append((q, va, a.pte_pfn(pte)))
    return out


def plant(w: World, procs: list[Proc], what: str, rng: random.Random) -> int:
    """Break ``what`` behind the model's back; the frame to count as touched (-1: none)."""
    k = w.k
    mem = k.memmap
    a = w.arch
    maps = _mapped(w, procs)
    if not maps:
        return -1
    q, va, j = rng.choice(maps)
    h = int(mem.head[j])
    ptep = q.mm.space.pte_ptr(va)
    pte = w.pool.peek(ptep)
    if what == "mapcount":
        mem.mapcount[j] += rng.choice([-1, 1, 2])
    elif what == "entire":
        mem.entire_mapcount[h] += rng.choice([-1, 1])
    elif what == "refcount":
        mem.refcount[h] = rng.choice([0, 1, 2])
    elif what == "refneg":
        mem.refcount[h] = -1
    elif what == "head":
        mem.head[j] = -1
    elif what == "headother":
        used = np.flatnonzero(np.asarray(mem.head) >= 0)
        mem.head[j] = int(rng.choice(list(used)))
    elif what == "excl":
        mem.flags[j] ^= PG_anon_exclusive
    elif what == "anon":
        mem.flags[h] ^= PG_anon
    elif what == "mapping":
        mem.mapping[h] = rng.choice([-1, 0, 1, 5])
    elif what == "free":
        mem.mapcount[rng.randrange(mem.nr_frames)] = 1
        return -1
    elif what == "zero":
        mem.mapcount[k.zero_pfn] = 5
        return k.zero_pfn
    elif what == "pte_pfn":
        w.pool.poke(ptep, a.pfn_pte(a.pte_pfn(pte) + rng.choice([1, -1, 16]), a.pte_pgprot(pte)))
    elif what == "pte_clear":
        w.pool.poke(ptep, 0)
    elif what == "pte_write":
        w.pool.poke(ptep, a.pte_mkwrite(pte))
    elif what == "pte_free":
        free = np.flatnonzero(np.asarray(mem.head) < 0)
        w.pool.poke(ptep, a.pfn_pte(int(free[-1]), a.pte_pgprot(pte)))
    elif what == "pte_protnone":
        w.pool.poke(ptep, a.pte_modify(pte, a.vm_get_page_prot(0)))
    elif what == "rss":
        rng.choice(procs).mm.rss[rng.choice([0, 1, 3])] += rng.choice([-1, 1])
        return -1
    elif what == "pin":
        w.v.pins.setdefault(q.pid, []).append(j)  # a pin the kernel does not know of
        w.v.shadow.pin(j, 1)
    return j


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("seed", range(40))
def test_touched_plants_get_the_dense_verdict(arch: str, seed: int) -> None:
    rng = random.Random(seed)
    w, procs = world(arch)
    for _ in range(rng.randint(4, 30)):
        random_op(w, procs, rng)
    assert outcome(lambda: w.syscall(procs[0])) is None
    for _ in range(rng.randint(1, 3)):
        j = plant(w, procs, rng.choice(PLANTS), rng)
        if j >= 0:
            w.v.shadow.touch(j)  # what the syscall touched
    got = outcome(lambda: w.syscall(procs[0]))
    dense = outcome(w.v.run_all)
    assert got == dense
    assert outcome(w.v.run_all) == dense  # and again, from the recounted shadow


def _zap(w: World, c: Proc, va: int) -> None:
    w.zap(c, va)
    w.syscall(c)


def _cow(w: World, c: Proc, va: int) -> None:
    w.cow(c, va, 7)
    w.syscall(c)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("what", ["mapcount", "refcount", "entire", "pin"])
@pytest.mark.parametrize("op", ["zap", "fork", "cow"])
def test_the_syscall_that_touches_a_plant_reports_it(what: str, op: str, seed: int) -> None:
    """Broken behind the model's back, found by the first syscall that touches the frame."""
    rng = random.Random(seed)
    w, procs = world("arm64")
    p = procs[0]
    for i in range(8):
        w.fault_anon(p, BASE + 16 * i * PAGE, 4, value=i + 1)
    w.syscall(p)
    c = w.fork(p)
    w.cow(c, BASE + 16 * PAGE, 99)
    w.syscall(c)
    page = rng.randrange(2 * 16, 8 * 16)  # not the folio the child copied a page of
    va = BASE + page * PAGE
    pfn = w.arch.pte_pfn(w.pte(p, va))
    mem = w.k.memmap
    h = int(mem.head[pfn])
    if what == "mapcount":
        mem.mapcount[pfn] += 1
    elif what == "refcount":
        mem.refcount[h] = 1
    elif what == "entire":
        mem.entire_mapcount[h] = 1
    else:
        w.v.pins.setdefault(p.pid, []).append(pfn)
        w.v.shadow.pin(pfn, 1)
        w.v.shadow.sync()
        w.v.shadow.check()
    if what != "pin":
        assert outcome(lambda: w.syscall(p)) is None  # not touched yet
    dense = outcome(w.v.run_all)
    assert dense is not None
    if op == "zap":
        # another page of the folio: the whole folio is checked
        got = outcome(lambda: _zap(w, c, BASE + ((page & ~15) + (page + 1) % 16) * PAGE))
    elif op == "fork":
        got = outcome(lambda: w.fork(p))
    else:
        got = outcome(lambda: _cow(w, c, va))
    assert got is not None, dense
    if "right after an rmap update" in got[1]:
        assert got[2] == "refcount>=mapcount"  # the rmap hook, in the middle of the syscall
        return
    assert got == outcome(w.v.run_all)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("what", ["pte_pfn", "pte_clear", "pte_write", "pte_free", "pte_protnone"])
def test_a_poked_pte_is_seen_by_the_next_syscall(arch: str, what: str, seed: int) -> None:
    """Every descriptor write lands in the store log: the next syscall, whatever it
    is, sees it, with the dense verdict."""
    rng = random.Random(seed)
    w, procs = world(arch)
    for _ in range(rng.randint(4, 30)):
        random_op(w, procs, rng)
    if plant(w, procs, what, rng) < 0:
        return
    got = outcome(lambda: w.syscall(procs[0]))
    assert got == outcome(w.v.run_all)
    if what == "pte_protnone":
        assert got is None  # PROT_NONE keeps the page mapped: nothing to report
