cimport cython
from contpte.cdefs cimport i64, u64, U64View

@cython.final
cdef class ValueTable:
    cdef public i64 refs, per, nown, nlazy
    cdef public u64 a, b
    cdef public object vals, own, lazy
    cdef bint has(self, i64 i) except? -1
    cdef u64 value(self, i64 i) except? -1
    cdef bint is_lazy(self, i64 i) except? -1
    cdef i64 _count(self, object words, i64 i0, i64 n) except? -1
    cdef _own(self, i64 i0, i64 n, bint on)
    cdef _lazy(self, i64 i0, i64 n, bint on)
    cdef i64 _owned_in(self, i64 i0, i64 n) except? -1
    cdef _materialize(self)
    cdef store(self, i64 i0, i64 n, object src, i64 s0, u64 u)
    cdef ValueTable clone(self)
    cdef bint contains(self, u64 v) except? -1

@cython.final
cdef class ValueShadow:
    cdef public dict tabs
    cdef public i64 per, shift, cidx
    cdef public u64 last
    cdef ValueTable ctab
    cdef ValueTable _tab(self, i64 idx)
    cdef ValueTable _mine(self, i64 idx)
    cdef _drop(self, i64 idx)
    cpdef set(self, i64 vpn, i64 n, object values)
    cpdef forget(self, i64 vpn, i64 n)
    cpdef mark_lazy(self, i64 vpn, i64 n, bint on)
    cpdef i64 state(self, i64 vpn) except? -1
    cpdef ValueShadow copy(self)
    cpdef release(self)
    cpdef bint contains(self, u64 v) except? -1
cdef u64 _U64_MAX
