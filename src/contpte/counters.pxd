cimport cython
from contpte.cdefs cimport i64, I64View

cdef i64 PTE_READ, PTE_WRITE, PTE_ATOMIC, PMD_WRITE

@cython.final
cdef class Counters:
    cdef public I64View v
    cpdef inc(self, i64 i, i64 n)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void count(Counters c, i64 i, i64 n) noexcept:
    # The compiled core's counting: one indexed add.  Every id is declared
    # when contpte.counters is imported, before any Counters is made, so
    # ``i`` is in range (``Counters.inc`` grows the array for the rest).
    c.v[i] += n
