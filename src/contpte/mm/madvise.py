"""madvise: DONTNEED, FREE, COLD, PAGEOUT, HUGEPAGE/NOHUGEPAGE, DONTFORK/DOFORK.

Models: mm/madvise.c (Linux v6.12).

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython

from ..counters import counter

if not cython.compiled:
    from ..arch.pgtable import CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG, Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from .huge_memory import split_folio, split_huge_pmd
    from .internal import FPB_MERGE_YOUNG_DIRTY, PtePtr, folio_pte_batch_flags, swap_pte_batch
    from .kernel import Kernel
    from .memmap import (
        MemMap,
        PG_lazyfree,
        PG_swapcache,
        folio_clear_dirty,
        folio_likely_mapped_shared,
        folio_mapcount,
        folio_maybe_dma_pinned,
        folio_maybe_mapped_shared,
        folio_ref_add,
        folio_test_anon,
        folio_test_clear_referenced,
        folio_test_dirty,
    )
    from .memory import zap_page_range_single
    from .mm_h import pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio
    from .mm_types import (
        MM_SWAPENTS,
        VM_CONT_PTE,
        VM_DONTCOPY,
        VM_HUGEPAGE,
        VM_NOHUGEPAGE,
        VM_SHARED,
        MmStruct,
        Vma,
        vma_mm,
    )
    from .mmap import split_vma, vma_merge_around
    from .mmu_gather import MmuGather
    from .swapfile import folio_free_swap, free_swap_and_cache_nr
    from .vmscan import shrink_folio_list

__all__ = [
    "do_madvise",
    "madvise_free_huge_pmd",
    "madvise_free_pte_range",
    "madvise_free_single_vma",
    "madvise_update_vma",
    "madvise_cold_or_pageout_pte_range",
    "ADVICE",
]

MADV_DONTNEED = cython.declare(i64, 4)
MADV_FREE = cython.declare(i64, 8)
MADV_DONTFORK = cython.declare(i64, 10)
MADV_DOFORK = cython.declare(i64, 11)
MADV_HUGEPAGE = cython.declare(i64, 14)
MADV_NOHUGEPAGE = cython.declare(i64, 15)
MADV_COLD = cython.declare(i64, 20)
MADV_PAGEOUT = cython.declare(i64, 21)
MADV_COLLAPSE = cython.declare(i64, 25)

ADVICE: dict[str, int] = {
    "dontneed": 4,
    "free": 8,
    "hugepage": 14,
    "nohugepage": 15,
    "dontfork": 10,
    "dofork": 11,
    "cold": 20,
    "pageout": 21,
    "collapse": 25,
}
"""The advice the model takes, by name, with its ``MADV_*`` value."""

LAZYFREE = cython.declare(i64, counter("madvise.lazyfree_pages"))
FREE_SKIPPED = cython.declare(
    i64,
    counter("madvise.free_split_skipped"),
)

ENOMEM = cython.declare(i64, 12)
EINVAL = cython.declare(i64, 22)


@cython.ccall
def madvise_update_vma(vma: Vma, start: i64, end: i64, set_: i64, clear: i64) -> None:
    """Set ``set_`` and clear ``clear`` in the flags of ``[start, end)`` of ``vma``.

    Models: mm/madvise.c ``madvise_update_vma()``: split, set flags, merge.
    """
    mm: MmStruct = vma_mm(vma)
    newflags: i64 = (vma.vm_flags | set_) & ~clear
    if newflags == vma.vm_flags:
        return
    if vma.vm_start < start:
        vma = split_vma(mm, vma, start)
    if vma.vm_end > end:
        split_vma(mm, vma, end)
    vma.vm_flags = newflags
    vma_merge_around(mm, vma)


@cython.cfunc
def folio_mark_lazyfree(k: Kernel, folio: i64) -> None:
    """Make an anon folio lazyfree: reclaim may discard it while it stays clean.

    Models: mm/swap.c ``folio_mark_lazyfree()`` (v6.12): only a swap-backed
    anon folio changes (the kernel clears PG_swapbacked, the model sets
    ``PG_lazyfree``) and loses PG_referenced; ``PGLAZYFREE`` counts the
    folio's pages then.
    """
    mem: MemMap = k.memmap
    if folio_test_anon(mem, folio) and not cython.cast(i64, mem.flags[folio]) & PG_lazyfree:
        mem.flags[folio] |= PG_lazyfree
        folio_test_clear_referenced(mem, folio)  # lru_lazyfree(): folio_clear_referenced()
        count(k.counters, LAZYFREE, cython.cast(i64, 1) << cython.cast(i64, mem.order[folio]))


@cython.ccall
@cython.exceptval(-1, check=True)
def madvise_free_huge_pmd(tlb: MmuGather, vma: Vma, pmd_index: i64, addr: i64, next_: i64) -> cython.bint:
    """MADV_FREE of a PMD-mapped THP; True if done, False to go on PTE by PTE.

    Models: mm/huge_memory.c ``madvise_free_huge_pmd()`` (v6.12): the huge
    zero page and a folio likely mapped by another process are left alone
    (the PMD path checks sharing always, unlike the PTE path); a range that
    covers only part of the PMD splits the folio (the PTE path then does
    its part); otherwise the folio is cleaned and, if the PMD is young or
    dirty, the PMD is made old and clean (``pmdp_invalidate``, then
    ``set_pmd_at``) and its range queued for the gather's flush.

    Context: mmap_lock held for read; ``[addr, next_)`` within one PMD of ``vma``.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    orig_pmd: u64 = a.pmdp_get(mm, pmd_index)
    pte: u64 = a.pmd_pte(orig_pmd)
    pfn: i64 = a.pte_pfn(pte)
    if pfn == k.huge_zero_pfn or a.pte_special(pte):
        return False
    folio: i64 = cython.cast(i64, mem.head[pfn])
    if (
        folio_maybe_mapped_shared(mem, folio)
        if k.maybe_mapped_shared
        else folio_likely_mapped_shared(mem, folio)
    ):
        return False
    if next_ - addr != a.PMD_SIZE:
        folio_ref_add(mem, folio, 1)  # folio_get() across the unlocked split
        # split_folio(): refused while someone else holds a reference
        # (can_split_folio(), before anything is unmapped); otherwise the
        # PMD goes first (try_to_migrate() with TTU_SPLIT_HUGE_PMD), and
        # the PTE path then finds order-0 folios.
        extra: i64 = cython.cast(i64, mem.refcount[folio]) - folio_mapcount(mem, folio)
        if extra == 1 and not folio_maybe_dma_pinned(mem, folio):
            split_huge_pmd(vma, pmd_index, addr)
            split_folio(k, folio)
        k.folio_put(folio, 1)
        return False
    folio_clear_dirty(mem, folio)
    if a.pte_young(pte) or a.pte_dirty(pte):
        a.pmdp_invalidate(vma, addr, pmd_index)
        pte = a.pte_mkclean(a.pte_mkold(pte))
        a.set_pmd_at(mm, addr, pmd_index, a.pte_pmd(pte))
        tlb.tlb_remove_pmd_tlb_entry(addr & ~(a.PMD_SIZE - 1), a.PMD_SIZE)
    folio_mark_lazyfree(k, folio)
    return True


