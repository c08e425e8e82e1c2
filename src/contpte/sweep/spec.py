"""SPEC.toml: the grid of a sweep, read and checked before anything runs.

    name = "contpte-on-off"          # optional; default: the file's stem
    workloads = ["zygote-fork", "redis-bgsave", "my.scn"]  # library names or .scn files
    kernels = ["6.12", "7.2"]        # contpte.version.KERNEL_VERSIONS
    variants = ["mainline", "contpte-off", "no-batch"]     # VARIANTS, or [variant.NAME] below
    profiles = ["altra", "m2-vm"]    # shipped profiles or .toml files
    cpus = [1, 8, 32]                # copies running at once (the cost model's --cpus)

    [variant.no-batch]               # Machine keys over the workload's header
    batch_fork = false
    batch_zap = false

    [params.zygote-fork]             # parameters of a library workload
    children = 4

Paths are relative to the spec file.  Every error names the file and the key
(and its line where the key is written in the file): an unknown workload,
kernel version, variant, variant option or profile, a value of the wrong type,
a key the format does not have.  The first variant is the baseline of the
report's changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cost.pricing import machine_options
from ..cost.profile import Profile, load_profile
from ..errors import ContpteError, ModelUsageError, ScenarioError
from ..version import KERNEL_VERSIONS
from ..workloads.library import WORKLOADS, workload_params, workload_text
from ..workloads.scenario import Scenario, format_scenario, parse, parse_machine_options

__all__ = ["VARIANTS", "SpecError", "WorkloadRef", "VariantRef", "Spec", "load_spec", "parse_spec"]

VARIANTS: dict[str, dict[str, Any]] = {
    "mainline": {},
    "contpte-off": {"contpte": False},
    "mthp-off": {"mthp": {"64K": "never"}},
    "no-batch": {"batch_fork": False, "batch_zap": False},
}
"""Variants a spec may name without defining them: ``mainline`` (the workload's
header as is: 64K mTHP, contpte on, every behaviour of the kernel version),
``contpte-off`` (arm64 without contiguous PTEs), ``mthp-off`` (4K folios only),
``no-batch`` (core-mm without the v6.9 batching of fork and zap)."""

_KEYS = ("name", "workloads", "kernels", "variants", "profiles", "cpus", "variant", "params")


class SpecError(ModelUsageError):
    """A malformed or inconsistent sweep spec: ``FILE[:LINE]: key: what is wrong``."""


@dataclass(frozen=True)
class WorkloadRef:
    """One workload of the grid: its name, its parameters and its scenario text."""

    name: str
    params: dict[str, int]
    text: str
    """The scenario file's text (generated for a library workload)."""
    path: str
    """Where the scenario comes from (``<workload NAME>`` or the .scn file)."""

    def scenario(self) -> Scenario:
        return parse(self.text, self.path)

    @property
    def digest(self) -> str:
        """The scenario's steps and header, whatever the comments: what the runs depend on."""
        return hashlib.sha256(format_scenario(self.scenario()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VariantRef:
    """One kernel variant: a name and its Machine keys over the header."""

    name: str
    overrides: dict[str, Any]

    @property
    def spec(self) -> str:
        return json.dumps(self.overrides, sort_keys=True)


@dataclass(frozen=True)
class Spec:
    """A checked sweep grid."""

    path: str
    name: str
    workloads: tuple[WorkloadRef, ...]
    kernels: tuple[str, ...]
    variants: tuple[VariantRef, ...]
    profiles: tuple[Profile, ...]
    cpus: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Runs in the grid."""
        return (
            len(self.workloads) * len(self.kernels) * len(self.variants) * len(self.profiles) * len(self.cpus)
        )


def _line_of(text: str, key: str, table: str | None = None) -> int | None:
    """The line a key is written on (in ``[table]`` if given), for error messages."""
    in_table = table is None
    pat = re.compile(rf"^\s*(\"?){re.escape(key)}\1\s*=")
    head = re.compile(r"^\s*\[([^\]]+)\]\s*(#.*)?$")
    for i, line in enumerate(text.splitlines(), 1):
        m = head.match(line)
        if m:
            in_table = table is not None and m.group(1).strip().replace('"', "") == table
            if table is not None and in_table and not key:
                return i
            continue
        if in_table and key and pat.match(line):
            return i
    return None


class _Ctx:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, key: str, what: str, table: str | None = None, line_key: str | None = None) -> SpecError:
        line = _line_of(self.text, line_key if line_key is not None else key.split(".")[-1], table)
        where = f"{self.path}:{line}" if line else self.path
        return SpecError(f"{where}: {key}: {what}")


def _str_list(ctx: _Ctx, data: dict[str, Any], key: str) -> list[str]:
    raw = data.get(key)
    if raw is None:
        raise ctx.fail(key, "missing (a list of names)", line_key="")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x for x in raw):
        raise ctx.fail(key, f"expected a non-empty list of names, got {raw!r}")
    dup = sorted({x for x in raw if raw.count(x) > 1})
    if dup:
        raise ctx.fail(key, f"given twice: {', '.join(dup)}")
    return list(raw)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | str):
        return str(v)
    raise ModelUsageError(f"expected a boolean, an integer or a string, got {v!r}")


def _variant(ctx: _Ctx, name: str, table: Any) -> VariantRef:
    key = f"variant.{name}"
    if not isinstance(table, dict):
        raise ctx.fail(key, "expected a table of Machine keys", table=None, line_key="")
    pairs = []
    for k, v in table.items():
        try:
            pairs.append(f"{k}={_toml_value(v)}")
        except ModelUsageError as e:
            raise ctx.fail(f"{key}.{k}", str(e), table=key) from None
    try:
        overrides = parse_machine_options(pairs, f"{ctx.path} [{key}]")
    except ScenarioError as e:
        raise ctx.fail(key, e.detail, table=key, line_key=_first_key(e.detail, table)) from None
    for banned, why in (
        ("kernel", "the kernel version is the 'kernels' axis"),
        ("check", "runs are priced without validators"),
    ):
        if banned in overrides:
            raise ctx.fail(f"{key}.{banned}", f"not a variant key: {why}", table=key)
    return VariantRef(name, overrides)


def _first_key(detail: str, table: dict[str, Any]) -> str:
    """The key of ``table`` an error message is about (quoted, or as ``key=``), for its line."""
    for k in table:
        if f"'{k}'" in detail or f"{k}=" in detail:
            return k
    return ""


def parse_spec(text: str, path: str = "<spec>") -> Spec:
    """Read and check a sweep spec (see the module docstring)."""
    ctx = _Ctx(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else path
        raise SpecError(f"{where}: not valid TOML: {msg}") from None
    unknown = [k for k in data if k not in _KEYS]
    if unknown:
        raise ctx.fail(unknown[0], f"unknown key; a spec has {', '.join(_KEYS)}")
    base = Path(path).parent
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name:
        raise ctx.fail("name", f"expected a non-empty string, got {name!r}")

    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ctx.fail("params", "expected tables [params.WORKLOAD]")
    workloads: list[WorkloadRef] = []
    for w in _str_list(ctx, data, "workloads"):
        if w.endswith(".scn"):
            p = Path(w) if Path(w).is_absolute() else base / w
            try:
                text_w = p.read_text(encoding="utf-8")
            except OSError as e:
                raise ctx.fail("workloads", f"cannot read scenario {w!r}: {e.strerror}") from None
            try:
                parse(text_w, str(p))
            except ScenarioError as e:
                raise SpecError(f"{path}: workloads: {e}") from None
            workloads.append(WorkloadRef(Path(w).stem, {}, text_w, str(p)))
            continue
        if w not in WORKLOADS:
            raise ctx.fail(
                "workloads",
                f"unknown workload {w!r}; expected one of {', '.join(WORKLOADS)} or a .scn file",
            )
        given = params.get(w, {})
        if not isinstance(given, dict):
            raise ctx.fail(f"params.{w}", "expected a table of parameters", line_key="")
        try:
            p_w = workload_params(w, given)
        except ModelUsageError as e:
            bad = _first_key(str(e), given)
            raise ctx.fail(f"params.{w}", str(e), table=f"params.{w}", line_key=bad) from None
        workloads.append(WorkloadRef(w, p_w, workload_text(w, p_w), f"<workload {w}>"))
    extra = [k for k in params if k not in {w.name for w in workloads}]
    if extra:
        raise ctx.fail(f"params.{extra[0]}", "parameters of a workload the spec does not run", line_key="")
    names = [w.name for w in workloads]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ctx.fail("workloads", f"two workloads named {', '.join(dup)}")

    kernels = _str_list(ctx, data, "kernels")
    for k in kernels:
        if k not in KERNEL_VERSIONS:
            raise ctx.fail(
                "kernels", f"unknown kernel version {k!r}; expected one of {', '.join(KERNEL_VERSIONS)}"
            )

    defined = data.get("variant", {})
    if not isinstance(defined, dict):
        raise ctx.fail("variant", "expected tables [variant.NAME]")
    variants: list[VariantRef] = []
    for v in _str_list(ctx, data, "variants"):
        if v in defined:
            variants.append(_variant(ctx, v, defined[v]))
        elif v in VARIANTS:
            variants.append(VariantRef(v, VARIANTS[v]))
        else:
            raise ctx.fail(
                "variants",
                f"unknown variant {v!r}; define it in [variant.{v}] or use one of {', '.join(VARIANTS)}",
            )
    unused = [k for k in defined if k not in {v.name for v in variants}]
    if unused:
        raise ctx.fail(f"variant.{unused[0]}", "defined but not in 'variants'", line_key="")

    profiles: list[Profile] = []
    for pr in _str_list(ctx, data, "profiles"):
        ref = str(base / pr) if pr.endswith(".toml") and not Path(pr).is_absolute() else pr
        try:
            profiles.append(load_profile(ref))
        except ModelUsageError as e:
            raise ctx.fail("profiles", str(e)) from None
    pnames = [p.name for p in profiles]
    if len(set(pnames)) != len(pnames):
        raise ctx.fail("profiles", "two profiles with the same name")

    raw_cpus = data.get("cpus")
    if raw_cpus is None:
        raise ctx.fail("cpus", "missing (a list of CPU counts)", line_key="")
    if isinstance(raw_cpus, int) and not isinstance(raw_cpus, bool):
        raw_cpus = [raw_cpus]
    if (
        not isinstance(raw_cpus, list)
        or not raw_cpus
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in raw_cpus)
    ):
        raise ctx.fail("cpus", f"expected a list of positive integers, got {raw_cpus!r}")
    if len(set(raw_cpus)) != len(raw_cpus):
        raise ctx.fail("cpus", "a CPU count given twice")

    # Every workload must build a Machine under every variant and kernel: a bad
    # option value (mthp.64K=sometimes) shows here, not in the middle of a sweep.
    from ..workloads.scenario import make_machine

    for wref in workloads:
        sc = wref.scenario()
        for vref in variants:
            for k in kernels:
                for pr_ in profiles:
                    kw = machine_options(sc, {**vref.overrides, "kernel": k}, pr_)
                    try:
                        make_machine(sc, **{**kw, "memory": "64M"})
                    except ContpteError as e:
                        raise ctx.fail(
                            f"variant.{vref.name}", f"with workload {wref.name}: {e}", line_key=""
                        ) from None
    return Spec(
        path, name, tuple(workloads), tuple(kernels), tuple(variants), tuple(profiles), tuple(raw_cpus)
    )


def load_spec(path: str) -> Spec:
    """Read and check the spec file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec: {e.strerror}") from None
    return parse_spec(text, path)
