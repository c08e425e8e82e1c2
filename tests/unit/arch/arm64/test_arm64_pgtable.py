"""The arm64 PTE format (v6.12) and geometry."""

from __future__ import annotations

import numpy as np
import pytest
from arm64kit import Env, make_hw
from hypothesis import given
from hypothesis import strategies as st

from contpte.arch import make_arch
from contpte.arch.arm64.pgtable import Arm64Pgtable
from contpte.arch.arm64.pgtable_prot import (
    PAGE_NONE,
    PAGE_READONLY,
    PAGE_READONLY_EXEC,
    PAGE_SHARED,
    PTE_AF,
    PTE_CONT,
    PTE_DIRTY,
    PTE_NG,
    PTE_RDONLY,
    PTE_SWP_EXCLUSIVE,
    PTE_SWP_UFFD_WP,
    PTE_UFFD_WP,
    PTE_USER,
    PTE_UXN,
    PTE_VALID,
    PTE_WRITE,
    VM_EXEC,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
)
from contpte.errors import ModelUsageError


@pytest.mark.parametrize(
    ("shift", "cont", "ptrs"),
    [(12, 16, 512), (14, 128, 2048), (16, 32, 8192)],
)
def test_geometry(shift: int, cont: int, ptrs: int) -> None:
    a = Arm64Pgtable(make_hw(shift), page_shift=shift)
    assert cont == a.CONT_PTES
    assert ptrs == a.PTRS_PER_PTE
    assert cont << shift == a.CONT_PTE_SIZE
    assert a.pte_pfn(a.pfn_pte(12345, PAGE_SHARED)) == 12345


def test_bad_granule_and_unknown_option() -> None:
    with pytest.raises(ModelUsageError):
        Arm64Pgtable(make_hw(), page_shift=13)
    with pytest.raises(ModelUsageError):
        Arm64Pgtable(make_hw(), contpte_typo=True)


def test_make_arch_builds_arm64() -> None:
    a = make_arch("arm64", make_hw(14), page_shift=14, teardown_opt=False)
    assert isinstance(a, Arm64Pgtable) and not a.teardown_opt and a.CONT_PTES == 128


def test_dirty_encoding() -> None:
    a = Env().arch
    clean_w = a.pfn_pte(5, PAGE_SHARED)  # RDONLY|WRITE: writable-clean
    assert a.pte_write(clean_w) and not a.pte_dirty(clean_w)
    hw_dirty = clean_w & ~PTE_RDONLY  # what hardware DBM does on a write
    assert a.pte_dirty(hw_dirty) and not a.pte_sw_dirty(hw_dirty)
    # wrprotect keeps hardware dirtiness in the software bit
    wp = a.pte_wrprotect(hw_dirty)
    assert wp & PTE_DIRTY and wp & PTE_RDONLY and not wp & PTE_WRITE and a.pte_dirty(wp)
    assert a.pte_wrprotect(clean_w) & PTE_DIRTY == 0
    # mkclean sets RDONLY and clears the sw bit
    c = a.pte_mkclean(a.pte_mkdirty(clean_w))
    assert c & PTE_RDONLY and not c & PTE_DIRTY and not a.pte_dirty(c)
    # mkdirty clears RDONLY only on a writable PTE
    ro = a.pfn_pte(5, PAGE_READONLY)
    assert a.pte_mkdirty(ro) & PTE_RDONLY and a.pte_dirty(a.pte_mkdirty(ro))
    assert not a.pte_mkdirty(clean_w) & PTE_RDONLY
    # v6.12 mkwrite makes the PTE hardware-dirty
    assert a.pte_hw_dirty(a.pte_mkwrite(ro))
    assert a.pte_young(ro) and not a.pte_young(a.pte_mkold(ro))


