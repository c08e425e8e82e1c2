"""Per-frame metadata ("struct page" / "struct folio") as struct-of-arrays.

Models: include/linux/mm_types.h ``struct page``/``struct folio`` and the
accessors of include/linux/mm.h, page-flags.h, rmap.h (Linux v6.12).

Arrays are indexed by PFN.  A folio is named by its head PFN (the model's
``struct folio *``; -1 is NULL) and a page by its PFN (``struct page *``).
Folio-wide fields are meaningful at the head.  Mapcounts are plain counts
(the kernel stores them biased by -1).

The kernel's accessors keep their names and take the mem_map first (the
kernel's is a global): ``folio_ref_add(mem, folio, nr)`` is
``folio_ref_add(folio, nr)``.

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython
import numpy as np

if not cython.compiled:
    from ..cdefs import i64

__all__ = [
    "MemMap",
    "PG_anon",
    "PG_dirty",
    "PG_swapbacked",
    "PG_reserved",
    "PG_anon_exclusive",
    "PG_lazyfree",
    "PG_referenced",
    "PG_swapcache",
    "PG_cont",
    "PG_double_map",
    "GUP_PIN_COUNTING_BIAS",
    "page_folio",
    "folio_order",
    "folio_nr_pages",
    "folio_test_large",
    "folio_ref_count",
    "folio_ref_add",
    "folio_ref_sub",
    "folio_test_anon",
    "folio_test_dirty",
    "folio_mark_dirty",
    "folio_clear_dirty",
    "folio_set_referenced",
    "folio_test_clear_referenced",
    "folio_test_reserved",
    "folio_mapcount",
    "folio_entire_mapcount",
    "folio_mapped",
    "folio_maybe_dma_pinned",
    "folio_likely_mapped_shared",
    "folio_maybe_mapped_shared",
    "PageAnonExclusive",
    "SetPageAnonExclusive",
    "ClearPageAnonExclusive",
]

# Folio flags (at the head page).
PG_anon = cython.declare(i64, 1 << 0)
PG_dirty = cython.declare(i64, 1 << 1)
PG_swapbacked = cython.declare(i64, 1 << 2)
PG_reserved = cython.declare(i64, 1 << 3)
#: Model: an anon folio made lazyfree by MADV_FREE (!PG_swapbacked in the kernel).
PG_lazyfree = cython.declare(i64, 1 << 4)
#: ``PG_referenced``: set by reclaim's ``folio_check_references()`` for a
#: folio whose PTEs were young (the model's only ``folio_mark_accessed()``-like
#: source), cleared by MADV_FREE (``lru_lazyfree()``) and by the next check.
PG_referenced = cython.declare(i64, 1 << 5)
#: ``PG_swapcache``: the folio is in the swap cache (``folio->swap`` is kept
#: by the swap device, ``mm/swapfile.py``).
PG_swapcache = cython.declare(i64, 1 << 6)
#: ``PG_cont`` (OnePlus dynamic hugepage, ``SetPageCont()``): a 64K block of
#: the cont-pte hugepage pool (``mm/chp_pool.py``), given back there when freed.
PG_cont = cython.declare(i64, 1 << 7)
#: ``PageDoubleMap`` of a block (OnePlus ``__split_huge_cont_pte_locked()``):
#: split into PTE mappings in one mm while other mms still map it whole.
PG_double_map = cython.declare(i64, 1 << 9)
# Per-page flags.
PG_anon_exclusive = cython.declare(i64, 1 << 8)
_NOT_PG_dirty = cython.declare(i64, 0xFFFFFFFF & ~(1 << 1))
_NOT_PG_referenced = cython.declare(i64, 0xFFFFFFFF & ~(1 << 5))
_NOT_PG_anon_exclusive = cython.declare(i64, 0xFFFFFFFF & ~(1 << 8))

#: include/linux/mm.h: an order-0 folio's pins are counted in its refcount.
GUP_PIN_COUNTING_BIAS = cython.declare(i64, 1024)


@cython.final
@cython.cclass
class MemMap:
    """mem_map: the metadata of every frame."""

    def __init__(self, nr_frames: i64, owner: Any = None) -> None:
        self.nr_frames = nr_frames
        #: The Kernel this mem_map belongs to.
        self.owner = owner
        self.head = np.full(nr_frames, -1, dtype=np.int64)
        self.order = np.zeros(nr_frames, dtype=np.int8)
        self.flags = np.zeros(nr_frames, dtype=np.uint32)
        self.mapcount = np.zeros(nr_frames, dtype=np.int32)
        self.refcount = np.zeros(nr_frames, dtype=np.int32)
        self.pincount = np.zeros(nr_frames, dtype=np.int32)
        self.entire_mapcount = np.zeros(nr_frames, dtype=np.int32)
        self.large_mapcount = np.zeros(nr_frames, dtype=np.int32)
        # CONFIG_MM_ID (v6.15): the two mm slots of a large folio, the
        # mappings each slot's mm holds (0 with MM_ID_DUMMY = 0: a free
        # slot; the kernel stores counts minus one), and the "maybe mapped
        # shared" bit (FOLIO_MM_IDS_SHARED_BIT).  Kept up to date by the
        # rmap functions (mm/rmap.py) in every version; read from v6.15 on.
        self.mm_id0 = np.zeros(nr_frames, dtype=np.int32)
        self.mm_id1 = np.zeros(nr_frames, dtype=np.int32)
        self.mm_id_mapcount0 = np.zeros(nr_frames, dtype=np.int32)
        self.mm_id_mapcount1 = np.zeros(nr_frames, dtype=np.int32)
        self.mm_ids_shared = np.zeros(nr_frames, dtype=np.int8)
        self.mapping = np.full(nr_frames, -1, dtype=np.int32)
        self.index = np.zeros(nr_frames, dtype=np.int64)

    @cython.ccall
    def prep(self, folio: i64, order: i64) -> None:
        """Initialise a freshly allocated folio (refcount 1, no mappings)."""
        i: i64
        for i in range(folio, folio + (1 << order)):
            self.head[i] = folio
            self.flags[i] = 0
            self.mapcount[i] = 0
            self.mapping[i] = -1
        self.order[folio] = order
        self.refcount[folio] = 1
        self.pincount[folio] = 0
        self.entire_mapcount[folio] = 0
        self.large_mapcount[folio] = 0
        self.mm_id0[folio] = 0
        self.mm_id1[folio] = 0
        self.mm_id_mapcount0[folio] = 0
        self.mm_id_mapcount1[folio] = 0
        self.mm_ids_shared[folio] = 0
        self.index[folio] = 0

    @cython.ccall
    def clear(self, folio: i64, order: i64) -> None:
        """Forget a freed folio."""
        i: i64
        for i in range(folio, folio + (1 << order)):
            self.head[i] = -1
            self.flags[i] = 0
            self.mapcount[i] = 0
        self.refcount[folio] = 0

    def describe(self, folio: int) -> str:
        """``<folio pfn=.. order=.. ref=..>`` for messages."""
        if folio < 0:
            return "<NULL folio>"
        return f"<folio pfn={folio:#x} order={cython.cast(i64, self.order[folio])} ref={cython.cast(i64, self.refcount[folio])}>"


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def page_folio(mem: MemMap, page: i64) -> i64:
    """``page_folio(pfn_to_page(pfn))``: the head of the folio holding ``page`` (-1: none)."""
    return cython.cast(i64, mem.head[page])


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_order(mem: MemMap, folio: i64) -> i64:
    """``folio_order()``."""
    return cython.cast(i64, mem.order[folio])


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_nr_pages(mem: MemMap, folio: i64) -> i64:
    """``folio_nr_pages()``."""
    return cython.cast(i64, 1) << cython.cast(i64, mem.order[folio])


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_test_large(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_test_large()``."""
    return bool(cython.cast(i64, mem.order[folio]) > 0)


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_ref_count(mem: MemMap, folio: i64) -> i64:
    """``folio_ref_count()``."""
    return cython.cast(i64, mem.refcount[folio])


