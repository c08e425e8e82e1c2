from contpte.cdefs cimport i64, u64, I64View
from contpte.hw.tables cimport AddressSpace
from contpte.arch.pgtable cimport MmLike, VmaLike
from contpte.mm.kernel cimport Kernel
cimport cython

cdef i64 VM_NONE, VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_MAYSHARE, VM_UFFD_WP, VM_DONTCOPY, VM_SOFTDIRTY, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_CONT_PTE, VM_ACCESS_FLAGS, FAULT_FLAG_WRITE, FAULT_FLAG_REMOTE, FAULT_FLAG_UNSHARE, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_FAULT_NOPAGE, VM_FAULT_RETRY, VM_FAULT_FALLBACK, VM_FAULT_UFFD_WP, MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, NR_MM_COUNTERS

cdef class MmStruct(MmLike):
    cdef public Kernel kernel
    cdef public i64 owner, mmap_base, mm_lock_seq, mmap_read_locked, write_protect_seq
    cdef public bint mmap_write_locked
    cdef public list vmas, pinned
    cdef public I64View rss
    cdef public bint has_pinned, dead
    cpdef add_mm_counter(self, i64 member, i64 value)
    cpdef i64 get_mm_counter(self, i64 member) except? -1
    cpdef i64 vma_index(self, i64 addr) except? -1
    cpdef object find_vma(self, i64 addr)
    cpdef object vma_lookup(self, i64 addr)

@cython.final
cdef class Vma(VmaLike):
    cdef public u64 vm_page_prot
    cdef public i64 vm_pgoff, vm_lock_seq
    cdef public object vm_file, anon_vma
    cpdef i64 linear_page_index(self, i64 addr) except? -1

@cython.final
cdef class RssVec:
    cdef public I64View c

@cython.final
cdef class VmFault:
    cdef public Vma vma
    cdef public i64 address, flags, pmd_index, pte, page, cow_folio
    cdef public u64 orig_pte

cpdef MmStruct vma_mm(Vma vma)
cpdef bint vma_is_anonymous(Vma vma) except? -1
cpdef bint is_cow_mapping(i64 flags) except? -1
