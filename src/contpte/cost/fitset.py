"""The fit set: the published figures a profile may be calibrated on, and how to reproduce each.

docs/numbers.md lists them, with their sources; every other published figure
is held out and is not in this repository.  Each figure names the shipped
scenario that reproduces its workload (``cost/scenarios/fitset/*.scn``) and
the kernel variants it compares, as Machine options on the model's one code
path (docs/cost-model.md explains the kernel reasoning behind each choice):

- the fork table (Ampere Altra): will-it-scale's fork loop, steady state.
  "before" = the contpte series' v6 patches 1-12 (mainline 4602e5757bcc,
  "Wire up PTE_CONT for user mappings") on v6.9's core-mm batching: per-PTE
  write-protect and clear (each unfolds a folded block), no automatic fold,
  no pte_batch_hint(); "after" = the series as merged in v6.9; each row's
  baseline is the same kernel with contpte off.
- the v4 microbenchmarks (Apple M2 VM, Ampere Altra): the base the series
  was posted on (v6.7-era, one PTE per iteration everywhere, no contpte)
  against the series up to patch 14 (contpte wired up, v4's
  ptep_set_wrprotect() that unfolds and refolds, no batching), 15 (batches
  of one contiguous block with per-page rmap, whole-block write-protect) and
  16 (whole blocks cleared without unfolding).
- David Hildenbrand's batched fork per folio size (x86): v6.8 (one PTE per
  iteration) against v6.9 (folio_pte_batch batches), absolute seconds and
  change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError
from ..workloads.scenario import Scenario, parse

__all__ = [
    "Published",
    "FIT_SET",
    "EXCLUDED",
    "EXPERIMENTS",
    "MACHINES",
    "scenario_path",
    "load_scenario",
    "figures_for",
]

V68 = {"batch_fork": False, "batch_zap": False}
"""Core-mm before the v6.9 batching of fork and zap."""
V4_BASE = {**V68, "contpte": False}
"""The base the v4 posting was measured against: one PTE per iteration, no contpte."""
V4_14 = {**V68, "wrprotect_refold": True}
"""v4 patches 1-14: contpte wired up, no batching (pte_batch_remaining() is 1)."""
V4_15 = {"batch_rmap": False, "batch_extent": "arch", "wrprotect_refold": True, "teardown_opt": False}
"""v4 patches 1-15: batches of one contiguous block (per-page rmap), whole-block write-protect."""
V4_16 = {**V4_15, "teardown_opt": True}
"""v4 patches 1-16: whole blocks cleared without unfolding."""
V6_14 = {"set_ptes_fold": False, "batch_hint": False}
"""v6 patches 1-14 on v6.9's core-mm batching: whole-block write-protect and clear, no
pte_batch_hint(), no fold from set_ptes(nr == 1)."""
V6_12 = {**V6_14, "wrprotect_ptes_opt": False, "teardown_opt": False}
"""v6 patches 1-12 ("Wire up PTE_CONT for user mappings"): write-protect and clear one PTE at a
time (each unfolds a folded block), folded blocks only from set_ptes(nr > 1)."""

_X86_SIZES = ("4K", "16K", "32K", "64K", "128K", "256K", "512K", "1M")


def _x86_variants() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for size in _X86_SIZES:
        mthp = {} if size == "4K" else {"mthp": {size: "always"}}
        out[f"old-{size}"] = {**V68, **mthp}
        out[f"new-{size}"] = dict(mthp)
    return out


EXPERIMENTS: dict[str, dict[str, dict[str, Any]]] = {
    "wis-fork": {
        "before-base": {**V6_12, "contpte": False},
        "before": dict(V6_12),
        "after-base": {"contpte": False},
        "after": {},
    },
    "v4-fork": {"base": V4_BASE, "v4-14": V4_14, "v4-15": V4_15},
    "v4-munmap": {"base": V4_BASE, "v4-15": V4_15, "v4-16": V4_16},
    "v4-dontneed": {"base": V4_BASE, "v4-15": V4_15, "v4-16": V4_16},
    "x86-fork": _x86_variants(),
    "x86-fork-2m": {"old-2M": dict(V68), "new-2M": {}},
}
"""Shipped fit-set scenario -> variant name -> Machine options over the header."""


@dataclass(frozen=True)
class Published:
    """One published figure of the fit set and how the model reproduces it.

    ``measure``: ``"throughput"`` (change of operations per second, percent,
    negative = slower), ``"time"`` (change of time, percent, positive =
    slower) or ``"seconds"`` (absolute time of the measured steps).
    ``baseline``: the variant the change is against (None for seconds).
    """

    key: str
    machine: str
    scenario: str
    variant: str
    baseline: str | None
    measure: str
    value: float
    cpus: int = 1
    source: str = ""
    sd: tuple[float, float] | None = None
    """The published standard deviations (percent of the baseline's mean time) of the baseline's
    runs and the variant's runs, where the source gives them."""
    runs: int = 1
    """How many runs each published mean is over (the v4 tables: 8)."""

    @property
    def noise_pp(self) -> float:
        """Two standard errors of the published change, in pp (0 where no deviation is published).

        The change is the difference of two means of ``runs`` runs each, so its standard error
        is sqrt(sd_baseline^2 + sd_variant^2) / sqrt(runs); two of them are the usual 95% band.
        """
        if self.sd is None:
            return 0.0
        return 2.0 * math.hypot(*self.sd) / math.sqrt(self.runs)

    @property
    def time_ratio(self) -> float:
        """The published figure as a ratio of times (variant / baseline), or seconds."""
        if self.measure == "throughput":
            return 1.0 / (1.0 + self.value / 100.0)
        if self.measure == "time":
            return 1.0 + self.value / 100.0
        return self.value

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "machine": self.machine,
            "scenario": self.scenario,
            "variant": self.variant,
            "baseline": self.baseline,
            "measure": self.measure,
            "published": self.value,
            "cpus": self.cpus,
            "source": self.source,
            "sd": list(self.sd) if self.sd is not None else None,
            "runs": self.runs,
            "noise_pp": self.noise_pp,
        }


