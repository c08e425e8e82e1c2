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
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from ..arch.pgtable import batch_positions
from ..errors import InvariantViolation
from ..mm.memmap import PG_anon, PG_anon_exclusive
from ..mm.mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_SHARED, VM_UFFD_WP

__all__ = ["Incremental", "cow_copy", "young_mask"]

_YOUNG: dict[tuple[type, int], int] = {}
_COW: dict[tuple[type, int], Callable[[np.ndarray], np.ndarray] | None] = {}

_FIELDS = ("valid", "present", "pfn", "write", "dirty", "cont", "special")


_PROBES: dict[tuple[type, int], np.ndarray] = {}


def _probes(arch: Any) -> np.ndarray:
    """A broad set of descriptors to probe the arch's helpers with: the
    arch's own PTEs for every protection and state, and random words
    (computed once per arch class and page size; do not modify)."""
    key = (type(arch), int(arch.PAGE_SHIFT))
    got = _PROBES.get(key)
    if got is None:
        got = _PROBES[key] = _make_probes(arch)
    return got


def _make_probes(arch: Any) -> np.ndarray:
    rng = random.Random(0x5EED)
    y = int(arch.pte_mkyoung(0)) ^ int(arch.pte_mkold(0))
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
                arch.pte_mkold,
                arch.pte_mkyoung,
                lambda x: arch.pte_mkdirty(arch.pte_mkwrite(x)),
                lambda x: arch.pte_wrprotect(arch.pte_mkdirty(arch.pte_mkwrite(x))),
                lambda x: arch.pte_mkcont(arch.pte_mkdirty(arch.pte_mkwrite(x))),
                lambda x: arch.pte_mkcont(arch.pte_mkwrite(x)),
                lambda x: arch.pte_mkcont(arch.pte_mkuffd_wp(x)),
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
    return np.array(probes, dtype=np.uint64)


def _same_fields(arch: Any, v: np.ndarray, w: np.ndarray, fields: tuple[str, ...] = _FIELDS) -> bool:
    """Whether every field the validators read (``fields`` of ``ptes_decode``,
    uffd-wp, soft-dirty; vector and scalar helpers) is the same in ``v`` and ``w``."""
    dv, dw = arch.ptes_decode(v, fields), arch.ptes_decode(w, fields)
    for f in (*fields, "valid", "present"):
        if f in dv and not np.array_equal(dv[f], dw[f]):
            return False
    if arch.BULK:
        if not np.array_equal(arch.pte_uffd_wp_v(v), arch.pte_uffd_wp_v(w)):
            return False
        if not np.array_equal(arch.pte_clear_soft_dirty_v(v) != v, arch.pte_clear_soft_dirty_v(w) != w):
            return False
    for a, b in zip(v.tolist()[:600], w.tolist()[:600]):
        if arch.pte_uffd_wp(a) != arch.pte_uffd_wp(b) or arch.pte_soft_dirty(a) != arch.pte_soft_dirty(b):
            return False
    return True


def young_mask(arch: Any) -> int:
    """The descriptor bits only ``young`` depends on (0 when unsure).

    The bits ``pte_mkyoung`` sets and ``pte_mkold`` clears, kept only if
    flipping them changes none of the fields the validators read (every
    ``ptes_decode`` field but ``young``, uffd-wp, soft-dirty) on a broad
    set of probe descriptors (``_probes``).
    """
    base = arch.pfn_pte(0x1234, arch.vm_get_page_prot(0x3))
    y = int(arch.pte_mkyoung(base)) ^ int(arch.pte_mkold(base))
    if not y or y != (int(arch.pte_mkyoung(0)) ^ int(arch.pte_mkold(0))):
        return 0
    v = _probes(arch)
    if not _same_fields(arch, v, v ^ np.uint64(y)):
        return 0
    return y


