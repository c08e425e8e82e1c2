"""The buddy allocator.

Models: mm/page_alloc.c (Linux v6.12): free lists per order, splitting a
larger block when a smaller one is asked for (``expand``), merging a freed
block with its buddy (``__free_one_page``), and failure of a high-order
request when memory is fragmented even though enough small blocks are free.
"""

from __future__ import annotations

import numpy as np

from ..counters import Counters, counter

__all__ = ["BuddyAllocator"]

ALLOC = counter("buddy.alloc")
ALLOC_FAIL = counter("buddy.alloc_fail")
FREE = counter("buddy.free")


class BuddyAllocator:
    """Free lists per order over frames ``[first_pfn, nr_frames)``.

    ``free_order[pfn]`` is the order of the free block starting at ``pfn``
    (-1 if ``pfn`` does not start a free block), so buddies merge in O(1).
    Free lists are sets; allocation takes the lowest address so runs are
    reproducible.
    """

    def __init__(self, nr_frames: int, max_order: int, counters: Counters, first_pfn: int = 0) -> None:
        self.nr_frames = nr_frames
        self.max_order = max_order
        self.counters = counters
        self.free_lists: list[set[int]] = [set() for _ in range(max_order + 1)]
        self.free_order = np.full(nr_frames, -1, dtype=np.int8)
        self.nr_free = 0
        pfn = first_pfn
        while pfn < nr_frames:
            order = max_order
            while order > 0 and (pfn & ((1 << order) - 1) or pfn + (1 << order) > nr_frames):
                order -= 1
            self._add(pfn, order)
            pfn += 1 << order

    def _add(self, pfn: int, order: int) -> None:
        self.free_lists[order].add(pfn)
        self.free_order[pfn] = order
        self.nr_free += 1 << order

    def _del(self, pfn: int, order: int) -> None:
        self.free_lists[order].remove(pfn)
        self.free_order[pfn] = -1
        self.nr_free -= 1 << order

    def alloc_pages(self, order: int) -> int | None:
        """Allocate ``2**order`` aligned frames; the first PFN, or None.

        Models: ``__rmqueue_smallest()`` + ``expand()``.
        """
        for cur in range(order, self.max_order + 1):
            fl = self.free_lists[cur]
            if fl:
                pfn = min(fl)
                self._del(pfn, cur)
                while cur > order:
                    cur -= 1
                    self._add(pfn + (1 << cur), cur)
                self.counters.add(ALLOC)
                return pfn
        self.counters.add(ALLOC_FAIL)
        return None

    def free_pages(self, pfn: int, order: int) -> None:
        """Return a block, merging with free buddies (``__free_one_page``)."""
        self.counters.add(FREE)
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if buddy >= self.nr_frames or self.free_order[buddy] != order:
                break
            self._del(buddy, order)
            pfn = min(pfn, buddy)
            order += 1
        self._add(pfn, order)

    def free_pages_many(self, pfns: np.ndarray, orders: np.ndarray) -> None:
        """``free_pages()`` of each block, in bulk (a vectorised fast path's frees).

        The same final state and counters as the calls one by one in any
        order: a buddy allocator's free lists depend only on which frames
        are free (every pair of free buddies is merged), and so does this
        merge, order by order.
        """
        n = len(pfns)
        if n == 0:
            return
        self.counters.add(FREE, n)
        pfns = np.asarray(pfns, dtype=np.int64)
        orders = np.asarray(orders, dtype=np.int64)
        cur = np.zeros(0, dtype=np.int64)
        o = int(orders.min())
        while True:
            new = pfns[orders == o]
            if len(new):
                cur = np.sort(np.concatenate((cur, new)))
            if o == self.max_order:
                break
            if len(cur):
                buddy = cur ^ np.int64(1 << o)
                at = np.minimum(np.searchsorted(cur, buddy), len(cur) - 1)
                in_cur = cur[at] == buddy
                inr = buddy < self.nr_frames
                fo = self.free_order[np.where(inr, buddy, 0)]
                ext = inr & ~in_cur & (fo == o)
                gone = buddy[ext]
                if len(gone):  # free buddies merged away (``_del``)
                    self.free_lists[o].difference_update(gone.tolist())
                    self.free_order[gone] = -1
                    self.nr_free -= len(gone) << o
                merge = in_cur | ext
                self._add_many(cur[~merge], o)
                up = np.minimum(cur, buddy)[merge]  # sorted: a merged pair gives its lower block twice
                cur = up[np.concatenate(([True], up[1:] != up[:-1]))] if len(up) else up
            elif o >= int(orders.max()):
                return
            o += 1
        self._add_many(cur, o)

    def _add_many(self, pfns: np.ndarray, order: int) -> None:
        if len(pfns):
            self.free_lists[order].update(pfns.tolist())
            self.free_order[pfns] = order
            self.nr_free += len(pfns) << order

    def largest_free_order(self) -> int:
        for order in range(self.max_order, -1, -1):
            if self.free_lists[order]:
                return order
        return -1
