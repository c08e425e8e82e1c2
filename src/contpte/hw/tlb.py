"""Per-CPU TLB: cached translations tagged by ASID.

An entry covers ``npages`` pages from ``vbase`` (both in pages): 1 for a
page, the contiguous-set size for a Contiguous block when the CPU caches it
as one entry (Arm ARM D8.7.1 permits either), or a whole level-2 block.
Each entry records the descriptor that produced it (``ptep``, the index of a
level-3 descriptor in the machine's ``PtePool``; -1 for a level-2 block),
because a hardware Access flag or dirty update lands on that descriptor,
which may be another page of the block (Arm ARM D8.5.5 IQDCMP).

Replacement is LRU with the CPU's capacity, or ``adversarial``: never evict,
so every missing invalidation stays visible.

Layout (C-friendly, no Python object per entry): the entries are rows of
struct-of-arrays indexed by an entry number, linked in LRU order
(``prev``/``next``), and found by tag through an ``I64Map`` from
``(asid, size class, vbase)`` to the entry number.  Same-size entries are
aligned, so at most one entry per size class can contain a page: a lookup
probes one key per size class that has entries.  ``n_flagged`` counts the
live entries filled over (or overlapped by) an entry of another size; while
it is zero no two entries overlap, so the most recently used entry (the LRU
tail) answers every page it covers without a probe.

Compiled (docs/core.md).  Nothing here knows Linux.
"""

from __future__ import annotations

from collections.abc import Iterator

import cython
import numpy as np
import numpy.typing as npt

from ..errors import ModelUsageError

if not cython.compiled:
    from ..cdefs import i32, i64, u64
    from .hashmap import I64Map

__all__ = ["TlbEntry", "Tlb", "TlbFrameIndex", "ASID_LIMIT", "VPN_LIMIT"]

#: Keys pack (asid, size class, vbase) in 63 bits: asid < 2^24, vbase < 2^37.
ASID_LIMIT = cython.declare(i64, 1 << 24)
VPN_LIMIT = cython.declare(i64, 1 << 37)
_SC_SHIFT = cython.declare(i64, 37)
_ASID_SHIFT = cython.declare(i64, 39)


class TlbEntry:
    """A snapshot of one cached translation (tests and messages).

    ``asid``: ASID tag.  ``vbase``/``npages``: covered VA range in pages.
    ``pfn_base``: output address of ``vbase``, in pages.  ``desc``: the
    descriptor value as cached (after any hardware A/D update).  ``ptep``:
    the producing level-3 descriptor, -1 for a level-2 block.  ``level``:
    lookup level of the leaf (2 or 3).  ``stamp``: fill order.
    """

    __slots__ = ("asid", "vbase", "npages", "pfn_base", "desc", "ptep", "level", "stamp")

    def __init__(
        self, asid: int, vbase: int, npages: int, pfn_base: int, desc: int, ptep: int, level: int, stamp: int
    ) -> None:
        self.asid = asid
        self.vbase = vbase
        self.npages = npages
        self.pfn_base = pfn_base
        self.desc = desc
        self.ptep = ptep
        self.level = level
        self.stamp = stamp

    def pfn_of(self, vpn: int) -> int:
        """Output page of ``vpn`` (which the entry must cover)."""
        return self.pfn_base + (vpn - self.vbase)

    def as_tuple(self) -> tuple[int, ...]:
        """Every field but the stamp (for comparisons in tests)."""
        return (self.asid, self.vbase, self.npages, self.pfn_base, self.desc, self.ptep, self.level)

    def __repr__(self) -> str:
        return (
            f"TlbEntry(asid={self.asid}, va={self.vbase:#x}p, n={self.npages}, pfn={self.pfn_base:#x}, "
            f"desc={self.desc:#018x}, from={self.ptep}, L{self.level})"
        )


def _grown(a: npt.NDArray[np.int64], old: int, new: int) -> npt.NDArray[np.int64]:
    """A zeroed int64 array of ``new`` rows starting with the ``old`` first rows of ``a``."""
    out = np.zeros(new, dtype=np.int64)
    if old:
        out[:old] = np.asarray(a)[:old]
    return out


