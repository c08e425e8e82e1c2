"""khugepaged (``Machine.khugepaged_scan``, mm/khugepaged.py) against mm/khugepaged.c.

The expected values come from the kernel code (6.12.8 and 7.2.6 sources):
a PMD range of order-0 pages is collapsed into a PMD THP when the VMA may
have one; ``max_ptes_none`` (default 511) bounds the none PTEs,
``max_ptes_shared`` (256) the PTEs of shared folios; a page with a
reference beyond its mappings (a pin) refuses; v7.2 collapses into the
enabled mTHP sizes too, scaling ``max_ptes_none`` to ``2^order - 1``.
"""

from __future__ import annotations

import numpy as np
import pytest

import contpte

PAGE = 4096
PMD = 2 << 20
NR = 512

ARCHES = ("arm64", "generic")


def _machine(arch: str, kernel: str, **kw: object) -> contpte.Machine:
    kw.setdefault("memory", "64M")
    return contpte.Machine(arch=arch, kernel=kernel, **kw)  # type: ignore[arg-type]


def _region(m: contpte.Machine, pages: int = NR, huge_later: bool = True) -> tuple[contpte.Process, int]:
    """A PMD-aligned 2M range of an anon VMA, ``pages`` of it written in order-0 folios.

    The VMA is MADV_NOHUGEPAGE while it is faulted (no THP at fault), then
    MADV_HUGEPAGE (khugepaged may collapse it), as ``huge_later`` says.
    """
    p = m.spawn()
    a = p.mmap(2 * PMD, prot="rw", flags="private|anonymous")
    base = (a + PMD - 1) & ~(PMD - 1)
    p.madvise(a, 2 * PMD, "nohugepage")
    if pages:
        p.write(base, pages * PAGE, value=np.arange(pages, dtype=np.uint64) + 1000)
    if huge_later:
        p.madvise(a, 2 * PMD, "hugepage")
    return p, base


