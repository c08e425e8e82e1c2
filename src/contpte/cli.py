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
    from .cost.op_bench import BENCHES

    for spec in BENCHES.values():
        _register_op_bench(bench, spec)


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

    cmd = add_command(
        bench,
        spec.name,
        help=f"{spec.title}: time per op and change vs contpte off, per folio order and profile",
        description=(
            f"{spec.description} One operation = {spec.op}. Each configuration (contpte=False = baseline, "
            "the default = contpte) is simulated once per folio order on arm64; every profile prices "
            "the same counters. Change = operations/s of contpte vs the baseline (negative = slower)."
        ),
    )
    cmd.add_argument(
        "--profile",
        default=",".join(PROFILES),
        help="comma-separated machine profiles: names (altra, m2-vm, x86) or .toml paths (default: %(default)s)",
    )
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
    cmd.add_argument("--plot", metavar="FILE", help="also draw the change per order to FILE (.png or .svg)")
    cmd.add_argument(
        "--fit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="calibrate profiles with free parameters (altra) on the fork rows first, as bench fork "
        "does (default: on)",
    )
    cmd.set_defaults(handler=_cmd_bench_op, op_bench=spec.name)


def _cmd_bench_op(args: argparse.Namespace, ui: Ui) -> int:
    from .cost.op_bench import fit_points, run_op_bench, simulation_points
    from .cost.profile import load_profile
    from .report import plot_op_bench, render_op_bench
    from .system.machine import parse_bytes

    profiles = [load_profile(name.strip()) for name in args.profile.split(",") if name.strip()]
    patterns = [p.strip() for p in args.pattern.split(",") if p.strip()] if hasattr(args, "pattern") else None
    nbytes = parse_bytes(args.size, "--size")
    steps = len(simulation_points(args.op_bench, args.orders, patterns)) + len(fit_points(profiles, args.fit))
    with ui.progress(steps, f"simulating {args.op_bench}") as step:
        result = run_op_bench(
            args.op_bench,
            profiles,
            orders=args.orders,
            patterns=patterns,
            ncpus=args.cpus,
            nbytes=nbytes,
            fit=args.fit,
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
        "fit targets (docs/numbers.md, the only rows used) and residuals",
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
    run.set_defaults(handler=cmd_run)


@register
def _register_fuzz(sub: Subparsers) -> None:
    from .workloads.commands import cmd_fuzz
    from .workloads.fuzz import VARIANTS

    fz = add_command(
        sub,
        "fuzz",
        help="random multi-process syscall sequences with every validator on; shrinks what it finds",
        epilog="exit status:\n"
        "  0  no violation, no disagreement\n"
        "  1  a finding: its shrunk reproducer is written (--out), replay it with contpte run\n"
        "  2  bad arguments",
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
    fz.add_argument("--out", help="reproducer file (default: fuzz-SEED.scn)")
    fz.add_argument("--no-shrink", action="store_true", help="write the reproducer unshrunk")
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


# --- oracle (contpte.oracle) ----------------------------------------------------


@register
def _register_oracle(sub: Subparsers) -> None:
    oracle = add_command(
        sub,
        "oracle",
        help="run a scenario on this machine's live Linux kernel and on the model; compare page by page",
        description=(
            "Replay scenario files with real processes on the running kernel (root; THP policy set in "
            "sysfs for the run and restored) and on the model (arch=generic), and compare after each "
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
        "--kernel",
        choices=("live", "arm64"),
        default="live",
        help="live: this machine's running kernel (default); arm64: Debian's Linux 6.12 arm64 kernel "
        "booted under qemu (fetched on first use), comparing contpte call counts per step",
    )
    oracle.set_defaults(handler=_cmd_oracle)


def _cmd_oracle(args: argparse.Namespace, ui: Ui) -> int:
    if args.kernel == "arm64":
        from .oracle.arm64.commands import cmd_oracle_arm64

        return cmd_oracle_arm64(args, ui)
    from .oracle.commands import cmd_oracle

    return cmd_oracle(args, ui)


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
    m = contpte.Machine(arch=arch, memory=memory, cpus=args.cpus, mthp={"64K": "always"}, check=args.check)
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
