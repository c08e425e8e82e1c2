"""``run_all`` without re-reading what did not change: a proof of "no violation".

``Validators.run_all`` (the dense checks) decodes every PTE table of every
mm and makes a dozen passes over mem_map after every syscall.  This module
keeps, per mm, what those checks derive from its tables (``_MmState``: the
stacked descriptors it was computed from, how many PTEs map each frame and
each folio, the writable-private PTEs per frame, the RSS the tables
account for) and a snapshot of the mem_map fields those quantities depend
on (``head``; ``PG_anon`` and ``mapping``, which classify a folio for the
RSS counters).  A run then

- compares each mm's tables with the descriptors its state was computed
  from (one pass) and updates the state from the entries that changed;
- recomputes a state whose frames changed folio or class in mem_map;
- runs the frame-wide checks (mapcount, entire mapcount, refcount >=
  mappings, pins, writable-shared, writable-anon-exclusive) on the summed
  per-frame counts, mostly as one comparison over mem_map.

It decides only whether the dense checks would pass: ``Incremental.run``
returns False on any suspect, and ``run_all`` then runs the dense checks,
which raise the violation (first in their order, with their message).  So
the verdicts are the dense ones by construction, as long as ``run`` returns
True only when the dense checks pass (``tests/unit/check/
test_run_all_incremental.py`` plants violations between runs and compares).

fork: the child's tables are usually the parent's pre-fork descriptors
with only the Access flag cleared (``pte_mkold``).  ``young_mask`` finds the
descriptor bits that only the young state depends on; a child table equal
to the parent's snapshot outside those bits passes every ``fork-copy`` check
(same presence, frame, accessibility, soft-dirty, dirty gathered over any
block) except the uffd-wp one, checked apart, and inherits the parent's
state instead of being decoded again.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from ..arch.pgtable import batch_positions
from ..errors import InvariantViolation
from ..mm.memmap import PG_anon, PG_anon_exclusive
from ..mm.mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_SHARED, VM_UFFD_WP

__all__ = ["Incremental", "young_mask"]

_YOUNG: dict[tuple[type, int], int] = {}

_FIELDS = ("valid", "present", "pfn", "write", "dirty", "cont", "special")


def young_mask(arch: Any) -> int:
    """The descriptor bits only ``young`` depends on (0 when unsure).

    The bits ``pte_mkyoung`` sets and ``pte_mkold`` clears, kept only if
    flipping them changes none of the fields the validators read (every
    ``ptes_decode`` field but ``young``, uffd-wp, soft-dirty) on a broad
    set of probe descriptors: the arch's own PTEs for every protection and
    state, and random words.
    """
    base = arch.pfn_pte(0x1234, arch.vm_get_page_prot(0x3))
    y = int(arch.pte_mkyoung(base)) ^ int(arch.pte_mkold(base))
    if not y or y != (int(arch.pte_mkyoung(0)) ^ int(arch.pte_mkold(0))):
        return 0
    rng = random.Random(0x5EED)
    probes: list[int] = [0, (1 << 64) - 1, y]
    for flags in range(16):
        try:
            prot = arch.vm_get_page_prot(flags)
        except Exception:  # a backend without this protection: skip it
            continue
        for pfn in (0, 1, 0x1FF, 0x12345):
            pte = arch.pfn_pte(pfn, prot)
            for f in (
                lambda x: x,
                arch.pte_mkwrite,
                arch.pte_wrprotect,
                arch.pte_mkdirty,
                arch.pte_mkclean,
                arch.pte_mkspecial,
                arch.pte_mkuffd_wp,
                arch.pte_mksoft_dirty,
                lambda x: arch.pte_mkdirty(arch.pte_mkwrite(x)),
                lambda x: arch.pte_wrprotect(arch.pte_mkdirty(arch.pte_mkwrite(x))),
            ):
                try:
                    probes.append(int(f(pte)) & ((1 << 64) - 1))
                except Exception:  # a helper a backend lacks
                    continue
    for _ in range(1024):
        probes.append(rng.getrandbits(64))
        probes.append(rng.getrandbits(64) & rng.getrandbits(64) & rng.getrandbits(64))
    for b in range(64):
        probes.append(1 << b)
        probes.append((1 << b) | 1)
    v = np.array(probes, dtype=np.uint64)
    w = v ^ np.uint64(y)
    dv, dw = arch.ptes_decode(v, _FIELDS), arch.ptes_decode(w, _FIELDS)
    for f in _FIELDS:
        if f in dv and not np.array_equal(dv[f], dw[f]):
            return 0
    if arch.BULK:
        if not np.array_equal(arch.pte_uffd_wp_v(v), arch.pte_uffd_wp_v(w)):
            return 0
        if not np.array_equal(arch.pte_clear_soft_dirty_v(v) != v, arch.pte_clear_soft_dirty_v(w) != w):
            return 0
    for a, b in zip(v.tolist()[:600], w.tolist()[:600]):
        if arch.pte_uffd_wp(a) != arch.pte_uffd_wp(b) or arch.pte_soft_dirty(a) != arch.pte_soft_dirty(b):
            return 0
    return y


class _MmState:
    """What the dense checks derive from one mm's PTE tables (never mutated)."""

    __slots__ = ("keys", "keyset", "raw", "maps", "fmaps", "wmaps", "rss", "suspect", "vsig", "shm", "_yraw", "_any_uw")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.keyset: frozenset[int] = frozenset()
        #: the descriptors (tables stacked in ``keys`` order) this was computed from
        self.raw = np.zeros(0, dtype=np.uint64)
        #: per frame: present normal PTEs mapping it (None: none)
        self.maps: np.ndarray | None = None
        #: per folio head: present normal PTEs mapping a page of it (None: none)
        self.fmaps: np.ndarray | None = None
        #: per frame: writable PTEs of private mappings mapping it (None: none)
        self.wmaps: np.ndarray | None = None
        #: the RSS the PTEs account for ([file, anon, swap, shmem])
        self.rss = [0, 0, 0, 0]
        #: something the dense checks would report (a PTE maps a free or
        #: nonexistent frame): run them
        self.suspect = False
        self.vsig: tuple[tuple[int, int], ...] = ()
        self.shm: frozenset[int] = frozenset()
        self._yraw: np.ndarray | None = None
        self._any_uw: bool | None = None

    def derived(self, raw: np.ndarray) -> "_MmState":
        """The same state for descriptors ``raw`` that differ only in young bits."""
        s = _MmState()
        s.keys, s.keyset, s.raw, s.maps, s.fmaps, s.wmaps = self.keys, self.keyset, raw, self.maps, self.fmaps, self.wmaps
        s.rss, s.suspect, s.vsig, s.shm = list(self.rss), self.suspect, self.vsig, self.shm
        s._yraw, s._any_uw = self._yraw, self._any_uw
        return s


