"""Replay a snapshot on the arm64 model: rebuild the address space, report coverage, price teardown.

Models nothing itself: it drives the model (``contpte.Machine``) through its
syscalls and faults, the kernel-shaped paths a real process takes, to
rebuild each captured process (docs/snapshots.md):

- every private VMA below ``TASK_SIZE`` is mapped (``mmap(MAP_FIXED)``, over
  a PROT_NONE placeholder) as private anonymous memory, or for a private
  file mapping as a private mapping of a model file (one per device and
  inode) at its offset, and gets its protection (``mprotect``) and its
  ``VmFlags`` advice (``dc``: MADV_DONTFORK, ``hg``/``nh``:
  MADV_HUGEPAGE/NOHUGEPAGE) once its pages are in; in a file mapping the
  CoW'd pages are written and the page-cache pages read-faulted;
- each anonymous folio is faulted in by a write with only its size enabled
  in the mTHP sysfs policy (``alloc_anon_folio()`` then allocates exactly
  that order at the naturally aligned address; the PMD size goes through
  ``do_huge_pmd_anonymous_page()``), larger orders first, and the pages the
  snapshot does not map are dropped with MADV_DONTNEED (a partial folio);
- a folio mapped at an address not aligned to its size (one that was moved
  by mremap) is built at an aligned address in a staging mapping and moved
  into place with ``mremap(MREMAP_MAYMOVE | MREMAP_FIXED)``: a whole run of
  adjacent VMAs at once when all its folios share one misalignment, else the
  folio's mapped runs one by one;
- pages of the zero page are read-faulted (with every mTHP size off);
- a captured process whose parent was captured too is made by ``fork()``
  of the parent's rebuilt process: the pages whose PFN the two share stay
  shared; the child's pages that differ are dropped (MADV_DONTNEED) and
  rebuilt as the child's own folios, VMAs only one of them has are unmapped
  or built.

What cannot be reproduced: page-cache folio sizes (one per file in the
model), shared mappings (skipped), KSM, swap entries, the physical addresses
themselves (only which pages share a frame or a folio), PTE bits (dirty,
young, soft-dirty, writable after CoW), folio sharing not created by fork
(e.g. between siblings after the parent CoW'd), and VMA boundaries the model
merges (adjacent anonymous VMAs of equal protection).  ``Fidelity`` reports
how many captured pages and folios came out with the captured order,
alignment (index in the folio) and sharing.

Pricing reuses the cost model (``contpte.cost.pricing``): per kernel
variant, the address space is rebuilt (validators off) and fork of every
process, exit of every process and munmap of every VMA are each measured on
a fresh rebuild and priced on each machine profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cost.pricing import Measured, Variant, change_pct, price
from ..cost.profile import Profile
from ..errors import ModelUsageError, ScenarioError
from ..system.machine import Machine
from ..system.process import Process
from .format import KPF_ANON, KPF_ZERO_PAGE, ProcRecord, Snapshot, VmaRecord
from .thpmaps import vma_categories

__all__ = [
    "GRANULES",
    "TASK_SIZE",
    "Fidelity",
    "Coverage",
    "Rebuilt",
    "OpCost",
    "ReplayResult",
    "rebuild",
    "replay",
    "check_granule",
]

GRANULES = {"4K": 4096, "16K": 16384, "64K": 65536}
TASK_SIZE = 1 << 47
"""The model's user address space (``contpte.mm.mmap.TASK_SIZE``); VMAs above it are skipped."""

OPS = ("fork", "exit", "munmap")
_RESERVED_KEYS = ("arch", "page_size", "mthp", "thp", "memory", "check")

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4


def check_granule(snap: Snapshot, path: str, granule: str | None) -> str:
    """The granule to replay at: the snapshot's page size, which ``granule`` (if given) must equal."""
    names = {v: k for k, v in GRANULES.items()}
    have = names.get(snap.page_size)
    if have is None:
        raise ScenarioError(
            path,
            0,
            f"captured with {snap.page_size >> 10}K pages; the arm64 model has 4K, 16K and 64K granules",
        )
    if granule is not None and granule.upper() != have:
        raise ScenarioError(
            path,
            0,
            f"captured with {have} pages, cannot be replayed at --granule {granule}: folio sizes and "
            "alignments are in pages of the capture",
        )
    return have


# --- what the snapshot says ----------------------------------------------------


@dataclass
class Piece:
    """The pages of one folio mapped at one place: virtual page ``base + i`` maps folio page ``i``."""

    head_pfn: int
    order: int
    base: int
    idx: list[int]


def _is_replayed(v: VmaRecord) -> bool:
    return v.private and v.end <= TASK_SIZE


def _is_file(v: VmaRecord) -> bool:
    """A private mapping of a file (not anonymous memory, not /dev/zero)."""
    return (v.dev != "00:00" or v.inode != "0") and not v.name.startswith("/dev/zero")


def _clip(v: VmaRecord, lo: int, hi: int) -> VmaRecord:
    """The part of ``v`` inside ``[lo, hi)`` (file offset moved along)."""
    start, end = max(v.start, lo), min(v.end, hi)
    off = int(v.offset, 16) + (start - v.start)
    return VmaRecord(start, end, v.perms, f"{off:08x}", v.dev, v.inode, v.name, v.vmflags, v.stats)


