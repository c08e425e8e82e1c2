"""Terminal tables (rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["render_table", "fmt_pct", "fmt_us", "fmt_ns", "fmt_ns_pair"]


def fmt_pct(fraction: float | None, digits: int = 1) -> str:
    """``-0.104`` -> ``"-10.4%"``; None -> an em dash (no figure)."""
    if fraction is None:
        return "\u2014"
    return f"{100 * fraction:+.{digits}f}%"


def fmt_us(ns: float) -> str:
    """Nanoseconds as microseconds with sensible precision."""
    us = ns / 1000
    return f"{us:,.1f}" if us >= 10 else f"{us:,.2f}"


def fmt_ns(ns: float) -> str:
    """A time in ns with a unit that keeps three significant digits: ``"412 ns"``, ``"1.27 \u00b5s"``."""
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "\u00b5s")):
        if ns >= scale:
            v = ns / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    return f"{ns:.3g} ns" if ns < 100 else f"{ns:.0f} ns"


def fmt_ns_pair(a: float, b: float, sep: str = " \u2192 ") -> str:
    """Two times in the unit of the larger: ``"549 \u2192 550 ns"``, ``"1.27 \u2192 1.31 \u00b5s"``."""
    top = max(a, b)
    scale, unit = next(
        ((s, u) for s, u in ((1e9, "s"), (1e6, "ms"), (1e3, "\u00b5s")) if top >= s), (1.0, "ns")
    )

    def num(v: float) -> str:
        x = v / scale
        return f"{x:.3g}" if x < 100 else f"{x:,.0f}"

    return f"{num(a)}{sep}{num(b)} {unit}"


def render_table(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    caption: str | None = None,
    numeric_from: int = 1,
) -> None:
    """Print a table; columns from ``numeric_from`` on are right-aligned."""
    table = Table(title=title, caption=caption, caption_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i >= numeric_from else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
