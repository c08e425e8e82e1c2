"""The snapshot file: what ``contpte snapshot`` writes and ``--report`` / ``replay`` read.

A snapshot is a numpy ``.npz`` archive (``numpy.savez_compressed``: a zip of
``.npy`` arrays, deflate-compressed), chosen over Parquet because numpy is
already a dependency, the data is a few flat integer arrays per process
(Parquet's columns, schemas and row groups buy nothing here), and an
``.npz`` is read back without pickles (``allow_pickle=False``).  Members:

- ``meta``: UTF-8 JSON as a ``uint8`` array: ``format`` (``"contpte-snapshot"``),
  ``version`` (``FORMAT_VERSION``), ``page_size``, ``pmd_size``, ``kernel``
  (``uname -r``), ``uname`` (``uname -v``), ``machine`` (``uname -m``),
  ``captured_at`` (UTC, ISO 8601), ``kpagecount_precise`` (CONFIG_PAGE_MAPCOUNT),
  ``thp`` (every file under /sys/kernel/mm/transparent_hugepage: its selected
  word or its value) and ``processes``: per process ``pid``, ``ppid``,
  ``comm`` and ``vmas``, one per line of ``/proc/PID/smaps``: ``start``,
  ``end``, ``perms``, ``offset``, ``dev``, ``inode`` (the text of those
  fields), ``name``, ``vmflags`` and ``stats`` (every ``kB`` field).
- ``p<I>_vfn``, ``p<I>_pagemap``, ``p<I>_kpageflags``, ``p<I>_kpagecount``
  (``uint64``), ``p<I>_order`` (``uint8``), ``p<I>_index`` (``uint32``): one
  entry per *present* page of process ``I`` (its position in ``processes``),
  in address order: the virtual page number, the raw pagemap entry (PFN in
  bits 0-54), the page's /proc/kpageflags and /proc/kpagecount, and the order
  of the folio holding it and its index in that folio (both 0 for a page
  that is not compound).

A reader refuses another ``format`` or a newer ``version``; a version bump
is needed for any change a version-1 reader would misread.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenarioError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PM_PFN_MASK",
    "KPF_ANON",
    "KPF_COMPOUND_HEAD",
    "KPF_COMPOUND_TAIL",
    "KPF_THP",
    "KPF_ZERO_PAGE",
    "KPF_SWAPBACKED",
    "VmaRecord",
    "ProcRecord",
    "Snapshot",
    "save",
    "load",
]

FORMAT = "contpte-snapshot"
FORMAT_VERSION = 1

PM_PFN_MASK = (1 << 55) - 1
KPF_ANON = 1 << 12
KPF_SWAPBACKED = 1 << 14
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_THP = 1 << 22
KPF_ZERO_PAGE = 1 << 24

#: The per-page arrays of a process and their dtypes.
ARRAYS: dict[str, Any] = {
    "vfn": np.uint64,
    "pagemap": np.uint64,
    "kpageflags": np.uint64,
    "kpagecount": np.uint64,
    "order": np.uint8,
    "index": np.uint32,
}


@dataclass
class VmaRecord:
    """One VMA of ``/proc/PID/smaps``: its header fields as text, and its kB statistics."""

    start: int
    end: int
    perms: str
    offset: str = "00000000"
    dev: str = "00:00"
    inode: str = "0"
    name: str = ""
    vmflags: str = ""
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def private(self) -> bool:
        return self.perms[3:4] == "p"

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "perms": self.perms,
            "offset": self.offset,
            "dev": self.dev,
            "inode": self.inode,
            "name": self.name,
            "vmflags": self.vmflags,
            "stats": dict(self.stats),
        }


@dataclass
class ProcRecord:
    """One captured process: its VMAs and its present pages (arrays in address order)."""

    pid: int
    ppid: int
    comm: str
    vmas: list[VmaRecord]
    vfn: np.ndarray
    pagemap: np.ndarray
    kpageflags: np.ndarray
    kpagecount: np.ndarray
    order: np.ndarray
    index: np.ndarray

    @property
    def pfn(self) -> np.ndarray:
        return self.pagemap & np.uint64(PM_PFN_MASK)

    def pages_in(self, start_vfn: int, end_vfn: int) -> slice:
        """The slice of the page arrays for virtual pages ``[start_vfn, end_vfn)``."""
        lo = int(np.searchsorted(self.vfn, np.uint64(start_vfn), "left"))
        hi = int(np.searchsorted(self.vfn, np.uint64(end_vfn), "left"))
        return slice(lo, hi)


@dataclass
class Snapshot:
    """A capture of one or more processes (see the module docstring)."""

    page_size: int
    pmd_size: int
    kernel: str
    processes: list[ProcRecord]
    uname: str = ""
    machine: str = ""
    captured_at: str = ""
    kpagecount_precise: bool = False
    thp: dict[str, str] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @property
    def page_shift(self) -> int:
        return self.page_size.bit_length() - 1

    @property
    def pmd_order(self) -> int:
        return (self.pmd_size // self.page_size).bit_length() - 1

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "page_size": self.page_size,
            "pmd_size": self.pmd_size,
            "kernel": self.kernel,
            "uname": self.uname,
            "machine": self.machine,
            "captured_at": self.captured_at,
            "kpagecount_precise": self.kpagecount_precise,
            "thp": dict(self.thp),
            "processes": [
                {"pid": p.pid, "ppid": p.ppid, "comm": p.comm, "vmas": [v.as_dict() for v in p.vmas]}
                for p in self.processes
            ],
        }


def save(snap: Snapshot, path: str | Path) -> None:
    """Write ``snap`` to ``path`` atomically: a temporary file in the same directory, then rename.

    A failure (or an interrupt) leaves no file behind and an existing
    ``path`` untouched.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(snap.meta(), sort_keys=True).encode(), dtype=np.uint8)
    }
    for i, p in enumerate(snap.processes):
        for name, dtype in ARRAYS.items():
            arrays[f"p{i}_{name}"] = np.asarray(getattr(p, name), dtype=dtype)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _bad(path: str, what: str) -> ScenarioError:
    return ScenarioError(path, 0, f"not a readable contpte snapshot: {what}")


