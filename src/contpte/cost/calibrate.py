"""Fitting a profile's free parameters to its fit-set figures, and reporting every residual.

Only figures marked ``fit = true`` in a profile move, each within its
physical ``range``; every other figure keeps its documented value.  The fit
minimises the sum over the machine's fit-set figures (``fitset.FIT_SET``) of
the squared log-ratio of model to published *time ratio* (variant over
baseline, or seconds), so a 3% miss weighs alike on a -5% change and on a
+3654% slowdown.  It is a Nelder-Mead simplex, restarted from its best point,
over coordinates that map onto each range (logarithmically where the range
is positive), so no parameter can leave its range; one that ends at an edge
is reported as a failure (the data wanted it outside), never as a result.

Every figure is reported with its residual: percentage points for changes
(and the factor between the modelled and published time ratios, the measure
for large slowdowns), percent for absolute times.  Targets: within 3 pp, or
a factor of 1.25 where the published figure is at least a doubling of time;
3% for absolute times.  Where the source publishes the runs' standard
deviations, a change is also met within its published noise: two standard
errors of the difference of the two means (``Published.noise_pp``), when
that is wider than 3 pp.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ModelUsageError
from .fitset import EXCLUDED, EXPERIMENTS, Published, figures_for, load_scenario
from .model import DVM_KINDS, _solve_concurrency, event_counts, kind_cost
from .pricing import Measured, simulate
from .profile import Profile, load_profile

__all__ = [
    "FigureResult",
    "ParamResult",
    "Calibration",
    "nelder_mead",
    "machine_of",
    "simulations",
    "model_figures",
    "calibrate",
    "PP_TARGET",
    "FACTOR_TARGET",
    "SECONDS_TARGET",
]

PP_TARGET = 3.0
"""A change is met within this many percentage points..."""
FACTOR_TARGET = 1.25
"""...or, for a published slowdown of at least 2x, within this factor of its time ratio."""
SECONDS_TARGET = 3.0
"""An absolute time is met within this many percent."""


@dataclass(frozen=True)
class FigureResult:
    """One published figure beside the model's value."""

    published: Published
    model_ratio: float
    """Time ratio variant/baseline, or seconds."""
    excluded: str | None = None
    """Why the figure was kept out of the fit (None: it was fitted on)."""

    @property
    def model(self) -> float:
        """In the published figure's unit (percent change or seconds)."""
        r = self.model_ratio
        m = self.published.measure
        if m == "throughput":
            return 100.0 * (1.0 / r - 1.0)
        if m == "time":
            return 100.0 * (r - 1.0)
        return r

    @property
    def residual(self) -> float:
        """Model minus published: pp for changes, percent of the published value for seconds."""
        if self.published.measure == "seconds":
            return 100.0 * (self.model / self.published.value - 1.0)
        return self.model - self.published.value

    @property
    def factor(self) -> float:
        """Modelled over published time ratio (1 = exact)."""
        return self.model_ratio / self.published.time_ratio

    @property
    def large(self) -> bool:
        """A published slowdown of at least 2x: judged by factor."""
        return self.published.measure != "seconds" and self.published.time_ratio >= 2.0

    @property
    def tolerance_pp(self) -> float:
        """The pp a change is met within: 3, or the published noise where that is wider."""
        return max(PP_TARGET, self.published.noise_pp)

    @property
    def met(self) -> bool:
        if self.published.measure == "seconds":
            return abs(self.residual) <= SECONDS_TARGET
        if abs(self.residual) <= self.tolerance_pp:
            return True
        return self.large and 1.0 / FACTOR_TARGET <= self.factor <= FACTOR_TARGET

    def as_dict(self) -> dict[str, object]:
        return self.published.as_dict() | {
            "model": self.model,
            "residual": self.residual,
            "residual_unit": "%" if self.published.measure == "seconds" else "pp",
            "factor": self.factor,
            "tolerance_pp": None if self.published.measure == "seconds" else self.tolerance_pp,
            "met": self.met,
            "in_fit": self.excluded is None,
            "excluded_because": self.excluded,
        }


@dataclass(frozen=True)
class ParamResult:
    """One fitted figure: where it started, where it ended, its physical range."""

    name: str
    unit: str
    start: float
    value: float
    low: float
    high: float

    @property
    def at_edge(self) -> bool:
        """Ended at an edge of its range: the data wanted it outside (a failure)."""
        span = self.high - self.low
        return self.value <= self.low + 1e-3 * span or self.value >= self.high - 1e-3 * span

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "start": self.start,
            "fitted": self.value,
            "range": [self.low, self.high],
            "at_edge": self.at_edge,
        }


