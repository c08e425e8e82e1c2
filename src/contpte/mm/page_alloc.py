"""The buddy allocator.

Models: mm/page_alloc.c (Linux v6.12): free lists per order, splitting a
larger block when a smaller one is asked for (``expand``), merging a freed
block with its buddy (``__free_one_page``), and failure of a high-order
request when memory is fragmented even though enough small blocks are free.
"""

from __future__ import annotations

import numpy as np

from ..counters import Counters, declare

__all__ = ["BuddyAllocator"]

ALLOC = declare("buddy.alloc", "allocations", "successful buddy allocations (any order)")
ALLOC_FAIL = declare("buddy.alloc_fail", "allocations", "buddy allocations that found no free block")
FREE = declare("buddy.free", "frees", "blocks returned to the buddy allocator")


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

    def largest_free_order(self) -> int:
        for order in range(self.max_order, -1, -1):
            if self.free_lists[order]:
                return order
        return -1
