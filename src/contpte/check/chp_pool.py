"""The hugepage-pool validator: every frame is in exactly one place, and the pool's counts add up.

For a machine with the OnePlus hugepage pool (``mm/chp_pool.py``).  Like
the other validators it derives what must hold from what it sees
(the buddy allocator's free blocks, ``mem_map``, the pool's lists) and
never trusts the pool's own counts.  Rules (``InvariantViolation.rule``):

- ``chp-frame``: every frame of memory is exactly one of: free in the
  buddy allocator, in a block of the pool's lists, or allocated
  (``mem_map`` has a folio there: a block in use, its pieces after a split,
  or any ordinary folio); a frame in none of them is lost, one in two is
  given out twice;
- ``chp-block``: a block in the pool is naturally aligned, appears once,
  holds no folio and no free buddy frame; a block handed out is not in the
  pool and each of its frames is allocated;
- ``chp-cma-leak``: no frame of the CMA area is free in the buddy
  allocator or part of a folio that did not come from the pool (the design
  hands CMA frames only to hugepages: the boot refill takes the whole area
  into the pool and ``__free_cont_pte_hugepages()`` returns CMA blocks
  there); a CMA block sits on the CMA list, a buddy-born one on the buddy
  list;
- ``chp-count``: ``count[]`` equals each list's length, ``usage[]`` the
  blocks handed out of each kind, and the ``chp.pool_*``/``chp.usage_*``
  counter levels equal them.

After a syscall that changed the pool (``HugePagePool.gen``) the counts
and the blocks are checked; ``m.check()`` also classifies every frame (one
pass over memory).  Compiled (docs/core.md): it reads mem_map and the buddy
allocator's arrays in place.
"""

from __future__ import annotations

from typing import Any

import cython
import numpy as np

from ..counters import counter
from ..errors import InvariantViolation
from ..mm.chp_pool import HPAGE_POOL_BUDDY, HPAGE_POOL_CMA

if not cython.compiled:
    from ..cdefs import I8View, I64View, U8View, i64
    from ..counters import Counters
    from ..mm.kernel import Kernel
    from ..mm.page_alloc import BuddyAllocator

__all__ = ["ChpPoolCheck"]

_KIND = ("CMA", "buddy")
#: The pool's counter levels, by name, and their ids.
_LEVELS = cython.declare(tuple, ("chp.pool_cma", "chp.pool_buddy", "chp.usage_cma", "chp.usage_buddy"))
_LEVEL_IDS = cython.declare(tuple, tuple(counter(name) for name in _LEVELS))


