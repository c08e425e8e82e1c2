from contpte.cdefs cimport i64
from contpte.arch.pgtable cimport GatherLike, MmLike, Pgtable, VmaLike
from contpte.hw.hardware cimport Hardware
from contpte.hw.tlbi cimport (
    DSB_ISH, DSB_ISHST, DSB_NSH, DSB_NSHST, TLBI_ASIDE1IS, TLBI_RVAE1IS, TLBI_RVALE1, TLBI_RVALE1IS,
    TLBI_VAE1IS, TLBI_VALE1, TLBI_VALE1IS,
)

cdef i64 TLBI_TTL_UNKNOWN, MAX_TLBI_RANGE_PAGES

cpdef i64 TLBI_RANGE_PAGES(i64 num, i64 scale) except? -1
cpdef i64 TLBI_RANGE_NUM(i64 pages, i64 scale) except? -1
cpdef VmaLike TLB_FLUSH_VMA(MmLike mm, i64 flags)
cdef i64 _ttl(i64 level) except? -1
cdef _tlbi(Pgtable arch, i64 op, i64 asid, i64 va, i64 ttl)
cdef _tlbi_range(Pgtable arch, i64 op, i64 asid, i64 va, i64 scale, i64 num, i64 ttl)
cdef _tlbi_nouser(Pgtable arch, i64 op, i64 asid, i64 va, i64 ttl)
cdef _tlbi_range_nouser(Pgtable arch, i64 op, i64 asid, i64 va, i64 scale, i64 num, i64 ttl)
cpdef flush_tlb_mm(Pgtable arch, MmLike mm)
cpdef flush_tlb_page_nosync(Pgtable arch, VmaLike vma, i64 uaddr)
cpdef flush_tlb_page(Pgtable arch, VmaLike vma, i64 uaddr)
cdef _local_flush_tlb_page_nonotify_nosync(Pgtable arch, MmLike mm, i64 uaddr)
cpdef local_flush_tlb_page_nonotify(Pgtable arch, VmaLike vma, i64 uaddr)
cpdef local_flush_tlb_page(Pgtable arch, VmaLike vma, i64 uaddr)
cpdef local_flush_tlb_contpte(Pgtable arch, VmaLike vma, i64 addr)
cpdef _flush_tlb_range_op(Pgtable arch, i64 op, i64 start, i64 pages, i64 stride, i64 asid, i64 tlb_level, bint tlbi_user)
cpdef _flush_tlb_range_nosync(Pgtable arch, VmaLike vma, i64 start, i64 end, i64 stride, bint last_level, i64 tlb_level)
cpdef _flush_tlb_range(Pgtable arch, VmaLike vma, i64 start, i64 end, i64 stride, bint last_level, i64 tlb_level)
cpdef flush_tlb_range(Pgtable arch, VmaLike vma, i64 start, i64 end)
cpdef flush_pmd_tlb_range(Pgtable arch, VmaLike vma, i64 start, i64 end)
cpdef i64 tlb_get_level(GatherLike tlb) except? -1
cpdef i64 tlb_get_unmap_size(Pgtable arch, GatherLike tlb) except? -1
cpdef tlb_flush(Pgtable arch, GatherLike tlb)
