"""Rule ``unflushed-at-return``: every translation a step removed or reduced was reached by a TLBI.

The hardware checker keeps, per (ASID, page) and per (ASID, level-2 entry),
the first descriptor a store removed or reduced since the last TLBI that
reached it; ``take_unflushed`` (called at each syscall's return by the check
layer) reports one that memory still grants less than before, and forgets
them all.  No access is needed: a CPU may cache any valid translation.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import map_pages, release, tlb_flush_range
from contpte.hw.format import WS_CLEAN, WS_DIRTY, WS_NONE
from contpte.hw.hardware import Hardware
from contpte.hw.tables import AddressSpace

MakeHw = Callable[..., Hardware]
VA = 0x10000
PFN = 32


def untouched(make_hw: MakeHw, **kw: object) -> tuple[Hardware, AddressSpace, int]:
    """16 pages mapped at VA, never accessed (no TLB holds them); the first ptep."""
    hw = make_hw(**kw)
    s = hw.new_space(1, "proc-a")
    p = map_pages(hw, s, VA, PFN, 16)
    release(hw, s, VA)
    assert hw.checker is not None and hw.checker.take_unflushed() is None  # making valid owes nothing
    return hw, s, p


def test_a_cleared_page_never_accessed_is_owed_an_invalidation(make_hw: MakeHw) -> None:
    hw, _s, p = untouched(make_hw)
    old = int(hw.pool.peek(p + 3))
    hw.pool.xchg(p + 3, 0)
    assert hw.checker is not None
    assert hw.checker.take_unflushed() == (VA + 3 * 4096, old, 3, 1)
    assert hw.checker.take_unflushed() is None  # forgotten once reported


def test_a_tlbi_covering_the_page_settles_it(make_hw: MakeHw) -> None:
    hw, _s, p = untouched(make_hw)
    for i in range(16):
        hw.pool.xchg(p + i, 0)
    tlb_flush_range(hw, 1, VA, 16)
    assert hw.checker is not None and hw.checker.take_unflushed() is None


def test_a_short_range_leaves_the_rest_owed(make_hw: MakeHw) -> None:
    hw, _s, p = untouched(make_hw)
    for i in range(16):
        hw.pool.xchg(p + i, 0)
    tlb_flush_range(hw, 1, VA, 15)
    assert hw.checker is not None
    got = hw.checker.take_unflushed()
    assert got is not None and got[0] == VA + 15 * 4096


def test_write_protect_and_dirty_clear_are_reductions(make_hw: MakeHw) -> None:
    hw, _s, p = untouched(make_hw)
    assert hw.checker is not None
    hw.pool.store(p, hw.fmt.mk_page(PFN, write=WS_NONE))
    got = hw.checker.take_unflushed()
    assert got is not None and got[0] == VA
    hw.pool.store(p + 1, hw.fmt.mk_page(PFN + 1, write=WS_CLEAN))  # dirty state taken away
    got = hw.checker.take_unflushed()
    assert got is not None and got[0] == VA + 4096


def test_access_flag_and_upgrades_owe_nothing(make_hw: MakeHw) -> None:
    hw, s, p = untouched(make_hw)
    assert hw.checker is not None
    hw.pool.store(p, hw.fmt.mk_page(PFN, write=WS_DIRTY, af=False))
    q = map_pages(hw, s, VA + 0x10000, PFN + 16, 1, write=WS_NONE)
    hw.pool.store(q, hw.fmt.mk_page(PFN + 16, write=WS_DIRTY))
    assert hw.checker.take_unflushed() is None


def test_a_change_undone_within_the_step_owes_nothing(make_hw: MakeHw) -> None:
    # A Contiguous-bit conversion under BBML2_NOABORT: clear 16, rewrite the
    # same grants with the Contiguous bit, no TLBI in between.
    hw, _s, p = untouched(make_hw, features="neoverse-v3")
    for i in range(16):
        hw.pool.xchg(p + i, 0)
    for i in range(16):
        hw.pool.store(p + i, hw.fmt.mk_page(PFN + i, cont=True))
    assert hw.checker is not None and hw.checker.take_unflushed() is None


def test_a_local_tlbi_does_not_reach_another_cpu_that_ran_the_asid(make_hw: MakeHw) -> None:
    hw, s, p = untouched(make_hw)
    assert hw.access(2, s, VA, 1, False) == (1, None)  # CPU 2 ran the ASID
    hw.pool.xchg(p, 0)
    hw.current_cpu = 0
    hw.tlbi("VALE1", asid=1, va=VA, ttl=3)
    hw.dsb("nsh")
    assert hw.checker is not None
    assert hw.checker.take_unflushed() is not None
    hw.pool.xchg(p + 1, 0)
    hw.current_cpu = 2
    hw.tlbi("VALE1", asid=1, va=VA + 4096, ttl=3)  # local on the only CPU that ran it
    hw.dsb("nsh")
    assert hw.checker.take_unflushed() is None


def test_a_level2_block_removed_without_tlbi_is_owed(make_hw: MakeHw) -> None:
    hw = make_hw()
    s = hw.new_space(1, "p")
    s.pmd_store(1, hw.fmt.mk_block(1024))
    s.pmd_store(1, 0)
    assert hw.checker is not None
    got = hw.checker.take_unflushed()
    assert got is not None and got[0] == 0x200000 and got[2] == 2
    s.pmd_store(1, hw.fmt.mk_block(1024))
    s.pmd_store(1, 0)
    hw.tlbi("VAE1IS", asid=1, va=0x200000, ttl=2)
    hw.dsb("ish")
    assert hw.checker.take_unflushed() is None


def test_a_retired_asid_owes_nothing(make_hw: MakeHw) -> None:
    # arm64's tlb_flush() skips the flush of a full-mm teardown that frees no
    # tables: the ASID is not reused without a full invalidation.
    hw, s, p = untouched(make_hw)
    hw.pool.xchg(p, 0)
    hw.retire_space(s)
    assert hw.checker is not None and hw.checker.take_unflushed() is None
