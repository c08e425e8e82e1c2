from contpte.cdefs cimport i64, u64, U64View
from contpte.counters cimport Counters
from contpte.mm.kernel cimport Kernel
from contpte.mm.mm_types cimport MmStruct, Vma, VM_SHARED
from contpte.check.incremental cimport MapShadow, RmapHook, fork_copy
from contpte.check.isolation cimport ValueShadow
from contpte.check.pagemap cimport page_pfn, page_pfns
from contpte.mm.memmap cimport folio_test_anon, page_folio

cdef i64 RUNS, READS_CHECKED

cdef class Validators:
    cdef public object m, pre_pmds, initial, fork_base, fork_racy
    cdef public i64 fork_skip_below
    cdef public Kernel k
    cdef public Counters counters
    cdef public MapShadow shadow
    cdef public object hook, swap, chp, cont_pte
    cdef public dict values, files, pins
    cdef public list retired, zapping
    cdef public i64 per, page_shift, page_size
    cdef public bint enabled
    cdef ValueShadow _values(self, i64 pid)
    cdef u64 _file_value(self, object f, i64 idx) except? -1
    cdef _check_read(self, object p, ValueShadow sh, Vma v, i64 a0, U64View got, i64 g0, i64 c)
cdef u64 _U64_MAX