class Incremental:
    """Per-mm states and the mem_map snapshot for ``Validators.run_all``."""

    #: An mm with at most this many PTE slots is recomputed at every run
    #: (cheap), without relying on the mem_map snapshot.  Tests set it to
    #: -1 to put every mm through the incremental path.
    SMALL = 1 << 13

    def __init__(self, validators: Any) -> None:
        self.v = validators
        self.m = validators.m
        k = self.m.kernel
        self.arch = k.arch
        self.per = validators.per
        self._y: int | None = None
        #: id(mm) -> (mm, state)
        self.states: dict[int, tuple[Any, _MmState]] = {}
        #: id(mm) -> (pmds copy, pfns, writable bits)
        self._pmd_cache: dict[int, tuple[dict[int, int], np.ndarray, np.ndarray, np.ndarray]] = {}
        self._snap: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        #: (id(mm), counters) of a child whose state ``fork_copy_ok`` just
        #: derived from its tables; ``trust_fresh``: this run is the fork's own
        #: (nothing ran since), so that state needs no compare if no
        #: descriptor store was counted in between.
        self._fresh: tuple[int, tuple[int, ...]] | None = None
        self._scratch: np.ndarray | None = None
        self._bufs: dict[str, np.ndarray] = {}
        self.trust_fresh = False

    @property
    def y(self) -> int:
        """``young_mask`` of the arch (computed once per arch class and page size)."""
        if self._y is None:
            key = (type(self.arch), self.m.kernel.page_shift)
            if key not in _YOUNG:
                _YOUNG[key] = young_mask(self.arch)
            self._y = _YOUNG[key]
        return self._y

    # -- mem_map snapshot ---------------------------------------------------------
    def _memmap_changes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Frames whose head changed, and frames whose ``PG_anon`` or mapping
        changed, since the last call (None: no snapshot yet)."""
        mem = self.m.kernel.memmap
        snap = self._snap
        if snap is None or len(snap[0]) != mem.nr_frames:
            self._snap = (mem.head.copy(), mem.flags.copy(), mem.mapping.copy())
            return None
        hs, fs, ms = snap
        empty = np.zeros(0, dtype=np.int64)
        fh = empty
        if not np.array_equal(mem.head, hs):
            fh = np.flatnonzero(mem.head != hs)
            hs[fh] = mem.head[fh]
        fc = empty
        if not np.array_equal(mem.flags, fs):
            ix = np.flatnonzero(mem.flags != fs)
            fc = ix[((mem.flags[ix] ^ fs[ix]) & PG_anon) != 0]
            fs[ix] = mem.flags[ix]
        # ``mapping`` only classifies file folios: nothing to compare while no
        # state has a file PTE (a folio turning file-backed flips ``PG_anon``;
        # a stale snapshot only adds frames to later diffs).
        files = any(st.rss[MM_FILEPAGES] or st.rss[MM_SHMEMPAGES] for _, st in self.states.values())
        if files and not np.array_equal(mem.mapping, ms):
            ix = np.flatnonzero(mem.mapping != ms)
            ms[ix] = mem.mapping[ix]
            fc = np.union1d(fc, ix)
        return fh, fc

    # -- one mm's state ---------------------------------------------------------------
    def _vsig(self, mm: Any) -> tuple[tuple[int, int], ...]:
        return tuple((v.vm_start, v.vm_end) for v in mm.vmas if v.vm_flags & VM_SHARED)

    def _shm(self) -> frozenset[int]:
        return frozenset(fid for fid, f in self.m.kernel.files.items() if f.shmem)

    def _stack(self, mm: Any, keys: list[int], scratch: bool = False) -> np.ndarray:
        """The tables ``keys`` of ``mm`` stacked (``scratch``: into a buffer
        reused by the next scratch stack: compare it, ``_keep`` it to keep it)."""
        tabs = mm.space.tables
        if not keys:
            return np.zeros(0, dtype=np.uint64)
        parts = [tabs[i].entries for i in keys]
        if not scratch:
            return np.concatenate(parts)
        n = len(keys) * self.per
        buf = self._scratch
        if buf is None or len(buf) != n:
            buf = self._scratch = np.empty(n, dtype=np.uint64)
        return np.concatenate(parts, out=buf)

    def _buf(self, name: str, n: int, dtype: Any) -> np.ndarray:
        """A scratch array of this run (reused by the next)."""
        b = self._bufs.get(name)
        if b is None or len(b) != n or b.dtype != dtype:
            b = self._bufs[name] = np.empty(n, dtype=dtype)
        return b

    def _keep(self, buf: np.ndarray) -> np.ndarray:
        """Keep a scratch stack (the next one goes to a new buffer)."""
        if buf is self._scratch:
            self._scratch = None
        return buf

    def _contrib(
        self, mm: Any, raw: np.ndarray, vas_of: Any, vsig: tuple[tuple[int, int], ...], shm: frozenset[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], bool] | None:
        """Decode ``raw``: (pfns, heads, writable-private pfns, rss) of its present
        normal entries, and whether one maps a free or nonexistent frame.

        ``vas_of(flat)``: the virtual addresses of entries ``flat`` of ``raw``.
        None when no entry is present and normal.
        """
        k = self.m.kernel
        mem = k.memmap
        nr = mem.nr_frames
        d = self.arch.ptes_decode(raw, ("pfn", "write", "special"))
        pres = d["present"] & ~d["special"]
        if pres.all():
            pfns, wr = d["pfn"], d["write"]
            flat = None
        else:
            flat = np.flatnonzero(pres)
            if not len(flat):
                return None
            pfns, wr = d["pfn"][flat], d["write"][flat]
        oor = (pfns < 0) | (pfns >= nr)
        if oor.any():
            z = np.zeros(0, dtype=np.int64)
            return z, z, z, [0, 0, 0, 0], True
        heads = mem.head[pfns]
        if (heads < 0).any():
            z = np.zeros(0, dtype=np.int64)
            return z, z, z, [0, 0, 0, 0], True
        if vsig and wr.any():
            if flat is None:
                flat = np.arange(len(raw), dtype=np.int64)
            vas = vas_of(flat)
            shared = np.zeros(len(vas), dtype=bool)
            for s, e in vsig:
                shared |= (vas >= s) & (vas < e)
            wr = wr & ~shared
        anon = (mem.flags[heads] & PG_anon) != 0
        rss = [0, 0, 0, 0]
        na = int(np.count_nonzero(anon))
        rss[MM_ANONPAGES] = na
        if na != len(anon):
            files = heads[~anon]
            nshm = int(np.count_nonzero(np.isin(mem.mapping[files], list(shm)))) if shm else 0
            rss[MM_SHMEMPAGES] = nshm
            rss[MM_FILEPAGES] = len(files) - nshm
        return pfns, heads, pfns[wr], rss, False

    def _compute(self, mm: Any, vsig: tuple[tuple[int, int], ...], shm: frozenset[int]) -> _MmState:
        """A fresh state of ``mm`` (every table decoded)."""
        s = _MmState()
        s.keys = list(mm.space.tables)
        s.keyset = frozenset(s.keys)
        s.raw = self._stack(mm, s.keys)
        s.vsig, s.shm = vsig, shm
        if not s.keys:
            return s
        keys = np.array(s.keys, dtype=np.int64)
        per, shift = self.per, self.m.kernel.page_shift
        got = self._contrib(mm, s.raw, lambda f: (keys[f // per] * per + f % per) << shift, vsig, shm)
        if got is None:
            return s
        pfns, heads, wpf, rss, bad = got
        s.rss, s.suspect = rss, bad
        if bad:
            return s
        nr = self.m.kernel.memmap.nr_frames
        s.maps = np.bincount(pfns, minlength=nr).astype(np.int32)
        s.fmaps = np.bincount(heads, minlength=nr).astype(np.int32)
        if len(wpf):
            s.wmaps = np.bincount(wpf, minlength=nr).astype(np.int32)
        return s

    def _update(
        self, mm: Any, st: _MmState, cur: np.ndarray, vsig: tuple[tuple[int, int], ...], shm: frozenset[int]
    ) -> _MmState | None:
        """``st`` moved to descriptors ``cur`` (same keys) from the entries that
        changed; None when too many changed (recompute)."""
        ch = np.flatnonzero(cur != st.raw)
        if len(ch) > max(64, len(cur) >> 3):
            return None
        s = _MmState()
        s.keys, s.keyset, s.raw, s.vsig, s.shm = st.keys, st.keyset, cur, vsig, shm
        if not len(ch):
            s.maps, s.fmaps, s.wmaps, s.rss = st.maps, st.fmaps, st.wmaps, list(st.rss)
            return s
        keys = np.array(st.keys, dtype=np.int64)
        per, shift = self.per, self.m.kernel.page_shift
        vas = (keys[ch // per] * per + ch % per) << shift
        old = self._contrib(mm, st.raw[ch], lambda f: vas[f], vsig, shm)
        new = self._contrib(mm, cur[ch], lambda f: vas[f], vsig, shm)
        if (old is not None and old[4]) or (new is not None and new[4]):
            return None
        nr = self.m.kernel.memmap.nr_frames
        arrays: list[np.ndarray | None] = [st.maps, st.fmaps, st.wmaps]
        fresh = [False, False, False]
        rss = list(st.rss)
        for got, sign in ((old, -1), (new, 1)):
            if got is None:
                continue
            for j, idx in enumerate(got[:3]):
                if not len(idx):
                    continue
                a = arrays[j]
                if a is None or not fresh[j]:
                    a = arrays[j] = np.zeros(nr, dtype=np.int32) if a is None else a.copy()
                    fresh[j] = True
                np.add.at(a, idx, sign)
            for j in range(4):
                rss[j] += sign * got[3][j]
        s.maps, s.fmaps, s.wmaps = arrays
        if s.wmaps is not None and s.wmaps is not st.wmaps and not s.wmaps.any():
            s.wmaps = None
        if s.maps is not None and s.maps is not st.maps and not s.maps.any():
            s.maps = s.fmaps = None
        s.rss = rss
        return s

    def _sync(
        self,
        mm: Any,
        changes: tuple[np.ndarray, np.ndarray] | None,
        vsig: tuple[tuple[int, int], ...],
        shm: frozenset[int],
    ) -> _MmState:
        got = self.states.get(id(mm))
        st = got[1] if got is not None and got[0] is mm else None
        tabs = mm.space.tables
        small = len(tabs) * self.per <= self.SMALL
        if st is not None and not small and not st.suspect and st.vsig == vsig and st.shm == shm and changes is not None:
            fh, fc = changes
            if st.maps is not None and (
                (len(fh) and st.maps[fh].any()) or (len(fc) and st.fmaps is not None and st.fmaps[fc].any())
            ):
                st = None
        else:
            st = None
        new: _MmState | None = None
        fresh = self._fresh
        if st is not None and fresh is not None and fresh[0] == id(mm) and self.trust_fresh and fresh[1] == self._stores():
            new = st
        elif st is not None and tabs.keys() == st.keyset:
            cur = self._stack(mm, st.keys, scratch=True)
            if np.array_equal(cur, st.raw):
                new = st
            else:
                new = self._update(mm, st, self._keep(cur), vsig, shm)
        if new is None:
            new = self._compute(mm, vsig, shm)
        self.states[id(mm)] = (mm, new)
        return new

    # -- fork ------------------------------------------------------------------------
    def snapshot(self, mm: Any) -> tuple[list[int], np.ndarray, _MmState | None]:
        """The tables of ``mm`` now (keys, stacked copy) and its state if that is
        still the state of these descriptors."""
        got = self.states.get(id(mm))
        st = got[1] if got is not None and got[0] is mm else None
        tabs = mm.space.tables
        if st is not None and tabs.keys() == st.keyset:
            cur = self._stack(mm, st.keys, scratch=True)
            if np.array_equal(cur, st.raw):
                return st.keys, st.raw, st
            return st.keys, self._keep(cur), None
        keys = list(tabs)
        return keys, self._stack(mm, keys), None

    def fork_copy_ok(self, child: Any, keys: list[int], raw: np.ndarray, st: _MmState, pmds: set[int]) -> bool:
        """Whether every ``fork-copy`` check passes because the child's tables
        are the parent's snapshot ``raw`` but for young bits; if so the child
        inherits ``st``."""
        tabs = child.mm.space.tables
        if tabs.keys() != st.keyset or st.keyset & pmds:
            return False
        cur = self._stack(child.mm, keys)
        y = np.uint64(self.y)
        if self.y:
            if st._yraw is None:
                st._yraw = raw | y
            if not np.array_equal(np.bitwise_or(cur, y, out=self._buf("y", len(cur), cur.dtype)), st._yraw):
                return False
        elif not np.array_equal(cur, raw):
            return False
        if any(not v.vm_flags & VM_UFFD_WP for v in child.mm.vmas):
            if st._any_uw is None:
                uw = self.arch.pte_uffd_wp_v(raw) if self.arch.BULK else np.array(
                    [self.arch.pte_uffd_wp(int(x)) for x in raw], dtype=bool
                )
                st._any_uw = bool((uw & self.arch.ptes_decode(raw, ())["present"]).any()) if len(raw) else False
            if st._any_uw:
                return False
        self.states[id(child.mm)] = (child.mm, st.derived(cur))
        self._fresh = (id(child.mm), self._stores())
        return True

    def _stores(self) -> tuple[int, ...]:
        c = self.m.counters
        return tuple(c.get(n) for n in ("pte.write", "pte.atomic", "pmd.write", "hw.af_update", "hw.dirty_update"))

    # -- the run -------------------------------------------------------------------------
    def _pmds(self, mm: Any, zero_arr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(pfn, writable) of ``mm``'s PMD maps that are not the huge zero page, as
        ``run_all`` decodes them; None if a pfn is out of range."""
        arch = self.arch
        pmds = mm.space.pmds
        c = self._pmd_cache.get(id(mm))
        if c is None or c[0] != pmds or not np.array_equal(c[3], zero_arr):
            # a forked child's PMDs are its parent's: share the decode
            for o in self._pmd_cache.values():
                if len(o[0]) == len(pmds) and o[0] == pmds and np.array_equal(o[3], zero_arr):
                    c = o
                    break
        if c is None or c[0] != pmds or not np.array_equal(c[3], zero_arr):
            pitems = list(pmds.items())
            d = arch.ptes_decode(np.array([arch.pmd_pte(blk) for _, blk in pitems], dtype=np.uint64), ("pfn", "write"))
            use = d["present"] & ~np.isin(d["pfn"], zero_arr)
            pos = np.flatnonzero(use)
            c = (dict(pmds), d["pfn"][pos], d["write"][pos], zero_arr.copy())
        self._pmd_cache[id(mm)] = c
        pf, wr = c[1], c[2]
        if len(pf) and (int(pf.min()) < 0 or int(pf.max()) >= self.m.kernel.memmap.nr_frames):
            return None
        return pf, wr

    def run(self) -> bool:
        """True when every check of the dense ``run_all`` passes (False: maybe not)."""
        live = {id(mm) for mm in self.m.kernel.mms}
        for key in [key for key in self.states if key not in live]:
            del self.states[key]
        for key in [key for key in self._pmd_cache if key not in live]:
            del self._pmd_cache[key]
        try:
            return self._run()
        finally:
            self._fresh = None
            self.trust_fresh = False

    def _run(self) -> bool:
        k = self.m.kernel
        mem = k.memmap
        nr = mem.nr_frames
        arch = self.arch
        zero = {k.zero_pfn}
        if k.huge_zero_pfn is not None:
            zero.add(k.huge_zero_pfn)
        zero_arr = np.array(sorted(zero), dtype=np.int64)
        # Only states with PTE maps depend on mem_map: without one, no
        # compare (a later diff is then over a longer interval: still sound).
        if any(st.maps is not None for _, st in self.states.values()) or self._snap is None:
            changes = self._memmap_changes()
        else:
            changes = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        shm = self._shm()
        maps: list[np.ndarray] = []
        fmaps: list[np.ndarray] = []
        wmaps: list[np.ndarray] = []
        pmd_pfs: list[np.ndarray] = []
        for mm in k.mms:
            st = self._sync(mm, changes, self._vsig(mm), shm)
            if st.suspect:
                return False
            rss = list(st.rss)
            if st.maps is not None:
                maps.append(st.maps)
                assert st.fmaps is not None
                fmaps.append(st.fmaps)
            if st.wmaps is not None:
                wmaps.append(st.wmaps)
            if mm.space.pmds:
                got = self._pmds(mm, zero_arr)
                if got is None:
                    return False
                pf, wr = got
                if wr.any() and ((mem.flags[pf[wr]] & PG_anon_exclusive) == 0).any():
                    return False
                pmd_pfs.append(pf)
                rss[MM_ANONPAGES] += arch.HPAGE_PMD_NR * len(pf)
            if rss != list(mm.rss):
                return False
        head = mem.head
        P = _total(maps, self._buf("P", nr, np.int32) if len(maps) > 1 else None)
        FP = _total(fmaps, self._buf("FP", nr, np.int32) if len(fmaps) > 1 else None)
        W = _total(wmaps)
        # The zero pages count as not mapped (``run_all`` zeroes them).
        if P is not None:
            assert FP is not None
            zs = [z for z in zero if 0 <= z < nr and P[z]]
            if zs:
                P, FP = P.copy(), FP.copy()
                for z in zs:
                    FP[head[z]] -= P[z]
                    P[z] = 0
        pmd_pf = np.concatenate(pmd_pfs) if pmd_pfs else np.zeros(0, dtype=np.int64)
        pmd_nz, pmd_cnt = np.unique(pmd_pf.astype(np.int64), return_counts=True)
        pmd_cnt = pmd_cnt.astype(np.int64)
        # Per-page mapcount.
        if P is None:
            cand = np.flatnonzero(mem.mapcount) if np.count_nonzero(mem.mapcount) else np.zeros(0, dtype=np.int64)
        else:
            cand = np.zeros(0, dtype=np.int64) if np.array_equal(mem.mapcount, P) else np.flatnonzero(mem.mapcount != P)
        if len(cand):
            cand = cand[head[cand] >= 0]
            if len(cand) and not np.isin(cand, zero_arr).all():
                return False
        # Entire mapcounts.
        if not self._entire_ok(pmd_nz, pmd_cnt, zero_arr):
            return False
        # refcount >= mappings, per folio.
        ref = mem.refcount
        if FP is not None:
            if len(pmd_nz):
                FP = FP.astype(np.int64)
                FP[pmd_nz] += pmd_cnt
            cand = np.flatnonzero(ref < FP)
        else:
            cand = np.flatnonzero(ref < 0) if len(ref) and int(ref.min()) < 0 else np.zeros(0, dtype=np.int64)
            if len(pmd_nz):
                cand = np.union1d(cand, pmd_nz[ref[pmd_nz] < pmd_cnt])
        if len(cand):
            cand = cand[head[cand] == cand]
            if len(cand) and not np.isin(cand, zero_arr).all():
                return False
        # Pins, writable-shared, writable-anon-exclusive.
        if any(self.v.pins.values()):
            try:
                self.v._check_pins(P if P is not None else np.zeros(nr, dtype=np.int64))
            except InvariantViolation:
                return False
        if W is not None:
            wnz = np.flatnonzero(W)
            h = head[wnz]
            if (h < 0).any():
                return False
            if ((mem.flags[h] & PG_anon) == 0).any() or ((mem.flags[wnz] & PG_anon_exclusive) == 0).any():
                return False
            assert P is not None
            if len(pmd_nz):
                total = P.astype(np.int64)
                nrs = np.left_shift(1, mem.order[pmd_nz].astype(np.int64))
                total[batch_positions(pmd_nz, nrs)] += np.repeat(pmd_cnt, nrs)
            else:
                total = P
            bad = wnz[total[wnz] > 1]
            if len(bad) and not np.isin(bad, zero_arr).all():
                return False
        return True


    def _entire_ok(self, pmd_nz: np.ndarray, pmd_cnt: np.ndarray, zero_arr: np.ndarray) -> bool:
        """The dense entire-mapcount check passes: each folio's entire mapcount
        is its PMD maps (heads only, the zero pages left out)."""
        mem = self.m.kernel.memmap
        head, ent_all = mem.head, mem.entire_mapcount
        nnz = int(np.count_nonzero(ent_all))
        if not nnz and not len(pmd_nz):
            return True
        if len(pmd_nz) and not np.isin(pmd_nz, zero_arr).any():
            # the usual case: exactly the PMD-mapped heads have one, equal to their maps
            z_nz = sum(1 for z in zero_arr.tolist() if 0 <= z < len(ent_all) and ent_all[z])
            if (
                nnz == len(pmd_nz) + z_nz
                and (head[pmd_nz] == pmd_nz).all()
                and np.array_equal(ent_all[pmd_nz], pmd_cnt)
            ):
                return True
        em = np.flatnonzero(ent_all)
        em = em[head[em] == em]
        cand = np.union1d(em, pmd_nz)
        cand = cand[~np.isin(cand, zero_arr)]
        ent = np.where(head[cand] == cand, ent_all[cand], 0)
        want = np.zeros(len(cand), dtype=np.int64)
        if len(pmd_nz) and len(cand):
            i = np.minimum(np.searchsorted(pmd_nz, cand), len(pmd_nz) - 1)
            hit = pmd_nz[i] == cand
            want[hit] = pmd_cnt[i[hit]]
        return not (ent != want).any()


def _total(parts: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray | None:
    """The sum of ``parts`` (the only one itself: do not modify the result)."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    out = np.add(parts[0], parts[1], out=out)
    for a in parts[2:]:
        out += a
    return out

