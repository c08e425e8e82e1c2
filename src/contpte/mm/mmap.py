"""VMAs: mmap, munmap, split and merge, exit.

Models: mm/mmap.c and mm/vma.c (Linux v6.12): ``get_unmapped_area``
(top-down, with the THP alignment of PMD-multiple anonymous mappings),
``do_mmap``/``mmap_region`` (merging with compatible neighbours),
``do_vmi_munmap`` (split at the edges, unmap, free page tables),
``split_vma``, ``vma_merge`` of neighbours after a change, and
``exit_mmap`` (a fullmm gather).
"""

from __future__ import annotations

import errno
from bisect import insort
from typing import TYPE_CHECKING

from .memory import unmap_vmas
from .mm_types import (
    VM_ACCESS_FLAGS,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    Vma,
)
from .mmu_gather import MmuGather

if TYPE_CHECKING:
    from .kernel import Kernel
    from .shmem import File

__all__ = [
    "get_unmapped_area",
    "do_mmap",
    "do_munmap",
    "split_vma",
    "vma_merge_around",
    "exit_mmap",
    "insert_vma",
    "free_pgtables",
    "vma_wants_writenotify",
    "vma_set_page_prot",
]

TASK_SIZE = 1 << 47
MMAP_MIN_ADDR = 0x10000


def _vma_key(v: Vma) -> int:
    return v.vm_start


def insert_vma(mm: MmStruct, vma: Vma) -> None:
    insort(mm.vmas, vma, key=_vma_key)


def get_unmapped_area(mm: MmStruct, addr: int, length: int, anon: bool, fixed: bool) -> int:
    """Choose where a new mapping goes; -ENOMEM if nowhere.

    Models: mm/mmap.c ``__get_unmapped_area()`` with the top-down allocator
    and ``thp_get_unmapped_area`` for anonymous lengths that are a multiple
    of the PMD size (v6.12).
    """
    k = mm.kernel
    if fixed:
        return addr
    align = k.arch.PMD_SIZE if anon and length % k.arch.PMD_SIZE == 0 else k.PAGE_SIZE
    if addr:
        addr = (addr + k.PAGE_SIZE - 1) & ~(k.PAGE_SIZE - 1)
        if addr + length <= TASK_SIZE and not mm.vmas_in(addr, addr + length):
            return addr
    high = mm.mmap_base
    for vma in reversed(mm.vmas):
        if vma.vm_start >= high:
            continue
        cand = (high - length) & ~(align - 1)
        if cand >= vma.vm_end:
            return cand
        high = min(high, vma.vm_start)
    cand = (high - length) & ~(align - 1)
    if cand >= MMAP_MIN_ADDR:
        return cand
    return -errno.ENOMEM


def _mergeable(a: Vma, b: Vma) -> bool:
    """May ``a`` (below) and ``b`` (above, adjacent) become one VMA."""
    if a.vm_end != b.vm_start or a.vm_flags != b.vm_flags or a.vm_file is not b.vm_file:
        return False
    if a.vm_page_prot != b.vm_page_prot:
        return False
    if a.vm_pgoff + ((a.vm_end - a.vm_start) >> a.vm_mm.space.page_shift) != b.vm_pgoff:
        return False
    return a.anon_vma is None or b.anon_vma is None or a.anon_vma == b.anon_vma


def vma_merge_around(mm: MmStruct, vma: Vma) -> Vma:
    """Merge ``vma`` with compatible neighbours; return the surviving VMA."""
    i = mm.vmas.index(vma)
    if i + 1 < len(mm.vmas) and _mergeable(vma, mm.vmas[i + 1]):
        nxt = mm.vmas.pop(i + 1)
        vma.vm_end = nxt.vm_end
        vma.anon_vma = vma.anon_vma if vma.anon_vma is not None else nxt.anon_vma
    if i > 0 and _mergeable(mm.vmas[i - 1], vma):
        prev = mm.vmas[i - 1]
        mm.vmas.pop(i)
        prev.vm_end = vma.vm_end
        prev.anon_vma = prev.anon_vma if prev.anon_vma is not None else vma.anon_vma
        return prev
    return vma


