from contpte.counters cimport count
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace, PtePool
from contpte.mm.kernel cimport (
    MTHP_NR_ANON_PARTIALLY_MAPPED, MTHP_SPLIT_DEFERRED, THP_DEFERRED_SPLIT_PAGE, Kernel, RmapObserver,
)
from contpte.mm.memmap cimport (
    PG_anon_exclusive, PG_cont, PG_swapcache, ClearPageAnonExclusive, MemMap, SetPageAnonExclusive, folio_mapcount, folio_maybe_dma_pinned,
    folio_test_anon,
)
from contpte.mm.internal cimport folio_pte_batch
from contpte.mm.mm_h cimport pte_unmap_unlock
from contpte.mm.mm_types cimport MmStruct, Vma, vma_mm

cdef i64 RMAP_EXCLUSIVE, RMAP_OPS, RMAP_PAGES, RMAP_REMOVE, EBUSY, _NOT_PG_anon_exclusive

cpdef rmap_changed(Kernel k, i64 folio)
cpdef anon_vma_prepare(Vma vma)
cpdef folio_add_new_anon_rmap(i64 folio, Vma vma, i64 address, i64 flags, bint pmd=*)
cpdef folio_add_anon_rmap_ptes(i64 folio, i64 page, i64 nr, Vma vma, i64 address, i64 flags)
cpdef bint folio_needs_cow_for_dma(Vma vma, i64 folio) except? -1
cpdef i64 folio_try_dup_anon_rmap_ptes(i64 folio, i64 page, i64 nr, Vma dst_vma, Vma src_vma) except? -1
cpdef i64 folio_try_dup_anon_rmap_pmd(i64 folio, Vma dst_vma, Vma src_vma) except? -1
cpdef folio_set_large_mapcount(MemMap mem, i64 folio, i64 mapcount, Vma vma)
cpdef folio_add_large_mapcount(MemMap mem, i64 folio, i64 diff, Vma vma)
cpdef folio_sub_large_mapcount(MemMap mem, i64 folio, i64 diff, Vma vma)
cpdef folio_dup_file_rmap_ptes(i64 folio, i64 page, i64 nr, Vma dst_vma)
cpdef folio_add_file_rmap_ptes(i64 folio, i64 page, i64 nr, Vma vma)
cpdef folio_remove_rmap_ptes(i64 folio, i64 page, i64 nr, Vma vma)
cpdef folio_remove_rmap_pmd(i64 folio, Vma vma)
cpdef deferred_split_folio(i64 folio, Kernel k)
