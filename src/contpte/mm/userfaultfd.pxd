# fs/userfaultfd.c + mm/userfaultfd.c: uffd-wp (docs/core.md).
from contpte.cdefs cimport i64
from contpte.mm.mm_types cimport VM_UFFD_WP, MmStruct, Vma
from contpte.mm.mmu_gather cimport MmuGather
from contpte.mm.mmap cimport split_vma, vma_merge_around
from contpte.mm.mm_h cimport MM_CP_TRY_CHANGE_WRITABLE, MM_CP_UFFD_WP, MM_CP_UFFD_WP_RESOLVE
from contpte.mm.mprotect cimport change_protection
from contpte.mm.shmem cimport File

cdef i64 ENOENT, EINVAL

cpdef bint vma_can_userfault(Vma vma) except? -1
cpdef i64 userfaultfd_register_wp(MmStruct mm, i64 start, i64 length) except? -1
cpdef i64 mwriteprotect_range(MmStruct mm, i64 start, i64 length, bint enable_wp) except? -1