def _expected(pages: int) -> list[int]:
    return list(range(1000, 1000 + pages)) + [0] * (NR - pages)


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
@pytest.mark.parametrize("arch", ARCHES)
def test_collapse_into_a_pmd_thp(arch: str, kernel: str) -> None:
    m = _machine(arch, kernel, thp="always")
    p, base = _region(m)
    assert set(p.pagemap(base, PMD)["order"].tolist()) == {0}
    with m.measure() as d:
        r = m.khugepaged_scan()
    assert r["pages_collapsed"] == 1 and r["full_scans"] == 1
    pm = p.pagemap(base, PMD)
    assert set(pm["order"].tolist()) == {9}
    assert pm["pfn"].tolist() == list(range(int(pm["pfn"][0]), int(pm["pfn"][0]) + NR))
    assert p.read(base, PMD).tolist() == _expected(NR)
    # alloc_charge_folio() -> one PMD folio; the 512 old pages copied and freed.
    assert d["thp_collapse_alloc"] == 1 and d["thp_collapse_alloc_failed"] == 0
    assert d["folio.alloc"] == 1 and d["folio.alloc_pages"] == NR
    assert d["folio.free"] == NR and d["page.copy"] == NR and d["page.zero"] == 0
    assert d["mthp.2048kB.nr_anon"] == 1
    if arch == "arm64":
        # pmdp_collapse_flush(): flush_tlb_range() of 2M, without FEAT_TLBIRANGE
        # at least MAX_DVM_OPS pages -> flush_tlb_mm(): one TLBI ASIDE1IS.
        assert d["tlbi.ASIDE1IS"] == 1 and d["tlbi.total"] == 1
    assert p.rss()["anon"] == NR
    stats = m.mthp_stats()["2048kB"]
    if kernel == "7.2":
        assert stats["collapse_alloc"] == 1
    else:
        assert "collapse_alloc" not in stats
    m.check()
    # Nothing left to do on a second pass.
    with m.measure() as d:
        r = m.khugepaged_scan()
    assert r["pages_collapsed"] == 0 and d["thp_collapse_alloc"] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_not_eligible_without_thp(arch: str) -> None:
    """madvise THP without MADV_HUGEPAGE: the VMA is skipped (thp_vma_allowable_order)."""
    m = _machine(arch, "6.12", thp="madvise")
    p, base = _region(m, huge_later=False)
    r = m.khugepaged_scan()
    assert r["pages_collapsed"] == 0
    assert set(p.pagemap(base, PMD)["order"].tolist()) == {0}
    assert m.stats()["thp_collapse_alloc"] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_max_ptes_none(arch: str) -> None:
    """100 pages present, 412 none: collapsed iff max_ptes_none >= 412; the none pages become zeroed ones."""
    for limit, collapses in ((411, False), (412, True)):
        m = _machine(arch, "6.12", thp="always")
        m.kernel.khugepaged_max_ptes_none = limit
        p, base = _region(m, pages=100)
        with m.measure() as d:
            r = m.khugepaged_scan()
        assert r["pages_collapsed"] == int(collapses)
        if collapses:
            assert d["thp_collapse_alloc"] == 1 and d["thp_scan_exceed_none_pte"] == 0
            assert d["page.copy"] == 100 and d["page.zero"] == 412
            assert set(p.pagemap(base, PMD)["order"].tolist()) == {9}
        else:
            # hpage_collapse_scan_pmd(): the 412th none PTE exceeds the limit.
            assert d["thp_scan_exceed_none_pte"] == 1 and d["thp_collapse_alloc"] == 0
            assert set(p.pagemap(base, 100 * PAGE)["order"].tolist()) == {0}
        assert p.read(base, PMD).tolist() == _expected(100)
        m.check()


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
@pytest.mark.parametrize("arch", ARCHES)
def test_a_pinned_page_refuses(arch: str, kernel: str) -> None:
    m = _machine(arch, kernel, thp="always")
    p, base = _region(m)
    p.pin(base + 7 * PAGE, PAGE)
    with m.measure() as d:
        r = m.khugepaged_scan()
    # is_refcount_suitable() / folio_expected_ref_count(): refused at the scan, before any allocation.
    assert r["pages_collapsed"] == 0 and d["thp_collapse_alloc"] == 0 and d["folio.alloc"] == 0
    assert set(p.pagemap(base, PMD)["order"].tolist()) == {0}
    p.unpin(base + 7 * PAGE, PAGE)
    r = m.khugepaged_scan()
    assert r["pages_collapsed"] == 1
    assert set(p.pagemap(base, PMD)["order"].tolist()) == {9}
    assert p.read(base, PMD).tolist() == _expected(NR)
    m.check()


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
@pytest.mark.parametrize("arch", ARCHES)
def test_shared_pages_refuse(arch: str, kernel: str) -> None:
    """After fork every page is shared: the 257th exceeds max_ptes_shared (256), in parent and child."""
    m = _machine(arch, kernel, thp="always")
    p, base = _region(m)
    c = p.fork()
    with m.measure() as d:
        r = m.khugepaged_scan()
    assert r["pages_collapsed"] == 0
    assert d["thp_scan_exceed_share_pte"] == 2 and d["thp_collapse_alloc"] == 0
    if kernel == "7.2":
        assert m.mthp_stats()["2048kB"]["collapse_exceed_shared_pte"] == 2
    c.exit()
    r = m.khugepaged_scan()
    if kernel == "6.12":
        # Exclusive again, but fork left every PTE write-protected: SCAN_PAGE_RO
        # until a write fault reuses a page and makes its PTE writable.
        assert r["pages_collapsed"] == 0
        p.write(base, PAGE, 1000)
        r = m.khugepaged_scan()
    assert r["pages_collapsed"] == 1
    assert p.read(base, PMD).tolist() == _expected(NR)
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_mthp_collapse_is_new_in_7_2(arch: str) -> None:
    """64K mTHP enabled (madvise), 2M disabled: 7.2 collapses into 64K folios, 6.12 does nothing."""
    for kernel in ("6.12", "7.2"):
        m = _machine(arch, kernel, thp="never", mthp={"64K": "madvise"})
        p, base = _region(m)
        with m.measure() as d:
            r = m.khugepaged_scan()
        pm = p.pagemap(base, PMD)
        if kernel == "6.12":
            assert r["pages_collapsed"] == 0 and d["folio.alloc"] == 0
            assert set(pm["order"].tolist()) == {0}
            assert "collapse_alloc" not in m.mthp_stats()["64kB"]
            continue
        # mthp_collapse(): 32 aligned 16-PTE ranges, each collapse_huge_page() at order 4.
        assert r["pages_collapsed"] == 1
        assert set(pm["order"].tolist()) == {4}
        assert d["mthp.64kB.collapse_alloc"] == 32 and d["thp_collapse_alloc"] == 0
        assert d["folio.alloc"] == 32 and d["folio.free"] == NR and d["page.copy"] == NR
        stats = m.mthp_stats()["64kB"]
        assert stats["collapse_alloc"] == 32 and stats["nr_anon"] == 32
        if arch == "arm64":
            # map_anon_folio_pte_nopf(): set_ptes() over each whole block folds it.
            assert int(pm["cont"].sum()) == NR
            # Each collapse_huge_page() flushes the whole PMD range (pmdp_collapse_flush).
            assert d["tlbi.ASIDE1IS"] == 32
        else:
            assert int(pm["cont"].sum()) == 0
        assert p.read(base, PMD).tolist() == _expected(NR)
        m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_mthp_max_ptes_none_scales_per_order(arch: str) -> None:
    """7.2 collapse_max_ptes_none(): 2^order - 1 at the default limit (511), else 0 for mTHP orders."""
    for limit, collapsed in ((511, 2), (0, 1), (100, 1)):
        m = _machine(arch, "7.2", thp="never", mthp={"64K": "madvise"})
        m.kernel.khugepaged_max_ptes_none = limit
        p = m.spawn()
        a = p.mmap(2 * PMD, prot="rw", flags="private|anonymous")
        base = (a + PMD - 1) & ~(PMD - 1)
        p.madvise(a, 2 * PMD, "nohugepage")
        p.write(base, 16 * PAGE, value=5)  # pages 0..15: a whole 64K range
        p.write(base + 100 * PAGE, PAGE, value=6)  # one page of the range 96..111
        p.madvise(a, 2 * PMD, "hugepage")
        with m.measure() as d:
            m.khugepaged_scan()
        assert d["mthp.64kB.collapse_alloc"] == collapsed
        orders = p.pagemap(base, PMD)["order"].tolist()
        assert orders[0:16] == [4] * 16
        assert orders[96:112] == [4 if collapsed == 2 else 0] * 16
        # The none PTEs of a collapsed range become zeroed pages of the folio (RSS grows).
        assert d["page.zero"] == 15 * (collapsed - 1)
        vals = p.read(base, PMD).tolist()
        assert vals[:16] == [5] * 16 and vals[100] == 6 and vals[16] == 0
        m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_read_only_ranges_collapse_from_6_18(arch: str) -> None:
    """v6.12 needs a writable PTE (SCAN_PAGE_RO); the requirement is gone in 6.18.15."""
    for kernel, collapses in (("6.12", False), ("6.17", False), ("6.18", True), ("7.2", True)):
        m = _machine(arch, kernel, thp="always")
        p, base = _region(m)
        p.mprotect(base, PMD, "r")
        r = m.khugepaged_scan()
        assert r["pages_collapsed"] == int(collapses), kernel
        pm = p.pagemap(base, PMD)
        assert set(pm["order"].tolist()) == ({9} if collapses else {0})
        assert not pm["writable"].any()
        assert p.read(base, PMD).tolist() == _expected(NR)
        m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_lazyfree_pages_are_left_from_7_1(arch: str) -> None:
    """MADV_FREE'd clean pages: 6.19 collapses them into a swap-backed THP; 7.1 refuses (SCAN_PAGE_LAZYFREE)."""
    for kernel, collapses in (("6.19", True), ("7.1", False)):
        m = _machine(arch, kernel, thp="always")
        p, base = _region(m)
        p.madvise(base, PMD, "free")  # every PTE old and clean, the folios lazyfree
        p.write(base, PAGE, 1000)  # one young PTE: enough referenced pages
        r = m.khugepaged_scan()
        assert r["pages_collapsed"] == int(collapses), kernel
        assert set(p.pagemap(base, PMD)["order"].tolist()) == ({9} if collapses else {0})
        if collapses:
            assert p.read(base, PMD).tolist() == _expected(NR)
        m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_batched_release_of_large_folios_from_6_17(arch: str) -> None:
    """Collapsing 64K folios into a PMD THP: v6.12 removes one PTE at a time, so each
    folio is seen partially mapped (deferred split queued: split_deferred) and, on
    arm64, its contiguous block is unfolded first; 6.17 clears a folio's PTEs as one batch."""
    for kernel, batched in (("6.12", False), ("6.17", True)):
        m = _machine(arch, kernel, thp="madvise", mthp={"64K": "always"})
        p = m.spawn()
        a = p.mmap(2 * PMD, prot="rw", flags="private|anonymous")
        base = (a + PMD - 1) & ~(PMD - 1)
        p.write(base, PMD, value=np.arange(NR, dtype=np.uint64) + 1000)
        assert set(p.pagemap(base, PMD)["order"].tolist()) == {4}
        p.madvise(a, 2 * PMD, "hugepage")
        with m.measure() as d:
            r = m.khugepaged_scan()
        assert r["pages_collapsed"] == 1
        assert set(p.pagemap(base, PMD)["order"].tolist()) == {9}
        assert d["folio.free"] == 32
        assert d["mthp.64kB.split_deferred"] == (0 if batched else 32)
        assert d["mthp.64kB.nr_anon"] == -32
        if arch == "arm64":
            assert d["contpte.unfold"] == (0 if batched else 32)
        assert p.read(base, PMD).tolist() == _expected(NR)
        m.check()


