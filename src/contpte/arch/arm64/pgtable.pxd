cimport cython
from contpte.cdefs cimport i64, u64
from contpte.counters cimport PTE_ATOMIC, PTE_READ, count
from contpte.hw.tables cimport AddressSpace, PtePool
from contpte.arch.pgtable cimport CYDP_CLEAR_DIRTY, CYDP_CLEAR_YOUNG, GatherLike, MmLike, Pgtable, VmaLike
from contpte.arch.arm64.pgtable_prot cimport (
    _SWP_OFFSET_MASK, _SWP_OFFSET_SHIFT, _SWP_TYPE_MASK, _SWP_TYPE_SHIFT, PMD_PRESENT_INVALID,
    PTE_AF, PTE_ATTRINDX_MASK, PTE_CONT, PTE_DEVMAP, PTE_DIRTY, PTE_GP, PTE_PO_IDX_MASK,
    PTE_PRESENT_INVALID, PTE_PXN, PTE_RDONLY, PTE_SPECIAL, PTE_SWP_EXCLUSIVE, PTE_SWP_UFFD_WP,
    PTE_TABLE_BIT, PTE_TYPE_PAGE, PTE_UFFD_WP, PTE_USER, PTE_UXN, PTE_VALID, PTE_WRITE, U64_MAX,
    VM_EXEC, VM_READ, VM_SHARED, VM_WRITE,
)
cimport contpte.arch.arm64.contpte as contpte
cimport contpte.arch.arm64.tlbflush as tlbflush

cdef u64 _PTE_MODIFY_MASK, _NOT_PTE_MODIFY_MASK, _NOT_RDONLY, _NOT_WRITE, _NOT_DIRTY, _NOT_AF, _NOT_CONT
cdef u64 _NOT_UFFD_WP, _NOT_VALID, _NOT_TABLE_BIT, _NOT_SWP_EXCLUSIVE, _NOT_SWP_UFFD_WP, _ACCESS_BITS, _PTE_SWBITS_MASK

@cython.final
cdef class Arm64Pgtable(Pgtable):
    cdef public u64 PTE_ADDR_LOW, NOT_ADDR_LOW, CONT_PTE_MASK
    cdef public bint contpte_enabled, wrprotect_ptes_opt, teardown_opt, wrprotect_refold, modify_prot_ptes_opt
    cdef public bint set_ptes_fold, batch_hint
    cpdef bint pte_present_invalid(self, u64 pte) except? -1
    cpdef bint pte_rdonly(self, u64 pte) except? -1
    cpdef bint pte_user(self, u64 pte) except? -1
    cpdef bint pte_user_exec(self, u64 pte) except? -1
    cpdef bint pte_hw_dirty(self, u64 pte) except? -1
    cpdef bint pte_sw_dirty(self, u64 pte) except? -1
    cpdef bint pte_devmap(self, u64 pte) except? -1
    cpdef u64 pte_mknoncont(self, u64 pte) except? -1
    cpdef i64 pte_leaf_size(self, u64 pte) except? -1
    cpdef u64 pte_mkinvalid(self, u64 pte) except? -1
    cpdef bint pte_access_permitted(self, u64 pte, bint write) except? -1
    cdef _pte_clear(self, MmLike mm, i64 addr, i64 ptep)
    cdef bint _ptep_clear_flush_young(self, VmaLike vma, i64 addr, i64 ptep) except? -1
    cdef _ptep_set_wrprotect_from(self, MmLike mm, i64 addr, i64 ptep, u64 pte)
    cpdef set_pte(self, i64 ptep, u64 pte)
    cdef u64 _ptep_get_and_clear_caller(self, MmLike mm, i64 addr, i64 ptep, str caller) except? -1
    cdef _wrprotect_pte(self, MmLike mm, i64 addr, i64 ptep, str caller)
    cdef _per_pte_unfold(self, MmLike mm, i64 addr, i64 ptep, i64 nr, str caller, bint cont_only)
