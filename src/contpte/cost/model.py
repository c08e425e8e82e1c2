"""The time model: counters x profile x concurrency -> time, with a breakdown.

Counters stay the source of truth; time is a formula over them.  Each counter
name maps, by one rule in ``RULES``, to a *cost kind* (a profile figure) or to
``"none"`` with the reason it costs nothing by itself (e.g. ``contpte.unfold``
events, whose cost is the PTE writes, TLBIs and DSBs they count).  A counter
that no rule covers is listed in ``Breakdown.unmapped``: it is reported, never
silently taken as free.

Broadcast TLB invalidation follows arm-rules.md §3.5: an ``...IS`` TLBI is a
DVM message to every core of the domain, and the issuer's DSB ISH waits until
all of them completed.  The wait of one DSB covers the TLBIs issued before it,
so a flush of ``n`` pages costs::

    cost(n x TLBI_IS + DSB ISH) = a + n * b * cores * (1 + k * concurrent_broadcasters)
                               = a + n * cores * (b + bk * concurrent_broadcasters)

with ``a = dsb_ish`` (the barrier's round trip with nothing queued),
``b = tlbi_bcast_per_core`` and ``bk = b * k = tlbi_contention_per_core``: the
DVM traffic of each TLBI grows with the cores it reaches and, above all, with
the number of other CPUs broadcasting at the same time.  The profile holds
``bk`` rather than ``k`` so that a fit may find ``b = 0`` (``k = bk / b`` is
then unbounded, ``bk`` is not).  ``ncpus`` copies of the same work run at
once, one per CPU; a copy is broadcasting for the fraction ``u`` of its time
that its broadcast TLBIs take, so the others broadcasting at any moment number
``(ncpus - 1) * u``.  ``u``
itself depends on the cost of a broadcast, so the model solves that fixed
point (it has a unique solution, found by bisection).
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
    "Breakdown",
    "classify",
    "unmapped_counters",
    "broadcast_cost",
    "time_breakdown",
]

NONE = "none"
TLBI_BCAST = "tlbi_bcast"
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
    "folio_free",
    "rmap_update",
    "rmap_page",
    "ref_update",
    "tlb_walk",
    "tlbi_local",
    TLBI_BCAST,
    "dsb_ish",
    "dsb_ishst",
    "dsb_nsh",
    "ipi",
    "task_fork_exit",
    "syscall",
)
"""Cost kinds, in display order.  Each is a profile figure except
``tlbi_bcast`` (the §3.5 formula) and ``pte_atomic_extra`` (see RULES)."""


@dataclass(frozen=True)
class Rule:
    """Counters matching ``pattern`` (an exact name or fnmatch pattern) cost ``kind`` each."""

    pattern: str
    kind: str
    why: str
    priced_by: str | None = None
    """For ``kind == "none"``: the counter whose price already covers this one."""


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
    # hardware (hw layer)
    Rule("tlbi.*IS", TLBI_BCAST, "inner-shareable TLBI: a DVM broadcast the issuer's DSB waits for"),
    Rule("tlbi.*OS", TLBI_BCAST, "outer-shareable TLBI: a DVM broadcast, priced as inner-shareable"),
    Rule("tlbi.INVLPGB", TLBI_BCAST, "x86 broadcast invalidation"),
    Rule("tlbi.*", "tlbi_local", "local TLB invalidation"),
    Rule(
        "dsb.ish", "dsb_ish", "a of §3.5: the barrier's round trip; the TLBIs it waits for add their own cost"
    ),
    Rule("dsb.ishst", "dsb_ishst", "store barrier before TLB maintenance"),
    Rule("dvm.sync", NONE, "the wait is priced by the tlbi_bcast term of its TLBIs", priced_by="dsb.ish"),
    Rule("dsb.nsh", "dsb_nsh", "non-shareable barrier"),
    Rule("dsb.nshst", "dsb_nsh", "non-shareable store barrier"),
    Rule("dsb.osh", "dsb_ish", "outer-shareable barrier, priced as DSB ISH (one domain in the model)"),
    Rule("dsb.oshst", "dsb_ishst", "outer-shareable store barrier, priced as DSB ISHST"),
    Rule("dsb.sy", "dsb_ish", "full-system barrier, priced as DSB ISH"),
    Rule("dsb.st", "dsb_ishst", "full-system store barrier, priced as DSB ISHST"),
    Rule("ipi.sent", "ipi", "inter-processor interrupt, round trip"),
    Rule("tlb.walk", "tlb_walk", "a hardware table walk"),
    Rule("tlb.hit", NONE, "user access time is not modelled; a hit adds nothing"),
    Rule("tlb.miss", NONE, "its cost is the walk", priced_by="tlb.walk"),
    Rule("tlb.conflict", NONE, "a TLB conflict abort is an error the rule checker reports, not a cost"),
    Rule("hw.af_update", "pte_atomic", "hardware access-flag update, an atomic on the descriptor"),
    Rule("hw.dirty_update", "pte_atomic", "hardware dirty-state update, an atomic on the descriptor"),
    Rule("fault.translation", NONE, "the exception is priced once, by pgfault", priced_by="pgfault"),
    Rule("fault.permission", NONE, "the exception is priced once, by pgfault", priced_by="pgfault"),
    Rule("fault.access_flag", NONE, "the exception is priced once, by pgfault", priced_by="pgfault"),
    # arch layer: events whose cost is the accesses, TLBIs and DSBs they count
    Rule("contpte.fold", NONE, "cost counted by its pte.*, tlbi.* and dsb.* counters", priced_by="pte.write"),
    Rule(
        "contpte.unfold.*",
        NONE,
        "cost counted by its pte.*, tlbi.* and dsb.* counters",
        priced_by="pte.write",
    ),
    Rule(
        "contpte.convert", NONE, "cost counted by its pte.*, tlbi.* and dsb.* counters", priced_by="pte.write"
    ),
    Rule("call.*", NONE, "function-call trace points for the kernel oracle"),
    Rule("check.*", NONE, "the validators' own bookkeeping, not kernel work"),
    Rule(
        "ipi.tlb_shootdown", NONE, "each is an hw.ipi(), priced by the hardware's count", priced_by="ipi.sent"
    ),
    # core-mm
    Rule("pgfault", "fault_entry", "/proc/vmstat pgfault: one exception entry and return per fault"),
    Rule("fault.anon", NONE, "a kind of pgfault, priced there", priced_by="pgfault"),
    Rule("fault.file", NONE, "a kind of pgfault, priced there", priced_by="pgfault"),
    Rule("fault.wp", NONE, "a kind of pgfault, priced there", priced_by="pgfault"),
    Rule("fault.wp_reuse", NONE, "a kind of pgfault, priced there", priced_by="pgfault"),
    Rule("fault.wp_copy", NONE, "a kind of pgfault, priced there", priced_by="pgfault"),
    Rule("fault.spurious", NONE, "a kind of pgfault, priced there", priced_by="pgfault"),
    Rule("fault.around_pages", NONE, "mapping them is counted by pte.write", priced_by="pte.write"),
    Rule("buddy.alloc", "folio_alloc", "one buddy allocation (a folio or a page-table page)"),
    Rule("buddy.free", "folio_free", "one block returned to the buddy allocator"),
    Rule("buddy.alloc_fail", NONE, "a failed attempt; what follows is counted"),
    Rule("folio.alloc", NONE, "each is a buddy allocation", priced_by="buddy.alloc"),
    Rule("folio.alloc_pages", NONE, "size of the allocations; zeroing is page.zero", priced_by="page.zero"),
    Rule("folio.free", NONE, "each is a buddy free", priced_by="buddy.free"),
    Rule(
        "folio.free_pages", NONE, "size of the frees; priced per block by buddy.free", priced_by="buddy.free"
    ),
    Rule("page.zero", "page_zero", "one 4K page zeroed"),
    Rule("page.copy", "page_copy", "one 4K page copied"),
    Rule(
        "rmap.op", "rmap_update", "one batch rmap call (fixed part: folio lock-free checks, large mapcount)"
    ),
    Rule("rmap.pages", "rmap_page", "one page whose mapcount changed (an atomic on its struct page)"),
    Rule("rmap.remove", NONE, "a kind of rmap call, priced by rmap.op", priced_by="rmap.op"),
    Rule("ref.op", "ref_update", "one folio refcount atomic"),
    Rule("fork.batch", NONE, "an event; its work is counted by pte.*, rmap.*, ref.*", priced_by="pte.write"),
    Rule(
        "fork.calls",
        NONE,
        "a loop iteration; its work is counted by pte.*, rmap.*, ref.*",
        priced_by="rmap.op",
    ),
    Rule(
        "zap.calls",
        NONE,
        "a loop iteration; its work is counted by pte.*, rmap.*, ref.*",
        priced_by="rmap.op",
    ),
    Rule("fork.ptes", NONE, "an event; its work is counted by pte.*, rmap.*, ref.*", priced_by="pte.write"),
    Rule("fork.copy_page", NONE, "the copy is counted by page.copy", priced_by="page.copy"),
    Rule("fork.lock_break_point", NONE, "a point in the loop, not work"),
    Rule("fork.again", NONE, "a restart; the redone work is counted again by its counters"),
    Rule("zap.batch", NONE, "an event; its work is counted by pte.*, rmap.*, ref.*", priced_by="pte.write"),
    Rule("zap.ptes", NONE, "an event; its work is counted by pte.*, rmap.*, ref.*", priced_by="pte.write"),
    Rule("mmu_gather.flush", NONE, "its TLBIs and DSBs are counted by tlbi.* and dsb.*"),
    Rule(
        "gup.pin",
        NONE,
        "its page-table walk and refcount work is counted by pte.read, ref.op",
        priced_by="ref.op",
    ),
    Rule("gup.unpin", NONE, "its refcount work is counted by ref.op", priced_by="ref.op"),
    Rule("madvise.lazyfree_pages", NONE, "its PTE updates are counted by pte.*", priced_by="pte.write"),
    Rule("madvise.free_split_skipped", NONE, "a decision not to act, not work"),
    Rule("numa_hint_faults", NONE, "a kind of pgfault, priced there", priced_by="pgfault"),
    Rule("numa_pte_updates", NONE, "its PTE updates are counted by pte.*", priced_by="pte.write"),
    Rule(
        "pglazyfreed",
        NONE,
        "reclaim's PTE clears and TLBIs are counted by pte.*/tlbi.*",
        priced_by="pte.write",
    ),
    Rule("pglazyfree_fail", NONE, "reclaim's PTE writes are counted by pte.*", priced_by="pte.write"),
    Rule("pgsteal", NONE, "the frees are counted by buddy.free", priced_by="buddy.free"),
    Rule("pgpgout", NONE, "writeback I/O is outside the model (no device cost)"),
    Rule("thp_*", NONE, "/proc/vmstat statistics; the work is counted elsewhere"),
    Rule("mthp.*", NONE, "kernel statistics (hugepages-<size>kB/stats); the work is counted elsewhere"),
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


def _kind_cost(profile: Profile, kind: str) -> float:
    if kind == PTE_ATOMIC_EXTRA:
        return max(0.0, profile["pte_atomic"] - profile["pte_write"])
    return profile[kind]


def broadcast_cost(profile: Profile, concurrent_broadcasters: float) -> float:
    """ns one broadcast TLBI adds to the DSB ISH that waits for it (arm-rules.md §3.5).

    The DSB's own round trip (``a``) is the ``dsb_ish`` figure, charged per DSB.
    """
    b = profile["tlbi_bcast_per_core"]
    bk = profile["tlbi_contention_per_core"]
    return profile.cores * (b + bk * concurrent_broadcasters)


@dataclass(frozen=True)
class Breakdown:
    """The time of one unit of work (e.g. one fork) on one CPU of ``ncpus`` running copies."""

    total_ns: float
    by_kind: dict[str, float]
    by_counter: dict[str, float]
    ncpus: int
    concurrent_broadcasters: float
    broadcast_ns: float
    unmapped: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "total_ns": self.total_ns,
            "ncpus": self.ncpus,
            "concurrent_broadcasters": self.concurrent_broadcasters,
            "broadcast_tlbi_ns": self.broadcast_ns,
            "by_kind_ns": {k: v for k, v in self.by_kind.items() if v},
            "unmapped": list(self.unmapped),
        }


def _solve_concurrency(n_bcast: float, rest_ns: float, profile: Profile, ncpus: int) -> float:
    """Solve c = (ncpus-1) * u(c), u = broadcast share of a copy's time."""
    others = ncpus - 1
    if others <= 0 or n_bcast <= 0:
        return 0.0

    def share(c: float) -> float:
        bc = n_bcast * broadcast_cost(profile, c)
        total = bc + rest_ns
        return bc / total if total > 0 else 0.0

    # g(c) = others*share(c) - c is concave, g(0) >= 0, g(others) <= 0: one root.
    lo, hi = 0.0, float(others)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if others * share(mid) > mid:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


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
    ``{"task_fork_exit": 1}``).  ``concurrent_broadcasters`` overrides the
    fixed point.  With ``strict`` an unpriced counter raises ModelUsageError;
    otherwise it is listed in ``Breakdown.unmapped``.
    """
    if ncpus < 1:
        raise ModelUsageError(f"ncpus must be >= 1, got {ncpus}")
    by_kind_count: dict[str, float] = {}
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
        by_kind_count[rule.kind] = by_kind_count.get(rule.kind, 0.0) + float(count)
    for kind, count in (extra or {}).items():
        if kind not in KINDS or kind == TLBI_BCAST:
            raise ModelUsageError(f"unknown cost kind {kind!r} in extra; expected one of {', '.join(KINDS)}")
        by_kind_count[kind] = by_kind_count.get(kind, 0.0) + float(count)
    if unmapped and strict:
        raise ModelUsageError(
            f"no cost rule for counters: {', '.join(sorted(unmapped))} (see cost/model.py RULES)"
        )

    per_unit = {kind: _kind_cost(profile, kind) for kind in by_kind_count if kind != TLBI_BCAST}
    rest_ns = sum(by_kind_count[k] * per_unit[k] for k in per_unit)
    n_bcast = by_kind_count.get(TLBI_BCAST, 0.0)
    if concurrent_broadcasters is None:
        conc = _solve_concurrency(n_bcast, rest_ns, profile, ncpus)
    else:
        conc = float(concurrent_broadcasters)
    per_unit[TLBI_BCAST] = broadcast_cost(profile, conc)

    by_kind = {kind: by_kind_count.get(kind, 0.0) * per_unit.get(kind, 0.0) for kind in KINDS}
    by_counter = {name: float(counters[name]) * per_unit[kind] for name, kind in sorted(counter_kind.items())}
    return Breakdown(
        total_ns=sum(by_kind.values()),
        by_kind=by_kind,
        by_counter=by_counter,
        ncpus=ncpus,
        concurrent_broadcasters=conc,
        broadcast_ns=per_unit[TLBI_BCAST],
        unmapped=tuple(sorted(unmapped)),
    )
