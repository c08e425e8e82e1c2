"""Operation benchmarks: munmap, MADV_DONTNEED, exit and faults, from shipped scenarios.

Each benchmark is a scenario file in ``cost/scenarios/bench/`` priced by the
same code as ``contpte cost`` (``pricing``).  Two kernel configurations are
simulated per folio order of the anonymous memory:

- ``baseline``: ``contpte=False`` (the kernel without contiguous PTEs);
- ``contpte``:  the default (mainline with arm64 contpte).

Folio orders: 0 = 4K pages (no mTHP size), 2..8 = that mTHP size set to
``always``, 9 = 2M PMD THP (the scenario's ``MADV_HUGEPAGE`` with the PMD
size on ``inherit`` and ``thp=madvise``).  The simulation is arm64
throughout; a profile only prices the counted work, so the x86 column says
what the arm64 kernel's work would cost at x86's per-operation prices.  Time
is reported per operation (one step of the benchmark's verb) and the change
is that of operations per second, ``baseline_time / contpte_time - 1``:
negative means contpte is slower, as in the fork table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError
from ..workloads.scenario import Scenario, parse
from .model import Breakdown, unmapped_counters
from .pricing import Measured, price, simulate
from .profile import Profile

__all__ = [
    "CONFIGS",
    "ORDERS",
    "PROFILES",
    "PATTERNS",
    "OpBench",
    "BENCHES",
    "folio_size",
    "order_overrides",
    "bench_scenario",
    "Cell",
    "OpRow",
    "OpBenchResult",
    "run_op_bench",
    "simulation_points",
]

CONFIGS: dict[str, dict[str, bool]] = {"baseline": {"contpte": False}, "contpte": {}}
"""Machine options of each configuration (everything else at its default)."""

ORDERS = (0, 4, 9)
"""Folio orders of the default table: 4K, 64K (one contpte block), 2M (PMD)."""

PROFILES = ("altra", "m2-vm", "x86")
"""Profiles of the default table, one column group each."""

PATTERNS: dict[str, str] = {
    "page": (
        "one page at a time, read first: each page is read, then written. The read fault maps the "
        "shared zero page with one PTE (do_anonymous_page; for order 9 do_huge_pmd_anonymous_page maps "
        "the huge zero page and the first write splits it into zero-page PTEs); the write fault then "
        "CoW-copies an order-0 page into it (do_wp_page -> wp_page_copy) and installs it with "
        "set_ptes(nr=1). On arm64 each single-PTE set_ptes runs the inline contpte_try_fold check; "
        "on a block's last PTE whose PFN is also the last of a 16-aligned run it enters "
        "__contpte_try_fold (counted as a fold attempt), which cannot fold order-0 folios"
    ),
    "folio": (
        "whole folios at a time, write first: each page is written in address order. The first write "
        "into a large-folio-enabled VMA allocates the whole folio (alloc_anon_folio) and maps it with "
        "one set_ptes(nr = folio pages), which on arm64 sets the Contiguous bit on every whole aligned "
        "block directly (contpte_set_ptes: no fold attempt, no conversion); the other writes to the "
        "folio take no fault. Order 0 takes one fault per page, order 9 one PMD fault per 2M"
    ),
}
"""Touch patterns of ``bench fault``: name -> what it is in kernel terms."""


@dataclass(frozen=True)
class OpBench:
    """One benchmark: its scenario file(s), what it measures, how its table is labelled."""

    name: str
    title: str
    op: str
    """What one operation is (the unit of time per operation)."""
    verb: str
    """The scenario verb whose measured steps are the operations."""
    nbytes: int
    """The region size of the shipped scenario (``--size`` replaces it)."""
    description: str
    key_counters: tuple[tuple[str, str], ...]
    """(counter, label) columns of the counters table."""
    files: dict[str, str] = field(default_factory=lambda: {"": ""})
    """Touch pattern (``""``: none) -> scenario file name."""
    per_page: bool = False
    """The scenario repeats its operation once per 4K page (its repeat count follows --size)."""

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(self.files)


_COMMON_COUNTERS: tuple[tuple[str, str], ...] = (
    ("contpte.convert", "converts"),
    ("tlbi.total", "TLBIs"),
    ("dsb.total", "DSBs"),
    ("pte.write", "PTE writes"),
    ("pte.read", "PTE reads"),
)

BENCHES: dict[str, OpBench] = {
    b.name: b
    for b in (
        OpBench(
            name="munmap",
            title="munmap of a touched anonymous region",
            op="one munmap() of the whole region",
            verb="munmap",
            nbytes=16 << 20,
            description=(
                "A process maps and touches an anonymous region, then unmaps it with one munmap(). "
                "The measured phase is the munmap: zap_pte_range clears every PTE (arm64 with "
                "teardown_opt clears whole contiguous blocks without unfolding them), the rmap and "
                "refcount updates, freeing folios and page tables, and the mmu_gather TLB flush."
            ),
            key_counters=_COMMON_COUNTERS,
            files={"": "munmap"},
        ),
        OpBench(
            name="dontneed",
            title="MADV_DONTNEED one page at a time",
            op="one madvise(4K, MADV_DONTNEED) call",
            verb="madvise",
            nbytes=4 << 20,
            description=(
                "The published microbenchmark pattern: a process touches an anonymous region, then "
                "calls madvise(MADV_DONTNEED) on it one 4K page at a time, low to high. Each call "
                "zaps one PTE and flushes its TLB entry. On arm64 with large folios the first call "
                "into each contiguous block must unfold it (contpte_try_unfold_partial: a conversion, "
                "break-before-make with a TLBI per page) before one entry can be cleared; the later "
                "calls into the block find it unfolded. Order 9 first splits the PMD "
                "(__split_huge_pmd), which maps the folio with set_ptes and so folds every block."
            ),
            key_counters=(("contpte.unfold", "unfolds"), *_COMMON_COUNTERS),
            files={"": "dontneed"},
            per_page=True,
        ),
        OpBench(
            name="exit",
            title="exit of a process with a touched anonymous region",
            op="one exit()",
            verb="exit",
            nbytes=16 << 20,
            description=(
                "A process maps and touches an anonymous region, then exits. The measured phase is "
                "the teardown of its address space (exit_mmap: a fullmm zap with "
                "get_and_clear_full_ptes over whole folios, the rmap and refcount updates, freeing "
                "folios and page tables, one ASID flush) plus exit's work outside it (the profile's "
                "task_exit figure, the same for both configurations)."
            ),
            key_counters=_COMMON_COUNTERS,
            files={"": "exit"},
        ),
        OpBench(
            name="fault",
            title="faulting in anonymous memory",
            op="one 4K page touched",
            verb="write",
            nbytes=4 << 20,
            description=(
                "A process maps an anonymous region and touches every page once, in one of two "
                "patterns (--pattern). "
                + " ".join(f"{name}: {text}." for name, text in PATTERNS.items())
                + " Fold attempts are entries into __contpte_try_fold (call.__contpte_try_fold)."
            ),
            key_counters=(
                ("pgfault", "faults"),
                ("call.__contpte_try_fold", "fold attempts"),
                ("contpte.fold", "folds"),
                ("contpte.convert", "converts"),
                ("tlbi.total", "TLBIs"),
                ("pte.write", "PTE writes"),
            ),
            files={"page": "fault-page", "folio": "fault-folio"},
            per_page=True,
        ),
    )
}
"""The operation benchmarks, by command name (``contpte bench NAME``)."""

PMD_ORDER = 9
_PAGE_SIZE = 4096


def folio_size(order: int) -> str:
    """``4`` -> ``"64K"``, ``9`` -> ``"2M"`` (4K pages)."""
    kib = 4 << order
    return f"{kib >> 10}M" if kib >= 1024 else f"{kib}K"


def _check_order(order: int) -> None:
    if order != 0 and not 2 <= order <= PMD_ORDER:
        raise ModelUsageError(
            f"folio order {order}: expected 0 or 2..{PMD_ORDER} (anonymous mTHP orders; 1 is not one)"
        )


def order_overrides(order: int) -> dict[str, Any]:
    """Machine options that make the scenario's anonymous faults allocate ``order`` folios."""
    _check_order(order)
    if order == PMD_ORDER:
        return {"mthp": {"2M": "inherit"}}
    mthp = {"2M": "never"}
    if order:
        mthp[folio_size(order)] = "always"
    return {"mthp": mthp}


