cimport cython
from contpte.cdefs cimport i64, I64View, I32View, U32View, I8View

cdef i64 PG_anon, PG_dirty, PG_swapbacked, PG_reserved, PG_lazyfree, PG_referenced, PG_anon_exclusive, PG_swapcache
cdef i64 PG_cont, PG_double_map
cdef i64 _NOT_PG_dirty, _NOT_PG_referenced, _NOT_PG_anon_exclusive, GUP_PIN_COUNTING_BIAS

@cython.final
cdef class MemMap:
    cdef public i64 nr_frames
    cdef public object owner
    cdef public I64View head, index
    cdef public I8View order
    cdef public U32View flags
    cdef public I32View mapcount, refcount, pincount, entire_mapcount, large_mapcount, mapping
    cdef public I32View mm_id0, mm_id1, mm_id_mapcount0, mm_id_mapcount1
    cdef public I8View mm_ids_shared
    cpdef prep(self, i64 folio, i64 order)
    cpdef clear(self, i64 folio, i64 order)

cpdef i64 page_folio(MemMap mem, i64 page) except? -1
cpdef i64 folio_order(MemMap mem, i64 folio) except? -1
cpdef i64 folio_nr_pages(MemMap mem, i64 folio) except? -1
cpdef bint folio_test_large(MemMap mem, i64 folio) except? -1
cpdef i64 folio_ref_count(MemMap mem, i64 folio) except? -1
cpdef folio_ref_add(MemMap mem, i64 folio, i64 nr)
cpdef folio_ref_sub(MemMap mem, i64 folio, i64 nr)
cpdef bint folio_test_anon(MemMap mem, i64 folio) except? -1
cpdef bint folio_test_dirty(MemMap mem, i64 folio) except? -1
cpdef folio_mark_dirty(MemMap mem, i64 folio)
cpdef folio_clear_dirty(MemMap mem, i64 folio)
cpdef folio_set_referenced(MemMap mem, i64 folio)
cpdef bint folio_test_clear_referenced(MemMap mem, i64 folio) except? -1
cpdef bint folio_test_reserved(MemMap mem, i64 folio) except? -1
cpdef i64 folio_mapcount(MemMap mem, i64 folio) except? -1
cpdef bint folio_maybe_mapped_shared(MemMap mem, i64 folio) except? -1
cpdef i64 folio_entire_mapcount(MemMap mem, i64 folio) except? -1
cpdef bint folio_mapped(MemMap mem, i64 folio) except? -1
cpdef bint folio_maybe_dma_pinned(MemMap mem, i64 folio) except? -1
cpdef bint folio_likely_mapped_shared(MemMap mem, i64 folio) except? -1
cpdef bint PageAnonExclusive(MemMap mem, i64 page) except? -1
cpdef SetPageAnonExclusive(MemMap mem, i64 page, i64 nr=*)
cpdef ClearPageAnonExclusive(MemMap mem, i64 page, i64 nr=*)
