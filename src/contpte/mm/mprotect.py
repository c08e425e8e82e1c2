"""mprotect: change the protection of a range.

Models: mm/mprotect.c (Linux v6.12): ``do_mprotect_pkey`` ->
``mprotect_fixup`` -> ``change_protection`` -> ``change_pte_range``, one
PTE at a time through ``ptep_modify_prot_start``/``commit`` (the batched
form came after v6.12), with ``can_change_pte_writable`` upgrading
exclusive anon pages (and dirty shared pages) straight to writable.
"""

from __future__ import annotations

import errno

from ..arch.pgtable import PtePtr
from .huge_memory import change_huge_pmd, split_huge_pmd
from .memory import pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio
from .mm_types import VM_ACCESS_FLAGS, VM_SHARED, VM_UFFD_WP, VM_WRITE, MmStruct, Vma
from .mmap import split_vma, vma_merge_around
from .mmu_gather import MmuGather

__all__ = ["do_mprotect_pkey", "change_protection", "change_pte_range", "can_change_pte_writable"]

MM_CP_TRY_CHANGE_WRITABLE = 1 << 0


def can_change_pte_writable(vma: Vma, addr: int, pte: int) -> bool:
    """Models: mm/mprotect.c ``can_change_pte_writable()``."""
    a = vma.vm_mm.kernel.arch
    if not vma.vm_flags & VM_WRITE:
        return False
    if a.pte_protnone(pte):
        return False
    if vma.vm_flags & VM_UFFD_WP and a.pte_uffd_wp(pte):
        return False
    if not vma.vm_flags & VM_SHARED:
        folio = vm_normal_folio(vma, addr, pte)
        return folio is not None and folio.test_anon() and folio.page_anon_exclusive(a.pte_pfn(pte))
    return a.pte_dirty(pte)


def change_pte_range(tlb: MmuGather, vma: Vma, pmd_index: int, addr: int, end: int, newprot: int, cp_flags: int) -> int:
    """Change the protection of the present PTEs of ``[addr, end)``.

    Models: mm/mprotect.c ``change_pte_range()`` (v6.12, per PTE).
    """
    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    table = mm.space.pte_table(pmd_index)
    if table is None:
        return 0
    ptep = pte_offset_map_lock(mm, addr)
    assert ptep is not None
    pages = 0
    ents = table.entries
    while addr < end:
        i = ptep.idx
        if ents[i] == 0:
            # none: nothing to change (one read per PTE, as the loop).
            j = i + 1
            lim = i + ((end - addr) >> k.page_shift)
            while j < lim and ents[j] == 0:
                j += 1
            k.counters.add("pte.read", j - i)
            ptep = PtePtr(table, j)
            addr += (j - i) << k.page_shift
            continue
        oldpte = a.ptep_get(ptep)
        if a.pte_present(oldpte):
            oldpte = a.ptep_modify_prot_start(vma, addr, ptep)
            ptent = a.pte_modify(oldpte, newprot)
            if (
                cp_flags & MM_CP_TRY_CHANGE_WRITABLE
                and not a.pte_write(ptent)
                and can_change_pte_writable(vma, addr, ptent)
            ):
                ptent = a.pte_mkwrite(ptent)
            a.ptep_modify_prot_commit(vma, addr, ptep, oldpte, ptent)
            tlb.tlb_remove_tlb_entries(ptep, 1, addr)
            pages += 1
        ptep = ptep + 1
        addr += k.PAGE_SIZE
    pte_unmap_unlock(mm, ptep)
    return pages


def change_protection(tlb: MmuGather, vma: Vma, start: int, end: int, cp_flags: int) -> int:
    """Models: mm/mprotect.c ``change_protection()`` (PMD-level walk)."""
    mm = vma.vm_mm
    k = mm.kernel
    pmd_size = k.arch.PMD_SIZE
    newprot = vma.vm_page_prot
    pages = 0
    addr = start
    while addr < end:
        nxt = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        idx = addr >> k.arch.PMD_SHIFT
        if idx in mm.space.pmds:
            if nxt - addr == pmd_size:
                change_huge_pmd(vma, idx, addr, newprot)
                tlb.tlb_remove_pmd_tlb_entry(addr, pmd_size)
                pages += k.arch.HPAGE_PMD_NR
                addr = nxt
                continue
            split_huge_pmd(vma, idx, addr)
        pages += change_pte_range(tlb, vma, idx, addr, nxt, newprot, cp_flags)
        addr = nxt
    return pages


def mprotect_fixup(tlb: MmuGather, vma: Vma, start: int, end: int, newflags: int) -> None:
    """Models: mm/mprotect.c ``mprotect_fixup()``: split, set, change, merge."""
    mm = vma.vm_mm
    k = mm.kernel
    if newflags == vma.vm_flags:
        return
    if vma.vm_start < start:
        vma = split_vma(mm, vma, start)
    if vma.vm_end > end:
        split_vma(mm, vma, end)
    vma.vm_flags = newflags
    vma.vm_page_prot = k.arch.vm_get_page_prot(newflags & (VM_ACCESS_FLAGS | VM_SHARED))
    cp_flags = MM_CP_TRY_CHANGE_WRITABLE if newflags & VM_WRITE else 0
    change_protection(tlb, vma, start, end, cp_flags)
    vma_merge_around(mm, vma)


def do_mprotect_pkey(mm: MmStruct, start: int, length: int, prot: int) -> int:
    """The mprotect syscall; 0 or -errno.

    Models: mm/mprotect.c ``do_mprotect_pkey()``: EINVAL for an unaligned
    start or unknown bits, ENOMEM when part of the range is unmapped,
    EACCES when asking for more than the mapping may have (VM_MAY*).
    """
    k = mm.kernel
    ps = k.PAGE_SIZE
    if start & (ps - 1) or prot & ~VM_ACCESS_FLAGS:
        return -errno.EINVAL
    if length == 0:
        return 0
    length = (length + ps - 1) & ~(ps - 1)
    end = start + length
    if end <= start:
        return -errno.ENOMEM
    vmas = mm.vmas_in(start, end)
    if not vmas or vmas[0].vm_start > start:
        return -errno.ENOMEM
    for a, b in zip(vmas, vmas[1:]):
        if a.vm_end != b.vm_start:
            return -errno.ENOMEM
    if vmas[-1].vm_end < end:
        return -errno.ENOMEM
    for v in vmas:
        newflags = prot | (v.vm_flags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            return -errno.EACCES
    tlb = MmuGather(mm, fullmm=False)
    for v in list(vmas):
        newflags = prot | (v.vm_flags & ~VM_ACCESS_FLAGS)
        mprotect_fixup(tlb, v, max(start, v.vm_start), min(end, v.vm_end), newflags)
    tlb.tlb_finish_mmu()
    return 0
