"""Plots of the fork table and of the calibration (model beside published).

Drawn from the plain data of ``ForkBench.as_dict()`` and
``Calibration.as_dict()`` (the ``--json`` outputs), so ``report`` stays
independent of ``cost``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .plot import Panel, plot_panels, plot_series

__all__ = ["plot_fork_table", "plot_fit_set"]


def plot_fork_table(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Change of forks/s against copies (model lines, published crosses), and the time per iteration."""
    rows: Sequence[Mapping[str, Any]] = data["rows"]
    lines = {
        f"{cfg} (model)": [(float(r["cpus"]), float(r["change_pct"][cfg])) for r in rows]
        for cfg in ("before", "after")
    }
    markers = {}
    for cfg in ("before", "after"):
        pts = [(float(r["cpus"]), float(r["published_pct"][cfg])) for r in rows if cfg in r["published_pct"]]
        kept_out = any(cfg in r["published_pct"] and not r["fitted"].get(cfg, False) for r in rows)
        markers[f"{cfg} (published, Ampere Altra{', kept out of the fit' if kept_out else ''})"] = pts
    if not any(markers.values()):
        markers = {}
    cats = [str(r["cpus"]) for r in rows]
    times = {
        name: [float(r["time_us"][key]) for r in rows]
        for name, key in (
            ("before: contpte off", "before-base"),
            ("before: contpte on", "before"),
            ("after: contpte off", "after-base"),
            ("after: contpte on", "after"),
        )
    }
    right = Panel(
        "time per fork + child exit, one copy; hatched: contpte off",
        "\u00b5s (log scale)",
        cats,
        times,
        log=True,
        styles={
            "before: contpte off": {"color": "C0", "alpha": 0.45, "hatch": "//"},
            "before: contpte on": {"color": "C0"},
            "after: contpte off": {"color": "C1", "alpha": 0.45, "hatch": "//"},
            "after: contpte on": {"color": "C1"},
        },
    )
    return plot_series(
        path,
        title=f"fork table, profile {data['profile']}: forks/s vs contpte off",
        xlabel="copies (one per CPU)",
        ylabel="change of forks/s (%)",
        lines=lines,
        markers=markers,
        right=right,
        xticks=[float(r["cpus"]) for r in rows],
    )


def _fmt(measure: str, v: float) -> str:
    return f"{v * 1000:.2f} ms" if measure == "seconds" else f"{v:+.1f}%"


def plot_fit_set(path: str | Path, calibrations: Sequence[Mapping[str, Any]]) -> Path:
    """Per profile, every fit-set figure: published beside model.

    Changes are drawn as time ratios (variant / baseline) on a log axis, so
    -10% and +3654% share one panel; absolute times get their own panel.
    The labels give the figures in their published form; figures kept out
    of the fit are marked.
    """
    panels: list[Panel] = []
    for cal in calibrations:
        figs: Sequence[Mapping[str, Any]] = cal["figures"]
        for kind, measures in (("changes", ("throughput", "time")), ("times", ("seconds",))):
            chosen = [f for f in figs if f["measure"] in measures]
            if not chosen:
                continue
            cats = [str(f["key"]) + ("" if f["in_fit"] else " (kept out)") for f in chosen]

            def ratio(f: Mapping[str, Any], value: float) -> float:
                if f["measure"] == "throughput":
                    return 1.0 / (1.0 + value / 100.0)
                if f["measure"] == "time":
                    return 1.0 + value / 100.0
                return value * 1000.0  # ms

            pub = [ratio(f, float(f["published"])) for f in chosen]
            mod = [ratio(f, float(f["model"])) for f in chosen]
            unit = {"seconds": "%"}.get(str(chosen[0]["measure"]), " pp")
            labels = {"model": [f"{float(f['residual']):+.1f}{unit}" for f in chosen]}
            if kind == "changes":
                labels["published"] = [_fmt(f["measure"], float(f["published"])) for f in chosen]
                labels["model"] = [
                    _fmt(f["measure"], float(f["model"])) + f" ({float(f['residual']):+.1f} pp)"
                    for f in chosen
                ]
            log = kind == "changes" and max(pub + mod) / max(min(pub + mod), 1e-9) > 3
            ylabel = (
                ("time ratio, variant / baseline" + (" (log)" if log else "")) if kind == "changes" else "ms"
            )
            panels.append(
                Panel(
                    f"{cal['profile']}: {kind} (rms log ratio {float(cal['rms_log_ratio']):.3f})",
                    ylabel,
                    cats,
                    {"published": pub, "model": mod},
                    log=log,
                    labels=labels,
                    zero_line=False,
                )
            )
    return plot_panels(path, panels, title="fit set (docs/numbers.md): published beside the calibrated model")
