"""Compare the two block policies, mainline's contpte and the OnePlus design, on the workload library.

``contpte compare-policy`` runs each workload of the library
(``workloads/library.py``) once under ``policy="mainline"`` and once under
``policy="oneplus"`` on the same machine (memory, CPUs, kernel version;
the oneplus run has ``mthp.64K=never`` and its VMA names: docs/WORKLOADS.md),
with the validators off, and prices the measured steps on one cost profile.

The measured steps are grouped into *phases* by verb (``PHASES``: fork, exit,
munmap, faults = the user reads and writes, madvise, ...), each priced on its
own; with one copy the phases add up to the total.  Beside time it reports
the counters that explain it (``METRICS``): rmap calls and pages, reference
operations, TLBIs by kind, Contiguous-block rewrites, page faults, copies,
the pool (``Machine.chp_pool_stats()`` when the measured steps end) and
the fallbacks of both designs.

Block rewrites, counted comparably (``bbm_blocks``): a break-before-make of
one live 64K block (its 16 valid entries cleared, the TLB flushed, 16 new
entries written).  Under mainline that is ``contpte_convert()``, one per
fold and per unfold (``contpte.convert``).  Under oneplus it is each of the
design's whole-block rewrites of live entries: the parent's block
write-protected at fork (``cont_pte_set_huge_pte_wrprotect()``), a block
reused (``chp.wp_reuse``) or copied (``chp.thp_cow``, ``chp.thp_cow_fallback``)
at a write fault, and a split (``chp.split``).  No counter records the
fork's write-protects, so the run counts them from the parent's page tables
around each fork step: blocks that were writable and Contiguous before it
and are read-only and Contiguous after it (``chp_fork_wrprotect``).  Whole
blocks written over empty entries (``fresh_blocks``: a block fault that
mapped its block, ``thp_fault_alloc``, and the child's block at fork,
``chp.copy_block``) are counted apart: mainline writes those with
``contpte_set_ptes()`` without a flush, the design clears and flushes the
(empty) range first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..counters import TOTALS
from ..errors import ModelUsageError, ScenarioError
from ..workloads.library import WORKLOADS, workload_params, workload_scenario
from ..workloads.scenario import Env, Scenario, make_machine, run_step
from .model import time_breakdown, unmapped_counters
from .pricing import STEP_EXTRA
from .profile import Profile

__all__ = [
    "PHASES",
    "METRICS",
    "PolicyRun",
    "WorkloadComparison",
    "Comparison",
    "phase_of",
    "run_policy",
    "compare_workload",
    "compare_policies",
]

POLICY_NAMES = ("mainline", "oneplus")

PHASES: dict[str, str] = {
    "fork": "fork",
    "exit": "exit",
    "munmap": "munmap",
    "write": "faults",
    "read": "faults",
    "madvise": "madvise",
    "mprotect": "mprotect",
    "mmap": "mmap",
    "spawn": "spawn",
    "vma-name": "prctl",
}
"""The phase each measured step's verb belongs to (others: the verb itself)."""

_CONT_PTES = 16


def phase_of(op: str) -> str:
    """The phase of a measured step with verb ``op``."""
    return PHASES.get(op, op)


def _tlbi_total(c: Mapping[str, int]) -> int:
    return sum(v for k, v in c.items() if k.startswith("tlbi."))


def _c(name: str) -> Callable[[Mapping[str, int], bool], int]:
    return lambda c, _oneplus: c.get(name, 0)


def _family(prefix: str, suffix: str = "") -> Callable[[Mapping[str, int], bool], int]:
    return lambda c, _oneplus: sum(v for k, v in c.items() if k.startswith(prefix) and k.endswith(suffix))


_BBM = (
    "contpte.convert",
    "chp_fork_wrprotect",
    "chp.wp_reuse",
    "chp.thp_cow",
    "chp.thp_cow_fallback",
    "chp.split",
)

