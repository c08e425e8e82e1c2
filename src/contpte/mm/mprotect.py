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
from ..counters import counter
from .huge_memory import change_huge_pmd, split_huge_pmd
from .memory import pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio
from .mm_types import (
    VM_ACCESS_FLAGS,
    VM_READ,
    VM_SHARED,
    VM_UFFD_WP,
    VM_WRITE,
    MmStruct,
    Vma,
    is_cow_mapping,
)
from .mmap import split_vma, vma_merge_around, vma_set_page_prot, vma_wants_writenotify
from .mmu_gather import MmuGather

__all__ = [
    "do_mprotect_pkey",
    "change_protection",
    "change_pte_range",
    "can_change_pte_writable",
    "change_prot_numa",
    "vma_wants_manual_pte_write_upgrade",
    "MM_CP_TRY_CHANGE_WRITABLE",
    "MM_CP_PROT_NUMA",
    "MM_CP_UFFD_WP",
    "MM_CP_UFFD_WP_RESOLVE",
]

MM_CP_TRY_CHANGE_WRITABLE = 1 << 0
MM_CP_PROT_NUMA = 1 << 1
MM_CP_UFFD_WP = 1 << 2
MM_CP_UFFD_WP_RESOLVE = 1 << 3

NUMA_PTE_UPDATES = counter("numa_pte_updates")


def vma_wants_manual_pte_write_upgrade(vma: Vma) -> bool:
    """Models: include/linux/mm.h ``vma_wants_manual_pte_write_upgrade()``."""
    if vma.vm_flags & VM_SHARED:
        return vma_wants_writenotify(vma)
    return bool(vma.vm_flags & VM_WRITE)


def _prot_numa_skip(vma: Vma, addr: int, pte: int) -> bool:
    """The pages ``change_pte_range(MM_CP_PROT_NUMA)`` leaves alone (v6.12)."""
    a = vma.vm_mm.kernel.arch
    if a.pte_protnone(pte):
        return True  # already a hinting fault pending
    folio = vm_normal_folio(vma, addr, pte)
    if folio is None:
        return True  # the zero page, special mappings
    if is_cow_mapping(vma.vm_flags) and (folio.maybe_dma_pinned() or folio.likely_mapped_shared()):
        return True  # shared copy-on-write pages
    return not folio.test_anon() and folio.test_dirty()  # dirty file pages: writeback would fault


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


def change_pte_range(
    tlb: MmuGather, vma: Vma, pmd_index: int, addr: int, end: int, newprot: int, cp_flags: int
) -> int:
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
        if a.pte_present(oldpte) and cp_flags & MM_CP_PROT_NUMA and _prot_numa_skip(vma, addr, oldpte):
            pass
        elif a.pte_present(oldpte):
            oldpte = a.ptep_modify_prot_start(vma, addr, ptep)
            ptent = a.pte_modify(oldpte, newprot)
            if cp_flags & MM_CP_UFFD_WP:
                ptent = a.pte_mkuffd_wp(ptent)
            elif cp_flags & MM_CP_UFFD_WP_RESOLVE:
                ptent = a.pte_clear_uffd_wp(ptent)
            if cp_flags & MM_CP_PROT_NUMA:
                k.counters.add(NUMA_PTE_UPDATES)
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
    # NUMA hinting maps PAGE_NONE: present but inaccessible (pte_protnone).
    newprot = k.arch.vm_get_page_prot(0) if cp_flags & MM_CP_PROT_NUMA else vma.vm_page_prot
    pages = 0
    addr = start
    while addr < end:
        nxt = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        idx = addr >> k.arch.PMD_SHIFT
        if idx in mm.space.pmds and cp_flags & (MM_CP_PROT_NUMA | MM_CP_UFFD_WP | MM_CP_UFFD_WP_RESOLVE):
            # PMD-mapped THPs: NUMA hinting and uffd-wp of huge PMDs are not modelled.
            addr = nxt
            continue
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
    if newflags == vma.vm_flags:
        return
    if vma.vm_start < start:
        vma = split_vma(mm, vma, start)
    if vma.vm_end > end:
        split_vma(mm, vma, end)
    vma.vm_flags = newflags
    vma_set_page_prot(vma)
    cp_flags = MM_CP_TRY_CHANGE_WRITABLE if newflags & VM_WRITE else 0
    change_protection(tlb, vma, start, end, cp_flags)
    vma_merge_around(mm, vma)


def do_mprotect_pkey(mm: MmStruct, start: int, length: int, prot: int) -> int:
    """The mprotect syscall; 0 or -errno.

    Models: mm/mprotect.c ``do_mprotect_pkey()``: EINVAL for an unaligned
    start or unknown bits, ENOMEM when part of the range is unmapped,
    EACCES when asking for more than the mapping may have (VM_MAY*).  As in
    the kernel, the VMAs before the first hole (or the first VMA refusing
    ``prot``) keep their new protection when the call fails.
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
    # As the kernel's for_each_vma_range() loop: the VMAs before a hole (or
    # before one that may not get ``prot``) are changed, then the call fails.
    error = 0
    tmp = vmas[0].vm_start
    tlb = MmuGather(mm, fullmm=False)
    for v in list(vmas):
        if v.vm_start != tmp:
            error = -errno.ENOMEM
            break
        newflags = prot | (v.vm_flags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            error = -errno.EACCES
            break
        tmp = min(v.vm_end, end)
        mprotect_fixup(tlb, v, max(start, v.vm_start), tmp, newflags)
    tlb.tlb_finish_mmu()
    if not error and tmp < end:
        error = -errno.ENOMEM
    return error


def change_prot_numa(vma: Vma, addr: int, end: int) -> int:
    """Make the range's PTEs PROT_NONE so the next access takes a NUMA hinting fault.

    Models: mm/mempolicy.c ``change_prot_numa()`` -> ``change_protection(
    MM_CP_PROT_NUMA)``, as ``task_numa_work()`` calls it on accessible VMAs
    (read-only file mappings are skipped there).  Skips what
    ``change_pte_range`` skips: already-protnone PTEs, the zero page, shared
    or maybe-pinned CoW pages, dirty file pages.  Huge PMDs are left alone.
    Returns the PTEs changed.
    """
    mm = vma.vm_mm
    if not vma.vm_flags & VM_ACCESS_FLAGS:
        return 0
    if vma.vm_file is not None and (vma.vm_flags & (VM_READ | VM_WRITE)) == VM_READ:
        return 0
    tlb = MmuGather(mm, fullmm=False)
    pages = change_protection(tlb, vma, addr, end, MM_CP_PROT_NUMA)
    tlb.tlb_finish_mmu()
    return pages
