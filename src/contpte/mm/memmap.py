"""Per-frame metadata ("struct page" / "struct folio") as struct-of-arrays.

Models: include/linux/mm_types.h ``struct page``/``struct folio`` and the
accessors of include/linux/mm.h, page-flags.h, rmap.h (Linux v6.12).

Arrays are indexed by PFN.  Folio-wide fields are meaningful at the head
PFN.  Mapcounts are plain counts (the kernel stores them biased by -1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "MemMap",
    "Folio",
    "PG_anon",
    "PG_dirty",
    "PG_swapbacked",
    "PG_reserved",
    "PG_anon_exclusive",
    "PG_lazyfree",
    "GUP_PIN_COUNTING_BIAS",
]

# Folio flags (at the head page).
PG_anon = 1 << 0
PG_dirty = 1 << 1
PG_swapbacked = 1 << 2
PG_reserved = 1 << 3
PG_lazyfree = 1 << 4  # model: anon folio made lazyfree by MADV_FREE (!PG_swapbacked in the kernel)
# Per-page flags.
PG_anon_exclusive = 1 << 8

GUP_PIN_COUNTING_BIAS = 1024
"""include/linux/mm.h: an order-0 folio's pins are counted in its refcount."""


class MemMap:
    """mem_map: metadata of every frame."""

    def __init__(self, nr_frames: int, owner: Any = None) -> None:
        self.nr_frames = nr_frames
        #: The Kernel this mem_map belongs to (helpers given only a folio reach it).
        self.owner: Any = owner
        self.head = np.full(nr_frames, -1, dtype=np.int64)
        self.order = np.zeros(nr_frames, dtype=np.int8)
        self.flags = np.zeros(nr_frames, dtype=np.uint32)
        self.mapcount = np.zeros(nr_frames, dtype=np.int32)
        self.refcount = np.zeros(nr_frames, dtype=np.int32)
        self.pincount = np.zeros(nr_frames, dtype=np.int32)
        self.entire_mapcount = np.zeros(nr_frames, dtype=np.int32)
        self.large_mapcount = np.zeros(nr_frames, dtype=np.int32)
        self.mapping = np.full(nr_frames, -1, dtype=np.int32)
        self.index = np.zeros(nr_frames, dtype=np.int64)

    def folio(self, pfn: int) -> "Folio":
        """``page_folio(pfn_to_page(pfn))``."""
        return Folio(self, int(self.head[pfn]))

    def prep(self, pfn: int, order: int) -> "Folio":
        """Initialise a freshly allocated folio (refcount 1, no mappings)."""
        n = 1 << order
        sl = slice(pfn, pfn + n)
        self.head[sl] = pfn
        self.order[pfn] = order
        self.flags[sl] = 0
        self.mapcount[sl] = 0
        self.refcount[pfn] = 1
        self.pincount[pfn] = 0
        self.entire_mapcount[pfn] = 0
        self.large_mapcount[pfn] = 0
        self.mapping[sl] = -1
        self.index[pfn] = 0
        return Folio(self, pfn)

    def clear(self, pfn: int, order: int) -> None:
        """Forget a freed folio."""
        sl = slice(pfn, pfn + (1 << order))
        self.head[sl] = -1
        self.flags[sl] = 0
        self.mapcount[sl] = 0
        self.refcount[pfn] = 0


class Folio:
    """A ``struct folio *``: the head PFN and the metadata arrays."""

    __slots__ = ("mem", "pfn")

    def __init__(self, mem: MemMap, pfn: int) -> None:
        self.mem = mem
        self.pfn = pfn

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Folio) and other.pfn == self.pfn

    def __hash__(self) -> int:
        return self.pfn

    def __repr__(self) -> str:
        return f"<folio pfn={self.pfn:#x} order={self.order} ref={self.refcount}>"

    @property
    def order(self) -> int:
        """``folio_order()``."""
        return int(self.mem.order[self.pfn])

    @property
    def nr_pages(self) -> int:
        """``folio_nr_pages()``."""
        return 1 << int(self.mem.order[self.pfn])

    def test_large(self) -> bool:
        """``folio_test_large()``."""
        return bool(self.mem.order[self.pfn] > 0)

    @property
    def refcount(self) -> int:
        """``folio_ref_count()``."""
        return int(self.mem.refcount[self.pfn])

    def ref_add(self, nr: int) -> None:
        """``folio_ref_add()``."""
        self.mem.refcount[self.pfn] += nr

    def ref_sub(self, nr: int) -> None:
        self.mem.refcount[self.pfn] -= nr

    def test_anon(self) -> bool:
        """``folio_test_anon()``."""
        return bool(self.mem.flags[self.pfn] & PG_anon)

    def test_dirty(self) -> bool:
        return bool(self.mem.flags[self.pfn] & PG_dirty)

    def mark_dirty(self) -> None:
        """``folio_mark_dirty()``."""
        self.mem.flags[self.pfn] |= np.uint32(PG_dirty)

    def clear_dirty(self) -> None:
        self.mem.flags[self.pfn] &= np.uint32(~PG_dirty & 0xFFFFFFFF)

    def test_reserved(self) -> bool:
        return bool(self.mem.flags[self.pfn] & PG_reserved)

    def mapcount_total(self) -> int:
        """``folio_mapcount()``: PTE mappings plus PMD mappings."""
        if self.test_large():
            return int(self.mem.large_mapcount[self.pfn])
        return int(self.mem.mapcount[self.pfn])

    def entire_mapcount(self) -> int:
        return int(self.mem.entire_mapcount[self.pfn])

    def mapped(self) -> bool:
        """``folio_mapped()``."""
        return self.mapcount_total() > 0

    def maybe_dma_pinned(self) -> bool:
        """``folio_maybe_dma_pinned()``."""
        if self.test_large():
            return int(self.mem.pincount[self.pfn]) > 0
        return int(self.mem.refcount[self.pfn]) >= GUP_PIN_COUNTING_BIAS

    def likely_mapped_shared(self) -> bool:
        """``folio_likely_mapped_shared()`` (v6.12: judged by the first page)."""
        if not self.test_large():
            return self.mapcount_total() > 1
        if self.entire_mapcount() > 1:
            return True
        return int(self.mem.mapcount[self.pfn]) > 1

    def page_anon_exclusive(self, pfn: int) -> bool:
        """``PageAnonExclusive(page)``."""
        return bool(self.mem.flags[pfn] & PG_anon_exclusive)

    def set_anon_exclusive(self, pfn: int, nr: int = 1) -> None:
        self.mem.flags[pfn : pfn + nr] |= np.uint32(PG_anon_exclusive)

    def clear_anon_exclusive(self, pfn: int, nr: int = 1) -> None:
        self.mem.flags[pfn : pfn + nr] &= np.uint32(~PG_anon_exclusive & 0xFFFFFFFF)
