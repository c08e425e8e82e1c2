from contpte.counters cimport count
from contpte.cdefs cimport i64, u64, I64View, I8View
from contpte.counters cimport Counters, PTE_READ
from contpte.hw.tables cimport AddressSpace, PtePool
from contpte.hw.hardware cimport Hardware

cdef i64 CYDP_CLEAR_YOUNG, CYDP_CLEAR_DIRTY

cdef class MmLike:
    cdef public AddressSpace space
    cdef public set cpumask
    cdef public bint is_kernel_mm

cdef class VmaLike:
    cdef public MmLike vm_mm
    cdef public i64 vm_start, vm_end, vm_flags

cdef class GatherLike:
    cdef public MmLike mm
    cdef public bint fullmm, need_flush_all, freed_tables, cleared_ptes, cleared_pmds, cleared_puds
    cdef public i64 start, end

cdef class Pgtable:
    cdef public dict options
    cdef public Hardware hw
    cdef public PtePool pool
    cdef public Counters counters
    cdef public i64 page_shift, PAGE_SHIFT, PAGE_SIZE, PTRS_PER_PTE, PMD_SHIFT, PMD_SIZE
    cdef public i64 HPAGE_PMD_ORDER, HPAGE_PMD_NR, PFN_PTE_SHIFT, CONT_PTES
    cdef public bint tlbirange, kpti, bbml2_noabort, ptep_get_early_exit, access_flags_subptes
    cdef public bint tlbi_nobroadcast, pte_flags_need_flush
    cdef public i64 CONT_PTE_SIZE
    cdef public I64View folio_head
    cdef public I8View folio_order
    cdef public frozenset bugs

    cpdef bint bug(self, str name) except? -1
    cpdef i64 folio_first_pfn(self, i64 pfn) except? -1
    cpdef i64 folio_nr_pages_of(self, i64 head) except? -1

    cpdef bint pte_none(self, u64 pte) except? -1
    cpdef bint pte_present(self, u64 pte) except? -1
    cpdef bint pte_valid(self, u64 pte) except? -1
    cpdef i64 pte_pfn(self, u64 pte) except? -1
    cpdef u64 pfn_pte(self, i64 pfn, u64 prot) except? -1
    cpdef u64 pte_pgprot(self, u64 pte) except? -1
    cpdef u64 pte_advance_pfn(self, u64 pte, i64 nr) except? -1
    cpdef u64 pte_next_pfn(self, u64 pte) except? -1
    cpdef bint pte_write(self, u64 pte) except? -1
    cpdef bint pte_dirty(self, u64 pte) except? -1
    cpdef bint pte_young(self, u64 pte) except? -1
    cpdef bint pte_special(self, u64 pte) except? -1
    cpdef u64 pte_mkspecial(self, u64 pte) except? -1
    cpdef u64 pte_mkwrite(self, u64 pte) except? -1
    cpdef u64 pte_wrprotect(self, u64 pte) except? -1
    cpdef u64 pte_mkclean(self, u64 pte) except? -1
    cpdef u64 pte_mkdirty(self, u64 pte) except? -1
    cpdef u64 pte_mkold(self, u64 pte) except? -1
    cpdef u64 pte_mkyoung(self, u64 pte) except? -1
    cpdef bint pte_same(self, u64 a, u64 b) except? -1
    cpdef bint pte_accessible(self, MmLike mm, u64 pte) except? -1
    cpdef u64 pte_modify(self, u64 pte, u64 newprot) except? -1
    cpdef bint pte_protnone(self, u64 pte) except? -1
    cpdef bint pte_uffd_wp(self, u64 pte) except? -1
    cpdef u64 pte_mkuffd_wp(self, u64 pte) except? -1
    cpdef u64 pte_clear_uffd_wp(self, u64 pte) except? -1
    cpdef bint pte_soft_dirty(self, u64 pte) except? -1
    cpdef u64 pte_mksoft_dirty(self, u64 pte) except? -1
    cpdef u64 pte_clear_soft_dirty(self, u64 pte) except? -1
    cpdef bint pte_cont(self, u64 pte) except? -1
    cpdef u64 swp_entry(self, i64 type_, i64 offset) except? -1
    cpdef i64 swp_type(self, u64 pte) except? -1
    cpdef i64 swp_offset(self, u64 pte) except? -1
    cpdef bint pte_swp_exclusive(self, u64 pte) except? -1
    cpdef u64 pte_swp_mkexclusive(self, u64 pte) except? -1
    cpdef u64 pte_swp_clear_exclusive(self, u64 pte) except? -1
    cpdef bint pte_swp_uffd_wp(self, u64 pte) except? -1
    cpdef u64 pte_swp_mkuffd_wp(self, u64 pte) except? -1
    cpdef u64 pte_swp_clear_uffd_wp(self, u64 pte) except? -1
    cpdef bint is_swap_pte(self, u64 pte) except? -1
    cpdef u64 vm_get_page_prot(self, i64 vm_flags) except? -1
    cpdef u64 pte_pmd(self, u64 pte) except? -1
    cpdef u64 pmd_pte(self, u64 pmd) except? -1
    cpdef u64 pmd_mkinvalid(self, u64 pmd) except? -1

    cdef u64 _ptep_get(self, i64 ptep) except? -1
    cdef _set_pte(self, i64 ptep, u64 pte)
    cdef _set_ptes(self, MmLike mm, i64 addr, i64 ptep, u64 pte, i64 nr)
    cdef u64 _ptep_get_and_clear(self, MmLike mm, i64 addr, i64 ptep) except? -1
    cdef _ptep_set_wrprotect(self, MmLike mm, i64 addr, i64 ptep)
    cdef bint _ptep_test_and_clear_young(self, VmaLike vma, i64 addr, i64 ptep) except? -1
    cdef bint _ptep_set_access_flags(self, VmaLike vma, i64 addr, i64 ptep, u64 entry, bint dirty) except? -1

    cdef u64 _gather_young_dirty(self, u64 pte, i64 ptep, i64 nr) except? -1
    cdef _clear_full_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full)
    cdef u64 _get_and_clear_full_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full) except? -1
    cdef _wrprotect_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr)
    cdef _clear_young_dirty_ptes(self, VmaLike vma, i64 addr, i64 ptep, i64 nr, i64 flags)
    cdef _ptep_set_access_flags_block(self, VmaLike vma, i64 ptep, i64 nr, u64 entry)
    cpdef u64 pte_mkcont(self, u64 pte) except? -1
    cpdef bint pte_valid_cont(self, u64 pte) except? -1

    cpdef u64 ptep_get(self, i64 ptep) except? -1
    cpdef u64 ptep_get_lockless(self, i64 ptep) except? -1
    cpdef set_ptes(self, MmLike mm, i64 addr, i64 ptep, u64 pte, i64 nr)
    cpdef set_pte_at(self, MmLike mm, i64 addr, i64 ptep, u64 pte)
    cpdef pte_clear(self, MmLike mm, i64 addr, i64 ptep)
    cpdef u64 ptep_get_and_clear(self, MmLike mm, i64 addr, i64 ptep) except? -1
    cpdef u64 ptep_get_and_clear_full(self, MmLike mm, i64 addr, i64 ptep, bint full) except? -1
    cpdef u64 get_and_clear_full_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full) except? -1
    cpdef clear_full_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full)
    cpdef ptep_set_wrprotect(self, MmLike mm, i64 addr, i64 ptep)
    cpdef wrprotect_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr)
    cpdef bint ptep_test_and_clear_young(self, VmaLike vma, i64 addr, i64 ptep) except? -1
    cpdef bint ptep_clear_flush_young(self, VmaLike vma, i64 addr, i64 ptep) except? -1
    cpdef bint clear_flush_young_ptes(self, VmaLike vma, i64 addr, i64 ptep, i64 nr) except? -1
    cpdef bint ptep_set_access_flags(self, VmaLike vma, i64 addr, i64 ptep, u64 entry, bint dirty) except? -1
    cpdef u64 ptep_clear_flush(self, VmaLike vma, i64 addr, i64 ptep) except? -1
    cpdef clear_young_dirty_ptes(self, VmaLike vma, i64 addr, i64 ptep, i64 nr, i64 flags)
    cpdef i64 pte_batch_hint(self, i64 ptep, u64 pte) except? -1
    cpdef u64 get_and_clear_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr) except? -1
    cpdef u64 ptep_modify_prot_start(self, VmaLike vma, i64 addr, i64 ptep) except? -1
    cpdef ptep_modify_prot_commit(self, VmaLike vma, i64 addr, i64 ptep, u64 old_pte, u64 pte)
    cpdef u64 modify_prot_start_ptes(self, VmaLike vma, i64 addr, i64 ptep, i64 nr) except? -1
    cpdef modify_prot_commit_ptes(self, VmaLike vma, i64 addr, i64 ptep, u64 old_pte, u64 pte, i64 nr)

    cpdef i64 pte_alloc_one(self, MmLike mm, i64 pmd_index) except? -1
    cpdef pmd_populate(self, MmLike mm, i64 pmd_index, i64 pgtable)
    cpdef pmd_clear(self, MmLike mm, i64 pmd_index)
    cpdef pte_free_tlb(self, GatherLike tlb, i64 pgtable, i64 addr)
    cpdef pte_free(self, MmLike mm, i64 pgtable)
    cpdef arch_free_page(self, i64 page, i64 order)
    cpdef clear_highpage(self, i64 page)
    cpdef copy_user_highpage(self, i64 to, i64 from_, i64 vaddr, VmaLike vma)
    cpdef memcpy_to_page(self, i64 page, u64 from_)
    cpdef u64 memcpy_from_page(self, i64 page) except? -1

    cpdef u64 pmdp_get(self, MmLike mm, i64 pmd_index) except? -1
    cpdef set_pmd_at(self, MmLike mm, i64 addr, i64 pmd_index, u64 pmd)
    cpdef u64 pmdp_huge_get_and_clear(self, MmLike mm, i64 addr, i64 pmd_index) except? -1
    cpdef pmdp_set_wrprotect(self, MmLike mm, i64 addr, i64 pmd_index)
    cpdef u64 pmdp_invalidate(self, VmaLike vma, i64 addr, i64 pmd_index) except? -1
    cpdef i64 pmdp_collapse_flush(self, VmaLike vma, i64 address, i64 pmd_index) except? -1
    cpdef bint pmdp_clear_flush_young(self, VmaLike vma, i64 addr, i64 pmd_index) except? -1
    cpdef bint pmdp_set_access_flags(self, VmaLike vma, i64 addr, i64 pmd_index, u64 entry, bint dirty) except? -1

    cpdef flush_tlb_mm(self, MmLike mm)
    cpdef flush_tlb_range(self, VmaLike vma, i64 start, i64 end)
    cpdef flush_tlb_page(self, VmaLike vma, i64 addr)
    cpdef flush_pmd_tlb_range(self, VmaLike vma, i64 start, i64 end)
    cpdef flush_tlb_fix_spurious_fault(self, VmaLike vma, i64 addr, i64 ptep)
    cpdef flush_tlb_fix_spurious_fault_pmd(self, VmaLike vma, i64 addr, i64 pmd_index)
    cpdef bint pte_needs_flush(self, u64 oldpte, u64 newpte) except? -1
    cpdef bint huge_pmd_needs_flush(self, u64 oldpmd, u64 newpmd) except? -1
    cpdef tlb_flush(self, GatherLike tlb)
    cpdef update_mmu_cache_range(self, VmaLike vma, i64 addr, i64 ptep, i64 nr)
    cpdef ptl_release(self, MmLike mm, i64 ptep)
