"""Tables and plots of the operation benchmarks (``contpte bench munmap|dontneed|exit|fault``).

Rendered from the plain data of ``OpBenchResult.as_dict()`` (the ``--json``
output), so ``report`` stays independent of ``cost``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .plot import Panel, plot_panels
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
    fit_note = "\nprofiles as given (the shipped ones are calibrated on their fit set: contpte calibrate)"
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
    """Two panels over the folio orders (categories): the change of ops/s, and the time per op."""
    rows: Sequence[Mapping[str, Any]] = data["rows"]
    profiles: Sequence[str] = data["profiles"]
    patterns = list(dict.fromkeys(str(r["pattern"] or "") for r in rows))
    cats = list(dict.fromkeys(f"{r['order']}: {r['folio']}" for r in rows))

    def row(cat: str, pattern: str) -> Mapping[str, Any] | None:
        return next(
            (r for r in rows if f"{r['order']}: {r['folio']}" == cat and (r["pattern"] or "") == pattern),
            None,
        )

    change: dict[str, list[float | None]] = {}
    change_labels: dict[str, list[str]] = {}
    times: dict[str, list[float | None]] = {}
    styles: dict[str, dict[str, Any]] = {}
    k = 0
    for p in profiles:
        for pat in patterns:
            suffix = f" ({pat})" if pat else ""
            color = f"C{k % 10}"
            k += 1
            styles[f"{p}{suffix}"] = {"color": color}
            styles[f"{p}{suffix} off"] = {"color": color, "alpha": 0.45, "hatch": "//"}
            styles[f"{p}{suffix} on"] = {"color": color}
            vals = []
            for c in cats:
                r = row(c, pat)
                vals.append(None if r is None else float(r["profiles"][p]["change_pct"]))
            change[f"{p}{suffix}"] = vals
            change_labels[f"{p}{suffix}"] = [f"{v:+.1f}%" if v is not None else "" for v in vals]
            for config, short in (("baseline", "off"), ("contpte", "on")):
                tv = []
                for c in cats:
                    r = row(c, pat)
                    tv.append(None if r is None else float(r["profiles"][p]["op_ns"][config]))
                times[f"{p}{suffix} {short}"] = tv
    copies = data["workload"]["copies"]
    what = f"bench {data['benchmark']}: {data['title']} ({copies} cop{'y' if copies == 1 else 'ies'})"
    return plot_panels(
        path,
        [
            Panel(
                "change of operations/s, contpte on vs off",
                "change (%)",
                cats,
                change,
                labels=change_labels,
                styles=styles,
            ),
            Panel(
                f"time per operation ({data['op']}); hatched: contpte off",
                "ns (log scale)",
                cats,
                times,
                log=True,
                styles=styles,
            ),
        ],
        title=what,
    )
