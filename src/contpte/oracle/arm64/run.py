"""The arm64 oracle: a scenario on the real arm64 kernel (qemu) and on the model, compared.

``run_arm64_oracle(scenarios)`` first replays each scenario on the model
(``arch="arm64"``, the header's THP policy), recording per step the
outcome, the values read and the ``call.<symbol>`` counter deltas, and the
address every ``mmap`` got.  From that it generates one guest C program per
scenario (``guest.py``), boots the Debian 6.12 arm64 kernel once under qemu
for all of them (``boot.py``), and compares per step:

- the number of entries into each function of ``boot.TRACED`` on the
  scenario's addresses (kprobe events, split per step by trace markers)
  with the model's ``call.<symbol>`` deltas; the getters
  (``contpte_ptep_get``, ``contpte_ptep_get_lockless``: ``boot.PTEP_ONLY``)
  only on ``read``/``write`` steps, the faults: Debian's 6.12.y has the
  stable backport of "mm: fix folio_pte_batch() on XEN PV" (mainline 2025,
  in Debian's changelog by 6.12.111), which caps a batch at the folio's end, so its fork, zap and madvise batches do
  not read the next folio's first entry, which v6.12's (and the model's)
  ``folio_pte_batch`` reads through ``ptep_get``;
- the step's outcome (success, errno, SIGSEGV code) and the values read.

The guest maps everything at the model's addresses (MAP_FIXED_NOREPLACE),
so every alignment and with it every mTHP decision is the same.

What the real kernel decides from physical addresses cannot agree with
the model in general: ``contpte_try_fold()`` (inline, on every single-PTE
``set_ptes``) calls ``__contpte_try_fold`` when the PTE is the last of its
64K block *and its pfn is the last of a 64K-aligned physical block*.  For
an order-0 folio that is one time in 16, by chance of the allocator; so
scenarios keep order-0 pages (zero-page CoW, CoW copies, small file
folios) off the last PTE of a block, and 16K/32K folios off PTE-by-PTE
rewrites (mprotect) of a block's last PTE.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import ScenarioError
from ...workloads.scenario import Env, Scenario, format_step, make_machine, run_step
from ..live import MODEL_WINDOW_HI, MODEL_WINDOW_LO
from ..run import Diff, OracleResult, StepReport
from .boot import PTEP_ONLY, TRACED, BootError, BootResult, boot, count_calls
from .env import Arm64EnvError, ensure_guest_files, tools_unavailable_reason
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

GETTER_STEPS = frozenset({"read", "write"})
"""The steps whose getter calls (``boot.PTEP_ONLY``) are compared: faults (see the module docstring)."""


def unavailable_reason() -> str | None:
    """Why the arm64 oracle cannot run here without fetching anything (None: the tools are there)."""
    return tools_unavailable_reason()


def scenario_unsupported_reason(sc: Scenario) -> str | None:
    """Why the guest cannot replay this scenario (None: it can)."""
    page_size = str(sc.machine.get("page_size", "4K")).upper()
    if page_size not in ("4K", "4096"):
        return f"page_size={page_size}: the Debian arm64 kernel uses 4K pages"
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
    program: GuestProgram | None = None
    model: list[ModelStep] = field(default_factory=list)
    reason: str | None = None


@dataclass
class Arm64Report:
    """All verdicts of one oracle run, and the boot that produced them."""

    results: list[OracleResult]
    kernel: str = ""
    boot_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "boot_seconds": round(self.boot_seconds, 1),
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


def prepare(sc: Scenario, name: str) -> Prepared:
    """Run ``sc`` on the model and build its guest program."""
    prep = Prepared(sc, name)
    prep.reason = scenario_unsupported_reason(sc)
    if prep.reason is not None:
        return prep
    m = make_machine(sc, arch="arm64")
    env = Env()
    procs: dict[str, int] = {}
    files: dict[str, int] = {}
    gfiles: list[GuestFile] = []
    gsteps: list[GuestStep] = []
    steps = [replace(s, bind=f"_mmap{s.line}") if s.op == "mmap" and s.bind is None else s for s in sc.steps]
    for step in steps:
        a = step.args
        gs = GuestStep(step.line, "nop")
        # Operands resolve before the step runs (a munmap'ed name stays valid).
        addr = None
        if "addr" in a and a["addr"] is not None and step.op != "mmap":
            addr = env.addr(a["addr"], sc, step)
        hint = env.addr(a["addr"], sc, step) if step.op == "mmap" and a.get("addr") is not None else None
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
    if boot_result is not None:
        res.kernel = f"Linux {boot_result.kernel} arm64 (qemu)"
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
    inside, _outside = count_calls(run.trace, MODEL_WINDOW_LO, MODEL_WINDOW_HI)
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
        rep.model_calls = {k: v for k, v in ms.calls.items() if v}
        kcalls = inside.get(i, {})
        rep.kernel_calls = {sym: kcalls[sym] for sym in TRACED if kcalls.get(sym)}
        if (ms.error or None) != (rep.live_error or None):
            rep.diffs.append(Diff(ms.proc, "-", "outcome", ms.error or "ok", rep.live_error or "ok"))
        if ms.values is not None and r[3] is not None and ms.values != r[3]:
            first = next(
                (k for k, (x, y) in enumerate(zip(ms.values, r[3])) if x != y), min(len(ms.values), len(r[3]))
            )
            rep.diffs.append(
                Diff(ms.proc, f"page {first}", "value read", _val(ms.values, first), _val(r[3], first))
            )
        for sym in TRACED:
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


def _val(vals: list[int], i: int) -> str:
    return f"{vals[i]:#x}" if i < len(vals) else "-"


# ---------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------
def run_arm64_oracle(
    scenarios: list[Scenario],
    *,
    progress: Callable[[str], None] | None = None,
    workdir: Path | None = None,
) -> Arm64Report:
    """Run ``scenarios`` on the model and, in one boot, on the real arm64 kernel; compare.

    Raises ``Arm64EnvError`` (with the reason) when the host tools or the
    Debian packages cannot be had, ``BootError`` when the guest fails.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise Arm64EnvError(reason)
    notes: list[str] = []
    guest_env = ensure_guest_files(log=notes)
    preps = []
    for i, sc in enumerate(scenarios):
        stem = Path(sc.path).stem or "scenario"
        preps.append(prepare(sc, f"s{i:03d}-{stem}"[:60]))
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
        nsteps = sum(len(p.model) for p in runnable)
        timeout = 120 + 2.0 * nsteps + 10 * len(runnable)
        with tempfile.TemporaryDirectory(prefix="contpte-arm64-") as tmp:
            wd = workdir or Path(tmp)
            wd.mkdir(parents=True, exist_ok=True)
            if progress is not None:
                progress(f"booting {guest_env.kernel_package} ({len(runnable)} scenarios)")
            boot_result = boot(guest_env, {p.name: b for p, b in zip(runnable, binaries)}, wd, timeout)
    results = [compare(p, boot_result) for p in preps]
    return Arm64Report(
        results,
        kernel=boot_result.kernel if boot_result else "",
        boot_seconds=boot_result.seconds if boot_result else 0.0,
        notes=notes,
    )
