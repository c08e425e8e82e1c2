"""Swap-out and swap-in of large folios (mm/vmscan.c, mm/rmap.c, mm/swapfile.c, mm/memory.c).

The expected counts follow Linux v6.12:

- MADV_PAGEOUT (``reclaim_pages`` -> ``shrink_folio_list``, references
  ignored) gives a 64K anon folio 16 contiguous, aligned slots
  (``add_to_swap`` -> ``get_swap_pages(order 4)``), replaces its 16 PTEs
  by swap PTEs one at a time (``try_to_unmap_one``: on arm64 the first
  ``ptep_clear_flush`` of the folded block unfolds it), writes it
  (``swap_writepage``: ``swpout`` 1 at 64kB, ``pswpout`` 16) and frees it;
- a fault on one of the swap PTEs on the synchronous (zRAM-like) device,
  swap count 1: ``alloc_swap_folio`` allocates a 64K folio when 64K is
  enabled and the 16 PTEs are contiguous swap entries, reads it
  (``pswpin`` 16), maps all 16 PTEs with one ``set_ptes`` (folded again
  on arm64), writable and exclusive;
- fork copies swap PTEs one by one (``copy_nonpresent_pte``: swap count
  2 per slot, the parent's entries lose their exclusive bit); a shared
  entry is swapped in through the swap cache, order 0
  (``swapin_readahead``); zap frees swap PTEs in batches
  (``free_swap_and_cache_nr`` of a ``swap_pte_batch``).
"""

from __future__ import annotations

import numpy as np
import pytest

import contpte
from contpte.mm.swapfile import SWAP_HAS_CACHE

K = 1024
ARCHES = ("arm64", "generic")


def _machine(arch: str, kernel: str = "6.12", swap: str = "16M", **kw: object) -> contpte.Machine:
    mthp = kw.pop("mthp", {"64K": "always"})
    return contpte.Machine(arch=arch, kernel=kernel, memory="64M", mthp=mthp, swap=swap, check=True, **kw)


def _swapped_64k(arch: str, kernel: str = "6.12", **kw: object) -> tuple[contpte.Machine, object, int]:
    m = _machine(arch, kernel, **kw)
    p = m.spawn()
    a = p.mmap(256 * K)
    p.write(a, 64 * K, 7)
    p.madvise(a, 64 * K, "pageout")
    return m, p, a


def _counts(m: contpte.Machine, offsets: np.ndarray) -> list[int]:
    smap = np.asarray(m.swap.swap_map)
    return [int(smap[o]) for o in offsets]


@pytest.mark.parametrize("arch", ARCHES)
def test_pageout_swaps_a_64k_folio_out_whole(arch: str) -> None:
    m = _machine(arch)
    p = m.spawn()
    a = p.mmap(256 * K)
    p.write(a, 64 * K, 7)
    with m.measure() as d:
        p.madvise(a, 64 * K, "pageout")
    assert d["mthp.64kB.swpout"] == 1 and d["mthp.64kB.swpout_fallback"] == 0
    assert d["pswpout"] == 16 and d["pgsteal"] == 16
    # arm64: the folded block is unfolded by the first per-PTE clear.
    assert d["contpte.unfold"] == (1 if arch == "arm64" else 0)
    pm = p.pagemap(a, 64 * K)
    assert pm["swap"].all() and not pm["present"].any()
    offs = pm["swap_offset"]
    assert offs[0] % 16 == 0 and offs.tolist() == list(range(offs[0], offs[0] + 16))
    assert _counts(m, offs) == [1] * 16  # one swap PTE each, no swap cache left
    assert m.swap.inuse_pages == 16
    assert list(p.mm.rss) == [0, 0, 16, 0]  # MM_SWAPENTS
    assert m.mthp_stats()["64kB"]["swpout"] == 1
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_swapin_of_64k_on_a_sync_device_maps_a_64k_folio(arch: str) -> None:
    m, p, a = _swapped_64k(arch)
    with m.measure() as d:
        assert p.read(a + 20 * K, 4 * K).tolist() == [7]
    assert d["pgmajfault"] == 1 and d["pswpin"] == 16 and d["mthp.64kB.swpin"] == 1
    assert d["pgfault"] == 1
    pm = p.pagemap(a, 64 * K)
    assert pm["present"].all() and (pm["order"] == 4).all() and not pm["swap"].any()
    assert pm["writable"].all() and pm["exclusive"].all()
    # arm64: set_ptes() of the whole aligned block writes it contiguous
    # (contpte_set_ptes(): no unfold-refold, no try-fold needed).
    assert pm["cont"].all() == (arch == "arm64")
    assert d["contpte.unfold"] == 0
    assert m.swap.inuse_pages == 0 and list(p.mm.rss) == [0, 16, 0, 0]
    assert p.read(a, 64 * K).tolist() == [7] * 16
    m.check()


