"""A static HTML report of a sweep's runs: plots (PNG, embedded) and tables, one file.

Drawn from plain rows (``contpte.sweep.store.read_runs``: one dict per run),
so ``report`` stays independent of the sweep engine.  Per workload: the time of
one copy per CPU count (categorical axis: the counts are categories of the
grid, not points on a line), one bar per kernel and variant, a panel per
profile; the change of time against the baseline variant (the spec's first);
then a table of every run with its key counters.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError
from .plot import Panel, plot_panels
from .table import fmt_ns, fmt_pct

__all__ = ["REPORT_COUNTERS", "write_html_report"]

REPORT_COUNTERS = (
    "pgfault",
    "page.copy",
    "folio.alloc",
    "pte.write",
    "contpte.fold",
    "contpte.unfold",
    "tlbi.total",
    "dvm.sync",
)
"""The counters the tables show per run (the database has all of them)."""

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; } img { max-width: 100%; } p.src { font-size: 0.85em; color: #555; max-width: 60em; }
"""


def _png(panels: Sequence[Panel], title: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "plot.png"
        plot_panels(path, panels, title=title)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="n">{html.escape(v)}</td>' if i >= numeric_from else f"<td>{html.escape(v)}</td>"
            for i, v in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _order(values: Sequence[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _param(v: Any) -> str:
    """A parameter as the workload list shows it: sizes in K or M."""
    if isinstance(v, int) and v >= 1 << 12 and v % (1 << 20) == 0:
        return f"{v >> 20}M"
    if isinstance(v, int) and v >= 1 << 12 and v % (1 << 10) == 0:
        return f"{v >> 10}K"
    return str(v)


def _baseline_times(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[Any, ...], float]:
    """Per (workload, params, profile, kernel, cpus): the time of the baseline variant (lowest index)."""
    best: dict[tuple[Any, ...], tuple[int, float]] = {}
    for r in rows:
        key = (r["workload"], repr(r["params"]), r["profile"], r["kernel"], r["cpus"])
        if key not in best or r["variant_index"] < best[key][0]:
            best[key] = (r["variant_index"], r["time_ns"])
    return {k: v[1] for k, v in best.items()}


def _overview(
    rows: Sequence[Mapping[str, Any]],
    base: Mapping[tuple[Any, ...], float],
    workloads: Sequence[str],
    variants: Sequence[str],
    most: int,
) -> str:
    """Per profile, each variant's time against the baseline's at the most CPUs, per workload."""
    panels = []
    for pr in _order([r["profile"] for r in rows]):
        series: dict[str, list[float | None]] = {}
        labels: dict[str, list[str]] = {}
        for k in _order([r["kernel"] for r in rows]):
            for v in variants[1:]:
                vals: list[float | None] = []
                texts: list[str] = []
                for w in workloads:
                    r = next(
                        (
                            r
                            for r in rows
                            if (r["workload"], r["profile"], r["kernel"], r["variant"], r["cpus"])
                            == (w, pr, k, v, most)
                        ),
                        None,
                    )
                    b = base.get((w, repr(r["params"]), pr, k, most)) if r else None
                    vals.append(r["time_ns"] / b if r and b else None)
                    texts.append(fmt_pct(r["time_ns"] / b - 1.0) if r and b else "")
                if any(x is not None for x in vals):
                    series[f"{v} @ {k}"] = vals
                    labels[f"{v} @ {k}"] = texts
        if series:
            panels.append(
                Panel(
                    f"{pr}: {most} copies at once",
                    f"time / baseline ({variants[0]}), log scale",
                    list(workloads),
                    series,
                    log=True,
                    labels=labels,
                    zero_line=False,
                )
            )
    if not panels:
        return "<p>One variant only: no change to show.</p>"
    return _png(panels, f"each variant's time against {variants[0]}'s, {most} copies at once (1 = the same)")


def write_html_report(path: str | Path, rows: Sequence[Mapping[str, Any]], *, source: str = "") -> Path:
    """Write the report of ``rows`` (one per run) to ``path``; returns it."""
    out = Path(path)
    if not rows:
        raise ModelUsageError(f"{source or 'the database'}: no runs to report")
    base = _baseline_times(rows)
    workloads = _order([r["workload"] for r in rows])
    kinds = {
        "workloads": workloads,
        "kernels": _order([r["kernel"] for r in rows]),
        "variants": _order([r["variant"] for r in sorted(rows, key=lambda r: r["variant_index"])]),
        "profiles": _order([r["profile"] for r in rows]),
        "CPU counts": sorted({r["cpus"] for r in rows}),
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>contpte sweep report: {html.escape(source)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>contpte sweep report{': ' + html.escape(source) if source else ''}</h1>",
        f"<p>{len(rows)} runs. "
        + "; ".join(f"{k}: {', '.join(html.escape(str(x)) for x in v)}" for k, v in kinds.items())
        + ".</p>",
        "<p>Time: one copy's measured steps while the given number of copies run at once, one per CPU "
        "(docs/cost-model.md). Change: against the sweep's first variant on the same kernel, profile and "
        "CPU count (positive = slower).</p>",
    ]
    variants = kinds["variants"]
    most = max(kinds["CPU counts"])
    parts.append("<h2>Overview</h2>")
    parts.append(_overview(rows, base, workloads, variants, most))
    summary = []
    for w in workloads:
        wr = [r for r in rows if r["workload"] == w]
        for pr in _order([r["profile"] for r in wr]):
            for k in _order([r["kernel"] for r in wr]):
                cells = [w, pr, k]
                for v in variants:
                    sel = [r for r in wr if (r["profile"], r["kernel"], r["variant"]) == (pr, k, v)]
                    if not sel:
                        cells.append("")
                        continue
                    hi = max(sel, key=lambda r: r["cpus"])
                    b = base.get((w, repr(hi["params"]), pr, k, hi["cpus"]))
                    text = fmt_ns(hi["time_ns"]) + ("" if hi["cpus"] == most else f" (x{hi['cpus']})")
                    if hi["variant_index"] > 0 and b:
                        text += f" ({fmt_pct(hi['time_ns'] / b - 1.0)})"
                    cells.append(text)
                summary.append(cells)
    parts.append(f"<h2>Summary: time of one copy with {most} copies at once</h2>")
    parts.append(
        _table(
            ["workload", "profile", "kernel"]
            + [f"{v} (baseline)" if i == 0 else v for i, v in enumerate(variants)],
            summary,
            3,
        )
    )
    for w in workloads:
        wr = [r for r in rows if r["workload"] == w]
        parts.append(f"<h2>{html.escape(w)}</h2>")
        params = wr[0]["params"]
        if params:
            parts.append(
                "<p>parameters: "
                + html.escape(", ".join(f"{k}={_param(v)}" for k, v in params.items()))
                + "</p>"
            )
        cats = [str(c) for c in sorted({r["cpus"] for r in wr})]
        time_panels: list[Panel] = []
        change_panels: list[Panel] = []
        for pr in _order([r["profile"] for r in wr]):
            pw = [r for r in wr if r["profile"] == pr]
            series: dict[str, list[float | None]] = {}
            changes: dict[str, list[float | None]] = {}
            change_labels: dict[str, list[str]] = {}
            for k in _order([r["kernel"] for r in pw]):
                for v in _order([r["variant"] for r in sorted(pw, key=lambda r: r["variant_index"])]):
                    by_cpu = {str(r["cpus"]): r for r in pw if (r["kernel"], r["variant"]) == (k, v)}
                    if not by_cpu:
                        continue
                    label = f"{v} @ {k}"
                    series[label] = [by_cpu[c]["time_ns"] / 1e3 if c in by_cpu else None for c in cats]
                    if any(r["variant_index"] > 0 for r in by_cpu.values()):
                        vals: list[float | None] = []
                        texts: list[str] = []
                        for c in cats:
                            r = by_cpu.get(c)
                            b = base.get((w, repr(r["params"]), pr, k, r["cpus"])) if r else None
                            vals.append(r["time_ns"] / b if r and b else None)
                            texts.append(fmt_pct(r["time_ns"] / b - 1.0) if r and b else "")
                        changes[label] = vals
                        change_labels[label] = texts
            shown = [x for xs in series.values() for x in xs if x is not None and x > 0]
            log = bool(shown) and max(shown) / min(shown) > 20
            time_panels.append(
                Panel(
                    f"{pr}: time of one copy",
                    "\u00b5s" + (" (log scale)" if log else ""),
                    cats,
                    series,
                    log=log,
                )
            )
            if changes:
                change_panels.append(
                    Panel(
                        f"{pr}: against the baseline variant",
                        "time / baseline, log scale",
                        cats,
                        changes,
                        log=True,
                        labels=change_labels,
                        zero_line=False,
                    )
                )
        parts.append(_png(time_panels + change_panels, f"{w}: time per CPU count (copies at once)"))
        counters = [c for c in REPORT_COUNTERS if any(r["counters"].get(c) for r in wr)]
        table_rows = []
        for r in sorted(wr, key=lambda r: (r["profile"], r["kernel"], r["variant_index"], r["cpus"])):
            b = base.get((w, repr(r["params"]), r["profile"], r["kernel"], r["cpus"]))
            table_rows.append(
                [
                    r["profile"],
                    r["kernel"],
                    r["variant"],
                    str(r["cpus"]),
                    fmt_ns(r["time_ns"]),
                    "\u2014" if r["variant_index"] == 0 or not b else fmt_pct(r["time_ns"] / b - 1.0),
                    f"{r['stretch']:.2f}",
                ]
                + [f"{r['counters'].get(c, 0):,}" for c in counters]
            )
        parts.append(
            _table(
                ["profile", "kernel", "variant", "CPUs", "time", "change", "DVM stretch", *counters],
                table_rows,
                3,
            )
        )
    parts.append(
        "<p class=src>Every counter of every run is in the database: "
        "<code>SELECT workload, kernel, variant, cpus, counters FROM runs</code> (DuckDB).</p>"
    )
    parts.append("</body></html>")
    try:
        out.write_text("\n".join(parts), encoding="utf-8")
    except OSError as e:
        raise ModelUsageError(f"cannot write {out}: {e.strerror}") from None
    return out
