"""Page faults, fork's page-table copy, and zap.

Models: mm/memory.c (Linux v6.12): ``handle_mm_fault``,
``do_anonymous_page``/``alloc_anon_folio``, ``do_fault`` (read, CoW and
shared file faults, ``finish_fault``, ``set_pte_range``), ``do_wp_page``,
``wp_page_copy``, ``copy_page_range`` -> ``copy_pte_range`` ->
``copy_present_ptes``, ``zap_pte_range`` -> ``zap_present_ptes`` ->
``zap_present_folio_ptes``.  (``folio_pte_batch`` of mm/internal.h is in
``internal.py``; the include/linux/mm.h helpers are in ``mm_h.py``.)

A ``pte_t *`` is an int (the descriptor's index in the machine's pool), a
``struct folio *`` the folio's head pfn (-1 for NULL).

Compiled (docs/core.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import cython

from ..counters import counter
from ..errors import KernelBug
from . import cont_pte_hugepage as chp

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import PTE_READ, count
    from ..hw.tables import AddressSpace, PtePool
    from . import huge_memory
    from .internal import (
        FPB_MERGE_WRITE,
        FPB_RESPECT_DIRTY,
        BoolPtr,
        FolioPtr,
        PtePtr,
        folio_pte_batch,
        folio_pte_batch_flags,
        pte_move_swp_offset,
        swap_pte_batch,
    )
    from .kernel import (
        MTHP_ANON_FAULT_ALLOC,
        MTHP_ANON_FAULT_FALLBACK,
        MTHP_SWPIN_FALLBACK,
        PAGE_COPY,
        PGFAULT,
        REF_GETS,
        Kernel,
    )
    from .memmap import (
        MemMap,
        PageAnonExclusive,
        PG_swapbacked,
        PG_swapcache,
        SetPageAnonExclusive,
        folio_mapcount,
        folio_mark_dirty,
        folio_ref_add,
        folio_ref_sub,
        folio_test_anon,
        folio_test_dirty,
    )
    from .mm_h import (
        can_change_pte_writable,
        maybe_mkwrite,
        mm_counter_file,
        pte_index,
        pte_offset_map_lock,
        pte_unmap_unlock,
        userfaultfd_armed,
        userfaultfd_huge_pmd_wp,
        userfaultfd_pte_wp,
        vm_normal_folio,
        vma_wants_manual_pte_write_upgrade,
    )
    from .mm_types import (
        FAULT_FLAG_UNSHARE,
        FAULT_FLAG_WRITE,
        MM_ANONPAGES,
        MM_SWAPENTS,
        VM_ACCESS_FLAGS,
        VM_FAULT_FALLBACK,
        VM_FAULT_NOPAGE,
        VM_FAULT_OOM,
        VM_FAULT_SIGBUS,
        VM_FAULT_SIGSEGV,
        VM_FAULT_UFFD_WP,
        VM_MAYSHARE,
        VM_SHARED,
        VM_UFFD_WP,
        VM_WRITE,
        MmStruct,
        RssVec,
        Vma,
        VmFault,
        is_cow_mapping,
        vma_is_anonymous,
        vma_mm,
    )
    from .mmu_gather import MmuGather
    from .rmap import (
        RMAP_EXCLUSIVE,
        anon_vma_prepare,
        folio_add_anon_rmap_ptes,
        folio_add_file_rmap_ptes,
        folio_add_new_anon_rmap,
        folio_dup_file_rmap_ptes,
        folio_remove_rmap_ptes,
        folio_try_dup_anon_rmap_ptes,
    )
    from .swapfile import (
        SWP_SYNCHRONOUS_IO,
        SwapInfo,
        _swap_count,
        folio_free_swap,
        free_swap_and_cache_nr,
        non_swapcache_batch,
        swap_cache_get_folio,
        swap_duplicate,
        swap_free_nr,
        swap_read_folio,
        swap_zeromap_batch,
        swapcache_clear,
        swapcache_prepare,
        swapin_folio,
        swapin_readahead,
        vm_swap_full,
    )

__all__ = [
    "map_anon_folio_pte_nopf",
    "handle_mm_fault",
    "do_anonymous_page",
    "alloc_anon_folio",
    "do_wp_page",
    "copy_page_range",
    "copy_pte_range",
    "copy_present_ptes",
    "copy_nonpresent_pte",
    "do_swap_page",
    "alloc_swap_folio",
    "zap_page_range_single",
    "unmap_vmas",
    "unmap_page_range",
    "zap_pte_range",
    "vma_needs_copy",
]

FAULT_ANON = cython.declare(i64, counter("fault.anon"))
FAULT_FILE = cython.declare(i64, counter("fault.file"))
FAULT_WP = cython.declare(i64, counter("fault.wp"))
FAULT_WP_REUSE = cython.declare(i64, counter("fault.wp_reuse"))
FAULT_WP_COPY = cython.declare(i64, counter("fault.wp_copy"))
FAULT_SPURIOUS = cython.declare(i64, counter("fault.spurious"))
FAULT_PTE_CHANGED = cython.declare(i64, counter("fault.pte_changed"))
FAULT_AROUND_PAGES = cython.declare(i64, counter("fault.around_pages"))
FAULT_NUMA = cython.declare(i64, counter("numa_hint_faults"))
FORK_CALLS = cython.declare(i64, counter("fork.calls"))
FORK_BATCH = cython.declare(i64, counter("fork.batch"))
FORK_PTES = cython.declare(i64, counter("fork.ptes"))
FORK_COPY_PAGE = cython.declare(i64, counter("fork.copy_page"))
FORK_LOCK_BREAK = cython.declare(
    i64,
    counter("fork.lock_break_point"),
)
FORK_AGAIN = cython.declare(i64, counter("fork.again"))
ZAP_CALLS = cython.declare(i64, counter("zap.calls"))
ZAP_BATCH = cython.declare(i64, counter("zap.batch"))
ZAP_FORCED_FLUSH = cython.declare(i64, counter("mmu_gather.forced_flush"))
ZAP_PTES = cython.declare(i64, counter("zap.ptes"))
PGMAJFAULT = cython.declare(i64, counter("pgmajfault"))
SWAP_CACHE_HIT = cython.declare(i64, counter("swap.cache_hit"))
SWAP_PTES_COPIED = cython.declare(i64, counter("swap.ptes_copied"))
SWAP_PTES_ZAPPED = cython.declare(i64, counter("swap.ptes_zapped"))

EAGAIN = cython.declare(i64, 11)
ENOMEM = cython.declare(i64, 12)


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------
@cython.ccall
@cython.exceptval(-1, check=True)
def handle_mm_fault(vma: Vma, address: i64, flags: i64) -> i64:
    """Resolve a fault at ``address``; returns VM_FAULT_* bits (0 = handled).

    Models: mm/memory.c ``handle_mm_fault()`` -> ``__handle_mm_fault()``.

    Context: mmap_lock held for read; called from the arch fault handler
    after it checked the VMA allows the access.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    count(k.counters, PGFAULT, 1)
    vmf: VmFault = VmFault(vma, address, flags)
    space: AddressSpace = mm.space
    pmd: u64 = space.pmd_peek(vmf.pmd_index)
    ret: i64
    if pmd == 0 and space.pte_table(vmf.pmd_index) < 0:
        if huge_memory.thp_vma_allowable_order(vma, k.PMD_ORDER) and huge_memory.thp_vma_suitable_order(
            vma, address, k.PMD_ORDER
        ):
            ret = huge_memory.create_huge_pmd(vmf)
            if not ret & VM_FAULT_FALLBACK:
                return ret
    elif pmd:
        if k.arch.pte_protnone(k.arch.pmd_pte(pmd)) and vma.vm_flags & VM_ACCESS_FLAGS:
            return huge_memory.do_huge_pmd_numa_page(vmf, pmd)
        if vmf.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE) and not k.arch.pte_write(k.arch.pmd_pte(pmd)):
            ret = wp_huge_pmd(vmf, pmd)
            if not ret & VM_FAULT_FALLBACK:
                return ret
        else:
            if not huge_memory.huge_pmd_set_accessed(vmf, pmd) and k.spurious_fault_pmd:
                # v6.19: fix_spurious_fault(vmf, PGTABLE_LEVEL_PMD)
                if vmf.flags & FAULT_FLAG_WRITE:
                    k.arch.flush_tlb_fix_spurious_fault_pmd(vma, vmf.address, vmf.pmd_index)
            return 0
    return handle_pte_fault(vmf)


@cython.ccall
@cython.exceptval(-1, check=True)
def wp_huge_pmd(vmf: VmFault, pmd: u64) -> i64:
    """A write (or unshare) fault on a write-protected huge PMD (anon VMAs only).

    Models: mm/memory.c ``wp_huge_pmd()`` (v6.12): a uffd-wp PMD goes to
    the monitor (``handle_userfault``; the model has no async mode),
    anything else to ``do_huge_pmd_wp_page()``.  ``pmd``: ``vmf->orig_pmd``.
    """
    if not vmf.flags & FAULT_FLAG_UNSHARE and userfaultfd_huge_pmd_wp(vmf.vma, pmd):
        return VM_FAULT_UFFD_WP
    return huge_memory.do_huge_pmd_wp_page(vmf, pmd)


@cython.ccall
@cython.exceptval(-1, check=True)
def handle_pte_fault(vmf: VmFault) -> i64:
    """Models: mm/memory.c ``handle_pte_fault()``."""
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    ptep: i64 = pte_offset_map_lock(mm, vmf.address, False)
    entry: u64 = 0
    if ptep >= 0:
        entry = arch.ptep_get_lockless(ptep)
    vmf.pte = ptep
    vmf.orig_pte = entry
    if entry == 0:
        if vma_is_anonymous(vma):
            return do_anonymous_page(vmf)
        return do_fault(vmf)
    if not arch.pte_present(entry):
        return do_swap_page(vmf)
    if arch.pte_protnone(entry) and vma.vm_flags & VM_ACCESS_FLAGS:
        return do_numa_page(vmf)
    # spin_lock(vmf->ptl): the entry read without the lock may have changed
    # (another thread's fault, a fold or unfold); re-read it under the lock.
    # (update_mmu_tlb() on a change is a no-op on both modelled arches.)
    if not arch.pte_same(arch.ptep_get(ptep), entry):
        pte_unmap_unlock(mm, ptep)
        return 0
    write: cython.bint = (vmf.flags & FAULT_FLAG_WRITE) != 0
    if vmf.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE):
        if not arch.pte_write(entry):
            return do_wp_page(vmf)
        if write:
            entry = arch.pte_mkdirty(entry)
    entry = arch.pte_mkyoung(entry)
    if arch.ptep_set_access_flags(vma, vmf.address, ptep, entry, write):
        arch.update_mmu_cache_range(vma, vmf.address, ptep, 1)
    else:
        count(k.counters, FAULT_SPURIOUS, 1)
        if write:
            arch.flush_tlb_fix_spurious_fault(vma, vmf.address, ptep)
    pte_unmap_unlock(mm, ptep)
    return 0


