cimport cython
from contpte.cdefs cimport i64, i32, u64, I64View, U64View, I32View
from contpte.hw.hashmap cimport I64Map

cdef i64 ASID_LIMIT, VPN_LIMIT, _SC_SHIFT, _ASID_SHIFT

@cython.final
cdef class TlbFrameIndex:
    cdef public i64 nr_frames, cont_pages, region_pages
    cdef public I32View page, cont, region
    cdef add(self, i64 pfn, i64 npages, i32 delta)
    cpdef i64 first_mapped(self, i64 pfn, i64 npages) except? -2

@cython.final
cdef class Tlb:
    cdef public i64 capacity, cont_pages, region_pages, n, stamp, n_flagged, last_overlap
    cdef public i64 lru_head, lru_tail, free_head, nalloc, one_asid
    cdef public bint adversarial
    cdef public I64View size_of, nsize
    cdef public I64Map map
    cdef public I64View e_asid, e_vbase, e_npages, e_pfn, e_ptep, e_level, e_stamp, e_prev, e_next, e_flag, e_idx
    cdef public TlbFrameIndex frames
    cdef public U64View e_desc
    cdef inline i64 _sc(self, i64 npages) noexcept
    cdef inline i64 _key(self, i64 asid, i64 sc, i64 vbase) noexcept
    cdef inline _unlink(self, i64 k)
    cdef inline _link_tail(self, i64 k)
    cpdef i64 find(self, i64 asid, i64 vbase, i64 npages) except? -2
    cpdef i64 lookup(self, i64 asid, i64 vpn) except? -2
    cpdef i64 overlaps(self, i64 asid, i64 vbase, i64 npages) except? -1
    cpdef i64 insert(self, i64 asid, i64 vbase, i64 npages, i64 pfn, u64 desc, i64 ptep, i64 level, bint flag) except? -1
    cdef _flag(self, i64 k)
    cpdef remove(self, i64 k)
    cdef _drop(self, i64 k, i64 sc)
    cpdef i64 invalidate_range(self, i64 asid, i64 vpn, i64 npages, i64 level) except? -1
    cpdef i64 invalidate_asid(self, i64 asid) except? -1
    cpdef i64 invalidate_all(self) except? -1
    cdef _reset(self)
    cdef _unindex(self, i64 k)
    cpdef unindex_asid(self, i64 asid)
    cdef i64 _drop_where(self, i64 asid, i64 vpn, i64 end, i64 level) except? -1
    cdef inline bint _matches(self, i64 k, i64 asid, i64 vpn, i64 end, i64 level) except? -1
