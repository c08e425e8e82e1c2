"""The handlers of ``contpte run``, ``contpte fuzz`` and ``contpte check``.

``cli.py`` registers the commands and passes its ``Ui`` (workloads sit
below cli, so the Ui is typed here by the protocol it must offer).
"""

from __future__ import annotations

import argparse
import textwrap
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .scenario import parse_file, run

__all__ = ["UiLike", "ProgressStep", "cmd_run", "cmd_workload", "print_wrapped"]


class ProgressStep(Protocol):
    """A progress bar's step: show ``label`` and advance by ``advance`` units (0: just show it)."""

    def __call__(self, label: str, advance: int = 1) -> None: ...


class UiLike(Protocol):
    json: bool
    out: Any

    def emit_json(self, obj: object) -> None: ...
    def warn(self, message: str) -> None: ...
    def progress(self, total: int, description: str) -> AbstractContextManager[ProgressStep]: ...


def print_wrapped(out: Any, text: str, indent: str = "", first: str | None = None) -> None:
    """Print ``text`` wrapped to the console's width at spaces, never cut.

    Continuation lines start with ``indent`` (the first with ``first``, by
    default ``indent`` too).  Words longer than a line (a PTE in hex) are
    kept whole, so every value stays readable and greppable.
    """
    width = max(40, int(getattr(out, "width", 80) or 80))
    lines = textwrap.wrap(
        text,
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    for line in lines or [indent if first is None else first]:
        out.print(line, markup=False, soft_wrap=True)


#: The counters ``contpte run`` shows per step (``--counters``: every one).
RUN_KEY_COUNTERS = (
    "pgfault",
    "folio.alloc",
    "page.copy",
    "pte.read",
    "pte.write",
    "contpte.fold",
    "contpte.unfold",
    "contpte.convert",
    "tlbi.total",
    "dsb.total",
    "ipi.sent",
)
_PICTURE_ROW = 32


def _step_counters(counters: dict[str, int], everything: bool) -> str:
    """The step's non-zero counters as ``name value`` pairs (totals computed here)."""
    from ..counters import TOTALS

    values = dict(counters)
    values.update({name: int(f(counters)) for name, (_, f) in TOTALS.items()})
    names = sorted(values) if everything else RUN_KEY_COUNTERS
    return ", ".join(f"{n}={values[n]}" for n in names if values.get(n) and not n.startswith("check."))


def _picture_lines(ptes: dict[str, Any]) -> list[str]:
    """The header, then one character per page, 32 per row in groups of 16: ``w``/``r``
    a writable/read-only PTE, ``W``/``R`` the same with the Contiguous bit, ``.`` none."""
    rows = ptes["rows"]
    head = f"{ptes['process']} (pid {ptes['pid']}): {ptes['step_pages']} page(s) at {ptes['step_start']:#x}"
    if (ptes["start"], ptes["pages"]) != (ptes["step_start"], ptes["step_pages"]):
        head += ", in whole blocks"
    if ptes["shown"] < ptes["pages"]:
        head += f" (the first {ptes['shown']} of {ptes['pages']} pages)"
    lines = [head]
    for i in range(0, len(rows), _PICTURE_ROW):
        chars = []
        for r in rows[i : i + _PICTURE_ROW]:
            c = "." if not r["present"] else ("w" if r["writable"] else "r")
            chars.append(c.upper() if r["present"] and r["cont"] else c)
        groups = " ".join("".join(chars[j : j + 16]) for j in range(0, len(chars), 16))
        lines.append(f"{rows[i]['addr']:#x} {groups}")
    return lines


def cmd_run(args: argparse.Namespace, ui: UiLike) -> int:
    """Replay a scenario file; exit 1 if a step's expectation failed or an invariant broke."""
    sc = parse_file(args.file)
    overrides: dict[str, Any] = {}
    if args.arch:
        overrides["arch"] = args.arch
    if args.kernel_version:
        overrides["kernel"] = args.kernel_version
    if getattr(args, "explore", None) is not None or getattr(args, "random", None) is not None:
        return _cmd_explore(args, ui, sc, overrides)
    with ui.progress(len(sc.steps), f"running {args.file}") as step:
        # The text output shows the PTE pictures only; what each process
        # observes (every mapped page, per step) goes to JSON alone.
        outs = run(sc, observe_state=bool(args.state), observe_values=bool(ui.json), **overrides)
        for o in outs:
            step(o.text)
    failed = [o for o in outs if o.failed]
    if ui.json:
        ui.emit_json(
            {
                "file": args.file,
                "title": sc.title,
                "machine": sc.machine | overrides,
                "steps": len(sc.steps),
                "ran": len(outs),
                "passed": not failed,
                "outcomes": [o.as_dict() for o in outs],
            }
        )
        return 1 if failed else 0
    if args.state:
        print_wrapped(
            ui.out,
            "PTEs after each step, one character per page: w/r a writable/read-only PTE, "
            "W/R the same with the Contiguous bit, . none",
        )
    pad = " " * 11
    for o in outs:
        status = "ok" if not o.failed else "FAIL"
        err = f" -> {o.error}" if o.error else ""
        vals = ""
        if o.values is not None:
            shown = ", ".join(f"{v:#x}" for v in o.values[:8]) + (" ..." if len(o.values) > 8 else "")
            vals = f" = [{shown}]"
        ran = f" (ran {o.ran})" if o.ran else ""
        print_wrapped(ui.out, f"{o.line:>4}  {status:<4} {o.text}{err}{vals}{ran}", pad, first="")
        if o.failed:
            print_wrapped(ui.out, o.failed, pad)
        counted = _step_counters(o.counters, bool(getattr(args, "counters", False)))
        if counted:
            print_wrapped(ui.out, counted, pad)
        if o.ptes is not None:
            head, *rows = _picture_lines(o.ptes)
            print_wrapped(ui.out, head, pad)
            for line in rows:
                ui.out.print(pad + line, markup=False, soft_wrap=True)
    summary = f"{args.file}: {len(outs)}/{len(sc.steps)} steps run, {len(failed)} failed"
    ui.out.print(summary, markup=False)
    return 1 if failed else 0


def _cmd_explore(args: argparse.Namespace, ui: UiLike, sc: Any, overrides: dict[str, Any]) -> int:
    """``contpte run FILE --explore N`` / ``--random SEED``: interleavings of the file's ``at`` steps."""
    from ..errors import ModelUsageError
    from .explore import explore, explore_random

    if not any(s.at for s in sc.steps):
        raise ModelUsageError(f"{args.file}: no 'at' steps, nothing to interleave (docs/SCENARIOS.md)")
    if args.explore is not None and args.random is not None:
        raise ModelUsageError("--explore and --random: choose one")
    if args.random is not None:
        if args.runs < 1:
            raise ModelUsageError(f"--runs {args.runs}: expected a positive integer")
        res = explore_random(sc, seed=args.random, runs=args.runs, **overrides)
        mode = f"random (seeds {args.random}..{args.random + args.runs - 1})"
    else:
        if args.explore < 0 or args.max_schedules < 1:
            raise ModelUsageError("--explore N: N >= 0; --max-schedules: a positive integer")
        res = explore(sc, bound=args.explore, max_schedules=args.max_schedules, **overrides)
        mode = f"systematic, up to {args.explore} preemption(s)"
    failed = [o for o in res.failure or [] if o.failed]
    if ui.json:
        ui.emit_json(
            {
                "file": args.file,
                "mode": mode,
                "schedules": res.schedules,
                "decisions": res.decisions,
                "complete": res.complete,
                "passed": res.ok,
                "choices": res.choices,
                "failure": [o.as_dict() for o in res.failure or []],
                "replay": res.replay_text(),
            }
        )
        return 0 if res.ok else 1
    if args.random is not None:
        done = "a seeded random sample"
    else:
        done = "all of them" if res.complete else "stopped at --max-schedules"
    ui.out.print(
        f"{args.file}: {mode}: {res.schedules} schedule(s), {res.decisions} decision(s) ({done})",
        markup=False,
    )
    if res.ok:
        ui.out.print("every schedule met every expectation, with every validator on", markup=False)
        return 0
    for o in failed:
        print_wrapped(
            ui.out, f"{o.line:>4}  FAIL {o.text}" + (f" (ran {o.ran})" if o.ran else ""), " " * 11, first=""
        )
        print_wrapped(ui.out, str(o.failed), " " * 11)
    ui.out.print("the failing interleaving, as a scenario that replays it:", markup=False)
    ui.out.print(res.replay_text(), markup=False, soft_wrap=True)
    return 1


def cmd_fuzz(args: argparse.Namespace, ui: UiLike) -> int:
    """``contpte fuzz``: random syscall sequences; exit 1 and write a reproducer on a finding."""
    import os

    from ..bugs import check_bug_names
    from ..errors import ModelUsageError
    from ..system.sizes import parse_bytes
    from .fuzz import VARIANTS, CostBook, Finding, FuzzConfig, fuzz, reproducer_text

    variants = [v.strip() for v in args.variant.split(",") if v.strip()]
    if args.differential and len(variants) < 2:
        variants = ["arm64", "generic", "arm64-nobatch", "generic-nobatch"]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ModelUsageError(f"--variant {', '.join(bad)}: expected names from {', '.join(VARIANTS)}")
    # Checked here so the message names the option, not the generated scenario.
    parse_bytes(args.memory, "--memory")
    try:
        check_bug_names(args.bug or "")
    except ModelUsageError as e:
        raise ModelUsageError(f"--bug: {e}") from None
    keep_going = bool(getattr(args, "keep_going", False))
    cfg = FuzzConfig(
        variants=variants,
        steps=args.steps,
        seed=args.seed,
        episode_steps=args.episode,
        differential=args.differential,
        memory=args.memory,
        bugs=tuple(b for b in (args.bug or "").split(",") if b),
        shrink=not args.no_shrink,
        kernel=args.kernel_version,
        keep_going=keep_going,
    )
    record_path = getattr(args, "record_costs", None)
    check_path = getattr(args, "check_costs", None)
    if record_path or check_path:
        book = CostBook.new(cfg, record_path) if record_path else CostBook.load(str(check_path))
        cfg.costs = book
        cfg.__post_init__()  # checks the record against this run's settings
    out_file = args.out or f"fuzz-{cfg.seed}.scn"
    #: each finding's reproducer file, in order: a finding --keep-going went
    #: past gets fuzz-SEED-K.scn beside --out, the one that ends the run --out
    written: list[str] = []

    def write(f: Finding) -> None:
        path = out_file
        if keep_going and f.fixed_in is not None:
            path = os.path.join(os.path.dirname(out_file), f"fuzz-{cfg.seed}-{len(written) + 1}.scn")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(reproducer_text(f, cfg.seed))
        written.append(path)

    groups = 1 if cfg.differential else len(variants)
    with ui.progress(cfg.steps * groups, "fuzzing") as step:
        result = fuzz(
            cfg,
            progress=lambda n: step(f"{len(variants)} variant(s)", n),
            phase=lambda text: step(text, 0),
            on_finding=write,
        )
    recorded = None
    if record_path and cfg.costs is not None:
        if result.finding is None:
            cfg.costs.save(record_path)
            recorded = record_path
        else:
            ui.warn(f"{record_path}: not written: the run stopped at a finding")
    last_file = written[-1] if written else None
    if ui.json:
        doc = result.as_dict() | {"seed": cfg.seed, "reproducer": last_file, "cost_record": recorded}
        for d, path in zip(doc["findings"], written, strict=True):
            d["reproducer"] = path
        ui.emit_json(doc | {"keep_going": keep_going})
        return 1 if result.findings else 0
    ui.out.print(
        f"{result.steps} steps x {len(variants)} variant(s) ({', '.join(variants)}"
        f"{', differential' if cfg.differential else ''}), {result.episodes} episodes, "
        f"{result.seconds:.1f} s, {result.steps_per_second * len(variants):.0f} "
        "machine-steps/s"
        + (
            f" ({sum(result.per_variant_steps.values()):,} machine-steps run in the "
            f"{result.fuzz_seconds:.1f} s of fuzzing; shrinking and attributing "
            f"{len(result.findings)} finding(s) took {result.finding_seconds:.1f} s)"
            if result.findings
            else ""
        ),
        markup=False,
    )
    if not result.findings:
        ui.out.print("no violation, no disagreement", markup=False)
        if recorded:
            ui.out.print(f"counter deltas of every step written to {recorded}", markup=False)
        elif check_path:
            ui.out.print(f"every step's counters as recorded in {check_path}", markup=False)
        return 0
    if keep_going:
        ui.out.print(f"{len(result.findings)} finding(s):", markup=False)
        for i, (f, path) in enumerate(zip(result.findings, written, strict=True), 1):
            fixed = "NOT fixed in a later modelled kernel version"
            if f.attribution is not None and f.fixed_in is not None:
                by = [c.option for c, back in f.attribution.fixes if back]
                fixed = f"fixed in {f.fixed_in}" + (f" by {', '.join(by)}" if by else "")
            if f.attribution is not None and not f.attribution.later:
                fixed = f"found at the newest modelled kernel version ({f.attribution.kernel})"
            print_wrapped(
                ui.out,
                f"{i}. step {f.step:,} on {f.variant}: {f.kind}; {fixed}; reproducer {path}",
                "     ",
                first="  ",
            )
    last = result.finding
    assert last is not None and last_file is not None
    if keep_going and not result.stopped:
        ui.out.print(
            f"went on to step {result.steps:,} (each finding ends its episode): every finding is "
            "fixed in a later modelled kernel version",
            markup=False,
        )
        return 1
    print_wrapped(ui.out, f"FOUND {last.kind} on {last.variant}: {last.message}", "  ", first="")
    print_wrapped(
        ui.out,
        f"reproducer ({len(last.scenario.steps)} steps"
        f"{', not shrunk' if last.kind.startswith('cost:') else f', shrunk from {last.original_steps}'}) "
        f"written to {last_file}; "
        f"replay with: contpte run {last_file}",
        "  ",
        first="",
    )
    if last.attribution is not None:
        for line in last.attribution.lines():
            print_wrapped(ui.out, line, "    ", first="  ")
        if last.fixed_in is not None and not keep_going:
            print_wrapped(
                ui.out,
                "a later kernel version fixes it: --keep-going records such findings and goes on",
                "    ",
                first="  ",
            )
    return 1


def cmd_check(args: argparse.Namespace, ui: UiLike) -> int:
    """``contpte check --bugs``: is every catalogued bug caught by the general validators?"""
    from ..bugs import BUGS
    from ..errors import ModelUsageError
    from .catalog import check_bug

    if not args.bugs:
        raise ModelUsageError("contpte check: nothing to check; use --bugs (the bug catalog)")
    names = [n for n in (args.only or "").split(",") if n] or list(BUGS)
    unknown = [n for n in names if n not in BUGS]
    if unknown:
        raise ModelUsageError(f"--only {', '.join(unknown)}: not in the catalog ({', '.join(BUGS)})")
    results = []
    with ui.progress(len(names), "bug catalog") as step:
        for n in names:
            results.append(check_bug(n))
            step(n)
    ok = all(r.caught and r.clean_ok for r in results)
    if ui.json:
        ui.emit_json({"all_caught": ok, "bugs": [r.as_dict() for r in results]})
        return 0 if ok else 1
    for r in results:
        verdict = "caught" if r.caught else "MISSED"
        if not r.clean_ok:
            verdict += " (scenario FAILS without the bug)"
        print_wrapped(ui.out, f"{verdict:<8} {r.name}: {r.rule or '-'} at {r.step or '-'}", " " * 9, first="")
        if r.message:
            print_wrapped(ui.out, r.message, " " * 9)
        if r.clean_failure:
            print_wrapped(ui.out, f"without the bug: {r.clean_failure}", " " * 9)
    ui.out.print(
        f"{sum(r.caught for r in results)}/{len(results)} catalogued bugs caught by the general validators",
        markup=False,
    )
    return 0 if ok else 1


def _param_pairs(items: list[str]) -> dict[str, str]:
    from ..errors import ModelUsageError

    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ModelUsageError(f"--param {item!r}: expected KEY=VALUE, e.g. --param heap=64M")
        out[key.strip()] = value.strip()
    return out


def cmd_workload(args: argparse.Namespace, ui: UiLike) -> int:
    """``contpte workload [NAME]``: list the workload library, or print or run one workload."""
    from ..counters import TOTALS
    from ..version import KERNEL_VERSION
    from .library import WORKLOADS, workload_params, workload_scenario, workload_text

    if not args.name:
        if ui.json:
            ui.emit_json(
                [
                    {
                        "name": w.name,
                        "title": w.title,
                        "source": w.source,
                        "params": {k: {"default": p.default, "help": p.help} for k, p in w.params.items()},
                    }
                    for w in WORKLOADS.values()
                ]
            )
            return 0
        for w in WORKLOADS.values():
            print_wrapped(ui.out, f"{w.name}: {w.title}", "    ", first="")
            shown = ", ".join(f"{k}={_show(p.default, p.size)}" for k, p in w.params.items())
            print_wrapped(ui.out, f"parameters: {shown}", "    ")
        ui.out.print(
            "contpte workload NAME [--param KEY=VALUE ...] runs one; --scenario prints its scenario file; "
            "docs/WORKLOADS.md gives each one's source",
            markup=False,
        )
        return 0
    given = _param_pairs(args.param)
    params = workload_params(args.name, given, "--param")
    if args.scenario:
        text = workload_text(args.name, params)
        if ui.json:
            ui.emit_json({"name": args.name, "params": params, "scenario": text})
        else:
            ui.out.print(text, markup=False, end="", soft_wrap=True)
        return 0
    sc = workload_scenario(args.name, params)
    overrides: dict[str, Any] = {"check": bool(args.check)}
    if args.kernel_version:
        overrides["kernel"] = args.kernel_version
    with ui.progress(1, f"running workload {args.name}") as step:
        outs = run(sc, **overrides)
        step(args.name)
    failed = [o for o in outs if o.failed]
    totals: dict[str, int] = {}
    for o in outs:
        for k, v in o.counters.items():
            totals[k] = totals.get(k, 0) + v
    totals.update({name: int(f(totals)) for name, (_, f) in TOTALS.items()})
    if ui.json:
        ui.emit_json(
            {
                "name": args.name,
                "params": params,
                "machine": sc.machine | overrides,
                "steps": len(sc.steps),
                "ran": len(outs),
                "passed": not failed,
                "failures": [o.as_dict() for o in failed],
                "counters": dict(sorted(totals.items())),
            }
        )
        return 1 if failed else 0
    w = WORKLOADS[args.name]
    print_wrapped(ui.out, f"{w.name}: {w.title}", "  ", first="")
    for o in failed:
        print_wrapped(ui.out, f"{o.line:>4}  FAIL {o.text}: {o.failed}", " " * 11, first="")
    key = ", ".join(f"{n}={totals.get(n, 0):,}" for n in RUN_KEY_COUNTERS if totals.get(n))
    print_wrapped(ui.out, f"whole run: {key}", "  ", first="")
    checked = " with every validator after every step" if args.check else ""
    ui.out.print(
        f"{len(outs)}/{len(sc.steps)} steps run{checked}, {len(failed)} failed "
        f"(Linux {overrides.get('kernel') or sc.machine.get('kernel') or KERNEL_VERSION})",
        markup=False,
    )
    return 1 if failed else 0


def _show(value: int, size: bool) -> str:
    if size and value % (1 << 20) == 0:
        return f"{value >> 20}M"
    if size and value % (1 << 10) == 0:
        return f"{value >> 10}K"
    return str(value)