def test_pages_budget_keeps_the_cursor() -> None:
    """pages=N: a PMD range counts HPAGE_PMD_NR; the scan resumes where it stopped."""
    m = _machine("arm64", "6.12", thp="always", memory="128M")
    p = m.spawn()
    a = p.mmap(5 * PMD, prot="rw", flags="private|anonymous")
    base = (a + PMD - 1) & ~(PMD - 1)
    p.madvise(a, 5 * PMD, "nohugepage")
    p.write(base, 4 * PMD, value=3)
    p.madvise(a, 5 * PMD, "hugepage")
    # The first call stops after the first range (a collapse drops the mmap_lock: the
    # kernel returns to khugepaged_do_scan()), and again until the budget is used.
    r = m.khugepaged_scan(pages=NR)
    assert r["pages_collapsed"] == 1 and r["full_scans"] == 0
    r = m.khugepaged_scan(pages=3 * NR)
    assert r["pages_collapsed"] == 3 and r["full_scans"] == 0
    assert set(p.pagemap(base, 4 * PMD)["order"].tolist()) == {9}
    r = m.khugepaged_scan()
    assert r["pages_collapsed"] == 0 and r["full_scans"] == 2  # the rest of this pass, then one more
    with pytest.raises(contpte.ModelUsageError):
        m.khugepaged_scan(pages=0)
    m.check()


