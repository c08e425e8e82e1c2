"""The arm64 oracle: a scenario on the real arm64 kernel (qemu) and on the model, compared.

``run_arm64_oracle(scenarios, kernel=, page_size=)`` first replays each
scenario on the model (``arch="arm64"``, ``Machine(kernel=<the booted
series>, page_size=<its page size>)``, the header's THP policy), recording
per step the outcome, the values read and the ``call.<symbol>`` counter
deltas, and the address every ``mmap`` got.  From that it generates one
guest C program per scenario (``guest.py``), boots the Debian arm64 kernel
of that series and page size once under qemu for all of them (``env.py``
picks the package, ``boot.py``), and compares per step:

- the number of entries into each function of ``boot.TRACED`` on the
  scenario's addresses (kprobe events, split per step by trace markers)
  with the model's ``call.<symbol>`` deltas, for the functions both sides
  can count: a function the booted kernel has no symbol or kprobe for
  (inlined, renamed: ``BootResult.untraced``) or the model has no counter
  for (``MODEL_UNCOUNTED``) is left out and named in ``excluded`` and the
  report's notes.  The getters (``contpte_ptep_get``,
  ``contpte_ptep_get_lockless``: ``boot.PTEP_ONLY``) are compared only on
  ``read``/``write`` steps, the faults: Debian's 6.12.y has the stable
  backport of "mm: fix folio_pte_batch() on XEN PV" (mainline 2025, in
  Debian's changelog by 6.12.111), which caps a batch at the folio's end,
  so its fork, zap and madvise batches do not read the next folio's first
  entry, which v6.12's (and the model's) ``folio_pte_batch`` reads through
  ``ptep_get``;
- the step's outcome (success, errno, SIGSEGV code) and the values read.

The booted kernel decides the model's version and page size: a scenario
whose header names another ``kernel=`` or ``page_size=`` is skipped with
the reason (``scenario_unsupported_reason``), never run at a version the
guest does not have; single options in the header (``cow_reuse_large=``)
still apply.  Without ``kernel``/``page_size`` the scenarios' common header
values are booted, else 6.12 with 4K pages (``choose_guest_kernel``).

The guest maps everything at the model's addresses (MAP_FIXED_NOREPLACE),
so every alignment and with it every mTHP decision is the same.

What the real kernel decides from physical addresses cannot agree with
the model in general: ``contpte_try_fold()`` (inline, on every single-PTE
``set_ptes``) calls ``__contpte_try_fold`` when the PTE is the last of its
block (16 PTEs with 4K pages, 128 with 16K) *and its pfn is the last of an
aligned physical block*.  For an order-0 folio that is one time in 16 (in
128), by chance of the allocator; so scenarios keep order-0 pages
(zero-page CoW, CoW copies, small file folios) off the last PTE of a
block, and folios smaller than a block off PTE-by-PTE rewrites (mprotect)
of a block's last PTE.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...counters import CONTPTE_CALLS, MM_CALLS
from ...errors import ScenarioError
from ...workloads.scenario import Env, Scenario, format_step, make_machine, run_step
from ..live import MODEL_WINDOW_HI, MODEL_WINDOW_LO
from ..run import Diff, OracleResult, StepReport
from .boot import PTEP_ONLY, TRACED, BootError, BootResult, boot, count_calls
from .env import (
    KERNEL_SERIES,
    Arm64EnvError,
    check_guest_kernel,
    ensure_guest_files,
    tools_unavailable_reason,
)
from .guest import CompileError, GuestFile, GuestProgram, GuestStep, compile_programs, generate_c

__all__ = [
    "ORACLE_NAME",
    "UNSUPPORTED_OPS",
    "Arm64StepReport",
    "Arm64Report",
    "run_arm64_oracle",
    "scenario_unsupported_reason",
    "unavailable_reason",
    "prepare",
    "Prepared",
    "GETTER_STEPS",
    "choose_guest_kernel",
]

ORACLE_NAME = "oracle-arm64"
"""The name ``expect-mismatch`` lines use for this oracle."""

UNSUPPORTED_OPS = {
    "reclaim": "the guest cannot be made to reclaim a chosen page deterministically",
    "numa": "NUMA hinting faults cannot be forced from user space",
    "khugepaged": "khugepaged runs on its own schedule; user space cannot make it scan now",
    "pin": "long-term pins are not driven by the arm64 oracle",
    "unpin": "long-term pins are not driven by the arm64 oracle",
}

_SEGV = {1: "SIGSEGV:MAPERR", 2: "SIGSEGV:ACCERR"}
_SIGBUS = {1: "SIGBUS:ADRALN", 2: "SIGBUS:ADRERR", 3: "SIGBUS:OBJERR"}
_ERR_UFFD_WP = -100
"""guest_runtime.c ``ERR_UFFD_WP``: a write hit a uffd-wp page (SIGBUS under UFFD_FEATURE_SIGBUS)."""
_ERR_SIGBUS = -200
"""guest_runtime.c ``ERR_SIGBUS``: any other SIGBUS, minus its si_code."""

MODEL_UNCOUNTED = frozenset(TRACED) - frozenset(CONTPTE_CALLS + MM_CALLS)
"""Traced functions the model has no ``call.<symbol>`` counter for (left out of the comparison)."""

GETTER_STEPS = frozenset({"read", "write"})
"""The steps whose getter calls (``boot.PTEP_ONLY``) are compared: faults (see the module docstring)."""


def unavailable_reason() -> str | None:
    """Why the arm64 oracle cannot run here without fetching anything (None: the tools are there)."""
    return tools_unavailable_reason()


def _header_page_size(sc: Scenario) -> str:
    size = str(sc.machine.get("page_size", "4K")).upper()
    return {"4096": "4K", "16384": "16K", "65536": "64K"}.get(size, size)


def choose_guest_kernel(
    scenarios: list[Scenario], kernel: str | None = None, page_size: str | None = None
) -> tuple[str, str]:
    """The (series, page size) to boot: the ones asked for, else the scenarios' headers', else 6.12, 4K.

    A header value counts when every scenario that names one names the same.
    """
    if kernel is None:
        named = {str(sc.machine["kernel"]) for sc in scenarios if "kernel" in sc.machine}
        kernel = named.pop() if len(named) == 1 else KERNEL_SERIES
    if page_size is None:
        sizes = {_header_page_size(sc) for sc in scenarios if "page_size" in sc.machine}
        page_size = sizes.pop() if len(sizes) == 1 else "4K"
    return kernel, page_size.upper()


def scenario_unsupported_reason(
    sc: Scenario, kernel: str = KERNEL_SERIES, page_size: str = "4K"
) -> str | None:
    """Why the guest, booted with Linux ``kernel`` and ``page_size`` pages, cannot replay this scenario.

    The booted kernel decides the model's version and page size: a header
    that names another ``kernel=`` or ``page_size=`` is skipped, never run
    at a version or page size the guest does not have.  None: it can.
    """
    header_ps = _header_page_size(sc)
    if header_ps != page_size:
        return (
            f"page_size={header_ps} in the header, but the guest kernel uses {page_size} pages "
            f"(--page-size {header_ps} boots that flavour)"
        )
    header_kernel = sc.machine.get("kernel")
    if header_kernel is not None and str(header_kernel) != kernel:
        return (
            f"kernel={header_kernel} in the header, but the guest boots Linux {kernel} "
            f"(--kernel-version {header_kernel} boots that one)"
        )
    uffd = None
    for step in sc.steps:
        if step.op in UNSUPPORTED_OPS:
            return f"line {step.line}: '{step.op}': {UNSUPPORTED_OPS[step.op]}"
        if step.op == "uffd-wp" and uffd is None:
            uffd = step.line
        if step.op == "fork" and uffd is not None:
            return (
                f"line {step.line}: fork after the uffd-wp of line {uffd}: the model assumes "
                "UFFD_FEATURE_EVENT_FORK, which needs a monitor reading the fork event; the guest has none"
            )
    return None


@dataclass
class Arm64StepReport(StepReport):
    """A step's report with the call counts on both sides."""

    model_calls: dict[str, int] = field(default_factory=dict)
    kernel_calls: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"model_calls": self.model_calls, "kernel_calls": self.kernel_calls}


