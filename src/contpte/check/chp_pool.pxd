cimport cython
from contpte.cdefs cimport i64, I8View, I64View, U8View
from contpte.counters cimport Counters
from contpte.mm.kernel cimport Kernel
from contpte.mm.page_alloc cimport BuddyAllocator

cdef tuple _LEVELS, _LEVEL_IDS

@cython.final
cdef class ChpPoolCheck:
    cdef public object m
    cdef public Kernel k
    cdef public i64 last_gen
    cpdef after_syscall(self, bint force=*)
    cdef U8View _buddy_free(self)
    cpdef object check(self, bint frames=*)
    cdef bint _free_cover(self, i64 pfn, i64 nr) except? -1