_FORK_TABLE = "docs/numbers.md, 'The fork scaling benchmark' (Ryan Roberts, contpte series, LKML)"
_V4 = "docs/numbers.md, 'Per-patch microbenchmarks of contpte v4' (Ryan Roberts, LKML, 2023-12-18)"
_X86 = "docs/numbers.md, 'Batched fork on x86' (David Hildenbrand, LKML, January 2024)"


def _fork_table() -> list[Published]:
    rows = [("before", 1, -10.4), ("after", 1, -5.2), ("before", 32, -65.8), ("after", 32, -5.4)]
    return [
        Published(
            f"fork-table {cfg}@{n}", "altra", "wis-fork", cfg, f"{cfg}-base", "throughput", v, n, _FORK_TABLE
        )
        for cfg, n, v in rows
    ]


_V4_SD: dict[str, dict[str, tuple[float, float, float]]] = {
    "m2-vm": {"fork": (1.2, 2.8, 1.9), "dontneed": (7.9, 7.0, 0.9), "munmap": (6.4, 1.9, 1.4)},
    "altra": {"fork": (0.1, 0.0, 0.1), "dontneed": (0.0, 0.0, 0.0), "munmap": (0.1, 0.0, 0.2)},
}
"""The v4 tables' standard deviations (docs/numbers.md): baseline, before, after, per machine and test."""
_V4_RUNS = 8
"""The v4 tables are means over 8 runs of 100 iterations (docs/numbers.md)."""


