"""Counters: declared once, each with a unit and a description.

A counter name is either declared exactly (``pte.write``) or belongs to a
declared family (``tlbi.*``, ``contpte.unfold.*``, ``mthp.<size>.*``) whose
members appear as they are first counted.  ``Counters.add`` refuses an
undeclared name, so a typo cannot silently create a new statistic.

Totals are formulas over counters (see ``TOTALS``), never counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from .errors import ModelUsageError

__all__ = [
    "CounterSpec",
    "Counters",
    "declare",
    "declare_family",
    "DECLARED",
    "FAMILIES",
    "TOTALS",
    "describe",
]


@dataclass(frozen=True)
class CounterSpec:
    """One declared counter (or family of counters)."""

    name: str
    unit: str
    description: str


DECLARED: dict[str, CounterSpec] = {}
FAMILIES: dict[str, CounterSpec] = {}
TOTALS: dict[str, tuple[str, Callable[[Mapping[str, int]], int]]] = {}


def declare(name: str, unit: str, description: str) -> str:
    """Declare one counter; returns its name (so modules can keep a constant)."""
    spec = CounterSpec(name, unit, description)
    old = DECLARED.get(name)
    if old is not None and old != spec:
        raise ModelUsageError(f"counter {name!r} declared twice with different meanings")
    DECLARED[name] = spec
    return name


def declare_family(prefix: str, unit: str, description: str) -> str:
    """Declare a family: every counter named ``prefix + '.' + member``."""
    spec = CounterSpec(prefix, unit, description)
    old = FAMILIES.get(prefix)
    if old is not None and old != spec:
        raise ModelUsageError(f"counter family {prefix!r} declared twice with different meanings")
    FAMILIES[prefix] = spec
    return prefix


def declare_total(name: str, description: str, formula: Callable[[Mapping[str, int]], int]) -> None:
    """Declare a total: a formula over counters, computed by ``Counters.totals``."""
    TOTALS[name] = (description, formula)


def describe(name: str) -> CounterSpec:
    """Return the spec of a counter name (exact or by family)."""
    spec = DECLARED.get(name)
    if spec is not None:
        return spec
    prefix = name
    while "." in prefix:
        prefix = prefix.rsplit(".", 1)[0]
        fam = FAMILIES.get(prefix)
        if fam is not None:
            return fam
    raise ModelUsageError(f"counter {name!r} is not declared (see contpte.counters)")


class Counters:
    """A set of counter values; names must be declared.

    Hot paths call ``add`` with a declared constant; the name check is a dict
    lookup cached per name.
    """

    __slots__ = ("values", "_known")

    def __init__(self) -> None:
        self.values: defaultdict[str, int] = defaultdict(int)
        self._known: set[str] = set()

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        if name not in self._known:
            describe(name)
            self._known.add(name)
        self.values[name] += n

    def get(self, name: str) -> int:
        return self.values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A plain dict copy of every non-zero counter."""
        return {k: v for k, v in self.values.items() if v}

    def reset(self) -> None:
        self.values.clear()

    def totals(self) -> dict[str, int]:
        snap = self.snapshot()
        return {name: int(f(snap)) for name, (_, f) in TOTALS.items()}

    @staticmethod
    def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
        """Counter deltas between two snapshots (non-zero only)."""
        keys: Iterable[str] = set(after) | set(before)
        out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        return {k: v for k, v in sorted(out.items()) if v}


def _family_sum(prefix: str) -> Callable[[Mapping[str, int]], int]:
    dotted = prefix + "."

    def total(snap: Mapping[str, int]) -> int:
        return sum(v for k, v in snap.items() if k.startswith(dotted))

    return total


# Families and totals shared by several layers.
declare_family("tlbi", "instructions", "TLB maintenance instructions issued, by Arm (or x86) name")
declare_family("dsb", "barriers", "DSB barriers issued, by shareability domain")
declare("pte.read", "descriptor reads", "page-table descriptor loads by software (kernel)")
declare("pte.write", "descriptor writes", "page-table descriptor stores by software, atomics included")
declare("pte.atomic", "atomic RMWs", "atomic read-modify-writes of descriptors (xchg/cmpxchg) by software")
declare("pmd.write", "descriptor writes", "level-2 (PMD) descriptor stores by software")
declare_total("tlbi.total", "all TLBI instructions", _family_sum("tlbi"))
declare_total("dsb.total", "all DSB barriers", _family_sum("dsb"))
