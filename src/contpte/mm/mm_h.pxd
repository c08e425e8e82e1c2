from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport PG_lazyfree, MemMap, PageAnonExclusive, folio_test_anon
from contpte.mm.mm_types cimport MM_FILEPAGES, MM_SHMEMPAGES, VM_SHARED, VM_UFFD_WP, VM_WRITE, MmStruct, Vma, vma_mm

cdef i64 MM_CP_TRY_CHANGE_WRITABLE, MM_CP_PROT_NUMA, MM_CP_UFFD_WP, MM_CP_UFFD_WP_RESOLVE, MM_CP_UFFD_WP_ALL

cpdef i64 pte_index(Kernel k, i64 addr) except? -1
cpdef i64 pte_offset_map_lock(MmStruct mm, i64 addr, bint alloc=*) except? -1
cpdef i64 _pte_alloc(MmStruct mm, i64 pmd_index) except? -1
cpdef pte_unmap_unlock(MmStruct mm, i64 ptep)
cpdef i64 mm_counter_file(i64 folio, Kernel k) except? -1
cpdef bint folio_is_file_lru(Kernel k, i64 folio) except? -1
cpdef i64 vm_normal_folio(Vma vma, i64 addr, u64 pte) except? -1
cpdef u64 maybe_mkwrite(u64 pte, Vma vma) except? -1
cpdef bint vma_wants_writenotify(Vma vma) except? -1
cpdef bint vma_wants_manual_pte_write_upgrade(Vma vma) except? -1
cpdef bint userfaultfd_armed(Vma vma) except? -1
cpdef bint userfaultfd_pte_wp(Vma vma, u64 pte) except? -1
cpdef bint userfaultfd_huge_pmd_wp(Vma vma, u64 pmd) except? -1
cpdef bint maybe_change_pte_writable(Vma vma, u64 pte) except? -1
cpdef bint can_change_private_pte_writable(Vma vma, i64 addr, u64 pte) except? -1
cpdef bint can_change_shared_pte_writable(Vma vma, u64 pte) except? -1
cpdef bint can_change_pte_writable(Vma vma, i64 addr, u64 pte) except? -1