def _v4() -> list[Published]:
    rows = [
        ("fork", "before", "v4-14", 541.5, 3654.4),
        ("fork", "after", "v4-15", -25.4, -6.7),
        ("dontneed", "before", "v4-15", -1.3, 13.0),
        ("dontneed", "after", "v4-16", -9.9, 14.1),
        ("munmap", "before", "v4-15", 43.3, 375.2),
        ("munmap", "after", "v4-16", -6.0, -0.6),
    ]
    out = []
    for test, stage, variant, m2, altra in rows:
        for machine, value in (("m2-vm", m2), ("altra", altra)):
            base_sd, before_sd, after_sd = _V4_SD[machine][test]
            sd = (base_sd, before_sd if stage == "before" else after_sd)
            out.append(
                Published(
                    f"v4 {test} {stage}",
                    machine,
                    f"v4-{test}",
                    variant,
                    "base",
                    "time",
                    value,
                    1,
                    _V4,
                    sd,
                    _V4_RUNS,
                )
            )
    return out


_X86_ROWS = (
    ("4K", 0.014328, 0.014035, -2.0),
    ("16K", 0.014263, 0.011960, -16.0),
    ("32K", 0.014334, 0.010940, -24.0),
    ("64K", 0.014046, 0.010444, -26.0),
    ("128K", 0.014011, 0.010063, -28.0),
    ("256K", 0.013993, 0.009938, -29.0),
    ("512K", 0.013983, 0.009850, -30.0),
    ("1M", 0.013986, 0.009820, -30.0),
    ("2M", 0.014305, 0.010076, -30.0),
)


def _x86() -> list[Published]:
    out = []
    for size, old, new, change in _X86_ROWS:
        sc = "x86-fork-2m" if size == "2M" else "x86-fork"
        out += [
            Published(f"x86 fork {size} old", "x86", sc, f"old-{size}", None, "seconds", old, 1, _X86),
            Published(f"x86 fork {size} new", "x86", sc, f"new-{size}", None, "seconds", new, 1, _X86),
            Published(
                f"x86 fork {size} change", "x86", sc, f"new-{size}", f"old-{size}", "time", change, 1, _X86
            ),
        ]
    return out


FIT_SET: tuple[Published, ...] = tuple(_fork_table() + _v4() + _x86())
"""Every published figure a profile may be fitted on (docs/numbers.md)."""

_BEFORE_CONFLICT = (
    "in the steady state of the fork loop the 'before' kernel (v6 patch 12, 4602e5757bcc) converts "
    "every 64K block once per iteration, at the child's exit (its per-PTE clear unfolds each block "
    "the fork wrote folded): 2048 conversions. The row allows 0.24 ms over the 2.07 ms baseline "
    "iteration, 0.12 us per conversion, less than a conversion's own 16 atomic exchanges cost "
    "before any TLBI (with TLB maintenance free the model still gives -33%), while the v4 Altra "
    "figures price a conversion at ~10 us (docs/cost-model.md, 'The fork table')"
)

EXCLUDED: dict[str, str] = {
    "fork-table before@1": _BEFORE_CONFLICT,
    "fork-table before@32": _BEFORE_CONFLICT,
}
"""Fit-set figures kept out of the fit, with the reason; calibrate still reports them."""

MACHINES = ("altra", "m2-vm", "x86")
"""The shipped profiles that have fit-set figures."""


def scenario_path(name: str) -> Path:
    """The shipped fit-set scenario file ``name`` (``"v4-fork"``)."""
    path = Path(str(resources.files("contpte.cost") / "scenarios" / "fitset" / f"{name}.scn"))
    if not path.exists():
        raise ModelUsageError(f"no fit-set scenario {name!r}; expected one of {', '.join(EXPERIMENTS)}")
    return path


@cache
def load_scenario(name: str) -> Scenario:
    """Parse a shipped fit-set scenario (cached)."""
    path = scenario_path(name)
    return parse(path.read_text(), f"fitset/{path.name}")


def figures_for(machine: str) -> list[Published]:
    """The fit-set figures of one machine (a shipped profile name)."""
    return [f for f in FIT_SET if f.machine == machine]
