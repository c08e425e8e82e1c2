# mm/huge_memory.c (contract used by memory.py; the mm2 port fills in the rest).
from contpte.cdefs cimport i64, u64
from contpte.mm.mm_types cimport MmStruct, Vma, VmFault
from contpte.mm.mmu_gather cimport MmuGather

cpdef i64 thp_vma_allowable_orders(Vma vma, i64 orders)
cpdef bint thp_vma_allowable_order(Vma vma, i64 order)
cpdef bint thp_vma_suitable_order(Vma vma, i64 addr, i64 order)
cpdef i64 thp_vma_suitable_orders(Vma vma, i64 addr, i64 orders)
cpdef i64 create_huge_pmd(VmFault vmf)
cpdef i64 do_huge_pmd_wp_page(VmFault vmf, u64 pmd)
cpdef i64 huge_pmd_set_accessed(VmFault vmf, u64 pmd)
cpdef i64 copy_huge_pmd(MmStruct dst_mm, MmStruct src_mm, i64 pmd_index, i64 addr, Vma dst_vma, Vma src_vma)
cpdef zap_huge_pmd(MmuGather tlb, Vma vma, i64 pmd_index, i64 addr)
cpdef split_huge_pmd(Vma vma, i64 pmd_index, i64 haddr)
