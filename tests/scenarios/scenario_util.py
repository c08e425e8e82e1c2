"""Helpers shared by the scenario tests: one Machine per (backend, folio size).

A scenario runs on every backend and with anonymous folios of 4K (mTHP
never), 16K, 64K (mTHP always) and 2M (PMD THP, ``thp="always"``).  The
region a scenario maps is naturally aligned to its folio size, so every
folio of it is allocated at the enabled order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import contpte

ARCHES = ("generic", "arm64")
FOLIO_SIZES = ("4K", "16K", "64K", "2M")
PAGE = 4096
PMD_SIZE = 2 << 20


@dataclass(frozen=True)
class Setup:
    """One (backend, anonymous folio size) combination."""

    arch: str
    folio: str

    @property
    def folio_bytes(self) -> int:
        return {"4K": 4 << 10, "16K": 16 << 10, "64K": 64 << 10, "2M": 2 << 20}[self.folio]

    @property
    def order(self) -> int:
        return (self.folio_bytes // PAGE).bit_length() - 1

    @property
    def folio_pages(self) -> int:
        return self.folio_bytes // PAGE

    @property
    def pmd(self) -> bool:
        """Folios are PMD-mapped THPs."""
        return self.folio == "2M"

    @property
    def large(self) -> bool:
        return self.folio != "4K"

    @property
    def length(self) -> int:
        """Bytes a scenario maps: two folios at least, a multiple of the PMD size (so aligned)."""
        return 2 * PMD_SIZE if self.pmd else PMD_SIZE

    def machine(self, **kw: Any) -> contpte.Machine:
        kw.setdefault("memory", "64M")
        kw.setdefault("check", True)
        if self.folio == "2M":
            kw.setdefault("thp", "always")
        elif self.folio != "4K":
            kw.setdefault("mthp", {self.folio: "always"})
        return contpte.Machine(arch=self.arch, **kw)

    def populated(self, value: int = 1, **kw: Any) -> tuple[contpte.Machine, contpte.Process, int]:
        """A machine, a process and a private anonymous region written with ``value``."""
        m = self.machine(**kw)
        p = m.spawn()
        a = p.mmap(self.length)
        p.write(a, self.length, value)
        pm = p.pagemap(a, self.length)
        assert pm["present"].all()
        assert (pm["order"] == self.order).all(), f"expected order-{self.order} folios"
        return m, p, a


def delta(m: contpte.Machine, before: dict[str, int], name: str) -> int:
    """How much counter ``name`` grew since the snapshot ``before``."""
    return m.stats().get(name, 0) - before.get(name, 0)


def assert_checked(m: contpte.Machine) -> None:
    """The validators ran during the scenario and still pass now."""
    assert m.stats().get("check.runs", 0) > 0
    m.check()


def row(p: contpte.Process, addr: int) -> np.void:
    """The pagemap row of one page."""
    return p.pagemap(addr, PAGE)[0]
