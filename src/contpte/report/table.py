"""Terminal tables (rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["render_table", "fmt_pct", "fmt_us"]


def fmt_pct(fraction: float | None, digits: int = 1) -> str:
    """``-0.104`` -> ``"-10.4%"``; None -> an em dash (no figure)."""
    if fraction is None:
        return "\u2014"
    return f"{100 * fraction:+.{digits}f}%"


def fmt_us(ns: float) -> str:
    """Nanoseconds as microseconds with sensible precision."""
    us = ns / 1000
    return f"{us:,.1f}" if us >= 10 else f"{us:,.2f}"


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
