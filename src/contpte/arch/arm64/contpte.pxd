from contpte.counters cimport count
from contpte.cdefs cimport i64, u64
from contpte.counters cimport PTE_ATOMIC, PTE_READ
from contpte.hw.tables cimport PtePool
from contpte.arch.pgtable cimport MmLike, Pgtable, VmaLike
from contpte.arch.arm64.pgtable_prot cimport PTE_AF, PTE_CONT, PTE_DIRTY, PTE_RDONLY, PTE_VALID, PTE_WRITE, U64_MAX
cimport contpte.arch.arm64.tlbflush as tlbflush

cdef i64 FOLD, CONVERT, LOCKLESS_RETRY
cdef i64 CALL_CONVERT, CALL_TRY_FOLD, CALL_TRY_UNFOLD, CALL_UNFOLD_PARTIAL, CALL_SET_PTES, CALL_CLEAR_FULL
cdef i64 CALL_GET_AND_CLEAR_FULL, CALL_WRPROTECT, CALL_PTEP_GET, CALL_PTEP_GET_LOCKLESS
cdef i64 CALL_TEST_AND_CLEAR_YOUNG, CALL_CLEAR_FLUSH_YOUNG, CALL_CLEAR_YOUNG_DIRTY, CALL_SET_ACCESS_FLAGS
cdef u64 _NOT_CONT, _NOT_AF, _NOT_AF_DIRTY, _NOT_RDONLY, _ACCESS_CMP

cpdef bint mm_is_user(MmLike mm) except? -1
cpdef i64 contpte_align_down(Pgtable arch, i64 ptep) except? -1
cpdef contpte_convert(Pgtable arch, MmLike mm, i64 addr, i64 ptep, u64 pte)
cpdef contpte_try_fold(Pgtable arch, MmLike mm, i64 addr, i64 ptep, u64 pte)
cpdef _contpte_try_fold(Pgtable arch, MmLike mm, i64 addr, i64 ptep, u64 pte)
cpdef contpte_try_unfold(Pgtable arch, MmLike mm, i64 addr, i64 ptep, u64 pte, str caller, bint traced=*)
cpdef _contpte_try_unfold(Pgtable arch, MmLike mm, i64 addr, i64 ptep, u64 pte, str caller, bint traced=*)
cpdef contpte_try_unfold_partial(Pgtable arch, MmLike mm, i64 addr, i64 ptep, i64 nr, str caller)
cpdef u64 contpte_ptep_get(Pgtable arch, i64 ptep, u64 orig_pte) except? -1
cdef bint _contpte_consistent(Pgtable arch, u64 pte, i64 pfn, u64 orig_prot) except? -1
cdef _lockless_retry(Pgtable arch, i64 start)
cdef u64 _lockless_gather(Pgtable arch, u64 orig_pte, i64 start, i64 pfn0, u64 orig_prot) except? -1
cpdef u64 contpte_ptep_get_lockless(Pgtable arch, i64 orig_ptep) except? -1
cpdef contpte_set_ptes(Pgtable arch, MmLike mm, i64 addr, i64 ptep, u64 pte, i64 nr)
cpdef contpte_clear_full_ptes(Pgtable arch, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full)
cpdef u64 contpte_get_and_clear_full_ptes(Pgtable arch, MmLike mm, i64 addr, i64 ptep, i64 nr, bint full, str caller=*) except? -1
cpdef (i64, i64, i64) contpte_align_addr_ptep(Pgtable arch, i64 start, i64 end, i64 ptep, i64 nr)
cpdef bint contpte_test_and_clear_young_ptes(Pgtable arch, VmaLike vma, i64 addr, i64 ptep, i64 nr) except? -1
cpdef bint contpte_clear_flush_young_ptes(Pgtable arch, VmaLike vma, i64 addr, i64 ptep, i64 nr) except? -1
cpdef contpte_wrprotect_ptes(Pgtable arch, MmLike mm, i64 addr, i64 ptep, i64 nr)
cpdef contpte_clear_young_dirty_ptes(Pgtable arch, VmaLike vma, i64 addr, i64 ptep, i64 nr, i64 flags)
cdef bint _contpte_all_subptes_match_access_flags(Pgtable arch, i64 ptep, u64 entry) except? -1
cpdef bint contpte_ptep_set_access_flags(Pgtable arch, VmaLike vma, i64 addr, i64 ptep, u64 entry, bint dirty) except? -1
