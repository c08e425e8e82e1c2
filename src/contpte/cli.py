"""The command-line interface: a thin layer over the library.

``main(argv)`` is what the ``contpte`` console script and the tests call.
Every command takes ``--json`` (machine-readable output on stdout).  Errors of
the model (``ContpteError``), ``OSError``s and bad arguments print one line on
stderr and exit with status 2, never a traceback; when the reader of stdout
goes away (``contpte ... | head``) the command stops quietly with status 141,
as a Unix tool killed by SIGPIPE.  Long work shows a progress bar on stderr,
unless ``--json`` is given or stderr is not a terminal.

Adding a command: write ``_register_<name>(sub)`` that calls ``add_command``
and sets ``handler=`` with ``set_defaults``, and decorate it with
``@register``.  A handler takes ``(args, ui)`` and returns the exit status.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console

from .errors import ContpteError, ModelUsageError
from .version import KERNEL_VERSION

if TYPE_CHECKING:
    from .workloads.commands import ProgressStep

__all__ = ["main", "Ui", "add_command", "add_group", "register", "REGISTRARS"]

Subparsers = Any  # argparse._SubParsersAction: private in typeshed's eyes
Handler = Callable[[argparse.Namespace, "Ui"], int]
Registrar = Callable[[Subparsers], None]

REGISTRARS: list[Registrar] = []
"""Functions that add a command to the top-level subparsers, in help order."""

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""A reader closed our stdout (``contpte ... | head``): exit as a Unix tool killed by SIGPIPE."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: what was wrong, and where to look (exit 2)."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def package_version() -> str:
    """The installed package's version (``pyproject.toml``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contpte")
    except PackageNotFoundError:  # pragma: no cover - running from a tree without metadata
        return "unknown"


def register(fn: Registrar) -> Registrar:
    """Decorator: add ``fn`` to the commands ``main`` builds."""
    REGISTRARS.append(fn)
    return fn


class _Console(Console):
    """rich's Console, but a closed stdout ends the command through ``main`` (exit 141), not exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of stdout went away")


class Ui:
    """Where a command writes: a rich console, JSON, and progress bars."""

    def __init__(self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json = json_mode
        self._stdout = stdout if stdout is not None else sys.stdout
        self._stderr = stderr if stderr is not None else sys.stderr
        self.out = _Console(file=self._stdout, highlight=False, soft_wrap=False)
        self.err = Console(file=self._stderr, highlight=False)
        self.show_progress = not json_mode and self._stderr.isatty()

    def emit_json(self, obj: object) -> None:
        """Write ``obj`` as JSON on stdout."""
        json.dump(obj, self._stdout, indent=2, default=_json_default)
        self._stdout.write("\n")

    def warn(self, message: str) -> None:
        print(f"contpte: warning: {message}", file=self._stderr)

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[ProgressStep]:
        """Yield ``step(label, advance=1)``: show ``label``, advance ``advance`` units of ``total``."""
        if not self.show_progress:
            yield lambda _label, advance=1: None
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

            def step(label: str, advance: int = 1) -> None:
                bar.update(task, advance=advance, description=f"{description}: {label}")

            yield step


def _json_default(obj: object) -> object:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def add_command(
    sub: Subparsers, name: str, *, help: str, description: str | None = None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """Add a command (a leaf that does work); it gets ``--json``.  ``epilog``: kept as written."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    return parser


def add_kernel_version(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--kernel-version`` (a ``contpte.version.KERNEL_VERSIONS`` entry) to a command."""
    from .version import KERNEL_VERSIONS

    parser.add_argument(
        "--kernel-version",
        choices=KERNEL_VERSIONS,
        metavar="VERSION",
        help=f"the kernel version the model follows, {what} ({', '.join(KERNEL_VERSIONS)})",
    )


def add_group(sub: Subparsers, name: str, *, help: str, dest: str) -> Subparsers:
    """Add a command group (``contpte bench ...``); returns its subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (``--steps 0`` or ``-5`` is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _cpu_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU counts like 1,8,16, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"CPU counts must be positive integers, got {text!r}")
    return values


# --- bench ------------------------------------------------------------------


def _profile_args(parser: argparse.ArgumentParser, default: str, several: bool = False) -> None:
    """``--profile`` and ``--set FIGURE=VALUE``, as every pricing command takes them."""
    if several:
        parser.add_argument(
            "--profile",
            default=default,
            help="comma-separated machine profiles: shipped names (altra, m2-vm, x86) or .toml paths "
            "(default: %(default)s)",
        )
    else:
        parser.add_argument(
            "--profile",
            default=default,
            help="machine profile: a shipped name (altra, m2-vm, x86) or a .toml path, which may "
            "'extends = \"altra\"' and change a few figures (default: %(default)s)",
        )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIGURE=VALUE",
        help="override one profile figure (repeatable), e.g. --set dvm_sync=900; the figures are listed "
        "in src/contpte/cost/profiles/*.toml with their sources",
    )


def _load_profiles(spec: str, sets: list[str]) -> list[Any]:
    from .cost.profile import load_profile, parse_set

    assignments = parse_set(sets)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ModelUsageError("--profile: expected at least one profile name or .toml path")
    return [load_profile(n).with_set(assignments) if assignments else load_profile(n) for n in names]


@register
def _register_bench(sub: Subparsers) -> None:
    from .cost.fork_bench import TABLE_CPUS

    bench = add_group(
        sub, "bench", help="run a simulated benchmark and price it on a machine profile", dest="bench"
    )
    fork = add_command(
        bench,
        "fork",
        help="the fork table: N copies loop fork + child exit on 128 MiB of 64K folios; change vs contpte off",
        description=(
            "The fork scaling benchmark of the contpte series (docs/numbers.md): N copies, one per CPU, "
            "each touches 128 MiB of 64K-folio anonymous memory once, then loops fork(); the child "
            "exits at once; the parent waits; the score is forks per second. One steady-state "
            "iteration (after the first fork the parent's PTEs are read-only) is simulated per kernel "
            "(src/contpte/cost/scenarios/fitset/wis-fork.scn) and priced with N copies contending for "
            "broadcast TLB maintenance. before = the contpte series' v6 patches 1-12 (per-PTE "
            "write-protect and clear on v6.9's batched core-mm: the child's exit unfolds each block); "
            "after = the series as merged in v6.9; each against the same kernel with contpte off. Next to the altra profile the published "
            "figures (Ampere Altra, 1 and 32 copies) are shown, each marked as fitted on or kept out "
            "of the fit (docs/cost-model.md); every other row is a prediction. Copies beyond the "
            "profile's core count are flagged."
        ),
    )
    _profile_args(fork, "altra")
    fork.add_argument(
        "--cpus",
        type=_cpu_list,
        default=",".join(str(n) for n in TABLE_CPUS),
        help="comma-separated copy counts, one copy per CPU (default: %(default)s, the published table's shape)",
    )
    fork.add_argument("--plot", metavar="FILE", help="also draw the table to FILE (.png or .svg)")
    fork.set_defaults(handler=_cmd_bench_fork)
    from .cost.op_bench import BENCHES

    for spec in BENCHES.values():
        _register_op_bench(bench, spec)


