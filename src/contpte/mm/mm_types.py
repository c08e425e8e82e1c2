"""The core-mm data types: mm_struct, vm_area_struct, folio, flags.

Models: include/linux/mm_types.h, include/linux/mm.h (flag values),
include/linux/mm_types_task.h (RSS counters), Linux v6.12.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hw.tables import AddressSpace

if TYPE_CHECKING:
    from .kernel import Kernel
    from .shmem import File

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
    "MM_SHMEMPAGES",
    "NR_MM_COUNTERS",
    "MmStruct",
    "Vma",
    "vma_is_anonymous",
    "is_cow_mapping",
]

VM_NONE = 0x0
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_MAYSHARE = 0x80
VM_UFFD_WP = 0x1000
VM_DONTCOPY = 0x20000
VM_SOFTDIRTY = 0x8000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC

FAULT_FLAG_WRITE = 1 << 0
FAULT_FLAG_REMOTE = 1 << 7
FAULT_FLAG_UNSHARE = 1 << 10

VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_SIGSEGV = 0x000040
VM_FAULT_NOPAGE = 0x000100
VM_FAULT_RETRY = 0x000400
VM_FAULT_FALLBACK = 0x000800
#: Model: the fault went to userfaultfd (``handle_userfault()`` for a uffd-wp
#: write): the thread waits for its monitor, which the model does not run.
VM_FAULT_UFFD_WP = 0x100000

MM_FILEPAGES = 0
MM_ANONPAGES = 1
MM_SHMEMPAGES = 3
NR_MM_COUNTERS = 4


class MmStruct:
    """A ``struct mm_struct``: an address space, its VMAs and RSS counters."""

    def __init__(self, kernel: "Kernel", space: AddressSpace, owner: int) -> None:
        self.kernel = kernel
        self.space = space
        self.owner = owner
        #: CPUs this mm has run on (``mm_cpumask``).
        self.cpumask: set[int] = set()
        #: VMAs sorted by address (the maple tree).
        self.vmas: list[Vma] = []
        self.rss = [0] * NR_MM_COUNTERS
        self.mmap_base = kernel.TASK_MMAP_BASE
        #: MMF_HAS_PINNED: this mm ever pinned pages (fork must then copy pinned ones).
        self.has_pinned = False
        #: PFNs pinned through this mm and not yet unpinned (the model's GUP owner list).
        self.pinned: list[int] = []
        self.dead = False

    def __repr__(self) -> str:
        return f"<mm of pid {self.owner}>"

    # -- include/linux/mm.h helpers ------------------------------------------
    def add_mm_counter(self, member: int, value: int) -> None:
        self.rss[member] += value

    def get_mm_counter(self, member: int) -> int:
        return self.rss[member]

    def find_vma(self, addr: int) -> "Vma | None":
        """The first VMA with ``vm_end > addr`` (``find_vma()``)."""
        from bisect import bisect_right

        i = bisect_right(self._ends(), addr)
        return self.vmas[i] if i < len(self.vmas) else None

    def vma_lookup(self, addr: int) -> "Vma | None":
        """The VMA containing ``addr`` or None (``vma_lookup()``)."""
        v = self.find_vma(addr)
        if v is not None and v.vm_start <= addr:
            return v
        return None

    def _ends(self) -> list[int]:
        return [v.vm_end for v in self.vmas]

    def vmas_in(self, start: int, end: int) -> list["Vma"]:
        """VMAs intersecting ``[start, end)`` in address order."""
        return [v for v in self.vmas if v.vm_end > start and v.vm_start < end]


class Vma:
    """A ``struct vm_area_struct``."""

    __slots__ = ("vm_mm", "vm_start", "vm_end", "vm_flags", "vm_page_prot", "vm_pgoff", "vm_file", "anon_vma")

    def __init__(
        self,
        mm: MmStruct,
        start: int,
        end: int,
        flags: int,
        prot: int,
        pgoff: int,
        file: "File | None" = None,
        anon_vma: int | None = None,
    ) -> None:
        self.vm_mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = flags
        self.vm_page_prot = prot
        self.vm_pgoff = pgoff
        self.vm_file = file
        #: anon_vma identity (an int naming the anon_vma tree), None until first anon fault.
        self.anon_vma: int | None = anon_vma

    def __repr__(self) -> str:
        return f"<vma {self.vm_start:#x}-{self.vm_end:#x} flags={self.vm_flags:#x}>"

    def linear_page_index(self, addr: int) -> int:
        """``linear_page_index()``: the file/anon page offset of ``addr``."""
        return ((addr - self.vm_start) >> self.vm_mm.space.page_shift) + self.vm_pgoff

    def copy(self, mm: MmStruct) -> "Vma":
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


def vma_is_anonymous(vma: Vma) -> bool:
    """True for private or shared anonymous memory without a file (shmem counts as file)."""
    return vma.vm_file is None


def is_cow_mapping(flags: int) -> bool:
    """``is_cow_mapping()``: private and may be written."""
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE
