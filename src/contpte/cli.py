"""The command-line interface: a thin layer over the library.

``main(argv)`` is what the ``contpte`` console script and the tests call.
Every command takes ``--json`` (machine-readable output on stdout).  Errors of
the model (``ContpteError``) and ``OSError``s print one line on stderr and exit
with status 2, never a traceback.  Long work shows a progress bar on stderr,
unless ``--json`` is given or stderr is not a terminal.

Adding a command: write ``_register_<name>(sub)`` that calls ``add_command``
and sets ``handler=`` with ``set_defaults``, and decorate it with
``@register``.  A handler takes ``(args, ui)`` and returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console

from .errors import ContpteError, ModelUsageError
from .version import KERNEL_VERSION

__all__ = ["main", "Ui", "add_command", "add_group", "register", "REGISTRARS"]

Subparsers = Any  # argparse._SubParsersAction: private in typeshed's eyes
Handler = Callable[[argparse.Namespace, "Ui"], int]
Registrar = Callable[[Subparsers], None]

REGISTRARS: list[Registrar] = []
"""Functions that add a command to the top-level subparsers, in help order."""

EXIT_USAGE = 2


def register(fn: Registrar) -> Registrar:
    """Decorator: add ``fn`` to the commands ``main`` builds."""
    REGISTRARS.append(fn)
    return fn


class Ui:
    """Where a command writes: a rich console, JSON, and progress bars."""

    def __init__(self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json = json_mode
        self._stdout = stdout if stdout is not None else sys.stdout
        self._stderr = stderr if stderr is not None else sys.stderr
        self.out = Console(file=self._stdout, highlight=False, soft_wrap=False)
        self.err = Console(file=self._stderr, highlight=False)
        self.show_progress = not json_mode and self._stderr.isatty()

    def emit_json(self, obj: object) -> None:
        """Write ``obj`` as JSON on stdout."""
        json.dump(obj, self._stdout, indent=2, default=_json_default)
        self._stdout.write("\n")

    def warn(self, message: str) -> None:
        print(f"contpte: warning: {message}", file=self._stderr)

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[str], None]]:
        """Yield ``step(label)``, to be called once per unit of ``total``."""
        if not self.show_progress:
            yield lambda _label: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)

            def step(label: str) -> None:
                bar.update(task, advance=1, description=f"{description}: {label}")

            yield step


def _json_default(obj: object) -> object:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def add_command(
    sub: Subparsers, name: str, *, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Add a command (a leaf that does work); it gets ``--json``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description or help)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    return parser


def add_group(sub: Subparsers, name: str, *, help: str, dest: str) -> Subparsers:
    """Add a command group (``contpte bench ...``); returns its subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)


def _cpu_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU counts like 1,8,16, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"CPU counts must be positive integers, got {text!r}")
    return values


# --- bench ------------------------------------------------------------------


@register
def _register_bench(sub: Subparsers) -> None:
    from .cost.fork_bench import TABLE_CPUS

    bench = add_group(
        sub, "bench", help="run a simulated benchmark and price it on a machine profile", dest="bench"
    )
    fork = add_command(
        bench,
        "fork",
        help="will-it-scale fork: N copies fork a 128 MiB process of 64K folios; change vs contpte off",
    )
    fork.add_argument(
        "--profile", default="altra", help="machine profile: a name (altra, m2-vm, x86) or a .toml path"
    )
    fork.add_argument(
        "--cpus",
        type=_cpu_list,
        default=TABLE_CPUS,
        help="comma-separated CPU counts (default: %(default)s, the published table's shape)",
    )
    fork.add_argument("--plot", metavar="FILE", help="also draw both curves to FILE (.png or .svg)")
    fork.add_argument(
        "--fit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="calibrate the profile's free parameters first (default: when it has any)",
    )
    fork.set_defaults(handler=_cmd_bench_fork)