@dataclass
class ModelStep:
    """What the model did at one step."""

    line: int
    text: str
    proc: str
    error: str | None
    values: list[int] | None
    calls: dict[str, int]
    violation: str | None = None


@dataclass
class Prepared:
    """A scenario run on the model, with its guest program (None: skipped, see ``reason``)."""

    sc: Scenario
    name: str
    kernel: str = KERNEL_SERIES
    """The version the model ran at (the booted kernel's series)."""
    page_size: str = "4K"
    program: GuestProgram | None = None
    model: list[ModelStep] = field(default_factory=list)
    reason: str | None = None


@dataclass
class Arm64Report:
    """All verdicts of one oracle run, and the boot that produced them."""

    results: list[OracleResult]
    kernel: str = ""
    """``uname -r`` of the booted kernel."""
    boot_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    series: str = KERNEL_SERIES
    """The kernel series booted, and the version the model ran at."""
    page_size: str = "4K"
    package: str = ""
    """The Debian package the kernel came from."""
    untraced: dict[str, str] = field(default_factory=dict)
    """The traced functions the booted kernel could not trace (symbol -> why), left out of the comparison."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "series": self.series,
            "page_size": self.page_size,
            "package": self.package,
            "boot_seconds": round(self.boot_seconds, 1),
            "untraced": self.untraced,
            "notes": self.notes,
            "results": [r.as_dict() for r in self.results],
        }


# ---------------------------------------------------------------------------
# The model side
# ---------------------------------------------------------------------------
def _mthp_kb(mthp: dict[str, str] | None) -> dict[int, str]:
    out: dict[int, str] = {}
    for size, value in (mthp or {}).items():
        unit = {"K": 1, "M": 1024, "G": 1024 * 1024}[size[-1].upper()]
        out[int(size[:-1]) * unit] = value
    return out


def _in_window(addr: int, length: int) -> bool:
    return addr >= MODEL_WINDOW_LO and addr + max(length, 1) <= MODEL_WINDOW_HI


def _fill_page_cache(m: Any, f: Any, size: int) -> None:
    """Read the whole file once on the model, as writing it fills the guest's tmpfs page cache."""
    helper = m.spawn()
    a = helper.mmap(size, "r", "shared", file=f)
    helper.read(a, size)
    helper.munmap(a, size)
    helper.exit()


