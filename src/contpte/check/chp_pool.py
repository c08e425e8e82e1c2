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
and the blocks are checked; ``m.check()`` also classifies every frame
(numpy, one pass over memory).  Not compiled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvariantViolation
from ..mm.chp_pool import HPAGE_POOL_BUDDY, HPAGE_POOL_CMA, HugePagePool

__all__ = ["ChpPoolCheck"]

_KIND = ("CMA", "buddy")


class ChpPoolCheck:
    """The hugepage-pool validator of one Machine with a pool."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.k = machine.kernel
        self.last_gen = -1

    def after_syscall(self, force: bool = False) -> None:
        """Check if the pool changed since the last check; with ``force`` every frame too."""
        pool: HugePagePool = self.k.chp_pool
        if not force and pool.gen == self.last_gen:
            return
        self.last_gen = pool.gen
        got = self.check(frames=force)
        if got is not None:
            raise got

    def _buddy_free(self) -> np.ndarray:
        """A mask of the frames free in the buddy allocator (from its free blocks)."""
        buddy = self.k.buddy
        fo = np.asarray(buddy.free_order)
        free = np.zeros(int(self.k.memmap.nr_frames), dtype=bool)
        for pfn in np.nonzero(fo >= 0)[0]:
            free[int(pfn) : int(pfn) + (1 << int(fo[pfn]))] = True
        return free

    def check(self, frames: bool = True) -> InvariantViolation | None:
        """The first violation found, or None."""
        k = self.k
        pool: HugePagePool = k.chp_pool
        nr = pool.nr
        mem = k.memmap
        head = np.asarray(mem.head)
        fo = np.asarray(k.buddy.free_order)
        # chp-count
        for inx in (HPAGE_POOL_CMA, HPAGE_POOL_BUDDY):
            if pool.count[inx] != len(pool.items[inx]):
                return InvariantViolation(
                    "chp-count",
                    f"pool count[{_KIND[inx]}] is {pool.count[inx]} but its list holds {len(pool.items[inx])} blocks",
                )
            used = sum(1 for kind in pool.in_use.values() if kind == inx)
            if pool.usage[inx] != used:
                return InvariantViolation(
                    "chp-count", f"usage[{_KIND[inx]}] is {pool.usage[inx]} but {used} such blocks are in use"
                )
        stats = k.counters.values_of(["chp.pool_cma", "chp.pool_buddy", "chp.usage_cma", "chp.usage_buddy"])
        levels = {
            "chp.pool_cma": len(pool.items[HPAGE_POOL_CMA]),
            "chp.pool_buddy": len(pool.items[HPAGE_POOL_BUDDY]),
            "chp.usage_cma": pool.usage[HPAGE_POOL_CMA],
            "chp.usage_buddy": pool.usage[HPAGE_POOL_BUDDY],
        }
        for name, want in levels.items():
            if int(stats.get(name, 0)) != want:
                return InvariantViolation(
                    "chp-count", f"counter {name} is {stats.get(name, 0)}, expected {want}"
                )
        # chp-block
        seen: set[int] = set()
        for inx in (HPAGE_POOL_CMA, HPAGE_POOL_BUDDY):
            for pfn in pool.items[inx]:
                if pfn & (nr - 1):
                    return InvariantViolation(
                        "chp-block", f"pool block {pfn:#x} is not aligned to {nr} pages"
                    )
                if pfn in seen or pfn in pool.in_use:
                    return InvariantViolation(
                        "chp-block", f"block {pfn:#x} is in the pool twice or also in use"
                    )
                seen.add(pfn)
                if pool.within_cont_pte_cma(pfn) != (inx == HPAGE_POOL_CMA):
                    return InvariantViolation(
                        "chp-cma-leak", f"block {pfn:#x} sits on the {_KIND[inx]} list of the pool"
                    )
                blk = slice(pfn, pfn + nr)
                if (head[blk] >= 0).any():
                    return InvariantViolation("chp-block", f"pool block {pfn:#x} holds a folio")
                if (fo[blk] >= 0).any() or self._free_cover(pfn, nr):
                    return InvariantViolation(
                        "chp-block", f"pool block {pfn:#x} is also free in the buddy allocator"
                    )
        for pfn in pool.in_use:
            if (head[pfn : pfn + nr] < 0).any():
                return InvariantViolation("chp-block", f"block {pfn:#x} is in use but holds no folio")
        if not frames:
            return None
        # chp-frame and chp-cma-leak over every frame.
        nframes = int(mem.nr_frames)
        free = self._buddy_free()
        pooled = np.zeros(nframes, dtype=bool)
        for pfn in seen:
            pooled[pfn : pfn + nr] = True
        allocated = head >= 0
        places = free.astype(np.int8) + pooled.astype(np.int8) + allocated.astype(np.int8)
        bad = np.nonzero(places != 1)[0]
        if bad.size:
            f = int(bad[0])
            where = [n for n, on in (("buddy", free[f]), ("pool", pooled[f]), ("folio", allocated[f])) if on]
            return InvariantViolation(
                "chp-frame",
                f"frame {f:#x} is in {len(where)} places ({', '.join(where) or 'none'}); "
                f"{bad.size} frames are not in exactly one",
            )
        lo, hi = pool.cma_base, pool.cma_base + pool.cma_count
        if lo < hi:
            leaked = np.nonzero(free[lo:hi])[0]
            if leaked.size:
                return InvariantViolation(
                    "chp-cma-leak",
                    f"frame {lo + int(leaked[0]):#x} of the CMA area is free in the buddy allocator",
                )
            ours = np.zeros(hi - lo, dtype=bool)
            for pfn in pool.in_use:
                if lo <= pfn < hi:
                    ours[pfn - lo : pfn - lo + nr] = True
            stray = np.nonzero(allocated[lo:hi] & ~ours)[0]
            if stray.size:
                return InvariantViolation(
                    "chp-cma-leak",
                    f"frame {lo + int(stray[0]):#x} of the CMA area is in a folio the pool did not hand out",
                )
        return None

    def _free_cover(self, pfn: int, nr: int) -> bool:
        """Is any frame of ``[pfn, pfn + nr)`` inside a larger free buddy block?"""
        fo = np.asarray(self.k.buddy.free_order)
        k = self.k.buddy
        for order in range(int(k.max_order) + 1):
            start = pfn & ~((1 << order) - 1)
            if int(fo[start]) == order and start + (1 << order) > pfn:
                return True
        return False
