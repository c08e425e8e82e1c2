#!/usr/bin/env python3
"""Benchmark runner: the simulator's own speed against the real kernel (issue 12's targets).

    python benchmarks/run.py [NAME ...] [--size 1G] [--layouts uniform,fragmented,partial-cow]
                             [--sizes 4K,16K,64K,2M] [--arches arm64,generic] [--checks off,on]
                             [--repeat 5] [--real-repeat 15] [--iters 200] [--budget 10]
                             [--small-size 16M] [--fuzz-steps 1500]
                             [--out DIR] [--json]

Benchmarks live here, never as timed assertions in tests.  docs/numbers.md: "a
ratio in one run is the only honest comparison on shared machines", so one
run builds every address-space layout below twice, in a real process (the
mTHP policy set in sysfs as root through ``contpte.oracle.sysfs.ThpSysfs``,
which holds a machine-wide lock and restores the policy on any exit) and in
the model (``contpte.Machine`` with the same ``thp=``/``mthp=``), times the
same operations on both, and reports each model figure as a ratio to the
real figure of the same layout.  Only medians and same-run ratios are
quoted.  The model is driven through its public API only (``Machine``,
``spawn``, ``mmap``, ``write``, ``read``, ``fork``, ``mprotect``,
``madvise``, ``munmap``, ``pagemap``, ``exit``).  The model has one
implementation of each kernel function, so there is no "reference" path to
time beside it.

Layouts (``--size`` bytes of private anonymous memory; ``--layouts``):

- ``uniform-<S>`` (``uniform`` = every ``--sizes``): every folio of size S
  (4K: no mTHP; 16K/64K: that mTHP size ``always``; 2M: THP ``always``),
  the region starting on a 2M boundary; every page written once.
- ``fragmented``: mTHP 16K and 64K ``always`` (THP ``never``); the region
  starts ``FRAG_OFFSET`` (20K) past a 2M boundary, so its first and last
  64K blocks are partial and get 16K and 4K folios; every page written
  once (the fault-in); then MADV_DONTNEED of one page in every
  ``FRAG_ZAP_EVERY`` (37), pages 5, 42, 79, ... of the region, one call per
  page; then every ``FRAG_REWRITE_EVERY``-th (2nd) of those pages written
  again: they fault in as 4K folios in the holes of the partly mapped 16K
  and 64K folios.
- ``partial-cow``: mTHP 64K ``always``; a parent writes every page (the
  fault-in), forks a child, and the child writes one page in every
  ``COW_EVERY`` (8), pages 3, 11, 19, ...: each 64K folio, still mapped by
  the parent, is mapped by the child with two 4K copies in it.  The
  measured process is that child (its fork, its forked child's exit, its
  mprotect, munmap and single-page syscalls).

Every region is mapped exactly: ``--size`` + 4M of PROT_NONE is reserved,
the region mapped MAP_FIXED over it, the rest left as PROT_NONE guards (so
no neighbour merges with it).  The sequence per layout, the same on both
sides:

1. build: the fault-in (timed; real: the median of this one and of two
   map-write-unmap runs before it, see ``real_fault_in_warmup``), then the
   shaping steps (timed as ``shape``);
2. folio census: which folios map the region (real: /proc/self/pagemap and
   /proc/kpageflags, since smaps' AnonHugePages counts PMD mappings only;
   model: ``Process.pagemap``), how many large folios are partly mapped;
3. fork (parent side) then the child's exit, ``--repeat`` times (real:
   ``--real-repeat``; the parent wakes the waiting child through a pipe and
   waits for it);
4. single-page syscalls (median over ``--iters`` pages spread over the
   mapped pages of the region's first ``--small-size`` bytes, the same
   pages at every size; model loops also bounded by ``--budget`` seconds): an
   8-byte read of a mapped page, MADV_DONTNEED of it, a write fault on the
   none PTE left behind, mprotect of one page (r, then rw: both samples),
   and, with a forked child alive, a CoW write fault on the next mapped page;
5. mprotect of the whole region to r, then back to rw (real: repeated,
   medians);
6. munmap of the whole region.

For each layout the real figures are taken first (in a fresh interpreter,
``--real-worker``, with only numpy and ctypes imported so the process
forked is small, while the parent holds the sysfs policy; the figures
include Python's call overhead, ~0.1-0.5 us), then the model's for each
backend: one machine per ``--checks`` setting plus, for the single-page
syscalls, one per setting with only ``--small-size`` mapped, all built
first and then measured taking turns, so that the checker on/off and
big/small ratios are not skewed by the host's load changing.

Benchmarks (default: all):

- ``real``: the layouts on the real kernel (alias ``host``).
- ``sim``: the layouts in the model.
- ``memory``: simulator memory per mapped page beyond the frames' own
  metadata (tracemalloc, after fault-in and after fork).
- ``fuzz``: random-workload steps per second per backend
  (``contpte.workloads.fuzz``).

Results go to ``--out``/<date>.json and a markdown report <date>.md next to
it, which opens with one row per issue-12 target (``--out ''``: not
written); ``--json`` prints the JSON document only.  A quick run:
``--size 64M --arches arm64 --iters 50`` (under a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Result = dict[str, Any]

PAGE_SIZE = 4096
PMD_SIZE = 2 << 20
SIZES = ("4K", "16K", "64K", "2M")
LAYOUT_GROUPS = ("uniform", "fragmented", "partial-cow")

FRAG_OFFSET = 20 << 10
FRAG_ZAP_FIRST, FRAG_ZAP_EVERY, FRAG_REWRITE_EVERY = 5, 37, 2
COW_FIRST, COW_EVERY = 3, 8

OPS = ("fault_in", "fork", "fork_first", "exit", "mprotect_ro", "mprotect_rw", "munmap")
SYSCALLS = ("read8", "dontneed", "fault_none", "fault_cow", "mprotect")
SYSCALL_NAMES = {
    "read8": "8-byte read",
    "dontneed": "MADV_DONTNEED 1 page",
    "fault_none": "write fault, none PTE",
    "fault_cow": "CoW write fault",
    "mprotect": "mprotect 1 page",
}
MIN_SAMPLES = 5
VALUES_WRITTEN = {"one": "one value written", "distinct": "a distinct value per page"}
TURN_PAGES = 10

_log_enabled = True


def log(msg: str) -> None:
    if _log_enabled:
        print(msg, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    units = {"K": 10, "M": 20, "G": 30}
    t = text.strip().upper().removesuffix("B")
    return int(t[:-1]) << units[t[-1]] if t[-1] in units else int(t)


def size_label(nbytes: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift}{unit}"
    return str(nbytes)


# ---------------------------------------------------------------------------
# Layouts: one recipe for both sides
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How a region is populated; the real process and the model follow it alike."""

    name: str
    thp: str  # top-level THP policy (sysfs words)
    mthp: dict[str, str] = field(default_factory=dict)  # sizes not given: never (PMD size: inherit)
    offset: int = 0  # the region starts this far past a 2M boundary
    zap_every: int = 0  # MADV_DONTNEED one page in every zap_every (0: none) ...
    rewrite_every: int = 0  # ... and write every rewrite_every-th of those again
    cow_every: int = 0  # a forked child writes one page in every cow_every (0: no child)


