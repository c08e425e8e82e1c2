"""``contpte oracle``: the command behind the CLI (cli.py registers it).

Every scenario runs once per model arch of ``--model-arch`` (default
``generic,arm64``), each run compared with the live kernel on its own.

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

from ..version import KERNEL_VERSION
from ..workloads.scenario import parse_file
from . import library
from .run import MODEL_ARCHS, OracleResult, live_unavailable_reason, run_oracle

__all__ = [
    "cmd_oracle",
    "render_result",
    "result_dict",
    "parse_model_archs",
    "EXIT_DIFFERENT",
    "EXIT_SKIPPED",
]

EXIT_DIFFERENT = 1
EXIT_SKIPPED = 3

_STYLE = {
    "agree": "green",
    "expected-mismatch": "yellow",
    "mismatch": "bold red",
    "unexpected-agreement": "bold red",
    "skipped": "dim",
}


def parse_model_archs(text: str) -> list[str] | None:
    """``"generic,arm64"`` -> ``["generic", "arm64"]``; None if a name is unknown or the list empty."""
    archs = [a.strip() for a in text.split(",") if a.strip()]
    if not archs or any(a not in MODEL_ARCHS for a in archs):
        return None
    return list(dict.fromkeys(archs))


def result_dict(results: list[OracleResult]) -> dict[str, Any]:
    """The JSON of one scenario run against several model arches.

    The first arch's ``OracleResult.as_dict()`` (the keys of a one-arch
    run), plus ``model_archs`` (arch -> status, every arch), ``all_ok``
    (every arch agreed or differed as declared) and ``by_model_arch`` (arch
    -> the full result of each further arch).
    """
    d = results[0].as_dict()
    d["model_archs"] = {r.model_arch: r.status for r in results}
    d["all_ok"] = all(r.ok for r in results)
    d["by_model_arch"] = {r.model_arch: r.as_dict() for r in results[1:]}
    return d


def render_result(console: Any, r: OracleResult) -> None:
    """Print one verdict: a line, and a table of the differences if any."""
    style = _STYLE.get(r.status, "")
    head = f"[{style}]{r.status}[/{style}]  {r.path}  model={r.model_arch}"
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
    model = f"model ({r.options.get('kernel', KERNEL_VERSION)}, {r.model_arch})"
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
    archs = parse_model_archs(getattr(args, "model_arch", ",".join(MODEL_ARCHS)))
    if archs is None:
        ui.err.print(
            f"contpte oracle: --model-arch {args.model_arch!r}: expected a comma-separated list of "
            f"{', '.join(MODEL_ARCHS)}"
        )
        return 2
    scenarios = [parse_file(path) for path in paths]  # a malformed file is exit 2 even here
    reason = live_unavailable_reason()
    if reason is not None:
        # Said once, not once per scenario.
        if ui.json:
            ui.emit_json({"status": "skipped", "reason": reason, "scenarios": paths})
        print(f"contpte oracle: the live kernel oracle cannot run here: {reason}", file=ui._stderr)
        return EXIT_SKIPPED
    per_scenario: list[list[OracleResult]] = []
    with ui.progress(len(paths) * len(archs), "oracle") as step:
        for sc in scenarios:
            rs = []
            for arch in archs:
                rs.append(run_oracle(sc, at=args.at, keep_going=args.keep_going, model_arch=arch))
                step(f"{sc.path} ({arch})")
            per_scenario.append(rs)
    results = [r for rs in per_scenario for r in rs]
    if ui.json:
        dicts = [result_dict(rs) for rs in per_scenario]
        ui.emit_json(dicts[0] if len(dicts) == 1 and not args.library else dicts)
    else:
        for r in results:
            render_result(ui.out, r)
        if len(per_scenario) > 1 or len(archs) > 1:
            for arch in archs:
                counts: dict[str, int] = {}
                for r in results:
                    if r.model_arch == arch:
                        counts[r.status] = counts.get(r.status, 0) + 1
                line = "  ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
                ui.out.print(f"model {arch}: {line}" if len(archs) > 1 else line)
    if any(not r.ok for r in results):
        return EXIT_DIFFERENT
    if any(r.status == "skipped" for r in results):
        return EXIT_SKIPPED
    return 0
