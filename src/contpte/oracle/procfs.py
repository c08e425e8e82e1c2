"""Read a live process's page tables the way tools/mm/thpmaps does.

Interfaces (Documentation/admin-guide/mm/pagemap.rst):

- ``/proc/<pid>/pagemap``: one u64 per virtual page; bit 63 present,
  bit 56 PM_MMAP_EXCLUSIVE (the page is mapped exactly once), bits 0-54 the
  PFN (zero unless the reader has CAP_SYS_ADMIN).
- ``/proc/kpageflags``: one u64 per PFN; KPF_ANON (12), KPF_SWAPBACKED
  (14), KPF_COMPOUND_HEAD (15), KPF_COMPOUND_TAIL (16), KPF_THP (22),
  KPF_ZERO_PAGE (24).  A folio's order is the distance from its head to the
  next page that is not a tail, as thpmaps computes it.  An anon folio
  without SWAPBACKED is lazyfree (MADV_FREE: ``folio_mark_lazyfree()``
  clears PG_swapbacked), read at the head, where the kernel keeps the flag.
- ``/proc/kpagecount``: one u64 per PFN; with CONFIG_PAGE_MAPCOUNT it is the
  page's precise mapcount (``folio_precise_page_mapcount``).
- ``/proc/<pid>/smaps``: ``Rss``, ``Anonymous`` and ``LazyFree`` per VMA (kB).
- ``/proc/<pid>/mem``: the values, read with FOLL_FORCE and without FOLL_PIN,
  so reading a present page neither faults nor unshares it.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PM_PRESENT",
    "PM_SWAP",
    "PM_MMAP_EXCLUSIVE",
    "PM_PFN_MASK",
    "KPF_ANON",
    "KPF_SWAPBACKED",
    "KPF_COMPOUND_HEAD",
    "KPF_COMPOUND_TAIL",
    "KPF_THP",
    "KPF_ZERO_PAGE",
    "PAGE_SIZE",
    "Vma",
    "read_pagemap",
    "read_maps",
    "smaps_totals",
    "read_values",
    "KpageflagsReader",
    "procfs_unavailable_reason",
    "precise_page_mapcount",
]

PAGE_SIZE = resource.getpagesize()
PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_MMAP_EXCLUSIVE = 1 << 56
PM_PFN_MASK = (1 << 55) - 1
KPF_ANON = 12
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_THP = 22
KPF_ZERO_PAGE = 24

_HEAD = np.uint64(1 << KPF_COMPOUND_HEAD)
_TAIL = np.uint64(1 << KPF_COMPOUND_TAIL)


def read_pagemap(pid: int, addr: int, npages: int) -> np.ndarray:
    """The pagemap entries of ``npages`` pages from ``addr`` (u64 each)."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        want = npages * 8
        buf = b""
        while len(buf) < want:
            chunk = os.pread(fd, want - len(buf), (addr // PAGE_SIZE) * 8 + len(buf))
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    out = np.zeros(npages, dtype=np.uint64)
    got = np.frombuffer(buf, dtype=np.uint64)
    out[: len(got)] = got
    return out


@dataclass(frozen=True)
class Vma:
    """One line of /proc/<pid>/maps."""

    start: int
    end: int
    perms: str
    name: str


def read_maps(pid: int) -> list[Vma]:
    """The VMAs of ``pid``."""
    out = []
    with open(f"/proc/{pid}/maps") as fh:
        for line in fh:
            parts = line.split(None, 5)
            lo, hi = parts[0].split("-")
            out.append(Vma(int(lo, 16), int(hi, 16), parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return out


def smaps_totals(pid: int, lo: int, hi: int) -> dict[str, int]:
    """Sum of ``Rss``, ``Anonymous`` and ``LazyFree`` (in pages) over the VMAs inside ``[lo, hi)``."""
    tot = {"Rss": 0, "Anonymous": 0, "LazyFree": 0}
    inside = False
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                a, b = head.split("-")
                inside = int(a, 16) >= lo and int(b, 16) <= hi
                continue
            if inside:
                key = head.rstrip(":")
                if key in tot:
                    tot[key] += int(line.split()[1]) * 1024 // PAGE_SIZE
    return tot


def read_values(pid: int, addrs: Iterable[int]) -> dict[int, int]:
    """The first u64 of each page at ``addrs``, through /proc/<pid>/mem.

    Only call this for present pages: the read uses GUP (FOLL_FORCE, no
    FOLL_PIN), which would fault in a missing page.
    """
    out = {}
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for a in addrs:
            out[a] = int.from_bytes(os.pread(fd, 8, a), "little")
    finally:
        os.close(fd)
    return out


def precise_page_mapcount() -> bool:
    """Whether /proc/kpagecount gives per-page mapcounts (CONFIG_PAGE_MAPCOUNT=y).

    Kernels from v6.15 may be built with CONFIG_NO_PAGE_MAPCOUNT, where it
    is a per-folio average.  False when the config cannot be read.
    """
    import gzip
    import platform

    for path in ("/proc/config.gz", f"/boot/config-{platform.release()}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as fh:
                text = fh.read()
        except OSError:
            continue
        if "CONFIG_NO_PAGE_MAPCOUNT=y" in text:
            return False
        # Before v6.15 there is no such option and the count is per page.
        return "CONFIG_PAGE_MAPCOUNT=y" in text or "PAGE_MAPCOUNT" not in text
    return False


class KpageflagsReader:
    """Flags, folio order and mapcount of PFNs, read in naturally aligned blocks."""

    def __init__(self, block_pages: int = 512) -> None:
        self.block = block_pages
        self._cache: dict[int, np.ndarray] = {}
        self._counts: dict[int, np.ndarray] = {}
        self._fd = os.open("/proc/kpageflags", os.O_RDONLY)
        self._count_fd = os.open("/proc/kpagecount", os.O_RDONLY)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            os.close(self._count_fd)
            self._fd = -1

    def mapcount(self, pfn: int) -> int:
        """/proc/kpagecount of ``pfn``."""
        base = pfn - pfn % self.block
        got = self._counts.get(base)
        if got is None:
            raw = os.pread(self._count_fd, self.block * 8, base * 8)
            got = np.zeros(self.block, dtype=np.uint64)
            arr = np.frombuffer(raw, dtype=np.uint64)
            got[: len(arr)] = arr
            self._counts[base] = got
        return int(got[pfn - base])

    def __enter__(self) -> KpageflagsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _blk(self, base: int) -> np.ndarray:
        got = self._cache.get(base)
        if got is None:
            raw = os.pread(self._fd, self.block * 8, base * 8)
            got = np.zeros(self.block, dtype=np.uint64)
            arr = np.frombuffer(raw, dtype=np.uint64)
            got[: len(arr)] = arr
            self._cache[base] = got
        return got

    def flags(self, pfn: int) -> int:
        base = pfn - pfn % self.block
        return int(self._blk(base)[pfn - base])

    def _head(self, blk: np.ndarray, i: int) -> int:
        """Index in ``blk`` of the head of the compound page holding entry ``i`` (``i`` if none)."""
        h = i
        while h > 0 and (blk[h] & _TAIL) and not (blk[h] & _HEAD):
            h -= 1
        return h

    def lazyfree(self, pfn: int) -> bool:
        """Whether ``pfn`` belongs to a lazyfree anon folio (KPF_ANON without KPF_SWAPBACKED at its head)."""
        base = pfn - pfn % self.block
        blk = self._blk(base)
        h = self._head(blk, pfn - base)
        f = int(blk[h])
        return bool(f & (1 << KPF_ANON)) and not f & (1 << KPF_SWAPBACKED)

    def order(self, pfn: int) -> int:
        """The order of the folio holding ``pfn`` (0 for a page that is not compound).

        Folios up to the block size are naturally aligned, so head and tails
        lie in one block: walk back to the head, then count the tails.
        """
        base = pfn - pfn % self.block
        blk = self._blk(base)
        i = pfn - base
        if not (blk[i] & (_HEAD | _TAIL)):
            return 0
        h = self._head(blk, i)
        if not blk[h] & _HEAD:
            return 0  # a tail whose head lies beyond the block: larger than the block
        n = 1
        while h + n < self.block and (blk[h + n] & _TAIL) and not (blk[h + n] & _HEAD):
            n += 1
        return n.bit_length() - 1


def procfs_unavailable_reason() -> str | None:
    """Why pagemap PFNs or kpageflags cannot be read here (None: they can)."""
    if not os.path.exists("/proc/self/pagemap"):
        return "no /proc/self/pagemap (not Linux, or CONFIG_PROC_PAGE_MONITOR off)"
    try:
        fd = os.open("/proc/kpageflags", os.O_RDONLY)
        os.pread(fd, 8, 0)
        os.close(fd)
    except OSError as e:
        return f"/proc/kpageflags unreadable ({e.strerror}; needs root, CAP_SYS_ADMIN)"
    probe = bytearray(b"\x01" * (PAGE_SIZE * 2))  # every byte written: both pages present
    addr = np.frombuffer(probe, dtype=np.uint8).ctypes.data
    addr -= addr % PAGE_SIZE
    try:
        ent = int(read_pagemap(os.getpid(), addr + PAGE_SIZE, 1)[0])
    except OSError as e:
        return f"/proc/self/pagemap unreadable ({e.strerror})"
    if ent & PM_PRESENT and not ent & PM_PFN_MASK:
        return "/proc/self/pagemap hides PFNs (needs CAP_SYS_ADMIN in the initial user namespace)"
    return None
