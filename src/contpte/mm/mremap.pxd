# mm/mremap.c: mremap, move_vma, move_page_tables, move_ptes (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport folio_test_large
from contpte.mm.mm_types cimport VM_MAYSHARE, VM_SHARED, VM_UFFD_WP, MmStruct, Vma, vma_mm
from contpte.mm.mm_h cimport _pte_alloc, pte_offset_map_lock, pte_unmap_unlock, vm_normal_folio
from contpte.mm.internal cimport FPB_RESPECT_WRITE, PtePtr, folio_pte_batch_flags
from contpte.mm.huge_memory cimport move_huge_pmd, split_huge_pmd
from contpte.mm.mmap cimport (
    TASK_SIZE, accountable_mapping, copy_vma, do_munmap, get_unmapped_area, vm_enough_memory, vma_merge_extend,
)

cdef i64 MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP, EAGAIN, ENOMEM, EFAULT, EINVAL

cdef bint _uffd_without_event_remap(Vma vma) except? -1
cpdef i64 mremap_folio_pte_batch(Vma vma, i64 addr, i64 ptep, u64 pte, i64 max_nr) except? -1
cpdef i64 move_ptes(Vma vma, i64 old_pmd, i64 old_addr, i64 old_end, Vma new_vma, i64 new_pmd, i64 new_addr) except? -1
cpdef bint move_normal_pmd(Vma vma, i64 old_addr, i64 new_addr, i64 old_pmd, i64 new_pmd) except? -1
cdef bint _can_align_down(Vma vma, i64 addr_to_align, i64 mask) except? -1
cpdef i64 move_page_tables(Vma vma, i64 old_addr, Vma new_vma, i64 new_addr, i64 length) except? -1
cpdef i64 move_vma(Vma vma, i64 old_addr, i64 old_len, i64 new_len, i64 new_addr, i64 flags) except? -1
cdef i64 _vma_to_resize(Vma vma, i64 addr, i64 old_len) except? -1
cdef bint _vma_expandable(Vma vma, i64 delta) except? -1
cdef i64 _mremap_to(MmStruct mm, i64 addr, i64 old_len, i64 new_addr, i64 new_len, i64 flags) except? -1
cpdef i64 do_mremap(MmStruct mm, i64 addr, i64 old_len, i64 new_len, i64 flags, i64 new_addr) except? -1
