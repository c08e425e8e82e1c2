"""Machine profiles: per-operation costs, each figure with its provenance.

A profile is a TOML data file in ``contpte/cost/profiles/`` (or any path).
Every figure is a table with a ``value``, a ``unit`` and a ``source`` that
says where the number comes from: a measurement or a datasheet (named), an
estimate (with its reasoning), or a fit.  A figure marked ``fit = true`` is a
free parameter of the cost model: it carries the plausible physical
``range = [low, high]`` its value must lie in, and ``contpte calibrate``
fits it on the profile's published figures (``docs/numbers.md``, the fit
set) and nothing else; a fit that ends at an edge of its range is reported
as a failure.

    [profile]
    name = "altra"
    title = "..."
    arch = "arm64"            # the backend this machine runs
    cpu = "neoverse-n1"       # the CPU preset scenarios run with

    [figures.pte_read]
    value = 1.0
    unit = "ns"
    source = "estimate: ..."

A profile may start from another one and change a few figures::

    extends = "altra"         # a shipped profile or a path (relative to this file)

    [figures.dvm_sync]
    value = 900
    source = "measured on our machine with ..."

``extends`` may also stand in ``[profile]``; an extending profile without
a ``[profile]`` name is named after its file.  A figure of an extending
profile replaces the inherited one (``unit`` may be left out; ``fit`` is not
inherited).  A figure may give ``same_as =
"other"`` instead of a value: an estimate that it is the same physical
quantity, so it always takes the other's value (fitted or set).  A figure name the model does not
know is an error naming the file and the key, as is a missing figure.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError

__all__ = [
    "Figure",
    "Profile",
    "FIGURES",
    "REQUIRED_FIGURES",
    "load_profile",
    "list_profiles",
    "parse_profile",
    "parse_set",
]

FIGURES: dict[str, tuple[str, str]] = {
    "cores": ("cores", "CPUs in the inner-shareable domain a broadcast TLBI reaches (documentation)"),
    "pte_read": ("ns", "one descriptor load in a page-table loop"),
    "pte_write": ("ns", "one descriptor store"),
    "pte_atomic": ("ns", "one atomic read-modify-write of a descriptor (xchg/cmpxchg)"),
    "pmd_write": ("ns", "one level-2 descriptor store"),
    "fault_entry": ("ns", "a page fault's exception entry/return and handle_mm_fault walk"),
    "page_zero": ("ns", "zeroing one 4K page"),
    "page_copy": ("ns", "copying one 4K page"),
    "folio_alloc": ("ns", "one buddy allocation (a folio or a page-table page), fixed part"),
    "folio_alloc_page": ("ns", "per page of an allocated folio (struct page preparation)"),
    "folio_free": ("ns", "one block returned to the buddy allocator, fixed part"),
    "folio_free_page": ("ns", "per page of a freed folio (free_pages_prepare visits each struct page)"),
    "rmap_update": ("ns", "one rmap call (add/dup/remove), fixed part"),
    "rmap_page": ("ns", "one page whose mapcount changes (an atomic on its struct page)"),
    "rmap_remove": ("ns", "what a removal adds to an rmap call (mapped-pages statistics, deferred split)"),
    "ref_update": ("ns", "one folio refcount drop that tests the result (folio_put: atomic_sub_and_test)"),
    "ref_get": ("ns", "one folio refcount add without a result (folio_get, folio_ref_add: atomic_add)"),
    "pte_call": (
        "ns",
        "fixed work of one copy_present_ptes()/zap_present_ptes() call (a present PTE or batch)",
    ),
    "pte_batch": ("ns", "fixed work of one batched copy/zap call (nr > 1) over the per-PTE loop's"),
    "contpte_call": ("ns", "one entry into an out-of-line arm64 contpte.c function (call, block setup)"),
    "tlb_walk": ("ns", "one hardware table walk"),
    "stage2_walk": ("ns", "what a guest's stage-2 translation adds to one table walk (0: bare metal)"),
    "tlbi_local": ("ns", "one non-broadcast TLB invalidation and its share of the local barrier"),
    "tlbi_va_bcast": ("ns", "one broadcast TLBI by VA (a DVM operation), nothing else broadcasting"),
    "tlbi_range_bcast": ("ns", "one broadcast range TLBI (FEAT_TLBIRANGE), nothing else broadcasting"),
    "tlbi_asid_bcast": ("ns", "one broadcast TLBI by ASID or of everything, nothing else broadcasting"),
    "dsb_ish": ("ns", "a DSB ISH barrier with no broadcast maintenance outstanding"),
    "dsb_ishst": ("ns", "a DSB ISHST (store) barrier"),
    "dsb_nsh": ("ns", "a non-shareable DSB"),
    "dvm_sync": (
        "ns",
        "completion latency of a DSB with broadcast TLBIs outstanding, nothing else broadcasting",
    ),
    "dvm_contention": ("1", "stretch of every DVM operation and sync per other CPU broadcasting at once"),
    "ipi": ("ns", "one inter-processor interrupt round trip"),
    "syscall": ("ns", "fixed work of one mm syscall (entry/exit, mmap_lock, VMA lookup, mmu_gather)"),
    "task_fork": ("ns", "fork() work outside the page tables (copy_process, VMA and mm setup)"),
    "task_exit": ("ns", "exit, wait and reaping outside the page tables"),
}
"""Every figure a profile defines: name -> (unit, what it is)."""

REQUIRED_FIGURES: dict[str, str] = {name: unit for name, (unit, _) in FIGURES.items()}
"""Every profile defines these figures, in these units."""

_FIGURE_KEYS = {"value", "unit", "source", "fit", "range", "same_as"}


@dataclass(frozen=True)
class Figure:
    """One number of a profile and where it comes from.

    ``fit``: a free parameter; ``range``: its plausible physical range.
    """

    name: str
    value: float
    unit: str
    source: str
    fit: bool = False
    range: tuple[float, float] | None = None
    same_as: str | None = None
    """Another figure whose value this one always takes (an estimate: the same physical quantity)."""

    def in_range(self, value: float | None = None) -> bool:
        v = self.value if value is None else value
        return self.range is None or self.range[0] <= v <= self.range[1]


@dataclass(frozen=True)
class Profile:
    """A machine's per-operation costs and its broadcast-TLBI model."""

    name: str
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    path: str = ""
    arch: str = "arm64"
    cpu: str | None = None
    extends: str | None = None

    def __getitem__(self, name: str) -> float:
        fig = self.figures.get(name)
        if fig is None:
            raise ModelUsageError(f"profile {self.name!r} has no figure {name!r}")
        return fig.value

    @property
    def cores(self) -> int:
        """Cores in the inner-shareable domain a broadcast TLBI reaches."""
        return int(self["cores"])

    @property
    def free_parameters(self) -> list[str]:
        """Names of the figures ``contpte calibrate`` fits (``fit = true``)."""
        return [name for name, fig in self.figures.items() if fig.fit]

    def with_values(self, values: dict[str, float], source: str | None = None) -> Profile:
        """Return a copy with some figures' values replaced (e.g. by a fit)."""
        figures = dict(self.figures)
        for name, value in values.items():
            old = figures.get(name)
            if old is None:
                raise ModelUsageError(f"profile {self.name!r} has no figure {name!r}")
            figures[name] = replace(old, value=float(value), source=source or old.source)
            for other, fig in figures.items():
                if fig.same_as == name:
                    figures[other] = replace(fig, value=float(value))
        return replace(self, figures=figures)

    def with_set(self, assignments: dict[str, float]) -> Profile:
        """Return a copy with figures set from the command line (``--set FIGURE=VALUE``).

        A set figure is no longer a free parameter: its value is given.
        """
        figures = dict(self.figures)
        for name, value in assignments.items():
            old = figures.get(name)
            if old is None:
                raise ModelUsageError(
                    f"--set {name}=...: profile {self.name!r} has no figure {name!r}; "
                    f"expected one of {', '.join(sorted(self.figures))}"
                )
            figures[name] = replace(
                old,
                value=float(value),
                source="set on the command line (--set)",
                fit=False,
                range=None,
                same_as=None,
            )
            for other, fig in figures.items():
                if fig.same_as == name and other not in assignments:
                    figures[other] = replace(fig, value=float(value))
        return replace(self, figures=figures)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "title": self.title,
            "arch": self.arch,
            "cpu": self.cpu,
            "extends": self.extends,
            "figures": {
                n: {
                    "value": f.value,
                    "unit": f.unit,
                    "source": f.source,
                    **({"fit": True, "range": list(f.range or ())} if f.fit else {}),
                    **({"same_as": f.same_as} if f.same_as else {}),
                }
                for n, f in self.figures.items()
            },
        }


