"""madvise: DONTNEED, FREE, HUGEPAGE/NOHUGEPAGE, DONTFORK/DOFORK.

Models: mm/madvise.c (Linux v6.12).

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ..counters import declare

if not cython.compiled:
    from ..arch.pgtable import CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG, Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from .huge_memory import split_folio
    from .internal import FPB_IGNORE_DIRTY, FPB_IGNORE_SOFT_DIRTY, folio_pte_batch
    from .kernel import Kernel
    from .memmap import (
        MemMap,
        PG_lazyfree,
        folio_clear_dirty,
        folio_likely_mapped_shared,
        folio_mapcount,
        folio_ref_add,
        folio_test_anon,
    )
    from .memory import zap_page_range_single
    from .mm_h import pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio
    from .mm_types import VM_DONTCOPY, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_SHARED, MmStruct, Vma, vma_mm
    from .mmap import split_vma, vma_merge_around
    from .mmu_gather import MmuGather

__all__ = ["do_madvise", "madvise_free_pte_range", "madvise_update_vma", "ADVICE"]

MADV_DONTNEED = cython.declare(i64, 4)
MADV_FREE = cython.declare(i64, 8)
MADV_DONTFORK = cython.declare(i64, 10)
MADV_DOFORK = cython.declare(i64, 11)
MADV_HUGEPAGE = cython.declare(i64, 14)
MADV_NOHUGEPAGE = cython.declare(i64, 15)

ADVICE: dict[str, int] = {
    "dontneed": 4,
    "free": 8,
    "hugepage": 14,
    "nohugepage": 15,
    "dontfork": 10,
    "dofork": 11,
}
"""The advice the model takes, by name, with its ``MADV_*`` value."""

LAZYFREE = cython.declare(i64, declare("madvise.lazyfree_pages", "pages", "pages MADV_FREE marked lazyfree"))
FREE_SKIPPED = cython.declare(
    i64,
    declare(
        "madvise.free_split_skipped",
        "folios",
        "partially covered large folios MADV_FREE left alone (shared or unsplittable)",
    ),
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


@cython.ccall
def madvise_free_pte_range(tlb: MmuGather, vma: Vma, addr: i64, end: i64) -> None:
    """Clear young/dirty of exclusively mapped anon folios and mark them lazyfree.

    Models: mm/madvise.c ``madvise_free_pte_range()`` (v6.12): a large folio
    wholly inside the range is handled as one batch with
    ``clear_young_dirty_ptes``; one only partly covered is split first
    (``split_folio``: the PTL is dropped around it) and its pages are then
    handled one by one; if it is likely shared or cannot be split, the
    batch is skipped.

    Context: mmap_lock held for read; ``[addr, end)`` within ``vma``.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    pmd_size: i64 = a.PMD_SIZE
    page_shift: i64 = k.page_shift
    nxt: i64
    ptep0: i64
    ptep: i64
    ptent: u64
    nr: i64
    folio: i64
    err: i64
    shared: cython.bint
    while addr < end:
        nxt = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        ptep0 = pte_offset_map_lock(mm, addr, False)
        if ptep0 < 0:
            addr = nxt
            continue
        ptep = ptep0
        while addr < nxt:
            ptent = a.ptep_get(ptep)
            nr = 1
            if a.pte_present(ptent):
                folio = vm_normal_folio(vma, addr, ptent)
                if folio >= 0 and folio_test_anon(mem, folio):
                    if cython.cast(i64, mem.order[folio]) > 0:
                        nr = folio_pte_batch(
                            k,
                            folio,
                            addr,
                            ptep,
                            ptent,
                            (nxt - addr) >> page_shift,
                            FPB_IGNORE_DIRTY | FPB_IGNORE_SOFT_DIRTY,
                            None,
                        )
                        if nr < (cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])):
                            if not folio_likely_mapped_shared(mem, folio):
                                folio_ref_add(mem, folio, 1)  # folio_get() across the unlocked split
                                pte_unmap_unlock(mm, ptep)
                                err = split_folio(k, folio)
                                k.folio_put(folio, 1)
                                if not err:
                                    continue  # nr = 0: look at this PTE again
                            count(k.counters, FREE_SKIPPED, 1)
                            ptep += nr
                            addr += nr << page_shift
                            continue
                        shared = folio_likely_mapped_shared(mem, folio)
                    else:
                        shared = folio_mapcount(mem, folio) != 1
                    if not shared:
                        folio_clear_dirty(mem, folio)
                        a.clear_young_dirty_ptes(vma, addr, ptep, nr, CYDP_CLEAR_YOUNG | CYDP_CLEAR_DIRTY)
                        tlb.tlb_remove_tlb_entries(ptep, nr, addr)
                        mem.flags[folio] |= PG_lazyfree
                        count(k.counters, LAZYFREE, nr)
            ptep += nr
            addr += nr << page_shift
        # ptep0, not ptep: after the loop ptep may point past the table's end.
        pte_unmap_unlock(mm, ptep0)
        addr = nxt


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
    tlb: MmuGather = MmuGather(mm, False)
    s: i64
    e: i64
    for v in vmas:
        s = max(start, v.vm_start)
        e = min(end, v.vm_end)
        if behavior == MADV_DONTNEED:
            zap_page_range_single(v, s, e - s)
        elif behavior == MADV_FREE:
            if v.vm_file is not None or v.vm_flags & VM_SHARED:
                # The VMAs advised so far had their PTEs cleaned: flush them
                # before failing (the kernel's madvise_free_single_vma() runs
                # its own tlb_gather_mmu()/tlb_finish_mmu() per VMA), or a
                # stale writable-dirty TLB entry lets the next write skip the
                # PTE's dirty bit and reclaim discards it.  Found by `contpte fuzz`.
                tlb.tlb_finish_mmu()
                return -EINVAL
            madvise_free_pte_range(tlb, v, s, e)
        elif behavior == MADV_HUGEPAGE:
            madvise_update_vma(v, s, e, VM_HUGEPAGE, VM_NOHUGEPAGE)
        elif behavior == MADV_NOHUGEPAGE:
            madvise_update_vma(v, s, e, VM_NOHUGEPAGE, VM_HUGEPAGE)
        elif behavior == MADV_DONTFORK:
            madvise_update_vma(v, s, e, VM_DONTCOPY, 0)
        elif behavior == MADV_DOFORK:
            madvise_update_vma(v, s, e, 0, VM_DONTCOPY)
    tlb.tlb_finish_mmu()
    return -ENOMEM if unmapped else 0


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(LAZYFREE=LAZYFREE, FREE_SKIPPED=FREE_SKIPPED)
