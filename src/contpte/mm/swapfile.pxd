from contpte.counters cimport count
# mm/swapfile.c + mm/swap_state.c + mm/page_io.c: swap (docs/core.md).
cimport cython
from contpte.cdefs cimport i64, u64, I64View, I32View, I8View, U8View, U64View
from contpte.arch.pgtable cimport Pgtable
from contpte.mm.kernel cimport MTHP_SWPIN, MTHP_SWPOUT, Kernel
from contpte.mm.memmap cimport PG_cont, PG_dirty, PG_swapbacked, PG_swapcache, MemMap, folio_mapped, folio_ref_add, folio_ref_sub

cdef i64 SWAP_HAS_CACHE, SWAP_MAP_BAD, _COUNT_MASK, SWP_SOLIDSTATE, SWP_SYNCHRONOUS_IO
cdef i64 TTRS_ANYWAY, TTRS_UNMAPPED, TTRS_FULL
cdef i64 CLUSTER_FLAG_FREE, CLUSTER_FLAG_NONFULL, CLUSTER_FLAG_FRAG, CLUSTER_FLAG_FULL
cdef i64 PSWPIN, PSWPOUT, SWPIN_ZERO, SWPOUT_ZERO, SWAP_ALLOC_FAIL, THP_SWPOUT

@cython.final
cdef class SwapInfo:
    cdef public i64 type, cluster_nr, nr_clusters, max, pmd_order, flags, pages, inuse_pages, gen
    cdef public I32View swap_map, ci_count
    cdef public U8View zeromap
    cdef public U64View data
    cdef public I64View cache, next_
    cdef public I8View ci_order, ci_flags
    cdef public dict folio_swap
    cdef public list free_clusters, nonfull_clusters, frag_clusters, full_clusters
    cdef object _list_of(self, i64 c)
    cdef _move_tail(self, i64 c, i64 flag, i64 order)

cpdef i64 swap_count(i64 ent) except? -1
cpdef bint vm_swap_full(SwapInfo si) except? -1
cdef i64 cluster_alloc_range(SwapInfo si, i64 c, i64 offset, i64 order) except? -1
cdef i64 alloc_swap_scan_cluster(SwapInfo si, i64 offset, i64 order) except? -2
cpdef i64 get_swap_pages(SwapInfo si, i64 order) except? -2
cpdef i64 swap_entry_range_free(SwapInfo si, i64 offset, i64 nr) except? -1
cdef i64 _swap_entry_free_locked(SwapInfo si, i64 offset, i64 usage) except? -1
cdef i64 cluster_swap_free_nr(SwapInfo si, i64 offset, i64 nr, i64 usage) except? -1
cpdef i64 _swap_duplicate(SwapInfo si, i64 offset, i64 usage, i64 nr) except? -1
cpdef i64 swap_duplicate(SwapInfo si, i64 offset) except? -1
cpdef i64 swapcache_prepare(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef i64 swapcache_clear(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef i64 swap_free_nr(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef i64 _swap_count(SwapInfo si, i64 offset) except? -1
cpdef bint swap_is_has_cache(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef i64 put_swap_folio(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef add_to_swap_cache(Kernel k, SwapInfo si, i64 folio, i64 offset)
cpdef delete_from_swap_cache(Kernel k, SwapInfo si, i64 folio)
cpdef i64 folio_alloc_swap(Kernel k, SwapInfo si, i64 folio) except? -1
cpdef bint add_to_swap(Kernel k, SwapInfo si, i64 folio) except? -1
cpdef i64 swap_cache_get_folio(Kernel k, SwapInfo si, i64 offset) except? -2
cpdef bint folio_swapped(Kernel k, SwapInfo si, i64 folio) except? -1
cpdef bint folio_free_swap(Kernel k, SwapInfo si, i64 folio) except? -1
cpdef free_swap_cache(Kernel k, i64 folio)
cdef i64 _try_to_reclaim_swap(Kernel k, SwapInfo si, i64 offset, i64 flags) except? -1
cpdef bint _swap_entries_free(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef free_swap_and_cache_nr(Kernel k, i64 offset, i64 nr)
cpdef i64 swap_writepage(Kernel k, SwapInfo si, i64 folio) except? -1
cpdef i64 swap_zeromap_batch(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef i64 non_swapcache_batch(SwapInfo si, i64 offset, i64 nr) except? -1
cpdef i64 swap_read_folio(Kernel k, SwapInfo si, i64 folio, i64 offset) except? -1
cpdef i64 swapin_readahead(Kernel k, SwapInfo si, i64 offset) except? -2
cpdef i64 swapin_folio(Kernel k, SwapInfo si, i64 folio, i64 offset) except? -2
