"""MADV_FREE as mm/madvise.c and mm/huge_memory.c do it in v6.12.

- ``madvise_free_pte_range()`` checks sharing only for a folio that is
  dirty (PG_dirty) or in the swap cache: a clean folio a forked child still
  maps is made lazyfree all the same, and reclaim then discards every clean
  mapping of it (the child's dirty PTE keeps it);
- PTEs are cleaned, and queued for the flush, only when young or dirty: a
  second MADV_FREE costs no PTE write and no TLBI;
- each VMA has a gather of its own (``madvise_free_single_vma()``);
- a PMD-mapped THP goes to ``madvise_free_huge_pmd()``.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
from scenario_util import PAGE, Setup, assert_checked, delta

import contpte
from contpte.mm.memmap import PG_dirty, PG_lazyfree


def _lazy(m: contpte.Machine, p: contpte.Process, addr: int, length: int) -> np.ndarray:
    """Per page: does it map a lazyfree folio (the kernel's anon folio without PG_swapbacked)."""
    mem = m.kernel.memmap
    pm = p.pagemap(addr, length)
    out = np.zeros(len(pm), dtype=bool)
    for i in np.nonzero(pm["present"])[0]:
        out[i] = bool(int(mem.flags[int(mem.head[int(pm["pfn"][i])])]) & PG_lazyfree)
    return out


def test_free_after_fork_marks_the_shared_clean_folio_lazyfree(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    n = setup.length // PAGE
    c = p.fork()
    s = m.stats()
    p.madvise(a, setup.length, "free")
    if setup.pmd:
        # madvise_free_huge_pmd() checks sharing always: the THPs are left alone.
        assert not _lazy(m, p, a, setup.length).any()
        assert delta(m, s, "madvise.lazyfree_pages") == 0
        assert_checked(m)
        return
    # The folios are clean (PG_dirty): no sharing check, lazyfree although the child maps them.
    assert _lazy(m, p, a, setup.length).all()
    assert delta(m, s, "madvise.lazyfree_pages") == n
    assert not p.pagemap(a, setup.length)["dirty"].any()
    assert c.pagemap(a, setup.length)["dirty"].all()  # the child's copies kept the dirty bit
    # Reclaim walks the parent's mappings first (the anon_vma tree holds the
    # parent's VMA before the child's): each clean one is discarded, then the
    # child's dirty PTE keeps the folio, swap-backed again.  The parent, who
    # said MADV_FREE, reads zero; the child, who did not, keeps its data.
    m.reclaim()
    assert delta(m, s, "pglazyfreed") == n
    assert not _lazy(m, c, a, setup.length).any()
    assert not p.pagemap(a, setup.length)["present"].any()
    assert (p.read(a, setup.length) == 0).all()
    assert (c.read(a, setup.length) == 1).all()
    assert_checked(m)


def test_free_in_parent_and_child_then_reclaim_discards_both(setup: Setup) -> None:
    m, p, a = setup.populated(value=1)
    c = p.fork()
    p.madvise(a, setup.length, "free")
    c.madvise(a, setup.length, "free")
    free = m.kernel.buddy.nr_free
    m.reclaim()
    if setup.pmd:
        # Shared PMD-mapped THPs: madvise_free_huge_pmd() left them alone.
        assert not _lazy(m, c, a, setup.length).any()
        assert (p.read(a, setup.length) == 1).all() and (c.read(a, setup.length) == 1).all()
    else:
        # Every mapping was clean: both processes lose the data, the folios are freed.
        assert m.kernel.buddy.nr_free == free + setup.length // PAGE
        assert (p.read(a, setup.length) == 0).all()
        assert (c.read(a, setup.length) == 0).all()
    assert_checked(m)


def test_dirty_shared_folio_is_not_made_lazyfree(arch: str) -> None:
    # PG_dirty (here from reclaim, which met the parent's dirty PTE first and
    # kept the folio) asks for the exclusivity check: a folio the child also
    # maps stays swap-backed.  The first pass only finds the parent's young
    # PTEs (folio_check_references: kept, PG_referenced); the second unmaps.
    m = contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    a = p.mmap("64K")
    p.write(a, "64K", 1)
    c = p.fork()
    c.madvise(a, "64K", "free")
    assert m.reclaim() == 0 and m.stats()["pglazyfree_fail"] == 0
    m.reclaim()
    assert p.pagemap(a, "64K")["present"].all() and c.pagemap(a, "64K")["present"].all()
    head = int(m.kernel.memmap.head[int(c.pagemap(a, PAGE)["pfn"][0])])
    assert int(m.kernel.memmap.flags[head]) & PG_dirty
    assert not _lazy(m, c, a, 64 << 10).any()
    s = m.stats()
    p.madvise(a, "64K", "free")
    assert delta(m, s, "madvise.lazyfree_pages") == 0
    assert not _lazy(m, p, a, 64 << 10).any()
    assert p.pagemap(a, "64K")["dirty"].all()  # skipped: not cleaned either
    c.exit()
    # Mapped by one process now: the check passes, PG_dirty is cleared, lazyfree.
    p.madvise(a, "64K", "free")
    assert _lazy(m, p, a, 64 << 10).all()
    assert not int(m.kernel.memmap.flags[head]) & PG_dirty
    assert_checked(m)


def test_second_free_writes_no_pte_and_flushes_nothing(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    a = p.mmap("1M")
    p.write(a, "1M", 1)
    with m.measure() as first:
        p.madvise(a, "1M", "free")
    assert first["mmu_gather.flush"] == 1
    with m.measure() as again:
        p.madvise(a, "1M", "free")
    # Old and clean already: clear_young_dirty_ptes() is not called, nothing is queued.
    assert again["pte.write"] == 0
    assert again["mmu_gather.flush"] == 0
    assert sum(v for k, v in again.items() if k.startswith("tlbi.")) == 0
    assert again.get("call.contpte_clear_young_dirty_ptes", 0) == 0
    # Written again: only that folio is cleaned and flushed.
    p.write(a + 64 * 1024, PAGE, 2)
    with m.measure() as third:
        p.madvise(a, "1M", "free")
    assert third["mmu_gather.flush"] == 1
    if arch == "arm64":
        assert third["call.contpte_clear_young_dirty_ptes"] == 1
    assert_checked(m)


def test_free_flushes_each_vma_on_its_own(arch: str) -> None:
    # Two VMAs 1G apart: one gather over both would flush the whole gap
    # (on arm64, one TLBI ASIDE1IS for the mm); one per VMA flushes each range.
    m = contpte.Machine(arch=arch, memory="64M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    lo = p.mmap("64K")
    hi = p.mmap("64K", addr=lo + (1 << 30))
    p.write(lo, "64K", 1)
    p.write(hi, "64K", 2)
    with m.measure() as d, pytest.raises(OSError) as e:
        p.madvise(lo, (1 << 30) + (64 << 10), "free")  # the hole between them: ENOMEM after advising both
    assert e.value.errno == errno.ENOMEM
    assert d["mmu_gather.flush"] == 2
    if arch == "arm64":
        assert d.get("tlbi.ASIDE1IS", 0) == 0
    assert _lazy(m, p, lo, 64 << 10).all() and _lazy(m, p, hi, 64 << 10).all()
    assert_checked(m)


def test_free_of_a_pmd_mapped_thp(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", thp="always", check=True)
    p = m.spawn()
    a = p.mmap("4M")
    p.write(a, "4M", 1)
    assert (p.pagemap(a, "4M")["order"] == 9).all()
    s = m.stats()
    # The whole first PMD: made old and clean in place, the folio lazyfree, no split.
    p.madvise(a, "2M", "free")
    pm = p.pagemap(a, "2M")
    assert (pm["order"] == 9).all() and not pm["dirty"].any() and not pm["young"].any()
    assert _lazy(m, p, a, 2 << 20).all()
    assert delta(m, s, "thp_split_pmd") == 0
    # Part of the second: the folio is split, the range's pages made lazyfree.
    p.madvise(a + (2 << 20), "64K", "free")
    pm = p.pagemap(a + (2 << 20), "2M")
    assert (pm["order"] == 0).all()
    lazy = _lazy(m, p, a + (2 << 20), 2 << 20)
    assert lazy[:16].all() and not lazy[16:].any()
    assert (p.read(a, "4M") == 1).all()
    assert_checked(m)


def test_free_leaves_a_shared_pmd_mapped_thp_alone(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="64M", thp="always", check=True)
    p = m.spawn()
    a = p.mmap("2M")
    p.write(a, "2M", 1)
    c = p.fork()
    s = m.stats()
    p.madvise(a, "2M", "free")  # madvise_free_huge_pmd() checks sharing always
    assert delta(m, s, "madvise.lazyfree_pages") == 0
    assert not _lazy(m, p, a, 2 << 20).any()
    assert (p.pagemap(a, "2M")["dirty"]).all()
    assert (c.read(a, "2M") == 1).all()
    assert_checked(m)
