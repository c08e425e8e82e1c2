"""mremap: resize a mapping in place, or move it and its page tables.

Models: mm/mremap.c (Linux v6.12; the PTE batching of v6.17 is the
``mremap_pte_batch`` option): the syscall (``SYSCALL_DEFINE5(mremap)``, here
``do_mremap``: the flag and length checks, shrinking, growing in place,
``mremap_to`` for MREMAP_FIXED and MREMAP_DONTUNMAP), ``vma_to_resize``,
``vma_expandable``, ``move_vma`` and the page-table move under it:
``move_page_tables`` (PMD extents, ``try_realign_addr``),
``move_normal_pmd`` (a whole PTE table changes PMD: no PTE is touched),
``move_huge_pmd`` (mm/huge_memory.c, in ``huge_memory``) and ``move_ptes``
(PTE by PTE in v6.12, by folio batches from v6.17).

Not modelled: the PUD level (``move_normal_pud``: the model has no level-1
tables; a 1G-aligned move goes PMD by PMD), hugetlb, mlock
(``VM_LOCKED``), RLIMIT_AS and ``sysctl_max_map_count``, mseal, KSM, the
failure paths of ``move_page_tables`` (the model's tables never fail to
allocate), and UFFD_FEATURE_EVENT_REMAP: a uffd-registered VMA loses its
registration at the new address and its PTEs their uffd-wp bits
(``vma_has_uffd_without_event_remap()``), as for a context opened without
that feature.

v7.2's restructured ``do_mremap()`` (``check_mremap_params()`` before the
VMA lookup; the move of several VMAs at once with MREMAP_FIXED, v6.17)
is not modelled: where the two differ (the errno of a call that is wrong
in two ways; a FIXED move of a range spanning several VMAs, EFAULT here)
the model answers as v6.12.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ..errors import KernelBug

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..hw.tables import AddressSpace
    from .huge_memory import move_huge_pmd, split_huge_pmd
    from .internal import FPB_RESPECT_WRITE, PtePtr, folio_pte_batch_flags
    from .kernel import Kernel
    from .memmap import folio_test_large
    from .mm_h import _pte_alloc, pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio
    from .mm_types import VM_MAYSHARE, VM_SHARED, VM_UFFD_WP, MmStruct, Vma, vma_mm
    from .mmap import (
        TASK_SIZE,
        accountable_mapping,
        copy_vma,
        do_munmap,
        get_unmapped_area,
        vm_enough_memory,
        vma_merge_extend,
    )

__all__ = [
    "MREMAP_MAYMOVE",
    "MREMAP_FIXED",
    "MREMAP_DONTUNMAP",
    "do_mremap",
    "move_vma",
    "move_page_tables",
    "move_ptes",
    "move_normal_pmd",
    "mremap_folio_pte_batch",
]

MREMAP_MAYMOVE = cython.declare(i64, 1)
MREMAP_FIXED = cython.declare(i64, 2)
MREMAP_DONTUNMAP = cython.declare(i64, 4)

EAGAIN = cython.declare(i64, 11)
ENOMEM = cython.declare(i64, 12)
EFAULT = cython.declare(i64, 14)
EINVAL = cython.declare(i64, 22)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _uffd_without_event_remap(vma: Vma) -> cython.bint:
    """include/linux/userfaultfd_k.h ``vma_has_uffd_without_event_remap()``.

    The model's uffd contexts (``userfaultfd_register_wp``) never have
    UFFD_FEATURE_EVENT_REMAP: a registered VMA is one without it.
    """
    return (vma.vm_flags & VM_UFFD_WP) != 0


@cython.ccall
@cython.exceptval(-1, check=True)
def mremap_folio_pte_batch(vma: Vma, addr: i64, ptep: i64, pte: u64, max_nr: i64) -> i64:
    """How many PTEs from ``ptep`` ``move_ptes`` moves as one batch.

    Models: mm/mremap.c ``mremap_folio_pte_batch()`` (v6.17): 1 unless
    ``pte_batch_hint()`` says more (so only from a folded contiguous block
    on arm64; never on a backend without the hint) and the PTE maps a
    large folio; then ``folio_pte_batch_flags(FPB_RESPECT_WRITE)``: the
    run of PTEs mapping the folio's next pages with the same bits but
    access and dirty (and soft-dirty) state, and the same write permission.

    Context: PTL held; ``pte`` is present; ``max_nr`` stays in one table.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    if max_nr == 1:
        return 1
    if k.arch.pte_batch_hint(ptep, pte) == 1:
        return 1
    folio: i64 = vm_normal_folio(vma, addr, pte)
    if folio < 0 or not folio_test_large(k.memmap, folio):
        return 1
    ptentp: PtePtr = PtePtr.__new__(PtePtr)
    ptentp.value = pte
    return folio_pte_batch_flags(k, folio, None, ptep, ptentp, max_nr, FPB_RESPECT_WRITE)


