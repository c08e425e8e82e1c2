cimport cython
from contpte.cdefs cimport i64, u64, I8View, I32View, I64View, U32View, U64View
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace
from contpte.mm.kernel cimport Kernel
from contpte.mm.memmap cimport MemMap, PG_cont, PG_double_map
from contpte.mm.mm_types cimport MmStruct
from contpte.check.incremental cimport F_CONT, PteDecoder

cdef i64 NR

@cython.final
cdef class ContPteCheck:
    cdef public object m
    cdef public Kernel k
    cdef public PteDecoder dec
    cpdef after_syscall(self)
    cpdef dict count_blocks(self)
    cpdef object check(self)
    cdef object _folio(self, i64 h, dict blocks)