def _cmd_bench_fork(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.fork_bench import CONFIGS, run_fork_bench, simulation_names
    from .report import fmt_ns, fmt_pct, render_table

    (profile,) = _load_profiles(args.profile, args.set)
    cpus: tuple[int, ...] = args.cpus
    with ui.progress(len(simulation_names()), "simulating fork + exit") as step:
        result = run_fork_bench(profile, cpus, progress=step)
    data = result.as_dict()
    if args.plot:
        from .report import plot_fork_table

        plot_fork_table(args.plot, data)
    if result.unmapped:
        ui.warn(
            f"no cost rule for counters {', '.join(result.unmapped)}: left out of the time (see cost/model.py)"
        )
    if ui.json:
        ui.emit_json(data | {"plot": args.plot})
        return 0
    published = result.has_published
    columns = ["copies", "before"] + (["published"] if published else [])
    columns += ["after"] + (["published"] if published else []) + ["row"]
    rows = []
    for r in result.rows:
        cells = [str(r.ncpus) + (" *" if r.over_cores else "")]
        for c in CONFIGS:
            cells.append(fmt_pct(r.change[c] / 100))
            if published:
                p = r.published.get(c)
                mark = "" if p is None else (" (fit)" if r.fitted[c] else " (out)")
                cells.append("\u2014" if p is None else fmt_pct(p.value / 100) + mark)
        cells.append("fit set" if r.published else "prediction")
        rows.append(cells)
    caption = [
        "change of forks/s against the same kernel with contpte off (negative = slower);",
        "before = contpte series v6 patches 1-12 (per-PTE write-protect and clear), after = v6.9 as merged.",
    ]
    if published:
        caption.append(
            "published: Ampere Altra (docs/numbers.md); (fit): the profile's free figures were fitted on it "
            "(contpte calibrate); (out): in the fit set, kept out of the fit (docs/cost-model.md)."
        )
    else:
        caption.append(f"no published fork table for {profile.name}: every row is a prediction.")
    if any(r.over_cores for r in result.rows):
        caption.append(
            f"* more copies than the profile's {profile.cores} cores: they share cores (not modelled)."
        )
    render_table(
        ui.out,
        f"fork: change of forks/s vs contpte off, profile {profile.name}",
        columns,
        rows,
    )
    for line in caption:
        ui.out.print(line)
    render_table(
        ui.out,
        "time per iteration (fork + child exit) of one copy",
        ["copies", "before, contpte off", "before", "after, contpte off", "after"],
        [
            [str(r.ncpus)] + [fmt_ns(r.time_ns[k]) for k in ("before-base", "before", "after-base", "after")]
            for r in result.rows
        ],
    )
    last = result.rows[-1]
    bd = last.breakdown["before"]
    ui.out.print(
        f"at {last.ncpus} cop{'y' if last.ncpus == 1 else 'ies'}, 'before': {bd.concurrent_broadcasters:.1f} other CPUs "
        f"broadcast at any moment, stretching every DVM operation by {bd.stretch:.2f}x; "
        f"{100 * bd.dvm_ns / bd.total_ns:.0f}% of its time is broadcast TLB maintenance"
    )
    if args.plot:
        ui.out.print(f"plot written to {args.plot}")
    return 0


def _order_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected folio orders like 0,4,9, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected folio orders like 0,4,9, got {text!r}")
    return values


def _register_op_bench(bench: Subparsers, spec: Any) -> None:
    """``contpte bench munmap|dontneed|exit|fault`` (``cost.op_bench.BENCHES``)."""
    from .cost.op_bench import ORDERS, PROFILES

    files = ", ".join(f"src/contpte/cost/scenarios/bench/{f}.scn" for f in spec.files.values())
    cmd = add_command(
        bench,
        spec.name,
        help=f"{spec.title}: time per op and change vs contpte off, per folio order and profile",
        description=(
            f"{spec.description} One operation = {spec.op}. The workload is {files}; each configuration "
            "(contpte=False = baseline, the default = contpte) is simulated once per folio order on "
            "arm64 and every profile prices the same counters. Change = operations/s of contpte vs "
            "the baseline (negative = slower)."
        ),
    )
    _profile_args(cmd, ",".join(PROFILES), several=True)
    cmd.add_argument(
        "--orders",
        type=_order_list,
        default=",".join(str(o) for o in ORDERS),
        help="comma-separated folio orders: 0 = 4K, 2..8 = mTHP, 9 = 2M PMD THP (default: %(default)s)",
    )
    if len(spec.patterns) > 1:
        cmd.add_argument(
            "--pattern",
            default=",".join(spec.patterns),
            help="comma-separated touch patterns (default: %(default)s); see the description above",
        )
    cmd.add_argument(
        "--cpus",
        type=int,
        default=1,
        help="copies running at once, one per CPU, contending on broadcast TLBIs (default: %(default)s)",
    )
    cmd.add_argument(
        "--size",
        default=f"{spec.nbytes >> 20}M",
        help="anonymous region per copy, a multiple of 2M with order 9 (default: %(default)s)",
    )
    cmd.add_argument(
        "--plot", metavar="FILE", help="also draw the changes and times per order to FILE (.png or .svg)"
    )
    cmd.set_defaults(handler=_cmd_bench_op, op_bench=spec.name)


def _cmd_bench_op(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.op_bench import run_op_bench, simulation_points
    from .report import plot_op_bench, render_op_bench
    from .system.machine import parse_bytes

    profiles = _load_profiles(args.profile, args.set)
    patterns = [p.strip() for p in args.pattern.split(",") if p.strip()] if hasattr(args, "pattern") else None
    nbytes = parse_bytes(args.size, "--size")
    steps = len(simulation_points(args.op_bench, args.orders, patterns))
    with ui.progress(steps, f"simulating {args.op_bench}") as step:
        result = run_op_bench(
            args.op_bench,
            profiles,
            orders=args.orders,
            patterns=patterns,
            ncpus=args.cpus,
            nbytes=nbytes,
            progress=step,
        )
    data = result.as_dict()
    if args.plot:
        plot_op_bench(args.plot, data)
    if result.unmapped:
        ui.warn(
            f"no cost rule for counters {', '.join(result.unmapped)}: left out of the time (see cost/model.py)"
        )
    if ui.json:
        ui.emit_json(data | {"plot": args.plot})
        return 0
    render_op_bench(ui.out, data)
    if args.plot:
        ui.out.print(f"plot written to {args.plot}")
    return 0


# --- cost ---------------------------------------------------------------------


@register
def _register_cost(sub: Subparsers) -> None:
    cost = add_command(
        sub,
        "cost",
        help="price a scenario file per kernel variant on a machine profile",
        description=(
            "Simulate a scenario file (docs/SCENARIOS.md) once per kernel variant, validators off, and "
            "price the steps between 'measure begin' and 'measure end' (every step when the file has "
            "none) on a machine profile: per variant the time, its breakdown by cost term and the "
            "counters, and the change of time against the first variant, the baseline (positive = "
            "slower). Each --variant overrides Machine keys of the header (NAME: alone = the header as "
            "is); without --variant the header is priced as is. docs/cost-model.md explains the model."
        ),
    )
    cost.add_argument("file", help="a .scn scenario file")
    _profile_args(cost, "altra")
    cost.add_argument(
        "--cpus",
        type=int,
        default=1,
        help="copies of the workload running at once, one per CPU, contending for broadcast TLB "
        "maintenance (default: %(default)s)",
    )
    cost.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="a kernel variant: Machine keys over the header's, e.g. before:batch_fork=false,batch_zap=false "
        "(repeatable; the first is the baseline)",
    )
    add_kernel_version(cost, "over the header's kernel=; a --variant's kernel= wins (default: the header's)")
    cost.set_defaults(handler=_cmd_cost)


def _cmd_cost(args: argparse.Namespace, ui: Ui) -> int:
    from dataclasses import replace

    from .cost.model import KINDS
    from .cost.pricing import parse_variant, price_scenario
    from .report import fmt_ns, fmt_pct, render_table
    from .workloads.scenario import parse_file

    if args.cpus < 1:
        raise ModelUsageError(f"--cpus {args.cpus}: expected a positive number of copies")
    (profile,) = _load_profiles(args.profile, args.set)
    variants = [parse_variant(v) for v in args.variant]
    sc = parse_file(args.file)
    if args.kernel_version:
        sc = replace(sc, machine={**sc.machine, "kernel": args.kernel_version})
    with ui.progress(max(1, len(variants)), "simulating variants") as step:
        result = price_scenario(sc, profile, variants, args.cpus, progress=step)
    if result.unmapped:
        ui.warn(
            f"no cost rule for counters {', '.join(result.unmapped)}: left out of the time (see cost/model.py)"
        )
    if ui.json:
        ui.emit_json(result.as_dict())
        return 0
    vs = result.variants
    names = [v.variant.name for v in vs]
    kinds = [k for k in KINDS if any(v.breakdown.by_kind.get(k) for v in vs)]
    rows = [[k] + [fmt_ns(v.breakdown.by_kind.get(k, 0.0)) for v in vs] for k in kinds]
    rows.append(["total"] + [fmt_ns(v.time_ns) for v in vs])
    rows.append(["change vs " + names[0]] + ["\u2014"] + [fmt_pct(v.change_pct / 100) for v in vs[1:]])
    copies = f"{args.cpus} cop{'y' if args.cpus == 1 else 'ies'}"
    what = sc.title or args.file
    measured = "the measured steps" if any(s.op == "measure" for s in sc.steps) else "every step"
    render_table(ui.out, f"cost of {what}: profile {profile.name}, {copies}", ["cost term", *names], rows)
    ui.out.print(
        f"time of {measured} per variant, by cost term (profile figures x counted events; broadcast TLB "
        "maintenance stretched by contention); change of time, positive = slower."
    )
    for v in vs:
        ui.out.print(f"  {v.variant.name}: {v.variant.spec.split(':', 1)[1] or 'the header as is'}")
    counters = sorted({k for v in vs for k in v.measured.counters})
    render_table(
        ui.out,
        f"counters of {measured}",
        ["counter", *names],
        [[c] + [f"{v.measured.counters.get(c, 0):,}" for v in vs] for c in counters],
    )
    if args.cpus > 1:
        ui.out.print(
            "contention: "
            + "; ".join(
                f"{v.variant.name} {v.breakdown.concurrent_broadcasters:.1f} others broadcasting, "
                f"x{v.breakdown.stretch:.2f}"
                for v in vs
            )
        )
    return 0


# --- compare-policy -------------------------------------------------------------


@register
def _register_compare_policy(sub: Subparsers) -> None:
    cp = add_command(
        sub,
        "compare-policy",
        help="run workloads of the library under policy mainline and oneplus; price and compare them",
        description=(
            "Run each workload of the library (docs/WORKLOADS.md; none named: all of them) once under "
            "policy mainline (contpte) and once under policy oneplus (the OnePlus dynamic hugepage "
            "design, docs/oneplus.md) on the same machine, with the validators off, and print one table "
            "per workload: the priced time of its measured steps by phase (fork, exit, munmap, faults, "
            "...), rmap and reference operations, TLBIs by kind, Contiguous-block rewrites (mainline's "
            "folds and unfolds beside the design's break-before-make block writes), page faults, the "
            "pool when the measured steps end (chp_pool_stats) and the fallbacks of both designs; the "
            "change is oneplus - mainline. Under oneplus the workload's regions carry the VMA names "
            "the real program's memory has on a phone (docs/WORKLOADS.md); docs/oneplus-compare.md "
            "reads the default run."
        ),
    )
    cp.add_argument(
        "workloads", nargs="*", metavar="WORKLOAD", help="workloads of the library (default: all)"
    )
    _profile_args(cp, "altra")
    add_kernel_version(cp, "for both policies (default: 6.12)")
    cp.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="WORKLOAD:KEY=VALUE",
        help="a parameter of one workload (repeatable), e.g. --param zygote-fork:heap=8M",
    )
    cp.add_argument(
        "--plot", metavar="FILE", help="also draw grouped bars per workload to FILE (.png or .svg)"
    )
    cp.set_defaults(handler=_cmd_compare_policy)


