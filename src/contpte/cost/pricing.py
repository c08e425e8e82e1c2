"""Price a scenario file: simulate it per kernel variant, then time its measured steps.

``contpte cost FILE.scn`` and every benchmark go through here.  A scenario
(docs/SCENARIOS.md) runs once per *variant* (Machine keys overriding the
header's, e.g. ``batch_fork=false``) with the validators off; the counters
of the steps between ``measure begin`` and ``measure end`` (every step when
the file has no marker) are the source of truth, and a profile turns them
into time (``model.time_breakdown``) with ``cpus`` copies running at once.
Work no counter records is added per measured step (``STEP_EXTRA``): a
syscall's fixed part, fork's and exit's work outside the page tables.

The profile's CPU preset (``[profile] cpu``) is used when the header names
no ``cpu`` and runs the profile's backend (``arch``); otherwise the header
decides, so the same arm64 scenario can be priced at another machine's
per-operation prices.

Simulations are deterministic, so their counters are cached: for the run,
and on disk (``$CONTPTE_SIM_CACHE``, default ``~/.cache/contpte/sim``;
``off`` disables it) under a key made of the scenario's text, the Machine
options and a digest of the model's source, so a changed model never reuses
an old count.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError, ScenarioError
from ..workloads.scenario import (
    Env,
    Scenario,
    format_scenario,
    make_machine,
    parse_machine_options,
    run_step,
)
from .model import Breakdown, time_breakdown, unmapped_counters
from .profile import Profile

__all__ = [
    "STEP_EXTRA",
    "Variant",
    "parse_variant",
    "Measured",
    "machine_options",
    "simulate",
    "clear_cache",
    "price",
    "VariantCost",
    "CostResult",
    "price_scenario",
    "change_pct",
]

STEP_EXTRA: dict[str, dict[str, float]] = {
    "spawn": {"task_fork": 1},
    "fork": {"task_fork": 1},
    "exit": {"task_exit": 1},
    "mmap": {"syscall": 1},
    "munmap": {"syscall": 1},
    "mprotect": {"syscall": 1},
    "madvise": {"syscall": 1},
    "pin": {"syscall": 1},
    "unpin": {"syscall": 1},
    "uffd-wp": {"syscall": 1},
}
"""Events no counter records, per measured step, by verb.  User accesses
(``read``/``write``) cost what their faults count; ``numa`` and
``khugepaged`` are the kernel's own scans (their work is counted); ``file``, ``check``, ``reclaim`` and
``measure`` are the model's own steps."""