def uniform(size: str) -> Layout:
    mthp = {} if size in ("4K", "2M") else {size: "always"}
    return Layout(f"uniform-{size}", thp="always" if size == "2M" else "never", mthp=mthp)


FRAGMENTED = Layout(
    "fragmented",
    thp="never",
    mthp={"16K": "always", "64K": "always"},
    offset=FRAG_OFFSET,
    zap_every=FRAG_ZAP_EVERY,
    rewrite_every=FRAG_REWRITE_EVERY,
)
PARTIAL_COW = Layout("partial-cow", thp="never", mthp={"64K": "always"}, cow_every=COW_EVERY)


def layout_by_name(name: str) -> Layout:
    if name.startswith("uniform-"):
        return uniform(name.removeprefix("uniform-"))
    return {"fragmented": FRAGMENTED, "partial-cow": PARTIAL_COW}[name]


def select_layouts(spec: str, sizes: Iterable[str]) -> list[Layout]:
    """``--layouts`` (``uniform`` expands to every ``--sizes``) -> layouts."""
    out = []
    for name in (n for n in spec.split(",") if n):
        if name == "uniform":
            out += [uniform(s) for s in sizes]
        else:
            out.append(layout_by_name(name))
    return out


def zapped_pages(lay: Layout, npages: int) -> np.ndarray:
    """Page indices (in the region) that the recipe MADV_DONTNEEDs."""
    if not lay.zap_every:
        return np.zeros(0, dtype=np.int64)
    return np.arange(FRAG_ZAP_FIRST, npages, lay.zap_every, dtype=np.int64)


def rewritten_pages(lay: Layout, npages: int) -> np.ndarray:
    """Zapped page indices written again."""
    z = zapped_pages(lay, npages)
    return z[:: lay.rewrite_every] if lay.rewrite_every else z[:0]


def cow_pages(lay: Layout, npages: int) -> np.ndarray:
    """Page indices the forked child writes (partial CoW)."""
    if not lay.cow_every:
        return np.zeros(0, dtype=np.int64)
    return np.arange(COW_FIRST, npages, lay.cow_every, dtype=np.int64)


def probe_span(nbytes: int, small: int) -> int:
    """The part of a region whose pages the single-page syscalls use: the first ``small`` bytes.

    The same page indices then serve the big and the small mapping (and
    the real process), so their figures are of the same operations.
    """
    return min(nbytes, small) if small > 0 else nbytes


