"""Swap devices, swap slots, the swap cache and swap I/O.

Models: mm/swapfile.c (slot allocation by cluster, swap counts,
``swap_duplicate``, ``swap_free_nr``, ``put_swap_folio``,
``free_swap_and_cache_nr``, ``folio_free_swap``), mm/swap_state.c (the
swap cache: ``add_to_swap``, ``add_to_swap_cache``,
``delete_from_swap_cache``, ``swap_cache_get_folio``, ``free_swap_cache``,
``swapin_readahead``) and mm/page_io.c (``swap_writepage``,
``swap_read_folio``), Linux v6.12.

One swap device of type 0 (``Machine(swap="1G")``), zRAM-like by default:
``SWP_SYNCHRONOUS_IO | SWP_SOLIDSTATE``, so a write or read completes
before the call returns.  The device holds one u64 per slot (a model page
holds one value).  Slot 0 is the swap header (``SWAP_MAP_BAD``), so a swap
entry is never 0 (never ``pte_none``).

What the model keeps from the kernel and what it simplifies:

- ``swap_map``: one count per slot, with ``SWAP_HAS_CACHE`` while the swap
  cache holds (or a swap-in is about to hold) the slot, as v6.12 has it
  (the flag goes with the swap-table rework after 6.19: see
  docs/versions.md).  The count is held whole: the kernel's count
  continuation pages (``COUNT_CONTINUED`` above ``SWAP_MAP_MAX`` = 62) are
  not modelled, the counts are the same.
- Clusters of ``SWAPFILE_CLUSTER`` (= ``HPAGE_PMD_NR``) slots, each used by
  one allocation order: a free cluster list, per-order nonfull and
  fragmented lists, one "next" hint per order (the kernel keeps one per
  CPU), order 0 stealing from higher-order clusters
  (``cluster_alloc_swap_entry()``).  The free list is in cluster order
  (the kernel interleaves it to spread cache lines), so slot offsets may
  differ from a real kernel's; counts and the success or failure of a
  large allocation follow the kernel.  The order-0 swap slot cache of
  v6.12 (mm/swap_slots.c, removed in v6.15) is not modelled.
- The zeromap: a folio found all zero is not written (``swap_writepage``:
  ``swpout_zero``), and reads back as zeros (``swpin_zero``).
- Swap readahead is not modelled: ``swapin_readahead`` reads the one
  faulting page, what the kernel does with ``vm.page-cluster = 0``.

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython
import numpy as np

from ..counters import counter
from ..errors import KernelBug, ModelUsageError

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from .kernel import MTHP_SWPIN, MTHP_SWPOUT, Kernel
    from .memmap import (
        MemMap,
        PG_cont,
        PG_dirty,
        PG_swapbacked,
        PG_swapcache,
        folio_mapped,
        folio_ref_add,
        folio_ref_sub,
    )

__all__ = [
    "SwapInfo",
    "SWAP_HAS_CACHE",
    "SWAP_MAP_BAD",
    "SWP_SYNCHRONOUS_IO",
    "TTRS_ANYWAY",
    "TTRS_UNMAPPED",
    "TTRS_FULL",
    "swap_count",
    "get_swap_pages",
    "folio_alloc_swap",
    "add_to_swap",
    "add_to_swap_cache",
    "delete_from_swap_cache",
    "swap_cache_get_folio",
    "swap_duplicate",
    "swapcache_prepare",
    "swapcache_clear",
    "swap_free_nr",
    "put_swap_folio",
    "free_swap_and_cache_nr",
    "folio_swapped",
    "folio_free_swap",
    "free_swap_cache",
    "vm_swap_full",
    "swap_writepage",
    "swap_read_folio",
    "swapin_readahead",
    "swapin_folio",
    "swap_zeromap_batch",
    "non_swapcache_batch",
]

#: The model's ``SWAP_HAS_CACHE`` bit of a ``swap_map`` entry (the kernel's
#: is 0x40 in a u8 beside a 6-bit count; the model holds the count whole).
SWAP_HAS_CACHE = cython.declare(i64, 1 << 30)
#: ``SWAP_MAP_BAD``: the header slot, never allocated.
SWAP_MAP_BAD = cython.declare(i64, 1 << 29)
_COUNT_MASK = cython.declare(i64, (1 << 29) - 1)
#: include/linux/swap.h ``SWP_SYNCHRONOUS_IO``, ``SWP_SOLIDSTATE``.
SWP_SOLIDSTATE = cython.declare(i64, 1 << 4)
SWP_SYNCHRONOUS_IO = cython.declare(i64, 1 << 12)
#: mm/swapfile.c __try_to_reclaim_swap() flags.
TTRS_ANYWAY = cython.declare(i64, 0x1)
TTRS_UNMAPPED = cython.declare(i64, 0x2)
TTRS_FULL = cython.declare(i64, 0x4)

# Cluster states (mm/swap.h CLUSTER_FLAG_*), and which list holds the cluster.
CLUSTER_FLAG_FREE = cython.declare(i64, 1)
CLUSTER_FLAG_NONFULL = cython.declare(i64, 2)
CLUSTER_FLAG_FRAG = cython.declare(i64, 4)
CLUSTER_FLAG_FULL = cython.declare(i64, 8)

PSWPIN = cython.declare(i64, counter("pswpin"))
PSWPOUT = cython.declare(i64, counter("pswpout"))
SWPIN_ZERO = cython.declare(i64, counter("swpin_zero"))
SWPOUT_ZERO = cython.declare(i64, counter("swpout_zero"))
THP_SWPOUT = cython.declare(i64, counter("thp_swpout"))
SWAP_ALLOC_FAIL = cython.declare(i64, counter("swap.alloc_fail"))


@cython.final
@cython.cclass
class SwapInfo:
    """One swap device: ``struct swap_info_struct``.

    ``nr_slots``: the device's size in pages (slot 0 is the header);
    ``cluster``: ``SWAPFILE_CLUSTER``; ``sync``: ``SWP_SYNCHRONOUS_IO``
    (zRAM) or not (a disk: every swap-in goes through the swap cache).
    """

    def __init__(self, nr_slots: i64, cluster: i64, pmd_order: i64, sync: cython.bint = True) -> None:
        if nr_slots < 2 * cluster:
            raise ModelUsageError(
                f"swap device of {nr_slots} pages: at least {2 * cluster} needed (two clusters)"
            )
        self.type = 0
        self.cluster_nr = cluster
        self.nr_clusters = nr_slots // cluster
        self.max = self.nr_clusters * cluster
        self.pmd_order = pmd_order
        self.flags = SWP_SOLIDSTATE | (SWP_SYNCHRONOUS_IO if sync else 0)
        self.swap_map = np.zeros(self.max, dtype=np.int32)
        self.zeromap = np.zeros(self.max, dtype=np.uint8)
        self.data = np.zeros(self.max, dtype=np.uint64)
        #: The swap cache (``swap_address_space``): the page holding each slot, -1 if none.
        self.cache = np.full(self.max, -1, dtype=np.int64)
        self.ci_count = np.zeros(self.nr_clusters, dtype=np.int32)
        self.ci_order = np.zeros(self.nr_clusters, dtype=np.int8)
        self.ci_flags = np.zeros(self.nr_clusters, dtype=np.int8)
        self.next_ = np.zeros(pmd_order + 1, dtype=np.int64)
        #: ``folio->swap`` of every folio in the swap cache: head pfn -> first slot.
        self.folio_swap: dict[int, int] = {}
        self.free_clusters: list[int] = []
        self.nonfull_clusters: list[list[int]] = [[] for _ in range(pmd_order + 1)]
        self.frag_clusters: list[list[int]] = [[] for _ in range(pmd_order + 1)]
        self.full_clusters: list[int] = []
        # The header: slot 0 is bad (setup_clusters(): its cluster starts nonfull, order 0).
        self.swap_map[0] = SWAP_MAP_BAD
        self.ci_count[0] = 1
        self.ci_flags[0] = CLUSTER_FLAG_NONFULL
        self.nonfull_clusters[0].append(0)
        c: i64
        for c in range(1, self.nr_clusters):
            self.ci_flags[c] = CLUSTER_FLAG_FREE
            self.free_clusters.append(c)
        self.pages = self.max - 1
        self.inuse_pages = 0
        #: Bumped by every change of a count or of the swap cache (the validators' trigger).
        self.gen = 0

    def describe(self) -> str:
        return f"swap type {self.type}: {self.inuse_pages}/{self.pages} slots in use"

    # -- lists (list_move_tail) ---------------------------------------------
    @cython.cfunc
    def _list_of(self, c: i64) -> Any:
        f: i64 = self.ci_flags[c]
        if f == CLUSTER_FLAG_FREE:
            return cython.cast(list, self.free_clusters)
        if f == CLUSTER_FLAG_NONFULL:
            return cython.cast(list, self.nonfull_clusters[self.ci_order[c]])
        if f == CLUSTER_FLAG_FRAG:
            return cython.cast(list, self.frag_clusters[self.ci_order[c]])
        return cython.cast(list, self.full_clusters)

    @cython.cfunc
    def _move_tail(self, c: i64, flag: i64, order: i64) -> None:
        """``list_move_tail(&ci->list, <the list of flag/order>)``; sets ``ci->flags`` and ``ci->order``."""
        self._list_of(c).remove(c)
        self.ci_flags[c] = flag
        self.ci_order[c] = order
        if flag == CLUSTER_FLAG_FREE:
            self.free_clusters.append(c)
        elif flag == CLUSTER_FLAG_NONFULL:
            self.nonfull_clusters[order].append(c)
        elif flag == CLUSTER_FLAG_FRAG:
            self.frag_clusters[order].append(c)
        else:
            self.full_clusters.append(c)


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_count(ent: i64) -> i64:
    """Models: mm/swapfile.c ``swap_count()``: the count without ``SWAP_HAS_CACHE``."""
    return ent & _COUNT_MASK


@cython.ccall
@cython.exceptval(-1, check=True)
def vm_swap_full(si: SwapInfo) -> cython.bint:
    """Models: mm/swap.h ``vm_swap_full()``: more than half the swap in use."""
    return (si.pages - si.inuse_pages) * 2 < si.pages


# ---------------------------------------------------------------------------
# Slot allocation (mm/swapfile.c, v6.12 cluster allocator)
# ---------------------------------------------------------------------------
@cython.cfunc
@cython.exceptval(-1, check=True)
def cluster_alloc_range(si: SwapInfo, c: i64, offset: i64, order: i64) -> i64:
    """Models: ``cluster_alloc_range()`` with usage ``SWAP_HAS_CACHE``."""
    nr: i64 = cython.cast(i64, 1) << order
    i: i64
    if si.ci_flags[c] == CLUSTER_FLAG_FREE:
        if nr < si.cluster_nr:
            si._move_tail(c, CLUSTER_FLAG_NONFULL, order)
        si.ci_order[c] = order
    for i in range(offset, offset + nr):
        si.swap_map[i] = SWAP_HAS_CACHE
    si.inuse_pages += nr  # swap_range_alloc()
    si.ci_count[c] += nr
    if si.ci_count[c] == si.cluster_nr:
        si._move_tail(c, CLUSTER_FLAG_FULL, si.ci_order[c])
    si.gen += 1
    return 0


@cython.cfunc
@cython.exceptval(-2, check=True)
def alloc_swap_scan_cluster(si: SwapInfo, offset: i64, order: i64) -> i64:
    """Find ``1 << order`` free aligned slots in ``offset``'s cluster from ``offset``.

    Models: ``alloc_swap_scan_cluster()``.  Returns the slot found, or
    -1 (``*foundp`` stays 0); ``si.next_[order]`` gets the next hint.
    """
    nr: i64 = cython.cast(i64, 1) << order
    start: i64 = offset - offset % si.cluster_nr
    end: i64 = start + si.cluster_nr - nr
    c: i64 = start // si.cluster_nr
    found: i64 = -1
    i: i64
    ok: cython.bint
    si.next_[order] = 0
    if si.ci_count[c] + nr > si.cluster_nr:
        return -1
    while offset <= end:
        ok = True
        for i in range(offset, offset + nr):  # cluster_scan_range()
            if si.swap_map[i] != 0:
                ok = False
                break
        if ok:
            cluster_alloc_range(si, c, offset, order)
            found = offset
            if si.ci_count[c] != si.cluster_nr and offset + nr <= end:
                si.next_[order] = offset + nr
            break
        offset += nr
    return found


@cython.ccall
@cython.exceptval(-2, check=True)
def get_swap_pages(si: SwapInfo, order: i64) -> i64:
    """Allocate ``1 << order`` naturally aligned slots; the first, or 0 if none.

    Models: ``get_swap_pages(1, &entry, order)`` -> ``scan_swap_map_slots()``
    -> ``cluster_alloc_swap_entry()`` (v6.12): the CPU's next hint for the
    order, then a free cluster, then the order's nonfull clusters (moved to
    the fragmented list as they are tried) and fragmented ones; order 0
    last steals from higher orders' clusters.  The slots get
    ``SWAP_HAS_CACHE`` (usage of an allocation for the swap cache).
    """
    nr: i64 = cython.cast(i64, 1) << order
    if order > si.pmd_order or (si.pages - si.inuse_pages) < nr:
        return 0
    found: i64 = -1
    c: i64
    o: i64
    lst: list[int]
    if si.next_[order]:
        found = alloc_swap_scan_cluster(si, si.next_[order], order)
        if found >= 0:
            return found
    if si.free_clusters:
        c = si.free_clusters[0]
        found = alloc_swap_scan_cluster(si, c * si.cluster_nr, order)
        if found < 0:
            raise KernelBug("VM_BUG_ON", "a free swap cluster failed an allocation", None)
        return found
    if order < si.pmd_order:
        lst = si.nonfull_clusters[order]
        while lst:
            c = lst[0]
            si._move_tail(c, CLUSTER_FLAG_FRAG, order)
            found = alloc_swap_scan_cluster(si, c * si.cluster_nr, order)
            if found >= 0:
                return found
        lst = si.frag_clusters[order]
        for _ in range(len(lst)):
            c = lst[0]
            lst.remove(c)
            lst.append(c)  # rotate
            found = alloc_swap_scan_cluster(si, c * si.cluster_nr, order)
            if found >= 0:
                return found
    if order:
        return 0
    for o in range(1, si.pmd_order + 1):
        for c in list(si.frag_clusters[o]) + list(si.nonfull_clusters[o]):
            found = alloc_swap_scan_cluster(si, c * si.cluster_nr, 0)
            if found >= 0:
                return found
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_entry_range_free(si: SwapInfo, offset: i64, nr: i64) -> i64:
    """Give ``nr`` slots back (their count and cache flag are gone).

    Models: ``swap_entry_range_free()`` + ``swap_range_free()`` (the
    zeromap bits cleared) + ``dec_cluster_info_page()``: an empty cluster
    goes back to the free list, a full one to its order's nonfull list.
    """
    i: i64
    for i in range(offset, offset + nr):
        si.swap_map[i] = 0
        si.zeromap[i] = 0
    si.inuse_pages -= nr
    c: i64 = offset // si.cluster_nr
    si.ci_count[c] -= nr
    if si.ci_count[c] == 0:
        si._move_tail(c, CLUSTER_FLAG_FREE, 0)
    elif si.ci_flags[c] != CLUSTER_FLAG_NONFULL:
        si._move_tail(c, CLUSTER_FLAG_NONFULL, si.ci_order[c])
    si.gen += 1
    return 0


# ---------------------------------------------------------------------------
# Swap counts
# ---------------------------------------------------------------------------
@cython.cfunc
@cython.exceptval(-1, check=True)
def _swap_entry_free_locked(si: SwapInfo, offset: i64, usage: i64) -> i64:
    """Models: ``__swap_entry_free_locked()``: drop one count or the cache flag; the usage left."""
    ent: i64 = si.swap_map[offset]
    has_cache: i64 = ent & SWAP_HAS_CACHE
    cnt: i64 = ent & _COUNT_MASK
    if (
        ent & SWAP_MAP_BAD
        or (usage == SWAP_HAS_CACHE and not has_cache)
        or (usage != SWAP_HAS_CACHE and not cnt)
    ):
        raise KernelBug(
            "swap-count", f"free of slot {offset:#x} with swap_map {ent:#x} (usage {usage:#x})", None
        )
    if usage == SWAP_HAS_CACHE:
        has_cache = 0
    else:
        cnt -= 1
    usage = cnt | has_cache
    # A slot whose usage reaches 0 keeps SWAP_HAS_CACHE until the caller frees it.
    si.swap_map[offset] = usage if usage else SWAP_HAS_CACHE
    si.gen += 1
    return usage


@cython.cfunc
@cython.exceptval(-1, check=True)
def cluster_swap_free_nr(si: SwapInfo, offset: i64, nr: i64, usage: i64) -> i64:
    """Models: ``cluster_swap_free_nr()``: drop ``usage`` from each slot, free those left unused."""
    i: i64
    for i in range(offset, offset + nr):
        if not _swap_entry_free_locked(si, i, usage):
            swap_entry_range_free(si, i, 1)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def _swap_duplicate(si: SwapInfo, offset: i64, usage: i64, nr: i64) -> i64:
    """Add ``usage`` (1 or ``SWAP_HAS_CACHE``) to ``nr`` slots; 0 or -errno.

    Models: ``__swap_duplicate()`` (v6.12): all or nothing; a cache flag
    already set is -EEXIST, a slot without count or cache -ENOENT.
    """
    i: i64
    ent: i64
    for i in range(offset, offset + nr):
        ent = si.swap_map[i]
        if ent & SWAP_MAP_BAD or offset + nr > si.max:
            return -22  # -EINVAL
        if usage == SWAP_HAS_CACHE:
            if ent & SWAP_HAS_CACHE:
                return -17  # -EEXIST
            if not ent & _COUNT_MASK:
                return -2  # -ENOENT
        elif not ent:
            return -2
    for i in range(offset, offset + nr):
        si.swap_map[i] += usage
    si.gen += 1
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_duplicate(si: SwapInfo, offset: i64) -> i64:
    """Models: ``swap_duplicate()``: one more swap PTE refers to the slot (fork, unmap)."""
    return _swap_duplicate(si, offset, 1, 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def swapcache_prepare(si: SwapInfo, offset: i64, nr: i64) -> i64:
    """Models: ``swapcache_prepare()``: claim the slots for a swap-in (``SWAP_HAS_CACHE``); 0 or -errno."""
    return _swap_duplicate(si, offset, SWAP_HAS_CACHE, nr)


@cython.ccall
@cython.exceptval(-1, check=True)
def swapcache_clear(si: SwapInfo, offset: i64, nr: i64) -> i64:
    """Models: ``swapcache_clear()``: drop the claim of a swap-in that bypassed the swap cache."""
    return cluster_swap_free_nr(si, offset, nr, SWAP_HAS_CACHE)


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_free_nr(si: SwapInfo, offset: i64, nr: i64) -> i64:
    """Models: ``swap_free_nr()``: ``nr`` swap PTEs are gone (swap-in)."""
    return cluster_swap_free_nr(si, offset, nr, 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def _swap_count(si: SwapInfo, offset: i64) -> i64:
    """Models: ``__swap_count()``."""
    return cython.cast(i64, si.swap_map[offset]) & _COUNT_MASK


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_is_has_cache(si: SwapInfo, offset: i64, nr: i64) -> cython.bint:
    """Models: ``swap_is_has_cache()``: every slot holds only the cache flag."""
    i: i64
    for i in range(offset, offset + nr):  # noqa: SIM110 - a C loop
        if si.swap_map[i] != SWAP_HAS_CACHE:
            return False
    return True


@cython.ccall
@cython.exceptval(-1, check=True)
def put_swap_folio(si: SwapInfo, offset: i64, nr: i64) -> i64:
    """The swap cache lets go of a folio's slots.

    Models: ``put_swap_folio()`` (v6.12): a large folio's slots that hold
    nothing else are freed at once; otherwise the cache flag is dropped
    from each and the unused ones freed.
    """
    if nr > 1 and swap_is_has_cache(si, offset, nr):
        return swap_entry_range_free(si, offset, nr)
    return cluster_swap_free_nr(si, offset, nr, SWAP_HAS_CACHE)


# ---------------------------------------------------------------------------
# The swap cache (mm/swap_state.c)
# ---------------------------------------------------------------------------
@cython.ccall
def add_to_swap_cache(k: Kernel, si: SwapInfo, folio: i64, offset: i64) -> None:
    """Models: ``add_to_swap_cache()``: one reference per page, PG_swapcache, ``folio->swap``."""
    mem: MemMap = k.memmap
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    i: i64
    for i in range(nr):
        si.cache[offset + i] = folio + i
    folio_ref_add(mem, folio, nr)
    mem.flags[folio] |= PG_swapcache | PG_swapbacked
    si.folio_swap[folio] = offset
    si.gen += 1


@cython.ccall
def delete_from_swap_cache(k: Kernel, si: SwapInfo, folio: i64) -> None:
    """Models: ``delete_from_swap_cache()``: ``__delete_from_swap_cache()``,
    ``put_swap_folio()``, and the cache's references dropped (``folio_ref_sub``)."""
    mem: MemMap = k.memmap
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    offset: i64 = si.folio_swap.pop(folio)
    i: i64
    for i in range(nr):
        si.cache[offset + i] = -1
    mem.flags[folio] &= ~cython.cast(i64, PG_swapcache) & 0xFFFFFFFF
    put_swap_folio(si, offset, nr)
    folio_ref_sub(mem, folio, nr)
    si.gen += 1


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_alloc_swap(k: Kernel, si: SwapInfo, folio: i64) -> i64:
    """Slots for the whole folio: the first, or 0.  Models: ``folio_alloc_swap()`` (v6.12)."""
    off: i64 = get_swap_pages(si, cython.cast(i64, k.memmap.order[folio]))
    if not off:
        count(k.counters, SWAP_ALLOC_FAIL, 1)
    return off


