"""The core-mm data types: mm_struct, vm_area_struct, folio, flags.

Models: include/linux/mm_types.h, include/linux/mm.h (flag values),
include/linux/mm_types_task.h (RSS counters), Linux v6.12.

``MmStruct`` and ``Vma`` extend the arch layer's ``MmLike``/``VmaLike`` (the
parts of the structs the arch code reads).

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython
import numpy as np

if not cython.compiled:
    from ..arch.pgtable import MmLike, VmaLike
    from ..cdefs import i64, u64
    from ..hw.tables import AddressSpace
    from .kernel import Kernel

__all__ = [
    "VM_NONE",
    "VM_READ",
    "VM_WRITE",
    "VM_EXEC",
    "VM_SHARED",
    "VM_MAYREAD",
    "VM_MAYWRITE",
    "VM_MAYEXEC",
    "VM_MAYSHARE",
    "VM_DONTCOPY",
    "VM_HUGEPAGE",
    "VM_CONT_PTE",
    "VM_NOHUGEPAGE",
    "VM_UFFD_WP",
    "VM_SOFTDIRTY",
    "VM_ACCESS_FLAGS",
    "FAULT_FLAG_WRITE",
    "FAULT_FLAG_UNSHARE",
    "FAULT_FLAG_REMOTE",
    "VM_FAULT_OOM",
    "VM_FAULT_SIGBUS",
    "VM_FAULT_SIGSEGV",
    "VM_FAULT_FALLBACK",
    "VM_FAULT_RETRY",
    "VM_FAULT_NOPAGE",
    "VM_FAULT_UFFD_WP",
    "MM_FILEPAGES",
    "MM_ANONPAGES",
    "MM_SWAPENTS",
    "MM_SHMEMPAGES",
    "NR_MM_COUNTERS",
    "MmStruct",
    "Vma",
    "RssVec",
    "VmFault",
    "vma_mm",
    "vma_is_anonymous",
    "is_cow_mapping",
]

VM_NONE = cython.declare(i64, 0x0)
VM_READ = cython.declare(i64, 0x1)
VM_WRITE = cython.declare(i64, 0x2)
VM_EXEC = cython.declare(i64, 0x4)
VM_SHARED = cython.declare(i64, 0x8)
VM_MAYREAD = cython.declare(i64, 0x10)
VM_MAYWRITE = cython.declare(i64, 0x20)
VM_MAYEXEC = cython.declare(i64, 0x40)
VM_MAYSHARE = cython.declare(i64, 0x80)
VM_UFFD_WP = cython.declare(i64, 0x1000)
VM_DONTCOPY = cython.declare(i64, 0x20000)
VM_SOFTDIRTY = cython.declare(i64, 0x8000000)
VM_HUGEPAGE = cython.declare(i64, 0x20000000)
VM_NOHUGEPAGE = cython.declare(i64, 0x40000000)
#: Model, OnePlus policy: a VMA named for 64K blocks (the design's
#: ``vma_is_chp_anonymous()``, mm/cont_pte_hugepage.py); above every flag
#: Linux defines on 64-bit that the model uses.
VM_CONT_PTE = cython.declare(i64, 1 << 40)
VM_ACCESS_FLAGS = cython.declare(i64, VM_READ | VM_WRITE | VM_EXEC)

FAULT_FLAG_WRITE = cython.declare(i64, 1 << 0)
FAULT_FLAG_REMOTE = cython.declare(i64, 1 << 7)
FAULT_FLAG_UNSHARE = cython.declare(i64, 1 << 10)

VM_FAULT_OOM = cython.declare(i64, 0x000001)
VM_FAULT_SIGBUS = cython.declare(i64, 0x000002)
VM_FAULT_SIGSEGV = cython.declare(i64, 0x000040)
VM_FAULT_NOPAGE = cython.declare(i64, 0x000100)
VM_FAULT_RETRY = cython.declare(i64, 0x000400)
VM_FAULT_FALLBACK = cython.declare(i64, 0x000800)
#: Model: the fault went to userfaultfd (``handle_userfault()`` for a uffd-wp
#: write): the thread waits for its monitor, which the model does not run.
VM_FAULT_UFFD_WP = cython.declare(i64, 0x100000)

MM_FILEPAGES = cython.declare(i64, 0)
MM_ANONPAGES = cython.declare(i64, 1)
MM_SWAPENTS = cython.declare(i64, 2)
MM_SHMEMPAGES = cython.declare(i64, 3)
NR_MM_COUNTERS = cython.declare(i64, 4)


@cython.cclass
class MmStruct(MmLike):
    """A ``struct mm_struct``: an address space, its VMAs and RSS counters."""

    def __init__(self, kernel: Kernel, space: AddressSpace, owner: i64) -> None:
        super().__init__(space)
        self.kernel: Kernel = kernel
        self.owner = owner
        #: VMAs sorted by address (the maple tree).
        self.vmas: list[Vma] = []
        self.rss = np.zeros(NR_MM_COUNTERS, dtype=np.int64)
        self.mmap_base = kernel.TASK_MMAP_BASE
        #: MMF_HAS_PINNED: this mm ever pinned pages (fork must then copy pinned ones).
        self.has_pinned = False
        #: PFNs pinned through this mm and not yet unpinned (the model's GUP owner list).
        self.pinned: list[int] = []
        self.dead = False
        #: ``mm->mm_lock_seq``: bumped when the mmap_lock is released for
        #: write; a VMA whose ``vm_lock_seq`` equals it is write-locked
        #: (include/linux/mmap_lock.h, mm.h; the helpers are in mm/fork.py).
        self.mm_lock_seq = 0
        #: The mmap_lock is held for write (only dup_mmap() records it: the
        #: other syscalls run to completion, see system/sched.py).
        self.mmap_write_locked = False
        #: Readers of the mmap_lock in the interrupted steps (do_madvise of a
        #: read-locked advice counts itself here: system/sched.py lets a
        #: zap's lock drop be a preemption point only then).
        self.mmap_read_locked = 0
        #: ``mm->write_protect_seq``: odd while fork write-protects a COW
        #: VMA's page tables (copy_page_range); GUP-fast checks it (mm/gup.py).
        self.write_protect_seq = 0

    def __repr__(self) -> str:
        return f"<mm of pid {self.owner}>"

    # -- include/linux/mm.h helpers ------------------------------------------
    @cython.ccall
    def add_mm_counter(self, member: i64, value: i64) -> None:
        self.rss[member] += value

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def get_mm_counter(self, member: i64) -> i64:
        return cython.cast(i64, self.rss[member])

    @cython.ccall
    def find_vma(self, addr: i64) -> Any:
        """The first VMA with ``vm_end > addr`` (``find_vma()``), or None."""
        vmas: list[Vma] = self.vmas
        i: i64 = self.vma_index(addr)
        return vmas[i] if i < len(vmas) else None

    @cython.ccall
    def vma_lookup(self, addr: i64) -> Any:
        """The VMA containing ``addr`` or None (``vma_lookup()``)."""
        v = self.find_vma(addr)
        if v is not None and cython.cast(Vma, v).vm_start <= addr:
            return v
        return None

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def vma_index(self, addr: i64) -> i64:
        """The index in ``vmas`` of the first VMA with ``vm_end > addr`` (``len(vmas)`` if none)."""
        vmas: list[Vma] = self.vmas
        lo: i64 = 0
        hi: i64 = len(vmas)
        mid: i64
        v: Vma
        while lo < hi:
            mid = (lo + hi) >> 1
            v = vmas[mid]
            if v.vm_end <= addr:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def vmas_in(self, start: i64, end: i64) -> list[Vma]:
        """VMAs intersecting ``[start, end)`` in address order (a new list)."""
        vmas: list[Vma] = self.vmas
        out: list[Vma] = []
        i: i64
        v: Vma
        for i in range(self.vma_index(start), len(vmas)):
            v = vmas[i]
            if v.vm_start >= end:
                break
            out.append(v)
        return out


@cython.final
@cython.cclass
class Vma(VmaLike):
    """A ``struct vm_area_struct``."""

    def __init__(
        self,
        mm: MmStruct,
        start: i64,
        end: i64,
        flags: i64,
        prot: u64,
        pgoff: i64,
        file: Any = None,
        anon_vma: Any = None,
    ) -> None:
        super().__init__(mm, start, end, flags)
        self.vm_page_prot = prot
        self.vm_pgoff = pgoff
        self.vm_file = file
        #: anon_vma identity (an int naming the anon_vma tree), None until first anon fault.
        self.anon_vma = anon_vma
        #: ``vm_lock_seq``: equal to ``mm.mm_lock_seq`` while write-locked (``vma_start_write``).
        self.vm_lock_seq = -1

    def __repr__(self) -> str:
        return f"<vma {self.vm_start:#x}-{self.vm_end:#x} flags={self.vm_flags:#x}>"

    @property
    def mm(self) -> MmStruct:
        """``vm_mm`` with its core-mm type."""
        return cython.cast(MmStruct, self.vm_mm)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def linear_page_index(self, addr: i64) -> i64:
        """``linear_page_index()``: the file/anon page offset of ``addr``."""
        return ((addr - self.vm_start) >> self.vm_mm.space.page_shift) + self.vm_pgoff

    def copy(self, mm: MmStruct) -> Vma:
        return Vma(
            mm,
            self.vm_start,
            self.vm_end,
            self.vm_flags,
            self.vm_page_prot,
            self.vm_pgoff,
            self.vm_file,
            self.anon_vma,
        )


@cython.final
@cython.cclass
class RssVec:
    """A local ``int rss[NR_MM_COUNTERS]`` (``init_rss_vec()``): per-call RSS deltas in ``c``."""

    def __init__(self) -> None:
        self.c = np.zeros(NR_MM_COUNTERS, dtype=np.int64)


@cython.final
@cython.cclass
class VmFault:
    """A ``struct vm_fault`` (include/linux/mm.h).

    ``pte``: the locked PTE (a ``pte_t *``), -1 when none is mapped;
    ``page``/``cow_folio``: pfn / head pfn, -1 for NULL.
    """

    def __init__(self, vma: Vma, address: i64, flags: i64) -> None:
        self.vma = vma
        self.address = address
        self.flags = flags
        self.pmd_index = address >> vma.vm_mm.space.pmd_shift
        self.pte = -1
        self.orig_pte = 0
        self.page = -1
        self.cow_folio = -1


@cython.ccall
def vma_mm(vma: Vma) -> MmStruct:
    """``vma->vm_mm`` with its core-mm type (the arch layer's base class holds it)."""
    return cython.cast(MmStruct, vma.vm_mm)


@cython.ccall
@cython.exceptval(-1, check=True)
def vma_is_anonymous(vma: Vma) -> cython.bint:
    """True for private or shared anonymous memory without a file (shmem counts as file)."""
    return vma.vm_file is None


@cython.ccall
@cython.exceptval(-1, check=True)
def is_cow_mapping(flags: i64) -> cython.bint:
    """``is_cow_mapping()``: private and may be written."""
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        VM_NONE=VM_NONE,
        VM_READ=VM_READ,
        VM_WRITE=VM_WRITE,
        VM_EXEC=VM_EXEC,
        VM_SHARED=VM_SHARED,
        VM_MAYREAD=VM_MAYREAD,
        VM_MAYWRITE=VM_MAYWRITE,
        VM_MAYEXEC=VM_MAYEXEC,
        VM_MAYSHARE=VM_MAYSHARE,
        VM_UFFD_WP=VM_UFFD_WP,
        VM_DONTCOPY=VM_DONTCOPY,
        VM_SOFTDIRTY=VM_SOFTDIRTY,
        VM_HUGEPAGE=VM_HUGEPAGE,
        VM_NOHUGEPAGE=VM_NOHUGEPAGE,
        VM_CONT_PTE=VM_CONT_PTE,
        VM_ACCESS_FLAGS=VM_ACCESS_FLAGS,
        FAULT_FLAG_WRITE=FAULT_FLAG_WRITE,
        FAULT_FLAG_REMOTE=FAULT_FLAG_REMOTE,
        FAULT_FLAG_UNSHARE=FAULT_FLAG_UNSHARE,
        VM_FAULT_OOM=VM_FAULT_OOM,
        VM_FAULT_SIGBUS=VM_FAULT_SIGBUS,
        VM_FAULT_SIGSEGV=VM_FAULT_SIGSEGV,
        VM_FAULT_NOPAGE=VM_FAULT_NOPAGE,
        VM_FAULT_RETRY=VM_FAULT_RETRY,
        VM_FAULT_FALLBACK=VM_FAULT_FALLBACK,
        VM_FAULT_UFFD_WP=VM_FAULT_UFFD_WP,
        MM_FILEPAGES=MM_FILEPAGES,
        MM_ANONPAGES=MM_ANONPAGES,
        MM_SWAPENTS=MM_SWAPENTS,
        MM_SHMEMPAGES=MM_SHMEMPAGES,
        NR_MM_COUNTERS=NR_MM_COUNTERS,
    )