def test_pte_same_is_the_raw_compare() -> None:
    """v6.12 arm64 has no pte_same() of its own: include/linux/pgtable.h compares the values,
    so a hardware-dirtied entry (RDONLY cleared by DBM) differs from its clean self."""
    a = Env().arch
    p = a.pfn_pte(9, PAGE_SHARED)
    assert a.pte_same(p, p)
    assert not a.pte_same(p, p & ~PTE_RDONLY)
    assert not a.pte_same(p, p & ~PTE_AF)
    swp = a.swp_entry(1, 100)
    assert not a.pte_same(swp, swp | PTE_RDONLY)


def test_pte_accessible_is_valid_not_present() -> None:
    """arm64 pte_accessible(): a PROT_NONE entry is present but no TLB holds it (no flush pending)."""
    env = Env()
    a = env.arch
    assert a.pte_accessible(env.mm, a.pfn_pte(9, PAGE_SHARED))
    n = a.pfn_pte(9, PAGE_NONE)
    assert a.pte_present(n) and not a.pte_accessible(env.mm, n)


def test_ptep_clear_flush_flushes_only_an_accessible_entry() -> None:
    """mm/pgtable-generic.c ptep_clear_flush(): flush_tlb_page() only if pte_accessible()."""
    env = Env()
    a = env.arch
    env.folios.add(40, 2)
    a.set_pte_at(env.mm, env.addr(0), env.ptep(0), a.pfn_pte(40, PAGE_SHARED))
    a.set_pte_at(env.mm, env.addr(1), env.ptep(1), a.pfn_pte(41, PAGE_NONE))
    env.clear_log()
    assert a.pte_pfn(a.ptep_clear_flush(env.vma, env.addr(1), env.ptep(1))) == 41
    assert env.raw(1) == [0] and not env.instructions()
    assert a.pte_pfn(a.ptep_clear_flush(env.vma, env.addr(0), env.ptep(0))) == 40
    assert env.raw(0) == [0] and env.instructions()


def test_protnone_and_present_invalid() -> None:
    a = Env().arch
    n = a.pfn_pte(3, PAGE_NONE)
    assert not a.pte_valid(n) and a.pte_present(n) and a.pte_protnone(n)
    assert n & PTE_NG  # PTE_PRESENT_INVALID overlays nG in v6.12
    v = a.pfn_pte(3, PAGE_READONLY)
    assert a.pte_present(v) and not a.pte_protnone(v)
    # pte_modify to PROT_NONE keeps pfn and dirtiness, then back
    d = a.pte_mkdirty(a.pfn_pte(3, PAGE_SHARED))
    m = a.pte_modify(d, PAGE_NONE)
    assert a.pte_protnone(m) and a.pte_pfn(m) == 3 and a.pte_dirty(m)
    back = a.pte_modify(m, PAGE_SHARED)
    assert a.pte_valid(back) and a.pte_dirty(back) and a.pte_write(back)


def test_uffd_wp() -> None:
    a = Env().arch
    p = a.pte_mkuffd_wp(a.pfn_pte(3, PAGE_SHARED))
    assert p & PTE_UFFD_WP and a.pte_uffd_wp(p) and not a.pte_write(p)
    assert not a.pte_uffd_wp(a.pte_clear_uffd_wp(p))


@given(st.integers(0, 31), st.integers(0, (1 << 50) - 1), st.booleans(), st.booleans())
def test_swap_entries(type_: int, offset: int, excl: bool, wp: bool) -> None:
    a = Arm64Pgtable(make_hw())
    p = a.swp_entry(type_, offset)
    if excl:
        p = a.pte_swp_mkexclusive(p)
    if wp:
        p = a.pte_swp_mkuffd_wp(p)
    assert (not a.pte_present(p) and not a.pte_none(p)) or (
        type_ == 0 and offset == 0 and not excl and not wp
    )
    assert a.swp_type(p) == type_ and a.swp_offset(p) == offset
    assert a.pte_swp_exclusive(p) == excl and bool(p & PTE_SWP_EXCLUSIVE) == excl
    assert a.pte_swp_uffd_wp(p) == wp and bool(p & PTE_SWP_UFFD_WP) == wp
    assert a.swp_type(a.pte_swp_clear_exclusive(p)) == type_