@dataclass(frozen=True)
class Variant:
    """A kernel variant: a name and the Machine keys it overrides in the header."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """``NAME:key=value,...`` (what ``parse_variant`` reads)."""
        return f"{self.name}:" + ",".join(f"{k}={_fmt(v)}" for k, v in _flat(self.overrides).items())


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return str(v)


def _flat(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in overrides.items():
        if k == "mthp":
            out.update({f"mthp.{size}": s for size, s in v.items()})
        else:
            out[k] = v
    return out


def parse_variant(text: str) -> Variant:
    """``"before:batch_fork=false,contpte=true"`` -> Variant; ``"base:"`` = the header as is.

    Values read as in the scenario header (docs/SCENARIOS.md); a value with
    commas (``bugs=a,b``) continues until the next ``key=``.
    """
    name, colon, rest = text.partition(":")
    name = name.strip()
    if not colon or not name:
        raise ModelUsageError(
            f"--variant {text!r}: expected NAME:key=value,... (NAME: alone = the header as is)"
        )
    pairs: list[str] = []
    for tok in (t.strip() for t in rest.split(",")):
        if not tok:
            continue
        if "=" in tok or not pairs:
            pairs.append(tok)
        else:
            pairs[-1] += "," + tok
    try:
        overrides = parse_machine_options(pairs, f"--variant {name}")
    except ScenarioError as e:
        raise ModelUsageError(f"--variant {text!r}: {e.detail}") from None
    if "check" in overrides:
        raise ModelUsageError(
            f"--variant {text!r}: check= is not a kernel variant (pricing runs without validators)"
        )
    return Variant(name, overrides)


@dataclass(frozen=True)
class Measured:
    """What the measured steps of one simulation did."""

    counters: dict[str, int]
    steps: dict[str, int]
    """Measured steps by verb."""

    @property
    def extra(self) -> dict[str, float]:
        """Events no counter records (``STEP_EXTRA``), by cost kind."""
        out: dict[str, float] = {}
        for op, n in self.steps.items():
            for kind, per in STEP_EXTRA.get(op, {}).items():
                out[kind] = out.get(kind, 0.0) + per * n
        return out

    def as_dict(self) -> dict[str, object]:
        return {"counters": dict(self.counters), "steps": dict(self.steps)}


def machine_options(
    sc: Scenario, overrides: Mapping[str, Any], profile: Profile | None = None
) -> dict[str, Any]:
    """The Machine keywords a variant of ``sc`` runs with (validators off)."""
    kw = dict(sc.machine)
    mthp = dict(kw.get("mthp") or {})
    for k, v in overrides.items():
        if k == "mthp":
            mthp.update(v)
        else:
            kw[k] = v
    if mthp:
        kw["mthp"] = mthp
    kw["check"] = False
    if profile is not None and profile.cpu and "cpu" not in kw and kw.get("arch", "arm64") == profile.arch:
        kw["cpu"] = profile.cpu
    return kw


_CACHE: dict[str, Measured] = {}


def clear_cache() -> None:
    """Forget the simulations of this run (the disk cache stays)."""
    _CACHE.clear()


@lru_cache(maxsize=1)
def _model_digest() -> str:
    """A digest of every source file that decides what a simulation counts."""
    root = Path(str(resources.files("contpte")))
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("cost/", "report/", "oracle/", "sweep/")) or rel == "cli.py":
            continue
        h.update(rel.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _cache_dir() -> Path | None:
    env = os.environ.get("CONTPTE_SIM_CACHE", "")
    if env.lower() in ("off", "0", "no", "false"):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "contpte" / "sim"


def _key(sc: Scenario, kw: Mapping[str, Any]) -> str:
    body = format_scenario(Scenario(sc.path, {}, sc.steps))
    blob = json.dumps(
        {"steps": body, "machine": {k: _fmt_key(v) for k, v in sorted(kw.items())}}, sort_keys=True
    )
    return hashlib.sha256((blob + _model_digest()).encode()).hexdigest()[:32]


def _fmt_key(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _fmt_key(x) for k, x in sorted(v.items())}
    if isinstance(v, tuple | list):
        return [_fmt_key(x) for x in v]
    return v


def _run(sc: Scenario, kw: dict[str, Any]) -> Measured:
    m = make_machine(sc, **kw)
    env = Env()
    marked = any(s.op == "measure" for s in sc.steps)
    totals: dict[str, int] = {}
    steps: dict[str, int] = {}
    open_at: dict[str, int] | None = None if marked else m.counters.snapshot()
    for step in sc.steps:
        if step.op == "measure":
            snap = m.counters.snapshot()
            if step.args["edge"] == "begin":
                open_at = snap
            else:
                assert open_at is not None
                for k, v in snap.items():
                    d = v - open_at.get(k, 0)
                    if d:
                        totals[k] = totals.get(k, 0) + d
                open_at = None
            continue
        out = run_step(m, env, sc, step, counters=False)
        if out.failed is not None:
            raise ScenarioError(
                sc.path, step.line, f"the step failed, so the scenario cannot be priced: {out.failed}"
            )
        if open_at is not None:
            steps[step.op] = steps.get(step.op, 0) + 1
    if not marked and open_at is not None:
        snap = m.counters.snapshot()
        totals = {k: v - open_at.get(k, 0) for k, v in snap.items() if v != open_at.get(k, 0)}
    return Measured({k: v for k, v in sorted(totals.items()) if v}, steps)


def simulate(
    sc: Scenario, overrides: Mapping[str, Any] | None = None, profile: Profile | None = None
) -> Measured:
    """Run ``sc`` with ``overrides`` (validators off); the measured steps' counters.

    Cached for the run and on disk (see the module docstring).
    """
    kw = machine_options(sc, overrides or {}, profile)
    key = _key(sc, kw)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    cdir = _cache_dir()
    path = cdir / f"{key}.json" if cdir is not None else None
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text())
            hit = Measured({str(k): int(v) for k, v in data["counters"].items()}, dict(data["steps"]))
        except (OSError, ValueError, KeyError, TypeError):
            hit = None
    if hit is None:
        hit = _run(sc, kw)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(hit.as_dict()))
                tmp.replace(path)
            except OSError:
                pass  # a cache that cannot be written is no error
    _CACHE[key] = hit
    return hit


def price(measured: Measured, profile: Profile, cpus: int = 1) -> Breakdown:
    """Time of one copy's measured steps while ``cpus`` copies run them at once."""
    return time_breakdown(measured.counters, profile, cpus, extra=measured.extra)


def change_pct(base_ns: float, ns: float) -> float:
    """Change of time against the baseline, percent (positive = slower)."""
    return 100.0 * (ns / base_ns - 1.0) if base_ns > 0 else 0.0


@dataclass(frozen=True)
class VariantCost:
    """One variant's priced measured steps."""

    variant: Variant
    measured: Measured
    breakdown: Breakdown
    change_pct: float

    @property
    def time_ns(self) -> float:
        return self.breakdown.total_ns

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.variant.name,
            "time_ns": self.time_ns,
            "change_pct": self.change_pct,
            "breakdown": {k: v for k, v in self.breakdown.by_kind.items() if v},
            "counters": dict(self.measured.counters),
        }


@dataclass(frozen=True)
class CostResult:
    """Every variant of one scenario priced on one profile; the first is the baseline."""

    scenario: Scenario
    profile: Profile
    cpus: int
    variants: tuple[VariantCost, ...]

    @property
    def unmapped(self) -> list[str]:
        return unmapped_counters({k for v in self.variants for k in v.measured.counters})

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile.name,
            "cpus": self.cpus,
            "variants": [v.as_dict() for v in self.variants],
        }


def price_scenario(
    sc: Scenario,
    profile: Profile,
    variants: Sequence[Variant] = (),
    cpus: int = 1,
    progress: Callable[[str], None] | None = None,
) -> CostResult:
    """Simulate ``sc`` once per variant and price each on ``profile``.

    No variant: the header as is, named after the file.  The first variant
    is the baseline of ``change_pct``.
    """
    if cpus < 1:
        raise ModelUsageError(f"--cpus {cpus}: expected a positive number of copies")
    if not variants:
        variants = (Variant(Path(sc.path).stem or "scenario"),)
    names = [v.name for v in variants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelUsageError(f"variant name(s) given twice: {', '.join(dup)}")
    priced: list[tuple[Variant, Measured, Breakdown]] = []
    for v in variants:
        meas = simulate(sc, v.overrides, profile)
        priced.append((v, meas, price(meas, profile, cpus)))
        if progress is not None:
            progress(v.name)
    base = priced[0][2].total_ns
    return CostResult(
        sc,
        profile,
        cpus,
        tuple(VariantCost(v, meas, bd, change_pct(base, bd.total_ns)) for v, meas, bd in priced),
    )
