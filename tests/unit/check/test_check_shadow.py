"""The validators' mapping shadow stays exact, updated from the store log alone.

``MapShadow`` counts every frame's mappings (and each mm's RSS) from the
table diffs of each syscall; after any sequence of kernel-like operations
its state must equal a recount from scratch (``dense``), and the kernel's
bookkeeping must agree with it (no violation on a correct world).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from world import PAGE, Proc, World, outcome

from contpte.check.incremental import MapShadow

BASE = 0x4000_0000
SIZE = 4 << 20


def shadow_state(w: World) -> tuple[Any, ...]:
    """The shadow's counts, normalised (overflows folded in, live mms only)."""
    sh: MapShadow = w.v.shadow
    maps = np.asarray(sh.maps).astype(np.int64)
    for p, c in sh.big_maps.items():
        maps[p] = c
    meta = np.asarray(sh.meta).astype(np.int64)
    cls = np.where(maps > 0, meta & 3, 0)
    wm = (meta >> 2) & 3
    for p, c in sh.big_w.items():
        wm[p] = c
    live = {mm.space.asid for mm in w.k.mms}
    rss = {a: list(ms.rss) for a, ms in sh.mms.items() if a in live and any(ms.rss)}
    return maps, cls, wm, dict(sh.pmd_maps), rss


def assert_exact(w: World) -> None:
    before = shadow_state(w)
    got = w.v.shadow.dense(w.v.pins)
    assert got is None, got
    after = shadow_state(w)
    for name, x, y in zip(("maps", "class", "wmaps", "pmd_maps", "rss"), before, after, strict=True):
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), (name, np.flatnonzero(x != y)[:8])
        else:
            assert x == y, name