def _compare_params(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, colon, pair = item.partition(":")
        key, eq, value = pair.partition("=")
        if not colon or not eq or not name.strip() or not key.strip() or not value.strip():
            raise ModelUsageError(f"--param {item!r}: expected WORKLOAD:KEY=VALUE, e.g. zygote-fork:heap=8M")
        out.setdefault(name.strip(), {})[key.strip()] = value.strip()
    return out


def _check_plot_path(path: str) -> None:
    """Refuse a plot file that cannot be written before anything is computed."""
    from pathlib import Path

    from .report import PLOT_FORMATS

    out = Path(path)
    if out.suffix.lower().lstrip(".") not in PLOT_FORMATS:
        raise ModelUsageError(f"--plot {path!r}: format must be one of {', '.join(PLOT_FORMATS)}")
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ModelUsageError(f"--plot {path!r}: cannot write there (no such directory, or not writable)")
    if out.exists() and not os.access(out, os.W_OK):
        raise ModelUsageError(f"--plot {path!r}: the file is not writable")


def _cmd_compare_policy(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.policy_compare import METRICS, POOL_KEYS, compare_policies
    from .report import fmt_ns, fmt_pct, render_table
    from .workloads.commands import print_wrapped
    from .workloads.library import WORKLOADS

    names = list(args.workloads) or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ModelUsageError(
            f"unknown workload {', '.join(map(repr, unknown))}; expected one of {', '.join(WORKLOADS)}"
        )
    (profile,) = _load_profiles(args.profile, args.set)
    if args.plot:
        _check_plot_path(args.plot)
    params = _compare_params(args.param)
    with ui.progress(len(names), "mainline vs oneplus") as step:
        result = compare_policies(names, profile, params, args.kernel_version, progress=step)
    data = result.as_dict()
    if result.unmapped:
        ui.warn(
            f"no cost rule for counters {', '.join(result.unmapped)}: left out of the time (see cost/model.py)"
        )
    if ui.json:
        ui.emit_json(data | {"plot": args.plot})
    else:
        kernel = args.kernel_version or KERNEL_VERSION
        for w in result.workloads:
            a, b = w.runs["mainline"], w.runs["oneplus"]
            ma, mb = a.metrics, b.metrics
            rows: list[list[str]] = []

            def t(label: str, x: float, y: float) -> list[str]:
                pct = fmt_pct(y / x - 1) if x > 0 else "\u2014"
                return [label, fmt_ns(x), fmt_ns(y), pct]

            def n(label: str, x: int, y: int) -> list[str]:
                return [label, f"{x:,}", f"{y:,}", f"{y - x:+,}"]

            for ph in w.phases:
                rows.append(t(f"time: {ph}", a.phase_ns.get(ph, 0.0), b.phase_ns.get(ph, 0.0)))
            rows.append(t("time: total", a.total_ns, b.total_ns))
            rows.append(t("  of which broadcast TLB maintenance", a.dvm_ns, b.dvm_ns))
            for key, label, _f in METRICS:
                if key == "tlbi.total":
                    rows.append(n(label, ma[key], mb[key]))
                    for kind in w.tlbi_kinds:
                        rows.append(n(f"  {kind}", ma.get(kind, 0), mb.get(kind, 0)))
                elif ma.get(key, 0) or mb.get(key, 0) or key in ("bbm_blocks", "pgfault"):
                    rows.append(n(label, ma.get(key, 0), mb.get(key, 0)))
            if b.pool:
                for key in POOL_KEYS:
                    rows.append(["pool: " + key + " (pages)", "\u2014", f"{b.pool.get(key, 0):,}", ""])
                rows.append(["pool: CMA area reserved", "\u2014", f"{b.cma_bytes >> 20} MiB", ""])
            shown = ", ".join(
                f"{k}={_size_text(v) if WORKLOADS[w.name].params[k].size else v}" for k, v in w.params.items()
            )
            render_table(
                ui.out,
                f"{w.name} ({shown}): profile {profile.name}, Linux {kernel}, one copy",
                ["measured steps", "mainline", "oneplus", "change"],
                rows,
            )
            print_wrapped(
                ui.out, f"oneplus eligibility: {w.eligibility['mode']}: {w.eligibility['why']}", "  "
            )
        ui.out.print(
            "time: the measured steps priced on the profile, by phase (a step's verb); change: oneplus - "
            "mainline (time: percent). Block rewrites: mainline's contpte_convert (fold, unfold) beside the "
            "design's break-before-make writes of live blocks (fork write-protect, split, CoW, reuse); "
            "pool: chp_pool_stats() when the measured steps end (docs/oneplus-compare.md).",
            markup=False,
        )
    if args.plot:
        _plot_compare(args.plot, data)
    return 0


def _size_text(n: int) -> str:
    for shift, unit in ((30, "G"), (20, "M"), (10, "K")):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def _plot_compare(path: str, data: dict[str, Any]) -> None:
    from .report import Panel, plot_panels

    ws = data["workloads"]
    cats = [w["name"] for w in ws]

    def series(get: Callable[[dict[str, Any]], float]) -> dict[str, list[float | None]]:
        return {pol: [get(w["policies"][pol]) for w in ws] for pol in data["policies"]}

    panels = [
        Panel("priced time of the measured steps", "ms", cats, series(lambda r: r["time_ns"]["total"] / 1e6)),
        Panel("TLBIs", "instructions", cats, series(lambda r: float(r["metrics"]["tlbi.total"]))),
        Panel(
            "rmap pages (mapcount updates)",
            "pages",
            cats,
            series(lambda r: float(r["metrics"]["rmap.pages"])),
        ),
        Panel(
            "block rewrites (break-before-make of live entries)",
            "blocks",
            cats,
            series(lambda r: float(r["metrics"]["bbm_blocks"])),
        ),
    ]
    plot_panels(
        path,
        panels,
        title=f"mainline (contpte) vs oneplus (dynamic hugepage), profile {data['profile']}",
    )


# --- calibrate ----------------------------------------------------------------


@register
def _register_calibrate(sub: Subparsers) -> None:
    cal = add_command(
        sub,
        "calibrate",
        help="fit each profile's free figures on its published fit-set figures; print every residual",
        description=(
            "Fit the figures marked fit = true in a profile (each within its physical range) on the "
            "published figures of its machine listed in docs/numbers.md as the fit set, and nothing "
            "else: the fork table and the v4 microbenchmarks (altra), the v4 microbenchmarks "
            "(m2-vm), the batched-fork table (x86). Prints the fitted values with their ranges and "
            "every fit-set figure beside the model's value with its residual: percentage points for "
            "changes (or the factor between time ratios, for slowdowns of 2x or more), percent for "
            "absolute times. A figure kept out of the fit is still reported, with the reason; a "
            "parameter that ends at an edge of its range is a failure. The first run simulates the "
            "whole fit set (minutes); simulations are cached (see CONTPTE_SIM_CACHE in "
            "docs/cost-model.md)."
        ),
    )
    cal.add_argument(
        "--profile",
        default="altra,m2-vm,x86",
        help="comma-separated profiles: shipped names or .toml paths extending one (default: %(default)s)",
    )
    cal.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIGURE=VALUE",
        help="fix one figure before fitting (repeatable; a set figure is no longer free)",
    )
    cal.add_argument(
        "--no-fit",
        action="store_true",
        help="report the residuals of the profiles as they are, without fitting",
    )
    cal.add_argument(
        "--include-excluded",
        action="store_true",
        help="fit the figures normally kept out of the fit too (the fork table's 'before' rows), to "
        "see what they do to the fitted parameters and the other figures",
    )
    cal.add_argument(
        "--plot", metavar="FILE", help="also draw published beside model for every figure (.png or .svg)"
    )
    cal.add_argument(
        "--write",
        metavar="FILE.toml",
        help="write the fitted profile (one profile only) as a TOML that extends the original",
    )
    cal.set_defaults(handler=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.calibrate import PP_TARGET, calibrate, machine_of, simulations
    from .cost.fitset import figures_for
    from .report import render_table

    profiles = _load_profiles(args.profile, args.set)
    if args.write and len(profiles) != 1:
        raise ModelUsageError("--write: give exactly one --profile")
    total = sum(len(simulations(figures_for(machine_of(p)))) for p in profiles)
    results = []
    with ui.progress(total, "simulating the fit set") as step:
        for p in profiles:
            results.append(
                calibrate(p, fit=not args.no_fit, progress=step, include_excluded=args.include_excluded)
            )
    if args.plot:
        from .report import plot_fit_set

        plot_fit_set(args.plot, [c.as_dict() for c in results])
    if args.write:
        _write_fitted(args.write, results[0])
    if ui.json:
        ui.emit_json({"profiles": [c.as_dict() for c in results], "plot": args.plot, "written": args.write})
        return 0
    for c in results:
        if c.params:
            render_table(
                ui.out,
                f"calibration of {c.profile.name}: fitted figures",
                ["figure", "start", "fitted", "range", "unit", ""],
                [
                    [
                        p.name,
                        f"{p.start:.4g}",
                        f"{p.value:.4g}",
                        f"[{p.low:g}, {p.high:g}]",
                        p.unit,
                        "AT EDGE: failure" if p.at_edge else "in range",
                    ]
                    for p in c.params
                ],
            )
        rows = []
        for r in c.results:
            unit = "%" if r.published.measure == "seconds" else "pp"
            pub = (
                f"{r.published.value:.6g} s"
                if r.published.measure == "seconds"
                else f"{r.published.value:+.1f}%"
            )
            mod = f"{r.model:.6g} s" if r.published.measure == "seconds" else f"{r.model:+.1f}%"
            rows.append(
                [
                    r.published.key,
                    pub,
                    mod,
                    f"{r.residual:+.2f} {unit}",
                    f"{r.factor:.3f}",
                    ("met" if r.met else "MISSED")
                    + (
                        f" (noise: {r.tolerance_pp:.1f} pp)"
                        if r.published.measure != "seconds" and r.tolerance_pp > PP_TARGET
                        else ""
                    )
                    + ("" if r.excluded is None else ", kept out of the fit"),
                ]
            )
        render_table(
            ui.out,
            f"{c.machine}: every fit-set figure (docs/numbers.md) beside the model",
            ["figure", "published", "model", "residual", "factor", "target"],
            rows,
        )
        ui.out.print(
            f"rms of log time-ratio residuals over the fitted figures: {c.rms_log:.4f}"
            + (f" after {c.iterations} simplex iterations" if c.fitted else " (no fit)")
            + "; targets: 3 pp (or two standard errors of the published change, where the "
            "source gives its runs' deviations and that is wider), a factor of 1.25 for slowdowns "
            "of 2x or more, 3% for times."
        )
        kept = {r.excluded for r in c.results if r.excluded}
        for why in kept:
            ui.out.print(f"kept out of the fit: {why}")
        fails = c.failures
        ui.out.print(
            f"{c.profile.name}: "
            + ("every target met" if not fails else f"{len(fails)} failure(s): " + "; ".join(fails))
        )
    if args.plot:
        ui.out.print(f"plot written to {args.plot}")
    if args.write:
        ui.out.print(f"fitted profile written to {args.write}")
    return 0


def _write_fitted(path: str, c: Any) -> None:
    """A TOML profile that extends ``c``'s original with its fitted figures."""
    from pathlib import Path

    from .cost.profile import list_profiles, load_profile

    prof = c.profile
    shipped = prof.name in list_profiles() and Path(load_profile(prof.name).path) == Path(prof.path)
    base = prof.name if shipped else str(Path(prof.path).resolve())
    lines = [
        "# Written by contpte calibrate: the fitted figures over the original profile.",
        "[profile]",
        f'name = "{prof.name}-fitted"',
        f'extends = "{base}"',
        "",
    ]
    for p in c.params:
        fig = prof.figures[p.name]
        lines += [
            f"[figures.{p.name}]",
            f"value = {p.value:.6g}",
            f'unit = "{fig.unit}"',
            "fit = true",
            f"range = [{p.low:g}, {p.high:g}]",
            f'source = "fitted by contpte calibrate on the fit set of {c.machine} (docs/numbers.md)"',
            "",
        ]
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
    except OSError as e:
        raise ModelUsageError(f"cannot write {path}: {e.strerror}") from None


# --- run, fuzz, check (contpte.workloads) -------------------------------------


@register
def _register_run(sub: Subparsers) -> None:
    from .workloads.commands import cmd_run

    run = add_command(
        sub,
        "run",
        help="replay a scenario file (docs/SCENARIOS.md) on the model",
        epilog="exit status:\n"
        "  0  every step met its expectation\n"
        "  1  a step did not, or a kernel invariant or an Arm ARM rule broke\n"
        "  2  bad arguments, or a missing or malformed scenario file (FILE:LINE: what was expected)",
    )
    run.add_argument("file", help="a .scn scenario file")
    run.add_argument("--arch", choices=("arm64", "generic"), help="override the header's arch")
    add_kernel_version(run, "over the header's kernel= (default: the header's, else 6.12)")
    run.add_argument(
        "--state",
        action="store_true",
        help="after each step, the PTEs of its range (present, writable, Contiguous bit; "
        "with --json also pfn, order, dirty, young, exclusive) and, with --json, the state "
        "every process can observe",
    )
    run.add_argument(
        "--counters", action="store_true", help="every counter a step changed (default: the key ones)"
    )
    run.add_argument(
        "--explore",
        type=int,
        metavar="N",
        help="explore the interleavings of the file's 'at' steps systematically: every schedule "
        "with at most N preemptions ('at *' and bare 'at POINT' steps fire at any occurrence of "
        "their point, or after); prints a failing one as a scenario that replays it",
    )
    run.add_argument(
        "--random",
        type=int,
        metavar="SEED",
        help="explore interleavings at random instead: --runs schedules drawn from seeds SEED, SEED+1, ...",
    )
    run.add_argument("--runs", type=int, default=100, help="schedules for --random (default 100)")
    run.add_argument(
        "--max-schedules",
        type=int,
        default=10000,
        help="stop --explore after this many schedules (default 10000; the report says if it was complete)",
    )
    run.set_defaults(handler=cmd_run)


@register
def _register_fuzz(sub: Subparsers) -> None:
    from .workloads.commands import cmd_fuzz
    from .workloads.fuzz import VARIANTS

    fz = add_command(
        sub,
        "fuzz",
        help="random multi-process syscall sequences with every validator on; shrinks what it finds",
        epilog="Every finding is replayed at each later modelled kernel version: the report (and the\n"
        "reproducer's comments) says where it is fixed and which modelled change fixes it.\n"
        "The steps/s figure covers fuzzing only, not shrinking and attributing findings.\n\n"
        "exit status:\n"
        "  0  no violation, no disagreement\n"
        "  1  a finding: its shrunk reproducer is written (--out), replay it with contpte run;\n"
        "     with --keep-going, any finding: each is listed with its reproducer (fuzz-SEED-K.scn\n"
        "     beside --out for those a later version fixes, --out for the one that ended the run)\n"
        "  2  bad arguments (also --keep-going with --record-costs or --check-costs)",
    )
    fz.add_argument(
        "--steps", type=positive_int, default=10_000, help="steps per variant (default: %(default)s)"
    )
    fz.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    fz.add_argument(
        "--variant", default="arm64", help=f"comma-separated backend/variant sets: {', '.join(VARIANTS)}"
    )
    fz.add_argument(
        "--differential",
        action="store_true",
        help="run every step on all variants (default set: arm64, generic, with and without batch_fork) "
        "and demand they agree on everything a process can observe",
    )
    fz.add_argument(
        "--episode", type=positive_int, default=150, help="steps per fresh machine (default: %(default)s)"
    )
    fz.add_argument("--memory", default="32M", help="simulated memory per machine (default: %(default)s)")
    fz.add_argument(
        "--bug", help="re-introduce bug catalog entries (comma-separated; see contpte check --bugs)"
    )
    add_kernel_version(fz, "on every machine (default: 6.12)")
    fz.add_argument("--out", help="reproducer file (default: fuzz-SEED.scn)")
    fz.add_argument("--no-shrink", action="store_true", help="write the reproducer unshrunk")
    # A cost record is of whole runs and a cost finding has no kernel version to attribute:
    # --keep-going goes with neither.
    costs = fz.add_mutually_exclusive_group()
    costs.add_argument(
        "--keep-going",
        action="store_true",
        help="a finding that a later modelled kernel version fixes is written to fuzz-SEED-K.scn "
        "(beside --out) and the run goes on with the next episode; the first finding no later "
        "version fixes ends it; a summary lists every finding",
    )
    costs.add_argument(
        "--record-costs",
        metavar="FILE",
        help="counter oracle: write every step's counter deltas to FILE (gzip'd JSON)",
    )
    costs.add_argument(
        "--check-costs",
        metavar="FILE",
        help="counter oracle: the same seed's steps must have the counter deltas recorded in FILE "
        "(another tree, kernel version or --bug); the first that differs is a finding",
    )
    fz.set_defaults(handler=cmd_fuzz)


@register
def _register_check(sub: Subparsers) -> None:
    from .workloads.commands import cmd_check

    ck = add_command(
        sub,
        "check",
        help="self-checks of the model: --bugs runs the bug catalog",
        epilog="exit status:\n"
        "  0  every catalogued bug is caught by a general validator\n"
        "  1  one is missed, or its scenario fails without the bug\n"
        "  2  bad arguments",
    )
    ck.add_argument(
        "--bugs",
        action="store_true",
        help="re-introduce each catalogued kernel bug and report whether the general validators catch it",
    )
    ck.add_argument("--only", help="comma-separated catalog entries (default: all)")
    ck.set_defaults(handler=cmd_check)


@register
def _register_workload(sub: Subparsers) -> None:
    from .workloads.commands import cmd_workload

    wl = add_command(
        sub,
        "workload",
        help="the workload library: list it, or run or print one workload (docs/WORKLOADS.md)",
        description=(
            "Without NAME: list the workload library (src/contpte/workloads/library.py), scenario "
            "generators named after the real workloads they stand for (docs/WORKLOADS.md gives each "
            "one's source and what it leaves out). With NAME: generate its scenario with the given "
            "parameters and run it on the model (validators on unless --no-check), or print the "
            "scenario file (--scenario) for contpte run, contpte cost or an oracle."
        ),
        epilog="exit status:\n"
        "  0  every step succeeded\n"
        "  1  a step failed or a kernel invariant broke\n"
        "  2  bad arguments (an unknown workload or parameter)",
    )
    wl.add_argument("name", nargs="?", help="a workload of the library (none: list them)")
    wl.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a workload parameter (repeatable), e.g. --param heap=64M; the list shows each one's default",
    )
    wl.add_argument(
        "--scenario", action="store_true", help="print the generated scenario file, do not run it"
    )
    wl.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run every validator after every step (default: on)",
    )
    add_kernel_version(wl, "(default: 6.12)")
    wl.set_defaults(handler=cmd_workload)


