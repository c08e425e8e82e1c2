cimport cython
from contpte.cdefs cimport i64, i32, u64, u32, u8, U64View, I64View, U32View, U8View
from contpte.hw.tables cimport AddressSpace, LogEntry, PtePool
from contpte.arch.pgtable cimport Pgtable
from contpte.mm.memmap cimport MemMap, PG_anon, PG_anon_exclusive, PG_reserved, folio_mapcount
from contpte.mm.kernel cimport Kernel, RmapObserver
from contpte.mm.mm_types cimport (
    MmStruct, Vma, VM_SHARED, VM_UFFD_WP, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, NR_MM_COUNTERS,
)

cdef u32 F_PRESENT, F_VALID, F_SPECIAL, F_WRITE, F_DIRTY, F_CONT, F_UFFD_WP, F_SOFT_DIRTY, F_YOUNG, F_CACHED
cdef u8 M_CLASS, M_W, M_PINNED, M_QUEUED, M_PAGES, NOT_M_CLASS, NOT_M_W, NOT_M_PINNED, NOT_M_QUEUED, NOT_M_QUEUED_PAGES
cdef u8 C_NONE, C_ANON, C_FILE, C_SHMEM
cdef i64 _CACHE_SIZE

@cython.final
cdef class PteDecoder:
    cdef public Pgtable arch
    cdef public bint cacheable
    cdef public u64 protmask, addrmask
    cdef public i64 pfn_shift
    cdef U64View keys
    cdef U32View vals
    cdef u64 p0, p1
    cdef u32 f0, f1
    cdef u32 direct(self, u64 pte) except? -1
    cdef inline u32 flags(self, u64 pte) except? -1
    cdef inline i64 pfn(self, u64 pte) except? -1

@cython.final
cdef class MmShadow:
    cdef public object mm
    cdef public i64 asid, owner, serial, vstart, vend
    cdef public bint vshared
    cdef public I64View rss

@cython.final
cdef class MapShadow:
    cdef public Kernel k
    cdef public MemMap mem
    cdef public PtePool pool
    cdef public Pgtable arch
    cdef public PteDecoder dec
    cdef public i64 flast, tlo, thi, chead, ndense, nr, per, page_shift, pmd_shift, hpage_nr, cont_ptes, serial, nqueue, nfiles, zero0, zero1
    cdef public U8View maps, meta, shm
    cdef public I64View queue, scratch, diffs
    cdef public dict big_maps, big_w, pmd_maps, pin_count, mms
    cdef public set pmd_clean
    cdef public bint suspect, ready
    cdef public u8 ccls
    cdef public str why

    cdef _alloc(self)
    cpdef start(self)
    cdef _refresh(self)
    cdef MmShadow _mm(self, i64 asid)
    cdef inline i64 maps_of(self, i64 p) except? -1
    cdef inline i64 w_of(self, i64 p) except? -1
    cdef inline i32 _maps_inc(self, i64 p) except? -1
    cdef inline bint _maps_dec(self, i64 p) except? -1
    cdef inline i32 _w_inc(self, i64 p) except? -1
    cdef inline bint _w_dec(self, i64 p) except? -1
    cdef u8 class_now(self, i64 head) except? -1
    cdef bint _vma_shared(self, MmShadow ms, i64 va) except? -1
    cdef _sus(self, str why)
    cpdef touch(self, i64 pfn)
    cdef _queue(self, i64 pfn, bint pages)
    cdef inline i32 _touch(self, i64 pfn) except? -1
    cdef inline u8 _class(self, i64 head) except? -1
    cdef i32 _remove(self, MmShadow ms, i64 p, u32 f) except? -1
    cdef i32 _add(self, MmShadow ms, i64 p, u32 f, i64 va) except? -1
    cdef i32 _wgain(self, MmShadow ms, i64 p, i64 va) except? -1
    cdef i32 _wloss(self, i64 p) except? -1
    cdef _pmd_sync(self, list log)
    cpdef sync(self)
    cdef bint _folio_ok(self, i64 h, bint pages) except? -1
    cdef bint _key_ok(self, i64 key, bint pages) except? -1
    cpdef bint check(self) except? -1
    cpdef pin(self, i64 pfn, i64 delta)
    cpdef retire(self, i64 asid)
    cpdef dense(self, object pins)
    cpdef i64 frame_maps(self, i64 pfn) except? -1
    cpdef i64 frame_wmaps(self, i64 pfn) except? -1
    cpdef i64 frame_class(self, i64 pfn) except? -1

@cython.final
cdef class RmapHook(RmapObserver):
    cdef public MapShadow shadow
    cdef public MemMap mem

cpdef fork_copy(MapShadow sh, MmStruct parent, MmStruct child, object pre_pmds, object base=*, i64 skip_below=*)
cdef u64 _U64_MAX