def _size_literal(nbytes: int) -> str:
    for suffix, shift in (("G", 30), ("M", 20), ("K", 10)):
        if nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift}{suffix}"
    return str(nbytes)


def _scenario_text(name: str) -> tuple[str, str]:
    path = Path(str(resources.files("contpte.cost") / "scenarios" / "bench" / f"{name}.scn"))
    return path.read_text(), f"bench/{path.name}"


def bench_scenario(bench: OpBench, pattern: str = "", nbytes: int | None = None) -> Scenario:
    """The benchmark's shipped scenario, its region resized to ``nbytes`` if given.

    Resizing replaces the region size token (``16M``) and, for a per-page
    benchmark, the repeat count (pages of the region) of the shipped file.
    """
    if pattern not in bench.files:
        want = ", ".join(repr(x) for x in bench.patterns)
        raise ModelUsageError(f"bench {bench.name}: unknown pattern {pattern!r}; expected one of {want}")
    text, path = _scenario_text(bench.files[pattern])
    size = bench.nbytes if nbytes is None else nbytes
    if size != bench.nbytes:
        text = re.sub(rf"(?<![\w+]){re.escape(_size_literal(bench.nbytes))}(?!\w)", _size_literal(size), text)
        if bench.per_page:
            text = text.replace(f"repeat {bench.nbytes // _PAGE_SIZE} ", f"repeat {size // _PAGE_SIZE} ")
    return parse(text, path)


