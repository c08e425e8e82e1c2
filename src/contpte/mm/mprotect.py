"""mprotect: change the protection of a range.

Models: mm/mprotect.c (Linux v6.12): ``do_mprotect_pkey`` ->
``mprotect_fixup`` -> ``change_protection`` -> ``change_pte_range``, one
PTE at a time through ``ptep_modify_prot_start``/``commit`` (the batched
form came after v6.12), with ``can_change_pte_writable`` upgrading
exclusive anon pages (and dirty shared pages) straight to writable.
``can_change_pte_writable()`` and ``vma_wants_manual_pte_write_upgrade()``
are in ``mm_h`` (mm/memory.c's NUMA fault uses them too; compiled modules
may not import in a cycle).  Also mm/mempolicy.c ``change_prot_numa()``.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ..counters import counter

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from ..hw.tables import AddressSpace
    from .huge_memory import change_huge_pmd, split_huge_pmd
    from .kernel import Kernel
    from .memmap import (
        MemMap,
        folio_likely_mapped_shared,
        folio_maybe_dma_pinned,
        folio_maybe_mapped_shared,
        folio_test_dirty,
    )
    from .mm_h import (
        MM_CP_PROT_NUMA,
        MM_CP_TRY_CHANGE_WRITABLE,
        MM_CP_UFFD_WP,
        MM_CP_UFFD_WP_ALL,
        MM_CP_UFFD_WP_RESOLVE,
        can_change_pte_writable,
        folio_is_file_lru,
        pte_offset_map_lock,
        pte_unmap_unlock,
        vm_normal_folio,
    )
    from .mm_types import (
        VM_ACCESS_FLAGS,
        VM_READ,
        VM_WRITE,
        MmStruct,
        Vma,
        is_cow_mapping,
        vma_is_anonymous,
        vma_mm,
    )
    from .mmap import split_vma, vma_merge_around, vma_set_page_prot
    from .mmu_gather import MmuGather

__all__ = [
    "do_mprotect_pkey",
    "mprotect_fixup",
    "change_protection",
    "change_pte_range",
    "change_prot_numa",
    "MM_CP_TRY_CHANGE_WRITABLE",
    "MM_CP_PROT_NUMA",
    "MM_CP_UFFD_WP",
    "MM_CP_UFFD_WP_RESOLVE",
    "MM_CP_UFFD_WP_ALL",
    "NUMA_PTE_UPDATES",
    "NUMA_HUGE_PTE_UPDATES",
]

NUMA_PTE_UPDATES = cython.declare(i64, counter("numa_pte_updates"))
NUMA_HUGE_PTE_UPDATES = cython.declare(i64, counter("numa_huge_pte_updates"))

ENOMEM = cython.declare(i64, 12)
EACCES = cython.declare(i64, 13)
EINVAL = cython.declare(i64, 22)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _prot_numa_skip(k: Kernel, vma: Vma, addr: i64, pte: u64) -> cython.bint:
    """The pages ``change_pte_range(MM_CP_PROT_NUMA)`` leaves alone (v6.12)."""
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    if a.pte_protnone(pte):
        return True  # already a hinting fault pending
    folio: i64 = vm_normal_folio(vma, addr, pte)
    if folio < 0:
        return True  # the zero page, special mappings
    if is_cow_mapping(vma.vm_flags) and (
        folio_maybe_dma_pinned(mem, folio)
        or (
            folio_maybe_mapped_shared(mem, folio)
            if k.maybe_mapped_shared
            else folio_likely_mapped_shared(mem, folio)
        )
    ):
        return True  # shared copy-on-write pages
    # Migration cannot move every dirty page from MIGRATE_ASYNC context:
    # dirty folios of the file LRU (page cache, lazyfree anon; not shmem).
    return folio_is_file_lru(k, folio) and folio_test_dirty(mem, folio)


@cython.ccall
@cython.exceptval(-1, check=True)
def change_pte_range(
    tlb: MmuGather, vma: Vma, pmd_index: i64, addr: i64, end: i64, newprot: u64, cp_flags: i64
) -> i64:
    """Change the protection of the present PTEs of ``[addr, end)``; the PTEs changed.

    Models: mm/mprotect.c ``change_pte_range()`` (v6.12, per PTE).
    ``newprot``: the ``pgprot_t``; ``cp_flags``: ``MM_CP_*``.

    Context: mmap_lock held for write; ``[addr, end)`` within the VMA and
    the page table at ``pmd_index``, which no huge PMD maps.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    ptep0: i64 = pte_offset_map_lock(mm, addr, False)
    if ptep0 < 0:
        return 0
    prot_numa: cython.bint = (cp_flags & MM_CP_PROT_NUMA) != 0
    uffd_wp: cython.bint = (cp_flags & MM_CP_UFFD_WP) != 0
    uffd_wp_resolve: cython.bint = (cp_flags & MM_CP_UFFD_WP_RESOLVE) != 0
    try_writable: cython.bint = (cp_flags & MM_CP_TRY_CHANGE_WRITABLE) != 0
    page_size: i64 = k.PAGE_SIZE
    ptep: i64 = ptep0
    pages: i64 = 0
    oldpte: u64
    ptent: u64
    while addr < end:
        oldpte = a.ptep_get(ptep)
        if a.pte_present(oldpte):
            if not (prot_numa and _prot_numa_skip(k, vma, addr, oldpte)):
                oldpte = a.ptep_modify_prot_start(vma, addr, ptep)
                ptent = a.pte_modify(oldpte, newprot)
                if uffd_wp:
                    ptent = a.pte_mkuffd_wp(ptent)
                elif uffd_wp_resolve:
                    ptent = a.pte_clear_uffd_wp(ptent)
                # Avoid a write fault on the next access where the page may
                # be written at once (exclusive anon, dirty shared).
                if try_writable and not a.pte_write(ptent) and can_change_pte_writable(vma, addr, ptent):
                    ptent = a.pte_mkwrite(ptent)
                a.ptep_modify_prot_commit(vma, addr, ptep, oldpte, ptent)
                tlb.tlb_remove_tlb_entries(ptep, 1, addr)
                pages += 1
        ptep += 1
        addr += page_size
    # ptep0, not ptep: after the loop ptep may point past the table's end.
    pte_unmap_unlock(mm, ptep0)
    return pages


