"""Reverse-map accounting: mapcounts, anon exclusivity, deferred split.

Models: mm/rmap.c and include/linux/rmap.h (Linux v6.12): the batch helpers
``folio_add_new_anon_rmap``, ``folio_add_anon_rmap_ptes``,
``folio_try_dup_anon_rmap_ptes``, ``folio_dup_file_rmap_ptes``,
``folio_add_file_rmap_ptes``, ``folio_remove_rmap_ptes`` and their PMD forms.

A folio is its head pfn, a page its pfn (``memmap.py``); every helper takes
the batch at once, as the kernel's do, and loops over its pages.

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython

from ..counters import counter
from ..errors import KernelBug

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from ..hw.tables import AddressSpace, PtePool
    from .internal import folio_pte_batch
    from .kernel import MTHP_NR_ANON_PARTIALLY_MAPPED, MTHP_SPLIT_DEFERRED, THP_DEFERRED_SPLIT_PAGE, Kernel
    from .memmap import (
        ClearPageAnonExclusive,
        MemMap,
        PG_anon_exclusive,
        PG_cont,
        PG_swapcache,
        SetPageAnonExclusive,
        folio_mapcount,
        folio_maybe_dma_pinned,
        folio_test_anon,
    )
    from .mm_h import pte_unmap_unlock
    from .mm_types import MmStruct, Vma, vma_mm

__all__ = [
    "RMAP_EXCLUSIVE",
    "anon_vma_prepare",
    "folio_add_new_anon_rmap",
    "folio_add_anon_rmap_ptes",
    "folio_try_dup_anon_rmap_ptes",
    "folio_try_dup_anon_rmap_pmd",
    "folio_dup_file_rmap_ptes",
    "folio_add_file_rmap_ptes",
    "folio_remove_rmap_ptes",
    "folio_remove_rmap_pmd",
    "folio_needs_cow_for_dma",
    "folio_set_large_mapcount",
    "folio_add_large_mapcount",
    "folio_sub_large_mapcount",
    "deferred_split_folio",
    "rmap_walk_ptes",
    "rmap_walk_pmds",
    "folio_referenced",
]

RMAP_EXCLUSIVE = cython.declare(i64, 1)

RMAP_OPS = cython.declare(i64, counter("rmap.op"))
RMAP_PAGES = cython.declare(i64, counter("rmap.pages"))
RMAP_REMOVE = cython.declare(i64, counter("rmap.remove"))

EBUSY = cython.declare(i64, 16)


@cython.ccall
def rmap_changed(k: Kernel, folio: i64) -> None:
    """Tell the validators a folio's mapcounts grew (``Kernel.rmap_observer``).

    The refcount must already cover every mapping at this point: another
    CPU may look at the folio (GUP-fast, a speculative folio_try_get) as soon
    as the mapcount changed, not only when the syscall returns.
    """
    if k.rmap_observer is not None:
        k.rmap_observer.on_rmap_change(folio)


@cython.ccall
def anon_vma_prepare(vma: Vma) -> None:
    """``anon_vma_prepare()``: give the VMA an anon_vma on its first anon page."""
    if vma.anon_vma is None:
        vma.anon_vma = vma_mm(vma).kernel.new_anon_vma()


# -- CONFIG_MM_ID: which mms map a large folio (include/linux/rmap.h, v6.15) ---
@cython.ccall
def folio_set_large_mapcount(mem: MemMap, folio: i64, mapcount: i64, vma: Vma) -> None:
    """The first ``mapcount`` mappings of a new large folio, all in ``vma``'s mm.

    Models: include/linux/rmap.h ``folio_set_large_mapcount()`` (CONFIG_MM_ID):
    slot 0 takes the mm (the model's mm_id is the owner's pid; 0 is
    MM_ID_DUMMY) with every mapping; the folio is exclusive.
    """
    mem.large_mapcount[folio] = mapcount
    mem.mm_id0[folio] = vma_mm(vma).owner
    mem.mm_id_mapcount0[folio] = mapcount
    mem.mm_id1[folio] = 0
    mem.mm_id_mapcount1[folio] = 0
    mem.mm_ids_shared[folio] = 0


@cython.ccall
def folio_add_large_mapcount(mem: MemMap, folio: i64, diff: i64, vma: Vma) -> None:
    """``diff`` more mappings of large ``folio`` in ``vma``'s mm.

    Models: include/linux/rmap.h ``folio_add_return_large_mapcount()``
    (CONFIG_MM_ID, 64-bit): the mm's slot counts them; an mm without a slot
    takes a free one, and the folio is "maybe mapped shared" once two mms
    (or one new mm beside older mappings) map it; an mm that finds both
    slots taken is not tracked (the bit is already set).
    """
    mm_id: i64 = vma_mm(vma).owner
    new: i64 = cython.cast(i64, mem.large_mapcount[folio]) + diff
    mem.large_mapcount[folio] = new
    if cython.cast(i64, mem.mm_id0[folio]) == mm_id:
        mem.mm_id_mapcount0[folio] += diff
    elif cython.cast(i64, mem.mm_id1[folio]) == mm_id:
        mem.mm_id_mapcount1[folio] += diff
    elif cython.cast(i64, mem.mm_id0[folio]) == 0:
        mem.mm_id0[folio] = mm_id
        mem.mm_id_mapcount0[folio] = diff
        if new != diff:
            mem.mm_ids_shared[folio] = 1  # other mappings already
    elif cython.cast(i64, mem.mm_id1[folio]) == 0:
        mem.mm_id1[folio] = mm_id
        mem.mm_id_mapcount1[folio] = diff
        mem.mm_ids_shared[folio] = 1  # slot 0 has mappings too


@cython.ccall
def folio_sub_large_mapcount(mem: MemMap, folio: i64, diff: i64, vma: Vma) -> None:
    """``diff`` fewer mappings of large ``folio`` in ``vma``'s mm.

    Models: include/linux/rmap.h ``folio_sub_return_large_mapcount()``
    (CONFIG_MM_ID): the mm's slot is freed when its count runs out; then,
    or when the mm had no slot, the folio is exclusive again if one slot
    holds every mapping (or none is left).  While the mm keeps mappings in
    its slot nothing else changes.
    """
    mm_id: i64 = vma_mm(vma).owner
    new: i64 = cython.cast(i64, mem.large_mapcount[folio]) - diff
    mem.large_mapcount[folio] = new
    if cython.cast(i64, mem.mm_id0[folio]) == mm_id:
        mem.mm_id_mapcount0[folio] -= diff
        if cython.cast(i64, mem.mm_id_mapcount0[folio]) > 0:
            return
        mem.mm_id_mapcount0[folio] = 0
        mem.mm_id0[folio] = 0
    elif cython.cast(i64, mem.mm_id1[folio]) == mm_id:
        mem.mm_id_mapcount1[folio] -= diff
        if cython.cast(i64, mem.mm_id_mapcount1[folio]) > 0:
            return
        mem.mm_id_mapcount1[folio] = 0
        mem.mm_id1[folio] = 0
    if (
        cython.cast(i64, mem.mm_id_mapcount0[folio]) == new
        or cython.cast(i64, mem.mm_id_mapcount1[folio]) == new
    ):
        mem.mm_ids_shared[folio] = 0


@cython.ccall
def folio_add_new_anon_rmap(folio: i64, vma: Vma, address: i64, flags: i64, pmd: cython.bint = False) -> None:
    """Add the first mapping of a new anon folio.

    Models: mm/rmap.c ``folio_add_new_anon_rmap()``.  ``pmd`` selects the
    PMD-mapped form (``folio_test_pmd_mappable`` mapped by a PMD).
    """
    k: Kernel = vma_mm(vma).kernel
    mem: MemMap = k.memmap
    if vma.anon_vma is None:
        raise KernelBug("VM_BUG_ON_VMA", "anon rmap added to a VMA without anon_vma", address)
    k.mark_anon(folio)
    mem.mapping[folio] = vma.anon_vma
    mem.index[folio] = vma.linear_page_index(address)
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    exclusive: cython.bint = (flags & RMAP_EXCLUSIVE) != 0
    i: i64
    if pmd:
        mem.entire_mapcount[folio] = 1
        folio_set_large_mapcount(mem, folio, 1, vma)
        if exclusive:
            # The head's flag stands for the whole PMD-mapped folio; a
            # OnePlus 64K block (policy="oneplus", mapped whole by 16 PTEs,
            # ``page_add_new_anon_rmap(page, vma, haddr, true)``) marks every
            # page, as its PTEs are split one by one later.
            SetPageAnonExclusive(mem, folio, 1 if cython.cast(i64, mem.order[folio]) >= k.PMD_ORDER else nr)
    else:
        for i in range(folio, folio + nr):
            mem.mapcount[i] = 1
        if nr > 1:
            folio_set_large_mapcount(mem, folio, nr, vma)
        if exclusive:
            SetPageAnonExclusive(mem, folio, nr)
    count(k.counters, RMAP_OPS, 1)
    count(k.counters, RMAP_PAGES, nr)
    rmap_changed(k, folio)


@cython.ccall
def folio_add_anon_rmap_ptes(folio: i64, page: i64, nr: i64, vma: Vma, address: i64, flags: i64) -> None:
    """Models: mm/rmap.c ``folio_add_anon_rmap_ptes()``."""
    k: Kernel = vma_mm(vma).kernel
    mem: MemMap = k.memmap
    i: i64
    for i in range(page, page + nr):
        mem.mapcount[i] += 1
    if cython.cast(i64, mem.order[folio]) > 0:
        folio_add_large_mapcount(mem, folio, nr, vma)
    if flags & RMAP_EXCLUSIVE:
        SetPageAnonExclusive(mem, page, nr)
    count(k.counters, RMAP_OPS, 1)
    count(k.counters, RMAP_PAGES, nr)


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_needs_cow_for_dma(vma: Vma, folio: i64) -> cython.bint:
    """``folio_needs_cow_for_dma()``: the mm ever pinned and the folio may be pinned."""
    mm: MmStruct = vma_mm(vma)
    return mm.has_pinned and folio_maybe_dma_pinned(mm.kernel.memmap, folio)


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_try_dup_anon_rmap_ptes(folio: i64, page: i64, nr: i64, dst_vma: Vma, src_vma: Vma) -> i64:
    """Duplicate the anon mappings of ``nr`` pages for a child at fork.

    Models: include/linux/rmap.h ``folio_try_dup_anon_rmap_ptes()``, with
    the ``dst_vma`` argument v6.15 added for CONFIG_MM_ID (the new mappings
    are the child's).  Returns 0, or -EBUSY if a page is exclusive and the
    folio may be DMA-pinned: the caller must then copy instead of sharing.
    """
    k: Kernel = vma_mm(src_vma).kernel
    mem: MemMap = k.memmap
    i: i64
    if folio_needs_cow_for_dma(src_vma, folio) and not k.bug("fork_shares_pinned_anon"):
        for i in range(page, page + nr):
            if cython.cast(i64, mem.flags[i]) & PG_anon_exclusive:
                return -EBUSY
    for i in range(page, page + nr):
        mem.flags[i] &= _NOT_PG_anon_exclusive
        mem.mapcount[i] += 1
    if cython.cast(i64, mem.order[folio]) > 0:
        folio_add_large_mapcount(mem, folio, nr, dst_vma)
    count(k.counters, RMAP_OPS, 1)
    count(k.counters, RMAP_PAGES, nr)
    rmap_changed(k, folio)
    return 0


_NOT_PG_anon_exclusive = cython.declare(i64, 0xFFFFFFFF & ~(1 << 8))


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_try_dup_anon_rmap_pmd(folio: i64, dst_vma: Vma, src_vma: Vma) -> i64:
    """Models: include/linux/rmap.h ``folio_try_dup_anon_rmap_pmd()`` (``dst_vma``: v6.15).

    Also the entire-mapcount dup of a OnePlus 64K block (``page_dup_rmap(page,
    true)``; policy="oneplus").
    """
    k: Kernel = vma_mm(src_vma).kernel
    mem: MemMap = k.memmap
    if folio_needs_cow_for_dma(src_vma, folio) and cython.cast(i64, mem.flags[folio]) & PG_anon_exclusive:
        return -EBUSY
    # A OnePlus 64K block (``page_dup_rmap(page, true)`` in
    # copy_present_cont_pte()) clears every page's flag.
    ClearPageAnonExclusive(
        mem,
        folio,
        1
        if cython.cast(i64, mem.order[folio]) >= k.PMD_ORDER
        else cython.cast(i64, 1) << cython.cast(i64, mem.order[folio]),
    )
    mem.entire_mapcount[folio] += 1
    folio_add_large_mapcount(mem, folio, 1, dst_vma)
    count(k.counters, RMAP_OPS, 1)
    return 0


@cython.ccall
def folio_dup_file_rmap_ptes(folio: i64, page: i64, nr: i64, dst_vma: Vma) -> None:
    """Models: include/linux/rmap.h ``folio_dup_file_rmap_ptes()``."""
    k: Kernel = vma_mm(dst_vma).kernel
    mem: MemMap = k.memmap
    i: i64
    for i in range(page, page + nr):
        mem.mapcount[i] += 1
    if cython.cast(i64, mem.order[folio]) > 0:
        folio_add_large_mapcount(mem, folio, nr, dst_vma)
    count(k.counters, RMAP_OPS, 1)
    count(k.counters, RMAP_PAGES, nr)
    rmap_changed(k, folio)


@cython.ccall
def folio_add_file_rmap_ptes(folio: i64, page: i64, nr: i64, vma: Vma) -> None:
    """Models: mm/rmap.c ``folio_add_file_rmap_ptes()``."""
    folio_dup_file_rmap_ptes(folio, page, nr, vma)


@cython.ccall
def folio_remove_rmap_ptes(folio: i64, page: i64, nr: i64, vma: Vma) -> None:
    """Remove ``nr`` PTE mappings of consecutive pages of ``folio``.

    Models: mm/rmap.c ``folio_remove_rmap_ptes()``: an anon large folio left
    partially mapped is queued for deferred split.
    """
    k: Kernel = vma_mm(vma).kernel
    mem: MemMap = k.memmap
    i: i64
    underflow: cython.bint = False
    for i in range(page, page + nr):
        mem.mapcount[i] -= 1
        if cython.cast(i64, mem.mapcount[i]) < 0:
            underflow = True
    if underflow:
        raise KernelBug("VM_BUG_ON_PAGE", f"mapcount underflow in {mem.describe(folio)}", None)
    n: i64
    if cython.cast(i64, mem.order[folio]) > 0:
        folio_sub_large_mapcount(mem, folio, nr, vma)
        if (
            folio_test_anon(mem, folio)
            and cython.cast(i64, mem.large_mapcount[folio]) > 0
            and cython.cast(i64, mem.entire_mapcount[folio]) == 0
        ):
            n = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
            for i in range(folio, folio + n):
                if cython.cast(i64, mem.mapcount[i]) == 0:
                    deferred_split_folio(folio, k)
                    break
    count(k.counters, RMAP_OPS, 1)
    count(k.counters, RMAP_REMOVE, 1)
    count(k.counters, RMAP_PAGES, nr)


@cython.ccall
def folio_remove_rmap_pmd(folio: i64, vma: Vma) -> None:
    """Models: mm/rmap.c ``folio_remove_rmap_pmd()``."""
    k: Kernel = vma_mm(vma).kernel
    mem: MemMap = k.memmap
    mem.entire_mapcount[folio] -= 1
    folio_sub_large_mapcount(mem, folio, 1, vma)
    count(k.counters, RMAP_OPS, 1)
    count(k.counters, RMAP_REMOVE, 1)
    n: i64
    i: i64
    if (
        folio_test_anon(mem, folio)
        and cython.cast(i64, mem.large_mapcount[folio]) > 0
        and cython.cast(i64, mem.entire_mapcount[folio]) == 0
    ):
        n = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
        for i in range(folio, folio + n):
            if cython.cast(i64, mem.mapcount[i]) == 0:
                deferred_split_folio(folio, k)
                break


@cython.ccall
def deferred_split_folio(folio: i64, k: Kernel) -> None:
    """Queue a partially mapped anon folio for splitting under memory pressure.

    Models: mm/huge_memory.c ``deferred_split_folio(folio, partially_mapped=true)``:
    ``thp_deferred_split_page`` only for PMD-mappable folios
    (``folio_test_pmd_mappable``), ``mthp.<size>.split_deferred`` for all,
    and the folio counts in ``nr_anon_partially_mapped`` until it leaves the
    queue (``Kernel.folio_undo_large_rmappable``).  A folio in the swap
    cache is not queued (reclaim is already handling it: the check is in
    6.12 to 7.2), so a large folio unmapped by swap-out is not counted.
    OnePlus: a block folio is never queued (the design's
    ``page_remove_rmap()`` and ``page_remove_anon_compound_rmap()`` leave
    ``deferred_split_huge_page()`` out under CONFIG_CONT_PTE_HUGEPAGE;
    reclaim takes a block whole).
    """
    if folio in k.deferred_split:
        return
    flags: i64 = cython.cast(i64, k.memmap.flags[folio])
    if flags & PG_swapcache or (k.oneplus and flags & PG_cont):
        return
    k.deferred_split.add(folio)
    # v6.12 counts the vmstat event for PMD-mappable folios only; every
    # order gets its per-size split_deferred stat.
    order: i64 = cython.cast(i64, k.memmap.order[folio])
    if order >= k.PMD_ORDER:
        count(k.counters, THP_DEFERRED_SPLIT_PAGE, 1)
    k.count_mthp_stat(order, MTHP_SPLIT_DEFERRED, 1)
    k.count_mthp_stat(order, MTHP_NR_ANON_PARTIALLY_MAPPED, 1)


def rmap_walk_ptes(k: Kernel, lo: i64, hi: i64) -> list[tuple[Any, int, int]]:
    """(mm, level-2 index, entry index) of every PTE mapping a pfn in ``[lo, hi)``.

    Models: mm/rmap.c ``rmap_walk()`` + ``page_vma_mapped_walk()`` for PTE
    mappings.  ``[lo, hi)``: pages of one folio.  As ``vma_address()`` does,
    each page is looked for only where a VMA maps its page index
    (``folio->index`` + offset, the inverse of ``linear_page_index``): a
    page mremap moved is at that address of its new VMA, whose pgoff
    followed the move (``move_vma()``).  The
    model keeps no anon_vma chains or i_mmap trees, so every VMA of every mm
    is a candidate, and a PTE counts only if it maps a pfn in the range.  The
    cost follows the VMAs and the folio's size, not the address space.
    Results: by mm (``kernel.mms`` order), then ascending address.
    """
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    out: list[tuple[Any, int, int]] = []
    if hi <= lo:
        return out
    head: i64 = cython.cast(i64, mem.head[lo])
    first: i64 = cython.cast(i64, mem.index[head]) + (lo - head)  # the page index of lo
    last: i64 = first + (hi - lo)
    shift: i64 = a.PAGE_SHIFT
    pmd_shift: i64 = a.PMD_SHIFT
    mask: i64 = a.PTRS_PER_PTE - 1
    mm: MmStruct
    v: Vma
    space: AddressSpace
    pool: PtePool
    p0: i64
    p1: i64
    p: i64
    addr: i64
    ptep: i64
    pte: u64
    pfn: i64
    for mm in k.mms:
        space = mm.space
        pool = space.pool
        for v in mm.vmas:
            p0 = max(first, v.vm_pgoff)
            p1 = min(last, v.vm_pgoff + ((v.vm_end - v.vm_start) >> shift))
            for p in range(p0, p1):
                addr = v.vm_start + ((p - v.vm_pgoff) << shift)
                ptep = space.pte_ptr(addr)
                if ptep < 0:
                    continue
                pte = pool.peek(ptep)
                if not a.pte_present(pte) or a.pte_special(pte):
                    continue
                pfn = a.pte_pfn(pte)
                if lo <= pfn < hi:
                    out.append((mm, addr >> pmd_shift, (addr >> shift) & mask))
    return out


def rmap_walk_pmds(k: Kernel, folio: i64) -> list[tuple[Any, Any, int]]:
    """(mm, vma, level-2 index) of every huge PMD mapping ``folio``.

    Models: mm/rmap.c ``rmap_walk()`` + ``page_vma_mapped_walk()`` where
    it stops at a PMD-mapped THP (``pvmw.pte`` NULL).  As
    ``rmap_walk_ptes()``: every VMA of every mm whose page offsets cover
    the folio is a candidate at the folio's linear address.  Empty for a
    folio below PMD order or mapped by no PMD (no entire mapcount).
    Results: by mm (``kernel.mms`` order), then ascending address.
    """
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    out: list[tuple[Any, Any, int]] = []
    if cython.cast(i64, mem.order[folio]) < k.PMD_ORDER or cython.cast(i64, mem.entire_mapcount[folio]) == 0:
        return out
    first: i64 = cython.cast(i64, mem.index[folio])
    shift: i64 = a.PAGE_SHIFT
    addr: i64
    v: Vma
    mm: MmStruct
    pmd: u64
    for mm in k.mms:
        if not mm.space.pmds:
            continue
        for v in mm.vmas:
            if not v.vm_pgoff <= first < v.vm_pgoff + ((v.vm_end - v.vm_start) >> shift):
                continue
            addr = v.vm_start + ((first - v.vm_pgoff) << shift)
            if addr & (a.PMD_SIZE - 1) or addr + a.PMD_SIZE > v.vm_end:
                continue
            pmd = mm.space.pmd_peek(addr >> a.PMD_SHIFT)
            if pmd and a.pte_pfn(a.pmd_pte(pmd)) == folio:
                out.append((mm, v, addr >> a.PMD_SHIFT))
    return out


def folio_referenced_one(
    k: Kernel, folio: i64, vma: Vma, ptes: list[tuple[int, int]], pra: list[int], pmd_index: i64 = -1
) -> bool:
    """Make the PTEs ``vma`` maps ``folio`` with old; False to end the walk.

    Models: mm/rmap.c ``folio_referenced_one()`` for PTE mappings, with the
    classic LRU (no MGLRU look-around), no mlock and no exiting mm (the model
    has neither).  ``ptes``: (address, ``pte_t *``) of the folio's PTEs in
    ``vma``, ascending; ``pra``: ``[referenced, vm_flags, mapcount]``
    (``struct folio_referenced_arg``).  v6.12: one
    ``ptep_clear_flush_young_notify()`` per PTE.  From v7.0
    (``k.young_ptes_batch``) a large folio's PTEs go one
    ``folio_pte_batch()`` at a time (bounded by the PMD and the VMA) to
    ``clear_flush_young_ptes()``, and the walk stops once it has covered
    the folio's pages.  ``referenced`` counts the VMAs with a young PTE.
    ``pmd_index`` >= 0: ``vma`` maps the folio by that huge PMD instead
    (``pmdp_clear_flush_young_notify()``, one mapping).

    Context: the folio is locked; each PTE batch under its PTL.
    """
    a: Pgtable = k.arch
    mm: MmStruct = vma_mm(vma)
    mem: MemMap = k.memmap
    order: i64 = cython.cast(i64, mem.order[folio])
    nr_pages: i64 = cython.cast(i64, 1) << order
    page_size: i64 = a.PAGE_SIZE
    pmd_size: i64 = a.PMD_SIZE
    referenced: i64 = 0
    done: i64 = 0
    j: i64 = 0
    n: i64 = len(ptes)
    addr: i64
    ptep: i64
    nr: i64
    end_addr: i64
    young: cython.bint
    if pmd_index >= 0:
        young = a.pmdp_clear_flush_young(vma, pmd_index << a.PMD_SHIFT, pmd_index)
        referenced = 1 if young else 0
        pra[2] -= 1
    while j < n:
        addr = ptes[j][0]
        ptep = ptes[j][1]
        nr = 1
        if k.young_ptes_batch:
            if order > 0:
                end_addr = min((addr & ~(pmd_size - 1)) + pmd_size, vma.vm_end)
                nr = folio_pte_batch(k, folio, ptep, a.ptep_get(ptep), (end_addr - addr) // page_size)
            young = a.clear_flush_young_ptes(vma, addr, ptep, nr)
        else:
            young = a.ptep_clear_flush_young(vma, addr, ptep)
        pte_unmap_unlock(mm, ptep)
        if young:
            referenced += 1
        done += nr
        pra[2] -= nr
        if k.young_ptes_batch and done == nr_pages:
            break
        j += 1
        while j < n and ptes[j][0] < addr + nr * page_size:
            j += 1  # the batched PTEs
    if referenced:
        pra[0] += 1
        pra[1] |= vma.vm_flags  # the model has no VM_LOCKED
    return pra[2] > 0


def folio_referenced(k: Kernel, folio: i64) -> tuple[int, int]:
    """How many VMAs map ``folio`` with a young PTE (making them old), and their flags ORed.

    Models: mm/rmap.c ``folio_referenced()`` (is_locked, no memcg): the
    rmap walk (``rmap_walk_ptes()``) calls ``folio_referenced_one()`` per
    VMA until the folio's mapcount is used up.  0 for an unmapped folio.
    A PMD-mapped THP's PMDs come first (``rmap_walk_pmds()``), one VMA
    each.  Returns ``(referenced, vm_flags)``.
    """
    mem: MemMap = k.memmap
    mapcount: i64 = folio_mapcount(mem, folio)
    if not mapcount:
        return (0, 0)
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    a: Pgtable = k.arch
    shift: i64 = a.pool.shift
    ptes_per: i64 = a.PTRS_PER_PTE
    pra: list[int] = [0, 0, mapcount]
    group: list[tuple[int, int]] = []
    for _mm, pv, pmd_index in rmap_walk_pmds(k, folio):
        if not folio_referenced_one(k, folio, pv, group, pra, pmd_index):
            return (pra[0], pra[1])
    cur: Vma | None = None
    mm: MmStruct
    addr: i64
    for mm_, idx, pos in rmap_walk_ptes(k, folio, folio + nr):
        mm = mm_
        addr = ((cython.cast(i64, idx) * ptes_per) + cython.cast(i64, pos)) << k.page_shift
        v = mm.vma_lookup(addr)
        if v is None:
            continue
        if v is not cur:
            if cur is not None and not folio_referenced_one(k, folio, cur, group, pra):
                return (pra[0], pra[1])
            cur = v
            group = []
        group.append((addr, (mm.space.pte_table(idx) << shift) | cython.cast(i64, pos)))
    if cur is not None:
        folio_referenced_one(k, folio, cur, group, pra)
    return (pra[0], pra[1])


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        RMAP_EXCLUSIVE=RMAP_EXCLUSIVE, RMAP_OPS=RMAP_OPS, RMAP_PAGES=RMAP_PAGES, RMAP_REMOVE=RMAP_REMOVE
    )