def test_scenario_verb() -> None:
    from contpte.workloads.scenario import format_step, parse, run

    text = (
        "machine arch=arm64 memory=64M thp=always kernel=7.2\n"
        "p = spawn\n"
        "buf = p mmap 4M rw private|anonymous\n"
        "p madvise buf 4M nohugepage\n"
        "p write buf 4M 7\n"
        "p madvise buf 4M hugepage\n"
        "khugepaged pages=4096\n"
        "khugepaged\n"
        "p read buf 4M expect=7\n"
    )
    sc = parse(text, "<test>")
    steps = [s for s in sc.steps if s.op == "khugepaged"]
    assert [s.args for s in steps] == [{"pages": 4096}, {}]
    assert [format_step(s) for s in steps] == ["khugepaged pages=4096", "khugepaged"]
    outs = run(sc)
    assert len(outs) == len(sc.steps)
    assert all(o.error is None and o.failed is None for o in outs), [o.text for o in outs if o.error]
    assert outs[-1].values == [7] * 1024


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
@pytest.mark.parametrize("arch", ARCHES)
def test_madvise_collapse(arch: str, kernel: str) -> None:
    """MADV_COLLAPSE (madvise_collapse): synchronous, PMD order only, sysfs settings ignored."""
    m = _machine(arch, kernel, thp="never", mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(2 * PMD, prot="rw", flags="private|anonymous")
    assert a % PMD == 0
    p.write(a, 100 * PAGE, value=np.arange(100, dtype=np.uint64) + 1000)  # 64K folios at fault
    p.write(a + PMD, PMD, value=np.arange(NR, dtype=np.uint64) + 1000)
    with m.measure() as d:
        p.madvise(a, 2 * PMD, "collapse")
    # No limit on none PTEs for MADV_COLLAPSE (collapse_max_ptes_none: HPAGE_PMD_NR); no mTHP target.
    assert d["thp_collapse_alloc"] == 2 and d["mthp.64kB.collapse_alloc"] == 0
    # The first range holds seven 64K folios (112 pages, 100 written): 112 copied, 400 zeroed.
    assert d["page.copy"] == 112 + NR and d["page.zero"] == NR - 112
    pm = p.pagemap(a, 2 * PMD)
    assert set(pm["order"].tolist()) == {9}
    assert p.read(a, PMD).tolist() == _expected(100)
    assert p.read(a + PMD, PMD).tolist() == _expected(NR)
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_madvise_collapse_errors(arch: str) -> None:
    m = _machine(arch, "6.18", thp="always")
    p, base = _region(m, huge_later=False)  # still MADV_NOHUGEPAGE
    with pytest.raises(OSError) as e:
        p.madvise(base, PMD, "collapse")
    assert e.value.errno == 22  # EINVAL: thp_vma_allowable_order() refuses VM_NOHUGEPAGE
    p.madvise(base, PMD, "hugepage")
    p.pin(base, PAGE)
    with pytest.raises(OSError) as e:
        p.madvise(base, PMD, "collapse")
    assert e.value.errno == 11  # EAGAIN: SCAN_PAGE_COUNT
    assert set(p.pagemap(base, PMD)["order"].tolist()) == {0}
    p.unpin(base, PAGE)
    p.madvise(base, PMD, "collapse")
    assert set(p.pagemap(base, PMD)["order"].tolist()) == {9}
    p.madvise(base, PMD, "collapse")  # already a PMD: SCAN_PMD_MAPPED counts as done
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_madvise_collapse_read_only(arch: str) -> None:
    """v6.12 needs a writable PTE even for MADV_COLLAPSE (SCAN_PAGE_RO: EINVAL); 6.18 does not."""
    for kernel, ok in (("6.12", False), ("6.18", True)):
        m = _machine(arch, kernel, thp="always")
        p, base = _region(m)
        p.mprotect(base, PMD, "r")
        if ok:
            p.madvise(base, PMD, "collapse")
        else:
            with pytest.raises(OSError) as e:
                p.madvise(base, PMD, "collapse")
            assert e.value.errno == 22
        assert set(p.pagemap(base, PMD)["order"].tolist()) == ({9} if ok else {0})
        m.check()