METRICS: tuple[tuple[str, str, Callable[[Mapping[str, int], bool], int]], ...] = (
    ("pgfault", "page faults (pgfault)", _c("pgfault")),
    ("rmap.op", "rmap calls (rmap.op)", _c("rmap.op")),
    ("rmap.pages", "rmap pages (rmap.pages)", _c("rmap.pages")),
    ("ref.op", "reference puts (ref.op)", _c("ref.op")),
    ("ref.get", "reference gets (ref.get)", _c("ref.get")),
    ("tlbi.total", "TLBIs, all kinds", _family("tlbi.")),
    ("contpte.fold", "mainline: contpte folds", _c("contpte.fold")),
    ("contpte.unfold", "mainline: contpte unfolds", _family("contpte.unfold")),
    ("chp_fork_wrprotect", "oneplus: blocks wrprotected at fork", _c("chp_fork_wrprotect")),
    ("chp.split", "oneplus: blocks split", _c("chp.split")),
    ("bbm_blocks", "block rewrites (BBM, live)", lambda c, _o: sum(c.get(n, 0) for n in _BBM)),
    (
        "fresh_blocks",
        "oneplus: blocks written fresh",
        lambda c, oneplus: c.get("chp.copy_block", 0) + c.get("thp_fault_alloc", 0) if oneplus else 0,
    ),
    ("chp.copy_block", "oneplus: blocks copied whole at fork", _c("chp.copy_block")),
    ("chp.thp_cow", "oneplus: blocks copied at CoW", _c("chp.thp_cow")),
    (
        "chp_fault_blocks_unused",
        "oneplus: fault blocks freed unused",
        lambda c, oneplus: c.get("chp.thp_do_anon_pages", 0) - c.get("thp_fault_alloc", 0) if oneplus else 0,
    ),
    ("page.copy", "pages copied", _c("page.copy")),
    ("page.zero", "pages zeroed", _c("page.zero")),
    (
        "chp.thp_do_anon_pages_fallback",
        "oneplus fallback: fault",
        _c("chp.thp_do_anon_pages_fallback"),
    ),
    ("chp.thp_cow_fallback", "oneplus fallback: CoW", _c("chp.thp_cow_fallback")),
    (
        "mthp.anon_fault_fallback",
        "mainline fallback: mTHP fault",
        _family("mthp.", ".anon_fault_fallback"),
    ),
)
"""(key, label, formula over the measured counters and whether the policy is oneplus), in table order."""

POOL_KEYS = ("pool_pages", "pool_cma_count", "pool_buddy_count", "usage_cma", "usage_buddy")
"""The ``chp_pool_stats()`` lines reported (pages), when the measured steps end."""


@dataclass(frozen=True)
class PolicyRun:
    """One workload under one policy: the measured steps' counters, by phase, priced."""

    policy: str
    machine: dict[str, Any]
    counters: dict[str, int]
    """Every counter of the measured steps (plus ``chp_fork_wrprotect``)."""
    phases: dict[str, dict[str, int]]
    """The same, per phase."""
    steps: dict[str, int]
    """Measured steps per phase."""
    phase_ns: dict[str, float]
    total_ns: float
    dvm_ns: float
    """Of the total, broadcast TLB maintenance (DVM operations and syncs)."""
    pool: dict[str, int]
    """``Machine.chp_pool_stats()`` when the measured steps end ({} without a pool)."""
    cma_bytes: int

    @property
    def metrics(self) -> dict[str, int]:
        out = {key: f(self.counters, self.policy == "oneplus") for key, _, f in METRICS}
        out.update(
            {f"tlbi.{k.split('.', 1)[1]}": v for k, v in self.counters.items() if k.startswith("tlbi.")}
        )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "machine": self.machine,
            "time_ns": {"total": self.total_ns, "phases": dict(self.phase_ns), "dvm": self.dvm_ns},
            "steps": dict(self.steps),
            "metrics": self.metrics,
            "pool": {k: self.pool.get(k, 0) for k in POOL_KEYS} | {"cont_pte_cma_size": self.cma_bytes}
            if self.pool
            else {},
            "counters": dict(self.counters),
        }


