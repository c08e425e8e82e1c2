from contpte.counters cimport count
# mm/mprotect.c: mprotect, change_protection (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport (
    MemMap, PageAnonExclusive, folio_likely_mapped_shared, folio_maybe_dma_pinned, folio_maybe_mapped_shared,
    folio_test_anon, folio_test_dirty,
)
from contpte.mm.internal cimport FPB_RESPECT_SOFT_DIRTY, FPB_RESPECT_WRITE, PtePtr, folio_pte_batch_flags
from contpte.mm.mm_types cimport VM_ACCESS_FLAGS, VM_READ, VM_SHARED, VM_WRITE, MmStruct, Vma, is_cow_mapping, vma_is_anonymous, vma_mm
from contpte.mm.mm_h cimport (
    MM_CP_PROT_NUMA, MM_CP_TRY_CHANGE_WRITABLE, MM_CP_UFFD_WP, MM_CP_UFFD_WP_RESOLVE,
    can_change_shared_pte_writable, folio_is_file_lru, maybe_change_pte_writable, pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio,
)
from contpte.mm.mmu_gather cimport MmuGather
from contpte.mm.huge_memory cimport change_huge_pmd, split_huge_pmd
from contpte.mm.mmap cimport split_vma, vma_merge_around, vma_set_page_prot

cdef i64 NUMA_PTE_UPDATES, NUMA_HUGE_PTE_UPDATES, ENOMEM, EINVAL, EACCES

cdef bint folio_can_map_prot_numa(Kernel k, i64 folio, Vma vma) except? -1
cdef i64 mprotect_folio_pte_batch(Kernel k, i64 folio, i64 ptep, u64 pte, i64 max_nr_ptes, i64 flags) except? -1
cdef prot_commit_flush_ptes(MmuGather tlb, Vma vma, i64 addr, i64 ptep, u64 oldpte, u64 ptent, i64 nr_ptes, i64 idx, bint set_write)
cdef i64 page_anon_exclusive_sub_batch(MemMap mem, i64 start_idx, i64 max_len, i64 first_page, bint expected_anon_exclusive) except? -1
cdef commit_anon_folio_batch(MmuGather tlb, Vma vma, i64 folio, i64 first_page, i64 addr, i64 ptep, u64 oldpte, u64 ptent, i64 nr_ptes)
cdef set_write_prot_commit_flush_ptes(MmuGather tlb, Vma vma, i64 folio, i64 page, i64 addr, i64 ptep, u64 oldpte, u64 ptent, i64 nr_ptes)
cdef change_present_ptes(MmuGather tlb, Vma vma, i64 addr, i64 ptep, i64 nr_ptes, u64 newprot, i64 folio, i64 page, i64 cp_flags)
cpdef i64 change_pte_range(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr, i64 end, u64 newprot, i64 cp_flags) except? -1
cdef bint _pgtable_split_needed(Vma vma, i64 cp_flags) except? -1
cpdef i64 change_protection(MmuGather tlb, Vma vma, i64 start, i64 end, i64 cp_flags) except? -1
cpdef mprotect_fixup(MmuGather tlb, Vma vma, i64 start, i64 end, i64 newflags)
cpdef i64 do_mprotect_pkey(MmStruct mm, i64 start, i64 length, i64 prot) except? -1
cpdef i64 change_prot_numa(Vma vma, i64 addr, i64 end) except? -1
