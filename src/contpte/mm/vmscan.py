"""Memory pressure: reclaim lazyfree anon folios, page-cache folios and, with swap, anon folios.

Models: mm/vmscan.c ``shrink_folio_list()`` with mm/rmap.c
``try_to_unmap_one()`` (Linux v6.12), for what the model can reclaim
without swap.  Each candidate first goes through
``folio_check_references()``: a folio with a young PTE (the PTEs are made
old, ``folio_referenced()``) is kept, and marked PG_referenced; the next
pass reclaims it unless it was used again (activation is modelled as a
keep: the model has no LRU lists).  Then:

- a lazyfree (MADV_FREE) anon folio is unmapped PTE by PTE; each cleared
  PTE's dirty bit goes to the folio (``folio_mark_dirty``); while the folio
  is clean and nobody else holds a reference, the mapping is discarded (the
  process later reads zero there); once it is found dirty (written again
  after MADV_FREE) the PTE is restored, the folio becomes swap-backed again
  and the walk stops;
- a page-cache folio of a regular file is unmapped everywhere (gathering
  dirty bits), written back if dirty (``pageout``: its values go to the
  file's backing store) and dropped from the page cache.

- with a swap device (``Machine(swap=...)``, ``mm/swapfile.py``) a
  swap-backed anon folio is given slots for its whole order and put in
  the swap cache (``add_to_swap``; v6.10+ large folios are swapped out
  whole); when no contiguous slots are free a large folio is split and its
  pages go one by one (``swpout_fallback``); a partially mapped one is
  split first.  ``try_to_unmap`` replaces each PTE by a swap PTE (one at a
  time in every version: the unmap batching of v6.15+ is for lazyfree
  and file folios only), ``swap_writepage`` writes it and the folio leaves
  the swap cache and is freed (``__remove_mapping``).
- a PMD-mapped anon THP goes the same way (THP_SWAP): ``add_to_swap``
  needs a free cluster for its 2M (``get_swap_pages`` at PMD order),
  ``try_to_unmap`` with ``TTU_SPLIT_HUGE_PMD`` splits each PMD mapping
  into PTEs (``split_huge_pmd_locked(freeze=false)``: ``thp_split_pmd``)
  and then makes them swap PTEs, and the whole folio is written
  (``thp_swpout``, ``swpout`` of its size); with no free cluster the
  folio is split (``split_folio_to_list``, which splits the PMD first)
  and its pages go one by one (``thp_swpout_fallback``).

Under ``policy="oneplus"`` (docs/oneplus.md) a block folio (PG_cont) is
reclaimed as the design's shrink_page_list() and try_to_unmap_one() do: a
double-mapped block is kept; the whole 64K folio gets 16 slots or is kept
(never split); each VMA's block mapping is split just before it is
unmapped entry by entry (``TTU_SPLIT_HUGE_PMD``), and the walk stops,
the folio kept, where the VMA's first entry is not the block's first or
the 16 pages' mapcounts differ.  Blocks mapped whole are not skipped by
``shrink_all_memory``.

Without swap, swap-backed anon memory is not reclaimed; shmem never is.
Folios pinned or otherwise referenced are skipped, and so are PMD-mapped
lazyfree THPs (6.12 discards them whole, ``unmap_huge_pmd_locked()``: not
modelled) and PMD-mapped page-cache folios.  One
call is one full pass over memory (``shrink_all_memory``), or stops once
``target`` pages are freed; MADV_PAGEOUT gives its folios to
``shrink_folio_list`` with ``ignore_references`` (``reclaim_pages``).

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython

from ..counters import counter
from ..errors import KernelBug
from .rmap import folio_referenced, rmap_walk_pmds, rmap_walk_ptes

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from .huge_memory import split_folio, split_huge_pmd
    from .internal import (
        FPB_RESPECT_SOFT_DIRTY,
        FPB_RESPECT_WRITE,
        PtePtr,
        folio_pte_batch,
        folio_pte_batch_flags,
    )
    from .kernel import MTHP_SWPOUT_FALLBACK, Kernel
    from .memmap import (
        MemMap,
        PG_anon,
        PG_anon_exclusive,
        PG_cont,
        PG_double_map,
        PG_lazyfree,
        PG_reserved,
        PG_swapcache,
        folio_clear_dirty,
        folio_mapcount,
        folio_mapped,
        folio_mark_dirty,
        folio_maybe_dma_pinned,
        folio_ref_add,
        folio_set_referenced,
        folio_test_clear_referenced,
        folio_test_dirty,
    )
    from .mm_h import mm_counter_file, pte_unmap_unlock
    from .mm_types import MM_ANONPAGES, MM_SWAPENTS, VM_EXEC, MmStruct, Vma
    from .rmap import folio_remove_rmap_ptes
    from .shmem import File
    from .swapfile import SwapInfo, add_to_swap, delete_from_swap_cache, swap_duplicate, swap_writepage

__all__ = [
    "shrink_all_memory",
    "shrink_folio_list",
    "try_to_unmap",
    "pageout",
    "folio_check_references",
    "FOLIOREF_RECLAIM",
    "FOLIOREF_RECLAIM_CLEAN",
    "FOLIOREF_KEEP",
    "FOLIOREF_ACTIVATE",
]

# mm/vmscan.c enum folio_references.
FOLIOREF_RECLAIM = cython.declare(i64, 0)
FOLIOREF_RECLAIM_CLEAN = cython.declare(i64, 1)
FOLIOREF_KEEP = cython.declare(i64, 2)
FOLIOREF_ACTIVATE = cython.declare(i64, 3)

PGLAZYFREED = cython.declare(i64, counter("pglazyfreed"))
PGSTEAL = cython.declare(i64, counter("pgsteal"))
PGPAGEOUT = cython.declare(i64, counter("pgpgout"))
PGLAZYFREE_FAIL = cython.declare(
    i64,
    counter("pglazyfree_fail"),
)

_NOT_PG_lazyfree = cython.declare(i64, 0xFFFFFFFF ^ PG_lazyfree)
_NOT_PG_anon_exclusive = cython.declare(i64, 0xFFFFFFFF ^ (1 << 8))
THP_SWPOUT_FALLBACK = cython.declare(i64, counter("thp_swpout_fallback"))


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_check_references(k: Kernel, folio: i64) -> i64:
    """Should reclaim take ``folio``? One of the ``FOLIOREF_*`` values.

    Models: mm/vmscan.c ``folio_check_references()`` (v6.12, no VM_LOCKED,
    no rmap lock contention in the model): a folio with young PTEs
    (``folio_referenced()``, which makes them old) gets PG_referenced and is
    kept, or activated if it was already PG_referenced, is mapped young in
    more than one VMA, or is an executable file folio; one without is
    reclaimed, "clean" if it was PG_referenced and on the file LRU (a page-cache
    or lazyfree folio, ``folio_is_file_lru()``).
    """
    mem: MemMap = k.memmap
    referenced_ptes: i64
    vm_flags: i64
    referenced_ptes, vm_flags = folio_referenced(k, folio)
    referenced_folio: cython.bint = folio_test_clear_referenced(mem, folio)
    # folio_is_file_lru(): !PG_swapbacked, i.e. page cache (not shmem) or lazyfree anon.
    file_lru: cython.bint = (cython.cast(i64, mem.flags[folio]) & PG_lazyfree) != 0 or not (
        cython.cast(i64, mem.flags[folio]) & PG_anon
    )
    if referenced_ptes:
        folio_set_referenced(mem, folio)
        if referenced_folio or referenced_ptes > 1:
            return FOLIOREF_ACTIVATE
        if vm_flags & VM_EXEC and file_lru:
            return FOLIOREF_ACTIVATE
        return FOLIOREF_KEEP
    if referenced_folio and file_lru:
        return FOLIOREF_RECLAIM_CLEAN
    return FOLIOREF_RECLAIM


@cython.ccall
@cython.exceptval(-1, check=True)
def try_to_unmap(k: Kernel, folio: i64, lazyfree: cython.bint) -> cython.bint:
    """Unmap every PTE of ``folio``; False if a lazyfree folio turned out dirty (kept).

    Models: mm/rmap.c ``try_to_unmap()`` -> ``try_to_unmap_one()``, one
    PTE at a time (``ptep_clear_flush``: on arm64 the first PTE of a folded
    block unfolds it); with ``lazyfree_unmap_batch`` (v6.15) a lazyfree
    large folio's PTEs one ``folio_pte_batch()`` at a time
    (``get_and_clear_ptes()`` + ``flush_tlb_range()``: on arm64 a whole
    folded block is cleared without an unfold).  A PMD-mapped swap-cache
    anon folio's PMDs are split first (``TTU_SPLIT_HUGE_PMD``, which
    ``shrink_folio_list`` passes for a ``folio_test_pmd_mappable`` folio:
    ``split_huge_pmd_locked(vma, addr, pmd, false, folio)`` per VMA, then
    the walk restarts on the PTEs).  A swap-cache anon folio's PTEs become swap PTEs
    (``swap_duplicate`` each, exclusive where the page was
    PageAnonExclusive, which the page loses; ``MM_ANONPAGES`` ->
    ``MM_SWAPENTS``).  ``k``: the mem_map's kernel; ``folio``: the head pfn.

    Context: the caller holds no PTL; reclaim's folio lock.
    """
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    # An anon folio in the swap cache (not lazyfree) is unmapped to swap PTEs.
    swapped: cython.bint = not lazyfree and (cython.cast(i64, mem.flags[folio]) & PG_swapcache) != 0
    si: SwapInfo = k.swap  # None without swap: used only when swapped
    entry: i64
    anon_exclusive: cython.bint
    swp_pte: u64
    shift: i64 = a.pool.shift
    ptes_per: i64 = a.PTRS_PER_PTE
    mm: MmStruct
    vma: Vma
    slot: i64
    addr: i64
    ptep: i64
    pteval: u64
    page: i64
    batch: i64
    max_nr: i64
    ptent: PtePtr
    skip_mm: object = None
    skip_end: i64 = 0
    if swapped:
        for _mm, pv, pmd_index in rmap_walk_pmds(k, folio):
            split_huge_pmd(pv, pmd_index, pmd_index << a.PMD_SHIFT)  # TTU_SPLIT_HUGE_PMD
    # OnePlus: a block folio's mappings are split VMA by VMA before they are
    # unmapped (try_to_unmap_one() with TTU_SPLIT_HUGE_PMD); its first entry
    # in each VMA is checked (cont_pte_unmap_first_entry()).
    cont: cython.bint = k.oneplus and (cython.cast(i64, mem.flags[folio]) & PG_cont) != 0
    cur_vma: object = None
    first_entry: cython.bint = False
    # Bug catalog chp_reclaim_double_map_whole: "mapped whole" decided once.
    bug_whole: cython.bint = (
        cont
        and swapped
        and cython.cast(i64, mem.entire_mapcount[folio]) > 0
        and k.bug("chp_reclaim_double_map_whole")
    )
    for mm_, idx, pos in rmap_walk_ptes(k, folio, folio + nr):
        mm = mm_
        slot = mm.space.pte_table(idx)
        if slot < 0:
            continue
        addr = ((cython.cast(i64, idx) * ptes_per) + cython.cast(i64, pos)) << k.page_shift
        if mm is skip_mm and addr < skip_end:
            continue  # unmapped with the batch before
        v = mm.vma_lookup(addr)
        if v is None:
            continue
        vma = v
        ptep = (slot << shift) | cython.cast(i64, pos)
        if cont and v is not cur_vma:
            cur_vma = v
            first_entry = True
            from . import cont_pte_hugepage as chp

            if bug_whole:
                chp.cont_pte_unmap_block_whole(vma, addr, ptep, folio)
                skip_mm = mm
                skip_end = (addr & ~((chp.HPAGE_CONT_PTE_NR << k.page_shift) - 1)) + (
                    chp.HPAGE_CONT_PTE_NR << k.page_shift
                )
                continue
            if a.pte_cont(a.ptep_get(ptep)):
                chp.split_huge_cont_pte_address(vma, addr)
        batch = 1
        if lazyfree and k.lazyfree_unmap_batch and nr > 1 and not cont:
            # folio_unmap_pte_batch() (v6.15): a lazyfree folio's run of PTEs
            # within the VMA and the page table, cleared at once; from 6.19
            # the run keeps to one write and soft-dirty state, so that the
            # restore below cannot make a read-only PTE writable.
            max_nr = (min((addr & ~(a.PMD_SIZE - 1)) + a.PMD_SIZE, vma.vm_end) - addr) >> k.page_shift
            if k.lazyfree_batch_respect_write:
                ptent = PtePtr.__new__(PtePtr)
                ptent.value = a.ptep_get(ptep)
                batch = folio_pte_batch_flags(
                    k, folio, vma, ptep, ptent, max_nr, FPB_RESPECT_WRITE | FPB_RESPECT_SOFT_DIRTY
                )
            else:
                batch = folio_pte_batch(k, folio, ptep, a.ptep_get(ptep), max_nr)
        if batch > 1:
            pteval = a.get_and_clear_ptes(mm, addr, ptep, batch)
            a.flush_tlb_range(vma, addr, addr + (batch << k.page_shift))
            page = a.pte_pfn(pteval)
            if a.pte_dirty(pteval):
                folio_mark_dirty(mem, folio)
            if cython.cast(i64, mem.refcount[folio]) == folio_mapcount(mem, folio) and not folio_test_dirty(
                mem, folio
            ):
                mm.add_mm_counter(MM_ANONPAGES, -batch)
                count(k.counters, PGLAZYFREED, batch)
                folio_remove_rmap_ptes(folio, page, batch, vma)
                pte_unmap_unlock(mm, ptep)
                k.folio_put(folio, batch)
                skip_mm = mm
                skip_end = addr + (batch << k.page_shift)
                continue
            # Written again since MADV_FREE (or referenced): restore, swap-backed again.
            a.set_ptes(mm, addr, ptep, pteval, batch)
            mem.flags[folio] &= _NOT_PG_lazyfree
            count(k.counters, PGLAZYFREE_FAIL, 1)
            pte_unmap_unlock(mm, ptep)
            return False
        pteval = a.ptep_clear_flush(vma, addr, ptep)
        page = a.pte_pfn(pteval)
        if cont and first_entry:
            first_entry = False
            from . import cont_pte_hugepage as chp

            if not chp.cont_pte_unmap_first_entry(k, folio, addr):
                a.set_pte_at(mm, addr, ptep, pteval)
                pte_unmap_unlock(mm, ptep)
                return False
        if a.pte_dirty(pteval):
            folio_mark_dirty(mem, folio)
        if swapped:
            # Store the swap location in the PTE (try_to_unmap_one(), anon).
            entry = cython.cast(i64, si.folio_swap[folio]) + (page - folio)
            if swap_duplicate(si, entry) < 0:
                raise KernelBug(
                    "swap_duplicate", f"slot {entry:#x} of a swap-cache folio has no cache flag", addr
                )
            anon_exclusive = (cython.cast(i64, mem.flags[page]) & PG_anon_exclusive) != 0
            if anon_exclusive:
                # folio_try_share_anon_rmap_pte(): the caller excluded pinned folios.
                mem.flags[page] &= _NOT_PG_anon_exclusive
            mm.add_mm_counter(MM_ANONPAGES, -1)
            mm.add_mm_counter(MM_SWAPENTS, 1)
            swp_pte = a.swp_entry(si.type, entry)
            if anon_exclusive:
                swp_pte = a.pte_swp_mkexclusive(swp_pte)
            if a.pte_uffd_wp(pteval):
                swp_pte = a.pte_swp_mkuffd_wp(swp_pte)
            a.set_pte_at(mm, addr, ptep, swp_pte)
        elif lazyfree:
            if cython.cast(i64, mem.refcount[folio]) == folio_mapcount(mem, folio) and not folio_test_dirty(
                mem, folio
            ):
                mm.add_mm_counter(MM_ANONPAGES, -1)
                count(k.counters, PGLAZYFREED, 1)
            else:
                # Written again since MADV_FREE (or referenced): remap, swap-backed again.
                a.set_pte_at(mm, addr, ptep, pteval)
                mem.flags[folio] &= _NOT_PG_lazyfree
                count(k.counters, PGLAZYFREE_FAIL, 1)
                pte_unmap_unlock(mm, ptep)
                return False
        else:
            mm.add_mm_counter(mm_counter_file(folio, k), -1)
        folio_remove_rmap_ptes(folio, page, 1, vma)
        pte_unmap_unlock(mm, ptep)
        k.folio_put(folio, 1)
    return True


@cython.ccall
def pageout(k: Kernel, folio: i64) -> None:
    """Write a dirty page-cache folio back to its file (synchronously) and clean it.

    Models: mm/vmscan.c ``pageout()`` with a synchronous ``->writepage``.
    """
    mem: MemMap = k.memmap
    f = k.files.get(cython.cast(i64, mem.mapping[folio]))
    if f is None:
        return
    file: File = f
    first: i64 = cython.cast(i64, mem.index[folio])
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    i: i64
    for i in range(nr):
        file.disk[first + i] = k.arch.memcpy_from_page(folio + i)
    folio_clear_dirty(mem, folio)
    count(k.counters, PGPAGEOUT, nr)


@cython.cfunc
def _list_add_tails(k: Kernel, head: i64, nr: i64, folio_list: Any) -> None:
    """``split_folio_to_list()``: the pages a split left mapped join the list."""
    mem: MemMap = k.memmap
    p: i64
    for p in range(head + 1, head + nr):
        if cython.cast(i64, mem.head[p]) == p:
            folio_list.append(p)


@cython.ccall
@cython.exceptval(-1, check=True)
def shrink_folio_list(k: Kernel, folio_list: Any, ignore_references: cython.bint, target: i64) -> i64:
    """Reclaim the folios of ``folio_list`` (head pfns); returns the pages freed.

    Models: mm/vmscan.c ``shrink_folio_list()`` (v6.12) for the folios
    the model reclaims (see the module docstring).  ``ignore_references``:
    MADV_PAGEOUT's ``reclaim_pages()`` skips ``folio_check_references()``.
    Pages of a folio split here are appended to the list.  Stops once
    ``target`` pages are freed (``target`` <= 0: no limit).
    """
    mem: MemMap = k.memmap
    freed: i64 = 0
    i: i64 = 0
    h: i64
    n: i64
    order: i64
    flags: i64
    refs: i64
    file: File
    si: SwapInfo
    while i < len(folio_list) and (target <= 0 or freed < target):
        h = folio_list[i]
        i += 1
        if (
            k.oneplus
            and cython.cast(i64, mem.flags[h]) & PG_double_map
            and not k.bug("chp_reclaim_double_map_whole")
        ):
            # OnePlus: a block mapped whole in one mm and split in another is
            # kept ("Skip doublemap pages in memory reclamation").
            continue
        n = cython.cast(i64, 1) << cython.cast(i64, mem.order[h])
        flags = cython.cast(i64, mem.flags[h])
        if flags & PG_anon:
            if flags & PG_lazyfree:
                if cython.cast(i64, mem.entire_mapcount[h]):
                    continue  # unmap_huge_pmd_locked(): not modelled
                if (
                    (ignore_references or folio_check_references(k, h) <= FOLIOREF_RECLAIM_CLEAN)
                    and not folio_maybe_dma_pinned(mem, h)
                    and cython.cast(i64, mem.refcount[h]) == folio_mapcount(mem, h)
                    and try_to_unmap(k, h, True)
                ):
                    freed += n
                    count(k.counters, PGSTEAL, n)
                continue
            if k.swap is None:
                continue  # no swap: anon memory stays
            si = k.swap
            refs = FOLIOREF_RECLAIM if ignore_references else folio_check_references(k, h)
            if refs > FOLIOREF_RECLAIM_CLEAN or folio_maybe_dma_pinned(mem, h):
                continue
            folio_ref_add(mem, h, 1)  # folio_isolate_lru(): the isolation reference
            if not flags & PG_swapcache:
                order = cython.cast(i64, mem.order[h])
                if n > 1 and cython.cast(i64, mem.refcount[h]) != folio_mapcount(mem, h) + 1:
                    # can_split_folio(folio, 1): "cannot split folio, skip it".
                    k.folio_put(h, 1)
                    continue
                if n > 1 and h in k.deferred_split and not (k.oneplus and flags & PG_cont):
                    # Split partially mapped folios right away.
                    if split_folio(k, h):
                        k.folio_put(h, 1)
                        continue
                    _list_add_tails(k, h, n, folio_list)
                    n = 1
                if not add_to_swap(k, si, h):
                    if n == 1 or (k.oneplus and flags & PG_cont):
                        # OnePlus keeps a block no 16 free slots take (not split).
                        k.folio_put(h, 1)
                        continue
                    # Fall back to swapping out the pages one by one.
                    if split_folio(k, h):
                        k.folio_put(h, 1)
                        continue
                    if order == k.PMD_ORDER:
                        count(k.counters, THP_SWPOUT_FALLBACK, 1)
                    k.count_mthp_stat(order, MTHP_SWPOUT_FALLBACK, 1)
                    _list_add_tails(k, h, n, folio_list)
                    n = 1
                    if not add_to_swap(k, si, h):
                        k.folio_put(h, 1)
                        continue
            if folio_mapped(mem, h):
                try_to_unmap(k, h, False)
                if folio_mapped(mem, h):
                    k.folio_put(h, 1)
                    continue
            if folio_test_dirty(mem, h):
                swap_writepage(k, si, h)  # pageout() -> swap_writepage()
            if cython.cast(i64, mem.flags[h]) & PG_swapcache:
                # __remove_mapping(): only the isolation and the swap cache hold it.
                if cython.cast(i64, mem.refcount[h]) != 1 + n:
                    k.folio_put(h, 1)
                    continue
                delete_from_swap_cache(k, si, h)
            elif cython.cast(i64, mem.refcount[h]) != 1:
                k.folio_put(h, 1)
                continue
            k.folio_put(h, 1)
            freed += n
            count(k.counters, PGSTEAL, n)
            continue
        f = k.files.get(cython.cast(i64, mem.mapping[h]))
        # The page cache holds one reference; any other is a user we must not disturb.
        if (
            f is None
            or cython.cast(File, f).shmem
            or cython.cast(i64, mem.entire_mapcount[h])
            or (not ignore_references and folio_check_references(k, h) > FOLIOREF_RECLAIM_CLEAN)
            or folio_maybe_dma_pinned(mem, h)
            or cython.cast(i64, mem.refcount[h]) != 1 + folio_mapcount(mem, h)
        ):
            continue
        file = f
        try_to_unmap(k, h, False)
        if folio_test_dirty(mem, h):
            pageout(k, h)
        file.forget_folio(h)
        k.folio_put(h, 1)
        freed += n
        count(k.counters, PGSTEAL, n)
    return freed


@cython.ccall
@cython.exceptval(-1, check=True)
def shrink_all_memory(k: Kernel, target: i64 = 0) -> i64:
    """One reclaim pass over every folio; returns the pages freed.

    Models: mm/vmscan.c ``shrink_all_memory()`` as one pass of
    ``shrink_folio_list()`` over the folios in pfn order (no LRU lists):
    lazyfree anon, regular page-cache and (with swap) swap-backed anon
    folios, PMD-mapped THPs among them (see the module docstring).  ``target`` > 0: stop once that
    many pages are freed.
    """
    mem: MemMap = k.memmap
    nr_frames: i64 = mem.nr_frames
    freed: i64 = 0
    h: i64 = 0
    n: i64
    flags: i64
    one: Any
    while h < nr_frames and (target <= 0 or freed < target):
        if cython.cast(i64, mem.head[h]) != h:
            h += 1  # a tail page or a free frame
            continue
        n = cython.cast(i64, 1) << cython.cast(i64, mem.order[h])
        flags = cython.cast(i64, mem.flags[h])
        if flags & PG_reserved or h == k.huge_zero_pfn:
            h += n
            continue
        one = [h]
        freed += shrink_folio_list(k, one, False, target - freed if target > 0 else 0)
        h += n
    return freed


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        PGLAZYFREED=PGLAZYFREED,
        PGSTEAL=PGSTEAL,
        PGPAGEOUT=PGPAGEOUT,
        PGLAZYFREE_FAIL=PGLAZYFREE_FAIL,
        FOLIOREF_RECLAIM=FOLIOREF_RECLAIM,
        FOLIOREF_RECLAIM_CLEAN=FOLIOREF_RECLAIM_CLEAN,
        FOLIOREF_KEEP=FOLIOREF_KEEP,
        FOLIOREF_ACTIVATE=FOLIOREF_ACTIVATE,
        THP_SWPOUT_FALLBACK=THP_SWPOUT_FALLBACK,
    )
