"""khugepaged: collapse PTE-mapped anonymous memory into huge folios.

Models: mm/khugepaged.c (Linux v6.12, with the later changes as options,
docs/versions.md): the scan (``khugepaged_do_scan`` ->
``khugepaged_scan_mm_slot`` -> ``hpage_collapse_scan_pmd``) and the
collapse of anonymous memory (``collapse_huge_page``:
``alloc_charge_folio``, ``pmdp_collapse_flush``,
``__collapse_huge_page_isolate``, ``__collapse_huge_page_copy``, the new
mapping), run as an explicit call (``Machine.khugepaged_scan``): the model
has no kernel threads, timers or sleeps.  v7.2 names: ``collapse_scan_pmd``,
``collapse_scan_mm_slot``.

Versions (``Kernel`` options, ``contpte.version.CHANGES``):
``khugepaged_batch_copy`` (6.17), ``khugepaged_ro_collapse`` (6.18),
``khugepaged_lazyfree_skip`` (7.1) and ``khugepaged_mthp`` (7.2: collapse
into every enabled anon mTHP order, ``mthp_collapse()``, the per-size
``collapse_*`` stats, ``collapse_max_ptes_none()`` scaled per order).

MADV_COLLAPSE is ``madvise_collapse`` (the synchronous form, with
``is_khugepaged`` false: no limit on none or shared PTEs, no young PTE
needed, the sysfs policy ignored; reached from ``do_madvise``).

Left out: file and shmem collapse (``collapse_file``,
``hpage_collapse_scan_file``, ``collapse_pte_mapped_thp``): both work on
anonymous VMAs only here; NUMA node choice; memory cgroups.  (Swap PTEs,
up to ``max_ptes_swap``, are swapped in first: ``__collapse_huge_page_swapin``.)  The model keeps no LRU lists, page locks or folio
young/referenced flags: isolation always succeeds and a page counts as
referenced only through its PTE's young bit.  The copy cannot hit memory
poison (``__collapse_huge_page_copy_failed`` never runs).  The mm list is
every live mm in creation order (the kernel registers an mm when one of its
VMAs becomes eligible; a pass over an mm without eligible VMAs changes
nothing).  The kernel deposits the old PTE table for a later split of a
new PMD; the model frees it (its split allocates one).  ``progress`` counts
as v6.12 does (``HPAGE_PMD_NR`` per PMD range scanned; v7.2 counts the
PTEs it looked at).

Not compiled (like ``mm/fork.py``): it runs only when asked, and its inner
work is in the compiled arch, rmap and memory functions it calls.

Context: the model is sequential, so the mmap_lock, the anon_vma lock, the
PMD lock and the PTL are not modelled beyond ``ptl_release`` (the rule
checker's hook where the kernel drops a PTL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arch.pgtable import Pgtable
from ..counters import counter
from .huge_memory import (
    TVA_FORCED_COLLAPSE,
    TVA_KHUGEPAGED,
    map_anon_folio_pmd_nopf,
    thp_vma_allowable_orders,
    thp_vma_suitable_order,
)
from .internal import folio_pte_batch
from .kernel import (
    MTHP_COLLAPSE_ALLOC,
    MTHP_COLLAPSE_ALLOC_FAILED,
    MTHP_COLLAPSE_EXCEED_NONE,
    MTHP_COLLAPSE_EXCEED_SHARED,
    MTHP_COLLAPSE_EXCEED_SWAP,
    PAGE_COPY,
    PAGE_ZERO,
    Kernel,
)
from .memmap import (
    MemMap,
    PG_lazyfree,
    PG_swapcache,
    folio_likely_mapped_shared,
    folio_mapcount,
    folio_test_anon,
)
from .memory import do_swap_page, map_anon_folio_pte_nopf
from .mm_h import pte_index, pte_unmap_unlock, userfaultfd_armed, vm_normal_folio
from .mm_types import MM_ANONPAGES, VM_FAULT_OOM, MmStruct, Vma, VmFault, vma_is_anonymous, vma_mm
from .rmap import folio_remove_rmap_ptes
from .swapfile import free_swap_cache

__all__ = [
    "CollapseControl",
    "khugepaged_do_scan",
    "khugepaged_scan_mm_slot",
    "hpage_collapse_scan_pmd",
    "mthp_collapse",
    "collapse_huge_page",
    "madvise_collapse",
    "SCAN_RESULTS",
]

# enum scan_result (mm/khugepaged.c), the members the model can return.
SCAN_FAIL = 0
SCAN_SUCCEED = 1
SCAN_PMD_NULL = 2
SCAN_PMD_NONE = 3
SCAN_PMD_MAPPED = 4
SCAN_EXCEED_NONE_PTE = 5
SCAN_EXCEED_SWAP_PTE = 6
SCAN_EXCEED_SHARED_PTE = 7
SCAN_PTE_NON_PRESENT = 8
SCAN_PTE_UFFD_WP = 9
SCAN_PTE_MAPPED_HUGEPAGE = 10
SCAN_PAGE_RO = 11
SCAN_LACK_REFERENCED_PAGE = 12
SCAN_PAGE_NULL = 13
SCAN_PAGE_COUNT = 14
SCAN_PAGE_ANON = 15
SCAN_PAGE_LAZYFREE = 16
SCAN_ANY_PROCESS = 17
SCAN_VMA_NULL = 18
SCAN_VMA_CHECK = 19
SCAN_ADDRESS_RANGE = 20
SCAN_ALLOC_HUGE_PAGE_FAIL = 21

EAGAIN = 11
ENOMEM = 12
EBUSY = 16
EINVAL = 22

SCAN_RESULTS = {
    v: k.lower()[5:] for k, v in globals().items() if k.startswith("SCAN_") and isinstance(v, int)
}
"""Result code -> the name of the kernel's ``enum scan_result`` member (``SCAN_`` dropped, lower case)."""


