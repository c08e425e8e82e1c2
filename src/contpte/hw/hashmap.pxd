cimport cython
from contpte.cdefs cimport i64, u64, I64View

cdef u64 _MIX, _U64_MAX

cdef i64 _log2(i64 n) noexcept

@cython.final
cdef class I64Map:
    cdef public I64View keys, vals
    cdef public i64 mask, n, bits
    cdef inline i64 _home(self, i64 key) noexcept
    cpdef i64 find(self, i64 key) except? -2
    cpdef i64 get(self, i64 key, i64 default) except? -2
    cpdef set(self, i64 key, i64 val)
    cpdef i64 put(self, i64 key, i64 val) except? -2
    cpdef i64 pop(self, i64 key, i64 default) except? -2
    cdef _delete_slot(self, i64 i)
    cdef _rehash(self, i64 cap)
    cpdef clear(self)