def test_vm_get_page_prot() -> None:
    a = Env().arch
    assert a.vm_get_page_prot(0) == PAGE_NONE
    # private writable: read-only until the CoW fault
    priv = a.vm_get_page_prot(VM_READ | VM_WRITE)
    assert priv == PAGE_READONLY and not a.pte_write(priv)
    shared = a.vm_get_page_prot(VM_READ | VM_WRITE | VM_SHARED)
    assert shared == PAGE_SHARED and a.pte_write(shared) and shared & PTE_RDONLY
    for f in range(1, 16):
        p = a.vm_get_page_prot(f)
        if f & (VM_READ | VM_WRITE | VM_EXEC):
            assert p & PTE_VALID and p & PTE_AF and p & PTE_NG
            assert bool(p & PTE_USER)
            assert bool(p & PTE_UXN) == (not f & VM_EXEC)
    assert a.vm_get_page_prot(VM_EXEC | VM_READ) == PAGE_READONLY_EXEC


def test_pmd_block_descriptors() -> None:
    a = Env().arch
    pte = a.pfn_pte(512, PAGE_SHARED)
    pmd = a.pte_pmd(pte)
    assert pmd & 0b11 == 0b01
    assert a.pte_pfn(a.pmd_pte(pmd)) == 512 and a.pte_write(a.pmd_pte(pmd))
    inv = a.pmd_mkinvalid(pmd)
    assert not a.pte_valid(a.pmd_pte(inv)) and a.pte_present(a.pmd_pte(inv))
    assert not a.pte_protnone(a.pmd_pte(inv))  # present-invalid but user-accessible bits kept
    assert a.pte_pmd(a.pte_wrprotect(a.pmd_pte(pmd))) & 0b11 == 0b01


def test_cont_helpers() -> None:
    a = Env().arch
    p = a.pfn_pte(16, PAGE_SHARED)
    c = a.pte_mkcont(p)
    assert a.pte_cont(c) and a.pte_valid_cont(c) and a.pte_leaf_size(c) == 64 << 10
    assert a.pte_mknoncont(c) == p and a.pte_leaf_size(p) == 4096
    assert not a.pte_valid_cont(c & ~PTE_VALID)
    assert PTE_CONT == 1 << 52


@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=20))
def test_ptes_decode_matches_scalar_helpers(vals: list[int]) -> None:
    from contpte.arch.pgtable import Pgtable

    a = Arm64Pgtable(make_hw())
    arr = np.array(vals, dtype=np.uint64)
    fast = a.ptes_decode(arr)
    slow = Pgtable.ptes_decode(a, arr)
    for key in ("present", "pfn", "write", "dirty", "young", "cont", "special"):
        assert (fast[key] == slow[key]).all(), key
    assert (fast["valid"] == np.array([bool(v & PTE_VALID) for v in vals])).all()


def test_pmdp_set_access_flags_merges_in_place() -> None:
    e = Env()
    a = e.arch
    pmd = a.pte_pmd(a.pte_mkold(a.pfn_pte(512, PAGE_SHARED)))
    e.space.pmd_store(3, pmd)
    entry = a.pte_pmd(a.pte_mkdirty(a.pte_mkyoung(a.pmd_pte(pmd))))
    assert a.pmdp_set_access_flags(e.vma, 3 << a.PMD_SHIFT, 3, entry, True)
    new = e.space.pmds[3]
    assert new & 0b11 == 0b01 and a.pte_young(new) and a.pte_dirty(new) and a.pte_pfn(new) == 512
    assert e.c.get("tlbi.VALE1IS") == 1
    assert not a.pmdp_set_access_flags(e.vma, 3 << a.PMD_SHIFT, 3, entry, True)
