"""The time model: counters x profile x concurrency -> time, with a breakdown.

Counters stay the source of truth; time is a formula over them.  Each counter
name maps, by one rule in ``RULES``, to a *cost kind* (a profile figure) or to
``"none"`` with the reason it costs nothing by itself (e.g. ``contpte.unfold``
events, whose cost is the PTE writes, TLBIs and DSBs they count).  A counter
that no rule covers is listed in ``Breakdown.unmapped``: it is reported, never
silently taken as free.  Work that no counter records (a syscall's fixed
part, fork's and exit's work outside the page tables) is passed as ``extra``
events by kind.

Broadcast TLB maintenance (docs/cost-model.md, "TLB maintenance").  An
inner-shareable TLBI is a DVM operation: the interconnect delivers it to
every core of the domain.  The issuer's next DSB ISH waits until every core
has completed all of them (a DVM Sync; ``dvm.sync`` counts these DSBs).  So a
flush of ``n`` pages by VA costs::

    dsb_ishst + n * tlbi_va_bcast * s + dsb_ish + dvm_sync * s,   s = 1 + k * c

``tlbi_va_bcast`` (one DVM operation) and ``dvm_sync`` (the completion
round trip) are the costs with nothing else broadcasting; range and by-ASID
TLBIs have their own figures.  ``c`` is the number of *other* CPUs
broadcasting at the same moment and ``k`` (``dvm_contention``) how much each
one stretches every DVM operation and sync (a DVM node that serialises the
operations of all requesters gives about 1).  ``ncpus`` copies of the same
work run at once, one per CPU; a copy is broadcasting for the share ``u`` of
its time that its DVM operations take, so ``c = (ncpus - 1) * u``; ``u``
depends on ``c``, and the model solves that fixed point (unique; bisection).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache

from ..counters import TOTALS
from ..errors import ModelUsageError
from .profile import Profile

__all__ = [
    "Rule",
    "RULES",
    "KINDS",
    "DVM_KINDS",
    "EXTRA_KINDS",
    "Breakdown",
    "classify",
    "unmapped_counters",
    "kind_cost",
    "time_breakdown",
]

NONE = "none"
PTE_ATOMIC_EXTRA = "pte_atomic_extra"

KINDS: tuple[str, ...] = (
    "pte_read",
    "pte_write",
    "pte_atomic",
    PTE_ATOMIC_EXTRA,
    "pmd_write",
    "fault_entry",
    "page_zero",
    "page_copy",
    "folio_alloc",
    "folio_alloc_page",
    "folio_free",
    "folio_free_page",
    "rmap_update",
    "rmap_page",
    "rmap_remove",
    "ref_update",
    "ref_get",
    "pte_call",
    "pte_batch",
    "contpte_call",
    "tlb_walk",
    "tlbi_local",
    "tlbi_va_bcast",
    "tlbi_range_bcast",
    "tlbi_asid_bcast",
    "dsb_ish",
    "dsb_ishst",
    "dsb_nsh",
    "dvm_sync",
    "ipi",
    "syscall",
    "task_fork",
    "task_exit",
)
"""Cost kinds, in display order.  Each is priced by the profile figure of the
same name, except ``pte_atomic_extra`` (``pte_atomic - pte_write``: an atomic
is also counted as a write) and ``tlb_walk`` (plus ``stage2_walk``)."""

DVM_KINDS = frozenset({"tlbi_va_bcast", "tlbi_range_bcast", "tlbi_asid_bcast", "dvm_sync"})
"""Kinds stretched by contention: ``(1 + dvm_contention * c)``."""

EXTRA_KINDS = ("syscall", "task_fork", "task_exit")
"""Kinds no counter records, passed as ``extra`` events."""


@dataclass(frozen=True)
class Rule:
    """Counters matching ``pattern`` (an exact name or fnmatch pattern) cost ``kind`` each."""

    pattern: str
    kind: str
    why: str
    priced_by: str | None = None
    """For ``kind == "none"``: the counter whose price already covers this one."""


def _none(pattern: str, why: str, priced_by: str | None = None) -> Rule:
    return Rule(pattern, NONE, why, priced_by)


RULES: tuple[Rule, ...] = (
    # software descriptor accesses (counters.py, counted by hw/tables.py)
    Rule("pte.read", "pte_read", "one descriptor load"),
    Rule("pte.write", "pte_write", "one descriptor store (atomics included)"),
    Rule(
        "pte.atomic",
        PTE_ATOMIC_EXTRA,
        "an atomic RMW (xchg/cmpxchg) is also counted in pte.write; it adds pte_atomic - pte_write",
    ),
    Rule("pmd.write", "pmd_write", "one level-2 descriptor store"),
    # hardware (hw layer): TLB maintenance
    Rule("tlbi.R*IS", "tlbi_range_bcast", "inner-shareable range TLBI: one DVM operation"),
    Rule("tlbi.R*OS", "tlbi_range_bcast", "outer-shareable range TLBI, priced as inner-shareable"),
    Rule("tlbi.ASIDE1IS", "tlbi_asid_bcast", "inner-shareable TLBI by ASID: one DVM operation"),
    Rule("tlbi.VMALLE1IS", "tlbi_asid_bcast", "inner-shareable TLBI of everything: one DVM operation"),
    Rule("tlbi.ASIDE1OS", "tlbi_asid_bcast", "outer-shareable TLBI by ASID, priced as inner-shareable"),
    Rule("tlbi.VMALLE1OS", "tlbi_asid_bcast", "outer-shareable TLBI of everything, as inner-shareable"),
    Rule("tlbi.*IS", "tlbi_va_bcast", "inner-shareable TLBI by VA: one DVM operation"),
    Rule("tlbi.*OS", "tlbi_va_bcast", "outer-shareable TLBI by VA, priced as inner-shareable"),
    Rule("tlbi.INVLPGB", "tlbi_va_bcast", "x86 broadcast invalidation, priced as a DVM operation"),
    Rule("tlbi.*", "tlbi_local", "local TLB invalidation (TLBI without IS/OS, INVLPG, INVPCID)"),
    Rule("dsb.ish", "dsb_ish", "the barrier; waiting for broadcasts is dvm.sync"),
    Rule("dsb.osh", "dsb_ish", "outer-shareable barrier, priced as DSB ISH (one domain in the model)"),
    Rule("dsb.sy", "dsb_ish", "full-system barrier, priced as DSB ISH"),
    Rule("dsb.ishst", "dsb_ishst", "store barrier before TLB maintenance"),
    Rule("dsb.oshst", "dsb_ishst", "outer-shareable store barrier, priced as DSB ISHST"),
    Rule("dsb.st", "dsb_ishst", "full-system store barrier, priced as DSB ISHST"),
    Rule("dsb.nsh", "dsb_nsh", "non-shareable barrier"),
    Rule("dsb.nshst", "dsb_nsh", "non-shareable store barrier"),
    Rule("dvm.sync", "dvm_sync", "a DSB that waits for broadcast TLBIs to complete on every CPU"),
    Rule("ipi.sent", "ipi", "inter-processor interrupt, round trip"),
    Rule("tlb.walk", "tlb_walk", "a hardware table walk (plus stage 2 in a guest)"),
    _none("tlb.hit", "user access time is not modelled; a hit adds nothing"),
    _none("tlb.miss", "its cost is the walk", "tlb.walk"),
    _none("tlb.conflict", "a TLB conflict abort is an error the rule checker reports, not a cost"),
    Rule("hw.af_update", "pte_atomic", "hardware access-flag update, an atomic on the descriptor"),
    Rule("hw.dirty_update", "pte_atomic", "hardware dirty-state update, an atomic on the descriptor"),
    _none("fault.translation", "the exception is priced once, by pgfault", "pgfault"),
    _none("fault.permission", "the exception is priced once, by pgfault", "pgfault"),
    _none("fault.access_flag", "the exception is priced once, by pgfault", "pgfault"),
    # arch layer: events whose cost is the accesses, TLBIs and DSBs they count
    _none("contpte.fold", "cost counted by its pte.*, tlbi.*, dsb.* and call.* counters", "pte.write"),
    _none("contpte.unfold.*", "cost counted by its pte.*, tlbi.*, dsb.* and call.* counters", "pte.write"),
    _none("contpte.convert", "cost counted by its pte.*, tlbi.*, dsb.* and call.* counters", "pte.write"),
    Rule("call.*", "contpte_call", "an entry into an out-of-line contpte.c function"),
    _none("check.*", "the validators' own bookkeeping, not kernel work"),
    _none("ipi.tlb_shootdown", "each is an hw.ipi(), priced by the hardware's count", "ipi.sent"),
    # core-mm
    Rule("pgfault", "fault_entry", "/proc/vmstat pgfault: one exception entry and return per fault"),
    _none("fault.anon", "a kind of pgfault, priced there", "pgfault"),
    _none("fault.file", "a kind of pgfault, priced there", "pgfault"),
    _none("fault.wp", "a kind of pgfault, priced there", "pgfault"),
    _none("fault.wp_reuse", "a kind of pgfault, priced there", "pgfault"),
    _none("fault.wp_copy", "a kind of pgfault, priced there", "pgfault"),
    _none("fault.spurious", "a kind of pgfault, priced there", "pgfault"),
    _none("fault.around_pages", "mapping them is counted by pte.write", "pte.write"),
    Rule("buddy.alloc", "folio_alloc", "one buddy allocation (a folio or a page-table page)"),
    Rule("buddy.free", "folio_free", "one block returned to the buddy allocator"),
    _none("buddy.alloc_fail", "a failed attempt; what follows is counted"),
    _none("folio.alloc", "each is a buddy allocation", "buddy.alloc"),
    Rule("folio.alloc_pages", "folio_alloc_page", "per page of the folios allocated (zeroing is page.zero)"),
    _none("folio.free", "each is a buddy free", "buddy.free"),
    Rule("folio.free_pages", "folio_free_page", "per page of the folios freed"),
    Rule("page.zero", "page_zero", "one 4K page zeroed"),
    Rule("page.copy", "page_copy", "one 4K page copied"),
    Rule("rmap.op", "rmap_update", "one rmap call (fixed part: folio checks, large mapcount)"),
    Rule("rmap.pages", "rmap_page", "one page whose mapcount changed (an atomic on its struct page)"),
    Rule("rmap.remove", "rmap_remove", "a removal's extra work (also counted in rmap.op)"),
    Rule("ref.op", "ref_update", "one folio refcount drop that tests the result (folio_put)"),
    Rule("ref.get", "ref_get", "one folio refcount add without a result (folio_get, folio_ref_add)"),
    Rule("fork.calls", "pte_call", "one copy_present_ptes() call: vm_normal_page, folio tests, bookkeeping"),
    Rule("zap.calls", "pte_call", "one zap_present_ptes() call: vm_normal_page, folio tests, bookkeeping"),
    Rule("fork.batch", "pte_batch", "one batched copy_present_ptes() call (nr > 1): its fixed work"),
    Rule("zap.batch", "pte_batch", "one batched zap_present_folio_ptes() call (nr > 1): its fixed work"),
    _none("fork.ptes", "an event; its work is counted by pte.*, rmap.*, ref.*", "pte.write"),
    _none("fork.copy_page", "the copy is counted by page.copy", "page.copy"),
    _none("fork.lock_break_point", "a point in the loop, not work"),
    _none("fork.again", "a restart; the redone work is counted again by its counters"),
    _none("contpte.lockless_retry", "a restart; the re-reads are counted by pte.read", "pte.read"),
    _none("sched.preempt", "a scheduling event of the model; the steps' work is counted by their counters"),
    _none("zap.ptes", "an event; its work is counted by pte.*, rmap.*, ref.*", "pte.write"),
    _none("mmu_gather.flush", "its TLBIs and DSBs are counted by tlbi.* and dsb.*"),
    _none("mmu_gather.forced_flush", "one of mmu_gather.flush: its TLBIs and DSBs are counted by tlbi.*"),
    _none("gup.pin", "its page-table walk and refcount work is counted by pte.read, ref.op", "ref.op"),
    _none("gup.unpin", "its refcount work is counted by ref.op", "ref.op"),
    _none("gup.fast", "one of gup.pin, taken locklessly: counted by pte.read, ref.op", "ref.op"),
    _none("gup.fast_backout", "a pin dropped again: its refcount work is counted by ref.op", "ref.op"),
    _none(
        "fault.pte_changed",
        "a back-out; the allocation and release are counted by folio.*, buddy.*",
        "pgfault",
    ),
    _none("madvise.lazyfree_pages", "its PTE updates are counted by pte.*", "pte.write"),
    _none("madvise.free_split_skipped", "a decision not to act, not work"),
    _none("numa_hint_faults", "a kind of pgfault, priced there", "pgfault"),
    _none("numa_pte_updates", "its PTE updates are counted by pte.*", "pte.write"),
    _none("numa_huge_pte_updates", "its PMD updates are counted by pmd.write", "pmd.write"),
    _none("pglazyfreed", "reclaim's PTE clears and TLBIs are counted by pte.*/tlbi.*", "pte.write"),
    _none("pglazyfree_fail", "reclaim's PTE writes are counted by pte.*", "pte.write"),
    _none("pgsteal", "the frees are counted by buddy.free", "buddy.free"),
    _none("pgpgout", "writeback I/O is outside the model (no device cost)"),
    _none("pswpin", "swap I/O is outside the model (no device cost)"),
    _none("pswpout", "swap I/O is outside the model (no device cost)"),
    _none("swpin_zero", "a zeromap swap-in does no I/O (the cleared pages are not priced)"),
    _none("swpout_zero", "a zeromap swap-out does no I/O"),
    _none("pgmajfault", "a kind of pgfault, priced there", "pgfault"),
    _none("swap.alloc_fail", "a decision not to act, not work"),
    _none("swap.cache_hit", "an event of a fault, priced as pgfault", "pgfault"),
    _none("swap.ptes_copied", "its PTE writes are counted by pte.*", "pte.write"),
    _none("swap.ptes_zapped", "its PTE writes are counted by pte.*", "pte.write"),
    _none(
        "chp.*",
        "the OnePlus pool's statistics and levels; its buddy allocations, frees and page clearing "
        "are counted by buddy.*, page.zero (a pool list operation is not priced)",
    ),
    _none("thp_*", "/proc/vmstat statistics; the work is counted elsewhere"),
    _none("mthp.*", "kernel statistics (hugepages-<size>kB/stats); the work is counted elsewhere"),
    _none("chp.*", "OnePlus /proc/cont_pte_hugepage/stat statistics; the work is counted elsewhere"),
)
"""First matching rule wins; order specific patterns before general ones."""


@lru_cache(maxsize=4096)
def classify(name: str) -> Rule | None:
    """Return the rule that prices counter ``name``, or None if no rule does."""
    for rule in RULES:
        if rule.pattern == name or fnmatchcase(name, rule.pattern):
            return rule
    return None


def unmapped_counters(names: Iterable[str]) -> list[str]:
    """Counter names that no rule prices (totals excepted: they are formulas)."""
    return sorted(n for n in names if n not in TOTALS and classify(n) is None)


def kind_cost(profile: Profile, kind: str) -> float:
    """ns of one event of ``kind`` with nothing else broadcasting."""
    if kind == PTE_ATOMIC_EXTRA:
        return max(0.0, profile["pte_atomic"] - profile["pte_write"])
    if kind == "tlb_walk":
        return profile["tlb_walk"] + profile["stage2_walk"]
    return profile[kind]


@dataclass(frozen=True)
class Breakdown:
    """The time of one copy's work while ``ncpus`` copies run it at once."""

    total_ns: float
    by_kind: dict[str, float]
    """ns per cost kind (DVM kinds include the contention stretch)."""
    counts: dict[str, float]
    """Events per cost kind."""
    by_counter: dict[str, float]
    ncpus: int
    concurrent_broadcasters: float
    stretch: float
    """``1 + dvm_contention * concurrent_broadcasters``: the factor on every DVM cost."""
    unmapped: tuple[str, ...] = field(default=())

    @property
    def dvm_ns(self) -> float:
        """ns spent in broadcast TLB maintenance (DVM operations and syncs)."""
        return sum(v for k, v in self.by_kind.items() if k in DVM_KINDS)

    def as_dict(self) -> dict[str, object]:
        return {
            "total_ns": self.total_ns,
            "ncpus": self.ncpus,
            "concurrent_broadcasters": self.concurrent_broadcasters,
            "dvm_stretch": self.stretch,
            "by_kind_ns": {k: v for k, v in self.by_kind.items() if v},
            "events": {k: v for k, v in self.counts.items() if v},
            "unmapped": list(self.unmapped),
        }


