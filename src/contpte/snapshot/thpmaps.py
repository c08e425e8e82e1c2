"""tools/mm/thpmaps' categories, computed from a snapshot.

Models nothing of the kernel: this is the accounting of the kernel's
``tools/mm/thpmaps`` (v6.9+, unchanged to v7.2), reimplemented over a
``Snapshot`` so ``contpte snapshot --report`` and thpmaps can be compared
line by line on one process.  Per VMA that is readable, writable or
executable and has a non-zero ``Rss``:

- only pages of a THP count (KPF_THP); they are cut into *ranges* whose
  virtual and physical page numbers both advance by one;
- in a range, pages before its first folio head are ``partial``; if the
  page after the range's last PFN is a tail of the same folio, the pages
  from the last head on are ``partial`` too; every other head starts a
  fully, contiguously mapped folio, counted as ``2**order`` pages where
  ``order = floor(log2(pages up to the next head))``, under ``aligned`` when
  its virtual page number is a multiple of that, else ``unaligned``;
  order 0 and 1 are not shown;
- ``anon-`` when the page has KPF_ANON, else ``file-``;
- PMD-mapped THPs come from smaps (``AnonHugePages``; ``ShmemPmdMapped`` +
  ``FilePmdMapped``): they are taken out of the aligned PMD-order count
  (clamped at 0) and shown as ``*-thp-pmd-aligned-<PMD>kB``;
- ``--cont SIZE``: in each range whose virtual and physical page numbers
  agree modulo the block, each block aligned to SIZE inside the range with
  no folio head after its first page counts (``*-cont-pte-aligned``), minus
  the PMD-mapped pages (clamped), and the PMD-mapped kB are shown as
  ``*-cont-pmd-aligned``.

Values are kB.  Percentages are of the VMA's (or the rollup's) smaps
``Anonymous``, and of ``Rss - Anonymous`` for file categories.  The text
output repeats thpmaps' layout (header, one ``PID: start-end perms offset
dev inode name`` line per VMA, ``label: value kB (pct)``), including its
quirks: ``inode`` is printed as if it were hex, and a name with a blank in
it is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .format import KPF_ANON, KPF_COMPOUND_HEAD, KPF_THP, PM_PFN_MASK, ProcRecord, Snapshot, VmaRecord

__all__ = [
    "HEADER",
    "cont_order",
    "vma_categories",
    "report",
    "format_report",
]

HEADER = "       PID             START              END PROT   OFFSET   DEV    INODE OBJECT"

Stats = dict[str, dict[str, Any]]


def cont_order(text: str, page_size: int, pmd_order: int) -> int:
    """``--cont 64K`` -> the block's order in pages; ``ValueError`` saying why not."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip()
    mult = units.get(t[-1:].upper(), 1)
    if t[-1:].upper() in units:
        t = t[:-1]
    try:
        size = int(t) * mult
    except ValueError:
        raise ValueError(f"--cont {text!r}: expected an integer size with an optional K, M or G") from None
    pages = size // page_size
    if pages < 2 or pages * page_size != size or pages & (pages - 1):
        raise ValueError(f"--cont {text!r}: must be a power-of-2 number of pages, at least 2")
    order = pages.bit_length() - 1
    if order > pmd_order:
        raise ValueError(f"--cont {text!r}: larger than the PMD")
    return order


def _kb(pages: int, page_size: int) -> int:
    return pages * page_size >> 10


def _ranges(vfn: np.ndarray, pfn: np.ndarray) -> list[tuple[int, int]]:
    """[first, last] index pairs of the runs where vfn and pfn both advance by one."""
    if not len(vfn):
        return []
    step = (np.diff(vfn.astype(np.int64)) == 1) & (np.diff(pfn.astype(np.int64)) == 1)
    breaks = np.flatnonzero(~step)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(vfn) - 1]))
    return list(zip(starts.tolist(), ends.tolist()))


