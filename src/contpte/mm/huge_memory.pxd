from contpte.counters cimport count
# mm/huge_memory.c: PMD-size THP and the mTHP policy (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.mm.kernel cimport (
    MTHP_ANON_FAULT_ALLOC, MTHP_ANON_FAULT_FALLBACK, MTHP_NR_ANON, MTHP_SPLIT, MTHP_SPLIT_FAILED, REF_GETS,
    THP_FAULT_ALLOC, THP_FAULT_FALLBACK, THP_SPLIT_PAGE, THP_SPLIT_PAGE_FAILED, THP_SPLIT_PMD, Kernel,
)
from contpte.mm.memmap cimport (
    PG_anon_exclusive, PG_cont, PG_reserved, _NOT_PG_anon_exclusive, ClearPageAnonExclusive, MemMap, PageAnonExclusive,
    SetPageAnonExclusive, folio_mapcount, folio_mark_dirty, folio_maybe_dma_pinned, folio_ref_add, folio_test_anon,
)
from contpte.mm.mm_types cimport (
    FAULT_FLAG_UNSHARE, FAULT_FLAG_WRITE, MM_ANONPAGES, VM_FAULT_FALLBACK, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_SHARED,
    VM_UFFD_WP, VM_WRITE, MmStruct, Vma, VmFault, vma_is_anonymous, vma_mm,
)
from contpte.mm.mmu_gather cimport MmuGather
from contpte.mm.mm_h cimport (
    MM_CP_PROT_NUMA, MM_CP_TRY_CHANGE_WRITABLE, MM_CP_UFFD_WP, MM_CP_UFFD_WP_RESOLVE, maybe_mkwrite,
    userfaultfd_huge_pmd_wp, vma_wants_manual_pte_write_upgrade,
)
from contpte.mm.rmap cimport (
    RMAP_EXCLUSIVE, anon_vma_prepare, folio_add_new_anon_rmap, folio_remove_rmap_pmd, folio_try_dup_anon_rmap_pmd,
    folio_add_large_mapcount, folio_sub_large_mapcount,
)

cdef i64 EAGAIN, EBUSY, EINVAL, FAULT_NUMA, TVA_PAGEFAULT, TVA_KHUGEPAGED, TVA_FORCED_COLLAPSE

# The functions memory.c calls.
cpdef i64 thp_vma_allowable_orders(Vma vma, i64 orders, i64 tva_type=*) except? -1
cpdef bint thp_vma_allowable_order(Vma vma, i64 order) except? -1
cpdef bint thp_vma_suitable_order(Vma vma, i64 addr, i64 order) except? -1
cpdef i64 thp_vma_suitable_orders(Vma vma, i64 addr, i64 orders) except? -1
cpdef i64 create_huge_pmd(VmFault vmf) except? -1
cpdef i64 do_huge_pmd_wp_page(VmFault vmf, u64 pmd) except? -1
cpdef bint huge_pmd_set_accessed(VmFault vmf, u64 pmd) except? -1
cpdef i64 do_huge_pmd_numa_page(VmFault vmf, u64 pmd) except? -1
cpdef i64 copy_huge_pmd(MmStruct dst_mm, MmStruct src_mm, i64 pmd_index, i64 addr, Vma dst_vma, Vma src_vma) except? -1
cpdef zap_huge_pmd(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr)
cpdef split_huge_pmd(Vma vma, i64 pmd_index, i64 haddr)
cpdef bint move_huge_pmd(Vma vma, i64 old_addr, i64 new_addr, i64 old_pmd, i64 new_pmd) except? -1
# The rest of the file.
cpdef i64 mm_get_huge_zero_folio(MmStruct mm) except? -1
cpdef i64 vma_alloc_anon_folio_pmd(Vma vma) except? -1
cpdef map_anon_folio_pmd_nopf(i64 folio, Vma vma, i64 pmd_index, i64 haddr)
cpdef map_anon_folio_pmd(i64 folio, Vma vma, i64 pmd_index, i64 haddr)
cpdef i64 do_huge_zero_wp_pmd(VmFault vmf, i64 haddr) except? -1
cdef bint can_change_pmd_writable(Vma vma, i64 addr, u64 pmd) except? -1
cpdef i64 change_huge_pmd(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr, u64 newprot, i64 cp_flags) except? -1
cpdef i64 split_folio(Kernel k, i64 folio) except? -1
