"""VMAs: mmap, munmap, split and merge, exit.

Models: mm/mmap.c and mm/vma.c (Linux v6.12): ``get_unmapped_area``
(top-down, with the THP alignment of PMD-multiple anonymous mappings),
``do_mmap``/``mmap_region`` (merging with compatible neighbours),
``do_vmi_munmap`` (split at the edges, unmap, free page tables),
``split_vma``, ``vma_merge`` of neighbours after a change, ``copy_vma``
and ``vma_merge_extend`` (mremap), and
``exit_mmap`` (a fullmm gather).  ``vma_wants_writenotify()`` of mm/vma.c
is in ``mm_h`` (mm/memory.c uses it too; compiled modules may not import
in a cycle).

``mm.vmas`` (the maple tree) is a list sorted by address;
``MmStruct.vma_index`` finds a position in it by binary search.

Compiled (docs/core.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import cython

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64
    from ..hw.tables import AddressSpace
    from .huge_memory import split_huge_pmd
    from .kernel import Kernel
    from .memory import unmap_vmas
    from .mm_h import vma_wants_writenotify
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
        vma_is_anonymous,
        vma_mm,
    )
    from .mmu_gather import MmuGather
    from .shmem import File

__all__ = [
    "TASK_SIZE",
    "MMAP_MIN_ADDR",
    "get_unmapped_area",
    "do_mmap",
    "do_munmap",
    "split_vma",
    "vma_merge_around",
    "copy_vma",
    "vma_merge_extend",
    "exit_mmap",
    "insert_vma",
    "free_pte_range",
    "free_pgtables",
    "release_anon_shmem",
    "vma_set_page_prot",
    "vm_enough_memory",
    "accountable_mapping",
]

TASK_SIZE = cython.declare(i64, 1 << 47)
MMAP_MIN_ADDR = cython.declare(i64, 0x10000)
ENOMEM = cython.declare(i64, 12)
EINVAL = cython.declare(i64, 22)


@cython.ccall
def insert_vma(mm: MmStruct, vma: Vma) -> None:
    """Insert ``vma`` in ``mm.vmas`` at its address (``vma_iter_store``)."""
    mm.vmas.insert(mm.vma_index(vma.vm_start), vma)


@cython.ccall
@cython.exceptval(-1, check=True)
def get_unmapped_area(mm: MmStruct, addr: i64, length: i64, anon: cython.bint, fixed: cython.bint) -> i64:
    """Choose where a new mapping goes; -ENOMEM if nowhere.

    Models: mm/mmap.c ``__get_unmapped_area()`` with the top-down allocator
    and ``thp_get_unmapped_area`` for anonymous lengths that are a multiple
    of the PMD size (v6.12).
    """
    k: Kernel = mm.kernel
    if fixed:
        return addr
    ps: i64 = k.PAGE_SIZE
    pmd_size: i64 = k.arch.PMD_SIZE
    align: i64 = pmd_size if anon and length % pmd_size == 0 else ps
    vmas: list[Vma] = mm.vmas
    i: i64
    if addr:
        addr = (addr + ps - 1) & ~(ps - 1)
        if addr + length <= TASK_SIZE:
            # No VMA intersects [addr, addr + length)?
            i = mm.vma_index(addr)
            if i == len(vmas) or cython.cast(Vma, vmas[i]).vm_start >= addr + length:
                return addr
    high: i64 = mm.mmap_base
    cand: i64
    vma: Vma
    for i in range(len(vmas) - 1, -1, -1):
        vma = vmas[i]
        if vma.vm_start >= high:
            continue
        cand = (high - length) & ~(align - 1)
        if cand >= vma.vm_end:
            return cand
        high = min(high, vma.vm_start)
    cand = (high - length) & ~(align - 1)
    if cand >= MMAP_MIN_ADDR:
        return cand
    return -ENOMEM


@cython.cfunc
@cython.exceptval(-1, check=True)
def _mergeable(a: Vma, b: Vma) -> cython.bint:
    """May ``a`` (below) and ``b`` (above, adjacent) become one VMA."""
    if a.vm_end != b.vm_start or a.vm_flags != b.vm_flags or a.vm_file is not b.vm_file:
        return False
    if a.vm_page_prot != b.vm_page_prot:
        return False
    if a.vm_pgoff + ((a.vm_end - a.vm_start) >> a.vm_mm.space.page_shift) != b.vm_pgoff:
        return False
    return a.anon_vma is None or b.anon_vma is None or a.anon_vma == b.anon_vma


@cython.ccall
def vma_merge_around(mm: MmStruct, vma: Vma) -> Vma:
    """Merge ``vma`` with compatible neighbours; return the surviving VMA.

    Models: mm/vma.c ``vma_merge_existing_range()`` (the neighbours of a
    VMA whose flags just changed) and ``vma_merge_new_range()`` (mmap).
    """
    vmas: list[Vma] = mm.vmas
    i: i64 = mm.vma_index(vma.vm_start)
    nxt: Vma
    prev: Vma
    if i + 1 < len(vmas) and _mergeable(vma, vmas[i + 1]):
        nxt = vmas.pop(i + 1)
        vma.vm_end = nxt.vm_end
        if vma.anon_vma is None:
            vma.anon_vma = nxt.anon_vma
    if i > 0 and _mergeable(vmas[i - 1], vma):
        prev = vmas[i - 1]
        vmas.pop(i)
        prev.vm_end = vma.vm_end
        if prev.anon_vma is None:
            prev.anon_vma = vma.anon_vma
        return prev
    return vma


@cython.ccall
def copy_vma(vma: Vma, addr: i64, length: i64, pgoff: i64) -> Vma:
    """A VMA like ``vma`` for ``[addr, addr + length)`` at page offset ``pgoff``.

    Models: mm/vma.c ``copy_vma()`` (v6.12): an anonymous VMA never
    faulted (no anon_vma) takes the pgoff of its new address, so it may
    merge there; the new range merges with a compatible neighbour
    (``vma_merge_new_range()``) or becomes a new VMA sharing the anon_vma
    (``anon_vma_clone()``).  The merged VMA may be the source itself (only
    an unfaulted one: its pgoff was just made linear with the new range);
    the caller re-looks the source up by address, as the kernel's
    ``*vmap = new_vma`` does.  The model's ``need_rmap_locks`` is not
    returned: it has no concurrent rmap walk to order against.

    Context: mmap_lock held for write; nothing is mapped in the new range.
    """
    mm: MmStruct = vma_mm(vma)
    if vma_is_anonymous(vma) and not vma.vm_flags & VM_SHARED and vma.anon_vma is None:
        pgoff = addr >> mm.kernel.page_shift
    new: Vma = vma.copy(mm)
    new.vm_start = addr
    new.vm_end = addr + length
    new.vm_pgoff = pgoff
    insert_vma(mm, new)
    return vma_merge_around(mm, new)


@cython.ccall
def vma_merge_extend(mm: MmStruct, vma: Vma, delta: i64) -> Vma:
    """Grow ``vma`` by ``delta`` bytes at its end, merging with the next VMA if it now touches.

    Models: mm/vma.c ``vma_merge_extend()`` (v6.12): ``vma_merge_new_range()``
    of ``[vm_end, vm_end + delta)`` with ``vma`` as the previous VMA (always
    compatible with itself) and the next one.

    Context: mmap_lock held for write; ``[vm_end, vm_end + delta)`` is free.
    """
    vma.vm_end += delta
    return vma_merge_around(mm, vma)


@cython.ccall
@cython.exceptval(-1, check=True)
def vm_enough_memory(k: Kernel, pages: i64) -> cython.bint:
    """Whether ``pages`` more pages may be committed.

    Models: mm/util.c ``__vm_enough_memory()`` under the default policy,
    ``vm.overcommit_memory = 0`` (OVERCOMMIT_GUESS; its v5.8+ form): only a
    single request larger than total RAM plus swap is refused.  The model
    has no swap, and its RAM is every frame (``Machine(memory=)``).
    """
    nr_frames: i64 = k.hw.memory.nr_frames
    return pages <= nr_frames


@cython.ccall
@cython.exceptval(-1, check=True)
def accountable_mapping(file: File | None, vm_flags: i64) -> cython.bint:
    """Models: mm/vma.h ``accountable_mapping()``: a private writable mapping is charged.

    (No hugetlb files and no MAP_NORESERVE in the model.)
    """
    return (vm_flags & (VM_SHARED | VM_WRITE)) == VM_WRITE


@cython.ccall
@cython.exceptval(-1, check=True)
def do_mmap(
    mm: MmStruct, file: File | None, addr: i64, length: i64, vm_flags: i64, pgoff: i64, fixed: cython.bint
) -> i64:
    """Create a mapping; returns its address or -errno.

    Models: mm/mmap.c ``do_mmap()`` -> ``mmap_region()``; ENOMEM when the
    overcommit heuristic refuses the charge (``vm_enough_memory``).
    """
    k: Kernel = mm.kernel
    ps: i64 = k.PAGE_SIZE
    if length <= 0:
        return -EINVAL
    length = (length + ps - 1) & ~(ps - 1)
    if fixed and addr & (ps - 1):
        return -EINVAL
    if addr + length > TASK_SIZE:
        return -ENOMEM
    anon: cython.bint = file is None
    addr = get_unmapped_area(mm, addr, length, anon, fixed)
    if addr < 0:
        return addr
    # mmap_region() charges a private writable mapping (accountable_mapping());
    # shared anonymous memory is charged by shmem_zero_setup() -> shmem_acct_size().
    # Checked before an overlapped MAP_FIXED range is unmapped: v6.12 puts
    # those VMAs back when the charge fails.
    charged: cython.bint = accountable_mapping(file, vm_flags) or (file is not None and file.anon_shmem)
    if charged and not vm_enough_memory(k, length >> k.page_shift):
        return -ENOMEM
    ret: i64
    if fixed and mm.vmas_in(addr, addr + length):
        ret = do_munmap(mm, addr, length)
        if ret:
            return ret
    vm_flags |= VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if vm_flags & VM_SHARED:
        vm_flags |= VM_MAYSHARE
    if anon and not vm_flags & VM_SHARED:
        pgoff = addr >> k.page_shift
    vma: Vma = Vma(mm, addr, addr + length, vm_flags, 0, pgoff, file)
    vma_set_page_prot(vma)
    insert_vma(mm, vma)
    vma_merge_around(mm, vma)
    return addr


@cython.ccall
def vma_set_page_prot(vma: Vma) -> None:
    """Models: mm/mmap.c ``vma_set_page_prot()``: drop VM_SHARED from the prot when write-notifying."""
    flags: i64 = vma.vm_flags & (VM_ACCESS_FLAGS | VM_SHARED)
    if vma_wants_writenotify(vma):
        flags &= ~VM_SHARED
    vma.vm_page_prot = vma_mm(vma).kernel.arch.vm_get_page_prot(flags)


@cython.ccall
def split_vma(mm: MmStruct, vma: Vma, addr: i64) -> Vma:
    """Split ``vma`` at ``addr``; return the upper part.  Models: mm/vma.c ``__split_vma()``."""
    k: Kernel = mm.kernel
    space: AddressSpace = mm.space
    pmd_idx: i64
    if addr & (k.arch.PMD_SIZE - 1):
        # A PMD mapping straddling the new boundary is split first (vma_adjust_trans_huge).
        pmd_idx = addr >> k.arch.PMD_SHIFT
        if space.pmds and pmd_idx in space.pmds:
            split_huge_pmd(vma, pmd_idx, addr)
    if k.oneplus:
        # OnePlus: a 64K block across the new boundary is split first too.
        from .cont_pte_hugepage import split_vma_cont_pte

        split_vma_cont_pte(vma, addr)
    new: Vma = vma.copy(mm)
    new.vm_start = addr
    new.vm_pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> k.page_shift)
    vma.vm_end = addr
    insert_vma(mm, new)
    return new


@cython.ccall
def free_pte_range(tlb: MmuGather, mm: MmStruct, pmd_index: i64) -> None:
    """Unhook and free the PTE table of ``pmd_index``.

    Models: mm/memory.c ``free_pte_range()``: ``pmd_pgtable()``,
    ``pmd_clear()``, ``pte_free_tlb()`` (the gather's range and
    ``freed_tables``, then the arch's ``__pte_free_tlb()``).

    Context: mmap_lock held for write; no VMA covers the table's range.
    """
    arch: Pgtable = mm.kernel.arch
    pgtable: i64 = mm.space.pte_table(pmd_index)
    arch.pmd_clear(mm, pmd_index)
    # asm-generic pte_free_tlb(): the flush covers the table's address ...
    tlb.pte_free_tlb(pmd_index << arch.PMD_SHIFT)
    # ... and the arch's __pte_free_tlb() frees it.
    arch.pte_free_tlb(tlb, pgtable, pmd_index << arch.PMD_SHIFT)


@cython.ccall
def free_pgtables(tlb: MmuGather, mm: MmStruct, start: i64, end: i64) -> None:
    """Free the PTE tables no VMA covers any more within ``[start, end)``.

    Models: mm/memory.c ``free_pgtables()`` -> ``free_pte_range()`` ->
    ``pte_free_tlb()`` (floor/ceiling simplified to "no VMA left in the
    table's range"; the PMD, PUD and P4D table pages above are not modelled,
    so neither is the range of their ``pmd_free_tlb()``).
    """
    k: Kernel = mm.kernel
    space: AddressSpace = mm.space
    shift: i64 = k.arch.PMD_SHIFT
    size: i64 = k.arch.PMD_SIZE
    vmas: list[Vma] = mm.vmas
    idx: i64
    base: i64
    i: i64
    for idx in range(start >> shift, ((end - 1) >> shift) + 1):
        if space.pte_table(idx) < 0:
            continue
        base = idx << shift
        i = mm.vma_index(base)
        if i < len(vmas) and cython.cast(Vma, vmas[i]).vm_start < base + size:
            continue
        free_pte_range(tlb, mm, idx)


@cython.ccall
def release_anon_shmem(mm: MmStruct, gone: Sequence[Vma]) -> None:
    """Free shared anonymous memory no mapping refers to any more.

    Models: the last ``fput()`` of the unlinked shmem file behind
    MAP_SHARED|MAP_ANONYMOUS, which truncates its page cache.
    """
    k: Kernel = mm.kernel
    files: dict[int, File] = {}
    v: Vma
    f: File
    m2: MmStruct
    for v in gone:
        if v.vm_file is not None and cython.cast(File, v.vm_file).anon_shmem:
            files[id(v.vm_file)] = v.vm_file
    if not files:
        return
    for f in files.values():
        used: cython.bint = False
        for m2 in k.mms:
            for v in m2.vmas:
                if v.vm_file is f:
                    used = True
                    break
            if used:
                break
        if not used:
            f.evict_all()
            k.files.pop(f.id, None)


@cython.ccall
@cython.exceptval(-1, check=True)
def do_munmap(mm: MmStruct, start: i64, length: i64) -> i64:
    """Unmap ``[start, start+length)``; 0 or -errno.

    Models: mm/vma.c ``do_vmi_munmap()`` -> ``vms_complete_munmap_vmas``.
    """
    k: Kernel = mm.kernel
    ps: i64 = k.PAGE_SIZE
    if start & (ps - 1) or length <= 0 or start + length > TASK_SIZE:
        return -EINVAL
    end: i64 = start + ((length + ps - 1) & ~(ps - 1))
    vmas: list[Vma] = mm.vmas_in(start, end)
    if not vmas:
        return 0
    first: Vma = vmas[0]
    if first.vm_start < start:
        split_vma(mm, first, start)
        vmas = mm.vmas_in(start, end)
    last: Vma = vmas[len(vmas) - 1]
    if last.vm_end > end:
        split_vma(mm, last, end)
        vmas = mm.vmas_in(start, end)
    tlb: MmuGather = MmuGather(mm, False)
    unmap_vmas(tlb, vmas, start, end)
    # The unmapped VMAs are consecutive in mm.vmas: one slice deletion.
    i: i64 = mm.vma_index(start)
    del mm.vmas[i : i + len(vmas)]
    free_pgtables(tlb, mm, start, end)
    tlb.tlb_finish_mmu()
    release_anon_shmem(mm, vmas)
    return 0


@cython.ccall
def exit_mmap(mm: MmStruct) -> None:
    """Tear down a whole address space at exit.

    Models: mm/mmap.c ``exit_mmap()``: a fullmm gather (no per-range TLB
    flush: the ASID is retired), then page tables are freed.
    """
    tlb: MmuGather = MmuGather(mm, True)
    space: AddressSpace = mm.space
    gone: list[Vma] = list(mm.vmas)
    had_tables: cython.bint = bool(space.tables) or bool(space.pmds)
    unmap_vmas(tlb, gone, 0, TASK_SIZE)
    mm.vmas.clear()
    for idx in list(space.tables):
        free_pte_range(tlb, mm, idx)
    # free_pgtables() frees the PTE tables and the PMD/PUD table pages above
    # them (also those that only held PMD-mapped THPs): freed_tables makes
    # the arch flush the whole ASID once.
    if had_tables:
        tlb.free_pgtables()
    tlb.tlb_finish_mmu()
    release_anon_shmem(mm, gone)


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(TASK_SIZE=TASK_SIZE, MMAP_MIN_ADDR=MMAP_MIN_ADDR)
