from contpte.counters cimport count
# mm/gup.c: long-term pins (docs/core.md).
from contpte.cdefs cimport i64, u64
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport GUP_PIN_COUNTING_BIAS, MemMap, PageAnonExclusive, folio_ref_add, folio_ref_count, folio_test_anon
from contpte.mm.mm_types cimport (
    FAULT_FLAG_UNSHARE, FAULT_FLAG_WRITE, VM_FAULT_OOM, VM_FAULT_UFFD_WP, VM_READ, VM_SHARED, VM_WRITE, MmStruct,
    Vma,
)
from contpte.mm.memory cimport handle_mm_fault
from contpte.mm.shmem cimport File

cdef i64 PINS, UNPINS, FAST, FAST_BACKOUT, EFAULT, ENOMEM

cdef u64 _follow_page(MmStruct mm, i64 addr) except? -1
cdef i64 _follow_pfn(MmStruct mm, i64 addr, u64 pte) except? -1
cdef i64 _must_fault(MmStruct mm, i64 addr, u64 pte, i64 pfn, bint write) except? -1
cdef _grab(MemMap mem, i64 folio)
cdef _ungrab(Kernel k, i64 folio)
cdef _pinned(Kernel k, MmStruct mm, i64 addr, i64 pfn)
cpdef i64 gup_fast_pte_range(MmStruct mm, i64 addr, i64 end, bint write, object pages) except? -1
cpdef i64 gup_fast(MmStruct mm, i64 start, i64 end, bint write, object pages) except? -1
cpdef i64 pin_user_pages_fast(MmStruct mm, i64 start, i64 nr_pages, bint write, object pages) except? -1
cpdef i64 pin_user_pages(MmStruct mm, i64 start, i64 nr_pages, bint write, object pages=*) except? -1
cpdef unpin_user_pages(MmStruct mm, pfns)
