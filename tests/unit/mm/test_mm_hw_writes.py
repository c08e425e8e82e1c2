"""What core-mm asks of the arch layer for hardware state (page tables, contents, CPUs).

Each test runs on both backends with every validator on.
"""

from __future__ import annotations

import pytest

from contpte import Machine
from contpte.mm.mmu_gather import MmuGather

ARCHES = ["arm64", "generic"]
K = 1024


def machine(arch: str) -> Machine:
    return Machine(arch=arch, memory="32M", cpus=2, mthp={"64K": "always"})


@pytest.mark.parametrize("arch", ARCHES)
def test_pte_alloc_one_pmd_populate_pmd_clear_pte_free_tlb(arch: str) -> None:
    m = machine(arch)
    p = m.spawn()
    a = m.arch
    space = p.mm.space
    idx = 5
    nr_tables = a.pool.nr_tables
    pgtable = a.pte_alloc_one(p.mm, idx)
    assert a.pool.nr_tables == nr_tables + 1 and space.pte_table(idx) < 0  # allocated, not yet hooked
    a.pmd_populate(p.mm, idx, pgtable)
    assert space.pte_table(idx) == pgtable
    a.pmd_clear(p.mm, idx)
    assert space.pte_table(idx) < 0 and a.pool.nr_tables == nr_tables + 1  # unhooked, not yet freed
    tlb = MmuGather(p.mm, False)
    a.pte_free_tlb(tlb, pgtable, idx << a.PMD_SHIFT)
    assert tlb.freed_tables and a.pool.nr_tables == nr_tables
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_pmd_populate_replaces_a_block_descriptor(arch: str) -> None:
    m = Machine(arch=arch, memory="32M", cpus=2, thp="always")
    p = m.spawn()
    a2m = 2 << 20
    r = p.mmap(2 * a2m)
    a = (r + a2m - 1) & ~(a2m - 1)
    p.write(a, a2m, 3)
    idx = a >> m.arch.PMD_SHIFT
    assert p.mm.space.pmd_peek(idx) and p.mm.space.pte_table(idx) < 0  # a PMD-mapped THP
    p.mprotect(a, 4 * K, "r")  # splits the PMD: a PTE table takes the block's place
    assert p.mm.space.pmd_peek(idx) == 0 and p.mm.space.pte_table(idx) >= 0
    assert list(p.read(a, 64 * K)) == [3] * 16
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_copy_user_highpage_and_clear_highpage(arch: str) -> None:
    m = machine(arch)
    p = m.spawn()
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 9)
    src = int(p.pagemap(a, 4 * K)["pfn"][0])
    dst = m.kernel.folio_alloc(0, True)
    assert int(m.hw.memory.data[dst]) == 0
    vma = p.mm.vma_lookup(a)
    m.arch.copy_user_highpage(dst, src, a, vma)
    assert int(m.hw.memory.data[dst]) == 9
    m.arch.clear_highpage(dst)
    assert int(m.hw.memory.data[dst]) == 0
    m.arch.memcpy_to_page(dst, 0x1234)
    assert m.arch.memcpy_from_page(dst) == 0x1234
    m.kernel.folio_put(dst, 1)


@pytest.mark.parametrize("arch", ARCHES)
def test_madvise_split_leaves_the_callers_cpu(arch: str) -> None:
    # split_folio() used to set hw.current_cpu to the lowest CPU the mm ran
    # on, and left it so for the rest of the caller's syscall.
    m = machine(arch)
    p = m.spawn()
    p.cpu = 0
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 1)  # the mm ran on CPU 0 ...
    p.cpu = 1  # ... and the process now runs on CPU 1
    p.madvise(a, 16 * K, "free")  # part of a 64K folio: split_folio()
    assert m.stats()["mthp.64kB.split"] == 1
    assert m.hw.current_cpu == 1
    m.check()


def test_reclaim_flushes_from_the_reclaiming_cpu() -> None:
    # try_to_unmap() runs on the CPU that reclaims (Machine.reclaim: CPU 0)
    # and shoots down the TLBs of the CPUs the mm ran on: an IPI to CPU 1
    # (x86-style shootdown, the generic backend).
    m = machine("generic")
    m.spawn()
    p = m.spawn()
    assert p.cpu == 1
    a = p.mmap(64 * K)
    p.write(a, 64 * K, 1)
    p.madvise(a, 64 * K, "free")
    with m.measure() as d:
        assert m.reclaim() == 16
    assert d["ipi.sent"] > 0
    m.check()
