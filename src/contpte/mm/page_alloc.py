"""The buddy allocator.

Models: mm/page_alloc.c (Linux v6.12): free lists per order, splitting a
larger block when a smaller one is asked for (``expand``), merging a freed
block with its buddy (``__free_one_page``), and failure of a high-order
request when memory is fragmented even though enough small blocks are free.

Compiled (docs/core.md).
"""

from __future__ import annotations

import heapq

import cython
import numpy as np

from ..counters import counter

if not cython.compiled:
    from ..cdefs import i64
    from ..counters import Counters, count

__all__ = ["BuddyAllocator"]

ALLOC = cython.declare(i64, counter("buddy.alloc"))
ALLOC_FAIL = cython.declare(i64, counter("buddy.alloc_fail"))
FREE = cython.declare(i64, counter("buddy.free"))


@cython.final
@cython.cclass
class BuddyAllocator:
    """Free lists per order over frames ``[first_pfn, nr_frames)``.

    ``free_order[pfn]`` is the order of the free block starting at ``pfn``
    (-1 if ``pfn`` does not start a free block), so buddies merge in O(1).
    Allocation takes the lowest free address of the smallest order that
    has one, so runs are reproducible: each order's free list is a min-heap
    of block addresses, where a block merged or taken away stays behind
    until it reaches the top and is found no longer free (``free_order``
    says so).
    """

    def __init__(self, nr_frames: i64, max_order: i64, counters: Counters, first_pfn: i64 = 0) -> None:
        self.nr_frames = nr_frames
        self.max_order = max_order
        self.counters: Counters = counters
        self.free_lists: list[list[int]] = [[] for _ in range(max_order + 1)]
        self.nr_blocks = np.zeros(max_order + 1, dtype=np.int64)
        self.free_order = np.full(nr_frames, -1, dtype=np.int8)
        self.nr_free = 0
        pfn: i64 = first_pfn
        order: i64
        while pfn < nr_frames:
            order = max_order
            while order > 0 and (pfn & ((1 << order) - 1) or pfn + (1 << order) > nr_frames):
                order -= 1
            self._add(pfn, order)
            pfn += 1 << order

    @cython.cfunc
    def _add(self, pfn: i64, order: i64) -> None:
        heapq.heappush(self.free_lists[order], pfn)
        self.free_order[pfn] = order
        self.nr_blocks[order] += 1
        self.nr_free += cython.cast(i64, 1) << order

    @cython.cfunc
    def _del(self, pfn: i64, order: i64) -> None:
        """Take a free block off its list (left in the heap, found stale later)."""
        self.free_order[pfn] = -1
        self.nr_blocks[order] -= 1
        self.nr_free -= cython.cast(i64, 1) << order

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _pop_lowest(self, order: i64) -> i64:
        """The lowest free block of ``order`` taken off its list, or -1."""
        heap: list[int] = self.free_lists[order]
        pfn: i64
        while heap:
            pfn = heapq.heappop(heap)
            if cython.cast(i64, self.free_order[pfn]) == order:
                self._del(pfn, order)
                if len(heap) > 64 and len(heap) > 4 * cython.cast(i64, self.nr_blocks[order]):
                    self._compact(order)
                return pfn
        return -1

    def _compact(self, order: int) -> None:
        """Drop the stale addresses of an order's heap (they may outnumber the free blocks)."""
        fo = np.asarray(self.free_order)
        live = sorted({p for p in self.free_lists[order] if fo[p] == order})
        self.free_lists[order] = live  # a sorted list is a heap

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def alloc_pages(self, order: i64) -> i64:
        """Allocate ``2**order`` aligned frames; the first PFN, or -1.

        Models: ``__rmqueue_smallest()`` + ``expand()``.
        """
        cur: i64
        pfn: i64
        for cur in range(order, self.max_order + 1):
            if cython.cast(i64, self.nr_blocks[cur]) == 0:
                continue
            pfn = self._pop_lowest(cur)
            while cur > order:
                cur -= 1
                self._add(pfn + (cython.cast(i64, 1) << cur), cur)
            count(self.counters, ALLOC, 1)
            return pfn
        count(self.counters, ALLOC_FAIL, 1)
        return -1

    @cython.ccall
    def free_pages(self, pfn: i64, order: i64) -> None:
        """Return a block, merging with free buddies (``__free_one_page``)."""
        count(self.counters, FREE, 1)
        buddy: i64
        while order < self.max_order:
            buddy = pfn ^ (cython.cast(i64, 1) << order)
            if buddy >= self.nr_frames or cython.cast(i64, self.free_order[buddy]) != order:
                break
            self._del(buddy, order)
            pfn = min(pfn, buddy)
            order += 1
        self._add(pfn, order)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def alloc_contig_range(self, start: i64, end: i64) -> cython.bint:
        """Take the free frames ``[start, end)`` out of the free lists; False (nothing taken) if one is not free.

        Models: mm/page_alloc.c ``alloc_contig_range()`` as ``cma_alloc()``
        uses it on a CMA area nothing else allocated from yet: each free
        block that overlaps the range is taken off its list and the parts
        of it outside the range go back, split in halves (``expand()``).
        The model has no migration: a frame in use fails the call.
        """
        pfn: i64 = start
        order: i64
        head: i64
        while pfn < end:
            head = -1
            for order in range(self.max_order + 1):
                head = pfn & ~((cython.cast(i64, 1) << order) - 1)
                if cython.cast(i64, self.free_order[head]) == order:
                    break
                head = -1
            if head < 0:
                return False
            pfn = head + (cython.cast(i64, 1) << order)
        pfn = start
        while pfn < end:
            for order in range(self.max_order + 1):
                head = pfn & ~((cython.cast(i64, 1) << order) - 1)
                if cython.cast(i64, self.free_order[head]) == order:
                    break
            self._del(head, order)
            self._give_back_outside(head, order, start, end)
            pfn = head + (cython.cast(i64, 1) << order)
        return True

    @cython.cfunc
    def _give_back_outside(self, pfn: i64, order: i64, start: i64, end: i64) -> None:
        """Free the parts of block ``pfn``/``order`` that lie outside ``[start, end)``."""
        size: i64 = cython.cast(i64, 1) << order
        if pfn >= end or pfn + size <= start:
            self._add(pfn, order)
            return
        if pfn >= start and pfn + size <= end:
            return
        half: i64 = size >> 1
        self._give_back_outside(pfn, order - 1, start, end)
        self._give_back_outside(pfn + half, order - 1, start, end)

    def largest_free_order(self) -> int:
        for order in range(self.max_order, -1, -1):
            if cython.cast(i64, self.nr_blocks[order]):
                return order
        return -1

    def free_blocks(self, order: int) -> list[int]:
        """The free blocks of ``order``, ascending (model-internal: tests, validators)."""
        fo = np.asarray(self.free_order)
        return sorted({p for p in self.free_lists[order] if fo[p] == order})
