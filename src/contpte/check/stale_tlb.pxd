cimport cython
from contpte.cdefs cimport i64, u64
from contpte.hw.checker cimport RuleChecker
from contpte.hw.format cimport DescriptorFormat
from contpte.hw.hardware cimport Hardware
from contpte.hw.tables cimport AddressSpace
from contpte.hw.tlb cimport Tlb

cdef i64 _L2_BLOCK

cdef u64 _memory_desc(Hardware hw, AddressSpace space, i64 vpn) except? 0
cpdef object stale_tlb_at_return(object m)
cdef object _stale_entry(Hardware hw, RuleChecker chk)