@cython.final
@cython.cclass
class TlbFrameIndex:
    """How many entries of all TLBs map each frame (the rule checker asks at a frame's free).

    Entries are counted where their output starts: a page entry in
    ``page[pfn]``, an entry of ``cont_pages`` or ``region_pages`` pages whose
    output is aligned to its size in ``cont[pfn // cont_pages]`` or
    ``region[pfn // region_pages]``; an unaligned one (a misprogrammed
    Contiguous set) per page in ``page``.  Updating costs O(1) per fill and
    eviction, a query three reads per frame.  Entries of an ASID no CPU will
    use again (``Tlb.unindex_asid``) are not counted.
    """

    def __init__(self, nr_frames: i64, cont_pages: i64, region_pages: i64) -> None:
        self.nr_frames = nr_frames
        self.cont_pages = cont_pages
        self.region_pages = region_pages
        self.page = np.zeros(nr_frames, dtype=np.int32)
        self.cont = np.zeros(nr_frames // cont_pages + 1, dtype=np.int32)
        self.region = np.zeros(nr_frames // region_pages + 1, dtype=np.int32)

    @cython.cfunc
    def add(self, pfn: i64, npages: i64, delta: i32) -> None:
        """Count (``delta`` 1) or uncount (-1) an entry mapping ``npages`` frames from ``pfn``."""
        i: i64
        if pfn < 0 or pfn >= self.nr_frames:
            return
        if npages == 1:
            self.page[pfn] += delta
        elif npages == self.cont_pages and pfn % npages == 0:
            self.cont[pfn // npages] += delta
        elif npages == self.region_pages and pfn % npages == 0:
            self.region[pfn // npages] += delta
        else:
            for i in range(pfn, min(pfn + npages, self.nr_frames)):
                self.page[i] += delta

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def first_mapped(self, pfn: i64, npages: i64) -> i64:
        """The first of the frames ``[pfn, pfn+npages)`` some counted TLB entry maps, or -1."""
        i: i64
        for i in range(pfn, min(pfn + npages, self.nr_frames)):
            if self.page[i] or self.cont[i // self.cont_pages] or self.region[i // self.region_pages]:
                return i
        return -1


@cython.final
@cython.cclass
class Tlb:
    """The unified TLB of one CPU.

    ``capacity``: entries kept under LRU.  ``adversarial``: never evict.
    ``cont_pages``: pages of an entry made from a Contiguous descriptor (1:
    such descriptors are cached per page).  ``region_pages``: pages of a
    level-2 block (no entry spans two level-3 tables).
    """

    def __init__(self, capacity: i64, adversarial: cython.bint, cont_pages: i64, region_pages: i64) -> None:
        if capacity < 1:
            raise ModelUsageError(f"TLB capacity must be >= 1, not {capacity}")
        self.capacity = capacity
        self.adversarial = adversarial
        self.cont_pages = cont_pages
        self.region_pages = region_pages
        self.size_of = np.array([1, cont_pages, region_pages], dtype=np.int64)
        self.nsize = np.zeros(3, dtype=np.int64)
        self.map = I64Map(min(capacity, 4096))
        self.n = 0
        self.stamp = 0
        self.n_flagged = 0
        self.one_asid = -1
        self.last_overlap = -1
        self.lru_head = -1
        self.lru_tail = -1
        self.free_head = -1
        self.nalloc = 0
        z = np.zeros(0, dtype=np.int64)
        self.e_asid = self.e_vbase = self.e_npages = self.e_pfn = self.e_ptep = z
        self.e_level = self.e_stamp = self.e_prev = self.e_next = self.e_flag = z
        self.e_desc = np.zeros(0, dtype=np.uint64)
        #: The frame index the entries are counted in (the rule checker's), or None.
        self.frames: TlbFrameIndex | None = None
        self.e_idx = z
        self._grow(min(capacity, 4096) + 1)

    def __len__(self) -> int:
        return int(self.n)

    # -- storage ----------------------------------------------------------
    def _grow(self, want: int) -> None:
        old = int(self.nalloc)
        new = max(want, 2 * old, 16)
        self.e_asid = _grown(self.e_asid, old, new)
        self.e_vbase = _grown(self.e_vbase, old, new)
        self.e_npages = _grown(self.e_npages, old, new)
        self.e_pfn = _grown(self.e_pfn, old, new)
        desc = np.zeros(new, dtype=np.uint64)
        if old:
            desc[:old] = np.asarray(self.e_desc)[:old]
        self.e_desc = desc
        self.e_ptep = _grown(self.e_ptep, old, new)
        self.e_level = _grown(self.e_level, old, new)
        self.e_stamp = _grown(self.e_stamp, old, new)
        self.e_prev = _grown(self.e_prev, old, new)
        self.e_flag = _grown(self.e_flag, old, new)
        self.e_idx = _grown(self.e_idx, old, new)
        # chain the new rows onto the free list (next), lowest first
        nxt = _grown(self.e_next, old, new)
        nxt[old : new - 1] = np.arange(old + 1, new, dtype=np.int64)
        nxt[new - 1] = self.free_head
        self.e_next = nxt
        self.free_head = old
        self.nalloc = new

    @cython.cfunc
    @cython.inline
    @cython.exceptval(check=False)
    def _sc(self, npages: i64) -> i64:
        if npages == 1:
            return 0
        if npages == self.cont_pages:
            return 1
        return 2

    @cython.cfunc
    @cython.inline
    @cython.exceptval(check=False)
    def _key(self, asid: i64, sc: i64, vbase: i64) -> i64:
        return (asid << _ASID_SHIFT) | (sc << _SC_SHIFT) | vbase

    @cython.cfunc
    @cython.inline
    def _unlink(self, k: i64) -> None:
        p: i64 = self.e_prev[k]
        x: i64 = self.e_next[k]
        if p >= 0:
            self.e_next[p] = x
        else:
            self.lru_head = x
        if x >= 0:
            self.e_prev[x] = p
        else:
            self.lru_tail = p

    @cython.cfunc
    @cython.inline
    def _link_tail(self, k: i64) -> None:
        t: i64 = self.lru_tail
        self.e_prev[k] = t
        self.e_next[k] = -1
        if t >= 0:
            self.e_next[t] = k
        else:
            self.lru_head = k
        self.lru_tail = k

    # -- lookup ------------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-2, check=True)
    def find(self, asid: i64, vbase: i64, npages: i64) -> i64:
        """The entry with exactly this tag, address and size, or -1."""
        return self.map.get(self._key(asid, self._sc(npages), vbase), -1)

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def lookup(self, asid: i64, vpn: i64) -> i64:
        """The entry used for ``vpn`` (-1: none), made most recently used.

        With several matches (a TLB conflict) the most recently filled one
        is used: one CONSTRAINED UNPREDICTABLE choice among the programmed
        translations (Arm ARM D8.7.1.2 RNGLXZ (a)).
        """
        t: i64 = self.lru_tail
        if (
            self.n_flagged == 0
            and t >= 0
            and self.e_asid[t] == asid
            and self.e_vbase[t] <= vpn
            and vpn < self.e_vbase[t] + self.e_npages[t]
        ):
            return t
        best: i64 = -1
        sc: i64
        k: i64
        size: i64
        for sc in range(3):
            if self.nsize[sc] == 0:
                continue
            size = self.size_of[sc]
            k = self.map.get(self._key(asid, sc, vpn & ~(size - 1)), -1)
            if k >= 0:
                if self.n_flagged == 0:
                    best = k
                    break
                if best < 0 or self.e_stamp[k] > self.e_stamp[best]:
                    best = k
        if best >= 0 and best != self.lru_tail:
            self._unlink(best)
            self._link_tail(best)
        return best

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def overlaps(self, asid: i64, vbase: i64, npages: i64) -> i64:
        """How many entries of ``asid`` of another size overlap ``[vbase, vbase+npages)``.

        ``last_overlap`` is set to the first of them (smaller sizes first, in
        address order, then larger ones), -1 if none.
        """
        self.last_overlap = -1
        count: i64 = 0
        sc: i64
        size: i64
        b: i64
        k: i64
        for sc in range(3):
            size = self.size_of[sc]
            if self.nsize[sc] == 0 or size == npages:
                continue
            if size > npages:
                k = self.map.get(self._key(asid, sc, vbase & ~(size - 1)), -1)
                if k >= 0:
                    count += 1
                    if self.last_overlap < 0:
                        self.last_overlap = k
            else:
                for b in range(vbase, vbase + npages, size):
                    k = self.map.get(self._key(asid, sc, b), -1)
                    if k >= 0:
                        count += 1
                        if self.last_overlap < 0:
                            self.last_overlap = k
        return count

    # -- fill and evict ----------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def insert(
        self,
        asid: i64,
        vbase: i64,
        npages: i64,
        pfn: i64,
        desc: u64,
        ptep: i64,
        level: i64,
        flag: cython.bint,
    ) -> i64:
        """Fill an entry (replacing one with the same tag, address and size); evict LRU when full.

        ``flag``: the fill overlaps entries of another size (``overlaps``):
        it and they are marked, so lookups compare fill order.  Returns the
        entry number.
        """
        sc: i64 = self._sc(npages)
        key: i64 = self._key(asid, sc, vbase)
        if self.free_head < 0:
            self._grow(2 * self.nalloc)
        k: i64 = self.free_head
        self.free_head = self.e_next[k]
        self.stamp += 1
        self.e_asid[k] = asid
        self.e_vbase[k] = vbase
        self.e_npages[k] = npages
        self.e_pfn[k] = pfn
        self.e_desc[k] = desc
        self.e_ptep[k] = ptep
        self.e_level[k] = level
        self.e_stamp[k] = self.stamp
        self.e_flag[k] = 0
        self.e_idx[k] = 0
        if self.frames is not None:
            self.frames.add(pfn, npages, 1)
            self.e_idx[k] = 1
        self._link_tail(k)
        old: i64 = self.map.put(key, k)
        if old >= 0:
            self._drop(old, sc)  # the entry with the same tag, address and size
        self.nsize[sc] += 1
        self.n += 1
        if self.n == 1:
            self.one_asid = asid
        elif self.one_asid != asid:
            self.one_asid = -2  # several ASIDs (until the TLB is emptied)
        if flag:
            self._flag(k)
        if not self.adversarial and self.n > self.capacity:
            self.remove(self.lru_head)
        return k

    @cython.cfunc
    def _flag(self, k: i64) -> None:
        """Mark entry ``k`` and every entry of another size it overlaps."""
        j: i64
        sc: i64
        size: i64
        b: i64
        asid: i64 = self.e_asid[k]
        vbase: i64 = self.e_vbase[k]
        npages: i64 = self.e_npages[k]
        if not self.e_flag[k]:
            self.e_flag[k] = 1
            self.n_flagged += 1
        for sc in range(3):
            size = self.size_of[sc]
            if self.nsize[sc] == 0 or size == npages:
                continue
            if size > npages:
                j = self.map.get(self._key(asid, sc, vbase & ~(size - 1)), -1)
                if j >= 0 and not self.e_flag[j]:
                    self.e_flag[j] = 1
                    self.n_flagged += 1
            else:
                for b in range(vbase, vbase + npages, size):
                    j = self.map.get(self._key(asid, sc, b), -1)
                    if j >= 0 and not self.e_flag[j]:
                        self.e_flag[j] = 1
                        self.n_flagged += 1

    @cython.ccall
    def remove(self, k: i64) -> None:
        """Drop entry ``k``."""
        sc: i64 = self._sc(self.e_npages[k])
        self.map.pop(self._key(self.e_asid[k], sc, self.e_vbase[k]), -1)
        self._drop(k, sc)

    @cython.cfunc
    def _drop(self, k: i64, sc: i64) -> None:
        """Free entry ``k`` of size class ``sc`` (its key already gone from the map)."""
        if self.e_idx[k]:
            self._unindex(k)
        self._unlink(k)
        if self.e_flag[k]:
            self.n_flagged -= 1
        self.nsize[sc] -= 1
        self.n -= 1
        self.e_npages[k] = 0
        self.e_next[k] = self.free_head
        self.free_head = k

    # -- invalidation (TLBI) -----------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def invalidate_range(self, asid: i64, vpn: i64, npages: i64, level: i64) -> i64:
        """Drop entries overlapping ``[vpn, vpn+npages)``; ``asid`` -1: any ASID.

        ``level``: only entries of that lookup level (TTL hint), 0: any.
        Returns the number dropped.  Probes the covered addresses when that
        is cheaper than a pass over every entry.
        """
        if self.n == 0:
            return 0
        end: i64 = vpn + npages
        probes: i64 = 0
        sc: i64
        size: i64
        for sc in range(3):
            if self.nsize[sc]:
                size = self.size_of[sc]
                probes += ((end - 1) // size) - (vpn // size) + 1
        dropped: i64 = 0
        k: i64
        b: i64
        if asid < 0 or probes > self.n:
            return self._drop_where(asid, vpn, end, level)
        for sc in range(3):
            if self.nsize[sc] == 0:
                continue
            size = self.size_of[sc]
            b = vpn & ~(size - 1)
            while b < end:  # not range(): a run-time step makes it a Python loop
                k = self.map.get(self._key(asid, sc, b), -1)
                if k >= 0 and (level == 0 or self.e_level[k] == level):
                    self.remove(k)
                    dropped += 1
                b += size
        return dropped

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def invalidate_asid(self, asid: i64) -> i64:
        """Drop every entry tagged ``asid`` (TLBI ASIDE1)."""
        return self._drop_where(asid, 0, VPN_LIMIT, 0)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def invalidate_all(self) -> i64:
        """Drop every entry (TLBI VMALLE1)."""
        return self._drop_where(-1, 0, VPN_LIMIT, 0)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _drop_where(self, asid: i64, vpn: i64, end: i64, level: i64) -> i64:
        """Drop, in one pass, the entries of ``asid`` (-1: any) overlapping ``[vpn, end)`` at ``level`` (0: any).

        When many go, the map is rebuilt from the survivors instead of
        deleting their keys one by one (a flush of a full TLB costs a pass
        over it, not a hash deletion per entry).
        """
        doomed: i64 = self.n
        if doomed == 0 or (asid >= 0 and self.one_asid >= 0 and self.one_asid != asid):
            return 0
        if (asid < 0 or self.one_asid == asid) and level == 0 and vpn == 0 and end == VPN_LIMIT:
            self._reset()  # every entry goes
            return doomed
        # rows in index order (sequential memory); the order entries go in
        # does not matter to the survivors' LRU order
        k: i64
        doomed = 0
        for k in range(self.nalloc):
            if self.e_npages[k] and self._matches(k, asid, vpn, end, level):
                doomed += 1
        if doomed == 0:
            return 0
        if doomed == self.n:
            self._reset()
            return doomed
        bulk: cython.bint = 4 * doomed > self.n
        for k in range(self.nalloc):
            if self.e_npages[k] and self._matches(k, asid, vpn, end, level):
                if bulk:
                    self._drop(k, self._sc(self.e_npages[k]))
                else:
                    self.remove(k)
        if bulk:
            self.map.clear()
            for k in range(self.nalloc):
                if self.e_npages[k]:
                    self.map.put(self._key(self.e_asid[k], self._sc(self.e_npages[k]), self.e_vbase[k]), k)
        return doomed

    @cython.cfunc
    def _reset(self) -> None:
        """Empty the TLB: every row free, in order (no entry survives)."""
        k: i64
        for k in range(self.nalloc):
            if self.e_npages[k] and self.e_idx[k]:
                self._unindex(k)
            self.e_npages[k] = 0
            self.e_next[k] = k + 1
        self.e_next[self.nalloc - 1] = -1
        self.free_head = 0
        self.lru_head = -1
        self.lru_tail = -1
        self.n = 0
        self.n_flagged = 0
        self.one_asid = -1
        for k in range(3):
            self.nsize[k] = 0
        self.map.clear()

    @cython.cfunc
    def _unindex(self, k: i64) -> None:
        """Stop counting entry ``k`` in the frame index."""
        frames: TlbFrameIndex = cython.cast(TlbFrameIndex, self.frames)
        frames.add(self.e_pfn[k], self.e_npages[k], -1)
        self.e_idx[k] = 0

    @cython.ccall
    def unindex_asid(self, asid: i64) -> None:
        """No CPU will use ``asid`` again: its entries stay but map no frame any more."""
        k: i64
        for k in range(self.nalloc):
            if self.e_npages[k] and self.e_idx[k] and self.e_asid[k] == asid:
                self._unindex(k)

    def entries_mapping(self, pfn: int) -> list[TlbEntry]:
        """Every entry whose output covers frame ``pfn`` (messages)."""
        return [e for e in self if e.pfn_base <= pfn < e.pfn_base + e.npages]

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def _matches(self, k: i64, asid: i64, vpn: i64, end: i64, level: i64) -> cython.bint:
        return (
            (asid < 0 or self.e_asid[k] == asid)
            and self.e_vbase[k] < end
            and self.e_vbase[k] + self.e_npages[k] > vpn
            and (level == 0 or self.e_level[k] == level)
        )

    # -- Python views (tests, messages) --------------------------------------
    def entry(self, k: int) -> TlbEntry:
        """A snapshot of entry ``k``."""
        return TlbEntry(
            int(self.e_asid[k]),
            int(self.e_vbase[k]),
            int(self.e_npages[k]),
            int(self.e_pfn[k]),
            int(self.e_desc[k]),
            int(self.e_ptep[k]),
            int(self.e_level[k]),
            int(self.e_stamp[k]),
        )

    def __iter__(self) -> Iterator[TlbEntry]:
        """Snapshots of the entries, least recently used first."""
        out = []
        k = int(self.lru_head)
        while k >= 0:
            out.append(self.entry(k))
            k = int(self.e_next[k])
        return iter(out)

    def matches(self, asid: int, vpn: int) -> list[TlbEntry]:
        """Every entry of ``asid`` covering ``vpn`` (no LRU update)."""
        out = []
        for sc in range(3):
            size = int(self.size_of[sc])
            k = self.map.get(self._key(asid, sc, vpn & ~(size - 1)), -1)
            if k >= 0:
                out.append(self.entry(k))
        return out

    def snapshot(self) -> list[tuple[int, ...]]:
        """Entries in LRU order, as tuples (tests compare these)."""
        return [e.as_tuple() for e in self]


if cython.compiled:
    globals().update(ASID_LIMIT=ASID_LIMIT, VPN_LIMIT=VPN_LIMIT)
