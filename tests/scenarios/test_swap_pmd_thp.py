"""Swap-out of PMD-mapped THPs (THP_SWAP) and reclaim at fork's lock break.

The expected counts follow Linux v6.12 (the same in 6.17, 6.18 and 7.2):

- ``shrink_folio_list()`` (mm/vmscan.c): a PMD-mapped anon THP gets a whole
  free cluster (``add_to_swap()`` -> ``get_swap_pages()`` at PMD order, 512
  slots with 4K pages); ``try_to_unmap()`` with ``TTU_SPLIT_HUGE_PMD``
  splits the PMD (``split_huge_pmd_locked(freeze=false)``: ``thp_split_pmd``
  1 per mapping VMA) and makes the 512 PTEs swap PTEs one at a time; the
  folio is written whole (``count_swpout_vm_event()``: ``thp_swpout`` 1,
  ``swpout`` 1 at 2048kB, ``pswpout`` 512).  A folio in the swap cache is
  not queued for deferred split while it is unmapped
  (``deferred_split_folio()``: ``thp_deferred_split_page`` 0).
- no free cluster: ``split_folio_to_list()`` (the PMD first, then the
  folio: ``thp_split_page`` 1), ``thp_swpout_fallback`` 1 and
  ``swpout_fallback`` 1 at 2048kB, the pages one by one.
- swap-in stays below PMD order (``alloc_swap_folio()``:
  ``BIT(PMD_ORDER) - 1``): order-0 pages when only 2M is enabled.
- MADV_PAGEOUT of a whole PMD (mm/madvise.c
  ``madvise_cold_or_pageout_pte_range()``, ``pmd_trans_huge``) leaves a
  folio likely mapped by another process alone; MADV_COLD makes a young
  PMD old; reclaim's ``folio_referenced()`` tests and clears the PMD's
  young bit (``pmdp_clear_flush_young_notify()``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import contpte
from contpte.workloads.explore import explore
from contpte.workloads.scenario import parse, parse_file, run

K = 1024
M = 1024 * K
ARCHES = ("arm64", "generic")
THREADS = Path(__file__).parent / "threads"


def _thp(
    arch: str, swap: str = "16M", kernel: str = "6.12", **kw: object
) -> tuple[contpte.Machine, object, int]:
    m = contpte.Machine(
        arch=arch,
        kernel=kernel,
        memory="64M",
        thp="always",
        swap=swap,
        check=True,
        **kw,  # type: ignore[arg-type]
    )
    p = m.spawn()
    a = p.mmap(4 * M)
    a2 = (a + 2 * M - 1) & ~(2 * M - 1)
    p.write(a2, 2 * M, 3)
    assert p.pagemap(a2, 2 * M)["order"].tolist() == [9] * 512
    return m, p, a2


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
@pytest.mark.parametrize("arch", ARCHES)
def test_pageout_swaps_a_pmd_thp_out_whole(arch: str, kernel: str) -> None:
    m, p, a = _thp(arch, kernel=kernel)
    with m.measure() as d:
        p.madvise(a, 2 * M, "pageout")  # type: ignore[attr-defined]
    assert d["thp_swpout"] == 1 and d["thp_swpout_fallback"] == 0
    assert d["mthp.2048kB.swpout"] == 1 and d["mthp.2048kB.swpout_fallback"] == 0
    assert d["thp_split_pmd"] == 1 and d["thp_split_page"] == 0
    assert d["thp_deferred_split_page"] == 0  # in the swap cache while unmapped
    assert d["pswpout"] == 512 and d["pgsteal"] == 512
    pm = p.pagemap(a, 2 * M)  # type: ignore[attr-defined]
    assert pm["swap"].all() and not pm["present"].any()
    offs = pm["swap_offset"]
    assert offs[0] % 512 == 0 and offs.tolist() == list(range(offs[0], offs[0] + 512))
    assert m.swap is not None and m.swap.inuse_pages == 512
    assert list(p.mm.rss) == [0, 0, 512, 0]  # type: ignore[attr-defined]
    # Swap-in is below PMD order: one page, order 0.
    with m.measure() as d:
        assert p.read(a + 8 * K, 4 * K).tolist() == [3]  # type: ignore[attr-defined]
    assert d["pswpin"] == 1
    assert p.pagemap(a + 8 * K, 4 * K)["order"].tolist() == [0]  # type: ignore[attr-defined]
    assert p.read(a, 2 * M).tolist() == [3] * 512  # type: ignore[attr-defined]
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_pmd_thp_without_a_free_cluster_falls_back_to_pages(arch: str) -> None:
    # A 4M device: cluster 0 holds the header, cluster 1 is the one free
    # cluster; a 64K folio paged out first takes it (order 4).
    m, p, a = _thp(arch, swap="4M", mthp={"64K": "always"})
    small = p.mmap(64 * K)  # type: ignore[attr-defined]
    p.write(small, 64 * K, 1)  # type: ignore[attr-defined]
    p.madvise(small, 64 * K, "pageout")  # type: ignore[attr-defined]
    with m.measure() as d:
        p.madvise(a, 2 * M, "pageout")  # type: ignore[attr-defined]
    assert d["thp_swpout"] == 0 and d["thp_swpout_fallback"] == 1
    assert d["mthp.2048kB.swpout"] == 0 and d["mthp.2048kB.swpout_fallback"] == 1
    assert d["thp_split_pmd"] == 1 and d["thp_split_page"] == 1
    assert d["pswpout"] == 512 and d["pgsteal"] == 512
    assert p.pagemap(a, 2 * M)["swap"].all()  # type: ignore[attr-defined]
    assert p.read(a, 2 * M).tolist() == [3] * 512  # type: ignore[attr-defined]
    assert p.read(small, 64 * K).tolist() == [1] * 16  # type: ignore[attr-defined]
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_reclaim_keeps_a_young_pmd_thp_once(arch: str) -> None:
    m, p, a = _thp(arch)
    with m.measure() as d:
        assert m.reclaim() == 0  # the PMD was young: kept, made old
    assert d["thp_swpout"] == 0
    with m.measure() as d:
        assert m.reclaim() == 512
    assert d["thp_swpout"] == 1 and d["thp_split_pmd"] == 1
    assert p.read(a, 2 * M).tolist() == [3] * 512  # type: ignore[attr-defined]
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_cold_makes_the_pmd_old(arch: str) -> None:
    m, p, a = _thp(arch)
    p.madvise(a, 2 * M, "cold")  # type: ignore[attr-defined]
    assert p.pagemap(a, 2 * M)["order"].tolist() == [9] * 512  # type: ignore[attr-defined]
    with m.measure() as d:
        assert m.reclaim() == 512
    assert d["thp_swpout"] == 1
    m.check()


@pytest.mark.parametrize("arch", ARCHES)
def test_pmd_thp_shared_by_fork(arch: str) -> None:
    m, p, a = _thp(arch)
    c = p.fork()  # type: ignore[attr-defined]
    with m.measure() as d:
        p.madvise(a, 2 * M, "pageout")  # type: ignore[attr-defined]
    assert d.get("pswpout", 0) == 0  # likely mapped by another process: left alone
    p.madvise(a, 2 * M, "cold")  # type: ignore[attr-defined]
    assert p.pagemap(a, 4 * K)["young"].tolist() == [True]  # type: ignore[attr-defined]  # COLD skips it too
    assert m.reclaim() == 0  # the parent's PMD was young: kept, made old
    with m.measure() as d:
        assert m.reclaim() == 512
    # try_to_unmap() splits the PMD of each mapping VMA.
    assert d["thp_swpout"] == 1 and d["thp_split_pmd"] == 2
    offs = p.pagemap(a, 2 * M)["swap_offset"]  # type: ignore[attr-defined]
    assert c.pagemap(a, 2 * M)["swap_offset"].tolist() == offs.tolist()
    assert m.swap is not None
    assert set(np.asarray(m.swap.swap_map)[offs].tolist()) == {2}
    c.write(a, 4 * K, 8)
    assert p.read(a, 2 * M).tolist() == [3] * 512  # type: ignore[attr-defined]
    assert c.read(a, 8 * K).tolist() == [8, 3]
    m.check()


def test_the_live_oracle_scenarios_run_on_the_model() -> None:
    lib = Path(contpte.__file__).parent / "oracle" / "scenarios"
    for name in ("swap-pmd-thp.scn", "swap-pmd-thp-fallback.scn"):
        for arch in ARCHES:
            outs = run(parse_file(str(lib / name)), arch=arch)
            assert not [o for o in outs if o.failed], name


# -- reclaim at fork's lock break ------------------------------------------------
def test_reclaim_at_fork_lock_break() -> None:
    outs = run(parse_file(str(THREADS / "fork-lock-break-reclaim.scn")))
    assert not [o for o in outs if o.failed]
    at = next(o for o in outs if o.op == "reclaim")
    assert at.ran == "fork.lock_break:1"
    fork = next(o for o in outs if o.op == "fork")
    # The four 64K folios go out whole (the reclaim runs inside the fork step).
    assert fork.counters["mthp.64kB.swpout"] == 4 and fork.counters["pswpout"] == 64
    assert fork.counters["swap.ptes_copied"] == 48  # the three folios fork had not copied yet


def _explorable() -> str:
    text = (THREADS / "fork-lock-break-reclaim.scn").read_text()
    return text.replace("at fork.lock_break:1 reclaim", "at fork.lock_break reclaim")


@pytest.mark.parametrize("arch", ARCHES)
def test_explore_reclaim_at_every_lock_break(arch: str) -> None:
    res = explore(parse(_explorable(), "fork-lock-break-reclaim.scn"), bound=1, arch=arch)
    assert res.ok and res.complete
    # fork copies four 64K batches (progress 128 each): a lock break before
    # each of the last three; reclaim fires at one of them, or after the fork.
    assert res.schedules == 4


def test_explore_finds_the_stale_pte_bug() -> None:
    sc = parse(_explorable(), "fork-lock-break-reclaim.scn")
    res = explore(sc, bound=1, bugs=("fork_stale_pte_after_lock_break",))
    assert not res.ok
    bad = [o for o in res.failure or [] if o.failed]
    assert bad and bad[0].violation is not None and bad[0].violation.rule == "fork-copy"


def test_reclaim_elsewhere_runs_after_the_step() -> None:
    text = """machine arch=arm64 memory=32M cpus=2 mthp.64K=always swap=16M check=true