@cython.ccall
@cython.exceptval(-1, check=True)
def change_protection(tlb: MmuGather, vma: Vma, start: i64, end: i64, cp_flags: i64) -> i64:
    """Change the protection of ``[start, end)`` of ``vma``; the pages changed.

    Models: mm/mprotect.c ``change_protection()`` -> ``change_protection_range()``
    (``tlb_start_vma``/``tlb_end_vma`` around the walk: on arm64 the gather
    is flushed at the end of every VMA) -> ``change_pmd_range()``: a huge
    PMD wholly inside the range goes to ``change_huge_pmd()`` (mprotect,
    uffd-wp and NUMA hinting alike; anon VMAs never need
    ``pgtable_split_needed()``), one partly inside is split first.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    space: AddressSpace = mm.space
    pmd_size: i64 = a.PMD_SIZE
    pmd_shift: i64 = a.PMD_SHIFT
    # NUMA hinting maps PAGE_NONE: present but inaccessible (pte_protnone).
    newprot: u64 = a.vm_get_page_prot(0) if cp_flags & MM_CP_PROT_NUMA else vma.vm_page_prot
    pages: i64 = 0
    addr: i64 = start
    nxt: i64
    idx: i64
    ret: i64
    nr_huge_updates: i64 = 0
    tlb.tlb_start_vma(vma)
    while addr < end:
        nxt = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        idx = addr >> pmd_shift
        if space.pmds and idx in space.pmds:
            if nxt - addr == pmd_size and not _pgtable_split_needed(vma, cp_flags):
                ret = change_huge_pmd(tlb, vma, idx, addr, newprot, cp_flags)
                if ret == a.HPAGE_PMD_NR:
                    pages += ret
                    nr_huge_updates += 1
                addr = nxt
                continue
            split_huge_pmd(vma, idx, addr)
        pages += change_pte_range(tlb, vma, idx, addr, nxt, newprot, cp_flags)
        addr = nxt
    if nr_huge_updates:
        # As change_pmd_range() counts it: for mprotect and uffd-wp too.
        count(k.counters, NUMA_HUGE_PTE_UPDATES, nr_huge_updates)
    tlb.tlb_end_vma(vma)
    return pages


@cython.cfunc
@cython.exceptval(-1, check=True)
def _pgtable_split_needed(vma: Vma, cp_flags: i64) -> cython.bint:
    """Models: mm/mprotect.c ``pgtable_split_needed()``: uffd-wp of a file THP needs PTE markers."""
    return (cp_flags & MM_CP_UFFD_WP) != 0 and not vma_is_anonymous(vma)


@cython.ccall
def mprotect_fixup(tlb: MmuGather, vma: Vma, start: i64, end: i64, newflags: i64) -> None:
    """Models: mm/mprotect.c ``mprotect_fixup()``: split, set, change, merge."""
    mm: MmStruct = vma_mm(vma)
    if newflags == vma.vm_flags:
        return
    if vma.vm_start < start:
        vma = split_vma(mm, vma, start)
    if vma.vm_end > end:
        split_vma(mm, vma, end)
    vma.vm_flags = newflags
    vma_set_page_prot(vma)
    cp_flags: i64 = MM_CP_TRY_CHANGE_WRITABLE if newflags & VM_WRITE else 0
    change_protection(tlb, vma, start, end, cp_flags)
    vma_merge_around(mm, vma)


@cython.ccall
@cython.exceptval(-1, check=True)
def do_mprotect_pkey(mm: MmStruct, start: i64, length: i64, prot: i64) -> i64:
    """The mprotect syscall; 0 or -errno.

    Models: mm/mprotect.c ``do_mprotect_pkey()``: EINVAL for an unaligned
    start or unknown bits, ENOMEM when part of the range is unmapped,
    EACCES when asking for more than the mapping may have (VM_MAY*).  As in
    the kernel, the VMAs before the first hole (or the first VMA refusing
    ``prot``) keep their new protection when the call fails.
    """
    k: Kernel = mm.kernel
    ps: i64 = k.PAGE_SIZE
    if start & (ps - 1) or prot & ~VM_ACCESS_FLAGS:
        return -EINVAL
    if length == 0:
        return 0
    length = (length + ps - 1) & ~(ps - 1)
    end: i64 = start + length
    if end <= start:
        return -ENOMEM
    vmas: list[Vma] = mm.vmas_in(start, end)
    if not vmas or cython.cast(Vma, vmas[0]).vm_start > start:
        return -ENOMEM
    # As the kernel's for_each_vma_range() loop: the VMAs before a hole (or
    # before one that may not get ``prot``) are changed, then the call fails.
    error: i64 = 0
    tmp: i64 = cython.cast(Vma, vmas[0]).vm_start
    newflags: i64
    tlb: MmuGather = MmuGather(mm, False)
    v: Vma
    for v in vmas:
        if v.vm_start != tmp:
            error = -ENOMEM
            break
        newflags = prot | (v.vm_flags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            error = -EACCES
            break
        tmp = min(v.vm_end, end)
        mprotect_fixup(tlb, v, max(start, v.vm_start), tmp, newflags)
    tlb.tlb_finish_mmu()
    if not error and tmp < end:
        error = -ENOMEM
    return error


@cython.ccall
@cython.exceptval(-1, check=True)
def change_prot_numa(vma: Vma, addr: i64, end: i64) -> i64:
    """Make the range's PTEs PROT_NONE so the next access takes a NUMA hinting fault.

    Models: mm/mempolicy.c ``change_prot_numa()`` -> ``change_protection(
    MM_CP_PROT_NUMA)``, as ``task_numa_work()`` calls it on accessible VMAs
    (read-only file mappings are skipped there).  Skips what
    ``change_pte_range`` skips: already-protnone PTEs, the zero page, shared
    or maybe-pinned CoW pages, dirty file-LRU pages; huge PMDs go to
    ``change_huge_pmd``.  Counts ``numa_pte_updates`` by the pages changed.
    Returns the PTEs changed.
    """
    mm: MmStruct = vma_mm(vma)
    if not vma.vm_flags & VM_ACCESS_FLAGS:
        return 0
    if vma.vm_file is not None and (vma.vm_flags & (VM_READ | VM_WRITE)) == VM_READ:
        return 0
    tlb: MmuGather = MmuGather(mm, False)
    pages: i64 = change_protection(tlb, vma, addr, end, MM_CP_PROT_NUMA)
    tlb.tlb_finish_mmu()
    if pages > 0:
        count(mm.kernel.counters, NUMA_PTE_UPDATES, pages)
    return pages


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        MM_CP_TRY_CHANGE_WRITABLE=MM_CP_TRY_CHANGE_WRITABLE,
        MM_CP_PROT_NUMA=MM_CP_PROT_NUMA,
        MM_CP_UFFD_WP=MM_CP_UFFD_WP,
        MM_CP_UFFD_WP_RESOLVE=MM_CP_UFFD_WP_RESOLVE,
        MM_CP_UFFD_WP_ALL=MM_CP_UFFD_WP_ALL,
        NUMA_PTE_UPDATES=NUMA_PTE_UPDATES,
        NUMA_HUGE_PTE_UPDATES=NUMA_HUGE_PTE_UPDATES,
    )