#: include/linux/huge_mm.h: the smallest anon mTHP order khugepaged collapses into (v7.2).
KHUGEPAGED_MIN_MTHP_ORDER = 2

THP_COLLAPSE_ALLOC = counter("thp_collapse_alloc")
THP_COLLAPSE_ALLOC_FAILED = counter("thp_collapse_alloc_failed")
THP_SCAN_EXCEED_NONE_PTE = counter("thp_scan_exceed_none_pte")
THP_SCAN_EXCEED_SWAP_PTE = counter("thp_scan_exceed_swap_pte")
THP_SCAN_EXCEED_SHARE_PTE = counter("thp_scan_exceed_share_pte")


@dataclass
class CollapseControl:
    """Models: mm/khugepaged.c ``struct collapse_control`` (no NUMA node load)."""

    is_khugepaged: bool = True
    #: v7.2 ``mthp_present_ptes``: one flag per PTE of the PMD range, set for occupied (not none/zero) ones.
    mthp_present_ptes: list[bool] = field(default_factory=list)


def pte_none_or_zero(k: Kernel, pte: int) -> bool:
    """Models: mm/khugepaged.c ``pte_none_or_zero()`` (v7.2; open-coded in v6.12)."""
    arch = k.arch
    if arch.pte_none(pte):
        return True
    return bool(arch.pte_present(pte) and arch.pte_pfn(pte) == k.zero_pfn)


def _is_pmd_order(k: Kernel, order: int) -> bool:
    return order == k.PMD_ORDER


def collapse_max_ptes_none(k: Kernel, cc: CollapseControl, vma: Vma | None, order: int) -> int:
    """How many none or zero-page PTEs a collapse into ``order`` accepts.

    Models: mm/khugepaged.c ``collapse_max_ptes_none()`` (v7.2; v6.12 has
    the PMD case inline): none in a VMA armed for userfaultfd; any for
    MADV_COLLAPSE; ``max_ptes_none`` for the PMD order; for an mTHP order,
    ``2^order - 1`` when ``max_ptes_none`` is at its limit (511), else 0.
    """
    if vma is not None and userfaultfd_armed(vma):
        return 0
    if not cc.is_khugepaged:
        return int(k.arch.HPAGE_PMD_NR)
    if _is_pmd_order(k, order):
        return int(k.khugepaged_max_ptes_none)
    if k.khugepaged_max_ptes_none == k.arch.PTRS_PER_PTE - 1:
        return (1 << order) - 1
    return 0


def collapse_max_ptes_shared(k: Kernel, cc: CollapseControl, order: int) -> int:
    """Models: mm/khugepaged.c ``collapse_max_ptes_shared()`` (v7.2): no shared page for an mTHP order."""
    if not cc.is_khugepaged:
        return int(k.arch.HPAGE_PMD_NR)
    if not _is_pmd_order(k, order):
        return 0
    return int(k.khugepaged_max_ptes_shared)


def collapse_max_ptes_swap(k: Kernel, cc: CollapseControl, order: int) -> int:
    """Models: mm/khugepaged.c ``collapse_max_ptes_swap()`` (v7.2): no swap PTE for an mTHP order."""
    if not cc.is_khugepaged:
        return int(k.arch.HPAGE_PMD_NR)
    if not _is_pmd_order(k, order):
        return 0
    return int(k.khugepaged_max_ptes_swap)


def _tva_type(cc: CollapseControl) -> int:
    return int(TVA_KHUGEPAGED if cc.is_khugepaged else TVA_FORCED_COLLAPSE)


def collapse_possible_orders(vma: Vma, cc: CollapseControl) -> int:
    """The orders ``vma``'s memory may be collapsed into (a bitmask).

    Models: mm/khugepaged.c ``collapse_possible_orders()`` (v7.2): for
    khugepaged, every anon mTHP order of an anonymous VMA with
    ``khugepaged_mthp``, else the PMD order alone (v6.12's
    ``thp_vma_allowable_order(..., PMD_ORDER)``), filtered by the sysfs
    policy; MADV_COLLAPSE: the PMD order, whatever sysfs says.
    """
    k: Kernel = vma_mm(vma).kernel
    if cc.is_khugepaged and k.khugepaged_mthp and vma_is_anonymous(vma):
        orders = ((1 << (k.PMD_ORDER + 1)) - 1) & ~((1 << KHUGEPAGED_MIN_MTHP_ORDER) - 1)
    else:
        orders = 1 << k.PMD_ORDER
    return int(thp_vma_allowable_orders(vma, orders, _tva_type(cc)))


