"""Helpers for the hardware tests: a small machine and ways to map pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from contpte.hw import AddressSpace, Hardware
from contpte.hw.format import WS_DIRTY


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
) -> None:
    """Store ``nr`` page descriptors for ``va`` -> ``pfn`` (one table, software stores)."""
    vpn = va >> hw.page_shift
    table = space.alloc_pte_table(vpn >> (hw.page_shift - 3))
    idx = vpn & (hw.ptrs_per_pte - 1)
    vals = np.array(
        [hw.fmt.mk_page(pfn + i, cont=cont, write=write, af=af, user=user) for i in range(nr)],
        dtype=np.uint64,
    )
    table.store_many(idx, vals)


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
