from contpte.cdefs cimport i64, u64
from contpte.counters cimport PTE_ATOMIC, PTE_READ
from contpte.hw.tables cimport PtePool
from contpte.arch.pgtable cimport CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG, MmLike, Pgtable, VmaLike
from contpte.arch.arm64.pgtable_prot cimport (
    _SWP_OFFSET_MASK, _SWP_OFFSET_SHIFT, _SWP_TYPE_MASK, _SWP_TYPE_SHIFT, PMD_PRESENT_INVALID,
    PTE_AF, PTE_ATTRINDX_MASK, PTE_CONT, PTE_DEVMAP, PTE_DIRTY, PTE_GP, PTE_PO_IDX_MASK,
    PTE_PRESENT_INVALID, PTE_PXN, PTE_RDONLY, PTE_SPECIAL, PTE_SWP_EXCLUSIVE, PTE_SWP_UFFD_WP,
    PTE_TABLE_BIT, PTE_UFFD_WP, PTE_USER, PTE_UXN, PTE_VALID, PTE_WRITE, U64_MAX,
    VM_EXEC, VM_READ, VM_SHARED, VM_WRITE,
)
cimport contpte.arch.arm64.tlbflush as tlbflush

cdef u64 _PTE_MODIFY_MASK, _NOT_PTE_MODIFY_MASK, _NOT_RDONLY, _NOT_WRITE, _NOT_DIRTY, _NOT_AF, _NOT_CONT
cdef u64 _NOT_UFFD_WP, _NOT_VALID, _NOT_TABLE_BIT, _NOT_SWP_EXCLUSIVE, _NOT_SWP_UFFD_WP, _ACCESS_BITS

cdef class Arm64PgtableBase(Pgtable):
    cdef public u64 PTE_ADDR_LOW, NOT_ADDR_LOW, CONT_PTE_MASK
    cdef public i64 CONT_PTE_SIZE
    cdef public bint contpte_enabled, wrprotect_ptes_opt, teardown_opt, bbml2_noabort

    cpdef bint pte_present_invalid(self, u64 pte) except? -1
    cpdef bint pte_rdonly(self, u64 pte) except? -1
    cpdef bint pte_user(self, u64 pte) except? -1
    cpdef bint pte_user_exec(self, u64 pte) except? -1
    cpdef bint pte_hw_dirty(self, u64 pte) except? -1
    cpdef bint pte_sw_dirty(self, u64 pte) except? -1
    cpdef bint pte_devmap(self, u64 pte) except? -1
    cpdef bint pte_valid_cont(self, u64 pte) except? -1
    cpdef u64 pte_mkcont(self, u64 pte) except? -1
    cpdef u64 pte_mknoncont(self, u64 pte) except? -1
    cpdef i64 pte_leaf_size(self, u64 pte) except? -1
    cpdef u64 pte_mkinvalid(self, u64 pte) except? -1
    cpdef bint pte_access_permitted(self, u64 pte, bint write) except? -1
    cpdef u64 swp_entry(self, i64 type_, i64 offset) except? -1
    cpdef i64 swp_type(self, u64 pte) except? -1
    cpdef i64 swp_offset(self, u64 pte) except? -1
    cpdef bint pte_swp_exclusive(self, u64 pte) except? -1
    cpdef u64 pte_swp_mkexclusive(self, u64 pte) except? -1
    cpdef u64 pte_swp_clear_exclusive(self, u64 pte) except? -1
    cpdef bint pte_swp_uffd_wp(self, u64 pte) except? -1
    cpdef u64 pte_swp_mkuffd_wp(self, u64 pte) except? -1
    cpdef u64 pte_swp_clear_uffd_wp(self, u64 pte) except? -1

    cpdef _pte_clear(self, MmLike mm, i64 addr, i64 ptep)
    cpdef u64 _gather_young_dirty(self, u64 pte, i64 ptep, i64 nr) except? -1
    cpdef _clear_full_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full)
    cpdef u64 _get_and_clear_full_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full) except? -1
    cpdef bint _ptep_clear_flush_young(self, VmaLike vma, i64 addr, i64 ptep) except? -1
    cpdef _ptep_set_wrprotect_from(self, MmLike mm, i64 addr, i64 ptep, u64 pte)
    cpdef _wrprotect_ptes(self, MmLike mm, i64 addr, i64 ptep, i64 nr)
    cpdef _clear_young_dirty_ptes(self, VmaLike vma, i64 addr, i64 ptep, i64 nr, i64 flags)
    cpdef _ptep_set_access_flags_block(self, VmaLike vma, i64 ptep, i64 nr, u64 entry)
