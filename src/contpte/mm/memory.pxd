from contpte.counters cimport count
# mm/memory.c: faults, fork's page-table copy, zap.  The contract other mm
# modules code against (docs/core.md).
from contpte.cdefs cimport i64, u64, I64View
from contpte.counters cimport PTE_READ
from contpte.hw.tables cimport AddressSpace, PtePool
from contpte.arch.pgtable cimport Pgtable
cimport contpte.mm.huge_memory as huge_memory
from contpte.mm.internal cimport FPB_MERGE_WRITE, FPB_RESPECT_DIRTY, BoolPtr, FolioPtr, PtePtr, folio_pte_batch, folio_pte_batch_flags
from contpte.mm.internal cimport pte_move_swp_offset, swap_pte_batch
from contpte.mm.kernel cimport MTHP_ANON_FAULT_ALLOC, MTHP_ANON_FAULT_FALLBACK, MTHP_SWPIN_FALLBACK, PAGE_COPY, PGFAULT, REF_GETS, Kernel
from contpte.mm.memmap cimport (
    PG_swapbacked, PG_swapcache, MemMap, PageAnonExclusive, SetPageAnonExclusive, folio_mapcount, folio_mark_dirty, folio_ref_add, folio_ref_sub,
    folio_test_anon, folio_test_dirty,
)
from contpte.mm.mm_h cimport (
    can_change_pte_writable, maybe_mkwrite, mm_counter_file, pte_index, pte_offset_map_lock, pte_unmap_unlock,
    vm_normal_folio, vma_wants_manual_pte_write_upgrade,
)
from contpte.mm.mm_h cimport userfaultfd_armed, userfaultfd_huge_pmd_wp, userfaultfd_pte_wp
from contpte.mm.mm_types cimport (
    FAULT_FLAG_UNSHARE, FAULT_FLAG_WRITE, MM_ANONPAGES, MM_SWAPENTS, VM_ACCESS_FLAGS, VM_FAULT_FALLBACK, VM_FAULT_NOPAGE,
    VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_FAULT_UFFD_WP, VM_MAYSHARE, VM_SHARED, VM_UFFD_WP, VM_WRITE, MmStruct, Vma,
    VmFault, RssVec, is_cow_mapping, vma_is_anonymous, vma_mm,
)
from contpte.mm.mmu_gather cimport MmuGather
from contpte.mm.rmap cimport (
    RMAP_EXCLUSIVE, anon_vma_prepare, folio_add_anon_rmap_ptes, folio_add_file_rmap_ptes, folio_add_new_anon_rmap,
    folio_dup_file_rmap_ptes, folio_remove_rmap_ptes, folio_try_dup_anon_rmap_ptes,
)
from contpte.mm.swapfile cimport (
    SWP_SYNCHRONOUS_IO, SwapInfo, _swap_count, folio_free_swap, free_swap_and_cache_nr, non_swapcache_batch,
    swap_cache_get_folio, swap_duplicate, swap_free_nr, swap_read_folio, swap_zeromap_batch, swapcache_clear,
    swapcache_prepare, swapin_folio, swapin_readahead, vm_swap_full,
)

cdef i64 FAULT_ANON, FAULT_FILE, FAULT_WP, FAULT_WP_REUSE, FAULT_WP_COPY, FAULT_SPURIOUS, FAULT_PTE_CHANGED, FAULT_AROUND_PAGES, FAULT_NUMA
cdef i64 FORK_CALLS, FORK_BATCH, FORK_PTES, FORK_COPY_PAGE, FORK_LOCK_BREAK, FORK_AGAIN, ZAP_CALLS, ZAP_BATCH, ZAP_PTES, ZAP_FORCED_FLUSH, EAGAIN, ENOMEM
cdef i64 PGMAJFAULT, SWAP_CACHE_HIT, SWAP_PTES_COPIED, SWAP_PTES_ZAPPED

