"""Tables and plots of the operation benchmarks (``contpte bench munmap|dontneed|exit|fault``).

Rendered from the plain data of ``OpBenchResult.as_dict()`` (the ``--json``
output), so ``report`` stays independent of ``cost``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .plot import plot_series
from .table import fmt_ns_pair, fmt_pct, render_table

__all__ = ["render_op_bench", "plot_op_bench", "fmt_change_count"]

_ARROW = "\u2192"


def fmt_change_count(before: int, after: int) -> str:
    """``(0, 64)`` -> ``"0 → 64"``; equal counts print once."""
    return f"{before:,}" if before == after else f"{before:,} {_ARROW} {after:,}"


def render_op_bench(console: Console, data: Mapping[str, Any]) -> None:
    """Print, per touch pattern, the time table (a column pair per profile) and the counters table."""
    rows: Sequence[Mapping[str, Any]] = data["rows"]
    patterns = list(dict.fromkeys(str(r["pattern"] or "") for r in rows))
    for pattern in patterns:
        _render_section(console, data, [r for r in rows if (r["pattern"] or "") == pattern], pattern)


def _render_section(
    console: Console, data: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], pattern: str
) -> None:
    profiles: Sequence[str] = data["profiles"]
    workload = data["workload"]
    name = f"bench {data['benchmark']}" + (f", pattern {pattern}" if pattern else "")
    columns = ["order"]
    for p in profiles:
        columns += [p, "change"]
    table_rows = []
    for r in rows:
        cells = [f"{r['order']}: {r['folio']}"]
        for p in profiles:
            cell = r["profiles"][p]
            t = cell["op_ns"]
            cells += [fmt_ns_pair(t["baseline"], t["contpte"], _ARROW), fmt_pct(cell["change_pct"] / 100)]
        table_rows.append(cells)
    copies = workload["copies"]
    fits = data.get("fit") or {}
    fit_note = "".join(
        f"\n{prof}: fitted on the published 1- and 32-CPU fork rows ("
        + ", ".join(f"{k} = {v:.3g}" for k, v in f["params"].items())
        + ")"
        for prof, f in fits.items()
    )
    text = workload["patterns"].get(pattern, "")
    pattern_note = f"\n{pattern} = {text.split(':')[0]}" if text else ""
    render_table(
        console,
        f"{name}: time per op, {workload['bytes'] >> 20} MiB region, {copies} cop{'y' if copies == 1 else 'ies'}",
        columns,
        table_rows,
    )
    console.print(
        f"op = {data['op']}; per profile: time per op, base {_ARROW} contpte; base = contpte=False, "
        f"contpte = the default (arm64 simulation); change = {data['change']}.{pattern_note}{fit_note}"
    )
    labels: Mapping[str, str] = data["key_counters"]
    crows = []
    for r in rows:
        counts = r["counters"]
        for i, (config, short) in enumerate((("baseline", "off"), ("contpte", "on"))):
            label = f"{r['order']}: {r['folio']}" if i == 0 else ""
            crows.append([label, short] + [f"{counts[config][c]:,}" for c in labels])
    nops = int(rows[0]["ops"]) if rows else 0
    ops = f" ({nops:,} op{'' if nops == 1 else 's'})" if rows else ""
    render_table(
        console,
        f"{name}: counters of the measured phase{ops}",
        ["order", "contpte", *labels.values()],
        crows,
        numeric_from=2,
    )
    console.print("counters: " + ", ".join(f"{label} = {c}" for c, label in labels.items()))


def plot_op_bench(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Draw the change of ops/s against folio order, one line per profile (and pattern)."""
    rows: Sequence[Mapping[str, Any]] = data["rows"]
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        for p in data["profiles"]:
            label = f"{p} ({r['pattern']})" if r["pattern"] else str(p)
            lines.setdefault(label, []).append((float(r["order"]), float(r["profiles"][p]["change_pct"])))
    return plot_series(
        path,
        title=f"bench {data['benchmark']}: {data['title']} ({data['workload']['copies']} cop"
        f"{'y' if data['workload']['copies'] == 1 else 'ies'})",
        xlabel="folio order (0 = 4K, 4 = 64K, 9 = 2M)",
        ylabel="ops/s change vs contpte off (%)",
        lines=lines,
    )