@cython.ccall
def madvise_free_pte_range(tlb: MmuGather, vma: Vma, addr: i64, end: i64) -> None:
    """MADV_FREE of the PTEs of one PMD range: clean them and mark their anon folios lazyfree.

    Models: mm/madvise.c ``madvise_free_pte_range()`` (v6.12), the
    ``pmd_entry`` of the walk: a PMD-mapped THP goes to
    ``madvise_free_huge_pmd``.  A large folio the range covers wholly is one
    batch (``folio_pte_batch_flags(FPB_MERGE_YOUNG_DIRTY)``: young/dirty of the
    batch merged into the first PTE; v6.12 gathered them through
    ``&any_young``/``&any_dirty``, the same); one only
    partly covered is split first (``split_folio``: the PTL is dropped
    around it) and its pages are then looked at again, unless it is likely
    shared (or cannot be split): then the batch is skipped.  Sharing is
    checked only for a folio that is dirty (PG_dirty) or in the swap cache:
    a clean folio another process maps is made lazyfree all the same (its
    other mappings' dirty PTEs keep reclaim from discarding it).  PTEs are
    cleaned (``clear_young_dirty_ptes``) and queued for the flush only if
    young or dirty.

    Context: mmap_lock held for read; ``[addr, end)`` within one PMD of ``vma``.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    page_shift: i64 = k.page_shift
    pmd_index: i64 = addr >> a.PMD_SHIFT
    if mm.space.pmds and pmd_index in mm.space.pmds:
        if madvise_free_huge_pmd(tlb, vma, pmd_index, addr, end):
            return
    start_pte: i64 = pte_offset_map_lock(mm, addr, False)
    if start_pte < 0:
        return
    ptep: i64 = start_pte
    ptent: u64
    nr: i64
    folio: i64
    nr_pages: i64
    err: i64
    i: i64
    swapcache: cython.bint
    ptentp: PtePtr = PtePtr(0)
    while addr < end:
        nr = 1
        ptent = a.ptep_get(ptep)
        if ptent != 0 and not a.pte_present(ptent):
            # A swap entry: the page's content is dropped (free_swap_and_cache_nr()).
            nr = swap_pte_batch(a, ptep, (end - addr) >> page_shift, ptent)
            mm.add_mm_counter(MM_SWAPENTS, -nr)
            free_swap_and_cache_nr(k, a.swp_offset(ptent), nr)
            for i in range(nr):  # clear_not_present_full_ptes()
                a.pte_clear(mm, addr + (i << page_shift), ptep + i)
        elif a.pte_present(ptent):
            folio = vm_normal_folio(vma, addr, ptent)
            if folio >= 0 and folio_test_anon(mem, folio):
                if cython.cast(i64, mem.order[folio]) > 0:
                    # madvise_folio_pte_batch(): young and dirty of the batch
                    # merged into ptent.
                    ptentp.value = ptent
                    nr = folio_pte_batch_flags(
                        k, folio, None, ptep, ptentp, (end - addr) >> page_shift, FPB_MERGE_YOUNG_DIRTY
                    )
                    ptent = ptentp.value
                    if nr < (cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])):
                        shared = (
                            folio_maybe_mapped_shared(mem, folio)
                            if k.maybe_mapped_shared
                            else folio_likely_mapped_shared(mem, folio)
                        )
                        if not shared:
                            folio_ref_add(mem, folio, 1)  # folio_get() across the unlocked split
                            pte_unmap_unlock(mm, start_pte)
                            err = split_folio(k, folio)
                            k.folio_put(folio, 1)
                            if k.yield_hook is not None:
                                k.yield_hook("madvise_free_pte_range", mm, addr)
                            # pte_offset_map_lock() again: the table may be gone.
                            start_pte = pte_offset_map_lock(mm, addr, False)
                            if start_pte < 0:
                                return
                            ptep = start_pte
                            if not err:
                                continue  # nr = 0: look at this PTE again
                        count(k.counters, FREE_SKIPPED, 1)
                        ptep += nr
                        addr += nr << page_shift
                        continue
                # A dirty or swap-cache folio must be exclusive (a folio
                # wholly mapped here is iff its mapcount equals its page
                # count), and leaves the swap cache.
                swapcache = (cython.cast(i64, mem.flags[folio]) & PG_swapcache) != 0
                if swapcache or folio_test_dirty(mem, folio):
                    nr_pages = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
                    if folio_mapcount(mem, folio) != nr_pages or (
                        swapcache and not folio_free_swap(k, k.swap, folio)
                    ):
                        ptep += nr
                        addr += nr << page_shift
                        continue
                    folio_clear_dirty(mem, folio)
                if a.pte_young(ptent) or a.pte_dirty(ptent):
                    a.clear_young_dirty_ptes(vma, addr, ptep, nr, CYDP_CLEAR_YOUNG | CYDP_CLEAR_DIRTY)
                    if not k.bug("madvise_free_no_tlb_entries"):
                        tlb.tlb_remove_tlb_entries(ptep, nr, addr)
                folio_mark_lazyfree(k, folio)
        ptep += nr
        addr += nr << page_shift
    pte_unmap_unlock(mm, start_pte)


@cython.ccall
@cython.exceptval(-1, check=True)
def madvise_free_single_vma(vma: Vma, start_addr: i64, end_addr: i64) -> i64:
    """MADV_FREE of ``[start_addr, end_addr)`` of one VMA, with a gather of its own; 0 or -EINVAL.

    Models: mm/madvise.c ``madvise_free_single_vma()`` (v6.12): anonymous
    VMAs only; ``tlb_gather_mmu``, ``tlb_start_vma``, the page walk
    (``madvise_free_pte_range`` per PMD), ``tlb_end_vma`` (the flush of the
    VMA's range), ``tlb_finish_mmu``.

    Context: mmap_lock held for read.
    """
    if vma.vm_file is not None or vma.vm_flags & VM_SHARED:
        return -EINVAL  # !vma_is_anonymous(vma)
    mm: MmStruct = vma_mm(vma)
    pmd_size: i64 = mm.kernel.arch.PMD_SIZE
    addr: i64 = max(vma.vm_start, start_addr)
    end: i64 = min(vma.vm_end, end_addr)
    if addr >= end:
        return -EINVAL
    if mm.kernel.oneplus:
        from .cont_pte_hugepage import split_cont_pte_range

        split_cont_pte_range(vma, addr, end)
    tlb: MmuGather = MmuGather(mm, False)
    tlb.tlb_start_vma(vma)
    nxt: i64
    while addr < end:
        nxt = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        madvise_free_pte_range(tlb, vma, addr, nxt)
        addr = nxt
    tlb.tlb_end_vma(vma)
    tlb.tlb_finish_mmu()
    return 0


@cython.ccall
def madvise_cold_or_pageout_pte_range(vma: Vma, addr: i64, end: i64, pageout: cython.bint) -> None:
    """MADV_COLD / MADV_PAGEOUT of the PTEs of one PMD range.

    Models: mm/madvise.c ``madvise_cold_or_pageout_pte_range()`` (v6.12).
    A PMD-mapped THP (``pmd_trans_huge``): the huge zero page and a folio
    likely mapped by another process are left alone; a range covering
    only part of the PMD splits the folio (``split_folio``, which splits
    the PMD first) and goes on PTE by PTE; otherwise COLD makes a young
    PMD old (``pmdp_invalidate`` + ``set_pmd_at``, flushed with the
    gather) and PAGEOUT gives the whole folio to reclaim
    (``reclaim_pages()``: swapped out whole, or split if no free 2M
    cluster).  PTE-mapped folios: a
    large folio the range covers wholly is one batch
    (``madvise_folio_pte_batch``), one only partly covered is split first
    unless it is likely shared; a folio mapped elsewhere too
    (mapcount != pages) is skipped.  COLD makes the PTEs old
    (``clear_young_dirty_ptes(CYDP_CLEAR_YOUNG)``, flushed with the
    gather) and clears PG_referenced; PAGEOUT clears PG_referenced and
    gives the folios to reclaim at the end of the range
    (``reclaim_pages()`` -> ``shrink_folio_list(ignore_references)``).

    Context: mmap_lock held for read; ``[addr, end)`` within one PMD of ``vma``.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    page_shift: i64 = k.page_shift
    pmd_index: i64 = addr >> a.PMD_SHIFT
    orig_pmd: u64
    ptent: u64
    folio: i64
    err: i64
    tlb0: MmuGather
    if mm.space.pmds and pmd_index in mm.space.pmds:
        orig_pmd = a.pmdp_get(mm, pmd_index)
        ptent = a.pmd_pte(orig_pmd)
        folio = a.pte_pfn(ptent)
        if folio == k.huge_zero_pfn or a.pte_special(ptent):
            return
        folio = cython.cast(i64, mem.head[folio])
        if (
            folio_maybe_mapped_shared(mem, folio)
            if k.maybe_mapped_shared
            else folio_likely_mapped_shared(mem, folio)
        ):
            return  # "Do not interfere with other mappings of this folio"
        if end - addr != a.PMD_SIZE:
            folio_ref_add(mem, folio, 1)  # folio_get() across the unlocked split
            err = split_folio(k, folio)
            k.folio_put(folio, 1)
            if err:
                return
            # goto regular_folio: the PTE path below.
        else:
            if not pageout and a.pte_young(ptent):
                tlb0 = MmuGather(mm, False)
                a.pmdp_invalidate(vma, addr, pmd_index)
                a.set_pmd_at(mm, addr, pmd_index, a.pte_pmd(a.pte_mkold(ptent)))
                tlb0.tlb_remove_pmd_tlb_entry(addr, a.PMD_SIZE)
                tlb0.tlb_finish_mmu()
            folio_test_clear_referenced(mem, folio)  # folio_clear_referenced()
            if pageout:
                shrink_folio_list(k, [folio], True, 0)  # folio_isolate_lru(), reclaim_pages()
            return
    start_pte: i64 = pte_offset_map_lock(mm, addr, False)
    if start_pte < 0:
        return
    tlb: MmuGather = MmuGather(mm, False)
    folio_list: Any = []
    ptep: i64 = start_pte
    nr: i64
    ptentp: PtePtr = PtePtr(0)
    while addr < end:
        nr = 1
        ptent = a.ptep_get(ptep)
        if ptent == 0 or not a.pte_present(ptent):
            ptep += 1
            addr += k.PAGE_SIZE
            continue
        folio = vm_normal_folio(vma, addr, ptent)
        if folio < 0:
            ptep += 1
            addr += k.PAGE_SIZE
            continue
        if cython.cast(i64, mem.order[folio]) > 0:
            ptentp.value = ptent
            nr = folio_pte_batch_flags(
                k, folio, None, ptep, ptentp, (end - addr) >> page_shift, FPB_MERGE_YOUNG_DIRTY
            )
            ptent = ptentp.value
            if nr < (cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])):
                shared = (
                    folio_maybe_mapped_shared(mem, folio)
                    if k.maybe_mapped_shared
                    else folio_likely_mapped_shared(mem, folio)
                )
                if shared:
                    ptep += nr
                    addr += nr << page_shift
                    continue
                folio_ref_add(mem, folio, 1)  # folio_get() across the unlocked split
                pte_unmap_unlock(mm, start_pte)
                err = split_folio(k, folio)
                k.folio_put(folio, 1)
                if k.yield_hook is not None:
                    k.yield_hook("madvise_cold_or_pageout_pte_range", mm, addr)
                start_pte = pte_offset_map_lock(mm, addr, False)
                if start_pte < 0:
                    break
                ptep = start_pte
                if not err:
                    continue  # nr = 0: look at this PTE again
                ptep += nr
                addr += nr << page_shift
                continue
        if folio_mapcount(mem, folio) != (cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])) or (
            folio in folio_list
        ):
            ptep += nr
            addr += nr << page_shift
            continue
        if not pageout and a.pte_young(ptent):
            a.clear_young_dirty_ptes(vma, addr, ptep, nr, CYDP_CLEAR_YOUNG)
            tlb.tlb_remove_tlb_entries(ptep, nr, addr)
        folio_test_clear_referenced(mem, folio)  # folio_clear_referenced()
        if pageout:
            folio_list.append(folio)  # folio_isolate_lru()
        ptep += nr
        addr += nr << page_shift
    pte_unmap_unlock(mm, start_pte)
    tlb.tlb_finish_mmu()
    if folio_list:
        shrink_folio_list(k, folio_list, True, 0)  # reclaim_pages()


