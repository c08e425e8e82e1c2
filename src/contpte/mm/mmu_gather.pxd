from contpte.counters cimport count
cimport cython
from contpte.cdefs cimport i64, I64View
from contpte.arch.pgtable cimport GatherLike
from contpte.mm.kernel cimport Kernel
from contpte.mm.mm_types cimport MmStruct, Vma
from contpte.mm.rmap cimport folio_remove_rmap_ptes
from contpte.mm.swapfile cimport free_swap_cache

cdef i64 TLB_FLUSH, TLB_FLUSH_RMAPS, MMU_GATHER_BUNDLE, _BATCH_HEADER, _GATHER_PAGES_LIMIT, _NO_START
cdef I64View _NO_FOLIOS

@cython.final
cdef class MmuGather(GatherLike):
    cdef public bint vma_exec, delayed_rmap
    cdef public i64 page_size, nr_queued, first_delayed
    cdef public i64 batch_max, batch_count_max, active, active_nr, batch_count
    cdef public Kernel kernel
    cdef public I64View folios, pages, nrs, delay
    cdef _reset_range(self)
    cdef _adjust_range(self, i64 address, i64 size)
    cpdef tlb_start_vma(self, Vma vma)
    cpdef tlb_end_vma(self, Vma vma)
    cpdef tlb_remove_tlb_entries(self, i64 ptep, i64 nr, i64 address)
    cpdef tlb_remove_pmd_tlb_entry(self, i64 address, i64 size)
    cpdef pte_free_tlb(self, i64 address)
    cpdef bint tlb_remove_folio_pages(self, i64 folio, i64 page, i64 nr, bint delay_rmap) except? -1
    cdef bint _tlb_next_batch(self) except? -1
    cpdef bint tlb_delay_rmap(self) except? -1
    cpdef tlb_flush_rmaps(self, Vma vma)
    cpdef free_pgtables(self)
    cpdef tlb_flush_mmu_tlbonly(self)
    cpdef tlb_flush_mmu_free(self)
    cpdef tlb_flush_mmu(self)
    cpdef tlb_finish_mmu(self)
