"""The handlers of ``contpte sweep`` and ``contpte report`` (``cli.py`` registers them)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import ModelUsageError
from ..workloads.commands import UiLike

__all__ = ["cmd_sweep", "cmd_report", "default_db"]


def default_db(spec_path: str) -> str:
    """``SPEC.duckdb`` beside ``SPEC.toml``."""
    return str(Path(spec_path).with_suffix(".duckdb"))


def cmd_sweep(args: argparse.Namespace, ui: UiLike) -> int:
    """Run the grid of a spec; runs already in the database are skipped."""
    from .engine import run_sweep
    from .spec import load_spec

    spec = load_spec(args.spec)
    db = args.db or default_db(args.spec)
    engine = "ray" if args.ray else "pool"
    jobs = args.jobs or max(1, os.cpu_count() or 1)
    where = f"Ray ({args.ray})" if args.ray else f"a pool of {jobs} processes"
    with ui.progress(spec.size, f"sweep {spec.name} on {where}") as step:

        def skipped(_todo: int, n: int) -> None:
            for _ in range(n):
                step("already in the database")

        result = run_sweep(
            spec,
            db,
            engine=engine,
            jobs=jobs,
            ray_address=args.ray or "local",
            progress=step,
            on_plan=skipped,
        )
    data = result.as_dict() | {"spec": args.spec, "name": spec.name, "database": db}
    if ui.json:
        ui.emit_json(data)
        return 0
    ui.out.print(
        f"sweep {spec.name}: {result.runs} runs in the grid, {result.skipped} already in {db}, "
        f"{result.ran} run now ({result.tasks} simulations) on {where} in {result.seconds:.1f} s",
        markup=False,
    )
    ui.out.print(f"report: contpte report {db} -o report.html", markup=False)
    return 0


def cmd_report(args: argparse.Namespace, ui: UiLike) -> int:
    """Write the HTML report of a sweep database."""
    from ..report.html import write_html_report
    from .store import read_runs

    if not args.output.lower().endswith((".html", ".htm")):
        raise ModelUsageError(f"-o {args.output}: the report is an .html file")
    rows = read_runs(args.db)
    with ui.progress(1, "drawing the report") as step:
        out = write_html_report(args.output, rows, source=args.db)
        step("done")
    if ui.json:
        ui.emit_json({"database": args.db, "runs": len(rows), "report": str(out)})
        return 0
    ui.out.print(f"{len(rows)} runs of {args.db}: report written to {out}", markup=False)
    return 0
