from contpte.cdefs cimport i64, u64, u8, U64View, I64View, U8View, I8View
from contpte.arch.pgtable cimport Pgtable
from contpte.hw.tables cimport AddressSpace, PtePool
from contpte.mm.memmap cimport MemMap
from contpte.mm.mm_types cimport MmStruct

cpdef i64 page_pfn(MmStruct mm, i64 addr) except? -1
cpdef page_pfns(MmStruct mm, i64 addr, i64 npages)