def prepare(sc: Scenario, name: str, kernel: str = KERNEL_SERIES, page_size: str = "4K") -> Prepared:
    """Run ``sc`` on the model at Linux ``kernel`` with ``page_size`` pages; build its guest program."""
    prep = Prepared(sc, name, kernel, page_size)
    prep.reason = scenario_unsupported_reason(sc, kernel, page_size)
    if prep.reason is not None:
        return prep
    m = make_machine(sc, arch="arm64", kernel=kernel, page_size=page_size)
    env = Env()
    procs: dict[str, int] = {}
    files: dict[str, int] = {}
    gfiles: list[GuestFile] = []
    gsteps: list[GuestStep] = []
    steps = [
        replace(s, bind=f"_{s.op}{s.line}") if s.op in ("mmap", "mremap") and s.bind is None else s
        for s in sc.steps
    ]
    for step in steps:
        a = step.args
        gs = GuestStep(step.line, "nop")
        # Operands resolve before the step runs (a munmap'ed name stays valid).
        addr = None
        if "addr" in a and a["addr"] is not None and step.op != "mmap":
            addr = env.addr(a["addr"], sc, step)
        hint = env.addr(a["addr"], sc, step) if step.op == "mmap" and a.get("addr") is not None else None
        target = env.addr(a["new_addr"], sc, step) if a.get("new_addr") is not None else 0
        proc_idx = procs.get(step.proc, -1) if step.proc else -1
        out = run_step(m, env, sc, step, counters=True)
        calls = {sym: out.counters.get(f"call.{sym}", 0) for sym in TRACED}
        prep.model.append(
            ModelStep(
                step.line,
                format_step(sc.steps[len(prep.model)]),
                step.proc or "-",
                out.error,
                out.values,
                calls,
                str(out.violation) if out.violation is not None else None,
            )
        )
        if out.violation is not None:
            prep.reason = None
            break
        op = step.op
        if op == "spawn":
            assert step.bind is not None
            procs[step.bind] = len(procs)
            gs = GuestStep(step.line, "spawn", child=procs[step.bind])
        elif op == "file":
            assert step.bind is not None
            if out.error is None:
                f = env.files[step.bind]
                _fill_page_cache(m, f, a["size"])
                files[step.bind] = len(gfiles)
                base = os.path.basename(a["name"]) or "file"
                gfiles.append(GuestFile(f"/tmp/{len(gfiles)}-{base}", a["size"], int(f.id)))
                gs = GuestStep(step.line, "file", file=files[step.bind])
        elif op in ("check", "measure"):
            pass
        elif op == "fork":
            assert step.bind is not None
            if out.error is None:
                procs[step.bind] = len(procs)
                gs = GuestStep(step.line, "fork", proc=proc_idx, child=procs[step.bind])
        elif op == "exit":
            gs = GuestStep(step.line, "exit", proc=proc_idx)
        elif op == "mmap":
            fixed = a["flags"].endswith("|fixed")
            gs = GuestStep(
                step.line, "mmap", proc=proc_idx, length=a["length"], prot=a["prot"], flags=a["flags"],
                file=files.get(a["file"], -1) if a.get("file") else -1, offset=a["offset"],
            )  # fmt: skip
            if a.get("file") and gs.file < 0:
                raise ScenarioError(sc.path, step.line, f"file {a['file']!r} was not created")
            if out.error is None:
                assert step.bind is not None
                gs.addr = env.addrs[step.bind]
                gs.noreplace = not fixed
            else:
                gs.addr = hint or 0
                gs.expect_fail = True
            if gs.addr and not _in_window(gs.addr, gs.length):
                prep.reason = f"line {step.line}: address {gs.addr:#x} lies outside the scenario window"
                return prep
        elif op == "mremap":
            assert addr is not None
            flags = a["flags"]
            if out.error is None:
                assert step.bind is not None
                got = env.addrs[step.bind]
                if got != addr and "fixed" not in flags and "maymove" in flags:
                    # The guest would choose another place: make it the model's.
                    flags = "|".join(
                        f for f in ("maymove", "fixed", "dontunmap") if f in flags or f == "fixed"
                    )
                    target = got
            gs = GuestStep(
                step.line, "mremap", proc=proc_idx, addr=addr, length=a["length"], value=a["new_length"],
                flags=flags, offset=target, expect_fail=out.error is not None,
            )  # fmt: skip
            for lo, n in ((addr, a["length"]), (target, a["new_length"])):
                if lo and not _in_window(lo, n):
                    prep.reason = f"line {step.line}: address {lo:#x} lies outside the scenario window"
                    return prep
        else:
            assert addr is not None
            if not _in_window(addr, a["length"]):
                prep.reason = f"line {step.line}: address {addr:#x} lies outside the scenario window"
                return prep
            gs = GuestStep(
                step.line, op.replace("-", "_"), proc=proc_idx, addr=addr, length=a["length"],
                value=int(a["on"]) if op == "uffd-wp" else a.get("value", 0),
                prot=a.get("prot", "none"), advice=a.get("advice", ""),
            )  # fmt: skip
        gsteps.append(gs)
    prep.program = GuestProgram(
        name,
        gsteps,
        gfiles,
        max(1, len(procs)),
        str(sc.machine.get("thp", "madvise")),
        _mthp_kb(sc.machine.get("mthp")),
        m.page_size,
    )
    return prep


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------
def _guest_error(err: int) -> str | None:
    import errno as _errno

    if err == 0:
        return None
    if err == _ERR_UFFD_WP:
        return "UFFD_WP"
    if err <= _ERR_SIGBUS:
        return _SIGBUS.get(_ERR_SIGBUS - err, f"SIGBUS:{_ERR_SIGBUS - err}")
    if err < 0:
        return _SEGV.get(-err, f"SIGSEGV:{-err}")
    return _errno.errorcode.get(err, f"E{err}")


