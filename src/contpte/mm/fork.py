"""fork's address-space copy and process exit.

Models: kernel/fork.c (Linux v6.12) ``dup_mmap()``: every VMA but
VM_DONTCOPY ones is duplicated; ``copy_page_range`` copies the page tables
of those that need it; the parent's TLB is flushed once at the end
(``flush_tlb_mm(oldmm)``), which is what lets ``wrprotect_ptes`` leave
whole contiguous blocks folded.  And ``mmput()`` -> ``exit_mmap()``.
"""

from __future__ import annotations

from .memory import copy_page_range
from .mm_types import VM_DONTCOPY, MmStruct
from .mmap import exit_mmap

__all__ = ["dup_mmap", "mmput"]


def dup_mmap(mm: MmStruct, oldmm: MmStruct) -> int:
    """Copy ``oldmm``'s VMAs and page tables into the new ``mm``; 0 or -errno.

    Context: oldmm's mmap_lock held for write (the model is sequential).
    """
    k = oldmm.kernel
    ret = 0
    for mpnt in list(oldmm.vmas):
        if mpnt.vm_flags & VM_DONTCOPY:
            continue
        tmp = mpnt.copy(mm)
        # anon_vma_fork(): the child's VMA gets its own anon_vma (chained to the parent's).
        if mpnt.anon_vma is not None:
            tmp.anon_vma = k.new_anon_vma()
        mm.vmas.append(tmp)
        ret = copy_page_range(tmp, mpnt)
        if ret:
            break
    mm.mmap_base = oldmm.mmap_base
    if not k.bug("fork_no_parent_tlb_flush"):
        k.arch.flush_tlb_mm(oldmm)
    return ret


def mmput(mm: MmStruct) -> None:
    """Drop the last user of an address space: tear it down."""
    if mm.dead:
        return
    exit_mmap(mm)
    mm.dead = True
