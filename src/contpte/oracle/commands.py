"""``contpte oracle``: the command behind the CLI (cli.py registers it).

Exit status: 0 when every scenario agrees with the live kernel (or differs
exactly as its ``expect-mismatch`` line says), 1 on an unexpected
difference or an unexpected agreement, 3 when a scenario could not run
here (the reason is printed; when the live oracle cannot run on this
machine at all, e.g. without root, one line on stderr says why and nothing
runs), 2 on a usage or model error (cli.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ..workloads.scenario import parse_file
from . import library
from .run import OracleResult, live_unavailable_reason, run_oracle

__all__ = ["cmd_oracle", "render_result", "EXIT_DIFFERENT", "EXIT_SKIPPED"]

EXIT_DIFFERENT = 1
EXIT_SKIPPED = 3

_STYLE = {
    "agree": "green",
    "expected-mismatch": "yellow",
    "mismatch": "bold red",
    "unexpected-agreement": "bold red",
    "skipped": "dim",
}


def render_result(console: Any, r: OracleResult) -> None:
    """Print one verdict: a line, and a table of the differences if any."""
    style = _STYLE.get(r.status, "")
    head = f"[{style}]{r.status}[/{style}]  {r.path}"
    if r.title:
        head += f"  ({r.title})"
    console.print(head)
    if r.status == "skipped":
        console.print(f"  skipped: {r.reason}")
        return
    if r.options:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(r.options.items()))
        console.print(f"  model options for {r.kernel}: {opts}")
    if r.expect_mismatch:
        console.print(f"  expect-mismatch {r.oracle}: {r.expect_mismatch}")
    first = r.first_difference
    if first is None:
        n = sum(1 for s in r.steps if s.compared)
        console.print(f"  {len(r.steps)} steps, states compared after {n}: model and {r.kernel} agree")
        return
    table = Table(title=f"differences after line {first.line}: {first.text}", title_justify="left")
    model = "model (6.12, generic" + ("" if not any(r.options.values()) else ", newer options") + ")"
    for col in ("step", "process", "where", "field", model, f"live ({r.kernel})"):
        table.add_column(col)
    for s in r.steps:
        for d in s.diffs:
            table.add_row(str(s.line), d.proc, d.where, d.field, d.model, d.live)
    console.print(table)


def cmd_oracle(args: argparse.Namespace, ui: Any) -> int:
    """Handler of ``contpte oracle``."""
    paths = [str(p) for p in library()] if args.library else list(args.scenario)
    if not paths:
        ui.err.print("contpte oracle: give a scenario file or --library")
        return 2
    scenarios = [parse_file(path) for path in paths]  # a malformed file is exit 2 even here
    reason = live_unavailable_reason()
    if reason is not None:
        # Said once, not once per scenario.
        if ui.json:
            ui.emit_json({"status": "skipped", "reason": reason, "scenarios": paths})
        print(f"contpte oracle: the live kernel oracle cannot run here: {reason}", file=ui._stderr)
        return EXIT_SKIPPED
    results: list[OracleResult] = []
    with ui.progress(len(paths), "oracle") as step:
        for sc in scenarios:
            results.append(run_oracle(sc, at=args.at, keep_going=args.keep_going))
            step(sc.path)
    if ui.json:
        ui.emit_json(
            results[0].as_dict() if len(results) == 1 and not args.library else [r.as_dict() for r in results]
        )
    else:
        for r in results:
            render_result(ui.out, r)
        if len(results) > 1:
            counts: dict[str, int] = {}
            for r in results:
                counts[r.status] = counts.get(r.status, 0) + 1
            ui.out.print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if any(not r.ok for r in results):
        return EXIT_DIFFERENT
    if any(r.status == "skipped" for r in results):
        return EXIT_SKIPPED
    return 0
