"""Operation benchmarks: munmap, MADV_DONTNEED, exit and faults, simulated and priced.

The same machinery as the fork benchmark (``fork_bench``): each kernel
configuration is simulated once with the public API, the counter deltas of the
measured phase are the source of truth, and each machine profile prices them
with its time model (``model.time_breakdown``).  Two configurations:

- ``baseline``: ``contpte=False`` (the kernel without contiguous PTEs);
- ``contpte``:  the default (mainline with arm64 contpte).

Each benchmark runs per folio order of the anonymous memory it works on:

- 0: 4K base pages (no mTHP size enabled);
- 2..8: that mTHP size set to ``always`` (4 = 64K, the contpte block size);
- 9: 2M PMD-mapped THP, by ``MADV_HUGEPAGE`` on the VMA (``thp=madvise``,
  ``hugepages-2048kB/enabled=inherit``: the default kernel's settings).

The simulation is arm64 throughout; a profile only prices the counted work
(so the x86 column says what the arm64 kernel's work would cost at x86-like
per-operation prices, not what x86 Linux does).  Time is reported per
operation (what one operation is depends on the benchmark) and the change is
that of operations per second, ``baseline_time / contpte_time - 1``: negative
means contpte is slower, as in the fork benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelUsageError
from .calibrate import FitResult
from .fork_bench import calibrate_fork, fork_counters
from .fork_bench import simulation_points as fork_simulation_points
from .model import Breakdown, time_breakdown, unmapped_counters
from .profile import Profile

__all__ = [
    "CONFIGS",
    "ORDERS",
    "PROFILES",
    "PATTERNS",
    "OpBench",
    "BENCHES",
    "SimResult",
    "folio_size",
    "simulate_op",
    "op_counters",
    "clear_cache",
    "op_time",
    "Cell",
    "OpRow",
    "OpBenchResult",
    "run_op_bench",
]

CONFIGS: dict[str, dict[str, bool]] = {
    "baseline": {"contpte": False},
    "contpte": {},
}
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
    """One benchmark: what it measures and how its table is labelled."""

    name: str
    title: str
    op: str
    """What one operation is (the unit of time per operation)."""
    nbytes: int
    """Default size of the anonymous region the benchmark works on."""
    description: str
    key_counters: tuple[tuple[str, str], ...]
    """(counter, label) columns of the counters table."""
    syscalls_per_op: int
    """Syscalls per operation, each priced by the profile's ``syscall`` figure."""
    patterns: tuple[str, ...] = ("",)
    """Touch patterns (``bench fault`` only); ``""`` = none."""
    touch_first: bool = True
    """Write the whole region (faulting it in) before the measured phase."""


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
            nbytes=16 << 20,
            description=(
                "A process maps and touches an anonymous region, then unmaps it with one munmap(). "
                "The measured phase is the munmap: zap_pte_range clears every PTE (arm64 with "
                "teardown_opt clears whole contiguous blocks without unfolding them), the rmap and "
                "refcount updates, freeing folios and page tables, and the mmu_gather TLB flush."
            ),
            key_counters=_COMMON_COUNTERS,
            syscalls_per_op=1,
        ),
        OpBench(
            name="dontneed",
            title="MADV_DONTNEED one page at a time",
            op="one madvise(4K, MADV_DONTNEED) call",
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
            syscalls_per_op=1,
        ),
        OpBench(
            name="exit",
            title="exit of a process with a touched anonymous region",
            op="one exit() (address-space teardown only)",
            nbytes=16 << 20,
            description=(
                "A process maps and touches an anonymous region, then exits. The measured phase is "
                "the teardown of its address space (exit_mmap: a fullmm zap with "
                "get_and_clear_full_ptes over whole folios, the rmap and refcount updates, freeing "
                "folios and page tables, one ASID flush). Task and scheduler work outside the mm "
                "is not priced: the time is the address-space part of an exit."
            ),
            key_counters=_COMMON_COUNTERS,
            syscalls_per_op=0,
        ),
        OpBench(
            name="fault",
            title="faulting in anonymous memory",
            op="one 4K page touched",
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
            syscalls_per_op=0,
            patterns=tuple(PATTERNS),
            touch_first=False,
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


def _machine_settings(order: int) -> dict[str, Any]:
    """The Machine's THP settings that make anonymous faults allocate ``order`` folios."""
    _check_order(order)
    if order == 0:
        return {"mthp": {}}
    if order == PMD_ORDER:
        return {"mthp": {"2M": "inherit"}, "thp": "madvise"}
    return {"mthp": {folio_size(order): "always"}}


@dataclass(frozen=True)
class SimResult:
    """Counter deltas of one simulated measured phase, and the operations it did."""

    counters: dict[str, int]
    ops: int

    def as_dict(self) -> dict[str, object]:
        return {"ops": self.ops, "counters": dict(self.counters)}


def _stats(m: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in m.stats().items()}


def _measure(bench: str, p: Any, addr: int, nbytes: int, pattern: str) -> int:
    """Run the measured phase of ``bench``; return the number of operations."""
    if bench == "munmap":
        p.munmap(addr, nbytes)
        return 1
    if bench == "exit":
        p.exit()
        return 1
    npages = nbytes // _PAGE_SIZE
    if bench == "dontneed":
        for i in range(npages):
            p.madvise(addr + i * _PAGE_SIZE, _PAGE_SIZE, "dontneed")
        return npages
    if bench == "fault":
        for i in range(npages):
            va = addr + i * _PAGE_SIZE
            if pattern == "page":
                p.read(va, _PAGE_SIZE)
            p.write(va, _PAGE_SIZE, value=i + 1)
        return npages
    raise ModelUsageError(f"unknown benchmark {bench!r}; expected one of {', '.join(BENCHES)}")


def simulate_op(
    bench: str, config: str, order: int, pattern: str = "", nbytes: int | None = None, cpus: int = 1
) -> SimResult:
    """Simulate the measured phase of ``bench`` on ``order`` folios; return its counters.

    A fresh arm64 Machine (validators off) per call; the region is mapped
    (and, except for ``fault``, touched) before the counters are read.
    """
    spec = BENCHES.get(bench)
    if spec is None:
        raise ModelUsageError(f"unknown benchmark {bench!r}; expected one of {', '.join(BENCHES)}")
    if config not in CONFIGS:
        raise ModelUsageError(f"unknown configuration {config!r}; expected one of {', '.join(CONFIGS)}")
    if pattern not in spec.patterns:
        want = ", ".join(repr(x) for x in spec.patterns)
        raise ModelUsageError(f"bench {bench}: unknown pattern {pattern!r}; expected one of {want}")
    size = spec.nbytes if nbytes is None else nbytes
    align = _PAGE_SIZE << max(order, 4)
    if size <= 0 or size % align:
        raise ModelUsageError(
            f"bench {bench}: size {size} must be a positive multiple of {align >> 10}K "
            f"(whole {folio_size(order)} folios and contiguous blocks)"
        )
    import contpte

    options: dict[str, Any] = {**_machine_settings(order), **CONFIGS[config]}
    # Room for the region, its page tables, and CoW copies of the zero page.
    memory = max(64 << 20, 4 * size)
    m = contpte.Machine(arch="arm64", memory=memory, cpus=cpus, check=False, **options)
    p = m.spawn()
    addr = p.mmap(size, prot="rw", flags="private|anonymous")
    if order == PMD_ORDER:
        p.madvise(addr, size, "hugepage")
    if spec.touch_first:
        p.write(addr, size, value=1)
        got = int(p.pagemap(addr, _PAGE_SIZE)["order"][0])
        if got != order:
            raise ModelUsageError(
                f"bench {bench}: the region was faulted in with order-{got} folios, not order {order} "
                f"({config}); the benchmark would measure something else"
            )
    before = _stats(m)
    ops = _measure(bench, p, addr, size, pattern)
    after = _stats(m)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))}
    return SimResult({k: v for k, v in delta.items() if v}, ops)


