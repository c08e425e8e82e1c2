from contpte.cdefs cimport i64, I64View

cdef i64 PTE_READ, PTE_WRITE, PTE_ATOMIC, PMD_WRITE

cdef class Counters:
    cdef public I64View v
    cpdef inc(self, i64 i, i64 n)
