"""fork's address-space copy and process exit.

Models: kernel/fork.c (Linux v6.12) ``dup_mmap()``: with the parent's
mmap_lock held for write, every VMA is write-locked (``vma_start_write``)
and, but VM_DONTCOPY ones, duplicated; ``copy_page_range`` copies the page
tables of those that need it; the parent's TLB is flushed once at the end
(``flush_tlb_mm(oldmm)``, before ``mmap_write_unlock``), which is what lets
``wrprotect_ptes`` leave whole contiguous blocks folded.  And ``mmput()`` ->
``exit_mmap()``.  Also the mmap_lock and per-VMA lock state of
include/linux/mmap_lock.h and mm.h that fork's lock breaks expose to other
threads (``system/sched.py`` decides from it what may run there).
"""

from __future__ import annotations

from .memory import copy_page_range
from .mm_types import VM_DONTCOPY, MmStruct, Vma
from .mmap import exit_mmap

__all__ = [
    "dup_mmap",
    "mmput",
    "mmap_write_lock",
    "mmap_write_unlock",
    "vma_start_write",
    "vma_is_write_locked",
]


def mmap_write_lock(mm: MmStruct) -> None:
    """Models: include/linux/mmap_lock.h ``mmap_write_lock()`` (the model is never contended)."""
    mm.mmap_write_locked = True


def mmap_write_unlock(mm: MmStruct) -> None:
    """Models: ``mmap_write_unlock()`` -> ``vma_end_write_all()``: every write-locked VMA is released."""
    mm.mm_lock_seq += 1
    mm.mmap_write_locked = False


def vma_start_write(vma: Vma) -> None:
    """Models: include/linux/mm.h ``vma_start_write()``: lock the VMA against per-VMA-lock page faults.

    Context: mmap_lock held for write; held until ``mmap_write_unlock``.
    """
    vma.vm_lock_seq = vma.mm.mm_lock_seq


def vma_is_write_locked(vma: Vma) -> bool:
    """Whether ``vma_start_read()`` (``lock_vma_under_rcu()``) would fail on ``vma``: it is write-locked.

    Models the test of include/linux/mm.h ``vma_start_read()``:
    ``vma->vm_lock_seq == mm->mm_lock_seq``.
    """
    mm = vma.mm
    return bool(mm.mmap_write_locked and vma.vm_lock_seq == mm.mm_lock_seq)


def dup_mmap(mm: MmStruct, oldmm: MmStruct) -> int:
    """Copy ``oldmm``'s VMAs and page tables into the new ``mm``; 0 or -errno.

    Context: takes oldmm's mmap_lock for write and write-locks each VMA as
    it reaches it (v6.12 kernel/fork.c, ``vma_start_write(mpnt)`` at the top
    of the loop; added by fb49c455323f "fork: lock VMAs of the parent process
    when forking", v6.5, 6.4.3: before it a page fault of another thread
    took the per-VMA lock and changed the VMA's page tables while fork
    copied them, bug catalog ``fork_no_vma_write_lock``).  So at a lock
    break of ``copy_pte_range`` no other thread of the parent can fault on
    the VMA being copied or run a syscall; what can run there is lockless
    (system/sched.py).
    """
    k = oldmm.kernel
    ret = 0
    mmap_write_lock(oldmm)
    try:
        for mpnt in list(oldmm.vmas):
            if not k.bug("fork_no_vma_write_lock"):
                vma_start_write(mpnt)
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
    finally:
        mmap_write_unlock(oldmm)
    return ret


def mmput(mm: MmStruct) -> None:
    """Drop the last user of an address space: tear it down."""
    if mm.dead:
        return
    exit_mmap(mm)
    mm.dead = True
