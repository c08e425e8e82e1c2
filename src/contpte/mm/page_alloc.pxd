from contpte.counters cimport count
cimport cython
from contpte.cdefs cimport i64, I64View, I8View
from contpte.counters cimport Counters

cdef i64 ALLOC, ALLOC_FAIL, FREE

@cython.final
cdef class BuddyAllocator:
    cdef public i64 nr_frames, max_order, nr_free
    cdef public Counters counters
    cdef public list free_lists
    cdef public I64View nr_blocks
    cdef public I8View free_order
    cdef _add(self, i64 pfn, i64 order)
    cdef _del(self, i64 pfn, i64 order)
    cdef i64 _pop_lowest(self, i64 order) except? -1
    cpdef i64 alloc_pages(self, i64 order) except? -1
    cpdef free_pages(self, i64 pfn, i64 order)
    cpdef bint alloc_contig_range(self, i64 start, i64 end) except? -1
    cdef _give_back_outside(self, i64 pfn, i64 order, i64 start, i64 end)