def _profiles_dir() -> Path:
    return Path(str(resources.files("contpte.cost") / "profiles"))


def list_profiles() -> list[str]:
    """Names of the profiles shipped with contpte."""
    return sorted(p.stem for p in _profiles_dir().glob("*.toml"))


def _number(path: str, name: str, key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ModelUsageError(f"{path}: figure {name!r}: {key} {raw!r} is not a number")
    if raw < 0:
        raise ModelUsageError(f"{path}: figure {name!r}: negative {key} {raw!r}")
    return float(raw)


def _parse_figure(path: str, name: str, raw: Any, inherited: Figure | None) -> Figure:
    if name not in FIGURES:
        raise ModelUsageError(
            f"{path}: unknown figure {name!r} (key figures.{name}); the model knows {', '.join(FIGURES)}"
        )
    if not isinstance(raw, dict):
        raise ModelUsageError(f"{path}: figure {name!r} must be a table with value, unit and source")
    extra = set(raw) - _FIGURE_KEYS
    if extra:
        raise ModelUsageError(f"{path}: figure {name!r}: unknown keys {sorted(extra)}")
    want = REQUIRED_FIGURES[name]
    same_as = raw.get("same_as")
    need: tuple[str, ...] = ("value", "source") if inherited is not None else ("value", "unit", "source")
    if same_as is not None:
        if not isinstance(same_as, str) or same_as not in FIGURES or same_as == name:
            raise ModelUsageError(
                f"{path}: figure {name!r}: same_as must name another figure, got {same_as!r}"
            )
        need = tuple(k for k in need if k != "value")
        if "value" in raw:
            raise ModelUsageError(f"{path}: figure {name!r} has both a value and same_as = {same_as!r}")
    missing = [k for k in need if k not in raw]
    if missing:
        raise ModelUsageError(f"{path}: figure {name!r} lacks {', '.join(missing)}")
    value = 0.0 if same_as is not None else _number(path, name, "value", raw["value"])
    source = raw["source"]
    if not isinstance(source, str) or not source.strip():
        raise ModelUsageError(f"{path}: figure {name!r} has an empty source")
    unit = raw.get("unit", want)
    if unit != want:
        raise ModelUsageError(f"{path}: figure {name!r} is in {unit!r}, expected {want!r}")
    fit = raw.get("fit", False)
    if not isinstance(fit, bool):
        raise ModelUsageError(f"{path}: figure {name!r}: fit must be true or false")
    rng: tuple[float, float] | None = None
    if "range" in raw:
        r = raw["range"]
        if not isinstance(r, list) or len(r) != 2:
            raise ModelUsageError(f"{path}: figure {name!r}: range must be [low, high]")
        lo, hi = (_number(path, name, "range", x) for x in r)
        if not lo < hi:
            raise ModelUsageError(f"{path}: figure {name!r}: range [{lo}, {hi}] is empty")
        rng = (lo, hi)
    if fit and rng is None:
        raise ModelUsageError(
            f"{path}: figure {name!r} has fit = true but no range = [low, high] (its plausible physical range)"
        )
    if rng is not None and not fit:
        raise ModelUsageError(f"{path}: figure {name!r}: a range belongs to a fitted figure (fit = true)")
    if same_as is not None and (fit or rng is not None):
        raise ModelUsageError(f"{path}: figure {name!r}: a same_as figure is not fitted itself")
    fig = Figure(name, value, str(unit), source.strip(), fit, rng, same_as)
    if fit and not fig.in_range():
        raise ModelUsageError(
            f"{path}: figure {name!r}: value {value:g} lies outside its range {list(rng or ())}"
        )
    return fig


def parse_profile(text: str, path: str = "<string>", _seen: tuple[str, ...] = ()) -> Profile:
    """Parse a profile from TOML text; every required figure must be present (or inherited)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelUsageError(f"{path}: {e}") from None
    unknown = set(data) - {"profile", "figures", "extends"}
    if unknown:
        raise ModelUsageError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown))}; expected [profile], [figures.*]"
        )
    head = data.get("profile", {})
    if not isinstance(head, dict):
        raise ModelUsageError(f"{path}: [profile] must be a table")
    if "extends" in data:
        # ``extends = "altra"`` above every table: the same as in [profile].
        if "extends" in head:
            raise ModelUsageError(f"{path}: extends is given twice (top level and [profile])")
        head = {**head, "extends": data["extends"]}
    if "name" not in head:
        if "extends" not in head:
            raise ModelUsageError(f"{path}: missing [profile] table with a name")
        # An extending profile is named after its file unless it says otherwise.
        head = {**head, "name": Path(path).stem}
    bad = set(head) - {"name", "title", "arch", "cpu", "extends"}
    if bad:
        raise ModelUsageError(
            f"{path}: unknown [profile] key(s) {', '.join(sorted(bad))}; expected name, title, arch, cpu, extends"
        )
    parent: Profile | None = None
    extends = head.get("extends")
    if extends is not None:
        if not isinstance(extends, str) or not extends:
            raise ModelUsageError(f"{path}: extends must name a profile or a .toml path")
        base_dir = Path(path).parent if path != "<string>" else Path.cwd()
        parent = _load(extends, base_dir, (*_seen, path))
    raw_figs = data.get("figures", {})
    if not isinstance(raw_figs, dict):
        raise ModelUsageError(f"{path}: [figures] must hold one table per figure")
    figures = dict(parent.figures) if parent is not None else {}
    for name, raw in raw_figs.items():
        figures[name] = _parse_figure(path, name, raw, parent.figures.get(name) if parent else None)
    missing = [n for n in REQUIRED_FIGURES if n not in figures]
    if missing:
        raise ModelUsageError(f"{path}: missing figures {', '.join(missing)}")
    for n, fig in list(figures.items()):
        if fig.same_as is not None:
            target = figures[fig.same_as]
            if target.same_as is not None:
                raise ModelUsageError(
                    f"{path}: figure {n!r}: same_as {fig.same_as!r}, itself a same_as figure"
                )
            figures[n] = replace(fig, value=target.value)
    arch = str(head.get("arch", parent.arch if parent else "arm64"))
    cpu = head.get("cpu", parent.cpu if parent else None)
    return Profile(
        str(head["name"]),
        str(head.get("title", parent.title if parent else "")),
        {n: figures[n] for n in FIGURES},
        path,
        arch,
        None if cpu is None else str(cpu),
        None if extends is None else str(extends),
    )


def _load(name_or_path: str, base_dir: Path | None, seen: tuple[str, ...]) -> Profile:
    candidate = Path(name_or_path)
    if base_dir is not None and not candidate.is_absolute() and candidate.suffix == ".toml":
        candidate = base_dir / candidate
    if candidate.suffix == ".toml" or candidate.exists():
        path = candidate
    else:
        path = _profiles_dir() / f"{name_or_path}.toml"
        if not path.exists():
            raise ModelUsageError(
                f"unknown profile {name_or_path!r}; expected one of {', '.join(list_profiles())} or a .toml path"
            )
    if str(path) in seen:
        raise ModelUsageError(f"{path}: 'extends' loops back to itself ({' -> '.join((*seen, str(path)))})")
    try:
        text = path.read_text()
    except OSError as e:
        raise ModelUsageError(f"cannot read profile {path}: {e.strerror}") from None
    return parse_profile(text, str(path), seen)


def load_profile(name_or_path: str) -> Profile:
    """Load a shipped profile by name (``"altra"``) or a TOML file by path."""
    return _load(name_or_path, None, ())


def parse_set(items: list[str] | None) -> dict[str, float]:
    """``["dvm_sync=900", ...]`` (``--set``) -> ``{"dvm_sync": 900.0}``."""
    out: dict[str, float] = {}
    for item in items or []:
        name, eq, val = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ModelUsageError(f"--set {item!r}: expected FIGURE=VALUE, e.g. dvm_sync=900")
        try:
            value = float(val)
        except ValueError:
            raise ModelUsageError(f"--set {item!r}: {val!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ModelUsageError(f"--set {item!r}: expected a finite value >= 0")
        if name in out:
            raise ModelUsageError(f"--set {name}= given twice")
        out[name] = value
    return out
