"""Files and their page cache.

Models: mm/filemap.c (page cache lookup and read-in as large folios, the
part of readahead that picks the folio size) and mm/shmem.c (shared
anonymous memory is an unlinked shmem file), Linux v6.12.

A file's pages each hold one 64-bit value.  A regular file starts with a
deterministic value per page (``file_id << 40 | page index``) so a wrong
mapping shows as a wrong value; shmem starts zeroed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .memmap import Folio

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ["File", "file_initial_value"]


def file_initial_value(file_id: int, index: int) -> int:
    """The value page ``index`` of file ``file_id`` holds before anyone writes it."""
    return (file_id << 40) | index


class File:
    """A file (``struct address_space``): a page cache of folios by index."""

    def __init__(
        self, kernel: "Kernel", file_id: int, name: str, size: int, folio_order: int, shmem: bool
    ) -> None:
        self.kernel = kernel
        self.id = file_id
        self.name = name
        self.size = size
        self.folio_order = folio_order
        #: shmem (tmpfs / shared anonymous) rather than a disk file.
        self.shmem = shmem
        #: Shared anonymous memory (vma_is_anon_shmem in finish_fault).
        self.anon_shmem = False
        #: index of the folio's first page -> folio head pfn
        self.cache: dict[int, int] = {}
        #: The backing store: page index -> value written back (mm/vmscan.py pageout).
        self.disk: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<file {self.name!r} id={self.id} size={self.size:#x}>"

    @property
    def nr_pages(self) -> int:
        ps = self.kernel.PAGE_SIZE
        return (self.size + ps - 1) // ps

    def find_folio(self, index: int) -> Folio | None:
        """``filemap_get_folio()`` without read-in: the cached folio holding ``index``."""
        order = self.folio_order
        for o in range(order, -1, -1):
            start = index & ~((1 << o) - 1)
            head = self.cache.get(start)
            if head is not None:
                f = self.kernel.folio(head)
                if start + f.nr_pages > index:
                    return f
        return None

    def get_folio(self, index: int) -> Folio | None:
        """Look up ``index``, reading it in as a (large) folio if absent.

        Models: ``filemap_fault()`` -> readahead's ``page_cache_ra_order``:
        a naturally aligned folio of the file's order that stays within the
        file and does not overlap cached folios; smaller orders on failure.
        The page cache holds one reference.
        """
        f = self.find_folio(index)
        if f is not None:
            return f
        if index >= self.nr_pages:
            return None
        k = self.kernel
        for order in range(self.folio_order, -1, -1):
            start = index & ~((1 << order) - 1)
            if start + (1 << order) > self.nr_pages and order > 0:
                continue
            if any(self.find_folio(i) is not None for i in range(start, start + (1 << order))):
                continue
            folio = k.folio_alloc(order, zero=False)
            if folio is None:
                continue
            mem = folio.mem
            mem.mapping[folio.pfn : folio.pfn + folio.nr_pages] = self.id
            mem.index[folio.pfn] = start
            if self.shmem:
                k.hw.memory.fill(folio.pfn, folio.nr_pages, 0)
            else:
                import numpy as np

                vals = np.arange(start, start + folio.nr_pages, dtype=np.uint64) | np.uint64(self.id << 40)
                for i in range(folio.nr_pages):
                    if start + i in self.disk:
                        vals[i] = self.disk[start + i]
                k.hw.memory.data[folio.pfn : folio.pfn + folio.nr_pages] = vals
            self.cache[start] = folio.pfn
            return folio
        return None

    def forget_folio(self, folio: Folio) -> None:
        """The folio was freed: drop it from the cache index."""
        start = int(folio.mem.index[folio.pfn])
        if self.cache.get(start) == folio.pfn:
            del self.cache[start]

    def evict_all(self) -> None:
        """Drop the page cache's references (file closed and unlinked)."""
        k = self.kernel
        for head in list(self.cache.values()):
            k.folio_put(k.folio(head))