@cython.ccall
def numa_rebuild_single_mapping(vmf: VmFault, vma: Vma, addr: i64, ptep: i64, writable: cython.bint) -> None:
    """Models: mm/memory.c ``numa_rebuild_single_mapping()`` (v6.12)."""
    a: Pgtable = vma_mm(vma).kernel.arch
    old: u64 = a.ptep_modify_prot_start(vma, addr, ptep)
    pte: u64 = a.pte_mkyoung(a.pte_modify(old, vma.vm_page_prot))
    if writable:
        pte = a.pte_mkwrite(pte)
    a.ptep_modify_prot_commit(vma, addr, ptep, old, pte)
    a.update_mmu_cache_range(vma, addr, ptep, 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def do_numa_page(vmf: VmFault) -> i64:
    """Resolve a NUMA hinting fault: restore the folio's PTEs (no migration modelled).

    Models: mm/memory.c ``do_numa_page()`` (v6.12) taking the "no migration"
    path: every protnone PTE mapping the folio within the VMA and the page
    table is rebuilt with the VMA's protection (``numa_rebuild_large_mapping``),
    writable again where ``can_change_pte_writable`` allows.

    Context: PTL held (``vmf.pte`` locked by ``handle_pte_fault``).
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    count(k.counters, FAULT_NUMA, 1)
    ptep: i64 = vmf.pte
    old_pte: u64 = a.ptep_get(ptep)
    if not a.pte_same(old_pte, vmf.orig_pte):
        pte_unmap_unlock(mm, ptep)
        return 0
    upgrade: cython.bint = vma_wants_manual_pte_write_upgrade(vma)
    pte: u64 = a.pte_modify(old_pte, vma.vm_page_prot)
    writable: cython.bint = a.pte_write(pte) or (upgrade and can_change_pte_writable(vma, vmf.address, pte))
    folio: i64 = vm_normal_folio(vma, vmf.address, pte)
    mem: MemMap = k.memmap
    if folio < 0 or cython.cast(i64, mem.order[folio]) == 0:
        numa_rebuild_single_mapping(vmf, vma, vmf.address, ptep, writable)
        pte_unmap_unlock(mm, ptep)
        return 0
    # numa_rebuild_large_mapping(): the whole folio, within the VMA and the table.
    nr: i64 = a.pte_pfn(pte) - folio
    addr_start: i64 = vmf.address - (nr << k.page_shift)
    pt_start: i64 = vmf.address & ~(a.PMD_SIZE - 1)
    start: i64 = max(addr_start, pt_start, vma.vm_start)
    end: i64 = min(
        addr_start + ((cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])) << k.page_shift),
        pt_start + a.PMD_SIZE,
        vma.vm_end,
    )
    p: i64 = ptep - ((vmf.address - start) >> k.page_shift)
    addr: i64 = start
    ptent: u64
    w: cython.bint
    while addr != end:
        ptent = a.ptep_get(p)
        if a.pte_present(ptent) and a.pte_protnone(ptent):
            if cython.cast(i64, mem.head[a.pte_pfn(ptent)]) == folio:
                ptent = a.pte_modify(ptent, vma.vm_page_prot)
                w = a.pte_write(ptent) or (upgrade and can_change_pte_writable(vma, addr, ptent))
                numa_rebuild_single_mapping(vmf, vma, addr, p, w)
        p += 1
        addr += k.PAGE_SIZE
    pte_unmap_unlock(mm, ptep)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def pte_range_none(k: Kernel, ptep: i64, nr: i64) -> cython.bint:
    """Are all ``nr`` entries from ``ptep`` none?

    Models: mm/memory.c ``pte_range_none()``: ``ptep_get_lockless()`` of
    each entry in turn, stopping at the first one that is not none.
    """
    a: Pgtable = k.arch
    i: i64
    for i in range(nr):  # noqa: SIM110 - a C loop
        if not a.pte_none(a.ptep_get_lockless(ptep + i)):
            return False
    return True


@cython.ccall
@cython.exceptval(-1, check=True)
def alloc_anon_folio(vmf: VmFault) -> i64:
    """Allocate the largest enabled, suitable folio whose PTE range is empty.

    Models: mm/memory.c ``alloc_anon_folio()``: try the allowed orders from
    the highest; an order is skipped when its naturally aligned range leaves
    the VMA or has a PTE already; an allocation failure counts
    ``anon_fault_fallback`` and tries the next order; order 0 last, and
    only order 0 where a userfaultfd is armed.  Returns the folio, or -1.
    """
    vma: Vma = vmf.vma
    k: Kernel = vma_mm(vma).kernel
    # A uffd-armed VMA needs per-page fault fidelity for the uffd semantics.
    if userfaultfd_armed(vma):
        return k.folio_alloc(0, True)
    orders: i64 = huge_memory.thp_vma_allowable_orders(vma, (cython.cast(i64, 1) << k.PMD_ORDER) - 1)
    orders = huge_memory.thp_vma_suitable_orders(vma, vmf.address, orders)
    order: i64
    top: i64 = -1
    addr: i64
    base: i64
    folio: i64
    if orders and vmf.pte >= 0:
        base = vmf.pte & ~(k.arch.PTRS_PER_PTE - 1)
        order = k.PMD_ORDER
        while order > 0:
            if orders >> order & 1:
                addr = vmf.address & ~((k.PAGE_SIZE << order) - 1)
                if pte_range_none(k, base + pte_index(k, addr), cython.cast(i64, 1) << order):
                    top = order
                    break
            order -= 1
        order = top
        while order > 0:
            if orders >> order & 1:
                folio = k.folio_alloc(order, True)
                if folio >= 0:
                    return folio
                k.count_mthp_stat(order, MTHP_ANON_FAULT_FALLBACK, 1)
            order -= 1
    return k.folio_alloc(0, True)


@cython.ccall
@cython.exceptval(-1, check=True)
def do_anonymous_page(vmf: VmFault) -> i64:
    """Map a none PTE of anonymous memory.

    Models: mm/memory.c ``do_anonymous_page()``: a read maps the shared zero
    page; a write allocates a folio (``alloc_anon_folio``) and maps all of it
    with one ``set_ptes``.  The allocation runs without the PTL and may
    sleep: a preemption point (``k.yield_hook("do_anonymous_page")``, where
    another thread of the mm may fault on the same range: the fault holds
    only the per-VMA lock or the mmap_lock for read).  Then the PTL is
    taken again (``pte_offset_map_lock``: no table any more is a back-out
    too) and the range re-checked: ``vmf_pte_changed()`` for one page,
    ``pte_range_none()`` for a large folio; if another fault mapped it
    meanwhile the folio is released (``update_mmu_tlb``, a no-op on the
    modelled arches; counted in ``fault.pte_changed``) and the access
    retried.  Bug catalog ``fault_no_pte_recheck``: no re-check.

    Context: per-VMA lock or mmap_lock held for read.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    count(k.counters, FAULT_ANON, 1)
    if vma.vm_flags & VM_SHARED:
        return VM_FAULT_SIGSEGV
    ret: i64
    if k.oneplus:
        # OnePlus: "Try cont pte first" (create_huge_cont_pte()); on
        # VM_FAULT_FALLBACK a base page as below.
        ret = chp.do_huge_cont_pte_anonymous_page(vmf)
        if not ret & VM_FAULT_FALLBACK:
            return ret
    vmf.pte = pte_offset_map_lock(mm, vmf.address, True)
    entry: u64
    if not vmf.flags & FAULT_FLAG_WRITE:
        entry = arch.pte_mkspecial(arch.pfn_pte(k.zero_pfn, vma.vm_page_prot))
        if arch.ptep_get(vmf.pte) != 0:
            pte_unmap_unlock(mm, vmf.pte)
            return 0
        arch.set_pte_at(mm, vmf.address, vmf.pte, entry)
        arch.update_mmu_cache_range(vma, vmf.address, vmf.pte, 1)
        pte_unmap_unlock(mm, vmf.pte)
        return 0
    anon_vma_prepare(vma)
    folio: i64 = alloc_anon_folio(vmf)
    if folio < 0:
        return VM_FAULT_OOM
    mem: MemMap = k.memmap
    nr_pages: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    addr: i64 = vmf.address & ~((k.PAGE_SIZE * nr_pages) - 1)
    entry = arch.pfn_pte(folio, vma.vm_page_prot)
    if vma.vm_flags & VM_WRITE:
        entry = arch.pte_mkwrite(arch.pte_mkdirty(entry))
    pte_unmap_unlock(mm, vmf.pte)
    if k.yield_hook is not None:
        # The allocation may sleep with only the VMA (or mmap) read lock held.
        k.yield_hook("do_anonymous_page", mm, addr)
    ptep: i64 = pte_offset_map_lock(mm, addr, False)
    vmf.pte = ptep
    if ptep < 0:
        count(k.counters, FAULT_PTE_CHANGED, 1)
        k.folio_put(folio, 1)
        return 0
    if not k.bug("fault_no_pte_recheck"):
        if nr_pages == 1:
            if arch.ptep_get(ptep) != 0:  # vmf_pte_changed()
                count(k.counters, FAULT_PTE_CHANGED, 1)
                k.folio_put(folio, 1)
                pte_unmap_unlock(mm, ptep)
                return 0
        elif not pte_range_none(k, ptep, nr_pages):
            count(k.counters, FAULT_PTE_CHANGED, 1)
            k.folio_put(folio, 1)
            pte_unmap_unlock(mm, ptep)
            return 0
    folio_ref_add(mem, folio, nr_pages - 1)
    count(k.counters, REF_GETS, 1)
    mm.add_mm_counter(MM_ANONPAGES, nr_pages)
    k.count_mthp_stat(cython.cast(i64, mem.order[folio]), MTHP_ANON_FAULT_ALLOC, 1)
    folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE, False)
    arch.set_ptes(mm, addr, ptep, entry, nr_pages)
    arch.update_mmu_cache_range(vma, addr, ptep, nr_pages)
    pte_unmap_unlock(mm, ptep)
    return 0


@cython.ccall
def map_anon_folio_pte_nopf(folio: i64, ptep: i64, vma: Vma, addr: i64, uffd_wp: cython.bint) -> None:
    """Map all of a new anon folio with one ``set_ptes``, counting nothing.

    Models: mm/memory.c ``map_anon_folio_pte_nopf()`` (v7.2, where
    ``do_anonymous_page()`` and khugepaged's mTHP collapse share it; v6.12's
    ``do_anonymous_page()`` above open-codes the same steps): young,
    writable and dirty where the VMA is writable, one reference per page,
    an exclusive anon rmap; on arm64 ``set_ptes`` folds every whole
    aligned contiguous block.

    Context: the PTL held; ``ptep`` is the entry for ``addr``.
    """
    k: Kernel = vma_mm(vma).kernel
    arch: Pgtable = k.arch
    mem: MemMap = k.memmap
    nr_pages: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    entry: u64 = arch.pte_mkyoung(arch.pfn_pte(folio, vma.vm_page_prot))
    if vma.vm_flags & VM_WRITE:
        entry = arch.pte_mkwrite(arch.pte_mkdirty(entry))
    if uffd_wp:
        entry = arch.pte_mkuffd_wp(entry)
    folio_ref_add(mem, folio, nr_pages - 1)
    count(k.counters, REF_GETS, 1)
    folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE, False)
    arch.set_ptes(vma_mm(vma), addr, ptep, entry, nr_pages)
    arch.update_mmu_cache_range(vma, addr, ptep, nr_pages)


# -- swap-in (mm/memory.c do_swap_page and friends) ---------------------------
@cython.cfunc
@cython.exceptval(-1, check=True)
def _highest_order(orders: i64) -> i64:
    """include/linux/huge_mm.h ``highest_order()``: the top set bit, -1 for none."""
    order: i64 = -1
    while orders:
        orders >>= 1
        order += 1
    return order


