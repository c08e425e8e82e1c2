from contpte.cdefs cimport i64, u64

cdef i64 WS_NONE, WS_CLEAN, WS_DIRTY
cdef i64 L2_INVALID, L2_BLOCK, L2_TABLE

cdef class DescriptorFormat:
    cdef public str name
    cdef public bint has_contiguous
    cdef public i64 page_shift, cont_ptes
    cdef public u64 oa_mask, valid_mask, valid_val, l2_block_mask, l2_block_val
    cdef public u64 cont_bit, af_bit, user_bit, dbm_bit
    cdef public u64 dirty_mask, dirty_val, clean_mask, clean_val
    cdef public u64 set_dirty_or, set_dirty_and
    cdef public u64 key_mask, key_mask_dbm, memtype_mask, bbm_bits
    cpdef bint page_valid(self, u64 d) noexcept
    cpdef i64 l2_kind(self, u64 d) noexcept
    cpdef i64 pfn(self, u64 d) noexcept
    cpdef bint cont(self, u64 d) noexcept
    cpdef bint af(self, u64 d) noexcept
    cpdef bint user(self, u64 d) noexcept
    cpdef i64 write_state(self, u64 d) noexcept
    cpdef bint writable(self, u64 d, bint hd) noexcept
    cpdef u64 set_af(self, u64 d) noexcept
    cpdef u64 set_dirty(self, u64 d) noexcept
    cpdef u64 prot_key(self, u64 d, bint hd=*) noexcept
    cpdef u64 memtype(self, u64 d) noexcept

cdef class VmsaFormat(DescriptorFormat):
    pass

cdef class FlatFormat(DescriptorFormat):
    pass
