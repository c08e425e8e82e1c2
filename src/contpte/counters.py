"""Counters: declared once, each with a unit and a description.

A counter name is either declared exactly (``pte.write``) or belongs to a
declared family (``tlbi.*``, ``contpte.unfold.*``, ``mthp.<size>.*``).
Every name has a small integer id, given when it is declared (family
members: when first named), and a ``Counters`` keeps one int64 per id in
an array, so the compiled core counts with one indexed add
(``counters.inc(FORK_PTES, nr)``).  ``Counters.add`` takes a name or an id
and refuses an undeclared name, so a typo cannot silently create a new
statistic.

Totals are formulas over counters (see ``TOTALS``), never counted twice.

Compiled (docs/core.md); module-level ids used by compiled code are C
variables: ``FORK_PTES = cython.declare(i64, declare("fork.ptes", ...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import cython
import numpy as np

from .errors import ModelUsageError

if not cython.compiled:
    from .cdefs import i64

__all__ = [
    "CounterSpec",
    "Counters",
    "declare",
    "declare_family",
    "declare_total",
    "counter_id",
    "counter_name",
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
_IDS: dict[str, int] = {}
_NAMES: list[str] = []


def _new_id(name: str) -> int:
    i = _IDS.get(name)
    if i is None:
        i = len(_NAMES)
        _IDS[name] = i
        _NAMES.append(name)
    return i


def declare(name: str, unit: str, description: str) -> int:
    """Declare one counter; returns its id (modules keep it as a constant)."""
    spec = CounterSpec(name, unit, description)
    old = DECLARED.get(name)
    if old is not None and old != spec:
        raise ModelUsageError(f"counter {name!r} declared twice with different meanings")
    DECLARED[name] = spec
    return _new_id(name)


def declare_family(prefix: str, unit: str, description: str, members: Iterable[str] = ()) -> str:
    """Declare a family: every counter named ``prefix + '.' + member``.

    ``members``: the members known in advance (they get their ids now);
    others are accepted when first named.
    """
    spec = CounterSpec(prefix, unit, description)
    old = FAMILIES.get(prefix)
    if old is not None and old != spec:
        raise ModelUsageError(f"counter family {prefix!r} declared twice with different meanings")
    FAMILIES[prefix] = spec
    for m in members:
        _new_id(f"{prefix}.{m}")
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


def counter_id(name: str) -> int:
    """The id of a counter name; a family member gets one when first named."""
    i = _IDS.get(name)
    if i is not None:
        return i
    describe(name)
    return _new_id(name)


def counter_name(i: int) -> str:
    """The name of counter id ``i``."""
    return _NAMES[i]


@cython.final
@cython.cclass
class Counters:
    """A set of counter values, one int64 per counter id.

    ``v`` is the array, sized for every id declared when it is made (and
    grown, through ``inc``/``add``, when a family member is first named
    later).  The compiled core counts with ``count(counters, ID, n)``
    (inlined from counters.pxd); everything else uses ``add`` with a name
    or an id.
    """

    def __init__(self) -> None:
        self.v = np.zeros(max(64, 2 * len(_NAMES)), dtype=np.int64)

    @cython.ccall
    def inc(self, i: i64, n: i64) -> None:
        """Add ``n`` to counter id ``i`` (the compiled core's hot path)."""
        if i >= self.v.shape[0]:
            self._grow(i)
        self.v[i] += n

    def _grow(self, i: int) -> None:
        new = np.zeros(max(2 * (i + 1), len(_NAMES)), dtype=np.int64)
        new[: self.v.shape[0]] = self.v
        self.v = new

    def add(self, name: str | int, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (a declared name or an id)."""
        self.inc(name if isinstance(name, int) else counter_id(name), n)

    def get(self, name: str, default: int = 0) -> int:
        i = _IDS.get(name)
        if i is None or i >= self.v.shape[0]:
            return default if i is None else 0
        return cython.cast(i64, self.v[i])

    def snapshot(self) -> dict[str, int]:
        """A plain dict of every non-zero counter."""
        vals = np.asarray(self.v)
        return {_NAMES[i]: cython.cast(i64, vals[i]) for i in np.flatnonzero(vals).tolist()}

    def names(self) -> list[str]:
        """Every counter name declared so far (family members once named)."""
        return list(_NAMES)

    def reset(self) -> None:
        np.asarray(self.v)[:] = 0

    def totals(self) -> dict[str, int]:
        snap = self.snapshot()
        return {name: int(f(snap)) for name, (_, f) in TOTALS.items()}

    @staticmethod
    def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
        """Counter deltas between two snapshots (non-zero only)."""
        keys: Iterable[str] = set(after) | set(before)
        out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        return {k: v for k, v in sorted(out.items()) if v}


if not cython.compiled:

    def count(c: Counters, i: int, n: int) -> None:
        """Add ``n`` to counter id ``i`` (compiled: the inline function of counters.pxd)."""
        c.v[i] += n


def _family_sum(prefix: str) -> Callable[[Mapping[str, int]], int]:
    dotted = prefix + "."

    def total(snap: Mapping[str, int]) -> int:
        return sum(v for k, v in snap.items() if k.startswith(dotted))

    return total


# Families and totals shared by several layers.
declare_family("tlbi", "instructions", "TLB maintenance instructions issued, by Arm (or x86) name")
declare_family("dsb", "barriers", "DSB barriers issued, by shareability domain")
PTE_READ = cython.declare(
    i64, declare("pte.read", "descriptor reads", "page-table descriptor loads by software (kernel)")
)
PTE_WRITE = cython.declare(
    i64,
    declare("pte.write", "descriptor writes", "page-table descriptor stores by software, atomics included"),
)
PTE_ATOMIC = cython.declare(
    i64,
    declare(
        "pte.atomic", "atomic RMWs", "atomic read-modify-writes of descriptors (xchg/cmpxchg) by software"
    ),
)
PMD_WRITE = cython.declare(
    i64, declare("pmd.write", "descriptor writes", "level-2 (PMD) descriptor stores by software")
)
declare_total("tlbi.total", "all TLBI instructions", _family_sum("tlbi"))
declare_total("dsb.total", "all DSB barriers", _family_sum("dsb"))
