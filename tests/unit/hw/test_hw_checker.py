"""The Arm ARM rule checker: each rule caught on a seeded misuse, silent on the correct sequence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from conftest import map_pages, ptep_of, release, store_many, tlb_flush_range
from contpte.errors import InvariantViolation
from contpte.hw.features import PRESETS, CpuFeatures
from contpte.hw.format import WS_CLEAN, WS_DIRTY, WS_NONE
from contpte.hw.hardware import Hardware
from contpte.hw.tables import AddressSpace

MakeHw = Callable[..., Hardware]
VA = 0x10000  # a 64K-aligned block: table 0, entries 16..31
PFN = 32


def mapped(make_hw: MakeHw, cont: bool = False, **kw: object) -> tuple[Hardware, AddressSpace, int]:
    """16 pages at VA -> PFN, touched on every CPU so every TLB holds them; the first ptep."""
    hw = make_hw(**kw)
    s = hw.new_space(1, "proc-a")
    p = map_pages(hw, s, VA, PFN, 16, cont=cont)
    release(hw, s, VA)
    for cpu in range(hw.ncpus):
        assert hw.access(cpu, s, VA, 16, True, cpu + 1) == (16, None)
    return hw, s, p


def cont_values(hw: Hardware, pfn: int = PFN, write: int = WS_DIRTY) -> np.ndarray:
    return np.array([hw.fmt.mk_page(pfn + i, cont=True, write=write) for i in range(16)], dtype=np.uint64)


def clear_block(hw: Hardware, p: int) -> None:
    for i in range(16):
        hw.pool.xchg(p + i, 0)


# ---------------------------------------------------------------------------
# the correct fold sequence: clear 16, TLBI, DSB, write 16 with CONT
# ---------------------------------------------------------------------------


def test_fold_with_per_page_tlbi_is_clean(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw)
    clear_block(hw, p)
    tlb_flush_range(hw, 1, VA, 16)
    store_many(hw, p, cont_values(hw))
    assert hw.checker is not None
    hw.checker.ptl_release(s, p >> hw.pool.shift)
    for cpu in range(hw.ncpus):
        assert hw.access(cpu, s, VA, 16, False) == (16, None)
        assert len(hw.tlbs[cpu]) == 1
    assert hw.checker.violations == 0


def test_fold_with_range_tlbi_is_clean(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw, features=PRESETS["neoverse-v2"])
    clear_block(hw, p)
    hw.dsb("ishst")
    hw.tlbi_range("RVALE1IS", 1, VA, 0, 7, ttl=3)
    hw.dsb("ish")
    store_many(hw, p, cont_values(hw))
    assert hw.checker is not None
    hw.checker.ptl_release(s, p >> hw.pool.shift)
    assert hw.access(0, s, VA, 16, True, 9) == (16, None)


def test_unfold_with_aside1is_is_clean(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw, cont=True)
    clear_block(hw, p)
    hw.tlbi("ASIDE1IS", asid=1)
    hw.dsb("ish")
    map_pages(hw, s, VA, PFN, 16)
    assert hw.access(0, s, VA, 16, False) == (16, None)


# ---------------------------------------------------------------------------
# bbm / tlbi-coverage
# ---------------------------------------------------------------------------


def test_fold_without_tlbi_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    clear_block(hw, p)
    with pytest.raises(InvariantViolation) as ei:
        store_many(hw, p, cont_values(hw))
    assert ei.value.rule == "bbm" and ei.value.addr == VA


def test_fold_without_dsb_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    clear_block(hw, p)
    for i in range(16):
        hw.tlbi("VALE1IS", asid=1, va=VA + i * 4096)
    with pytest.raises(InvariantViolation, match="DSB") as ei:
        store_many(hw, p, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_fold_with_dsb_nsh_after_broadcast_tlbi_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    clear_block(hw, p)
    for i in range(16):
        hw.tlbi("VALE1IS", asid=1, va=VA + i * 4096)
    hw.dsb("nsh")
    with pytest.raises(InvariantViolation) as ei:
        store_many(hw, p, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_tlbi_of_one_page_leaves_the_others_unbroken(make_hw: MakeHw) -> None:
    # 16 pages broken, only the first flushed: page 1's old translation may
    # still be cached when the contiguous block is written over it.
    hw, _s, p = mapped(make_hw)
    clear_block(hw, p)
    tlb_flush_range(hw, 1, VA, 1)
    with pytest.raises(InvariantViolation, match="no TLBI in between") as ei:
        store_many(hw, p, cont_values(hw))
    assert ei.value.rule == "bbm"
    assert ei.value.addr == VA + 4096


def test_local_tlbi_is_coverage(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    clear_block(hw, p)
    tlb_flush_range(hw, 1, VA, 16, op="VALE1")
    with pytest.raises(InvariantViolation, match="local") as ei:
        store_many(hw, p, cont_values(hw))
    assert ei.value.rule == "tlbi-coverage"


def test_tlbi_before_the_break_does_not_count(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    tlb_flush_range(hw, 1, VA, 16)
    clear_block(hw, p)
    with pytest.raises(InvariantViolation) as ei:
        store_many(hw, p, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_direct_cont_change_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    with pytest.raises(InvariantViolation) as ei:
        store_many(hw, p, cont_values(hw))
    assert ei.value.rule == "bbm"


def test_direct_oa_change_of_writable_is_bbm(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    with pytest.raises(InvariantViolation) as ei:
        hw.pool.store(p, hw.fmt.mk_page(500))
    assert ei.value.rule == "bbm"


def test_permission_change_needs_no_bbm(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw, cont=True)
    # wrprotect a whole block without unfold: legal (tightened D8.7.1 wording)
    store_many(hw, p, cont_values(hw, write=WS_NONE))
    tlb_flush_range(hw, 1, VA, 16)
    assert hw.checker is not None
    hw.checker.ptl_release(s, p >> hw.pool.shift)
    assert hw.access(0, s, VA, 1, True, 1)[1] is not None


def test_bbml2_direct_cont_change_then_conflict(make_hw: MakeHw) -> None:
    feat = CpuFeatures(name="bbml2", bbm_level=2, tlbirange=True)
    hw, s, p = mapped(make_hw, features=feat)
    for cpu in range(hw.ncpus):
        hw.tlbs[cpu].invalidate_range(1, VA >> 12, 1, 0)  # page 0 aged out
    store_many(hw, p, cont_values(hw))  # BBML2: a size change needs no BBM
    with pytest.raises(InvariantViolation, match="0b110000") as ei:
        hw.access(0, s, VA, 1, False)
    assert ei.value.rule == "tlb-conflict"
    assert hw.counters.get("tlb.conflict") == 1


def test_bbml2_noabort_conflict_is_counted_not_raised(make_hw: MakeHw) -> None:
    feat = CpuFeatures(name="bbml2-noabort", bbm_level=2, bbml2_noabort=True, tlbirange=True)
    hw, s, p = mapped(make_hw, features=feat)
    for cpu in range(hw.ncpus):
        hw.tlbs[cpu].invalidate_range(1, VA >> 12, 1, 0)
    store_many(hw, p, cont_values(hw))
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
    store_many(hw, ptep_of(hw, s, VA), vals)
    with pytest.raises(InvariantViolation) as ei:
        release(hw, s, VA)
    assert ei.value.rule == "contig-consistency" and ei.value.addr == VA and len(ei.value.ptes) == 16
    assert ei.value.ptes == [int(v) for v in vals]


@pytest.mark.parametrize("what", ["misprogrammed", "oa-gap", "attributes"])
def test_ptl_release_checks_the_sets_stored_since_the_last_one(make_hw: MakeHw, what: str) -> None:
    """A release reports the first bad set among those stored since the table's last release.

    A set made inconsistent behind the checker's back (a poke) in a block
    nobody stores again is not looked at by the incremental check;
    ``verify_tables`` finds it.
    """
    hw = make_hw()
    s = hw.new_space(1, "p")
    assert hw.checker is not None
    good = cont_values(hw)
    bad = cont_values(hw)
    if what == "misprogrammed":
        bad[5] = hw.fmt.mk_page(PFN + 5)
    elif what == "oa-gap":
        bad[5] = hw.fmt.mk_page(PFN + 99, cont=True)
    else:
        bad[5] = hw.fmt.mk_page(PFN + 5, cont=True, write=WS_NONE)
    p = ptep_of(hw, s, 0)
    for blk in range(2):
        store_many(hw, p + 16 * blk, good)
    release(hw, s, 0)
    assert not any(hw.checker.dirty)
    store_many(hw, p + 48, bad)  # block 3, then block 2
    store_many(hw, p + 32, bad)
    with pytest.raises(InvariantViolation) as ei:
        release(hw, s, 0)
    assert ei.value.rule == "contig-consistency" and ei.value.addr == 32 << 12
    store_many(hw, p + 32, [0] * 16)
    with pytest.raises(InvariantViolation) as ei:
        release(hw, s, 0)
    assert ei.value.addr == 48 << 12
    store_many(hw, p + 48, [0] * 16)
    release(hw, s, 0)
    hw.pool.poke(p + 5, int(bad[5]))  # block 0, behind the checker's back
    release(hw, s, 0)  # nothing stored since: nothing checked
    with pytest.raises(InvariantViolation) as ei:
        hw.checker.verify_tables()
    assert ei.value.rule == "unobserved-store" and ei.value.addr == 0


def test_inconsistent_set_at_tlb_fill(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    vals = cont_values(hw)
    vals[3] = hw.fmt.mk_page(PFN + 3)
    store_many(hw, ptep_of(hw, s, VA), vals)
    with pytest.raises(InvariantViolation, match="TLB fill on CPU 0") as ei:
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
    store_many(hw, ptep_of(hw, s, VA), vals)
    release(hw, s, VA)
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
    hw.pool.xchg(ptep_of(hw, a, 0), 0)
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
    hw, s, p = mapped(make_hw)
    hw.pool.store(p, hw.fmt.mk_page(PFN, write=WS_NONE))  # wrprotect, TLBI forgotten
    with pytest.raises(InvariantViolation, match="read-only") as ei:
        hw.access(0, s, VA, 1, True, 3)
    assert ei.value.rule == "stale-tlb"


def test_flush_after_wrprotect_is_clean(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw)
    hw.pool.store(p, hw.fmt.mk_page(PFN, write=WS_NONE))
    tlb_flush_range(hw, 1, VA, 1)
    done, fault = hw.access(0, s, VA, 1, True, 3)
    assert done == 0 and fault is not None and fault.kind == "permission"


def test_unobserved_store(make_hw: MakeHw) -> None:
    """A descriptor changed behind the checker's back is found at the PTL release after a store there."""
    hw, s, p = mapped(make_hw)
    hw.pool.poke(p, 0)  # behind the observers' back
    hw.pool.store(p + 1, 0)  # a store to the same block
    with pytest.raises(InvariantViolation, match="without a store the checker saw") as ei:
        release(hw, s, VA)
    assert ei.value.rule == "unobserved-store" and ei.value.addr == VA
    assert ei.value.ptes[:2] == [0, 0] and len(ei.value.ptes) == 16


