"""The OnePlus "dynamic hugepage" pool: where the oneplus policy gets its 64K blocks.

Models: OnePlus ``mm/cont_pte_hugepage.c`` (repository
``OnePlusOSS/android_kernel_oneplus_sm8550``, Linux 5.15, built with
``CONFIG_POOL_ASYNC_RECLAIM 1`` and ``CONFIG_POOL_DIRECT_RECLAIM 0`` as its
``include/linux/mm.h`` sets them) and its reclaim entry points in OnePlus
``mm/vmscan.c``: ``struct huge_page_pool``, the CMA area reserved at boot
(``cont_pte_cma_reserve``), the pool's two lists of 64K blocks (CMA and
buddy), the refill worker (``khpage_poold``), the allocation order CMA ->
buddy pool -> buddy slow path, kswapd woken below the low watermark,
direct reclaim below the min watermark, and freeing back.  The design only,
not the product's workarounds: no UID blacklist, no vendor hooks, no zram
heuristics, no OOM path (``config_alloc_oom`` is off by default there too).

A block is ``HPAGE_CONT_PTE_NR`` (16 with 4K pages) naturally aligned
frames, handed out as plain frames (the design's blocks are split pages,
without ``__GFP_COMP``); the caller makes them a folio and, once the folio
is freed, gives the frames back with ``free_cont_pte_hugepages()``.  On a
machine without a pool both functions use the buddy allocator alone.

The public interface core-mm calls (``k`` is the mm ``Kernel``):

- ``alloc_cont_pte_hugepage(k, gfp) -> int``: the first pfn of a block,
  or -1.  ``gfp`` is an OR of ``CHP_GFP_KSWAPD_RECLAIM`` (may wake kswapd:
  the design's ``__GFP_KSWAPD_RECLAIM``), ``CHP_GFP_DIRECT_RECLAIM`` (may
  reclaim: ``__GFP_DIRECT_RECLAIM``; acted on only with
  ``chp_direct_reclaim=True``, the design's ``CONFIG_POOL_DIRECT_RECLAIM``,
  0 in the OnePlus build), ``CHP_GFP_HIGH`` (``__GFP_HIGH``: the min
  watermark halves) and ``CHP_GFP_ZERO`` (``__GFP_ZERO``: the 16 pages are
  cleared); 0 asks for no reclaim at all.
- ``free_cont_pte_hugepages(k, pfn) -> None``: a CMA block goes back to
  the pool's CMA list, a buddy-born block to the buddy allocator page by
  page.

When the two kernel threads run.  The model has no scheduler for kernel
threads, so each runs whole, deterministically, at one defined point: the
refill worker once at boot (after ``huge_page_pool_chunk_refill``, as
``kthread_run`` starts it), and kswapd and the refill worker when an
allocation that woke them returns (``alloc_cont_pte_hugepage``, in that
order): as if each were scheduled on another CPU right after its wake-up
and ran before the next allocation.  The allocation that woke them does not
see their work; the next one does.

Sizes.  The design's constants are for a 12 GiB phone: ``pool->high`` 90M,
``min_buddy`` 32M, the buddy budget ``sysctl_max_chp_buddy_count`` 1.5G at
boot and ``STABLE_MAX_BUDDY_USAGE`` 300M once it has been used up, and a
CMA area of a quarter of memory (``cont_pte_cma_reserve``, 12-16G
branch).  The model keeps those ratios to its own memory size by default
(``chp_defaults``) and takes each as a Machine option: ``chp_cma``,
``chp_pool_high``, ``chp_min_buddy``, ``chp_max_buddy``,
``chp_stable_max_buddy`` (bytes or size strings), ``chp_direct_reclaim``.
The watermarks follow ``huge_page_pool_init``: ``low = high * 3/4`` (the
refill worker's, unused with async reclaim), ``wmark[MIN] = high * 3/10``,
``wmark[LOW] = high * 7/10``, ``wmark[HIGH] = high``.  Not modelled: the
CMA area's 64M chunks (the model's cma_alloc of a reserved area cannot
fail, so boot takes the whole area at once), the refill worker's 100 ms
retries (nothing changes between them in the model: one failure ends the
run), and the 10 s after the buddy-usage peak that also lowers the budget
to the stable one (time is not modelled: only the budget being used up
does).

Not compiled: one call per 64K block.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..counters import counter
from ..errors import KernelBug, ModelUsageError

__all__ = [
    "CHP_GFP_KSWAPD_RECLAIM",
    "CHP_GFP_DIRECT_RECLAIM",
    "CHP_GFP_HIGH",
    "CHP_GFP_ZERO",
    "CHP_OPTIONS",
    "HPAGE_POOL_CMA",
    "HPAGE_POOL_BUDDY",
    "HugePagePool",
    "alloc_cont_pte_hugepage",
    "free_cont_pte_hugepages",
    "chp_defaults",
    "huge_page_pool_init",
    "hpage_cont_pte_order",
    "HPAGE_CONT_PTE_ORDER",
]

#: HPAGE_CONT_PTE_ORDER with 4K pages: 16 PTEs, 64K (``hpage_cont_pte_order(k)`` for any granule).
HPAGE_CONT_PTE_ORDER = 4

#: gfp flags of ``alloc_cont_pte_hugepage`` (0: no reclaim of any kind).
CHP_GFP_KSWAPD_RECLAIM = 1
CHP_GFP_DIRECT_RECLAIM = 2
CHP_GFP_HIGH = 4
CHP_GFP_ZERO = 8
_CHP_GFP_ALL = CHP_GFP_KSWAPD_RECLAIM | CHP_GFP_DIRECT_RECLAIM | CHP_GFP_HIGH | CHP_GFP_ZERO

#: enum hpage_type
HPAGE_POOL_CMA = 0
HPAGE_POOL_BUDDY = 1

# enum pool_watermarks and the POOL_ALLOC_* flags of get_pool_alloc_flags().
POOL_WMARK_MIN = 0
POOL_WMARK_LOW = 1
POOL_WMARK_HIGH = 2
POOL_ALLOC_WMARK_MASK = 3
POOL_ALLOC_OOM = 0x08
POOL_ALLOC_HARDER = 0x10
POOL_ALLOC_HIGH = 0x20

#: include/linux/mm.h POOL_DIRECT_RECLAIM_NR: hugepages a direct reclaim asks for.
POOL_DIRECT_RECLAIM_NR = 5

#: The Machine options of the pool, with their defaults (None: the design's ratio, ``chp_defaults``).
CHP_OPTIONS: dict[str, Any] = {
    "chp_cma": None,
    "chp_pool_high": None,
    "chp_min_buddy": None,
    "chp_max_buddy": None,
    "chp_stable_max_buddy": None,
    "chp_direct_reclaim": False,
}

_SLOW_PATH = counter("chp.page_alloc_slow_path")
_FAILED = counter("chp.page_alloc_failed")
_WAKE_UP = counter("chp.refill_kworker_wake_up")
_ALLOC_SUCCESS = counter("chp.refill_kworker_alloc_success")
_FROM_POOL_BUDDY = counter("chp.alloc_from_pool_buddy")
_FROM_POOL_CMA = counter("chp.alloc_from_pool_cma")
_FROM_SLOW_PATH = counter("chp.alloc_from_buddy_slow_path")
_REFILL_BLOCKS = counter("chp.refill_blocks")
_FREE_TO_POOL = counter("chp.free_to_pool")
_FREE_TO_BUDDY = counter("chp.free_to_buddy")
_WMARK_LOW = counter("chp.wmark_low")
_WMARK_MIN = counter("chp.wmark_min")
_DR_ENTER = counter("chp.direct_reclaim_enter")
_DR_SUCCESS = counter("chp.direct_reclaim_success")
_DR_FAIL = counter("chp.direct_reclaim_fail")
_DR_PAGES = counter("chp.direct_reclaimed")
_KSWAPD_RUNS = counter("chp.kswapd_runs")
_KSWAPD_PAGES = counter("chp.kswapd_reclaimed")
_POOL = (counter("chp.pool_cma"), counter("chp.pool_buddy"))
_USAGE = (counter("chp.usage_cma"), counter("chp.usage_buddy"))
_PAGE_ZERO = counter("page.zero")

_M = 1 << 20


def hpage_cont_pte_order(k: Any) -> int:
    """``HPAGE_CONT_PTE_ORDER``: log2 of the arm64 contiguous-block size in pages (4 with 4K pages).

    A backend without contiguous blocks (``CONT_PTES`` 1) gets 16-page
    blocks, so the pool can be studied there too.
    """
    cont = int(k.arch.CONT_PTES)
    return (cont if cont > 1 else 16).bit_length() - 1


def chp_defaults(memory: int) -> dict[str, int]:
    """The design's sizes scaled to ``memory`` bytes (its constants are for a 12 GiB phone).

    ``chp_cma``: a quarter of memory (``cont_pte_cma_reserve()``, 12-16G
    branch); ``chp_pool_high``: 90M per 12G; ``chp_min_buddy``: 32M per
    12G; ``chp_max_buddy``: 1.5G per 12G (the boot budget);
    ``chp_stable_max_buddy``: 300M per 12G.
    """
    ref = 12 << 30
    return {
        "chp_cma": memory // 4,
        "chp_pool_high": memory * (90 * _M) // ref,
        "chp_min_buddy": memory * (32 * _M) // ref,
        "chp_max_buddy": memory * (3 * 512 * _M) // ref,
        "chp_stable_max_buddy": memory * (300 * _M) // ref,
    }


class HugePagePool:
    """``struct huge_page_pool`` with the design's globals around it (``perf_stat.usage``, the buddy budget).

    ``items[HPAGE_POOL_CMA]``/``items[HPAGE_POOL_BUDDY]``: FIFO lists of
    block pfns (``list_add_tail`` / ``list_first_entry``); ``count[]`` their
    lengths; ``usage[]`` the blocks of each kind handed out
    (``perf_stat.usage``, ``mod_chp_page_state``); ``in_use``: block pfn ->
    kind, in the order they were handed out (the model's chp LRU, oldest
    first); ``cma_base``/``cma_count``: the CMA area, in pages.
    """

    def __init__(
        self,
        k: Any,
        cma_pages: int,
        high: int,
        min_buddy: int,
        max_buddy: int,
        stable_max_buddy: int,
        direct_reclaim: bool,
    ) -> None:
        self.k = k
        self.order = hpage_cont_pte_order(k)
        self.nr = 1 << self.order
        self.items: tuple[deque[int], deque[int]] = (deque(), deque())
        self.count = [0, 0]
        self.usage = [0, 0]
        self.in_use: dict[int, int] = {}
        self.high = high
        #: "wakeup kthread on count < low, low = 3/4 high" (not consulted with async reclaim).
        self.low = high * 3 // 4
        self.min_buddy = min_buddy
        self.wmark = [high * 3 // 10, high * 7 // 10, high]
        self.sysctl_max_chp_buddy_count = max_buddy
        self.stable_max_buddy_usage = stable_max_buddy
        self.peak_chp_nr = 0
        self.can_direct_reclaim = bool(direct_reclaim)
        #: HPP_WORKER_RUNNING
        self.worker_running = False
        self.refill_worker_woken = False
        self.kswapd_woken = False
        #: Bumped at every change (the validator's cue).
        self.gen = 0
        nr_frames = int(k.memmap.nr_frames)
        self.cma_count = cma_pages
        self.cma_base = (nr_frames - cma_pages) & ~(self.nr - 1)
        if cma_pages and not k.buddy.alloc_contig_range(self.cma_base, self.cma_base + cma_pages):
            raise ModelUsageError(f"chp_cma: {cma_pages} pages do not fit at the top of memory")

    # -- cont_pte_hugepage.c helpers -------------------------------------------
    def within_cont_pte_cma(self, pfn: int) -> bool:
        """``within_cont_pte_cma()``: is ``pfn`` in the CMA area?"""
        return self.cma_base <= pfn < self.cma_base + self.cma_count

    def huge_page_pool_count(self, inx: int) -> int:
        """``huge_page_pool_count()``: blocks in one list, or in both for ``inx`` 2."""
        if inx >= 2:
            return self.count[0] + self.count[1]
        return self.count[inx]

    def _count(self, cid: int, n: int) -> None:
        self.k.counters.inc(cid, n)

    def huge_page_pool_add(self, pfn: int, inx: int) -> None:
        """``huge_page_pool_add()``: put a block at the tail of list ``inx``."""
        if pfn & (self.nr - 1):
            raise KernelBug("chp-pool", f"block {pfn:#x} added to the pool is not aligned", None)
        self.items[inx].append(pfn)
        self.count[inx] += 1
        self._count(_POOL[inx], 1)
        self.gen += 1

    def huge_page_pool_remove(self, inx: int) -> int:
        """``huge_page_pool_remove()``: the first block of list ``inx``, or -1; may wake the refill worker.

        The worker is woken when buddy usage is under the budget, the buddy
        list is below half of ``min_buddy`` and the worker is not running,
        whether or not a block was found.
        """
        pfn = -1
        if self.items[inx]:
            pfn = self.items[inx].popleft()
            self.count[inx] -= 1
            self._count(_POOL[inx], -1)
            self.gen += 1
        if pfn >= 0 and inx == HPAGE_POOL_BUDDY:
            self._count(_FROM_POOL_BUDDY, 1)
        if (
            self.usage[HPAGE_POOL_BUDDY] < self.sysctl_max_chp_buddy_count
            and self.count[HPAGE_POOL_BUDDY] < self.min_buddy // 2
            and not self.worker_running
        ):
            self.refill_worker_woken = True  # wake_up_process(pool->refill_worker)
        return pfn

    def alloc_chp_from_buddy(self) -> int:
        """``alloc_chp_from_buddy()``: a block straight from the buddy allocator, or -1; no reclaim.

        Refused once buddy usage is over the budget; the budget drops to the
        stable one once usage reaches it (``HIGH_ORDER_GFP``: zeroed, no
        reclaim, no warning).
        """
        k = self.k
        nr = self.usage[HPAGE_POOL_BUDDY]
        if nr > self.sysctl_max_chp_buddy_count:
            return -1
        if self.sysctl_max_chp_buddy_count != self.stable_max_buddy_usage:
            if nr > self.stable_max_buddy_usage and nr > self.peak_chp_nr:
                self.peak_chp_nr = nr
            if nr >= self.sysctl_max_chp_buddy_count:
                self.sysctl_max_chp_buddy_count = self.stable_max_buddy_usage
        pfn = int(k.buddy.alloc_pages(self.order))
        if pfn >= 0:
            # split_page(): 16 order-0 pages; __GFP_ZERO clears each.
            for i in range(pfn, pfn + self.nr):
                k.arch.clear_highpage(i)
            self._count(_PAGE_ZERO, self.nr)
            self.gen += 1
        return pfn

    def huge_page_pool_chunk_refill(self) -> None:
        """``huge_page_pool_chunk_refill()``: the whole CMA area into the CMA list, then ``min_buddy`` blocks."""
        for pfn in range(self.cma_base, self.cma_base + self.cma_count, self.nr):
            self.huge_page_pool_add(pfn, HPAGE_POOL_CMA)
        for _ in range(self.min_buddy):
            pfn = self.alloc_chp_from_buddy()
            if pfn < 0:
                break
            self._count(_REFILL_BLOCKS, 1)
            self.huge_page_pool_add(pfn, HPAGE_POOL_BUDDY)

    def huge_page_pool_refill_worker(self) -> None:
        """One run of ``huge_page_pool_refill_worker()``'s loop: fill the buddy list up to ``min_buddy``.

        ``refill_kworker_wake_up`` counts the run, ``_alloc_success`` a run
        that added more than half of what it wanted.  The kernel retries a
        failed allocation every 100 ms up to 100 times; in the model nothing
        frees memory meanwhile, so the first failure ends the run.
        """
        self.refill_worker_woken = False
        expect = max(self.min_buddy - self.huge_page_pool_count(HPAGE_POOL_BUDDY), 0)
        self._count(_WAKE_UP, 1)
        self.worker_running = True
        i = 0
        while i < expect:
            pfn = self.alloc_chp_from_buddy()
            if pfn < 0:
                break
            self._count(_REFILL_BLOCKS, 1)
            self.huge_page_pool_add(pfn, HPAGE_POOL_BUDDY)
            i += 1
        if i > expect // 2:
            self._count(_ALLOC_SUCCESS, 1)
        self.worker_running = False

    # -- CONFIG_POOL_ASYNC_RECLAIM ---------------------------------------------
    @staticmethod
    def get_pool_alloc_flags(gfp: int) -> int:
        """``get_pool_alloc_flags()``: the min watermark, harder with direct reclaim, high with ``__GFP_HIGH``.

        The design also gives real-time and foreground tasks
        ``POOL_ALLOC_HIGH`` (a vendor hook); the model has neither.
        """
        flags = POOL_WMARK_MIN
        if gfp & CHP_GFP_DIRECT_RECLAIM:
            flags |= POOL_ALLOC_HARDER
        if gfp & CHP_GFP_HIGH:
            flags |= POOL_ALLOC_HIGH
        return flags

    def prepare_pool_wmark(self, alloc_flags: int) -> int:
        """``prepare_pool_wmark()``: the watermark of ``alloc_flags``, halved for harder, halved again for high."""
        wmark = self.wmark[alloc_flags & POOL_ALLOC_WMARK_MASK]
        if alloc_flags & (POOL_ALLOC_HARDER | POOL_ALLOC_OOM):
            wmark -= wmark // 2
        if alloc_flags & POOL_ALLOC_HIGH:
            wmark -= wmark // 2
        return wmark

    def get_page_from_huge_pool(self, alloc_flags: int) -> int:
        """``get_page_from_huge_pool()``: a CMA block while the CMA list is above the watermark, else a buddy-list block."""
        pfn = -1
        if self.huge_page_pool_count(HPAGE_POOL_CMA) > self.prepare_pool_wmark(alloc_flags):
            pfn = self.huge_page_pool_remove(HPAGE_POOL_CMA)
            if pfn >= 0:
                self._count(_FROM_POOL_CMA, 1)
        if pfn < 0:
            pfn = self.huge_page_pool_remove(HPAGE_POOL_BUDDY)
        return pfn

    def pool_try_to_wakeup_kswapd(self) -> None:
        """``pool_try_to_wakeup_kswapd()``: wake kswapd for the pool (``PGDAT_POOL_USER_ALLOC``); counts ``wmark_count[LOW]``."""
        self.kswapd_woken = True
        self._count(_WMARK_LOW, 1)

    def chp_lru(self) -> list[int]:
        """The in-use blocks still whole 64K folios, oldest first: the model's chp LRU (``CONFIG_CONT_PTE_HUGEPAGE_LRU``)."""
        mem = self.k.memmap
        return [
            pfn
            for pfn in self.in_use
            if int(mem.head[pfn]) == pfn and int(mem.order[pfn]) == self.order and int(mem.refcount[pfn]) > 0
        ]

    def _shrink_chp(self, nr_to_reclaim: int) -> int:
        """Reclaim cont-pte hugepages only (the chp LRU) until ``nr_to_reclaim`` pages are freed."""
        from .vmscan import shrink_folio_list

        lru = self.chp_lru()
        if not lru:
            return 0
        return int(shrink_folio_list(self.k, lru, False, nr_to_reclaim))

    def try_to_free_cont_pte_hugepages(self, nr_reclaim: int) -> int:
        """OnePlus mm/vmscan.c ``try_to_free_cont_pte_hugepages()``: direct reclaim of hugepages; pages freed.

        ``do_try_to_free_pages()`` with ``POOL_USER_ALLOC``: only the
        hugepage LRU, ``nr_reclaim`` pages.  No throttling in the model
        (``throttle_pool_direct_reclaim`` waits for kswapd, which the model
        runs at its own point).  The model's reclaim (``mm/vmscan.py``)
        frees lazyfree folios and, with a swap device, swaps folios out.
        """
        self._count(_DR_ENTER, 1)
        freed = self._shrink_chp(nr_reclaim)
        self._count(_DR_PAGES, freed)
        return freed

    def kswapd_balance_pool(self) -> None:
        """kswapd's ``balance_pgdat()`` for the pool: reclaim hugepages until the CMA list reaches ``wmark[HIGH]``.

        ``pgdat_balanced()`` with ``PGDAT_POOL_USER_ALLOC``: balanced once
        the CMA list holds ``wmark[HIGH]`` blocks; otherwise
        ``kswapd_shrink_node()`` asks for half of ``wmark[HIGH]`` in pages
        ("We only recclaim half of the wmark_high!"); one pass (the
        priority loop would scan the same folios again in the model).
        """
        self.kswapd_woken = False
        if self.huge_page_pool_count(HPAGE_POOL_CMA) >= self.wmark[POOL_WMARK_HIGH]:
            return
        self._count(_KSWAPD_RUNS, 1)
        freed = self._shrink_chp(self.wmark[POOL_WMARK_HIGH] * self.nr // 2)
        self._count(_KSWAPD_PAGES, freed)

    def try_to_cont_pte_hugepages_direct_reclaim(self, alloc_flags: int) -> int:
        """``__try_to_cont_pte_hugepages_direct_reclaim()``: reclaim ``POOL_DIRECT_RECLAIM_NR`` hugepages, then retry the pool.

        Counts ``wmark_count[MIN]``; the retry happens only if at least one
        hugepage's worth of pages was freed.
        """
        self._count(_WMARK_MIN, 1)
        progress = self.try_to_free_cont_pte_hugepages(POOL_DIRECT_RECLAIM_NR * self.nr)
        if progress < self.nr:
            return -1
        return self.get_page_from_huge_pool(alloc_flags)

    def alloc_pool(self, gfp: int) -> int:
        """``__alloc_cont_pte_hugepage()`` with ``CONFIG_POOL_ASYNC_RECLAIM``: the fast path, then slow paths 1 and 2.

        Fast path: above the low watermark a CMA block, else a buddy-list
        block.  Slow path 1: wake kswapd (with ``CHP_GFP_KSWAPD_RECLAIM``)
        and try again down to the min watermark (halved for direct reclaim
        or ``CHP_GFP_HIGH``).  Slow path 2 (``chp_direct_reclaim`` and
        ``CHP_GFP_DIRECT_RECLAIM``): direct reclaim.  No OOM path
        (``config_alloc_oom`` defaults to off).
        """
        pfn = self.get_page_from_huge_pool(POOL_WMARK_LOW)
        if pfn >= 0:
            return pfn
        can_direct_reclaim = self.can_direct_reclaim and bool(gfp & CHP_GFP_DIRECT_RECLAIM)
        alloc_flags = self.get_pool_alloc_flags(gfp)
        if gfp & CHP_GFP_KSWAPD_RECLAIM:
            self.pool_try_to_wakeup_kswapd()
        pfn = self.get_page_from_huge_pool(alloc_flags)
        if pfn >= 0 or not can_direct_reclaim:
            return pfn
        pfn = self.try_to_cont_pte_hugepages_direct_reclaim(alloc_flags)
        self._count(_DR_FAIL if pfn < 0 else _DR_SUCCESS, 1)
        return pfn

    def mod_chp_page_state(self, pfn: int, delta: int) -> int:
        """``mod_chp_page_state()``: usage of the block's kind (CMA or buddy) by ``delta``; the kind."""
        inx = HPAGE_POOL_CMA if self.within_cont_pte_cma(pfn) else HPAGE_POOL_BUDDY
        self.usage[inx] += delta
        self._count(_USAGE[inx], delta)
        return inx

    def run_kthreads(self) -> None:
        """Run the kernel threads an allocation woke: kswapd, then the refill worker (see the module docstring)."""
        if self.kswapd_woken:
            self.kswapd_balance_pool()
        if self.refill_worker_woken:
            self.huge_page_pool_refill_worker()

    def free_block(self, pfn: int) -> None:
        """The body of ``__free_cont_pte_hugepages()`` (see ``free_cont_pte_hugepages``)."""
        del self.in_use[pfn]
        self.mod_chp_page_state(pfn, -1)
        if self.within_cont_pte_cma(pfn):
            self._count(_FREE_TO_POOL, 1)
            self.huge_page_pool_add(pfn, HPAGE_POOL_CMA)
        else:
            self._count(_FREE_TO_BUDDY, 1)
            for i in range(pfn, pfn + self.nr):
                self.k.buddy.free_pages(i, 0)
        self.gen += 1

    def stats(self) -> dict[str, int]:
        """What ``/proc/cont_pte_hugepage/stat`` prints of the pool, in pages and blocks."""
        nr = self.nr
        return {
            "cont_pte_cma_size": self.cma_count * self.k.PAGE_SIZE,
            "pool_high": self.high * nr,
            "pool_low": self.low * nr,
            "wmark_min": self.wmark[POOL_WMARK_MIN],
            "wmark_low": self.wmark[POOL_WMARK_LOW],
            "wmark_high": self.wmark[POOL_WMARK_HIGH],
            "min_buddy": self.min_buddy,
            "max_buddy": self.sysctl_max_chp_buddy_count,
            "pool_cma_count": self.count[HPAGE_POOL_CMA] * nr,
            "pool_buddy_count": self.count[HPAGE_POOL_BUDDY] * nr,
            "pool_pages": (self.count[0] + self.count[1]) * nr,
            "usage_cma": self.usage[HPAGE_POOL_CMA] * nr,
            "usage_buddy": self.usage[HPAGE_POOL_BUDDY] * nr,
            "peak_usage_buddy": self.peak_chp_nr * nr,
        }


def huge_page_pool_init(k: Any, options: dict[str, Any]) -> HugePagePool:
    """``cont_pte_cma_reserve()`` + ``huge_page_pool_init()`` + the refill worker's first run: the pool at boot.

    ``options``: the ``CHP_OPTIONS`` (sizes in bytes, None for the design's
    ratio to this machine's memory).  The CMA area is carved from the top of
    physical memory, rounded down to whole blocks; the watermarks and
    budgets are counted in blocks (``M2N()``).
    """
    memory = int(k.memmap.nr_frames) * int(k.PAGE_SIZE)
    defaults = chp_defaults(memory)
    order = hpage_cont_pte_order(k)
    block = int(k.PAGE_SIZE) << order

    def size(name: str) -> int:
        v = options.get(name)
        v = defaults[name] if v is None else v
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ModelUsageError(f"{name}={v!r}: expected a size in bytes (>= 0)")
        return int(v)

    cma = size("chp_cma") // block
    k.chp_pool = None
    pool = HugePagePool(
        k,
        cma << order,
        size("chp_pool_high") // block,
        size("chp_min_buddy") // block,
        size("chp_max_buddy") // block,
        size("chp_stable_max_buddy") // block,
        bool(options.get("chp_direct_reclaim", False)),
    )
    k.chp_pool = pool
    pool.huge_page_pool_chunk_refill()
    pool.huge_page_pool_refill_worker()
    return pool


def alloc_cont_pte_hugepage(k: Any, gfp: int) -> int:
    """Allocate a 64K block for a cont-pte hugepage: its first pfn (16 aligned frames), or -1.

    Models: OnePlus mm/cont_pte_hugepage.c ``alloc_cont_pte_hugepage()``:
    the pool (``__alloc_cont_pte_hugepage``), then, while the buddy budget
    is still the boot one, the buddy slow path (``alloc_chp_from_buddy``,
    counted ``page_alloc_slow_path``); ``page_alloc_failed`` when nothing
    was found; the block's kind counted in use (``mod_chp_page_state``).
    With ``CHP_GFP_ZERO`` a pool block's pages are cleared.  The kernel
    threads the allocation woke run when it returns.

    ``k``: the mm ``Kernel`` (``struct page *`` result as a pfn); ``gfp``: an
    OR of the ``CHP_GFP_*`` flags.
    """
    if not isinstance(gfp, int) or gfp & ~_CHP_GFP_ALL:
        raise ModelUsageError(f"alloc_cont_pte_hugepage: gfp={gfp!r}: expected an OR of the CHP_GFP_* flags")
    pool: HugePagePool | None = k.chp_pool
    if pool is None:
        # No pool on this machine: the buddy allocator alone (the design's last tier).
        return int(k.buddy.alloc_pages(hpage_cont_pte_order(k)))
    pfn = pool.alloc_pool(gfp)
    if pfn >= 0:
        if gfp & CHP_GFP_ZERO:
            for i in range(pfn, pfn + pool.nr):
                k.arch.clear_highpage(i)
            pool._count(_PAGE_ZERO, pool.nr)
    else:
        if pool.sysctl_max_chp_buddy_count != pool.stable_max_buddy_usage:
            pool._count(_SLOW_PATH, 1)
            pfn = pool.alloc_chp_from_buddy()
            if pfn >= 0:
                pool._count(_FROM_SLOW_PATH, 1)
        if pfn < 0:
            pool._count(_FAILED, 1)
    if pfn >= 0:
        pool.in_use[pfn] = pool.mod_chp_page_state(pfn, 1)
        pool.gen += 1
    pool.run_kthreads()
    return pfn


def free_cont_pte_hugepages(k: Any, pfn: int) -> None:
    """Give back the 16 frames of a block ``alloc_cont_pte_hugepage`` handed out.

    Models: OnePlus mm/cont_pte_hugepage.c ``__free_cont_pte_hugepages()``:
    the kind's usage drops; a block of the CMA area goes back to the pool's
    CMA list ("try to refill pool before releasing"), a buddy-born block to
    the buddy allocator one page at a time (``__free_page`` x 16).  The
    caller has freed the folio (its ``mem_map`` entries are clear).
    """
    pool: HugePagePool | None = k.chp_pool
    if pool is None:
        k.buddy.free_pages(pfn, hpage_cont_pte_order(k))
        return
    if pfn not in pool.in_use:
        raise KernelBug(
            "chp-pool", f"free_cont_pte_hugepages({pfn:#x}): not a block the pool handed out", None
        )
    pool.free_block(pfn)
