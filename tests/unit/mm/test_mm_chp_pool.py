"""The OnePlus hugepage pool (mm/chp_pool.py): allocation order, watermarks, refill, freeing back.

Every expected count follows OnePlus mm/cont_pte_hugepage.c (sm8550,
CONFIG_POOL_ASYNC_RECLAIM 1): ``huge_page_pool_init``,
``huge_page_pool_chunk_refill``, ``huge_page_pool_refill_worker``,
``huge_page_pool_remove``, ``get_page_from_huge_pool``,
``__alloc_cont_pte_hugepage``, ``alloc_cont_pte_hugepage``,
``alloc_chp_from_buddy`` and ``__free_cont_pte_hugepages``; the small
sizes make the counts easy to follow (a block is 64K, 16 pages).
"""

from __future__ import annotations

from typing import Any

import pytest

from contpte import Machine
from contpte.errors import InvariantViolation, KernelBug, ModelUsageError
from contpte.mm.chp_pool import (
    CHP_GFP_DIRECT_RECLAIM,
    CHP_GFP_KSWAPD_RECLAIM,
    CHP_GFP_ZERO,
    HPAGE_POOL_BUDDY,
    HPAGE_POOL_CMA,
    HugePagePool,
    alloc_cont_pte_hugepage,
    chp_defaults,
    free_cont_pte_hugepages,
)

K = 64 << 10


def _machine(**kw: Any) -> Machine:
    # 32M of memory; a 1M CMA area (16 blocks); high 10 blocks (wmark min 3,
    # low 7, high 10); min_buddy 4 blocks; buddy budget 16 blocks at boot, 8 stable.
    opts: dict[str, Any] = {
        "memory": "32M",
        "chp_cma": "1M",
        "chp_pool_high": 10 * K,
        "chp_min_buddy": 4 * K,
        "chp_max_buddy": 16 * K,
        "chp_stable_max_buddy": 8 * K,
    }
    opts.update(kw)
    return Machine(**opts)


def _chp(m: Machine) -> dict[str, int]:
    return {k: v for k, v in m.stats().items() if k.startswith("chp.") and v}


def _use(m: Machine, pfn: int) -> None:
    """What core-mm does with a block: make it an order-4 folio holding one reference."""
    m.kernel.memmap.prep(pfn, 4)


def test_boot_fills_the_pool() -> None:
    m = _machine()
    pool: HugePagePool = m.kernel.chp_pool
    assert pool.wmark == [3, 7, 10] and pool.low == 7
    # The CMA area is the top 1M of memory, all in the CMA list; the chunk
    # refill then takes min_buddy blocks from the buddy allocator, and the
    # worker's first loop finds nothing to do (expect 0: no alloc_success).
    assert pool.cma_base == (32 << 20 >> 12) - 256
    assert list(pool.items[HPAGE_POOL_CMA]) == list(range(pool.cma_base, pool.cma_base + 256, 16))
    assert _chp(m) == {
        "chp.pool_cma": 16,
        "chp.pool_buddy": 4,
        "chp.refill_blocks": 4,
        "chp.refill_kworker_wake_up": 1,
    }
    s = m.chp_pool_stats()
    assert s["pool_pages"] == 20 * 16 and s["cont_pte_cma_size"] == 1 << 20
    m.check()


def test_fast_path_cma_then_buddy_list_then_refill() -> None:
    m = _machine()
    k = m.kernel
    pool: HugePagePool = k.chp_pool
    cma = list(pool.items[HPAGE_POOL_CMA])
    buddy = list(pool.items[HPAGE_POOL_BUDDY])
    got = []
    for _ in range(9):
        got.append(alloc_cont_pte_hugepage(k, 0))
    # CMA blocks while the CMA list holds more than wmark[LOW] (7), oldest first.
    assert got == cma[:9] and pool.count[HPAGE_POOL_CMA] == 7
    # Then the buddy list, whatever the CMA list still holds.
    got = [alloc_cont_pte_hugepage(k, 0) for _ in range(3)]
    assert got == buddy[:3]
    # The third took the buddy list below min_buddy / 2 (1 < 2): the worker
    # ran when that allocation returned and refilled it to min_buddy (3 blocks,
    # more than half of what it wanted: alloc_success).
    assert pool.count[HPAGE_POOL_BUDDY] == 4
    for pfn in got + cma[:9]:
        _use(m, pfn)
    assert _chp(m) == {
        "chp.pool_cma": 7,
        "chp.pool_buddy": 4,
        "chp.alloc_from_pool_cma": 9,
        "chp.alloc_from_pool_buddy": 3,
        "chp.usage_cma": 9,
        "chp.usage_buddy": 3,
        "chp.refill_blocks": 7,
        "chp.refill_kworker_wake_up": 2,
        "chp.refill_kworker_alloc_success": 1,
    }
    m.check()