p = spawn
buf = p mmap 128K rw private|anonymous
p write buf 64K 5
at do_anonymous_page reclaim
p write buf+64K 64K 6
p read buf 128K
"""
    outs = run(parse(text, "reclaim-after.scn"))
    assert not [o for o in outs if o.failed]
    assert next(o for o in outs if o.op == "reclaim").ran == "blocked at do_anonymous_page:1, resumed after"


def test_reclaim_at_lock_break_discards_lazyfree_pages_in_the_parent_only() -> None:
    # Found by contpte fuzz (seed 6): a lazyfree 64K folio, one page written
    # again, shared by the fork's first batch.  Reclaim at the next lock
    # break walks the parent first: try_to_unmap_one() discards its clean
    # pages one by one until the dirty one, which it maps again (folio
    # swap-backed again) and stops; the child keeps all 16 (v6.12).  fork-copy
    # no longer compares what fork had copied before that break.
    text = """machine arch=generic memory=32M cpus=4 mthp.64K=always swap=8M check=true
p = spawn
buf = p mmap 512K rw private|anonymous
p write buf 64K 7
p madvise buf 64K free
p write buf+60K 4K 8
reclaim
at fork.lock_break:2 reclaim
c = p fork
p read buf 64K
c read buf 64K
"""
    outs = run(parse(text, "lazyfree-at-lock-break.scn"))
    assert not [o for o in outs if o.failed]
    assert next(o for o in outs if o.op == "reclaim" and o.ran).ran == "fork.lock_break:2"
    reads = [o.values for o in outs if o.op == "read"]
    assert reads[0] == [0] * 15 + [8]  # the parent's clean pages were discarded
    assert reads[1] == [7] * 15 + [8]  # the child's mappings stay
