from contpte.cdefs cimport i64

cdef i64 TLBI_VAE1, TLBI_VALE1, TLBI_VAAE1, TLBI_VAALE1, TLBI_ASIDE1, TLBI_VMALLE1
cdef i64 TLBI_RVAE1, TLBI_RVALE1, TLBI_RVAAE1, TLBI_RVAALE1, TLBI_INVLPG, TLBI_INVPCID
cdef i64 TLBI_IS, TLBI_OS
cdef i64 TLBI_VAE1IS, TLBI_VALE1IS, TLBI_VAAE1IS, TLBI_VAALE1IS, TLBI_ASIDE1IS, TLBI_VMALLE1IS
cdef i64 TLBI_RVAE1IS, TLBI_RVALE1IS, TLBI_RVAAE1IS, TLBI_RVAALE1IS
cdef i64 TLBI_NCODES
cdef i64 SCOPE_VA, SCOPE_ASID, SCOPE_ALL
cdef i64 DSB_ISH, DSB_ISHST, DSB_NSH, DSB_NSHST, DSB_OSH, DSB_OSHST, DSB_SY, DSB_ST

cpdef bint tlbi_valid(i64 op) noexcept
cpdef i64 tlbi_base(i64 op) noexcept
cpdef bint tlbi_broadcast(i64 op) noexcept
cpdef i64 tlbi_scope(i64 op) noexcept
cpdef bint tlbi_by_asid(i64 op) noexcept
cpdef bint tlbi_last_level(i64 op) noexcept
cpdef bint tlbi_is_range(i64 op) noexcept
cpdef i64 tlbi_range_pages(i64 scale, i64 num) except? -1
