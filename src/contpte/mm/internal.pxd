cimport cython
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.mm.kernel cimport Kernel

cdef i64 FPB_IGNORE_DIRTY, FPB_IGNORE_SOFT_DIRTY, FPB_RESPECT_WRITE

@cython.final
cdef class BoolPtr:
    cdef public bint value

@cython.final
cdef class FolioPtr:
    cdef public i64 value

cpdef i64 folio_pte_batch(Kernel k, i64 folio, i64 addr, i64 start_ptep, u64 pte, i64 max_nr, i64 flags, BoolPtr any_writable, BoolPtr any_young=*, BoolPtr any_dirty=*) except? -1
cdef u64 _fpb_norm(Pgtable a, u64 p, i64 flags, bint bug_uffd, bint bug_protnone, u64 first_prot) except? -1