@dataclass(frozen=True)
class Calibration:
    """A profile fitted on its machine's fit-set figures, with every residual."""

    profile: Profile
    machine: str
    params: tuple[ParamResult, ...]
    results: tuple[FigureResult, ...]
    iterations: int
    fitted: bool

    @property
    def rms_log(self) -> float:
        """Root-mean-square of the log time-ratio residuals (what the fit minimises)."""
        if not self.results:
            return 0.0
        fitted = [r for r in self.results if r.excluded is None]
        if not fitted:
            return 0.0
        s = sum(math.log(r.factor) ** 2 for r in fitted)
        return math.sqrt(s / len(fitted))

    @property
    def failures(self) -> list[str]:
        out = [
            f"{p.name} ended at an edge of its range [{p.low:g}, {p.high:g}]"
            for p in self.params
            if p.at_edge
        ]
        out += [
            f"{r.published.key}: residual {r.residual:+.1f} {'%' if r.published.measure == 'seconds' else 'pp'}"
            for r in self.results
            if not r.met
        ]
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile.name,
            "machine": self.machine,
            "fitted": self.fitted,
            "iterations": self.iterations,
            "rms_log_ratio": self.rms_log,
            "params": [p.as_dict() for p in self.params],
            "figures": [r.as_dict() for r in self.results],
            "failures": self.failures,
        }


def nelder_mead(
    f: Callable[[list[float]], float],
    x0: Sequence[float],
    *,
    step: float | Sequence[float] = 1.0,
    xtol: float = 1e-7,
    ftol: float = 1e-12,
    max_iter: int = 4000,
) -> tuple[list[float], float, int]:
    """Minimise ``f`` from ``x0``; return (x, f(x), iterations).  Deterministic."""
    n = len(x0)
    steps = [float(step)] * n if isinstance(step, int | float) else [float(v) for v in step]
    simplex = [list(map(float, x0))]
    for i in range(n):
        x = list(map(float, x0))
        x[i] += steps[i]
        simplex.append(x)
    values = [f(x) for x in simplex]
    it = 0
    while it < max_iter:
        it += 1
        order = sorted(range(n + 1), key=lambda j: values[j])
        simplex = [simplex[j] for j in order]
        values = [values[j] for j in order]
        spread = max(abs(a - b) for x in simplex[1:] for a, b in zip(x, simplex[0], strict=True))
        if spread < xtol and abs(values[-1] - values[0]) < ftol:
            break
        centroid = [sum(x[i] for x in simplex[:-1]) / n for i in range(n)]
        worst = simplex[-1]

        def toward(t: float, c: list[float] = centroid, w: list[float] = worst) -> list[float]:
            return [ci + t * (ci - wi) for ci, wi in zip(c, w, strict=True)]

        xr = toward(1.0)
        fr = f(xr)
        if fr < values[0]:
            xe = toward(2.0)
            fe = f(xe)
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = toward(0.5) if fr < values[-1] else toward(-0.5)
            fc = f(xc)
            if fc < min(fr, values[-1]):
                simplex[-1], values[-1] = xc, fc
            else:  # shrink toward the best point
                best = simplex[0]
                simplex = [best] + [
                    [b + 0.5 * (xi - b) for xi, b in zip(x, best, strict=True)] for x in simplex[1:]
                ]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    best_j = min(range(n + 1), key=lambda j: values[j])
    return simplex[best_j], values[best_j], it


