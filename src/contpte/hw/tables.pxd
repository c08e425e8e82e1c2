cimport cython
from contpte.counters cimport count
from contpte.cdefs cimport i64, u64, U64View, I64View
from contpte.counters cimport Counters, PTE_READ, PTE_WRITE, PTE_ATOMIC, PMD_WRITE

cdef class StoreObserver:
    cpdef on_store(self, i64 ptep, u64 old, u64 new)
    cpdef on_hw_update(self, i64 ptep, u64 old, u64 new)
    cpdef on_pmd_store(self, AddressSpace space, i64 pmd_index, u64 old, u64 new)
    cpdef on_pmd_hw_update(self, AddressSpace space, i64 pmd_index, u64 old, u64 new)
    cpdef on_table_alloc(self, AddressSpace space, i64 pmd_index, i64 slot)
    cpdef on_table_free(self, AddressSpace space, i64 pmd_index, i64 slot)
    cpdef on_table_move(self, AddressSpace space, i64 old_index, i64 pmd_index, i64 slot)

cdef class LogEntry:
    cdef public PtePool pool
    cdef public i64 slot, asid, pmd_index, old_at
    cdef public bint alive

cdef LogEntry _log_entry(PtePool pool, i64 slot, i64 asid, i64 pmd_index, i64 old_at)

@cython.final
cdef class PtePool:
    cdef public i64 page_shift, shift, ptrs_per_pte, pmd_shift, nslots, epoch, nr_tables
    cdef public Counters counters
    cdef public U64View e, log_old
    cdef public i64 log_nold
    cdef public list pmd_log
    cdef public I64View slot_asid, slot_pmd, slot_epoch
    cdef public list free_slots, log
    cdef public dict log_at
    cdef public StoreObserver observer
    cpdef i64 slot_alloc(self, i64 asid, i64 pmd_index) except? -1
    cpdef slot_free(self, i64 s)
    cpdef i64 va(self, i64 ptep) except? -1
    cpdef new_epoch(self)
    cdef _log_slot(self, i64 s)
    cpdef u64 load(self, i64 ptep) except? -1
    cpdef u64 peek(self, i64 ptep) except? -1
    cpdef store(self, i64 ptep, u64 value)
    cpdef u64 xchg(self, i64 ptep, u64 value) except? -1
    cpdef bint cmpxchg(self, i64 ptep, u64 expected, u64 value) except? -1
    cpdef i64 none_count(self, i64 ptep, i64 nr) except? -1
    cpdef hw_store(self, i64 ptep, u64 value)

cdef class AddressSpace:
    cdef public i64 asid, page_shift, ptrs_per_pte, pmd_shift
    cdef public str name
    cdef public PtePool pool
    cdef public Counters counters
    cdef public dict tables, pmds
    cpdef i64 pte_table(self, i64 pmd_index) except? -2
    cpdef i64 pte_ptr(self, i64 va) except? -2
    cpdef i64 alloc_pte_table(self, i64 pmd_index) except? -1
    cpdef hook_table(self, i64 pmd_index, i64 slot)
    cpdef free_pte_table(self, i64 pmd_index)
    cpdef i64 unhook_table(self, i64 pmd_index) except? -2
    cpdef u64 pmd_load(self, i64 pmd_index) except? -1
    cpdef u64 pmd_peek(self, i64 pmd_index) except? -1
    cpdef pmd_store(self, i64 pmd_index, u64 value)
    cpdef pmd_hw_store(self, i64 pmd_index, u64 value)
