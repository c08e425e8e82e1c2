from contpte.counters cimport count
cimport cython
from contpte.cdefs cimport i64, I64View
from contpte.arch.pgtable cimport GatherLike
from contpte.mm.kernel cimport Kernel
from contpte.mm.mm_types cimport MmStruct, Vma

cdef i64 TLB_FLUSH, MAX_GATHER_BATCH, _NO_START
cdef I64View _NO_FOLIOS

@cython.final
cdef class MmuGather(GatherLike):
    cdef public bint vma_exec
    cdef public i64 page_size, nr_queued, _queued
    cdef public Kernel kernel
    cdef public I64View folios, nrs
    cdef _reset_range(self)
    cpdef tlb_start_vma(self, Vma vma)
    cpdef tlb_end_vma(self, Vma vma)
    cpdef tlb_remove_tlb_entries(self, i64 ptep, i64 nr, i64 address)
    cpdef tlb_remove_pmd_tlb_entry(self, i64 address, i64 size)
    cpdef tlb_remove_folio_pages(self, i64 folio, i64 nr)
    cpdef free_pgtables(self)
    cpdef tlb_flush_mmu_tlbonly(self)
    cpdef tlb_flush_mmu(self)
    cpdef tlb_finish_mmu(self)
