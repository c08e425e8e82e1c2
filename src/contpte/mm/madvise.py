"""madvise: DONTNEED, FREE, HUGEPAGE/NOHUGEPAGE, DONTFORK/DOFORK.

Models: mm/madvise.c (Linux v6.12).
"""

from __future__ import annotations

import errno

from ..arch.pgtable import CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG, PtePtr
from ..counters import counter
from .huge_memory import split_folio
from .memmap import PG_lazyfree
from .memory import (
    FPB_IGNORE_DIRTY,
    FPB_IGNORE_SOFT_DIRTY,
    folio_pte_batch,
    pte_offset_map_lock,
    pte_unmap_unlock,
    vm_normal_folio,
    zap_page_range_single,
)
from .mm_types import VM_DONTCOPY, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_SHARED, MmStruct, Vma
from .mmap import split_vma, vma_merge_around
from .mmu_gather import MmuGather

__all__ = ["do_madvise", "ADVICE"]

ADVICE = {
    "dontneed": 4,
    "free": 8,
    "hugepage": 14,
    "nohugepage": 15,
    "dontfork": 10,
    "dofork": 11,
}

LAZYFREE = counter("madvise.lazyfree_pages")
FREE_SKIPPED = counter("madvise.free_split_skipped")


def _madvise_update_flags(vma: Vma, start: int, end: int, set_: int, clear: int) -> None:
    """Models: mm/madvise.c ``madvise_update_vma()``: split, set flags, merge."""
    mm = vma.vm_mm
    newflags = (vma.vm_flags | set_) & ~clear
    if newflags == vma.vm_flags:
        return
    if vma.vm_start < start:
        vma = split_vma(mm, vma, start)
    if vma.vm_end > end:
        split_vma(mm, vma, end)
    vma.vm_flags = newflags
    vma_merge_around(mm, vma)


def madvise_free_pte_range(tlb: MmuGather, vma: Vma, addr: int, end: int) -> None:
    """Clear young/dirty of exclusively mapped anon folios and mark them lazyfree.

    Models: mm/madvise.c ``madvise_free_pte_range()`` (v6.12): a large folio
    wholly inside the range is handled as one batch with
    ``clear_young_dirty_ptes``; one only partly covered is split first
    (``split_folio``: the PTL is dropped around it) and its pages are then
    handled one by one; if it is likely shared or cannot be split, the
    batch is skipped.
    """
    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    pmd_size = a.PMD_SIZE
    while addr < end:
        nxt = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        ptep = pte_offset_map_lock(mm, addr)
        if ptep is None:
            addr = nxt
            continue
        while addr < nxt:
            ptent = a.ptep_get(ptep)
            nr = 1
            if a.pte_present(ptent):
                folio = vm_normal_folio(vma, addr, ptent)
                if folio is not None and folio.test_anon():
                    if folio.test_large():
                        max_nr = (nxt - addr) >> k.page_shift
                        nr = folio_pte_batch(
                            folio, addr, ptep, ptent, max_nr, FPB_IGNORE_DIRTY | FPB_IGNORE_SOFT_DIRTY, None
                        )
                        if nr < folio.nr_pages:
                            if not folio.likely_mapped_shared():
                                folio.ref_add(1)  # folio_get() across the unlocked split
                                pte_unmap_unlock(mm, ptep)
                                err = split_folio(folio)
                                k.folio_put(folio)
                                if not err:
                                    continue  # nr = 0: look at this PTE again
                            k.counters.add(FREE_SKIPPED)
                            ptep = ptep + nr
                            addr += nr << k.page_shift
                            continue
                        shared = folio.likely_mapped_shared()
                    else:
                        shared = folio.mapcount_total() != 1
                    if not shared:
                        folio.clear_dirty()
                        a.clear_young_dirty_ptes(vma, addr, ptep, nr, CYDP_CLEAR_YOUNG | CYDP_CLEAR_DIRTY)
                        tlb.tlb_remove_tlb_entries(ptep, nr, addr)
                        folio.mem.flags[folio.pfn] |= PG_lazyfree
                        k.counters.add(LAZYFREE, nr)
            ptep = ptep + nr
            addr += nr << k.page_shift
        pte_unmap_unlock(mm, PtePtr(ptep.table, 0))
        addr = nxt


def do_madvise(mm: MmStruct, start: int, length: int, advice: str) -> int:
    """The madvise syscall; 0 or -errno.

    Models: mm/madvise.c ``do_madvise()``: EINVAL for an unaligned start or
    unknown advice, ENOMEM if part of the range is unmapped (the mapped parts
    are still advised).
    """
    k = mm.kernel
    ps = k.PAGE_SIZE
    if advice not in ADVICE or start & (ps - 1):
        return -errno.EINVAL
    length = (length + ps - 1) & ~(ps - 1)
    if length == 0:
        return 0
    end = start + length
    unmapped = False
    cur = start
    for v in mm.vmas_in(start, end):
        if v.vm_start > cur:
            unmapped = True
        cur = v.vm_end
    if cur < end:
        unmapped = True
    tlb = MmuGather(mm, fullmm=False)
    for v in list(mm.vmas_in(start, end)):
        s, e = max(start, v.vm_start), min(end, v.vm_end)
        if advice == "dontneed":
            zap_page_range_single(v, s, e - s)
        elif advice == "free":
            if v.vm_file is not None or v.vm_flags & VM_SHARED:
                # The VMAs advised so far had their PTEs cleaned: flush them
                # before failing (the kernel's madvise_free_single_vma() runs
                # its own tlb_gather_mmu()/tlb_finish_mmu() per VMA), or a
                # stale writable-dirty TLB entry lets the next write skip the
                # PTE's dirty bit and reclaim discards it.  Found by `contpte fuzz`.
                tlb.tlb_finish_mmu()
                return -errno.EINVAL
            madvise_free_pte_range(tlb, v, s, e)
        elif advice == "hugepage":
            _madvise_update_flags(v, s, e, VM_HUGEPAGE, VM_NOHUGEPAGE)
        elif advice == "nohugepage":
            _madvise_update_flags(v, s, e, VM_NOHUGEPAGE, VM_HUGEPAGE)
        elif advice == "dontfork":
            _madvise_update_flags(v, s, e, VM_DONTCOPY, 0)
        elif advice == "dofork":
            _madvise_update_flags(v, s, e, 0, VM_DONTCOPY)
    tlb.tlb_finish_mmu()
    return -errno.ENOMEM if unmapped else 0