@cython.ccall
@cython.inline
def folio_ref_add(mem: MemMap, folio: i64, nr: i64) -> None:
    """``folio_ref_add()``."""
    mem.refcount[folio] += nr


@cython.ccall
@cython.inline
def folio_ref_sub(mem: MemMap, folio: i64, nr: i64) -> None:
    """``folio_ref_sub()``."""
    mem.refcount[folio] -= nr


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_test_anon(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_test_anon()``."""
    return bool((cython.cast(i64, mem.flags[folio]) & PG_anon) != 0)


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_test_dirty(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_test_dirty()``."""
    return bool((cython.cast(i64, mem.flags[folio]) & PG_dirty) != 0)


@cython.ccall
@cython.inline
def folio_mark_dirty(mem: MemMap, folio: i64) -> None:
    """``folio_mark_dirty()``."""
    mem.flags[folio] |= PG_dirty


@cython.ccall
@cython.inline
def folio_clear_dirty(mem: MemMap, folio: i64) -> None:
    """``folio_clear_dirty()``."""
    mem.flags[folio] &= _NOT_PG_dirty


@cython.ccall
@cython.inline
def folio_set_referenced(mem: MemMap, folio: i64) -> None:
    """``folio_set_referenced()``."""
    mem.flags[folio] |= PG_referenced


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_test_clear_referenced(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_test_clear_referenced()``: was PG_referenced set? Clears it."""
    was: cython.bint = (cython.cast(i64, mem.flags[folio]) & PG_referenced) != 0
    mem.flags[folio] &= _NOT_PG_referenced
    return was


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_test_reserved(mem: MemMap, folio: i64) -> cython.bint:
    """``PageReserved()`` of the head."""
    return bool((cython.cast(i64, mem.flags[folio]) & PG_reserved) != 0)


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_mapcount(mem: MemMap, folio: i64) -> i64:
    """``folio_mapcount()``: PTE mappings plus PMD mappings."""
    if cython.cast(i64, mem.order[folio]) > 0:
        return cython.cast(i64, mem.large_mapcount[folio])
    return cython.cast(i64, mem.mapcount[folio])


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_entire_mapcount(mem: MemMap, folio: i64) -> i64:
    """``folio_entire_mapcount()``."""
    return cython.cast(i64, mem.entire_mapcount[folio])


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_mapped(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_mapped()``."""
    return folio_mapcount(mem, folio) > 0


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def folio_maybe_dma_pinned(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_maybe_dma_pinned()``."""
    if cython.cast(i64, mem.order[folio]) > 0:
        return bool(cython.cast(i64, mem.pincount[folio]) > 0)
    return bool(cython.cast(i64, mem.refcount[folio]) >= GUP_PIN_COUNTING_BIAS)


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_maybe_mapped_shared(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_maybe_mapped_shared()`` (include/linux/mm.h, v6.15, CONFIG_MM_ID).

    A small folio: mapped more than once.  A large folio mapped at most
    once is exclusive; otherwise the "maybe mapped shared" bit of its mm
    slots decides (``mm_ids_shared``, set once a second mm mapped it, and
    cleared only when one slot's mm holds every mapping again: so it can
    stay set while a single untracked mm maps the folio).  Replaces
    v6.12's ``folio_likely_mapped_shared()`` in madvise and mprotect.
    """
    mapcount: i64 = folio_mapcount(mem, folio)
    if cython.cast(i64, mem.order[folio]) == 0:
        return mapcount > 1
    if mapcount <= 1:
        return False
    return cython.cast(i64, mem.mm_ids_shared[folio]) != 0


@cython.ccall
@cython.exceptval(-1, check=True)
def folio_likely_mapped_shared(mem: MemMap, folio: i64) -> cython.bint:
    """``folio_likely_mapped_shared()`` (include/linux/mm.h, v6.12).

    A large folio mapped once is exclusive; one with a PMD mapping and any
    other mapping, or with more mappings than pages, is shared; otherwise
    the first page decides (mapped more than once).
    """
    mapcount: i64 = folio_mapcount(mem, folio)
    order: i64 = cython.cast(i64, mem.order[folio])
    if order == 0:
        return mapcount > 1
    if mapcount <= 1:
        return False
    if cython.cast(i64, mem.entire_mapcount[folio]) or mapcount > (cython.cast(i64, 1) << order):
        return True
    return bool(cython.cast(i64, mem.mapcount[folio]) > 1)


@cython.ccall
@cython.exceptval(-1, check=True)
@cython.inline
def PageAnonExclusive(mem: MemMap, page: i64) -> cython.bint:
    """``PageAnonExclusive(page)``."""
    return bool((cython.cast(i64, mem.flags[page]) & PG_anon_exclusive) != 0)


@cython.ccall
def SetPageAnonExclusive(mem: MemMap, page: i64, nr: i64 = 1) -> None:
    """``SetPageAnonExclusive()`` of ``nr`` pages from ``page``."""
    i: i64
    for i in range(page, page + nr):
        mem.flags[i] |= PG_anon_exclusive


@cython.ccall
def ClearPageAnonExclusive(mem: MemMap, page: i64, nr: i64 = 1) -> None:
    """``ClearPageAnonExclusive()`` of ``nr`` pages from ``page``."""
    i: i64
    for i in range(page, page + nr):
        mem.flags[i] &= _NOT_PG_anon_exclusive


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        PG_anon=PG_anon,
        PG_dirty=PG_dirty,
        PG_swapbacked=PG_swapbacked,
        PG_reserved=PG_reserved,
        PG_lazyfree=PG_lazyfree,
        PG_referenced=PG_referenced,
        PG_anon_exclusive=PG_anon_exclusive,
        PG_swapcache=PG_swapcache,
        PG_cont=PG_cont,
        PG_double_map=PG_double_map,
        GUP_PIN_COUNTING_BIAS=GUP_PIN_COUNTING_BIAS,
    )