def cow_copy(arch: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """``pte_mkold(pte_wrprotect(x))`` (vector), what fork makes of a writable
    PTE of a CoW mapping, if it provably keeps what the validators read
    (None when unsure or without the vector helpers).

    Probed on ``_probes`` (and on their images, twice): the fields the
    ``fork-copy`` checks read (``_same_fields``: presence, accessibility,
    frame, dirty, contiguous bit, special, uffd-wp, soft-dirty) are kept,
    and the result is never writable (``ptes_decode``'s ``write``, what the
    per-mm states count).
    """
    if not getattr(arch, "BULK", False):
        return None

    def f(vals: np.ndarray) -> np.ndarray:
        out: np.ndarray = arch.pte_mkold_v(arch.pte_wrprotect_v(vals))
        return out

    try:
        v = _probes(arch)
        w = f(v)
        v2 = np.concatenate([v, w])
        w2 = f(v2)
        if w2.dtype != np.uint64 or w2.shape != v2.shape:
            return None
        if not _same_fields(arch, v2, w2, tuple(x for x in _FIELDS if x != "write")):
            return None
        if arch.ptes_decode(w2, ("write",))["write"].any():
            return None
    except Exception:  # a helper a backend lacks
        return None
    return f


_NARROW = (np.uint8, np.uint16, np.int32, np.int64)


def _narrow(counts: np.ndarray) -> np.ndarray:
    """``counts`` (>= 0) in the narrowest dtype of ``_NARROW`` that holds them."""
    top = int(counts.max()) if len(counts) else 0
    for dt in _NARROW:
        if top <= np.iinfo(dt).max:
            return counts.astype(dt)
    return counts


class _MmState:
    """What the dense checks derive from one mm's PTE tables (never mutated).

    The per-frame counts are in the narrowest dtype that holds them
    (``_narrow``), and shared between states where equal (a forked child,
    a parent whose fork only write-protected it).
    """

    __slots__ = ("tabs", "maps", "fmaps", "wmaps", "rss", "suspect", "vsig", "shm", "_any_uw")

    def __init__(self) -> None:
        #: the tables (pmd index -> PteTable) this was computed from; their
        #: descriptors then are their current ones unless the store log of
        #: the space holds them (``hw/tables.py``)
        self.tabs: dict[int, Any] = {}
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
        self._any_uw: bool | None = None

    def derived(self, tabs: dict[int, Any]) -> "_MmState":
        """The same state for tables ``tabs`` whose descriptors differ only in young bits."""
        s = _MmState()
        s.tabs, s.maps, s.fmaps, s.wmaps = tabs, self.maps, self.fmaps, self.wmaps
        s.rss, s.suspect, s.vsig, s.shm = list(self.rss), self.suspect, self.vsig, self.shm
        s._any_uw = self._any_uw
        return s


class Incremental:
    """Per-mm states and the mem_map snapshot for ``Validators.run_all``.

    Nothing descriptor-sized is kept between runs: which tables changed,
    and their descriptors before, come from the store log of each address
    space (``hw/tables.py``), started at the first run that sees it and
    emptied after each sync.
    """

    #: Kept for tests (all mms go through the same path now).
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
        #: mem_map at the last run: head (int32), PG_anon (packed bits)
        self._snap: tuple[np.ndarray, np.ndarray] | None = None
        #: mem_map.mapping at the last run, kept only while a state maps a file page
        self._msnap: np.ndarray | None = None
        #: this run skipped the mem_map compare (no state mapped a page)
        self._stale = False

    @property
    def cow(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """``cow_copy`` of the arch (computed once per arch class and page size)."""
        key = (type(self.arch), self.m.kernel.page_shift)
        if key not in _COW:
            _COW[key] = cow_copy(self.arch)
        return _COW[key]

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
    def _memmap_changes(self) -> np.ndarray | None:
        """Frames whose head, ``PG_anon`` or (while a state maps a file page)
        mapping changed since the last call (None: no snapshot yet).

        The snapshot: ``head`` as int32 (compared as int64: exact; a head
        that does not fit differs at every call), ``PG_anon`` packed in
        bits, ``mapping`` only while needed."""
        mem = self.m.kernel.memmap
        nr = mem.nr_frames
        anon = np.packbits((mem.flags & PG_anon) != 0)
        files = any(st.rss[MM_FILEPAGES] or st.rss[MM_SHMEMPAGES] for _, st in self.states.values())
        ms = self._msnap
        self._msnap = mem.mapping.copy() if files else None
        snap = self._snap
        if snap is None or len(snap[0]) != nr:
            self._snap = (mem.head.astype(np.int32), anon)
            return None
        hs, an = snap
        mask: np.ndarray | None = None
        if not np.array_equal(mem.head, hs):
            mask = mem.head != hs
            hs[mask] = mem.head[mask]
        if not np.array_equal(anon, an):
            d = np.unpackbits(anon ^ an, count=nr).view(bool)
            mask = d if mask is None else mask | d
            self._snap = (hs, anon)
        if files:
            if ms is None:
                return None
            if not np.array_equal(mem.mapping, ms):
                d = mem.mapping != ms
                mask = d if mask is None else mask | d
        return np.flatnonzero(mask) if mask is not None else np.zeros(0, dtype=np.int64)

    # -- one mm's state ---------------------------------------------------------------
    def _vsig(self, mm: Any) -> tuple[tuple[int, int], ...]:
        return tuple((v.vm_start, v.vm_end) for v in mm.vmas if v.vm_flags & VM_SHARED)

    def _shm(self) -> frozenset[int]:
        return frozenset(fid for fid, f in self.m.kernel.files.items() if f.shmem)

    def _stack(self, tabs: dict[int, Any], keys: list[int]) -> np.ndarray:
        """The current descriptors of tables ``keys`` stacked (a copy)."""
        if not keys:
            return np.zeros(0, dtype=np.uint64)
        return np.concatenate([tabs[i].entries for i in keys])

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

    def _compute(
        self, mm: Any, vsig: tuple[tuple[int, int], ...], shm: frozenset[int], prev: _MmState | None
    ) -> _MmState:
        """A fresh state of ``mm`` (every table decoded); its arrays are
        ``prev``'s where equal (shared)."""
        s = _MmState()
        s.tabs = dict(mm.space.tables)
        s.vsig, s.shm = vsig, shm
        if not s.tabs:
            return s
        keys = list(s.tabs)
        raw = self._stack(s.tabs, keys)
        karr = np.array(keys, dtype=np.int64)
        per, shift = self.per, self.m.kernel.page_shift
        got = self._contrib(mm, raw, lambda f: (karr[f // per] * per + f % per) << shift, vsig, shm)
        del raw
        if got is None:
            return s
        pfns, heads, wpf, rss, bad = got
        s.rss, s.suspect = rss, bad
        if bad:
            return s
        nr = self.m.kernel.memmap.nr_frames
        s.maps = _narrow(np.bincount(pfns, minlength=nr))
        s.fmaps = _narrow(np.bincount(heads, minlength=nr))
        if len(wpf):
            s.wmaps = _narrow(np.bincount(wpf, minlength=nr))
        # share equal arrays (a child forked from a writable parent, a parent
        # write-protected by fork): this mm's last state and a few others
        others = [prev] if prev is not None else []
        others += [o for key, (_, o) in self.states.items() if key != id(mm)][:8]
        for name in ("maps", "fmaps", "wmaps"):
            a = getattr(s, name)
            seen: set[int] = set()
            for o in others:
                b = getattr(o, name)
                if b is None or id(b) in seen:
                    continue
                seen.add(id(b))
                if _same(a, b) is b:
                    setattr(s, name, b)
                    break
        return s

    def _update(
        self,
        mm: Any,
        st: _MmState,
        old: np.ndarray,
        new: np.ndarray,
        vas: np.ndarray,
        vsig: tuple[tuple[int, int], ...],
        shm: frozenset[int],
    ) -> _MmState | None:
        """``st`` moved to the current tables, given the entries that changed
        (at ``vas``, from ``old`` to ``new``); None: recompute."""
        s = _MmState()
        s.tabs, s.vsig, s.shm = dict(mm.space.tables), vsig, shm
        s._any_uw = None
        if not len(vas):
            s.maps, s.fmaps, s.wmaps, s.rss = st.maps, st.fmaps, st.wmaps, list(st.rss)
            return s
        og = self._contrib(mm, old, lambda f: vas[f], vsig, shm)
        ng = self._contrib(mm, new, lambda f: vas[f], vsig, shm)
        if (og is not None and og[4]) or (ng is not None and ng[4]):
            return None
        nr = self.m.kernel.memmap.nr_frames
        arrays: list[np.ndarray | None] = [st.maps, st.fmaps, st.wmaps]
        rss = list(st.rss)
        for j in range(3):
            parts: list[tuple[np.ndarray, int]] = []
            for got, sign in ((og, -1), (ng, 1)):
                if got is not None:
                    arr = got[j]
                    assert isinstance(arr, np.ndarray)
                    if len(arr):
                        parts.append((arr, sign))
            if not parts:
                continue
            idx = np.concatenate([p for p, _ in parts])
            w = np.concatenate([np.full(len(p), sg, dtype=np.int64) for p, sg in parts])
            u, inv = np.unique(idx, return_inverse=True)
            dlt = np.bincount(inv, weights=w, minlength=len(u)).astype(np.int64)
            keep = dlt != 0
            if not keep.any():
                continue
            u, dlt = u[keep], dlt[keep]
            a = arrays[j]
            cur = (a[u].astype(np.int64) if a is not None else np.zeros(len(u), dtype=np.int64)) + dlt
            if int(cur.min()) < 0:
                return None
            if a is None:
                a = np.zeros(nr, dtype=np.uint8)
            top = int(cur.max())
            dt = next(d for d in _NARROW if top <= np.iinfo(d).max or d is np.int64)
            a = a.astype(np.promote_types(a.dtype, dt))  # a copy (states are never mutated)
            a[u] = cur
            arrays[j] = a
        for got, sign in ((og, -1), (ng, 1)):
            if got is not None:
                for j in range(4):
                    rss[j] += sign * got[3][j]
        s.maps, s.fmaps, s.wmaps = arrays
        if s.wmaps is not None and s.wmaps is not st.wmaps and not s.wmaps.any():
            s.wmaps = None
        if s.maps is not None and s.maps is not st.maps and not s.maps.any():
            s.maps = s.fmaps = None
        s.rss = rss
        return s

    def _logged(self, space: Any, st: _MmState) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Each table the store log names once: (level-2 index, its entries
        when ``st`` was computed, its entries now; zeros where absent)."""
        log = space.log
        zeros = np.zeros(self.per, dtype=np.uint64)
        done: set[int] = set()
        for t in log:
            key = t.pmd_index
            if key in done:
                continue
            done.add(key)
            pt = st.tabs.get(key)
            if pt is None:
                ov = zeros
            elif pt.seen is log:
                ov = pt.old if pt.old is not None else zeros
            else:
                ov = pt.entries
            ct = space.tables.get(key)
            yield key, ov, (ct.entries if ct is not None else zeros)

    def _changes(self, mm: Any, st: _MmState) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The entries of ``mm`` that changed since ``st`` (old values, new
        values, virtual addresses), from the store log; None: too many."""
        space = mm.space
        per, shift = self.per, self.m.kernel.page_shift
        olds: list[np.ndarray] = []
        news: list[np.ndarray] = []
        vas: list[np.ndarray] = []
        n = 0
        limit = max(64, (len(st.tabs) * per) >> 3)
        for key, ov, nv in self._logged(space, st):
            ch = np.flatnonzero(ov != nv)
            if not len(ch):
                continue
            n += len(ch)
            if n > limit:
                return None
            olds.append(ov[ch])
            news.append(nv[ch])
            vas.append((key * per + ch) << shift)
        if not olds:
            z = np.zeros(0, dtype=np.uint64)
            return z, z, np.zeros(0, dtype=np.int64)
        return np.concatenate(olds), np.concatenate(news), np.concatenate(vas)

    def _sync(
        self,
        mm: Any,
        changes: np.ndarray | None,
        vsig: tuple[tuple[int, int], ...],
        shm: frozenset[int],
    ) -> _MmState:
        got = self.states.get(id(mm))
        prev = got[1] if got is not None and got[0] is mm else None
        space = mm.space
        st = prev if space.log is not None else None
        if st is not None and not st.suspect and st.vsig == vsig and st.shm == shm and changes is not None:
            if (
                len(changes)
                and st.maps is not None
                and (st.maps[changes].any() or (st.fmaps is not None and st.fmaps[changes].any()))
            ):
                st = None
        else:
            st = None
        new: _MmState | None = None
        if st is not None:
            if not space.log:
                new = st
            else:
                ch = self._changes(mm, st)
                if ch is not None:
                    new = self._update(mm, st, ch[0], ch[1], ch[2], vsig, shm)
                else:
                    # many changes: fork write-protecting the parent?
                    new = self._wrprotected(mm, st, vsig, shm)
        if new is None:
            new = self._compute(mm, vsig, shm, prev)
        space.new_epoch()
        self.states[id(mm)] = (mm, new)
        return new

    # -- fork ------------------------------------------------------------------------
    def snapshot(self, mm: Any) -> tuple[list[int], np.ndarray, _MmState | None]:
        """The tables of ``mm`` now (keys, stacked copy) and its state if that is
        still the state of these descriptors."""
        got = self.states.get(id(mm))
        st = got[1] if got is not None and got[0] is mm else None
        tabs = mm.space.tables
        if st is not None and (mm.space.log or mm.space.log is None or tabs.keys() != st.tabs.keys()):
            st = None
        keys = list(tabs)
        return keys, self._stack(tabs, keys), st

    def fork_copy_ok(
        self, child: Any, keys: list[int], raw: np.ndarray, st: _MmState, pmds: set[int]
    ) -> bool:
        """Whether every ``fork-copy`` check passes because each entry of the
        child's tables is the parent's snapshot ``raw`` but for young bits, or
        its CoW copy (``cow_copy``: write-protected, old) but for young bits;
        if so the child inherits ``st`` (less the writable PTEs the copies lost).

        Both keep every field those checks read (``young_mask``, ``cow_copy``)
        but uffd-wp in a VMA without VM_UFFD_WP, checked apart."""
        tabs = child.mm.space.tables
        if tabs.keys() != st.tabs.keys() or not pmds.isdisjoint(tabs.keys()):
            return False
        cur = self._stack(tabs, keys)
        ref = raw
        if self.y:
            y = np.uint64(self.y)
            np.bitwise_or(cur, y, out=cur)
            ref = raw | y
        same = cur == ref
        allsame = bool(same.all())
        if not allsame:
            cow = self.cow
            if cow is None or st.suspect:
                return False
            t = cow(raw)
            if self.y:
                t = t | y
            if not (same | (cur == t)).all():
                return False
            del t
        del cur, ref
        if any(not v.vm_flags & VM_UFFD_WP for v in child.mm.vmas):
            if st._any_uw is None:
                uw = (
                    self.arch.pte_uffd_wp_v(raw)
                    if self.arch.BULK
                    else np.array([self.arch.pte_uffd_wp(int(x)) for x in raw], dtype=bool)
                )
                st._any_uw = bool(uw.any()) and bool((uw & self.arch.ptes_decode(raw, ())["present"]).any())
            if st._any_uw:
                return False
        if allsame:
            new = st.derived(dict(tabs))
        else:
            # the copies are never writable: the child's writable PTEs are
            # the parent's at the entries copied as they were
            per, shift = self.per, self.m.kernel.page_shift
            karr = np.array(keys, dtype=np.int64)

            def at(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return raw[f], (karr[f // per] * per + f % per) << shift

            nlost = len(raw) - int(np.count_nonzero(same))
            got = self._wmaps_without(
                st, nlost, len(raw), lambda: at(np.flatnonzero(~same)), lambda: at(np.flatnonzero(same))
            )
            if got is False:
                return False
            new = st.derived(dict(tabs))
            new.wmaps = got if isinstance(got, np.ndarray) else None
        self.states[id(child.mm)] = (child.mm, new)
        child.mm.space.new_epoch()
        return True

    def _wmaps_without(
        self,
        st: _MmState,
        nlost: int,
        ntotal: int,
        lost: Callable[[], tuple[np.ndarray, np.ndarray]],
        kept: Callable[[], tuple[np.ndarray, np.ndarray]],
    ) -> np.ndarray | bool | None:
        """``st.wmaps`` once ``nlost`` of the ``ntotal`` entries it was counted
        from are no longer writable (the rest unchanged): from the descriptors
        (and virtual addresses) of the entries that were (``lost()``) or of
        the others (``kept()``), whichever are fewer.  False: recompute."""
        if st.wmaps is None:
            return None
        nr = self.m.kernel.memmap.nr_frames
        if 2 * nlost <= ntotal:
            raw, vas = lost()
            got = self._contrib(None, raw, lambda f: vas[f], st.vsig, st.shm)
            if got is None:
                return st.wmaps
            if got[4]:
                return False
            wpf = got[2]
            if not len(wpf):
                return st.wmaps
            u, c = np.unique(wpf, return_counts=True)
            cur = st.wmaps[u].astype(np.int64) - c
            if int(cur.min()) < 0:
                return False
            a = st.wmaps.copy()
            a[u] = cur
            return a if a.any() else None
        raw, vas = kept()
        got = self._contrib(None, raw, lambda f: vas[f], st.vsig, st.shm)
        if got is None:
            return None
        if got[4]:
            return False
        wpf = got[2]
        return _narrow(np.bincount(wpf, minlength=nr)) if len(wpf) else None

    def _wrprotected(
        self, mm: Any, st: _MmState, vsig: tuple[tuple[int, int], ...], shm: frozenset[int]
    ) -> _MmState | None:
        """``st`` moved to the current tables when every entry that changed is
        the old one's CoW copy (``cow_copy``) but for young bits: what fork
        makes of the parent's writable PTEs (then only writable PTEs are lost:
        the frames mapped and the RSS are the same).  None: recompute."""
        cow = self.cow
        space = mm.space
        log = space.log
        if cow is None or st.suspect or log is None or space.tables.keys() != st.tabs.keys():
            return None
        per, shift = self.per, self.m.kernel.page_shift
        lkeys: list[int] = []
        ovs: list[np.ndarray] = []
        nvs: list[np.ndarray] = []
        for key, ov, nv in self._logged(space, st):
            lkeys.append(key)
            ovs.append(ov)
            nvs.append(nv)
        if not lkeys:
            return None
        seen = set(lkeys)
        ovals, nvals = np.concatenate(ovs), np.concatenate(nvs)
        del ovs, nvs
        chg = ovals != nvals
        tw = cow(ovals)
        if self.y:
            y = np.uint64(self.y)
            tw = tw | y
            nw = nvals | y
        else:
            nw = nvals
        if not ((tw == nw) | ~chg).all():
            return None
        del tw, nw
        ch = np.flatnonzero(chg)
        karr = np.array(lkeys, dtype=np.int64)

        def vas(f: np.ndarray) -> np.ndarray:
            out: np.ndarray = (karr[f // per] * per + f % per) << shift
            return out

        def lost() -> tuple[np.ndarray, np.ndarray]:
            return ovals[ch], vas(ch)

        def kept() -> tuple[np.ndarray, np.ndarray]:
            k = np.flatnonzero(~chg)
            raws, vs = [nvals[k]], [vas(k)]
            col = np.arange(per, dtype=np.int64)
            for key, tab in space.tables.items():
                if key not in seen:
                    raws.append(tab.entries)
                    vs.append((key * per + col) << shift)
            return np.concatenate(raws), np.concatenate(vs)

        nlost = len(ch)
        got = self._wmaps_without(st, nlost, len(space.tables) * per, lost, kept)
        if got is False:
            return None
        s = st.derived(dict(space.tables))
        s.vsig, s.shm, s._any_uw = vsig, shm, None
        s.wmaps = got if isinstance(got, np.ndarray) else None
        return s

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
            d = arch.ptes_decode(
                np.array([arch.pmd_pte(blk) for _, blk in pitems], dtype=np.uint64), ("pfn", "write")
            )
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
        self._stale = False
        ok = self._run()
        if ok:
            self._resnap()
        return ok

    def _resnap(self) -> None:
        """After a run that synced every mm with mem_map as it is now: retake
        the snapshot where it is behind, so that the next run does not see
        every frame changed and recompute every state -- the one skipped
        while no state mapped a page (``_run``; the first write of a
        process), and ``mapping`` once a state maps a file page."""
        mem = self.m.kernel.memmap
        files = any(st.rss[MM_FILEPAGES] or st.rss[MM_SHMEMPAGES] for _, st in self.states.values())
        if self._stale and any(st.maps is not None for _, st in self.states.values()):
            self._snap = (mem.head.astype(np.int32), np.packbits((mem.flags & PG_anon) != 0))
            self._msnap = mem.mapping.copy() if files else None
        elif files and self._msnap is None and self._snap is not None:
            self._msnap = mem.mapping.copy()

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
            changes = np.zeros(0, dtype=np.int64)
            self._stale = True
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
        P = _total(maps)
        FP = _total(fmaps)
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
            cand = (
                np.flatnonzero(mem.mapcount)
                if np.count_nonzero(mem.mapcount)
                else np.zeros(0, dtype=np.int64)
            )
        else:
            cand = (
                np.zeros(0, dtype=np.int64)
                if np.array_equal(mem.mapcount, P)
                else np.flatnonzero(mem.mapcount != P)
            )
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


def _same(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """``b`` if equal to ``a`` (to share it), else ``a``."""
    if a is not None and b is not None and a.dtype == b.dtype and np.array_equal(a, b):
        return b
    return a


def _total(parts: list[np.ndarray]) -> np.ndarray | None:
    """The sum of ``parts`` (the only one itself: do not modify the result)."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    ids: dict[int, list[Any]] = {}
    for a in parts:
        e = ids.setdefault(id(a), [a, 0])
        e[1] += 1
    top = sum(int(np.iinfo(a.dtype).max) * c for a, c in ids.values())
    dt = (
        np.int16 if top <= np.iinfo(np.int16).max else np.int32 if top <= np.iinfo(np.int32).max else np.int64
    )
    out: np.ndarray | None = None
    for a, c in ids.values():
        if out is None:
            out = a.astype(dt)
            if c > 1:
                out *= dt(c)
        elif c == 1:
            out += a
        else:
            out += a.astype(dt) * dt(c)
    return out