def _memory(size: int) -> int:
    # Room for the region, its page tables, and CoW copies of the zero page.
    return max(64 << 20, 4 * size)


@dataclass(frozen=True)
class Cell:
    """One profile's figures for one row: time per operation and the change."""

    profile: str
    time_ns: dict[str, float]
    """Per operation, by configuration."""
    change: float
    """Change of operations/s of ``contpte`` vs ``baseline`` (fraction; negative = slower)."""
    breakdown: dict[str, Breakdown]
    """Of the whole measured phase, by configuration."""

    def as_dict(self) -> dict[str, object]:
        return {
            "op_ns": dict(self.time_ns),
            "change_pct": 100 * self.change,
            "breakdown": {k: b.as_dict() for k, b in self.breakdown.items()},
        }


@dataclass(frozen=True)
class OpRow:
    """One row: a folio order (and touch pattern); counters and one cell per profile."""

    order: int
    pattern: str
    ops: int
    counters: dict[str, dict[str, int]]
    """Key counters of the whole measured phase, by configuration."""
    cells: dict[str, Cell]

    def as_dict(self) -> dict[str, object]:
        return {
            "order": self.order,
            "folio": folio_size(self.order),
            "pattern": self.pattern or None,
            "ops": self.ops,
            "counters": {k: dict(v) for k, v in self.counters.items()},
            "profiles": {k: c.as_dict() for k, c in self.cells.items()},
        }


@dataclass(frozen=True)
class OpBenchResult:
    bench: OpBench
    nbytes: int
    ncpus: int
    profiles: tuple[Profile, ...]
    rows: tuple[OpRow, ...]
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    """Every counter of every simulation, by ``"order/pattern/config"``."""
    unmapped: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        b = self.bench
        return {
            "benchmark": b.name,
            "title": b.title,
            "op": b.op,
            "scenarios": {p or "-": f"cost/scenarios/bench/{f}.scn" for p, f in b.files.items()},
            "workload": {
                "bytes": self.nbytes,
                "arch": "arm64",
                "copies": self.ncpus,
                "patterns": {p: PATTERNS[p] for p in dict.fromkeys(r.pattern for r in self.rows) if p},
            },
            "configs": {k: dict(v) for k, v in CONFIGS.items()},
            "change": "operations/s of contpte vs baseline (contpte=False); negative = slower",
            "profiles": [p.name for p in self.profiles],
            "key_counters": dict(b.key_counters),
            "rows": [r.as_dict() for r in self.rows],
            "counters_per_run": {k: dict(v) for k, v in self.counters.items()},
            "unmapped_counters": list(self.unmapped),
        }