@cython.final
@cython.cclass
class ChpPoolCheck:
    """The hugepage-pool validator of one Machine with a pool."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.k = machine.kernel
        self.last_gen = -1

    @cython.ccall
    def after_syscall(self, force: cython.bint = False) -> None:
        """Check if the pool changed since the last check; with ``force`` every frame too."""
        pool = self.k.chp_pool
        gen: i64 = pool.gen
        if not force and gen == self.last_gen:
            return
        self.last_gen = gen
        got = self.check(force)
        if got is not None:
            raise got

    @cython.cfunc
    def _buddy_free(self) -> U8View:
        """A mask of the frames free in the buddy allocator (from its free blocks)."""
        fo: I8View = self.k.buddy.free_order
        nframes: i64 = self.k.memmap.nr_frames
        free: U8View = np.zeros(nframes, dtype=np.uint8)
        pfn: i64
        q: i64
        for pfn in range(fo.shape[0]):
            if fo[pfn] >= 0:
                for q in range(pfn, min(pfn + (cython.cast(i64, 1) << fo[pfn]), nframes)):
                    free[q] = 1
        return free

    @cython.ccall
    def check(self, frames: cython.bint = True) -> InvariantViolation | None:
        """The first violation found, or None."""
        k: Kernel = self.k
        pool = k.chp_pool
        nr: i64 = pool.nr
        head: I64View = k.memmap.head
        fo: I8View = k.buddy.free_order
        nframes: i64 = head.shape[0]
        # chp-count
        inx: i64
        used: i64
        for inx in (HPAGE_POOL_CMA, HPAGE_POOL_BUDDY):
            if pool.count[inx] != len(pool.items[inx]):
                return InvariantViolation(
                    "chp-count",
                    f"pool count[{_KIND[inx]}] is {pool.count[inx]} but its list holds {len(pool.items[inx])} blocks",
                )
            used = 0
            for kind in pool.in_use.values():
                if kind == inx:
                    used += 1
            if pool.usage[inx] != used:
                return InvariantViolation(
                    "chp-count", f"usage[{_KIND[inx]}] is {pool.usage[inx]} but {used} such blocks are in use"
                )
        levels = (
            len(pool.items[HPAGE_POOL_CMA]),
            len(pool.items[HPAGE_POOL_BUDDY]),
            pool.usage[HPAGE_POOL_CMA],
            pool.usage[HPAGE_POOL_BUDDY],
        )
        counters: Counters = k.counters
        j: i64
        cid: i64
        for j in range(4):
            cid = _LEVEL_IDS[j]
            if counters.v[cid] != levels[j]:
                return InvariantViolation(
                    "chp-count", f"counter {_LEVELS[j]} is {counters.v[cid]}, expected {levels[j]}"
                )
        # chp-block
        lo: i64 = pool.cma_base
        hi: i64 = lo + pool.cma_count
        seen: set[int] = set()
        in_use: dict[int, int] = pool.in_use
        pfn: i64
        q: i64
        for inx in (HPAGE_POOL_CMA, HPAGE_POOL_BUDDY):
            for x in pool.items[inx]:
                pfn = x
                if pfn & (nr - 1):
                    return InvariantViolation(
                        "chp-block", f"pool block {pfn:#x} is not aligned to {nr} pages"
                    )
                if pfn in seen or pfn in in_use:
                    return InvariantViolation(
                        "chp-block", f"block {pfn:#x} is in the pool twice or also in use"
                    )
                seen.add(pfn)
                if (lo <= pfn < hi) != (inx == HPAGE_POOL_CMA):
                    return InvariantViolation(
                        "chp-cma-leak", f"block {pfn:#x} sits on the {_KIND[inx]} list of the pool"
                    )
                for q in range(pfn, min(pfn + nr, nframes)):
                    if head[q] >= 0:
                        return InvariantViolation("chp-block", f"pool block {pfn:#x} holds a folio")
                for q in range(pfn, min(pfn + nr, nframes)):
                    if fo[q] >= 0:
                        return InvariantViolation(
                            "chp-block", f"pool block {pfn:#x} is also free in the buddy allocator"
                        )
                if self._free_cover(pfn, nr):
                    return InvariantViolation(
                        "chp-block", f"pool block {pfn:#x} is also free in the buddy allocator"
                    )
        for x in in_use:
            pfn = x
            for q in range(pfn, min(pfn + nr, nframes)):
                if head[q] < 0:
                    return InvariantViolation("chp-block", f"block {pfn:#x} is in use but holds no folio")
        if not frames:
            return None
        # chp-frame and chp-cma-leak over every frame.
        free: U8View = self._buddy_free()
        pooled: U8View = np.zeros(nframes, dtype=np.uint8)
        for x in seen:
            pfn = x
            for q in range(pfn, min(pfn + nr, nframes)):
                pooled[q] = 1
        first: i64 = -1
        nbad: i64 = 0
        for q in range(nframes):
            if free[q] + pooled[q] + (head[q] >= 0) != 1:
                if first < 0:
                    first = q
                nbad += 1
        if nbad:
            where = [
                n
                for n, on in (("buddy", free[first]), ("pool", pooled[first]), ("folio", head[first] >= 0))
                if on
            ]
            return InvariantViolation(
                "chp-frame",
                f"frame {first:#x} is in {len(where)} places ({', '.join(where) or 'none'}); "
                f"{nbad} frames are not in exactly one",
            )
        if lo < hi:
            for q in range(lo, min(hi, nframes)):
                if free[q]:
                    return InvariantViolation(
                        "chp-cma-leak", f"frame {q:#x} of the CMA area is free in the buddy allocator"
                    )
            ours: U8View = np.zeros(hi - lo, dtype=np.uint8)
            for x in in_use:
                pfn = x
                if lo <= pfn < hi:
                    for q in range(pfn - lo, min(pfn - lo + nr, hi - lo)):
                        ours[q] = 1
            for q in range(lo, min(hi, nframes)):
                if head[q] >= 0 and not ours[q - lo]:
                    return InvariantViolation(
                        "chp-cma-leak",
                        f"frame {q:#x} of the CMA area is in a folio the pool did not hand out",
                    )
        return None

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _free_cover(self, pfn: i64, nr: i64) -> cython.bint:
        """Is any frame of ``[pfn, pfn + nr)`` inside a larger free buddy block?"""
        buddy: BuddyAllocator = self.k.buddy
        fo: I8View = buddy.free_order
        order: i64
        start: i64
        for order in range(buddy.max_order + 1):
            start = pfn & ~((cython.cast(i64, 1) << order) - 1)
            if fo[start] == order and start + (cython.cast(i64, 1) << order) > pfn:
                return True
        return False
