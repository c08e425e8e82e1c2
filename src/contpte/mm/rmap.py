"""Reverse-map accounting: mapcounts, anon exclusivity, deferred split.

Models: mm/rmap.c and include/linux/rmap.h (Linux v6.12): the batch helpers
``folio_add_new_anon_rmap``, ``folio_add_anon_rmap_ptes``,
``folio_try_dup_anon_rmap_ptes``, ``folio_dup_file_rmap_ptes``,
``folio_add_file_rmap_ptes``, ``folio_remove_rmap_ptes`` and their PMD forms.

A folio's pages are identified by PFN (``page`` = pfn).  Every helper takes
the batch at once and updates the per-page arrays with numpy slices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..counters import counter
from ..errors import KernelBug
from .kernel import THP_DEFERRED_SPLIT_PAGE
from .memmap import Folio, PG_anon_exclusive
from .mm_types import MmStruct, Vma

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = [
    "RMAP_EXCLUSIVE",
    "folio_add_new_anon_rmap",
    "folio_add_anon_rmap_ptes",
    "folio_try_dup_anon_rmap_ptes",
    "folio_try_dup_anon_rmap_pmd",
    "folio_dup_file_rmap_ptes",
    "folio_add_file_rmap_ptes",
    "folio_remove_rmap_ptes",
    "folio_remove_rmap_pmd",
    "folio_needs_cow_for_dma",
    "deferred_split_folio",
]

RMAP_EXCLUSIVE = 1

RMAP_OPS = counter("rmap.op")
RMAP_PAGES = counter("rmap.pages")
RMAP_REMOVE = counter("rmap.remove")

EBUSY = 16


def rmap_changed(folio: Folio) -> None:
    """Tell the validators a folio's mapcounts grew (``Kernel.on_rmap_change``).

    The refcount must already cover every mapping at this point: another
    CPU may look at the folio (GUP-fast, a speculative folio_try_get) as soon
    as the mapcount changed, not only when the syscall returns.
    """
    hook = folio.mem.owner.on_rmap_change if folio.mem.owner is not None else None
    if hook is not None:
        hook(folio)


def folio_add_new_anon_rmap(folio: Folio, vma: Vma, address: int, flags: int, pmd: bool = False) -> None:
    """Add the first mapping of a new anon folio.

    Models: mm/rmap.c ``folio_add_new_anon_rmap()``.  ``pmd`` selects the
    PMD-mapped form (``folio_test_pmd_mappable`` mapped by a PMD).
    """
    k = vma.vm_mm.kernel
    mem = folio.mem
    if vma.anon_vma is None:
        raise KernelBug("VM_BUG_ON_VMA", "anon rmap added to a VMA without anon_vma", address)
    k.mark_anon(folio)
    mem.mapping[folio.pfn] = vma.anon_vma
    mem.index[folio.pfn] = vma.linear_page_index(address)
    nr = folio.nr_pages
    exclusive = bool(flags & RMAP_EXCLUSIVE)
    if pmd:
        mem.entire_mapcount[folio.pfn] = 1
        mem.large_mapcount[folio.pfn] = 1
        if exclusive:
            # The head's flag stands for the whole PMD-mapped folio.
            folio.set_anon_exclusive(folio.pfn)
    else:
        mem.mapcount[folio.pfn : folio.pfn + nr] = 1
        if nr > 1:
            mem.large_mapcount[folio.pfn] = nr
        if exclusive:
            folio.set_anon_exclusive(folio.pfn, nr)
    k.counters.add(RMAP_OPS)
    k.counters.add(RMAP_PAGES, nr)
    rmap_changed(folio)


def folio_add_anon_rmap_ptes(folio: Folio, page: int, nr: int, vma: Vma, address: int, flags: int) -> None:
    """Models: mm/rmap.c ``folio_add_anon_rmap_ptes()``."""
    mem = folio.mem
    mem.mapcount[page : page + nr] += 1
    if folio.test_large():
        mem.large_mapcount[folio.pfn] += nr
    if flags & RMAP_EXCLUSIVE:
        folio.set_anon_exclusive(page, nr)
    k = vma.vm_mm.kernel
    k.counters.add(RMAP_OPS)
    k.counters.add(RMAP_PAGES, nr)


def folio_needs_cow_for_dma(vma: Vma, folio: Folio) -> bool:
    """``folio_needs_cow_for_dma()``: the mm ever pinned and the folio may be pinned."""
    return bool(getattr(vma.vm_mm, "has_pinned", False)) and folio.maybe_dma_pinned()


def folio_try_dup_anon_rmap_ptes(folio: Folio, page: int, nr: int, src_vma: Vma) -> int:
    """Duplicate the anon mappings of ``nr`` pages for a child at fork.

    Models: include/linux/rmap.h ``folio_try_dup_anon_rmap_ptes()``.
    Returns 0, or -EBUSY if a page is exclusive and the folio may be
    DMA-pinned: the caller must then copy instead of sharing.
    """
    mem = folio.mem
    flags = mem.flags[page : page + nr]
    k = src_vma.vm_mm.kernel
    if (
        folio_needs_cow_for_dma(src_vma, folio)
        and np.any(flags & np.uint32(PG_anon_exclusive))
        and not k.bug("fork_shares_pinned_anon")
    ):
        return -EBUSY
    folio.clear_anon_exclusive(page, nr)
    mem.mapcount[page : page + nr] += 1
    if folio.test_large():
        mem.large_mapcount[folio.pfn] += nr
    k.counters.add(RMAP_OPS)
    k.counters.add(RMAP_PAGES, nr)
    rmap_changed(folio)
    return 0


def folio_try_dup_anon_rmap_pmd(folio: Folio, src_vma: Vma) -> int:
    """Models: include/linux/rmap.h ``folio_try_dup_anon_rmap_pmd()``."""
    if folio_needs_cow_for_dma(src_vma, folio) and folio.page_anon_exclusive(folio.pfn):
        return -EBUSY
    folio.clear_anon_exclusive(folio.pfn)
    folio.mem.entire_mapcount[folio.pfn] += 1
    folio.mem.large_mapcount[folio.pfn] += 1
    src_vma.vm_mm.kernel.counters.add(RMAP_OPS)
    return 0


def folio_dup_file_rmap_ptes(folio: Folio, page: int, nr: int, dst_vma: Vma | None = None) -> None:
    """Models: include/linux/rmap.h ``folio_dup_file_rmap_ptes()``."""
    mem = folio.mem
    mem.mapcount[page : page + nr] += 1
    if folio.test_large():
        mem.large_mapcount[folio.pfn] += nr
    if dst_vma is not None:
        dst_vma.vm_mm.kernel.counters.add(RMAP_OPS)
        dst_vma.vm_mm.kernel.counters.add(RMAP_PAGES, nr)
    rmap_changed(folio)


def folio_add_file_rmap_ptes(folio: Folio, page: int, nr: int, vma: Vma) -> None:
    """Models: mm/rmap.c ``folio_add_file_rmap_ptes()``."""
    folio_dup_file_rmap_ptes(folio, page, nr, vma)


def folio_remove_rmap_ptes(folio: Folio, page: int, nr: int, vma: Vma) -> None:
    """Remove ``nr`` PTE mappings of consecutive pages of ``folio``.

    Models: mm/rmap.c ``folio_remove_rmap_ptes()``: an anon large folio left
    partially mapped is queued for deferred split.
    """
    mem = folio.mem
    k = vma.vm_mm.kernel
    mem.mapcount[page : page + nr] -= 1
    if np.any(mem.mapcount[page : page + nr] < 0):
        raise KernelBug("VM_BUG_ON_PAGE", f"mapcount underflow in {folio}", None)
    if folio.test_large():
        mem.large_mapcount[folio.pfn] -= nr
        if folio.test_anon() and folio.mapped():
            n = folio.nr_pages
            if np.any(mem.mapcount[folio.pfn : folio.pfn + n] == 0) and folio.entire_mapcount() == 0:
                deferred_split_folio(folio, k)
    k.counters.add(RMAP_OPS)
    k.counters.add(RMAP_REMOVE)
    k.counters.add(RMAP_PAGES, nr)


def folio_remove_rmap_pmd(folio: Folio, vma: Vma) -> None:
    """Models: mm/rmap.c ``folio_remove_rmap_pmd()``."""
    mem = folio.mem
    mem.entire_mapcount[folio.pfn] -= 1
    mem.large_mapcount[folio.pfn] -= 1
    k = vma.vm_mm.kernel
    k.counters.add(RMAP_OPS)
    k.counters.add(RMAP_REMOVE)
    if folio.test_anon() and folio.mapped() and folio.entire_mapcount() == 0:
        n = folio.nr_pages
        if np.any(mem.mapcount[folio.pfn : folio.pfn + n] == 0):
            deferred_split_folio(folio, k)


def deferred_split_folio(folio: Folio, k: object) -> None:
    """Queue a partially mapped anon folio for splitting under memory pressure.

    Models: mm/huge_memory.c ``deferred_split_folio(folio, partially_mapped=true)``:
    ``thp_deferred_split_page`` only for PMD-mappable folios
    (``folio_test_pmd_mappable``), ``mthp.<size>.split_deferred`` for all.
    """
    from .kernel import Kernel

    assert isinstance(k, Kernel)
    if folio.pfn in k.deferred_split:
        return
    k.deferred_split.add(folio.pfn)
    # v6.12 counts the vmstat event for PMD-mappable folios only; every
    # order gets its per-size split_deferred stat.
    if folio.order >= k.PMD_ORDER:
        k.counters.add(THP_DEFERRED_SPLIT_PAGE)
    k.mthp_stat(folio.order, "split_deferred")


def rmap_walk_ptes(k: "Kernel", lo: int, hi: int) -> list[tuple[MmStruct, int, int]]:
    """(mm, table index, entry index) of every PTE mapping a pfn in ``[lo, hi)``.

    Models: mm/rmap.c ``rmap_walk()`` + ``page_vma_mapped_walk()`` for PTE
    mappings.  The model keeps no anon_vma chains, so it scans the page
    tables of every mm (vectorised per table); fine at the sizes where
    splits and reclaim are exercised.
    """
    a = k.arch
    out: list[tuple[MmStruct, int, int]] = []
    for mm in k.mms:
        for idx, table in mm.space.tables.items():
            d = a.ptes_decode(table.entries)
            hit = d["present"] & ~d["special"] & (d["pfn"] >= lo) & (d["pfn"] < hi)
            for pos in np.nonzero(hit)[0]:
                out.append((mm, idx, int(pos)))
    return out