@cython.ccall
@cython.exceptval(-1, check=True)
def thp_swap_suitable_orders(k: Kernel, swp_offset: i64, addr: i64, orders: i64) -> i64:
    """Drop the orders (from the top) whose block does not line up with the swap offset.

    Models: mm/memory.c ``thp_swap_suitable_orders()``: a large folio is
    swapped in only where its first slot is as aligned as its address
    (``(addr >> PAGE_SHIFT) % nr == offset % nr``), as it was swapped out.
    """
    order: i64 = _highest_order(orders)
    nr: i64
    while orders:
        nr = cython.cast(i64, 1) << order
        if (addr >> k.page_shift) % nr == swp_offset % nr:
            break
        orders &= ~(cython.cast(i64, 1) << order)  # next_order()
        order = _highest_order(orders)
    return orders


@cython.ccall
@cython.exceptval(-1, check=True)
def can_swapin_thp(vmf: VmFault, ptep: i64, nr_pages: i64) -> cython.bint:
    """Are the ``nr_pages`` PTEs from ``ptep`` contiguous swap entries of one state?

    Models: mm/memory.c ``can_swapin_thp()`` (v6.12): the first is the
    fault's entry moved back to the block's start, the rest follow it
    (``swap_pte_batch``), all in or all out of the zeromap, none in the
    swap cache (``non_swapcache_batch``).
    """
    k: Kernel = vma_mm(vmf.vma).kernel
    a: Pgtable = k.arch
    si: SwapInfo = k.swap
    addr: i64 = vmf.address & ~((nr_pages << k.page_shift) - 1)
    idx: i64 = (vmf.address - addr) >> k.page_shift
    pte: u64 = a.ptep_get(ptep)
    if pte != pte_move_swp_offset(a, vmf.orig_pte, -idx):
        return False
    if swap_pte_batch(a, ptep, nr_pages, pte) != nr_pages:
        return False
    offset: i64 = a.swp_offset(pte)
    if swap_zeromap_batch(si, offset, nr_pages) != nr_pages:
        return False
    return non_swapcache_batch(si, offset, nr_pages) == nr_pages


@cython.ccall
@cython.exceptval(-1, check=True)
def alloc_swap_folio(vmf: VmFault) -> i64:
    """The folio a swap-in that bypasses the swap cache reads into: large where it can.

    Models: mm/memory.c ``alloc_swap_folio()`` (v6.12, CONFIG_THP_SWAP,
    zswap never enabled): the enabled anon orders suitable for the VMA
    and for the swap offset's alignment, from the highest, the first whose
    aligned range is all swap entries ``can_swapin_thp()`` accepts; a
    failed allocation counts ``swpin_fallback`` (v6.13's stat) and tries
    the next; order 0 last (``__alloc_swap_folio``), and only order 0
    where a userfaultfd is armed.  Returns the folio (not zeroed), or -1.
    """
    vma: Vma = vmf.vma
    k: Kernel = vma_mm(vma).kernel
    a: Pgtable = k.arch
    if userfaultfd_armed(vma):
        return k.folio_alloc(0, False)
    orders: i64 = huge_memory.thp_vma_allowable_orders(vma, (cython.cast(i64, 1) << k.PMD_ORDER) - 1)
    orders = huge_memory.thp_vma_suitable_orders(vma, vmf.address, orders)
    orders = thp_swap_suitable_orders(k, a.swp_offset(vmf.orig_pte), vmf.address, orders)
    order: i64
    addr: i64
    base: i64
    folio: i64
    if orders:
        base = pte_offset_map_lock(vma_mm(vma), vmf.address & ~(a.PMD_SIZE - 1), False)
        if base >= 0:
            order = _highest_order(orders)
            while orders:
                addr = vmf.address & ~((k.PAGE_SIZE << order) - 1)
                if can_swapin_thp(vmf, base + pte_index(k, addr), cython.cast(i64, 1) << order):
                    break
                orders &= ~(cython.cast(i64, 1) << order)
                order = _highest_order(orders)
            pte_unmap_unlock(vma_mm(vma), base)
            while orders:
                folio = k.folio_alloc(order, False)
                if folio >= 0:
                    return folio
                k.count_mthp_stat(order, MTHP_SWPIN_FALLBACK, 1)
                orders &= ~(cython.cast(i64, 1) << order)
                order = _highest_order(orders)
    return k.folio_alloc(0, False)


@cython.ccall
@cython.exceptval(-1, check=True)
def should_try_to_free_swap(
    k: Kernel, folio: i64, vma: Vma, fault_flags: i64, extra_refs: i64
) -> cython.bint:
    """Models: mm/memory.c ``should_try_to_free_swap()`` (no mlock, no memcg limits):
    a swap-cache folio when swap is more than half full, or for a write
    fault when the swap cache and ``extra_refs`` (v6.12: the fault's one;
    v7.1: the new mappings') hold the only references.  With
    ``swapin_via_swapcache`` (v7.1) always on a ``SWP_SYNCHRONOUS_IO``
    device."""
    mem: MemMap = k.memmap
    si: SwapInfo = k.swap
    if not cython.cast(i64, mem.flags[folio]) & PG_swapcache:
        return False
    if k.swapin_via_swapcache and si.flags & SWP_SYNCHRONOUS_IO:
        return True
    if vm_swap_full(si):
        return True
    return (fault_flags & FAULT_FLAG_WRITE) != 0 and cython.cast(i64, mem.refcount[folio]) == extra_refs + (
        cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    )


@cython.ccall
@cython.exceptval(-1, check=True)
def do_swap_page(vmf: VmFault) -> i64:
    """Fault in a swapped-out page: map the folio with ``nr`` PTEs at once.

    Models: mm/memory.c ``do_swap_page()`` (v6.12), genuine swap entries
    only (no migration, device or marker entries in the model):

    - a folio the swap cache holds is used as it is (``swap.cache_hit``);
    - on a ``SWP_SYNCHRONOUS_IO`` device with a swap count of 1 the swap
      cache is bypassed: ``alloc_swap_folio()`` (large where the mTHP size
      is enabled and the range is contiguous swap entries), the slots
      claimed with ``swapcache_prepare()`` while the folio is read and
      released (``swapcache_clear()``) once it is mapped;
    - otherwise ``swapin_readahead()`` reads one order-0 folio into the
      swap cache;
    - with ``swapin_via_swapcache`` (v7.1) a synchronous device always
      allocates with ``alloc_swap_folio()`` and reads through the swap
      cache (``swapin_folio()``); the swap counts are dropped after the
      PTEs are set and the cache is let go of where no swap PTE needs it.

    The folio's slots are released (``swap_free_nr``), the swap cache let
    go of where ``should_try_to_free_swap()``; a folio certainly exclusive
    (fresh, an exclusive swap PTE, or only one reference) is mapped
    writable where the VMA is, dirty on a write fault, with
    ``RMAP_EXCLUSIVE``; the ``nr`` PTEs are written with one ``set_ptes``
    (which folds a whole aligned block on arm64).  A write fault still
    pending goes on to ``do_wp_page()``.  Under ``policy="oneplus"`` the
    design's block path (``do_swap_cont_pte_page()``, mm/cont_pte_hugepage.py)
    is tried first and this one runs where it falls back.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    ptep: i64 = vmf.pte
    # pte_unmap_same(): the entry read without the lock must still be there.
    if not a.pte_same(a.ptep_get(ptep), vmf.orig_pte):
        pte_unmap_unlock(mm, ptep)
        return 0
    pte_unmap_unlock(mm, ptep)
    if k.swap is None or a.swp_type(vmf.orig_pte) != 0:
        raise KernelBug("print_bad_pte", "swap entry of no swap device", vmf.address, [vmf.orig_pte])
    si: SwapInfo = k.swap
    offset: i64 = a.swp_offset(vmf.orig_pte)
    ret: i64 = 0
    need_clear_cache: cython.bint = False
    nr_pages: i64 = 1
    nr: i64
    page: i64 = -1
    folio: i64 = swap_cache_get_folio(k, si, offset)
    swapcache: i64 = folio
    if k.oneplus:
        # OnePlus: a block swapped out whole comes back whole (skip swapcache,
        # read_swap_cache_thp(), or mapped whole again from the swap cache).
        ret = chp.do_swap_cont_pte_page(vmf, folio)
        if ret >= 0:
            return ret
        ret = 0
    if folio >= 0:
        page = cython.cast(i64, si.cache[offset])
        count(k.counters, SWAP_CACHE_HIT, 1)
    else:
        if si.flags & SWP_SYNCHRONOUS_IO and k.swapin_via_swapcache:
            # v7.1: always alloc_swap_folio() and through the swap cache.
            folio = alloc_swap_folio(vmf)
            if folio >= 0:
                nr = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
                swapcache = swapin_folio(k, si, folio, offset & ~(nr - 1))
        elif si.flags & SWP_SYNCHRONOUS_IO and _swap_count(si, offset) == 1:
            # skip swapcache
            folio = alloc_swap_folio(vmf)
            if folio >= 0:
                mem.flags[folio] |= PG_swapbacked
                nr_pages = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
                if nr_pages > 1:
                    offset = offset & ~(nr_pages - 1)
                if swapcache_prepare(si, offset, nr_pages):
                    raise KernelBug(
                        "swapcache_prepare", "a sequential swap-in found its slots claimed", vmf.address
                    )
                need_clear_cache = True
                swap_read_folio(k, si, folio, offset)
        else:
            folio = swapin_readahead(k, si, offset)
            swapcache = folio
        if folio < 0:
            return VM_FAULT_OOM
        count(k.counters, PGMAJFAULT, 1)  # VM_FAULT_MAJOR
        # folio_file_page(folio, swp_offset(entry)) of the fault's entry.
        page = folio + (
            a.swp_offset(vmf.orig_pte) & ((cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])) - 1)
        )
    ptep = pte_offset_map_lock(mm, vmf.address, False)
    vmf.pte = ptep
    if ptep < 0 or not a.pte_same(a.ptep_get(ptep), vmf.orig_pte):
        # out_nomap: somebody else faulted it in.
        if ptep >= 0:
            pte_unmap_unlock(mm, ptep)
        k.folio_put(folio, 1)
        if need_clear_cache:
            swapcache_clear(si, offset, nr_pages)
        return ret
    page_idx: i64 = 0
    address: i64 = vmf.address
    folio_ptep: i64 = ptep
    nr = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    idx: i64
    folio_start: i64
    entry_off: i64 = a.swp_offset(vmf.orig_pte)
    if nr > 1 and swapcache < 0:
        # Allocated large folios for SWP_SYNCHRONOUS_IO.
        folio_start = vmf.address & ~((nr << k.page_shift) - 1)
        idx = (vmf.address - folio_start) >> k.page_shift
        folio_ptep = ptep - idx
        if (
            a.ptep_get(folio_ptep) != pte_move_swp_offset(a, vmf.orig_pte, -idx)
            or swap_pte_batch(a, folio_ptep, nr, a.ptep_get(folio_ptep)) != nr
        ):
            pte_unmap_unlock(mm, ptep)
            k.folio_put(folio, 1)
            swapcache_clear(si, offset, nr_pages)
            return ret
        page_idx = idx
        address = folio_start
        entry_off = offset
        page = folio  # folio_file_page() of the aligned-down entry
    elif nr > 1:
        # A large folio in the swap cache: map all of it if its PTEs are all there.
        idx = page - folio
        folio_start = address - (idx << k.page_shift)
        if (
            folio_start >= max(address & ~(a.PMD_SIZE - 1), vma.vm_start)
            and folio_start + (nr << k.page_shift)
            <= min((address & ~(a.PMD_SIZE - 1)) + a.PMD_SIZE, vma.vm_end)
            and a.ptep_get(ptep - idx) == pte_move_swp_offset(a, vmf.orig_pte, -idx)
            and swap_pte_batch(a, ptep - idx, nr, a.ptep_get(ptep - idx)) == nr
        ):
            page_idx = idx
            address = folio_start
            folio_ptep = ptep - idx
            nr_pages = nr
            entry_off = cython.cast(i64, si.folio_swap[folio])
            page = folio
    # check_folio:
    if folio_test_anon(mem, folio) and PageAnonExclusive(mem, page):
        raise KernelBug(
            "BUG_ON", "a swap PTE points at a PageAnonExclusive page", vmf.address, [vmf.orig_pte]
        )
    exclusive: cython.bint = a.pte_swp_exclusive(vmf.orig_pte)
    if swapcache < 0:
        exclusive = True  # a fresh folio never exposed to the swap cache
    if not k.swapin_via_swapcache:
        swap_free_nr(si, entry_off, nr_pages)
        if should_try_to_free_swap(k, folio, vma, vmf.flags, 1):
            folio_free_swap(k, si, folio)
    mm.add_mm_counter(MM_ANONPAGES, nr_pages)
    mm.add_mm_counter(MM_SWAPENTS, -nr_pages)
    pte: u64 = a.pfn_pte(page, vma.vm_page_prot)
    if a.pte_swp_uffd_wp(vmf.orig_pte):
        pte = a.pte_mkuffd_wp(pte)
    rmap_flags: i64 = 0
    if exclusive or cython.cast(i64, mem.refcount[folio]) == 1:
        if vma.vm_flags & VM_WRITE and not userfaultfd_pte_wp(vma, pte):
            pte = a.pte_mkwrite(pte)
            if vmf.flags & FAULT_FLAG_WRITE:
                pte = a.pte_mkdirty(pte)
                vmf.flags &= ~FAULT_FLAG_WRITE
        rmap_flags = RMAP_EXCLUSIVE
    folio_ref_add(mem, folio, nr_pages - 1)
    count(k.counters, REF_GETS, 1)
    vmf.orig_pte = a.pte_advance_pfn(pte, page_idx)
    if not folio_test_anon(mem, folio):
        anon_vma_prepare(vma)
        folio_add_new_anon_rmap(folio, vma, address, rmap_flags, False)
    else:
        folio_add_anon_rmap_ptes(folio, page, nr_pages, vma, address, rmap_flags)
    a.set_ptes(mm, address, folio_ptep, pte, nr_pages)
    if k.swapin_via_swapcache:
        # v7.1: folio_put_swap() after the PTEs are set, then the cache goes if it can.
        swap_free_nr(si, entry_off, nr_pages)
        if should_try_to_free_swap(k, folio, vma, vmf.flags, nr_pages):
            folio_free_swap(k, si, folio)
    if vmf.flags & FAULT_FLAG_WRITE:
        ret = do_wp_page(vmf)
        if need_clear_cache:
            swapcache_clear(si, offset, nr_pages)
        return ret
    a.update_mmu_cache_range(vma, address, folio_ptep, nr_pages)
    pte_unmap_unlock(mm, ptep)
    if need_clear_cache:
        swapcache_clear(si, offset, nr_pages)
    return ret


# -- file faults (mm/memory.c do_fault and friends) ---------------------------
@cython.ccall
def set_pte_range(vmf: VmFault, folio: i64, page: i64, nr: i64, addr: i64) -> None:
    """Map ``nr`` pages of ``folio`` from ``page`` at ``addr``.

    Models: mm/memory.c ``set_pte_range()``.  With ``fault_map_dirty``
    (6.16) a read fault that maps a dirty folio writable (a shared mapping
    without write-notify, e.g. tmpfs) maps it dirty.

    Context: PTL held; ``vmf.pte`` points at the entry for ``addr``.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    write: cython.bint = (vmf.flags & FAULT_FLAG_WRITE) != 0
    entry: u64 = arch.pfn_pte(page, vma.vm_page_prot)
    if write:
        entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
    elif k.fault_map_dirty and arch.pte_write(entry) and folio_test_dirty(k.memmap, folio):
        entry = arch.pte_mkdirty(entry)
    if write and not vma.vm_flags & VM_SHARED:
        if nr != 1:
            raise KernelBug("VM_BUG_ON_FOLIO", "CoW folio mapped with nr != 1", addr)
        folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE, False)
    else:
        folio_add_file_rmap_ptes(folio, page, nr, vma)
    arch.set_ptes(mm, addr, vmf.pte, entry, nr)
    arch.update_mmu_cache_range(vma, addr, vmf.pte, nr)