@cython.ccall
@cython.exceptval(-1, check=True)
def do_madvise(mm: MmStruct, start: i64, length: i64, advice: str) -> i64:
    """The madvise syscall; 0 or -errno.

    Models: mm/madvise.c ``do_madvise()``: EINVAL for an unaligned start or
    unknown advice, ENOMEM if part of the range is unmapped (the mapped parts
    are still advised).  ``advice``: a name of ``ADVICE``.
    """
    k: Kernel = mm.kernel
    ps: i64 = k.PAGE_SIZE
    behavior: i64 = ADVICE.get(advice, -1)
    if behavior < 0 or start & (ps - 1):
        return -EINVAL
    length = (length + ps - 1) & ~(ps - 1)
    if length == 0:
        return 0
    end: i64 = start + length
    vmas: list[Vma] = mm.vmas_in(start, end)
    unmapped: cython.bint = False
    cur: i64 = start
    v: Vma
    for v in vmas:
        if v.vm_start > cur:
            unmapped = True
        cur = v.vm_end
    if cur < end:
        unmapped = True
    # madvise_need_mmap_write(): these take the mmap_lock for read only, so
    # other threads of the mm may run at their preemption points.
    readers: cython.bint = behavior in (MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT)
    if readers:
        mm.mmap_read_locked += 1
    try:
        return _madvise_walk_vmas(mm, vmas, start, end, behavior, unmapped)
    finally:
        if readers:
            mm.mmap_read_locked -= 1


