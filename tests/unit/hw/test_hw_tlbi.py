"""TLB maintenance instructions: scope, shareability, ASID, TTL, ranges, x86 forms."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import map_pages
from contpte.errors import ModelUsageError
from contpte.hw import PRESETS, AddressSpace, Hardware
from contpte.hw.hardware import tlbi_range_pages

MakeHw = Callable[..., Hardware]


def warm(hw: Hardware, s: AddressSpace, va: int, nr: int) -> None:
    """Fill every CPU's TLB with ``nr`` pages from ``va``."""
    for cpu in range(hw.ncpus):
        assert hw.access(cpu, s, va, nr, False) == (nr, None)


def held(hw: Hardware) -> list[int]:
    return [len(t) for t in hw.tlbs]


def setup(make_hw: MakeHw, **kw: object) -> tuple[Hardware, AddressSpace, AddressSpace]:
    hw = make_hw(checker=False, **kw)
    a = hw.new_space(1, "a")
    b = hw.new_space(2, "b")
    map_pages(hw, a, 0, 100, 4)
    map_pages(hw, b, 0, 200, 4)
    warm(hw, a, 0, 4)
    warm(hw, b, 0, 4)
    return hw, a, b


def test_vale1is_broadcasts_by_asid_and_va(make_hw: MakeHw) -> None:
    hw, _a, _b = setup(make_hw)
    hw.tlbi("VALE1IS", asid=1, va=0x1000)
    assert held(hw) == [7, 7, 7, 7]
    assert hw.counters.get("tlbi.VALE1IS") == 1


def test_local_forms_only_on_current_cpu(make_hw: MakeHw) -> None:
    hw, _a, _b = setup(make_hw)
    hw.current_cpu = 2
    hw.tlbi("VAE1", asid=1, va=0)
    assert held(hw) == [8, 8, 7, 8]
    hw.tlbi("ASIDE1", asid=2)
    assert held(hw) == [8, 8, 3, 8]


def test_aside1is_vaae1is_vmalle1is(make_hw: MakeHw) -> None:
    hw, _a, _b = setup(make_hw)
    hw.tlbi("ASIDE1IS", asid=1)
    assert held(hw) == [4, 4, 4, 4]
    hw.tlbi("VAAE1IS", va=0x2000)
    assert held(hw) == [3, 3, 3, 3]
    hw.tlbi("VAALE1IS", va=0x3000)
    assert held(hw) == [2, 2, 2, 2]
    hw.tlbi("VMALLE1IS")
    assert held(hw) == [0, 0, 0, 0]


def test_ttl_hint(make_hw: MakeHw) -> None:
    hw, _a, _b = setup(make_hw)
    hw.tlbi("VALE1IS", asid=1, va=0, ttl=2)  # wrong level: need not invalidate
    assert held(hw) == [8, 8, 8, 8]
    hw.tlbi("VALE1IS", asid=1, va=0, ttl=0b1011)  # 64K granule: wrong granule
    assert held(hw) == [8, 8, 8, 8]
    hw.tlbi("VALE1IS", asid=1, va=0, ttl=0b0111)  # 4K, level 3
    assert held(hw) == [7, 7, 7, 7]
    hw.tlbi("VALE1IS", asid=1, va=0x1000, ttl=3)
    assert held(hw) == [6, 6, 6, 6]


def test_range_tlbi(make_hw: MakeHw) -> None:
    assert [
        tlbi_range_pages(0, 0),
        tlbi_range_pages(0, 7),
        tlbi_range_pages(1, 0),
        tlbi_range_pages(3, 31),
    ] == [
        2,
        16,
        64,
        2097152,
    ]
    with pytest.raises(ModelUsageError):
        tlbi_range_pages(4, 0)
    hw = make_hw(checker=False, features=PRESETS["neoverse-v2"])
    a = hw.new_space(1, "a")
    map_pages(hw, a, 0, 100, 40)
    warm(hw, a, 0, 40)
    hw.tlbi_range("RVALE1IS", 1, 0x2000, 0, 7)  # 16 pages from page 2
    assert held(hw) == [24, 24, 24, 24]
    assert hw.counters.get("tlbi.RVALE1IS") == 1
    hw.tlbi_range("RVAE1", 1, 0, 1, 0)  # 64 pages, local
    assert held(hw) == [0, 24, 24, 24]


def test_range_needs_feat_tlbirange(make_hw: MakeHw) -> None:
    hw = make_hw(features=PRESETS["neoverse-n1"])
    with pytest.raises(ModelUsageError, match="FEAT_TLBIRANGE"):
        hw.tlbi_range("RVALE1IS", 1, 0, 0, 7)


def test_bad_operands(make_hw: MakeHw) -> None:
    hw = make_hw()
    with pytest.raises(ModelUsageError):
        hw.tlbi("VALE2IS", asid=1, va=0)
    with pytest.raises(ModelUsageError):
        hw.tlbi("VALE1IS", va=0)
    with pytest.raises(ModelUsageError):
        hw.tlbi("VALE1IS", asid=1)
    with pytest.raises(ModelUsageError):
        hw.dsb("everything")


def test_dsb_and_ipi_are_counted(make_hw: MakeHw) -> None:
    hw = make_hw()
    hw.dsb("ishst")
    hw.dsb("ish")
    hw.dsb("ish")
    hw.ipi(0, 3)
    assert hw.counters.get("dsb.ish") == 2 and hw.counters.get("dsb.ishst") == 1
    assert hw.counters.get("ipi.sent") == 1
    with pytest.raises(ModelUsageError):
        hw.ipi(0, 4)


def test_x86_invlpg_and_invpcid_are_local(make_hw: MakeHw) -> None:
    hw, _a, _b = setup(make_hw, fmt="flat")
    hw.invlpg(1, 1, 0x1000)
    assert held(hw) == [8, 7, 8, 8]
    hw.invpcid(3, 2)
    assert held(hw) == [8, 7, 8, 4]
    assert hw.counters.get("tlbi.INVLPG") == 1 and hw.counters.get("tlbi.INVPCID") == 1


def test_dvm_sync_counts_completing_dsbs_after_broadcast_tlbis(make_hw: MakeHw) -> None:
    """A DSB that completes this CPU's broadcast TLBIs is a DVM Sync; others are plain barriers."""
    hw, _a, _b = setup(make_hw)
    hw.dsb("ish")  # nothing outstanding
    hw.tlbi("VALE1", asid=1, va=0x1000)  # local: no DVM message
    hw.dsb("ish")
    assert hw.counters.get("dvm.sync") == 0
    hw.tlbi("VALE1IS", asid=1, va=0x1000)
    hw.tlbi("VALE1IS", asid=1, va=0x2000)
    hw.dsb("ishst")  # orders stores only
    assert hw.counters.get("dvm.sync") == 0
    hw.current_cpu = 1
    hw.dsb("ish")  # another CPU's DSB does not complete CPU 0's TLBIs
    assert hw.counters.get("dvm.sync") == 0
    hw.current_cpu = 0
    hw.dsb("ish")
    hw.dsb("ish")
    assert hw.counters.get("dvm.sync") == 1
    hw.tlbi("ASIDE1IS", asid=2)
    hw.dsb("sy")
    assert hw.counters.get("dvm.sync") == 2
