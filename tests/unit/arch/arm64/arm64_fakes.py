"""Test doubles for the arm64 backend: a small fake of the Hardware API, mm/vma stand-ins.

The fake implements exactly the part of ``hw.Hardware`` the arch layer uses
(docs/INTERNALS.md "hw: the Hardware object"): ``tlbi``, ``tlbi_range``,
``dsb``, ``features``, ``counters``, ``checker``.  It logs every
instruction, and every descriptor store, in one ordered event list so tests
can check break-before-make ordering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contpte.arch.arm64 import Arm64Pgtable
from contpte.arch.pgtable import PtePtr
from contpte.counters import Counters
from contpte.hw.tables import AddressSpace, PteTable


@dataclass
class FakeFeatures:
    tlbirange: bool = False
    kpti: bool = False
    bbm_level: int = 0
    bbml2_noabort: bool = False
    hafdbs: int = 2


class FakeHw:
    """Records TLBI/DSB instructions and descriptor stores, in order."""

    def __init__(self, features: FakeFeatures | None = None) -> None:
        self.counters = Counters()
        self.features = features or FakeFeatures()
        self.checker = None
        self.current_cpu = 0
        self.events: list[tuple[Any, ...]] = []

    def tlbi(self, op: str, asid: int | None = None, va: int | None = None, ttl: int = 0) -> None:
        self.counters.add(f"tlbi.{op}")
        self.events.append(("tlbi", op, asid, va, ttl))

    def tlbi_range(self, op: str, asid: int, va: int, scale: int, num: int, ttl: int = 0) -> None:
        assert 0 <= scale <= 3 and 0 <= num <= 31, (scale, num)
        self.counters.add(f"tlbi.{op}")
        self.events.append(("tlbi_range", op, asid, va, scale, num, ttl))

    def dsb(self, domain: str) -> None:
        self.counters.add(f"dsb.{domain}")
        self.events.append(("dsb", domain))

    # -- store observer (AddressSpace.observers) -------------------------
    def on_store(self, table: PteTable, idx: int, old: np.ndarray, new: np.ndarray) -> None:
        self.events.append(("store", idx, [int(v) for v in new]))

    # -- helpers for tests -----------------------------------------------
    def tlbis(self) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] in ("tlbi", "tlbi_range")]

    def kinds(self) -> list[str]:
        out = []
        for e in self.events:
            if e[0] == "store":
                out.append("store")
            elif e[0] == "dsb":
                out.append("dsb." + e[1])
            else:
                out.append("tlbi")
        return out


@dataclass
class FakeMm:
    space: AddressSpace
    cpumask: set[int] = field(default_factory=lambda: {0})


@dataclass
class FakeVma:
    vm_mm: Any
    vm_start: int = 0
    vm_end: int = 1 << 40
    vm_flags: int = 0


@dataclass
class FakeGather:
    mm: Any
    start: int = 0
    end: int = 0
    fullmm: bool = False
    need_flush_all: bool = False
    freed_tables: bool = False
    cleared_ptes: bool = False
    cleared_pmds: bool = False


class Folios:
    """A toy mem_map: registered folios, everything else order-0."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def add(self, first_pfn: int, nr: int) -> None:
        self.ranges.append((first_pfn, nr))

    def lookup(self, pfn: int) -> tuple[int, int]:
        for first, nr in self.ranges:
            if first <= pfn < first + nr:
                return first, nr
        return pfn, 1


class Env:
    """An arm64 backend on a fake hw with one user mm."""

    def __init__(self, page_shift: int = 12, features: FakeFeatures | None = None, **options: Any) -> None:
        self.hw = FakeHw(features)
        self.arch = Arm64Pgtable(self.hw, page_shift=page_shift, **options)
        self.folios = Folios()
        self.arch.folio_lookup = self.folios.lookup
        self.space = AddressSpace(
            asid=7, page_shift=page_shift, counters=self.hw.counters, observers=[self.hw]
        )
        self.mm = FakeMm(self.space)
        self.vma = FakeVma(self.mm)
        self.table = self.space.alloc_pte_table(1)
        self.base = self.table.va(0)

    @property
    def c(self) -> Counters:
        return self.hw.counters

    def ptep(self, idx: int) -> PtePtr:
        return PtePtr(self.table, idx)

    def addr(self, idx: int) -> int:
        return self.base + idx * self.arch.PAGE_SIZE

    def raw(self, idx: int, nr: int = 1) -> list[int]:
        return [int(v) for v in self.table.entries[idx : idx + nr]]

    def poke(self, idx: int, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Change a descriptor behind software's back (a hardware A/D update, a bug)."""
        self.table.poke(idx, (int(self.table.entries[idx]) | set_bits) & ~clear_bits)

    def prot(self, write: bool = True, dirty: bool = False, young: bool = True) -> int:
        from contpte.arch.arm64.pgtable_prot import PAGE_SHARED, VM_READ, VM_SHARED, VM_WRITE

        a = self.arch
        p = a.vm_get_page_prot(VM_READ | VM_WRITE | VM_SHARED) if write else a.vm_get_page_prot(VM_READ)
        assert not write or p == PAGE_SHARED
        if dirty:
            p = a.pte_mkdirty(p)
        if not young:
            p = a.pte_mkold(p)
        return p

    def map(self, idx: int, pfn: int, nr: int, folio: tuple[int, int] | None = None, **kw: Any) -> None:
        """set_ptes() ``nr`` pages; registers the folio (default: exactly these pages)."""
        first, n = folio if folio is not None else (pfn, nr)
        self.folios.add(first, n)
        self.arch.set_ptes(
            self.mm, self.addr(idx), self.ptep(idx), self.arch.pfn_pte(pfn, self.prot(**kw)), nr
        )

    def clear_log(self) -> None:
        self.hw.events.clear()
        self.hw.counters.reset()