# --- oracle (contpte.oracle) ----------------------------------------------------


@register
def _register_oracle(sub: Subparsers) -> None:
    oracle = add_command(
        sub,
        "oracle",
        help="run a scenario on this machine's live Linux kernel and on the model; compare page by page",
        description=(
            "Replay scenario files with real processes on the running kernel (root; THP policy set in "
            "sysfs for the run and restored) and on the model (once per --model-arch: generic and arm64, "
            "4K pages), and compare after each "
            "step: outcome, presence, value, folio order, exclusivity, frame sharing, VMAs, smaps RSS. "
            "Exit 0: agreement (or the declared expect-mismatch); 1: a difference; 2: bad arguments or "
            "a malformed scenario file; 3: cannot run here (one line says why)."
        ),
    )
    oracle.add_argument("scenario", nargs="*", help=".scn scenario file(s)")
    oracle.add_argument("--library", action="store_true", help="run the oracle's own scenario library")
    oracle.add_argument(
        "--at",
        choices=("step", "check"),
        default="step",
        help="compare after every step (default) or only at 'check' steps and the end",
    )
    oracle.add_argument(
        "--keep-going",
        action="store_true",
        help="compare after a difference too (default: stop at the first)",
    )
    oracle.add_argument(
        "--model-arch",
        default="generic,arm64",
        metavar="ARCHS",
        help="the model backends compared with the live kernel, comma-separated (default: generic,arm64; "
        "each verdict is reported; what differs by architecture is listed in oracle.run.ARCH_DIFFERENCES)",
    )
    oracle.add_argument(
        "--kernel",
        choices=("live", "arm64"),
        default="live",
        help="live: this machine's running kernel (default); arm64: a Debian arm64 kernel "
        "booted under qemu (fetched on first use; --kernel-version, --page-size), comparing contpte call "
        "counts per step",
    )
    add_kernel_version(
        oracle,
        "with --kernel arm64: the Debian arm64 kernel booted, and the model's version (default: the "
        "scenarios' kernel=, else 6.12; Debian has no 6.13 to 6.15)",
    )
    oracle.add_argument(
        "--page-size",
        type=str.upper,
        choices=("4K", "16K"),
        help="with --kernel arm64: the kernel's page size, Debian's arm64 or arm64-16k flavour (default: the "
        "scenarios' page_size=, else 4K; with --library: the library of that page size)",
    )
    oracle.set_defaults(handler=_cmd_oracle)


