"""The structural validators' shadow state, kept up to date from the store log.

Like the kernel's page_table_check (mm/page_table_check.c), the validators
keep their own count of how each frame is mapped, derived from the page
tables -- the ground truth the hardware walks -- and never from the
structures they check (mem_map, the RSS counters).  ``MapShadow`` holds:

- per frame (``maps``, ``meta``: 2 bytes): the present, non-special PTEs
  mapping it in every address space (u8, overflow in ``big_maps``); the
  writable ones of private mappings (2 bits, overflow in ``big_w``); the RSS
  class the mappings were counted under (anon / file / shmem, 2 bits); a
  pinned bit; a queued bit;
- per PMD-mapped pfn: its PMD maps (``pmd_maps``, a dict: PMD maps are few);
- per mm (``MmShadow``, by ASID): the RSS its tables account for.

After a syscall ``sync`` applies the store log (``PtePool.log``: every table
written, allocated or freed since the epoch began, with its descriptors
from before; ``pmd_log`` for level-2 stores): one compiled pass over the
changed entries of each logged table, removals before additions (a frame
freed and reused within the syscall is counted under the right class), and
queues the folio of every frame whose mappings changed.  ``check`` then
compares the shadow with mem_map for the queued folios only (mapcount,
entire mapcount, refcount >= mappings, PageAnonExclusive of writable
private pages, writable pages mapped once, pinned anon pages mapped once)
and every mm's RSS counters.  Its cost follows what the syscall touched.

``check`` only decides whether something may be wrong.  ``dense`` recounts
the shadow from every table (from scratch, trusting nothing kept) and runs
the checks over every frame in a fixed order (per mm: its tables in
address order, its PMDs, its RSS; then per frame in pfn order: mapcount,
entire mapcount, refcount, pins, writable-shared): the violation it returns
is the first in that order, with the message.  The validators run it on any
suspect, and for ``m.check()``; so every verdict is the dense one.

``fork_copy`` checks that a child's tables copy its parent's pre-fork ones
(the parent's old descriptors come from the store log of the fork).
``RmapHook`` is the kernel's ``RmapObserver``: refcount >= mapcount right
after every rmap increase, and the folio queued for the next check.

Compiled (docs/core.md).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import cython
import numpy as np

from ..errors import InvariantViolation

if TYPE_CHECKING:
    #: pid -> frames pinned (Cython sees an object)
    Pins = dict[int, list[int]]

if not cython.compiled:
    from ..arch.pgtable import Pgtable
    from ..cdefs import I64View, U8View, U64View, i32, i64, u8, u32, u64
    from ..hw.tables import AddressSpace, LogEntry, PtePool
    from ..mm.kernel import Kernel, RmapObserver
    from ..mm.memmap import MemMap, PG_anon, PG_anon_exclusive, PG_reserved, folio_mapcount
    from ..mm.mm_types import (
        MM_ANONPAGES,
        MM_FILEPAGES,
        MM_SHMEMPAGES,
        NR_MM_COUNTERS,
        VM_SHARED,
        VM_UFFD_WP,
        MmStruct,
        Vma,
    )

__all__ = ["PteDecoder", "MmShadow", "MapShadow", "RmapHook", "fork_copy", "decoder_probe"]

# Decoded PTE fields (``PteDecoder.flags``); all zero for a non-present entry.
F_PRESENT = cython.declare(u32, 1 << 0)
F_VALID = cython.declare(u32, 1 << 1)
F_SPECIAL = cython.declare(u32, 1 << 2)
F_WRITE = cython.declare(u32, 1 << 3)
F_DIRTY = cython.declare(u32, 1 << 4)
F_CONT = cython.declare(u32, 1 << 5)
F_UFFD_WP = cython.declare(u32, 1 << 6)
F_SOFT_DIRTY = cython.declare(u32, 1 << 7)
F_YOUNG = cython.declare(u32, 1 << 8)
F_CACHED = cython.declare(u32, 1 << 31)
_CACHE_SIZE = cython.declare(i64, 256)

# Per-frame meta byte.
M_CLASS = cython.declare(u8, 0x03)
M_W = cython.declare(u8, 0x0C)
M_PINNED = cython.declare(u8, 0x10)
M_QUEUED = cython.declare(u8, 0x20)
M_PAGES = cython.declare(u8, 0x40)
NOT_M_CLASS = cython.declare(u8, 0xFF ^ 0x03)
NOT_M_W = cython.declare(u8, 0xFF ^ 0x0C)
NOT_M_PINNED = cython.declare(u8, 0xFF ^ 0x10)
NOT_M_QUEUED = cython.declare(u8, 0xFF ^ 0x20)
NOT_M_QUEUED_PAGES = cython.declare(u8, 0xFF ^ 0x60)
# RSS classes (``MapShadow.class_now``).
C_NONE = cython.declare(u8, 0)
C_ANON = cython.declare(u8, 1)
C_FILE = cython.declare(u8, 2)
C_SHMEM = cython.declare(u8, 3)

_U64_MAX = cython.declare(u64, (1 << 64) - 1)
#: Per arch class and granule: (cacheable, protmask, addrmask, pfn shift).
_PROBED: dict[tuple[type, int], tuple[bool, int, int, int]] = {}


@cython.cfunc
@cython.exceptval(-1, check=True)
def _direct_flags(a: Pgtable, pte: u64) -> u32:
    """The ``F_*`` fields of ``pte`` through the arch's helpers (no cache)."""
    if pte == 0 or not a.pte_present(pte):
        return 0
    f: u32 = F_PRESENT
    if a.pte_valid(pte):
        f |= F_VALID
    if a.pte_special(pte):
        f |= F_SPECIAL
    if a.pte_write(pte):
        f |= F_WRITE
    if a.pte_dirty(pte):
        f |= F_DIRTY
    if a.pte_cont(pte):
        f |= F_CONT
    if a.pte_uffd_wp(pte):
        f |= F_UFFD_WP
    if a.pte_soft_dirty(pte):
        f |= F_SOFT_DIRTY
    if a.pte_young(pte):
        f |= F_YOUNG
    return f


