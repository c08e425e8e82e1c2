"""TLB maintenance instructions: scope, shareability, ASID, TTL, ranges, x86 forms."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import map_pages
from contpte.errors import ModelUsageError
from contpte.hw import tlbi as T
from contpte.hw.features import PRESETS
from contpte.hw.hardware import Hardware
from contpte.hw.tables import AddressSpace
from contpte.hw.tlbi import tlbi_range_pages

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


def test_int_coded_entry_points_equal_the_named_ones(make_hw: MakeHw) -> None:
    """``tlbi_op``/``tlbi_range_op``/``dsb_op`` with ``contpte.hw.tlbi`` codes do what the names do."""
    assert T.TLBI_VALE1IS == T.TLBI_VALE1 | T.TLBI_IS == T.tlbi_code("VALE1IS")
    assert T.tlbi_name(T.TLBI_RVAE1IS) == "RVAE1IS" and T.tlbi_name(T.TLBI_ASIDE1) == "ASIDE1"
    assert T.DSB_DOMAINS[T.DSB_ISH] == "ish" and T.dsb_code("nshst") == T.DSB_NSHST
    assert T.tlbi_broadcast(T.TLBI_VAE1 | T.TLBI_OS) and not T.tlbi_broadcast(T.TLBI_VAE1)
    assert T.tlbi_scope(T.TLBI_ASIDE1IS) == T.SCOPE_ASID and T.tlbi_scope(T.TLBI_VMALLE1) == T.SCOPE_ALL
    assert T.tlbi_last_level(T.TLBI_RVALE1IS) and not T.tlbi_by_asid(T.TLBI_VAAE1IS)
    assert not T.tlbi_valid(T.TLBI_VAE1 | T.TLBI_IS | T.TLBI_OS) and not T.tlbi_valid(
        T.TLBI_INVLPG | T.TLBI_IS
    )
    by_name, _, _ = setup(make_hw)
    by_code, _, _ = setup(make_hw)
    by_name.current_cpu = by_code.current_cpu = 1
    by_name.tlbi("VAE1", asid=1, va=0x1000)
    by_code.tlbi_op(T.TLBI_VAE1, 1, 0x1000, 0)
    by_name.tlbi("VALE1IS", asid=2, va=0x2000, ttl=3)
    by_code.tlbi_op(T.TLBI_VALE1IS, 2, 0x2000, 3)
    by_name.tlbi("VMALLE1")
    by_code.tlbi_op(T.TLBI_VMALLE1, -1, -1, 0)
    by_name.dsb("ish")
    by_code.dsb_op(T.DSB_ISH)
    assert [t.snapshot() for t in by_name.tlbs] == [t.snapshot() for t in by_code.tlbs]
    assert by_name.counters.snapshot() == by_code.counters.snapshot()
    with pytest.raises(ModelUsageError):
        by_code.tlbi_op(T.TLBI_RVALE1IS, 1, 0, 0)  # a range op needs tlbi_range_op
    with pytest.raises(ModelUsageError):
        by_code.tlbi_op(T.TLBI_VALE1IS, -1, 0, 0)  # no ASID
    with pytest.raises(ModelUsageError):
        by_code.tlbi_op(T.TLBI_VALE1IS, 1, -1, 0)  # no VA
    with pytest.raises(ModelUsageError):
        by_code.dsb_op(8)
    v2 = make_hw(checker=False, features=PRESETS["neoverse-v2"])
    a = v2.new_space(1, "a")
    map_pages(v2, a, 0, 100, 40)
    warm(v2, a, 0, 40)
    v2.tlbi_range_op(T.TLBI_RVALE1IS, 1, 0x2000, 0, 7, 0)
    assert held(v2) == [24, 24, 24, 24] and v2.counters.get("tlbi.RVALE1IS") == 1
    with pytest.raises(ModelUsageError):
        v2.tlbi_range_op(T.TLBI_VALE1IS, 1, 0, 0, 7, 0)


def test_invalidation_by_probe_and_by_scan_agree(make_hw: MakeHw) -> None:
    """A short range probes the covered addresses, a long one scans every entry: same result."""
    for npages in (1, 3, 40, 700, 5000):
        hw = make_hw(checker=False, adversarial_tlb=True)
        s = hw.new_space(1, "a")
        for t in range(4):
            map_pages(hw, s, t << 21, 512 * t, 512, cont=t % 2 == 1)
        warm(hw, s, 0, 2048)
        before = {(e.vbase, e.npages) for e in hw.tlbs[0]}
        for cpu_tlb in hw.tlbs:
            cpu_tlb.invalidate_range(1, 5, npages, 0)
        after = {(e.vbase, e.npages) for e in hw.tlbs[0]}
        gone = {(v, n) for v, n in before if v < 5 + npages and v + n > 5}
        assert after == before - gone, npages


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
