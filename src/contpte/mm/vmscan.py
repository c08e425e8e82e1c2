"""Memory pressure: reclaim lazyfree anon folios and page-cache folios.

Models: mm/vmscan.c ``shrink_folio_list()`` with mm/rmap.c
``try_to_unmap_one()`` (Linux v6.12), for what the model can reclaim
without swap.  Each candidate first goes through
``folio_check_references()``: a folio with a young PTE (the PTEs are made
old, ``folio_referenced()``) is kept, and marked PG_referenced; the next
pass reclaims it unless it was used again (activation is modelled as a
keep: the model has no LRU lists).  Then:

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

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ..counters import counter
from .rmap import folio_referenced, rmap_walk_ptes

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import i64, u64
    from ..counters import count
    from .kernel import Kernel
    from .memmap import (
        MemMap,
        PG_anon,
        PG_lazyfree,
        PG_reserved,
        folio_clear_dirty,
        folio_mapcount,
        folio_mark_dirty,
        folio_maybe_dma_pinned,
        folio_set_referenced,
        folio_test_clear_referenced,
        folio_test_dirty,
    )
    from .mm_h import mm_counter_file, pte_unmap_unlock
    from .mm_types import MM_ANONPAGES, VM_EXEC, MmStruct, Vma
    from .rmap import folio_remove_rmap_ptes
    from .shmem import File

__all__ = [
    "shrink_all_memory",
    "try_to_unmap",
    "pageout",
    "folio_check_references",
    "FOLIOREF_RECLAIM",
    "FOLIOREF_RECLAIM_CLEAN",
    "FOLIOREF_KEEP",
    "FOLIOREF_ACTIVATE",
]

# mm/vmscan.c enum folio_references.
FOLIOREF_RECLAIM = cython.declare(i64, 0)
FOLIOREF_RECLAIM_CLEAN = cython.declare(i64, 1)
FOLIOREF_KEEP = cython.declare(i64, 2)
FOLIOREF_ACTIVATE = cython.declare(i64, 3)

PGLAZYFREED = cython.declare(i64, counter("pglazyfreed"))
PGSTEAL = cython.declare(i64, counter("pgsteal"))
PGPAGEOUT = cython.declare(i64, counter("pgpgout"))
PGLAZYFREE_FAIL = cython.declare(
    i64,
    counter("pglazyfree_fail"),
)

_NOT_PG_lazyfree = cython.declare(i64, 0xFFFFFFFF ^ PG_lazyfree)


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_check_references(k: Kernel, folio: i64) -> i64:
    """Should reclaim take ``folio``? One of the ``FOLIOREF_*`` values.

    Models: mm/vmscan.c ``folio_check_references()`` (v6.12, no VM_LOCKED,
    no rmap lock contention in the model): a folio with young PTEs
    (``folio_referenced()``, which makes them old) gets PG_referenced and is
    kept, or activated if it was already PG_referenced, is mapped young in
    more than one VMA, or is an executable file folio; one without is
    reclaimed, "clean" if it was PG_referenced and on the file LRU (a page-cache
    or lazyfree folio, ``folio_is_file_lru()``).
    """
    mem: MemMap = k.memmap
    referenced_ptes: i64
    vm_flags: i64
    referenced_ptes, vm_flags = folio_referenced(k, folio)
    referenced_folio: cython.bint = folio_test_clear_referenced(mem, folio)
    # folio_is_file_lru(): !PG_swapbacked, i.e. page cache (not shmem) or lazyfree anon.
    file_lru: cython.bint = (cython.cast(i64, mem.flags[folio]) & PG_lazyfree) != 0 or not (
        cython.cast(i64, mem.flags[folio]) & PG_anon
    )
    if referenced_ptes:
        folio_set_referenced(mem, folio)
        if referenced_folio or referenced_ptes > 1:
            return FOLIOREF_ACTIVATE
        if vm_flags & VM_EXEC and file_lru:
            return FOLIOREF_ACTIVATE
        return FOLIOREF_KEEP
    if referenced_folio and file_lru:
        return FOLIOREF_RECLAIM_CLEAN
    return FOLIOREF_RECLAIM


@cython.ccall
@cython.exceptval(-1, check=True)
def try_to_unmap(k: Kernel, folio: i64, lazyfree: cython.bint) -> cython.bint:
    """Unmap every PTE of ``folio``; False if a lazyfree folio turned out dirty (kept).

    Models: mm/rmap.c ``try_to_unmap()`` -> ``try_to_unmap_one()``.
    ``k``: the mem_map's kernel; ``folio``: the head pfn.

    Context: the caller holds no PTL; reclaim's folio lock.
    """
    a: Pgtable = k.arch
    mem: MemMap = k.memmap
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    shift: i64 = a.pool.shift
    ptes_per: i64 = a.PTRS_PER_PTE
    mm: MmStruct
    vma: Vma
    slot: i64
    addr: i64
    ptep: i64
    pteval: u64
    page: i64
    for mm_, idx, pos in rmap_walk_ptes(k, folio, folio + nr):
        mm = mm_
        slot = mm.space.pte_table(idx)
        if slot < 0:
            continue
        addr = ((cython.cast(i64, idx) * ptes_per) + cython.cast(i64, pos)) << k.page_shift
        v = mm.vma_lookup(addr)
        if v is None:
            continue
        vma = v
        ptep = (slot << shift) | cython.cast(i64, pos)
        pteval = a.ptep_clear_flush(vma, addr, ptep)
        page = a.pte_pfn(pteval)
        if a.pte_dirty(pteval):
            folio_mark_dirty(mem, folio)
        if lazyfree:
            if cython.cast(i64, mem.refcount[folio]) == folio_mapcount(mem, folio) and not folio_test_dirty(
                mem, folio
            ):
                mm.add_mm_counter(MM_ANONPAGES, -1)
                count(k.counters, PGLAZYFREED, 1)
            else:
                # Written again since MADV_FREE (or referenced): remap, swap-backed again.
                a.set_pte_at(mm, addr, ptep, pteval)
                mem.flags[folio] &= _NOT_PG_lazyfree
                count(k.counters, PGLAZYFREE_FAIL, 1)
                pte_unmap_unlock(mm, ptep)
                return False
        else:
            mm.add_mm_counter(mm_counter_file(folio, k), -1)
        folio_remove_rmap_ptes(folio, page, 1, vma)
        pte_unmap_unlock(mm, ptep)
        k.folio_put(folio, 1)
    return True


@cython.ccall
def pageout(k: Kernel, folio: i64) -> None:
    """Write a dirty page-cache folio back to its file (synchronously) and clean it.

    Models: mm/vmscan.c ``pageout()`` with a synchronous ``->writepage``.
    """
    mem: MemMap = k.memmap
    f = k.files.get(cython.cast(i64, mem.mapping[folio]))
    if f is None:
        return
    file: File = f
    first: i64 = cython.cast(i64, mem.index[folio])
    nr: i64 = cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])
    i: i64
    for i in range(nr):
        file.disk[first + i] = k.arch.memcpy_from_page(folio + i)
    folio_clear_dirty(mem, folio)
    count(k.counters, PGPAGEOUT, nr)


@cython.ccall
@cython.exceptval(-1, check=True)
def shrink_all_memory(k: Kernel) -> i64:
    """One reclaim pass over every folio; returns the pages freed.

    Models: mm/vmscan.c ``shrink_folio_list()`` for lazyfree anon and
    regular page-cache folios (see the module docstring), folios in pfn order.
    """
    mem: MemMap = k.memmap
    nr_frames: i64 = mem.nr_frames
    freed: i64 = 0
    h: i64 = 0
    n: i64
    flags: i64
    file: File
    while h < nr_frames:
        if cython.cast(i64, mem.head[h]) != h:
            h += 1  # a tail page or a free frame
            continue
        n = cython.cast(i64, 1) << cython.cast(i64, mem.order[h])
        flags = cython.cast(i64, mem.flags[h])
        if flags & PG_reserved or cython.cast(i64, mem.entire_mapcount[h]) or h == k.huge_zero_pfn:
            h += n
            continue
        if flags & PG_anon:
            if (
                flags & PG_lazyfree
                and folio_check_references(k, h) <= FOLIOREF_RECLAIM_CLEAN
                and not folio_maybe_dma_pinned(mem, h)
                and cython.cast(i64, mem.refcount[h]) == folio_mapcount(mem, h)
                and try_to_unmap(k, h, True)
            ):
                freed += n
                count(k.counters, PGSTEAL, n)
            h += n
            continue
        f = k.files.get(cython.cast(i64, mem.mapping[h]))
        # The page cache holds one reference; any other is a user we must not disturb.
        if (
            f is None
            or cython.cast(File, f).shmem
            or folio_check_references(k, h) > FOLIOREF_RECLAIM_CLEAN
            or folio_maybe_dma_pinned(mem, h)
            or cython.cast(i64, mem.refcount[h]) != 1 + folio_mapcount(mem, h)
        ):
            h += n
            continue
        file = f
        try_to_unmap(k, h, False)
        if folio_test_dirty(mem, h):
            pageout(k, h)
        file.forget_folio(h)
        k.folio_put(h, 1)
        freed += n
        count(k.counters, PGSTEAL, n)
        h += n
    return freed


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        PGLAZYFREED=PGLAZYFREED,
        PGSTEAL=PGSTEAL,
        PGPAGEOUT=PGPAGEOUT,
        PGLAZYFREE_FAIL=PGLAZYFREE_FAIL,
        FOLIOREF_RECLAIM=FOLIOREF_RECLAIM,
        FOLIOREF_RECLAIM_CLEAN=FOLIOREF_RECLAIM_CLEAN,
        FOLIOREF_KEEP=FOLIOREF_KEEP,
        FOLIOREF_ACTIVATE=FOLIOREF_ACTIVATE,
    )