def _fmt_calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in calls.items() if v) or "none"


def compare(prep: Prepared, boot_result: BootResult | None, error: str | None = None) -> OracleResult:
    """The verdict on one prepared scenario after the boot."""
    sc = prep.sc
    expected = sc.expect_mismatch.get(ORACLE_NAME)
    res = OracleResult(sc.path, sc.title, ORACLE_NAME, "skipped", expect_mismatch=expected)
    res.settings = {"thp": str(sc.machine.get("thp", "madvise"))} | {
        f"mthp.{k}": v for k, v in (sc.machine.get("mthp") or {}).items()
    }
    res.options = {"kernel": prep.kernel, "page_size": prep.page_size}
    if boot_result is not None:
        res.kernel = f"Linux {boot_result.kernel} arm64 (qemu)"
        res.excluded = {
            f"calls {sym}": f"not traced on Linux {boot_result.kernel}: {why}"
            for sym, why in boot_result.untraced.items()
        }
    res.excluded |= {
        f"calls {sym}": "the model has no call.<symbol> counter for it" for sym in MODEL_UNCOUNTED
    }
    if prep.reason is not None:
        res.reason = prep.reason
        return res
    if error is not None:
        res.reason = error
        return res
    assert boot_result is not None and prep.program is not None
    run = boot_result.runs.get(prep.name)
    if run is None:
        res.reason = "the guest program did not run (see console.log)"
        res.status = "mismatch"
        return res
    page_shift = prep.program.page_size.bit_length() - 1
    inside, _outside = count_calls(run.trace, MODEL_WINDOW_LO, MODEL_WINDOW_HI, page_shift)
    traced = [sym for sym in TRACED if sym not in boot_result.untraced and sym not in MODEL_UNCOUNTED]
    results = {r[0]: r for r in run.results}
    for i, ms in enumerate(prep.model):
        rep = Arm64StepReport(ms.line, ms.text, ms.error, None)
        res.steps.append(rep)
        if ms.violation is not None:
            rep.diffs.append(Diff(ms.proc, "-", "model invariant", ms.violation, "-"))
            break
        r = results.get(i)
        if r is None:
            why = run.fatal or "the guest program stopped before this step"
            rep.diffs.append(Diff(ms.proc, "-", "outcome", ms.error or "ok", f"not run: {why}"))
            break
        rep.compared = True
        rep.live_error = _guest_error(r[2])
        rep.model_calls = {k: v for k, v in ms.calls.items() if v and k in traced}
        kcalls = inside.get(i, {})
        rep.kernel_calls = {sym: kcalls[sym] for sym in traced if kcalls.get(sym)}
        if (ms.error or None) != (rep.live_error or None):
            rep.diffs.append(Diff(ms.proc, "-", "outcome", ms.error or "ok", rep.live_error or "ok"))
        if ms.values is not None and r[3] is not None and ms.values != r[3]:
            first = next(
                (k for k, (x, y) in enumerate(zip(ms.values, r[3])) if x != y), min(len(ms.values), len(r[3]))
            )
            rep.diffs.append(
                Diff(ms.proc, f"page {first}", "value read", _val(ms.values, first), _val(r[3], first))
            )
        for sym in traced:
            if sym in PTEP_ONLY and sc.steps[i].op not in GETTER_STEPS:
                continue
            mv, kv = ms.calls.get(sym, 0), kcalls.get(sym, 0)
            if mv != kv:
                rep.diffs.append(Diff(ms.proc, "-", f"calls {sym}", str(mv), str(kv)))
    found = any(s.diffs for s in res.steps)
    if expected is None:
        res.status = "mismatch" if found else "agree"
    else:
        res.status = "expected-mismatch" if found else "unexpected-agreement"
    return res