@cython.ccall
@cython.exceptval(-1, check=True)
def do_fault(vmf: VmFault) -> i64:
    """Models: mm/memory.c ``do_fault()``."""
    vma: Vma = vmf.vma
    count(vma_mm(vma).kernel.counters, FAULT_FILE, 1)
    if not vmf.flags & FAULT_FLAG_WRITE:
        return do_read_fault(vmf)
    if not vma.vm_flags & VM_SHARED:
        return do_cow_fault(vmf)
    return do_shared_fault(vmf)


@cython.ccall
@cython.exceptval(-1, check=True)
def do_fault_around(vmf: VmFault) -> i64:
    """Map the page-cache folios around the fault (``filemap_map_pages``).

    Models: mm/memory.c ``do_fault_around()`` + mm/filemap.c
    ``filemap_map_pages()``/``filemap_map_folio_range()``: within the
    ``fault_around_bytes`` window (clipped to the VMA and the PMD) map every
    run of none PTEs whose pages are cached, one ``set_pte_range`` per run.
    Returns VM_FAULT_NOPAGE if the faulting page got mapped.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    f = vma.vm_file
    mem: MemMap = k.memmap
    ps: i64 = k.PAGE_SIZE
    nr_win: i64 = max(1, k.fault_around_bytes // ps)
    pidx: i64 = pte_index(k, vmf.address)
    from_pte: i64 = max(pidx & ~(nr_win - 1), pidx - ((vmf.address - vma.vm_start) >> k.page_shift))
    pmd_base: i64 = vmf.address & ~(k.arch.PMD_SIZE - 1)
    to_pte: i64 = min(
        (pidx & ~(nr_win - 1)) + nr_win,
        k.arch.PTRS_PER_PTE,
        pidx + ((vma.vm_end - vmf.address) >> k.page_shift),
    )
    ptep0: i64 = pte_offset_map_lock(mm, vmf.address, True)
    table: i64 = ptep0 - pidx
    pool: PtePool = k.arch.pool
    ret: i64 = 0
    i: i64 = from_pte
    addr: i64
    pgoff: i64
    folio: i64
    first_idx: i64
    end_i: i64
    j: i64
    run_start: i64
    nr: i64
    a: i64
    page: i64
    sub: VmFault
    while i < to_pte:
        addr = pmd_base + (i << k.page_shift)
        pgoff = vma.linear_page_index(addr)
        folio = f.find_folio(pgoff)
        if folio < 0:
            i += 1
            continue
        # Pages of this folio inside the window, mapped as runs of none PTEs.
        first_idx = cython.cast(i64, mem.index[folio])
        end_i = min(
            to_pte, i + (first_idx + (cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])) - pgoff)
        )
        j = i
        while j < end_i:
            if pool.peek(table + j) != 0:
                j += 1
                continue
            run_start = j
            while j < end_i and pool.peek(table + j) == 0:
                j += 1
            nr = j - run_start
            a = pmd_base + (run_start << k.page_shift)
            page = folio + (vma.linear_page_index(a) - first_idx)
            folio_ref_add(mem, folio, nr)
            count(k.counters, REF_GETS, 1)
            vmf.pte = table + run_start
            sub = VmFault(vma, vmf.address, 0)
            sub.pte = vmf.pte
            set_pte_range(sub, folio, page, nr, a)
            mm.add_mm_counter(mm_counter_file(folio, k), nr)
            count(k.counters, FAULT_AROUND_PAGES, nr)
            if a <= vmf.address < a + nr * k.PAGE_SIZE:
                ret = VM_FAULT_NOPAGE
        i = end_i
    count(k.counters, PTE_READ, to_pte - from_pte)
    pte_unmap_unlock(mm, ptep0)
    return ret


@cython.cfunc
@cython.exceptval(-1, check=True)
def _do_fault_page(vmf: VmFault) -> i64:
    """``__do_fault()``: the page-cache folio for the fault (read in).

    The page is ``folio + (linear_page_index(address) - folio's index)``.
    When there is none, the VM_FAULT_* code negated: -VM_FAULT_SIGBUS for
    a page at or beyond the end of the file (``filemap_fault()``: ``index
    >= DIV_ROUND_UP(i_size, PAGE_SIZE)``; ``shmem_fault()`` likewise),
    -VM_FAULT_OOM when it cannot be read in.
    """
    vma: Vma = vmf.vma
    pgoff: i64 = vma.linear_page_index(vmf.address)
    if pgoff >= vma.vm_file.nr_pages:
        return -VM_FAULT_SIGBUS
    folio: i64 = vma.vm_file.get_folio(pgoff)
    if folio < 0:
        return -VM_FAULT_OOM
    return folio


@cython.cfunc
@cython.exceptval(-1, check=True)
def _fault_page(vmf: VmFault, folio: i64) -> i64:
    """The page of ``folio`` the fault address maps (``vmf->page``)."""
    vma: Vma = vmf.vma
    return folio + (vma.linear_page_index(vmf.address) - int(vma_mm(vma).kernel.memmap.index[folio]))


@cython.ccall
@cython.exceptval(-1, check=True)
def finish_fault(vmf: VmFault, folio: i64, page: i64) -> i64:
    """Map the page (or the whole large folio) a fault produced.

    Models: mm/memory.c ``finish_fault()``.  v6.12 maps a whole large folio
    for anonymous shmem only, one page otherwise.  With
    ``finish_fault_whole_folio`` (6.18) every file folio is mapped whole,
    unless a non-shmem file's folio reaches past the end of the file
    (``needs_fallback``: SIGBUS beyond i_size) or a userfaultfd is armed,
    and falls back to the one page when part of the range is mapped
    already (v6.12 returns VM_FAULT_NOPAGE there).  Either way the folio
    must lie inside the VMA and the page table.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    mem: MemMap = k.memmap
    is_cow: cython.bint = (vmf.flags & FAULT_FLAG_WRITE) != 0 and not vma.vm_flags & VM_SHARED
    nr_pages: i64 = 1
    addr: i64 = vmf.address
    f = vma.vm_file
    fnr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    pgoff: i64
    idx: i64
    start: i64
    end: i64
    pmd_start: i64
    whole: cython.bint = False
    if not is_cow and f is not None and fnr > 1:
        if k.finish_fault_whole_folio:
            # needs_fallback: a disk file's folio must not be mapped past i_size.
            whole = not userfaultfd_armed(vma) and (
                f.shmem
                or (f.size + k.PAGE_SIZE - 1) // k.PAGE_SIZE >= cython.cast(i64, mem.index[folio]) + fnr
            )
        else:
            whole = f.anon_shmem
    if whole:
        pgoff = vma.linear_page_index(vmf.address)
        idx = pgoff - cython.cast(i64, mem.index[folio])
        start = vmf.address - idx * k.PAGE_SIZE
        end = start + fnr * k.PAGE_SIZE
        pmd_start = vmf.address & ~(arch.PMD_SIZE - 1)
        if (
            start >= vma.vm_start
            and end <= vma.vm_end
            and start >= pmd_start
            and end <= pmd_start + arch.PMD_SIZE
        ):
            nr_pages = fnr
            addr = start
            page = folio
    ptep: i64 = pte_offset_map_lock(mm, addr, True)
    if nr_pages > 1 and k.finish_fault_whole_folio and not pte_range_none(k, ptep, nr_pages):
        # needs_fallback: part of the range is mapped; map the one page.
        pte_unmap_unlock(mm, ptep)
        nr_pages = 1
        addr = vmf.address
        page = folio + (vma.linear_page_index(vmf.address) - cython.cast(i64, mem.index[folio]))
        ptep = pte_offset_map_lock(mm, addr, True)
    if (nr_pages == 1 and arch.ptep_get(ptep) != 0) or (
        nr_pages > 1 and not pte_range_none(k, ptep, nr_pages)
    ):
        pte_unmap_unlock(mm, ptep)
        return VM_FAULT_NOPAGE
    if nr_pages > 1:
        folio_ref_add(mem, folio, nr_pages - 1)
        count(k.counters, REF_GETS, 1)
    vmf.pte = ptep
    set_pte_range(vmf, folio, page, nr_pages, addr)
    mm.add_mm_counter(MM_ANONPAGES if is_cow else mm_counter_file(folio, k), nr_pages)
    pte_unmap_unlock(mm, ptep)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def do_read_fault(vmf: VmFault) -> i64:
    """Models: mm/memory.c ``do_read_fault()``: fault-around first."""
    k: Kernel = vma_mm(vmf.vma).kernel
    if k.fault_around_bytes >> k.page_shift > 1:
        if do_fault_around(vmf):
            return 0
    folio: i64 = _do_fault_page(vmf)
    if folio < 0:
        return -folio
    page: i64 = _fault_page(vmf, folio)
    folio_ref_add(k.memmap, folio, 1)
    count(k.counters, REF_GETS, 1)
    if finish_fault(vmf, folio, page):
        k.folio_put(folio, 1)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def do_cow_fault(vmf: VmFault) -> i64:
    """Write fault on a private file mapping: copy into a new anon page.

    Models: mm/memory.c ``do_cow_fault()``.
    """
    vma: Vma = vmf.vma
    k: Kernel = vma_mm(vma).kernel
    anon_vma_prepare(vma)
    new: i64 = k.folio_alloc(0, False)
    if new < 0:
        return VM_FAULT_OOM
    folio: i64 = _do_fault_page(vmf)
    if folio < 0:
        k.folio_put(new, 1)
        return -folio
    page: i64 = _fault_page(vmf, folio)
    k.arch.copy_user_highpage(new, page, vmf.address, vma)
    count(k.counters, PAGE_COPY, 1)
    if finish_fault(vmf, new, new):
        k.folio_put(new, 1)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def do_shared_fault(vmf: VmFault) -> i64:
    """Write fault on a shared file mapping: map writable, dirty the folio.

    Models: mm/memory.c ``do_shared_fault()`` + ``fault_dirty_shared_page()``.
    """
    k: Kernel = vma_mm(vmf.vma).kernel
    folio: i64 = _do_fault_page(vmf)
    if folio < 0:
        return -folio
    page: i64 = _fault_page(vmf, folio)
    folio_ref_add(k.memmap, folio, 1)
    count(k.counters, REF_GETS, 1)
    if finish_fault(vmf, folio, page):
        k.folio_put(folio, 1)
        return 0
    folio_mark_dirty(k.memmap, folio)
    return 0


# -- write-protect faults (mm/memory.c do_wp_page) -----------------------------
@cython.cfunc
@cython.exceptval(-1, check=True)
def wp_can_reuse_large_anon_folio(folio: i64, vma: Vma) -> cython.bint:
    """Models: mm/memory.c ``__wp_can_reuse_large_anon_folio()`` (v6.15, CONFIG_MM_ID).

    Commit 1da190f4d0a6 "mm: Copy-on-Write (COW) reuse support for
    PTE-mapped THP" (David Hildenbrand): reuse when the folio is mapped
    more than once, is not "maybe mapped shared" (its mm slots say one mm
    holds every mapping: ``mm_ids_shared``, kept by the rmap functions),
    and every reference is from a mapping (refcount == mapcount).  Only
    with the ``cow_reuse_large`` option; v6.12 never reuses a page of a
    large folio.
    """
    k: Kernel = vma_mm(vma).kernel
    if not k.cow_reuse_large:
        # v6.12: copy, which gives the large folio back sooner.
        return False
    mem: MemMap = k.memmap
    mapcount: i64 = folio_mapcount(mem, folio)
    # Let's just free up a large folio if only a single page is mapped.
    if mapcount <= 1:
        return False
    if cython.cast(i64, mem.mm_ids_shared[folio]):
        return False  # folio_test_large_maybe_mapped_shared()
    if cython.cast(i64, mem.flags[folio]) & PG_swapcache:
        # Freeing the swap cache fails while some PTEs are still swap entries.
        folio_free_swap(k, cython.cast(SwapInfo, k.swap), folio)
    return mapcount == cython.cast(i64, mem.refcount[folio])


@cython.ccall
@cython.exceptval(-1, check=True)
def wp_can_reuse_anon_folio(folio: i64, vma: Vma) -> cython.bint:
    """Models: mm/memory.c ``wp_can_reuse_anon_folio()``.

    A large folio goes to ``wp_can_reuse_large_anon_folio`` (which says no
    in v6.12); a small one is reused when its only other reference is the
    swap cache's, which is let go of first if no swap PTE needs it
    (``folio_free_swap``), leaving refcount 1.
    """
    k: Kernel = vma_mm(vma).kernel
    mem: MemMap = k.memmap
    if cython.cast(i64, mem.order[folio]) > 0:
        return wp_can_reuse_large_anon_folio(folio, vma)
    swapcache: cython.bint = (cython.cast(i64, mem.flags[folio]) & PG_swapcache) != 0
    if cython.cast(i64, mem.refcount[folio]) > 1 + swapcache:
        return False
    if swapcache:
        folio_free_swap(k, cython.cast(SwapInfo, k.swap), folio)
    return bool(cython.cast(i64, mem.refcount[folio]) == 1)


@cython.ccall
def wp_page_reuse(vmf: VmFault, folio: i64) -> None:
    """Models: mm/memory.c ``wp_page_reuse()``."""
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    arch: Pgtable = mm.kernel.arch
    count(mm.kernel.counters, FAULT_WP_REUSE, 1)
    entry: u64 = arch.pte_mkyoung(vmf.orig_pte)
    entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
    if arch.ptep_set_access_flags(vma, vmf.address, vmf.pte, entry, True):
        arch.update_mmu_cache_range(vma, vmf.address, vmf.pte, 1)
    pte_unmap_unlock(mm, vmf.pte)


@cython.ccall
@cython.exceptval(-1, check=True)
def wp_page_copy(vmf: VmFault, old: i64) -> i64:
    """Break CoW: copy the page into a new order-0 anon folio and map it.

    Models: mm/memory.c ``wp_page_copy()``: ``do_wp_page`` dropped the PTL
    (holding a reference on ``old``); the allocation and the copy may sleep
    (a preemption point, ``k.yield_hook("wp_page_copy")``: another thread
    may fault on the page meanwhile), then ``pte_offset_map_lock`` again and
    the PTE must still be ``vmf->orig_pte`` (``pte_same``), else the new
    folio is released (``update_mmu_tlb``; ``fault.pte_changed``) and the
    access retried.  Bug catalog ``fault_no_pte_recheck``: no ``pte_same``.

    Context: per-VMA lock or mmap_lock held for read; PTL not held.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    arch: Pgtable = k.arch
    mem: MemMap = k.memmap
    unshare: cython.bint = (vmf.flags & FAULT_FLAG_UNSHARE) != 0
    count(k.counters, FAULT_WP_COPY, 1)
    anon_vma_prepare(vma)
    old_pfn: i64 = arch.pte_pfn(vmf.orig_pte)
    new: i64
    if old_pfn == k.zero_pfn:
        new = k.folio_alloc(0, True)
    else:
        new = k.folio_alloc(0, False)
        if new >= 0:
            # __wp_page_copy_user() -> copy_mc_user_highpage() (= copy_user_highpage()).
            arch.copy_user_highpage(new, old_pfn, vmf.address, vma)
            count(k.counters, PAGE_COPY, 1)
    if new < 0:
        if old >= 0:
            k.folio_put(old, 1)
        return VM_FAULT_OOM
    if k.yield_hook is not None:
        k.yield_hook("wp_page_copy", mm, vmf.address)
    ptep: i64 = pte_offset_map_lock(mm, vmf.address, False)
    vmf.pte = ptep
    entry: u64
    if ptep >= 0 and (k.bug("fault_no_pte_recheck") or arch.pte_same(arch.ptep_get(ptep), vmf.orig_pte)):
        if old >= 0:
            if not folio_test_anon(mem, old):
                mm.add_mm_counter(mm_counter_file(old, k), -1)
                mm.add_mm_counter(MM_ANONPAGES, 1)
        else:
            mm.add_mm_counter(MM_ANONPAGES, 1)
        entry = arch.pfn_pte(new, vma.vm_page_prot)
        if unshare:
            if arch.pte_soft_dirty(vmf.orig_pte):
                entry = arch.pte_mksoft_dirty(entry)
            if arch.pte_uffd_wp(vmf.orig_pte):
                entry = arch.pte_mkuffd_wp(entry)
        else:
            entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
        # Clear and flush first, so no CPU keeps the old translation.
        arch.ptep_clear_flush(vma, vmf.address, ptep)
        folio_add_new_anon_rmap(new, vma, vmf.address, RMAP_EXCLUSIVE, False)
        arch.set_pte_at(mm, vmf.address, ptep, entry)
        arch.update_mmu_cache_range(vma, vmf.address, ptep, 1)
        if old >= 0:
            folio_remove_rmap_ptes(old, old_pfn, 1, vma)
            k.folio_put(old, 1)  # the mapping's reference
        pte_unmap_unlock(mm, ptep)
    else:
        count(k.counters, FAULT_PTE_CHANGED, 1)
        k.folio_put(new, 1)
        pte_unmap_unlock(mm, ptep)
    if old >= 0:
        k.folio_put(old, 1)  # the reference do_wp_page took
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def do_wp_page(vmf: VmFault) -> i64:
    """Handle a write (or unshare) fault on a present, write-protected PTE.

    Models: mm/memory.c ``do_wp_page()`` (v6.12): shared mappings become
    writable in place; a private anon page is reused when it is
    PageAnonExclusive or ``wp_can_reuse_anon_folio``; otherwise it is copied.
    """
    vma: Vma = vmf.vma
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    mem: MemMap = k.memmap
    count(k.counters, FAULT_WP, 1)
    unshare: cython.bint = (vmf.flags & FAULT_FLAG_UNSHARE) != 0
    folio: i64 = vm_normal_folio(vma, vmf.address, vmf.orig_pte)
    page: i64 = k.arch.pte_pfn(vmf.orig_pte)
    cur: u64
    if not unshare:
        # userfaultfd_pte_wp(vma, ptep_get(vmf->pte)): the argument reads the
        # entry again (under the PTL) whether or not the VMA has uffd-wp.
        cur = k.arch.ptep_get(vmf.pte)
        if vma.vm_flags & VM_UFFD_WP and k.arch.pte_uffd_wp(cur):
            # The monitor must resolve it (handle_userfault).
            pte_unmap_unlock(mm, vmf.pte)
            return VM_FAULT_UFFD_WP
    if k.oneplus and folio >= 0 and k.arch.pte_cont(vmf.orig_pte) and folio_test_anon(mem, folio):
        # OnePlus: a whole block is reused or copied as one (ContPteHugePage).
        return chp.do_wp_cont_pte_page(vmf, folio)
    if vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        if unshare:
            pte_unmap_unlock(mm, vmf.pte)
            return 0
        wp_page_reuse(vmf, folio)
        if folio >= 0:
            folio_mark_dirty(mem, folio)
        return 0
    if (
        folio >= 0
        and folio_test_anon(mem, folio)
        and (PageAnonExclusive(mem, page) or wp_can_reuse_anon_folio(folio, vma))
    ):
        if not PageAnonExclusive(mem, page):
            SetPageAnonExclusive(mem, page, 1)
        if unshare:
            pte_unmap_unlock(mm, vmf.pte)
            return 0
        wp_page_reuse(vmf, folio)
        return 0
    if folio >= 0:
        folio_ref_add(mem, folio, 1)
        count(k.counters, REF_GETS, 1)
    pte_unmap_unlock(mm, vmf.pte)
    return wp_page_copy(vmf, folio)


# ---------------------------------------------------------------------------
# fork: copy_page_range
# ---------------------------------------------------------------------------
@cython.ccall
def _copy_present_ptes(
    dst_vma: Vma, src_vma: Vma, dst_pte: i64, src_pte: i64, pte: u64, addr: i64, nr: i64
) -> None:
    """Write-protect the parent (CoW) and map the child.

    Models: mm/memory.c ``__copy_present_ptes()``.
    """
    src_mm: MmStruct = vma_mm(src_vma)
    a: Pgtable = src_mm.kernel.arch
    if is_cow_mapping(src_vma.vm_flags) and a.pte_write(pte):
        a.wrprotect_ptes(src_mm, addr, src_pte, nr)
        pte = a.pte_wrprotect(pte)
    if src_vma.vm_flags & VM_SHARED:
        pte = a.pte_mkclean(pte)
    pte = a.pte_mkold(pte)
    if not dst_vma.vm_flags & VM_UFFD_WP:
        pte = a.pte_clear_uffd_wp(pte)
    a.set_ptes(dst_vma.vm_mm, addr, dst_pte, pte, nr)


@cython.ccall
@cython.exceptval(-1, check=True)
def copy_present_page(
    dst_vma: Vma,
    src_vma: Vma,
    dst_pte: i64,
    src_pte: i64,
    addr: i64,
    rss: RssVec,
    prealloc: FolioPtr,
    page: i64,
) -> i64:
    """Give the child its own copy of a possibly pinned anon page.

    Models: mm/memory.c ``copy_present_page()``: returns -EAGAIN when no
    page was preallocated (the caller drops its locks and allocates one).
    """
    k: Kernel = vma_mm(src_vma).kernel
    a: Pgtable = k.arch
    new: i64 = prealloc.value
    if new < 0:
        return -EAGAIN
    prealloc.value = -1
    a.copy_user_highpage(new, page, addr, src_vma)
    count(k.counters, PAGE_COPY, 1)
    count(k.counters, FORK_COPY_PAGE, 1)
    anon_vma_prepare(dst_vma)
    folio_add_new_anon_rmap(new, dst_vma, addr, RMAP_EXCLUSIVE, False)
    rss.c[MM_ANONPAGES] += 1
    pte: u64 = a.pfn_pte(new, dst_vma.vm_page_prot)
    pte = maybe_mkwrite(a.pte_mkdirty(pte), dst_vma)
    if userfaultfd_pte_wp(dst_vma, a.ptep_get(src_pte)):
        pte = a.pte_mkuffd_wp(pte)  # the child's copy stays write-protected for the monitor
    a.set_pte_at(dst_vma.vm_mm, addr, dst_pte, pte)
    return 0


@cython.cfunc
@cython.exceptval(-1, check=True)
def _dup_anon_rmap_batch(k: Kernel, folio: i64, page: i64, nr: i64, dst_vma: Vma, src_vma: Vma) -> i64:
    """Duplicate the anon rmap of a fork batch; return the pages done (0: none, -EBUSY).

    ``batch_rmap``: one ``folio_try_dup_anon_rmap_ptes()`` for the batch
    (all or nothing).  Otherwise one call per page as the v4 posting's
    ``page_try_dup_anon_rmap()`` loop did: it stops at the first page that
    may be pinned.
    """
    if k.batch_rmap:
        return 0 if folio_try_dup_anon_rmap_ptes(folio, page, nr, dst_vma, src_vma) else nr
    done: i64 = 0
    while done < nr and not folio_try_dup_anon_rmap_ptes(folio, page + done, 1, dst_vma, src_vma):
        done += 1
    return done


@cython.cfunc
def _dup_file_rmap_batch(k: Kernel, folio: i64, page: i64, nr: i64, dst_vma: Vma) -> None:
    """``folio_dup_file_rmap_ptes()`` for a batch, or per page without ``batch_rmap``."""
    i: i64
    if k.batch_rmap:
        folio_dup_file_rmap_ptes(folio, page, nr, dst_vma)
        return
    for i in range(nr):
        folio_dup_file_rmap_ptes(folio, page + i, 1, dst_vma)


@cython.ccall
@cython.exceptval(-1, check=True)
def copy_present_ptes(
    dst_vma: Vma,
    src_vma: Vma,
    dst_pte: i64,
    src_pte: i64,
    pte: u64,
    addr: i64,
    max_nr: i64,
    rss: RssVec,
    prealloc: FolioPtr,
) -> i64:
    """Copy one present PTE, or a batch mapping consecutive pages of a folio.

    Models: mm/memory.c ``copy_present_ptes()`` (v6.12; v6.17 spells the
    same batch ``folio_pte_batch_flags(FPB_MERGE_WRITE [| FPB_RESPECT_DIRTY
    for a private mapping])``): for a large folio (and no preallocated
    page), ``folio_pte_batch_flags`` finds the run; the
    refcount is raised for the whole batch *before* the mapcounts
    (``folio_try_dup_anon_rmap_ptes``); a possibly pinned exclusive anon
    page makes the batch fail with -EAGAIN and be copied page by page.
    Between the anon rmap duplication (the pin check) and the write-protect
    another CPU's GUP-fast may read the PTEs, still writable
    (``k.yield_hook("copy_present_ptes")``; what keeps it from pinning a
    page fork now shares is ``write_protect_seq``, ``copy_page_range``).
    Returns the number of PTEs copied or a negative errno.

    Context: both PTLs held; ``max_nr`` within one VMA and one table.
    """
    k: Kernel = vma_mm(src_vma).kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    count(k.counters, FORK_CALLS, 1)
    folio: i64 = vm_normal_folio(src_vma, addr, pte)
    if folio < 0:
        _copy_present_ptes(dst_vma, src_vma, dst_pte, src_pte, pte, addr, 1)
        count(k.counters, FORK_PTES, 1)
        return 1
    page: i64 = a.pte_pfn(pte)
    nr: i64
    done: i64
    flags: i64
    rmap_first: cython.bint
    ptentp: PtePtr
    if k.batch_fork and k.batch_extent_arch:
        # The v4 posting's pte_batch_remaining(): the arch's block, or 1.
        max_nr = min(max_nr, a.pte_batch_hint(src_pte, pte))
    if k.batch_fork and prealloc.value < 0 and cython.cast(i64, mem.order[folio]) > 0 and max_nr != 1:
        # The soft-dirty bit is respected only where soft-dirty tracking is
        # on (vma_soft_dirty_enabled(): never in the model).
        flags = 0 if k.bug("fork_batch_ignores_write") else FPB_MERGE_WRITE
        if not src_vma.vm_flags & VM_SHARED and not k.bug("fork_batch_drops_any_dirty"):
            flags |= FPB_RESPECT_DIRTY
        ptentp = PtePtr.__new__(PtePtr)  # (no __init__ call: from the free list)
        ptentp.value = pte
        nr = folio_pte_batch_flags(k, folio, src_vma, src_pte, ptentp, max_nr, flags)
        pte = ptentp.value  # writable if any PTE of the batch was
        # Raise the refcount before the mapcounts: a folio must never have
        # more mappings than references (a concurrent folio_put could free it).
        rmap_first = k.bug("fork_mapcount_before_refcount")
        if not rmap_first:
            folio_ref_add(mem, folio, nr)
            count(k.counters, REF_GETS, 1)
        if folio_test_anon(mem, folio):
            done = _dup_anon_rmap_batch(k, folio, page, nr, dst_vma, src_vma)
            if done == 0:
                if not rmap_first:
                    folio_ref_sub(mem, folio, nr)
                    count(k.counters, REF_GETS, 1)
                return -EAGAIN
            if done < nr:
                # One rmap call per page (batch_rmap=False): a page that may be
                # pinned ends the batch before it; the next call copies it.
                if not rmap_first:
                    folio_ref_sub(mem, folio, nr - done)
                    count(k.counters, REF_GETS, 1)
                nr = done
            rss.c[MM_ANONPAGES] += nr
            if k.yield_hook is not None:
                # Pins checked, PTEs not yet write-protected: GUP-fast on
                # another CPU may read them writable here.
                k.yield_hook("copy_present_ptes", vma_mm(src_vma), addr)
        else:
            _dup_file_rmap_batch(k, folio, page, nr, dst_vma)
            rss.c[mm_counter_file(folio, k)] += nr
        if rmap_first:
            folio_ref_add(mem, folio, nr)
            count(k.counters, REF_GETS, 1)
        _copy_present_ptes(dst_vma, src_vma, dst_pte, src_pte, pte, addr, nr)
        count(k.counters, FORK_PTES, nr)
        if nr > 1:
            count(k.counters, FORK_BATCH, 1)
        return nr
    folio_ref_add(mem, folio, 1)
    count(k.counters, REF_GETS, 1)
    if folio_test_anon(mem, folio):
        if folio_try_dup_anon_rmap_ptes(folio, page, 1, dst_vma, src_vma):
            k.folio_put(folio, 1)
            return copy_present_page(dst_vma, src_vma, dst_pte, src_pte, addr, rss, prealloc, page) or 1
        rss.c[MM_ANONPAGES] += 1
        if k.yield_hook is not None:
            k.yield_hook("copy_present_ptes", vma_mm(src_vma), addr)
    else:
        folio_dup_file_rmap_ptes(folio, page, 1, dst_vma)
        rss.c[mm_counter_file(folio, k)] += 1
    _copy_present_ptes(dst_vma, src_vma, dst_pte, src_pte, pte, addr, 1)
    count(k.counters, FORK_PTES, 1)
    return 1


@cython.ccall
@cython.exceptval(-1, check=True)
def copy_nonpresent_pte(
    dst_mm: MmStruct,
    src_mm: MmStruct,
    dst_pte: i64,
    src_pte: i64,
    dst_vma: Vma,
    src_vma: Vma,
    addr: i64,
    rss: RssVec,
) -> i64:
    """Copy one swap PTE to the child: one more swap count, shared from now on.

    Models: mm/memory.c ``copy_nonpresent_pte()`` for a genuine swap entry
    (the only non-present entry the model makes): ``swap_duplicate()``,
    the parent's entry loses its exclusive bit, the child's copy its
    uffd-wp bit unless the child's VMA has uffd-wp; ``rss[MM_SWAPENTS]``.
    Returns 0, or -EIO if the count could not be raised.
    """
    k: Kernel = src_mm.kernel
    a: Pgtable = k.arch
    orig_pte: u64 = a.ptep_get(src_pte)
    pte: u64 = orig_pte
    if k.swap is None or swap_duplicate(cython.cast(SwapInfo, k.swap), a.swp_offset(orig_pte)) < 0:
        return -5  # -EIO
    if a.pte_swp_exclusive(orig_pte):
        pte = a.pte_swp_clear_exclusive(orig_pte)
        a.set_pte_at(src_mm, addr, src_pte, pte)
    rss.c[MM_SWAPENTS] += 1
    if not dst_vma.vm_flags & VM_UFFD_WP:
        pte = a.pte_swp_clear_uffd_wp(pte)
    a.set_pte_at(dst_mm, addr, dst_pte, pte)
    count(k.counters, SWAP_PTES_COPIED, 1)
    return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def copy_pte_range(dst_vma: Vma, src_vma: Vma, pmd_index: i64, addr: i64, end: i64) -> i64:
    """Copy the PTEs of ``[addr, end)`` (within one page table) to the child.

    Models: mm/memory.c ``copy_pte_range()``: the loop accounts progress (1
    per none PTE, 8 per copied PTE) and, once it reaches 32 (under the
    ``lock_break="aligned"`` rule: and the address is block-aligned), is a
    point where the kernel drops both PTLs if rescheduling is due or a lock is
    contended; every such point is recorded (``fork.lock_break_point``) and
    the rule checker verifies the tables there; then ``k.on_lock_break(src_mm,
    addr)`` (a scheduler, ``system/sched.py``) may run other threads' steps
    that need neither PTL nor the mmap_lock, or reclaim.  As the kernel's
    break leaves the loop (``add_mm_rss_vec()`` of what it copied so far,
    then ``goto again``: ``init_rss_vec()``, ``pte_offset_map_lock()``),
    the child's RSS is brought up to date first and the next source PTE is
    read after the break: a PTE reclaim turned into a swap entry meanwhile
    is copied as one.  Bug catalog ``fork_stale_pte_after_lock_break``:
    the PTE read before the break is copied.  -EAGAIN (a possibly pinned
    page needs a copy) drops the locks, preallocates a page and restarts
    (``fork.again``) at the same address; a preallocated page the next copy
    did not consume is freed right after that copy.
    """
    dst_mm: MmStruct = vma_mm(dst_vma)
    src_mm: MmStruct = vma_mm(src_vma)
    k: Kernel = src_mm.kernel
    a: Pgtable = k.arch
    if src_mm.space.pte_table(pmd_index) < 0:
        return 0
    prealloc: FolioPtr = FolioPtr(-1)
    rss: RssVec
    progress: i64
    dst_pte: i64
    src_pte: i64
    ret: i64
    ptent: u64 = 0
    i: i64
    stale: cython.bint = k.bug("fork_stale_pte_after_lock_break")
    while True:  # again:
        rss = RssVec()
        progress = 0
        dst_pte = pte_offset_map_lock(dst_mm, addr, True)
        src_pte = pte_offset_map_lock(src_mm, addr, False)
        ret = 0
        while addr < end:
            if stale:
                ptent = a.ptep_get(src_pte)  # the bug: read before the break, used after it
            if progress >= 32 and (k.lock_break_align == 0 or addr & (k.lock_break_align - 1) == 0):
                progress = 0
                count(k.counters, FORK_LOCK_BREAK, 1)
                a.ptl_release(src_mm, src_pte)
                for i in range(4):  # add_mm_rss_vec(dst_mm, rss), then init_rss_vec(rss)
                    if cython.cast(i64, rss.c[i]):
                        dst_mm.add_mm_counter(i, cython.cast(i64, rss.c[i]))
                        rss.c[i] = 0
                a.ptl_release(dst_mm, dst_pte)
                if k.on_lock_break is not None:
                    # Both PTLs dropped, the mmap_lock still held for write:
                    # a scheduler may run here what needs neither.
                    k.on_lock_break(src_mm, addr)
            if not stale:
                ptent = a.ptep_get(src_pte)
            if ptent == 0:
                progress += 1
                src_pte += 1
                dst_pte += 1
                addr += k.PAGE_SIZE
                continue
            if not a.pte_present(ptent):
                ret = copy_nonpresent_pte(dst_mm, src_mm, dst_pte, src_pte, dst_vma, src_vma, addr, rss)
                if ret:
                    break  # -EIO: the swap entry could not be duplicated
                progress += 8
                src_pte += 1
                dst_pte += 1
                addr += k.PAGE_SIZE
                continue
            if k.oneplus and a.pte_cont(ptent):
                # OnePlus: a block is copied whole (one unit of progress, so
                # the lock break only falls between blocks); one that does
                # not fit in [addr, end), or may be pinned, is split first.
                if (
                    min((addr | (chp.HPAGE_CONT_PTE_NR * k.PAGE_SIZE - 1)) + 1, end) - addr
                    == chp.HPAGE_CONT_PTE_NR * k.PAGE_SIZE
                ):
                    chp.cont_pte_trans_huge(k, src_pte, "cp_pte_range")
                    ret = chp.copy_present_cont_pte(dst_vma, src_vma, dst_pte, src_pte, addr, rss)
                else:
                    ret = -EAGAIN
                if ret == 0:
                    count(k.counters, FORK_CALLS, 1)
                    count(k.counters, FORK_PTES, chp.HPAGE_CONT_PTE_NR)
                    progress += 8
                    src_pte += chp.HPAGE_CONT_PTE_NR
                    dst_pte += chp.HPAGE_CONT_PTE_NR
                    addr += chp.HPAGE_CONT_PTE_NR * k.PAGE_SIZE
                    continue
                ret = 0
                chp.count_vm_chp_event(k, "cp_cont_pte_split_count")
                chp._split_huge_cont_pte_locked(
                    src_vma,
                    src_pte & ~(chp.HPAGE_CONT_PTE_NR - 1),
                    addr & ~(chp.HPAGE_CONT_PTE_NR * k.PAGE_SIZE - 1),
                )
                ptent = a.ptep_get(src_pte)
            ret = copy_present_ptes(
                dst_vma, src_vma, dst_pte, src_pte, ptent, addr, (end - addr) >> k.page_shift, rss, prealloc
            )
            if ret == -EAGAIN:
                break
            if prealloc.value >= 0:
                # The page preallocated for a possibly pinned page was not
                # used (that page's mapping changed while the locks were
                # dropped): free it now rather than keep it for a later
                # PTE (alloc_page_vma() follows the mempolicy at this
                # address), so the next copies batch again.
                k.folio_put(prealloc.value, 1)
                prealloc.value = -1
            progress += 8 * ret
            src_pte += ret
            dst_pte += ret
            addr += ret << k.page_shift
            ret = 0
        for i in range(4):
            if cython.cast(i64, rss.c[i]):
                dst_mm.add_mm_counter(i, cython.cast(i64, rss.c[i]))
        pte_unmap_unlock(src_mm, src_pte)
        pte_unmap_unlock(dst_mm, dst_pte)
        if ret == -EAGAIN:
            count(k.counters, FORK_AGAIN, 1)
            prealloc.value = k.folio_alloc(0, False)
            if prealloc.value < 0:
                return -ENOMEM
            continue
        if prealloc.value >= 0:
            k.folio_put(prealloc.value, 1)
        return 0


@cython.ccall
@cython.exceptval(-1, check=True)
def copy_page_range(dst_vma: Vma, src_vma: Vma) -> i64:
    """Copy the page tables of one VMA at fork.

    Models: mm/memory.c ``copy_page_range()`` (with ``vma_needs_copy``:
    VMAs without anon pages are not copied; the child faults them in).  A
    COW mapping's copy is a write section of ``src_mm->write_protect_seq``
    (v5.11, 57efa1fe5957): GUP-fast drops pins taken across it.
    """
    if not vma_needs_copy(dst_vma, src_vma):
        return 0
    src_mm: MmStruct = vma_mm(src_vma)
    k: Kernel = src_mm.kernel
    pmd_size: i64 = k.arch.PMD_SIZE
    pmd_shift: i64 = k.arch.PMD_SHIFT
    addr: i64 = src_vma.vm_start
    end: i64 = src_vma.vm_end
    next_: i64
    pmd_idx: i64
    ret: i64
    pmds: dict[int, int] = src_mm.space.pmds
    is_cow: cython.bint = is_cow_mapping(src_vma.vm_flags)
    if is_cow:
        # raw_write_seqcount_begin(): GUP-fast pins nothing meanwhile (mm/gup.py).
        src_mm.write_protect_seq += 1
    ret = 0
    while addr < end:
        next_ = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        pmd_idx = addr >> pmd_shift
        if pmds and pmd_idx in pmds:
            if huge_memory.copy_huge_pmd(vma_mm(dst_vma), src_mm, pmd_idx, addr, dst_vma, src_vma) == 0:
                addr = next_
                continue
        ret = copy_pte_range(dst_vma, src_vma, pmd_idx, addr, next_)
        if ret:
            break
        addr = next_
    if is_cow:
        src_mm.write_protect_seq += 1  # raw_write_seqcount_end()
    return ret


@cython.ccall
@cython.exceptval(-1, check=True)
def vma_needs_copy(dst_vma: Vma, src_vma: Vma) -> cython.bint:
    """Models: mm/memory.c ``vma_needs_copy()``."""
    if dst_vma.vm_flags & VM_UFFD_WP:
        return True
    return src_vma.anon_vma is not None


# ---------------------------------------------------------------------------
# zap
# ---------------------------------------------------------------------------
@cython.ccall
def zap_present_folio_ptes(
    tlb: MmuGather,
    vma: Vma,
    folio: i64,
    page: i64,
    ptep: i64,
    ptent: u64,
    nr: i64,
    addr: i64,
    rss: RssVec,
    force_flush: BoolPtr,
    force_break: BoolPtr,
) -> None:
    """Unmap ``nr`` PTEs of one folio.

    Models: mm/memory.c ``zap_present_folio_ptes()``: file folios gather
    dirty/young (``get_and_clear_full_ptes``) and keep their dirty state;
    a dirty one keeps its rmap until the TLB is flushed (``tlb_delay_rmap``:
    ``*force_flush``, so ``zap_pte_range`` flushes before it drops the
    PTL); anon folios just clear (``clear_full_ptes``).  A full gather sets
    ``*force_flush`` and ``*force_break``.  (``folio_mark_accessed`` of a
    young file folio is not modelled: the model has no LRU ages.)
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    delay_rmap: cython.bint = False
    if not folio_test_anon(mem, folio):
        ptent = a.get_and_clear_full_ptes(mm, addr, ptep, nr, tlb.fullmm)
        if a.pte_dirty(ptent):
            folio_mark_dirty(mem, folio)
            if tlb.tlb_delay_rmap():
                delay_rmap = True
                force_flush.value = True
        rss.c[mm_counter_file(folio, k)] -= nr
    else:
        a.clear_full_ptes(mm, addr, ptep, nr, tlb.fullmm)
        rss.c[MM_ANONPAGES] -= nr
    tlb.tlb_remove_tlb_entries(ptep, nr, addr)
    i: i64
    full: cython.bint = False
    if k.batch_rmap:
        if not delay_rmap:
            folio_remove_rmap_ptes(folio, page, nr, vma)
        full = tlb.tlb_remove_folio_pages(folio, page, nr, delay_rmap)
    else:
        # The v4 posting's batched zap: page_remove_rmap() and
        # __tlb_remove_page() per page (each reference dropped on its own).
        if not delay_rmap:
            for i in range(nr):
                folio_remove_rmap_ptes(folio, page + i, 1, vma)
        for i in range(nr):
            if tlb.tlb_remove_folio_pages(folio, page + i, 1, delay_rmap):
                full = True
    if full:
        force_flush.value = True
        force_break.value = True
    count(k.counters, ZAP_PTES, nr)
    if nr > 1:
        count(k.counters, ZAP_BATCH, 1)


@cython.ccall
@cython.exceptval(-1, check=True)
def zap_present_ptes(
    tlb: MmuGather,
    vma: Vma,
    ptep: i64,
    ptent: u64,
    max_nr: i64,
    addr: i64,
    rss: RssVec,
    force_flush: BoolPtr,
    force_break: BoolPtr,
) -> i64:
    """Models: mm/memory.c ``zap_present_ptes()``; returns PTEs zapped."""
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    count(k.counters, ZAP_CALLS, 1)
    folio: i64 = vm_normal_folio(vma, addr, ptent)
    if folio < 0:
        a.ptep_get_and_clear_full(mm, addr, ptep, tlb.fullmm)
        tlb.tlb_remove_tlb_entries(ptep, 1, addr)
        count(k.counters, ZAP_PTES, 1)
        return 1
    page: i64 = a.pte_pfn(ptent)
    nr: i64
    if k.batch_zap and k.batch_extent_arch:
        # The v4 posting's pte_batch_remaining(): the arch's block, or 1.
        max_nr = min(max_nr, a.pte_batch_hint(ptep, ptent))
    if k.batch_zap and cython.cast(i64, k.memmap.order[folio]) > 0 and max_nr != 1:
        nr = folio_pte_batch(k, folio, ptep, ptent, max_nr)
        zap_present_folio_ptes(tlb, vma, folio, page, ptep, ptent, nr, addr, rss, force_flush, force_break)
        return nr
    zap_present_folio_ptes(tlb, vma, folio, page, ptep, ptent, 1, addr, rss, force_flush, force_break)
    return 1


def zap_cont_pte(
    tlb: MmuGather,
    vma: Vma,
    ptep: i64,
    ptent: u64,
    addr: i64,
    end: i64,
    rss: RssVec,
    force_flush: BoolPtr,
    force_break: BoolPtr,
) -> bool:
    """Zap the block at ``ptep`` whole (True), or split it when ``[addr, end)`` covers part (False).

    Models: the OnePlus branch of mm/memory.c ``zap_pte_range()``: a block
    the range covers entirely is cleared with
    ``cont_pte_huge_ptep_get_and_clear()`` (the mmu_gather flushes), RSS - 16,
    its entire mapping removed (``page_remove_rmap(page, true)``) and its one
    reference queued (``tlb_remove_page_size()``); otherwise
    ``__split_huge_cont_pte()`` and the caller zaps the PTEs again.
    Context: PTL held; ``addr`` at the block's first entry when it is whole.
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    size: i64 = chp.HPAGE_CONT_PTE_NR * k.PAGE_SIZE
    haddr: i64 = addr & ~(size - 1)
    if haddr != addr or min(addr + size, end) - addr != size:
        chp._split_huge_cont_pte_locked(vma, ptep - ((addr - haddr) >> k.page_shift), haddr)
        return False
    chp.cont_pte_trans_huge(k, ptep, "zap_pte_range")
    folio: i64 = vm_normal_folio(vma, addr, ptent)
    chp.cont_pte_huge_ptep_get_and_clear(vma, addr, ptep)
    tlb.tlb_remove_tlb_entries(ptep, chp.HPAGE_CONT_PTE_NR, addr)
    count(k.counters, ZAP_CALLS, 1)
    count(k.counters, ZAP_PTES, chp.HPAGE_CONT_PTE_NR)
    chp.count_vm_chp_event(k, "zap_block")
    if folio < 0:
        return True
    rss.c[MM_ANONPAGES] -= chp.HPAGE_CONT_PTE_NR
    chp.page_remove_anon_compound_rmap(folio, vma)
    if tlb.tlb_remove_folio_pages(folio, folio, 1, False):
        force_flush.value = True
        force_break.value = True
    return True


@cython.ccall
@cython.exceptval(-1, check=True)
def zap_pte_range(tlb: MmuGather, vma: Vma, pmd_index: i64, addr: i64, end: i64) -> i64:
    """Unmap the PTEs of ``[addr, end)`` within one page table; returns where it stopped.

    Models: mm/memory.c ``zap_pte_range()``: when the gather is full it
    stops after the batch that filled it (``force_break``); a forced flush
    (a full gather, or dirty file folios whose rmap removal waits for the
    flush) flushes the TLB and does the delayed rmap removals before the
    PTL is dropped, then frees the gathered pages.  The caller comes back
    for the rest of the table (``zap_pmd_range``).  Under MADV_DONTNEED
    (mmap_lock held for read) the return, PTL dropped, is a preemption point
    (``k.yield_hook("zap_pte_range")``): other threads of the mm may fault
    and run read-locked madvise there while the gather still holds the
    pages and the TLB flush of what this call cleared (munmap and exit hold
    the mmap_lock for write or tear the mm down: not a point in the model).
    """
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    a: Pgtable = k.arch
    if mm.space.pte_table(pmd_index) < 0:
        return end
    rss: RssVec = RssVec()
    force_flush: BoolPtr = BoolPtr.__new__(BoolPtr)
    force_break: BoolPtr = BoolPtr.__new__(BoolPtr)
    force_flush.value = False
    force_break.value = False
    ptep: i64 = pte_offset_map_lock(mm, addr, False)
    ptent: u64
    nr: i64
    i: i64
    while addr < end:
        ptent = a.ptep_get(ptep)
        if ptent == 0:
            ptep += 1
            addr += k.PAGE_SIZE
            continue
        if not a.pte_present(ptent):
            # Genuine swap entries, hence private anon pages (zap_nonpresent_ptes()).
            nr = swap_pte_batch(a, ptep, (end - addr) >> k.page_shift, ptent)
            rss.c[MM_SWAPENTS] -= nr
            free_swap_and_cache_nr(k, a.swp_offset(ptent), nr)
            count(k.counters, SWAP_PTES_ZAPPED, nr)
            for i in range(nr):  # clear_not_present_full_ptes()
                a.pte_clear(mm, addr + (i << k.page_shift), ptep + i)
            ptep += nr
            addr += nr << k.page_shift
            continue
        if k.oneplus and a.pte_cont(ptent):
            if zap_cont_pte(tlb, vma, ptep, ptent, addr, end, rss, force_flush, force_break):
                ptep += chp.HPAGE_CONT_PTE_NR
                addr += chp.HPAGE_CONT_PTE_NR * k.PAGE_SIZE
                if force_break.value:
                    break
            continue  # a split block: its entries again, one by one
        nr = zap_present_ptes(
            tlb, vma, ptep, ptent, (end - addr) >> k.page_shift, addr, rss, force_flush, force_break
        )
        ptep += nr
        addr += nr << k.page_shift
        if force_break.value:
            break
    for i in range(4):
        if cython.cast(i64, rss.c[i]):
            mm.add_mm_counter(i, cython.cast(i64, rss.c[i]))
    # Do the actual TLB flush before dropping the PTL.
    if force_flush.value:
        count(k.counters, ZAP_FORCED_FLUSH, 1)
        if force_break.value and k.bug("zap_free_before_flush"):
            tlb.tlb_flush_mmu_free()
        tlb.tlb_flush_mmu_tlbonly()
        tlb.tlb_flush_rmaps(vma)
    pte_unmap_unlock(mm, ptep)
    # Then free the gathered pages too.
    if force_flush.value:
        tlb.tlb_flush_mmu()
    if k.yield_hook is not None and mm.mmap_read_locked > 0 and not tlb.fullmm:
        # PTL dropped (and zap_pmd_range's cond_resched()) with the mmap_lock
        # held for read (MADV_DONTNEED): the unflushed rest waits in the gather.
        k.yield_hook("zap_pte_range", mm, addr)
    return addr


@cython.ccall
def unmap_page_range(tlb: MmuGather, vma: Vma, addr: i64, end: i64) -> None:
    """Models: mm/memory.c ``unmap_page_range()`` and ``zap_pmd_range()`` (PMD-level walk)."""
    mm: MmStruct = vma_mm(vma)
    k: Kernel = mm.kernel
    pmd_size: i64 = k.arch.PMD_SIZE
    pmd_shift: i64 = k.arch.PMD_SHIFT
    pmds: dict[int, int] = mm.space.pmds
    next_: i64
    pmd_idx: i64
    while addr < end:
        next_ = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        pmd_idx = addr >> pmd_shift
        if pmds and pmd_idx in pmds:
            if next_ - addr == pmd_size:
                huge_memory.zap_huge_pmd(tlb, vma, pmd_idx, addr)
                addr = next_
                continue
            huge_memory.split_huge_pmd(vma, pmd_idx, addr)
        # zap_pte_range() stops early when the gather fills: come back for the rest.
        while addr != next_:
            addr = zap_pte_range(tlb, vma, pmd_idx, addr, next_)


@cython.ccall
def unmap_vmas(tlb: MmuGather, vmas: Sequence[Vma], start: i64, end: i64) -> None:
    """Models: mm/memory.c ``unmap_vmas()``."""
    vma: Vma
    s: i64
    e: i64
    for vma in vmas:
        s = max(start, vma.vm_start)
        e = min(end, vma.vm_end)
        if s < e:
            tlb.tlb_start_vma(vma)
            unmap_page_range(tlb, vma, s, e)
            tlb.tlb_end_vma(vma)


@cython.ccall
def zap_page_range_single(vma: Vma, address: i64, size: i64) -> None:
    """Models: mm/memory.c ``zap_page_range_single()`` (MADV_DONTNEED)."""
    tlb: MmuGather = MmuGather(vma_mm(vma), False)
    unmap_vmas(tlb, [vma], address, address + size)
    tlb.tlb_finish_mmu()


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        FAULT_ANON=FAULT_ANON,
        FAULT_FILE=FAULT_FILE,
        FAULT_WP=FAULT_WP,
        FORK_PTES=FORK_PTES,
        FORK_CALLS=FORK_CALLS,
        FORK_BATCH=FORK_BATCH,
        FORK_LOCK_BREAK=FORK_LOCK_BREAK,
        ZAP_PTES=ZAP_PTES,
        ZAP_CALLS=ZAP_CALLS,
        ZAP_BATCH=ZAP_BATCH,
    )
