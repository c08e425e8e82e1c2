"""PMD-size THP and the mTHP policy.

Models: mm/huge_memory.c (Linux v6.12): ``__thp_vma_allowable_orders``
(the sysfs policy per size), ``thp_vma_suitable_order(s)``,
``do_huge_pmd_anonymous_page`` (with the huge zero page),
``do_huge_pmd_wp_page``, ``copy_huge_pmd``, ``zap_huge_pmd``,
``__split_huge_pmd_locked`` (one ``set_ptes`` over the whole table),
``change_huge_pmd`` and ``split_huge_page_to_list_to_order``.  Anonymous
memory only: file THPs are not modelled.

A folio is its head pfn, -1 for NULL (``memmap.py``); a PMD is named by its
level-2 index in the mm's ``AddressSpace``; a PMD value is a u64.  This
module sits below mm/memory.c in the model's import order (compiled modules
may not import in a cycle): what it needs of memory.c's world is in
``mm_h``, ``rmap`` and ``mm_types``.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ..counters import counter
from ..errors import KernelBug
from .rmap import rmap_walk_pmds, rmap_walk_ptes

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from .kernel import (
        MTHP_ANON_FAULT_ALLOC,
        MTHP_ANON_FAULT_FALLBACK,
        MTHP_NR_ANON,
        MTHP_SPLIT,
        MTHP_SPLIT_FAILED,
        REF_GETS,
        THP_FAULT_ALLOC,
        THP_FAULT_FALLBACK,
        THP_SPLIT_PAGE,
        THP_SPLIT_PAGE_FAILED,
        THP_SPLIT_PMD,
        Kernel,
    )
    from .memmap import (
        ClearPageAnonExclusive,
        MemMap,
        PageAnonExclusive,
        PG_anon_exclusive,
        PG_cont,
        PG_reserved,
        SetPageAnonExclusive,
        _NOT_PG_anon_exclusive,
        folio_mapcount,
        folio_mark_dirty,
        folio_maybe_dma_pinned,
        folio_ref_add,
        folio_test_anon,
    )
    from .mm_h import (
        MM_CP_PROT_NUMA,
        MM_CP_TRY_CHANGE_WRITABLE,
        MM_CP_UFFD_WP,
        MM_CP_UFFD_WP_RESOLVE,
        maybe_mkwrite,
        userfaultfd_huge_pmd_wp,
        vma_wants_manual_pte_write_upgrade,
    )
    from .mm_types import (
        FAULT_FLAG_UNSHARE,
        FAULT_FLAG_WRITE,
        MM_ANONPAGES,
        VM_FAULT_FALLBACK,
        VM_HUGEPAGE,
        VM_NOHUGEPAGE,
        VM_SHARED,
        VM_UFFD_WP,
        VM_WRITE,
        MmStruct,
        Vma,
        VmFault,
        vma_is_anonymous,
        vma_mm,
    )
    from .mmu_gather import MmuGather
    from .rmap import (
        RMAP_EXCLUSIVE,
        anon_vma_prepare,
        folio_add_large_mapcount,
        folio_add_new_anon_rmap,
        folio_remove_rmap_pmd,
        folio_sub_large_mapcount,
        folio_try_dup_anon_rmap_pmd,
    )

__all__ = [
    "thp_vma_allowable_orders",
    "thp_vma_allowable_order",
    "thp_vma_suitable_order",
    "thp_vma_suitable_orders",
    "mm_get_huge_zero_folio",
    "vma_alloc_anon_folio_pmd",
    "map_anon_folio_pmd_nopf",
    "map_anon_folio_pmd",
    "create_huge_pmd",
    "do_huge_zero_wp_pmd",
    "do_huge_pmd_wp_page",
    "huge_pmd_set_accessed",
    "copy_huge_pmd",
    "zap_huge_pmd",
    "move_huge_pmd",
    "split_huge_pmd",
    "change_huge_pmd",
    "do_huge_pmd_numa_page",
    "split_folio",
]

#: enum tva_type (include/linux/huge_mm.h, v6.18): who asks thp_vma_allowable_orders().
TVA_PAGEFAULT = cython.declare(i64, 1)
TVA_KHUGEPAGED = cython.declare(i64, 2)
TVA_FORCED_COLLAPSE = cython.declare(i64, 3)
EAGAIN = cython.declare(i64, 11)
EBUSY = cython.declare(i64, 16)
EINVAL = cython.declare(i64, 22)
FAULT_NUMA = cython.declare(i64, counter("numa_hint_faults"))


@cython.ccall
@cython.exceptval(-1, check=True)
def thp_vma_allowable_orders(vma: Vma, orders: i64, tva_type: i64 = 1) -> i64:
    """The subset of ``orders`` (a bitmask) the THP policy allows here.

    Models: mm/huge_memory.c ``__thp_vma_allowable_orders()`` and
    include/linux/huge_mm.h ``thp_vma_allowable_orders()``, anonymous
    VMAs: VM_NOHUGEPAGE forbids all; the sysfs policy applies per size
    (``always`` allows, ``madvise`` allows in VM_HUGEPAGE VMAs, ``inherit``
    follows the top-level setting, ``never`` forbids) except for a forced
    collapse (MADV_COLLAPSE).  Anon mTHP starts at order 2.  ``tva_type``
    (v6.18's ``enum tva_type``; v6.12's TVA_IN_PF / TVA_ENFORCE_SYSFS
    flags): ``TVA_PAGEFAULT`` (1, the default), ``TVA_KHUGEPAGED`` (2) or
    ``TVA_FORCED_COLLAPSE`` (3).  Outside a fault the orders above the
    largest one whose aligned block fits at the end of the VMA are dropped,
    as the kernel's ``!in_pf`` size check does.
    """
    flags: i64 = vma.vm_flags
    if flags & VM_NOHUGEPAGE or not vma_is_anonymous(vma) or flags & VM_SHARED:
        return 0
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    if k.mm_thp_disabled(mm):
        return 0
    huge: cython.bint = (flags & VM_HUGEPAGE) != 0
    # The huge_anon_orders_* bitmaps, as __thp_vma_allowable_orders() reads them.
    mask: i64 = k.anon_orders_always
    if huge:
        mask |= k.anon_orders_madvise
    if k.thp == "always" or (huge and k.thp == "madvise"):
        mask |= k.anon_orders_inherit
    if tva_type != TVA_FORCED_COLLAPSE:
        orders &= mask
    order: i64
    if tva_type != TVA_PAGEFAULT:
        # Keep the orders up to the highest one that fits at the VMA's end.
        order = k.PMD_ORDER
        while order >= 0 and orders:
            if (orders >> order) & 1:
                if thp_vma_suitable_order(vma, vma.vm_end - (k.PAGE_SIZE << order), order):
                    break
                orders &= ~(cython.cast(i64, 1) << order)
            order -= 1
    return orders


@cython.ccall
@cython.exceptval(-1, check=True)
def thp_vma_allowable_order(vma: Vma, order: i64) -> cython.bint:
    """Models: include/linux/huge_mm.h ``thp_vma_allowable_order()``."""
    return thp_vma_allowable_orders(vma, cython.cast(i64, 1) << order) != 0


@cython.ccall
@cython.exceptval(-1, check=True)
def thp_vma_suitable_order(vma: Vma, addr: i64, order: i64) -> cython.bint:
    """Models: include/linux/huge_mm.h ``thp_vma_suitable_order()``."""
    page_shift: i64 = vma.vm_mm.space.page_shift
    size: i64 = cython.cast(i64, 1) << (page_shift + order)
    haddr: i64 = addr & ~(size - 1)
    if not vma_is_anonymous(vma):
        if ((vma.vm_start >> page_shift) - vma.vm_pgoff) & ((cython.cast(i64, 1) << order) - 1):
            return False
    return haddr >= vma.vm_start and haddr + size <= vma.vm_end


@cython.ccall
@cython.exceptval(-1, check=True)
def thp_vma_suitable_orders(vma: Vma, addr: i64, orders: i64) -> i64:
    """Models: include/linux/huge_mm.h ``thp_vma_suitable_orders()``."""
    out: i64 = 0
    order: i64 = 0
    while orders >> order:
        if (orders >> order) & 1 and thp_vma_suitable_order(vma, addr, order):
            out |= cython.cast(i64, 1) << order
        order += 1
    return out


@cython.ccall
@cython.exceptval(-1, check=True)
def mm_get_huge_zero_folio(mm: MmStruct) -> i64:
    """The huge zero folio (allocated on first use), or -1 if none can be allocated.

    Models: mm/huge_memory.c ``mm_get_huge_zero_folio()``.
    """
    k: Kernel = mm.kernel
    folio: i64
    if k.huge_zero_pfn < 0:
        folio = k.folio_alloc(k.PMD_ORDER, True)
        if folio < 0:
            return -1
        k.memmap.flags[folio] |= PG_reserved
        k.huge_zero_pfn = folio
    return k.huge_zero_pfn


@cython.ccall
@cython.exceptval(-1, check=True)
def vma_alloc_anon_folio_pmd(vma: Vma) -> i64:
    """Allocate a zeroed PMD-size anon folio, counting a fallback on failure; -1 if none.

    Models: mm/huge_memory.c ``vma_alloc_anon_folio_pmd()`` (from commit
    "mm: abstract THP allocation", v6.13; open-coded in v6.12's
    ``__do_huge_pmd_anonymous_page()``, same events).
    """
    k: Kernel = vma_mm(vma).kernel
    folio: i64 = k.folio_alloc(k.PMD_ORDER, True)
    if folio < 0:
        count(k.counters, THP_FAULT_FALLBACK, 1)
        k.count_mthp_stat(k.PMD_ORDER, MTHP_ANON_FAULT_FALLBACK, 1)
    return folio


@cython.ccall
def map_anon_folio_pmd_nopf(folio: i64, vma: Vma, pmd_index: i64, haddr: i64) -> None:
    """Map a new PMD-size anon folio writable (per the VMA) and dirty, counting nothing.

    Models: mm/huge_memory.c ``map_anon_folio_pmd_nopf()`` (v7.2; the same
    steps are open-coded in v6.12's ``__do_huge_pmd_anonymous_page()`` and
    khugepaged's ``collapse_huge_page()``).

    Context: the PMD lock held; the PMD is none.
    """
    mm: MmStruct = vma_mm(vma)
    arch: Pgtable = mm.kernel.arch
    entry: u64 = arch.pfn_pte(folio, vma.vm_page_prot)
    entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
    folio_add_new_anon_rmap(folio, vma, haddr, RMAP_EXCLUSIVE, True)
    arch.set_pmd_at(mm, haddr, pmd_index, arch.pte_pmd(entry))


@cython.ccall
def map_anon_folio_pmd(folio: i64, vma: Vma, pmd_index: i64, haddr: i64) -> None:
    """Map a new PMD-size anon folio at a fault: map it, count RSS and the fault stats.

    Models: mm/huge_memory.c ``map_anon_folio_pmd()`` (v6.13;
    ``map_anon_folio_pmd_pf()`` in v7.2).
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    map_anon_folio_pmd_nopf(folio, vma, pmd_index, haddr)
    mm.add_mm_counter(MM_ANONPAGES, arch.HPAGE_PMD_NR)
    count(k.counters, THP_FAULT_ALLOC, 1)
    k.count_mthp_stat(k.PMD_ORDER, MTHP_ANON_FAULT_ALLOC, 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def create_huge_pmd(vmf: VmFault) -> i64:
    """Map a fresh PMD-size folio (or the huge zero page on a read); VM_FAULT_* bits.

    Models: mm/huge_memory.c ``do_huge_pmd_anonymous_page()``.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    haddr: i64 = vmf.address & ~(arch.PMD_SIZE - 1)
    zpfn: i64
    pmd: u64
    anon_vma_prepare(vma)
    if not vmf.flags & FAULT_FLAG_WRITE and k.use_zero_page:
        zpfn = mm_get_huge_zero_folio(mm)
        if zpfn < 0:
            count(k.counters, THP_FAULT_FALLBACK, 1)
            return VM_FAULT_FALLBACK
        pmd = arch.pte_pmd(arch.pte_mkspecial(arch.pfn_pte(zpfn, vma.vm_page_prot)))
        arch.set_pmd_at(mm, haddr, vmf.pmd_index, pmd)
        return 0
    folio: i64 = vma_alloc_anon_folio_pmd(vma)
    if folio < 0:
        return VM_FAULT_FALLBACK
    map_anon_folio_pmd(folio, vma, vmf.pmd_index, haddr)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def do_huge_zero_wp_pmd(vmf: VmFault, haddr: i64) -> i64:
    """Replace the huge zero PMD by a new PMD THP on a write fault.

    Models: mm/huge_memory.c ``do_huge_zero_wp_pmd()``, commit 1ced09e0331f
    "mm: allocate THP on hugezeropage wp-fault" (Dev Jain, v6.13); only
    with the ``huge_zero_wp_thp`` option.  VM_FAULT_FALLBACK when the
    folio cannot be allocated (the caller then splits, as v6.12 always
    does).  The PMD is cleared and flushed (``pmdp_huge_clear_flush``)
    before the new one is set, so no TLB keeps the zero page's translation.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    arch: Pgtable = mm.kernel.arch
    folio: i64 = vma_alloc_anon_folio_pmd(vma)
    if folio < 0:
        return VM_FAULT_FALLBACK
    arch.pmdp_huge_get_and_clear(mm, haddr, vmf.pmd_index)
    arch.flush_pmd_tlb_range(vma, haddr, haddr + arch.PMD_SIZE)
    map_anon_folio_pmd(folio, vma, vmf.pmd_index, haddr)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def do_huge_pmd_wp_page(vmf: VmFault, pmd: u64) -> i64:
    """A write (or unshare) fault on a write-protected PMD mapping; VM_FAULT_* bits.

    Models: mm/huge_memory.c ``do_huge_pmd_wp_page()`` (v6.12): an exclusive
    anon folio is reused in place; the huge zero page (unless
    ``huge_zero_wp_thp``) and shared folios are split and the fault retried
    at PTE level (VM_FAULT_FALLBACK).
    """
    vma: Vma = vmf.vma
    k: Kernel = vma_mm(vma).kernel
    arch: Pgtable = k.arch
    mem: MemMap = k.memmap
    pte: u64 = arch.pmd_pte(pmd)
    haddr: i64 = vmf.address & ~(arch.PMD_SIZE - 1)
    pfn: i64 = arch.pte_pfn(pte)
    ret: i64
    if pfn == k.huge_zero_pfn and k.huge_zero_wp_thp:
        ret = do_huge_zero_wp_pmd(vmf, haddr)
        if not ret & VM_FAULT_FALLBACK:
            return ret
        # Fall back to splitting the PMD if the THP cannot be allocated.
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        split_huge_pmd(vma, vmf.pmd_index, haddr)
        return VM_FAULT_FALLBACK
    folio: i64 = cython.cast(i64, mem.head[pfn])
    entry: u64
    if PageAnonExclusive(mem, folio) or (
        cython.cast(i64, mem.refcount[folio]) == 1 and folio_mapcount(mem, folio) == 1
    ):
        SetPageAnonExclusive(mem, folio, 1)
        if vmf.flags & FAULT_FLAG_UNSHARE:
            return 0
        entry = arch.pte_mkyoung(arch.pte_mkdirty(pte))
        if vma.vm_flags & VM_WRITE:
            entry = arch.pte_mkwrite(entry)
        arch.pmdp_set_access_flags(vma, haddr, vmf.pmd_index, arch.pte_pmd(entry), True)
        return 0
    split_huge_pmd(vma, vmf.pmd_index, haddr)
    return VM_FAULT_FALLBACK


@cython.ccall
@cython.exceptval(-1, check=True)
def huge_pmd_set_accessed(vmf: VmFault, pmd: u64) -> cython.bint:
    """Set young (and dirty on a write) on a PMD mapping; True if the PMD changed.

    Models: mm/huge_memory.c ``huge_pmd_set_accessed()`` and ``touch_pmd()``
    (v6.19 returns whether ``pmdp_set_access_flags()`` changed the PMD, for
    the PMD-level spurious-fault fix; v6.12 returned nothing).
    """
    vma: Vma = vmf.vma
    arch: Pgtable = vma_mm(vma).kernel.arch
    write: cython.bint = (vmf.flags & FAULT_FLAG_WRITE) != 0
    entry: u64 = arch.pte_mkyoung(arch.pmd_pte(pmd))
    if write:
        entry = arch.pte_mkdirty(entry)
    haddr: i64 = vmf.address & ~(arch.PMD_SIZE - 1)
    return arch.pmdp_set_access_flags(vma, haddr, vmf.pmd_index, arch.pte_pmd(entry), write)


@cython.ccall
@cython.exceptval(-1, check=True)
def copy_huge_pmd(
    dst_mm: MmStruct, src_mm: MmStruct, pmd_index: i64, addr: i64, dst_vma: Vma, src_vma: Vma
) -> i64:
    """Share a PMD mapping with the child (CoW), or split if it may be pinned.

    Models: mm/huge_memory.c ``copy_huge_pmd()``: returns 0 when copied,
    -EAGAIN after splitting (the caller then copies the PTEs).

    Context: both mms' PMD locks held; ``pmd_index`` holds a huge PMD in ``src_mm``.
    """
    k: Kernel = src_mm.kernel
    arch: Pgtable = k.arch
    # The caller's pmdp_get() already read it: no second load counted.
    pmd: u64 = src_mm.space.pmd_peek(pmd_index)
    pte: u64 = arch.pmd_pte(pmd)
    pfn: i64 = arch.pte_pfn(pte)
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        arch.set_pmd_at(dst_mm, addr, pmd_index, pmd)
        return 0
    folio: i64 = cython.cast(i64, k.memmap.head[pfn])
    folio_ref_add(k.memmap, folio, 1)
    count(k.counters, REF_GETS, 1)
    if folio_try_dup_anon_rmap_pmd(folio, dst_vma, src_vma):
        k.folio_put(folio, 1)
        split_huge_pmd(src_vma, pmd_index, addr & ~(arch.PMD_SIZE - 1))
        return -EAGAIN
    dst_mm.add_mm_counter(MM_ANONPAGES, arch.HPAGE_PMD_NR)
    arch.pmdp_set_wrprotect(src_mm, addr, pmd_index)
    pte = arch.pte_mkold(arch.pte_wrprotect(pte))
    arch.set_pmd_at(dst_mm, addr, pmd_index, arch.pte_pmd(pte))
    return 0


@cython.ccall
def zap_huge_pmd(tlb: MmuGather, vma: Vma, pmd_index: i64, addr: i64) -> None:
    """Unmap a huge PMD; its folio reference goes to the gather.

    Models: mm/huge_memory.c ``zap_huge_pmd()``.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    old: u64 = arch.pmdp_huge_get_and_clear(mm, addr, pmd_index)
    tlb.tlb_remove_pmd_tlb_entry(addr, arch.PMD_SIZE)
    pte: u64 = arch.pmd_pte(old)
    pfn: i64 = arch.pte_pfn(pte)
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        return
    folio: i64 = cython.cast(i64, k.memmap.head[pfn])
    folio_remove_rmap_pmd(folio, vma)
    mm.add_mm_counter(MM_ANONPAGES, -arch.HPAGE_PMD_NR)
    # tlb_remove_page_size(): one slot for the PMD's reference; flush now if that filled the gather.
    if tlb.tlb_remove_folio_pages(folio, folio, 1, False):
        tlb.tlb_flush_mmu()


@cython.ccall
@cython.exceptval(-1, check=True)
def move_huge_pmd(vma: Vma, old_addr: i64, new_addr: i64, old_pmd: i64, new_pmd: i64) -> cython.bint:
    """Move a huge PMD to another PMD of the same mm (mremap); False if it cannot.

    Models: mm/huge_memory.c ``move_huge_pmd()`` (v6.12 to v7.2): the
    destination must be none (no table, no block), then
    ``pmdp_huge_get_and_clear()`` of the old entry, ``move_soft_dirty_pmd()``,
    the uffd-wp bit cleared when the VMA is registered without
    UFFD_FEATURE_EVENT_REMAP (the model's uffd contexts never have it),
    ``set_pmd_at()`` at the new index and ``flush_pmd_tlb_range()`` of the
    old range.  The model deposits no page table with a PMD mapping
    (``split_huge_pmd`` allocates one), so there is nothing to withdraw.
    No rmap change: the folio keeps its entire mapping, its index and
    anon_vma (the new VMA's pgoff follows the move).

    Context: mmap_lock held for write; ``old_pmd`` maps a huge PMD of ``vma``.
    """
    mm: MmStruct = vma_mm(vma)
    arch: Pgtable = mm.kernel.arch
    if mm.space.pte_table(new_pmd) >= 0 or mm.space.pmd_peek(new_pmd) != 0:
        return False
    pmd: u64 = arch.pmdp_huge_get_and_clear(mm, old_addr, old_pmd)
    force_flush: cython.bint = pmd != 0
    pte: u64 = arch.pmd_pte(pmd)
    pte = arch.pte_mksoft_dirty(pte)  # move_soft_dirty_pmd() (a no-op on arm64)
    if vma.vm_flags & VM_UFFD_WP:  # vma_has_uffd_without_event_remap()
        pte = arch.pte_clear_uffd_wp(pte)
    arch.set_pmd_at(mm, new_addr, new_pmd, arch.pte_pmd(pte))
    if force_flush:
        arch.flush_pmd_tlb_range(vma, old_addr, old_addr + arch.PMD_SIZE)
    return True


@cython.ccall
def split_huge_pmd(vma: Vma, pmd_index: i64, haddr: i64) -> None:
    """Replace a PMD mapping by a table of PTEs mapping the same pages.

    Models: mm/huge_memory.c ``__split_huge_pmd_locked()`` (v6.12):
    ``pmdp_invalidate`` then one ``set_ptes`` over the whole table, so on
    arm64 the result is contiguous at once; per-page mapcounts take over
    from the entire mapcount and exclusivity is copied to every page; a
    dirty PMD marks the folio dirty (PG_dirty).
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    mem: MemMap = k.memmap
    haddr &= ~(arch.PMD_SIZE - 1)
    old: u64 = arch.pmdp_invalidate(vma, haddr, pmd_index)
    pte: u64 = arch.pmd_pte(old)
    pfn: i64 = arch.pte_pfn(pte)
    count(k.counters, THP_SPLIT_PMD, 1)
    # The kernel withdraws the table deposited when the PMD was mapped
    # (pgtable_trans_huge_withdraw); the model allocates it now.  The table
    # replaces the invalidated block descriptor (pmd_populate).
    pgtable: i64 = arch.pte_alloc_one(mm, pmd_index)
    arch.pmd_populate(mm, pmd_index, pgtable)
    ptep: i64 = pgtable << arch.pool.shift
    nr: i64 = arch.HPAGE_PMD_NR
    i: i64
    zp: u64
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        # __split_huge_zero_page_pmd: map the small zero page everywhere.
        zp = arch.pte_mkspecial(arch.pfn_pte(k.zero_pfn, vma.vm_page_prot))
        for i in range(nr):
            arch.set_pte_at(mm, haddr + i * k.PAGE_SIZE, ptep + i, zp)
        arch.ptl_release(mm, ptep)
        return
    folio: i64 = cython.cast(i64, mem.head[pfn])
    if arch.pte_dirty(pte):
        folio_mark_dirty(mem, folio)  # the PMD's dirty bit must outlive the PMD
    exclusive: cython.bint = PageAnonExclusive(mem, folio)
    # folio_add_anon_rmap_ptes(nr) for the new PTEs, then
    # folio_remove_rmap_pmd() for the PMD, as the kernel's two calls.
    for i in range(folio, folio + nr):
        mem.mapcount[i] += 1
    folio_add_large_mapcount(mem, folio, nr, vma)
    folio_sub_large_mapcount(mem, folio, 1, vma)
    mem.entire_mapcount[folio] -= 1
    if exclusive:
        SetPageAnonExclusive(mem, folio, nr)
    else:
        ClearPageAnonExclusive(mem, folio, nr)
    folio_ref_add(mem, folio, nr - 1)
    count(k.counters, REF_GETS, 1)
    # The PTEs are built from the VMA's protection, carrying over the PMD's
    # write, young, dirty, soft-dirty and uffd-wp state (not the PMD value
    # itself: it is a block descriptor, and pmdp_invalidate made it invalid).
    entry: u64 = arch.pfn_pte(pfn, vma.vm_page_prot)
    if arch.pte_write(pte):
        entry = arch.pte_mkwrite(entry)
    if not arch.pte_young(pte):
        entry = arch.pte_mkold(entry)
    if arch.pte_dirty(pte):
        entry = arch.pte_mkdirty(entry)
    if arch.pte_soft_dirty(pte):
        entry = arch.pte_mksoft_dirty(entry)
    if arch.pte_uffd_wp(pte):
        entry = arch.pte_mkuffd_wp(entry)
    arch.set_ptes(mm, haddr, ptep, entry, nr)
    arch.ptl_release(mm, ptep)
    if cython.cast(i64, mem.entire_mapcount[folio]) < 0:
        raise KernelBug("VM_BUG_ON_FOLIO", f"entire mapcount underflow in {mem.describe(folio)}", haddr)


@cython.cfunc
@cython.exceptval(-1, check=True)
def can_change_pmd_writable(vma: Vma, addr: i64, pmd: u64) -> cython.bint:
    """Models: mm/huge_memory.c ``can_change_pmd_writable()`` (v6.12)."""
    k: Kernel = vma_mm(vma).kernel
    arch: Pgtable = k.arch
    pte: u64 = arch.pmd_pte(pmd)
    pfn: i64
    if not vma.vm_flags & VM_WRITE:
        return False
    if arch.pte_protnone(pte):
        return False  # NUMA hinting: not even readable
    if userfaultfd_huge_pmd_wp(vma, pmd):
        return False
    if not vma.vm_flags & VM_SHARED:
        pfn = arch.pte_pfn(pte)
        if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
            return False  # vm_normal_page_pmd(): no page
        return folio_test_anon(k.memmap, cython.cast(i64, k.memmap.head[pfn])) and PageAnonExclusive(
            k.memmap, pfn
        )
    return arch.pte_dirty(pte)


@cython.ccall
@cython.exceptval(-1, check=True)
def change_huge_pmd(tlb: MmuGather, vma: Vma, pmd_index: i64, addr: i64, newprot: u64, cp_flags: i64) -> i64:
    """Change the protection of a whole huge PMD; HPAGE_PMD_NR if changed, 1 if left alone.

    Models: mm/huge_memory.c ``change_huge_pmd()`` (v6.12): NUMA hinting
    leaves the huge zero page and an already-protnone PMD alone (the arm64
    and x86 kernels support THP migration, so PMDs are hinted); the PMD is
    invalidated and flushed (``pmdp_invalidate_ad``), rebuilt with
    ``newprot``, the uffd-wp bit set or cleared, made writable where
    ``can_change_pmd_writable()`` allows, and queued for the gather's
    flush where ``huge_pmd_needs_flush()`` (always before v6.19; arm64's
    ``pte_flags_need_flush``: not for software bits only).  ``cp_flags``:
    ``MM_CP_*``.

    Context: mmap_lock held; ``pmd_index`` holds a huge PMD of ``vma`` and
    ``addr`` is its start.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    cur: u64
    if cp_flags & MM_CP_PROT_NUMA:
        cur = arch.pmd_pte(mm.space.pmd_peek(pmd_index))
        if arch.pte_special(cur) or arch.pte_pfn(cur) == k.huge_zero_pfn:
            return 1  # is_huge_zero_pmd(): reads of it are not interesting
        if arch.pte_protnone(cur):
            return 1
    old: u64 = arch.pmdp_invalidate(vma, addr, pmd_index)
    pte: u64 = arch.pte_modify(arch.pmd_pte(old), newprot)
    if cp_flags & MM_CP_UFFD_WP:
        pte = arch.pte_mkuffd_wp(pte)
    elif cp_flags & MM_CP_UFFD_WP_RESOLVE:
        # The write bit is left to the fault handler, so CoW is handled there.
        pte = arch.pte_clear_uffd_wp(pte)
    if (
        cp_flags & MM_CP_TRY_CHANGE_WRITABLE
        and not arch.pte_write(pte)
        and can_change_pmd_writable(vma, addr, arch.pte_pmd(pte))
    ):
        pte = arch.pte_mkwrite(pte)
    arch.set_pmd_at(mm, addr, pmd_index, arch.pte_pmd(pte))
    if arch.huge_pmd_needs_flush(old, arch.pte_pmd(pte)):
        tlb.tlb_remove_pmd_tlb_entry(addr, arch.PMD_SIZE)
    return arch.HPAGE_PMD_NR


@cython.ccall
@cython.exceptval(-1, check=True)
def do_huge_pmd_numa_page(vmf: VmFault, pmd: u64) -> i64:
    """Resolve a NUMA hinting fault on a huge PMD: restore it (no migration modelled).

    Models: mm/huge_memory.c ``do_huge_pmd_numa_page()`` (v6.12) taking the
    ``out_map`` path: the PMD is rebuilt with the VMA's protection, young,
    and writable where the VMA wants a manual write upgrade and
    ``can_change_pmd_writable()`` allows.  ``pmd``: ``vmf->orig_pmd``.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    count(k.counters, FAULT_NUMA, 1)
    haddr: i64 = vmf.address & ~(arch.PMD_SIZE - 1)
    old: u64 = arch.pmdp_get(mm, vmf.pmd_index)
    if old != pmd:
        return 0
    pte: u64 = arch.pte_modify(arch.pmd_pte(old), vma.vm_page_prot)
    writable: cython.bint = arch.pte_write(pte)
    if (
        not writable
        and vma_wants_manual_pte_write_upgrade(vma)
        and can_change_pmd_writable(vma, vmf.address, arch.pte_pmd(pte))
    ):
        writable = True
    pte = arch.pte_mkyoung(pte)
    if writable:
        pte = arch.pte_mkwrite(pte)
    arch.set_pmd_at(mm, haddr, vmf.pmd_index, arch.pte_pmd(pte))
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def split_folio(k: Kernel, folio: i64) -> i64:
    """Split a PTE-mapped anon large folio into order-0 folios; 0 or -errno.

    Models: mm/huge_memory.c ``split_huge_page_to_list_to_order(new_order=0)``
    (v6.12) for anonymous folios: refused (-EAGAIN) when someone holds a
    reference beyond the mappings and the caller's (``can_split_folio``), so
    a pinned folio is never split; otherwise its PMD mappings are split
    first (``unmap_folio()``: ``TTU_SPLIT_HUGE_PMD`` for a PMD-mappable
    folio, ``split_huge_pmd_address(freeze)``), then every PTE mapping it is
    unmapped (``try_to_migrate``: ``ptep_clear_flush`` one PTE at a time,
    which on arm64 unfolds a folded block first; a dirty PTE marks the
    folio dirty, and the split pages inherit PG_dirty), the metadata is split
    (each page its own folio, keeping its mapcount, exclusivity and index;
    pages no one maps are freed), and the PTEs are re-established one at a
    time with ``set_pte_at`` (``remove_migration_ptes``), keeping the dirty,
    young and write bits.  The migration entries of the real kernel are
    not modelled: the model is sequential, nothing can observe them.

    ``k``: the mem_map's kernel (the model's stand-in for the global
    ``struct page`` array); ``folio``: the ``struct folio *`` (head pfn).

    Context: the caller holds one reference to ``folio`` and no PTL.
    """
    mem: MemMap = k.memmap
    a: Pgtable = k.arch
    if not folio_test_anon(mem, folio) or cython.cast(i64, mem.order[folio]) == 0:
        return -EINVAL
    if cython.cast(i64, mem.flags[folio]) & PG_cont:
        # A OnePlus block (policy="oneplus") stays one compound page from the
        # hugepage pool until it is freed whole back to the pool
        # (__free_cont_pte_hugepages); the design splits its mappings
        # (__split_huge_cont_pte_locked), not the page.  See docs/oneplus.md.
        return -EBUSY
    order: i64 = cython.cast(i64, mem.order[folio])
    if cython.cast(i64, mem.refcount[folio]) != folio_mapcount(mem, folio) + 1 or folio_maybe_dma_pinned(
        mem, folio
    ):
        # can_split_folio() failed: the "out" path counts the failure.
        if order == k.PMD_ORDER:
            count(k.counters, THP_SPLIT_PAGE_FAILED, 1)
        k.count_mthp_stat(order, MTHP_SPLIT_FAILED, 1)
        return -EAGAIN
    nr: i64 = cython.cast(i64, 1) << order
    head: i64 = folio
    shift: i64 = a.pool.shift
    ptes_per: i64 = a.PTRS_PER_PTE
    # unmap_folio(): try_to_migrate() with TTU_SPLIT_HUGE_PMD splits each
    # PMD mapping into PTEs first (the freeze makes them migration entries
    # at once; the model splits, then clears them below).
    for _mm, pv, pmd_index in rmap_walk_pmds(k, head):
        split_huge_pmd(pv, pmd_index, pmd_index << a.PMD_SHIFT)
    # try_to_migrate(): clear every mapping, remembering what to restore.
    restore: list[tuple[MmStruct, int, int, int]] = []
    addr: i64
    ptep: i64
    pteval: u64
    for mm_, idx, pos in rmap_walk_ptes(k, head, head + nr):
        mm: MmStruct = mm_
        addr = ((cython.cast(i64, idx) * ptes_per) + cython.cast(i64, pos)) << k.page_shift
        vma: Vma = mm.vma_lookup(addr)
        ptep = (mm.space.pte_table(idx) << shift) | cython.cast(i64, pos)
        pteval = a.ptep_clear_flush(vma, addr, ptep)
        if a.pte_dirty(pteval):
            folio_mark_dirty(mem, head)  # try_to_migrate_one(): the dirty bit goes to the folio
        restore.append((mm, addr, ptep, pteval))
    # __split_huge_page(): every page becomes an order-0 folio.  Each page
    # keeps its mapcount and its own PG_anon_exclusive; the rest of the
    # flags come from the head.
    flags: i64 = cython.cast(i64, mem.flags[head]) & _NOT_PG_anon_exclusive
    mapping: i64 = cython.cast(i64, mem.mapping[head])
    index: i64 = cython.cast(i64, mem.index[head])
    k.count_mthp_stat(order, MTHP_NR_ANON, -1)
    k.count_mthp_stat(order, MTHP_SPLIT, 1)
    if order == k.PMD_ORDER:
        count(k.counters, THP_SPLIT_PAGE, 1)
    k.folio_undo_large_rmappable(head)
    pfn: i64
    for pfn in range(head, head + nr):
        mem.head[pfn] = pfn
        mem.order[pfn] = 0
        mem.flags[pfn] = (cython.cast(i64, mem.flags[pfn]) & PG_anon_exclusive) | flags
        mem.refcount[pfn] = cython.cast(i64, mem.mapcount[pfn]) + (1 if pfn == head else 0)
        mem.pincount[pfn] = 0
        mem.entire_mapcount[pfn] = 0
        mem.large_mapcount[pfn] = 0
        mem.mm_id0[pfn] = 0
        mem.mm_id1[pfn] = 0
        mem.mm_id_mapcount0[pfn] = 0
        mem.mm_id_mapcount1[pfn] = 0
        mem.mm_ids_shared[pfn] = 0
        mem.mapping[pfn] = mapping
        mem.index[pfn] = index + (pfn - head)
    # remove_migration_ptes(): map each page again, one PTE at a time.
    for mm_, addr_, ptep_, pteval_ in restore:
        mm = mm_
        a.set_pte_at(mm, addr_, ptep_, pteval_)
        a.ptl_release(mm, ptep_)
    # Pages nobody maps any more are freed (the tail pages' last reference).
    for pfn in range(head + 1, head + nr):
        if cython.cast(i64, mem.mapcount[pfn]) == 0:
            mem.refcount[pfn] = 1
            k.folio_put(pfn, 1)
    return 0


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        EAGAIN=EAGAIN,
        EBUSY=EBUSY,
        EINVAL=EINVAL,
        TVA_PAGEFAULT=TVA_PAGEFAULT,
        TVA_KHUGEPAGED=TVA_KHUGEPAGED,
        TVA_FORCED_COLLAPSE=TVA_FORCED_COLLAPSE,
    )