def simulation_points(
    bench: str, orders: Sequence[int], patterns: Sequence[str] | None = None
) -> list[tuple[int, str, str]]:
    """The (order, pattern, configuration) triples a run simulates, in order."""
    spec = BENCHES[bench]
    pats = spec.patterns if patterns is None else tuple(patterns)
    return [(o, pat, config) for pat in pats for o in orders for config in CONFIGS]


def run_op_bench(
    bench: str,
    profiles: Sequence[Profile],
    *,
    orders: Sequence[int] = ORDERS,
    patterns: Sequence[str] | None = None,
    ncpus: int = 1,
    nbytes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> OpBenchResult:
    """Simulate ``bench`` per folio order (and pattern) and configuration; price it per profile."""
    spec = BENCHES.get(bench)
    if spec is None:
        raise ModelUsageError(f"unknown benchmark {bench!r}; expected one of {', '.join(BENCHES)}")
    if not profiles:
        raise ModelUsageError("at least one profile is needed")
    if not orders:
        raise ModelUsageError("at least one folio order is needed")
    for o in orders:
        _check_order(o)
    if ncpus < 1:
        raise ModelUsageError(f"copies (CPUs) must be >= 1, got {ncpus}")
    pats = spec.patterns if patterns is None else tuple(patterns)
    bad = [p for p in pats if p not in spec.patterns]
    if bad or not pats:
        want = ", ".join(p for p in spec.patterns if p) or "none"
        raise ModelUsageError(
            f"bench {bench}: unknown pattern(s) {', '.join(bad) or '(none)'}; expected {want}"
        )
    size = spec.nbytes if nbytes is None else nbytes
    for o in orders:
        align = _PAGE_SIZE << max(o, 4)
        if size <= 0 or size % align:
            raise ModelUsageError(
                f"bench {bench}: size {size} must be a positive multiple of {align >> 10}K "
                f"(whole {folio_size(o)} folios and contiguous blocks)"
            )
    scenarios = {p: bench_scenario(spec, p, size) for p in pats}
    sims: dict[tuple[int, str, str], Measured] = {}
    for order, pat, config in simulation_points(bench, orders, pats):
        overrides = {**order_overrides(order), **CONFIGS[config], "memory": _memory(size)}
        sims[(order, pat, config)] = simulate(scenarios[pat], overrides)
        if progress is not None:
            progress(f"{folio_size(order)}{' ' + pat if pat else ''} {config}")
    rows: list[OpRow] = []
    for pat in pats:
        for order in orders:
            per = {config: sims[(order, pat, config)] for config in CONFIGS}
            ops = per["baseline"].steps.get(spec.verb, 0)
            cells: dict[str, Cell] = {}
            for prof in profiles:
                bd = {config: price(s, prof, ncpus) for config, s in per.items()}
                t = {
                    config: b.total_ns / max(1, per[config].steps.get(spec.verb, 0))
                    for config, b in bd.items()
                }
                change = t["baseline"] / t["contpte"] - 1.0 if t["contpte"] > 0 else 0.0
                cells[prof.name] = Cell(prof.name, t, change, bd)
            key = {
                config: {name: _counter(s, name) for name, _ in spec.key_counters}
                for config, s in per.items()
            }
            rows.append(OpRow(order, pat, ops, key, cells))
    all_names = {name for s in sims.values() for name in s.counters}
    return OpBenchResult(
        bench=spec,
        nbytes=size,
        ncpus=ncpus,
        profiles=tuple(profiles),
        rows=tuple(rows),
        counters={
            f"{folio_size(o)}/{pat or '-'}/{config}": dict(s.counters) for (o, pat, config), s in sims.items()
        },
        unmapped=tuple(unmapped_counters(all_names)),
    )


def _counter(m: Measured, name: str) -> int:
    """A counter of the measured steps, or a total (formula over the family)."""
    from ..counters import TOTALS

    if name in TOTALS:
        return int(TOTALS[name][1](m.counters))
    return int(m.counters.get(name, 0))