def load(path: str | Path) -> Snapshot:
    """Read a snapshot file; a missing, truncated, corrupt or foreign file raises ``ScenarioError``."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ScenarioError(name, 0, f"cannot read the snapshot: {e.strerror}") from None
    try:
        z = np.load(io.BytesIO(raw), allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise _bad(name, "a single .npy array, not a .npz archive")
        with z:
            members = {k: z[k] for k in z.files}
    except ScenarioError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib_error()) as e:
        raise _bad(name, f"truncated or corrupt ({type(e).__name__}: {e})") from None
    if "meta" not in members:
        raise _bad(name, "no 'meta' member")
    try:
        meta = json.loads(members["meta"].tobytes().decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(name, f"its 'meta' is not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(name, f"format {meta.get('format') if isinstance(meta, dict) else None!r}, not {FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise ScenarioError(
            name, 0, f"snapshot format version {version!r}; this contpte reads versions 1 to {FORMAT_VERSION}"
        )
    try:
        page_size = int(meta["page_size"])
        pmd_size = int(meta["pmd_size"])
        if page_size < 1024 or page_size & (page_size - 1) or pmd_size <= page_size:
            raise ValueError(f"page_size {page_size}, pmd_size {pmd_size}")
        procs = []
        for i, pm in enumerate(meta["processes"]):
            vmas = [
                VmaRecord(
                    int(v["start"]),
                    int(v["end"]),
                    str(v["perms"]),
                    str(v.get("offset", "0")),
                    str(v.get("dev", "00:00")),
                    str(v.get("inode", "0")),
                    str(v.get("name", "")),
                    str(v.get("vmflags", "")),
                    {str(k): int(x) for k, x in v.get("stats", {}).items()},
                )
                for v in pm["vmas"]
            ]
            arrs = {}
            for a, dtype in ARRAYS.items():
                key = f"p{i}_{a}"
                if key not in members:
                    raise ValueError(f"member {key} missing")
                arr = members[key]
                if arr.ndim != 1 or arr.dtype != np.dtype(dtype):
                    raise ValueError(
                        f"member {key} is {arr.dtype}[{arr.ndim}-d], expected {np.dtype(dtype)}[1-d]"
                    )
                arrs[a] = arr
            n = {len(x) for x in arrs.values()}
            if len(n) != 1:
                raise ValueError(f"process {i}: page arrays of different lengths {sorted(n)}")
            if len(arrs["vfn"]) > 1 and not bool(np.all(np.diff(arrs["vfn"].astype(np.int64)) > 0)):
                raise ValueError(f"process {i}: virtual pages not in increasing order")
            if len(arrs["order"]) and int(arrs["order"].max()) > 20:
                raise ValueError(f"process {i}: folio order {int(arrs['order'].max())} (> 20)")
            if bool(
                np.any(arrs["index"].astype(np.uint64) >= (np.uint64(1) << arrs["order"].astype(np.uint64)))
            ):
                raise ValueError(f"process {i}: a page index beyond its folio")
            procs.append(ProcRecord(int(pm["pid"]), int(pm["ppid"]), str(pm.get("comm", "")), vmas, **arrs))
        return Snapshot(
            page_size,
            pmd_size,
            str(meta.get("kernel", "")),
            procs,
            uname=str(meta.get("uname", "")),
            machine=str(meta.get("machine", "")),
            captured_at=str(meta.get("captured_at", "")),
            kpagecount_precise=bool(meta.get("kpagecount_precise", False)),
            thp={str(k): str(v) for k, v in meta.get("thp", {}).items()},
            version=version,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(name, f"inconsistent content ({type(e).__name__}: {e})") from None


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error
