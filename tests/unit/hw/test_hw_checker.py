"""The Arm ARM rule checker: each rule caught on a seeded misuse, silent on the correct sequence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from conftest import map_pages, tlb_flush_range
from contpte.errors import InvariantViolation
from contpte.hw import PRESETS, AddressSpace, CpuFeatures, Hardware, PteTable
from contpte.hw.format import WS_CLEAN, WS_DIRTY, WS_NONE

MakeHw = Callable[..., Hardware]
VA = 0x10000  # a 64K-aligned block: table 0, entries 16..31
PFN = 32


def mapped(make_hw: MakeHw, cont: bool = False, **kw: object) -> tuple[Hardware, AddressSpace, PteTable]:
    """16 pages at VA -> PFN, touched on every CPU so every TLB holds them."""
    hw = make_hw(**kw)
    s = hw.new_space(1, "proc-a")
    map_pages(hw, s, VA, PFN, 16, cont=cont)
    for cpu in range(hw.ncpus):
        assert hw.access(cpu, s, VA, 16, True, cpu + 1) == (16, None)
    return hw, s, s.tables[0]


def cont_values(hw: Hardware, pfn: int = PFN, write: int = WS_DIRTY) -> np.ndarray:
    return np.array([hw.fmt.mk_page(pfn + i, cont=True, write=write) for i in range(16)], dtype=np.uint64)


def clear_block(t: PteTable) -> None:
    for i in range(16, 32):
        t.xchg(i, 0)


# ---------------------------------------------------------------------------
# the correct fold sequence: clear 16, TLBI, DSB, write 16 with CONT
# ---------------------------------------------------------------------------


def test_fold_with_per_page_tlbi_is_clean(make_hw: MakeHw) -> None:
    hw, s, t = mapped(make_hw)
    clear_block(t)
    tlb_flush_range(hw, 1, VA, 16)
    t.store_many(16, cont_values(hw))
    assert hw.checker is not None
    hw.checker.ptl_release(t)
    for cpu in range(hw.ncpus):
        assert hw.access(cpu, s, VA, 16, False) == (16, None)
        assert len(hw.tlbs[cpu]) == 1
    assert hw.checker.violations == 0


def test_fold_with_range_tlbi_is_clean(make_hw: MakeHw) -> None:
    hw, s, t = mapped(make_hw, features=PRESETS["neoverse-v2"])
    clear_block(t)
    hw.dsb("ishst")
    hw.tlbi_range("RVALE1IS", 1, VA, 0, 7, ttl=3)
    hw.dsb("ish")
    t.store_many(16, cont_values(hw))
    assert hw.checker is not None
    hw.checker.ptl_release(t)
    assert hw.access(0, s, VA, 16, True, 9) == (16, None)


def test_unfold_with_aside1is_is_clean(make_hw: MakeHw) -> None:
    hw, s, t = mapped(make_hw, cont=True)
    clear_block(t)
    hw.tlbi("ASIDE1IS", asid=1)
    hw.dsb("ish")
    map_pages(hw, s, VA, PFN, 16)
    assert hw.access(0, s, VA, 16, False) == (16, None)


# ---------------------------------------------------------------------------
# bbm / tlbi-coverage
# ---------------------------------------------------------------------------


def test_fold_without_tlbi_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, t = mapped(make_hw)
    clear_block(t)
    with pytest.raises(InvariantViolation) as ei:
        t.store_many(16, cont_values(hw))
    assert ei.value.rule == "bbm" and ei.value.addr == VA


def test_fold_without_dsb_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, t = mapped(make_hw)
    clear_block(t)
    for i in range(16):
        hw.tlbi("VALE1IS", asid=1, va=VA + i * 4096)
    with pytest.raises(InvariantViolation, match="DSB") as ei:
        t.store_many(16, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_fold_with_dsb_nsh_after_broadcast_tlbi_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, t = mapped(make_hw)
    clear_block(t)
    for i in range(16):
        hw.tlbi("VALE1IS", asid=1, va=VA + i * 4096)
    hw.dsb("nsh")
    with pytest.raises(InvariantViolation) as ei:
        t.store_many(16, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_tlbi_of_one_page_leaves_the_others_unbroken(make_hw: MakeHw) -> None:
    # 16 pages broken, only the first flushed: page 1's old translation may
    # still be cached when the contiguous block is written over it.
    hw, _s, t = mapped(make_hw)
    clear_block(t)
    tlb_flush_range(hw, 1, VA, 1)
    with pytest.raises(InvariantViolation, match="no TLBI in between") as ei:
        t.store_many(16, cont_values(hw))
    assert ei.value.rule == "bbm"
    assert ei.value.addr == VA + 4096


def test_local_tlbi_is_coverage(make_hw: MakeHw) -> None:
    hw, _s, t = mapped(make_hw)
    clear_block(t)
    tlb_flush_range(hw, 1, VA, 16, op="VALE1")
    with pytest.raises(InvariantViolation, match="local") as ei:
        t.store_many(16, cont_values(hw))
    assert ei.value.rule == "tlbi-coverage"


def test_tlbi_before_the_break_does_not_count(make_hw: MakeHw) -> None:
    hw, _s, t = mapped(make_hw)
    tlb_flush_range(hw, 1, VA, 16)
    clear_block(t)
    with pytest.raises(InvariantViolation) as ei:
        t.store_many(16, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_direct_cont_change_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, t = mapped(make_hw)
    with pytest.raises(InvariantViolation) as ei:
        t.store_many(16, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_direct_oa_change_of_writable_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, t = mapped(make_hw)
    with pytest.raises(InvariantViolation) as ei:
        t.store(16, hw.fmt.mk_page(500))
    assert ei.value.rule == "bbm"


def test_permission_change_needs_no_bbm(make_hw: MakeHw) -> None:
    hw, s, t = mapped(make_hw, cont=True)
    # wrprotect a whole block without unfold: legal (tightened D8.7.1 wording)
    t.store_many(16, cont_values(hw, write=WS_NONE))
    tlb_flush_range(hw, 1, VA, 16)
    assert hw.checker is not None
    hw.checker.ptl_release(t)
    assert hw.access(0, s, VA, 1, True, 1)[1] is not None


def test_bbml2_direct_cont_change_then_conflict(make_hw: MakeHw) -> None:
    feat = CpuFeatures(name="bbml2", bbm_level=2, tlbirange=True)
    hw, s, t = mapped(make_hw, features=feat)
    for cpu in range(hw.ncpus):
        hw.tlbs[cpu].invalidate_range(1, VA >> 12, 1, None)  # page 0 aged out
    t.store_many(16, cont_values(hw))  # BBML2: a size change needs no BBM
    with pytest.raises(InvariantViolation, match="0b110000") as ei:
        hw.access(0, s, VA, 1, False)
    assert ei.value.rule == "tlb-conflict"
    assert hw.counters.get("tlb.conflict") == 1


def test_bbml2_noabort_conflict_is_counted_not_raised(make_hw: MakeHw) -> None:
    feat = CpuFeatures(name="bbml2-noabort", bbm_level=2, bbml2_noabort=True, tlbirange=True)
    hw, s, t = mapped(make_hw, features=feat)
    for cpu in range(hw.ncpus):
        hw.tlbs[cpu].invalidate_range(1, VA >> 12, 1, None)
    t.store_many(16, cont_values(hw))
    assert hw.access(0, s, VA, 16, False) == (16, None)
    assert hw.counters.get("tlb.conflict") == 1


def test_level2_block_split_needs_bbm(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    s.pmd_store(1, hw.fmt.mk_block(1024))
    assert hw.access(0, s, 0x200000, 4, True, 1) == (4, None)
    s.pmd_store(1, 0)
    with pytest.raises(InvariantViolation) as ei:
        map_pages(hw, s, 0x200000, 1024, 16)
    assert ei.value.rule == "bbm"


def test_level2_block_split_with_tlbi_is_clean(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    s.pmd_store(1, hw.fmt.mk_block(1024))
    assert hw.access(0, s, 0x200000, 4, True, 1) == (4, None)
    s.pmd_store(1, 0)
    hw.tlbi("VAE1IS", asid=1, va=0x200000, ttl=2)
    hw.dsb("ish")
    map_pages(hw, s, 0x200000, 1024, 512)
    assert hw.access(0, s, 0x200000, 512, False) == (512, None)


def test_level2_block_replaced_directly_is_bbm(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    s.pmd_store(1, hw.fmt.mk_block(1024))
    with pytest.raises(InvariantViolation) as ei:
        s.pmd_store(1, hw.fmt.mk_block(1536))
    assert ei.value.rule == "bbm"


# ---------------------------------------------------------------------------
# contig-consistency
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "what",
    ["misprogrammed", "oa-gap", "unaligned", "attributes"],
)
def test_inconsistent_set_at_ptl_release(make_hw: MakeHw, what: str) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    vals = cont_values(hw)
    if what == "misprogrammed":
        vals[5] = hw.fmt.mk_page(PFN + 5)
    elif what == "oa-gap":
        vals[5] = hw.fmt.mk_page(PFN + 99, cont=True)
    elif what == "unaligned":
        vals = cont_values(hw, pfn=PFN + 1)
    else:
        vals[5] = hw.fmt.mk_page(PFN + 5, cont=True, write=WS_NONE)
    t = s.alloc_pte_table(0)
    t.store_many(16, vals)
    assert hw.checker is not None
    with pytest.raises(InvariantViolation) as ei:
        hw.checker.ptl_release(t)
    assert ei.value.rule == "contig-consistency" and ei.value.addr == VA and len(ei.value.ptes) == 16


@pytest.mark.parametrize("what", ["misprogrammed", "oa-gap", "attributes"])
def test_ptl_release_many_raises_the_first_tables_violation(make_hw: MakeHw, what: str) -> None:
    """The bulk PTL drops report what the first failing ``ptl_release`` reports."""
    hw = make_hw()
    s = hw.new_space(1, "p")
    good = cont_values(hw)
    tables = []
    for i in range(4):
        t = s.alloc_pte_table(i)
        t.store_many(16, good)
        tables.append(t)
    bad = cont_values(hw)
    if what == "misprogrammed":
        bad[5] = hw.fmt.mk_page(PFN + 5)
    elif what == "oa-gap":
        bad[5] = hw.fmt.mk_page(PFN + 99, cont=True)
    else:
        bad[5] = hw.fmt.mk_page(PFN + 5, cont=True, write=WS_NONE)
    for i in (2, 3):
        tables[i].store_many(32, bad)
    assert hw.checker is not None
    hw.checker.ptl_release_many(tables[:2])
    with pytest.raises(InvariantViolation) as one:
        for t in tables:
            hw.checker.ptl_release(t)
    with pytest.raises(InvariantViolation) as many:
        hw.checker.ptl_release_many(tables)
    assert (many.value.rule, str(many.value), many.value.addr, many.value.ptes) == (
        one.value.rule,
        str(one.value),
        one.value.addr,
        one.value.ptes,
    )
    assert many.value.addr == tables[2].va(32)


def test_inconsistent_set_at_tlb_fill(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    vals = cont_values(hw)
    vals[3] = hw.fmt.mk_page(PFN + 3)
    s.alloc_pte_table(0).store_many(16, vals)
    with pytest.raises(InvariantViolation) as ei:
        hw.access(0, s, VA, 1, False)
    assert ei.value.rule == "contig-consistency"


def test_legal_divergence_af_and_dirty(make_hw: MakeHw) -> None:
    """RLCGVS: members may differ in AF and in AP[2] where DBM=1; invalid members do not count."""
    hw = make_hw()
    s = hw.new_space(1, "p")
    vals = cont_values(hw, write=WS_CLEAN)
    vals[2] = hw.fmt.mk_page(PFN + 2, cont=True, write=WS_DIRTY)
    vals[3] = hw.fmt.mk_page(PFN + 3, cont=True, write=WS_CLEAN, af=False)
    vals[4] = 0
    t = s.alloc_pte_table(0)
    t.store_many(16, vals)
    assert hw.checker is not None
    hw.checker.ptl_release(t)
    assert hw.access(0, s, VA, 2, True, 5) == (2, None)


# ---------------------------------------------------------------------------
# stale-tlb
# ---------------------------------------------------------------------------


def reuse_frame(make_hw: MakeHw, **kw: object) -> tuple[Hardware, AddressSpace, AddressSpace]:
    """A's PTE for frame 100 is cleared with no TLBI; B maps frame 100."""
    hw = make_hw(**kw)
    a = hw.new_space(1, "proc-a")
    b = hw.new_space(2, "proc-b")
    map_pages(hw, a, 0, 100, 1)
    assert hw.access(0, a, 0, 1, True, 1) == (1, None)
    a.tables[0].xchg(0, 0)
    map_pages(hw, b, 0x5000, 100, 1)
    assert hw.access(1, b, 0x5000, 1, True, 2) == (1, None)
    return hw, a, b


