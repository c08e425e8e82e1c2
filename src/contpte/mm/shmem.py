"""Files and their page cache.

Models: mm/filemap.c (page cache lookup and read-in as large folios, the
part of readahead that picks the folio size) and mm/shmem.c (shared
anonymous memory is an unlinked shmem file), Linux v6.12.

A file's pages each hold one 64-bit value.  A regular file starts with a
deterministic value per page (``file_id << 40 | page index``) so a wrong
mapping shows as a wrong value; shmem starts zeroed.

A folio is its head pfn (``memmap.py``), -1 for none.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ..cdefs import i64, u64
    from .kernel import Kernel
    from .memmap import MemMap, folio_mark_dirty

__all__ = ["File", "file_initial_value"]


@cython.ccall
@cython.exceptval(-1, check=True)
def file_initial_value(file_id: i64, index: i64) -> i64:
    """The value page ``index`` of file ``file_id`` holds before anyone writes it."""
    return (file_id << 40) | index


@cython.final
@cython.cclass
class File:
    """A file (``struct address_space``): a page cache of folios by index.

    ``cache``: index of a folio's first page -> the folio (head pfn);
    ``disk``: the backing store, page index -> value written back
    (mm/vmscan.py ``pageout``).
    """

    def __init__(
        self, kernel: Kernel, file_id: i64, name: str, size: i64, folio_order: i64, shmem: bool
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
        #: A tmpfs file its creator wrote whole (``open_file(fs="tmpfs")``):
        #: its folios hold the initial contents and are dirty.
        self.written = False
        self.cache: dict[int, int] = {}
        self.disk: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<file {self.name!r} id={self.id} size={self.size:#x}>"

    @property
    def nr_pages(self) -> int:
        ps: i64 = self.kernel.PAGE_SIZE
        return (self.size + ps - 1) // ps

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def find_folio(self, index: i64) -> i64:
        """``filemap_get_folio()`` without read-in: the cached folio holding ``index``, or -1."""
        mem: MemMap = self.kernel.memmap
        o: i64
        start: i64
        head: i64
        for o in range(self.folio_order, -1, -1):
            start = index & ~((cython.cast(i64, 1) << o) - 1)
            h = self.cache.get(start)
            if h is not None:
                head = h
                if start + (cython.cast(i64, 1) << cython.cast(i64, mem.order[head])) > index:
                    return head
        return -1

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def get_folio(self, index: i64) -> i64:
        """Look up ``index``, reading it in as a (large) folio if absent; the folio or -1.

        Models: ``filemap_fault()`` -> readahead's ``page_cache_ra_order``:
        a naturally aligned folio of the file's order that stays within the
        file and does not overlap cached folios; smaller orders on failure.
        The page cache holds one reference.
        """
        folio: i64 = self.find_folio(index)
        if folio >= 0:
            return folio
        nr_pages: i64 = self.nr_pages
        if index >= nr_pages:
            return -1
        k: Kernel = self.kernel
        mem: MemMap = k.memmap
        order: i64
        start: i64
        n: i64
        i: i64
        value: u64
        overlap: cython.bint
        for order in range(self.folio_order, -1, -1):
            n = cython.cast(i64, 1) << order
            start = index & ~(n - 1)
            if start + n > nr_pages and order > 0:
                continue
            overlap = False
            for i in range(start, start + n):
                if self.find_folio(i) >= 0:
                    overlap = True
                    break
            if overlap:
                continue
            folio = k.folio_alloc(order, False)
            if folio < 0:
                continue
            for i in range(folio, folio + n):
                mem.mapping[i] = self.id
            mem.index[folio] = start
            if self.written:
                # A tmpfs file written whole when it was created: what was
                # written is in the page cache, dirty (no backing store).
                for i in range(n):
                    k.arch.memcpy_to_page(folio + i, file_initial_value(self.id, start + i))
                folio_mark_dirty(mem, folio)
            elif self.shmem:
                # shmem_get_folio_gfp(): a new folio is cleared page by page.
                for i in range(n):
                    k.arch.clear_highpage(folio + i)
            else:
                # ->read_folio(): what the disk holds, else the file's initial contents.
                for i in range(n):
                    v = self.disk.get(start + i)
                    value = file_initial_value(self.id, start + i) if v is None else cython.cast(u64, v)
                    k.arch.memcpy_to_page(folio + i, value)
            self.cache[start] = folio
            return folio
        return -1

    @cython.ccall
    def forget_folio(self, folio: i64) -> None:
        """The folio was freed: drop it from the cache index."""
        start: i64 = cython.cast(i64, self.kernel.memmap.index[folio])
        h = self.cache.get(start)
        if h is not None and cython.cast(i64, h) == folio:
            del self.cache[start]

    @cython.ccall
    def evict_all(self) -> None:
        """Drop the page cache's references (file closed and unlinked)."""
        k: Kernel = self.kernel
        for head in list(self.cache.values()):
            k.folio_put(head, 1)
