from contpte.counters cimport count
cimport cython
from contpte.cdefs cimport i64, u64
from contpte.counters cimport PTE_ATOMIC, PTE_READ
from contpte.hw.tables cimport AddressSpace, PtePool
from contpte.arch.pgtable cimport GatherLike, MmLike, VmaLike
from contpte.arch.arm64.pgtable_base cimport _ACCESS_BITS, _NOT_CONT, Arm64PgtableBase
from contpte.arch.arm64.pgtable_prot cimport PTE_CONT, PTE_RDONLY, PTE_VALID
cimport contpte.arch.arm64.contpte as contpte
cimport contpte.arch.arm64.tlbflush as tlbflush

@cython.final
cdef class Arm64Pgtable(Arm64PgtableBase):
    cpdef set_pte(self, i64 ptep, u64 pte)
    cpdef u64 _ptep_get_and_clear_caller(self, MmLike mm, i64 addr, i64 ptep, str caller) except? -1
    cpdef _wrprotect_pte(self, MmLike mm, i64 addr, i64 ptep, str caller)
    cpdef _per_pte_unfold(self, MmLike mm, i64 addr, i64 ptep, i64 nr, str caller, bint cont_only)
