from contpte.counters cimport count
cimport cython
from contpte.cdefs cimport i64, I64View
from contpte.counters cimport Counters
from contpte.arch.pgtable cimport Pgtable
from contpte.mm.memmap cimport MemMap, PG_anon, PG_reserved, folio_test_anon
from contpte.mm.page_alloc cimport BuddyAllocator

cdef i64 MTHP_ANON_FAULT_ALLOC, MTHP_ANON_FAULT_FALLBACK, MTHP_SPLIT, MTHP_SPLIT_DEFERRED, MTHP_NR_ANON
cdef i64 MTHP_SPLIT_FAILED, MTHP_NR_ANON_PARTIALLY_MAPPED
cdef i64 MTHP_COLLAPSE_ALLOC, MTHP_COLLAPSE_ALLOC_FAILED, MTHP_COLLAPSE_EXCEED_SWAP, MTHP_COLLAPSE_EXCEED_NONE, MTHP_COLLAPSE_EXCEED_SHARED
cdef i64 MTHP_SWPOUT, MTHP_SWPOUT_FALLBACK, MTHP_SWPIN, MTHP_SWPIN_FALLBACK
cdef i64 _NR_MTHP_STATS, _MAX_ORDER_STATS
cdef i64 PGFAULT, THP_FAULT_ALLOC, THP_FAULT_FALLBACK, THP_SPLIT_PMD, THP_DEFERRED_SPLIT_PAGE, THP_SPLIT_PAGE, THP_SPLIT_PAGE_FAILED
cdef i64 FOLIO_ALLOC, FOLIO_ALLOC_PAGES, FOLIO_FREE, FOLIO_FREE_PAGES, PAGE_ZERO, PAGE_COPY, REF_OPS, REF_GETS

cdef class RmapObserver:
    cpdef on_rmap_change(self, i64 folio)

@cython.final
cdef class Kernel:
    cdef public dict options, mthp, files
    cdef public bint batch_fork, batch_zap, batch_rmap, batch_extent_arch
    cdef public bint cow_reuse_large, huge_zero_wp_thp, use_zero_page, maybe_mapped_shared, mremap_pte_batch
    cdef public bint fault_map_dirty, finish_fault_whole_folio, spurious_fault_pmd
    cdef public bint fpb_cap_at_folio_end, prot_numa_batch_skip, mprotect_batch
    cdef public bint khugepaged_batch_copy, khugepaged_ro_collapse, khugepaged_lazyfree_skip, khugepaged_mthp
    cdef public bint young_ptes_batch, swapin_via_swapcache, lazyfree_unmap_batch, lazyfree_batch_respect_write, oneplus
    cdef public i64 khugepaged_max_ptes_none, khugepaged_max_ptes_swap, khugepaged_max_ptes_shared
    cdef public i64 khugepaged_pages_to_scan, khugepaged_pages_collapsed, khugepaged_full_scans, khugepaged_scan_address
    cdef public object khugepaged_scan_mm
    cdef public frozenset bugs
    cdef public RmapObserver rmap_observer
    cdef public object hw, on_lock_break, swap, chp_pool, yield_hook, on_mmap_read_lock, on_pin_page
    cdef public Pgtable arch
    cdef public Counters counters
    cdef public i64 page_shift, PAGE_SIZE, PMD_ORDER, zero_pfn, huge_zero_pfn, _anon_vma_ids
    cdef public i64 lock_break_align
    cdef public i64 max_gather_batch_count, fault_around_bytes, anon_orders_always, anon_orders_madvise, anon_orders_inherit
    cdef public MemMap memmap
    cdef public BuddyAllocator buddy
    cdef public list mms
    cdef public set deferred_split
    cdef public str thp, batch_extent, policy, accounting, lock_break
    cdef public I64View mthp_ids
    cpdef bint bug(self, str name) except? -1
    cpdef count_mthp_stat(self, i64 order, i64 stat, i64 n)
    cpdef folio_undo_large_rmappable(self, i64 folio)
    cpdef i64 folio_alloc(self, i64 order, bint zero) except? -1
    cpdef folio_put(self, i64 folio, i64 nr=*)
    cpdef mark_anon(self, i64 folio)
