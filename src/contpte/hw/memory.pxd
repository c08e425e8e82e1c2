cimport cython
from contpte.cdefs cimport i64, u64, U64View

@cython.final
cdef class PhysMemory:
    cdef public i64 nr_frames, page_size
    cdef public object data
    cdef public U64View v
    cpdef fill(self, i64 pfn, i64 nr, u64 value)
    cpdef copy(self, i64 dst_pfn, i64 src_pfn, i64 nr)