def hpage_collapse_test_exit_or_disable(mm: MmStruct) -> bool:
    """Models: mm/khugepaged.c ``hpage_collapse_test_exit_or_disable()``: the mm is exiting or THP is off for it."""
    return bool(mm.dead) or mm.kernel.mm_thp_disabled(mm)


def hugepage_vma_revalidate(
    mm: MmStruct, address: int, expect_anon: bool, cc: CollapseControl, order: int
) -> tuple[int, Vma | None]:
    """Look the VMA up again and check it may still be collapsed into ``order``; (result, vma).

    Models: mm/khugepaged.c ``hugepage_vma_revalidate()``: the VMA must
    span the whole PMD range (whatever the order: v7.2 keeps that rule so
    no other VMA shares the PMD) and allow ``order``.
    """
    if hpage_collapse_test_exit_or_disable(mm):
        return SCAN_ANY_PROCESS, None
    vma = mm.find_vma(address)
    if vma is None:
        return SCAN_VMA_NULL, None
    k: Kernel = mm.kernel
    if not thp_vma_suitable_order(vma, address, k.PMD_ORDER):
        return SCAN_ADDRESS_RANGE, vma
    if not thp_vma_allowable_orders(vma, 1 << order, _tva_type(cc)):
        return SCAN_VMA_CHECK, vma
    if expect_anon and (vma.anon_vma is None or not vma_is_anonymous(vma)):
        return SCAN_PAGE_ANON, vma
    return SCAN_SUCCEED, vma


def find_pmd_or_thp_or_none(mm: MmStruct, address: int) -> int:
    """Models: mm/khugepaged.c ``find_pmd_or_thp_or_none()``: does the PMD hold a PTE table?"""
    space = mm.space
    pmd_index = address >> space.pmd_shift
    if space.pmd_load(pmd_index):
        return SCAN_PMD_MAPPED  # pmd_trans_huge(): a PMD THP or the huge zero page
    if space.pte_table(pmd_index) < 0:
        return SCAN_PMD_NONE
    return SCAN_SUCCEED


def is_refcount_suitable(mem: MemMap, folio: int) -> bool:
    """No reference beyond the mappings (a GUP pin refuses the collapse).

    Models: mm/khugepaged.c ``is_refcount_suitable()`` (v6.12;
    ``folio_expected_ref_count()`` from v6.16, the same for anon folios):
    one reference per mapping, and one per page for the swap cache.
    """
    expected = folio_mapcount(mem, folio)
    if int(mem.flags[folio]) & PG_swapcache:
        expected += 1 << int(mem.order[folio])
    return int(mem.refcount[folio]) == expected


def _folio_test_lazyfree(mem: MemMap, folio: int) -> bool:
    """``folio_test_lazyfree()``: an anon folio MADV_FREE made lazyfree."""
    return folio_test_anon(mem, folio) and bool(int(mem.flags[folio]) & PG_lazyfree)


def alloc_charge_folio(mm: MmStruct, cc: CollapseControl, order: int) -> tuple[int, int]:
    """Allocate the folio to collapse into; (result, folio or -1).

    Models: mm/khugepaged.c ``alloc_charge_folio()``: ``thp_collapse_alloc``
    (``_failed``) for the PMD order and, with ``khugepaged_mthp``, the
    per-size ``collapse_alloc`` (``_failed``) stat.  Not zeroed: the copy
    writes every page.
    """
    k: Kernel = mm.kernel
    folio = int(k.folio_alloc(order, False))
    if folio < 0:
        if _is_pmd_order(k, order):
            k.counters.inc(THP_COLLAPSE_ALLOC_FAILED, 1)
        if k.khugepaged_mthp:
            k.count_mthp_stat(order, MTHP_COLLAPSE_ALLOC_FAILED, 1)
        return SCAN_ALLOC_HUGE_PAGE_FAIL, -1
    if _is_pmd_order(k, order):
        k.counters.inc(THP_COLLAPSE_ALLOC, 1)
    if k.khugepaged_mthp:
        k.count_mthp_stat(order, MTHP_COLLAPSE_ALLOC, 1)
    return SCAN_SUCCEED, folio