def decoder_probe(arch: Any) -> tuple[bool, int, int, int]:
    """Whether the arch's PTE format splits into an output address and the
    rest, on which every field the validators read depends alone.

    Probed once per arch class and granule on the arch's own PTEs (every
    protection, every modifier) and random words: ``pte_pgprot`` is a mask
    (``protmask``), ``pte_pfn`` is the other bits shifted, and the decoded
    fields of a descriptor equal those of its ``pte_pgprot``.  Then the
    decoder caches fields by ``pte_pgprot`` and reads pfns with a mask;
    otherwise it calls the helpers for every entry.  Returns (cacheable,
    protmask, addrmask, pfn shift).
    """
    key = (type(arch), int(arch.PAGE_SHIFT))
    got = _PROBED.get(key)
    if got is not None:
        return got
    rng = random.Random(0x5EED)
    protmask = int(arch.pte_pgprot(_U64_MAX)) & _U64_MAX
    addrmask = _U64_MAX ^ protmask
    shift = int(arch.PFN_PTE_SHIFT)
    probes: list[int] = [_U64_MAX, 1]
    mods = (
        "pte_mkwrite",
        "pte_wrprotect",
        "pte_mkdirty",
        "pte_mkclean",
        "pte_mkold",
        "pte_mkyoung",
        "pte_mkspecial",
        "pte_mkuffd_wp",
        "pte_mksoft_dirty",
        "pte_mkcont",
    )
    for flags in range(16):
        try:
            prot = int(arch.vm_get_page_prot(flags))
        except Exception:  # a protection this backend lacks
            continue
        for pfn in (1, 0x12345):
            pte = int(arch.pfn_pte(pfn, prot))
            probes.append(pte)
            for a in mods:
                for b in (None, "pte_mkwrite", "pte_wrprotect", "pte_mkdirty"):
                    try:
                        x = getattr(arch, a)(pte)
                        if b is not None:
                            x = getattr(arch, b)(x)
                    except Exception:  # a helper this backend lacks
                        continue
                    probes.append(int(x) & _U64_MAX)
    for _ in range(256):
        probes.append(rng.getrandbits(64))
        probes.append(rng.getrandbits(64) & rng.getrandbits(64))
    ok = True
    for v in probes:
        if int(arch.pte_pgprot(v)) & _U64_MAX != v & protmask:
            ok = False
            break
        if _direct_flags(arch, v) != _direct_flags(arch, v & protmask):
            ok = False
            break
        if _direct_flags(arch, v) and int(arch.pte_pfn(v)) != (v & addrmask) >> shift:
            ok = False
            break
    got = (ok, protmask, addrmask, shift)
    _PROBED[key] = got
    return got


@cython.final
@cython.cclass
class PteDecoder:
    """The fields of raw PTEs the validators read, through the arch's helpers.

    ``flags(pte)``: ``F_*`` bits (0 unless present); ``pfn(pte)``.  When the
    format allows (``decoder_probe``), fields are cached by ``pte_pgprot``
    (direct-mapped, 256 entries) and the pfn is read with a mask.
    """

    def __init__(self, arch: Pgtable) -> None:
        self.arch = arch
        ok, pm, am, sh = decoder_probe(arch)
        self.cacheable = ok
        self.protmask = pm
        self.addrmask = am
        self.pfn_shift = sh
        self.keys = np.zeros(_CACHE_SIZE, dtype=np.uint64)
        self.vals = np.zeros(_CACHE_SIZE, dtype=np.uint32)
        # the two attribute sets seen last (0: none; a zero entry never gets here)
        self.p0 = 0
        self.f0 = 0
        self.p1 = 0
        self.f1 = 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def direct(self, pte: u64) -> u32:
        return _direct_flags(self.arch, pte)

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def flags(self, pte: u64) -> u32:
        if pte == 0:
            return 0
        if not self.cacheable:
            return self.direct(pte)
        prot: u64 = pte & self.protmask
        # runs of entries share their attributes: the last two first
        if prot == self.p0:
            return self.f0
        v: u32
        if prot == self.p1:
            v = self.f1
        else:
            # a fold of the attribute bits (no multiply: exact for numpy scalars too)
            h: i64 = cython.cast(
                i64, (prot ^ (prot >> 7) ^ (prot >> 19) ^ (prot >> 31) ^ (prot >> 43) ^ (prot >> 53)) & 255
            )
            v = self.vals[h]
            if v & F_CACHED and self.keys[h] == prot:
                v &= F_CACHED - 1
            else:
                v = self.direct(prot)
                self.keys[h] = prot
                self.vals[h] = v | F_CACHED
        self.p1 = self.p0
        self.f1 = self.f0
        self.p0 = prot
        self.f0 = v
        return v

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def pfn(self, pte: u64) -> i64:
        if self.cacheable:
            return cython.cast(i64, (pte & self.addrmask) >> self.pfn_shift)
        return self.arch.pte_pfn(pte)


@cython.final
@cython.cclass
class MmShadow:
    """What one address space's tables account for: RSS ([file, anon, swap, shmem]).

    ``vstart``/``vend``/``vshared``: the last VMA looked up in a sync.
    """

    def __init__(self, mm: Any, asid: i64) -> None:
        self.mm = mm
        self.asid = asid
        self.owner = cython.cast(MmStruct, mm).owner if mm is not None else -1
        self.serial = -1
        self.vstart = 0
        self.vend = 0
        self.vshared = False
        self.rss = np.zeros(NR_MM_COUNTERS, dtype=np.int64)


@cython.cfunc
@cython.boundscheck(False)
@cython.exceptval(-1)
def _diffs(old: U64View, ob: i64, e: U64View, nb: i64, per: i64, out: I64View) -> i64:
    """The indices of the ``per`` entries where row ``ob`` of ``old`` and row ``nb``
    of ``e`` differ (-1: a row of zeros), into ``out``; how many.

    The compare of every logged table's entries: bounds are checked once here,
    not per entry.
    """
    if (ob >= 0 and ob + per > old.shape[0]) or (nb >= 0 and nb + per > e.shape[0]) or out.shape[0] < per:
        raise IndexError(f"store log rows {ob}, {nb} out of range")
    n: i64 = 0
    i: i64
    j: i64
    a: i64
    b: i64
    if ob >= 0 and nb >= 0:
        if per & 7:
            for i in range(per):
                if old[ob + i] != e[nb + i]:
                    out[n] = i
                    n += 1
            return n
        # eight entries at a time: a logged table is mostly unchanged
        for j in range(0, per, 8):
            a = ob + j
            b = nb + j
            if (
                (old[a] ^ e[b])
                | (old[a + 1] ^ e[b + 1])
                | (old[a + 2] ^ e[b + 2])
                | (old[a + 3] ^ e[b + 3])
                | (old[a + 4] ^ e[b + 4])
                | (old[a + 5] ^ e[b + 5])
                | (old[a + 6] ^ e[b + 6])
                | (old[a + 7] ^ e[b + 7])
            ) == 0:
                continue
            for i in range(j, j + 8):
                if old[ob + i] != e[nb + i]:
                    out[n] = i
                    n += 1
    elif nb >= 0:
        for i in range(per):
            if e[nb + i] != 0:
                out[n] = i
                n += 1
    elif ob >= 0:
        for i in range(per):
            if old[ob + i] != 0:
                out[n] = i
                n += 1
    return n


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _either(p: i64, a: i64, b: i64) -> cython.bint:
    """``p in (a, b)`` without a tuple."""
    return (p == a) | (p == b)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _member(cls: u8) -> i64:
    """The RSS counter of a class (``MM_*``)."""
    if cls == C_ANON:
        return MM_ANONPAGES
    if cls == C_SHMEM:
        return MM_SHMEMPAGES
    return MM_FILEPAGES


