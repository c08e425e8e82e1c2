cimport cython
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable, VmaLike
from contpte.mm.kernel cimport Kernel

cdef i64 FPB_RESPECT_DIRTY, FPB_RESPECT_SOFT_DIRTY, FPB_RESPECT_WRITE, FPB_MERGE_WRITE, FPB_MERGE_YOUNG_DIRTY

@cython.final
cdef class BoolPtr:
    cdef public bint value

@cython.final
cdef class PtePtr:
    cdef public u64 value

@cython.final
cdef class FolioPtr:
    cdef public i64 value

cpdef i64 folio_pte_batch_flags(Kernel k, i64 folio, VmaLike vma, i64 ptep, PtePtr ptentp, i64 max_nr, i64 flags) except? -1
cpdef i64 folio_pte_batch(Kernel k, i64 folio, i64 ptep, u64 pte, i64 max_nr) except? -1
cdef u64 _fpb_norm(Pgtable a, u64 p, i64 flags, bint bug_uffd, bint bug_protnone, u64 first_prot) except? -1
cpdef u64 pte_move_swp_offset(Pgtable a, u64 pte, i64 delta) except? -1
cpdef u64 pte_next_swp_offset(Pgtable a, u64 pte) except? -1
cpdef i64 swap_pte_batch(Pgtable a, i64 start_ptep, i64 max_nr, u64 pte) except? -1