def _solve_concurrency(dvm_ns: float, rest_ns: float, k: float, ncpus: int) -> float:
    """Solve ``c = (ncpus - 1) * u(c)``, ``u`` = DVM share of a copy's time at ``c``."""
    others = ncpus - 1
    if others <= 0 or dvm_ns <= 0 or k <= 0:
        return float(others) * (dvm_ns / (dvm_ns + rest_ns)) if others > 0 and dvm_ns > 0 else 0.0

    def share(c: float) -> float:
        d = dvm_ns * (1.0 + k * c)
        return d / (d + rest_ns) if d + rest_ns > 0 else 0.0

    # g(c) = others*share(c) - c: g(0) >= 0, g(others) <= 0, concave: one root.
    lo, hi = 0.0, float(others)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if others * share(mid) > mid:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def event_counts(
    counters: Mapping[str, int | float], extra: Mapping[str, float] | None = None
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Events per cost kind, the kind of each priced counter, and the unpriced counters."""
    counts: dict[str, float] = {}
    counter_kind: dict[str, str] = {}
    unmapped: list[str] = []
    for name, count in counters.items():
        if name in TOTALS:
            continue  # a formula over other counters: pricing it would count twice
        rule = classify(name)
        if rule is None:
            unmapped.append(name)
            continue
        if rule.kind == NONE:
            continue
        counter_kind[name] = rule.kind
        counts[rule.kind] = counts.get(rule.kind, 0.0) + float(count)
    for kind, count in (extra or {}).items():
        if kind not in KINDS:
            raise ModelUsageError(f"unknown cost kind {kind!r} in extra; expected one of {', '.join(KINDS)}")
        counts[kind] = counts.get(kind, 0.0) + float(count)
    return counts, counter_kind, unmapped


def time_breakdown(
    counters: Mapping[str, int | float],
    profile: Profile,
    ncpus: int = 1,
    *,
    extra: Mapping[str, float] | None = None,
    concurrent_broadcasters: float | None = None,
    strict: bool = False,
) -> Breakdown:
    """Price ``counters`` on ``profile`` with ``ncpus`` copies running at once.

    ``extra`` adds events that no counter records, by cost kind (e.g.
    ``{"task_fork": 1}``).  ``concurrent_broadcasters`` overrides the fixed
    point.  With ``strict`` an unpriced counter raises ModelUsageError;
    otherwise it is listed in ``Breakdown.unmapped``.
    """
    if ncpus < 1:
        raise ModelUsageError(f"ncpus must be >= 1, got {ncpus}")
    counts, counter_kind, unmapped = event_counts(counters, extra)
    if unmapped and strict:
        raise ModelUsageError(
            f"no cost rule for counters: {', '.join(sorted(unmapped))} (see cost/model.py RULES)"
        )
    unit = {kind: kind_cost(profile, kind) for kind in counts}
    dvm_ns = sum(counts[kd] * unit[kd] for kd in counts if kd in DVM_KINDS)
    rest_ns = sum(counts[kd] * unit[kd] for kd in counts if kd not in DVM_KINDS)
    k = profile["dvm_contention"]
    if concurrent_broadcasters is None:
        conc = _solve_concurrency(dvm_ns, rest_ns, k, ncpus)
    else:
        conc = float(concurrent_broadcasters)
    stretch = 1.0 + k * conc
    per_unit = {kd: unit[kd] * (stretch if kd in DVM_KINDS else 1.0) for kd in unit}
    by_kind = {kd: counts.get(kd, 0.0) * per_unit.get(kd, 0.0) for kd in KINDS}
    by_counter = {name: float(counters[name]) * per_unit[kd] for name, kd in sorted(counter_kind.items())}
    return Breakdown(
        total_ns=sum(by_kind.values()),
        by_kind=by_kind,
        counts={kd: counts.get(kd, 0.0) for kd in KINDS},
        by_counter=by_counter,
        ncpus=ncpus,
        concurrent_broadcasters=conc,
        stretch=stretch,
        unmapped=tuple(sorted(unmapped)),
    )
