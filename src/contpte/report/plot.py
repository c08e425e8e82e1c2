"""Plots (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ModelUsageError

__all__ = ["PLOT_FORMATS", "plot_series"]

PLOT_FORMATS = ("png", "svg")

Points = Sequence[tuple[float, float]]


def plot_series(
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    lines: Mapping[str, Points],
    markers: Mapping[str, Points] | None = None,
) -> Path:
    """Draw ``lines`` (label -> points) and ``markers`` (label -> points) to ``path``.

    The format follows the suffix: ``.png`` or ``.svg``.
    """
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise ModelUsageError(f"plot file {str(out)!r}: format must be one of {', '.join(PLOT_FORMATS)}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors: list[str] = []
    for label, pts in lines.items():
        xs, ys = zip(*pts, strict=True) if pts else ((), ())
        (line,) = ax.plot(xs, ys, marker="o", label=label)
        colors.append(to_hex(line.get_color()))
    # the i-th marker series belongs with the i-th line: same colour
    for i, (label, pts) in enumerate((markers or {}).items()):
        xs, ys = zip(*pts, strict=True) if pts else ((), ())
        color = colors[i] if i < len(colors) else None
        ax.plot(
            xs, ys, linestyle="none", marker="x", markersize=10, markeredgewidth=2, label=label, color=color
        )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    try:
        fig.savefig(out, format=fmt)
    except OSError as e:
        raise ModelUsageError(f"cannot write plot {str(out)!r}: {e.strerror or e}") from None
    return out