# -- faults
cpdef i64 handle_mm_fault(Vma vma, i64 address, i64 flags) except? -1
cpdef i64 wp_huge_pmd(VmFault vmf, u64 pmd) except? -1
cpdef i64 handle_pte_fault(VmFault vmf) except? -1
cpdef i64 do_numa_page(VmFault vmf) except? -1
cpdef numa_rebuild_single_mapping(VmFault vmf, Vma vma, i64 addr, i64 ptep, bint writable)
cpdef bint pte_range_none(Kernel k, i64 ptep, i64 nr) except? -1
cpdef i64 alloc_anon_folio(VmFault vmf) except? -1
cpdef i64 do_anonymous_page(VmFault vmf) except? -1
cpdef map_anon_folio_pte_nopf(i64 folio, i64 ptep, Vma vma, i64 addr, bint uffd_wp)
cpdef set_pte_range(VmFault vmf, i64 folio, i64 page, i64 nr, i64 addr)
cpdef i64 do_fault(VmFault vmf) except? -1
cpdef i64 do_fault_around(VmFault vmf) except? -1
cpdef i64 finish_fault(VmFault vmf, i64 folio, i64 page) except? -1
cpdef i64 do_read_fault(VmFault vmf) except? -1
cpdef i64 do_cow_fault(VmFault vmf) except? -1
cpdef i64 do_shared_fault(VmFault vmf) except? -1
cpdef i64 do_wp_page(VmFault vmf) except? -1
cdef i64 _highest_order(i64 orders) except? -1
cpdef i64 thp_swap_suitable_orders(Kernel k, i64 swp_offset, i64 addr, i64 orders) except? -1
cpdef bint can_swapin_thp(VmFault vmf, i64 ptep, i64 nr_pages) except? -1
cpdef i64 alloc_swap_folio(VmFault vmf) except? -1
cpdef bint should_try_to_free_swap(Kernel k, i64 folio, Vma vma, i64 fault_flags, i64 extra_refs) except? -1
cpdef i64 do_swap_page(VmFault vmf) except? -1
cpdef wp_page_reuse(VmFault vmf, i64 folio)
cpdef i64 wp_page_copy(VmFault vmf, i64 old) except? -1
cpdef bint wp_can_reuse_anon_folio(i64 folio, Vma vma) except? -1
cdef bint wp_can_reuse_large_anon_folio(i64 folio, Vma vma) except? -1
cdef i64 _do_fault_page(VmFault vmf) except? -1
cdef i64 _dup_anon_rmap_batch(Kernel k, i64 folio, i64 page, i64 nr, Vma dst_vma, Vma src_vma) except? -1
cdef _dup_file_rmap_batch(Kernel k, i64 folio, i64 page, i64 nr, Vma dst_vma)
cdef i64 _fault_page(VmFault vmf, i64 folio) except? -1
# -- fork
cpdef _copy_present_ptes(Vma dst_vma, Vma src_vma, i64 dst_pte, i64 src_pte, u64 pte, i64 addr, i64 nr)
cpdef i64 copy_present_page(Vma dst_vma, Vma src_vma, i64 dst_pte, i64 src_pte, i64 addr, RssVec rss, FolioPtr prealloc, i64 page) except? -1
cpdef i64 copy_present_ptes(Vma dst_vma, Vma src_vma, i64 dst_pte, i64 src_pte, u64 pte, i64 addr, i64 max_nr, RssVec rss, FolioPtr prealloc) except? -1
cpdef i64 copy_nonpresent_pte(MmStruct dst_mm, MmStruct src_mm, i64 dst_pte, i64 src_pte, Vma dst_vma, Vma src_vma, i64 addr, RssVec rss) except? -1
cpdef i64 copy_pte_range(Vma dst_vma, Vma src_vma, i64 pmd_index, i64 addr, i64 end) except? -1
cpdef i64 copy_page_range(Vma dst_vma, Vma src_vma) except? -1
cpdef bint vma_needs_copy(Vma dst_vma, Vma src_vma) except? -1
# -- zap
cpdef zap_present_folio_ptes(MmuGather tlb, Vma vma, i64 folio, i64 page, i64 ptep, u64 ptent, i64 nr, i64 addr, RssVec rss, BoolPtr force_flush, BoolPtr force_break)
cpdef i64 zap_present_ptes(MmuGather tlb, Vma vma, i64 ptep, u64 ptent, i64 max_nr, i64 addr, RssVec rss, BoolPtr force_flush, BoolPtr force_break) except? -1
cpdef i64 zap_pte_range(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr, i64 end) except? -1
cpdef unmap_page_range(MmuGather tlb, Vma vma, i64 addr, i64 end)
cpdef unmap_vmas(MmuGather tlb, object vmas, i64 start, i64 end)
cpdef zap_page_range_single(Vma vma, i64 address, i64 size)