def _cmd_oracle(args: argparse.Namespace, ui: Ui) -> int:
    if args.kernel != "arm64" and (args.kernel_version or args.page_size):
        ui.err.print("contpte oracle: --kernel-version and --page-size go with --kernel arm64")
        return 2
    if args.kernel == "arm64":
        from .oracle.arm64.commands import cmd_oracle_arm64

        return cmd_oracle_arm64(args, ui)
    from .oracle.commands import cmd_oracle

    return cmd_oracle(args, ui)


# --- snapshot, replay (contpte.snapshot) ---------------------------------------------


@register
def _register_snapshot(sub: Subparsers) -> None:
    snap = add_command(
        sub,
        "snapshot",
        help="capture live processes (VMAs, pages, folios, THP settings) into a file, or report "
        "tools/mm/thpmaps' categories",
        description=(
            "Capture live processes (root: PFNs and /proc/kpageflags need CAP_SYS_ADMIN) into one "
            "versioned snapshot file: VMAs and smaps, per present page the pagemap entry, kpageflags, "
            "kpagecount, folio order and index, the THP sysfs settings and the kernel version "
            "(docs/snapshots.md). With --report, print the per-VMA categories of tools/mm/thpmaps "
            "(in kB, its layout) of live PIDs or of a snapshot file instead."
        ),
        epilog="exit status:\n"
        "  0  captured (or reported)\n"
        "  2  bad arguments, a process that does not exist or exits during the capture, an unreadable\n"
        "     or corrupt snapshot file; nothing is written then",
    )
    snap.add_argument(
        "targets",
        nargs="*",
        metavar="PID|FILE",
        help="process IDs to capture; with --report also a snapshot file",
    )
    snap.add_argument("-o", "--output", metavar="FILE", help="the snapshot file to write (atomically)")
    snap.add_argument("--self", action="store_true", help="capture this contpte process too (for tests)")
    snap.add_argument(
        "--children", action="store_true", help="capture every descendant of each PID too (a forked family)"
    )
    snap.add_argument(
        "--report", action="store_true", help="print thpmaps' categories of the PIDs or the FILE"
    )
    snap.add_argument(
        "--cont",
        action="append",
        default=[],
        metavar="SIZE",
        help="with --report: also count contiguous blocks of SIZE (e.g. 64K), as thpmaps --cont",
    )
    snap.add_argument("--rollup", action="store_true", help="with --report: one sum over every VMA")
    snap.add_argument("--inc-empty", action="store_true", help="with --report: show zero values too")
    snap.set_defaults(handler=_cmd_snapshot)