@cython.ccall
@cython.exceptval(-1, check=True)
def add_to_swap(k: Kernel, si: SwapInfo, folio: i64) -> cython.bint:
    """Give a folio slots and put it in the swap cache, dirty.

    Models: mm/swap_state.c ``add_to_swap()``: False when no slots are
    free for the folio's order (the caller splits a large folio and
    tries its pages).
    """
    offset: i64 = folio_alloc_swap(k, si, folio)
    if not offset:
        return False
    add_to_swap_cache(k, si, folio, offset)
    k.memmap.flags[folio] |= PG_dirty  # folio_mark_dirty()
    return True


@cython.ccall
@cython.exceptval(-2, check=True)
def swap_cache_get_folio(k: Kernel, si: SwapInfo, offset: i64) -> i64:
    """The folio the swap cache holds for a slot, with a reference; -1 if none.

    Models: mm/swap_state.c ``swap_cache_get_folio()`` (``filemap_get_folio``
    on the swap address space; readahead statistics not modelled).
    """
    page: i64 = si.cache[offset]
    if page < 0:
        return -1
    folio: i64 = cython.cast(i64, k.memmap.head[page])
    folio_ref_add(k.memmap, folio, 1)
    return folio


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_swapped(k: Kernel, si: SwapInfo, folio: i64) -> cython.bint:
    """Does a swap PTE still refer to any slot of the folio?

    Models: ``folio_swapped()`` -> ``swap_page_trans_huge_swapped()``.
    """
    offset: i64 = si.folio_swap[folio]
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, k.memmap.order[folio])
    i: i64
    for i in range(offset, offset + nr):  # noqa: SIM110 - a C loop
        if si.swap_map[i] & _COUNT_MASK:
            return True
    return False


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_free_swap(k: Kernel, si: SwapInfo, folio: i64) -> cython.bint:
    """Free the folio's slots if no swap PTE refers to them any more.

    Models: ``folio_free_swap()``: removed from the swap cache and marked
    dirty (its content now lives only in memory).
    """
    if not cython.cast(i64, k.memmap.flags[folio]) & PG_swapcache:
        return False  # folio_swapcache_freeable()
    if folio_swapped(k, si, folio):
        return False
    delete_from_swap_cache(k, si, folio)
    k.memmap.flags[folio] |= PG_dirty  # folio_set_dirty()
    return True