def vm_enough_memory(k: "Kernel", pages: int) -> bool:
    """Whether ``pages`` more pages may be committed.

    Models: mm/util.c ``__vm_enough_memory()`` under the default policy,
    ``vm.overcommit_memory = 0`` (OVERCOMMIT_GUESS; its v5.8+ form): only a
    single request larger than total RAM plus swap is refused.  The model
    has no swap, and its RAM is every frame (``Machine(memory=)``).
    """
    return bool(pages <= k.hw.memory.nr_frames)


def accountable_mapping(file: "File | None", vm_flags: int) -> bool:
    """Models: mm/vma.h ``accountable_mapping()``: a private writable mapping is charged.

    (No hugetlb files and no MAP_NORESERVE in the model.)
    """
    return (vm_flags & (VM_SHARED | VM_WRITE)) == VM_WRITE


def do_mmap(
    mm: MmStruct, file: "File | None", addr: int, length: int, vm_flags: int, pgoff: int, fixed: bool
) -> int:
    """Create a mapping; returns its address or -errno.

    Models: mm/mmap.c ``do_mmap()`` -> ``mmap_region()``; ENOMEM when the
    overcommit heuristic refuses the charge (``vm_enough_memory``).
    """
    k = mm.kernel
    ps = k.PAGE_SIZE
    if length <= 0:
        return -errno.EINVAL
    length = (length + ps - 1) & ~(ps - 1)
    if fixed and addr & (ps - 1):
        return -errno.EINVAL
    if addr + length > TASK_SIZE:
        return -errno.ENOMEM
    anon = file is None
    addr = get_unmapped_area(mm, addr, length, anon, fixed)
    if addr < 0:
        return addr
    # mmap_region() charges a private writable mapping (accountable_mapping());
    # shared anonymous memory is charged by shmem_zero_setup() -> shmem_acct_size().
    # Checked before an overlapped MAP_FIXED range is unmapped: v6.12 puts
    # those VMAs back when the charge fails.
    charged = accountable_mapping(file, vm_flags) or (file is not None and file.anon_shmem)
    if charged and not vm_enough_memory(k, length >> k.page_shift):
        return -errno.ENOMEM
    if fixed and mm.vmas_in(addr, addr + length):
        ret = do_munmap(mm, addr, length)
        if ret:
            return ret
    vm_flags |= VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if vm_flags & VM_SHARED:
        vm_flags |= VM_MAYSHARE
    if anon and not vm_flags & VM_SHARED:
        pgoff = addr >> k.page_shift
    vma = Vma(mm, addr, addr + length, vm_flags, 0, pgoff, file)
    vma_set_page_prot(vma)
    insert_vma(mm, vma)
    vma_merge_around(mm, vma)
    return addr


def vma_wants_writenotify(vma: Vma) -> bool:
    """A shared writable mapping of a file with writeback: write faults must notify.

    Models: mm/vma.c ``vma_wants_writenotify()`` (v6.12) ending in
    ``vma_fs_can_writeback()``: a regular file needs its folios marked dirty
    on the first write, so its PTEs start read-only; shmem (tmpfs, shared
    anonymous memory) has no writeback and maps writable at once.
    """
    if (vma.vm_flags & (VM_WRITE | VM_SHARED)) != (VM_WRITE | VM_SHARED):
        return False
    return vma.vm_file is not None and not vma.vm_file.shmem


def vma_set_page_prot(vma: Vma) -> None:
    """Models: mm/mmap.c ``vma_set_page_prot()``: drop VM_SHARED from the prot when write-notifying."""
    flags = vma.vm_flags & (VM_ACCESS_FLAGS | VM_SHARED)
    if vma_wants_writenotify(vma):
        flags &= ~VM_SHARED
    vma.vm_page_prot = vma.vm_mm.kernel.arch.vm_get_page_prot(flags)