SimKey = tuple[str, str, int, str, int, int]
_CACHE: dict[SimKey, SimResult] = {}


def op_counters(
    bench: str, config: str, order: int, pattern: str = "", nbytes: int | None = None, cpus: int = 1
) -> SimResult:
    """``simulate_op`` cached for the life of the process (one run)."""
    size = BENCHES[bench].nbytes if nbytes is None and bench in BENCHES else nbytes
    key = (bench, config, order, pattern, int(size or 0), cpus)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = simulate_op(bench, config, order, pattern, nbytes, cpus)
    return SimResult(dict(hit.counters), hit.ops)


def clear_cache() -> None:
    _CACHE.clear()


SimSource = Callable[[str, str, int, str, int | None, int], SimResult]


def op_time(bench: OpBench, sim: SimResult, profile: Profile, ncpus: int) -> Breakdown:
    """Time of a whole measured phase while ``ncpus`` copies run it at once.

    Each syscall adds the profile's ``syscall`` figure (no counter records it).
    """
    extra = {"syscall": float(sim.ops * bench.syscalls_per_op)} if bench.syscalls_per_op else None
    return time_breakdown(sim.counters, profile, ncpus, extra=extra)


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
    """As priced (fitted where a fit ran)."""
    rows: tuple[OpRow, ...]
    fits: dict[str, FitResult]
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    """Every counter of every simulation, by ``"order/pattern/config"``."""
    unmapped: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        b = self.bench
        return {
            "benchmark": b.name,
            "title": b.title,
            "op": b.op,
            "workload": {
                "bytes": self.nbytes,
                "arch": "arm64",
                "copies": self.ncpus,
                "patterns": {p: PATTERNS[p] for p in dict.fromkeys(r.pattern for r in self.rows) if p},
            },
            "configs": {k: dict(v) for k, v in CONFIGS.items()},
            "change": "operations/s of contpte vs baseline (contpte=False); negative = slower",
            "profiles": [p.name for p in self.profiles],
            "fit": {k: f.as_dict() for k, f in self.fits.items()},
            "key_counters": dict(b.key_counters),
            "rows": [r.as_dict() for r in self.rows],
            "counters_per_run": {k: dict(v) for k, v in self.counters.items()},
            "unmapped_counters": list(self.unmapped),
        }


