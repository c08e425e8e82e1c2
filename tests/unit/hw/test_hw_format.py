"""Descriptor formats: VMSAv8-64 and Flat, scalar and vectorised decoders agree."""

from __future__ import annotations

import numpy as np
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


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=40), st.sampled_from(["vmsa", "flat"]))
def test_vector_decoders_match_scalar(vals: list[int], name: str) -> None:
    f = make_format(name, 12)
    a = np.array(vals, dtype=np.uint64)
    assert f.page_valid_v(a).tolist() == [f.page_valid(v) for v in vals]
    assert f.pfn_v(a).tolist() == [f.pfn(v) for v in vals]
    assert f.cont_v(a).tolist() == [f.cont(v) for v in vals]
    assert f.af_v(a).tolist() == [f.af(v) for v in vals]
    assert f.user_v(a).tolist() == [f.user(v) for v in vals]
    assert f.write_state_v(a).tolist() == [f.write_state(v) for v in vals]
    assert f.set_af_v(a).tolist() == [f.set_af(v) for v in vals]
    assert f.set_dirty_v(a).tolist() == [f.set_dirty(v) for v in vals]
    for hd in (True, False):
        assert f.prot_key_v(a, hd).tolist() == [f.prot_key(v, hd) for v in vals]
    assert f.memtype_v(a).tolist() == [f.memtype(v) for v in vals]