def _cmd_bench_fork(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.fork_bench import CONFIGS, PUBLISHED_SOURCE, run_fork_bench, simulation_points
    from .cost.profile import load_profile
    from .report import fmt_pct, fmt_us, render_table

    profile = load_profile(args.profile)
    cpus: tuple[int, ...] = args.cpus
    fit = bool(profile.free_parameters) if args.fit is None else bool(args.fit)
    steps = len(simulation_points(cpus, fit))
    with ui.progress(steps, "simulating forks") as step:
        result = run_fork_bench(profile, cpus, fit=fit, progress=step)
    if args.plot:
        from .report import plot_series

        plot_series(
            args.plot,
            title=f"fork (will-it-scale), 128 MiB of 64K folios per copy: profile {profile.name}",
            xlabel="CPUs (copies)",
            ylabel="forks/s change vs contpte off (%)",
            lines={
                f"{cfg} (model)": [(r.ncpus, 100 * r.change[cfg]) for r in result.rows]
                for cfg in ("before", "after")
            },
            markers={
                f"{cfg} (published, Altra)": [
                    (r.ncpus, 100 * r.published[cfg]) for r in result.rows if cfg in r.published
                ]
                for cfg in ("before", "after")
            },
        )
    if result.unmapped:
        ui.warn(
            f"no cost rule for counters {', '.join(result.unmapped)}: left out of the time (see cost/model.py)"
        )
    if ui.json:
        ui.emit_json(result.as_dict() | {"plot": args.plot})
        return 0

    rows = []
    for r in result.rows:
        rows.append(
            [
                str(r.ncpus),
                fmt_pct(r.change["before"]),
                fmt_pct(r.published.get("before")),
                fmt_pct(r.change["after"]),
                fmt_pct(r.published.get("after")),
                fmt_us(r.time_ns["baseline"]),
                r.role,
            ]
        )
    render_table(
        ui.out,
        f"fork: change of forks/s vs contpte off, profile {profile.name}",
        ["CPUs", "before", "published", "after", "published", "baseline \u00b5s/fork", "row"],
        rows,
        caption=(
            "before = wrprotect_ptes_opt=False (fork unfolds every block); after = the default.\n"
            f"published: {PUBLISHED_SOURCE}.\n"
            "Only 'fit' rows were used for calibration; every 'prediction' row is held out."
        ),
    )
    if result.fit is not None:
        fitted = ", ".join(f"{k} = {v:.4g}" for k, v in result.fit.params.items())
        ui.out.print(f"calibrated: {fitted} (rms residual {100 * result.fit.rms:.2f} pp)")
    last = result.rows[-1]
    per_cfg = ", ".join(f"{c} {fmt_us(last.time_ns[c])} \u00b5s" for c in CONFIGS)
    bd = last.breakdown["before"]
    ui.out.print(
        f"at {last.ncpus} CPUs, per fork: {per_cfg}; a broadcast TLBI costs {bd.broadcast_ns:.0f} ns "
        f"with {bd.concurrent_broadcasters:.1f} other CPUs broadcasting ('before')"
    )
    if args.plot:
        ui.out.print(f"plot written to {args.plot}")
    return 0


# --- calibrate ----------------------------------------------------------------


@register
def _register_calibrate(sub: Subparsers) -> None:
    cal = add_command(
        sub,
        "calibrate",
        help="fit a profile's free parameters on the published 1- and 32-CPU fork rows; print residuals",
    )
    cal.add_argument(
        "--profile", default="altra", help="machine profile with fit = true figures (default: altra)"
    )
    cal.set_defaults(handler=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.fork_bench import CONFIGS, PUBLISHED_FORK, calibrate_fork, fork_counters
    from .cost.profile import load_profile
    from .report import fmt_pct, render_table

    profile = load_profile(args.profile)
    if not profile.free_parameters:
        raise ModelUsageError(
            f"profile {profile.name!r} has no free parameters to calibrate (no fit = true figure)"
        )
    points = sorted({t.ncpus for t in PUBLISHED_FORK})
    with ui.progress(len(points) * len(CONFIGS), "simulating forks") as step:
        for n in points:
            for config in CONFIGS:
                fork_counters(config, n)
                step(f"{config} @ {n} CPUs")
    result = calibrate_fork(profile)
    if ui.json:
        ui.emit_json(result.as_dict())
        return 0
    render_table(
        ui.out,
        f"calibration of profile {profile.name}: fitted parameters",
        ["parameter", "start", "fitted", "unit"],
        [
            [name, f"{result.start[name]:.4g}", f"{value:.4g}", profile.figures[name].unit]
            for name, value in result.params.items()
        ],
    )
    render_table(
        ui.out,
        "fit targets (numbers.md, the only rows used) and residuals",
        ["target", "published", "model", "residual"],
        [
            [
                r.target.label,
                fmt_pct(r.target.value),
                fmt_pct(r.model),
                f"{100 * r.residual:+.2f} pp",
            ]
            for r in result.results
        ],
        caption=f"rms residual {100 * result.rms:.2f} pp after {result.iterations} iterations; "
        "every other row of `contpte bench fork` is a prediction",
    )
    b, bk = result.params.get("tlbi_bcast_per_core"), result.params.get("tlbi_contention_per_core")
    if b is not None and bk is not None and b > 0:
        ui.out.print(
            f"cost(n x TLBI_IS + DSB ISH) = a + n*cores*b*(1 + k*c) with k = bk/b = {bk / b:.3g} "
            "per concurrent broadcaster"
        )
    return 0


# --- main ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contpte",
        description="An executable model of Linux's transparent contiguous PTEs (arm64 contpte).",
    )
    parser.add_argument("--version", action="version", version=f"contpte (models Linux {KERNEL_VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for registrar in REGISTRARS:
        registrar(sub)
    return parser


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 usage or model error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or argparse's own usage error
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    handler: Handler = args.handler
    ui = Ui(json_mode=bool(getattr(args, "json", False)))
    try:
        return handler(args, ui)
    except (ContpteError, OSError) as e:
        print(f"contpte: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("contpte: interrupted", file=sys.stderr)
        return 130
