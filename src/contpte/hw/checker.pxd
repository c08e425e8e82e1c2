cimport cython
from contpte.cdefs cimport i64, u64, U64View, I64View, U8View
from contpte.hw.format cimport DescriptorFormat, L2_BLOCK, L2_INVALID, L2_TABLE, WS_CLEAN, WS_DIRTY, WS_NONE
from contpte.hw.hashmap cimport I64Map
from contpte.hw.memory cimport PhysMemory
from contpte.hw.tables cimport AddressSpace, PtePool, StoreObserver
from contpte.hw.tlb cimport TlbFrameIndex
from contpte.hw.tlbi cimport DSB_NSH, SCOPE_VA

cdef i64 _RECORDS_KEPT, _NEVER, _KEY_SHIFT, _KEY_MASK, _F_ISSUED, _F_COVER, _F_LOCAL
cdef u64 _M1, _M2, _M3, _ALL
cdef i64 _SET_OK, _SET_MIS, _SET_OA, _SET_ATTR

cdef u64 _mix(i64 idx, u64 v) noexcept
cdef i64 _ctz(u64 x) noexcept

@cython.final
cdef class PmdBreak:
    cdef public u64 old
    cdef public i64 seq, cover, issued, local

@cython.final
cdef class RuleChecker(StoreObserver):
    cdef public PtePool pool
    cdef public DescriptorFormat fmt
    cdef public PhysMemory memory
    cdef public i64 ncpus, bbm_level, page_shift, shift, ptrs, pmd_shift, cn, blk_shift, bpt, dw
    cdef public bint arm, hd, noabort, concurrent
    cdef public i64 seq, violations, nslots
    cdef public dict spaces, pmd_breaks, pmd_shadow, unflushed, unflushed_pmd, asid_cpus
    cdef public dict unflushed_cov, unflushed_pmd_cov
    cdef public list pending, tlbs
    cdef public TlbFrameIndex frames
    cdef public U64View cks, dirty
    cdef public U8View detached
    cdef public I64Map brk
    cdef public i64 n_brk, nrec, rec_free
    cdef public I64View r_key, r_npend, b_seq, b_cover, b_issued, b_local
    cdef public U64View b_old
    cdef i64 _new_record(self, i64 key) except? -1
    cdef _free_record(self, i64 r)
    cdef _raise(self, str rule, str message, i64 addr, object ptes)
    cpdef on_frames_free(self, i64 pfn, i64 npages)
    cpdef bint reduces(self, u64 old, u64 new) except? -1
    cdef bint _grants_less(self, u64 old, u64 new) except? -1
    cpdef note_walk(self, i64 asid, i64 cpu)
    cpdef object take_unflushed(self)
    cdef _drop_unflushed(self, i64 cpu, bint broadcast, i64 scope, i64 asid, i64 vpn, i64 npages, i64 level)
    cdef object _reached(self, object owed, bint pmd, i64 cpu, bint broadcast, i64 scope, i64 asid, i64 vpn, i64 npages)
    cdef i64 _vpn(self, i64 ptep) except? -1
    cpdef bint needs_bbm(self, u64 old, u64 new) except? -1
    cdef _record_break(self, i64 ptep, u64 old)
    cdef _check_make(self, i64 ptep, u64 new)
    cdef _check_break_covered(self, i64 r, i64 off, i64 vpn, u64 old, u64 new)
    cdef _check_pmd_break_covered(self, PmdBreak pb, i64 asid, i64 pmd_index, str what)
    cdef _pmd_over_breaks(self, i64 asid, i64 pmd_index, u64 new)
    cdef i64 _set_fault(self, i64 p0) except? -1
    cdef _check_set(self, i64 p0, i64 cpu)
    cdef _verify_block(self, i64 s, i64 b)
    cpdef ptl_release(self, AddressSpace space, i64 slot)
    cpdef on_fill(self, i64 cpu, AddressSpace space, i64 vbase, i64 npages, u64 desc, i64 ptep, i64 level, i64 overlaps, i64 ov_npages, u64 ov_desc)
    cpdef i64 tlb_use_ok(self, AddressSpace space, i64 vpn, i64 n, i64 ptep, i64 pfn, bint write) except? -1
    cdef inline bint _grants_write(self, u64 d) noexcept
    cpdef on_tlb_use(self, i64 cpu, AddressSpace space, i64 vpn, i64 ptep, i64 pfn, u64 desc, bint write)
    cpdef on_tlbi(self, i64 cpu, bint broadcast, i64 scope, i64 asid, i64 vpn, i64 npages, i64 level, bint complete)
    cpdef on_dsb(self, i64 cpu, i64 domain)
    cdef _apply(self, i64 seq, i64 scope, i64 asid, i64 vpn, i64 npages, i64 level, i64 field)
    cdef _mark(self, i64 r, i64 seq, i64 vpn, i64 npages, i64 field)
    cdef bint _covered(self, i64 r) except? -1
    cdef _apply_pmd(self, i64 seq, i64 scope, i64 asid, i64 vpn, i64 npages, i64 field)