def test_swpin_stat_files_by_version() -> None:
    # The per-size swpin files appeared in v6.13 (MTHP_STAT_FILES).
    for kernel, has in (("6.12", False), ("7.2", True)):
        m, p, a = _swapped_64k("arm64", kernel)
        p.read(a, 4 * K)
        st = m.mthp_stats()["64kB"]
        assert st["swpout"] == 1
        assert ("swpin" in st) == has
        if has:
            assert st["swpin"] == 1 and st["swpin_fallback"] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_swapin_with_64k_disabled_is_order_0(arch: str) -> None:
    m = _machine(arch, mthp={"64K": "madvise"})
    p = m.spawn()
    a = p.mmap(256 * K)
    p.madvise(a, 256 * K, "hugepage")
    p.write(a, 64 * K, 7)
    assert (p.pagemap(a, 64 * K)["order"] == 4).all()
    p.madvise(a, 64 * K, "pageout")
    p.madvise(a, 256 * K, "nohugepage")
    with m.measure() as d:
        p.read(a, 4 * K)
    assert d["pswpin"] == 1 and d["mthp.64kB.swpin"] == 0
    pm = p.pagemap(a, 64 * K)
    assert pm["present"].tolist() == [True] + [False] * 15
    assert pm["order"][0] == 0 and pm["swap"][1:].all()
    assert m.swap.inuse_pages == 15
    assert p.read(a, 64 * K).tolist() == [7] * 16
    assert m.swap.inuse_pages == 0
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_swap_write_fault_maps_writable_dirty(arch: str) -> None:
    m, p, a = _swapped_64k(arch)
    with m.measure() as d:
        p.write(a + 4 * K, 4 * K, 9)
    assert d["pswpin"] == 16 and d["pgfault"] == 1 and d["fault.wp"] == 0
    pm = p.pagemap(a, 64 * K)
    assert pm["writable"].all() and pm["dirty"][1] and pm["exclusive"].all()
    assert p.read(a, 64 * K).tolist() == [7, 9] + [7] * 14
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_fork_of_swapped_range_shares_the_slots(arch: str) -> None:
    m, p, a = _swapped_64k(arch)
    offs = p.pagemap(a, 64 * K)["swap_offset"]
    with m.measure() as d:
        c = p.fork()
    assert d["swap.ptes_copied"] == 16
    assert _counts(m, offs) == [2] * 16
    cm = c.pagemap(a, 64 * K)
    assert cm["swap"].all() and (cm["swap_offset"] == offs).all()
    assert list(c.mm.rss) == [0, 0, 16, 0] and list(p.mm.rss) == [0, 0, 16, 0]
    # The parent's swap PTEs are not exclusive any more (nor the child's).
    for proc in (p, c):
        for i in range(16):
            pte = m.arch.pool.peek(proc.mm.space.pte_ptr(a + i * 4 * K))
            assert not m.arch.pte_swp_exclusive(pte)
    m.check()
    # A shared entry: swapin_readahead() reads one page into the swap cache.
    with m.measure() as d:
        assert p.read(a, 4 * K).tolist() == [7]
    assert d["pswpin"] == 1 and d["swap.cache_hit"] == 0 and d["mthp.64kB.swpin"] == 0
    pm = p.pagemap(a, 4 * K)
    assert pm["order"][0] == 0 and not pm["writable"][0]  # not PageAnonExclusive: read-only
    assert _counts(m, offs[:1]) == [1 | SWAP_HAS_CACHE]
    # The child finds it in the swap cache.
    with m.measure() as d:
        assert c.read(a, 4 * K).tolist() == [7]
    assert d["pswpin"] == 0 and d["swap.cache_hit"] == 1
    assert _counts(m, offs[:1]) == [SWAP_HAS_CACHE]
    m.check()
    # A write copies (two mappings and the cache hold the page).
    c.write(a, 4 * K, 3)
    assert p.read(a, 64 * K).tolist() == [7] * 16
    assert c.read(a, 64 * K).tolist() == [3] + [7] * 15
    m.check()
    c.exit()
    p.exit()
    assert m.swap.inuse_pages == 0
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_munmap_frees_the_slots_in_one_batch(arch: str) -> None:
    m, p, a = _swapped_64k(arch)
    c = p.fork()
    offs = p.pagemap(a, 64 * K)["swap_offset"]
    with m.measure() as d:
        c.munmap(a, 64 * K)
    assert d["swap.ptes_zapped"] == 16
    assert _counts(m, offs) == [1] * 16 and m.swap.inuse_pages == 16
    with m.measure() as d:
        p.munmap(a, 64 * K)
    assert d["swap.ptes_zapped"] == 16
    assert m.swap.inuse_pages == 0 and list(p.mm.rss) == [0, 0, 0, 0]
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_exit_frees_every_slot(arch: str) -> None:
    m, p, a = _swapped_64k(arch)
    c = p.fork()
    c.read(a, 4 * K)  # one page in the swap cache, mapped by the child
    p.exit()
    c.exit()
    assert m.swap.inuse_pages == 0
    assert not np.asarray(m.swap.swap_map)[1:].any()
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_mprotect_keeps_and_mremap_moves_swap_ptes(arch: str) -> None:
    m, p, a = _swapped_64k(arch)
    p.mprotect(a, 64 * K, "r")
    assert p.pagemap(a, 64 * K)["swap"].all()
    assert p.read(a, 64 * K).tolist() == [7] * 16
    assert not p.pagemap(a, 64 * K)["writable"].any()
    p.mprotect(a, 64 * K, "rw")
    p.madvise(a, 64 * K, "pageout")
    b = p.mremap(a, 64 * K, 64 * K, "maymove|fixed", new_addr=a + 1024 * K)
    assert p.pagemap(b, 64 * K)["swap"].all()
    assert p.read(b, 64 * K).tolist() == [7] * 16
    assert m.swap.inuse_pages == 0
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_no_contiguous_slots_splits_the_folio(arch: str) -> None:
    # Two clusters of 512 slots: cluster 0 holds the header (an order-0
    # cluster), cluster 1 takes 32 64K folios; the 33rd finds no cluster
    # for order 4 and is split, its pages swapped out one by one.
    m = _machine(arch, swap="4M")
    p = m.spawn()
    a = p.mmap(33 * 64 * K)
    p.write(a, 33 * 64 * K, 5)
    with m.measure() as d:
        p.madvise(a, 33 * 64 * K, "pageout")
    assert d["mthp.64kB.swpout"] == 32 and d["mthp.64kB.swpout_fallback"] == 1
    assert d["mthp.64kB.split"] == 1 and d["pswpout"] == 33 * 16
    assert m.swap.inuse_pages == 33 * 16
    tail = p.pagemap(a + 32 * 64 * K, 64 * K)["swap_offset"]
    assert (tail < 512).all()  # in cluster 0
    assert p.read(a, 33 * 64 * K).tolist() == [5] * (33 * 16)
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_madv_free_of_swapped_pages_drops_them(arch: str) -> None:
    m, p, a = _swapped_64k(arch)
    p.madvise(a, 64 * K, "free")
    assert m.swap.inuse_pages == 0 and list(p.mm.rss) == [0, 0, 0, 0]
    assert p.read(a, 64 * K).tolist() == [0] * 16
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_zero_filled_folio_goes_to_the_zeromap(arch: str) -> None:
    m = _machine(arch)
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 0)
    with m.measure() as d:
        p.madvise(a, 64 * K, "pageout")
    assert d["swpout_zero"] == 16 and d["pswpout"] == 0 and d["mthp.64kB.swpout"] == 0
    with m.measure() as d:
        assert p.read(a, 64 * K).tolist() == [0] * 16
    assert d["swpin_zero"] == 16 and d["pswpin"] == 0 and d["mthp.64kB.swpin"] == 0
    assert (p.pagemap(a, 64 * K)["order"] == 4).all()
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_reclaim_swaps_out_what_was_not_used_again(arch: str) -> None:
    m = _machine(arch)
    p = m.spawn()
    a = p.mmap(128 * K)
    p.write(a, 128 * K, 4)
    # First pass: both folios were just written (young PTEs): kept, made old.
    assert m.reclaim() == 0
    p.read(a, 4 * K)  # the first folio is used again
    assert m.reclaim() == 16  # the second one goes
    pm = p.pagemap(a, 128 * K)
    assert pm["present"][:16].all() and pm["swap"][16:].all()
    assert m.stats()["mthp.64kB.swpout"] == 1
    assert p.read(a, 128 * K).tolist() == [4] * 32
    m.check()