@cython.ccall
@cython.exceptval(-1, check=True)
def move_ptes(
    vma: Vma, old_pmd: i64, old_addr: i64, old_end: i64, new_vma: Vma, new_pmd: i64, new_addr: i64
) -> i64:
    """Move the PTEs of ``[old_addr, old_end)`` to ``new_addr``; 0 or -EAGAIN.

    Models: mm/mremap.c ``move_ptes()``.  v6.12: per non-none PTE,
    ``ptep_get_and_clear()`` (on arm64 the first entry cleared of a folded
    block unfolds the block), ``move_soft_dirty_pte()``, the uffd-wp bit
    cleared when the VMA is registered without UFFD_FEATURE_EVENT_REMAP,
    and ``set_pte_at()`` at the new address (on arm64 ``set_ptes(nr=1)``,
    whose ``contpte_try_fold()`` folds a destination block again when its
    last entry is written and all 16 are consistent).  With
    ``mremap_pte_batch`` (v6.17): present PTEs in batches of
    ``mremap_folio_pte_batch()``, ``get_and_clear_ptes()`` (=
    ``get_and_clear_full_ptes(full=0)``: on arm64 only blocks the batch
    covers partly are unfolded) and one ``set_ptes(nr)`` (whole aligned
    blocks are written contiguous).  A flush of the whole old range
    (``flush_tlb_range()``) when any moved PTE was present, before the
    locks are dropped.  The rmap is unchanged: the folios keep their index
    and anon_vma, and the new VMA's pgoff follows the move.

    Context: mmap_lock held for write; ``old_pmd`` has a PTE table,
    ``new_pmd`` too (``pte_alloc``); both ranges in one PMD each.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    ps: i64 = k.PAGE_SIZE
    need_clear_uffd_wp: cython.bint = _uffd_without_event_remap(vma)
    batched: cython.bint = k.mremap_pte_batch
    length: i64 = old_end - old_addr
    old_ptep0: i64 = pte_offset_map_lock(mm, old_addr)
    if old_ptep0 < 0:
        return -EAGAIN
    new_ptep0: i64 = pte_offset_map_lock(vma_mm(new_vma), new_addr)
    if new_ptep0 < 0:
        pte_unmap_unlock(mm, old_ptep0)
        return -EAGAIN
    old_ptep: i64 = old_ptep0
    new_ptep: i64 = new_ptep0
    force_flush: cython.bint = False
    nr: i64
    pte: u64
    while old_addr < old_end:
        nr = 1
        pte = a.ptep_get(old_ptep)
        if not a.pte_none(pte):
            if batched:
                if a.pte_present(pte):
                    nr = mremap_folio_pte_batch(vma, old_addr, old_ptep, pte, (old_end - old_addr) // ps)
                    force_flush = True
                pte = a.get_and_clear_full_ptes(mm, old_addr, old_ptep, nr, False)
            else:
                pte = a.ptep_get_and_clear(mm, old_addr, old_ptep)
                if a.pte_present(pte):
                    force_flush = True
            # move_pte() is the identity but on sparc; move_soft_dirty_pte():
            if a.pte_present(pte):
                pte = a.pte_mksoft_dirty(pte)
            if need_clear_uffd_wp and a.pte_present(pte):
                pte = a.pte_clear_uffd_wp(pte)
            a.set_ptes(mm, new_addr, new_ptep, pte, nr)
        old_ptep += nr
        new_ptep += nr
        old_addr += nr * ps
        new_addr += nr * ps
    if force_flush:
        a.flush_tlb_range(vma, old_end - length, old_end)
    if new_pmd != old_pmd:
        pte_unmap_unlock(mm, new_ptep0)
    pte_unmap_unlock(mm, old_ptep0)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def move_normal_pmd(vma: Vma, old_addr: i64, new_addr: i64, old_pmd: i64, new_pmd: i64) -> cython.bint:
    """Move a whole PTE table from ``old_pmd`` to ``new_pmd``; False if it cannot.

    Models: mm/mremap.c ``move_normal_pmd()`` (CONFIG_HAVE_MOVE_PMD: arm64
    and x86): the destination PMD must be none, the VMA not uffd-registered
    without EVENT_REMAP, the source a table (not a leaf); then
    ``pmd_clear()`` of the old entry, ``pmd_populate()`` of the new one with
    the same table, and ``flush_tlb_range()`` of the old PMD's range (on
    arm64 not leaf-only: the walk caches go too).  No PTE is read or
    written: folded blocks stay folded.

    Context: mmap_lock held for write; the extent is a whole PMD.
    """
    mm: MmStruct = vma_mm(vma)
    a: Pgtable = mm.kernel.arch
    space: AddressSpace = mm.space
    if space.pte_table(new_pmd) >= 0 or space.pmd_peek(new_pmd) != 0:
        return False  # WARN_ON_ONCE: free_pgtables() should have released it
    if _uffd_without_event_remap(vma):
        return False
    pgtable: i64 = space.pte_table(old_pmd)
    if pgtable < 0:
        return False  # !pmd_present() || pmd_leaf()
    a.pmd_clear(mm, old_pmd)
    a.pmd_populate(mm, new_pmd, pgtable)
    a.flush_tlb_range(vma, old_addr, old_addr + a.PMD_SIZE)
    return True


@cython.cfunc
@cython.exceptval(-1, check=True)
def _can_align_down(vma: Vma, addr_to_align: i64, mask: i64) -> cython.bint:
    """mm/mremap.c ``can_align_down()`` (not for the stack): ``addr_to_align``
    starts ``vma`` and nothing is mapped from the aligned address up to it."""
    if vma.vm_start != addr_to_align:
        return False
    return not vma_mm(vma).vmas_in(addr_to_align & mask, vma.vm_start)


@cython.ccall
@cython.exceptval(-1, check=True)
def move_page_tables(vma: Vma, old_addr: i64, new_vma: Vma, new_addr: i64, length: i64) -> i64:
    """Move the page tables of ``[old_addr, old_addr + length)`` to ``new_addr``; the bytes moved.

    Models: mm/mremap.c ``move_page_tables()`` (v6.12; v7.2's
    ``pagetable_move_control`` form does the same): when the range reaches
    a PMD boundary and both addresses are equally misaligned, start both
    at the PMD boundary below (``try_realign_addr()``, if each range starts
    its VMA and nothing is mapped below it up to the boundary); then per
    PMD extent (``get_extent()``: to the next PMD boundary of either side):
    nothing to do where the old PMD is none; a huge PMD moves whole when
    the extent is the whole PMD (``move_huge_pmd()``), else it is split;
    a PTE table moves whole when the extent is the whole PMD
    (``move_normal_pmd()``); otherwise the destination gets a table
    (``pte_alloc()``) and ``move_ptes()`` moves the entries.

    Context: mmap_lock held for write; the new range is unmapped.
    """
    if length == 0:
        return 0
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    space: AddressSpace = mm.space
    pmd_size: i64 = a.PMD_SIZE
    pmd_mask: i64 = ~(pmd_size - 1)
    pmd_shift: i64 = a.PMD_SHIFT
    old_end: i64 = old_addr + length
    if k.oneplus:
        # OnePlus blocks are split before their entries move (the design's
        # move of whole blocks is not modelled: docs/oneplus.md).
        from .cont_pte_hugepage import split_cont_pte_range

        split_cont_pte_range(vma, old_addr, old_end)
    if length >= pmd_size - (old_addr & (pmd_size - 1)):
        # try_realign_addr()
        if (old_addr & (pmd_size - 1)) and (old_addr & (pmd_size - 1)) == (new_addr & (pmd_size - 1)):
            if _can_align_down(vma, old_addr, pmd_mask) and _can_align_down(new_vma, new_addr, pmd_mask):
                old_addr &= pmd_mask
                new_addr &= pmd_mask
    start: i64 = old_end - length
    extent: i64
    nxt: i64
    old_pmd: i64
    new_pmd: i64
    while old_addr < old_end:
        # get_extent(NORMAL_PMD)
        nxt = (old_addr + pmd_size) & pmd_mask
        extent = min(nxt - old_addr, old_end - old_addr)
        nxt = (new_addr + pmd_size) & pmd_mask
        extent = min(extent, nxt - new_addr)
        old_pmd = old_addr >> pmd_shift
        new_pmd = new_addr >> pmd_shift
        if space.pte_table(old_pmd) < 0 and space.pmd_peek(old_pmd) == 0:
            old_addr += extent
            new_addr += extent
            continue  # get_old_pmd(): none
        if space.pmd_peek(old_pmd) != 0:
            if extent == pmd_size and move_huge_pmd(vma, old_addr, new_addr, old_pmd, new_pmd):
                old_addr += extent
                new_addr += extent
                continue
            split_huge_pmd(vma, old_pmd, old_addr)
        elif extent == pmd_size:
            if move_normal_pmd(vma, old_addr, new_addr, old_pmd, new_pmd):
                old_addr += extent
                new_addr += extent
                continue
        if space.pte_table(old_pmd) < 0:
            old_addr += extent
            new_addr += extent
            continue
        if space.pte_table(new_pmd) < 0:
            _pte_alloc(vma_mm(new_vma), new_pmd)
        if move_ptes(vma, old_pmd, old_addr, old_addr + extent, new_vma, new_pmd, new_addr) < 0:
            raise KernelBug("VM_BUG_ON", "move_ptes: the PTE table vanished under mmap_lock", old_addr)
        old_addr += extent
        new_addr += extent
    if old_addr < start:
        return 0
    return length + old_addr - old_end


@cython.ccall
@cython.exceptval(-1, check=True)
def move_vma(vma: Vma, old_addr: i64, old_len: i64, new_len: i64, new_addr: i64, flags: i64) -> i64:
    """Move ``[old_addr, old_addr + old_len)`` of ``vma`` to a new VMA at ``new_addr``; it or -errno.

    Models: mm/mremap.c ``move_vma()`` (v6.12): the commit charge
    (``VM_ACCOUNT``: a private writable mapping; the new length, or only
    the growth, ``vm_enough_memory``), ``copy_vma()`` at the pgoff of
    ``old_addr``, ``move_page_tables()``, the new VMA's uffd context dropped
    (``mremap_userfaultfd_prep()`` without EVENT_REMAP); then either the
    old range is unmapped (``do_vmi_munmap()``) or, with MREMAP_DONTUNMAP,
    kept empty: a VMA moved whole loses its anon_vma (``unlink_anon_vmas()``),
    so its next faults start afresh.

    Context: mmap_lock held for write; the new range is free.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    to_account: i64 = new_len - old_len
    if flags & MREMAP_DONTUNMAP:
        to_account = new_len
    if accountable_mapping(vma.vm_file, vma.vm_flags) and not vm_enough_memory(k, to_account >> k.page_shift):
        return -ENOMEM
    new_pgoff: i64 = vma.vm_pgoff + ((old_addr - vma.vm_start) >> k.page_shift)
    new_vma: Vma = copy_vma(vma, new_addr, new_len, new_pgoff)
    # The source may have merged into the new VMA (copy_vma's *vmap).
    vma = mm.vma_lookup(old_addr) if old_len else vma
    moved: i64 = move_page_tables(vma, old_addr, new_vma, new_addr, old_len)
    if moved < old_len:
        raise KernelBug("VM_BUG_ON", f"move_page_tables moved {moved:#x} of {old_len:#x} bytes", old_addr)
    if new_vma.vm_flags & VM_UFFD_WP:
        new_vma.vm_flags &= ~VM_UFFD_WP  # userfaultfd_reset_ctx()
    if flags & MREMAP_DONTUNMAP:
        if new_vma is not vma and vma.vm_start == old_addr and vma.vm_end == old_addr + old_len:
            vma.anon_vma = None  # unlink_anon_vmas()
        return new_addr
    # A zero old_len (shared "duplicate") makes do_munmap fail: ignored, as the kernel does.
    do_munmap(mm, old_addr, old_len)
    return new_addr