@cython.cfunc
@cython.exceptval(-1, check=True)
def _madvise_walk_vmas(
    mm: MmStruct, vmas: Any, start: i64, end: i64, behavior: i64, unmapped: cython.bint
) -> i64:
    """The VMA walk of ``do_madvise`` (mm/madvise.c ``madvise_walk_vmas()``)."""
    k: Kernel = mm.kernel
    s: i64
    e: i64
    err: i64
    v: Vma
    for v in vmas:
        s = max(start, v.vm_start)
        e = min(end, v.vm_end)
        if behavior == MADV_DONTNEED:
            if k.oneplus and (s | e) & ((k.PAGE_SIZE << 4) - 1) and v.vm_flags & VM_CONT_PTE:
                # OnePlus: a range that cuts a 64K block (zap splits it).
                from .cont_pte_hugepage import count_vm_chp_event

                count_vm_chp_event(k, "madv_dont_need_unaligned")
            zap_page_range_single(v, s, e - s)
        elif behavior == MADV_FREE:
            # Each VMA gathers and flushes on its own, so the VMAs advised
            # before an error keep no stale writable-dirty TLB entry (one
            # would let the next write skip the PTE's dirty bit, and reclaim
            # discard the data).  Found by `contpte fuzz`.
            err = madvise_free_single_vma(v, s, e)
            if err:
                return err
        elif behavior == MADV_HUGEPAGE:
            madvise_update_vma(v, s, e, VM_HUGEPAGE, VM_NOHUGEPAGE)
        elif behavior == MADV_NOHUGEPAGE:
            madvise_update_vma(v, s, e, VM_NOHUGEPAGE, VM_HUGEPAGE)
        elif behavior == MADV_DONTFORK:
            madvise_update_vma(v, s, e, VM_DONTCOPY, 0)
        elif behavior == MADV_DOFORK:
            madvise_update_vma(v, s, e, 0, VM_DONTCOPY)
        elif behavior in (MADV_COLD, MADV_PAGEOUT):
            if k.oneplus:
                from .cont_pte_hugepage import split_cont_pte_range

                split_cont_pte_range(v, s, e)
            # madvise_cold() / madvise_pageout(): one walk per PMD range.
            while s < e:
                madvise_cold_or_pageout_pte_range(
                    v, s, min((s | (k.arch.PMD_SIZE - 1)) + 1, e), behavior == MADV_PAGEOUT
                )
                s = min((s | (k.arch.PMD_SIZE - 1)) + 1, e)
        elif behavior == MADV_COLLAPSE:
            # madvise_vma_behavior() -> madvise_collapse() (mm/khugepaged.c,
            # modelled in the uncompiled mm/khugepaged.py); the walk stops at
            # the first VMA that fails (madvise_walk_vmas()).
            from .khugepaged import madvise_collapse

            err = madvise_collapse(v, s, e)
            if err:
                return err
    return -ENOMEM if unmapped else 0


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(LAZYFREE=LAZYFREE, FREE_SKIPPED=FREE_SKIPPED)
