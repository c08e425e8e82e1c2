"""PMD-size THP and the mTHP policy.

Models: mm/huge_memory.c (Linux v6.12): ``__thp_vma_allowable_orders``
(the sysfs policy per size), ``thp_vma_suitable_order(s)``,
``do_huge_pmd_anonymous_page`` (with the huge zero page),
``do_huge_pmd_wp_page``, ``copy_huge_pmd``, ``zap_huge_pmd``,
``__split_huge_pmd_locked`` (one ``set_ptes`` over the whole table) and
``change_huge_pmd``.  Anonymous memory only: file THPs are not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..arch.pgtable import PtePtr
from ..errors import KernelBug
from . import rmap
from .kernel import REF_OPS, THP_FAULT_ALLOC, THP_FAULT_FALLBACK, THP_SPLIT_PAGE, THP_SPLIT_PMD
from .memmap import PG_anon_exclusive, PG_reserved
from .mm_types import (
    FAULT_FLAG_UNSHARE,
    FAULT_FLAG_WRITE,
    MM_ANONPAGES,
    VM_FAULT_FALLBACK,
    VM_HUGEPAGE,
    VM_NOHUGEPAGE,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    Vma,
    vma_is_anonymous,
)

if TYPE_CHECKING:
    from .memmap import Folio
    from .memory import VmFault
    from .mmu_gather import MmuGather

__all__ = [
    "thp_vma_allowable_orders",
    "thp_vma_allowable_order",
    "thp_vma_suitable_order",
    "thp_vma_suitable_orders",
    "create_huge_pmd",
    "do_huge_pmd_wp_page",
    "huge_pmd_set_accessed",
    "copy_huge_pmd",
    "zap_huge_pmd",
    "split_huge_pmd",
    "change_huge_pmd",
    "split_folio",
]


def thp_vma_allowable_orders(vma: Vma, orders: int) -> int:
    """The subset of ``orders`` (a bitmask) the sysfs policy allows here.

    Models: mm/huge_memory.c ``__thp_vma_allowable_orders()`` for the page
    fault path (TVA_IN_PF | TVA_ENFORCE_SYSFS), anonymous VMAs: per size,
    ``always`` allows, ``madvise`` allows in VM_HUGEPAGE VMAs, ``inherit``
    follows the top-level setting, ``never`` forbids; VM_NOHUGEPAGE
    forbids all.  Anon mTHP starts at order 2.
    """
    if vma.vm_flags & VM_NOHUGEPAGE or not vma_is_anonymous(vma) or vma.vm_flags & VM_SHARED:
        return 0
    k = vma.vm_mm.kernel
    if k.mm_thp_disabled(vma.vm_mm):
        return 0
    allowed = 0
    huge = bool(vma.vm_flags & VM_HUGEPAGE)
    for order, setting in k.mthp.items():
        if not orders >> order & 1:
            continue
        if setting == "inherit":
            setting = k.thp
        if setting == "always" or (setting == "madvise" and huge):
            allowed |= 1 << order
    return allowed


def thp_vma_allowable_order(vma: Vma, order: int) -> bool:
    return bool(thp_vma_allowable_orders(vma, 1 << order))


def thp_vma_suitable_order(vma: Vma, addr: int, order: int) -> bool:
    """Models: include/linux/huge_mm.h ``thp_vma_suitable_order()``."""
    k = vma.vm_mm.kernel
    size = k.PAGE_SIZE << order
    haddr = addr & ~(size - 1)
    if not vma_is_anonymous(vma):
        if ((vma.vm_start >> k.page_shift) - vma.vm_pgoff) & ((1 << order) - 1):
            return False
    return haddr >= vma.vm_start and haddr + size <= vma.vm_end


def thp_vma_suitable_orders(vma: Vma, addr: int, orders: int) -> int:
    """Models: include/linux/huge_mm.h ``thp_vma_suitable_orders()``."""
    out = 0
    o = orders
    while o:
        order = o.bit_length() - 1
        o &= ~(1 << order)
        if thp_vma_suitable_order(vma, addr, order):
            out |= 1 << order
    return out


def _huge_zero_pfn(mm: MmStruct) -> int | None:
    """``mm_get_huge_zero_folio()``: allocate the huge zero page on first use."""
    k = mm.kernel
    if k.huge_zero_pfn is None:
        folio = k.folio_alloc(k.PMD_ORDER, zero=True)
        if folio is None:
            return None
        k.memmap.flags[folio.pfn] |= PG_reserved
        k.huge_zero_pfn = folio.pfn
    return k.huge_zero_pfn


def vma_alloc_anon_folio_pmd(vma: Vma) -> "Folio | None":
    """Allocate a zeroed PMD-size anon folio, counting a fallback on failure.

    Models: mm/huge_memory.c ``vma_alloc_anon_folio_pmd()`` (from commit
    "mm: abstract THP allocation", v6.13; open-coded in v6.12's
    ``__do_huge_pmd_anonymous_page()``, same events).
    """
    k = vma.vm_mm.kernel
    folio = k.folio_alloc(k.PMD_ORDER, zero=True)
    if folio is None:
        k.counters.add(THP_FAULT_FALLBACK)
        k.mthp_stat(k.PMD_ORDER, "anon_fault_fallback")
    return folio


def map_anon_folio_pmd(folio: "Folio", vma: Vma, pmd_index: int, haddr: int) -> None:
    """Map a new PMD-size anon folio writable (per the VMA) and dirty.

    Models: mm/huge_memory.c ``map_anon_folio_pmd()`` (v6.13).
    """
    from .memory import maybe_mkwrite

    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    entry = arch.pfn_pte(folio.pfn, vma.vm_page_prot)
    entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
    rmap.folio_add_new_anon_rmap(folio, vma, haddr, rmap.RMAP_EXCLUSIVE, pmd=True)
    arch.set_pmd_at(mm, haddr, pmd_index, arch.pte_pmd(entry))
    mm.add_mm_counter(MM_ANONPAGES, arch.HPAGE_PMD_NR)
    k.counters.add(THP_FAULT_ALLOC)
    k.mthp_stat(k.PMD_ORDER, "anon_fault_alloc")


def create_huge_pmd(vmf: "VmFault") -> int:
    """Map a fresh PMD-size folio (or the huge zero page on a read).

    Models: mm/huge_memory.c ``do_huge_pmd_anonymous_page()``.
    """
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    haddr = vmf.address & ~(arch.PMD_SIZE - 1)
    from .memory import anon_vma_prepare

    anon_vma_prepare(vma)
    if not vmf.flags & FAULT_FLAG_WRITE and k.use_zero_page:
        zpfn = _huge_zero_pfn(mm)
        if zpfn is None:
            k.counters.add(THP_FAULT_FALLBACK)
            return VM_FAULT_FALLBACK
        pmd = arch.pte_pmd(arch.pte_mkspecial(arch.pfn_pte(zpfn, vma.vm_page_prot)))
        arch.set_pmd_at(mm, haddr, vmf.pmd_index, pmd)
        return 0
    folio = vma_alloc_anon_folio_pmd(vma)
    if folio is None:
        return VM_FAULT_FALLBACK
    map_anon_folio_pmd(folio, vma, vmf.pmd_index, haddr)
    return 0


def do_huge_zero_wp_pmd(vmf: "VmFault", haddr: int) -> int:
    """Replace the huge zero PMD by a new PMD THP on a write fault.

    Models: mm/huge_memory.c ``do_huge_zero_wp_pmd()``, commit 1ced09e0331f
    "mm: allocate THP on hugezeropage wp-fault" (Dev Jain, v6.13); only
    with the ``huge_zero_wp_thp`` option.  VM_FAULT_FALLBACK when the
    folio cannot be allocated (the caller then splits, as v6.12 always
    does).  The PMD is cleared and flushed (``pmdp_huge_clear_flush``)
    before the new one is set, so no TLB keeps the zero page's translation.
    """
    vma = vmf.vma
    mm = vma.vm_mm
    arch = mm.kernel.arch
    folio = vma_alloc_anon_folio_pmd(vma)
    if folio is None:
        return VM_FAULT_FALLBACK
    arch.pmdp_huge_get_and_clear(mm, haddr, vmf.pmd_index)
    arch.flush_pmd_tlb_range(vma, haddr, haddr + arch.PMD_SIZE)
    map_anon_folio_pmd(folio, vma, vmf.pmd_index, haddr)
    return 0


def do_huge_pmd_wp_page(vmf: "VmFault", pmd: int) -> int:
    """A write (or unshare) fault on a write-protected PMD mapping.

    Models: mm/huge_memory.c ``do_huge_pmd_wp_page()`` (v6.12): an exclusive
    anon folio is reused in place; the huge zero page (unless
    ``huge_zero_wp_thp``) and shared folios are split and the fault retried
    at PTE level (VM_FAULT_FALLBACK).
    """
    vma = vmf.vma
    k = vma.vm_mm.kernel
    arch = k.arch
    pte = arch.pmd_pte(pmd)
    haddr = vmf.address & ~(arch.PMD_SIZE - 1)
    pfn = arch.pte_pfn(pte)
    if pfn == k.huge_zero_pfn and k.huge_zero_wp_thp:
        ret = do_huge_zero_wp_pmd(vmf, haddr)
        if not ret & VM_FAULT_FALLBACK:
            return ret
        # Fall back to splitting the PMD if the THP cannot be allocated.
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        split_huge_pmd(vma, vmf.pmd_index, haddr)
        return VM_FAULT_FALLBACK
    folio = k.folio(pfn)
    if folio.page_anon_exclusive(folio.pfn) or (folio.refcount == 1 and folio.mapcount_total() == 1):
        folio.set_anon_exclusive(folio.pfn)
        if vmf.flags & FAULT_FLAG_UNSHARE:
            return 0
        entry = arch.pte_mkyoung(arch.pte_mkdirty(pte))
        if vma.vm_flags & VM_WRITE:
            entry = arch.pte_mkwrite(entry)
        arch.pmdp_set_access_flags(vma, haddr, vmf.pmd_index, arch.pte_pmd(entry), True)
        return 0
    split_huge_pmd(vma, vmf.pmd_index, haddr)
    return VM_FAULT_FALLBACK


def huge_pmd_set_accessed(vmf: "VmFault", pmd: int) -> int:
    """Set young (and dirty on a write) on a PMD mapping.

    Models: mm/huge_memory.c ``huge_pmd_set_accessed()``.
    """
    vma = vmf.vma
    arch = vma.vm_mm.kernel.arch
    write = bool(vmf.flags & FAULT_FLAG_WRITE)
    entry = arch.pte_mkyoung(arch.pmd_pte(pmd))
    if write:
        entry = arch.pte_mkdirty(entry)
    haddr = vmf.address & ~(arch.PMD_SIZE - 1)
    arch.pmdp_set_access_flags(vma, haddr, vmf.pmd_index, arch.pte_pmd(entry), write)
    return 0


def copy_huge_pmd(
    dst_mm: MmStruct, src_mm: MmStruct, pmd_index: int, addr: int, dst_vma: Vma, src_vma: Vma
) -> int:
    """Share a PMD mapping with the child (CoW), or split if it may be pinned.

    Models: mm/huge_memory.c ``copy_huge_pmd()``: returns 0 when copied,
    -EAGAIN after splitting (the caller then copies the PTEs).
    """
    k = src_mm.kernel
    arch = k.arch
    pmd = src_mm.space.pmds[pmd_index]
    pte = arch.pmd_pte(pmd)
    pfn = arch.pte_pfn(pte)
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        arch.set_pmd_at(dst_mm, addr, pmd_index, pmd)
        return 0
    folio = k.folio(pfn)
    folio.ref_add(1)
    k.counters.add(REF_OPS)
    if rmap.folio_try_dup_anon_rmap_pmd(folio, src_vma):
        k.folio_put(folio)
        split_huge_pmd(src_vma, pmd_index, addr & ~(arch.PMD_SIZE - 1))
        return -11
    dst_mm.add_mm_counter(MM_ANONPAGES, arch.HPAGE_PMD_NR)
    arch.pmdp_set_wrprotect(src_mm, addr, pmd_index)
    pte = arch.pte_mkold(arch.pte_wrprotect(pte))
    arch.set_pmd_at(dst_mm, addr, pmd_index, arch.pte_pmd(pte))
    return 0


def zap_huge_pmd(tlb: "MmuGather", vma: Vma, pmd_index: int, addr: int) -> None:
    """Models: mm/huge_memory.c ``zap_huge_pmd()``."""
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    old = arch.pmdp_huge_get_and_clear(mm, addr, pmd_index)
    tlb.tlb_remove_pmd_tlb_entry(addr, arch.PMD_SIZE)
    pte = arch.pmd_pte(old)
    pfn = arch.pte_pfn(pte)
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        return
    folio = k.folio(pfn)
    rmap.folio_remove_rmap_pmd(folio, vma)
    mm.add_mm_counter(MM_ANONPAGES, -arch.HPAGE_PMD_NR)
    tlb.tlb_remove_folio_pages(folio, 1)


def split_huge_pmd(vma: Vma, pmd_index: int, haddr: int) -> None:
    """Replace a PMD mapping by a table of PTEs mapping the same pages.

    Models: mm/huge_memory.c ``__split_huge_pmd_locked()`` (v6.12):
    ``pmdp_invalidate`` then one ``set_ptes`` over the whole table, so on
    arm64 the result is contiguous at once; per-page mapcounts take over
    from the entire mapcount and exclusivity is copied to every page.
    """
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    haddr &= ~(arch.PMD_SIZE - 1)
    old = arch.pmdp_invalidate(vma, haddr, pmd_index)
    mm.space.pmd_store(pmd_index, 0)
    pte = arch.pmd_pte(old)
    pfn = arch.pte_pfn(pte)
    k.counters.add(THP_SPLIT_PMD)
    table = mm.space.alloc_pte_table(pmd_index)
    ptep = PtePtr(table, 0)
    nr = arch.HPAGE_PMD_NR
    if arch.pte_special(pte) or pfn == k.huge_zero_pfn:
        # __split_huge_zero_page_pmd: map the small zero page everywhere.
        zp = arch.pte_mkspecial(arch.pfn_pte(k.zero_pfn, vma.vm_page_prot))
        for i in range(nr):
            arch.set_pte_at(mm, haddr + i * k.PAGE_SIZE, ptep + i, zp)
        arch.ptl_release(mm, table)
        return
    folio = k.folio(pfn)
    mem = folio.mem
    exclusive = folio.page_anon_exclusive(folio.pfn)
    mem.mapcount[folio.pfn : folio.pfn + nr] += 1
    mem.large_mapcount[folio.pfn] += nr - 1
    mem.entire_mapcount[folio.pfn] -= 1
    if exclusive:
        folio.set_anon_exclusive(folio.pfn, nr)
    else:
        mem.flags[folio.pfn : folio.pfn + nr] &= ~PG_anon_exclusive & 0xFFFFFFFF
    folio.ref_add(nr - 1)
    k.counters.add(REF_OPS)
    # The PTEs are built from the VMA's protection, carrying over the PMD's
    # write, young, dirty, soft-dirty and uffd-wp state (not the PMD value
    # itself: it is a block descriptor, and pmdp_invalidate made it invalid).
    entry = arch.pfn_pte(pfn, vma.vm_page_prot)
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
    arch.ptl_release(mm, table)
    if folio.entire_mapcount() < 0:
        raise KernelBug("VM_BUG_ON_FOLIO", f"entire mapcount underflow in {folio}", haddr)


def change_huge_pmd(vma: Vma, pmd_index: int, addr: int, newprot: int) -> None:
    """Models: mm/huge_memory.c ``change_huge_pmd()`` (whole-PMD mprotect)."""
    mm = vma.vm_mm
    arch = mm.kernel.arch
    old = arch.pmdp_invalidate(vma, addr, pmd_index)
    pte = arch.pte_modify(arch.pmd_pte(old), newprot)
    folio_pfn = arch.pte_pfn(pte)
    k = mm.kernel
    if (
        vma.vm_flags & VM_WRITE
        and not arch.pte_special(pte)
        and folio_pfn != k.huge_zero_pfn
        and k.folio(folio_pfn).page_anon_exclusive(folio_pfn)
    ):
        pte = arch.pte_mkwrite(pte)
    arch.set_pmd_at(mm, addr, pmd_index, arch.pte_pmd(pte))


def split_folio(folio: "Folio") -> int:
    """Split a PTE-mapped anon large folio into order-0 folios; 0 or -errno.

    Models: mm/huge_memory.c ``split_huge_page_to_list_to_order(new_order=0)``
    (v6.12) for anonymous folios: refused (-EAGAIN) when someone holds a
    reference beyond the mappings and the caller's (``can_split_folio``), so
    a pinned folio is never split; otherwise every PTE mapping it is
    unmapped (``try_to_migrate``: ``ptep_clear_flush`` one PTE at a time,
    which on arm64 unfolds a folded block first), the metadata is split
    (each page its own folio, keeping its mapcount, exclusivity and index;
    pages no one maps are freed), and the PTEs are re-established one at a
    time with ``set_pte_at`` (``remove_migration_ptes``), keeping the dirty,
    young and write bits.  The migration entries of the real kernel are
    not modelled: the model is sequential, nothing can observe them.

    Context: the caller holds one reference to ``folio`` and no PTL.
    """
    from .memmap import Folio as _Folio

    mem = folio.mem
    k = mem.owner
    a = k.arch
    if not folio.test_anon() or not folio.test_large():
        return -22
    if folio.entire_mapcount():
        return -16  # PMD-mapped: the caller splits the PMD first
    if folio.refcount != folio.mapcount_total() + 1 or folio.maybe_dma_pinned():
        return -11
    order = folio.order
    nr = folio.nr_pages
    head = folio.pfn
    # try_to_migrate(): clear every mapping, remembering what to restore.
    restore = []
    for mm, idx, pos in rmap.rmap_walk_ptes(k, head, head + nr):
        table = mm.space.tables[idx]
        addr = ((idx * a.PTRS_PER_PTE) + pos) << k.page_shift
        vma = mm.vma_lookup(addr)
        ptep = PtePtr(table, pos)
        k.hw.current_cpu = min(mm.cpumask) if mm.cpumask else 0
        pteval = a.ptep_clear_flush(vma, addr, ptep)
        restore.append((mm, vma, addr, ptep, pteval))
    # __split_huge_page(): every page becomes an order-0 folio.
    flags = mem.flags[head]
    mapping = int(mem.mapping[head])
    index = int(mem.index[head])
    mapcounts = mem.mapcount[head : head + nr].copy()
    k.mthp_stat(order, "nr_anon", -1)
    k.mthp_stat(order, "split")
    if order == k.PMD_ORDER:
        k.counters.add(THP_SPLIT_PAGE)
    k.deferred_split.discard(head)
    for i in range(nr):
        pfn = head + i
        mem.head[pfn] = pfn
        mem.order[pfn] = 0
        mem.flags[pfn] = (mem.flags[pfn] & np.uint32(PG_anon_exclusive)) | (
            flags & ~np.uint32(PG_anon_exclusive)
        )
        mem.refcount[pfn] = int(mapcounts[i]) + (1 if i == 0 else 0)
        mem.pincount[pfn] = 0
        mem.entire_mapcount[pfn] = 0
        mem.large_mapcount[pfn] = 0
        mem.mapping[pfn] = mapping
        mem.index[pfn] = index + i
    # remove_migration_ptes(): map each page again, one PTE at a time.
    for mm, _vma, addr, ptep, pteval in restore:
        a.set_pte_at(mm, addr, ptep, pteval)
        a.ptl_release(mm, ptep.table)
    # Pages nobody maps any more are freed (the tail pages' last reference).
    for i in range(1, nr):
        if int(mapcounts[i]) == 0:
            mem.refcount[head + i] = 1
            k.folio_put(_Folio(mem, head + i))
    return 0