def test_empty_pool_takes_the_slow_path_until_the_budget_is_used() -> None:
    # No CMA, no buddy list: every block comes from alloc_chp_from_buddy().
    m = _machine(chp_cma=0, chp_min_buddy=0, chp_pool_high=0)
    k = m.kernel
    got = [alloc_cont_pte_hugepage(k, 0) for _ in range(17)]
    assert all(p >= 0 and p % 16 == 0 for p in got)
    # The 17th found usage == the boot budget (16): the budget dropped to the
    # stable one (8), and that allocation still went ahead.
    assert k.chp_pool.sysctl_max_chp_buddy_count == 8
    # From now on the slow path is never tried.
    assert alloc_cont_pte_hugepage(k, 0) == -1
    for pfn in got:
        _use(m, pfn)
    assert _chp(m) == {
        "chp.page_alloc_slow_path": 17,
        "chp.alloc_from_buddy_slow_path": 17,
        "chp.page_alloc_failed": 1,
        "chp.usage_buddy": 17,
        "chp.refill_kworker_wake_up": 1,
    }
    m.check()


def test_below_low_wakes_kswapd() -> None:
    m = _machine(chp_min_buddy=0)
    k = m.kernel
    for _ in range(9):
        _use(m, alloc_cont_pte_hugepage(k, 0))
    before = m.stats()
    # 7 CMA blocks left, no buddy list: the fast path (wmark[LOW] 7) fails,
    # kswapd is woken, slow path 1 takes a CMA block down to wmark[MIN] (3).
    pfn = alloc_cont_pte_hugepage(k, CHP_GFP_KSWAPD_RECLAIM)
    assert pfn >= 0 and k.chp_pool.within_cont_pte_cma(pfn)
    _use(m, pfn)
    d = {n: v for n, v in m.stats_delta(before).items() if n.startswith("chp.") and v}
    # kswapd ran (the CMA list, 6, is below wmark[HIGH]) and found nothing it could reclaim.
    assert d == {
        "chp.wmark_low": 1,
        "chp.kswapd_runs": 1,
        "chp.alloc_from_pool_cma": 1,
        "chp.pool_cma": -1,
        "chp.usage_cma": 1,
    }
    # Without the flag, no kswapd: the same slow path, counted nowhere else.
    before = m.stats()
    _use(m, alloc_cont_pte_hugepage(k, 0))
    d = {n: v for n, v in m.stats_delta(before).items() if n.startswith("chp.") and v}
    assert d == {"chp.alloc_from_pool_cma": 1, "chp.pool_cma": -1, "chp.usage_cma": 1}
    m.check()


def test_below_min_direct_reclaim() -> None:
    m = _machine(chp_min_buddy=0, chp_max_buddy=0, chp_stable_max_buddy=0, chp_direct_reclaim=True)
    k = m.kernel
    got = []
    for _ in range(16):
        pfn = alloc_cont_pte_hugepage(k, CHP_GFP_DIRECT_RECLAIM)
        if pfn < 0:
            break
        _use(m, pfn)
        got.append(pfn)
    # Direct reclaim halves wmark[MIN] (POOL_ALLOC_HARDER): 3 -> 2, so the CMA
    # list gives blocks while it holds more than 2: 14 blocks.
    assert len(got) == 14
    s = _chp(m)
    # The 15th: below min, direct reclaim; nothing the model can reclaim
    # (no swap, nothing lazyfree): fail; the budget is the stable one, so no slow path.
    assert s["chp.wmark_min"] == 1 and s["chp.direct_reclaim_enter"] == 1
    assert s["chp.direct_reclaim_fail"] == 1 and "chp.direct_reclaim_success" not in s
    assert s["chp.page_alloc_failed"] == 1 and "chp.page_alloc_slow_path" not in s
    # chp_direct_reclaim=False (the OnePlus build: CONFIG_POOL_DIRECT_RECLAIM 0) never reclaims.
    m2 = _machine(chp_min_buddy=0, chp_max_buddy=0, chp_stable_max_buddy=0)
    while (pfn := alloc_cont_pte_hugepage(m2.kernel, CHP_GFP_DIRECT_RECLAIM)) >= 0:
        _use(m2, pfn)
    assert "chp.direct_reclaim_enter" not in _chp(m2)
    assert m2.kernel.chp_pool.count[HPAGE_POOL_CMA] == 2


