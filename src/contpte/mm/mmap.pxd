# mm/mmap.c + mm/vma.c: VMAs, mmap, munmap, exit (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace
from contpte.mm.kernel cimport Kernel
from contpte.mm.mm_types cimport (
    VM_ACCESS_FLAGS, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_SHARED, VM_WRITE, MmStruct, Vma, vma_is_anonymous, vma_mm,
)
from contpte.mm.mm_h cimport vma_wants_writenotify
from contpte.mm.mmu_gather cimport MmuGather
from contpte.mm.huge_memory cimport split_huge_pmd
from contpte.mm.memory cimport unmap_vmas
from contpte.mm.shmem cimport File

cdef i64 TASK_SIZE, MMAP_MIN_ADDR, ENOMEM, EINVAL

cpdef insert_vma(MmStruct mm, Vma vma)
cpdef i64 get_unmapped_area(MmStruct mm, i64 addr, i64 length, bint anon, bint fixed) except? -1
cdef bint _mergeable(Vma a, Vma b) except? -1
cpdef Vma vma_merge_around(MmStruct mm, Vma vma)
cpdef Vma copy_vma(Vma vma, i64 addr, i64 length, i64 pgoff)
cpdef Vma vma_merge_extend(MmStruct mm, Vma vma, i64 delta)
cpdef bint vm_enough_memory(Kernel k, i64 pages) except? -1
cpdef bint accountable_mapping(File file, i64 vm_flags) except? -1
cpdef i64 do_mmap(MmStruct mm, File file, i64 addr, i64 length, i64 vm_flags, i64 pgoff, bint fixed) except? -1
cpdef vma_set_page_prot(Vma vma)
cpdef Vma split_vma(MmStruct mm, Vma vma, i64 addr)
cpdef free_pte_range(MmuGather tlb, MmStruct mm, i64 pmd_index)
cpdef free_pgtables(MmuGather tlb, MmStruct mm, i64 start, i64 end)
cpdef release_anon_shmem(MmStruct mm, gone)
cpdef i64 do_munmap(MmStruct mm, i64 start, i64 length) except? -1
cpdef exit_mmap(MmStruct mm)