@cython.ccall
def free_swap_cache(k: Kernel, folio: i64) -> None:
    """An unmapped folio leaves the swap cache if it can (the mmu_gather's free path).

    Models: mm/swap_state.c ``free_swap_cache()``, called by
    ``free_pages_and_swap_cache()`` before the references are dropped.
    """
    if k.swap is None or not cython.cast(i64, k.memmap.flags[folio]) & PG_swapcache:
        return
    if not folio_mapped(k.memmap, folio):
        folio_free_swap(k, cython.cast(SwapInfo, k.swap), folio)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _try_to_reclaim_swap(k: Kernel, si: SwapInfo, offset: i64, flags: i64) -> i64:
    """Models: ``__try_to_reclaim_swap()``: pages reclaimed, 0 if no folio, -nr if kept."""
    folio: i64 = swap_cache_get_folio(k, si, offset)
    if folio < 0:
        return 0
    mem: MemMap = k.memmap
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    ret: i64 = -nr
    need: cython.bint = (
        (flags & TTRS_ANYWAY) != 0
        or ((flags & TTRS_UNMAPPED) != 0 and not folio_mapped(mem, folio))
        or ((flags & TTRS_FULL) != 0 and vm_swap_full(si))
    )
    if need and not folio_swapped(k, si, folio):
        delete_from_swap_cache(k, si, folio)
        mem.flags[folio] |= PG_dirty
        ret = nr
    k.folio_put(folio, 1)
    return ret


