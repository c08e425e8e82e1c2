"""Memory pressure: reclaim lazyfree anon folios and page-cache folios.

Models: mm/vmscan.c ``shrink_folio_list()`` with mm/rmap.c
``try_to_unmap_one()`` (Linux v6.12), for what the model can reclaim
without swap:

- a lazyfree (MADV_FREE) anon folio is unmapped PTE by PTE; each cleared
  PTE's dirty bit goes to the folio (``folio_mark_dirty``); while the folio
  is clean and nobody else holds a reference, the mapping is discarded (the
  process later reads zero there); once it is found dirty (written again
  after MADV_FREE) the PTE is restored, the folio becomes swap-backed again
  and the walk stops;
- a page-cache folio of a regular file is unmapped everywhere (gathering
  dirty bits), written back if dirty (``pageout``: its values go to the
  file's backing store) and dropped from the page cache.

Swap-backed anon memory and shmem are not reclaimed (no swap is modelled);
folios mapped by a PMD, pinned or otherwise referenced are skipped.  One
call is one full pass over memory (``shrink_all_memory``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..arch.pgtable import PtePtr
from ..counters import counter
from . import rmap
from .memmap import Folio, PG_anon, PG_lazyfree, PG_reserved
from .memory import mm_counter_file, pte_unmap_unlock
from .mm_types import MM_ANONPAGES

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ["shrink_all_memory", "try_to_unmap"]

PGLAZYFREED = counter("pglazyfreed")
PGSTEAL = counter("pgsteal")
PGPAGEOUT = counter("pgpgout")
PGLAZYFREE_FAIL = counter("pglazyfree_fail")


def try_to_unmap(k: "Kernel", folio: Folio, lazyfree: bool) -> bool:
    """Unmap every PTE of ``folio``; False if a lazyfree folio turned out dirty (kept).

    Models: mm/rmap.c ``try_to_unmap()`` -> ``try_to_unmap_one()``.
    """
    a = k.arch
    mem = folio.mem
    for mm, idx, pos in rmap.rmap_walk_ptes(k, folio.pfn, folio.pfn + folio.nr_pages):
        table = mm.space.tables.get(idx)
        if table is None:
            continue
        addr = ((idx * a.PTRS_PER_PTE) + pos) << k.page_shift
        vma = mm.vma_lookup(addr)
        if vma is None:
            continue
        ptep = PtePtr(table, pos)
        k.hw.current_cpu = min(mm.cpumask) if mm.cpumask else 0
        pteval = a.ptep_clear_flush(vma, addr, ptep)
        page = a.pte_pfn(pteval)
        if a.pte_dirty(pteval):
            folio.mark_dirty()
        if lazyfree:
            if folio.refcount == folio.mapcount_total() and not folio.test_dirty():
                mm.add_mm_counter(MM_ANONPAGES, -1)
                k.counters.add(PGLAZYFREED)
            else:
                # Written again since MADV_FREE (or referenced): remap, swap-backed again.
                a.set_pte_at(mm, addr, ptep, pteval)
                mem.flags[folio.pfn] &= np.uint32(~PG_lazyfree & 0xFFFFFFFF)
                k.counters.add(PGLAZYFREE_FAIL)
                pte_unmap_unlock(mm, ptep)
                return False
        else:
            mm.add_mm_counter(mm_counter_file(folio, k), -1)
        rmap.folio_remove_rmap_ptes(folio, page, 1, vma)
        pte_unmap_unlock(mm, ptep)
        k.folio_put(folio)
    return True


def pageout(k: "Kernel", folio: Folio) -> None:
    """Write a dirty page-cache folio back to its file (synchronously) and clean it."""
    f = k.files.get(int(folio.mem.mapping[folio.pfn]))
    if f is None:
        return
    first = int(folio.mem.index[folio.pfn])
    vals = k.hw.memory.data[folio.pfn : folio.pfn + folio.nr_pages]
    for i in range(folio.nr_pages):
        f.disk[first + i] = int(vals[i])
    folio.clear_dirty()
    k.counters.add(PGPAGEOUT, folio.nr_pages)


def shrink_all_memory(k: "Kernel") -> int:
    """One reclaim pass over every folio; returns the pages freed.

    Models: mm/vmscan.c ``shrink_folio_list()`` for lazyfree anon and
    regular page-cache folios (see the module docstring).
    """
    mem = k.memmap
    nr = mem.nr_frames
    heads = np.nonzero((mem.head == np.arange(nr)) & ((mem.flags & PG_reserved) == 0))[0]
    freed = 0
    for hh in heads:
        h = int(hh)
        if int(mem.head[h]) != h:
            continue  # freed meanwhile
        folio = k.folio(h)
        if folio.entire_mapcount() or h == k.huge_zero_pfn:
            continue
        flags = int(mem.flags[h])
        anon = bool(flags & PG_anon)
        if anon:
            if not flags & PG_lazyfree or folio.maybe_dma_pinned():
                continue
            if folio.refcount != folio.mapcount_total():
                continue
            n = folio.nr_pages
            if try_to_unmap(k, folio, lazyfree=True):
                freed += n
                k.counters.add(PGSTEAL, n)
            continue
        f = k.files.get(int(mem.mapping[h]))
        if f is None or f.shmem or folio.maybe_dma_pinned():
            continue
        # The page cache holds one reference; any other is a user we must not disturb.
        if folio.refcount != 1 + folio.mapcount_total():
            continue
        try_to_unmap(k, folio, lazyfree=False)
        if folio.test_dirty():
            pageout(k, folio)
        n = folio.nr_pages
        f.forget_folio(folio)
        k.folio_put(folio)
        freed += n
        k.counters.add(PGSTEAL, n)
    return freed