def _collapse_huge_page_isolate(vma: Vma, address: int, ptep: int, cc: CollapseControl, order: int) -> int:
    """Check every PTE of the range again, with the PTEs out of the walker's reach.

    Models: mm/khugepaged.c ``__collapse_huge_page_isolate()``: the same
    limits as the scan (none/zero PTEs, shared pages, uffd-wp, refcount:
    a pinned page refuses), plus (v7.2, mTHP order) no page of a folio as
    large as the target; v6.12 needs a writable PTE (unless
    ``khugepaged_ro_collapse``), khugepaged a young one.  Isolation from
    the LRU and the page lock always succeed in the model (no LRU).
    """
    k: Kernel = vma_mm(vma).kernel
    arch = k.arch
    mem = k.memmap
    max_ptes_none = collapse_max_ptes_none(k, cc, vma, order)
    max_ptes_shared = collapse_max_ptes_shared(k, cc, order)
    none_or_zero = shared = referenced = 0
    writable = False
    for i in range(1 << order):
        addr = address + i * k.PAGE_SIZE
        pteval = int(arch.ptep_get(ptep + i))
        if pte_none_or_zero(k, pteval):
            none_or_zero += 1
            if none_or_zero > max_ptes_none:
                if _is_pmd_order(k, order):
                    k.counters.inc(THP_SCAN_EXCEED_NONE_PTE, 1)
                if k.khugepaged_mthp:
                    k.count_mthp_stat(order, MTHP_COLLAPSE_EXCEED_NONE, 1)
                return SCAN_EXCEED_NONE_PTE
            continue
        if not arch.pte_present(pteval):
            return SCAN_PTE_NON_PRESENT
        if arch.pte_uffd_wp(pteval):
            return SCAN_PTE_UFFD_WP
        folio = int(vm_normal_folio(vma, addr, pteval))
        if folio < 0:
            return SCAN_PAGE_NULL
        if (
            k.khugepaged_lazyfree_skip
            and cc.is_khugepaged
            and _folio_test_lazyfree(mem, folio)
            and not arch.pte_dirty(pteval)
        ):
            return SCAN_PAGE_LAZYFREE
        if folio_likely_mapped_shared(mem, folio):
            shared += 1
            if cc.is_khugepaged and shared > max_ptes_shared:
                if _is_pmd_order(k, order):
                    k.counters.inc(THP_SCAN_EXCEED_SHARE_PTE, 1)
                if k.khugepaged_mthp:
                    k.count_mthp_stat(order, MTHP_COLLAPSE_EXCEED_SHARED, 1)
                return SCAN_EXCEED_SHARED_PTE
        if k.khugepaged_mthp and not _is_pmd_order(k, order) and int(mem.order[folio]) >= order:
            return SCAN_PTE_MAPPED_HUGEPAGE
        if not is_refcount_suitable(mem, folio):
            return SCAN_PAGE_COUNT
        if cc.is_khugepaged and arch.pte_young(pteval):
            referenced += 1
        if arch.pte_write(pteval):
            writable = True
    if not writable and not k.khugepaged_ro_collapse:
        return SCAN_PAGE_RO
    if cc.is_khugepaged and not referenced:
        return SCAN_LACK_REFERENCED_PAGE
    return SCAN_SUCCEED


