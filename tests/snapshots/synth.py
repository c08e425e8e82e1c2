"""Synthetic snapshots: folios placed by hand, with the kpageflags a real kernel would show."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contpte.snapshot.format import (
    KPF_ANON,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_SWAPBACKED,
    KPF_THP,
    KPF_ZERO_PAGE,
    ProcRecord,
    Snapshot,
    VmaRecord,
)

PAGE = 4096
PM_PRESENT = 1 << 63


@dataclass
class Folio:
    """A folio of ``order`` at PFN ``pfn`` mapped from virtual address ``va`` (its page 0's place).

    ``pages``: the indices mapped (default all); ``anon``: anonymous or page cache.
    """

    va: int
    pfn: int
    order: int
    pages: list[int] | None = None
    anon: bool = True
    zero: bool = False


@dataclass
class Proc:
    pid: int
    vmas: list[VmaRecord]
    folios: list[Folio] = field(default_factory=list)
    ppid: int = 1


def vma(start: int, end: int, perms: str = "rw-p", name: str = "", **stats: int) -> VmaRecord:
    return VmaRecord(start, end, perms, "00000000", "00:00", "0", name, "rd wr mr mw me ac", dict(stats))


def proc_record(p: Proc, page: int = PAGE) -> ProcRecord:
    rows: dict[int, tuple[int, int, int, int, int, int]] = {}
    for f in p.folios:
        nr = 1 << f.order
        for i in f.pages if f.pages is not None else range(nr):
            flags = (KPF_ANON | KPF_SWAPBACKED) if f.anon else 0
            if f.zero:
                flags = KPF_ZERO_PAGE
            if f.order:
                flags |= KPF_THP | (KPF_COMPOUND_HEAD if i == 0 else KPF_COMPOUND_TAIL)
            vfn = f.va // page + i
            rows[vfn] = (vfn, PM_PRESENT | (f.pfn + i), flags, 1, f.order, i if f.order else 0)
    arr = np.array([rows[k] for k in sorted(rows)], dtype=np.uint64).reshape(-1, 6)
    # Rss and Anonymous of each VMA, as smaps would say (unless given).
    for v in p.vmas:
        inside = (arr[:, 0] >= v.start // page) & (arr[:, 0] < v.end // page)
        anon = inside & ((arr[:, 2] & np.uint64(KPF_ANON)) != 0)
        v.stats.setdefault("Rss", int(inside.sum()) * page // 1024)
        v.stats.setdefault("Anonymous", int(anon.sum()) * page // 1024)
        for k in ("AnonHugePages", "ShmemPmdMapped", "FilePmdMapped"):
            v.stats.setdefault(k, 0)
    return ProcRecord(
        p.pid,
        p.ppid,
        "synth",
        p.vmas,
        arr[:, 0].copy(),
        arr[:, 1].copy(),
        arr[:, 2].copy(),
        arr[:, 3].copy(),
        arr[:, 4].astype(np.uint8),
        arr[:, 5].astype(np.uint32),
    )


def snapshot(*procs: Proc, page_size: int = PAGE) -> Snapshot:
    return Snapshot(
        page_size,
        2 << 20 if page_size == PAGE else (page_size // 8) * page_size,
        "6.18.0-synthetic",
        [proc_record(p, page_size) for p in procs],
        machine="x86_64",
        thp={"enabled": "madvise", "hugepages-64kB/enabled": "always"},
    )