def _default_source(
    bench: str, config: str, order: int, pattern: str, nbytes: int | None, cpus: int
) -> SimResult:
    return op_counters(bench, config, order, pattern, nbytes, cpus)


def simulation_points(
    bench: str, orders: Sequence[int], patterns: Sequence[str] | None = None
) -> list[tuple[int, str, str]]:
    """The (order, pattern, configuration) triples a run simulates, in order."""
    spec = BENCHES[bench]
    pats = spec.patterns if patterns is None else tuple(patterns)
    return [(o, pat, config) for pat in pats for o in orders for config in CONFIGS]


def fit_points(profiles: Sequence[Profile], fit: bool | None) -> list[tuple[str, int]]:
    """The fork simulations a run needs to calibrate its profiles first."""
    if not any(_wants_fit(p, fit) for p in profiles):
        return []
    return fork_simulation_points((), fit=True)


def _wants_fit(profile: Profile, fit: bool | None) -> bool:
    return bool(profile.free_parameters) and (fit is None or fit)


def run_op_bench(
    bench: str,
    profiles: Sequence[Profile],
    *,
    orders: Sequence[int] = ORDERS,
    patterns: Sequence[str] | None = None,
    ncpus: int = 1,
    nbytes: int | None = None,
    fit: bool | None = None,
    counters: SimSource = _default_source,
    fork_source: Callable[[str, int], Mapping[str, int]] = fork_counters,
    progress: Callable[[str], None] | None = None,
) -> OpBenchResult:
    """Simulate ``bench`` per folio order (and pattern) and configuration; price it per profile.

    ``fit=None`` first calibrates every profile that has free parameters on
    the published fork rows (as ``bench fork`` does), so that e.g. ``altra``
    prices broadcast TLBIs with its fitted figures; ``fit=False`` keeps the
    profiles' starting values.  ``progress`` is called once per simulation.
    """
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

    for config, n in fit_points(profiles, fit):
        fork_source(config, n)
        if progress is not None:
            progress(f"fork {config} @ {n} CPUs (calibration)")
    sims: dict[tuple[int, str, str], SimResult] = {}
    for order, pat, config in simulation_points(bench, orders, pats):
        sims[(order, pat, config)] = counters(bench, config, order, pat, size, ncpus)
        if progress is not None:
            label = f"{folio_size(order)}{' ' + pat if pat else ''} {config}"
            progress(label)

    fits: dict[str, FitResult] = {}
    priced: list[Profile] = []
    for prof in profiles:
        if _wants_fit(prof, fit):
            result = calibrate_fork(prof, fork_source)
            fits[prof.name] = result
            priced.append(result.profile)
        else:
            priced.append(prof)

    rows: list[OpRow] = []
    for pat in pats:
        for order in orders:
            per = {config: sims[(order, pat, config)] for config in CONFIGS}
            ops = per["baseline"].ops
            cells: dict[str, Cell] = {}
            for prof in priced:
                bd = {config: op_time(spec, s, prof, ncpus) for config, s in per.items()}
                t = {config: b.total_ns / max(1, per[config].ops) for config, b in bd.items()}
                change = t["baseline"] / t["contpte"] - 1.0 if t["contpte"] > 0 else 0.0
                cells[prof.name] = Cell(prof.name, t, change, bd)
            key = {
                config: {name: s.counters.get(name, 0) for name, _ in spec.key_counters}
                for config, s in per.items()
            }
            rows.append(OpRow(order, pat, ops, key, cells))
    all_names = {name for s in sims.values() for name in s.counters}
    return OpBenchResult(
        bench=spec,
        nbytes=size,
        ncpus=ncpus,
        profiles=tuple(priced),
        rows=tuple(rows),
        fits=fits,
        counters={
            f"{folio_size(o)}/{pat or '-'}/{config}": dict(s.counters) for (o, pat, config), s in sims.items()
        },
        unmapped=tuple(unmapped_counters(all_names)),
    )
