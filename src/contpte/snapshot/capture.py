"""Capture live processes into a ``Snapshot`` (root: PFNs and /proc/kpageflags need CAP_SYS_ADMIN).

Models nothing: this reads the running kernel's interfaces
(Documentation/admin-guide/mm/pagemap.rst, proc.rst), as tools/mm/thpmaps
does, through the oracle's readers (``contpte.oracle.procfs``):

- ``/proc/PID/smaps``: the VMAs, each with its kB statistics and ``VmFlags``;
- ``/proc/PID/pagemap``: per page of every VMA with a non-zero ``Rss``, the
  raw entry; the present ones are kept;
- ``/proc/kpageflags`` and ``/proc/kpagecount`` of every PFN mapped, read a
  PMD-sized, naturally aligned block at a time: a folio of up to PMD order
  lies inside one block, so its head and tails are all there and its order
  and the page's index in it are read off the block (a tail whose head lies
  in an earlier block, a folio larger than a PMD, is recorded as order 0);
- the THP settings in sysfs and ``uname``.

Processes are not stopped: capture a quiescent process (a snapshot of a
running one mixes moments, as thpmaps' output does).  A process that exits
(or whose PID is reused) during its capture fails the whole capture.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelUsageError
from ..oracle.procfs import PAGE_SIZE, PM_PRESENT, precise_page_mapcount, read_pagemap
from ..oracle.sysfs import THP_DIR, current_setting
from .format import (
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    PM_PFN_MASK,
    ProcRecord,
    Snapshot,
    VmaRecord,
)

__all__ = ["capture", "read_smaps", "folio_geometry", "descendants", "read_thp_settings", "pmd_size"]

#: Pagemap entries read per pread (8 bytes each).
_CHUNK = 1 << 16


class ProcessVanished(ModelUsageError):
    """A process exited (or its PID was reused) while it was being captured."""


def pmd_size() -> int:
    """``hpage_pmd_size`` of the running kernel (bytes); 512 pages when THP is absent."""
    try:
        return int((THP_DIR / "hpage_pmd_size").read_text())
    except (OSError, ValueError):
        return PAGE_SIZE * (PAGE_SIZE // 8)


def read_thp_settings(root: Path = THP_DIR) -> dict[str, str]:
    """Every readable file under the THP sysfs directory: its selected word (``[madvise]``) or value."""
    out: dict[str, str] = {}
    if not root.is_dir():
        return out
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        try:
            text = f.read_text()
        except OSError:
            continue
        out[str(f.relative_to(root))] = current_setting(text)
    return out


def _start_time(pid: int) -> int:
    """``starttime`` of /proc/PID/stat (field 22): tells a PID reused during the capture."""
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return int(text[text.rindex(")") + 2 :].split()[19])


def _ppid_comm(pid: int) -> tuple[int, str]:
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    return int(text[text.rindex(")") + 2 :].split()[1]), comm


def read_smaps(pid: int) -> list[VmaRecord]:
    """The VMAs of ``/proc/PID/smaps`` with their kB statistics and VmFlags."""
    vmas: list[VmaRecord] = []
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            fields = line.split()
            if not fields:
                continue
            head = fields[0]
            if not head.endswith(":") and "-" in head:
                lo, hi = head.split("-")
                parts = line.rstrip("\n").split(None, 5)
                vmas.append(
                    VmaRecord(
                        int(lo, 16),
                        int(hi, 16),
                        parts[1],
                        parts[2],
                        parts[3],
                        parts[4],
                        parts[5].strip() if len(parts) > 5 else "",
                    )
                )
            elif vmas and head == "VmFlags:":
                vmas[-1].vmflags = " ".join(fields[1:])
            elif vmas and len(fields) == 3 and fields[2] == "kB":
                vmas[-1].stats[head.rstrip(":")] = int(fields[1])
    return vmas


def folio_geometry(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per entry of a naturally aligned block of kpageflags: the folio order and the index in it.

    A folio is a head (KPF_COMPOUND_HEAD) and the tails (KPF_COMPOUND_TAIL)
    that follow it; its size is the distance from the head to the next
    entry that is not a tail.  Entries that are not compound, or tails whose
    head is outside the block, get order 0 and index 0.
    """
    n = len(flags)
    idx = np.arange(n, dtype=np.int64)
    head = (flags & np.uint64(KPF_COMPOUND_HEAD)) != 0
    tail = ((flags & np.uint64(KPF_COMPOUND_TAIL)) != 0) & ~head
    # The last head at or before each entry.
    last_head = np.maximum.accumulate(np.where(head, idx, -1))
    # The first entry after each position that is not a tail (n if none).
    stop = np.where(~tail, idx, n)
    next_stop = np.minimum.accumulate(stop[::-1])[::-1]
    after = np.append(next_stop[1:], n)  # first non-tail strictly after each entry
    order = np.zeros(n, dtype=np.uint8)
    index = np.zeros(n, dtype=np.uint32)
    member = (head | tail) & (last_head >= 0)
    # A tail belongs to the last head only if no non-tail lies between them.
    hs = np.where(last_head >= 0, last_head, 0)
    member &= after[hs] > idx
    size = after[hs] - hs
    ok = member & (size > 1)
    order[ok] = np.floor(np.log2(size[ok])).astype(np.uint8)
    index[ok] = (idx - hs)[ok].astype(np.uint32)
    return order, index