def _replayed_mask(proc: ProcRecord, page_size: int) -> np.ndarray:
    inside = np.zeros(len(proc.vfn), dtype=bool)
    for v in proc.vmas:
        if _is_replayed(v):
            inside[proc.pages_in(v.start // page_size, v.end // page_size)] = True
    return inside


def _pieces(proc: ProcRecord, sel: np.ndarray, pmd_order: int) -> list[Piece]:
    """The anonymous pages ``sel`` (a mask) grouped into pieces (order 0 pages: one piece each)."""
    out: dict[tuple[int, int], Piece] = {}
    pfn = proc.pfn
    for j in np.flatnonzero(sel).tolist():
        order = int(proc.order[j])
        if order < 2 or order > pmd_order:
            order = 0  # anon folios are order 0 or 2..PMD (order 1 and larger are not anon THPs)
        i = int(proc.index[j]) if order else 0
        head = int(pfn[j]) - i
        base = int(proc.vfn[j]) - i
        key = (head, base)
        pc = out.get(key)
        if pc is None:
            out[key] = Piece(head, order, base, [i])
        else:
            pc.idx.append(i)
    return list(out.values())


def _runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted integers as ``(first, count)`` runs of consecutive values."""
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and out[-1][0] + out[-1][1] == v:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


def _intervals(vmas: Iterable[VmaRecord]) -> list[tuple[int, int]]:
    """Maximal runs of adjacent VMAs, as ``[start, end)`` byte ranges."""
    out: list[tuple[int, int]] = []
    for v in sorted(vmas, key=lambda v: v.start):
        if out and out[-1][1] == v.start:
            out[-1] = (out[-1][0], v.end)
        else:
            out.append((v.start, v.end))
    return out


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of the ranges ``a`` outside every range of ``b``."""
    out = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in sorted(b):
            if bhi <= cur or blo >= hi:
                continue
            if blo > cur:
                out.append((cur, blo))
            cur = max(cur, bhi)
        if cur < hi:
            out.append((cur, hi))
    return out


# --- the model side ----------------------------------------------------------------


class _Builder:
    """Rebuild the captured processes on one Machine (see the module docstring)."""

    def __init__(self, m: Machine, snap: Snapshot) -> None:
        self.m = m
        self.snap = snap
        self.ps = snap.page_size
        self.pmd_order = m.kernel.PMD_ORDER
        self.pmd_size = self.ps << self.pmd_order
        self._policy: int | None = -2
        self.files: dict[tuple[str, str], Any] = {}
        self.file_spec = self._file_spec()
        # A read fault maps the page it faults on (the debugfs knob
        # fault_around_bytes at PAGE_SIZE: no fault-around), so the page
        # cache pages mapped are the captured ones.
        self._fault_around = m.kernel.fault_around_bytes
        m.kernel.fault_around_bytes = self.ps

    def _file_spec(self) -> dict[tuple[str, str], tuple[int, str, int]]:
        """Per file (device, inode): its size (the farthest byte mapped), name and folio order.

        The model's page cache has one folio size per file: the order most
        of the file's captured page-cache pages have.
        """
        sizes: dict[tuple[str, str], int] = {}
        names: dict[tuple[str, str], str] = {}
        orders: dict[tuple[str, str], dict[int, int]] = {}
        for proc in self.snap.processes:
            anon_or_zero = (proc.kpageflags & np.uint64(KPF_ANON | KPF_ZERO_PAGE)) != 0
            for v in proc.vmas:
                if not (_is_replayed(v) and _is_file(v)):
                    continue
                key = (v.dev, v.inode)
                sizes[key] = max(sizes.get(key, 0), int(v.offset, 16) + v.end - v.start)
                names[key] = v.name or f"{v.dev}:{v.inode}"
                sl = proc.pages_in(v.start // self.ps, v.end // self.ps)
                for o in proc.order[sl][~anon_or_zero[sl]].tolist():
                    o = o if 2 <= o <= self.pmd_order else 0
                    orders.setdefault(key, {})[o] = orders.setdefault(key, {}).get(o, 0) + 1
        out = {}
        for key, size in sizes.items():
            counts = orders.get(key, {0: 1})
            order = max(counts, key=lambda o: (counts[o], -o))
            folio = self.ps << order
            out[key] = ((size + folio - 1) // folio * folio, names[key], order)
        return out

    def file_for(self, v: VmaRecord) -> Any:
        """The model file standing for ``v``'s file (one per device and inode, shared by every process)."""
        key = (v.dev, v.inode)
        f = self.files.get(key)
        if f is None:
            size, name, order = self.file_spec[key]
            folio = str(self.ps) if order == 0 else f"{(self.ps << order) >> 10}K"
            f = self.m.open_file(f"{v.dev}:{v.inode} {name}", size, folio)
            self.files[key] = f
        return f

    # -- the THP policy -------------------------------------------------------------
    def enable_only(self, order: int) -> None:
        """Write the mTHP sysfs policy: ``order`` = always, every other size never (0: all off).

        Models the ``enabled`` stores of mm/huge_memory.c (``thpsize_enabled_store()``
        and the top-level ``enabled_store()``) followed by their recomputation
        of the ``huge_anon_orders_*`` bitmaps.
        """
        if self._policy == order:
            return
        k = self.m.kernel
        k.thp = "never"
        for o in list(k.mthp):
            k.mthp[o] = "always" if o == order else "never"
        k.thp_settings_changed()
        self._policy = order

    # -- primitives -----------------------------------------------------------------------
    def fault_piece(self, p: Process, pc: Piece, at: int) -> None:
        """Fault ``pc``'s folio in with its page 0 at virtual page ``at``; drop the pages it does not map."""
        ps = self.ps
        nr = 1 << pc.order
        self.enable_only(pc.order)
        p.write((at + pc.idx[0]) * ps, ps, 1)
        if nr > 1:
            mapped = set(pc.idx)
            for first, count in _runs(i for i in range(nr) if i not in mapped):
                p.madvise((at + first) * ps, count * ps, "dontneed")

    def write_order0(self, p: Process, vfns: Iterable[int], shift: int = 0) -> None:
        self.enable_only(0)
        for first, count in _runs(vfns):
            p.write((first + shift) * self.ps, count * self.ps, 1)

    def read_zero(self, p: Process, vfns: Iterable[int]) -> None:
        self.enable_only(0)
        for first, count in _runs(vfns):
            p.read(first * self.ps, count * self.ps)

    def reserve(self, p: Process, length: int, align: int) -> tuple[int, int, int]:
        """A free staging range: (reservation start, its length, an ``align``-aligned address in it)."""
        total = length + 2 * align
        raw = p.mmap(total, "rw", "private|anonymous")
        return raw, total, (raw + align - 1) & ~(align - 1)

    def place_piece(self, p: Process, pc: Piece) -> None:
        """Fault one piece in place when its aligned range is free, else via staging and mremap."""
        ps = self.ps
        nr = 1 << pc.order
        lo, hi = pc.base * ps, (pc.base + nr) * ps
        vma = p.mm.vma_lookup(lo)
        if pc.order == 0 or (
            pc.base % nr == 0
            and vma is not None
            and vma.vm_start <= lo
            and hi <= vma.vm_end
            and not p.pagemap(lo, hi - lo)["present"].any()
        ):
            if pc.order == 0:
                self.write_order0(p, [pc.base])
            else:
                self.fault_piece(p, pc, pc.base)
            return
        raw, total, s = self.reserve(p, nr * ps, nr * ps)
        self.fault_piece(p, pc, s // ps)
        for first, count in _runs(pc.idx):
            p.mremap(s + first * ps, count * ps, count * ps, "maymove|fixed", (pc.base + first) * ps)
        p.munmap(raw, total)

    def build_pieces(self, p: Process, pieces: Sequence[Piece], shift: int) -> None:
        """Fault ``pieces`` at their place moved by ``shift`` pages, larger orders first."""
        for pc in sorted((x for x in pieces if x.order), key=lambda x: (-x.order, x.base)):
            self.fault_piece(p, pc, pc.base + shift)
        self.write_order0(p, (pc.base for pc in pieces if not pc.order), shift)

    def build_region(
        self,
        p: Process,
        lo: int,
        hi: int,
        pieces: list[Piece],
        zero: Sequence[int],
        placeholder: bool = False,
    ) -> None:
        """Map ``[lo, hi)`` and fault its pieces, in place or in staging then moved (one mremap).

        ``placeholder``: ``[lo, hi)`` holds a PROT_NONE placeholder mapping
        (``reserve_targets``), replaced here.
        """
        ps = self.ps
        if not pieces and not zero:
            # Nothing to fault: no staging (a large PROT_NONE reservation costs nothing).
            p.mmap(hi - lo, "rw", "private|anonymous|fixed", addr=lo)
            return
        large = [pc for pc in pieces if pc.order]
        pmd_nr = 1 << self.pmd_order
        # The shift (mod the PMD) that aligns the most pages of large folios.
        best, best_pages = 0, -1
        for s in [
            0,
            *sorted({(-pc.base) % pmd_nr for pc in large if pc.order == max(x.order for x in large)}),
        ]:
            got = sum(len(pc.idx) for pc in large if (pc.base + s) % (1 << pc.order) == 0)
            if got > best_pages:
                best, best_pages = s, got
        fits = [pc for pc in pieces if not pc.order or (pc.base + best) % (1 << pc.order) == 0]
        outliers = [pc for pc in pieces if pc.order and (pc.base + best) % (1 << pc.order) != 0]
        ext_lo = min([lo, *((pc.base * ps) for pc in fits if pc.order)])
        ext_hi = max([hi, *(((pc.base + (1 << pc.order)) * ps) for pc in fits if pc.order)])
        # The staging range is reserved while the placeholder still covers
        # the target, so it never lands there (the move must not overlap).
        raw, total, aligned = self.reserve(p, ext_hi - ext_lo, self.pmd_size)
        if placeholder:
            p.munmap(lo, hi - lo)
        if best == 0 and not p.mm.vmas_in(ext_lo, ext_hi):
            delta = 0
        else:
            delta = aligned + (ext_lo + best * ps) % self.pmd_size - ext_lo
        p.mmap(ext_hi - ext_lo, "rw", "private|anonymous|fixed", addr=ext_lo + delta)
        self.build_pieces(p, fits, delta // ps)
        if ext_lo < lo:
            p.munmap(ext_lo + delta, lo - ext_lo)
        if hi < ext_hi:
            p.munmap(hi + delta, ext_hi - hi)
        if delta:
            p.mremap(lo + delta, hi - lo, hi - lo, "maymove|fixed", lo)
        p.munmap(raw, total)
        for pc in outliers:
            self.place_piece(p, pc)
        self.read_zero(p, zero)

    def finish_vmas(self, p: Process, vmas: Iterable[VmaRecord]) -> None:
        """Give each VMA its protection and advice (once its pages are in)."""
        for v in vmas:
            prot = sum(
                bit for ch, bit in zip("rwx", (PROT_READ, PROT_WRITE, PROT_EXEC)) if v.perms[:3].count(ch)
            )
            length = v.end - v.start
            if prot != PROT_READ | PROT_WRITE:
                p.mprotect(v.start, length, prot)
            flags = v.vmflags.split()
            if "dc" in flags:
                p.madvise(v.start, length, "dontfork")
            if "hg" in flags:
                p.madvise(v.start, length, "hugepage")
            if "nh" in flags:
                p.madvise(v.start, length, "nohugepage")

    # -- whole processes ------------------------------------------------------------------
    def build_fresh(self, p: Process, proc: ProcRecord) -> None:
        vmas = [v for v in proc.vmas if _is_replayed(v)]
        regions = _intervals(vmas)
        self.reserve_targets(p, regions)
        for lo, hi in regions:
            self.build_span(p, proc, lo, hi)
        self.finish_vmas(p, vmas)

    def build_span(self, p: Process, proc: ProcRecord, lo: int, hi: int) -> None:
        """Build the replayed VMAs of ``proc`` inside ``[lo, hi)`` (a placeholder mapping now).

        Runs of anonymous VMAs are built by ``build_region``; a private file
        mapping is mapped from its model file, and its anonymous (CoW'd)
        pages written.
        """
        ps = self.ps
        anon, zero = self.kinds(proc)
        parts = [_clip(v, lo, hi) for v in proc.vmas if _is_replayed(v) and v.start < hi and v.end > lo]
        runs: list[list[VmaRecord]] = []
        for v in parts:
            if not _is_file(v) and runs and not _is_file(runs[-1][-1]) and runs[-1][-1].end == v.start:
                runs[-1].append(v)
            else:
                runs.append([v])
        for run in runs:
            rlo, rhi = run[0].start, run[-1].end
            sl = proc.pages_in(rlo // ps, rhi // ps)
            if _is_file(run[0]):
                v = run[0]
                p.mmap(
                    rhi - rlo,
                    "rw",
                    "private|fixed",
                    file=self.file_for(v),
                    offset=int(v.offset, 16),
                    addr=rlo,
                )
                self.write_order0(p, proc.vfn[sl][anon[sl]].tolist())
                continue
            sel = np.zeros(len(proc.vfn), dtype=bool)
            sel[sl] = anon[sl]
            zsel = proc.vfn[sl][zero[sl]].tolist()
            self.build_region(p, rlo, rhi, _pieces(proc, sel, self.pmd_order), zsel, placeholder=True)

    def sync_file_pages(self, p: Process, proc: ProcRecord) -> None:
        """Map the captured page-cache pages of private file mappings; drop what the snapshot does not map."""
        ps = self.ps
        anon, zero = self.kinds(proc)
        for v in proc.vmas:
            if not (_is_replayed(v) and _is_file(v)):
                continue
            first = v.start // ps
            sl = proc.pages_in(first, v.end // ps)
            vfns = proc.vfn[sl]
            cache = vfns[~anon[sl] & ~zero[sl]]
            present = p.pagemap(v.start, v.end - v.start)["present"]
            missing = [x for x in cache.tolist() if not present[x - first]]
            for a, n in _runs(missing):
                p.read(a * ps, n * ps)
            present = p.pagemap(v.start, v.end - v.start)["present"]
            captured = set(vfns.tolist())
            extra = [first + i for i in np.flatnonzero(present).tolist() if first + i not in captured]
            for a, n in _runs(extra):
                p.madvise(a * ps, n * ps, "dontneed")

    def reserve_targets(self, p: Process, regions: Sequence[tuple[int, int]]) -> None:
        """Map every target range PROT_NONE first, so no staging mapping is placed on one."""
        for lo, hi in regions:
            p.mmap(hi - lo, "none", "private|anonymous|fixed", addr=lo)

    def kinds(self, proc: ProcRecord) -> tuple[np.ndarray, np.ndarray]:
        inside = _replayed_mask(proc, self.ps)
        flags = proc.kpageflags
        zero = ((flags & np.uint64(KPF_ZERO_PAGE)) != 0) & inside
        anon = ((flags & np.uint64(KPF_ANON)) != 0) & ~zero & inside
        return anon, zero

    def adjust_child(self, c: Process, child: ProcRecord, parent: ProcRecord) -> None:
        """Turn a fork of ``parent``'s rebuild into ``child``: drop what differs, build the child's own."""
        ps = self.ps
        c_vmas = [v for v in child.vmas if _is_replayed(v)]
        p_iv = _intervals(v for v in parent.vmas if _is_replayed(v))
        c_iv = _intervals(c_vmas)
        for lo, hi in _subtract(p_iv, c_iv):
            c.munmap(lo, hi - lo)
        c_anon, c_zero = self.kinds(child)
        p_anon, p_zero = self.kinds(parent)
        p_have = parent.vfn[p_anon | p_zero]
        p_pfn = dict(zip(p_have.tolist(), parent.pfn[p_anon | p_zero].tolist()))
        c_pfn = dict(zip(child.vfn.tolist(), child.pfn.tolist()))
        common = _subtract(c_iv, _subtract(c_iv, p_iv))
        # Pages the parent maps that the child does not share: dropped in the child.
        drop = [v for v, f in p_pfn.items() if c_pfn.get(v) != f and _inside(v * ps, common)]
        for first, count in _runs(drop):
            c.madvise(first * ps, count * ps, "dontneed")
        own = np.array([p_pfn.get(int(v)) != int(f) for v, f in zip(child.vfn, child.pfn)], dtype=bool)
        new_iv = _subtract(c_iv, p_iv)
        self.reserve_targets(c, new_iv)
        for lo, hi in new_iv:
            self.build_span(c, child, lo, hi)
        in_common = np.array([_inside(int(v) * ps, common) for v in child.vfn], dtype=bool)
        pieces = _pieces(child, c_anon & own & in_common, self.pmd_order)
        for pc in sorted((x for x in pieces if x.order), key=lambda x: (-x.order, x.base)):
            self.place_piece(c, pc)
        self.write_order0(c, (pc.base for pc in pieces if not pc.order))
        self.read_zero(c, child.vfn[c_zero & own & in_common].tolist())
        self.finish_vmas(c, c_vmas)

    def build_all(self) -> list[Process]:
        """Every captured process, rebuilt (parents before the children forked from them).

        A parent is first built with the pages of its folios that a child
        still maps and it no longer does (it dropped them after the fork),
        so the child inherits them by fork; the parent drops them once every
        child is forked.
        """
        procs = self.snap.processes
        index = {proc.pid: i for i, proc in enumerate(procs)}
        parent_of = [
            index.get(proc.ppid, -1) if index.get(proc.ppid, len(procs)) < i else -1
            for i, proc in enumerate(procs)
        ]
        pre: list[ProcRecord] = []
        later: list[tuple[list[int], list[int]]] = []
        for i, proc in enumerate(procs):
            kids = [procs[j] for j in range(len(procs)) if parent_of[j] == i]
            rec, extra, redo = self.with_inherited(proc, kids)
            pre.append(rec)
            later.append((extra, redo))
        out: list[Process] = []
        for i in range(len(procs)):
            if parent_of[i] < 0:
                p = self.m.spawn()
                self.build_fresh(p, pre[i])
            else:
                p = out[parent_of[i]].fork()
                self.adjust_child(p, pre[i], pre[parent_of[i]])
            out.append(p)
        for i, (p, (extra, redo)) in enumerate(zip(out, later)):
            for first, count in _runs(extra + redo):
                p.madvise(first * self.ps, count * self.ps, "dontneed")
            if redo:
                proc = procs[i]
                anon, zero = self.kinds(proc)
                want = np.isin(proc.vfn, np.array(redo, dtype=np.uint64))
                pieces = _pieces(proc, anon & want, self.pmd_order)
                for pc in sorted((x for x in pieces if x.order), key=lambda x: (-x.order, x.base)):
                    self.place_piece(p, pc)
                self.write_order0(p, (pc.base for pc in pieces if not pc.order))
                self.read_zero(p, proc.vfn[zero & want].tolist())
        for p, proc in zip(out, procs):
            self.sync_file_pages(p, proc)
        self.m.kernel.fault_around_bytes = self._fault_around
        self.enable_only(0)
        return out

    def with_inherited(
        self, proc: ProcRecord, kids: Sequence[ProcRecord]
    ) -> tuple[ProcRecord, list[int], list[int]]:
        """``proc`` as it was when its children were forked, as far as they tell.

        A child's page of a folio that ``proc`` still maps part of (at the
        same place) was ``proc``'s at the fork: where ``proc`` maps nothing
        now it dropped the page later (*extra*: dropped after the forks);
        where it maps another page it CoW'd it later (*redo*: dropped after
        the forks and its own page rebuilt).  Returns the record with those
        pages, the extra and the redo virtual pages.
        """
        if not kids:
            return proc, [], []
        anon, _ = self.kinds(proc)
        keys = {
            (int(f) - int(i), int(v) - int(i))
            for v, f, i in zip(proc.vfn[anon], proc.pfn[anon], proc.index[anon])
        }
        arrays = ("vfn", "pagemap", "kpageflags", "kpagecount", "order", "index")
        rows = {int(v): j for j, v in enumerate(proc.vfn.tolist())}
        table = {a: getattr(proc, a).tolist() for a in arrays}
        inside = _intervals(v for v in proc.vmas if _is_replayed(v))
        extra: list[int] = []
        redo: list[int] = []
        taken: set[int] = set()
        for kid in kids:
            k_anon, _ = self.kinds(kid)
            for j in np.flatnonzero(k_anon).tolist():
                v, i, f = int(kid.vfn[j]), int(kid.index[j]), int(kid.pfn[j])
                if v in taken or (f - i, v - i) not in keys or not _inside(v * self.ps, inside):
                    continue
                mine = rows.get(v)
                if mine is not None and int(proc.pfn[mine]) == f:
                    continue
                taken.add(v)
                (redo if mine is not None else extra).append(v)
                row = [int(getattr(kid, a)[j]) for a in arrays]
                if mine is None:
                    rows[v] = len(table["vfn"])
                    for a, x in zip(arrays, row):
                        table[a].append(x)
                else:
                    for a, x in zip(arrays, row):
                        table[a][mine] = x
        if not taken:
            return proc, [], []
        order = np.argsort(np.array(table["vfn"], dtype=np.uint64), kind="stable")
        cols = [np.array(table[a], dtype=getattr(proc, a).dtype)[order] for a in arrays]
        rec = ProcRecord(proc.pid, proc.ppid, proc.comm, proc.vmas, *cols)
        return rec, sorted(extra), sorted(redo)


def _inside(addr: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= addr < hi for lo, hi in ranges)


# --- fidelity and coverage ------------------------------------------------------------------


@dataclass
class Fidelity:
    """How much of the snapshot the rebuild reproduced (anonymous pages of replayed VMAs)."""

    pages: int = 0
    present: int = 0
    order: int = 0
    aligned: int = 0
    """Pages at the captured index in a folio of the captured order (order and alignment right)."""
    frames: int = 0
    """Pages whose frame the model maps exactly where the snapshot maps theirs (sharing by fork)."""
    same_folio: int = 0
    """Pages whose folio the model maps exactly where the snapshot maps theirs."""
    folios: int = 0
    folios_matched: int = 0
    zero_pages: int = 0
    zero_present: int = 0
    vmas: int = 0
    vmas_model: int = 0
    vmas_exact: int = 0
    file_pages: int = 0
    """Page-cache pages of private file mappings (their folio sizes are the file's, see ``_file_spec``)."""
    file_present: int = 0
    skipped_shared_pages: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Coverage:
    """Contiguous bit coverage of one process: the model's page tables beside thpmaps' inference."""

    pid: int
    mapped_kb: int
    """The model's RSS (anonymous, file and shmem pages mapped; the zero page is not counted), kB."""
    cont_kb: int
    """kB of the captured anonymous pages whose PTE has the Contiguous bit in the model."""
    inferred_kb: int
    """thpmaps' ``anon-cont-pte-aligned-<contpte block>`` of the snapshot (what it infers)."""
    file_cont_kb: int
    """The same for page-cache pages (the model's file folio sizes are one per file)."""
    file_inferred_kb: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Rebuilt:
    machine: Machine
    processes: list[Process]


def machine_kwargs(
    snap: Snapshot, kernel: str | None, overrides: Mapping[str, Any], cpu: str | None = None
) -> dict[str, Any]:
    """The Machine a replay runs on: arm64 at the snapshot's granule, memory for every folio."""
    bad = sorted(set(overrides) & set(_RESERVED_KEYS))
    if bad:
        raise ModelUsageError(
            f"--variant: {', '.join(bad)} cannot be changed in a replay (the snapshot decides)"
        )
    pages = sum(len(p.vfn) for p in snap.processes)
    need = max(256 << 20, 4 * (pages * snap.page_size + (64 << 20)))
    memory = 1 << (need - 1).bit_length()
    kw: dict[str, Any] = {
        "arch": "arm64",
        "page_size": {v: k for k, v in GRANULES.items()}[snap.page_size],
        "memory": memory,
        "cpus": 1,
        "check": False,
        "thp": "never",
    }
    if kernel:
        kw["kernel"] = kernel
    if cpu and "cpu" not in overrides:
        kw["cpu"] = cpu
    kw.update(overrides)
    return kw


def rebuild(snap: Snapshot, kernel: str | None = None, check: bool = False, **overrides: Any) -> Rebuilt:
    """Rebuild every captured process on a new arm64 Machine (``overrides``: kernel variant keys)."""
    return _rebuild_with(snap, {**machine_kwargs(snap, kernel, overrides), "check": check})


def _rebuild_with(snap: Snapshot, kw: Mapping[str, Any]) -> Rebuilt:
    m = Machine(**kw)
    return Rebuilt(m, _Builder(m, snap).build_all())


def fidelity(snap: Snapshot, rb: Rebuilt) -> Fidelity:
    """Compare the rebuild with the snapshot page by page (see ``Fidelity``)."""
    ps = snap.page_size
    fid = Fidelity()
    # Per captured anonymous page: (snapshot head, snapshot PFN, model head, model PFN, present, order ok, aligned).
    records: list[tuple[int, int, int, int, bool, bool, bool]] = []
    for proc, p in zip(snap.processes, rb.processes):
        inside = _replayed_mask(proc, ps)
        flags = proc.kpageflags
        zero = ((flags & np.uint64(KPF_ZERO_PAGE)) != 0) & inside
        anon = ((flags & np.uint64(KPF_ANON)) != 0) & ~zero & inside
        fid.skipped_shared_pages += int((~inside).sum())
        replayed = [v for v in proc.vmas if _is_replayed(v)]
        fid.vmas += len(replayed)
        maps = {(lo, hi) for lo, hi, _, _ in p.maps()} if p.alive else set()
        fid.vmas_model += len(maps)
        fid.vmas_exact += sum((v.start, v.end) in maps for v in replayed)
        rows = _model_rows(p, proc.vfn, ps)
        fid.zero_pages += int(zero.sum())
        cache = inside & ~anon & ~zero
        fid.file_pages += int(cache.sum())
        fid.file_present += int(rows["present"][cache].sum())
        zpfn = rb.machine.kernel.zero_pfn
        fid.zero_present += int((rows["present"][zero] & (rows["pfn"][zero] == zpfn)).sum())
        for j in np.flatnonzero(anon).tolist():
            r = rows[j]
            si = int(proc.index[j])
            spfn = int(proc.pfn[j])
            present = bool(r["present"])
            mo = int(r["order"]) if present else 0
            order_ok = present and mo == int(proc.order[j])
            mpfn = int(r["pfn"]) if present else -1 - len(records)
            aligned = order_ok and (mpfn & ((1 << mo) - 1)) == si
            mhead = mpfn & ~((1 << mo) - 1) if present else mpfn
            records.append((spfn - si, spfn, mhead, mpfn, present, order_ok, aligned))

    def bijective(pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        fwd: dict[int, set[int]] = {}
        back: dict[int, set[int]] = {}
        for a, b in pairs:
            fwd.setdefault(a, set()).add(b)
            back.setdefault(b, set()).add(a)
        return {(a, b) for a, bs in fwd.items() for b in bs if len(bs) == 1 and len(back[b]) == 1}

    frames_ok = bijective((r[1], r[3]) for r in records)
    folios_ok = bijective((r[0], r[2]) for r in records)
    ok_by_head: dict[int, bool] = {}
    for shead, spfn, mhead, mpfn, present, order_ok, aligned in records:
        frame = present and (spfn, mpfn) in frames_ok
        folio = present and (shead, mhead) in folios_ok
        fid.pages += 1
        fid.present += present
        fid.order += order_ok
        fid.aligned += aligned
        fid.frames += frame
        fid.same_folio += folio
        ok_by_head[shead] = ok_by_head.get(shead, True) and aligned and frame and folio
    fid.folios = len(ok_by_head)
    fid.folios_matched = sum(ok_by_head.values())
    return fid


def _model_rows(p: Process, vfns: np.ndarray, ps: int) -> np.ndarray:
    """The model's pagemap rows at the snapshot's virtual pages (runs read at once)."""
    from ..check.pagemap import PAGEMAP_DTYPE

    out = np.zeros(len(vfns), dtype=PAGEMAP_DTYPE)
    pos = 0
    for first, count in _runs(vfns.tolist()):
        out[pos : pos + count] = p.pagemap(first * ps, count * ps)
        pos += count
    return out


def coverage(snap: Snapshot, rb: Rebuilt) -> list[Coverage]:
    """Per process: kB mapped, kB with the Contiguous bit in the model, and thpmaps' inferred kB."""
    ps = snap.page_size
    cont_order = int(rb.machine.arch.CONT_PTES).bit_length() - 1
    block = f"cont-pte-aligned-{(ps << cont_order) >> 10}kB"
    out = []
    for proc, p in zip(snap.processes, rb.processes):
        inside = _replayed_mask(proc, ps)
        flags = proc.kpageflags
        zero = (flags & np.uint64(KPF_ZERO_PAGE)) != 0
        anon = ((flags & np.uint64(KPF_ANON)) != 0) & ~zero & inside
        cache = inside & ~anon & ~zero
        rows = _model_rows(p, proc.vfn, ps)
        cont = rows["cont"] & rows["present"]
        rss = p.rss()
        mapped = (rss["anon"] + rss["file"] + rss["shmem"]) * ps >> 10
        inferred = file_inferred = 0
        for v in proc.vmas:
            if not _is_replayed(v):
                continue
            if v.stats.get("Rss", 0) > 0 and any(c in v.perms[:3] for c in "rwx"):
                stats, _, _ = vma_categories(snap, proc, v, [cont_order])
                inferred += int(stats[f"anon-{block}"]["value"])
                file_inferred += int(stats[f"file-{block}"]["value"])
        out.append(
            Coverage(
                proc.pid,
                mapped,
                int(cont[anon].sum()) * ps >> 10,
                inferred,
                int(cont[cache].sum()) * ps >> 10,
                file_inferred,
            )
        )
    return out


# --- pricing ----------------------------------------------------------------------------------


def _measure(m: Machine, run: Callable[[], int], op: str) -> Measured:
    before = m.counters.snapshot()
    n = run()
    after = m.counters.snapshot()
    counters = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    return Measured(dict(sorted(counters.items())), {op: n})


def measure_ops(
    snap: Snapshot, kw: Mapping[str, Any], inspect: Callable[[Rebuilt], None] | None = None
) -> dict[str, Measured]:
    """Fork, exit and munmap of the whole rebuilt space, each on a fresh rebuild.

    ``inspect`` sees the first rebuild before anything is measured on it.
    """
    out: dict[str, Measured] = {}
    for op in OPS:
        rb = _rebuild_with(snap, kw)
        if inspect is not None and op == OPS[0]:
            inspect(rb)
        procs = rb.processes

        def do_fork(procs: list[Process] = procs) -> int:
            for p in procs:
                p.fork()
            return len(procs)

        def do_exit(procs: list[Process] = procs) -> int:
            for p in reversed(procs):  # children first
                p.exit()
            return len(procs)

        def do_munmap(procs: list[Process] = procs) -> int:
            n = 0
            for p in procs:
                for lo, hi, _, _ in p.maps():
                    p.munmap(lo, hi - lo)
                    n += 1
            return n

        out[op] = _measure(rb.machine, {"fork": do_fork, "exit": do_exit, "munmap": do_munmap}[op], op)
    return out


@dataclass
class OpCost:
    op: str
    variant: str
    profile: str
    time_ns: float
    change_pct: float
    by_kind: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class ReplayResult:
    page_size: int
    kernel: str
    variants: list[Variant]
    fidelity: Fidelity
    coverage: dict[str, list[Coverage]]
    costs: list[OpCost]
    counters: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "page_size": self.page_size,
            "kernel": self.kernel,
            "variants": [{"name": v.name, "spec": v.spec} for v in self.variants],
            "fidelity": self.fidelity.as_dict(),
            "coverage": {k: [c.as_dict() for c in v] for k, v in self.coverage.items()},
            "costs": [c.as_dict() for c in self.costs],
            "counters": self.counters,
            "unmapped": self.unmapped,
        }


def replay(
    snap: Snapshot,
    profiles: Sequence[Profile],
    variants: Sequence[Variant] = (),
    kernel: str | None = None,
    progress: Callable[[str], None] | None = None,
    check: bool = False,
) -> ReplayResult:
    """Rebuild ``snap`` per variant, report fidelity and coverage, price fork/exit/munmap per profile.

    No variant: ``contpte`` (mainline) and ``nocontpte`` (``contpte=false``);
    the first variant is the baseline of ``change_pct``.  ``check``: the
    fidelity comes from one more rebuild of the first variant with every
    validator on (``Machine(check=True)``, then ``Machine.check()``), which
    raises if the rebuild broke a kernel invariant or an Arm ARM rule.
    """
    from ..cost.model import unmapped_counters

    if not variants:
        variants = (Variant("contpte"), Variant("nocontpte", {"contpte": False}))
    names = [v.name for v in variants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelUsageError(f"variant name(s) given twice: {', '.join(dup)}")
    cpus = sorted({(p.cpu if p.arch == "arm64" else None) or "" for p in profiles})
    measured: dict[tuple[str, str], dict[str, Measured]] = {}
    fid: Fidelity | None = None
    if check:
        checked = _rebuild_with(
            snap, {**machine_kwargs(snap, kernel, variants[0].overrides, cpus[0] or None), "check": True}
        )
        checked.machine.check()
        fid = fidelity(snap, checked)
    cov: dict[str, list[Coverage]] = {}
    version = kernel or ""
    for v in variants:
        for cpu in cpus:
            kw = machine_kwargs(snap, kernel, v.overrides, cpu or None)

            def inspect(rb: Rebuilt, name: str = v.name) -> None:
                nonlocal fid, version
                version = rb.machine.kernel_version
                if name not in cov:
                    cov[name] = coverage(snap, rb)
                if fid is None:
                    fid = fidelity(snap, rb)

            measured[(v.name, cpu)] = measure_ops(snap, kw, inspect)
            if progress is not None:
                progress(f"{v.name}{' on ' + cpu if cpu else ''}")
    assert fid is not None
    costs: list[OpCost] = []
    counters: dict[str, dict[str, dict[str, int]]] = {}
    names_seen: set[str] = set()
    for prof in profiles:
        cpu = (prof.cpu if prof.arch == "arm64" else None) or ""
        for op in OPS:
            base_ns = 0.0
            for i, v in enumerate(variants):
                meas = measured[(v.name, cpu)][op]
                names_seen.update(meas.counters)
                bd = price(meas, prof, 1)
                if i == 0:
                    base_ns = bd.total_ns
                costs.append(
                    OpCost(
                        op,
                        v.name,
                        prof.name,
                        bd.total_ns,
                        change_pct(base_ns, bd.total_ns),
                        {k: x for k, x in bd.by_kind.items() if x},
                    )
                )
                counters.setdefault(v.name, {})[op] = dict(meas.counters)
    return ReplayResult(
        snap.page_size,
        version,
        list(variants),
        fid,
        cov,
        costs,
        counters,
        unmapped_counters(names_seen),
    )