def test_stale_write_is_an_isolation_breach(make_hw: MakeHw) -> None:
    hw, a, _b = reuse_frame(make_hw)
    with pytest.raises(InvariantViolation, match=r"proc-a.*proc-b") as ei:
        hw.access(0, a, 0, 1, True, 66)
    assert ei.value.rule == "stale-tlb"


def test_stale_read_is_an_isolation_breach(make_hw: MakeHw) -> None:
    hw, a, _b = reuse_frame(make_hw)
    with pytest.raises(InvariantViolation, match="invalid") as ei:
        hw.access(0, a, 0, 1, False)
    assert ei.value.rule == "stale-tlb"


def test_without_checker_the_stale_write_lands(make_hw: MakeHw) -> None:
    hw, a, b = reuse_frame(make_hw, checker=False)
    assert hw.access(0, a, 0, 1, True, 66) == (1, None)
    out = np.zeros(1, dtype=np.uint64)
    hw.access(1, b, 0x5000, 1, False, out=out)
    assert out[0] == 66  # B sees A's write: what the checker would have reported


def test_stale_writable_entry_after_wrprotect(make_hw: MakeHw) -> None:
    hw, s, t = mapped(make_hw)
    t.store(16, hw.fmt.mk_page(PFN, write=WS_NONE))  # wrprotect, TLBI forgotten
    with pytest.raises(InvariantViolation, match="read-only") as ei:
        hw.access(0, s, VA, 1, True, 3)
    assert ei.value.rule == "stale-tlb"


def test_flush_after_wrprotect_is_clean(make_hw: MakeHw) -> None:
    hw, s, t = mapped(make_hw)
    t.store(16, hw.fmt.mk_page(PFN, write=WS_NONE))
    tlb_flush_range(hw, 1, VA, 1)
    done, fault = hw.access(0, s, VA, 1, True, 3)
    assert done == 0 and fault is not None and fault.kind == "permission"


def test_unobserved_store(make_hw: MakeHw) -> None:
    _hw, _s, t = mapped(make_hw)
    t.poke(16, 0)  # behind the observers' back
    with pytest.raises(InvariantViolation) as ei:
        t.store(17, 0)
        t.store(16, 0)
    assert ei.value.rule == "unobserved-store"