@cython.ccall
@cython.exceptval(-1, check=True)
def _swap_entries_free(si: SwapInfo, offset: i64, nr: i64) -> cython.bint:
    """Drop one count from ``nr`` slots; True if one is left held by the cache only.

    Models: ``__swap_entries_free()`` (v6.12): the batch fast path applies
    when every slot is exactly like the first, with count 1
    (``swap_is_last_map()``): they are all freed at once, or all left with
    only the cache flag; otherwise one ``__swap_entry_free()`` per slot.
    """
    i: i64
    has_cache: cython.bint = False
    first: i64 = si.swap_map[offset]
    fast: cython.bint = nr > 1 and (first & _COUNT_MASK) == 1
    fast = fast and nr <= si.cluster_nr - offset % si.cluster_nr
    if fast:
        for i in range(offset + 1, offset + nr):  # swap_is_last_map()
            if si.swap_map[i] != first:
                fast = False
                break
    if fast:
        has_cache = (first & SWAP_HAS_CACHE) != 0
        if has_cache:
            for i in range(offset, offset + nr):
                si.swap_map[i] = SWAP_HAS_CACHE
            si.gen += 1
        else:
            swap_entry_range_free(si, offset, nr)
        return has_cache
    u: i64
    for i in range(offset, offset + nr):
        u = _swap_entry_free_locked(si, i, 1)  # __swap_entry_free()
        if u == SWAP_HAS_CACHE:
            has_cache = True
        elif u == 0:
            swap_entry_range_free(si, i, 1)  # free_swap_slot()
    return has_cache


