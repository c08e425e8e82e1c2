"""Descriptor formats: VMSAv8-64 and Flat, scalar and vectorised decoders agree."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contpte.errors import ModelUsageError
from contpte.hw.format import (
    L2_BLOCK,
    L2_INVALID,
    L2_TABLE,
    WS_CLEAN,
    WS_DIRTY,
    WS_NONE,
    FlatFormat,
    VmsaFormat,
    cont_ptes_for,
    make_format,
)


def test_vmsa_bit_positions() -> None:
    f = VmsaFormat(12)
    assert (f.VALID, f.AP_USER, f.AP_RDONLY, f.AF_BIT, f.NG) == (1, 1 << 6, 1 << 7, 1 << 10, 1 << 11)
    assert (f.DBM, f.CONT, f.PXN, f.UXN) == (1 << 51, 1 << 52, 1 << 53, 1 << 54)
    d = f.mk_page(0x1234, cont=True)
    assert f.page_valid(d) and f.cont(d) and f.af(d) and f.user(d)
    assert f.pfn(d) == 0x1234
    assert f.write_state(d) == WS_DIRTY
    assert f.write_state(f.mk_page(1, write=WS_CLEAN)) == WS_CLEAN
    assert f.write_state(f.mk_page(1, write=WS_NONE)) == WS_NONE


def test_vmsa_level3_needs_page_bit_and_level2_kinds() -> None:
    f = VmsaFormat(12)
    page = f.mk_page(5)
    assert not f.page_valid(page & ~f.TABLE_PAGE)  # 0b01 at level 3 is reserved
    assert f.l2_kind(f.mk_block(512)) == L2_BLOCK
    assert f.l2_kind(page) == L2_TABLE
    assert f.l2_kind(0) == L2_INVALID


def test_vmsa_hw_updates() -> None:
    f = VmsaFormat(12)
    clean_old = f.mk_page(7, write=WS_CLEAN, af=False)
    d = f.set_dirty(clean_old)
    assert f.write_state(d) == WS_DIRTY and f.af(d)  # IDSHLJ: never dirty with AF=0
    assert f.af(f.set_af(f.mk_page(7, af=False)))


def test_prot_key_ignores_af_and_ap2_with_dbm_only_when_hd() -> None:
    f = VmsaFormat(12)
    a = f.mk_page(16, write=WS_DIRTY, af=True)
    b = f.mk_page(17, write=WS_CLEAN, af=False)
    assert f.prot_key(a) == f.prot_key(b)
    assert f.prot_key(a, hd=False) != f.prot_key(b, hd=False)
    ro = f.mk_page(16, write=WS_NONE)
    assert f.prot_key(ro) != f.prot_key(a)


def test_flat_format() -> None:
    f = FlatFormat(12)
    d = f.mk_page(0x42, write=WS_CLEAN, af=False)
    assert f.page_valid(d) and not f.af(d) and f.user(d)
    assert f.pfn(d) == 0x42
    assert f.write_state(d) == WS_CLEAN
    assert f.write_state(f.set_dirty(d)) == WS_DIRTY
    assert not f.cont(d)
    assert f.l2_kind(f.mk_block(512)) == L2_BLOCK
    with pytest.raises(ModelUsageError):
        f.mk_page(1, cont=True)


def test_geometry_and_factory() -> None:
    assert [cont_ptes_for(s) for s in (12, 14, 16)] == [16, 128, 32]
    assert VmsaFormat(16).pfn(VmsaFormat(16).mk_page(3)) == 3
    with pytest.raises(ModelUsageError):
        make_format("sparc", 12)
    with pytest.raises(ModelUsageError):
        cont_ptes_for(13)


def _ref_vmsa(f: VmsaFormat, d: int, hd: bool) -> tuple[object, ...]:
    """The bit tests written out for VMSAv8-64 (the format's former per-bit decoders)."""
    ws = WS_DIRTY if not d & f.AP_RDONLY else (WS_CLEAN if d & f.DBM else WS_NONE)
    key_mask = f.ATTR_MASK & ~(f.AF_BIT | f.CONT)
    if hd and d & f.DBM:
        key_mask &= ~f.AP_RDONLY
    low = d & 0b11
    l2 = L2_BLOCK if low == 0b01 else (L2_TABLE if low == 0b11 else L2_INVALID)
    return (
        (d & 0b11) == 0b11,
        l2,
        (d & (((1 << 48) - 1) & ~0xFFF)) >> 12,
        bool(d & f.CONT),
        bool(d & f.AF_BIT),
        bool(d & f.AP_USER),
        ws,
        d | f.AF_BIT,
        (d | f.AF_BIT) & ~f.AP_RDONLY,
        d & key_mask,
        d & (f.ATTRINDX | f.SH | f.NS),
    )


def _ref_flat(f: FlatFormat, d: int, hd: bool) -> tuple[object, ...]:
    ws = WS_NONE if not d & f.RW else (WS_DIRTY if d & f.DIRTY else WS_CLEAN)
    l2 = L2_INVALID if not d & f.PRESENT else (L2_BLOCK if d & f.PSE else L2_TABLE)
    return (
        bool(d & f.PRESENT),
        l2,
        (d & (((1 << 52) - 1) & ~0xFFF)) >> 12,
        False,
        bool(d & f.ACCESSED),
        bool(d & f.USER),
        ws,
        d | f.ACCESSED,
        d | f.ACCESSED | f.DIRTY,
        d & f.KEY_MASK,
        d & (f.PWT | f.PCD),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=40), st.sampled_from(["vmsa", "flat"]))
def test_mask_decoders_match_the_bit_definitions(vals: list[int], name: str) -> None:
    """The mask-driven decoders agree with each format's bit layout written out."""
    f = make_format(name, 12)
    for d in vals:
        for hd in (True, False):
            got = (
                f.page_valid(d),
                f.l2_kind(d),
                f.pfn(d),
                f.cont(d),
                f.af(d),
                f.user(d),
                f.write_state(d),
                f.set_af(d),
                f.set_dirty(d),
                f.prot_key(d, hd),
                f.memtype(d),
            )
            ref = _ref_vmsa(f, d, hd) if isinstance(f, VmsaFormat) else _ref_flat(f, d, hd)  # type: ignore[arg-type]
            assert got == ref, hex(d)
            ws = f.write_state(d)
            assert f.writable(d, hd) == (ws == WS_DIRTY or (hd and ws == WS_CLEAN))
        assert (f.bbm_bits & (d ^ (d | f.af_bit))) == 0  # an AF change never needs BBM


def test_masks_are_unsigned_and_complete() -> None:
    for f in (VmsaFormat(12), VmsaFormat(14), VmsaFormat(16), FlatFormat(12)):
        for m in (f.oa_mask, f.set_dirty_and, f.key_mask, f.bbm_bits):
            assert 0 <= m < 1 << 64
        assert f.bbm_bits & f.oa_mask == f.oa_mask
    assert VmsaFormat(16).cont_ptes == 32 and VmsaFormat(14).cont_ptes == 128
