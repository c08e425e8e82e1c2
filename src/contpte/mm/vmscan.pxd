from contpte.counters cimport count
# mm/vmscan.c + mm/rmap.c try_to_unmap: reclaim (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.mm.kernel cimport MTHP_SWPOUT_FALLBACK, Kernel
from contpte.mm.huge_memory cimport split_folio, split_huge_pmd
from contpte.mm.internal cimport FPB_RESPECT_SOFT_DIRTY, FPB_RESPECT_WRITE, PtePtr, folio_pte_batch, folio_pte_batch_flags
from contpte.mm.memmap cimport (
    PG_anon, PG_anon_exclusive, PG_cont, PG_double_map, PG_lazyfree, PG_reserved, PG_swapcache, folio_mapped, folio_ref_add, MemMap, folio_clear_dirty, folio_mapcount, folio_mark_dirty, folio_maybe_dma_pinned,
    folio_set_referenced, folio_test_clear_referenced, folio_test_dirty,
)
from contpte.mm.mm_types cimport MM_ANONPAGES, MM_SWAPENTS, VM_EXEC, MmStruct, Vma
from contpte.mm.mm_h cimport mm_counter_file, pte_unmap_unlock
from contpte.mm.rmap cimport folio_remove_rmap_ptes
from contpte.mm.shmem cimport File
from contpte.mm.swapfile cimport SwapInfo, add_to_swap, delete_from_swap_cache, swap_duplicate, swap_writepage

cdef i64 PGLAZYFREED, PGSTEAL, PGPAGEOUT, PGLAZYFREE_FAIL, _NOT_PG_lazyfree, _NOT_PG_anon_exclusive, THP_SWPOUT_FALLBACK
cdef i64 FOLIOREF_RECLAIM, FOLIOREF_RECLAIM_CLEAN, FOLIOREF_KEEP, FOLIOREF_ACTIVATE

cpdef i64 folio_check_references(Kernel k, i64 folio) except? -1
cpdef bint try_to_unmap(Kernel k, i64 folio, bint lazyfree) except? -1
cpdef pageout(Kernel k, i64 folio)
cdef _list_add_tails(Kernel k, i64 head, i64 nr, object folio_list)
cpdef i64 shrink_folio_list(Kernel k, object folio_list, bint ignore_references, i64 target) except? -1
cpdef i64 shrink_all_memory(Kernel k, i64 target=*) except? -1
