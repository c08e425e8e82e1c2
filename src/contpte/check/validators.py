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
  inherited at fork (or the file's current content, or zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..counters import declare
from ..errors import InvariantViolation
from ..mm.memmap import PG_anon, PG_anon_exclusive
from ..mm.mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_SHARED
from ..mm.shmem import file_initial_value

__all__ = ["Validators"]

RUNS = declare("check.runs", "runs", "full validator runs (after syscalls with check=True, or m.check())")
READS_CHECKED = declare("check.isolation_pages", "pages", "pages whose read value the isolation check compared")


class _Shadow:
    """What one process should read: its own values per page, sparse by table."""

    def __init__(self, per: int) -> None:
        self.per = per
        self.values: dict[int, np.ndarray] = {}
        self.own: dict[int, np.ndarray] = {}

    def copy(self) -> "_Shadow":
        s = _Shadow(self.per)
        s.values = {k: v.copy() for k, v in self.values.items()}
        s.own = {k: v.copy() for k, v in self.own.items()}
        return s

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
            if t not in self.values:
                self.values[t] = np.zeros(self.per, dtype=np.uint64)
                self.own[t] = np.zeros(self.per, dtype=bool)
            self.values[t][off : off + c] = value[i : i + c] if isinstance(value, np.ndarray) else np.uint64(value)
            self.own[t][off : off + c] = True

    def forget(self, vpn: int, n: int) -> None:
        for t, off, c, _ in self.chunks(vpn, n):
            if t in self.own:
                self.own[t][off : off + c] = False

    def get(self, vpn: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        vals = np.zeros(n, dtype=np.uint64)
        own = np.zeros(n, dtype=bool)
        for t, off, c, i in self.chunks(vpn, n):
            if t in self.values:
                vals[i : i + c] = self.values[t][off : off + c]
                own[i : i + c] = self.own[t][off : off + c]
        return vals, own


class Validators:
    """All validators of one Machine, with their shadow state."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.per = machine.arch.PTRS_PER_PTE
        self.shadows: dict[int, _Shadow] = {}
        #: (file id) -> {page index: value} written through shared mappings.
        self.files: dict[int, dict[int, int]] = {}

    # -- isolation shadow hooks ------------------------------------------------
    def on_spawn(self, p: Any) -> None:
        self.shadows[p.pid] = _Shadow(self.per)

    def on_fork(self, parent: Any, child: Any) -> None:
        sh = self.shadows.get(parent.pid, _Shadow(self.per)).copy()
        # VM_DONTCOPY ranges are not in the child: forget them.
        ps = self.m.kernel.page_shift
        child_ranges = [(v.vm_start, v.vm_end) for v in child.mm.vmas]
        for v in parent.mm.vmas:
            if (v.vm_start, v.vm_end) not in child_ranges and not any(s <= v.vm_start and v.vm_end <= e for s, e in child_ranges):
                sh.forget(v.vm_start >> ps, (v.vm_end - v.vm_start) >> ps)
        self.shadows[child.pid] = sh

    def on_exit(self, p: Any) -> None:
        self.shadows.pop(p.pid, None)

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
                raise InvariantViolation("isolation", f"pid {p.pid}: access at {a:#x} succeeded outside any VMA", a)
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
                vals, own = sh.get((a0 >> self.m.kernel.page_shift), c)
                if v.vm_file is None:
                    base = np.zeros(c, dtype=np.uint64)
                else:
                    base = self._file_values(v, v.linear_page_index(a0), c)
                exp = np.where(own, vals, base)
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
        m = self.m
        k = m.kernel
        arch = k.arch
        mem = k.memmap
        m.counters.add(RUNS)
        nr = mem.nr_frames
        pte_maps = np.zeros(nr, dtype=np.int64)
        pmd_maps = np.zeros(nr, dtype=np.int64)
        writable_private = np.zeros(nr, dtype=np.int64)
        writable_any = np.zeros(nr, dtype=np.int64)
        mapped_private = np.zeros(nr, dtype=np.int64)
        zero = {k.zero_pfn}
        if k.huge_zero_pfn is not None:
            zero.add(k.huge_zero_pfn)
        for mm in k.mms:
            rss = [0, 0, 0, 0]
            for idx, table in mm.space.tables.items():
                d = arch.ptes_decode(table.entries)
                pres = d["present"] & ~d["special"]
                if not pres.any():
                    continue
                pos = np.nonzero(pres)[0]
                pfns = d["pfn"][pos]
                self._check_pfns(pfns, mm, idx, pos)
                np.add.at(pte_maps, pfns, 1)
                wr = d["write"][pos]
                vas = (idx * self.per + pos) << k.page_shift
                shared = self._shared_mask(mm, vas)
                np.add.at(writable_any, pfns[wr], 1)
                np.add.at(writable_private, pfns[wr & ~shared], 1)
                np.add.at(mapped_private, pfns[~shared], 1)
                heads = mem.head[pfns]
                anon = (mem.flags[heads] & PG_anon) != 0
                rss[MM_ANONPAGES] += int(anon.sum())
                files = pfns[~anon]
                if len(files):
                    shm = self._shmem_mask(files)
                    rss[MM_SHMEMPAGES] += int(shm.sum())
                    rss[MM_FILEPAGES] += int((~shm).sum())
                # A writable PTE in a private mapping must map an exclusive anon page.
                bad = wr & ~shared & (~anon | ((mem.flags[pfns] & PG_anon_exclusive) == 0))
                if bad.any():
                    j = int(np.nonzero(bad)[0][0])
                    raise InvariantViolation(
                        "writable-anon-exclusive",
                        f"pid {mm.owner}: writable PTE of a private mapping maps pfn {int(pfns[j]):#x} "
                        f"which is not an exclusive anon page",
                        int(vas[j]),
                        [int(table.entries[pos[j]])],
                    )
            for idx, blk in mm.space.pmds.items():
                pte = arch.pmd_pte(blk)
                if not arch.pte_present(pte):
                    continue
                pfn = arch.pte_pfn(pte)
                if pfn in zero:
                    continue
                pmd_maps[pfn] += 1
                rss[MM_ANONPAGES] += arch.HPAGE_PMD_NR
                if arch.pte_write(pte) and not mem.flags[pfn] & PG_anon_exclusive:
                    raise InvariantViolation(
                        "writable-anon-exclusive", f"pid {mm.owner}: writable PMD maps non-exclusive folio {pfn:#x}",
                        idx << arch.PMD_SHIFT, [blk],
                    )
            if rss != list(mm.rss):
                raise InvariantViolation(
                    "rss",
                    f"pid {mm.owner}: RSS counters file/anon/shmem = {mm.rss[0]}/{mm.rss[1]}/{mm.rss[3]} but the "
                    f"tables map {rss[0]}/{rss[1]}/{rss[3]}",
                )
        # Per-page mapcount.
        for z in zero:
            pte_maps[z] = 0
        live = mem.head >= 0
        got = np.where(live, mem.mapcount, 0).astype(np.int64)
        for z in zero:
            got[z] = 0
        if not np.array_equal(got, pte_maps):
            j = int(np.nonzero(got != pte_maps)[0][0])
            raise InvariantViolation(
                "mapcount", f"pfn {j:#x}: mapcount {int(got[j])} but {int(pte_maps[j])} PTE(s) map it"
            )
        heads_mask = live & (mem.head == np.arange(nr))
        ent = np.where(heads_mask, mem.entire_mapcount, 0).astype(np.int64)
        for z in zero:
            ent[z] = 0
        if not np.array_equal(ent, pmd_maps):
            j = int(np.nonzero(ent != pmd_maps)[0][0])
            raise InvariantViolation(
                "mapcount", f"folio {j:#x}: entire mapcount {int(ent[j])} but {int(pmd_maps[j])} PMD(s) map it"
            )
        # refcount >= mappings, per folio.
        per_folio = np.zeros(nr, dtype=np.int64)
        lp = np.nonzero(pte_maps)[0]
        np.add.at(per_folio, mem.head[lp], pte_maps[lp])
        per_folio += pmd_maps
        ref = mem.refcount.astype(np.int64)
        bad = heads_mask & (ref < per_folio)
        for z in zero:
            bad[z] = False
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            raise InvariantViolation(
                "refcount>=mapcount", f"folio {j:#x}: refcount {int(ref[j])} < {int(per_folio[j])} mappings"
            )
        # No page writable in two places unless all its mappings are shared.
        total = pte_maps.copy()
        pm = np.nonzero(pmd_maps)[0]
        for h in pm:
            total[h : h + (1 << int(mem.order[h]))] += pmd_maps[h]
        bad = (writable_private > 0) & (total > 1)
        for z in zero:
            bad[z] = False
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            raise InvariantViolation(
                "writable-shared", f"pfn {j:#x} is writable through a private mapping but mapped {int(total[j])} times"
            )

    def _check_pfns(self, pfns: np.ndarray, mm: Any, idx: int, pos: np.ndarray) -> None:
        mem = self.m.kernel.memmap
        bad = (pfns < 0) | (pfns >= mem.nr_frames)
        if not bad.any():
            bad = mem.head[pfns] < 0
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            va = (idx * self.per + int(pos[j])) << self.m.kernel.page_shift
            raise InvariantViolation("mapcount", f"pid {mm.owner}: PTE maps pfn {int(pfns[j]):#x} which is not allocated", va)

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
