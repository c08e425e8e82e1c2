"""The mmu_gather: batch TLB invalidation and page freeing of a zap.

Models: mm/mmu_gather.c and include/asm-generic/tlb.h (Linux v6.12): the
gather widens a range as PTEs are cleared (and page tables freed), queues
the folio references to drop, and flushes the TLB (through the arch's
``tlb_flush``) *before* the pages are freed, so no CPU can still reach a
freed page.

The page queue is the kernel's chain of ``struct mmu_gather_batch``: the
on-stack bundle of ``MMU_GATHER_BUNDLE`` slots, then up to
``MAX_GATHER_BATCH_COUNT`` batch pages of ``MAX_GATHER_BATCH`` slots.  A
folio's pages take one slot, or two when more than one (the encoded page
and ``nr_pages``); a batch is full when fewer than two slots are left.
When the last batch is full, ``__tlb_remove_folio_pages`` says so and the
caller forces a flush (``zap_pte_range``: before it drops the PTL).  The
batch pages themselves are not allocated from the model's buddy allocator.
Page tables are freed at once (arm64's RCU table free is not modelled);
``pte_free_tlb`` widens the range to flush as the kernel's does.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython
import numpy as np

from ..counters import counter

if not cython.compiled:
    from ..arch.pgtable import GatherLike
    from ..cdefs import I64View, i64
    from ..counters import count
    from .kernel import Kernel
    from .mm_types import MmStruct, Vma
    from .rmap import folio_remove_rmap_ptes
    from .swapfile import free_swap_cache

__all__ = ["MmuGather", "MMU_GATHER_BUNDLE", "max_gather_batch", "max_gather_batch_count"]

TLB_FLUSH = cython.declare(i64, counter("mmu_gather.flush"))
TLB_FLUSH_RMAPS = cython.declare(i64, counter("call.tlb_flush_rmaps"))
#: include/asm-generic/tlb.h: slots of the on-stack batch (``tlb->__pages``).
MMU_GATHER_BUNDLE = cython.declare(i64, 8)
#: sizeof(struct mmu_gather_batch) before its slots: next, nr, max (64-bit).
_BATCH_HEADER = cython.declare(i64, 16)
#: The pages freed at once without a preemption point (MAX_GATHER_BATCH_COUNT).
_GATHER_PAGES_LIMIT = cython.declare(i64, 10000)
_NO_START = cython.declare(i64, (1 << 63) - 1)
#: The empty queue every gather starts with (never written: ``_grow`` replaces it).
_NO_FOLIOS = cython.declare(I64View, np.zeros(0, dtype=np.int64))


def max_gather_batch(page_size: int) -> int:
    """``MAX_GATHER_BATCH``: the slots of a batch page (510 with 4K pages)."""
    return (page_size - _BATCH_HEADER) // 8


def max_gather_batch_count(page_size: int) -> int:
    """``MAX_GATHER_BATCH_COUNT``: batch pages a gather may chain (19 with 4K pages)."""
    return _GATHER_PAGES_LIMIT // max_gather_batch(page_size)


@cython.final
@cython.cclass
class MmuGather(GatherLike):
    """A ``struct mmu_gather``: ``mm``, ``fullmm``, the range to flush, the folios to free."""

    def __init__(self, mm: MmStruct, fullmm: cython.bint) -> None:
        super().__init__(mm, fullmm)
        self.start = _NO_START
        self.end = 0
        self.vma_exec = False
        k: Kernel = mm.kernel
        self.page_size = k.PAGE_SIZE
        self.kernel = k
        self.delayed_rmap = False
        self.batch_max = max_gather_batch(k.PAGE_SIZE)
        self.batch_count_max = k.max_gather_batch_count
        if self.batch_count_max < 0:
            self.batch_count_max = max_gather_batch_count(k.PAGE_SIZE)
        # The batch being filled (0: the on-stack bundle, i: the i-th batch
        # page), the slots it holds, and the batch pages allocated so far.
        self.active = 0
        self.active_nr = 0
        self.batch_count = 0
        # The queued folios, in order over all batches (encoded pages):
        # head, first page, pages, and whether the rmap removal is delayed.
        # Allocated on the first queued folio: most gathers (mprotect,
        # MADV_FREE, an empty range) queue none, and a new array costs
        # microseconds per syscall.
        self.folios = _NO_FOLIOS
        self.pages = _NO_FOLIOS
        self.nrs = _NO_FOLIOS
        self.delay = _NO_FOLIOS
        self.nr_queued = 0
        self.first_delayed = -1

    @cython.cfunc
    def _reset_range(self) -> None:
        """Models: ``__tlb_reset_range()``."""
        self.start = _NO_START
        self.end = 0
        self.cleared_ptes = False
        self.cleared_pmds = False
        self.cleared_puds = False
        self.freed_tables = False

    @cython.cfunc
    def _adjust_range(self, address: i64, size: i64) -> None:
        """Models: ``__tlb_adjust_range()``."""
        if address < self.start:
            self.start = address
        if address + size > self.end:
            self.end = address + size

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
        """Models: ``tlb_remove_tlb_entries()`` (``tlb_flush_pte_range``): widen the range to flush."""
        self._adjust_range(address, nr * self.page_size)
        self.cleared_ptes = True

    @cython.ccall
    def tlb_remove_pmd_tlb_entry(self, address: i64, size: i64) -> None:
        """Models: ``tlb_remove_pmd_tlb_entry()`` (``tlb_flush_pmd_range``)."""
        self._adjust_range(address, size)
        self.cleared_pmds = True

    @cython.ccall
    def pte_free_tlb(self, address: i64) -> None:
        """Free the page table that mapped the PMD range at ``address``.

        Models: include/asm-generic/tlb.h ``pte_free_tlb()``: the walk
        caches may hold the table, so the flush must cover its address
        (``tlb_flush_pmd_range(tlb, address, PAGE_SIZE)``) and must not be
        leaf-only (``freed_tables``).
        """
        self._adjust_range(address, self.page_size)
        self.cleared_pmds = True
        self.freed_tables = True

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def tlb_remove_folio_pages(self, folio: i64, page: i64, nr: i64, delay_rmap: cython.bint) -> cython.bint:
        """Queue ``nr`` pages of ``folio`` from ``page``; True when the gather is full.

        Models: mm/mmu_gather.c ``__tlb_remove_folio_pages()``
        (``__tlb_remove_folio_pages_size``): one slot for a single page, two
        for more; a batch with fewer than two free slots moves on to the
        next (``tlb_next_batch``), and True means none is left: the caller
        must flush (``tlb_flush_mmu``) before it queues more.
        """
        n: i64 = self.nr_queued
        if n == self.folios.shape[0]:
            self._grow()
        self.folios[n] = folio
        self.pages[n] = page
        self.nrs[n] = nr
        self.delay[n] = delay_rmap
        if delay_rmap and self.first_delayed < 0:
            self.first_delayed = n
        self.nr_queued = n + 1
        self.active_nr += 1 if nr == 1 else 2
        bmax: i64 = MMU_GATHER_BUNDLE if self.active == 0 else self.batch_max
        if self.active_nr >= bmax - 1:
            if not self._tlb_next_batch():
                return True
        return False

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _tlb_next_batch(self) -> cython.bint:
        """Models: mm/mmu_gather.c ``tlb_next_batch()``."""
        # Limit batching if delayed rmaps are pending.
        if self.delayed_rmap and self.active != 0:
            return False
        if self.active < self.batch_count:
            self.active += 1  # a batch page kept from an earlier flush
            self.active_nr = 0
            return True
        if self.batch_count == self.batch_count_max:
            return False
        self.batch_count += 1
        self.active = self.batch_count
        self.active_nr = 0
        return True

    def _grow(self) -> None:
        n = self.folios.shape[0]
        for name in ("folios", "pages", "nrs", "delay"):
            a = np.empty(max(2 * n, 16), dtype=np.int64)
            a[:n] = getattr(self, name)
            setattr(self, name, a)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def tlb_delay_rmap(self) -> cython.bint:
        """Models: include/asm-generic/tlb.h ``tlb_delay_rmap()`` (CONFIG_SMP): always delay."""
        self.delayed_rmap = True
        return True

    @cython.ccall
    def tlb_flush_rmaps(self, vma: Vma) -> None:
        """Do the rmap removals delayed until after the TLB flush.

        Models: mm/mmu_gather.c ``tlb_flush_rmaps()``: the folios queued
        with ``delay_rmap`` (dirty file folios) lose their mappings only
        now, so ``folio_mkclean()`` cannot find them clean and unmapped while
        a stale writable TLB entry still lets a CPU dirty them.
        """
        count(self.kernel.counters, TLB_FLUSH_RMAPS, 1)
        if not self.delayed_rmap:
            return
        i: i64
        for i in range(self.first_delayed, self.nr_queued):
            if self.delay[i]:
                folio_remove_rmap_ptes(
                    cython.cast(i64, self.folios[i]),
                    cython.cast(i64, self.pages[i]),
                    cython.cast(i64, self.nrs[i]),
                    vma,
                )
                self.delay[i] = 0
        self.first_delayed = -1
        self.delayed_rmap = False

    @cython.ccall
    def free_pgtables(self) -> None:
        """The whole address space's page tables are going (``exit_mmap``, fullmm)."""
        self.freed_tables = True

    @cython.ccall
    def tlb_flush_mmu_tlbonly(self) -> None:
        """Models: ``tlb_flush_mmu_tlbonly()``: flush the gathered range."""
        if not (self.freed_tables or self.cleared_ptes or self.cleared_pmds or self.cleared_puds):
            return
        count(self.kernel.counters, TLB_FLUSH, 1)
        self.kernel.arch.tlb_flush(self)
        self._reset_range()

    @cython.ccall
    def tlb_flush_mmu_free(self) -> None:
        """Free the queued pages.

        Models: ``tlb_flush_mmu_free()`` -> ``tlb_batch_pages_flush()`` ->
        ``free_pages_and_swap_cache()``: an unmapped swap-cache folio leaves
        the swap cache (``free_swap_cache``) before its references go.
        """
        k: Kernel = self.kernel
        i: i64
        n: i64 = self.nr_queued
        self.nr_queued = 0
        self.active = 0
        self.active_nr = 0
        for i in range(n):
            if k.swap is not None:
                free_swap_cache(k, cython.cast(i64, self.folios[i]))
            k.folio_put(cython.cast(i64, self.folios[i]), cython.cast(i64, self.nrs[i]))

    @cython.ccall
    def tlb_flush_mmu(self) -> None:
        """Models: ``tlb_flush_mmu()``: TLB first, then free the pages."""
        self.tlb_flush_mmu_tlbonly()
        self.tlb_flush_mmu_free()

    @cython.ccall
    def tlb_finish_mmu(self) -> None:
        """Models: mm/mmu_gather.c ``tlb_finish_mmu()``."""
        self.tlb_flush_mmu()


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(MMU_GATHER_BUNDLE=MMU_GATHER_BUNDLE, TLB_FLUSH=TLB_FLUSH)
