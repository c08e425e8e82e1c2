from contpte.counters cimport count
cimport cython
from contpte.cdefs cimport i64, u64
from contpte.hw.tables cimport PtePool
from contpte.hw.hardware cimport Hardware
from contpte.arch.pgtable cimport MmLike, Pgtable, VmaLike

cdef u64 _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE, _PAGE_NX
cdef u64 _PAGE_PROTNONE, _PAGE_SPECIAL, _PAGE_UFFD_WP, _PAGE_SOFT_DIRTY, _PFN_MASK, _NOT_PFN_MASK
cdef u64 _NOT_RW, _NOT_DIRTY, _NOT_ACCESSED, _NOT_UFFD_WP, _NOT_SOFT_DIRTY, _NOT_PRESENT, _NOT_PSE
cdef u64 _PAGE_CHG_MASK, _NOT_PAGE_CHG_MASK, _SWP_TYPE_SHIFT, _SWP_OFFSET_FIRST_BIT, _SWP_OFFSET_MASK, _NOT_USER
cdef i64 _VM_READ, _VM_WRITE, _VM_EXEC, _VM_SHARED, TLB_SINGLE_PAGE_FLUSH_CEILING, IPI

@cython.final
cdef class GenericPgtable(Pgtable):
    cdef _shootdown(self, MmLike mm, i64 start, i64 pages)
