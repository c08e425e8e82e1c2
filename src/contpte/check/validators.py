"""The kernel-invariant validators and the isolation shadow.

Every check recomputes what it needs from the page tables (the ground
truth the hardware walks) and compares it with the kernel's bookkeeping;
the isolation check compares every value a process reads with a shadow of
what it (or, for shared memory, anyone) last wrote there.

Rules (``InvariantViolation.rule``):

- ``mapcount``: each page's mapcount equals the PTEs mapping it in all
  processes; each folio's entire mapcount equals its PMD mappings.
- ``refcount>=mapcount``: a folio holds at least one reference per mapping.
- ``rss``: each mm's RSS counters match its tables.
- ``writable-anon-exclusive``: a writable PTE of a private mapping maps an
  anon page that is PageAnonExclusive.
- ``writable-shared``: no page is writable in two places unless every
  mapping of it is shared.
- ``isolation``: a process reads exactly what it last wrote there or
  inherited at fork (or the file's current content, or zero); after
  MADV_FREE a page not written since may also read zero (reclaim may have
  discarded it).
- ``refcount>=mapcount`` also holds at every rmap update, not only between
  syscalls (``Kernel.on_rmap_change``): another CPU may look at a folio as
  soon as its mapcount changed.
- ``fork-copy``: the child's page table is a faithful copy of the parent's
  (snapshotted before fork): the same pages present, the same frames
  (except pinned anon pages, copied into exclusive pages), and per PTE the
  same accessibility (PROT_NONE), no lost dirty state (private mappings;
  gathered over contiguous blocks as ``ptep_get`` reports it), soft-dirty and
  uffd-wp (when the child keeps VM_UFFD_WP; none otherwise).
- ``pinned-anon-exclusive``: an anon page pinned with ``pin`` (its frame
  recorded at pin time) that is still mapped is mapped once, and
  PageAnonExclusive: pinned pages are never shared with a child.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arch.pgtable import batch_positions
from ..counters import counter
from ..errors import InvariantViolation
from ..mm.memmap import PG_anon, PG_anon_exclusive, PG_reserved
from ..mm.mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_SHARED, VM_UFFD_WP
from ..mm.shmem import file_initial_value
from .incremental import Incremental

__all__ = ["Validators"]

RUNS = counter("check.runs")
READS_CHECKED = counter("check.isolation_pages")


class _Shadow:
    """What one process should read: its own values per page, sparse by table.

    ``copy`` shares the per-table arrays (fork of a big address space): a
    table's arrays are copied on the first change through either shadow.
    """

    def __init__(self, per: int) -> None:
        self.per = per
        self.values: dict[int, np.ndarray] = {}
        self.own: dict[int, np.ndarray] = {}
        #: MADV_FREE'd and not written since: may read zero.
        self.lazy: dict[int, np.ndarray] = {}
        #: ids of the arrays this shadow may share with another one
        self._shared: set[int] = set()

    def copy(self) -> "_Shadow":
        s = _Shadow(self.per)
        s.values = dict(self.values)
        s.own = dict(self.own)
        s.lazy = dict(self.lazy)
        ids = {id(a) for d in (self.values, self.own, self.lazy) for a in d.values()}
        self._shared |= ids
        s._shared = set(ids)
        return s

    def _mine(self, d: dict[int, np.ndarray], t: int) -> np.ndarray:
        """``d[t]``, copied first if it may be shared (or is a uniform table)."""
        a = d[t]
        if id(a) in self._shared or not a.flags.writeable:
            self._shared.discard(id(a))
            a = d[t] = np.array(a)
        return a

    def mark_lazy(self, vpn: int, n: int, on: bool) -> None:
        for t, off, c, _ in self.chunks(vpn, n):
            if t not in self.lazy:
                if not on:
                    continue
                self.lazy[t] = np.zeros(self.per, dtype=bool)
            self._mine(self.lazy, t)[off : off + c] = on

    def get_lazy(self, vpn: int, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for t, off, c, i in self.chunks(vpn, n):
            if t in self.lazy:
                out[i : i + c] = self.lazy[t][off : off + c]
        return out

    def chunks(self, vpn: int, n: int) -> list[tuple[int, int, int, int]]:
        """(table, offset, count, position in range) pieces of ``[vpn, vpn+n)``."""
        out = []
        i = 0
        while i < n:
            t, off = divmod(vpn + i, self.per)
            c = min(self.per - off, n - i)
            out.append((t, off, c, i))
            i += c
        return out

    def set(self, vpn: int, n: int, value: Any) -> None:
        for t, off, c, i in self.chunks(vpn, n):
            if c == self.per and not isinstance(value, np.ndarray):
                # a whole table written with one value: a read-only uniform
                # view, no memory (``_mine`` makes it an array on a change)
                self.values[t] = np.broadcast_to(np.uint64(value), (self.per,))
                self.own[t] = np.broadcast_to(np.True_, (self.per,))
                if t in self.lazy:
                    self._mine(self.lazy, t)[:] = False
                continue
            if t not in self.values:
                self.values[t] = np.zeros(self.per, dtype=np.uint64)
                self.own[t] = np.zeros(self.per, dtype=bool)
            self._mine(self.values, t)[off : off + c] = (
                value[i : i + c] if isinstance(value, np.ndarray) else np.uint64(value)
            )
            self._mine(self.own, t)[off : off + c] = True
            if t in self.lazy:
                self._mine(self.lazy, t)[off : off + c] = False

    def forget(self, vpn: int, n: int) -> None:
        for t, off, c, _ in self.chunks(vpn, n):
            if t in self.own:
                self._mine(self.own, t)[off : off + c] = False
        self.mark_lazy(vpn, n, False)

    def get(self, vpn: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        vals = np.zeros(n, dtype=np.uint64)
        own = np.zeros(n, dtype=bool)
        for t, off, c, i in self.chunks(vpn, n):
            if t in self.values:
                vals[i : i + c] = self.values[t][off : off + c]
                own[i : i + c] = self.own[t][off : off + c]
        return vals, own


def _raise_first_mismatch(cand: np.ndarray, got: np.ndarray, want: np.ndarray, text: str) -> None:
    """Raise the ``mapcount`` violation of the first candidate frame where ``got != want``."""
    diff = got != want
    if diff.any():
        i = int(np.argmax(diff))
        raise InvariantViolation("mapcount", text.format(j=int(cand[i]), got=int(got[i]), want=int(want[i])))


class Validators:
    """All validators of one Machine, with their shadow state."""

    #: Run ``run_all``'s frame-wide checks over candidate frames only when
    #: few frames are mapped (same verdicts; off: always the dense checks).
    SPARSE = True
    #: Prove most runs clean from per-mm states kept between runs
    #: (``check/incremental.py``), running the dense checks only on a
    #: suspect (same verdicts; off: always the dense checks).
    INCREMENTAL = True

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.per = machine.arch.PTRS_PER_PTE
        self.shadows: dict[int, _Shadow] = {}
        #: (file id) -> {page index: value} written through shared mappings.
        self.files: dict[int, dict[int, int]] = {}
        #: pid -> frames pinned by that process (a multiset, as pins nest).
        self.pins: dict[int, list[int]] = {}
        #: The parent's PTE tables just before fork (``before_fork``): their
        #: keys, the stacked descriptors, the parent's incremental state if
        #: it is the state of those descriptors; and the PMD indices.
        self._fork_snapshot: tuple[list[int], np.ndarray, Any, set[int]] | None = None
        self._inc = Incremental(self)
        if machine.check_enabled:
            machine.kernel.on_rmap_change = self._on_rmap_change
            machine.kernel.on_rmap_change_many = self._on_rmap_change_many

    # -- refcount >= mapcount at every rmap update ----------------------------------
    def _on_rmap_change(self, folio: Any) -> None:
        mem = folio.mem
        if int(mem.flags[folio.pfn]) & PG_reserved:
            return
        maps = folio.mapcount_total()
        ref = folio.refcount
        if ref < maps:
            raise InvariantViolation(
                "refcount>=mapcount",
                f"folio {folio.pfn:#x}: refcount {ref} < {maps} mappings right after an rmap update",
            )

    def _on_rmap_change_many(self, heads: np.ndarray) -> None:
        """``_on_rmap_change`` of many folios (head pfns) after a bulk rmap update."""
        mem = self.m.kernel.memmap
        # A folio's mappings are its large or its page mapcount: a refcount
        # below both is needed for a violation (three gathers, no filter).
        n = len(heads)
        at: slice | np.ndarray = heads
        if n > 64:
            # a bulk copy's folios are often evenly spaced: slices, not gathers
            h0 = int(heads[0])
            step = (int(heads[-1]) - h0) // (n - 1)
            # (heads are distinct and ascending: a span of n - 1 is every frame)
            if (
                step > 0
                and h0 >= 0
                and h0 + step * (n - 1) < mem.nr_frames
                and int(heads[1]) - h0 == step
                and ((step == 1 and int(heads[-1]) - h0 == n - 1) or bool((np.diff(heads) == step).all()))
            ):
                at = slice(h0, h0 + step * (n - 1) + 1, step)
        ref = mem.refcount[at]
        sus = ref < mem.mapcount[at]
        sus |= ref < mem.large_mapcount[at]
        if not sus.any():
            return
        heads = heads[sus]
        heads = heads[(mem.flags[heads] & PG_reserved) == 0]
        large = mem.order[heads] > 0
        maps = np.where(large, mem.large_mapcount[heads], mem.mapcount[heads]).astype(np.int64)
        bad = np.flatnonzero(mem.refcount[heads] < maps)
        if len(bad):
            self._on_rmap_change(self.m.kernel.folio(int(heads[bad[0]])))

    # -- isolation shadow hooks ------------------------------------------------
    def on_spawn(self, p: Any) -> None:
        self.shadows[p.pid] = _Shadow(self.per)

    def on_fork(self, parent: Any, child: Any) -> None:
        sh = self.shadows.get(parent.pid, _Shadow(self.per)).copy()
        # VM_DONTCOPY ranges are not in the child: forget them.
        ps = self.m.kernel.page_shift
        child_ranges = [(v.vm_start, v.vm_end) for v in child.mm.vmas]
        for v in parent.mm.vmas:
            if (v.vm_start, v.vm_end) not in child_ranges and not any(
                s <= v.vm_start and v.vm_end <= e for s, e in child_ranges
            ):
                sh.forget(v.vm_start >> ps, (v.vm_end - v.vm_start) >> ps)
        self.shadows[child.pid] = sh
        self._check_fork_copy(parent, child)

    def on_exit(self, p: Any) -> None:
        self.shadows.pop(p.pid, None)
        self.pins.pop(p.pid, None)

    def on_madvise_free(self, p: Any, addr: int, length: int) -> None:
        """MADV_FREE: private anon pages not written again may read zero from now on."""
        ps = self.m.page_size
        sh = self.shadows.setdefault(p.pid, _Shadow(self.per))
        n = (length + ps - 1) // ps
        for v in p.mm.vmas_in(addr, addr + n * ps):
            if v.vm_file is not None or v.vm_flags & VM_SHARED:
                break  # madvise stops with EINVAL at the first VMA MADV_FREE refuses
            s, e = max(addr, v.vm_start), min(addr + n * ps, v.vm_end)
            sh.mark_lazy(s // ps, (e - s) // ps, True)

    # -- pins ----------------------------------------------------------------------
    def on_pin(self, p: Any, addr: int, npages: int, write: bool = True) -> None:
        rows = p.pagemap(addr, npages * self.m.page_size)
        self.pins.setdefault(p.pid, []).extend(int(r["pfn"]) for r in rows if r["present"])
        if write:
            # A write pin of a private file mapping breaks CoW (FOLL_WRITE):
            # those pages are now private snapshots of the file's content.
            ps = self.m.page_size
            sh = self.shadows.setdefault(p.pid, _Shadow(self.per))
            for v, i, c in self._segments(p, addr, npages):
                if v.vm_file is None or v.vm_flags & VM_SHARED:
                    continue
                a0 = addr + i * ps
                vpn = a0 >> self.m.kernel.page_shift
                vals, own = sh.get(vpn, c)
                snap = np.where(own, vals, self._file_values(v, v.linear_page_index(a0), c))
                sh.set(vpn, c, snap)

    def on_unpin(self, p: Any, pfns: list[int]) -> None:
        mine = self.pins.get(p.pid, [])
        for pfn in pfns:
            if pfn in mine:
                mine.remove(pfn)

    def _check_pins(self, pte_maps: np.ndarray) -> None:
        mem = self.m.kernel.memmap
        for pid, pfns in self.pins.items():
            for pfn in pfns:
                head = int(mem.head[pfn])
                if head < 0 or not int(mem.flags[head]) & PG_anon or pte_maps[pfn] == 0:
                    continue
                if pte_maps[pfn] > 1 or not int(mem.flags[pfn]) & PG_anon_exclusive:
                    raise InvariantViolation(
                        "pinned-anon-exclusive",
                        f"pfn {pfn:#x} pinned by pid {pid} is mapped {int(pte_maps[pfn])} time(s)"
                        f"{'' if int(mem.flags[pfn]) & PG_anon_exclusive else ' and is not PageAnonExclusive'}",
                    )

    # -- fork: the child's tables copy the parent's ----------------------------------
    def before_fork(self, parent: Any) -> None:
        keys, raw, st = self._inc.snapshot(parent.mm)
        self._fork_snapshot = (keys, raw, st, set(parent.mm.space.pmds))

    def _gathered(self, entries: np.ndarray) -> dict[str, np.ndarray]:
        """Decode with dirty ORed over contiguous blocks (what ``ptep_get`` reports)."""
        arch = self.m.kernel.arch
        d: dict[str, np.ndarray] = arch.ptes_decode(entries, ("pfn", "dirty", "cont", "special"))
        cp = arch.CONT_PTES
        cont = d["cont"]
        if cp > 1 and cont.any():
            dd = d["dirty"].reshape(-1, cp).any(axis=1) & cont.reshape(-1, cp).any(axis=1)
            d["dirty"] = d["dirty"] | (np.repeat(dd, cp) & cont)
        return d

    def _check_fork_copy(self, parent: Any, child: Any) -> None:
        snap = self._fork_snapshot
        self._fork_snapshot = None
        if snap is None:
            return
        keys, raw, st, pmds = snap
        if self.INCREMENTAL and st is not None and self._inc.fork_copy_ok(child, keys, raw, st, pmds):
            return
        per = self.per
        tables = {i: raw[j * per : (j + 1) * per] for j, i in enumerate(keys)}
        shift = self.m.kernel.page_shift
        for cv in child.mm.vmas:
            needs_copy = cv.anon_vma is not None or cv.vm_flags & VM_UFFD_WP
            uffd = bool(cv.vm_flags & VM_UFFD_WP)
            private = not cv.vm_flags & VM_SHARED
            first, last = cv.vm_start >> shift, cv.vm_end >> shift
            cand: list[tuple[int, int, int, np.ndarray | None, np.ndarray | None]] = []
            for idx in range(first // per, (last - 1) // per + 1):
                if idx in pmds:
                    continue
                lo = max(first, idx * per) - idx * per
                hi = min(last, (idx + 1) * per) - idx * per
                pe = tables.get(idx)
                ct = child.mm.space.tables.get(idx)
                ce = ct.entries if ct is not None else None
                if pe is None and ce is None:
                    continue
                cand.append((idx, lo, hi, pe, ce))
            if not cand:
                continue
            # Vectorised first, every table of the VMA at once: only a table
            # with a suspect entry goes through the per-entry checks (which
            # say what is wrong), in address order.
            zeros = np.zeros(per, dtype=np.uint64)
            P = np.concatenate([c[3] if c[3] is not None else zeros for c in cand])
            C = np.concatenate([c[4] if c[4] is not None else zeros for c in cand])
            pd_all = self._gathered(P)
            cd_all = self._gathered(C)
            sus = self._fork_copy_suspects(pd_all, cd_all, P, C, needs_copy, uffd, private).reshape(-1, per)
            col = np.arange(per)
            lo_a = np.array([c[1] for c in cand])[:, None]
            hi_a = np.array([c[2] for c in cand])[:, None]
            rows = np.flatnonzero((sus & (col >= lo_a) & (col < hi_a)).any(axis=1))
            for t in rows.tolist():
                idx, lo, hi, pe, ce = cand[t]
                sl = slice(t * per, (t + 1) * per)
                pd = {key: v[sl] for key, v in pd_all.items()}
                cd = {key: v[sl] for key, v in cd_all.items()}
                self._fork_copy_explain(parent, child, idx, lo, hi, pe, ce, pd, cd, needs_copy, uffd, private)

    def _fork_copy_explain(
        self,
        parent: Any,
        child: Any,
        idx: int,
        lo: int,
        hi: int,
        pe: np.ndarray | None,
        ce: np.ndarray | None,
        pd: dict[str, np.ndarray],
        cd: dict[str, np.ndarray],
        needs_copy: Any,
        uffd: bool,
        private: bool,
    ) -> None:
        """The per-entry ``fork-copy`` checks of one table: raise the first that fails."""
        k = self.m.kernel
        arch = k.arch
        mem = k.memmap
        per = self.per
        shift = k.page_shift
        for ii in np.nonzero((pd["present"] | cd["present"])[lo:hi])[0] + lo:
            i = int(ii)
            va = (idx * per + i) << shift
            praw = int(pe[i]) if pe is not None else 0
            craw = int(ce[i]) if ce is not None else 0

            def bad(what: str, va: int = va, praw: int = praw, craw: int = craw) -> InvariantViolation:
                return InvariantViolation(
                    "fork-copy", f"pid {child.pid} (child of {parent.pid}): {what}", va, [praw, craw]
                )

            if not pd["present"][i]:
                raise bad("the child maps a page the parent did not map")
            if not cd["present"][i]:
                if needs_copy:
                    raise bad("the parent's page is missing in the child")
                continue
            if pd["pfn"][i] != cd["pfn"][i]:
                cp = int(cd["pfn"][i])
                if not (int(mem.flags[cp]) & PG_anon_exclusive and int(mem.head[cp]) >= 0):
                    raise bad("the child maps another frame, which is not an exclusive copy")
                continue
            if pd["valid"][i] != cd["valid"][i]:
                raise bad("accessibility (PROT_NONE / NUMA hinting) differs from the parent's")
            if arch.pte_uffd_wp(craw) != (uffd and arch.pte_uffd_wp(praw)):
                raise bad("the uffd-wp bit was not copied per PTE")
            if arch.pte_soft_dirty(craw) != arch.pte_soft_dirty(praw):
                raise bad("the soft-dirty bit was not copied per PTE")
            # A dirty bit may be gained (v6.12 arm64 pte_mkwrite() clears
            # PTE_RDONLY, so a merged-writable clean batch turns dirty):
            # that only costs a writeback.  It must never be lost.
            if private and not pd["special"][i] and pd["dirty"][i] and not cd["dirty"][i]:
                raise bad("the parent's PTE is dirty, the child's is clean: a write may be lost")

    def _fork_copy_suspects(
        self,
        pd: dict[str, np.ndarray],
        cd: dict[str, np.ndarray],
        praw: np.ndarray,
        craw: np.ndarray,
        needs_copy: Any,
        uffd: bool,
        private: bool,
    ) -> np.ndarray:
        """Entries of one table that fail a ``fork-copy`` check (the per-entry checks, vectorised)."""
        mem = self.m.kernel.memmap
        arch = self.m.kernel.arch
        pp, cp = pd["present"], cd["present"]
        bad = cp & ~pp
        if needs_copy:
            bad |= pp & ~cp
        both = pp & cp
        moved = both & (pd["pfn"] != cd["pfn"])
        if moved.any():
            pf = cd["pfn"][moved]
            ok = ((mem.flags[pf] & PG_anon_exclusive) != 0) & (mem.head[pf] >= 0)
            bad[np.flatnonzero(moved)[~ok]] = True
        same = both & ~moved
        bad |= same & (pd["valid"] != cd["valid"])
        if arch.BULK:
            uw_p, uw_c = arch.pte_uffd_wp_v(praw), arch.pte_uffd_wp_v(craw)
            sd_p = arch.pte_clear_soft_dirty_v(praw) != praw
            sd_c = arch.pte_clear_soft_dirty_v(craw) != craw
        else:
            uw_p = np.array([arch.pte_uffd_wp(int(x)) for x in praw], dtype=bool)
            uw_c = np.array([arch.pte_uffd_wp(int(x)) for x in craw], dtype=bool)
            sd_p = np.array([arch.pte_soft_dirty(int(x)) for x in praw], dtype=bool)
            sd_c = np.array([arch.pte_soft_dirty(int(x)) for x in craw], dtype=bool)
        bad |= same & (uw_c != (uw_p & uffd))
        bad |= same & (sd_c != sd_p)
        if private:
            bad |= same & ~pd["special"] & pd["dirty"] & ~cd["dirty"]
        return np.asarray(bad)

    def on_unmap(self, p: Any, addr: int, length: int, dontneed: bool = False) -> None:
        ps = self.m.page_size
        sh = self.shadows.setdefault(p.pid, _Shadow(self.per))
        sh.forget(addr // ps, (length + ps - 1) // ps)

    def _segments(self, p: Any, addr: int, npages: int) -> list[tuple[Any, int, int]]:
        """(vma, first page position, count) covering the accessed pages."""
        ps = self.m.page_size
        out = []
        i = 0
        while i < npages:
            a = addr + i * ps
            v = p.mm.vma_lookup(a)
            if v is None:
                raise InvariantViolation(
                    "isolation", f"pid {p.pid}: access at {a:#x} succeeded outside any VMA", a
                )
            c = min(npages - i, (v.vm_end - a) // ps)
            out.append((v, i, c))
            i += c
        return out

    def on_write(self, p: Any, addr: int, npages: int, value: Any) -> None:
        ps = self.m.page_size
        sh = self.shadows.setdefault(p.pid, _Shadow(self.per))
        for v, i, c in self._segments(p, addr, npages):
            val = value[i : i + c] if isinstance(value, np.ndarray) else value
            if v.vm_flags & VM_SHARED:
                f = self.files.setdefault(v.vm_file.id, {})
                first = v.linear_page_index(addr + i * ps)
                for j in range(c):
                    f[first + j] = int(val[j]) if isinstance(val, np.ndarray) else int(val)
            else:
                sh.set((addr >> self.m.kernel.page_shift) + i, c, val)

    def _file_values(self, v: Any, first: int, c: int) -> np.ndarray:
        f = v.vm_file
        written = self.files.get(f.id, {})
        out = np.empty(c, dtype=np.uint64)
        for j in range(c):
            idx = first + j
            if idx in written:
                out[j] = written[idx]
            else:
                out[j] = 0 if f.shmem else file_initial_value(f.id, idx)
        return out

    def on_read(self, p: Any, addr: int, got: np.ndarray) -> None:
        ps = self.m.page_size
        sh = self.shadows.setdefault(p.pid, _Shadow(self.per))
        self.m.counters.add(READS_CHECKED, len(got))
        for v, i, c in self._segments(p, addr, len(got)):
            a0 = addr + i * ps
            if v.vm_flags & VM_SHARED:
                exp = self._file_values(v, v.linear_page_index(a0), c)
            else:
                vpn = a0 >> self.m.kernel.page_shift
                vals, own = sh.get(vpn, c)
                if v.vm_file is None:
                    base = np.zeros(c, dtype=np.uint64)
                else:
                    base = self._file_values(v, v.linear_page_index(a0), c)
                exp = np.where(own, vals, base)
                lazy = sh.get_lazy(vpn, c)
                if lazy.any():
                    # Discarded by reclaim after MADV_FREE: zero from now on.
                    gone = lazy & own & (got[i : i + c] == 0) & (exp != 0)
                    if gone.any():
                        exp = np.where(gone, np.uint64(0), exp)
                        for jj in np.nonzero(gone)[0]:
                            sh.set(vpn + int(jj), 1, 0)
            bad = np.nonzero(got[i : i + c] != exp)[0]
            if len(bad):
                j = int(bad[0])
                va = a0 + j * ps
                who = self._owners_of_value(int(got[i + j]), p.pid)
                raise InvariantViolation(
                    "isolation",
                    f"pid {p.pid} read {int(got[i + j]):#x} at {va:#x}, expected {int(exp[j]):#x}"
                    + (f" (the value pid(s) {who} wrote)" if who else "")
                    + f"; {len(bad)} page(s) wrong in this access",
                    va,
                )

    def _owners_of_value(self, value: int, me: int) -> str:
        pids = []
        for pid, sh in self.shadows.items():
            if pid == me:
                continue
            for t, arr in sh.values.items():
                if np.any((arr == np.uint64(value)) & sh.own[t]):
                    pids.append(pid)
                    break
        return ", ".join(str(x) for x in pids)

    # -- structural validators ----------------------------------------------------
    def after_syscall(self, p: Any, what: str) -> None:
        self.run_all()

    def run_all(self) -> None:
        """Run every structural validator once."""
        self.m.counters.add(RUNS)
        if self.INCREMENTAL and self._inc.run():
            return
        self._run_all_dense()

    def _run_all_dense(self) -> None:
        """Every structural validator, from scratch: raises the first violation."""
        m = self.m
        k = m.kernel
        arch = k.arch
        mem = k.memmap
        nr = mem.nr_frames
        pte_maps = np.zeros(nr, dtype=np.int64)
        pmd_maps = np.zeros(nr, dtype=np.int64)
        writable_private = np.zeros(nr, dtype=np.int64)
        any_tables = False
        pte_mapped = 0  # PTE mappings counted (an upper bound of the frames they map)
        pmd_pfs: list[np.ndarray] = []
        zero = {k.zero_pfn}
        if k.huge_zero_pfn is not None:
            zero.add(k.huge_zero_pfn)
        for mm in k.mms:
            rss = [0, 0, 0, 0]
            if mm.space.tables:
                any_tables = True
                self._check_tables(mm, rss, pte_maps, writable_private)
                pte_mapped += sum(rss)
            if mm.space.pmds:
                # every PMD block at once, in the dict's order
                pitems = list(mm.space.pmds.items())
                d = arch.ptes_decode(
                    np.array([arch.pmd_pte(blk) for _, blk in pitems], dtype=np.uint64), ("pfn", "write")
                )
                use = d["present"] & ~np.isin(d["pfn"], list(zero))
                pos = np.flatnonzero(use)
                pf = d["pfn"][pos]
                bad = d["write"][pos] & ((mem.flags[pf] & PG_anon_exclusive) == 0)
                if bad.any():
                    j = int(np.argmax(bad))
                    idx, blk = pitems[int(pos[j])]
                    raise InvariantViolation(
                        "writable-anon-exclusive",
                        f"pid {mm.owner}: writable PMD maps non-exclusive folio {int(pf[j]):#x}",
                        idx << arch.PMD_SHIFT,
                        [blk],
                    )
                pmd_pfs.append(pf)
                rss[MM_ANONPAGES] += arch.HPAGE_PMD_NR * len(pf)
            if rss != list(mm.rss):
                raise InvariantViolation(
                    "rss",
                    f"pid {mm.owner}: RSS counters file/anon/shmem = {mm.rss[0]}/{mm.rss[1]}/{mm.rss[3]} but the "
                    f"tables map {rss[0]}/{rss[1]}/{rss[3]}",
                )
        # Per-page mapcount.
        for z in zero:
            pte_maps[z] = 0
        # Few frames in use (e.g. all memory PMD-mapped): the same checks
        # over the frames with something to check only.
        pmd_pf = np.concatenate(pmd_pfs) if pmd_pfs else np.zeros(0, dtype=np.int64)
        if self.SPARSE and pte_mapped <= nr >> 4:
            mc_nz = np.flatnonzero(mem.mapcount)
            if len(mc_nz) <= nr >> 4:
                self._run_all_sparse(zero, pte_maps if any_tables else None, pmd_pf, writable_private, mc_nz)
                return
        np.add.at(pmd_maps, pmd_pf, 1)
        zero_arr = np.fromiter(zero, dtype=np.int64, count=len(zero))
        # Every PTE-mapped pfn is allocated (``_check_tables`` checked), so
        # a page's mapcount disagrees with its PTEs only where both differ
        # and it is allocated.
        cand = np.flatnonzero(mem.mapcount != pte_maps)
        if len(cand):
            cand = cand[mem.head[cand] >= 0]
            cand = cand[~np.isin(cand, zero_arr)]
            if len(cand):
                j = int(cand[0])
                raise InvariantViolation(
                    "mapcount",
                    f"pfn {j:#x}: mapcount {int(mem.mapcount[j])} but {int(pte_maps[j])} PTE(s) map it",
                )
        heads_mask = mem.head == np.arange(nr, dtype=mem.head.dtype)
        # Entire mapcounts: only frames with one, or mapped by a PMD, can disagree.
        em_nz = np.flatnonzero(mem.entire_mapcount)
        cand = np.union1d(em_nz[heads_mask[em_nz]], np.unique(pmd_pf))
        cand = cand[~np.isin(cand, zero_arr)]
        ent = np.where(heads_mask[cand], mem.entire_mapcount[cand], 0)
        want = pmd_maps[cand]
        _raise_first_mismatch(cand, ent, want, "folio {j:#x}: entire mapcount {got} but {want} PMD(s) map it")
        # refcount >= mappings, per folio.
        lp = np.nonzero(pte_maps)[0]
        if len(lp):
            per_folio = np.bincount(mem.head[lp], weights=pte_maps[lp], minlength=nr).astype(np.int64)
            per_folio += pmd_maps
        else:  # no PTE maps a page
            per_folio = pmd_maps
        ref = mem.refcount
        bad = heads_mask & (ref < per_folio)
        for z in zero:
            bad[z] = False
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            raise InvariantViolation(
                "refcount>=mapcount", f"folio {j:#x}: refcount {int(ref[j])} < {int(per_folio[j])} mappings"
            )
        # No page writable in two places unless all its mappings are shared.
        # (nothing writable through a private mapping: nothing to count)
        wp_any = bool(writable_private.any())
        total = pte_maps.copy() if wp_any else pte_maps
        pm = np.nonzero(pmd_maps)[0] if wp_any else np.zeros(0, dtype=np.int64)
        if len(pm):
            nrs = np.left_shift(1, mem.order[pm].astype(np.int64))
            total[batch_positions(pm, nrs)] += np.repeat(pmd_maps[pm], nrs)
        self._check_pins(pte_maps)
        bad = (writable_private > 0) & (total > 1)
        for z in zero:
            bad[z] = False
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            raise InvariantViolation(
                "writable-shared",
                f"pfn {j:#x} is writable through a private mapping but mapped {int(total[j])} times",
            )

    def _run_all_sparse(
        self,
        zero: set[int],
        pte_maps: np.ndarray | None,
        pmd_pf: np.ndarray,
        writable_private: np.ndarray,
        mc_nz: np.ndarray,
    ) -> None:
        """The frame-wide checks of ``run_all`` over candidate frames only.

        ``pte_maps`` is None when no mm has a PTE table (nothing PTE-mapped);
        ``pmd_pf`` lists the pfn of every PMD mapping.  Outside the candidates
        every compared quantity is zero on both sides, so the first mismatch
        (in pfn order) is the one the dense checks find.
        """
        mem = self.m.kernel.memmap
        zero_arr = np.fromiter(zero, dtype=np.int64, count=len(zero))
        head = mem.head
        empty = np.zeros(0, dtype=np.int64)
        pmd_nz, pmd_cnt = np.unique(pmd_pf.astype(np.int64), return_counts=True)
        pmd_cnt = pmd_cnt.astype(np.int64)

        def pmd_at(idx: np.ndarray) -> np.ndarray:
            """``pmd_maps[idx]``."""
            out = np.zeros(len(idx), dtype=np.int64)
            if len(pmd_nz) and len(idx):
                i = np.minimum(np.searchsorted(pmd_nz, idx), len(pmd_nz) - 1)
                hit = pmd_nz[i] == idx
                out[hit] = pmd_cnt[i[hit]]
            return out

        # Per-page mapcount.
        lp = np.flatnonzero(pte_maps) if pte_maps is not None else empty
        mc_nz = mc_nz[head[mc_nz] >= 0]
        cand = np.union1d(lp, mc_nz)
        cand = cand[~np.isin(cand, zero_arr)]
        got = np.where(head[cand] >= 0, mem.mapcount[cand], 0)
        want = pte_maps[cand] if pte_maps is not None else np.zeros(len(cand), dtype=np.int64)
        _raise_first_mismatch(cand, got, want, "pfn {j:#x}: mapcount {got} but {want} PTE(s) map it")
        em_nz = np.flatnonzero(mem.entire_mapcount)
        em_nz = em_nz[head[em_nz] == em_nz]
        cand = np.union1d(em_nz, pmd_nz)
        cand = cand[~np.isin(cand, zero_arr)]
        ent = np.where(head[cand] == cand, mem.entire_mapcount[cand], 0)
        want = pmd_at(cand)
        _raise_first_mismatch(cand, ent, want, "folio {j:#x}: entire mapcount {got} but {want} PMD(s) map it")
        # refcount >= mappings, per folio.
        ref = mem.refcount
        if len(lp):
            assert pte_maps is not None
            hs = head[lp]
            S = np.union1d(hs, pmd_nz)
            per_S = np.bincount(np.searchsorted(S, hs), weights=pte_maps[lp], minlength=len(S)).astype(
                np.int64
            )
            per_S += pmd_at(S)
        else:
            S = pmd_nz
            per_S = pmd_cnt
        bad_idx = S[(head[S] == S) & (ref[S] < per_S)]
        if len(ref) and int(ref.min()) < 0:  # no mapping at all: refcount < 0 is still too few
            neg = np.flatnonzero(ref < 0)
            bad_idx = np.union1d(bad_idx, neg[head[neg] == neg])
        bad_idx = bad_idx[~np.isin(bad_idx, zero_arr)]
        if len(bad_idx):
            j = int(bad_idx.min())
            i = int(np.searchsorted(S, j))
            pf = int(per_S[i]) if i < len(S) and int(S[i]) == j else 0
            raise InvariantViolation(
                "refcount>=mapcount", f"folio {j:#x}: refcount {int(ref[j])} < {pf} mappings"
            )
        if pte_maps is None:
            # Nothing PTE-mapped: no pinned page is mapped by a PTE, and
            # nothing is writable through a PTE.
            return
        # No page writable in two places unless all its mappings are shared.
        wp_nz = np.flatnonzero(writable_private)
        if len(wp_nz) and len(pmd_nz):
            total = pte_maps.copy()
            nrs = np.left_shift(1, mem.order[pmd_nz].astype(np.int64))
            total[batch_positions(pmd_nz, nrs)] += np.repeat(pmd_cnt, nrs)
        else:
            total = pte_maps
        self._check_pins(pte_maps)
        bad_idx = wp_nz[total[wp_nz] > 1]
        keep = ~np.isin(bad_idx, zero_arr)
        if keep.any():
            i = int(np.argmax(keep))
            j = int(bad_idx[i])
            raise InvariantViolation(
                "writable-shared",
                f"pfn {j:#x} is writable through a private mapping but mapped {int(total[j])} times",
            )

    def _check_tables(
        self, mm: Any, rss: list[int], pte_maps: np.ndarray, writable_private: np.ndarray
    ) -> None:
        """The per-table checks of ``run_all`` over all tables of ``mm`` at once.

        Stacked in the tables' order: the violation raised is the one the
        table-by-table loop raises first (the pfn check before the
        writable-anon-exclusive one within a table).
        """
        k = self.m.kernel
        mem = k.memmap
        per = self.per
        nr = mem.nr_frames
        items = list(mm.space.tables.items())
        idxs = np.array([i for i, _ in items], dtype=np.int64)
        raw = np.concatenate([t.entries for _, t in items])
        d = k.arch.ptes_decode(raw, ("pfn", "write", "special"))
        pres = d["present"] & ~d["special"]
        if pres.all():  # every entry a present normal PTE: no gathers
            flat = np.arange(len(raw), dtype=np.int64)
            pfns = d["pfn"]
            wr = d["write"]
        else:
            flat = np.flatnonzero(pres)
            pfns = d["pfn"][flat]
            wr = d["write"][flat]
        if not len(flat):
            return
        oor = (pfns < 0) | (pfns >= nr)
        pf = np.where(oor, 0, pfns) if oor.any() else pfns
        heads = mem.head[pf]
        pfn_bad = oor | (heads < 0)
        if any(v.vm_flags & VM_SHARED for v in mm.vmas):
            shared = self._shared_mask(mm, ((idxs[flat // per] * per + flat % per) << k.page_shift))
            wr_private = wr & ~shared
        else:
            wr_private = wr
        anon = (mem.flags[heads] & PG_anon) != 0
        # A writable PTE in a private mapping must map an exclusive anon page.
        if wr_private.any():
            wae_bad = ~pfn_bad & wr_private & (~anon | ((mem.flags[pf] & PG_anon_exclusive) == 0))
        else:
            wae_bad = wr_private  # nothing writable: all False
        if pfn_bad.any() or wae_bad.any():
            tix = flat // per
            col = flat % per
            vas = (idxs[tix] * per + col) << k.page_shift
            tp = int(tix[np.argmax(pfn_bad)]) if pfn_bad.any() else len(items)
            tw = int(tix[np.argmax(wae_bad)]) if wae_bad.any() else len(items)
            if tp <= tw:
                sel = tix == tp
                self._check_pfns(pfns[sel], mm, int(idxs[tp]), col[sel])
            j = int(np.argmax(wae_bad))
            raise InvariantViolation(
                "writable-anon-exclusive",
                f"pid {mm.owner}: writable PTE of a private mapping maps pfn {int(pfns[j]):#x} "
                f"which is not an exclusive anon page",
                int(vas[j]),
                [int(raw[flat[j]])],
            )
        pte_maps += np.bincount(pfns, minlength=nr)
        writable_private += np.bincount(pfns[wr_private], minlength=nr)
        rss[MM_ANONPAGES] += int(np.count_nonzero(anon))
        files = pfns[~anon]
        if len(files):
            shm = self._shmem_mask(files)
            rss[MM_SHMEMPAGES] += int(shm.sum())
            rss[MM_FILEPAGES] += int((~shm).sum())

    def _check_pfns(self, pfns: np.ndarray, mm: Any, idx: int, pos: np.ndarray) -> None:
        mem = self.m.kernel.memmap
        bad = (pfns < 0) | (pfns >= mem.nr_frames)
        if not bad.any():
            bad = mem.head[pfns] < 0
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            va = (idx * self.per + int(pos[j])) << self.m.kernel.page_shift
            raise InvariantViolation(
                "mapcount", f"pid {mm.owner}: PTE maps pfn {int(pfns[j]):#x} which is not allocated", va
            )

    def _shared_mask(self, mm: Any, vas: np.ndarray) -> np.ndarray:
        out = np.zeros(len(vas), dtype=bool)
        for v in mm.vmas:
            if v.vm_flags & VM_SHARED:
                out |= (vas >= v.vm_start) & (vas < v.vm_end)
        return out

    def _shmem_mask(self, pfns: np.ndarray) -> np.ndarray:
        k = self.m.kernel
        mapping = k.memmap.mapping[k.memmap.head[pfns]]
        shm_ids = [fid for fid, f in k.files.items() if f.shmem]
        return np.isin(mapping, shm_ids)
