"""Plots (matplotlib, Agg: no display needed).

Two building blocks: ``plot_series`` (quantities against a numeric axis,
e.g. copies) and ``plot_panels`` (grouped bars over *categories*, e.g. folio
orders or figures, so nothing is drawn between 4K, 64K and 2M as if they lay
on a line).  Overlapping series stay visible: lines get distinct markers and
line styles and are drawn thinnest on top; bars of a group stand side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError

__all__ = ["PLOT_FORMATS", "plot_series", "Panel", "plot_panels"]

PLOT_FORMATS = ("png", "svg")

Points = Sequence[tuple[float, float]]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_STYLES = ("-", "--", "-.", ":")


def _check_path(path: str | Path) -> tuple[Path, str]:
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise ModelUsageError(f"plot file {str(out)!r}: format must be one of {', '.join(PLOT_FORMATS)}")
    return out, fmt


def _save(fig: Any, out: Path, fmt: str) -> Path:
    try:
        fig.savefig(out, format=fmt, bbox_inches="tight")
    except OSError as e:
        raise ModelUsageError(f"cannot write plot {str(out)!r}: {e.strerror or e}") from None
    return out


def _new_figure(ncols: int, width: float = 6.5, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _draw_lines(ax: Any, lines: Mapping[str, Points], markers: Mapping[str, Points] | None) -> None:
    from matplotlib.colors import to_hex

    colors: list[str] = []
    n = len(lines)
    for i, (label, pts) in enumerate(lines.items()):
        xs, ys = zip(*pts, strict=True) if pts else ((), ())
        (line,) = ax.plot(
            xs,
            ys,
            marker=_MARKERS[i % len(_MARKERS)],
            linestyle=_STYLES[i % len(_STYLES)],
            linewidth=2.5 - 1.5 * i / max(1, n),  # later series thinner, drawn on top
            markersize=8 - 3 * i / max(1, n),
            label=label,
            zorder=2 + i,
        )
        colors.append(to_hex(line.get_color()))
    # the i-th marker series belongs with the i-th line: same colour
    for i, (label, pts) in enumerate((markers or {}).items()):
        xs, ys = zip(*pts, strict=True) if pts else ((), ())
        color = colors[i] if i < len(colors) else None
        ax.plot(
            xs,
            ys,
            linestyle="none",
            marker="x",
            markersize=12,
            markeredgewidth=2.5,
            label=label,
            color=color,
            zorder=10,
        )


def plot_series(
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    lines: Mapping[str, Points],
    markers: Mapping[str, Points] | None = None,
    right: Panel | None = None,
    xticks: Sequence[float] | None = None,
) -> Path:
    """Draw ``lines`` (label -> points) and ``markers`` (label -> points) to ``path``.

    ``right``: a bar panel drawn beside (e.g. absolute times).  The format
    follows the suffix: ``.png`` or ``.svg``.
    """
    out, fmt = _check_path(path)
    fig = _new_figure(2 if right is not None else 1)
    axes = fig.subplots(1, 2 if right is not None else 1, squeeze=False)[0]
    ax = axes[0]
    _draw_lines(ax, lines, markers)
    ax.axhline(0, color="grey", linewidth=0.8, zorder=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticks is not None:
        ax.set_xticks(list(xticks))
    ax.grid(True, alpha=0.3)
    ax.legend()
    if right is not None:
        _draw_panel(axes[1], right)
    return _save(fig, out, fmt)


@dataclass(frozen=True)
class Panel:
    """Grouped bars: one group per category, one bar per series (``None``: no bar)."""

    title: str
    ylabel: str
    categories: Sequence[str]
    series: Mapping[str, Sequence[float | None]]
    log: bool = False
    labels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per series, a text drawn above each bar (e.g. the value)."""
    zero_line: bool = True
    styles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per series, matplotlib bar keywords (colour, hatch, alpha)."""


def _draw_panel(ax: Any, p: Panel) -> None:
    n = max(1, len(p.series))
    width = 0.8 / n
    xs = range(len(p.categories))
    for i, (name, values) in enumerate(p.series.items()):
        offs = [x - 0.4 + width * (i + 0.5) for x in xs]
        pts = [(o, v) for o, v in zip(offs, values, strict=True) if v is not None]
        if not pts:
            continue
        ox, vy = zip(*pts, strict=True)
        bars = ax.bar(ox, vy, width=width * 0.95, label=name, zorder=2, **dict(p.styles.get(name, {})))
        texts = p.labels.get(name)
        if texts:
            shown = [t for t, v in zip(texts, values, strict=True) if v is not None]
            ax.bar_label(bars, labels=shown, fontsize=7, padding=2, rotation=90)
    vals = [v for values in p.series.values() for v in values if v is not None]
    if vals and p.labels:  # headroom for the labels above the bars
        hi, lo = max(vals), min(vals)
        if p.log and lo > 0:
            ax.set_ylim(lo / 1.3, hi * (hi / lo) ** 0.45 * 1.5)
        elif hi > 0:
            ax.set_ylim(top=hi + 0.4 * (hi - min(0.0, lo)))
    ax.set_xticks(list(xs))
    ax.set_xticklabels(
        list(p.categories),
        rotation=30 if max((len(c) for c in p.categories), default=0) > 8 else 0,
        ha="right" if max((len(c) for c in p.categories), default=0) > 8 else "center",
    )
    if p.log:
        ax.set_yscale("log")
    elif p.zero_line:
        ax.axhline(0, color="grey", linewidth=0.8, zorder=1)
    ax.set_title(p.title)
    ax.set_ylabel(p.ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    # Outside the axes, right of them: never over a series (and no costly "best" search).
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_panels(path: str | Path, panels: Sequence[Panel], *, title: str | None = None) -> Path:
    """Draw bar panels side by side, two per row (``.png`` or ``.svg``)."""
    if not panels:
        raise ModelUsageError("nothing to plot")
    out, fmt = _check_path(path)
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = _new_figure(ncols, height=5.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, p in zip(axes, panels, strict=False):
        _draw_panel(ax, p)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _save(fig, out, fmt)
