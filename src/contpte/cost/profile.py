"""Machine profiles: per-operation costs, each figure with its provenance.

A profile is a TOML data file in ``contpte/cost/profiles/``.  Every figure is
a table with a ``value``, a ``unit`` and a ``source`` that says where the
number comes from (a measurement, a datasheet, or an estimate and its
reasoning).  A figure marked ``fit = true`` is a free parameter of the cost
model: its ``value`` is only the starting point, and ``contpte calibrate``
fits it on the calibration rows of ``numbers.md``.

    [profile]
    name = "altra"
    title = "..."

    [figures.pte_read]
    value = 1.0
    unit = "ns"
    source = "estimate: ..."
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError

__all__ = ["Figure", "Profile", "REQUIRED_FIGURES", "load_profile", "list_profiles"]

REQUIRED_FIGURES: dict[str, str] = {
    "cores": "cores",
    "pte_read": "ns",
    "pte_write": "ns",
    "pte_atomic": "ns",
    "pmd_write": "ns",
    "fault_entry": "ns",
    "page_zero": "ns",
    "page_copy": "ns",
    "folio_alloc": "ns",
    "folio_free": "ns",
    "rmap_update": "ns",
    "rmap_page": "ns",
    "ref_update": "ns",
    "tlb_walk": "ns",
    "tlbi_local": "ns",
    "tlbi_bcast_per_core": "ns",
    "tlbi_contention_per_core": "ns",
    "dsb_ish": "ns",
    "dsb_ishst": "ns",
    "dsb_nsh": "ns",
    "ipi": "ns",
    "task_fork_exit": "ns",
    "syscall": "ns",
}
"""Every profile defines these figures, in these units."""


@dataclass(frozen=True)
class Figure:
    """One number of a profile and where it comes from."""

    name: str
    value: float
    unit: str
    source: str
    fit: bool = False


@dataclass(frozen=True)
class Profile:
    """A machine's per-operation costs (ns) and its broadcast-TLBI model."""

    name: str
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    path: str = ""

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
        return replace(self, figures=figures)


def _profiles_dir() -> Path:
    return Path(str(resources.files("contpte.cost") / "profiles"))


def list_profiles() -> list[str]:
    """Names of the profiles shipped with contpte."""
    return sorted(p.stem for p in _profiles_dir().glob("*.toml"))


def _parse_figure(path: str, name: str, raw: Any) -> Figure:
    if not isinstance(raw, dict):
        raise ModelUsageError(f"{path}: figure {name!r} must be a table with value, unit and source")
    missing = [k for k in ("value", "unit", "source") if k not in raw]
    if missing:
        raise ModelUsageError(f"{path}: figure {name!r} lacks {', '.join(missing)}")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelUsageError(f"{path}: figure {name!r}: value {value!r} is not a number")
    if value < 0:
        raise ModelUsageError(f"{path}: figure {name!r}: negative value {value!r}")
    source = raw["source"]
    if not isinstance(source, str) or not source.strip():
        raise ModelUsageError(f"{path}: figure {name!r} has an empty source")
    unit = raw["unit"]
    want = REQUIRED_FIGURES.get(name)
    if want is not None and unit != want:
        raise ModelUsageError(f"{path}: figure {name!r} is in {unit!r}, expected {want!r}")
    extra = set(raw) - {"value", "unit", "source", "fit"}
    if extra:
        raise ModelUsageError(f"{path}: figure {name!r}: unknown keys {sorted(extra)}")
    return Figure(name, float(value), str(unit), source.strip(), bool(raw.get("fit", False)))


def parse_profile(text: str, path: str = "<string>") -> Profile:
    """Parse a profile from TOML text; every required figure must be present."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelUsageError(f"{path}: {e}") from None
    head = data.get("profile")
    if not isinstance(head, dict) or "name" not in head:
        raise ModelUsageError(f"{path}: missing [profile] table with a name")
    raw_figs = data.get("figures")
    if not isinstance(raw_figs, dict):
        raise ModelUsageError(f"{path}: missing [figures] tables")
    figures = {name: _parse_figure(path, name, raw) for name, raw in raw_figs.items()}
    missing = sorted(set(REQUIRED_FIGURES) - set(figures))
    if missing:
        raise ModelUsageError(f"{path}: missing figures {', '.join(missing)}")
    return Profile(str(head["name"]), str(head.get("title", "")), figures, path)


def load_profile(name_or_path: str) -> Profile:
    """Load a shipped profile by name (``"altra"``) or a TOML file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        path = candidate
    else:
        path = _profiles_dir() / f"{name_or_path}.toml"
        if not path.exists():
            raise ModelUsageError(
                f"unknown profile {name_or_path!r}; expected one of {', '.join(list_profiles())} or a .toml path"
            )
    try:
        text = path.read_text()
    except OSError as e:
        raise ModelUsageError(f"cannot read profile {path}: {e.strerror}") from None
    return parse_profile(text, str(path))