def _cmd_snapshot(args: argparse.Namespace, ui: Ui) -> int:
    from pathlib import Path

    from .snapshot import format as snapfmt
    from .snapshot import thpmaps

    texts: list[str] = list(args.targets)
    is_pid = [t.isdigit() or t == "self" for t in texts]
    files = [t for t, p in zip(texts, is_pid) if not p]
    if files and not args.report:
        raise ModelUsageError(f"snapshot: {files[0]!r} is not a PID (a snapshot file goes with --report)")
    if files and (len(files) > 1 or any(is_pid) or args.self or args.children):
        raise ModelUsageError(f"snapshot --report {files[0]}: give one snapshot file, or PIDs, not both")
    if not args.report and not args.output:
        raise ModelUsageError("snapshot: give -o FILE (or --report)")
    if args.report and args.output:
        raise ModelUsageError("snapshot: --report prints; it takes no -o FILE")
    if not args.report and (args.cont or args.rollup or args.inc_empty):
        raise ModelUsageError("snapshot: --cont, --rollup and --inc-empty go with --report")
    if files:
        snap = snapfmt.load(files[0])
    else:
        from .snapshot.capture import capture, parse_pids

        pids = parse_pids(texts)
        if args.self:
            pids.append(os.getpid())
        if not pids:
            raise ModelUsageError("snapshot: give at least one PID (or --self)")
        snap = capture(pids, children=args.children)
    if args.report:
        try:
            conts = [thpmaps.cont_order(c, snap.page_size, snap.pmd_order) for c in args.cont]
        except ValueError as e:
            raise ModelUsageError(str(e)) from None
        rows = thpmaps.report(snap, conts)
        if ui.json:
            ui.emit_json(
                {
                    "page_size": snap.page_size,
                    "kernel": snap.kernel,
                    "vmas": [
                        {
                            "pid": r["pid"],
                            "start": r["vma"].start,
                            "end": r["vma"].end,
                            "perms": r["vma"].perms,
                            "name": r["vma"].name,
                            "anon_kb": r["anon_kb"],
                            "file_kb": r["file_kb"],
                            "kb": {k: s["value"] for k, s in r["stats"].items()},
                        }
                        for r in rows
                    ],
                }
            )
            return 0
        sys.stdout.write(thpmaps.format_report(rows, rollup=args.rollup, inc_empty=args.inc_empty))
        return 0
    out = Path(args.output)
    try:
        snapfmt.save(snap, out)
    except OSError as e:
        raise ModelUsageError(f"snapshot: cannot write {out}: {e.strerror}") from None
    summary = {
        "file": str(out),
        "kernel": snap.kernel,
        "page_size": snap.page_size,
        "processes": [
            {"pid": p.pid, "vmas": len(p.vmas), "present_pages": len(p.vfn)} for p in snap.processes
        ],
    }
    if ui.json:
        ui.emit_json(summary)
        return 0
    procs = ", ".join(f"pid {p.pid} ({len(p.vmas)} VMAs, {len(p.vfn)} pages)" for p in snap.processes)
    ui.out.print(f"snapshot of {procs} written to {out} (Linux {snap.kernel}, {snap.page_size >> 10}K pages)")
    return 0


