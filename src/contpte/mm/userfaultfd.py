"""userfaultfd write-protection: register a range for uffd-wp, protect, resolve.

Models: fs/userfaultfd.c (``userfaultfd_register`` with
UFFDIO_REGISTER_MODE_WP) and mm/userfaultfd.c (``mwriteprotect_range`` ->
``uffd_wp_range`` -> ``change_protection(MM_CP_UFFD_WP[_RESOLVE])``), Linux
v6.12.  The monitor is assumed to have UFFD_FEATURE_EVENT_FORK, so a child
keeps VM_UFFD_WP and its PTEs keep their uffd-wp bits (``copy_present_ptes``
then copies them per PTE).  A write to a uffd-wp PTE returns
``VM_FAULT_UFFD_WP`` from ``do_wp_page`` (``handle_userfault``); the model
has no monitor thread, so the access fails there.

Anonymous memory and shmem only (``vma_can_userfault``); PTE markers for
unpopulated or zapped shmem pages are not modelled.
"""

from __future__ import annotations

import errno

from .mm_types import VM_UFFD_WP, MmStruct, Vma
from .mmap import split_vma, vma_merge_around
from .mmu_gather import MmuGather
from .mprotect import MM_CP_TRY_CHANGE_WRITABLE, MM_CP_UFFD_WP, MM_CP_UFFD_WP_RESOLVE, change_protection

__all__ = ["vma_can_userfault", "userfaultfd_register_wp", "mwriteprotect_range"]


def vma_can_userfault(vma: Vma) -> bool:
    """Models: include/linux/userfaultfd_k.h ``vma_can_userfault()``: anon or shmem."""
    f = vma.vm_file
    return f is None or bool(f.shmem)


def userfaultfd_register_wp(mm: MmStruct, start: int, length: int) -> int:
    """UFFDIO_REGISTER(MODE_WP) of ``[start, start+length)``: set VM_UFFD_WP; 0 or -errno."""
    ps = mm.kernel.PAGE_SIZE
    if start & (ps - 1) or length <= 0 or length & (ps - 1):
        return -errno.EINVAL
    end = start + length
    vmas = mm.vmas_in(start, end)
    cur = start
    for v in vmas:
        if v.vm_start > cur or not vma_can_userfault(v):
            return -errno.EINVAL
        cur = v.vm_end
    if not vmas or cur < end:
        return -errno.EINVAL
    for v in list(vmas):
        if v.vm_flags & VM_UFFD_WP:
            continue
        if v.vm_start < start:
            v = split_vma(mm, v, start)
        if v.vm_end > end:
            split_vma(mm, v, end)
        v.vm_flags |= VM_UFFD_WP
        vma_merge_around(mm, v)
    return 0


def mwriteprotect_range(mm: MmStruct, start: int, length: int, enable_wp: bool) -> int:
    """UFFDIO_WRITEPROTECT: set or clear uffd-wp on the present PTEs; 0 or -errno.

    Models: mm/userfaultfd.c ``mwriteprotect_range()``: -ENOENT when a part
    of the range is not a VM_UFFD_WP VMA.  Resolving lets exclusive anon
    pages become writable again (``MM_CP_TRY_CHANGE_WRITABLE``).
    """
    ps = mm.kernel.PAGE_SIZE
    if start & (ps - 1) or length <= 0 or length & (ps - 1):
        return -errno.EINVAL
    end = start + length
    vmas = mm.vmas_in(start, end)
    cur = start
    for v in vmas:
        if v.vm_start > cur or not v.vm_flags & VM_UFFD_WP:
            return -errno.ENOENT
        cur = v.vm_end
    if not vmas or cur < end:
        return -errno.ENOENT
    tlb = MmuGather(mm, fullmm=False)
    for v in vmas:
        flags = MM_CP_UFFD_WP if enable_wp else MM_CP_UFFD_WP_RESOLVE | MM_CP_TRY_CHANGE_WRITABLE
        change_protection(tlb, v, max(start, v.vm_start), min(end, v.vm_end), flags)
    tlb.tlb_finish_mmu()
    return 0