def _collapse_huge_page_copy_succeeded(ptep: int, vma: Vma, address: int, order: int) -> None:
    """Clear the old PTEs and drop their mappings and references (the old pages may be freed).

    Models: mm/khugepaged.c ``__collapse_huge_page_copy_succeeded()``: a
    none or zero-page PTE adds one page to RSS (the new folio maps it); a
    zero-page PTE is cleared; a page's PTE is cleared, its rmap removed and
    its reference dropped, one PTE at a time in v6.12, a batch of PTEs of
    one large folio at a time with ``khugepaged_batch_copy`` (v6.17:
    ``folio_pte_batch``, ``clear_ptes``, ``folio_remove_rmap_ptes``,
    ``folio_put_refs``).

    Context: the PTEs are in a table no PMD points to (taken out by
    ``pmdp_collapse_flush``), so their stores need no TLB maintenance.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    mem = k.memmap
    nr_pages = 1 << order
    end = address + nr_pages * k.PAGE_SIZE
    i = 0
    while i < nr_pages:
        nr_ptes = 1
        addr = address + i * k.PAGE_SIZE
        pteval = int(arch.ptep_get(ptep + i))
        if pte_none_or_zero(k, pteval):
            mm.add_mm_counter(MM_ANONPAGES, 1)
            if not arch.pte_none(pteval):
                arch.ptep_get_and_clear(mm, addr, ptep + i)  # ptep_clear()
            i += 1
            continue
        page = int(arch.pte_pfn(pteval))
        src = int(mem.head[page])
        if k.khugepaged_batch_copy and int(mem.order[src]) > 0:
            # folio_pte_batch(): no FPB_RESPECT_* flags, dirty and soft-dirty ignored.
            nr_ptes = int(folio_pte_batch(k, src, ptep + i, pteval, (end - addr) >> k.page_shift))
            arch.clear_full_ptes(mm, addr, ptep + i, nr_ptes, False)  # clear_ptes()
        else:
            arch.ptep_get_and_clear(mm, addr, ptep + i)  # ptep_clear()
        folio_remove_rmap_ptes(src, page, nr_ptes, vma)
        free_swap_cache(k, src)
        k.folio_put(src, nr_ptes)  # free_page_and_swap_cache() / folio_put_refs()
        i += nr_ptes
    pte_unmap_unlock(mm, ptep)


def _collapse_huge_page_copy(ptep: int, folio: int, vma: Vma, address: int, order: int) -> int:
    """Copy (or zero) every page of the range into the new folio, then release the old ones.

    Models: mm/khugepaged.c ``__collapse_huge_page_copy()``: a none or
    zero-page PTE gives a zeroed page (``clear_user_highpage``), a page is
    copied (``copy_mc_user_highpage``; the model has no memory poison, so
    the copy always succeeds).
    """
    k: Kernel = vma_mm(vma).kernel
    arch = k.arch
    for i in range(1 << order):
        pteval = int(arch.ptep_get(ptep + i))
        src_addr = address + i * k.PAGE_SIZE
        if pte_none_or_zero(k, pteval):
            arch.clear_highpage(folio + i)
            k.counters.inc(PAGE_ZERO, 1)
            continue
        arch.copy_user_highpage(folio + i, arch.pte_pfn(pteval), src_addr, vma)
        k.counters.inc(PAGE_COPY, 1)
    _collapse_huge_page_copy_succeeded(ptep, vma, address, order)
    return SCAN_SUCCEED


def _collapse_huge_page_swapin(mm: MmStruct, vma: Vma, address: int, order: int) -> int:
    """Swap in every swap PTE of the range before the collapse; a ``SCAN_*`` result.

    Models: mm/khugepaged.c ``__collapse_huge_page_swapin()``: one
    ``do_swap_page()`` (a read fault) per swap entry, in address order;
    an error fails the collapse (``SCAN_FAIL``).
    """
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    for i in range(1 << order):
        addr = address + i * k.PAGE_SIZE
        ptep = int(mm.space.pte_ptr(addr))
        if ptep < 0:
            continue
        entry = int(arch.ptep_get_lockless(ptep))
        if entry == 0 or arch.pte_present(entry):
            continue
        vmf = VmFault(vma, addr, 0)
        vmf.pte = ptep
        vmf.orig_pte = entry
        if int(do_swap_page(vmf)) & VM_FAULT_OOM:
            return SCAN_FAIL
    return SCAN_SUCCEED


def collapse_huge_page(
    mm: MmStruct, address: int, referenced: int, unmapped: int, cc: CollapseControl, order: int
) -> int:
    """Collapse the ``2^order`` pages from ``address`` into one new folio; a ``SCAN_*`` result.

    Models: mm/khugepaged.c ``collapse_huge_page()``: allocate the folio,
    revalidate the VMA and the PMD, take the PTE table out of the PMD and
    flush the whole PMD range (``pmdp_collapse_flush``), check the PTEs
    again (``__collapse_huge_page_isolate``; on failure the table goes
    back), copy the pages and release the old ones, then map the new folio:
    by the PMD for the PMD order (the old table freed), or (v7.2, an mTHP
    order) the table goes back and the folio is mapped by ``set_ptes``
    over its range (``map_anon_folio_pte_nopf``; on arm64 a folio of 64K or
    more is folded into contiguous blocks).
    """
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    pmd_addr = address & ~(arch.PMD_SIZE - 1)
    pmd_index = pmd_addr >> arch.PMD_SHIFT
    result, folio = alloc_charge_folio(mm, cc, order)
    if result != SCAN_SUCCEED:
        return result
    result, vma = hugepage_vma_revalidate(mm, pmd_addr, True, cc, order)
    if result == SCAN_SUCCEED:
        result = find_pmd_or_thp_or_none(mm, pmd_addr)
    if result != SCAN_SUCCEED or vma is None:
        k.folio_put(folio, 1)
        return result
    if unmapped:
        # Swapped-out pages (at most max_ptes_swap) are brought back first.
        result = _collapse_huge_page_swapin(mm, vma, address, order)
        if result != SCAN_SUCCEED:
            k.folio_put(folio, 1)
            return result
    # The kernel takes the mmap_lock for write and revalidates again here
    # (nothing can have changed in the sequential model).
    pgtable = int(arch.pmdp_collapse_flush(vma, pmd_addr, pmd_index))
    ptep = (pgtable << arch.pool.shift) + int(pte_index(k, address))
    result = _collapse_huge_page_isolate(vma, address, ptep, cc, order)
    if result != SCAN_SUCCEED:
        # pmd_populate() of the original table: every PTE is as it was.
        arch.pmd_populate(mm, pmd_index, pgtable)
        pte_unmap_unlock(mm, ptep)
        k.folio_put(folio, 1)
        return result
    _collapse_huge_page_copy(ptep, folio, vma, address, order)
    if _is_pmd_order(k, order):
        arch.pte_free(mm, pgtable)  # the kernel deposits it (pgtable_trans_huge_deposit)
        map_anon_folio_pmd_nopf(folio, vma, pmd_index, pmd_addr)
    else:
        arch.pmd_populate(mm, pmd_index, pgtable)
        map_anon_folio_pte_nopf(folio, ptep, vma, address, False)
        pte_unmap_unlock(mm, ptep)
    return SCAN_SUCCEED


def max_order_from_offset(k: Kernel, offset: int) -> int:
    """Models: mm/khugepaged.c ``max_order_from_offset()`` (v7.2): the largest aligned order at ``offset``."""
    if offset == 0:
        return int(k.PMD_ORDER)
    return min((offset & -offset).bit_length() - 1, int(k.PMD_ORDER))


def mthp_collapse(
    mm: MmStruct, address: int, referenced: int, unmapped: int, cc: CollapseControl, enabled_orders: int
) -> int:
    """Collapse the PMD range at the largest enabled orders its occupied PTEs justify; a ``SCAN_*`` result.

    Models: mm/khugepaged.c ``mthp_collapse()`` (v7.2): from offset 0 and
    the PMD order down, a naturally aligned range of ``2^order`` PTEs is
    collapsed when at least ``2^order - collapse_max_ptes_none()`` of them
    are occupied; after a success (or a range already mapped by a folio
    that large) the next range starts past it at the largest order its
    alignment allows; a failure that a smaller order might avoid tries the
    next smaller enabled order; a PMD mapped meanwhile ends the walk.  v6.12
    has no such walk: ``hpage_collapse_scan_pmd()`` calls
    ``collapse_huge_page()`` for the PMD order.
    """
    k: Kernel = mm.kernel
    nr = int(k.arch.HPAGE_PMD_NR)
    last_result = SCAN_FAIL
    collapsed = 0
    alloc_failed = False
    offset = 0
    order = int(k.PMD_ORDER)
    retry_smaller = (
        SCAN_LACK_REFERENCED_PAGE,
        SCAN_EXCEED_NONE_PTE,
        SCAN_EXCEED_SWAP_PTE,
        SCAN_EXCEED_SHARED_PTE,
        SCAN_PAGE_COUNT,
        SCAN_PAGE_NULL,
        SCAN_PTE_NON_PRESENT,
        SCAN_PTE_UFFD_WP,
        SCAN_PAGE_LAZYFREE,
        SCAN_PAGE_RO,
    )
    while offset < nr:
        nr_ptes = 1 << order
        next_offset = False
        if (enabled_orders >> order) & 1:
            max_ptes_none = collapse_max_ptes_none(k, cc, None, order)
            occupied = sum(cc.mthp_present_ptes[offset : offset + nr_ptes])
            if _is_pmd_order(k, order):
                occupied += unmapped
            if occupied >= nr_ptes - max_ptes_none:
                ret = collapse_huge_page(mm, address + offset * k.PAGE_SIZE, referenced, unmapped, cc, order)
                if ret == SCAN_SUCCEED:
                    collapsed += nr_ptes
                    next_offset = True
                elif ret == SCAN_PTE_MAPPED_HUGEPAGE:
                    next_offset = True
                elif ret == SCAN_ALLOC_HUGE_PAGE_FAIL or ret in retry_smaller:
                    alloc_failed = alloc_failed or ret == SCAN_ALLOC_HUGE_PAGE_FAIL
                    last_result = ret
                else:
                    last_result = ret
                    break
        if not next_offset and order > KHUGEPAGED_MIN_MTHP_ORDER and enabled_orders & ((1 << order) - 1):
            order -= 1
            continue
        offset += nr_ptes
        order = max_order_from_offset(k, offset)
    if collapsed:
        return SCAN_SUCCEED
    if alloc_failed:
        return SCAN_ALLOC_HUGE_PAGE_FAIL
    return last_result


def hpage_collapse_scan_pmd(mm: MmStruct, vma: Vma, address: int, cc: CollapseControl) -> tuple[int, bool]:
    """Scan the PTEs of one PMD range and collapse it if worthwhile; (result, mmap_locked).

    Models: mm/khugepaged.c ``hpage_collapse_scan_pmd()`` (v7.2:
    ``collapse_scan_pmd()``): refuses a range with more than
    ``max_ptes_none`` none or zero-page PTEs, more than ``max_ptes_shared``
    PTEs of shared folios, a uffd-wp PTE, a non-anon page, a page with a
    reference beyond its mappings (a pin), no young PTE and (v6.12) no
    writable PTE.  v7.2 with mTHP orders enabled scans with no limit on none
    PTEs, records which PTEs are occupied and lets ``mthp_collapse()``
    choose the orders.  ``mmap_locked`` is False when a collapse was tried
    (the kernel dropped the mmap_lock to allocate).
    """
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    mem = k.memmap
    nr = int(arch.HPAGE_PMD_NR)
    result = find_pmd_or_thp_or_none(mm, address)
    if result != SCAN_SUCCEED:
        return result, True
    if k.oneplus:
        # OnePlus blocks are PTE-mapped folios to khugepaged once split.
        from .cont_pte_hugepage import split_cont_pte_range

        split_cont_pte_range(vma, address, address + int(arch.PMD_SIZE))
    enabled_orders = collapse_possible_orders(vma, cc) if k.khugepaged_mthp else 1 << k.PMD_ORDER
    max_ptes_shared = collapse_max_ptes_shared(k, cc, k.PMD_ORDER)
    max_ptes_swap = collapse_max_ptes_swap(k, cc, k.PMD_ORDER)
    max_ptes_none = collapse_max_ptes_none(k, cc, vma, k.PMD_ORDER)
    if enabled_orders != 1 << k.PMD_ORDER:
        max_ptes_none = nr - 1  # KHUGEPAGED_MAX_PTES_LIMIT: the bitmap decides per order
    cc.mthp_present_ptes = [False] * nr
    none_or_zero = shared = referenced = unmapped = 0
    writable = False
    ptep = int(mm.space.pte_ptr(address))
    result = SCAN_SUCCEED
    for i in range(nr):
        addr = address + i * k.PAGE_SIZE
        pteval = int(arch.ptep_get(ptep + i))
        if pte_none_or_zero(k, pteval):
            none_or_zero += 1
            if none_or_zero > max_ptes_none:
                k.counters.inc(THP_SCAN_EXCEED_NONE_PTE, 1)
                if k.khugepaged_mthp:
                    k.count_mthp_stat(k.PMD_ORDER, MTHP_COLLAPSE_EXCEED_NONE, 1)
                result = SCAN_EXCEED_NONE_PTE
                break
            continue
        if not arch.pte_present(pteval):
            # A swap entry: swapped in before the collapse, up to max_ptes_swap.
            unmapped += 1
            if unmapped > max_ptes_swap:
                k.counters.inc(THP_SCAN_EXCEED_SWAP_PTE, 1)
                if k.khugepaged_mthp:
                    k.count_mthp_stat(k.PMD_ORDER, MTHP_COLLAPSE_EXCEED_SWAP, 1)
                result = SCAN_EXCEED_SWAP_PTE
                break
            continue
        if arch.pte_uffd_wp(pteval):
            result = SCAN_PTE_UFFD_WP
            break
        if arch.pte_write(pteval):
            writable = True
        folio = int(vm_normal_folio(vma, addr, pteval))
        if folio < 0:
            result = SCAN_PAGE_NULL
            break
        if (
            k.khugepaged_lazyfree_skip
            and cc.is_khugepaged
            and _folio_test_lazyfree(mem, folio)
            and not arch.pte_dirty(pteval)
        ):
            result = SCAN_PAGE_LAZYFREE
            break
        if not folio_test_anon(mem, folio):
            result = SCAN_PAGE_ANON
            break
        if folio_likely_mapped_shared(mem, folio):
            shared += 1
            if cc.is_khugepaged and shared > max_ptes_shared:
                k.counters.inc(THP_SCAN_EXCEED_SHARE_PTE, 1)
                if k.khugepaged_mthp:
                    k.count_mthp_stat(k.PMD_ORDER, MTHP_COLLAPSE_EXCEED_SHARED, 1)
                result = SCAN_EXCEED_SHARED_PTE
                break
        cc.mthp_present_ptes[i] = True
        if not is_refcount_suitable(mem, folio):
            result = SCAN_PAGE_COUNT
            break
        if cc.is_khugepaged and arch.pte_young(pteval):
            referenced += 1
    else:
        if not writable and not k.khugepaged_ro_collapse:
            result = SCAN_PAGE_RO
        elif cc.is_khugepaged and (not referenced or (unmapped and referenced < nr // 2)):
            result = SCAN_LACK_REFERENCED_PAGE
    pte_unmap_unlock(mm, ptep)
    if result != SCAN_SUCCEED:
        return result, True
    if k.khugepaged_mthp:
        return mthp_collapse(mm, address, referenced, unmapped, cc, enabled_orders), False
    return collapse_huge_page(mm, address, referenced, unmapped, cc, k.PMD_ORDER), False


def _next_mm(k: Kernel, mm: MmStruct | None) -> MmStruct | None:
    """The mm after ``mm`` in the scan list (``kernel.mms``), None past the last one."""
    mms = k.mms
    if mm is None:
        return mms[0] if mms else None
    for i, m in enumerate(mms):
        if m is mm:
            return mms[i + 1] if i + 1 < len(mms) else None
    return mms[0] if mms else None  # mm left the list (exited): start over


def khugepaged_scan_mm_slot(k: Kernel, pages: int, cc: CollapseControl) -> tuple[int, int]:
    """Scan the current mm from the cursor until a collapse was tried or ``pages`` are used; (progress, result).

    Models: mm/khugepaged.c ``khugepaged_scan_mm_slot()`` (v7.2:
    ``collapse_scan_mm_slot()``): VMAs that may not be collapsed are
    skipped (one unit of progress each), the others are scanned one
    PMD-aligned range at a time (``HPAGE_PMD_NR`` units each); the scan
    stops after a range where a collapse was tried, and the cursor moves to
    the next mm when this one has no VMA left (a full scan counts when the
    last mm is done).
    """
    result = SCAN_FAIL
    if k.khugepaged_scan_mm is None or k.khugepaged_scan_mm not in k.mms:
        k.khugepaged_scan_mm = _next_mm(k, None)
        k.khugepaged_scan_address = 0
    mm: MmStruct | None = k.khugepaged_scan_mm
    if mm is None:
        return 0, result
    arch = k.arch
    progress = 1
    vma_left = False
    stopped = False
    if not hpage_collapse_test_exit_or_disable(mm):
        for vma in list(mm.vmas):
            if vma.vm_end <= k.khugepaged_scan_address:
                continue  # vma_iter_init(): from the cursor on
            if not collapse_possible_orders(vma, cc):
                progress += 1
                continue
            hstart = (vma.vm_start + arch.PMD_SIZE - 1) & ~(arch.PMD_SIZE - 1)
            hend = vma.vm_end & ~(arch.PMD_SIZE - 1)
            if k.khugepaged_scan_address > hend:
                progress += 1
                continue
            if k.khugepaged_scan_address < hstart:
                k.khugepaged_scan_address = hstart
            while k.khugepaged_scan_address < hend:
                result, mmap_locked = hpage_collapse_scan_pmd(mm, vma, k.khugepaged_scan_address, cc)
                if result == SCAN_SUCCEED:
                    k.khugepaged_pages_collapsed += 1
                k.khugepaged_scan_address += arch.PMD_SIZE
                progress += int(arch.HPAGE_PMD_NR)
                if not mmap_locked or progress >= pages:
                    stopped = True
                    break
            if stopped:
                vma_left = True
                break
    if not vma_left or hpage_collapse_test_exit_or_disable(mm):
        # The mm is done: on to the next one, or past the list's end.
        nxt = _next_mm(k, mm)
        if nxt is None:
            k.khugepaged_full_scans += 1
        k.khugepaged_scan_mm = nxt
        k.khugepaged_scan_address = 0
    return progress, result


def khugepaged_do_scan(k: Kernel, pages: int) -> int:
    """One wake-up of khugepaged: scan until ``pages`` units of progress or twice past the list head.

    Models: mm/khugepaged.c ``khugepaged_do_scan()``: an allocation failure
    ends the scan the second time (the kernel sleeps after the first; the
    model does not wait).  Returns the progress made.
    """
    cc = CollapseControl(is_khugepaged=True)
    progress = 0
    pass_through_head = 0
    wait = True
    result = SCAN_SUCCEED
    while True:
        if k.khugepaged_scan_mm is None:
            pass_through_head += 1
        if not k.mms or pass_through_head >= 2:
            break  # the kernel sets progress = pages to end the loop
        got, result = khugepaged_scan_mm_slot(k, pages - progress, cc)
        progress += got
        if progress >= pages:
            break
        if result == SCAN_ALLOC_HUGE_PAGE_FAIL:
            if not wait:
                break
            wait = False
    return progress


def madvise_collapse_errno(r: int) -> int:
    """Models: mm/khugepaged.c ``madvise_collapse_errno()``: the errno MADV_COLLAPSE returns for a result."""
    if r == SCAN_ALLOC_HUGE_PAGE_FAIL:
        return -ENOMEM
    if r == SCAN_EXCEED_NONE_PTE:
        return -EBUSY
    if r == SCAN_PAGE_COUNT:
        return -EAGAIN
    return -EINVAL


#: madvise_collapse(): the results after which it goes on with the next PMD range (v6.12;
#: SCAN_PAGE_RO is gone with it in v6.18).  Others end the call.
_COLLAPSE_GO_ON = (
    SCAN_PMD_NULL,
    SCAN_PTE_NON_PRESENT,
    SCAN_PTE_UFFD_WP,
    SCAN_PAGE_RO,
    SCAN_LACK_REFERENCED_PAGE,
    SCAN_PAGE_NULL,
    SCAN_PAGE_COUNT,
)


def madvise_collapse(vma: Vma, start: int, end: int) -> int:
    """MADV_COLLAPSE of ``[start, end)`` in ``vma``: collapse every whole PMD range now; 0 or -errno.

    Models: mm/khugepaged.c ``madvise_collapse()``: -EINVAL unless a PMD
    THP is allowed in the VMA whatever the sysfs settings say (not
    VM_NOHUGEPAGE); each PMD-aligned range inside ``[start, end)`` is
    scanned and collapsed with ``hpage_collapse_scan_pmd()`` as a
    non-khugepaged caller (no limit on none or shared PTEs, no young PTE
    needed; v6.12 still needs a writable one); a range already mapped by a
    PMD counts as done; 0 if every range is, else the errno of the last
    failure (``madvise_collapse_errno``: -ENOMEM for an allocation failure,
    -EBUSY, -EAGAIN for extra references, -EINVAL otherwise).  The PMD
    order only, also in v7.2.  The ranges of an unpopulated PMD (no PTE
    table) end the call with -EINVAL, as the kernel's ``SCAN_PMD_NONE``
    does.

    Context: mmap_lock held for read (the model has no locks).
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    if not thp_vma_allowable_orders(vma, 1 << k.PMD_ORDER, TVA_FORCED_COLLAPSE):
        return -EINVAL
    cc = CollapseControl(is_khugepaged=False)
    hstart = (start + arch.PMD_SIZE - 1) & ~(arch.PMD_SIZE - 1)
    hend = end & ~(arch.PMD_SIZE - 1)
    thps = 0
    last_fail = SCAN_FAIL
    addr = hstart
    while addr < hend:
        result, _ = hpage_collapse_scan_pmd(mm, vma, addr, cc)
        if result in (SCAN_SUCCEED, SCAN_PMD_MAPPED):
            thps += 1
        elif result in _COLLAPSE_GO_ON:
            last_fail = result
        else:
            last_fail = result
            break
        addr += arch.PMD_SIZE
    if thps == (hend - hstart) >> arch.PMD_SHIFT:
        return 0
    return madvise_collapse_errno(last_fail)