def probe_pages(lay: Layout, npages: int, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Pages for the single-page syscalls, spread over the mapped pages of the first ``npages``.

    Returns (pages zapped and faulted again, pages CoW-faulted); the second
    are the mapped pages right after the first, so the two never overlap.
    """
    mapped = np.ones(npages, dtype=bool)
    mapped[zapped_pages(lay, npages)] = False
    mapped[rewritten_pages(lay, npages)] = True
    cand = np.flatnonzero(mapped)
    step = max(2, len(cand) // max(iters, 1))
    idx = np.arange(step // 2, len(cand) - 1, step)[:iters]
    return cand[idx], cand[idx + 1]


def folio_census(addr: int, present: np.ndarray, pfn: np.ndarray, order: np.ndarray) -> Result:
    """The folios that map a region, from one pagemap row per page.

    The same analysis for the real kernel and the model: the folios by size
    (a folio counts once however many of its pages the region maps), the
    large folios of which the region maps only part, and the 4K folios
    mapped in a 64K-aligned block that also maps part of a large folio
    (a 4K folio in a hole).
    """
    idx = np.flatnonzero(present.astype(bool))
    o = order[idx].astype(np.int64)
    head = pfn[idx].astype(np.int64) & ~((np.int64(1) << o) - 1)
    keys, counts = np.unique(head * 64 + o, return_counts=True)
    korder = keys % 64
    folios = {size_label(PAGE_SIZE << int(k)): int(n) for k, n in zip(*np.unique(korder, return_counts=True))}
    partly = int(np.count_nonzero((korder > 0) & (counts < (np.int64(1) << korder))))
    block = (addr // PAGE_SIZE + idx) // 16
    large_blocks = np.unique(block[o > 0])
    holes = int(np.count_nonzero((o == 0) & np.isin(block, large_blocks)))
    return {
        "mapped_pages": len(idx),
        "folios": folios,
        "large_folios": int(np.count_nonzero(korder > 0)),
        "partly_mapped_large": partly,
        "order0_in_holes": holes,
    }


# ---------------------------------------------------------------------------
# Timing helpers (both sides)
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Keep the collector out of a timed section (``run_sim`` collects between layouts)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def timed_ns(fn: Callable[..., Any], *args: Any) -> int:
    t0 = time.perf_counter_ns()
    fn(*args)
    return time.perf_counter_ns() - t0


def medians_us(samples: dict[str, list[int]]) -> Result:
    """Samples in ns -> {"<op>": median us, "samples": {"<op>": n}}."""
    out: Result = {k: statistics.median(v) / 1e3 for k, v in samples.items() if v}
    out["samples"] = {k: len(v) for k, v in samples.items()}
    return out


# ---------------------------------------------------------------------------
# The real kernel (run in a fresh interpreter: ``--real-worker LAYOUT``)
# ---------------------------------------------------------------------------
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000
MADV_DONTNEED = 4
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 15, 16


class Libc:
    """The four syscalls the real side needs, through ctypes; errors raise OSError."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        vp, sz, i = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        lib.mmap.restype = vp
        lib.mmap.argtypes = [vp, sz, i, i, i, ctypes.c_long]
        for name, args in (("munmap", [vp, sz]), ("mprotect", [vp, sz, i]), ("madvise", [vp, sz, i])):
            getattr(lib, name).argtypes = args
            getattr(lib, name).restype = i
        self.lib = lib

    @staticmethod
    def _err(what: str) -> OSError:
        e = ctypes.get_errno()
        return OSError(e, f"{what}: {os.strerror(e)}")

    def mmap(self, addr: int, length: int, prot: int, flags: int) -> int:
        got = self.lib.mmap(addr or None, length, prot, flags, -1, 0)
        if got in (None, ctypes.c_void_p(-1).value):
            raise self._err("mmap")
        return int(got)

    def munmap(self, addr: int, length: int) -> None:
        if self.lib.munmap(addr, length):
            raise self._err("munmap")

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if self.lib.mprotect(addr, length, prot):
            raise self._err("mprotect")

    def madvise(self, addr: int, length: int, advice: int) -> None:
        if self.lib.madvise(addr, length, advice):
            raise self._err("madvise")


def real_map_region(libc: Libc, lay: Layout, nbytes: int) -> int:
    """Reserve ``nbytes`` + 4M PROT_NONE, map the region MAP_FIXED inside it; its address."""
    base = libc.mmap(0, nbytes + 2 * PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
    addr = ((base + PMD_SIZE - 1) & ~(PMD_SIZE - 1)) + lay.offset
    libc.mmap(addr, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    return addr


def real_pages(addr: int, nbytes: int) -> np.ndarray:
    """The region as an array of pages (rows of bytes) for user-space stores."""
    buf = (ctypes.c_uint8 * nbytes).from_address(addr)
    return np.frombuffer(buf, dtype=np.uint8).reshape(-1, PAGE_SIZE)


def real_build(libc: Libc, lay: Layout, addr: int, nbytes: int) -> Result:
    """Fault-in (every page written) and the layout's shaping, timed."""
    pages = real_pages(addr, nbytes)
    with paused_gc():
        t0 = time.perf_counter_ns()
        pages[:, 0] = 1
        out: Result = {"fault_in": (time.perf_counter_ns() - t0) / 1e9}
        t0 = time.perf_counter_ns()
        for i in zapped_pages(lay, len(pages)):
            libc.madvise(addr + int(i) * PAGE_SIZE, PAGE_SIZE, MADV_DONTNEED)
        pages[rewritten_pages(lay, len(pages)), 0] = 2
        shape = (time.perf_counter_ns() - t0) / 1e9
    if lay.zap_every:
        out["shape"] = shape
    return out


def real_orders(pfns: np.ndarray) -> np.ndarray:
    """The folio order of each PFN, from /proc/kpageflags read in aligned 512-page blocks.

    Folios up to 2M are naturally aligned, so each lies in one block: a page
    that is not a compound tail starts a folio, the run of tails after it
    belongs to it (as tools/mm/thpmaps counts).
    """
    blocks = np.unique(pfns >> 9)
    flags = np.zeros((len(blocks), 512), dtype=np.uint64)
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        for k, b in enumerate(blocks):
            raw = os.pread(fd, 512 * 8, int(b) * 512 * 8)
            flags[k, : len(raw) // 8] = np.frombuffer(raw, dtype=np.uint64)
    finally:
        os.close(fd)
    head = (flags >> np.uint64(KPF_COMPOUND_HEAD)) & np.uint64(1)
    tail = (flags >> np.uint64(KPF_COMPOUND_TAIL)) & np.uint64(1)
    starts = (tail == 0) | (head == 1)
    starts[:, 0] = True
    folio = np.cumsum(starts.ravel()) - 1
    nr = np.bincount(folio)
    pos = np.searchsorted(blocks, pfns >> 9) * 512 + (pfns & 511).astype(np.int64)
    return np.log2(nr[folio[pos]]).astype(np.int64)


def real_census(addr: int, nbytes: int) -> Result:
    """Folio census of the region in this process (pagemap + kpageflags; needs root)."""
    npages = nbytes // PAGE_SIZE
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        raw = b""
        while len(raw) < npages * 8:
            chunk = os.pread(fd, npages * 8 - len(raw), addr // PAGE_SIZE * 8 + len(raw))
            if not chunk:
                break
            raw += chunk
    finally:
        os.close(fd)
    pm = np.frombuffer(raw, dtype=np.uint64)
    present = (pm >> np.uint64(63)) & np.uint64(1) == 1
    pfn = (pm & np.uint64((1 << 55) - 1)).astype(np.int64)
    if present.any() and not pfn[present].any():
        return {"error": "pagemap hides PFNs (needs CAP_SYS_ADMIN)"}
    order = np.zeros(npages, dtype=np.int64)
    try:
        order[present] = real_orders(pfn[present])
    except OSError as e:
        return {"error": f"/proc/kpageflags: {e.strerror}"}
    return folio_census(addr, present, pfn, order)


def real_fork_exit(repeat: int) -> Result:
    """Fork (parent side) and the child's exit, ``repeat`` times.

    The child waits on a pipe; its exit is timed from the parent's wake-up
    write to the parent's return from waitpid (the exit tears the mm down
    before the parent is notified).
    """
    forks, exits = [], []
    for _ in range(repeat):
        r, w = os.pipe()
        with paused_gc():
            t0 = time.perf_counter_ns()
            pid = os.fork()
            if pid == 0:
                os.read(r, 1)
                os._exit(0)
            forks.append(time.perf_counter_ns() - t0)
            time.sleep(0.01)  # let the child reach its read
            t0 = time.perf_counter_ns()
            os.write(w, b"x")
            os.waitpid(pid, 0)
            exits.append(time.perf_counter_ns() - t0)
        os.close(r)
        os.close(w)
    return {
        "fork": statistics.median(forks) / 1e9,
        "fork_first": forks[0] / 1e9,
        "fork_runs": [t / 1e9 for t in forks],
        "exit": statistics.median(exits) / 1e9,
    }


def real_syscalls(libc: Libc, lay: Layout, addr: int, span: int, iters: int) -> Result:
    """The single-page syscalls and faults (see the module docstring) in the first ``span`` bytes, us."""
    q, cq = probe_pages(lay, span // PAGE_SIZE, iters)
    s: dict[str, list[int]] = {k: [] for k in SYSCALLS}
    cells = [ctypes.c_uint64.from_address(addr + int(i) * PAGE_SIZE) for i in q]
    with paused_gc():
        for i, cell in zip(q, cells):
            va = addr + int(i) * PAGE_SIZE
            t0 = time.perf_counter_ns()
            _ = cell.value
            s["read8"].append(time.perf_counter_ns() - t0)
            s["dontneed"].append(timed_ns(libc.madvise, va, PAGE_SIZE, MADV_DONTNEED))
            t0 = time.perf_counter_ns()
            cell.value = 5
            s["fault_none"].append(time.perf_counter_ns() - t0)
            s["mprotect"].append(timed_ns(libc.mprotect, va, PAGE_SIZE, PROT_READ))
            s["mprotect"].append(timed_ns(libc.mprotect, va, PAGE_SIZE, PROT_READ | PROT_WRITE))
    cow_cells = [ctypes.c_uint64.from_address(addr + int(i) * PAGE_SIZE) for i in cq]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    with paused_gc():
        for cell in cow_cells:
            t0 = time.perf_counter_ns()
            cell.value = 6
            s["fault_cow"].append(time.perf_counter_ns() - t0)
    os.write(w, b"x")
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    return medians_us(s)


def real_whole_region(libc: Libc, addr: int, nbytes: int, repeat: int) -> Result:
    """mprotect of the region to r and back to rw (``repeat`` pairs, medians), then munmap of it."""
    ro, rw = [], []
    with paused_gc():
        for _ in range(repeat):
            ro.append(timed_ns(libc.mprotect, addr, nbytes, PROT_READ))
            rw.append(timed_ns(libc.mprotect, addr, nbytes, PROT_READ | PROT_WRITE))
        unmap = timed_ns(libc.munmap, addr, nbytes)
    return {
        "mprotect_ro": statistics.median(ro) / 1e9,
        "mprotect_rw": statistics.median(rw) / 1e9,
        "munmap": unmap / 1e9,
    }


def real_measure(
    libc: Libc, lay: Layout, addr: int, nbytes: int, repeat: int, iters: int, span: int
) -> Result:
    """Steps 2-6 of the sequence on this process's region."""
    out: Result = {"census": real_census(addr, nbytes)}
    ops = real_fork_exit(repeat)
    out["syscalls_us"] = real_syscalls(libc, lay, addr, span, iters)
    ops.update(real_whole_region(libc, addr, nbytes, repeat))
    out["ops"] = ops
    return out


def real_in_child(fn: Callable[[], Result]) -> Result:
    """Run ``fn`` in a forked child; its result comes back as JSON through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = fn()
        except BaseException as e:
            res = {"error": f"{type(e).__name__}: {e}"}
        with os.fdopen(w, "w") as fh:
            json.dump(res, fh)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    return json.loads(text) if text else {"error": "the child reported nothing"}


def real_fault_in_warmup(libc: Libc, lay: Layout, nbytes: int) -> float:
    """Map, write and unmap the region once: the fault-in time.

    The host is a VM: memory the guest has not touched lately may first
    have to be backed by the hypervisor, which can make one fault-in 10x
    slower than the next.  The fault-in reported is the median of these
    runs and the build's.
    """
    addr = real_map_region(libc, lay, nbytes)
    try:
        return real_build(libc, uniform("4K"), addr, nbytes)["fault_in"]
    finally:
        libc.munmap(addr, nbytes)


def real_layout(name: str, nbytes: int, repeat: int, iters: int, span: int) -> Result:
    """The whole sequence for one layout in this (fresh) process; see the module docstring."""
    lay = layout_by_name(name)
    libc = Libc()
    out: Result = {"layout": name, "pid_rss_kb": _rss_kb()}
    alone = real_fork_exit(3)  # the interpreter alone: its own share of every fork and exit
    out["fork_baseline"], out["exit_baseline"] = alone["fork"], alone["exit"]
    warm = [real_fault_in_warmup(libc, lay, nbytes) for _ in range(2)]
    addr = real_map_region(libc, lay, nbytes)
    build = real_build(libc, lay, addr, nbytes)
    build["fault_in_runs"] = [*warm, build["fault_in"]]
    build["fault_in"] = statistics.median(build["fault_in_runs"])
    if not lay.cow_every:
        res = real_measure(libc, lay, addr, nbytes, repeat, iters, span)
    else:

        def child() -> Result:
            pages = real_pages(addr, nbytes)
            with paused_gc():
                t0 = time.perf_counter_ns()
                pages[cow_pages(lay, len(pages)), 0] = 3
                shape = (time.perf_counter_ns() - t0) / 1e9
            return {"shape": shape, **real_measure(libc, lay, addr, nbytes, repeat, iters, span)}

        res = real_in_child(child)
        build["shape"] = res.pop("shape", None)
        libc.munmap(addr, nbytes)
    res.setdefault("ops", {}).update(build)
    return {**out, **res}


def _rss_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def real_run(lay: Layout, nbytes: int, repeat: int, iters: int, span: int) -> Result:
    """Set the layout's THP policy (restored on any exit), run the real worker, return its figures."""
    from contpte.oracle.sysfs import ThpSysfs

    thp = ThpSysfs()
    reason = thp.unavailable_reason()
    if reason:
        return {"layout": lay.name, "error": f"THP policy cannot be set: {reason}"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--real-worker", lay.name]
    cmd += ["--size", str(nbytes), "--repeat", str(repeat), "--iters", str(iters), "--small-size", str(span)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with thp:
        applied = thp.apply(lay.thp, lay.mthp)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        return {"layout": lay.name, "error": f"worker exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    out: Result = json.loads(proc.stdout)
    out["policy"] = {
        k: v for k, v in applied.items() if (k.endswith("/enabled") and v != "never") or k == "enabled"
    }
    return out


# ---------------------------------------------------------------------------
# The model (public API only: contpte.Machine and its Process)
# ---------------------------------------------------------------------------
@dataclass
class SimCase:
    """One model machine with a layout built in it, and what was measured on it."""

    arch: str
    lay: Layout
    check: bool
    nbytes: int
    memory: int  # the machine's physical memory
    m: Any = None
    p: Any = None  # the measured process
    addr: int = 0
    ops: Result = field(default_factory=dict)
    syscalls_us: Result = field(default_factory=dict)

    def result(self) -> Result:
        return {
            "arch": self.arch,
            "layout": self.lay.name,
            "check": self.check,
            "size": self.nbytes,
            "ops": self.ops,
            "syscalls_us": self.syscalls_us,
        }


def sim_map_region(p: Any, lay: Layout, nbytes: int) -> int:
    """As ``real_map_region``: a PROT_NONE reservation, the region MAP_FIXED inside it."""
    base = p.mmap(nbytes + 2 * PMD_SIZE, prot="none")
    addr = ((base + PMD_SIZE - 1) & ~(PMD_SIZE - 1)) + lay.offset
    return int(p.mmap(nbytes, prot="rw", flags="private|anonymous|fixed", addr=addr))


def machine_memory(nbytes: int) -> int:
    """Physical memory of a model machine that maps ``nbytes`` (room for fork's CoW copies)."""
    return max(2 * nbytes, 64 << 20)


def sim_machine(arch: str, lay: Layout, check: bool, memory: int) -> Any:
    import contpte

    return contpte.Machine(arch=arch, memory=memory, cpus=2, mthp=dict(lay.mthp), thp=lay.thp, check=check)


def sim_build(c: SimCase) -> None:
    """Create the machine; fault-in and shaping, timed (``c.ops``)."""
    c.m = sim_machine(c.arch, c.lay, c.check, c.memory)
    p = c.m.spawn()
    c.addr = addr = sim_map_region(p, c.lay, c.nbytes)
    npages = c.nbytes // PAGE_SIZE
    with paused_gc():
        c.ops["fault_in"] = timed_ns(p.write, addr, c.nbytes, 1) / 1e9
    if c.lay.cow_every:
        p = p.fork()  # the measured process; the parent stays alive, its folios stay shared
    with paused_gc():
        t0 = time.perf_counter_ns()
        for i in zapped_pages(c.lay, npages):
            p.madvise(addr + int(i) * PAGE_SIZE, PAGE_SIZE, "dontneed")
        for i in rewritten_pages(c.lay, npages):
            p.write(addr + int(i) * PAGE_SIZE, PAGE_SIZE, 2)
        for i in cow_pages(c.lay, npages):
            p.write(addr + int(i) * PAGE_SIZE, PAGE_SIZE, 3)
        shape = (time.perf_counter_ns() - t0) / 1e9
    if c.lay.zap_every or c.lay.cow_every:
        c.ops["shape"] = shape
    c.p = p


def sim_census(c: SimCase) -> Result:
    pm = c.p.pagemap(c.addr, c.nbytes)
    return folio_census(c.addr, pm["present"], pm["pfn"], pm["order"])


def sim_fork_exit(cases: list[SimCase], repeat: int) -> None:
    """Fork (parent side) and the child's exit, ``repeat`` times, the cases taking turns."""
    forks: list[list[int]] = [[] for _ in cases]
    exits: list[list[int]] = [[] for _ in cases]
    for _ in range(repeat):
        for c, f, e in zip(cases, forks, exits):
            with paused_gc():
                t0 = time.perf_counter_ns()
                child = c.p.fork()
                f.append(time.perf_counter_ns() - t0)
                e.append(timed_ns(child.exit))
    for c, f, e in zip(cases, forks, exits):
        c.ops["fork"] = statistics.median(f) / 1e9
        c.ops["fork_first"] = f[0] / 1e9
        c.ops["fork_runs"] = [t / 1e9 for t in f]
        c.ops["exit"] = statistics.median(e) / 1e9


def turns(n: int, budget: float) -> Iterator[range]:
    """Blocks of ``TURN_PAGES`` page indices out of ``n``, for cases taking turns.

    Stops after ``n`` or, past ``MIN_SAMPLES`` pages, after ``budget``
    seconds (with the checker on, a syscall may take ms).  A block is long
    enough that a case's caches are warm again after another case's turn
    for most of its samples, and short enough that each case's samples
    spread over the whole loop.
    """
    end = time.monotonic() + budget
    for start in range(0, n, TURN_PAGES):
        yield range(start, min(n, start + TURN_PAGES))
        if start + TURN_PAGES >= MIN_SAMPLES and time.monotonic() > end:
            return


def sim_syscalls(cases: list[SimCase], iters: int, budget: float, span: int) -> None:
    """The single-page syscalls and faults (see the module docstring) in the first ``span`` bytes, us.

    The cases take turns (``turns``), so a ratio between them (checker on
    / off, big / small mapping) is not skewed by the host's load changing.
    """
    pages = [probe_pages(c.lay, span // PAGE_SIZE, iters) for c in cases]
    s: list[dict[str, list[int]]] = [{k: [] for k in SYSCALLS} for _ in cases]
    n = min(len(q) for q, _ in pages)
    with paused_gc():
        for block in turns(n, budget):
            for c, (q, _), sc in zip(cases, pages, s):
                p = c.p
                for j in block:
                    va = c.addr + int(q[j]) * PAGE_SIZE
                    sc["read8"].append(timed_ns(p.read, va, 8))
                    sc["dontneed"].append(timed_ns(p.madvise, va, PAGE_SIZE, "dontneed"))
                    sc["fault_none"].append(timed_ns(p.write, va, PAGE_SIZE, 5))
                    sc["mprotect"].append(timed_ns(p.mprotect, va, PAGE_SIZE, "r"))
                    sc["mprotect"].append(timed_ns(p.mprotect, va, PAGE_SIZE, "rw"))
    children = [c.p.fork() for c in cases]
    with paused_gc():
        for block in turns(n, budget):
            for c, (_, cq), sc in zip(cases, pages, s):
                for j in block:
                    va = c.addr + int(cq[j]) * PAGE_SIZE
                    sc["fault_cow"].append(timed_ns(c.p.write, va, PAGE_SIZE, 6))
    for child in children:
        child.exit()
    for c, sc in zip(cases, s):
        c.syscalls_us = medians_us(sc)


def sim_whole_region(cases: list[SimCase]) -> None:
    """mprotect of the region to r and back to rw, then munmap of it, the cases taking turns."""
    for key, op, args in (
        ("mprotect_ro", "mprotect", ("r",)),
        ("mprotect_rw", "mprotect", ("rw",)),
        ("munmap", "munmap", ()),
    ):
        for c in cases:
            with paused_gc():
                c.ops[key] = timed_ns(getattr(c.p, op), c.addr, c.nbytes, *args) / 1e9


def sim_group(
    arch: str, lay: Layout, checks: list[bool], nbytes: int, small: int, args: argparse.Namespace
) -> list[Result]:
    """The whole sequence for one layout and backend in the model, every checker setting side by side.

    One machine per checker setting with ``nbytes`` mapped, and (``small``
    > 0) one per setting with only ``small`` mapped, for the single-page
    syscalls, on a machine sized for it (issue 12 wants a syscall's cost
    independent of both the machine's size and the address space's); they
    are built one after the other and then measured taking turns (see
    ``sim_syscalls``).
    """
    big = [SimCase(arch, lay, check, nbytes, machine_memory(nbytes)) for check in checks]
    smalls = [SimCase(arch, lay, check, small, machine_memory(small)) for check in checks]
    smalls = smalls if 0 < small < nbytes else []
    for c in (*big, *smalls):
        sim_build(c)
    census = [sim_census(c) for c in big]
    sim_fork_exit(big, args.repeat)
    sim_syscalls([*big, *smalls], args.iters, args.budget, probe_span(nbytes, small))
    sim_whole_region(big)
    out = []
    for i, c in enumerate(big):
        r = {**c.result(), "census": census[i]}
        if smalls:
            r["small"] = {"size": small, "syscalls_us": smalls[i].syscalls_us}
        out.append(r)
    return out


def memory_run(arch: str, size: str, check: bool, nbytes: int, distinct: bool = False) -> Result:
    """Simulator memory (tracemalloc) per mapped page, beyond mem_map and frame contents.

    Tracing starts after the Machine exists (mem_map and frame contents are
    allocated then) and before the first process, so what it sees is the
    page tables, the TLB, the rule checker's shadow, the validators' state
    (their mem_map snapshot included) and transient arrays.  ``distinct``:
    every page written with its own value (the validators' isolation shadow
    keeps a table written with one value compactly; this is its worst case).
    """
    lay = uniform(size)
    m = sim_machine(arch, lay, check, machine_memory(nbytes))
    gc.collect()
    tracemalloc.start()
    p = m.spawn()
    a = sim_map_region(p, lay, nbytes)
    pages = nbytes // m.page_size
    p.write(a, nbytes, np.arange(1, pages + 1, dtype=np.uint64) if distinct else 1)
    cur1, peak1 = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    c = p.fork()
    cur2, peak2 = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    c.exit()
    return {
        "arch": arch,
        "folio": size,
        "check": check,
        "values": "distinct" if distinct else "one",
        "pages": pages,
        "after_fault_in_bytes_per_page": cur1 / pages,
        "peak_fault_in_bytes_per_page": peak1 / pages,
        # after fork two address spaces map every page
        "after_fork_bytes_per_mapping": cur2 / (2 * pages),
        "peak_fork_bytes_per_mapping": max(peak1, peak2) / (2 * pages),
    }


def fuzz_run(steps: int, arches: Iterable[str]) -> Result:
    from contpte.workloads.fuzz import FuzzConfig, fuzz

    out: Result = {}
    for variant in arches:
        r = fuzz(FuzzConfig(variants=[variant], steps=steps, seed=1, shrink=False))
        out[variant] = {"steps": r.steps, "seconds": r.seconds, "steps_per_second": r.steps_per_second}
        if r.finding is not None:
            out[variant]["finding"] = r.finding.kind
    return out


# ---------------------------------------------------------------------------
# Analysis: ratios and the issue-12 targets
# ---------------------------------------------------------------------------
def _ratio(x: float | None, y: float | None) -> float | None:
    return x / y if x is not None and y else None


def _ratios(a: Result, b: Result, keys: Iterable[str]) -> Result:
    return {k: _ratio(a.get(k), b.get(k)) for k in keys}


def analyse(doc: Result) -> Result:
    """Add each model figure's ratios (to the real figure, to checker off, to the small size)."""
    real = {r["layout"]: r for r in doc.get("real", []) if "ops" in r}
    sim = [r for r in doc.get("sim", []) if "ops" in r]
    by = {(r["arch"], r["layout"], r["check"]): r for r in sim}
    for r in sim:
        h = real.get(r["layout"])
        if h is not None:
            r["ops_over_real"] = _ratios(r["ops"], h["ops"], (*OPS, "shape"))
            r["syscalls_over_real"] = _ratios(r["syscalls_us"], h.get("syscalls_us", {}), SYSCALLS)
        off = by.get((r["arch"], r["layout"], False))
        if r["check"] and off is not None:
            r["check_on_over_off"] = {
                "ops": _ratios(r["ops"], off["ops"], OPS),
                "syscalls": _ratios(r["syscalls_us"], off["syscalls_us"], SYSCALLS),
            }
        small = r.get("small")
        if small:
            small["big_over_small"] = _ratios(r["syscalls_us"], small["syscalls_us"], SYSCALLS)
    doc["targets"] = targets(doc)
    return doc


@dataclass
class Target:
    what: str
    limit: float
    at_least: bool = False  # the figure must be >= limit (else <=)
    unit: str = "x"
    figures: list[tuple[float, str]] = field(default_factory=list)

    def add(self, value: float | None, where: str) -> None:
        if value is not None:
            self.figures.append((value, where))

    def row(self) -> Result:
        if not self.figures:
            return {"what": self.what, "target": self.goal(), "measured": None, "where": None, "met": None}
        worst = (min if self.at_least else max)(self.figures, key=lambda f: f[0])
        met = worst[0] >= self.limit if self.at_least else worst[0] <= self.limit
        return {
            "what": self.what,
            "target": self.goal(),
            "measured": worst[0],
            "unit": self.unit,
            "where": worst[1],
            "figures": len(self.figures),
            "met": met,
        }

    def goal(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:g}{' ' if self.unit != 'x' else ''}{self.unit}"


def targets(doc: Result) -> list[Result]:
    """One row per issue-12 target: the worst figure over layouts, backends and sizes."""
    size = doc.get("size", "1G")
    sim = [r for r in doc.get("sim", []) if "ops" in r]
    uniform_fork = Target(f"fork of {size}, uniform layouts (4K..2M), checker off, / real fork", 1.0)
    frag_fork = Target(
        f"fork of {size}, fragmented layouts (fragmented; partial CoW), checker off, / real fork", 2.0
    )
    per_op = {
        op: Target(f"{label} of {size}, every layout, checker off, / real {label}", 3.0)
        for op, label in (
            ("exit", "exit"),
            ("munmap", "munmap"),
            ("mprotect", "mprotect"),
            ("fault_in", "fault-in"),
        )
    }
    single = Target("one single-page syscall or fault, checker off (us)", 10.0, unit="us")
    check_sys = Target("checker on / off, per single-page syscall, every layout", 3.0)
    check_fork = Target(f"checker on / off, per {size} fork, every layout", 3.0)
    scaling = Target("per-syscall cost, checker on, --size vs --small-size mapped", 1.2)
    fuzz_t = Target("contpte fuzz, machine-steps/s per backend", 20000.0, at_least=True, unit="steps/s")
    mem_off = Target("simulator memory per mapped page kept, checker off (B)", 16.0, unit="B")
    mem_on = Target("simulator memory per mapped page kept, checker on (B)", 24.0, unit="B")
    for r in sim:
        where = f"{r['layout']} {r['arch']}"
        rr = r.get("ops_over_real", {})
        if not r["check"]:
            (uniform_fork if r["layout"].startswith("uniform") else frag_fork).add(rr.get("fork"), where)
            for op in ("exit", "munmap", "fault_in"):
                per_op[op].add(rr.get(op), where)
            per_op["mprotect"].add(rr.get("mprotect_ro"), f"{where}, rw->r")
            per_op["mprotect"].add(rr.get("mprotect_rw"), f"{where}, r->rw")
            for k in SYSCALLS:
                single.add(r["syscalls_us"].get(k), f"{SYSCALL_NAMES[k]}, {where}")
        c = r.get("check_on_over_off")
        if c:
            check_fork.add(c["ops"].get("fork"), where)
            for k in SYSCALLS:
                check_sys.add(c["syscalls"].get(k), f"{SYSCALL_NAMES[k]}, {where}")
        small = r.get("small")
        if r["check"] and small and "big_over_small" in small:
            scaling.what = f"per-syscall cost, checker on, {size} vs {size_label(small['size'])} mapped"
            for k in SYSCALLS:
                scaling.add(small["big_over_small"].get(k), f"{SYSCALL_NAMES[k]}, {where}")
    for arch, f in (doc.get("fuzz") or {}).items():
        if isinstance(f, dict) and "steps_per_second" in f:
            fuzz_t.add(f["steps_per_second"], arch)
    for mrow in doc.get("memory", []):
        if "after_fork_bytes_per_mapping" in mrow:
            t = mem_on if mrow["check"] else mem_off
            t.add(
                mrow["after_fork_bytes_per_mapping"],
                f"{mrow['folio']} {mrow['arch']}, {VALUES_WRITTEN[mrow['values']]}",
            )
    order = [uniform_fork, frag_fork, *per_op.values(), single, check_sys, check_fork, scaling]
    return [t.row() for t in (*order, fuzz_t, mem_off, mem_on)]


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def _f(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _x(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def _census_text(c: Result | None) -> str:
    if not c:
        return "-"
    if "error" in c:
        return f"({c['error']})"
    folios = ", ".join(f"{k} x{v}" for k, v in sorted(c["folios"].items(), key=lambda kv: parse_size(kv[0])))
    return f"{folios} | {c['partly_mapped_large']} | {c['order0_in_holes']}"


def _side(r: Result) -> str:
    return f"model {r['arch']} check {'on' if r['check'] else 'off'}"


def md_targets(doc: Result) -> list[str]:
    lines = [
        "## Targets (issue 12)",
        "",
        "Worst figure over every layout, backend and size measured in this run.",
        "",
        "| what | measured (worst case) | target | |",
        "|---|---|---|---|",
    ]
    for t in doc.get("targets", []):
        if t["measured"] is None:
            lines.append(f"| {t['what']} | not measured | {t['target']} | - |")
            continue
        v = t["measured"]
        shown = _x(v) if t["unit"] == "x" else f"{v:,.1f} {t['unit']}"
        lines.append(
            f"| {t['what']} | {shown} ({t['where']}) | {t['target']} | {'met' if t['met'] else '**missed**'} |"
        )
    return [*lines, ""]


def md_layouts(doc: Result) -> list[str]:
    lines = [
        "## Layouts: the folios that map the region",
        "",
        "Real: /proc/self/pagemap + /proc/kpageflags of the measured process; model: `Process.pagemap`.",
        "",
        "| layout | side | folios mapping the region | large folios partly mapped | 4K folios in holes |",
        "|---|---|---|---:|---:|",
    ]
    for h in doc.get("real", []):
        census = {"error": h["error"]} if "error" in h else h.get("census")
        lines.append(f"| {h['layout']} | real | {_census_text(census)} |")
        for r in doc.get("sim", []):
            if r.get("layout") == h["layout"] and "census" in r and not r["check"]:
                lines.append(f"| {r['layout']} | {_side(r)} | {_census_text(r['census'])} |")
    return [*lines, ""]


def md_ops(doc: Result) -> list[str]:
    cols = (*OPS, "shape")
    lines = [
        f"## Whole-region operations ({doc['size']}; seconds, model also as x real)",
        "",
        "fork: median of the runs (parent side); first: the first fork; exit: the forked child's; "
        "shape: the layout's shaping steps (fragmented: the DONTNEEDs and rewrites; partial CoW: "
        "the child's writes).",
        "",
        "| layout | side | fault-in | fork | first fork | exit | mprotect r | mprotect rw | munmap | shape |",
        "|---|---|" + "---:|" * len(cols),
    ]
    layouts = list(dict.fromkeys(r.get("layout") for r in (*doc.get("real", []), *doc.get("sim", []))))
    for name in layouts:
        for h in doc.get("real", []):
            if h["layout"] == name:
                if "error" in h:
                    lines.append(f"| {name} | real | error: {h['error']} |")
                    continue
                cells = " | ".join(_f(h["ops"].get(k), "{:.4f}") for k in cols)
                lines.append(f"| {name} | real | {cells} |")
        for r in doc.get("sim", []):
            if r.get("layout") != name:
                continue
            if "error" in r:
                lines.append(f"| {name} | {_side(r)} | error: {r['error']} |")
                continue
            rr = r.get("ops_over_real", {})
            cells = " | ".join(f"{_f(r['ops'].get(k), '{:.4f}')} ({_x(rr.get(k))})" for k in cols)
            lines.append(f"| {name} | {_side(r)} | {cells} |")
    base = [h for h in doc.get("real", []) if h.get("fork_baseline") is not None]
    if base:
        lines += [
            "",
            "Real fork / exit of the worker interpreter before it maps the region (its share of each):",
            "",
        ]
        pairs = (f"{h['layout']} {h['fork_baseline']:.4f} / {h.get('exit_baseline', 0):.4f} s" for h in base)
        lines.append(", ".join(pairs) + ".")
    return [*lines, ""]


def md_syscalls(doc: Result) -> list[str]:
    lines = [
        f"## Single-page syscalls and faults ({doc['size']} mapped; us, median; model also as x real)",
        "",
        "| layout | side | " + " | ".join(SYSCALL_NAMES[k] for k in SYSCALLS) + " | samples |",
        "|---|---|" + "---:|" * (len(SYSCALLS) + 1),
    ]
    for h in doc.get("real", []):
        s = h.get("syscalls_us")
        if s:
            cells = " | ".join(_f(s.get(k), "{:.2f}") for k in SYSCALLS)
            lines.append(f"| {h['layout']} | real | {cells} | {s['samples']['read8']} |")
    for r in doc.get("sim", []):
        s = r.get("syscalls_us")
        if s:
            rr = r.get("syscalls_over_real", {})
            cells = " | ".join(f"{_f(s.get(k), '{:.1f}')} ({_x(rr.get(k))})" for k in SYSCALLS)
            lines.append(f"| {r['layout']} | {_side(r)} | {cells} | {s['samples']['read8']} |")
    return [*lines, ""]


def md_checker(doc: Result) -> list[str]:
    rows = [r for r in doc.get("sim", []) if r.get("check_on_over_off")]
    if not rows:
        return []
    lines = [
        "## Checker on / off (same layout, backend and run)",
        "",
        "| layout | arch | fork | first fork | exit | munmap | "
        + " | ".join(SYSCALL_NAMES[k] for k in SYSCALLS)
        + " |",
        "|---|---|" + "---:|" * (4 + len(SYSCALLS)),
    ]
    for r in rows:
        c = r["check_on_over_off"]
        cells = [_x(c["ops"].get(k)) for k in ("fork", "fork_first", "exit", "munmap")]
        cells += [_x(c["syscalls"].get(k)) for k in SYSCALLS]
        lines.append(f"| {r['layout']} | {r['arch']} | {' | '.join(cells)} |")
    return [*lines, ""]


def md_scaling(doc: Result) -> list[str]:
    rows = [r for r in doc.get("sim", []) if r.get("small")]
    if not rows:
        return []
    lines = [
        f"## Single-page syscalls with only {size_label(rows[0]['small']['size'])} mapped "
        f"(us, median; x = {doc['size']} / small, measured taking turns)",
        "",
        "| layout | side | " + " | ".join(SYSCALL_NAMES[k] for k in SYSCALLS) + " |",
        "|---|---|" + "---:|" * len(SYSCALLS),
    ]
    for r in rows:
        small = r["small"]
        rr = small.get("big_over_small", {})
        cells = " | ".join(f"{_f(small['syscalls_us'].get(k), '{:.1f}')} ({_x(rr.get(k))})" for k in SYSCALLS)
        lines.append(f"| {r['layout']} | {_side(r)} | {cells} |")
    return [*lines, ""]


def md_memory(doc: Result) -> list[str]:
    if not doc.get("memory"):
        return []
    lines = [
        "## Simulator memory per mapped page (bytes, beyond mem_map and frame contents)",
        "",
        "| arch | folio | check | values written | after fault-in | peak fault-in | after fork (per mapping) "
        "| peak fork |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for mrow in doc["memory"]:
        if "error" in mrow:
            lines.append(
                f"| {mrow.get('arch')} | {mrow.get('folio')} | {mrow.get('check')} | error: {mrow['error']} |"
            )
            continue
        lines.append(
            f"| {mrow['arch']} | {mrow['folio']} | {'on' if mrow['check'] else 'off'} "
            f"| {VALUES_WRITTEN[mrow['values']]} "
            f"| {_f(mrow['after_fault_in_bytes_per_page'], '{:.1f}')} "
            f"| {_f(mrow['peak_fault_in_bytes_per_page'], '{:.1f}')} "
            f"| {_f(mrow['after_fork_bytes_per_mapping'], '{:.1f}')} "
            f"| {_f(mrow['peak_fork_bytes_per_mapping'], '{:.1f}')} |"
        )
    return [*lines, ""]


def md_fuzz(doc: Result) -> list[str]:
    if not doc.get("fuzz"):
        return []
    lines = ["## Fuzz", ""]
    for v, f in doc["fuzz"].items():
        if isinstance(f, dict) and "steps_per_second" in f:
            lines.append(f"- {v}: {f['steps_per_second']:.1f} steps/s ({f['steps']} steps)")
        elif v == "error":
            lines.append(f"- error: {f}")
    return [*lines, ""]


def markdown(doc: Result) -> str:
    m = doc["machine"]
    lines = [
        f"# Simulator speed, {doc['date']}",
        "",
        f"Machine: {m['uname']}, {m['cpus']} CPUs; size {doc['size']}; forks: {doc['repeat']} per model "
        f"layout, {doc.get('real_repeat', '-')} per real one; "
        f"up to {doc['iters']} pages per single-page syscall; run took {doc.get('seconds', 0):.0f} s; "
        f"load average (1 min) {m.get('loadavg_start', 0):.1f} at the start, "
        f"{m.get('loadavg_end', 0):.1f} at the end (other users share the machine). "
        "Layouts and the sequence of operations: `benchmarks/run.py`'s docstring.",
        "",
    ]
    for part in (md_targets, md_layouts, md_ops, md_syscalls, md_checker, md_scaling, md_memory, md_fuzz):
        lines += part(doc)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
NAMES = ("real", "sim", "memory", "fuzz")


def guarded(fn: Callable[[], Result], **ident: Any) -> Result:
    """Run one measurement; one that cannot run says why and the others still run."""
    try:
        return fn()
    except Exception as e:
        return {**ident, "error": f"{type(e).__name__}: {e}"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(NAMES)})")
    parser.add_argument("--size", default="1G", help="memory in each layout (default 1G)")
    parser.add_argument("--repeat", type=int, default=5, help="model: forks per layout (median reported)")
    parser.add_argument(
        "--real-repeat", type=int, default=15, help="real: forks and mprotect pairs per layout (medians)"
    )
    parser.add_argument("--iters", type=int, default=200, help="pages per single-page syscall")
    parser.add_argument(
        "--budget", type=float, default=10.0, help="model: seconds per single-page syscall loop"
    )
    parser.add_argument("--layouts", default=",".join(LAYOUT_GROUPS), help="uniform, fragmented, partial-cow")
    parser.add_argument("--sizes", default=",".join(SIZES), help="folio sizes of the uniform layouts")
    parser.add_argument("--arches", default="arm64,generic")
    parser.add_argument("--checks", default="off,on")
    parser.add_argument(
        "--small-size", default="16M", help="model: single-page syscalls also with this much mapped ('' = no)"
    )
    parser.add_argument("--fuzz-steps", type=int, default=1500)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results"), help="results directory ('' = none)"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    parser.add_argument("--real-worker", metavar="LAYOUT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_real(doc: Result, lay: Layout, nbytes: int, args: argparse.Namespace) -> None:
    span = probe_span(nbytes, parse_size(args.small_size) if args.small_size else 0)
    r = guarded(lambda: real_run(lay, nbytes, args.real_repeat, args.iters, span), layout=lay.name)
    doc.setdefault("real", []).append(r)
    log(f"real {lay.name}: {json.dumps(r)}")


def run_sim(doc: Result, lay: Layout, nbytes: int, args: argparse.Namespace) -> None:
    small = parse_size(args.small_size) if args.small_size else 0
    checks = args.check_list
    for arch in args.arch_list:
        t0 = time.monotonic()
        try:
            rows = sim_group(arch, lay, checks, nbytes, small, args)
        except Exception as e:  # one that cannot run says why; the others still run
            err = f"{type(e).__name__}: {e}"
            rows = [{"arch": arch, "layout": lay.name, "check": c, "error": err} for c in checks]
        doc.setdefault("sim", []).extend(rows)
        gc.collect()  # the group's machines
        log(f"sim {arch} {lay.name} ({time.monotonic() - t0:.0f} s): {json.dumps(rows)}")


def run_memory(doc: Result, nbytes: int, args: argparse.Namespace) -> None:
    doc["memory"] = []
    for arch in args.arch_list:
        for s in ("4K", "64K"):
            for check in args.check_list:
                for distinct in (False, True):
                    r = guarded(
                        lambda arch=arch, s=s, check=check, d=distinct: memory_run(arch, s, check, nbytes, d),
                        arch=arch,
                        folio=s,
                        check=check,
                        values="distinct" if distinct else "one",
                    )
                    doc["memory"].append(r)
                    log(f"memory {arch} {s} check={check} distinct={distinct}: {json.dumps(r)}")


def main(argv: list[str] | None = None) -> int:
    global _log_enabled
    args = parse_args(argv)
    nbytes = parse_size(args.size)
    if args.real_worker:
        span = parse_size(args.small_size)
        print(json.dumps(real_layout(args.real_worker, nbytes, args.repeat, args.iters, span)))
        return 0
    _log_enabled = not args.json
    todo = ["real" if n == "host" else n for n in args.names] or list(NAMES)
    unknown = [n for n in todo if n not in NAMES]
    if unknown:
        print(f"run.py: unknown benchmark(s) {', '.join(unknown)}; have {', '.join(NAMES)}", file=sys.stderr)
        return 2
    sizes = [s for s in args.sizes.split(",") if s]
    try:
        layouts = select_layouts(args.layouts, sizes)
    except KeyError as e:
        print(f"run.py: unknown layout {e}; have {', '.join(LAYOUT_GROUPS)}, uniform-<size>", file=sys.stderr)
        return 2
    args.arch_list = [a for a in args.arches.split(",") if a]
    args.check_list = [c == "on" for c in args.checks.split(",") if c]
    date = _dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    doc: Result = {
        "date": date,
        "size": args.size,
        "repeat": args.repeat,
        "real_repeat": args.real_repeat,
        "iters": args.iters,
        "layouts": [lay.name for lay in layouts],
        "machine": {
            "uname": " ".join(platform.uname()[:3]),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "loadavg_start": os.getloadavg()[0],
        },
    }
    t0 = time.monotonic()
    for lay in layouts:  # the real figures of a layout are taken just before its model figures
        if "real" in todo:
            run_real(doc, lay, nbytes, args)
        if "sim" in todo:
            run_sim(doc, lay, nbytes, args)
    if "memory" in todo:
        run_memory(doc, nbytes, args)
    if "fuzz" in todo:
        doc["fuzz"] = guarded(lambda: fuzz_run(args.fuzz_steps, args.arch_list))
        log(f"fuzz: {json.dumps(doc['fuzz'])}")
    doc["seconds"] = time.monotonic() - t0
    doc["machine"]["loadavg_end"] = os.getloadavg()[0]
    analyse(doc)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{date}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / f"{date}.md").write_text(markdown(doc) + "\n")
        log(f"wrote {out / (date + '.json')} and {out / (date + '.md')}")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