@register
def _register_replay(sub: Subparsers) -> None:
    rp = add_command(
        sub,
        "replay",
        help="rebuild a snapshot's address spaces on the arm64 model: Contiguous bit coverage, fidelity, "
        "and the cost of fork, exit and munmap per variant and profile",
        description=(
            "Rebuild every process of a snapshot file (contpte snapshot) on the arm64 model through its "
            "syscalls and faults: the same VMAs, folio sizes and alignments (mTHP faults, mremap to "
            "unaligned places, MADV_DONTNEED for partial folios) and the same sharing between the "
            "captured processes (fork). Report how faithful the rebuild is, the Contiguous bit coverage "
            "of the model's page tables beside what thpmaps infers from the snapshot, and price fork of "
            "every process, exit of every process and munmap of every VMA, each on a fresh rebuild, per "
            "--variant and --profile (as contpte cost does). docs/snapshots.md says what cannot be "
            "reproduced."
        ),
        epilog="exit status:\n"
        "  0  replayed\n"
        "  2  bad arguments, an unreadable or corrupt snapshot, or one of another page size than --granule",
    )
    rp.add_argument("file", help="a snapshot file")
    add_kernel_version(rp, "(default: 6.12)")
    rp.add_argument(
        "--granule",
        type=str.upper,
        choices=("4K", "16K", "64K"),
        help="the arm64 page size; must be the snapshot's (default: the snapshot's)",
    )
    rp.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="a kernel variant: Machine keys, e.g. before:batch_fork=false (repeatable; the first is the "
        "baseline; default: contpte: and nocontpte:contpte=false)",
    )
    _profile_args(rp, "altra", several=True)
    rp.add_argument(
        "--check",
        action="store_true",
        help="also rebuild once with every validator on (kernel invariants, Arm ARM rules); the fidelity "
        "is that rebuild's",
    )
    rp.set_defaults(handler=_cmd_replay)


def _cmd_replay(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.pricing import parse_variant
    from .report import fmt_ns, fmt_pct, render_table
    from .snapshot import load
    from .snapshot.replay import check_granule, replay

    snap = load(args.file)
    granule = check_granule(snap, args.file, args.granule)
    profiles = _load_profiles(args.profile, args.set)
    variants = [parse_variant(v) for v in args.variant]
    total = max(1, len(variants) or 2) * len({(p.cpu if p.arch == "arm64" else None) for p in profiles})
    with ui.progress(total, "rebuilding and measuring") as step:
        result = replay(snap, profiles, variants, args.kernel_version, progress=step, check=args.check)
    if result.unmapped:
        ui.warn(
            f"no cost rule for counters {', '.join(result.unmapped)}: left out of the time (see cost/model.py)"
        )
    if ui.json:
        ui.emit_json(
            {"file": args.file, "granule": granule, "captured_kernel": snap.kernel} | result.as_dict()
        )
        return 0
    f = result.fidelity
    names = [v.name for v in result.variants]

    def pct(n: int, of: int) -> str:
        return f"{n:,} ({100 * n / of:.1f}%)" if of else "0"

    ui.out.print(
        f"replay of {args.file}: {len(snap.processes)} process(es) captured on Linux {snap.kernel}, "
        f"rebuilt on the arm64 model, Linux {result.kernel}, {granule} granule"
    )
    render_table(
        ui.out,
        "fidelity: captured anonymous pages and folios against the rebuild",
        ["what", "captured", "reproduced"],
        [
            ["pages present", f"{f.pages:,}", pct(f.present, f.pages)],
            ["... in a folio of the captured order", "", pct(f.order, f.pages)],
            ["... at the captured index in it (alignment)", "", pct(f.aligned, f.pages)],
            ["... sharing frames as captured", "", pct(f.frames, f.pages)],
            ["... sharing folios as captured", "", pct(f.same_folio, f.pages)],
            ["folios, every page right", f"{f.folios:,}", pct(f.folios_matched, f.folios)],
            ["zero-page mappings", f"{f.zero_pages:,}", pct(f.zero_present, f.zero_pages)],
            [
                "VMAs (model count; same bounds)",
                f"{f.vmas:,}",
                f"{f.vmas_model:,}; {pct(f.vmas_exact, f.vmas)}",
            ],
            [
                "page-cache pages of private file mappings",
                f"{f.file_pages:,}",
                pct(f.file_present, f.file_pages),
            ],
        ],
        caption=(
            f"not rebuilt: {f.skipped_shared_pages:,} pages of shared mappings; page-cache folios take "
            "one size per file (docs/snapshots.md)"
        ),
    )
    cov0 = result.coverage[names[0]]
    render_table(
        ui.out,
        "Contiguous bit coverage (kB): the model's page tables, and what thpmaps infers from the snapshot",
        [
            "pid",
            "RSS",
            *(f"anon, {n}" for n in names),
            "anon, thpmaps",
            f"file, {names[0]}",
            "file, thpmaps",
        ],
        [
            [
                str(c.pid),
                f"{c.mapped_kb:,}",
                *(f"{result.coverage[n][i].cont_kb:,}" for n in names),
                f"{c.inferred_kb:,}",
                f"{c.file_cont_kb:,}",
                f"{c.file_inferred_kb:,}",
            ]
            for i, c in enumerate(cov0)
        ],
    )
    for prof in dict.fromkeys(c.profile for c in result.costs):
        rows = []
        for op in ("fork", "exit", "munmap"):
            cs = [c for c in result.costs if c.profile == prof and c.op == op]
            rows.append(
                [op, *(fmt_ns(c.time_ns) for c in cs), *(fmt_pct(c.change_pct / 100) for c in cs[1:])]
            )
        render_table(
            ui.out,
            f"cost of the whole rebuilt space, profile {prof}",
            ["operation", *names, *(f"{n} vs {names[0]}" for n in names[1:])],
            rows,
        )
    ui.out.print(
        "fork: every process forks once; exit: every process exits; munmap: every VMA is unmapped; "
        "each on a fresh rebuild. Change of time, positive = slower."
    )
    return 0


# --- sweep, report (contpte.sweep) ---------------------------------------------------


@register
def _register_sweep(sub: Subparsers) -> None:
    from .sweep.commands import cmd_sweep

    sw = add_command(
        sub,
        "sweep",
        help="run a grid of workloads x kernels x variants x profiles x CPU counts into a DuckDB database",
        description=(
            "Run every run of the grid a SPEC.toml describes (src/contpte/sweep/spec.py, README): "
            "workloads (the library's or .scn files) x kernel versions x variants x machine profiles x "
            "CPU counts, on a local process pool (default) or a Ray cluster (--ray). Each run's row "
            "(time, breakdown, every counter) is written to the database in one transaction when it "
            "completes; runs already there are skipped, so an interrupted sweep resumes."
        ),
        epilog="exit status:\n"
        "  0  every run of the grid is in the database\n"
        "  2  a malformed spec (FILE:LINE: key: what is wrong), an unknown workload, kernel, variant or\n"
        "     profile, a Ray address that does not answer, a database that cannot be opened\n"
        "130  interrupted: the runs completed so far are kept",
    )
    sw.add_argument("spec", help="the sweep's SPEC.toml")
    sw.add_argument("--db", help="the DuckDB database (default: SPEC.duckdb beside the spec)")
    sw.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        help="worker processes, or Ray CPUs with --ray local (default: CPUs here)",
    )
    sw.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on a Ray cluster: 'local' (started and stopped by this command), HOST:PORT or ray://HOST:PORT",
    )
    sw.set_defaults(handler=cmd_sweep)


