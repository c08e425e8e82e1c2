# mm/memory.c: faults, fork's page-table copy, zap.  The contract other mm
# modules code against (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.mm.internal cimport BoolPtr
from contpte.mm.kernel cimport Kernel
from contpte.mm.mm_types cimport MmStruct, Vma, VmFault
from contpte.mm.mmu_gather cimport MmuGather

# -- faults
cpdef i64 handle_mm_fault(Vma vma, i64 address, i64 flags)
cpdef i64 handle_pte_fault(VmFault vmf)
cpdef i64 do_numa_page(VmFault vmf)
cpdef numa_rebuild_single_mapping(VmFault vmf, Vma vma, i64 addr, i64 ptep, bint writable)
cpdef bint pte_range_none(Kernel k, i64 ptep, i64 nr)
cpdef i64 alloc_anon_folio(VmFault vmf)
cpdef i64 do_anonymous_page(VmFault vmf)
cpdef set_pte_range(VmFault vmf, i64 folio, i64 page, i64 nr, i64 addr)
cpdef i64 do_fault(VmFault vmf)
cpdef i64 do_fault_around(VmFault vmf)
cpdef i64 finish_fault(VmFault vmf, i64 folio, i64 page)
cpdef i64 do_read_fault(VmFault vmf)
cpdef i64 do_cow_fault(VmFault vmf)
cpdef i64 do_shared_fault(VmFault vmf)
cpdef i64 do_wp_page(VmFault vmf)
cpdef wp_page_reuse(VmFault vmf, i64 folio)
cpdef i64 wp_page_copy(VmFault vmf, i64 old)
cpdef bint wp_can_reuse_anon_folio(i64 folio, Vma vma)
# -- fork
cpdef _copy_present_ptes(Vma dst_vma, Vma src_vma, i64 dst_pte, i64 src_pte, u64 pte, i64 addr, i64 nr)
cpdef i64 copy_present_page(Vma dst_vma, Vma src_vma, i64 dst_pte, i64 src_pte, i64 addr, i64[::1] rss, object prealloc, i64 page)
cpdef i64 copy_present_ptes(Vma dst_vma, Vma src_vma, i64 dst_pte, i64 src_pte, u64 pte, i64 addr, i64 max_nr, i64[::1] rss, object prealloc)
cpdef i64 copy_pte_range(Vma dst_vma, Vma src_vma, i64 pmd_index, i64 addr, i64 end)
cpdef i64 copy_page_range(Vma dst_vma, Vma src_vma)
cpdef bint vma_needs_copy(Vma dst_vma, Vma src_vma)
# -- zap
cpdef zap_present_folio_ptes(MmuGather tlb, Vma vma, i64 folio, i64 page, i64 ptep, u64 ptent, i64 nr, i64 addr, i64[::1] rss)
cpdef i64 zap_present_ptes(MmuGather tlb, Vma vma, i64 ptep, u64 ptent, i64 max_nr, i64 addr, i64[::1] rss)
cpdef zap_pte_range(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr, i64 end)
cpdef unmap_page_range(MmuGather tlb, Vma vma, i64 addr, i64 end)
cpdef unmap_vmas(MmuGather tlb, list vmas, i64 start, i64 end)
cpdef zap_page_range_single(Vma vma, i64 address, i64 size)