@cython.cfunc
@cython.exceptval(-1, check=True)
def _vma_to_resize(vma: Vma | None, addr: i64, old_len: i64) -> i64:
    """mm/mremap.c ``vma_to_resize()``'s checks of the VMA at ``addr``: 0 or -errno.

    EFAULT: no VMA at ``addr``, or the old range goes past its end; EINVAL:
    duplicating a private mapping (``old_len == 0``).  (VM_DONTEXPAND,
    VM_PFNMAP, mlock and RLIMIT_AS limits are not modelled.)
    """
    if vma is None:
        return -EFAULT
    if old_len == 0 and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        return -EINVAL
    if old_len > vma.vm_end - addr:
        return -EFAULT
    return 0


@cython.cfunc
@cython.exceptval(-1, check=True)
def _vma_expandable(vma: Vma, delta: i64) -> cython.bint:
    """mm/mremap.c ``vma_expandable()``: nothing mapped in ``[vm_end, vm_end + delta)``, below TASK_SIZE."""
    end: i64 = vma.vm_end + delta
    if end > TASK_SIZE:
        return False
    return not vma_mm(vma).vmas_in(vma.vm_end, end)


@cython.cfunc
@cython.exceptval(-1, check=True)
def _mremap_to(mm: MmStruct, addr: i64, old_len: i64, new_addr: i64, new_len: i64, flags: i64) -> i64:
    """mm/mremap.c ``mremap_to()`` (v6.12): MREMAP_FIXED and/or MREMAP_DONTUNMAP.

    EINVAL for an unaligned or out-of-range new address and for ranges
    that overlap; with MREMAP_FIXED the new range is unmapped first; a
    shrink unmaps the tail first; then ``vma_to_resize()``, the new address
    (``get_unmapped_area()``: ``new_addr`` itself with MREMAP_FIXED, a hint
    otherwise) and ``move_vma()``.  What was unmapped stays unmapped when a
    later check fails, as in the kernel.
    """
    k: Kernel = mm.kernel
    ps: i64 = k.PAGE_SIZE
    if new_addr & (ps - 1):
        return -EINVAL
    if new_len > TASK_SIZE or new_addr > TASK_SIZE - new_len:
        return -EINVAL
    if addr + old_len > new_addr and new_addr + new_len > addr:
        return -EINVAL
    ret: i64
    if flags & MREMAP_FIXED:
        ret = do_munmap(mm, new_addr, new_len)
        if ret:
            return ret
    if old_len > new_len:
        ret = do_munmap(mm, addr + new_len, old_len - new_len)
        if ret:
            return ret
        old_len = new_len
    vma: Vma | None = mm.vma_lookup(addr)
    ret = _vma_to_resize(vma, addr, old_len)
    if ret:
        return ret
    assert vma is not None
    anon: cython.bint = vma.vm_file is None and not vma.vm_flags & VM_MAYSHARE
    ret = get_unmapped_area(mm, new_addr, new_len, anon, (flags & MREMAP_FIXED) != 0)
    if ret < 0:
        return ret
    if not flags & MREMAP_FIXED:
        new_addr = ret
    return move_vma(vma, addr, old_len, new_len, new_addr, flags)