@cython.ccall
def free_swap_and_cache_nr(k: Kernel, offset: i64, nr: i64) -> None:
    """``nr`` swap PTEs are zapped: drop their counts, reclaim cache folios left unused.

    Models: mm/swapfile.c ``free_swap_and_cache_nr()`` (v6.12): first every
    count; then each slot held by the swap cache only is reclaimed with
    ``TTRS_UNMAPPED | TTRS_FULL`` (its folio goes if nothing maps it), a
    folio at a time.
    """
    si: SwapInfo = k.swap
    if not _swap_entries_free(si, offset, nr):
        return
    end: i64 = offset + nr
    o: i64 = offset
    step: i64
    while o < end:
        step = 1
        if si.swap_map[o] == SWAP_HAS_CACHE:
            step = _try_to_reclaim_swap(k, si, o, TTRS_UNMAPPED | TTRS_FULL)
            if step == 0:
                step = 1
            elif step < 0:
                step = -step
            # ALIGN(offset + 1, nr) - offset: on to the next folio boundary.
            step = ((o + step) // step) * step - o
        o += step


# ---------------------------------------------------------------------------
# Swap I/O (mm/page_io.c): a synchronous device
# ---------------------------------------------------------------------------
@cython.ccall
@cython.exceptval(-1, check=True)
def swap_writepage(k: Kernel, si: SwapInfo, folio: i64) -> i64:
    """Write a swap-cache folio to its slots and clean it.

    Models: mm/page_io.c ``swap_writepage()`` (v6.12): a folio no swap PTE
    refers to any more is freed from the swap cache instead; an all-zero
    folio only sets its zeromap bits (``swpout_zero``); otherwise
    ``__swap_writepage()`` -> ``swap_writepage_bdev_sync()`` writes it and
    counts ``swpout`` per size, ``thp_swpout`` for a PMD-size folio
    (``folio_test_pmd_mappable``) and ``pswpout`` per page
    (``count_swpout_vm_event``).  Synchronous: the folio is clean and out
    of writeback when it returns.
    """
    mem: MemMap = k.memmap
    a: Pgtable = k.arch
    if folio_free_swap(k, si, folio):
        return 0
    order: i64 = cython.cast(i64, mem.order[folio])
    nr: i64 = cython.cast(i64, 1) << order
    offset: i64 = si.folio_swap[folio]
    i: i64
    zero: cython.bint = True
    for i in range(nr):  # is_folio_zero_filled()
        if a.memcpy_from_page(folio + i) != 0:
            zero = False
            break
    mem.flags[folio] &= ~cython.cast(i64, PG_dirty) & 0xFFFFFFFF  # folio_clear_dirty_for_io()
    if zero:
        for i in range(nr):
            si.zeromap[offset + i] = 1
        count(k.counters, SWPOUT_ZERO, nr)
        return 0
    for i in range(nr):
        si.zeromap[offset + i] = 0
        si.data[offset + i] = a.memcpy_from_page(folio + i)
    if order >= k.PMD_ORDER or (k.oneplus and cython.cast(i64, mem.flags[folio]) & PG_cont):
        # count_swpout_vm_event(); OnePlus (its 5.15 version): a block is a THP too.
        count(k.counters, THP_SWPOUT, 1)
    k.count_mthp_stat(order, MTHP_SWPOUT, 1)
    count(k.counters, PSWPOUT, nr)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_zeromap_batch(si: SwapInfo, offset: i64, nr: i64) -> i64:
    """Models: mm/swap.h ``swap_zeromap_batch()``: how many slots from ``offset``
    share the first one's zeromap bit."""
    first: i64 = si.zeromap[offset]
    i: i64
    for i in range(1, nr):
        if si.zeromap[offset + i] != first:
            return i
    return nr


@cython.ccall
@cython.exceptval(-1, check=True)
def non_swapcache_batch(si: SwapInfo, offset: i64, nr: i64) -> i64:
    """Models: mm/memory.c ``non_swapcache_batch()``: slots from ``offset`` without ``SWAP_HAS_CACHE``."""
    i: i64
    for i in range(nr):
        if si.swap_map[offset + i] & SWAP_HAS_CACHE:
            return i
    return nr


@cython.ccall
@cython.exceptval(-1, check=True)
def swap_read_folio(k: Kernel, si: SwapInfo, folio: i64, offset: i64) -> i64:
    """Read the folio's slots from ``offset`` into it (synchronously).

    Models: mm/page_io.c ``swap_read_folio()`` (v6.12): zeromap slots read
    as zeros (``swpin_zero``); otherwise ``swap_read_folio_bdev_sync()``:
    ``pswpin`` per page, and from v6.13 the per-size ``swpin`` (the model
    counts it in every version; ``mthp_stats()`` shows it from 6.13).
    """
    mem: MemMap = k.memmap
    a: Pgtable = k.arch
    order: i64 = cython.cast(i64, mem.order[folio])
    nr: i64 = cython.cast(i64, 1) << order
    i: i64
    if swap_zeromap_batch(si, offset, nr) != nr:
        raise KernelBug("WARN_ON_ONCE", f"swap-in of slots {offset:#x}+{nr} partly in the zeromap", None)
    if si.zeromap[offset]:
        for i in range(nr):
            a.clear_highpage(folio + i)
        count(k.counters, SWPIN_ZERO, nr)
        return 0
    for i in range(nr):
        a.memcpy_to_page(folio + i, cython.cast(u64, si.data[offset + i]))
    count(k.counters, PSWPIN, nr)
    k.count_mthp_stat(order, MTHP_SWPIN, 1)
    return 0


@cython.ccall
@cython.exceptval(-2, check=True)
def swapin_folio(k: Kernel, si: SwapInfo, folio: i64, offset: i64) -> i64:
    """Put a new folio in the swap cache for its slots and read it; the folio.

    Models: mm/swap_state.c ``swapin_folio()`` (v7.1): the slots from
    ``offset`` (aligned to the folio) are claimed for the cache, the folio
    joins it (one reference per page) and is read.
    """
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, k.memmap.order[folio])
    if swapcache_prepare(si, offset, nr):
        raise KernelBug("swapin_folio", f"slots {offset:#x}+{nr} already in the swap cache", None)
    i: i64
    for i in range(nr):
        si.cache[offset + i] = folio + i
    folio_ref_add(k.memmap, folio, nr)
    k.memmap.flags[folio] |= PG_swapcache | PG_swapbacked
    si.folio_swap[folio] = offset
    si.gen += 1
    swap_read_folio(k, si, folio, offset)
    return folio