def _calls_only(res: OracleResult) -> bool:
    """Every difference of ``res`` is a call count (none of an outcome, a value or the model)."""
    diffs = [d for s in res.steps for d in s.diffs]
    return bool(diffs) and all(d.field.startswith("calls ") for d in diffs) and not res.reason


def _val(vals: list[int], i: int) -> str:
    return f"{vals[i]:#x}" if i < len(vals) else "-"


# ---------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------
def run_arm64_oracle(
    scenarios: list[Scenario],
    *,
    kernel: str | None = None,
    page_size: str | None = None,
    progress: Callable[[str], None] | None = None,
    workdir: Path | None = None,
) -> Arm64Report:
    """Run ``scenarios`` on the model and, in one boot, on the real arm64 kernel; compare.

    ``kernel`` (a ``contpte.version.KERNEL_VERSIONS`` series) and
    ``page_size`` (``"4K"``, ``"16K"``) choose the Debian kernel booted
    (``choose_guest_kernel``: default the scenarios' headers', else 6.12
    with 4K pages); the model runs at that version and page size.  Raises
    ``ValueError`` for a version or page size there is no Debian kernel
    flavour for, ``Arm64EnvError`` (with the reason) when the host tools or
    the Debian packages cannot be had, ``BootError`` when the guest fails.
    """
    kernel, page_size = choose_guest_kernel(scenarios, kernel, page_size)
    check_guest_kernel(kernel, page_size)
    reason = unavailable_reason()
    if reason is not None:
        raise Arm64EnvError(reason)
    notes: list[str] = []
    guest_env = ensure_guest_files(log=notes, kernel=kernel, page_size=page_size)
    preps = []
    for i, sc in enumerate(scenarios):
        stem = Path(sc.path).stem or "scenario"
        preps.append(prepare(sc, f"s{i:03d}-{stem}"[:60], kernel, page_size))
        if progress is not None:
            progress(f"model: {stem}")
    runnable = [p for p in preps if p.program is not None and p.reason is None]
    boot_result: BootResult | None = None
    if runnable:
        assert all(p.program is not None for p in runnable)
        sources = [generate_c(p.program) for p in runnable if p.program is not None]
        try:
            binaries = compile_programs(sources, guest_env.cache)
        except CompileError as e:
            raise BootError(str(e)) from None
        binary = {p.name: b for p, b in zip(runnable, binaries)}

        def boot_some(some: list[Prepared], what: str) -> BootResult:
            nsteps = sum(len(p.model) for p in some)
            timeout = 120 + 2.0 * nsteps + 10 * len(some)
            with tempfile.TemporaryDirectory(prefix="contpte-arm64-") as tmp:
                wd = workdir or Path(tmp)
                wd.mkdir(parents=True, exist_ok=True)
                if progress is not None:
                    progress(f"booting {guest_env.kernel_package} ({len(some)} scenarios{what})")
                return boot(guest_env, {p.name: binary[p.name] for p in some}, wd, timeout)

        boot_result = boot_some(runnable, "")
        for sym, why in boot_result.untraced.items():
            notes.append(
                f"not traced on Linux {boot_result.kernel}, left out of the comparison: {sym} ({why})"
            )
    results = [compare(p, boot_result) for p in preps]
    # The guest kernel now and then takes a fault no step causes (seen on the
    # 16K kernels: one more contpte_ptep_get_lockless and two contpte_ptep_get
    # on a random step, a different one each boot).  A scenario that differs
    # in call counts only is run once more in a fresh boot; it counts as
    # agreeing only if that second run agrees in everything, and the note
    # says what the first run counted.  Outcomes and values are never retried.
    retry = [i for i, r in enumerate(results) if r.status == "mismatch" and _calls_only(r)]
    if retry and boot_result is not None:
        second = boot_some(
            [preps[i] for i in retry], ", run again: their first run differed in call counts only"
        )
        for i in retry:
            again = compare(preps[i], second)
            first = results[i].first_difference
            what = (
                "; ".join(f"{d.field} model {d.model} kernel {d.live}" for d in first.diffs) if first else ""
            )
            if again.status == "agree":
                notes.append(
                    f"{Path(preps[i].sc.path).name}: the first boot counted other calls at line "
                    f"{first.line if first else '?'} ({what}); a second boot agreed in everything"
                )
                results[i] = again
            else:
                notes.append(f"{Path(preps[i].sc.path).name}: differed in call counts on two boots")
    return Arm64Report(
        results,
        kernel=boot_result.kernel if boot_result else guest_env.release,
        boot_seconds=boot_result.seconds if boot_result else 0.0,
        notes=notes,
        series=kernel,
        page_size=page_size,
        package=guest_env.kernel_package,
        untraced=dict(boot_result.untraced) if boot_result else {},
    )