@dataclass(frozen=True)
class WorkloadComparison:
    """One workload under both policies."""

    name: str
    params: dict[str, int]
    eligibility: dict[str, Any]
    runs: dict[str, PolicyRun]

    @property
    def phases(self) -> list[str]:
        seen: list[str] = []
        for r in self.runs.values():
            seen += [p for p in r.phase_ns if p not in seen]
        return seen

    @property
    def tlbi_kinds(self) -> list[str]:
        return sorted({k for r in self.runs.values() for k in r.counters if k.startswith("tlbi.")})

    def change(self) -> dict[str, Any]:
        """oneplus - mainline of every time and metric, and the time change in percent."""
        a, b = self.runs["mainline"], self.runs["oneplus"]
        ma, mb = a.metrics, b.metrics
        return {
            "time_ns": b.total_ns - a.total_ns,
            "time_pct": 100.0 * (b.total_ns / a.total_ns - 1.0) if a.total_ns > 0 else 0.0,
            "phases_ns": {p: b.phase_ns.get(p, 0.0) - a.phase_ns.get(p, 0.0) for p in self.phases},
            "metrics": {k: mb.get(k, 0) - ma.get(k, 0) for k in sorted(set(ma) | set(mb))},
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": dict(self.params),
            "eligibility": dict(self.eligibility),
            "policies": {name: r.as_dict() for name, r in self.runs.items()},
            "change": self.change(),
        }


@dataclass(frozen=True)
class Comparison:
    """Every workload compared on one profile."""

    profile: Profile
    kernel: str | None
    workloads: tuple[WorkloadComparison, ...]
    unmapped: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "kernel": self.kernel,
            "cpus": 1,
            "policies": list(POLICY_NAMES),
            "workloads": [w.as_dict() for w in self.workloads],
            "unmapped": list(self.unmapped),
        }


def _blocks(p: Any, page_size: int) -> tuple[set[int], set[int]]:
    """(writable, read-only) whole Contiguous blocks of a process's private mappings, by address."""
    rw: set[int] = set()
    ro: set[int] = set()
    block = _CONT_PTES * page_size
    for start, end, perms, _name in p.maps():
        if "p" not in perms:
            continue
        rows = p.pagemap(start, end - start)
        first = (-start % block) // page_size
        for i in range(first, len(rows), _CONT_PTES):
            r = rows[i]
            if r["present"] and r["cont"]:
                (rw if r["writable"] else ro).add(start + i * page_size)
    return rw, ro


