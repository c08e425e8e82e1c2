"""The mmu_gather: batch TLB invalidation and page freeing of a zap.

Models: mm/mmu_gather.c and include/asm-generic/tlb.h (Linux v6.12): the
gather widens a range as PTEs are cleared, queues the folio references to
drop, and at the end flushes the TLB (through the arch's ``tlb_flush``)
*before* the pages are freed, so no CPU can still reach a freed page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..counters import counter
from .memmap import Folio

if TYPE_CHECKING:
    from ..arch.pgtable import PtePtr
    from .mm_types import MmStruct, Vma

__all__ = ["FolioRun", "MmuGather"]

TLB_FLUSH = counter("mmu_gather.flush")
MAX_GATHER_BATCH = 10000
"""Pages queued before a forced flush (MAX_GATHER_BATCH_COUNT * batch size, approx.)."""


class FolioRun:
    """Many ``(folio, nr)`` queued at once by a fast path (head pfns, page counts)."""

    __slots__ = ("heads", "nrs")

    def __init__(self, heads: Any, nrs: Any) -> None:
        self.heads = heads
        self.nrs = nrs


class MmuGather:
    """A ``struct mmu_gather``."""

    def __init__(self, mm: "MmStruct", fullmm: bool) -> None:
        self.mm = mm
        self.fullmm = fullmm
        self.need_flush_all = False
        self.freed_tables = False
        self.cleared_ptes = False
        self.cleared_pmds = False
        self.start = 1 << 64
        self.end = 0
        self.vma_exec = False
        self.page_size = mm.kernel.PAGE_SIZE
        self._folios: list[tuple[Folio, int] | FolioRun] = []
        self._queued = 0

    def _reset_range(self) -> None:
        self.start = 1 << 64
        self.end = 0
        self.cleared_ptes = False
        self.cleared_pmds = False
        self.freed_tables = False

    def tlb_start_vma(self, vma: "Vma") -> None:
        """Models: include/asm-generic/tlb.h ``tlb_start_vma()``."""

    def tlb_end_vma(self, vma: "Vma") -> None:
        """Models: ``tlb_end_vma()``: flush per VMA unless fullmm."""
        if not self.fullmm:
            self.tlb_flush_mmu_tlbonly()

    def tlb_remove_tlb_entries(self, ptep: "PtePtr", nr: int, address: int) -> None:
        """Models: ``tlb_remove_tlb_entries()``: widen the range to flush."""
        self.start = min(self.start, address)
        self.end = max(self.end, address + nr * self.page_size)
        self.cleared_ptes = True

    def tlb_remove_pmd_tlb_entry(self, address: int, size: int) -> None:
        self.start = min(self.start, address)
        self.end = max(self.end, address + size)
        self.cleared_pmds = True

    def tlb_remove_folio_pages(self, folio: Folio, nr: int) -> None:
        """Models: ``__tlb_remove_folio_pages()``: queue ``nr`` references to drop."""
        self._folios.append((folio, nr))
        self._queued += nr
        if self._queued >= MAX_GATHER_BATCH:
            self.tlb_flush_mmu()

    def free_pgtables(self) -> None:
        self.freed_tables = True

    def tlb_flush_mmu_tlbonly(self) -> None:
        """Models: ``tlb_flush_mmu_tlbonly()``: flush the gathered range."""
        if not (self.freed_tables or self.cleared_ptes or self.cleared_pmds):
            return
        self.mm.kernel.counters.add(TLB_FLUSH)
        self.mm.kernel.arch.tlb_flush(self)
        self._reset_range()

    def tlb_flush_mmu(self) -> None:
        """Models: ``tlb_flush_mmu()``: TLB first, then free the pages."""
        self.tlb_flush_mmu_tlbonly()
        k = self.mm.kernel
        for item in self._folios:
            if isinstance(item, FolioRun):
                k.folio_put_many(item.heads, item.nrs)
            else:
                k.folio_put(item[0], item[1])
        self._folios.clear()
        self._queued = 0

    def tlb_finish_mmu(self) -> None:
        """Models: mm/mmu_gather.c ``tlb_finish_mmu()``."""
        self.tlb_flush_mmu()