@cython.ccall
@cython.exceptval(-2, check=True)
def swapin_readahead(k: Kernel, si: SwapInfo, offset: i64) -> i64:
    """Read one slot in through the swap cache; the order-0 folio with a reference, or -1.

    Models: mm/swap_state.c ``swapin_readahead()`` with a window of one
    page (``vm.page-cluster = 0``: no readahead) ->
    ``__read_swap_cache_async()``: a folio already cached is returned;
    else the slot is claimed (``swapcache_prepare``), a new folio is added
    to the swap cache and read.
    """
    folio: i64 = swap_cache_get_folio(k, si, offset)
    if folio >= 0:
        return folio
    if swapcache_prepare(si, offset, 1):
        return -1
    folio = k.folio_alloc(0, False)
    if folio < 0:
        swapcache_clear(si, offset, 1)
        return -1
    # add_to_swap_cache() with the slot already flagged: the cache's reference.
    mem: MemMap = k.memmap
    si.cache[offset] = folio
    folio_ref_add(mem, folio, 1)
    mem.flags[folio] |= PG_swapcache | PG_swapbacked
    si.folio_swap[folio] = offset
    si.gen += 1
    swap_read_folio(k, si, folio, offset)
    return folio


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        SWAP_HAS_CACHE=SWAP_HAS_CACHE,
        SWAP_MAP_BAD=SWAP_MAP_BAD,
        SWP_SYNCHRONOUS_IO=SWP_SYNCHRONOUS_IO,
        SWP_SOLIDSTATE=SWP_SOLIDSTATE,
        TTRS_ANYWAY=TTRS_ANYWAY,
        TTRS_UNMAPPED=TTRS_UNMAPPED,
        TTRS_FULL=TTRS_FULL,
        PSWPIN=PSWPIN,
        PSWPOUT=PSWPOUT,
        THP_SWPOUT=THP_SWPOUT,
    )