def split_vma(mm: MmStruct, vma: Vma, addr: int) -> Vma:
    """Split ``vma`` at ``addr``; return the upper part.  Models: mm/vma.c ``__split_vma()``."""
    from . import huge_memory

    k = mm.kernel
    if addr & (k.arch.PMD_SIZE - 1):
        # A PMD mapping straddling the new boundary is split first (vma_adjust_trans_huge).
        pmd_idx = addr >> k.arch.PMD_SHIFT
        if pmd_idx in mm.space.pmds:
            huge_memory.split_huge_pmd(vma, pmd_idx, addr)
    new = vma.copy(mm)
    new.vm_start = addr
    new.vm_pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> k.page_shift)
    vma.vm_end = addr
    insert_vma(mm, new)
    return new


def free_pgtables(tlb: MmuGather, mm: MmStruct, start: int, end: int) -> None:
    """Free the PTE tables no VMA covers any more within ``[start, end)``.

    Models: mm/memory.c ``free_pgtables()`` (floor/ceiling simplified to
    "no VMA left in the table's range").
    """
    k = mm.kernel
    shift = k.arch.PMD_SHIFT
    size = k.arch.PMD_SIZE
    for idx in range(start >> shift, ((end - 1) >> shift) + 1):
        base = idx << shift
        if idx in mm.space.tables and not mm.vmas_in(base, base + size):
            mm.space.free_pte_table(idx)
            tlb.free_pgtables()


def release_anon_shmem(mm: MmStruct, gone: list[Vma]) -> None:
    """Free shared anonymous memory no mapping refers to any more.

    Models: the last ``fput()`` of the unlinked shmem file behind
    MAP_SHARED|MAP_ANONYMOUS, which truncates its page cache.
    """
    k = mm.kernel
    for f in {
        id(v.vm_file): v.vm_file for v in gone if v.vm_file is not None and v.vm_file.anon_shmem
    }.values():
        assert f is not None
        if not any(v.vm_file is f for m2 in k.mms for v in m2.vmas):
            f.evict_all()
            k.files.pop(f.id, None)


def do_munmap(mm: MmStruct, start: int, length: int) -> int:
    """Unmap ``[start, start+length)``; 0 or -errno.

    Models: mm/vma.c ``do_vmi_munmap()`` -> ``vms_complete_munmap_vmas``.
    """
    k = mm.kernel
    ps = k.PAGE_SIZE
    if start & (ps - 1) or length <= 0 or start + length > TASK_SIZE:
        return -errno.EINVAL
    end = start + ((length + ps - 1) & ~(ps - 1))
    vmas = mm.vmas_in(start, end)
    if not vmas:
        return 0
    if vmas[0].vm_start < start:
        split_vma(mm, vmas[0], start)
    vmas = mm.vmas_in(start, end)
    if vmas[-1].vm_end > end:
        split_vma(mm, vmas[-1], end)
    vmas = mm.vmas_in(start, end)
    tlb = MmuGather(mm, fullmm=False)
    unmap_vmas(tlb, vmas, start, end)
    for v in vmas:
        mm.vmas.remove(v)
    free_pgtables(tlb, mm, start, end)
    tlb.tlb_finish_mmu()
    release_anon_shmem(mm, vmas)
    return 0


def exit_mmap(mm: MmStruct) -> None:
    """Tear down a whole address space at exit.

    Models: mm/mmap.c ``exit_mmap()``: a fullmm gather (no per-range TLB
    flush: the ASID is retired), then page tables are freed.
    """
    tlb = MmuGather(mm, fullmm=True)
    gone = list(mm.vmas)
    had_tables = bool(mm.space.tables or mm.space.pmds)
    unmap_vmas(tlb, gone, 0, TASK_SIZE)
    mm.vmas.clear()
    for idx in list(mm.space.tables):
        mm.space.free_pte_table(idx)
    # free_pgtables() frees the PTE tables and the PMD/PUD table pages above
    # them (also those that only held PMD-mapped THPs): freed_tables makes
    # the arch flush the whole ASID once.
    if had_tables:
        tlb.free_pgtables()
    tlb.tlb_finish_mmu()
    release_anon_shmem(mm, gone)
