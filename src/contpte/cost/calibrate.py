"""Fitting a profile's free parameters to published figures.

Only figures marked ``fit = true`` in a profile move; every other figure keeps
its documented value.  The fit minimises the sum of squared residuals (in
percentage points) over the calibration targets with a Nelder-Mead simplex
over the square roots of the parameters (costs and slopes are >= 0, and 0 must
stay reachable: a fit may find that a cost is negligible).  A fit needs
more targets than free parameters: no parameter may exist only to absorb one
data point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ModelUsageError
from .profile import Profile

__all__ = ["Target", "TargetResult", "FitResult", "fit_profile", "nelder_mead"]


@dataclass(frozen=True)
class Target:
    """One published figure: a relative change (fraction, -0.104 = -10.4%)."""

    label: str
    ncpus: int
    config: str
    value: float


@dataclass(frozen=True)
class TargetResult:
    target: Target
    model: float

    @property
    def residual(self) -> float:
        """model - published, as a fraction."""
        return self.model - self.target.value


@dataclass(frozen=True)
class FitResult:
    """The fitted parameters, the fitted profile and the residual of every target."""

    profile: Profile
    start: dict[str, float]
    params: dict[str, float]
    results: tuple[TargetResult, ...]
    iterations: int

    @property
    def rms(self) -> float:
        """Root-mean-square residual, as a fraction."""
        if not self.results:
            return 0.0
        return math.sqrt(sum(r.residual**2 for r in self.results) / len(self.results))

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile.name,
            "start": self.start,
            "params": self.params,
            "iterations": self.iterations,
            "rms_pct": 100 * self.rms,
            "targets": [
                {
                    "label": r.target.label,
                    "ncpus": r.target.ncpus,
                    "config": r.target.config,
                    "published_pct": 100 * r.target.value,
                    "model_pct": 100 * r.model,
                    "residual_pct": 100 * r.residual,
                }
                for r in self.results
            ],
        }


def nelder_mead(
    f: Callable[[list[float]], float],
    x0: Sequence[float],
    *,
    step: float | Sequence[float] = 1.0,
    xtol: float = 1e-9,
    ftol: float = 1e-14,
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


def fit_profile(
    profile: Profile,
    targets: Sequence[Target],
    predict: Callable[[Profile, Target], float],
    *,
    params: Sequence[str] | None = None,
) -> FitResult:
    """Fit ``params`` (default: the profile's ``fit = true`` figures) so that
    ``predict(profile, target)`` matches every target's value.
    """
    names = list(params) if params is not None else profile.free_parameters
    if not names:
        raise ModelUsageError(f"profile {profile.name!r} has no free parameters (no figure has fit = true)")
    if len(targets) <= len(names):
        raise ModelUsageError(
            f"{len(names)} free parameters need more than {len(names)} targets, got {len(targets)}"
        )
    start = {name: profile[name] for name in names}

    def unpack(x: list[float]) -> dict[str, float]:
        return {name: v * v for name, v in zip(names, x, strict=True)}

    def objective(x: list[float]) -> float:
        trial = profile.with_values(unpack(x))
        return sum((100 * (predict(trial, t) - t.value)) ** 2 for t in targets)

    x0 = [math.sqrt(start[name]) for name in names]
    x, _, iterations = nelder_mead(objective, x0, step=[0.5 * v if v > 0 else 0.1 for v in x0])
    fitted_values = unpack(x)
    src = "fitted by contpte calibrate on: " + ", ".join(t.label for t in targets)
    fitted = profile.with_values(fitted_values, source=src)
    results = tuple(TargetResult(t, predict(fitted, t)) for t in targets)
    return FitResult(fitted, start, fitted_values, results, iterations)