def test_cma_block_freed_returns_to_the_pool() -> None:
    m = _machine(chp_min_buddy=0)
    k = m.kernel
    pool: HugePagePool = k.chp_pool
    first = alloc_cont_pte_hugepage(k, CHP_GFP_ZERO)
    _use(m, first)
    assert pool.count[HPAGE_POOL_CMA] == 15
    k.folio_put(first)  # the last reference: the folio is freed, the block goes back
    assert pool.count[HPAGE_POOL_CMA] == 16
    assert list(pool.items[HPAGE_POOL_CMA])[-1] == first  # list_add_tail
    s = _chp(m)
    assert s["chp.free_to_pool"] == 1 and "chp.usage_cma" not in s
    m.check()


def test_buddy_block_freed_goes_back_to_the_buddy_allocator() -> None:
    m = _machine(chp_cma=0, chp_min_buddy=0, chp_pool_high=0)
    k = m.kernel
    free0 = k.buddy.nr_free
    pfn = alloc_cont_pte_hugepage(k, 0)
    _use(m, pfn)
    assert k.buddy.nr_free == free0 - 16
    k.folio_put(pfn)
    assert k.buddy.nr_free == free0
    assert _chp(m)["chp.free_to_buddy"] == 1
    m.check()


def test_mainline_allocations_never_get_cma_frames() -> None:
    m = _machine(mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(8 << 20, prot="rw", flags="private|anonymous")
    p.write(a, 8 << 20, value=3)
    pool: HugePagePool = m.kernel.chp_pool
    pfns = p.pagemap(a, 8 << 20)["pfn"]
    assert not any(pool.within_cont_pte_cma(int(f)) for f in pfns)
    m.check()


def test_defaults_follow_the_design_ratios() -> None:
    d = chp_defaults(12 << 30)
    assert d == {
        "chp_cma": 3 << 30,
        "chp_pool_high": 90 << 20,
        "chp_min_buddy": 32 << 20,
        "chp_max_buddy": 1536 << 20,
        "chp_stable_max_buddy": 300 << 20,
    }
    m = Machine(memory="96M", chp_cma="24M")
    pool: HugePagePool = m.kernel.chp_pool
    # 96M is 1/128 of 12G: high 720K (11 blocks), min_buddy 256K (4 blocks).
    assert (pool.high, pool.min_buddy, pool.cma_count) == (11, 4, 24 << 20 >> 12)


def test_bad_input() -> None:
    m = _machine()
    with pytest.raises(ModelUsageError, match="gfp=64"):
        alloc_cont_pte_hugepage(m.kernel, 64)
    with pytest.raises(ModelUsageError, match="chp_cma"):
        Machine(memory="32M", chp_cma="lots")
    with pytest.raises(KernelBug, match="not a block the pool handed out"):
        free_cont_pte_hugepages(m.kernel, 0)
    # Without a pool: the buddy allocator alone.
    k = Machine(memory="32M").kernel
    free0 = k.buddy.nr_free
    pfn = alloc_cont_pte_hugepage(k, 0)
    assert pfn % 16 == 0 and k.buddy.nr_free == free0 - 16
    free_cont_pte_hugepages(k, pfn)
    assert k.buddy.nr_free == free0


class _LeakyPool(HugePagePool):
    """A broken pool: CMA blocks are freed to the buddy allocator (leaking into ordinary allocations)."""

    def free_block(self, pfn: int) -> None:
        del self.in_use[pfn]
        self.mod_chp_page_state(pfn, -1)
        for i in range(pfn, pfn + self.nr):
            self.k.buddy.free_pages(i, 0)
        self.gen += 1


class _MiscountingPool(HugePagePool):
    """A broken pool: a block freed back to the CMA list is not counted there."""

    def huge_page_pool_add(self, pfn: int, inx: int) -> None:
        super().huge_page_pool_add(pfn, inx)
        if self.usage[HPAGE_POOL_CMA]:
            self.count[inx] -= 1


@pytest.mark.parametrize(("broken", "rule"), [(_LeakyPool, "chp-cma-leak"), (_MiscountingPool, "chp-count")])
def test_validator_catches_a_broken_pool(broken: type[HugePagePool], rule: str) -> None:
    m = _machine(chp_min_buddy=0)
    k = m.kernel
    a, b = alloc_cont_pte_hugepage(k, 0), alloc_cont_pte_hugepage(k, 0)
    _use(m, a)
    _use(m, b)
    k.chp_pool.__class__ = broken
    with pytest.raises(InvariantViolation) as e:
        k.folio_put(a)
        m.check()
    assert e.value.rule == rule


def test_validator_catches_a_frame_in_two_places() -> None:
    m = _machine(chp_min_buddy=0)
    pool: HugePagePool = m.kernel.chp_pool
    pool.items[HPAGE_POOL_CMA].append(pool.items[HPAGE_POOL_CMA][0])
    pool.count[HPAGE_POOL_CMA] += 1
    with pytest.raises(InvariantViolation) as e:
        m.check()
    assert e.value.rule in ("chp-block", "chp-count")