@cython.final
@cython.cclass
class MapShadow:
    """The validators' count of every frame's mappings (see the module docstring)."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.mem = kernel.memmap
        self.arch = kernel.arch
        self.pool = kernel.arch.pool
        self.dec = PteDecoder(kernel.arch)
        self.nr = kernel.memmap.nr_frames
        self.per = self.pool.ptrs_per_pte
        self.page_shift = self.pool.page_shift
        self.pmd_shift = self.pool.pmd_shift
        self.hpage_nr = kernel.arch.HPAGE_PMD_NR
        self.cont_ptes = kernel.arch.CONT_PTES
        self.serial = 0
        #: pfn -> PTE maps, for counts of 255 and more
        self.big_maps: dict[int, int] = {}
        #: pfn -> writable private PTE maps, for counts of 3 and more
        self.big_w: dict[int, int] = {}
        #: pfn -> PMD maps
        self.pmd_maps: dict[int, int] = {}
        #: pfn -> pins held (by every process)
        self.pin_count: dict[int, int] = {}
        #: ASID -> MmShadow
        self.mms: dict[int, MmShadow] = {}
        #: PMD-mapped folios with no PTE-mapped page at their last full compare
        self.pmd_clean: set[int] = set()
        self.suspect = False
        self.why = ""
        self.ndense = 0
        self.ready = False
        self.maps = np.zeros(0, dtype=np.uint8)
        self.meta = np.zeros(0, dtype=np.uint8)
        self.shm = np.zeros(0, dtype=np.uint8)
        self.nfiles = -1
        self.flast = -1
        self.queue = np.zeros(0, dtype=np.int64)
        self.scratch = np.zeros(0, dtype=np.int64)
        self.diffs = np.zeros(0, dtype=np.int64)
        self.nqueue = 0
        self.zero0 = -1
        self.zero1 = -1
        #: the range of the folio queued last, and the folio whose class is known (in a sync)
        self.tlo = 0
        self.thi = 0
        self.chead = -1
        self.ccls = 0

    def __repr__(self) -> str:
        return f"<MapShadow {self.nr} frames, {len(self.mms)} mms, {self.nqueue} queued>"

    def nbytes(self) -> int:
        """Memory kept (arrays and dict entries, approximately)."""
        n = 2 * self.nr + 8 * (self.queue.shape[0] + self.scratch.shape[0]) + self.shm.shape[0]
        n += 100 * (len(self.big_maps) + len(self.big_w) + len(self.pmd_maps) + len(self.pin_count))
        return n + 200 * len(self.mms)

    # -- state -----------------------------------------------------------------
    @cython.cfunc
    def _alloc(self) -> None:
        """The per-frame arrays (2 bytes per frame), on first use."""
        if not self.ready:
            self.maps = np.zeros(self.nr, dtype=np.uint8)
            self.meta = np.zeros(self.nr, dtype=np.uint8)
            self.queue = np.zeros(64, dtype=np.int64)
            self.scratch = np.zeros(self.per, dtype=np.int64)
            self.ready = True

    @cython.ccall
    def start(self) -> None:
        """Allocate the per-frame arrays now (the validators run after every syscall)."""
        self._alloc()

    @cython.cfunc
    def _refresh(self) -> None:
        """The zero pages and the shmem file ids, as they are now."""
        self._alloc()
        self.zero0 = self.k.zero_pfn
        self.zero1 = self.k.huge_zero_pfn
        files: dict[int, Any] = self.k.files
        # File ids only grow and files are added in id order (the last key is
        # the newest); files go away (a shared anonymous object unmapped):
        # recompute when the count or the newest id changed.
        last: i64 = next(reversed(files)) if files else -1
        if len(files) != self.nfiles or last != self.flast:
            top = max(files) + 1 if files else 0
            shm = np.zeros(max(top, 1), dtype=np.uint8)
            for fid, f in files.items():
                if fid >= 0 and f.shmem:
                    shm[fid] = 1
            self.shm = shm
            self.nfiles = len(files)
            self.flast = last

    @cython.cfunc
    def _mm(self, asid: i64) -> MmShadow:
        ms = self.mms.get(asid)
        if ms is None:
            mm: Any = None
            for x in self.k.mms:
                if cython.cast(MmStruct, x).space.asid == asid:
                    mm = x
                    break
            ms = MmShadow(mm, asid)
            self.mms[asid] = ms
        s: MmShadow = ms
        if s.serial != self.serial:
            s.serial = self.serial
            s.vstart = 0
            s.vend = 0
        return s

    @cython.ccall
    def retire(self, asid: i64) -> None:
        """Forget an exited mm (after its tables' removal was synced)."""
        self.mms.pop(asid, None)

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def maps_of(self, p: i64) -> i64:
        m: i64 = self.maps[p]
        if m < 255:
            return m
        return cython.cast(i64, self.big_maps[p])

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def w_of(self, p: i64) -> i64:
        w: i64 = (self.meta[p] >> 2) & 3
        if w < 3:
            return w
        return cython.cast(i64, self.big_w[p])

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def _maps_inc(self, p: i64) -> i32:
        m: i64 = self.maps[p]
        if m < 254:
            self.maps[p] = m + 1
        elif m == 254:
            self.maps[p] = 255
            self.big_maps[p] = 255
        else:
            self.big_maps[p] = self.big_maps[p] + 1
        return 0

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def _maps_dec(self, p: i64) -> cython.bint:
        m: i64 = self.maps[p]
        if m == 0:
            return False
        if m < 255:
            self.maps[p] = m - 1
            return True
        c: i64 = self.big_maps[p] - 1
        if c < 255:
            del self.big_maps[p]
            self.maps[p] = c
        else:
            self.big_maps[p] = c
        return True

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def _w_inc(self, p: i64) -> i32:
        w: i64 = (self.meta[p] >> 2) & 3
        if w < 2:
            self.meta[p] = self.meta[p] + 4
        elif w == 2:
            self.meta[p] = self.meta[p] | M_W
            self.big_w[p] = 3
        else:
            self.big_w[p] = self.big_w[p] + 1
        return 0

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def _w_dec(self, p: i64) -> cython.bint:
        w: i64 = (self.meta[p] >> 2) & 3
        if w == 0:
            return False
        if w < 3:
            self.meta[p] = self.meta[p] - 4
            return True
        c: i64 = self.big_w[p] - 1
        if c < 3:
            del self.big_w[p]
            self.meta[p] = (self.meta[p] & NOT_M_W) | cython.cast(u8, c << 2)
        else:
            self.big_w[p] = c
        return True

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def class_now(self, head: i64) -> u8:
        """The RSS class of the folio at ``head`` in mem_map now."""
        mem: MemMap = self.mem
        if mem.flags[head] & PG_anon:
            return C_ANON
        m: i64 = mem.mapping[head]
        if 0 <= m < self.shm.shape[0] and self.shm[m]:
            return C_SHMEM
        return C_FILE

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _vma_shared(self, ms: MmShadow, va: i64) -> cython.bint:
        if ms.vstart <= va < ms.vend:
            return ms.vshared
        if ms.mm is None:
            return False
        v = cython.cast(MmStruct, ms.mm).vma_lookup(va)
        if v is None:
            return False
        vma: Vma = v
        ms.vstart = vma.vm_start
        ms.vend = vma.vm_end
        ms.vshared = (vma.vm_flags & VM_SHARED) != 0
        return ms.vshared

    @cython.cfunc
    def _sus(self, why: str) -> None:
        if not self.suspect:
            self.suspect = True
            self.why = why

    @cython.ccall
    def touch(self, pfn: i64) -> None:
        """Queue the folio of ``pfn`` (or the frame, if free) for the next ``check``."""
        self._queue(pfn, True)

    @cython.cfunc
    def _queue(self, pfn: i64, pages: cython.bint) -> None:
        """Queue the folio of ``pfn``; ``pages``: its pages' mappings changed (not
        only its PMD maps), so each page must be compared."""
        if pfn < 0 or pfn >= self.nr:
            return
        if not self.ready:
            self._alloc()
        mem: MemMap = self.mem
        key: i64 = pfn
        h: i64 = mem.head[pfn]
        o: i64
        mk: u8
        if h == pfn:
            # a head (an order-0 folio's page): already queued, as needed?
            mk = self.meta[pfn]
            if mk & M_QUEUED and (mk & M_PAGES or not pages):
                return
        if h >= 0:
            o = mem.order[h]
            if h > pfn or o < 0 or o > 30 or pfn >= h + (cython.cast(i64, 1) << o):
                self._sus("a frame outside the folio its head names")
            else:
                key = h
        self.tlo = key
        self.thi = key + 1 if key != h else h + (cython.cast(i64, 1) << o)
        if pages:
            self.meta[key] = self.meta[key] | M_PAGES
        if self.meta[key] & M_QUEUED:
            return
        self.meta[key] = self.meta[key] | M_QUEUED
        n: i64 = self.nqueue
        if n >= self.queue.shape[0]:
            grown = np.zeros(2 * n + 64, dtype=np.int64)
            grown[:n] = np.asarray(self.queue)[:n]
            self.queue = grown
        self.queue[n] = key
        self.nqueue = n + 1

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def _touch(self, pfn: i64) -> i32:
        """``touch`` in a sync, where folios do not change: the pages of the last
        folio queued (the usual next ones) cost one compare."""
        if self.tlo <= pfn < self.thi:
            return 0
        self.touch(pfn)
        return 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    @cython.inline
    def _class(self, head: i64) -> u8:
        """``class_now`` in a sync, remembered for the last folio."""
        if head != self.chead:
            self.chead = head
            self.ccls = self.class_now(head)
        return self.ccls

    @cython.ccall
    def pin(self, pfn: i64, delta: i64) -> None:
        """A pin of ``pfn`` taken (+1) or released (-1) by a process."""
        self._alloc()
        if pfn < 0 or pfn >= self.nr:
            return
        c: i64 = self.pin_count.get(pfn, 0) + delta
        if c > 0:
            self.pin_count[pfn] = c
            self.meta[pfn] = self.meta[pfn] | M_PINNED
        else:
            self.pin_count.pop(pfn, None)
            self.meta[pfn] = self.meta[pfn] & NOT_M_PINNED
        self.touch(pfn)

    # -- applying the store log -------------------------------------------------
    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _remove(self, ms: MmShadow, p: i64, f: u32) -> i32:
        """A present, non-special PTE mapping ``p`` with fields ``f`` went away."""
        if p < 0 or p >= self.nr:
            return 0  # never counted (it was a suspect when it appeared)
        if not self._maps_dec(p):
            self._sus("a mapping removed that was not counted")
            return 0
        cls: u8 = self.meta[p] & M_CLASS
        if f & F_WRITE and cls == C_ANON:
            if not self._w_dec(p):
                self._sus("a writable mapping removed that was not counted")
        if cls == C_NONE:
            self._sus("a mapping of no class")
        ms.rss[_member(cls)] -= 1
        self._touch(p)
        return 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _add(self, ms: MmShadow, p: i64, f: u32, va: i64) -> i32:
        """A present, non-special PTE mapping ``p`` with fields ``f`` appeared at ``va``."""
        if p < 0 or p >= self.nr:
            self._sus("a PTE maps a frame that does not exist")
            return 0
        h: i64 = self.mem.head[p]
        cls: u8
        if h < 0:
            self._sus("a PTE maps a free frame")
            cls = C_FILE
        else:
            cls = self._class(h)
        if self.maps[p] == 0:
            self.meta[p] = (self.meta[p] & NOT_M_CLASS) | cls
        elif (self.meta[p] & M_CLASS) != cls:
            self._sus("a frame's class changed while mapped")
            cls = self.meta[p] & M_CLASS
        self._maps_inc(p)
        if f & F_WRITE:
            self._wgain(ms, p, va)
        ms.rss[_member(cls)] += 1
        self._touch(p)
        return 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _wgain(self, ms: MmShadow, p: i64, va: i64) -> i32:
        """A writable mapping of ``p`` at ``va`` (counted when private and anon)."""
        cls: u8 = self.meta[p] & M_CLASS
        if self._vma_shared(ms, va):
            if cls == C_ANON:
                self._sus("an anon page writable through a shared mapping")
            return 0
        if cls != C_ANON:
            self._sus("writable-anon-exclusive: a private writable PTE maps a page that is not anon")
            return 0
        self._w_inc(p)
        if not self.mem.flags[p] & PG_anon_exclusive:
            self._sus("writable-anon-exclusive")
        return 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _wloss(self, p: i64) -> i32:
        if (self.meta[p] & M_CLASS) == C_ANON and not self._w_dec(p):
            self._sus("a writable mapping lost that was not counted")
        return 0

    @cython.ccall
    def sync(self) -> None:
        """Apply the store log to the shadow, queue what changed, start a new epoch."""
        pool: PtePool = self.pool
        if pool.epoch < 0:
            return
        self._refresh()
        self.serial += 1
        self.tlo = 0
        self.thi = 0
        self.chead = -1
        dec: PteDecoder = self.dec
        log: list[Any] = pool.log
        per: i64 = self.per
        e: U64View = pool.e
        old: U64View = pool.log_old
        nlog: i64 = len(log)
        ent: LogEntry
        ms: MmShadow
        j: i64
        i: i64
        o: u64
        n: u64
        fo: u32
        fn: u32
        po: i64
        pn: i64
        ob: i64
        nb: i64
        na: i64
        va0: i64
        if nlog:
            # pass 1: removals and changes that keep the frame; additions are
            # kept (entry indices per log entry) for pass 2
            if self.scratch.shape[0] < per + nlog:
                self.scratch = np.zeros(per + nlog, dtype=np.int64)
            adds: I64View = self.scratch
            if self.diffs.shape[0] < per:
                self.diffs = np.zeros(per, dtype=np.int64)
            diffs: I64View = self.diffs
            nd: i64
            t: i64
            na = 0
            for j in range(nlog):
                ent = log[j]
                ms = self._mm(ent.asid)
                ob = ent.old_at * per if ent.old_at >= 0 else -1
                nb = ent.slot * per if ent.alive else -1
                va0 = ent.pmd_index << self.pmd_shift
                cnt_at: i64 = na
                na += 1
                if ob < 0:
                    # allocated in the epoch: nothing to remove; pass 2 scans it
                    adds[cnt_at] = -1 if nb >= 0 else 0
                    continue
                if na + per + nlog - j > adds.shape[0]:
                    # room for this table's additions and the other tables' counts
                    grown = np.zeros(2 * adds.shape[0] + per, dtype=np.int64)
                    grown[:na] = np.asarray(adds)[:na]
                    self.scratch = grown
                    adds = self.scratch
                nd = _diffs(old, ob, e, nb, per, diffs)
                for t in range(nd):
                    i = diffs[t]
                    o = old[ob + i]
                    n = e[nb + i] if nb >= 0 else 0
                    fo = dec.flags(o)
                    fn = dec.flags(n)
                    if (fn & (F_PRESENT | F_SPECIAL)) == F_PRESENT:
                        pn = dec.pfn(n)
                        if (fo & (F_PRESENT | F_SPECIAL)) == F_PRESENT:
                            po = dec.pfn(o)
                            if po == pn:
                                # the same frame: at most the write permission changed
                                if (fo ^ fn) & F_WRITE and 0 <= pn < self.nr:
                                    if fn & F_WRITE:
                                        self._wgain(ms, pn, va0 + (i << self.page_shift))
                                    else:
                                        self._wloss(pn)
                                    self._touch(pn)
                                continue
                            self._remove(ms, po, fo)
                        adds[na] = i
                        na += 1
                    elif (fo & (F_PRESENT | F_SPECIAL)) == F_PRESENT:
                        self._remove(ms, dec.pfn(o), fo)
                adds[cnt_at] = na - cnt_at - 1
            # pass 2: additions
            na = 0
            for j in range(nlog):
                ent = log[j]
                cnt: i64 = adds[na]
                na += 1
                if not cnt:
                    continue
                ms = self._mm(ent.asid)
                nb = ent.slot * per
                va0 = ent.pmd_index << self.pmd_shift
                if cnt < 0:
                    # a new table: every entry is an addition
                    nd = _diffs(old, -1, e, nb, per, diffs)
                    for t in range(nd):
                        i = diffs[t]
                        n = e[nb + i]
                        fn = dec.flags(n)
                        if (fn & (F_PRESENT | F_SPECIAL)) == F_PRESENT:
                            self._add(ms, dec.pfn(n), fn, va0 + (i << self.page_shift))
                    continue
                for i in range(na, na + cnt):
                    n = e[nb + adds[i]]
                    fn = dec.flags(n)
                    self._add(ms, dec.pfn(n), fn, va0 + (adds[i] << self.page_shift))
                na += cnt
            if self.scratch.shape[0] > 4 * (per + 1):
                # a big epoch's scratch is not kept between syscalls
                self.scratch = np.zeros(per + 1, dtype=np.int64)
        if pool.pmd_log:
            self._pmd_sync(pool.pmd_log)
        pool.new_epoch()

    @cython.cfunc
    def _pmd_sync(self, log: list[Any]) -> None:
        """Level-2 block changes: PMD maps per pfn, RSS, writable PMDs of non-exclusive folios."""
        # The first logged old value of each (ASID, level-2 index) is its value
        # before the syscall: its position in the log, by an int key (a
        # level-2 index is below 2**32), in the order of first appearance.
        first: dict[int, int] = {}
        space: AddressSpace
        ent: tuple[Any, ...]
        j: i64
        idx: i64
        key: i64
        for j in range(len(log)):
            ent = log[j]
            space = ent[0]
            idx = ent[1]
            key = (space.asid << 32) | idx
            if key not in first:
                first[key] = j
        dec: PteDecoder = self.dec
        arch: Pgtable = self.arch
        # the blocks that changed: their first log entry and their value now
        changed: list[int] = []
        news: list[int] = []
        old: u64
        new: u64
        for j in first.values():
            ent = log[j]
            space = ent[0]
            new = space.pmd_peek(ent[1])
            if new != cython.cast(u64, ent[2]):
                changed.append(j)
                news.append(new)
        v: u64
        f: u32
        p: i64
        c: i64
        k: i64
        ms: MmShadow
        for k in range(len(changed)):  # removals first
            ent = log[changed[k]]
            old = ent[2]
            if not old:
                continue
            v = arch.pmd_pte(old)
            f = dec.flags(v)
            if not f & F_PRESENT:
                continue
            p = dec.pfn(v)
            if p == self.zero0 or p == self.zero1 or p < 0 or p >= self.nr:
                continue
            c = self.pmd_maps.get(p, 0)
            if c <= 0:
                self._sus("a PMD map removed that was not counted")
                continue
            if c == 1:
                del self.pmd_maps[p]
            else:
                self.pmd_maps[p] = c - 1
            space = ent[0]
            ms = self._mm(space.asid)
            ms.rss[MM_ANONPAGES] -= self.hpage_nr
            self._queue(p, False)
        for k in range(len(changed)):
            new = news[k]
            if not new:
                continue
            v = arch.pmd_pte(new)
            f = dec.flags(v)
            if not f & F_PRESENT:
                continue
            p = dec.pfn(v)
            if p == self.zero0 or p == self.zero1:
                continue
            if p < 0 or p >= self.nr:
                self._sus("a PMD maps a frame that does not exist")
                continue
            self.pmd_maps[p] = self.pmd_maps.get(p, 0) + 1
            space = log[changed[k]][0]
            ms = self._mm(space.asid)
            ms.rss[MM_ANONPAGES] += self.hpage_nr
            if self.mem.head[p] != p:
                self._sus("a PMD maps a frame that is not a folio head")
            if f & F_WRITE and not self.mem.flags[p] & PG_anon_exclusive:
                self._sus("writable-anon-exclusive (PMD)")
            self._queue(p, False)

    # -- the check of what changed ------------------------------------------------
    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _folio_ok(self, h: i64, pages: cython.bint) -> cython.bint:
        """Every rule on folio ``h`` and its pages holds against the shadow.

        A PMD-mapped folio none of whose pages is PTE-mapped (``pmd_clean``,
        found so by the last full compare) whose pages did not change since
        (not ``pages``) is compared at the folio level only: a PMD map costs
        O(1), as in the kernel.
        """
        mem: MemMap = self.mem
        o: i64 = mem.order[h]
        if o < 0 or o > 30:
            return False
        n: i64 = cython.cast(i64, 1) << o
        if h + n > self.nr:
            return False
        pm: i64 = 0
        if self.pmd_maps:
            pm = self.pmd_maps.get(h, 0)
        # A OnePlus 64K block (policy="oneplus") counts each whole-block
        # mapping once, in the entire mapcount, for all its pages; the
        # entire mapcount is checked against the tables by check/cont_pte.py.
        ent: i64 = 0
        nall: i64 = n
        if n < self.hpage_nr:
            ent = mem.entire_mapcount[h]
        cls: u8 = 0xFF  # the folio's class, read when a page needs it
        anon: cython.bint = (mem.flags[h] & PG_anon) != 0
        total: i64 = 0
        q: i64
        m: i64
        mq: u8
        if not pages and pm and h in self.pmd_clean:
            n = 0  # no page to compare
        elif self.pmd_clean:
            self.pmd_clean.discard(h)
        for q in range(h, h + n):
            if mem.head[q] != h:
                return False
            if q == self.zero0 or q == self.zero1:
                continue
            m = self.maps[q]
            if m == 255:
                m = self.maps_of(q)
            if mem.mapcount[q] + ent != m:
                return False
            total += m
            mq = self.meta[q]
            if (m or mq & M_W) and cls == 0xFF:
                cls = self.class_now(h)
            if m and (mq & M_CLASS) != cls:
                return False
            if mq & M_W:
                if cls != C_ANON or not mem.flags[q] & PG_anon_exclusive:
                    return False
                if m + pm > 1:
                    return False
            if mq & M_PINNED and anon and m and (m > 1 or not mem.flags[q] & PG_anon_exclusive):
                return False
        if h != self.zero0 and h != self.zero1:
            if mem.refcount[h] < total + pm - ent * (nall - 1):
                return False
            if nall >= self.hpage_nr and mem.entire_mapcount[h] != pm:
                return False
        if pm and total == 0 and n:
            self.pmd_clean.add(h)
        return True

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _key_ok(self, key: i64, pages: cython.bint) -> cython.bint:
        h: i64 = self.mem.head[key]
        if h < 0:
            if self.pmd_clean:
                self.pmd_clean.discard(key)
            return self.maps_of(key) == 0  # a free frame must not be mapped
        o: i64 = self.mem.order[h]
        if h > key or o < 0 or o > 30 or key >= h + (cython.cast(i64, 1) << o):
            return False
        return self._folio_ok(h, pages or h != key)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def check(self) -> cython.bint:
        """Compare the queued folios and every mm's RSS with the shadow.

        True: something may be wrong (run ``dense``).  Empties the queue.
        """
        self._refresh()
        sus: cython.bint = self.suspect
        j: i64
        key: i64
        pages: cython.bint
        for j in range(self.nqueue):
            key = self.queue[j]
            pages = (self.meta[key] & M_PAGES) != 0
            self.meta[key] = self.meta[key] & NOT_M_QUEUED_PAGES
            if not sus and not self._key_ok(key, pages):
                sus = True
                self.why = f"folio of pfn {key:#x}"
        if self.queue.shape[0] > 4096:
            self.queue = np.zeros(64, dtype=np.int64)  # not kept between syscalls
        self.nqueue = 0
        mm: MmStruct
        ms: MmShadow
        if not sus:
            for x in self.k.mms:
                mm = x
                got = self.mms.get(mm.space.asid)
                if got is None:
                    # MM_SWAPENTS (rss[2]) is the swap validator's (check/swap.py).
                    if mm.rss[0] or mm.rss[1] or mm.rss[3]:
                        sus = True
                        self.why = "rss"
                        break
                    continue
                ms = got
                if mm.rss[0] != ms.rss[0] or mm.rss[1] != ms.rss[1] or mm.rss[3] != ms.rss[3]:
                    sus = True
                    self.why = "rss"
                    break
        self.suspect = False
        return sus

    # -- from scratch --------------------------------------------------------------
    @cython.ccall
    def dense(self, pins: Pins) -> Any:
        """Recount the shadow from every table and check every frame.

        Returns the first violation (an ``InvariantViolation``) in the order of
        the module docstring, or None.  The shadow is exact afterwards either way,
        and the store log starts a new epoch.
        """
        k: Kernel = self.k
        mem: MemMap = self.mem
        pool: PtePool = self.pool
        dec: PteDecoder = self.dec
        self._refresh()
        self.ndense += 1
        nr: i64 = self.nr
        per: i64 = self.per
        # reset: keep the pinned bits (the validators' own record)
        maps: U8View = self.maps
        meta: U8View = self.meta
        p: i64
        for p in range(nr):
            maps[p] = 0
            meta[p] = meta[p] & M_PINNED
        self.big_maps = {}
        self.big_w = {}
        self.pmd_maps = {}
        self.pmd_clean = set()
        self.mms = {}
        self.nqueue = 0
        self.suspect = False
        self.serial += 1
        if pool.epoch >= 0:
            pool.new_epoch()
        e: U64View = pool.e
        found: object = None
        mm: MmStruct
        ms: MmShadow
        i: i64
        v: u64
        f: u32
        h: i64
        cls: u8
        va: i64
        for x in k.mms:
            mm = x
            ms = self._mm(mm.space.asid)
            for idx in sorted(mm.space.tables):
                base: i64 = cython.cast(i64, mm.space.tables[idx]) * per
                bad_pfn: i64 = -1
                bad_wae: i64 = -1
                for i in range(per):
                    v = e[base + i]
                    f = dec.flags(v)
                    if (f & (F_PRESENT | F_SPECIAL)) != F_PRESENT:
                        continue
                    p = dec.pfn(v)
                    if p < 0 or p >= nr:
                        if bad_pfn < 0:
                            bad_pfn = i
                        continue
                    h = mem.head[p]
                    if h < 0:
                        if bad_pfn < 0:
                            bad_pfn = i
                        cls = C_FILE
                    else:
                        cls = self.class_now(h)
                    if maps[p] == 0:
                        meta[p] = (meta[p] & NOT_M_CLASS) | cls
                    else:
                        cls = meta[p] & M_CLASS
                    self._maps_inc(p)
                    ms.rss[_member(cls)] += 1
                    if f & F_WRITE:
                        va = (idx * per + i) << self.page_shift
                        if not self._vma_shared(ms, va):
                            if cls == C_ANON:
                                self._w_inc(p)
                            if h >= 0 and bad_wae < 0:
                                if cls != C_ANON or not mem.flags[p] & PG_anon_exclusive:
                                    bad_wae = i
                if found is None and (bad_pfn >= 0 or bad_wae >= 0):
                    i = bad_pfn if bad_pfn >= 0 else bad_wae
                    v = e[base + i]
                    va = (idx * per + i) << self.page_shift
                    if bad_pfn >= 0:
                        found = InvariantViolation(
                            "mapcount",
                            f"pid {mm.owner}: PTE maps pfn {dec.pfn(v):#x} which is not allocated",
                            va,
                        )
                    else:
                        found = InvariantViolation(
                            "writable-anon-exclusive",
                            f"pid {mm.owner}: writable PTE of a private mapping maps pfn {dec.pfn(v):#x} "
                            f"which is not an exclusive anon page",
                            va,
                            [v],
                        )
            for idx in sorted(mm.space.pmds):
                blk: u64 = mm.space.pmds[idx]
                v = self.arch.pmd_pte(blk)
                f = dec.flags(v)
                if not f & F_PRESENT:
                    continue
                p = dec.pfn(v)
                if p == self.zero0 or p == self.zero1:
                    continue
                if p < 0 or p >= nr:
                    if found is None:
                        found = InvariantViolation(
                            "mapcount",
                            f"pid {mm.owner}: PMD maps pfn {p:#x} which does not exist",
                            idx << self.pmd_shift,
                            [blk],
                        )
                    continue
                self.pmd_maps[p] = self.pmd_maps.get(p, 0) + 1
                ms.rss[MM_ANONPAGES] += self.hpage_nr
                if found is None and f & F_WRITE and not mem.flags[p] & PG_anon_exclusive:
                    found = InvariantViolation(
                        "writable-anon-exclusive",
                        f"pid {mm.owner}: writable PMD maps non-exclusive folio {p:#x}",
                        idx << self.pmd_shift,
                        [blk],
                    )
            if found is None and (mm.rss[0] != ms.rss[0] or mm.rss[1] != ms.rss[1] or mm.rss[3] != ms.rss[3]):
                found = InvariantViolation(
                    "rss",
                    f"pid {mm.owner}: RSS counters file/anon/shmem = {mm.rss[0]}/{mm.rss[1]}/{mm.rss[3]} but the "
                    f"tables map {ms.rss[0]}/{ms.rss[1]}/{ms.rss[3]}",
                )
        if found is not None:
            return found
        return self._dense_frames(pins)

    def _dense_frames(self, pins: Pins) -> Any:
        """The frame-wide checks of ``dense``, in pfn order (the shadow just recounted)."""
        mem: MemMap = self.mem
        nr: i64 = self.nr
        z0: i64 = self.zero0
        z1: i64 = self.zero1
        p: i64
        m: i64
        h: i64
        # per-page mapcount (a OnePlus block's whole mappings: its entire mapcount)
        ent: i64
        for p in range(nr):
            if mem.head[p] < 0 or _either(p, z0, z1):
                continue
            m = self.maps_of(p)
            h = mem.head[p]
            ent = (
                mem.entire_mapcount[h]
                if (cython.cast(i64, 1) << cython.cast(i64, mem.order[h])) < self.hpage_nr
                else 0
            )
            if mem.mapcount[p] + ent != m:
                return InvariantViolation(
                    "mapcount",
                    f"pfn {p:#x}: mapcount {mem.mapcount[p]}{f' (+{ent} whole-block)' if ent else ''} "
                    f"but {m} PTE(s) map it",
                )
        # entire mapcounts: heads with one, and PMD-mapped pfns
        cands: list[int] = []
        for p in range(nr):
            if (
                mem.entire_mapcount[p] != 0
                and mem.head[p] == p
                and (cython.cast(i64, 1) << cython.cast(i64, mem.order[p])) >= self.hpage_nr
            ):
                cands.append(p)
        if self.pmd_maps:
            cands = sorted(set(cands) | set(self.pmd_maps))
        for p in cands:
            if _either(p, z0, z1):
                continue
            got: i64 = mem.entire_mapcount[p] if mem.head[p] == p else 0
            want: i64 = self.pmd_maps.get(p, 0)
            if got != want:
                return InvariantViolation(
                    "mapcount", f"folio {p:#x}: entire mapcount {got} but {want} PMD(s) map it"
                )
        # refcount >= mappings, per folio
        fold_a = np.zeros(nr, dtype=np.int64)
        fold: I64View = fold_a
        for p in range(nr):
            if _either(p, z0, z1):
                continue
            m = self.maps[p]
            if m:
                if m == 255:
                    m = self.maps_of(p)
                h = mem.head[p]
                if h >= 0:
                    fold[h] += m
        for pf, c in self.pmd_maps.items():
            fold[pf] += c
        for p in range(nr):
            # a whole-block mapping holds one reference for its 16 PTEs
            if (
                mem.head[p] == p
                and mem.entire_mapcount[p]
                and (cython.cast(i64, 1) << cython.cast(i64, mem.order[p])) < self.hpage_nr
            ):
                fold[p] -= mem.entire_mapcount[p] * (
                    (cython.cast(i64, 1) << cython.cast(i64, mem.order[p])) - 1
                )
        for p in range(nr):
            if mem.head[p] == p and not _either(p, z0, z1) and mem.refcount[p] < fold[p]:
                return InvariantViolation(
                    "refcount>=mapcount", f"folio {p:#x}: refcount {mem.refcount[p]} < {fold[p]} mappings"
                )
        del fold_a
        # pinned anon pages are mapped once, exclusively
        for pid, pfns in pins.items():
            for pf in pfns:
                h = mem.head[pf]
                if h < 0 or not mem.flags[h] & PG_anon:
                    continue
                m = self.maps_of(pf)
                if m == 0:
                    continue
                excl: cython.bint = (mem.flags[pf] & PG_anon_exclusive) != 0
                if m > 1 or not excl:
                    return InvariantViolation(
                        "pinned-anon-exclusive",
                        f"pfn {pf:#x} pinned by pid {pid} is mapped {m} time(s)"
                        f"{'' if excl else ' and is not PageAnonExclusive'}",
                    )
        # no page writable through a private mapping is mapped twice
        cover_a = np.zeros(nr if self.pmd_maps else 0, dtype=np.int64)
        cover: I64View = cover_a
        for pf, c in self.pmd_maps.items():
            o: i64 = int(mem.order[pf])
            for p in range(pf, min(nr, pf + (1 << o) if 0 <= o <= 30 else pf + 1)):
                cover[p] += c
        for p in range(nr):
            if not self.meta[p] & M_W or _either(p, z0, z1):
                continue
            m = self.maps_of(p) + (cover[p] if cover.shape[0] else 0)
            if m > 1:
                return InvariantViolation(
                    "writable-shared",
                    f"pfn {p:#x} is writable through a private mapping but mapped {m} times",
                )
        return None

    # -- tests and tools -----------------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def frame_maps(self, pfn: i64) -> i64:
        """The PTE mappings of ``pfn`` the shadow counts."""
        return self.maps_of(pfn) if self.ready else 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def frame_wmaps(self, pfn: i64) -> i64:
        """The writable PTE mappings of ``pfn`` in private mappings the shadow counts."""
        return self.w_of(pfn) if self.ready else 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def frame_class(self, pfn: i64) -> i64:
        """The RSS class ``pfn``'s mappings were counted under (0 none, 1 anon, 2 file, 3 shmem)."""
        return self.meta[pfn] & M_CLASS if self.ready else 0


@cython.final
@cython.cclass
class RmapHook(RmapObserver):
    """``Kernel.rmap_observer``: refcount >= mapcount right after every rmap increase.

    Another CPU (GUP-fast, a speculative ``folio_try_get``) may look at a
    folio as soon as its mapcount changed, so the references must already
    cover the mappings.  The folio is also queued for the next check.
    """

    def __init__(self, shadow: MapShadow) -> None:
        self.shadow = shadow
        self.mem = shadow.mem

    @cython.ccall
    def on_rmap_change(self, folio: i64) -> None:
        mem: MemMap = self.mem
        if mem.flags[folio] & PG_reserved:
            return
        maps: i64 = folio_mapcount(mem, folio)
        ref: i64 = mem.refcount[folio]
        if ref < maps:
            raise InvariantViolation(
                "refcount>=mapcount",
                f"folio {folio:#x}: refcount {ref} < {maps} mappings right after an rmap update",
            )
        self.shadow.touch(folio)


# -- fork: the child's tables copy the parent's ------------------------------------------
@cython.cfunc
@cython.exceptval(-1, check=True)
def _block_dirty(dec: PteDecoder, a: U64View, base: i64, i: i64, cp: i64) -> cython.bint:
    """Is any entry of the contiguous block holding entry ``i`` dirty (``ptep_get``'s gather)."""
    b: i64 = base + (i - i % cp)
    j: i64
    for j in range(b, b + cp):  # noqa: SIM110 - a C loop
        if dec.flags(a[j]) & F_DIRTY:
            return True
    return False


@cython.cfunc
def _fork_copy_range(
    sh: MapShadow,
    parent: MmStruct,
    child: MmStruct,
    idx: i64,
    pa: U64View,
    pb: i64,
    ca: U64View,
    cb: i64,
    lo: i64,
    hi: i64,
    cv: Vma,
) -> None:
    """The per-entry ``fork-copy`` checks of entries ``[lo, hi)`` of table ``idx``.

    The soft-dirty bit is not compared: soft-dirty tracking is never on in
    the model (``vma_soft_dirty_enabled()``), so fork's batches ignore it and
    ``set_ptes()`` gives every child PTE of a batch the first one's, as the
    kernel does (a folio's PTEs can differ in it after mremap, which marks
    moved PTEs soft-dirty).
    """
    dec: PteDecoder = sh.dec
    mem: MemMap = sh.mem
    cp: i64 = sh.cont_ptes
    needs_copy: cython.bint = cv.anon_vma is not None or (cv.vm_flags & VM_UFFD_WP) != 0
    uffd: cython.bint = (cv.vm_flags & VM_UFFD_WP) != 0
    private: cython.bint = (cv.vm_flags & VM_SHARED) == 0
    i: i64
    p: u64
    c: u64
    fp: u32
    fc: u32
    what: str
    pdirty: cython.bint
    cdirty: cython.bint
    cpfn: i64
    # The usual pair: the same frame, attributes seen just before (a run of a
    # folio copied alike): the verdict of the last pair of attribute sets.
    fast: cython.bint = dec.cacheable
    am: u64 = dec.addrmask
    pm: u64 = dec.protmask
    lp: u64 = 0
    lc: u64 = 0
    lok: cython.bint = False
    for i in range(lo, hi):
        p = pa[pb + i] if pb >= 0 else 0
        c = ca[cb + i] if cb >= 0 else 0
        if p == 0 and c == 0:
            continue
        if fast and p != 0 and c != 0 and ((p ^ c) & am) == 0:
            if (p & pm) != lp or (c & pm) != lc:
                lp = p & pm
                lc = c & pm
                fp = dec.flags(p)
                fc = dec.flags(c)
                lok = (
                    (fp & fc & F_PRESENT) != 0
                    and not (fp ^ fc) & F_VALID
                    and ((fc & F_UFFD_WP) != 0) == (uffd and (fp & F_UFFD_WP) != 0)
                    and not (private and not fp & F_SPECIAL and fp & F_DIRTY and not fc & F_DIRTY)
                )
            if lok:
                continue
        fp = dec.flags(p)
        if p == c and (uffd or not fp & F_UFFD_WP):
            continue  # the same descriptor: every field the same
        fc = dec.flags(c)
        what = ""
        if not fp & F_PRESENT:
            if not fc & F_PRESENT:
                continue
            what = "the child maps a page the parent did not map"
        elif not fc & F_PRESENT:
            if needs_copy:
                what = "the parent's page is missing in the child"
            else:
                continue
        elif dec.pfn(p) != dec.pfn(c):
            cpfn = dec.pfn(c)
            if not (0 <= cpfn < sh.nr and mem.flags[cpfn] & PG_anon_exclusive and mem.head[cpfn] >= 0):
                what = "the child maps another frame, which is not an exclusive copy"
            else:
                continue
        elif (fp ^ fc) & F_VALID:
            what = "accessibility (PROT_NONE / NUMA hinting) differs from the parent's"
        elif ((fc & F_UFFD_WP) != 0) != (uffd and (fp & F_UFFD_WP) != 0):
            what = "the uffd-wp bit was not copied per PTE"
        elif private and not fp & F_SPECIAL:
            # A dirty bit may be gained (v6.12 arm64 pte_mkwrite() clears
            # PTE_RDONLY, so a merged-writable clean batch turns dirty): that
            # only costs a writeback.  It must never be lost.
            pdirty = (fp & F_DIRTY) != 0 or (
                (fp & F_CONT) != 0 and cp > 1 and _block_dirty(dec, pa, pb, i, cp)
            )
            if pdirty:
                cdirty = (fc & F_DIRTY) != 0 or (
                    (fc & F_CONT) != 0 and cp > 1 and _block_dirty(dec, ca, cb, i, cp)
                )
                if not cdirty:
                    what = "the parent's PTE is dirty, the child's is clean: a write may be lost"
        if what:
            raise InvariantViolation(
                "fork-copy",
                f"pid {child.owner} (child of {parent.owner}): {what}",
                (idx * sh.per + i) << sh.page_shift,
                [p, c],
            )


@cython.ccall
def fork_copy(
    sh: MapShadow,
    parent: MmStruct,
    child: MmStruct,
    pre_pmds: object,
    base: object = None,
    skip_below: i64 = 0,
) -> None:
    """Check that ``child``'s tables are a faithful copy of ``parent``'s before the fork.

    Per PTE in the child's VMAs: the same pages present (none lost where the
    VMA needs copying), the same frames (or an exclusive copy of a pinned
    anon page), the same accessibility, uffd-wp (kept only with VM_UFFD_WP),
    soft-dirty, and no dirty state lost in private mappings (gathered over a
    contiguous block, as ``ptep_get`` reports it).  The parent's pre-fork
    descriptors are the store log's old ones for tables the fork wrote (the
    epoch began just before the fork), the current ones otherwise; level-2
    indices in ``pre_pmds`` (PMD-mapped before the fork) are skipped.
    ``base`` (level-2 index -> one table's descriptors) replaces them where
    other threads ran at fork's lock breaks (``Validators.fork_rebase``);
    entries below ``skip_below`` are not compared (reclaim ran at a lock
    break there, after fork had copied them).

    Raises the first ``fork-copy`` violation in address order.
    """
    pool: PtePool = sh.pool
    per: i64 = sh.per
    pspace = parent.space
    cspace = child.space
    log: list[Any] = pool.log
    log_at: dict[int, int] = pool.log_at
    ent: LogEntry
    gone: dict[int, int] = {}
    for x in log:
        ent = x
        if ent.asid == pspace.asid and not ent.alive:
            gone[ent.pmd_index] = ent.old_at
    keys = set(cspace.tables)
    keys.update(pspace.tables)
    keys.update(gone)
    if pre_pmds:
        keys.difference_update(pre_pmds)  # type: ignore[arg-type]
    e: U64View = pool.e
    old: U64View = pool.log_old
    vmas: list[Any] = child.vmas
    nv: i64 = len(vmas)
    vi: i64 = 0
    j: i64
    pb: i64
    cb: i64
    at: i64
    t0: i64
    t1: i64
    lo: i64
    cv: Vma
    pa: U64View
    for idx in sorted(keys):
        t0 = idx << sh.pmd_shift
        t1 = t0 + (per << sh.page_shift)
        while vi < nv and cython.cast(Vma, vmas[vi]).vm_end <= t0:
            vi += 1
        if vi >= nv:
            break
        if cython.cast(Vma, vmas[vi]).vm_start >= t1:
            continue
        pb = -1
        pa = e
        s = pspace.tables.get(idx)
        if s is not None:
            li = log_at.get(s)
            if li is not None:
                ent = log[li]
                at = ent.old_at
                if at >= 0:
                    pa = old
                    pb = at * per
            else:
                pb = cython.cast(i64, s) * per
        elif idx in gone:
            at = gone[idx]
            if at >= 0:
                pa = old
                pb = at * per
        if base is not None and idx in base:  # type: ignore[operator]
            pa = base[idx]  # type: ignore[index]
            pb = 0
        cs = cspace.tables.get(idx)
        cb = cython.cast(i64, cs) * per if cs is not None else -1
        if pb < 0 and cb < 0:
            continue
        j = vi
        while j < nv:
            cv = vmas[j]
            if cv.vm_start >= t1:
                break
            lo = max(cv.vm_start, t0, skip_below)
            if lo < min(cv.vm_end, t1):
                _fork_copy_range(
                    sh,
                    parent,
                    child,
                    idx,
                    pa,
                    pb,
                    e,
                    cb,
                    (lo - t0) >> sh.page_shift,
                    (min(cv.vm_end, t1) - t0) >> sh.page_shift,
                    cv,
                )
            j += 1


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        F_PRESENT=F_PRESENT,
        F_VALID=F_VALID,
        F_SPECIAL=F_SPECIAL,
        F_WRITE=F_WRITE,
        F_DIRTY=F_DIRTY,
        F_CONT=F_CONT,
        F_UFFD_WP=F_UFFD_WP,
        F_SOFT_DIRTY=F_SOFT_DIRTY,
        F_YOUNG=F_YOUNG,
        C_NONE=C_NONE,
        C_ANON=C_ANON,
        C_FILE=C_FILE,
        C_SHMEM=C_SHMEM,
    )
