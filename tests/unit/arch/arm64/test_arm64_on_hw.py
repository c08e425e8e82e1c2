"""The arm64 backend on the real hardware model, with the Arm ARM rule checker on.

The other arm64 tests pin down instruction counts, store sequences and what
the TLBIs reach; here the hardware's TLBs, walker and RuleChecker judge the
result: every fold and unfold must be a legal break-before-make, every
contiguous set consistent when the PTL is dropped, and user accesses must
see the right frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from arm64kit import Env, Folios, make_hw

from contpte.arch.arm64.pgtable import Arm64Pgtable
from contpte.arch.arm64.pgtable_prot import PAGE_SHARED, PTE_CONT
from contpte.arch.pgtable import MmLike, VmaLike
from contpte.errors import InvariantViolation


class HwEnv(Env):
    """The backend on a 2-CPU machine with the rule checker; the mm has run on both CPUs."""

    def __init__(self, features: Any = "neoverse-n1", **options: Any) -> None:
        super().__init__(features=features, checker=True, record=False, asid=5, **options)
        self.mm.cpumask = {0, 1}

    def map(self, idx: int, pfn: int, nr: int, folio: tuple[int, int] | None = None, **kw: Any) -> None:
        self.folios.add(pfn, nr)
        self.hw.memory.data[pfn : pfn + nr] = np.arange(pfn, pfn + nr, dtype=np.uint64)
        self.arch.set_ptes(self.mm, self.addr(idx), self.ptep(idx), self.arch.pfn_pte(pfn, PAGE_SHARED), nr)
        self.unlock()

    def unlock(self) -> None:
        self.arch.ptl_release(self.mm, self.ptep0)

    def read(self, cpu: int, idx: int, nr: int) -> list[int]:
        out = np.zeros(nr, dtype=np.uint64)
        _done, fault = self.hw.access(cpu, self.space, self.addr(idx), nr, False, out=out)
        assert fault is None, fault
        return [int(v) for v in out]

    def write(self, cpu: int, idx: int, nr: int, value: int) -> Any:
        return self.hw.access(cpu, self.space, self.addr(idx), nr, True, value=value)[1]


def conts(e: HwEnv, idx: int, nr: int) -> list[bool]:
    return [bool(v & PTE_CONT) for v in e.raw(idx, nr)]


def test_map_fold_unfold_wrprotect_under_the_checker() -> None:
    e = HwEnv()
    a = e.arch
    e.map(0, 4096, 48)
    assert e.read(0, 0, 48) == list(range(4096, 4144)) == e.read(1, 0, 48)
    assert e.write(1, 0, 48, 77) is None  # DBM: writable-clean becomes dirty in hardware
    g = a.ptep_get(e.ptep(20))
    assert a.pte_dirty(g) and a.pte_young(g)

    # a single-PTE change inside a folded block (TLBs are warm on both CPUs)
    old = a.ptep_modify_prot_start(e.vma, e.addr(20), e.ptep(20))
    a.ptep_modify_prot_commit(e.vma, e.addr(20), e.ptep(20), old, a.pte_wrprotect(old))
    a.flush_tlb_range(e.vma, e.addr(20), e.addr(21))
    e.unlock()
    assert not any(conts(e, 16, 16)) and all(conts(e, 0, 16)) and all(conts(e, 32, 16))
    f = e.write(0, 20, 1, 5)
    assert f is not None and f.kind == "permission"
    assert e.read(1, 16, 16) == [77] * 16

    # restore it: the last PTE rewritten refolds the block
    for i in range(16, 32):
        old = a.ptep_modify_prot_start(e.vma, e.addr(i), e.ptep(i))
        a.ptep_modify_prot_commit(e.vma, e.addr(i), e.ptep(i), old, a.pte_mkwrite(a.pte_mkdirty(old)))
    e.unlock()
    assert all(conts(e, 16, 16)) and e.write(0, 16, 16, 9) is None

    # fork-style partial wrprotect, then the deferred flush_tlb_mm
    a.wrprotect_ptes(e.mm, e.addr(4), e.ptep(4), 40)
    a.flush_tlb_mm(e.mm)
    e.unlock()
    assert conts(e, 0, 48) == [False] * 16 + [True] * 16 + [False] * 16
    assert e.write(1, 3, 1, 1) is None
    for i in (4, 20, 43):
        f = e.write(1, i, 1, 1)
        assert f is not None and f.kind == "permission"

    # teardown of whole and partial blocks, then the mmu_gather range flush
    a.clear_full_ptes(e.mm, e.addr(0), e.ptep(0), 40, False)
    a.flush_tlb_range(e.vma, e.addr(0), e.addr(40))
    e.unlock()
    f = e.write(0, 10, 1, 1)
    assert f is not None and f.kind == "translation"


def test_fault_style_fold_is_legal_and_translates() -> None:
    e = HwEnv()
    a = e.arch
    e.folios.add(8192, 16)
    e.hw.memory.data[8192 : 8192 + 16] = 3
    for i in range(16):
        a.set_ptes(e.mm, e.addr(i), e.ptep(i), a.pfn_pte(8192 + i, PAGE_SHARED), 1)
        e.read(i % 2, 0, i + 1)  # warm both TLBs with the non-contiguous entries
    e.unlock()
    assert all(conts(e, 0, 16)) and e.read(0, 0, 16) == [3] * 16


@pytest.mark.parametrize("shift", [14, 16])
def test_large_granules_on_hw(shift: int) -> None:
    hw = make_hw(shift, "neoverse-v2", ncpus=1, checker=True)
    a = Arm64Pgtable(hw, page_shift=shift)
    folios = Folios(a, hw.memory.nr_frames)
    space = hw.new_space(9)
    mm = MmLike(space)
    mm.cpumask = {0}
    t = space.alloc_pte_table(0) << hw.pool.shift  # entry 0 of the table
    cp = a.CONT_PTES
    folios.add(4 * cp, 2 * cp)
    a.set_ptes(mm, hw.pool.va(t + cp), t + cp, a.pfn_pte(4 * cp, PAGE_SHARED), 2 * cp)
    a.ptep_set_wrprotect(mm, hw.pool.va(t + cp + 1), t + cp + 1)
    a.flush_tlb_page(VmaLike(mm, 0, 1 << 40, 0), hw.pool.va(t + cp + 1))
    a.ptl_release(mm, t)
    assert not any(bool(int(hw.pool.peek(p)) & PTE_CONT) for p in range(t + cp, t + 2 * cp))
    assert all(bool(int(hw.pool.peek(p)) & PTE_CONT) for p in range(t + 2 * cp, t + 3 * cp))


def test_bbml2_elision_is_caught_without_bbml2() -> None:
    """The option claims BBML2; on a CPU without it the checker must object."""
    e = HwEnv(bbml2_noabort=True)
    e.map(0, 4096, 16)
    e.read(0, 0, 16)
    with pytest.raises(InvariantViolation) as ei:
        e.arch.set_ptes(e.mm, e.addr(3), e.ptep(3), e.arch.pfn_pte(5000, PAGE_SHARED), 1)
    assert ei.value.rule in ("bbm", "tlbi-coverage")


def test_bbml2_elision_is_legal_with_bbml2_noabort() -> None:
    from contpte.hw.features import CpuFeatures

    cpu = CpuFeatures(name="bbml2-noabort", hafdbs=2, bbm_level=2, bbml2_noabort=True, tlbirange=True)
    e = HwEnv(features=cpu, bbml2_noabort=True)
    e.map(0, 4096, 16)
    e.read(0, 0, 16)
    old = e.arch.ptep_get_and_clear(e.mm, e.addr(3), e.ptep(3))
    e.arch.flush_tlb_page(e.vma, e.addr(3))
    e.arch.set_ptes(e.mm, e.addr(3), e.ptep(3), old & ~PTE_CONT, 1)
    e.unlock()
    # the unfold issued no TLBI; only the caller's page flush did
    assert e.hw.counters.get("tlbi.VALE1IS") == 1 and e.hw.counters.get("contpte.convert") == 1
    assert e.read(1, 0, 16)[4:] == list(range(4100, 4112))
