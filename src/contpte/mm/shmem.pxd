# mm/filemap.c + mm/shmem.c: files and their page cache (docs/core.md).
cimport cython
from contpte.cdefs cimport i64, u64
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport MemMap, folio_mark_dirty

@cython.final
cdef class File:
    cdef public Kernel kernel
    cdef public i64 id, size, folio_order
    cdef public str name
    cdef public bint shmem, anon_shmem, written
    cdef public dict cache, disk
    cpdef i64 find_folio(self, i64 index) except? -1
    cpdef i64 get_folio(self, i64 index) except? -1
    cpdef forget_folio(self, i64 folio)
    cpdef evict_all(self)

cpdef i64 file_initial_value(i64 file_id, i64 index) except? -1
