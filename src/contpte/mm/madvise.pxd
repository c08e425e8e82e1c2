from contpte.counters cimport count
# mm/madvise.c (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG, Pgtable
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport (
    PG_lazyfree, MemMap, folio_clear_dirty, folio_likely_mapped_shared, folio_maybe_mapped_shared, folio_mapcount,
    folio_ref_add,
    folio_maybe_dma_pinned, folio_test_anon, folio_test_clear_referenced, folio_test_dirty,
)
from contpte.mm.mm_types cimport VM_CONT_PTE, VM_DONTCOPY, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_SHARED, MmStruct, Vma, vma_mm
from contpte.mm.mm_h cimport pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio
from contpte.mm.internal cimport FPB_MERGE_YOUNG_DIRTY, PtePtr, folio_pte_batch_flags
from contpte.mm.mmu_gather cimport MmuGather
from contpte.mm.huge_memory cimport split_folio, split_huge_pmd
from contpte.mm.memory cimport zap_page_range_single
from contpte.mm.mmap cimport split_vma, vma_merge_around
from contpte.mm.swapfile cimport free_swap_and_cache_nr, folio_free_swap
from contpte.mm.internal cimport swap_pte_batch
from contpte.mm.memmap cimport PG_swapcache
from contpte.mm.vmscan cimport shrink_folio_list
from contpte.mm.mm_types cimport MM_SWAPENTS

cdef i64 MADV_DONTNEED, MADV_FREE, MADV_DONTFORK, MADV_DOFORK, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLLAPSE, MADV_COLD, MADV_PAGEOUT
cdef i64 LAZYFREE, FREE_SKIPPED, ENOMEM, EINVAL

cpdef madvise_update_vma(Vma vma, i64 start, i64 end, i64 set_, i64 clear)
cdef folio_mark_lazyfree(Kernel k, i64 folio)
cpdef bint madvise_free_huge_pmd(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr, i64 next_) except? -1
cpdef madvise_free_pte_range(MmuGather tlb, Vma vma, i64 addr, i64 end)
cpdef i64 madvise_free_single_vma(Vma vma, i64 start_addr, i64 end_addr) except? -1
cpdef madvise_cold_or_pageout_pte_range(Vma vma, i64 addr, i64 end, bint pageout)
cpdef i64 do_madvise(MmStruct mm, i64 start, i64 length, str advice) except? -1
cdef i64 _madvise_walk_vmas(MmStruct mm, object vmas, i64 start, i64 end, i64 behavior, bint unmapped) except? -1