def random_op(w: World, procs: list[Proc], rng: random.Random) -> None:
    q = rng.choice(procs)
    a = w.arch
    what = rng.choice(["fault", "fault", "fork", "cow", "zap", "exit", "pin", "young", "read", "write"])
    page = rng.randrange(SIZE // PAGE)
    va = BASE + page * PAGE
    pte = w.pte(q, va)
    if what == "fault":
        order = rng.choice([0, 2, 4])
        va0 = BASE + (page & ~((1 << order) - 1)) * PAGE
        if all(not w.pte(q, va0 + i * PAGE) for i in range(1 << order)):
            w.fault_anon(q, va0, order, value=rng.randrange(1, 1 << 20))
            w.syscall(q)
    elif what == "fork" and len(procs) < 6:
        procs.append(w.fork(q))
    elif what == "cow" and pte and not a.pte_write(pte):
        w.cow(q, va, rng.randrange(1, 1 << 20))
        w.syscall(q)
    elif what == "zap":
        w.zap(q, va, rng.choice([1, 3, 16]) if page + 16 < SIZE // PAGE else 1)
        w.syscall(q)
    elif what == "exit" and q is not procs[0]:
        w.exit(q)
        procs.remove(q)
    elif what == "pin" and pte and a.pte_write(pte):
        w.pin(q, va)
    elif what == "young" and pte:
        w.pool.hw_store(q.mm.space.pte_ptr(va), a.pte_mkold(pte) if a.pte_young(pte) else a.pte_mkyoung(pte))
        w.syscall(q)
    elif what == "read" and pte:
        w.read(q, va)
    elif what == "write" and pte and a.pte_write(pte):
        w.write(q, va, rng.randrange(1, 1 << 20))


def world(arch: str) -> tuple[World, list[Proc]]:
    w = World(arch)
    p = w.spawn()
    w.mmap(p, BASE, SIZE)
    return w, [p]


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("seed", range(12))
def test_shadow_equals_a_recount_after_every_syscall(arch: str, seed: int) -> None:
    rng = random.Random(seed)
    w, procs = world(arch)
    for _ in range(40):
        random_op(w, procs, rng)
        assert_exact(w)


def test_a_clean_world_never_runs_the_dense_check() -> None:
    rng = random.Random(7)
    w, procs = world("arm64")
    for _ in range(300):
        random_op(w, procs, rng)
    assert w.v.shadow.ndense == 0
    assert w.counters.snapshot().get("check.runs", 0) > 100


def test_counts_past_a_byte() -> None:
    """A page mapped by 300 processes: the u8 count overflows into ``big_maps``."""
    w, (p,) = world("generic")
    f = w.fault_anon(p, BASE, 0, value=1)
    w.syscall(p)
    kids = [w.fork(p) for _ in range(300)]
    sh = w.v.shadow
    assert sh.frame_maps(f) == 301 and f in sh.big_maps
    assert_exact(w)
    for c in kids:
        w.exit(c)
    assert sh.frame_maps(f) == 1 and not sh.big_maps
    assert_exact(w)


def test_access_flag_updates_queue_nothing() -> None:
    """A walker Access-flag update is logged, changes no count, queues no folio."""
    w, (p,) = world("arm64")
    w.fault_anon(p, BASE, 4, value=1)
    w.syscall(p)
    a = w.arch
    ptep = p.mm.space.pte_ptr(BASE + 3 * PAGE)
    w.pool.hw_store(ptep, a.pte_mkold(w.pool.peek(ptep)))
    assert len(w.pool.log) == 1
    w.v.shadow.sync()
    assert w.v.shadow.nqueue == 0 and not w.pool.log


def test_write_protect_keeps_maps_and_drops_writable() -> None:
    w, (p,) = world("arm64")
    f = w.fault_anon(p, BASE, 4, value=1)
    w.syscall(p)
    sh = w.v.shadow
    assert sh.frame_wmaps(f + 5) == 1 and sh.frame_class(f + 5) == 1
    c = w.fork(p)
    assert sh.frame_maps(f + 5) == 2 and sh.frame_wmaps(f + 5) == 0
    w.exit(c)
    assert sh.frame_maps(f + 5) == 1
    assert_exact(w)


def test_pmd_maps() -> None:
    w, (p,) = world("arm64")
    f = w.map_pmd(p, BASE)
    w.syscall(p)
    sh = w.v.shadow
    assert sh.pmd_maps == {f: 1} and list(sh.mms[p.mm.space.asid].rss) == [0, 512, 0, 0]
    assert_exact(w)
    w.k.memmap.entire_mapcount[f] = 2  # behind the model's back
    p.mm.space.pmd_store(
        BASE >> 21, p.mm.space.pmd_peek(BASE >> 21)
    )  # the PMD rewritten as it was: not a change
    w.syscall(p)
    w.k.memmap.entire_mapcount[f] = 1
    w.syscall(p)


def test_a_table_freed_behind_the_models_back() -> None:
    """Unhooking a table without the rmap/RSS bookkeeping: its mappings leave the
    shadow (the store log has the old descriptors); the kernel's counts disagree."""
    w, (p,) = world("arm64")
    w.fault_anon(p, BASE, 4, value=1)
    w.syscall(p)
    p.mm.space.free_pte_table(BASE >> 21)
    got = outcome(lambda: w.syscall(p))
    assert got is not None and got[2] == "rss"  # the mm's counters come first
    assert got == outcome(w.v.run_all)
    p.mm.rss[1] = 0
    got = outcome(w.v.run_all)
    assert got is not None and got[1] == "[mapcount] pfn 0x10: mapcount 1 but 0 PTE(s) map it"


def test_touch_queues_a_folio_once() -> None:
    w, (p,) = world("arm64")
    f = w.fault_anon(p, BASE, 4, value=1)
    w.syscall(p)
    sh = w.v.shadow
    for i in range(16):
        sh.touch(f + i)
    assert sh.nqueue == 1 and int(sh.queue[0]) == f
    assert not sh.check()
    assert sh.nqueue == 0 and not np.asarray(sh.meta)[f : f + 16].any() & 0x20