def test_reclaim_target_stops_early() -> None:
    m = _machine("arm64")
    p = m.spawn()
    a = p.mmap(256 * K)
    p.write(a, 256 * K, 4)
    p.madvise(a, 256 * K, "cold")  # old PTEs, no PG_referenced: reclaimable at once
    assert m.reclaim(target="64K") == 16
    assert m.stats()["mthp.64kB.swpout"] == 1
    assert m.reclaim() == 48
    m.check()


def test_reclaim_without_swap_keeps_anon() -> None:
    m = contpte.Machine(arch="arm64", memory="64M", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 4)
    p.madvise(a, 64 * K, "pageout")
    assert m.reclaim() == 0 and m.reclaim() == 0
    assert p.pagemap(a, 64 * K)["present"].all()
    m.check()


def test_swap_size_errors() -> None:
    with pytest.raises(contpte.ModelUsageError):
        contpte.Machine(memory="64M", swap="1M")  # less than two clusters
    with pytest.raises(contpte.ModelUsageError):
        contpte.Machine(memory="64M", swap="lots")


@pytest.mark.parametrize("arch", ARCHES)
def test_shared_swapin_by_version(arch: str) -> None:
    # 6.12 to 6.19: a shared entry (swap count 2 after fork) comes back one
    # page at a time through swapin_readahead().  7.1 (swapin_via_swapcache):
    # alloc_swap_folio() + swapin_folio() whatever the count: the whole 64K
    # folio, read-only, kept in the swap cache while the child's swap PTEs
    # refer to it; the child finds it there and the cache then lets it go.
    for kernel, order, pswpin in (("6.12", 0, 1), ("7.2", 4, 16)):
        m, p, a = _swapped_64k(arch, kernel)
        c = p.fork()
        with m.measure() as d:
            assert p.read(a, 4 * K).tolist() == [7]
        assert d["pswpin"] == pswpin and d["mthp.64kB.swpin"] == (1 if order else 0)
        pm = p.pagemap(a, 64 * K)
        assert pm["order"][0] == order and not pm["writable"][0]
        assert pm["present"].all() == bool(order)
        assert m.swap.inuse_pages == 16
        with m.measure() as d:
            assert c.read(a, 64 * K).tolist() == [7] * 16
        if order:
            assert d["swap.cache_hit"] == 1 and d["pswpin"] == 0
            assert (c.pagemap(a, 64 * K)["order"] == 4).all()
        else:
            assert d["swap.cache_hit"] == 1 and d["pswpin"] == 15
        assert p.read(a, 64 * K).tolist() == [7] * 16
        m.check()
        c.exit()
        p.exit()
        assert m.swap.inuse_pages == 0
        m.check()