class _Kpage:
    """Blocks of /proc/kpageflags and /proc/kpagecount, read once each."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.flags_fd = os.open("/proc/kpageflags", os.O_RDONLY)
        self.count_fd = os.open("/proc/kpagecount", os.O_RDONLY)

    def close(self) -> None:
        os.close(self.flags_fd)
        os.close(self.count_fd)

    def _read(self, fd: int, base: int) -> np.ndarray:
        raw = os.pread(fd, self.block * 8, base * 8)
        out = np.zeros(self.block, dtype=np.uint64)
        got = np.frombuffer(raw[: len(raw) // 8 * 8], dtype=np.uint64)
        out[: len(got)] = got
        return out

    def lookup(self, pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """flags, count, folio order and index of each PFN."""
        n = len(pfns)
        flags = np.zeros(n, dtype=np.uint64)
        count = np.zeros(n, dtype=np.uint64)
        order = np.zeros(n, dtype=np.uint8)
        index = np.zeros(n, dtype=np.uint32)
        if not n:
            return flags, count, order, index
        blocks = pfns // np.uint64(self.block)
        for b in np.unique(blocks):
            sel = blocks == b
            base = int(b) * self.block
            f = self._read(self.flags_fd, base)
            c = self._read(self.count_fd, base)
            o, i = folio_geometry(f)
            off = (pfns[sel] - np.uint64(base)).astype(np.int64)
            flags[sel] = f[off]
            count[sel] = c[off]
            order[sel] = o[off]
            index[sel] = i[off]
        return flags, count, order, index


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children of each thread, recursively), parents first."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop(0)
        kids: list[int] = []
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                try:
                    kids += [int(x) for x in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
                except OSError:
                    continue
        except OSError:
            continue
        for k in sorted(set(kids)):
            if k not in out:
                out.append(k)
                todo.append(k)
    return out


def _capture_one(pid: int, kpage: _Kpage, page_shift: int) -> ProcRecord:
    try:
        t0 = _start_time(pid)
        ppid, comm = _ppid_comm(pid)
        vmas = read_smaps(pid)
        vfns: list[np.ndarray] = []
        ents: list[np.ndarray] = []
        for v in vmas:
            if v.stats.get("Rss", 0) <= 0 or v.end > 1 << 56:
                continue
            first, last = v.start >> page_shift, v.end >> page_shift
            for lo in range(first, last, _CHUNK):
                n = min(_CHUNK, last - lo)
                pm = read_pagemap(pid, lo << page_shift, n)
                present = (pm & np.uint64(PM_PRESENT)) != 0
                vfns.append(np.arange(lo, lo + n, dtype=np.uint64)[present])
                ents.append(pm[present])
        if _start_time(pid) != t0:
            raise ProcessVanished(f"pid {pid}: the process exited during the capture (its PID was reused)")
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcessVanished(f"pid {pid}: no such process, or it exited during the capture ({e})") from None
    vfn = np.concatenate(vfns) if vfns else np.zeros(0, dtype=np.uint64)
    pagemap = np.concatenate(ents) if ents else np.zeros(0, dtype=np.uint64)
    pfns = pagemap & np.uint64(PM_PFN_MASK)
    flags, count, order, index = kpage.lookup(pfns)
    return ProcRecord(pid, ppid, comm, vmas, vfn, pagemap, flags, count, order, index)


def capture(pids: Iterable[int], *, children: bool = False) -> Snapshot:
    """Capture ``pids`` (with ``children``: and all their descendants) into one snapshot.

    Raises ``ModelUsageError`` naming the PID when a process does not exist
    or vanishes during the capture, and when PFNs cannot be read (not root).
    """
    order: list[int] = []
    for pid in pids:
        if pid not in order:
            order.append(pid)
        if children:
            order += [k for k in descendants(pid) if k not in order]
    if not order:
        raise ModelUsageError("snapshot: no process to capture")
    for pid in order:
        if not os.path.exists(f"/proc/{pid}"):
            raise ProcessVanished(f"pid {pid}: no such process")
    try:
        kpage = _Kpage(max(1, pmd_size() // PAGE_SIZE))
    except OSError as e:
        raise ModelUsageError(
            f"snapshot: cannot read /proc/kpageflags ({e.strerror}): run as root (CAP_SYS_ADMIN)"
        ) from None
    page_shift = PAGE_SIZE.bit_length() - 1
    try:
        procs = [_capture_one(pid, kpage, page_shift) for pid in order]
    finally:
        kpage.close()
    for p in procs:
        if len(p.pagemap) and not int((p.pagemap & np.uint64(PM_PFN_MASK)).max()):
            raise ModelUsageError(
                f"snapshot: pid {p.pid}: pagemap hides PFNs (needs CAP_SYS_ADMIN in the initial user namespace)"
            )
    u = platform.uname()
    return Snapshot(
        PAGE_SIZE,
        pmd_size(),
        u.release,
        procs,
        uname=u.version,
        machine=u.machine,
        captured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        kpagecount_precise=precise_page_mapcount(),
        thp=read_thp_settings(),
    )


def parse_pids(texts: Sequence[str]) -> list[int]:
    """PIDs from the command line (``self`` allowed); a bad one raises naming it."""
    out = []
    for t in texts:
        if t == "self":
            out.append(os.getpid())
            continue
        try:
            pid = int(t)
        except ValueError:
            raise ModelUsageError(f"snapshot: {t!r} is not a PID") from None
        if pid <= 0:
            raise ModelUsageError(f"snapshot: {t!r} is not a PID")
        out.append(pid)
    return out
