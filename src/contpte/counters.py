"""Counters: declared once, each with a unit and a description.

Every counter the model can count is declared in this module, in the
catalog below, before any other module is imported: the set is closed and
does not depend on which layers were imported or in what order, so
``contpte.Machine.describe_counter(name)`` works before any Machine exists
and ``Machine.stats()`` can list every counter, zeros included, as
``/proc/vmstat`` does.  A *family* (``tlbi``, ``dsb``, ``fault``,
``contpte.unfold``, ``call``, ``mthp``) groups counters of one meaning;
its members are enumerated here too (the TLBI instructions the hardware
executes, the public functions that can unfold a block, the per-size mTHP
stats of every size a page size allows, ...).

Every name has a small integer id, given by the catalog, and a
``Counters`` keeps one int64 per id in an array, so the compiled core
counts with one indexed add (``count(counters, FORK_PTES, nr)``, inlined
from counters.pxd).  Modules take their ids with ``counter(name)``, which
refuses an undeclared name at import time (compiled modules keep the id in
a C variable: ``FORK_PTES = cython.declare(i64, counter("fork.ptes"))``);
``Counters.add`` refuses an undeclared name at run time, so a typo cannot
silently create a new statistic.  The set being closed, every id exists
before any ``Counters`` is made, and the arrays never grow.

Totals are formulas over counters (see ``TOTALS``), never counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import cython
import numpy as np

from .errors import ModelUsageError

if not cython.compiled:
    from .cdefs import i64

__all__ = [
    "CounterSpec",
    "Counters",
    "counter",
    "counter_name",
    "declare",
    "declare_family",
    "declare_total",
    "DECLARED",
    "FAMILIES",
    "FAMILY_MEMBERS",
    "TOTALS",
    "describe",
    "counter_names",
    "mthp_size_name",
    "TLBI_NAMES",
    "DSB_NAMES",
    "HW_FAULT_KINDS",
    "UNFOLD_CALLERS",
    "CONTPTE_CALLS",
    "MM_CALLS",
    "MTHP_STATS",
    "PAGE_SHIFTS",
]


@dataclass(frozen=True)
class CounterSpec:
    """One declared counter (or family of counters)."""

    name: str
    unit: str
    description: str


DECLARED: dict[str, CounterSpec] = {}
"""Every counter, by name (family members included)."""
FAMILIES: dict[str, CounterSpec] = {}
"""Family prefix -> the meaning its members share."""
FAMILY_MEMBERS: dict[str, tuple[str, ...]] = {}
"""Family prefix -> the full names of its members (a closed set)."""
TOTALS: dict[str, tuple[str, Callable[[Mapping[str, int]], int]]] = {}
"""Total name -> (description, formula over a counter mapping)."""
_MTHP_PAGE_SHIFTS: dict[str, frozenset[int]] = {}
"""Per-size mTHP counter -> the page shifts whose machines have that size."""
_IDS: dict[str, int] = {}
"""Counter name -> id (the index of its value in ``Counters.v``)."""
_NAMES: list[str] = []
"""Counter id -> name."""


def declare(name: str, unit: str, description: str) -> str:
    """Declare one counter; returns its name.  Used by the catalog below."""
    spec = CounterSpec(name, unit, description)
    old = DECLARED.get(name)
    if old is not None and old != spec:
        raise ModelUsageError(f"counter {name!r} declared twice with different meanings")
    DECLARED[name] = spec
    if name not in _IDS:
        _IDS[name] = len(_NAMES)
        _NAMES.append(name)
    return name


def declare_family(
    prefix: str,
    unit: str,
    description: str,
    members: Iterable[str],
    member_description: Callable[[str], str] | None = None,
) -> tuple[str, ...]:
    """Declare a family: one counter ``prefix + '.' + member`` per member.

    Returns the members' full names.  Each member has the family's unit and
    ``member_description(member)`` as description (default: the family's).
    """
    spec = CounterSpec(prefix, unit, description)
    old = FAMILIES.get(prefix)
    if old is not None and old != spec:
        raise ModelUsageError(f"counter family {prefix!r} declared twice with different meanings")
    FAMILIES[prefix] = spec
    names = tuple(
        declare(f"{prefix}.{m}", unit, member_description(m) if member_description else description)
        for m in members
    )
    FAMILY_MEMBERS[prefix] = tuple(dict.fromkeys(FAMILY_MEMBERS.get(prefix, ()) + names))
    return names


def declare_total(name: str, description: str, formula: Callable[[Mapping[str, int]], int]) -> None:
    """Declare a total: a formula over counters, computed by ``Counters.totals``."""
    TOTALS[name] = (description, formula)


def counter(name: str) -> int:
    """The id of a declared counter; raises for any other name.

    Modules take their ids with it (``FOLD = counter("contpte.fold")``).
    """
    i = _IDS.get(name)
    if i is None:
        raise ModelUsageError(f"counter {name!r} is not declared (see the catalog in contpte.counters)")
    return i


def counter_name(i: int) -> str:
    """The name of counter id ``i``."""
    return _NAMES[i]


def describe(name: str) -> CounterSpec:
    """Return the spec of a counter name, or of a family prefix."""
    spec = DECLARED.get(name) or FAMILIES.get(name)
    if spec is not None:
        return spec
    raise ModelUsageError(f"counter {name!r} is not declared (see contpte.counters)")


def _family_sum(prefix: str) -> Callable[[Mapping[str, int]], int]:
    def total(snap: Mapping[str, int]) -> int:
        return sum(snap.get(k, 0) for k in FAMILY_MEMBERS[prefix])

    return total


@cython.final
@cython.cclass
class Counters:
    """A set of counter values: one int64 per declared counter, by id.

    ``v`` is the array.  The compiled core counts with ``count(counters,
    ID, n)`` (inlined from counters.pxd); everything else uses ``add`` with
    a declared name or an id.
    """

    def __init__(self) -> None:
        self.v = np.zeros(len(_NAMES), dtype=np.int64)

    @cython.ccall
    def inc(self, i: i64, n: i64) -> None:
        """Add ``n`` to counter id ``i``."""
        if i < 0 or i >= self.v.shape[0]:
            raise ModelUsageError(f"counter id {i} is not declared (see contpte.counters)")
        self.v[i] += n

    def add(self, name: str | int, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (a declared name or an id)."""
        self.inc(name if isinstance(name, int) else counter(name), n)

    def get(self, name: str) -> int:
        """The value of counter ``name`` (a declared name)."""
        return cython.cast(i64, self.v[counter(name)])

    def snapshot(self) -> dict[str, int]:
        """A plain dict of every non-zero counter."""
        vals = np.asarray(self.v)
        return {_NAMES[i]: int(vals[i]) for i in np.flatnonzero(vals).tolist()}

    def values_of(self, names: Iterable[str]) -> dict[str, int]:
        """The values of ``names`` (declared names), zeros included."""
        vals = np.asarray(self.v)
        return {name: int(vals[_IDS[name]]) for name in names}

    def reset(self) -> None:
        np.asarray(self.v)[:] = 0

    def totals(self) -> dict[str, int]:
        snap = self.snapshot()
        return {name: int(f(snap)) for name, (_, f) in TOTALS.items()}

    @staticmethod
    def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
        """Counter deltas between two snapshots (non-zero only)."""
        keys: Iterable[str] = set(after) | set(before)
        out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        return {k: v for k, v in sorted(out.items()) if v}


if not cython.compiled:

    def count(c: Counters, i: int, n: int) -> None:
        """Add ``n`` to counter id ``i`` (compiled: the inline function of counters.pxd)."""
        c.v[i] += n


def mthp_size_name(page_size: int, order: int) -> str:
    """The sysfs name of a folio size: ``64kB`` for order 4 with 4K pages."""
    return f"{(page_size << order) // 1024}kB"


def counter_names(page_shift: int) -> tuple[str, ...]:
    """Every counter a machine with this page size has, sorted by name.

    All declared counters except the per-size mTHP stats of sizes another
    page size has (``hugepages-<size>kB`` exists only for orders
    2..PMD_ORDER of the machine's own page size).
    """
    return tuple(sorted(n for n in DECLARED if page_shift in _MTHP_PAGE_SHIFTS.get(n, (page_shift,))))


# ----------------------------------------------------------------------
# The catalog.  Grouped by the layer that counts; names follow the kernel
# where it has them (/proc/vmstat, hugepages-<size>kB/stats/).
# ----------------------------------------------------------------------

# -- software descriptor accesses (counted by hw/tables.py and arch) -----
declare("pte.read", "descriptor reads", "page-table descriptor loads by software (kernel)")
declare("pte.write", "descriptor writes", "page-table descriptor stores by software, atomics included")
declare("pte.atomic", "atomic RMWs", "atomic read-modify-writes of descriptors (xchg/cmpxchg) by software")
declare("pmd.write", "descriptor writes", "level-2 (PMD) descriptor stores by software")

# -- hardware (hw/hardware.py) -------------------------------------------
declare("tlb.hit", "lookups", "user accesses (pages) served by a TLB entry")
declare("tlb.miss", "lookups", "user accesses (pages) that found no TLB entry")
declare("tlb.walk", "walks", "translation table walks (misses and write-clean re-walks)")
declare(
    "tlb.conflict", "fills", "TLB fills overlapping an entry of another size (TLB conflict, DFSC 0b110000)"
)
declare("hw.af_update", "atomic RMWs", "hardware Access flag updates (FEAT_HAFDBS), not software writes")
declare(
    "hw.dirty_update",
    "atomic RMWs",
    "hardware dirty-state updates: AP[2] cleared (FEAT_HAFDBS), not software writes",
)
declare("ipi.sent", "IPIs", "inter-processor interrupts sent")
declare(
    "dvm.sync",
    "syncs",
    "DSBs (ish/osh/sy) that waited for broadcast TLB maintenance this CPU issued since its last such "
    "DSB to complete on every CPU (a DVM Sync round trip); a DSB with none outstanding is a plain barrier",
)

#: The TLBI instructions the hardware executes (``Hardware.tlbi``/``tlbi_range``
#: on the VMSA format, each local, IS or OS; INVLPG/INVPCID on the Flat format).
TLBI_NAMES: tuple[str, ...] = (
    *(
        op + sh
        for op in (
            "VAE1",
            "VALE1",
            "VAAE1",
            "VAALE1",
            "ASIDE1",
            "VMALLE1",
            "RVAE1",
            "RVALE1",
            "RVAAE1",
            "RVAALE1",
        )
        for sh in ("", "IS", "OS")
    ),
    "INVLPG",
    "INVPCID",
)
#: The DSB shareability domains (``Hardware.dsb``).
DSB_NAMES: tuple[str, ...] = ("ish", "ishst", "nsh", "nshst", "osh", "oshst", "sy", "st")
#: The kinds of fault a user access takes (``HwFault.kind``).
HW_FAULT_KINDS: tuple[str, ...] = ("translation", "permission", "access_flag")

declare_family(
    "tlbi",
    "instructions",
    "TLB maintenance instructions issued, by Arm (or x86) name",
    TLBI_NAMES,
    lambda op: f"x86 {op} instructions issued" if op.startswith("INV") else f"TLBI {op} instructions issued",
)
declare_family(
    "dsb",
    "barriers",
    "DSB barriers issued, by shareability domain",
    DSB_NAMES,
    lambda d: f"DSB {d.upper()} barriers issued",
)
declare_family(
    "fault",
    "faults",
    "hardware faults taken by user accesses, by kind",
    HW_FAULT_KINDS,
    lambda kind: f"{kind.replace('_', ' ')} faults taken by user accesses (hardware)",
)
declare_total("tlbi.total", "all TLBI instructions", _family_sum("tlbi"))
declare_total("dsb.total", "all DSB barriers", _family_sum("dsb"))

# -- arch: generic backend (arch/generic.py) --------------------------------
declare("ipi.tlb_shootdown", "IPIs", "TLB-shootdown IPIs sent to other CPUs (generic/x86 backend)")

# -- arch: arm64 contpte (arch/arm64/contpte.py) ------------------------------
#: The public functions that can unfold a block (the ``caller`` names).
UNFOLD_CALLERS: tuple[str, ...] = (
    "set_ptes",
    "pte_clear",
    "ptep_get_and_clear",
    "ptep_modify_prot_start",
    "modify_prot_start_ptes",
    "clear_full_ptes",
    "get_and_clear_full_ptes",
    "wrprotect_ptes",
    "ptep_set_wrprotect",
    "ptep_set_access_flags",
)
#: The contpte.c functions whose entries ``call.<symbol>`` counts, as ftrace sees them.
CONTPTE_CALLS: tuple[str, ...] = (
    "contpte_convert",
    "__contpte_try_fold",
    "__contpte_try_unfold",
    "contpte_try_unfold_partial",
    "contpte_set_ptes",
    "contpte_clear_full_ptes",
    "contpte_get_and_clear_full_ptes",
    "contpte_wrprotect_ptes",
    "contpte_ptep_get",
    "contpte_ptep_get_lockless",
    "contpte_test_and_clear_young_ptes",
    "contpte_clear_flush_young_ptes",
    "contpte_clear_young_dirty_ptes",
    "contpte_ptep_set_access_flags",
)
#: The core-mm functions whose entries ``call.<symbol>`` counts too (the arm64
#: oracle traces them: docs/kernel.md c.3).
MM_CALLS: tuple[str, ...] = ("tlb_flush_rmaps",)
declare("contpte.fold", "blocks", "contiguous blocks folded (PTE_CONT set by a conversion)")
declare("contpte.convert", "blocks", "contpte_convert() repaints (break-before-make of a block)")
declare(
    "contpte.lockless_retry",
    "restarts",
    "contpte_ptep_get_lockless() restarts: a block it read changed under it (another thread ran meanwhile)",
)
declare("sched.preempt", "steps", "steps of other threads a scheduler ran at a kernel preemption point")
declare_family(
    "contpte.unfold",
    "blocks",
    "contiguous blocks unfolded, by the public function core-mm called",
    UNFOLD_CALLERS,
    lambda fn: f"contiguous blocks unfolded when core-mm called {fn}()",
)
declare_family(
    "call",
    "calls",
    "entries into traced kernel functions (contpte.c, mmu_gather.c; ftrace-comparable), by symbol",
    CONTPTE_CALLS + MM_CALLS,
    lambda sym: f"entries into the kernel function {sym}() (ftrace-comparable)",
)
declare_total("contpte.unfold", "all contpte unfolds", _family_sum("contpte.unfold"))

# -- core-mm (mm/) ----------------------------------------------------------
declare("pgfault", "faults", "/proc/vmstat pgfault: page faults handled")
declare("thp_fault_alloc", "folios", "/proc/vmstat: PMD-size THP allocated at fault")
declare("thp_fault_fallback", "faults", "/proc/vmstat: PMD-size THP allocation failed at fault")
declare("thp_split_pmd", "splits", "/proc/vmstat: PMD mappings split into PTE mappings")
declare("thp_deferred_split_page", "folios", "/proc/vmstat: PMD-size folios queued for deferred split")
declare("thp_split_page", "folios", "/proc/vmstat: large folios split")
declare(
    "thp_split_page_failed", "folios", "/proc/vmstat: PMD-sized folios a split refused (extra references)"
)
declare("thp_collapse_alloc", "folios", "/proc/vmstat: PMD-size THPs khugepaged allocated to collapse into")
declare(
    "thp_collapse_alloc_failed", "folios", "/proc/vmstat: PMD-size THP allocations for a collapse that failed"
)
declare(
    "thp_scan_exceed_none_pte",
    "scans",
    "/proc/vmstat: PMD collapses refused for more than max_ptes_none none PTEs",
)
declare(
    "thp_scan_exceed_swap_pte",
    "scans",
    "/proc/vmstat: PMD collapses refused for more than max_ptes_swap swap PTEs",
)
declare(
    "thp_scan_exceed_share_pte",
    "scans",
    "/proc/vmstat: PMD collapses refused for more than max_ptes_shared shared PTEs",
)
declare("folio.alloc", "folios", "folios allocated (any order)")
declare("folio.alloc_pages", "pages", "pages in folios allocated")
declare("folio.free", "folios", "folios freed")
declare("folio.free_pages", "pages", "pages in folios freed (free_pages_prepare() visits each struct page)")
declare("page.zero", "pages", "pages zeroed (folio_zero_user, clear_page)")
declare("page.copy", "pages", "pages copied (copy_user_highpage)")
declare(
    "ref.op",
    "atomic ops",
    "folio refcount drops that test the result (folio_put/folio_put_refs: atomic_sub_and_test)",
)
declare(
    "ref.get",
    "atomic ops",
    "folio refcount adds without a result (folio_get/folio_ref_add/folio_ref_sub: atomic_add/atomic_sub)",
)
declare("fault.anon", "faults", "anonymous faults on a none PTE (do_anonymous_page)")
declare("fault.file", "faults", "file faults on a none PTE (do_fault)")
declare("fault.wp", "faults", "write-protect faults (do_wp_page)")
declare("fault.wp_reuse", "faults", "write faults that reused the page (wp_page_reuse)")
declare("fault.wp_copy", "faults", "write faults that copied the page (wp_page_copy)")
declare("fault.spurious", "faults", "faults on a PTE that already allowed the access")
declare(
    "fault.pte_changed",
    "faults",
    "faults that found their PTE(s) changed when they retook the PTL after allocating (do_anonymous_page: "
    "vmf_pte_changed / !pte_range_none; wp_page_copy: !pte_same) and backed out (update_mmu_tlb)",
)
declare("fault.around_pages", "pages", "pages mapped by fault-around (filemap_map_pages)")
declare("fork.calls", "calls", "copy_present_ptes calls (one per present PTE or batch copied)")
declare("fork.batch", "calls", "copy_present_ptes calls that copied a batch (nr>1)")
declare("fork.ptes", "PTEs", "present PTEs copied at fork")
declare("fork.copy_page", "pages", "pages copied for the child at fork (pinned anon)")
declare(
    "fork.lock_break_point", "points", "points where copy_pte_range would drop its locks (progress >= 32)"
)
declare("fork.again", "restarts", "copy_pte_range restarts after -EAGAIN (prealloc a page)")
declare("zap.calls", "calls", "zap_present_ptes calls (one per present PTE or batch zapped)")
declare("zap.batch", "calls", "zap_present_folio_ptes calls with nr>1")
declare("zap.ptes", "PTEs", "present PTEs zapped")
declare("numa_hint_faults", "faults", "/proc/vmstat: NUMA hinting faults (do_numa_page)")
declare("numa_pte_updates", "PTEs", "/proc/vmstat: PTEs made PROT_NONE for NUMA hinting (change_prot_numa)")
declare("numa_huge_pte_updates", "PMDs", "/proc/vmstat: huge PMDs change_pmd_range changed (any caller)")
declare("mmu_gather.flush", "flushes", "mmu_gather TLB flushes (tlb_flush_mmu_tlbonly with a range)")
declare(
    "mmu_gather.forced_flush",
    "flushes",
    "flushes zap_pte_range forced before dropping the PTL (a full gather or delayed rmaps)",
)
declare("gup.pin", "pages", "pages pinned with FOLL_PIN|FOLL_LONGTERM")
declare("gup.unpin", "pages", "pages unpinned")
declare(
    "gup.fast", "pages", "pages GUP-fast pinned and kept (gup_fast_pte_range; the rest take the slow path)"
)
declare(
    "gup.fast_backout",
    "pages",
    "pins GUP-fast dropped again: the PTE changed after it was read (pte_val re-check) or fork "
    "write-protected meanwhile (mm->write_protect_seq)",
)
declare("madvise.lazyfree_pages", "pages", "pages MADV_FREE marked lazyfree")
declare(
    "madvise.free_split_skipped",
    "folios",
    "partially covered large folios MADV_FREE left alone (shared or unsplittable)",
)
declare("buddy.alloc", "allocations", "successful buddy allocations (any order)")
declare("buddy.alloc_fail", "allocations", "buddy allocations that found no free block")
declare("buddy.free", "frees", "blocks returned to the buddy allocator")
declare("rmap.op", "calls", "batch rmap updates (add/dup/remove, PTE or PMD level)")
declare("rmap.pages", "pages", "pages whose mapcount an rmap update changed")
declare(
    "rmap.remove",
    "calls",
    "rmap removals (folio_remove_rmap_*), also counted in rmap.op: each updates the mapped-pages "
    "statistics (lruvec/memcg) and checks for a deferred split",
)
declare("pglazyfreed", "pages", "/proc/vmstat: lazyfree (MADV_FREE) pages discarded by reclaim")
declare("pgsteal", "pages", "/proc/vmstat: pages reclaimed (freed)")
declare("pgpgout", "pages", "/proc/vmstat-like: dirty file pages written back by reclaim")
declare("pglazyfree_fail", "folios", "lazyfree folios found written again (made swap-backed, not discarded)")
declare("pswpin", "pages", "/proc/vmstat: pages read in from swap")
declare("pswpout", "pages", "/proc/vmstat: pages written out to swap")
declare("swpin_zero", "pages", "/proc/vmstat: swapped-in pages of the zeromap (read as zeros, no I/O)")
declare("swpout_zero", "pages", "/proc/vmstat: all-zero pages swapped out to the zeromap (no I/O)")
declare("pgmajfault", "faults", "/proc/vmstat: faults that read a page in from swap")
declare("thp_swpout", "folios", "/proc/vmstat: PMD-size folios swapped out whole")
declare(
    "thp_swpout_fallback", "folios", "/proc/vmstat: PMD-size folios split for swap-out (no contiguous slots)"
)
declare(
    "swap.alloc_fail", "allocations", "model: swap slot allocations that found no free slots of the order"
)
declare("swap.cache_hit", "faults", "model: swap-in faults that found the folio in the swap cache")
declare("swap.ptes_copied", "ptes", "model: swap PTEs fork copied (copy_nonpresent_pte)")
declare("swap.ptes_zapped", "ptes", "model: swap PTEs zap freed (free_swap_and_cache_nr)")

# -- the OnePlus "dynamic hugepage" pool (mm/chp_pool.py; docs/oneplus-pool.md) --
# The event names of /proc/cont_pte_hugepage/stat (vm_chp_event_text[] of
# OnePlus mm/cont_pte_hugepage.c), the pool counts and usage it prints, and
# its perf_stat watermark and reclaim counts.
declare(
    "chp.page_alloc_slow_path", "allocations", "OnePlus: hugepage allocations that tried the buddy slow path"
)
declare(
    "chp.page_alloc_failed", "allocations", "OnePlus: hugepage allocations that found no 64K block at all"
)
declare("chp.refill_kworker_wake_up", "runs", "OnePlus: runs of the pool's refill worker (khpage_poold)")
declare(
    "chp.refill_kworker_alloc_success",
    "runs",
    "OnePlus: refill worker runs that added more than half the blocks they wanted",
)
declare("chp.alloc_from_pool_buddy", "blocks", "OnePlus: blocks taken from the pool's buddy list")
declare("chp.alloc_from_pool_cma", "blocks", "model: blocks taken from the pool's CMA list")
declare(
    "chp.alloc_from_buddy_slow_path", "blocks", "model: blocks the slow path took from the buddy allocator"
)
declare(
    "chp.refill_blocks", "blocks", "model: blocks the refill worker (and boot) took from the buddy allocator"
)
declare("chp.free_to_pool", "blocks", "model: CMA blocks freed back to the pool (__free_cont_pte_hugepages)")
declare("chp.free_to_buddy", "blocks", "model: buddy-born blocks freed to the buddy allocator, 16 pages each")
declare("chp.wmark_low", "allocations", "OnePlus: allocations below the pool's low watermark (kswapd woken)")
declare(
    "chp.wmark_min", "allocations", "OnePlus: allocations below the pool's min watermark (direct reclaim)"
)
declare("chp.direct_reclaim_enter", "reclaims", "OnePlus: pool direct reclaims that ran the reclaim")
declare("chp.direct_reclaim_success", "reclaims", "OnePlus: pool direct reclaims followed by a pool block")
declare("chp.direct_reclaim_fail", "reclaims", "OnePlus: pool direct reclaims that got no pool block")
declare("chp.direct_reclaimed", "pages", "model: pages the pool's direct reclaim freed")
declare(
    "chp.kswapd_runs", "runs", "model: kswapd runs for the pool (balance_pgdat with PGDAT_POOL_USER_ALLOC)"
)
declare("chp.kswapd_reclaimed", "pages", "model: pages kswapd freed for the pool")
declare("chp.pool_cma", "blocks", "OnePlus pool_cma_count: 64K blocks in the pool's CMA list (a level)")
declare("chp.pool_buddy", "blocks", "OnePlus pool_buddy_count: 64K blocks in the pool's buddy list (a level)")
declare("chp.usage_cma", "blocks", "OnePlus usage_cma: blocks of the CMA area in use (a level)")
declare("chp.usage_buddy", "blocks", "OnePlus usage_buddy: blocks from the buddy allocator in use (a level)")

#: Page shifts a Machine supports (4K, 16K, 64K granules).
PAGE_SHIFTS: tuple[int, ...] = (12, 14, 16)
#: The per-size stats of ``/sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/stats/``.
MTHP_STATS: tuple[str, ...] = (
    "anon_fault_alloc",
    "anon_fault_fallback",
    "split",
    "split_deferred",
    "nr_anon",
    "split_failed",
    "nr_anon_partially_mapped",
    "collapse_alloc",
    "collapse_alloc_failed",
    "collapse_exceed_swap_pte",
    "collapse_exceed_none_pte",
    "collapse_exceed_shared_pte",
    "swpout",
    "swpout_fallback",
    "swpin",
    "swpin_fallback",
)


def _declare_mthp() -> None:
    """Per-size mTHP stats for every size some page size has (orders 2..PMD_ORDER).

    A size may belong to several page sizes (``64kB`` is order 4 with 4K
    pages and order 2 with 16K pages); ``_MTHP_PAGE_SHIFTS`` records which.
    """
    for shift in PAGE_SHIFTS:
        pmd_order = shift - 3  # PTRS_PER_PTE = page size / 8-byte descriptors
        members = [
            f"{mthp_size_name(1 << shift, order)}.{stat}"
            for order in range(2, pmd_order + 1)
            for stat in MTHP_STATS
        ]
        for name in declare_family(
            "mthp",
            "events",
            "per-size mTHP stats, mthp.<size>kB.<stat> (hugepages-<size>kB/stats/: anon_fault_alloc, "
            "anon_fault_fallback, split, split_deferred, nr_anon, split_failed, nr_anon_partially_mapped, "
            "collapse_alloc, collapse_alloc_failed, collapse_exceed_{swap,none,shared}_pte, swpout, "
            "swpout_fallback, swpin, swpin_fallback)",
            members,
            lambda m: "hugepages-{}/stats/{}".format(*m.split(".")),
        ):
            _MTHP_PAGE_SHIFTS[name] = _MTHP_PAGE_SHIFTS.get(name, frozenset()) | {shift}


_declare_mthp()

# -- the OnePlus "dynamic hugepage" policy (Machine(policy="oneplus"), docs/oneplus.md) --
#: /proc/cont_pte_hugepage/stat names (``vm_chp_event_text`` and the atomic
#: counters printed beside it in mm/cont_pte_hugepage.c, OnePlus sm8550).
CHP_EVENTS: tuple[tuple[str, str, str], ...] = (
    (
        "thp_do_anon_pages",
        "faults",
        "anon faults that mapped a whole 64K block (do_huge_cont_pte_anonymous_page)",
    ),
    (
        "thp_do_anon_pages_fallback",
        "faults",
        "block anon faults whose allocation failed and fell back to a base page",
    ),
    ("thp_cow", "faults", "write faults that copied a whole block into a new block (wp_page_copy)"),
    ("thp_cow_fallback", "faults", "block CoW faults that copied into 16 base pages (no block free)"),
    ("madv_dont_need_unaligned", "calls", "MADV_DONTNEED ranges not aligned to a 64K block"),
    ("cp_cont_pte_split_count", "splits", "blocks fork split instead of copying whole (copy_pte_range)"),
    ("double_map", "folios", "blocks split in one mm while another still maps them whole (PageDoubleMap)"),
    ("split", "splits", "blocks split into 16 PTE mappings (__split_huge_cont_pte_locked)"),
    (
        "wp_reuse",
        "faults",
        "write faults that made a whole exclusive block writable (wp_cont_pte_hugepage_reuse)",
    ),
    ("copy_block", "blocks", "blocks fork copied whole (copy_present_cont_pte)"),
    ("zap_block", "blocks", "blocks a zap cleared whole"),
    (
        "thp_swpin_no_swapcache_entry",
        "faults",
        "swap-ins without the swap cache whose 16 entries are one swapped block (do_swap_page)",
    ),
    ("thp_swpin_no_swapcache_alloc_success", "faults", "block swap-ins that got a block from the pool"),
    ("thp_swpin_no_swapcache_alloc_fail", "faults", "block swap-ins that got no block from the pool"),
    (
        "thp_swpin_no_swapcache_fallback_entry",
        "faults",
        "block swap-ins that read into 16 base pages instead (read_thp_no_swapcache_fallback)",
    ),
    ("thp_swpin_no_swapcache_fallback_alloc_success", "faults", "16-base-page swap-ins mapped"),
    ("thp_swpin_no_swapcache_fallback_alloc_fail", "faults", "16-base-page swap-ins with no 16 pages (OOM)"),
    (
        "thp_swpin_swapcache_entry",
        "faults",
        "block swap-ins through the swap cache (read_swap_cache_thp: shared slots or an async device)",
    ),
    (
        "thp_swpin_swapcache_alloc_success",
        "faults",
        "block swap-ins that read a pool block into the swap cache",
    ),
    (
        "thp_swpin_swapcache_prepare_fail",
        "faults",
        "block swap-ins through the swap cache that got no block (read_swap_cache_thp failed)",
    ),
    (
        "thp_swpin_swapcache_fallback_entry",
        "faults",
        "block swap-ins through the swap cache that read 16 base pages instead",
    ),
    (
        "thp_swpin_swapcache_fallback_alloc_success",
        "faults",
        "16-base-page swap-ins (swap-cache branch) mapped",
    ),
    (
        "thp_swpin_swapcache_fallback_alloc_fail",
        "faults",
        "16-base-page swap-ins (swap-cache branch) with no pages",
    ),
    (
        "thp_swpin_hit_swapcache",
        "faults",
        "swap-ins that found the block in the swap cache and mapped it whole again (an atomic, not an event)",
    ),
    (
        "mapped_walk_start_from_non_head",
        "walks",
        "reclaim unmaps of a block stopped: the VMA's first entry not the block's first (try_to_unmap_one)",
    ),
    (
        "mapped_walk_lastmoment_doublemap",
        "walks",
        "reclaim unmaps of a block stopped: its 16 pages' mapcounts differ (try_to_unmap_one)",
    ),
)
for _n, _u, _d in CHP_EVENTS:
    declare(f"chp.{_n}", _u, _d)
#: ``cont_pte_trans_huge(ptep, reason)``'s call sites (CORRUPT_CONT_PTE_REASON_*):
#: where a block whose 16 PTEs disagree on the Contiguous bit was found.
CHP_CORRUPT_REASONS = ("cp_pte_range", "zap_pte_range", "split", "wp_page")
declare_family(
    "chp.corrupt_cont_pte",
    "blocks",
    "blocks found with some but not all 16 PTEs Contiguous, by where (cont_pte_trans_huge)",
    CHP_CORRUPT_REASONS,
)

# -- validators (check/) ------------------------------------------------------
declare("check.runs", "runs", "validator runs (after syscalls with check=True, or m.check())")
declare("check.isolation_pages", "pages", "pages whose read value the isolation check compared")

# Ids the compiled core's descriptor accessors count with (hw/tables.py, arch).
PTE_READ = cython.declare(i64, counter("pte.read"))
PTE_WRITE = cython.declare(i64, counter("pte.write"))
PTE_ATOMIC = cython.declare(i64, counter("pte.atomic"))
PMD_WRITE = cython.declare(i64, counter("pmd.write"))
# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(PTE_READ=PTE_READ, PTE_WRITE=PTE_WRITE, PTE_ATOMIC=PTE_ATOMIC, PMD_WRITE=PMD_WRITE)
