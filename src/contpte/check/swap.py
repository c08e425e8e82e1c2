"""The swap validator: swap counts, the swap cache and MM_SWAPENTS against the page tables.

Like the other validators it derives what must hold from the page tables
and never trusts the structure it checks (``mm/swapfile.py``'s
``swap_map``, ``cache``, ``inuse_pages`` and each mm's ``MM_SWAPENTS``).
Rules (``InvariantViolation.rule``):

- ``swap-count``: every slot's count (``swap_count(swap_map[slot])``)
  equals the number of swap PTEs, in every process, that hold its entry;
- ``swap-cache``: a slot has ``SWAP_HAS_CACHE`` exactly when the swap
  cache holds a page for it, that page's folio is PG_swapcache and keeps
  one reference per page for the cache (plus one per mapping); between
  syscalls no swap-in holds a claim;
- ``swap-rss``: each mm's ``MM_SWAPENTS`` equals its swap PTEs;
- ``swap-leak``: the slots in use (``inuse_pages``) are exactly the slots
  with a count or the cache flag, and none is in use once every process
  has exited.

It recounts from the tables (numpy over each table), and runs only when
the swap device changed since the last run (``SwapInfo.gen``) or a process
exited (``after_syscall``), and from scratch in ``m.check()``.  Not
compiled: its cost is one pass over the tables of the machine, paid only
after a syscall that touched swap state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvariantViolation
from ..mm.memmap import PG_swapcache
from ..mm.swapfile import SWAP_HAS_CACHE, SWAP_MAP_BAD, SwapInfo, swap_count

__all__ = ["SwapCheck"]


class SwapCheck:
    """The swap validator of one Machine with swap (``Machine(swap=...)``)."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.k = machine.kernel
        self.si: SwapInfo = machine.swap
        self.last_gen = -1

    def after_syscall(self, force: bool = False) -> None:
        """Check if the swap state changed since the last check (or ``force``)."""
        si = self.si
        if not force and si.gen == self.last_gen:
            return
        self.last_gen = si.gen
        got = self.check()
        if got is not None:
            raise got

    def count_swap_ptes(self) -> tuple[np.ndarray, dict[int, int]]:
        """(swap PTEs per slot, swap PTEs per mm owner) from every table of every mm."""
        k = self.k
        a = k.arch
        pool = a.pool
        entries = np.asarray(pool.e)
        per = a.PTRS_PER_PTE
        counts = np.zeros(self.si.max, dtype=np.int64)
        per_mm: dict[int, int] = {}
        for mm in k.mms:
            n = 0
            for slot in mm.space.tables.values():
                tab = entries[slot * per : (slot + 1) * per]
                nz = np.flatnonzero(tab)
                if not len(nz):
                    continue
                present = a.ptes_decode(tab[nz], ("present",))["present"].astype(bool)
                for v in tab[nz[~present]]:
                    pte = int(v)
                    if a.swp_type(pte) != self.si.type:
                        raise InvariantViolation(
                            "swap-count",
                            f"pid {mm.owner}: swap PTE of unknown type {a.swp_type(pte)}",
                            None,
                            [pte],
                        )
                    off = a.swp_offset(pte)
                    if not 0 < off < self.si.max:
                        raise InvariantViolation(
                            "swap-count",
                            f"pid {mm.owner}: swap PTE beyond the device (slot {off:#x})",
                            None,
                            [pte],
                        )
                    counts[off] += 1
                    n += 1
            per_mm[mm.owner] = n
        return counts, per_mm

    def check(self) -> InvariantViolation | None:
        """Every rule from scratch; the first violation, or None."""
        si = self.si
        k = self.k
        mem = k.memmap
        try:
            counts, per_mm = self.count_swap_ptes()
        except InvariantViolation as e:
            return e
        for mm in k.mms:
            if int(mm.rss[2]) != per_mm.get(mm.owner, 0):
                return InvariantViolation(
                    "swap-rss",
                    f"pid {mm.owner}: MM_SWAPENTS = {int(mm.rss[2])} but the tables hold "
                    f"{per_mm.get(mm.owner, 0)} swap PTEs",
                )
        smap = np.asarray(si.swap_map).astype(np.int64)
        cache = np.asarray(si.cache)
        cnt = smap & ~(SWAP_HAS_CACHE | SWAP_MAP_BAD)
        bad = np.flatnonzero(cnt != counts)
        if len(bad):
            off = int(bad[0])
            return InvariantViolation(
                "swap-count",
                f"slot {off:#x}: swap count {swap_count(int(smap[off]))} but {int(counts[off])} swap PTEs hold it "
                f"({len(bad)} slot(s) differ)",
            )
        has_cache = (smap & SWAP_HAS_CACHE) != 0
        bad = np.flatnonzero(has_cache != (cache >= 0))
        if len(bad):
            off = int(bad[0])
            return InvariantViolation(
                "swap-cache",
                f"slot {off:#x}: swap_map {int(smap[off]):#x} but the swap cache holds "
                f"{'page ' + hex(int(cache[off])) if cache[off] >= 0 else 'nothing'}",
            )
        for folio, off in si.folio_swap.items():
            nr = 1 << int(mem.order[folio])
            if not int(mem.flags[folio]) & PG_swapcache or int(mem.head[folio]) != folio:
                return InvariantViolation(
                    "swap-cache", f"folio {folio:#x} of the swap cache is not PG_swapcache"
                )
            if any(int(cache[off + i]) != folio + i for i in range(nr)):
                return InvariantViolation(
                    "swap-cache", f"folio {folio:#x}: the swap cache maps slot {off:#x} elsewhere"
                )
            mapped = int(np.asarray(mem.mapcount)[folio : folio + nr].sum())
            if int(mem.refcount[folio]) < nr + mapped:
                return InvariantViolation(
                    "swap-cache",
                    f"folio {folio:#x}: refcount {int(mem.refcount[folio])} < {nr} (swap cache) + {mapped} (mappings)",
                )
        in_use = int(np.count_nonzero((smap != 0) & ((smap & SWAP_MAP_BAD) == 0)))
        if in_use != si.inuse_pages:
            return InvariantViolation(
                "swap-leak",
                f"inuse_pages = {si.inuse_pages} but {in_use} slots have a count or the cache flag",
            )
        held = (cnt != 0) | has_cache
        leaked = np.flatnonzero(((smap != 0) & ((smap & SWAP_MAP_BAD) == 0)) & ~held)
        if len(leaked):
            return InvariantViolation(
                "swap-leak", f"slot {int(leaked[0]):#x} is in use with no count and no cache"
            )
        if not k.mms and si.inuse_pages:
            return InvariantViolation(
                "swap-leak", f"every process exited but {si.inuse_pages} swap slots are still in use"
            )
        return None
