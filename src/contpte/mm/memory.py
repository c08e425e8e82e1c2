"""Page faults, fork's page-table copy, and zap.

Models: mm/memory.c (Linux v6.12): ``handle_mm_fault``,
``do_anonymous_page``/``alloc_anon_folio``, ``do_fault`` (read, CoW and
shared file faults, ``finish_fault``, ``set_pte_range``), ``do_wp_page``,
``wp_page_copy``, ``copy_page_range`` -> ``copy_pte_range`` ->
``copy_present_ptes``, ``zap_pte_range`` -> ``zap_present_ptes`` ->
``zap_present_folio_ptes``; and ``folio_pte_batch`` of mm/internal.h.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..arch.pgtable import PtePtr
from ..counters import counter
from ..errors import KernelBug
from . import rmap
from .kernel import PAGE_COPY, PGFAULT, REF_OPS, Kernel
from .memmap import Folio
from .mm_types import (
    FAULT_FLAG_UNSHARE,
    FAULT_FLAG_WRITE,
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
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
    Vma,
    is_cow_mapping,
    vma_is_anonymous,
)

if TYPE_CHECKING:
    from .mmu_gather import MmuGather

__all__ = [
    "VmFault",
    "handle_mm_fault",
    "do_anonymous_page",
    "alloc_anon_folio",
    "do_wp_page",
    "folio_pte_batch",
    "copy_page_range",
    "copy_pte_range",
    "copy_present_ptes",
    "zap_page_range_single",
    "unmap_vmas",
    "zap_pte_range",
    "pte_offset_map_lock",
    "pte_unmap_unlock",
    "vm_normal_folio",
    "FPB_IGNORE_DIRTY",
    "FPB_IGNORE_SOFT_DIRTY",
]

FAULT_ANON = counter("fault.anon")
FAULT_FILE = counter("fault.file")
FAULT_WP = counter("fault.wp")
FAULT_WP_REUSE = counter("fault.wp_reuse")
FAULT_WP_COPY = counter("fault.wp_copy")
FAULT_SPURIOUS = counter("fault.spurious")
FAULT_AROUND_PAGES = counter("fault.around_pages")
FORK_BATCH = counter("fork.batch")
FORK_PTES = counter("fork.ptes")
FORK_COPY_PAGE = counter("fork.copy_page")
FORK_LOCK_BREAK = counter("fork.lock_break_point")
FORK_AGAIN = counter("fork.again")
ZAP_BATCH = counter("zap.batch")
ZAP_PTES = counter("zap.ptes")
FORK_CALLS = counter("fork.calls")
ZAP_CALLS = counter("zap.calls")

FPB_IGNORE_DIRTY = 1 << 0
FPB_IGNORE_SOFT_DIRTY = 1 << 1

EAGAIN = 11
EBUSY = 16


class VmFault:
    """A ``struct vm_fault``."""

    __slots__ = ("vma", "address", "flags", "pmd_index", "pte", "orig_pte", "page", "cow_folio")

    def __init__(self, vma: Vma, address: int, flags: int) -> None:
        self.vma = vma
        self.address = address
        self.flags = flags
        self.pmd_index = address >> vma.vm_mm.kernel.arch.PMD_SHIFT
        self.pte: PtePtr | None = None
        self.orig_pte = 0
        self.page = -1
        self.cow_folio: Folio | None = None


# ---------------------------------------------------------------------------
# Page-table access helpers (include/linux/mm.h)
# ---------------------------------------------------------------------------
def pte_index(k: Kernel, addr: int) -> int:
    return (addr >> k.page_shift) & (k.arch.PTRS_PER_PTE - 1)


def pte_offset_map_lock(mm: MmStruct, addr: int, alloc: bool = False) -> PtePtr | None:
    """Map and lock the PTE table for ``addr`` (``pte_offset_map_lock``/``pte_alloc``)."""
    k = mm.kernel
    pmd_idx = addr >> k.arch.PMD_SHIFT
    if pmd_idx in mm.space.pmds:
        return None
    table = mm.space.alloc_pte_table(pmd_idx) if alloc else mm.space.pte_table(pmd_idx)
    if table is None:
        return None
    return PtePtr(table, pte_index(k, addr))


def pte_unmap_unlock(mm: MmStruct, ptep: PtePtr | None) -> None:
    """Drop the PTL: the hardware may now observe the table (rule checks)."""
    if ptep is not None:
        mm.kernel.arch.ptl_release(mm, ptep.table)


def mm_counter_file(folio: Folio, k: Kernel) -> int:
    f = k.files.get(int(folio.mem.mapping[folio.pfn]))
    return MM_SHMEMPAGES if f is not None and f.shmem else MM_FILEPAGES


def vm_normal_folio(vma: Vma, addr: int, pte: int) -> Folio | None:
    """The folio a present PTE maps, or None for special mappings (zero page).

    Models: mm/memory.c ``vm_normal_page()``/``vm_normal_folio()``.
    """
    k = vma.vm_mm.kernel
    arch = k.arch
    if arch.pte_special(pte):
        return None
    return k.folio(arch.pte_pfn(pte))


def maybe_mkwrite(pte: int, vma: Vma) -> int:
    """``maybe_mkwrite()``: writable iff the VMA is."""
    if vma.vm_flags & VM_WRITE:
        return vma.vm_mm.kernel.arch.pte_mkwrite(pte)
    return pte


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------
def handle_mm_fault(vma: Vma, address: int, flags: int) -> int:
    """Resolve a fault at ``address``; returns VM_FAULT_* bits (0 = handled).

    Models: mm/memory.c ``handle_mm_fault()`` -> ``__handle_mm_fault()``.

    Context: mmap_lock held for read; called from the arch fault handler
    after it checked the VMA allows the access.
    """
    from . import huge_memory

    k = vma.vm_mm.kernel
    k.counters.add(PGFAULT)
    vmf = VmFault(vma, address, flags)
    mm = vma.vm_mm
    pmd = mm.space.pmds.get(vmf.pmd_index, 0)
    if pmd == 0 and mm.space.pte_table(vmf.pmd_index) is None:
        if huge_memory.thp_vma_allowable_order(vma, k.PMD_ORDER) and huge_memory.thp_vma_suitable_order(
            vma, address, k.PMD_ORDER
        ):
            ret = huge_memory.create_huge_pmd(vmf)
            if not ret & VM_FAULT_FALLBACK:
                return ret
    elif pmd:
        if vmf.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE) and not k.arch.pte_write(k.arch.pmd_pte(pmd)):
            # wp_huge_pmd(): anon PMDs go to do_huge_pmd_wp_page().
            ret = huge_memory.do_huge_pmd_wp_page(vmf, pmd)
            if not ret & VM_FAULT_FALLBACK:
                return ret
        else:
            return huge_memory.huge_pmd_set_accessed(vmf, pmd)
    return handle_pte_fault(vmf)


def handle_pte_fault(vmf: VmFault) -> int:
    """Models: mm/memory.c ``handle_pte_fault()``."""
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    ptep = pte_offset_map_lock(mm, vmf.address)
    if ptep is None:
        entry = 0
    else:
        entry = arch.ptep_get_lockless(ptep)
    vmf.pte = ptep
    vmf.orig_pte = entry
    if arch.pte_none(entry):
        if vma_is_anonymous(vma):
            return do_anonymous_page(vmf)
        return do_fault(vmf)
    assert ptep is not None
    if not arch.pte_present(entry):
        raise KernelBug("VM_BUG_ON", "swap/migration entries are not modelled", vmf.address, [entry])
    if arch.pte_protnone(entry) and vma.vm_flags & VM_ACCESS_FLAGS:
        return do_numa_page(vmf)
    write = bool(vmf.flags & FAULT_FLAG_WRITE)
    if vmf.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE):
        if not arch.pte_write(entry):
            return do_wp_page(vmf)
        if write:
            entry = arch.pte_mkdirty(entry)
    entry = arch.pte_mkyoung(entry)
    if arch.ptep_set_access_flags(vma, vmf.address, ptep, entry, write):
        arch.update_mmu_cache_range(vma, vmf.address, ptep, 1)
    else:
        k.counters.add(FAULT_SPURIOUS)
        if write:
            arch.flush_tlb_fix_spurious_fault(vma, vmf.address, ptep)
    pte_unmap_unlock(mm, ptep)
    return 0


FAULT_NUMA = counter("numa_hint_faults")


def numa_rebuild_single_mapping(vmf: VmFault, vma: Vma, addr: int, ptep: PtePtr, writable: bool) -> None:
    """Models: mm/memory.c ``numa_rebuild_single_mapping()`` (v6.12)."""
    a = vma.vm_mm.kernel.arch
    old = a.ptep_modify_prot_start(vma, addr, ptep)
    pte = a.pte_mkyoung(a.pte_modify(old, vma.vm_page_prot))
    if writable:
        pte = a.pte_mkwrite(pte)
    a.ptep_modify_prot_commit(vma, addr, ptep, old, pte)
    a.update_mmu_cache_range(vma, addr, ptep, 1)


def do_numa_page(vmf: VmFault) -> int:
    """Resolve a NUMA hinting fault: restore the folio's PTEs (no migration modelled).

    Models: mm/memory.c ``do_numa_page()`` (v6.12) taking the "no migration"
    path: every protnone PTE mapping the folio within the VMA and the page
    table is rebuilt with the VMA's protection (``numa_rebuild_large_mapping``),
    writable again where ``can_change_pte_writable`` allows.

    Context: PTL held (``vmf.pte`` locked by ``handle_pte_fault``).
    """
    from .mprotect import can_change_pte_writable, vma_wants_manual_pte_write_upgrade

    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    k.counters.add(FAULT_NUMA)
    ptep = vmf.pte
    assert ptep is not None
    old_pte = a.ptep_get(ptep)
    if not a.pte_same(old_pte, vmf.orig_pte):
        pte_unmap_unlock(mm, ptep)
        return 0
    upgrade = vma_wants_manual_pte_write_upgrade(vma)
    pte = a.pte_modify(old_pte, vma.vm_page_prot)
    writable = a.pte_write(pte) or (upgrade and can_change_pte_writable(vma, vmf.address, pte))
    folio = vm_normal_folio(vma, vmf.address, pte)
    if folio is None or not folio.test_large():
        numa_rebuild_single_mapping(vmf, vma, vmf.address, ptep, writable)
        pte_unmap_unlock(mm, ptep)
        return 0
    # numa_rebuild_large_mapping(): the whole folio, within the VMA and the table.
    nr = a.pte_pfn(pte) - folio.pfn
    addr_start = vmf.address - (nr << k.page_shift)
    pt_start = vmf.address & ~(a.PMD_SIZE - 1)
    start = max(addr_start, pt_start, vma.vm_start)
    end = min(addr_start + (folio.nr_pages << k.page_shift), pt_start + a.PMD_SIZE, vma.vm_end)
    p = PtePtr(ptep.table, ptep.idx - ((vmf.address - start) >> k.page_shift))
    addr = start
    while addr != end:
        ptent = a.ptep_get(p)
        if a.pte_present(ptent) and a.pte_protnone(ptent):
            if k.folio_range_of_pfn(a.pte_pfn(ptent))[0] == folio.pfn:
                ptent = a.pte_modify(ptent, vma.vm_page_prot)
                w = a.pte_write(ptent) or (upgrade and can_change_pte_writable(vma, addr, ptent))
                numa_rebuild_single_mapping(vmf, vma, addr, p, w)
        p = p + 1
        addr += k.PAGE_SIZE
    pte_unmap_unlock(mm, ptep)
    return 0


def anon_vma_prepare(vma: Vma) -> None:
    """``anon_vma_prepare()``: give the VMA an anon_vma on its first anon page."""
    if vma.anon_vma is None:
        vma.anon_vma = vma.vm_mm.kernel.new_anon_vma()


def pte_range_none(ptep: PtePtr, nr: int) -> bool:
    """``pte_range_none()``: all ``nr`` entries from ``ptep`` are none."""
    return ptep.table.none_count(ptep.idx, nr) == nr


def alloc_anon_folio(vmf: VmFault) -> Folio | None:
    """Allocate the largest enabled, suitable folio whose PTE range is empty.

    Models: mm/memory.c ``alloc_anon_folio()``: try the allowed orders from
    the highest; an order is skipped when its naturally aligned range leaves
    the VMA or has a PTE already; an allocation failure counts
    ``anon_fault_fallback`` and tries the next order; order 0 last.
    """
    from .huge_memory import thp_vma_allowable_orders, thp_vma_suitable_orders

    vma = vmf.vma
    k = vma.vm_mm.kernel
    orders = thp_vma_allowable_orders(vma, (1 << k.PMD_ORDER) - 1)
    orders = thp_vma_suitable_orders(vma, vmf.address, orders)
    if orders and vmf.pte is not None:
        base = PtePtr(vmf.pte.table, 0)
        cand = sorted((o for o in range(k.PMD_ORDER + 1) if orders >> o & 1), reverse=True)
        ok = []
        for order in cand:
            addr = vmf.address & ~((k.PAGE_SIZE << order) - 1)
            if pte_range_none(base + pte_index(k, addr), 1 << order):
                ok = [o for o in cand if o <= order]
                break
        for order in ok:
            folio = k.folio_alloc(order, zero=True)
            if folio is not None:
                return folio
            k.mthp_stat(order, "anon_fault_fallback")
    return k.folio_alloc(0, zero=True)


def do_anonymous_page(vmf: VmFault) -> int:
    """Map a none PTE of anonymous memory.

    Models: mm/memory.c ``do_anonymous_page()``: a read maps the shared zero
    page; a write allocates a folio (``alloc_anon_folio``) and maps all of it
    with one ``set_ptes``.
    """
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    k.counters.add(FAULT_ANON)
    if vma.vm_flags & VM_SHARED:
        return VM_FAULT_SIGSEGV
    vmf.pte = pte_offset_map_lock(mm, vmf.address, alloc=True)
    assert vmf.pte is not None
    if not vmf.flags & FAULT_FLAG_WRITE:
        entry = arch.pte_mkspecial(arch.pfn_pte(k.zero_pfn, vma.vm_page_prot))
        if not arch.pte_none(arch.ptep_get(vmf.pte)):
            pte_unmap_unlock(mm, vmf.pte)
            return 0
        arch.set_pte_at(mm, vmf.address, vmf.pte, entry)
        arch.update_mmu_cache_range(vma, vmf.address, vmf.pte, 1)
        pte_unmap_unlock(mm, vmf.pte)
        return 0
    anon_vma_prepare(vma)
    folio = alloc_anon_folio(vmf)
    if folio is None:
        return VM_FAULT_OOM
    nr_pages = folio.nr_pages
    addr = vmf.address & ~((k.PAGE_SIZE * nr_pages) - 1)
    entry = arch.pfn_pte(folio.pfn, vma.vm_page_prot)
    if vma.vm_flags & VM_WRITE:
        entry = arch.pte_mkwrite(arch.pte_mkdirty(entry))
    ptep = PtePtr(vmf.pte.table, pte_index(k, addr))
    if nr_pages == 1:
        if not arch.pte_none(arch.ptep_get(ptep)):
            k.folio_put(folio)
            pte_unmap_unlock(mm, ptep)
            return 0
    elif not pte_range_none(ptep, nr_pages):
        k.folio_put(folio)
        pte_unmap_unlock(mm, ptep)
        return 0
    folio.ref_add(nr_pages - 1)
    k.counters.add(REF_OPS)
    mm.add_mm_counter(MM_ANONPAGES, nr_pages)
    k.mthp_stat(folio.order, "anon_fault_alloc")
    rmap.folio_add_new_anon_rmap(folio, vma, addr, rmap.RMAP_EXCLUSIVE)
    arch.set_ptes(mm, addr, ptep, entry, nr_pages)
    arch.update_mmu_cache_range(vma, addr, ptep, nr_pages)
    pte_unmap_unlock(mm, ptep)
    return 0


# -- file faults (mm/memory.c do_fault and friends) ---------------------------
def set_pte_range(vmf: VmFault, folio: Folio, page: int, nr: int, addr: int) -> None:
    """Map ``nr`` pages of ``folio`` from ``page`` at ``addr``.

    Models: mm/memory.c ``set_pte_range()``.

    Context: PTL held; ``vmf.pte`` points at the entry for ``addr``.
    """
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    write = bool(vmf.flags & FAULT_FLAG_WRITE)
    entry = arch.pfn_pte(page, vma.vm_page_prot)
    if write:
        entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
    assert vmf.pte is not None
    if write and not vma.vm_flags & VM_SHARED:
        if nr != 1:
            raise KernelBug("VM_BUG_ON_FOLIO", "CoW folio mapped with nr != 1", addr)
        rmap.folio_add_new_anon_rmap(folio, vma, addr, rmap.RMAP_EXCLUSIVE)
    else:
        rmap.folio_add_file_rmap_ptes(folio, page, nr, vma)
    arch.set_ptes(mm, addr, vmf.pte, entry, nr)
    arch.update_mmu_cache_range(vma, addr, vmf.pte, nr)


def do_fault(vmf: VmFault) -> int:
    """Models: mm/memory.c ``do_fault()``."""
    vma = vmf.vma
    vma.vm_mm.kernel.counters.add(FAULT_FILE)
    if not vmf.flags & FAULT_FLAG_WRITE:
        return do_read_fault(vmf)
    if not vma.vm_flags & VM_SHARED:
        return do_cow_fault(vmf)
    return do_shared_fault(vmf)


def do_fault_around(vmf: VmFault) -> int:
    """Map the page-cache folios around the fault (``filemap_map_pages``).

    Models: mm/memory.c ``do_fault_around()`` + mm/filemap.c
    ``filemap_map_pages()``/``filemap_map_folio_range()``: within the
    ``fault_around_bytes`` window (clipped to the VMA and the PMD) map every
    run of none PTEs whose pages are cached, one ``set_pte_range`` per run.
    Returns VM_FAULT_NOPAGE if the faulting page got mapped.
    """
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    f = vma.vm_file
    assert f is not None
    ps = k.PAGE_SIZE
    nr_win = max(1, k.fault_around_bytes // ps)
    pidx = pte_index(k, vmf.address)
    from_pte = max(
        pidx & ~(nr_win - 1), pte_index(k, vmf.address) - ((vmf.address - vma.vm_start) >> k.page_shift)
    )
    pmd_base = vmf.address & ~(k.arch.PMD_SIZE - 1)
    to_pte = min(
        (pidx & ~(nr_win - 1)) + nr_win,
        k.arch.PTRS_PER_PTE,
        pidx + ((vma.vm_end - vmf.address) >> k.page_shift),
    )
    ptep0 = pte_offset_map_lock(mm, vmf.address, alloc=True)
    assert ptep0 is not None
    table = ptep0.table
    ret = 0
    i = from_pte
    while i < to_pte:
        addr = pmd_base + (i << k.page_shift)
        pgoff = vma.linear_page_index(addr)
        folio = f.find_folio(pgoff)
        if folio is None:
            i += 1
            continue
        # Pages of this folio inside the window, mapped as runs of none PTEs.
        first_idx = int(folio.mem.index[folio.pfn])
        end_i = min(to_pte, i + (first_idx + folio.nr_pages - pgoff))
        j = i
        while j < end_i:
            if table.entries[j] != 0:
                j += 1
                continue
            run_start = j
            while j < end_i and table.entries[j] == 0:
                j += 1
            nr = j - run_start
            a = pmd_base + (run_start << k.page_shift)
            page = folio.pfn + (vma.linear_page_index(a) - first_idx)
            folio.ref_add(nr)
            k.counters.add(REF_OPS)
            vmf.pte = PtePtr(table, run_start)
            sub = VmFault(vma, vmf.address, 0)
            sub.pte = vmf.pte
            set_pte_range(sub, folio, page, nr, a)
            mm.add_mm_counter(mm_counter_file(folio, k), nr)
            k.counters.add(FAULT_AROUND_PAGES, nr)
            if a <= vmf.address < a + nr * k.PAGE_SIZE:
                ret = VM_FAULT_NOPAGE
        i = end_i
    k.counters.add("pte.read", to_pte - from_pte)
    pte_unmap_unlock(mm, ptep0)
    return ret


def _do_fault_page(vmf: VmFault) -> tuple[Folio, int] | int:
    """``__do_fault()``: the page-cache folio and page for the fault (reads it in).

    Returns the VM_FAULT_* code instead when there is none:
    VM_FAULT_SIGBUS for a page at or beyond the end of the file
    (``filemap_fault()``: ``index >= DIV_ROUND_UP(i_size, PAGE_SIZE)``;
    ``shmem_fault()`` likewise), VM_FAULT_OOM when it cannot be read in.
    """
    vma = vmf.vma
    f = vma.vm_file
    assert f is not None
    pgoff = vma.linear_page_index(vmf.address)
    if pgoff >= f.nr_pages:
        return VM_FAULT_SIGBUS
    folio = f.get_folio(pgoff)
    if folio is None:
        return VM_FAULT_OOM
    return folio, folio.pfn + (pgoff - int(folio.mem.index[folio.pfn]))


def finish_fault(vmf: VmFault, folio: Folio, page: int) -> int:
    """Map the page (or, for anon shmem, the whole folio) a fault produced.

    Models: mm/memory.c ``finish_fault()`` (v6.12: whole-folio mapping for
    anonymous shmem only; one page otherwise).
    """
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    is_cow = bool(vmf.flags & FAULT_FLAG_WRITE) and not vma.vm_flags & VM_SHARED
    nr_pages = 1
    addr = vmf.address
    f = vma.vm_file
    if not is_cow and f is not None and f.anon_shmem and folio.nr_pages > 1:
        pgoff = vma.linear_page_index(vmf.address)
        idx = pgoff - int(folio.mem.index[folio.pfn])
        start = vmf.address - idx * k.PAGE_SIZE
        end = start + folio.nr_pages * k.PAGE_SIZE
        pmd_start = vmf.address & ~(arch.PMD_SIZE - 1)
        if (
            start >= vma.vm_start
            and end <= vma.vm_end
            and start >= pmd_start
            and end <= pmd_start + arch.PMD_SIZE
        ):
            nr_pages = folio.nr_pages
            addr = start
            page = folio.pfn
    ptep = pte_offset_map_lock(mm, addr, alloc=True)
    assert ptep is not None
    if (nr_pages == 1 and arch.ptep_get(ptep) != 0) or (nr_pages > 1 and not pte_range_none(ptep, nr_pages)):
        pte_unmap_unlock(mm, ptep)
        return VM_FAULT_NOPAGE
    if nr_pages > 1:
        folio.ref_add(nr_pages - 1)
        k.counters.add(REF_OPS)
    vmf.pte = ptep
    set_pte_range(vmf, folio, page, nr_pages, addr)
    mm.add_mm_counter(MM_ANONPAGES if is_cow else mm_counter_file(folio, k), nr_pages)
    pte_unmap_unlock(mm, ptep)
    return 0


def do_read_fault(vmf: VmFault) -> int:
    """Models: mm/memory.c ``do_read_fault()``: fault-around first."""
    k = vmf.vma.vm_mm.kernel
    if k.fault_around_bytes >> k.page_shift > 1:
        ret = do_fault_around(vmf)
        if ret:
            return 0
    got = _do_fault_page(vmf)
    if isinstance(got, int):
        return got
    folio, page = got
    folio.ref_add(1)
    k.counters.add(REF_OPS)
    ret = finish_fault(vmf, folio, page)
    if ret:
        k.folio_put(folio)
    return 0


def do_cow_fault(vmf: VmFault) -> int:
    """Write fault on a private file mapping: copy into a new anon page.

    Models: mm/memory.c ``do_cow_fault()``.
    """
    vma = vmf.vma
    k = vma.vm_mm.kernel
    anon_vma_prepare(vma)
    new = k.folio_alloc(0, zero=False)
    if new is None:
        return VM_FAULT_OOM
    got = _do_fault_page(vmf)
    if isinstance(got, int):
        k.folio_put(new)
        return got
    _, page = got
    k.hw.memory.copy(new.pfn, page, 1)
    k.counters.add(PAGE_COPY)
    ret = finish_fault(vmf, new, new.pfn)
    if ret:
        k.folio_put(new)
    return 0


def do_shared_fault(vmf: VmFault) -> int:
    """Write fault on a shared file mapping: map writable, dirty the folio.

    Models: mm/memory.c ``do_shared_fault()`` + ``fault_dirty_shared_page()``.
    """
    k = vmf.vma.vm_mm.kernel
    got = _do_fault_page(vmf)
    if isinstance(got, int):
        return got
    folio, page = got
    folio.ref_add(1)
    k.counters.add(REF_OPS)
    ret = finish_fault(vmf, folio, page)
    if ret:
        k.folio_put(folio)
        return 0
    folio.mark_dirty()
    return 0


# -- write-protect faults (mm/memory.c do_wp_page) -----------------------------
def folio_mapcount_in_mm(folio: Folio, mm: MmStruct) -> int:
    """How many of ``folio``'s mappings (PTEs, and PMDs counted once) are in ``mm``.

    Model-only (counts no table reads): stands in for CONFIG_MM_ID's
    per-folio ``_mm_id``/``_mm_id_mapcount`` slots, which the kernel keeps
    up to date in the rmap functions.  The kernel's bookkeeping is a "maybe
    shared" bit (``folio_test_large_maybe_mapped_shared()``) that can stay
    set, conservatively, once a third mm mapped the folio; this count is
    exact, which is what the kernel computes in every case with at most two
    mms involved.
    """
    a = mm.kernel.arch
    lo, hi = folio.pfn, folio.pfn + folio.nr_pages
    n = 0
    for table in mm.space.tables.values():
        d = a.ptes_decode(table.entries, ("present", "special", "pfn"))
        n += int((d["present"] & ~d["special"] & (d["pfn"] >= lo) & (d["pfn"] < hi)).sum())
    for pmd in mm.space.pmds.values():
        pte = a.pmd_pte(pmd)
        if a.pte_present(pte) and not a.pte_special(pte) and a.pte_pfn(pte) == folio.pfn:
            n += 1
    return n


def wp_can_reuse_large_anon_folio(folio: Folio, vma: Vma) -> bool:
    """Models: mm/memory.c ``__wp_can_reuse_large_anon_folio()`` (v6.15, CONFIG_MM_ID).

    Commit 1da190f4d0a6 "mm: Copy-on-Write (COW) reuse support for
    PTE-mapped THP" (David Hildenbrand): reuse when the folio is mapped
    more than once, every mapping is in this mm, and every reference is
    from a mapping (refcount == mapcount).  Only with the ``cow_reuse_large``
    option; v6.12 never reuses a page of a large folio.
    """
    k: Kernel = vma.vm_mm.kernel
    if not k.cow_reuse_large:
        # v6.12: copy, which gives the large folio back sooner.
        return False
    mapcount = folio.mapcount_total()
    # Let's just free up a large folio if only a single page is mapped.
    if mapcount <= 1:
        return False
    # (The kernel first frees the swap cache here; the model has none.)
    if mapcount != folio.refcount:
        return False
    # folio_test_large_maybe_mapped_shared(): all mappings in this mm?
    return folio_mapcount_in_mm(folio, vma.vm_mm) == mapcount


def wp_can_reuse_anon_folio(folio: Folio, vma: Vma) -> bool:
    """Models: mm/memory.c ``wp_can_reuse_anon_folio()``.

    A large folio goes to ``wp_can_reuse_large_anon_folio`` (which says no
    in v6.12); a small one is reused with refcount 1.
    """
    if folio.test_large():
        return wp_can_reuse_large_anon_folio(folio, vma)
    return folio.refcount == 1


def wp_page_reuse(vmf: VmFault, folio: Folio | None) -> None:
    """Models: mm/memory.c ``wp_page_reuse()``."""
    vma = vmf.vma
    k = vma.vm_mm.kernel
    arch = k.arch
    assert vmf.pte is not None
    k.counters.add(FAULT_WP_REUSE)
    entry = arch.pte_mkyoung(vmf.orig_pte)
    entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
    if arch.ptep_set_access_flags(vma, vmf.address, vmf.pte, entry, True):
        arch.update_mmu_cache_range(vma, vmf.address, vmf.pte, 1)
    pte_unmap_unlock(vma.vm_mm, vmf.pte)


def wp_page_copy(vmf: VmFault, old: Folio | None) -> int:
    """Break CoW: copy the page into a new order-0 anon folio and map it.

    Models: mm/memory.c ``wp_page_copy()``.
    """
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    arch = k.arch
    unshare = bool(vmf.flags & FAULT_FLAG_UNSHARE)
    k.counters.add(FAULT_WP_COPY)
    anon_vma_prepare(vma)
    old_pfn = arch.pte_pfn(vmf.orig_pte)
    if old_pfn == k.zero_pfn:
        new = k.folio_alloc(0, zero=True)
    else:
        new = k.folio_alloc(0, zero=False)
        if new is not None:
            k.hw.memory.copy(new.pfn, old_pfn, 1)
            k.counters.add(PAGE_COPY)
    if new is None:
        if old is not None:
            k.folio_put(old)
        return VM_FAULT_OOM
    ptep = vmf.pte
    assert ptep is not None
    if arch.pte_same(arch.ptep_get(ptep), vmf.orig_pte):
        if old is not None:
            if not old.test_anon():
                mm.add_mm_counter(mm_counter_file(old, k), -1)
                mm.add_mm_counter(MM_ANONPAGES, 1)
        else:
            mm.add_mm_counter(MM_ANONPAGES, 1)
        entry = arch.pfn_pte(new.pfn, vma.vm_page_prot)
        if unshare:
            if arch.pte_soft_dirty(vmf.orig_pte):
                entry = arch.pte_mksoft_dirty(entry)
            if arch.pte_uffd_wp(vmf.orig_pte):
                entry = arch.pte_mkuffd_wp(entry)
        else:
            entry = maybe_mkwrite(arch.pte_mkdirty(entry), vma)
        # Clear and flush first, so no CPU keeps the old translation.
        arch.ptep_clear_flush(vma, vmf.address, ptep)
        rmap.folio_add_new_anon_rmap(new, vma, vmf.address, rmap.RMAP_EXCLUSIVE)
        arch.set_pte_at(mm, vmf.address, ptep, entry)
        arch.update_mmu_cache_range(vma, vmf.address, ptep, 1)
        if old is not None:
            rmap.folio_remove_rmap_ptes(old, old_pfn, 1, vma)
            k.folio_put(old)  # the mapping's reference
        pte_unmap_unlock(mm, ptep)
    else:
        k.folio_put(new)
        pte_unmap_unlock(mm, ptep)
    if old is not None:
        k.folio_put(old)  # the reference do_wp_page took
    return 0


def do_wp_page(vmf: VmFault) -> int:
    """Handle a write (or unshare) fault on a present, write-protected PTE.

    Models: mm/memory.c ``do_wp_page()`` (v6.12): shared mappings become
    writable in place; a private anon page is reused when it is
    PageAnonExclusive or ``wp_can_reuse_anon_folio``; otherwise it is copied.
    """
    vma = vmf.vma
    k = vma.vm_mm.kernel
    k.counters.add(FAULT_WP)
    unshare = bool(vmf.flags & FAULT_FLAG_UNSHARE)
    folio = vm_normal_folio(vma, vmf.address, vmf.orig_pte)
    page = k.arch.pte_pfn(vmf.orig_pte)
    if not unshare and vma.vm_flags & VM_UFFD_WP and k.arch.pte_uffd_wp(vmf.orig_pte):
        # userfaultfd_pte_wp(): the monitor must resolve it (handle_userfault).
        pte_unmap_unlock(vma.vm_mm, vmf.pte)
        return VM_FAULT_UFFD_WP
    if vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        if unshare:
            pte_unmap_unlock(vma.vm_mm, vmf.pte)
            return 0
        wp_page_reuse(vmf, folio)
        if folio is not None:
            folio.mark_dirty()
        return 0
    if (
        folio is not None
        and folio.test_anon()
        and (folio.page_anon_exclusive(page) or wp_can_reuse_anon_folio(folio, vma))
    ):
        if not folio.page_anon_exclusive(page):
            folio.set_anon_exclusive(page)
        if unshare:
            pte_unmap_unlock(vma.vm_mm, vmf.pte)
            return 0
        wp_page_reuse(vmf, folio)
        return 0
    if folio is not None:
        folio.ref_add(1)
        k.counters.add(REF_OPS)
    return wp_page_copy(vmf, folio)


# ---------------------------------------------------------------------------
# fork: copy_page_range
# ---------------------------------------------------------------------------
def folio_pte_batch(
    folio: Folio,
    addr: int,
    start_ptep: PtePtr,
    pte: int,
    max_nr: int,
    flags: int,
    any_writable: list[bool] | None,
) -> int:
    """Count the PTEs from ``start_ptep`` that map consecutive pages of ``folio``.

    Models: mm/internal.h ``folio_pte_batch()`` (v6.12): compare each PTE
    with the expected one after ``pte_wrprotect`` + ``pte_mkold`` (write and
    young are always ignored) and, per ``flags``, ``pte_mkclean`` and
    ``pte_clear_soft_dirty``; stop at the first mismatch (none, swap,
    another pfn, protnone, uffd-wp, a different dirty bit) or at the end of
    the folio.  ``any_writable[0]`` is set if a PTE after the first is
    writable.  Follows ``pte_batch_hint`` (skips the tail of a contiguous
    block: one read per block).

    Context: PTL held; ``pte`` maps a page of the large ``folio``;
    ``max_nr`` stays within one VMA and one page table.
    """
    k: Kernel = folio.mem.owner
    a = k.arch
    bug_none = k.bug("fork_batch_across_pte_none")
    bug_uffd = k.bug("fork_batch_ignores_uffd_wp")
    bug_protnone = k.bug("fork_batch_mixes_protnone")
    first_prot = a.pte_pgprot(pte)

    def norm(p: int) -> int:
        if flags & FPB_IGNORE_DIRTY:
            p = a.pte_mkclean(p)
        if flags & FPB_IGNORE_SOFT_DIRTY:
            p = a.pte_clear_soft_dirty(p)
        if bug_uffd:  # bug catalog: the uffd-wp bit is ignored
            p = a.pte_clear_uffd_wp(p)
        if bug_protnone and a.pte_present(p):  # bug catalog: protection ignored
            p = a.pte_modify(p, first_prot)
        return a.pte_wrprotect(a.pte_mkold(p))

    folio_end_pfn = folio.pfn + folio.nr_pages
    nr = a.pte_batch_hint(start_ptep, pte)
    expected = norm(a.pte_advance_pfn(pte, nr))
    ptep = start_ptep + nr
    end_idx = start_ptep.idx + max_nr
    while ptep.idx < end_idx:
        p = a.ptep_get(ptep)
        if bug_none and a.pte_none(p):
            # Bug catalog: a hole is taken as the expected next PTE.
            expected = a.pte_advance_pfn(expected, 1)
            ptep = ptep + 1
            continue
        writable = a.pte_write(p)
        p = norm(p)
        if not a.pte_same(p, expected):
            break
        if a.pte_pfn(p) >= folio_end_pfn:
            break
        if any_writable is not None and writable:
            any_writable[0] = True
        h = a.pte_batch_hint(ptep, p)
        expected = a.pte_advance_pfn(expected, h)
        ptep = ptep + h
    return min(ptep.idx - start_ptep.idx, max_nr)


def _copy_present_ptes(
    dst_vma: Vma, src_vma: Vma, dst_pte: PtePtr, src_pte: PtePtr, pte: int, addr: int, nr: int
) -> None:
    """Write-protect the parent (CoW) and map the child.

    Models: mm/memory.c ``__copy_present_ptes()``.
    """
    src_mm = src_vma.vm_mm
    k = src_mm.kernel
    a = k.arch
    if is_cow_mapping(src_vma.vm_flags) and a.pte_write(pte):
        a.wrprotect_ptes(src_mm, addr, src_pte, nr)
        pte = a.pte_wrprotect(pte)
    if src_vma.vm_flags & VM_SHARED:
        pte = a.pte_mkclean(pte)
    pte = a.pte_mkold(pte)
    if not dst_vma.vm_flags & VM_UFFD_WP:
        pte = a.pte_clear_uffd_wp(pte)
    a.set_ptes(dst_vma.vm_mm, addr, dst_pte, pte, nr)


def copy_present_page(
    dst_vma: Vma,
    src_vma: Vma,
    dst_pte: PtePtr,
    src_pte: PtePtr,
    addr: int,
    rss: list[int],
    prealloc: list[Folio | None],
    page: int,
) -> int:
    """Give the child its own copy of a possibly pinned anon page.

    Models: mm/memory.c ``copy_present_page()``: returns -EAGAIN when no
    page was preallocated (the caller drops its locks and allocates one).
    """
    k = src_vma.vm_mm.kernel
    a = k.arch
    new = prealloc[0]
    if new is None:
        return -EAGAIN
    prealloc[0] = None
    k.hw.memory.copy(new.pfn, page, 1)
    k.counters.add(PAGE_COPY)
    k.counters.add(FORK_COPY_PAGE)
    anon_vma_prepare(dst_vma)
    rmap.folio_add_new_anon_rmap(new, dst_vma, addr, rmap.RMAP_EXCLUSIVE)
    rss[MM_ANONPAGES] += 1
    pte = a.pfn_pte(new.pfn, dst_vma.vm_page_prot)
    pte = maybe_mkwrite(a.pte_mkdirty(pte), dst_vma)
    a.set_pte_at(dst_vma.vm_mm, addr, dst_pte, pte)
    return 0


def _dup_anon_rmap_batch(k: Kernel, folio: Folio, page: int, nr: int, src_vma: Vma) -> int:
    """Duplicate the anon rmap of a fork batch; return the pages done (0: none, -EBUSY).

    ``batch_rmap``: one ``folio_try_dup_anon_rmap_ptes()`` for the batch
    (all or nothing).  Otherwise one call per page as the v4 posting's
    ``page_try_dup_anon_rmap()`` loop did: it stops at the first page that
    may be pinned.
    """
    if k.batch_rmap:
        return 0 if rmap.folio_try_dup_anon_rmap_ptes(folio, page, nr, src_vma) else nr
    done = 0
    while done < nr and not rmap.folio_try_dup_anon_rmap_ptes(folio, page + done, 1, src_vma):
        done += 1
    return done


def _dup_file_rmap_batch(k: Kernel, folio: Folio, page: int, nr: int, dst_vma: Vma) -> None:
    """``folio_dup_file_rmap_ptes()`` for a batch, or per page without ``batch_rmap``."""
    if k.batch_rmap:
        rmap.folio_dup_file_rmap_ptes(folio, page, nr, dst_vma)
        return
    for i in range(nr):
        rmap.folio_dup_file_rmap_ptes(folio, page + i, 1, dst_vma)


def copy_present_ptes(
    dst_vma: Vma,
    src_vma: Vma,
    dst_pte: PtePtr,
    src_pte: PtePtr,
    pte: int,
    addr: int,
    max_nr: int,
    rss: list[int],
    prealloc: list[Folio | None],
) -> int:
    """Copy one present PTE, or a batch mapping consecutive pages of a folio.

    Models: mm/memory.c ``copy_present_ptes()`` (v6.12): for a large folio
    (and no preallocated page), ``folio_pte_batch`` finds the run; the
    refcount is raised for the whole batch *before* the mapcounts
    (``folio_try_dup_anon_rmap_ptes``); a possibly pinned exclusive anon
    page makes the batch fail with -EAGAIN and be copied page by page.
    Returns the number of PTEs copied or a negative errno.

    Context: both PTLs held; ``max_nr`` within one VMA and one table.
    """
    src_mm = src_vma.vm_mm
    k = src_mm.kernel
    a = k.arch
    k.counters.add(FORK_CALLS)
    folio = vm_normal_folio(src_vma, addr, pte)
    if folio is None:
        _copy_present_ptes(dst_vma, src_vma, dst_pte, src_pte, pte, addr, 1)
        k.counters.add(FORK_PTES)
        return 1
    page = a.pte_pfn(pte)
    if k.batch_fork and k.batch_extent == "arch":
        # The v4 posting's pte_batch_remaining(): the arch's block, or 1.
        max_nr = min(max_nr, a.pte_batch_hint(src_pte, pte))
    if k.batch_fork and prealloc[0] is None and folio.test_large() and max_nr != 1:
        flags = FPB_IGNORE_SOFT_DIRTY
        if src_vma.vm_flags & VM_SHARED or k.bug("fork_batch_drops_any_dirty"):
            flags |= FPB_IGNORE_DIRTY
        any_writable = [False]
        nr = folio_pte_batch(folio, addr, src_pte, pte, max_nr, flags, any_writable)
        # Raise the refcount before the mapcounts: a folio must never have
        # more mappings than references (a concurrent folio_put could free it).
        rmap_first = k.bug("fork_mapcount_before_refcount")
        if not rmap_first:
            folio.ref_add(nr)
            k.counters.add(REF_OPS)
        if folio.test_anon():
            done = _dup_anon_rmap_batch(k, folio, page, nr, src_vma)
            if done == 0:
                if not rmap_first:
                    folio.ref_sub(nr)
                    k.counters.add(REF_OPS)
                return -EAGAIN
            if done < nr:
                # One rmap call per page (batch_rmap=False): a page that may be
                # pinned ends the batch before it; the next call copies it.
                if not rmap_first:
                    folio.ref_sub(nr - done)
                    k.counters.add(REF_OPS)
                nr = done
            rss[MM_ANONPAGES] += nr
        else:
            _dup_file_rmap_batch(k, folio, page, nr, dst_vma)
            rss[mm_counter_file(folio, k)] += nr
        if rmap_first:
            folio.ref_add(nr)
            k.counters.add(REF_OPS)
        if any_writable[0] and not k.bug("fork_batch_ignores_write"):
            pte = a.pte_mkwrite(pte)
        _copy_present_ptes(dst_vma, src_vma, dst_pte, src_pte, pte, addr, nr)
        k.counters.add(FORK_PTES, nr)
        if nr > 1:
            k.counters.add(FORK_BATCH)
        return nr
    folio.ref_add(1)
    k.counters.add(REF_OPS)
    if folio.test_anon():
        if rmap.folio_try_dup_anon_rmap_ptes(folio, page, 1, src_vma):
            k.folio_put(folio)
            return copy_present_page(dst_vma, src_vma, dst_pte, src_pte, addr, rss, prealloc, page) or 1
        rss[MM_ANONPAGES] += 1
    else:
        rmap.folio_dup_file_rmap_ptes(folio, page, 1, dst_vma)
        rss[mm_counter_file(folio, k)] += 1
    _copy_present_ptes(dst_vma, src_vma, dst_pte, src_pte, pte, addr, 1)
    k.counters.add(FORK_PTES)
    return 1


def copy_pte_range(dst_vma: Vma, src_vma: Vma, pmd_index: int, addr: int, end: int) -> int:
    """Copy the PTEs of ``[addr, end)`` (within one page table) to the child.

    Models: mm/memory.c ``copy_pte_range()``: the loop accounts progress (1
    per none PTE, 8 per copied PTE) and, once it reaches 32, is a point
    where the kernel drops both PTLs if rescheduling is due or a lock is
    contended; every such point is recorded (``fork.lock_break_point``) and
    the rule checker verifies the tables there.
    """
    dst_mm = dst_vma.vm_mm
    src_mm = src_vma.vm_mm
    k = src_mm.kernel
    a = k.arch
    src_table = src_mm.space.pte_table(pmd_index)
    if src_table is None:
        return 0
    prealloc: list[Folio | None] = [None]
    while True:  # again:
        rss = [0] * 4
        progress = 0
        dst_pte = pte_offset_map_lock(dst_mm, addr, alloc=True)
        src_pte = pte_offset_map_lock(src_mm, addr)
        assert dst_pte is not None and src_pte is not None
        ret = 0
        # Vectorised skip of none PTEs: each one is one unit of progress,
        # and a lock-break point falls every 32 units as in the C loop.
        ents = src_table.entries
        while addr < end:
            if progress >= 32:
                progress = 0
                k.counters.add(FORK_LOCK_BREAK)
                if k.on_lock_break is not None:
                    k.on_lock_break(src_mm, addr)
                a.ptl_release(src_mm, src_pte.table)
                a.ptl_release(dst_mm, dst_pte.table)
            ptent = a.ptep_get(src_pte)
            if ptent == 0:
                # Skip a run of none PTEs in one step (same progress accounting).
                i = src_pte.idx
                lim = i + ((end - addr) >> k.page_shift)
                j = i + 1
                room = 32 - progress - 1
                while j < lim and room > 0 and ents[j] == 0:
                    j += 1
                    room -= 1
                n = j - i
                if n > 1:
                    k.counters.add("pte.read", n - 1)
                progress += n
                src_pte = src_pte + n
                dst_pte = dst_pte + n
                addr += n << k.page_shift
                continue
            if not a.pte_present(ptent):
                raise KernelBug("VM_BUG_ON", "copy of swap entries is not modelled", addr, [ptent])
            max_nr = (end - addr) >> k.page_shift
            ret = copy_present_ptes(dst_vma, src_vma, dst_pte, src_pte, ptent, addr, max_nr, rss, prealloc)
            if ret == -EAGAIN:
                break
            nr = ret
            ret = 0
            progress += 8 * nr
            src_pte = src_pte + nr
            dst_pte = dst_pte + nr
            addr += nr << k.page_shift
        for i, v in enumerate(rss):
            if v:
                dst_mm.add_mm_counter(i, v)
        pte_unmap_unlock(src_mm, src_pte)
        pte_unmap_unlock(dst_mm, dst_pte)
        if ret == -EAGAIN:
            k.counters.add(FORK_AGAIN)
            prealloc[0] = k.folio_alloc(0, zero=False)
            if prealloc[0] is None:
                return -12
            continue
        if prealloc[0] is not None:
            k.folio_put(prealloc[0])
        return 0


def copy_page_range(dst_vma: Vma, src_vma: Vma) -> int:
    """Copy the page tables of one VMA at fork.

    Models: mm/memory.c ``copy_page_range()`` (with ``vma_needs_copy``:
    VMAs without anon pages are not copied; the child faults them in).
    """
    from . import huge_memory

    if not vma_needs_copy(dst_vma, src_vma):
        return 0
    k = src_vma.vm_mm.kernel
    if k.fast_paths:
        # Model-only: whole tables at a time where that gives the same result.
        from .memory_bulk import copy_page_range_bulk

        bulk = copy_page_range_bulk(dst_vma, src_vma)
        if bulk is not None:
            return bulk
    pmd_size = k.arch.PMD_SIZE
    addr = src_vma.vm_start
    end = src_vma.vm_end
    while addr < end:
        next_ = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        pmd_idx = addr >> k.arch.PMD_SHIFT
        if pmd_idx in src_vma.vm_mm.space.pmds:
            if huge_memory.copy_huge_pmd(dst_vma.vm_mm, src_vma.vm_mm, pmd_idx, addr, dst_vma, src_vma) == 0:
                addr = next_
                continue
        ret = copy_pte_range(dst_vma, src_vma, pmd_idx, addr, next_)
        if ret:
            return ret
        addr = next_
    return 0


def vma_needs_copy(dst_vma: Vma, src_vma: Vma) -> bool:
    """Models: mm/memory.c ``vma_needs_copy()``."""
    if dst_vma.vm_flags & VM_UFFD_WP:
        return True
    return src_vma.anon_vma is not None


# ---------------------------------------------------------------------------
# zap
# ---------------------------------------------------------------------------
def zap_present_folio_ptes(
    tlb: "MmuGather",
    vma: Vma,
    folio: Folio,
    page: int,
    ptep: PtePtr,
    ptent: int,
    nr: int,
    addr: int,
    rss: list[int],
) -> None:
    """Unmap ``nr`` PTEs of one folio.

    Models: mm/memory.c ``zap_present_folio_ptes()``: file folios gather
    dirty/young (``get_and_clear_full_ptes``) and keep their dirty state;
    anon folios just clear (``clear_full_ptes``).
    """
    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    if not folio.test_anon():
        ptent = a.get_and_clear_full_ptes(mm, addr, ptep, nr, tlb.fullmm)
        if a.pte_dirty(ptent):
            folio.mark_dirty()
        rss[mm_counter_file(folio, k)] -= nr
    else:
        a.clear_full_ptes(mm, addr, ptep, nr, tlb.fullmm)
        rss[MM_ANONPAGES] -= nr
    tlb.tlb_remove_tlb_entries(ptep, nr, addr)
    if k.batch_rmap:
        rmap.folio_remove_rmap_ptes(folio, page, nr, vma)
        tlb.tlb_remove_folio_pages(folio, nr)
    else:
        # The v4 posting's batched zap: page_remove_rmap() and
        # __tlb_remove_page() per page (each reference dropped on its own).
        for i in range(nr):
            rmap.folio_remove_rmap_ptes(folio, page + i, 1, vma)
        for _ in range(nr):
            tlb.tlb_remove_folio_pages(folio, 1)
    k.counters.add(ZAP_PTES, nr)
    if nr > 1:
        k.counters.add(ZAP_BATCH)


def zap_present_ptes(
    tlb: "MmuGather", vma: Vma, ptep: PtePtr, ptent: int, max_nr: int, addr: int, rss: list[int]
) -> int:
    """Models: mm/memory.c ``zap_present_ptes()``; returns PTEs zapped."""
    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    k.counters.add(ZAP_CALLS)
    folio = vm_normal_folio(vma, addr, ptent)
    if folio is None:
        a.ptep_get_and_clear_full(mm, addr, ptep, tlb.fullmm)
        tlb.tlb_remove_tlb_entries(ptep, 1, addr)
        k.counters.add(ZAP_PTES)
        return 1
    page = a.pte_pfn(ptent)
    if k.batch_zap and k.batch_extent == "arch":
        max_nr = min(max_nr, a.pte_batch_hint(ptep, ptent))
    if k.batch_zap and folio.test_large() and max_nr != 1:
        nr = folio_pte_batch(folio, addr, ptep, ptent, max_nr, FPB_IGNORE_DIRTY | FPB_IGNORE_SOFT_DIRTY, None)
        zap_present_folio_ptes(tlb, vma, folio, page, ptep, ptent, nr, addr, rss)
        return nr
    zap_present_folio_ptes(tlb, vma, folio, page, ptep, ptent, 1, addr, rss)
    return 1


def zap_pte_range(tlb: "MmuGather", vma: Vma, pmd_index: int, addr: int, end: int) -> None:
    """Unmap the PTEs of ``[addr, end)`` within one page table.

    Models: mm/memory.c ``zap_pte_range()``.
    """
    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    table = mm.space.pte_table(pmd_index)
    if table is None:
        return
    rss = [0] * 4
    ptep = pte_offset_map_lock(mm, addr)
    assert ptep is not None
    ents = table.entries
    while addr < end:
        i = ptep.idx
        lim = i + ((end - addr) >> k.page_shift)
        # Skip runs of none PTEs (one read each, as the loop does).
        if ents[i] == 0:
            j = i + 1
            while j < lim and ents[j] == 0:
                j += 1
            k.counters.add("pte.read", j - i)
            ptep = ptep + (j - i)
            addr += (j - i) << k.page_shift
            continue
        ptent = a.ptep_get(ptep)
        if not a.pte_present(ptent):
            raise KernelBug("VM_BUG_ON", "zap of swap entries is not modelled", addr, [ptent])
        nr = zap_present_ptes(tlb, vma, ptep, ptent, lim - i, addr, rss)
        ptep = ptep + nr
        addr += nr << k.page_shift
    for i2, v in enumerate(rss):
        if v:
            mm.add_mm_counter(i2, v)
    pte_unmap_unlock(mm, ptep)


def unmap_page_range(tlb: "MmuGather", vma: Vma, addr: int, end: int) -> None:
    """Models: mm/memory.c ``unmap_page_range()`` (PMD-level walk)."""
    from . import huge_memory

    k = vma.vm_mm.kernel
    if k.fast_paths:
        from .memory_bulk import unmap_page_range_bulk

        if unmap_page_range_bulk(tlb, vma, addr, end):
            return
    pmd_size = k.arch.PMD_SIZE
    while addr < end:
        next_ = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        pmd_idx = addr >> k.arch.PMD_SHIFT
        if pmd_idx in vma.vm_mm.space.pmds:
            if next_ - addr == pmd_size:
                huge_memory.zap_huge_pmd(tlb, vma, pmd_idx, addr)
                addr = next_
                continue
            huge_memory.split_huge_pmd(vma, pmd_idx, addr)
        zap_pte_range(tlb, vma, pmd_idx, addr, next_)
        addr = next_


def unmap_vmas(tlb: "MmuGather", vmas: list[Vma], start: int, end: int) -> None:
    """Models: mm/memory.c ``unmap_vmas()``."""
    for vma in vmas:
        s = max(start, vma.vm_start)
        e = min(end, vma.vm_end)
        if s < e:
            tlb.tlb_start_vma(vma)
            unmap_page_range(tlb, vma, s, e)
            tlb.tlb_end_vma(vma)


def zap_page_range_single(vma: Vma, address: int, size: int) -> None:
    """Models: mm/memory.c ``zap_page_range_single()`` (MADV_DONTNEED)."""
    from .mmu_gather import MmuGather

    tlb = MmuGather(vma.vm_mm, fullmm=False)
    unmap_vmas(tlb, [vma], address, address + size)
    tlb.tlb_finish_mmu()


__all__ += ["unmap_page_range", "vma_needs_copy", "maybe_mkwrite", "anon_vma_prepare"]
_ = (MM_FILEPAGES,)
