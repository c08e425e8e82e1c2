cimport cython
from contpte.cdefs cimport i64, u64, U64View, I64View
from contpte.counters cimport Counters
from contpte.hw.checker cimport RuleChecker
from contpte.hw.format cimport DescriptorFormat
from contpte.hw.memory cimport PhysMemory
from contpte.hw.tables cimport AddressSpace, PtePool
from contpte.hw.tlb cimport Tlb, TlbFrameIndex, ASID_LIMIT, VPN_LIMIT
from contpte.hw.tlbi cimport (
    DSB_ISH, DSB_OSH, DSB_SY, SCOPE_ASID, SCOPE_VA, TLBI_INVLPG, TLBI_INVPCID,
    tlbi_broadcast, tlbi_by_asid, tlbi_is_range, tlbi_scope, tlbi_valid,
)

cdef i64 C_HIT, C_MISS, C_WALK, C_CONFLICT, C_AF, C_DIRTY, C_IPI, C_DVM_SYNC
cdef i64 _F_TRANSLATION, _F_PERMISSION, _F_ACCESS_FLAG
cdef i64 C_FAULT_TRANSLATION, C_FAULT_PERMISSION, C_FAULT_ACCESS_FLAG

@cython.final
cdef class Hardware:
    cdef public object features, rng, getrandbits, last_fault, wc_space, yield_hook
    cdef public DescriptorFormat fmt
    cdef public bint flat, adversarial_tlb, ha, hd
    cdef public i64 page_shift, page_size, ptrs_per_pte, pmd_shift, ncpus, current_cpu, cont_entry_pages
    cdef public Counters counters
    cdef public PhysMemory memory
    cdef public PtePool pool
    cdef public RuleChecker checker
    cdef public list tlbs
    cdef public dict spaces
    cdef public set retired
    cdef public I64View tlbi_cid, dsb_cid, dvm_pending, ha_of, hd_of
    cdef public list cpu_features
    cdef public i64 fault_ptep
    cdef public u64 fault_desc
    cdef U64View zero1
    cdef public i64 n_hit, n_miss, n_walk, wc_pmd, wc_slot
    cdef public u64 wc_l2
    cdef i64 _access(self, i64 cpu, AddressSpace space, i64 vpn0, i64 npages, bint write, bint per_page, U64View vals, u64 scalar, bint has_out, U64View outv) except? -1
    cdef _flush_counts(self)
    cdef i64 _resolve(self, i64 cpu, Tlb tlb, AddressSpace space, i64 vpn, bint write) except? -2
    cdef i64 _fault(self, i64 cpu, AddressSpace space, i64 kind, i64 vpn, i64 level, bint write) except? -2
    cdef i64 _walk(self, i64 cpu, AddressSpace space, i64 vpn, bint write, bint after_miss) except? -2
    cdef i64 _randbelow(self, i64 n) except? -1
    cdef i64 _use_descriptor(self, i64 cpu, AddressSpace space, i64 ptep, i64 pmd_index, u64 d, i64 level, i64 vpn, bint write, bint after_miss) except? -2
    cdef i64 _ttl_level(self, i64 ttl) except? -2
    cdef i64 _tlbi_counter(self, i64 op) except? -1
    cpdef tlbi_op(self, i64 op, i64 asid, i64 va, i64 ttl)
    cpdef tlbi_range_op(self, i64 op, i64 asid, i64 va, i64 scale, i64 num, i64 ttl)
    cpdef dsb_op(self, i64 domain)
    cpdef invlpg(self, i64 cpu, i64 asid, i64 va)
    cpdef invpcid(self, i64 cpu, i64 asid)
    cpdef ipi(self, i64 src, i64 dst)