@register
def _register_report(sub: Subparsers) -> None:
    from .sweep.commands import cmd_report

    rp = add_command(
        sub,
        "report",
        help="write a static HTML report (plots and tables) of a sweep database",
    )
    rp.add_argument("db", help="a database written by contpte sweep")
    rp.add_argument("-o", "--output", required=True, metavar="FILE.html", help="the report to write")
    rp.set_defaults(handler=cmd_report)


# --- demo -------------------------------------------------------------------------

DEMO_ROWS: tuple[tuple[str, str], ...] = (
    ("fork.batch", "batches at fork (nr > 1)"),
    ("fork.ptes", "PTEs copied"),
    ("pte.read", "PTE reads"),
    ("pte.write", "PTE writes"),
    ("tlbi.total", "TLBIs"),
    ("dsb.total", "DSBs"),
    ("contpte.fold", "contpte folds"),
    ("contpte.unfold", "contpte unfolds"),
    ("contpte.convert", "contpte conversions"),
    ("folio.alloc", "folios allocated"),
    ("check.runs", "validator runs"),
)
"""(counter, label) rows of ``contpte demo``; the contpte rows only on arm64."""


def _arch_works(arch: str) -> bool:
    import contpte

    try:
        contpte.Machine(arch=arch, memory="64M", cpus=1, check=False)
    except ContpteError:
        return False
    return True


@register
def _register_demo(sub: Subparsers) -> None:
    demo = add_command(
        sub,
        "demo",
        help="a process with 256 MiB of 64K-folio anonymous memory forks: what did it cost?",
    )
    demo.add_argument(
        "--arch",
        choices=("auto", "arm64", "generic"),
        default="auto",
        help="backend (default: arm64 if it works, else generic)",
    )
    demo.add_argument(
        "--size", default="256M", help="anonymous memory the parent touches (default: %(default)s)"
    )
    demo.add_argument("--cpus", type=int, default=4, help="CPUs of the machine (default: %(default)s)")
    demo.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run every validator after every syscall (default: on)",
    )
    add_kernel_version(demo, "(default: 6.12)")
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace, ui: Ui) -> int:
    import time

    import contpte
    from contpte.system.machine import parse_bytes

    from .report import render_table

    arch = args.arch
    if arch == "auto":
        arch = "arm64" if _arch_works("arm64") else "generic"
    size = parse_bytes(args.size, "--size")
    folio = 64 << 10
    if size % folio:
        raise ModelUsageError(f"--size {args.size}: must be a multiple of 64K (whole folios)")
    if args.cpus < 1:
        raise ModelUsageError(f"--cpus {args.cpus}: must be a positive integer")
    # Room for the parent's folios, the page tables, and a child that CoWs nothing.
    memory = max(2 * size, 64 << 20)
    kernel = {"kernel": args.kernel_version} if args.kernel_version else {}
    m = contpte.Machine(
        arch=arch, memory=memory, cpus=args.cpus, mthp={"64K": "always"}, check=args.check, **kernel
    )
    with ui.progress(3, "demo") as step:
        t0 = time.perf_counter()
        p = m.spawn()
        a = p.mmap(size, prot="rw", flags="private|anonymous")
        p.write(a, size, value=0x5A5A)
        step("parent touched its memory")
        setup = m.stats()
        t1 = time.perf_counter()
        c = p.fork()
        t2 = time.perf_counter()
        step("forked")
        after = m.stats()
        # The child sees the parent's data (a read, not a write: nothing is copied).
        first_last = c.read(a, 4096)[0], c.read(a + size - 4096, 4096)[0]
        if first_last != (0x5A5A, 0x5A5A):
            raise ModelUsageError(f"demo: the child read {first_last[0]:#x}/{first_last[1]:#x}, not 0x5a5a")
        step("child read its copy")
    cont_ptes = {
        "parent": int(p.pagemap(a, size)["cont"].sum()),
        "child": int(c.pagemap(a, size)["cont"].sum()),
    }
    fork_delta = {k: after.get(k, 0) - setup.get(k, 0) for k in set(after) | set(setup)}
    rows = [(name, label) for name, label in DEMO_ROWS if arch == "arm64" or not name.startswith("contpte.")]
    result = {
        "arch": arch,
        "size_bytes": size,
        "folio_bytes": folio,
        "cpus": args.cpus,
        "check": bool(args.check),
        "kernel": m.kernel_version,
        "fork_seconds": t2 - t1,
        "setup_seconds": t1 - t0,
        "setup": {name: setup.get(name, 0) for name, _ in rows},
        "fork": {name: fork_delta.get(name, 0) for name, _ in rows},
        "folios_mapped": setup.get("mthp.64kB.nr_anon", 0),
        "cont_ptes_after_fork": cont_ptes,
    }
    if ui.json:
        ui.emit_json(result)
        return 0
    render_table(
        ui.out,
        f"contpte demo: fork of a process with {size >> 20} MiB of 64K folios ({arch}, Linux {m.kernel_version})",
        ["what", "counter", "setup (mmap + write)", "fork"],
        [[label, name, f"{setup.get(name, 0):,}", f"{fork_delta.get(name, 0):,}"] for name, label in rows],
        numeric_from=2,
        caption=(
            f"{result['folios_mapped']:,} 64K folios mapped; fork took {1000 * (t2 - t1):.1f} ms of "
            f"simulation{' with every validator on' if args.check else ''}."
            + (
                f"\nPTEs with the Contiguous bit after fork: parent {cont_ptes['parent']:,}, "
                f"child {cont_ptes['child']:,}."
                if arch == "arm64"
                else ""
            )
        ),
    )
    return 0


# --- main ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="contpte",
        description="An executable model of Linux's transparent contiguous PTEs (arm64 contpte).",
    )
    parser.add_argument(
        "--version", action="version", version=f"contpte {package_version()} (models Linux {KERNEL_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for registrar in REGISTRARS:
        registrar(sub)
    return parser


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())


def _broken_pipe() -> int:
    """stdout's reader is gone: say nothing, and keep the interpreter's final flush quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (tests)
        pass
    return EXIT_BROKEN_PIPE


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
        rc = handler(args, ui)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        return _broken_pipe()
    except (ContpteError, OSError) as e:
        print(f"contpte: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("contpte: interrupted", file=sys.stderr)
        return 130