@cython.ccall
@cython.exceptval(-1, check=True)
def do_mremap(mm: MmStruct, addr: i64, old_len: i64, new_len: i64, flags: i64, new_addr: i64) -> i64:
    """The mremap syscall: the mapping's (new) address, or -errno.

    Models: mm/mremap.c ``SYSCALL_DEFINE5(mremap)`` (v6.12).  EINVAL: an
    unknown flag, MREMAP_FIXED without MREMAP_MAYMOVE, MREMAP_DONTUNMAP
    without MREMAP_MAYMOVE or with a change of size, an unaligned
    ``addr``, a zero ``new_len``; EFAULT: no VMA at ``addr``.  Then
    ``mremap_to()`` for MREMAP_FIXED/MREMAP_DONTUNMAP; a shrink unmaps the
    tail (``old_len == new_len``: nothing); a growth extends the VMA in
    place when ``[addr, addr + old_len)`` ends it and the space after it is
    free (``vma_merge_extend()``), else moves it with MREMAP_MAYMOVE
    (``get_unmapped_area()`` + ``move_vma()``), else fails with ENOMEM.
    Lengths are rounded up to pages.
    """
    k: Kernel = mm.kernel
    ps: i64 = k.PAGE_SIZE
    if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        return -EINVAL
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        return -EINVAL
    if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len):
        return -EINVAL
    if addr & (ps - 1):
        return -EINVAL
    old_len = (old_len + ps - 1) & ~(ps - 1)
    new_len = (new_len + ps - 1) & ~(ps - 1)
    if new_len == 0:
        return -EINVAL
    if mm.vma_lookup(addr) is None:
        return -EFAULT
    if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):
        return _mremap_to(mm, addr, old_len, new_addr, new_len, flags)
    ret: i64
    if old_len >= new_len:
        if old_len == new_len:
            return addr
        ret = do_munmap(mm, addr + new_len, old_len - new_len)
        return ret if ret else addr
    vma: Vma | None = mm.vma_lookup(addr)
    ret = _vma_to_resize(vma, addr, old_len)
    if ret:
        return ret
    assert vma is not None
    delta: i64
    if old_len == vma.vm_end - addr:
        delta = new_len - old_len
        if _vma_expandable(vma, delta):
            if accountable_mapping(vma.vm_file, vma.vm_flags) and not vm_enough_memory(
                k, delta >> k.page_shift
            ):
                return -ENOMEM
            vma_merge_extend(mm, vma, delta)
            return addr
    if not flags & MREMAP_MAYMOVE:
        return -ENOMEM
    anon: cython.bint = vma.vm_file is None and not vma.vm_flags & VM_MAYSHARE
    ret = get_unmapped_area(mm, 0, new_len, anon, False)
    if ret < 0:
        return ret
    return move_vma(vma, addr, old_len, new_len, ret, flags)


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        MREMAP_MAYMOVE=MREMAP_MAYMOVE, MREMAP_FIXED=MREMAP_FIXED, MREMAP_DONTUNMAP=MREMAP_DONTUNMAP
    )
