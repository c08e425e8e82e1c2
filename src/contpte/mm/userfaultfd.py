"""userfaultfd write-protection: register a range for uffd-wp, protect, resolve.

Models: fs/userfaultfd.c (``userfaultfd_register`` with
UFFDIO_REGISTER_MODE_WP) and mm/userfaultfd.c (``mwriteprotect_range`` ->
``uffd_wp_range`` -> ``change_protection(MM_CP_UFFD_WP[_RESOLVE])``), Linux
v6.12.  The monitor is assumed to have UFFD_FEATURE_EVENT_FORK, so a child
keeps VM_UFFD_WP and its PTEs keep their uffd-wp bits (``copy_present_ptes``
then copies them per PTE, and ``copy_present_page`` marks the child's copy
of a pinned page).  Huge PMDs are protected whole (``change_huge_pmd``).  A
write to a uffd-wp PTE or PMD returns ``VM_FAULT_UFFD_WP`` from
``do_wp_page`` or ``wp_huge_pmd`` (``handle_userfault``); the model has no
monitor thread, so the access fails there.  A registered VMA faults
order-0 folios only (``alloc_anon_folio``: ``userfaultfd_armed``).

Anonymous memory and shmem only (``vma_can_userfault``); PTE markers for
unpopulated or zapped shmem pages are not modelled.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ..cdefs import i64
    from .mm_h import MM_CP_TRY_CHANGE_WRITABLE, MM_CP_UFFD_WP, MM_CP_UFFD_WP_RESOLVE
    from .mm_types import VM_UFFD_WP, MmStruct, Vma
    from .mmap import split_vma, vma_merge_around
    from .mmu_gather import MmuGather
    from .mprotect import change_protection
    from .shmem import File

__all__ = ["vma_can_userfault", "userfaultfd_register_wp", "mwriteprotect_range"]

ENOENT = cython.declare(i64, 2)
EINVAL = cython.declare(i64, 22)


@cython.ccall
@cython.exceptval(-1, check=True)
def vma_can_userfault(vma: Vma) -> cython.bint:
    """Models: include/linux/userfaultfd_k.h ``vma_can_userfault()``: anon or shmem."""
    f = vma.vm_file
    return f is None or cython.cast(File, f).shmem


@cython.ccall
@cython.exceptval(-1, check=True)
def userfaultfd_register_wp(mm: MmStruct, start: i64, length: i64) -> i64:
    """UFFDIO_REGISTER(MODE_WP) of ``[start, start+length)``: set VM_UFFD_WP; 0 or -errno."""
    ps: i64 = mm.kernel.PAGE_SIZE
    if start & (ps - 1) or length <= 0 or length & (ps - 1):
        return -EINVAL
    end: i64 = start + length
    vmas: list[Vma] = mm.vmas_in(start, end)
    if mm.kernel.oneplus:
        from .cont_pte_hugepage import split_cont_pte_range

        for w in vmas:
            split_cont_pte_range(w, start, end)
    cur: i64 = start
    v: Vma
    for v in vmas:
        if v.vm_start > cur or not vma_can_userfault(v):
            return -EINVAL
        cur = v.vm_end
    if not vmas or cur < end:
        return -EINVAL
    for v in vmas:
        if v.vm_flags & VM_UFFD_WP:
            continue
        if v.vm_start < start:
            v = split_vma(mm, v, start)
        if v.vm_end > end:
            split_vma(mm, v, end)
        v.vm_flags |= VM_UFFD_WP
        vma_merge_around(mm, v)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def mwriteprotect_range(mm: MmStruct, start: i64, length: i64, enable_wp: cython.bint) -> i64:
    """UFFDIO_WRITEPROTECT: set or clear uffd-wp on the present PTEs; 0 or -errno.

    Models: mm/userfaultfd.c ``mwriteprotect_range()``: -ENOENT when a part
    of the range is not a VM_UFFD_WP VMA.  Resolving lets exclusive anon
    pages become writable again (``MM_CP_TRY_CHANGE_WRITABLE``).
    """
    ps: i64 = mm.kernel.PAGE_SIZE
    if start & (ps - 1) or length <= 0 or length & (ps - 1):
        return -EINVAL
    end: i64 = start + length
    vmas: list[Vma] = mm.vmas_in(start, end)
    cur: i64 = start
    v: Vma
    for v in vmas:
        if v.vm_start > cur or not v.vm_flags & VM_UFFD_WP:
            return -ENOENT
        cur = v.vm_end
    if not vmas or cur < end:
        return -ENOENT
    tlb: MmuGather = MmuGather(mm, False)
    flags: i64 = MM_CP_UFFD_WP if enable_wp else MM_CP_UFFD_WP_RESOLVE | MM_CP_TRY_CHANGE_WRITABLE
    for v in vmas:
        change_protection(tlb, v, max(start, v.vm_start), min(end, v.vm_end), flags)
    tlb.tlb_finish_mmu()
    return 0