class _Range:
    """A bijection from the real line onto a range (logarithmic where the range is positive)."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.log = low > 0
        self.lo = math.log(low) if self.log else low
        self.hi = math.log(high) if self.log else high

    def to_value(self, x: float) -> float:
        t = 0.5 * (1.0 + math.tanh(x))
        v = self.lo + (self.hi - self.lo) * t
        return min(max(math.exp(v) if self.log else v, self.low), self.high)

    def to_coord(self, value: float) -> float:
        v = math.log(value) if self.log and value > 0 else value
        t = (v - self.lo) / (self.hi - self.lo)
        t = min(max(t, 1e-6), 1.0 - 1e-6)
        return math.atanh(2.0 * t - 1.0)


def machine_of(profile: Profile) -> str:
    """The shipped machine whose fit set a profile calibrates on: its name, or what it extends."""
    from .fitset import MACHINES

    seen: set[str] = set()
    p: Profile | None = profile
    while p is not None:
        if p.name in MACHINES:
            return p.name
        if p.extends is None or p.extends in seen:
            break
        seen.add(p.extends)
        p = load_profile(p.extends)
    raise ModelUsageError(
        f"profile {profile.name!r} has no fit-set figures: only {', '.join(MACHINES)} (or a profile that "
        "extends one) are calibrated on published figures (docs/numbers.md)"
    )


def simulations(figures: Sequence[Published]) -> list[tuple[str, str]]:
    """The (scenario, variant) pairs the figures need, in a stable order."""
    need: dict[tuple[str, str], None] = {}
    for f in figures:
        need[(f.scenario, f.variant)] = None
        if f.baseline is not None:
            need[(f.scenario, f.baseline)] = None
    return list(need)


def _simulate_all(
    figures: Sequence[Published], profile: Profile, progress: Callable[[str], None] | None
) -> dict[tuple[str, str], Measured]:
    out: dict[tuple[str, str], Measured] = {}
    for sc_name, variant in simulations(figures):
        overrides = EXPERIMENTS[sc_name][variant]
        out[(sc_name, variant)] = simulate(load_scenario(sc_name), overrides, profile)
        if progress is not None:
            progress(f"{sc_name} {variant}")
    return out


class _Pricer:
    """Prices pre-counted simulations fast, for many trial profiles."""

    def __init__(self, sims: dict[tuple[str, str], Measured]) -> None:
        self.counts = {key: event_counts(m.counters, m.extra)[0] for key, m in sims.items()}

    def total(self, key: tuple[str, str], profile: Profile, ncpus: int) -> float:
        counts = self.counts[key]
        dvm = rest = 0.0
        for kind, n in counts.items():
            c = n * kind_cost(profile, kind)
            if kind in DVM_KINDS:
                dvm += c
            else:
                rest += c
        k = profile["dvm_contention"]
        conc = _solve_concurrency(dvm, rest, k, ncpus)
        return rest + dvm * (1.0 + k * conc)

    def ratio(self, f: Published, profile: Profile) -> float:
        t = self.total((f.scenario, f.variant), profile, f.cpus)
        if f.baseline is None:
            return t / 1e9
        return t / self.total((f.scenario, f.baseline), profile, f.cpus)


def model_figures(
    profile: Profile,
    figures: Sequence[Published] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[FigureResult]:
    """The model's value of each fit-set figure of the profile's machine, unfitted."""
    figs = list(figures) if figures is not None else figures_for(machine_of(profile))
    pricer = _Pricer(_simulate_all(figs, profile, progress))
    return [FigureResult(f, pricer.ratio(f, profile)) for f in figs]


def calibrate(
    profile: Profile,
    *,
    fit: bool = True,
    figures: Sequence[Published] | None = None,
    progress: Callable[[str], None] | None = None,
    include_excluded: bool = False,
) -> Calibration:
    """Fit the profile's ``fit = true`` figures on its machine's fit-set figures.

    ``fit=False`` reports the residuals of the profile as it is.
    ``include_excluded``: fit the figures ``fitset.EXCLUDED`` keeps out too
    (to see what they would do to the fit: where the parameters go and what
    the other figures become).  A fit needs
    more figures than free parameters: no parameter may exist only to absorb
    one data point.
    """
    machine = machine_of(profile) if figures is None else (figures[0].machine if figures else profile.name)
    every = list(figures) if figures is not None else figures_for(machine)
    exclude = {} if figures is not None or include_excluded else dict(EXCLUDED.items())
    figs = [f for f in every if f.key not in exclude]
    names = profile.free_parameters if fit else []
    if fit and not names:
        raise ModelUsageError(f"profile {profile.name!r} has no free parameters (no figure has fit = true)")
    if fit and len(figs) <= len(names):
        raise ModelUsageError(
            f"{len(names)} free parameters need more than {len(names)} fit-set figures, got {len(figs)}"
        )
    pricer = _Pricer(_simulate_all(every, profile, progress))
    targets = [math.log(f.time_ratio) for f in figs]
    ranges = {n: _Range(*(profile.figures[n].range or (0.0, 1.0))) for n in names}
    start = {n: profile[n] for n in names}

    def trial(x: Sequence[float]) -> Profile:
        return profile.with_values({n: ranges[n].to_value(v) for n, v in zip(names, x, strict=True)})

    def objective(x: list[float]) -> float:
        p = trial(x)
        s = 0.0
        for f, t in zip(figs, targets, strict=True):
            r = pricer.ratio(f, p)
            s += (math.log(r) - t) ** 2 if r > 0 else 1e6
        return s

    iterations = 0
    fitted = profile
    if names:
        x = [ranges[n].to_coord(start[n]) for n in names]
        best = objective(x)
        for _ in range(6):  # restart from the best point until it stops improving
            x, val, it = nelder_mead(objective, x, step=0.6)
            iterations += it
            if val > best - 1e-12:
                best = min(best, val)
                break
            best = val
        fitted = profile.with_values({n: ranges[n].to_value(v) for n, v in zip(names, x, strict=True)})
    params = tuple(
        ParamResult(
            n,
            profile.figures[n].unit,
            start[n],
            fitted[n],
            *(profile.figures[n].range or (0.0, 0.0)),
        )
        for n in names
    )
    results = tuple(FigureResult(f, pricer.ratio(f, fitted), exclude.get(f.key)) for f in every)
    return Calibration(fitted, machine, params, results, iterations, bool(names))
