"""The mmu_gather: batch TLB invalidation and page freeing of a zap.

Models: mm/mmu_gather.c and include/asm-generic/tlb.h (Linux v6.12): the
gather widens a range as PTEs are cleared, queues the folio references to
drop, and at the end flushes the TLB (through the arch's ``tlb_flush``)
*before* the pages are freed, so no CPU can still reach a freed page.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython
import numpy as np

from ..counters import declare

if not cython.compiled:
    from ..arch.pgtable import GatherLike
    from ..cdefs import I64View, i64
    from ..counters import count
    from .kernel import Kernel
    from .mm_types import MmStruct, Vma

__all__ = ["MmuGather", "MAX_GATHER_BATCH"]

TLB_FLUSH = cython.declare(
    i64, declare("mmu_gather.flush", "flushes", "mmu_gather TLB flushes (tlb_flush_mmu_tlbonly with a range)")
)
#: Pages queued before a forced flush (MAX_GATHER_BATCH_COUNT * batch size, approx.).
MAX_GATHER_BATCH = cython.declare(i64, 10000)
_NO_START = cython.declare(i64, (1 << 63) - 1)
#: The empty folio queue every gather starts with (never written: ``_grow`` replaces it).
_NO_FOLIOS = cython.declare(I64View, np.zeros(0, dtype=np.int64))


@cython.final
@cython.cclass
class MmuGather(GatherLike):
    """A ``struct mmu_gather``: ``mm``, ``fullmm``, the range to flush, the folios to free."""

    def __init__(self, mm: MmStruct, fullmm: cython.bint) -> None:
        super().__init__(mm, fullmm)
        self.start = _NO_START
        self.end = 0
        self.vma_exec = False
        self.page_size = mm.kernel.PAGE_SIZE
        self.kernel = mm.kernel
        # The folios queued to drop (``struct mmu_gather_batch``): heads and references.
        # Allocated on the first queued folio: most gathers (mprotect,
        # MADV_FREE, an empty range) queue none, and a new array costs
        # microseconds per syscall.
        self.folios = _NO_FOLIOS
        self.nrs = _NO_FOLIOS
        self.nr_queued = 0
        self._queued = 0

    @cython.cfunc
    def _reset_range(self) -> None:
        self.start = _NO_START
        self.end = 0
        self.cleared_ptes = False
        self.cleared_pmds = False
        self.cleared_puds = False
        self.freed_tables = False

    @cython.ccall
    def tlb_start_vma(self, vma: Vma) -> None:
        """Models: include/asm-generic/tlb.h ``tlb_start_vma()``."""

    @cython.ccall
    def tlb_end_vma(self, vma: Vma) -> None:
        """Models: ``tlb_end_vma()``: flush per VMA unless fullmm."""
        if not self.fullmm:
            self.tlb_flush_mmu_tlbonly()

    @cython.ccall
    def tlb_remove_tlb_entries(self, ptep: i64, nr: i64, address: i64) -> None:
        """Models: ``tlb_remove_tlb_entries()``: widen the range to flush."""
        if address < self.start:
            self.start = address
        if address + nr * self.page_size > self.end:
            self.end = address + nr * self.page_size
        self.cleared_ptes = True

    @cython.ccall
    def tlb_remove_pmd_tlb_entry(self, address: i64, size: i64) -> None:
        if address < self.start:
            self.start = address
        if address + size > self.end:
            self.end = address + size
        self.cleared_pmds = True

    @cython.ccall
    def tlb_remove_folio_pages(self, folio: i64, nr: i64) -> None:
        """Models: ``__tlb_remove_folio_pages()``: queue ``nr`` references to drop."""
        n: i64 = self.nr_queued
        if n == self.folios.shape[0]:
            self._grow()
        self.folios[n] = folio
        self.nrs[n] = nr
        self.nr_queued = n + 1
        self._queued += nr
        if self._queued >= MAX_GATHER_BATCH:
            self.tlb_flush_mmu()

    def _grow(self) -> None:
        n = self.folios.shape[0]
        for name in ("folios", "nrs"):
            a = np.empty(max(2 * n, 16), dtype=np.int64)
            a[:n] = getattr(self, name)
            setattr(self, name, a)

    @cython.ccall
    def free_pgtables(self) -> None:
        self.freed_tables = True

    @cython.ccall
    def tlb_flush_mmu_tlbonly(self) -> None:
        """Models: ``tlb_flush_mmu_tlbonly()``: flush the gathered range."""
        if not (self.freed_tables or self.cleared_ptes or self.cleared_pmds):
            return
        count(self.kernel.counters, TLB_FLUSH, 1)
        self.kernel.arch.tlb_flush(self)
        self._reset_range()

    @cython.ccall
    def tlb_flush_mmu(self) -> None:
        """Models: ``tlb_flush_mmu()``: TLB first, then free the pages."""
        self.tlb_flush_mmu_tlbonly()
        k: Kernel = self.kernel
        i: i64
        n: i64 = self.nr_queued
        self.nr_queued = 0
        self._queued = 0
        for i in range(n):
            k.folio_put(cython.cast(i64, self.folios[i]), cython.cast(i64, self.nrs[i]))

    @cython.ccall
    def tlb_finish_mmu(self) -> None:
        """Models: mm/mmu_gather.c ``tlb_finish_mmu()``."""
        self.tlb_flush_mmu()


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(MAX_GATHER_BATCH=MAX_GATHER_BATCH, TLB_FLUSH=TLB_FLUSH)