def vma_categories(
    snap: Snapshot, proc: ProcRecord, vma: VmaRecord, cont_orders: Sequence[int] = ()
) -> tuple[Stats, int, int]:
    """thpmaps' statistics of one VMA, and its anon and file kB (see the module docstring)."""
    ps = snap.page_size
    pmd_order = snap.pmd_order
    sl = proc.pages_in(vma.start // ps, vma.end // ps)
    flags = proc.kpageflags[sl]
    thp = (flags & np.uint64(KPF_THP)) != 0
    vfn = proc.vfn[sl][thp]
    pfn = (proc.pagemap[sl] & np.uint64(PM_PFN_MASK))[thp]
    anon = ((flags & np.uint64(KPF_ANON)) != 0)[thp]
    heads = ((flags & np.uint64(KPF_COMPOUND_HEAD)) != 0)[thp]
    order = proc.order[sl][thp]
    index = proc.index[sl][thp]
    counts: dict[str, dict[str, Any]] = {
        t: {"partial": 0, "aligned": [0] * (pmd_order + 1), "unaligned": [0] * (pmd_order + 1)}
        for t in ("file", "anon")
    }
    rngs = _ranges(vfn, pfn)
    for lo, hi in rngs:
        end = hi + 1
        hidx = (np.flatnonzero(heads[lo:end]) + lo).tolist()
        first = hidx[0] if hidx else end
        counts["anon" if anon[lo] else "file"]["partial"] += first - lo
        if hidx:
            # The PFN after the range a tail of the last page's folio?
            o, i = int(order[hi]), int(index[hi])
            if o > 0 and i + 1 < 1 << o:
                nr = end - hidx[-1]
                hidx = hidx[:-1]
                end -= nr
                counts["anon" if anon[end - 1] else "file"]["partial"] += nr
        for j, h in enumerate(hidx):
            nxt = hidx[j + 1] if j + 1 < len(hidx) else end
            od = int(np.floor(np.log2(nxt - h)))
            nr = 1 << od
            kind = "aligned" if int(vfn[h]) % nr == 0 else "unaligned"
            counts["anon" if anon[h] else "file"][kind][od] += nr
    st = vma.stats
    anon_pmd = st.get("AnonHugePages", 0)
    file_pmd = st.get("ShmemPmdMapped", 0) + st.get("FilePmdMapped", 0)
    counts["anon"]["aligned"][pmd_order] = max(
        0, counts["anon"]["aligned"][pmd_order] - anon_pmd * 1024 // ps
    )
    counts["file"]["aligned"][pmd_order] = max(
        0, counts["file"]["aligned"][pmd_order] - file_pmd * 1024 // ps
    )
    pmd_kb = _kb(1 << pmd_order, ps)
    out: Stats = {
        f"anon-thp-pmd-aligned-{pmd_kb}kB": {"type": "anon", "value": anon_pmd},
        f"file-thp-pmd-aligned-{pmd_kb}kB": {"type": "file", "value": file_pmd},
    }
    for t in ("anon", "file"):
        for kind in ("aligned", "unaligned"):
            for od in range(2, pmd_order + 1):
                out[f"{t}-thp-pte-{kind}-{_kb(1 << od, ps)}kB"] = {
                    "type": t,
                    "value": _kb(counts[t][kind][od], ps),
                }
        out[f"{t}-thp-pte-partial"] = {"type": t, "value": _kb(counts[t]["partial"], ps)}
    for co in cont_orders:
        nc = 1 << co
        n_anon = n_file = 0
        for lo, hi in rngs:
            v0, p0 = int(vfn[lo]), int(pfn[lo])
            if v0 % nc != p0 % nc:
                continue
            i = lo + (-v0) % nc
            while i + nc <= hi + 1:
                if not heads[i + 1 : i + nc].any():
                    if anon[i]:
                        n_anon += nc
                    else:
                        n_file += nc
                i += nc
        n_anon = max(0, n_anon - anon_pmd * 1024 // ps)
        n_file = max(0, n_file - file_pmd * 1024 // ps)
        kb = _kb(nc, ps)
        out[f"anon-cont-pmd-aligned-{kb}kB"] = {"type": "anon", "value": anon_pmd}
        out[f"file-cont-pmd-aligned-{kb}kB"] = {"type": "file", "value": file_pmd}
        out[f"anon-cont-pte-aligned-{kb}kB"] = {"type": "anon", "value": _kb(n_anon, ps)}
        out[f"file-cont-pte-aligned-{kb}kB"] = {"type": "file", "value": _kb(n_file, ps)}
    tot_anon = st.get("Anonymous", 0)
    return out, tot_anon, st.get("Rss", 0) - tot_anon


def _scanned(vma: VmaRecord) -> bool:
    readable = any(c in vma.perms[:3] for c in "rwx")
    return readable and vma.stats.get("Rss", 0) > 0


def report(
    snap: Snapshot, cont_orders: Sequence[int] = (), pids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Per process and VMA (in the snapshot's order): the VMA, its statistics, anon and file kB."""
    out = []
    for p in snap.processes:
        if pids is not None and p.pid not in pids:
            continue
        for v in p.vmas:
            if _scanned(v):
                stats, a, f = vma_categories(snap, p, v, cont_orders)
            else:
                stats, a, f = {}, 0, 0
            out.append({"pid": p.pid, "vma": v, "stats": stats, "anon_kb": a, "file_kb": f})
    return out


def _vma_line(pid: int, v: VmaRecord) -> str:
    major, minor = (int(x, 16) for x in v.dev.split(":"))
    fields = f"{v.start:x}-{v.end:x} {v.perms} {v.offset} {v.dev} {v.inode} {v.name}".split()
    name = fields[5] if len(fields) == 6 else ""
    return (
        f"{pid:010d}: {v.start:016x}-{v.end:016x} {v.perms[:3]}{'p' if v.private else 's'} "
        f"{int(v.offset, 16):08x} {major:02x}:{minor:02x} {int(v.inode, 16):08x} {name}"
    )


def _stat_lines(stats: Stats, tot_anon: int, tot_file: int, inc_empty: bool) -> list[str]:
    lines = []
    for label, s in stats.items():
        value = s["value"]
        if not (value or inc_empty):
            continue
        pad = " " * max(0, 32 - len(label) - 1)
        total = tot_anon if s["type"] == "anon" else tot_file
        pct = f" ({value / total:3.0%})" if total > 0 else ""
        lines.append(f"{label}:{pad}{value:8} kB{pct}")
    return lines


def format_report(rows: Sequence[dict[str, Any]], rollup: bool = False, inc_empty: bool = False) -> str:
    """thpmaps' text output for ``report()`` rows (``--rollup``: one sum over them all)."""
    lines: list[str] = []
    if rollup:
        total: Stats = {}
        ra = rf = 0
        for r in rows:
            for k, s in r["stats"].items():
                if k in total:
                    total[k]["value"] += s["value"]
                else:
                    total[k] = dict(s)
            ra += r["anon_kb"]
            rf += r["file_kb"]
        lines += _stat_lines(total, ra, rf, inc_empty)
    else:
        lines.append(HEADER)
        for r in rows:
            lines.append(_vma_line(r["pid"], r["vma"]))
            lines += _stat_lines(r["stats"], r["anon_kb"], r["file_kb"], inc_empty)
    return "\n".join(lines) + ("\n" if lines else "")
