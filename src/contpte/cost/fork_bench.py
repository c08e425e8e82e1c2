"""The fork scaling benchmark (the fork table), priced from its shipped scenario.

``cost/scenarios/fitset/wis-fork.scn`` is the workload (docs/numbers.md):
each of N copies, one per CPU, touches 128 MiB of 64K-folio anonymous memory
once, then loops fork(); the child exits at once; the parent waits.  One
steady-state iteration (fork + child exit) is simulated per kernel variant
(``fitset.EXPERIMENTS["wis-fork"]``) and priced with N copies contending for
broadcast TLB maintenance; the score is forks per second, reported as the
change against the same kernel with contpte off:

- before: the contpte series' v6 patches 1-12 on v6.9's batched core-mm
  (write-protect and clear one PTE at a time, so the child's exit unfolds
  every block; no automatic fold, no pte_batch_hint()); its baseline is
  that kernel without contpte;
- after: the series as merged in v6.9 (whole-block write-protect and
  teardown), with contpte; its baseline is the same without contpte.

The published figures (Ampere Altra, 1 and 32 copies) are shown beside the
``altra`` profile only, each marked as fitted on, or kept out of the fit
(``fitset.EXCLUDED``); every other row is a prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ModelUsageError
from .calibrate import machine_of
from .fitset import EXCLUDED, EXPERIMENTS, FIT_SET, Published, load_scenario
from .model import Breakdown
from .pricing import Measured, price, simulate
from .profile import Profile

__all__ = ["TABLE_CPUS", "CONFIGS", "ForkRow", "ForkBench", "run_fork_bench", "simulation_names"]

TABLE_CPUS = (1, 8, 16, 24, 32)
"""CPU counts of the published table's shape."""

CONFIGS = ("before", "after")
"""The two kernels of the table; each is compared with its own ``<config>-base``."""

SCENARIO = "wis-fork"


def simulation_names() -> list[str]:
    """The variants a run simulates, in order."""
    return list(EXPERIMENTS[SCENARIO])


@dataclass(frozen=True)
class ForkRow:
    """One row: N copies; time per iteration and change of forks/s per kernel."""

    ncpus: int
    time_ns: dict[str, float]
    """Per variant (``before``, ``before-base``, ``after``, ``after-base``)."""
    change: dict[str, float]
    """Per config: change of forks/s against its baseline, percent (negative = slower)."""
    published: dict[str, Published]
    """Per config: the published figure of this row, when the profile's machine has one."""
    fitted: dict[str, bool]
    """Per config with a published figure: whether the profile was fitted on it."""
    over_cores: bool
    breakdown: dict[str, Breakdown]

    @property
    def role(self) -> str:
        """``fit set`` for a row with published figures (see ``fitted``), else ``prediction``."""
        return "fit set" if self.published else "prediction"

    def as_dict(self) -> dict[str, object]:
        return {
            "cpus": self.ncpus,
            "role": self.role,
            "over_cores": self.over_cores,
            "time_us": {k: v / 1000 for k, v in self.time_ns.items()},
            "change_pct": dict(self.change),
            "published_pct": {c: p.value for c, p in self.published.items()},
            "fitted": dict(self.fitted),
            "breakdown": {k: b.as_dict() for k, b in self.breakdown.items()},
        }


@dataclass(frozen=True)
class ForkBench:
    profile: Profile
    rows: tuple[ForkRow, ...]
    counters: dict[str, dict[str, int]]
    unmapped: tuple[str, ...]

    @property
    def has_published(self) -> bool:
        return any(r.published for r in self.rows)

    def as_dict(self) -> dict[str, object]:
        return {
            "benchmark": "fork",
            "scenario": f"cost/scenarios/fitset/{SCENARIO}.scn",
            "workload": {
                "bytes": 128 << 20,
                "folio": "64K",
                "copies": "one per CPU",
                "measured": "one iteration",
            },
            "profile": self.profile.name,
            "cores": self.profile.cores,
            "variants": dict(EXPERIMENTS[SCENARIO].items()),
            "published_source": FIT_SET[0].source if self.has_published else None,
            "rows": [r.as_dict() for r in self.rows],
            "counters_per_iteration": self.counters,
            "unmapped_counters": list(self.unmapped),
        }


def _machine(profile: Profile) -> str | None:
    try:
        return machine_of(profile)
    except ModelUsageError:
        return None


def run_fork_bench(
    profile: Profile,
    cpus: Sequence[int] = TABLE_CPUS,
    *,
    progress: Callable[[str], None] | None = None,
) -> ForkBench:
    """Simulate one steady-state iteration per variant and price it at each CPU count."""
    if not cpus or min(cpus) < 1:
        raise ModelUsageError(f"CPU counts must be >= 1, got {list(cpus)}")
    sc = load_scenario(SCENARIO)
    sims: dict[str, Measured] = {}
    for name, overrides in EXPERIMENTS[SCENARIO].items():
        sims[name] = simulate(sc, overrides, profile)
        if progress is not None:
            progress(name)
    machine = _machine(profile)
    published = {(f.cpus, f.variant): f for f in FIT_SET if f.scenario == SCENARIO and f.machine == machine}
    fitted_any = bool(profile.free_parameters)
    rows = []
    for n in cpus:
        bd = {name: price(m, profile, n) for name, m in sims.items()}
        t = {name: b.total_ns for name, b in bd.items()}
        change = {c: 100.0 * (t[f"{c}-base"] / t[c] - 1.0) for c in CONFIGS}
        pub = {c: published[(n, c)] for c in CONFIGS if (n, c) in published}
        fitted = {c: fitted_any and p.key not in EXCLUDED for c, p in pub.items()}
        rows.append(ForkRow(n, t, change, pub, fitted, n > profile.cores, bd))
    from .model import unmapped_counters

    return ForkBench(
        profile,
        tuple(rows),
        {name: dict(m.counters) for name, m in sims.items()},
        tuple(unmapped_counters({k for m in sims.values() for k in m.counters})),
    )
