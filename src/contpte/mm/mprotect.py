"""mprotect: change the protection of a range.

Models: mm/mprotect.c (Linux v6.12, with the v6.17 batching as options):
``do_mprotect_pkey`` -> ``mprotect_fixup`` -> ``change_protection`` ->
``change_pte_range``, with ``can_change_pte_writable`` upgrading exclusive
anon pages (and dirty shared pages) straight to writable.  v6.12 changes
one PTE per iteration through ``ptep_modify_prot_start``/``commit``; from
v6.17 (``Kernel.mprotect_batch``, "mm: optimize mprotect() by PTE
batching") a large folio's PTEs go in batches (``change_present_ptes()``:
``modify_prot_start_ptes``/``modify_prot_commit_ptes``, the write upgrade
per run of equally exclusive pages), and NUMA hinting skips a folio it
leaves alone in one step (``Kernel.prot_numa_batch_skip``).  The v6.12
path is the same code with batches of one.  ``can_change_pte_writable()``
and ``vma_wants_manual_pte_write_upgrade()`` are in ``mm_h`` (mm/memory.c's
NUMA fault uses them too; compiled modules may not import in a cycle).
Also mm/mempolicy.c ``change_prot_numa()``.

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
    from .internal import FPB_RESPECT_SOFT_DIRTY, FPB_RESPECT_WRITE, PtePtr, folio_pte_batch_flags
    from .kernel import Kernel
    from .memmap import (
        MemMap,
        PageAnonExclusive,
        folio_likely_mapped_shared,
        folio_maybe_dma_pinned,
        folio_maybe_mapped_shared,
        folio_test_anon,
        folio_test_dirty,
    )
    from .mm_h import (
        MM_CP_PROT_NUMA,
        MM_CP_TRY_CHANGE_WRITABLE,
        MM_CP_UFFD_WP,
        MM_CP_UFFD_WP_RESOLVE,
        can_change_shared_pte_writable,
        folio_is_file_lru,
        maybe_change_pte_writable,
        pte_offset_map_lock,
        pte_unmap_unlock,
        vm_normal_folio,
    )
    from .mm_types import (
        VM_ACCESS_FLAGS,
        VM_READ,
        VM_SHARED,
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
def folio_can_map_prot_numa(k: Kernel, folio: i64, vma: Vma) -> cython.bint:
    """May NUMA hinting make the PTEs of ``folio`` PROT_NONE?  (``folio`` -1: no normal page.)

    Models: the tests of v6.12's ``change_pte_range(MM_CP_PROT_NUMA)``
    (v6.17: ``prot_numa_skip()``; v7.x: mm/mempolicy.c
    ``folio_can_map_prot_numa()``): not the zero page or a special mapping,
    not a shared or maybe-pinned page of a CoW mapping, not a dirty folio
    of the file LRU (page cache, lazyfree anon; not shmem), which migration
    cannot move from MIGRATE_ASYNC context.  The model has one NUMA node
    and does not apply the single-threaded "already on this node" test.
    """
    mem: MemMap = k.memmap
    if folio < 0:
        return False
    if is_cow_mapping(vma.vm_flags) and (
        folio_maybe_dma_pinned(mem, folio)
        or (
            folio_maybe_mapped_shared(mem, folio)
            if k.maybe_mapped_shared
            else folio_likely_mapped_shared(mem, folio)
        )
    ):
        return False
    return not (folio_is_file_lru(k, folio) and folio_test_dirty(mem, folio))


@cython.cfunc
@cython.exceptval(-1, check=True)
def mprotect_folio_pte_batch(k: Kernel, folio: i64, ptep: i64, pte: u64, max_nr_ptes: i64, flags: i64) -> i64:
    """Models: mm/mprotect.c ``mprotect_folio_pte_batch()`` (v6.17): 1 unless a large folio."""
    if folio < 0 or k.memmap.order[folio] == 0:
        return 1
    ptentp: PtePtr = PtePtr.__new__(PtePtr)
    ptentp.value = pte
    return folio_pte_batch_flags(k, folio, None, ptep, ptentp, max_nr_ptes, flags)


@cython.cfunc
def prot_commit_flush_ptes(
    tlb: MmuGather,
    vma: Vma,
    addr: i64,
    ptep: i64,
    oldpte: u64,
    ptent: u64,
    nr_ptes: i64,
    idx: i64,
    set_write: cython.bint,
) -> None:
    """Commit ``nr_ptes`` PTEs from entry ``idx`` of a started batch; queue their flush.

    Models: mm/mprotect.c ``prot_commit_flush_ptes()`` (v6.17; v6.12's
    per-PTE ``ptep_modify_prot_commit()`` + ``tlb_flush_pte_range()``).
    The flush is queued only where the arch's ``pte_needs_flush()`` says so
    (generic: always; arm64 v6.19: not for a change of software bits only).
    """
    a: Pgtable = vma_mm(vma).kernel.arch
    addr += idx * a.PAGE_SIZE
    ptep += idx
    oldpte = a.pte_advance_pfn(oldpte, idx)
    ptent = a.pte_advance_pfn(ptent, idx)
    if set_write:
        ptent = a.pte_mkwrite(ptent)
    a.modify_prot_commit_ptes(vma, addr, ptep, oldpte, ptent, nr_ptes)
    if a.pte_needs_flush(oldpte, ptent):
        tlb.tlb_remove_tlb_entries(ptep, nr_ptes, addr)


@cython.cfunc
@cython.exceptval(-1, check=True)
def page_anon_exclusive_sub_batch(
    mem: MemMap, start_idx: i64, max_len: i64, first_page: i64, expected_anon_exclusive: cython.bint
) -> i64:
    """Models: mm/mprotect.c ``page_anon_exclusive_sub_batch()``: the run from ``start_idx`` of pages
    whose PageAnonExclusive is ``expected_anon_exclusive``."""
    idx: i64 = start_idx + 1
    while idx < start_idx + max_len:
        if expected_anon_exclusive != PageAnonExclusive(mem, first_page + idx):
            break
        idx += 1
    return idx - start_idx


@cython.cfunc
def commit_anon_folio_batch(
    tlb: MmuGather,
    vma: Vma,
    folio: i64,
    first_page: i64,
    addr: i64,
    ptep: i64,
    oldpte: u64,
    ptent: u64,
    nr_ptes: i64,
) -> None:
    """Commit a batch of an anon folio, writable where the page is exclusive, run by run.

    Models: mm/mprotect.c ``commit_anon_folio_batch()`` (v6.17): the first
    page's PageAnonExclusive says nothing of the others, so each run of
    equally exclusive pages is one ``prot_commit_flush_ptes()``.
    """
    mem: MemMap = vma_mm(vma).kernel.memmap
    sub_batch_idx: i64 = 0
    length: i64
    expected: cython.bint
    while nr_ptes:
        expected = PageAnonExclusive(mem, first_page + sub_batch_idx)
        length = page_anon_exclusive_sub_batch(mem, sub_batch_idx, nr_ptes, first_page, expected)
        prot_commit_flush_ptes(tlb, vma, addr, ptep, oldpte, ptent, length, sub_batch_idx, expected)
        sub_batch_idx += length
        nr_ptes -= length


@cython.cfunc
def set_write_prot_commit_flush_ptes(
    tlb: MmuGather,
    vma: Vma,
    folio: i64,
    page: i64,
    addr: i64,
    ptep: i64,
    oldpte: u64,
    ptent: u64,
    nr_ptes: i64,
) -> None:
    """Commit a batch, upgrading to writable what a write fault would (``MM_CP_TRY_CHANGE_WRITABLE``).

    Models: mm/mprotect.c ``set_write_prot_commit_flush_ptes()`` (v6.17;
    v6.12: ``can_change_pte_writable()`` per PTE): shared mappings by the
    dirty bit, private ones by each page's PageAnonExclusive.
    """
    k: Kernel = vma_mm(vma).kernel
    set_write: cython.bint
    if vma.vm_flags & VM_SHARED:
        set_write = can_change_shared_pte_writable(vma, ptent)
        prot_commit_flush_ptes(tlb, vma, addr, ptep, oldpte, ptent, nr_ptes, 0, set_write)
        return
    set_write = maybe_change_pte_writable(vma, ptent) and folio >= 0 and folio_test_anon(k.memmap, folio)
    if not set_write:
        prot_commit_flush_ptes(tlb, vma, addr, ptep, oldpte, ptent, nr_ptes, 0, False)
        return
    commit_anon_folio_batch(tlb, vma, folio, page, addr, ptep, oldpte, ptent, nr_ptes)


@cython.cfunc
def change_present_ptes(
    tlb: MmuGather,
    vma: Vma,
    addr: i64,
    ptep: i64,
    nr_ptes: i64,
    newprot: u64,
    folio: i64,
    page: i64,
    cp_flags: i64,
) -> None:
    """Change ``nr_ptes`` present PTEs mapping consecutive pages of ``folio`` to ``newprot``.

    Models: mm/mprotect.c ``change_present_ptes()`` (v6.17; v6.12 did the
    same inline for one PTE): ``modify_prot_start_ptes()`` clears the batch
    and returns its first PTE with every young/dirty bit ORed in, so the
    committed PTEs all carry the batch's young/dirty state.
    """
    a: Pgtable = vma_mm(vma).kernel.arch
    oldpte: u64 = a.modify_prot_start_ptes(vma, addr, ptep, nr_ptes)
    ptent: u64 = a.pte_modify(oldpte, newprot)
    if cp_flags & MM_CP_UFFD_WP:
        ptent = a.pte_mkuffd_wp(ptent)
    elif cp_flags & MM_CP_UFFD_WP_RESOLVE:
        ptent = a.pte_clear_uffd_wp(ptent)
    # Avoid a write fault on the next access where the page may be written
    # at once (exclusive anon, dirty shared).
    if cp_flags & MM_CP_TRY_CHANGE_WRITABLE and not a.pte_write(ptent):
        set_write_prot_commit_flush_ptes(tlb, vma, folio, page, addr, ptep, oldpte, ptent, nr_ptes)
    else:
        prot_commit_flush_ptes(tlb, vma, addr, ptep, oldpte, ptent, nr_ptes, 0, False)


@cython.ccall
@cython.exceptval(-1, check=True)
def change_pte_range(
    tlb: MmuGather, vma: Vma, pmd_index: i64, addr: i64, end: i64, newprot: u64, cp_flags: i64
) -> i64:
    """Change the protection of the present PTEs of ``[addr, end)``; the PTEs changed.

    Models: mm/mprotect.c ``change_pte_range()``.  ``newprot``: the
    ``pgprot_t``; ``cp_flags``: ``MM_CP_*``.  v6.12: one PTE per iteration.
    ``k.mprotect_batch`` (v6.17): a large folio's PTEs that agree in all
    but young/dirty (``FPB_RESPECT_SOFT_DIRTY | FPB_RESPECT_WRITE``) are one
    ``change_present_ptes()``.  ``k.prot_numa_batch_skip`` (v6.17): NUMA
    hinting skips a folio it leaves alone one ``folio_pte_batch()`` at a
    time (flags 0: dirty and write ignored).

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
    page_shift: i64 = k.page_shift
    ptep: i64 = ptep0
    pages: i64 = 0
    nr_ptes: i64
    max_nr_ptes: i64
    folio: i64
    oldpte: u64
    while addr < end:
        nr_ptes = 1
        oldpte = a.ptep_get(ptep)
        if a.pte_present(oldpte) and not (prot_numa and a.pte_protnone(oldpte)):
            # (A PROT_NONE PTE is already in the state NUMA hinting wants.)
            max_nr_ptes = (end - addr) >> page_shift
            folio = vm_normal_folio(vma, addr, oldpte)
            if prot_numa and not folio_can_map_prot_numa(k, folio, vma):
                if k.prot_numa_batch_skip:
                    nr_ptes = mprotect_folio_pte_batch(k, folio, ptep, oldpte, max_nr_ptes, 0)
            else:
                if k.mprotect_batch:
                    nr_ptes = mprotect_folio_pte_batch(
                        k, folio, ptep, oldpte, max_nr_ptes, FPB_RESPECT_SOFT_DIRTY | FPB_RESPECT_WRITE
                    )
                change_present_ptes(
                    tlb, vma, addr, ptep, nr_ptes, newprot, folio, a.pte_pfn(oldpte), cp_flags
                )
                pages += nr_ptes
        ptep += nr_ptes
        addr += nr_ptes << page_shift
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
    if k.oneplus:
        # OnePlus blocks in the range are split (the design's whole-block
        # change_huge_cont_pte() is not modelled: docs/oneplus.md).
        from .cont_pte_hugepage import split_cont_pte_range

        split_cont_pte_range(vma, start, end)
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
        NUMA_PTE_UPDATES=NUMA_PTE_UPDATES,
        NUMA_HUGE_PTE_UPDATES=NUMA_HUGE_PTE_UPDATES,
    )
