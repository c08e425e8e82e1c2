"""The walker and the access path: FEAT_HAFDBS, permissions, blocks, Contiguous reach."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from conftest import map_pages, ptep_of
from contpte.errors import ModelUsageError
from contpte.hw.features import PRESETS, CpuFeatures
from contpte.hw.format import WS_CLEAN, WS_DIRTY, WS_NONE
from contpte.hw.hardware import Hardware, HwFault

MakeHw = Callable[..., Hardware]


def feat(hafdbs: int) -> CpuFeatures:
    return CpuFeatures(name=f"hafdbs{hafdbs}", hafdbs=hafdbs)


def test_translation_faults(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    assert hw.access(0, s, 0x1000, 1, False) == (0, HwFault("translation", 0x1000, 2, False))
    map_pages(hw, s, 0, 10, 1)
    done, fault = hw.access(0, s, 0, 3, True, 9)
    assert done == 1 and fault == HwFault("translation", 0x1000, 3, True)
    assert hw.memory.data[10] == 9
    assert hw.counters.get("fault.translation") == 2


def test_read_and_write_values(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0x10000, 100, 8)
    assert hw.access(1, s, 0x10000, 8, True, np.arange(8, dtype=np.uint64) + 50) == (8, None)
    out = np.zeros(8, dtype=np.uint64)
    assert hw.access(2, s, 0x10000, 8, False, out=out) == (8, None)
    assert out.tolist() == list(range(50, 58))
    assert hw.translate(0, s, 0x13000, False) == 103


def test_access_flag_without_hafdbs_faults(make_hw: MakeHw) -> None:
    hw = make_hw(features=feat(0))
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 1, af=False)
    assert hw.access(0, s, 0, 1, False) == (0, HwFault("access_flag", 0, 3, False))
    assert len(hw.tlbs[0]) == 0  # AF=0 descriptors are never cached


def test_access_flag_set_by_hardware(make_hw: MakeHw) -> None:
    hw = make_hw(features=feat(1))
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 1, af=False)
    writes = hw.counters.get("pte.write")
    assert hw.access(0, s, 0, 1, False) == (1, None)
    assert hw.fmt.af(hw.pool.peek(ptep_of(hw, s, 0)))
    assert hw.counters.get("hw.af_update") == 1
    assert hw.counters.get("pte.write") == writes  # not a software store


def test_dirty_state(make_hw: MakeHw) -> None:
    # HAFDBS=1: a write through writable-clean is a Permission fault
    hw = make_hw(features=feat(1))
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 1, write=WS_CLEAN)
    assert hw.access(0, s, 0, 1, True, 1) == (0, HwFault("permission", 0, 3, True))
    # HAFDBS=2: hardware clears AP[2] instead
    hw = make_hw(features=feat(2))
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 1, write=WS_CLEAN)
    assert hw.access(0, s, 0, 1, True, 1) == (1, None)
    assert hw.fmt.write_state(hw.pool.peek(ptep_of(hw, s, 0))) == WS_DIRTY
    assert hw.counters.get("hw.dirty_update") == 1


def test_read_only_and_non_user(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 1, write=WS_NONE)
    map_pages(hw, s, 0x1000, 11, 1, user=False)
    assert hw.access(0, s, 0, 1, False) == (1, None)
    assert hw.access(0, s, 0, 1, True, 1) == (0, HwFault("permission", 0, 3, True))
    assert hw.access(0, s, 0x1000, 1, False)[1] == HwFault("permission", 0x1000, 3, False)


def test_write_hit_on_clean_entry_rewalks(make_hw: MakeHw) -> None:
    """RSGJBL: a stale writable-clean entry cannot write after software wrprotect."""
    hw = make_hw()
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 1, write=WS_CLEAN)
    assert hw.access(0, s, 0, 1, False) == (1, None)  # fill a clean entry
    hw.pool.store(ptep_of(hw, s, 0), hw.fmt.mk_page(10, write=WS_NONE))  # wrprotect, no TLBI
    walks = hw.counters.get("tlb.walk")
    assert hw.access(0, s, 0, 1, True, 5) == (0, HwFault("permission", 0, 3, True))
    assert hw.counters.get("tlb.walk") == walks + 1
    assert hw.memory.data[10] == 0


def test_contiguous_block_is_one_entry(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0x10000, 32, 16, cont=True)
    assert hw.access(0, s, 0x10000, 16, False) == (16, None)
    assert len(hw.tlbs[0]) == 1
    (e,) = list(hw.tlbs[0])
    assert (e.vbase, e.npages, e.pfn_base) == (0x10, 16, 32)
    assert hw.counters.get("tlb.miss") == 1 and hw.counters.get("tlb.hit") == 15
    # without contig_tlb the same block is 16 entries
    hw = make_hw(features=CpuFeatures(name="nocont", contig_tlb=False))
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0x10000, 32, 16, cont=True)
    assert hw.access(0, s, 0x10000, 16, False) == (16, None)
    assert len(hw.tlbs[0]) == 16


def test_hw_update_lands_on_the_producing_descriptor(make_hw: MakeHw) -> None:
    """IQDCMP: the AF update lands on one descriptor of the block, chosen at random."""
    landed = set()
    for seed in range(40):
        hw = make_hw(seed=seed)
        s = hw.new_space(1, "p")
        p0 = map_pages(hw, s, 0x10000, 32, 16, cont=True, af=False)
        assert hw.access(0, s, 0x10000, 1, False) == (1, None)
        afs = [hw.fmt.af(hw.pool.peek(p0 + i)) for i in range(16)]
        assert sum(afs) == 1
        (e,) = list(hw.tlbs[0])
        assert afs[e.ptep - p0]
        landed.add(e.ptep)
    assert len(landed) > 4


def test_level2_block(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    s.pmd_store(1, hw.fmt.mk_block(1024, write=WS_CLEAN))
    assert hw.access(0, s, 0x200000, 512, True, 3) == (512, None)
    assert (hw.memory.data[1024:1536] == 3).all()
    assert len(hw.tlbs[0]) == 1 and hw.counters.get("hw.dirty_update") == 1
    s.pmd_store(2, hw.fmt.mk_block(1536) & ~1)  # invalid block descriptor
    assert hw.access(0, s, 0x400000, 1, False)[1] == HwFault("translation", 0x400000, 2, False)


def test_lru_capacity_from_features(make_hw: MakeHw) -> None:
    hw = make_hw(features=CpuFeatures(name="tiny", tlb_entries=4))
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 20)
    hw.access(0, s, 0, 20, False)
    assert len(hw.tlbs[0]) == 4
    hw = make_hw(features=CpuFeatures(name="tiny", tlb_entries=4), adversarial_tlb=True)
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 20)
    hw.access(0, s, 0, 20, False)
    assert len(hw.tlbs[0]) == 20


def test_flat_format_sets_a_and_d(make_hw: MakeHw) -> None:
    hw = make_hw(fmt="flat")
    assert hw.features is PRESETS["x86"]
    s = hw.new_space(1, "p")
    map_pages(hw, s, 0, 10, 4, write=WS_CLEAN, af=False)
    assert hw.access(0, s, 0, 4, True, 1) == (4, None)
    d = hw.pool.peek(ptep_of(hw, s, 0))
    assert hw.fmt.af(d) and hw.fmt.write_state(d) == WS_DIRTY
    assert len(hw.tlbs[0]) == 4


def test_spaces_and_argument_checks(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(7, "proc")
    assert s.name == "proc" and hw.checker is not None and hw.pool.observer is hw.checker
    with pytest.raises(ModelUsageError):
        hw.new_space(7, "again")
    map_pages(hw, s, 0, 10, 1)
    hw.access(3, s, 0, 1, False)
    hw.retire_space(s)
    assert len(hw.tlbs[3]) == 0
    with pytest.raises(ModelUsageError):
        hw.new_space(7, "reused")
    with pytest.raises(ModelUsageError):
        hw.access(9, s, 0, 1, False)
    with pytest.raises(ModelUsageError):
        hw.access(0, s, 0x123, 1, False)
    with pytest.raises(ModelUsageError):
        hw.access(0, s, 0, 1, True)
    assert make_hw(checker=False).checker is None
    with pytest.raises(ModelUsageError):
        make_hw(features="no-such-cpu")


def test_presets() -> None:
    n1 = PRESETS["neoverse-n1"]
    assert (n1.hafdbs, n1.bbm_level, n1.tlbirange, n1.tlb_entries) == (2, 0, False, 1280)
    assert not PRESETS["x86"].contig_tlb
    assert {"neoverse-n1", "neoverse-v2", "apple-m2", "cortex-a76", "x86"} <= set(PRESETS)
    with pytest.raises(ModelUsageError):
        CpuFeatures(name="bad", bbml2_noabort=True, bbm_level=1)


def test_level2_block_reached_by_a_contiguous_entry_is_one_entry_each(make_hw: MakeHw) -> None:
    """A level-2 block fills one entry; its AF update lands on the block descriptor."""
    hw = make_hw()
    s = hw.new_space(1, "p")
    s.pmd_store(1, hw.fmt.mk_block(1024, af=False))
    assert hw.access(0, s, 0x200000, 8, False) == (8, None)
    assert hw.fmt.af(s.pmd_peek(1)) and hw.counters.get("hw.af_update") == 1
    (e,) = list(hw.tlbs[0])
    assert (e.ptep, e.level, e.npages, e.pfn_base) == (-1, 2, 512, 1024)


def test_access_of_many_tables_and_out_of_range_frames(make_hw: MakeHw) -> None:
    """One call spans tables; a translation beyond physical memory is an invariant error."""
    hw = make_hw(nr_frames=2048)
    s = hw.new_space(1, "p")
    for t in range(3):
        map_pages(hw, s, t << 21, 512 * t, 512, cont=t == 1)
    assert hw.access(0, s, 0, 1536, True, np.arange(1536, dtype=np.uint64)) == (1536, None)
    assert hw.memory.data[:1536].tolist() == list(range(1536))
    out = np.zeros(1536, dtype=np.uint64)
    assert hw.access(1, s, 0, 1536, False, out=out) == (1536, None)
    assert out.tolist() == list(range(1536))
    # a strided out array and an int64 value array are converted
    out2 = np.zeros(2 * 8, dtype=np.uint64)[::2]
    assert hw.access(1, s, 0, 8, False, out=out2) == (8, None)
    assert out2.tolist() == list(range(8))
    map_pages(hw, s, 3 << 21, 2040, 16)
    from contpte.errors import InvariantViolation

    with pytest.raises(InvariantViolation, match="beyond physical memory") as ei:
        hw.access(0, s, 3 << 21, 16, True, 1)
    assert ei.value.rule == "oa-range"
    assert (hw.memory.data[2040:2048] == 1).all()