def run_policy(sc: Scenario, policy: str, profile: Profile, kernel: str | None = None) -> PolicyRun:
    """Run the workload scenario ``sc`` (generated for ``policy``) and price its measured steps."""
    kw: dict[str, Any] = {"check": False}
    if kernel:
        kw["kernel"] = kernel
    if profile.cpu and "cpu" not in sc.machine and sc.machine.get("arch", "arm64") == profile.arch:
        kw["cpu"] = profile.cpu
    m = make_machine(sc, **kw)
    env = Env()
    oneplus = policy == "oneplus"
    measuring = not any(s.op == "measure" for s in sc.steps)
    phases: dict[str, dict[str, int]] = {}
    steps: dict[str, int] = {}
    ops: dict[str, int] = {}
    pool: dict[str, int] = {}
    for step in sc.steps:
        if step.op == "measure":
            measuring = step.args["edge"] == "begin"
            if not measuring:
                pool = m.chp_pool_stats()
            continue
        before: set[int] | None = None
        parent = env.procs.get(step.proc) if step.proc else None
        if oneplus and measuring and step.op == "fork" and parent is not None:
            before = _blocks(parent, m.page_size)[0]
        out = run_step(m, env, sc, step)
        if out.failed is not None:
            raise ScenarioError(sc.path, step.line, f"policy {policy}: the step failed: {out.failed}")
        if not measuring:
            continue
        ph = phase_of(step.op)
        acc = phases.setdefault(ph, {})
        for k, v in out.counters.items():
            acc[k] = acc.get(k, 0) + v
        if before is not None:
            assert parent is not None
            ro_after = _blocks(parent, m.page_size)[1]
            acc["chp_fork_wrprotect"] = acc.get("chp_fork_wrprotect", 0) + len(before & ro_after)
        steps[ph] = steps.get(ph, 0) + 1
        ops[step.op] = ops.get(step.op, 0) + 1
    if not pool:
        pool = m.chp_pool_stats()
    counters: dict[str, int] = {}
    for acc in phases.values():
        for k, v in acc.items():
            counters[k] = counters.get(k, 0) + v
    phase_ns: dict[str, float] = {}
    dvm_ns = 0.0
    for ph, acc in phases.items():
        extra: dict[str, float] = {}
        for op, n in ops.items():
            if phase_of(op) == ph:
                for kind, per in STEP_EXTRA.get(op, {}).items():
                    extra[kind] = extra.get(kind, 0.0) + per * n
        bd = time_breakdown(_priced(acc), profile, 1, extra=extra)
        phase_ns[ph] = bd.total_ns
        dvm_ns += bd.dvm_ns
    machine = dict(sc.machine) | {k: v for k, v in kw.items() if k != "check"}
    cma = int(pool.get("cont_pte_cma_size", 0))
    return PolicyRun(
        policy,
        {k: _plain(v) for k, v in machine.items()},
        dict(sorted((k, v) for k, v in counters.items() if v)),
        {ph: dict(sorted((k, v) for k, v in acc.items() if v)) for ph, acc in phases.items()},
        steps,
        phase_ns,
        sum(phase_ns.values()),
        dvm_ns,
        pool,
        cma,
    )


def _priced(counters: Mapping[str, int]) -> dict[str, int]:
    """The counters the cost model prices (the run's own ``chp_fork_wrprotect`` is a count of events
    whose work ``pte.*``/``tlbi.*`` already hold)."""
    return {k: v for k, v in counters.items() if k != "chp_fork_wrprotect" and k not in TOTALS}


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v


def compare_workload(
    name: str, profile: Profile, params: Mapping[str, Any] | None = None, kernel: str | None = None
) -> WorkloadComparison:
    """Workload ``name`` under both policies, priced on ``profile``."""
    p = workload_params(name, params)
    w = WORKLOADS[name]
    runs = {pol: run_policy(workload_scenario(name, p, pol), pol, profile, kernel) for pol in POLICY_NAMES}
    elig: dict[str, Any] = {"mode": w.chp.mode, "why": w.chp.why}
    if w.chp.names:
        elig["vma_names"] = dict(w.chp.names)
    return WorkloadComparison(name, p, elig, runs)


def compare_policies(
    names: Sequence[str],
    profile: Profile,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    kernel: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Every workload of ``names`` (all of the library when empty) under both policies.

    ``params``: per workload, parameters over its defaults.  Every name and
    parameter is checked before anything runs.
    """
    names = list(names) or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ModelUsageError(
            f"unknown workload {', '.join(map(repr, unknown))}; expected one of {', '.join(WORKLOADS)}"
        )
    params = params or {}
    stray = [n for n in params if n not in names]
    if stray:
        raise ModelUsageError(f"--param for workload {', '.join(map(repr, stray))}, which is not compared")
    checked = {n: workload_params(n, params.get(n), "--param") for n in names}
    out: list[WorkloadComparison] = []
    for n in names:
        out.append(compare_workload(n, profile, checked[n], kernel))
        if progress is not None:
            progress(n)
    seen = {k for w in out for r in w.runs.values() for k in _priced(r.counters)}
    return Comparison(profile, kernel, tuple(out), tuple(unmapped_counters(seen)))
