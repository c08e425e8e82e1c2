"""Helpers for the hardware tests: a small machine and ways to map pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from contpte.hw.format import WS_DIRTY
from contpte.hw.hardware import Hardware
from contpte.hw.tables import AddressSpace


def ptep_of(hw: Hardware, space: AddressSpace, va: int) -> int:
    """The ``pte_t *`` of ``va`` (its level-3 table allocated if needed)."""
    vpn = va >> hw.page_shift
    slot = space.alloc_pte_table(vpn >> (hw.page_shift - 3))
    return (slot << hw.pool.shift) | (vpn & (hw.ptrs_per_pte - 1))


def store_many(hw: Hardware, ptep: int, values: Any) -> None:
    """Software stores of ``values`` from ``ptep`` on, one descriptor at a time."""
    for i, v in enumerate(values):
        hw.pool.store(ptep + i, int(v))


def map_pages(
    hw: Hardware,
    space: AddressSpace,
    va: int,
    pfn: int,
    nr: int,
    *,
    cont: bool = False,
    write: int = WS_DIRTY,
    af: bool = True,
    user: bool = True,
) -> int:
    """Store ``nr`` page descriptors for ``va`` -> ``pfn`` (one table, software stores); the first ptep."""
    ptep = ptep_of(hw, space, va)
    store_many(
        hw, ptep, [hw.fmt.mk_page(pfn + i, cont=cont, write=write, af=af, user=user) for i in range(nr)]
    )
    return ptep


def release(hw: Hardware, space: AddressSpace, va: int) -> None:
    """The kernel drops the PTL of the table of ``va``."""
    assert hw.checker is not None
    hw.checker.ptl_release(space, space.pte_table(va >> hw.pmd_shift))


def tlb_flush_range(hw: Hardware, asid: int, va: int, nr: int, op: str = "VALE1IS") -> None:
    """Per-page TLBIs then DSB ISH (the Linux sequence without FEAT_TLBIRANGE)."""
    hw.dsb("ishst")
    for i in range(nr):
        hw.tlbi(op, asid=asid, va=va + (i << hw.page_shift), ttl=3)
    hw.dsb("ish")


@pytest.fixture
def make_hw() -> Callable[..., Hardware]:
    """Build a small Hardware: 4096 frames, 4 CPUs, Neoverse N1 unless told."""

    def make(**kw: Any) -> Hardware:
        kw.setdefault("nr_frames", 4096)
        return Hardware(**kw)

    return make
