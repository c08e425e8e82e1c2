from contpte.counters cimport count
# mm/mprotect.c: mprotect, change_protection (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport (
    MemMap, folio_likely_mapped_shared, folio_maybe_dma_pinned, folio_maybe_mapped_shared, folio_test_dirty,
)
from contpte.mm.mm_types cimport VM_ACCESS_FLAGS, VM_READ, VM_WRITE, MmStruct, Vma, is_cow_mapping, vma_is_anonymous, vma_mm
from contpte.mm.mm_h cimport (
    MM_CP_PROT_NUMA, MM_CP_TRY_CHANGE_WRITABLE, MM_CP_UFFD_WP, MM_CP_UFFD_WP_ALL, MM_CP_UFFD_WP_RESOLVE,
    can_change_pte_writable, folio_is_file_lru, pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio,
)
from contpte.mm.mmu_gather cimport MmuGather
from contpte.mm.huge_memory cimport change_huge_pmd, split_huge_pmd
from contpte.mm.mmap cimport split_vma, vma_merge_around, vma_set_page_prot

cdef i64 NUMA_PTE_UPDATES, NUMA_HUGE_PTE_UPDATES, ENOMEM, EINVAL, EACCES

cdef bint _prot_numa_skip(Kernel k, Vma vma, i64 addr, u64 pte) except? -1
cpdef i64 change_pte_range(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr, i64 end, u64 newprot, i64 cp_flags) except? -1
cdef bint _pgtable_split_needed(Vma vma, i64 cp_flags) except? -1
cpdef i64 change_protection(MmuGather tlb, Vma vma, i64 start, i64 end, i64 cp_flags) except? -1
cpdef mprotect_fixup(MmuGather tlb, Vma vma, i64 start, i64 end, i64 newflags)
cpdef i64 do_mprotect_pkey(MmStruct mm, i64 start, i64 length, i64 prot) except? -1
cpdef i64 change_prot_numa(Vma vma, i64 addr, i64 end) except? -1