def test_unobserved_store_is_silent_when_every_store_is_seen(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw)
    for i in range(16):
        hw.pool.store(p + i, hw.fmt.mk_page(PFN + i, write=WS_NONE))
    tlb_flush_range(hw, 1, VA, 16)
    release(hw, s, VA)
    assert hw.checker is not None
    hw.checker.verify_tables()
    # a hardware update is seen too
    assert hw.access(0, s, VA, 1, False) == (1, None)
    release(hw, s, VA)
    hw.checker.verify_tables()


def test_unobserved_level2_store(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    s.pmd_store(1, hw.fmt.mk_block(1024))
    s.pmds[1] = hw.fmt.mk_block(1536)  # behind the observers' back
    with pytest.raises(InvariantViolation, match="level-2 descriptor changed") as ei:
        s.pmd_store(1, 0)
    assert ei.value.rule == "unobserved-store" and ei.value.addr == 0x200000


# ---------------------------------------------------------------------------
# more sequences, legal and not
# ---------------------------------------------------------------------------


def test_unfold_with_partial_block_tlbi_is_coverage(make_hw: MakeHw) -> None:
    """A contiguous block cleared, then a TLBI of only half of it: every page must be flushed (D8.7.1)."""
    hw, _s, p = mapped(make_hw, cont=True)
    clear_block(hw, p)
    tlb_flush_range(hw, 1, VA, 8)
    with pytest.raises(InvariantViolation, match="covered 8 of 16 pages") as ei:
        store_many(hw, p, [hw.fmt.mk_page(PFN + i) for i in range(16)])
    assert ei.value.rule == "tlbi-coverage" and ei.value.addr == VA


def test_unfold_with_a_range_covering_the_block_is_clean(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw, cont=True, features=PRESETS["neoverse-v2"])
    clear_block(hw, p)
    hw.dsb("ishst")
    hw.tlbi_range("RVALE1IS", 1, VA, 0, 7, ttl=3)
    hw.dsb("ish")
    store_many(hw, p, [hw.fmt.mk_page(PFN + i) for i in range(16)])
    release(hw, s, VA)
    assert hw.checker is not None and hw.checker.n_brk == 0
    assert hw.access(0, s, VA, 16, False) == (16, None)


def test_vmalle1is_covers_every_space(make_hw: MakeHw) -> None:
    hw, s, p = mapped(make_hw, cont=True)
    clear_block(hw, p)
    hw.tlbi("VMALLE1IS")
    hw.dsb("sy")
    store_many(hw, p, cont_values(hw, pfn=PFN + 16))
    release(hw, s, VA)


def test_ttl_of_the_wrong_level_covers_nothing(make_hw: MakeHw) -> None:
    hw, _s, p = mapped(make_hw)
    clear_block(hw, p)
    tlb_flush_range(hw, 1, VA, 16)  # level 3: fine
    store_many(hw, p, cont_values(hw))
    clear_block(hw, p)
    hw.dsb("ishst")
    for i in range(16):
        hw.tlbi("VALE1IS", asid=1, va=VA + i * 4096, ttl=2)  # says level 2: no level-3 entry goes
    hw.dsb("ish")
    with pytest.raises(InvariantViolation, match="no TLBI in between") as ei:
        store_many(hw, p, [hw.fmt.mk_page(PFN + 32 + i) for i in range(16)])
    assert ei.value.rule == "bbm"


def test_break_records_are_dropped_once_covered(make_hw: MakeHw) -> None:
    """The checker keeps a break only until a completed TLBI covers it (its memory follows what is pending)."""
    hw, _s, p = mapped(make_hw, cont=True)
    c = hw.checker
    assert c is not None
    clear_block(hw, p)
    assert c.n_brk == 1
    hw.tlbi("VALE1IS", asid=1, va=VA)
    assert c.n_brk == 1 and len(c.pending[0]) == 1
    hw.dsb("ish")
    assert c.n_brk == 1  # one page of a contiguous block flushed: not enough
    tlb_flush_range(hw, 1, VA, 16)
    assert c.n_brk == 0 and c.pending == [[], [], [], []]
    hw.tlbi("VALE1IS", asid=1, va=VA)  # nothing pending: nothing recorded
    assert c.pending[0] == []


def test_table_freed_with_valid_entries_counts_as_a_break(make_hw: MakeHw) -> None:
    hw, s, _p = mapped(make_hw)
    s.free_pte_table(0)
    with pytest.raises(InvariantViolation, match="no TLBI in between") as ei:
        map_pages(hw, s, VA, 500, 1)
    assert ei.value.rule == "bbm"
    hw2, s2, _p2 = mapped(make_hw)
    s2.free_pte_table(0)
    hw2.tlbi("ASIDE1IS", asid=1)
    hw2.dsb("ish")
    map_pages(hw2, s2, VA, 500, 16)
    release(hw2, s2, VA)


def test_flat_format_checks_stale_use_and_unobserved_stores_only(make_hw: MakeHw) -> None:
    hw = make_hw(fmt="flat")
    a = hw.new_space(1, "a")
    p = map_pages(hw, a, 0, 100, 4)
    assert hw.access(0, a, 0, 4, True, 1) == (4, None)
    hw.pool.store(p, hw.fmt.mk_page(300))  # no BBM rule on x86
    with pytest.raises(InvariantViolation) as ei:
        hw.access(0, a, 0, 1, False)
    assert ei.value.rule == "stale-tlb"
    hw.invlpg(0, 1, 0)
    assert hw.access(0, a, 0, 1, False) == (1, None)
    hw.pool.poke(p + 1, 0)
    hw.pool.store(p + 2, 0)
    with pytest.raises(InvariantViolation) as ei:
        release(hw, a, 0)
    assert ei.value.rule == "unobserved-store"


def test_break_records_memory_is_given_back(make_hw: MakeHw) -> None:
    """A zap of many blocks, then its flush: the records' memory goes back when none is pending."""
    for flush in ("aside", "range", "pages"):
        hw = make_hw(nr_frames=1 << 16, features=PRESETS["neoverse-v2"])
        c = hw.checker
        assert c is not None
        s = hw.new_space(1, "p")
        small = c.memory_bytes()
        for t in range(8):
            map_pages(hw, s, t << 21, 512 * t, 512, cont=True)
        for t in range(8):
            p = ptep_of(hw, s, t << 21)
            for i in range(512):
                hw.pool.xchg(p + i, 0)
        assert c.n_brk == 8 * 32 and c.memory_bytes() > 4 * small
        hw.dsb("ishst")
        if flush == "aside":
            hw.tlbi("ASIDE1IS", asid=1)
        elif flush == "range":
            hw.tlbi_range("RVALE1IS", 1, 0, 2, 3, ttl=3)  # 4 << 11 pages: all 8 tables
        else:
            for i in range(8 * 512):
                hw.tlbi("VALE1IS", asid=1, va=i << 12, ttl=3)
        assert c.n_brk == 8 * 32
        hw.dsb("ish")
        assert c.n_brk == 0 and c.memory_bytes() < 2 * small, flush
        map_pages(hw, s, 0, 4096, 16)  # makes after the flush are legal
