"""``contpte oracle --kernel arm64``: the command behind the CLI (cli.py dispatches to it).

Exit status as for ``contpte oracle``: 0 when every scenario agrees (or
differs exactly as its ``expect-mismatch oracle-arm64`` line says), 1 on an
unexpected difference or agreement, 3 when it cannot run here (the reason
is printed: missing qemu, cross compiler or Debian packages), 2 on a usage
or model error.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ...workloads.scenario import parse_file
from ..commands import EXIT_DIFFERENT, EXIT_SKIPPED
from ..run import OracleResult
from . import library
from .boot import BootError
from .env import Arm64EnvError
from .run import Arm64StepReport, run_arm64_oracle

__all__ = ["cmd_oracle_arm64", "render_arm64_result"]

_STYLE = {
    "agree": "green",
    "expected-mismatch": "yellow",
    "mismatch": "bold red",
    "unexpected-agreement": "bold red",
    "skipped": "dim",
}


def _calls(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"


def render_arm64_result(console: Any, r: OracleResult) -> None:
    """One verdict: a line, and a table of the steps that differ."""
    style = _STYLE.get(r.status, "")
    head = f"[{style}]{r.status}[/{style}]  {r.path}"
    if r.title:
        head += f"  ({r.title})"
    console.print(head)
    if r.status == "skipped" or (r.reason and not r.steps):
        console.print(f"  {r.reason}")
        return
    if r.expect_mismatch:
        console.print(f"  expect-mismatch {r.oracle}: {r.expect_mismatch}")
    bad = [s for s in r.steps if s.diffs]
    if not bad:
        n = sum(1 for s in r.steps if s.compared)
        console.print(f"  {n} steps: contpte call counts, outcomes and values agree with {r.kernel}")
        return
    table = Table(title_justify="left")
    for col in ("line", "step", "field", "model", "kernel"):
        table.add_column(col)
    for s in bad:
        for d in s.diffs:
            table.add_row(str(s.line), s.text, d.field, d.model, d.live)
        if isinstance(s, Arm64StepReport):
            table.add_row("", "", "all calls", _calls(s.model_calls), _calls(s.kernel_calls))
    console.print(table)


def cmd_oracle_arm64(args: argparse.Namespace, ui: Any) -> int:
    """Handler of ``contpte oracle --kernel arm64``."""
    kernel = getattr(args, "kernel_version", None)
    page_size = getattr(args, "page_size", None)
    paths = [str(p) for p in library(page_size or "4K")] if args.library else list(args.scenario)
    if not paths:
        ui.err.print("contpte oracle: give a scenario file or --library")
        return 2
    scenarios = [parse_file(p) for p in paths]
    with ui.progress(len(scenarios) + 1, "arm64 oracle") as step:
        try:
            report = run_arm64_oracle(scenarios, kernel=kernel, page_size=page_size, progress=step)
        except ValueError as e:
            print(f"contpte oracle: {e}", file=ui._stderr)
            return 2
        except (Arm64EnvError, BootError) as e:
            print(f"contpte oracle: {e}", file=ui._stderr)
            return EXIT_SKIPPED
    results = report.results
    if ui.json:
        ui.emit_json(report.as_dict())
    else:
        for note in report.notes:
            ui.out.print(note)
        for r in results:
            render_arm64_result(ui.out, r)
        counts: dict[str, int] = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        summary = "  ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        ui.out.print(
            f"{summary}  (Linux {report.kernel} under qemu, {report.page_size} pages, {report.package}; "
            f"model at kernel={report.series}; boot {report.boot_seconds:.0f} s)"
        )
    if any(not r.ok for r in results):
        return EXIT_DIFFERENT
    if any(r.status == "skipped" for r in results):
        return EXIT_SKIPPED
    return 0
