"""The live-kernel oracle: run a scenario on this machine's Linux and on the model, compare.

``run_oracle(scenario, model_arch=...)`` replays the scenario in lockstep:
each step runs on the model (``model_arch``: ``"generic"`` by default, or
``"arm64"`` with its default CPU preset; 4K pages either way, whatever the
header's ``arch=``; the header's THP policy) and then on real
processes of the running kernel (``live.py``), with the same THP policy set
in sysfs for the run and restored afterwards (``sysfs.py``).  After each
step (or only at ``check`` steps, ``at="check"``) it compares, process by
process and page by page:

- the step's outcome (success, errno, SIGSEGV code) and the values a
  ``read`` step returned;
- present or not, the value the page holds, the folio order (live: from
  /proc/kpageflags compound head/tail, as thpmaps), exclusivity (the page is
  mapped once: PM_MMAP_EXCLUSIVE, or /proc/kpagecount == 1 where that is
  the precise per-page mapcount, see ``_live_state``);
- which pages are backed by the same frame in which processes (the sharing
  classes; PFNs themselves differ between the two);
- whether the page's folio is lazyfree (MADV_FREE; live: an anon folio
  without KPF_SWAPBACKED at its head in /proc/kpageflags);
- per process, the VMAs of the scenario and RSS: smaps ``Rss``,
  ``Anonymous`` and ``LazyFree`` over the scenario's VMAs against the
  model's RSS counters and its count of lazyfree pages.

The model runs at the live kernel's version (``live_kernel_options``:
``Machine(kernel=...)``, the newest modelled version not newer than it).  What an architecture legitimately changes in the compared state is
listed in ``ARCH_DIFFERENCES`` with the reason (the arm64 model's smaps
LazyFree is compared one way only: contpte_ptep_get() gathers the dirty bit
over a contiguous block); ``contpte oracle`` runs both model arches by
default and reports each one's verdict.

Live values are read only for pages pagemap reports present, through
/proc/<pid>/mem (no fault, no unshare), after pagemap was read: the
comparison never changes the state it compares.

Files: a ``file`` step creates a real file on tmpfs (/dev/shm) holding the
model file's initial values, written through the page cache; on the model
the file's page cache is filled the same way before the scenario goes on (a
helper process reads the whole file), so fault-around sees the same cached
pages on both sides.  tmpfs with ``shmem_enabled=never`` caches order-0
folios: a scenario that expects agreement says ``folio=4K``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..mm.memmap import folio_test_dirty
from ..mm.mm_h import pte_offset_map_lock
from ..system import Machine
from ..system.sizes import parse_bytes
from ..version import nearest_kernel
from ..workloads.scenario import Env, Scenario, Step, format_step, make_machine, observe, run_step
from . import procfs
from .live import DELTA, MODEL_WINDOW_HI, MODEL_WINDOW_LO, LiveError, LiveKernel, io_uring_unavailable_reason
from .swap import ZramSwap, mthp_swap_stats, swap_unavailable_reason, vmstat_swap
from .sysfs import ThpSysfs

__all__ = [
    "ORACLE_NAME",
    "MODEL_ARCHS",
    "ARCH_DIFFERENCES",
    "Diff",
    "StepReport",
    "OracleResult",
    "run_oracle",
    "live_unavailable_reason",
    "scenario_unsupported_reason",
]

ORACLE_NAME = "oracle-x86" if platform.machine() in ("x86_64", "AMD64") else f"oracle-{platform.machine()}"
"""The name ``expect-mismatch`` lines use for this oracle."""

UNSUPPORTED_OPS = {
    "reclaim": "the live kernel cannot be made to reclaim a chosen page deterministically",
    "numa": "NUMA hinting faults cannot be forced from user space",
    "khugepaged": "khugepaged runs on its own schedule; user space cannot make it scan now",
    "clear-soft-dirty": "/proc/pid/clear_refs clears the whole mm, not a range",
}

MODEL_ARCHS = ("generic", "arm64")
"""The model backends the live oracle can compare (4K pages; arm64 with its default CPU preset)."""

LAZYFREE_AT_MOST = "smaps LazyFree (pages)"
ARCH_DIFFERENCES: dict[str, dict[str, str]] = {
    "arm64": {
        LAZYFREE_AT_MOST: (
            "compared one way only (the arm64 model may count fewer pages, never more): smaps_account() "
            "counts a lazyfree page unless pte_dirty(ptep_get(pte)) (fs/proc/task_mmu.c "
            "smaps_pte_entry()), and v6.12 arm64's ptep_get() of a contiguous entry is "
            "contpte_ptep_get() (arch/arm64/mm/contpte.c), which ORs in the dirty bit of all "
            "CONT_PTES entries of the block: one page written after MADV_FREE makes the whole block "
            "dirty; its batched fork also gives the child dirty PTEs (pte_mkwrite() clears "
            "PTE_RDONLY). arm64 only ever adds dirtiness, x86 has no contiguous entries"
        ),
    },
}
"""Per model arch, the compared fields that legitimately differ from the live x86 kernel (field -> why).

Everything else the oracle compares is architecture-independent core-mm
state: outcomes and values read, presence, folio orders, exclusivity,
frame sharing, VMAs, smaps Rss/Anonymous, the per-page lazyfree state
(PG_swapbacked).  PTE dirty/young/write bits and the Contiguous bit are
never compared (pagemap does not show them).
"""

PageState = tuple[int, int, int, int]
"""(value, order, exclusive, sharing class) of a present page."""


@dataclass
class Diff:
    """One difference: a field of a range of pages (or of a process) at a step."""

    proc: str
    where: str
    field: str
    model: str
    live: str
    npages: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "proc": self.proc,
            "where": self.where,
            "field": self.field,
            "model": self.model,
            "live": self.live,
            "pages": self.npages,
        }


@dataclass
class StepReport:
    """What one step did on both sides, and how the states compared after it."""

    line: int
    text: str
    model_error: str | None
    live_error: str | None
    compared: bool = False
    diffs: list[Diff] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "text": self.text,
            "model_error": self.model_error,
            "live_error": self.live_error,
            "compared": self.compared,
            "diffs": [d.as_dict() for d in self.diffs],
        }


@dataclass
class OracleResult:
    """The verdict on one scenario.

    ``status``: ``agree``; ``mismatch`` (a difference nobody expected);
    ``expected-mismatch`` (the scenario declares ``expect-mismatch`` for this
    oracle and a difference was found); ``unexpected-agreement`` (declared,
    but both sides agreed: the note is stale); ``skipped`` (``reason``).
    """

    path: str
    title: str | None
    oracle: str
    status: str
    expect_mismatch: str | None = None
    reason: str | None = None
    kernel: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    #: The core-mm options the model ran with (chosen from the live kernel's version).
    options: dict[str, Any] = field(default_factory=dict)
    steps: list[StepReport] = field(default_factory=list)
    #: The model's architecture backend (``generic`` or ``arm64``, 4K pages).
    model_arch: str = "generic"
    #: Compared fields that differ by architecture and how they are treated (``ARCH_DIFFERENCES``).
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("agree", "expected-mismatch", "skipped")

    @property
    def diffs(self) -> list[tuple[StepReport, Diff]]:
        return [(s, d) for s in self.steps for d in s.diffs]

    @property
    def first_difference(self) -> StepReport | None:
        return next((s for s in self.steps if s.diffs), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "title": self.title,
            "oracle": self.oracle,
            "status": self.status,
            "ok": self.ok,
            "expect_mismatch": self.expect_mismatch,
            "reason": self.reason,
            "kernel": self.kernel,
            "settings": self.settings,
            "options": self.options,
            "model_arch": self.model_arch,
            "excluded": self.excluded,
            "steps": [s.as_dict() for s in self.steps],
        }


# ---------------------------------------------------------------------------
# The model's core-mm options for the live kernel
# ---------------------------------------------------------------------------
def live_kernel_options(release: str | None = None) -> dict[str, str]:
    """The Machine options that make the model behave as the live kernel: ``{"kernel": version}``.

    The newest modelled version not newer than ``release`` (``uname -r``;
    default: the running kernel's), from its version only, never from how a
    scenario turns out; a distribution kernel that backported a change would
    show as a mismatch.  An unparsable or older release keeps the model's
    default (v6.12): ``{}``.
    """
    version = nearest_kernel(platform.release() if release is None else release)
    return {} if version is None else {"kernel": version}


# ---------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------
def live_unavailable_reason() -> str | None:
    """Why the live oracle cannot run on this machine (None: it can)."""
    if platform.system() != "Linux":
        return f"the live oracle needs Linux, this is {platform.system()}"
    if os.geteuid() != 0:
        return "the live oracle needs root (sysfs THP policy, PFNs in pagemap, /proc/kpageflags)"
    if procfs.PAGE_SIZE != 4096:
        return f"the live kernel uses {procfs.PAGE_SIZE}-byte pages; the oracle compares with the 4K generic model"
    reason = ThpSysfs().unavailable_reason()
    if reason is not None:
        return reason
    return procfs.procfs_unavailable_reason()


def live_fallbacks() -> int:
    """Machine-wide large-folio allocation failures at fault so far.

    The sum of every ``hugepages-*/stats/anon_fault_fallback`` and of
    ``/proc/vmstat`` ``thp_fault_fallback``; 0 where they cannot be read.
    """
    total = 0
    base = "/sys/kernel/mm/transparent_hugepage"
    try:
        for d in os.listdir(base):
            if d.startswith("hugepages-"):
                with (
                    contextlib.suppress(OSError, ValueError),
                    open(f"{base}/{d}/stats/anon_fault_fallback") as f,
                ):
                    total += int(f.read())
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("thp_fault_fallback "):
                    total += int(line.split()[1])
    except OSError:
        return 0
    return total


def scenario_unsupported_reason(sc: Scenario) -> str | None:
    """Why this scenario cannot be replayed on the live kernel (None: it can)."""
    page_size = str(sc.machine.get("page_size", "4K")).upper()
    if page_size not in ("4K", "4096"):
        return f"page_size={page_size}: the live kernel uses 4K pages"
    if "swap" in sc.machine:
        reason = swap_unavailable_reason()
        if reason is not None:
            return f"swap={sc.machine['swap']}: {reason}"
    uffd = None
    for step in sc.steps:
        if step.op in UNSUPPORTED_OPS:
            return f"line {step.line}: '{step.op}': {UNSUPPORTED_OPS[step.op]}"
        if step.op == "uffd-wp" and uffd is None:
            uffd = step.line
        if step.op == "fork" and uffd is not None:
            return (
                f"line {step.line}: fork after the uffd-wp of line {uffd}: the model assumes "
                "UFFD_FEATURE_EVENT_FORK, which needs a monitor reading the fork event; the live oracle has none"
            )
        if step.op == "pin" and not step.args.get("write", True):
            return (
                f"line {step.line}: a read-only long-term pin cannot be taken honestly from user space "
                "(io_uring fixed buffers pin with FOLL_WRITE)"
            )
        if step.op == "pin":
            reason = io_uring_unavailable_reason()
            if reason is not None:
                return f"line {step.line}: {reason}"
    return None


# ---------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------
@dataclass
class ProcState:
    """What one process observes (model addresses)."""

    pages: dict[int, PageState]
    maps: list[tuple[int, int, str]]
    rss: dict[str, int]
    #: The present pages whose folio is lazyfree.
    lazy: set[int] = field(default_factory=set)
    #: The pages whose PTE holds a swap entry (pagemap PM_SWAP).
    swapped: set[int] = field(default_factory=set)


def _model_swapped(p: Any, regions: list[tuple[int, int]], ps: int) -> set[int]:
    out: set[int] = set()
    for lo, hi in _merge_ranges(regions):
        rows = p.pagemap(lo, hi - lo)
        for i in np.nonzero(rows["swap"])[0]:
            out.add(lo + int(i) * ps)
    return out


def _model_state(m: Machine, env: Env, regions: list[tuple[int, int]] | None = None) -> dict[str, ProcState]:
    out = {}
    for name, st in observe(m, env).items():
        pages = {va: (val, order, excl, cls) for va, val, order, excl, cls in st["pages"]}
        rss = st["rss"]
        lazy = set(st["lazyfree"])
        out[name] = ProcState(
            pages,
            [(s, e, perms) for s, e, perms in st["maps"]],
            {
                "Rss": rss["file"] + rss["anon"] + rss["shmem"],
                "Anonymous": rss["anon"],
                "LazyFree": _smaps_lazyfree(m, env.procs[name], lazy),
            },
            lazy,
            _model_swapped(env.procs[name], regions, m.page_size)
            if regions and m.swap is not None
            else set(),
        )
    return out


def _smaps_lazyfree(m: Machine, p: Any, lazy: set[int]) -> int:
    """smaps ``LazyFree`` in pages: lazyfree pages whose PTE and folio are both clean.

    Models: fs/proc/task_mmu.c ``smaps_account()`` (v6.12 to v6.18 at least):
    an anon folio without PG_swapbacked counts unless the PTE or the folio
    is dirty (written again since MADV_FREE: reclaim will keep it).  The PTE
    is read as ``smaps_pte_entry()`` reads it, through the arch's
    ``ptep_get()`` (on arm64 ``contpte_ptep_get()``, which gathers the dirty
    bit over a contiguous block); a PMD-mapped page through its PMD.
    """
    mem = m.kernel.memmap
    arch = m.kernel.arch
    n = 0
    for va in lazy:
        row = p.pagemap(va, m.page_size)[0]
        ptep = pte_offset_map_lock(p.mm, va)
        dirty = bool(arch.pte_dirty(arch.ptep_get(ptep))) if ptep >= 0 else bool(row["dirty"])
        if not dirty and not folio_test_dirty(mem, int(mem.head[int(row["pfn"])])):
            n += 1
    return n


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _live_state(live: LiveKernel, regions: list[tuple[int, int]], ps: int) -> dict[str, ProcState]:
    """Observe every live process over ``regions`` (model addresses)."""
    classes: dict[int, int] = {}
    out = {}
    # Exclusivity is "this page is mapped exactly once" (v6.12's
    # PM_MMAP_EXCLUSIVE: page_mapcount == 1).  Since v6.15 ("fs/proc/task_mmu:
    # remove per-page mapcount dependency for PM_MMAP_EXCLUSIVE") a
    # PMD-mapped THP reports the state of its first page for all 512, so
    # where /proc/kpagecount is the precise per-page mapcount it is used
    # instead; PM_MMAP_EXCLUSIVE otherwise (and for the zero page).
    precise = procfs.precise_page_mapcount()
    with procfs.KpageflagsReader() as kpf:
        for name in sorted(live.procs):
            p = live.procs[name]
            if not p.alive:
                continue
            present: list[tuple[int, int, int]] = []  # (live va, pfn, exclusive)
            swapped: set[int] = set()
            for lo, hi in _merge_ranges(regions):
                n = (hi - lo) // ps
                ents = procfs.read_pagemap(p.pid, lo - DELTA, n)
                for i in np.nonzero(ents & np.uint64(procfs.PM_SWAP))[0]:
                    swapped.add(lo + int(i) * ps)
                for i in np.nonzero(ents & np.uint64(procfs.PM_PRESENT))[0]:
                    e = int(ents[i])
                    present.append(
                        (
                            lo - DELTA + int(i) * ps,
                            e & procfs.PM_PFN_MASK,
                            int(bool(e & procfs.PM_MMAP_EXCLUSIVE)),
                        )
                    )
            # Values last: pagemap said these are present, so reading them faults nothing in.
            values = procfs.read_values(p.pid, [va for va, _, _ in present])
            pages = {}
            lazy = set()
            for va, pfn, excl in present:
                cls = classes.setdefault(pfn, len(classes))
                if precise and not kpf.flags(pfn) & (1 << procfs.KPF_ZERO_PAGE):
                    excl = int(kpf.mapcount(pfn) == 1)
                pages[va + DELTA] = (values[va], kpf.order(pfn), excl, cls)
                if kpf.lazyfree(pfn):
                    lazy.add(va + DELTA)
            maps = [
                (v.start + DELTA, v.end + DELTA, v.perms)
                for v in procfs.read_maps(p.pid)
                if v.start >= MODEL_WINDOW_LO - DELTA and v.end <= MODEL_WINDOW_HI - DELTA
            ]
            rss = procfs.smaps_totals(p.pid, MODEL_WINDOW_LO - DELTA, MODEL_WINDOW_HI - DELTA)
            out[name] = ProcState(pages, maps, rss, lazy, swapped)
    return out


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------
class _Namer:
    """Model addresses as ``name+offset`` of the scenario's mappings."""

    def __init__(self) -> None:
        self.regions: list[tuple[str, int, int]] = []

    def add(self, name: str, addr: int, length: int) -> None:
        self.regions.append((name, addr, length))

    def __call__(self, va: int) -> str:
        for name, a, n in reversed(self.regions):
            if a <= va < a + n:
                return name if va == a else f"{name}+{va - a:#x}"
        return f"{va:#x}"


def _members(states: dict[str, ProcState]) -> dict[tuple[str, int], frozenset[tuple[str, int]]]:
    by_cls: dict[int, set[tuple[str, int]]] = {}
    for proc, st in states.items():
        for va, (_v, _o, _e, cls) in st.pages.items():
            by_cls.setdefault(cls, set()).add((proc, va))
    frozen = {cls: frozenset(s) for cls, s in by_cls.items()}
    return {key: frozen[cls] for cls, keys in by_cls.items() for key in keys}


def _fmt_members(me: tuple[str, int], members: frozenset[tuple[str, int]], name: Callable[[int], str]) -> str:
    others = sorted(members - {me})
    if not others:
        return "none"
    words = [q if vb == me[1] else f"{q}@{name(vb)}" for q, vb in others[:4]]
    if len(others) > 4:
        words.append(f"... ({len(others)} pages)")
    return ", ".join(words)


def _fmt_value(v: int) -> str:
    return f"{v:#x}" if v > 9 else str(v)


def _fmt_maps(maps: list[tuple[int, int, str]], name: Callable[[int], str]) -> str:
    return "; ".join(f"{name(s)}..{e - s:#x} {perms}" for s, e, perms in maps) or "none"


def compare_states(
    model: dict[str, ProcState],
    live: dict[str, ProcState],
    name: Callable[[int], str],
    ps: int,
    model_arch: str = "generic",
) -> list[Diff]:
    """Every difference between two observations, consecutive pages merged.

    ``model_arch``: the model's backend; its ``ARCH_DIFFERENCES`` are
    compared as they say (smaps LazyFree of the arm64 model: at most the live count).
    """
    one_way = LAZYFREE_AT_MOST in ARCH_DIFFERENCES.get(model_arch, {})
    diffs: list[Diff] = []
    mm_members = _members(model)
    lv_members = _members(live)
    for proc in sorted(set(model) | set(live)):
        m, lv = model.get(proc), live.get(proc)
        if m is None or lv is None:
            diffs.append(Diff(proc, "-", "process", "alive" if m else "absent", "alive" if lv else "absent"))
            continue
        if m.maps != lv.maps:
            diffs.append(Diff(proc, "-", "maps", _fmt_maps(m.maps, name), _fmt_maps(lv.maps, name)))
        for key in ("Rss", "Anonymous", "LazyFree"):
            if key == "LazyFree" and one_way and m.rss[key] < lv.rss[key]:
                continue
            if m.rss[key] != lv.rss[key]:
                diffs.append(Diff(proc, "-", f"smaps {key} (pages)", str(m.rss[key]), str(lv.rss[key])))
        page_diffs: list[tuple[int, str, str, str]] = []
        for va in sorted(m.swapped ^ lv.swapped):
            page_diffs.append(
                (va, "swapped", "yes" if va in m.swapped else "no", "yes" if va in lv.swapped else "no")
            )
        for va in sorted(set(m.pages) | set(lv.pages)):
            a, b = m.pages.get(va), lv.pages.get(va)
            if a is None or b is None:
                page_diffs.append((va, "present", "yes" if a else "no", "yes" if b else "no"))
                continue
            if a[0] != b[0]:
                page_diffs.append((va, "value", _fmt_value(a[0]), _fmt_value(b[0])))
            if a[1] != b[1]:
                page_diffs.append((va, "order", str(a[1]), str(b[1])))
            if a[2] != b[2]:
                page_diffs.append((va, "exclusive", "yes" if a[2] else "no", "yes" if b[2] else "no"))
            if (va in m.lazy) != (va in lv.lazy):
                page_diffs.append(
                    (va, "lazyfree", "yes" if va in m.lazy else "no", "yes" if va in lv.lazy else "no")
                )
            me = (proc, va)
            if mm_members[me] != lv_members[me]:
                page_diffs.append(
                    (
                        va,
                        "shares frame with",
                        _fmt_members(me, mm_members[me], name),
                        _fmt_members(me, lv_members[me], name),
                    )
                )
        diffs += _merge_page_diffs(proc, page_diffs, name, ps)
    return diffs


def _merge_page_diffs(
    proc: str, items: list[tuple[int, str, str, str]], name: Callable[[int], str], ps: int
) -> list[Diff]:
    """Runs of consecutive pages with the same field and values become one Diff."""
    out: list[Diff] = []
    open_: dict[tuple[str, str, str], tuple[int, int]] = {}  # (field, m, l) -> (first va, last va)
    order: list[tuple[str, str, str]] = []
    for va, fld, mv, lv in items:
        k = (fld, mv, lv)
        run = open_.get(k)
        if run is not None and run[1] + ps == va:
            open_[k] = (run[0], va)
            continue
        if run is not None:
            out.append(_range_diff(proc, k, run, name, ps))
            order.remove(k)
        open_[k] = (va, va)
        order.append(k)
    for k in order:
        out.append(_range_diff(proc, k, open_[k], name, ps))
    return out


def _range_diff(
    proc: str, k: tuple[str, str, str], run: tuple[int, int], name: Callable[[int], str], ps: int
) -> Diff:
    first, last = run
    n = (last - first) // ps + 1
    where = name(first) if n == 1 else f"{name(first)} ({n} pages)"
    return Diff(proc, where, k[0], k[1], k[2], n)


# ---------------------------------------------------------------------------
# The lockstep run
# ---------------------------------------------------------------------------
class _Replay:
    """Runs the steps on both sides."""

    def __init__(
        self,
        sc: Scenario,
        live: LiveKernel,
        tmpdir: str,
        options: dict[str, Any],
        model_arch: str = "generic",
    ) -> None:
        self.sc = sc
        # cpu=None: the arm64 backend's default CPU preset (the header's cpu= is kept).
        self.m = make_machine(sc, arch=model_arch, page_size="4K", **options)
        self.ps = self.m.page_size
        self.env = Env()
        self.live = live
        self.tmpdir = tmpdir
        self.files: dict[str, str] = {}
        self.regions: list[tuple[int, int]] = []
        self.namer = _Namer()

    def _live_addr(self, addr: int, step: Step) -> int:
        if not MODEL_WINDOW_LO <= addr < MODEL_WINDOW_HI:
            raise ScenarioError(
                self.sc.path,
                step.line,
                f"address {addr:#x} lies outside the window the live oracle mirrors "
                f"([{MODEL_WINDOW_LO:#x}, {MODEL_WINDOW_HI:#x}) of the model)",
            )
        return addr - DELTA

    def _create_file(self, step: Step) -> None:
        """A real tmpfs file with the model file's contents; fill the model's page cache likewise."""
        assert step.bind is not None
        f = self.env.files[step.bind]
        size = step.args["size"]
        helper = self.m.spawn()
        a = helper.mmap(size, "r", "shared", file=f)
        values = helper.read(a, size)
        helper.munmap(a, size)
        helper.exit()
        npages = len(values)
        buf = np.zeros(npages * (self.ps // 8), dtype=np.uint64)
        buf[:: self.ps // 8] = values
        path = os.path.join(self.tmpdir, f"{step.bind}-{os.path.basename(step.args['name'])}")
        with open(path, "wb") as fh:
            fh.write(buf.tobytes())
            fh.truncate(size)
        self.files[step.bind] = path

    def live_step(
        self, step: Step, model_error: str | None, model_values: list[int] | None
    ) -> tuple[str | None, list[int] | None]:
        """Run ``step`` on the live kernel; (error, values read)."""
        live = self.live
        op, a = step.op, step.args
        if op == "spawn":
            assert step.bind is not None
            live.spawn(step.bind)
            return None, None
        if op == "file":
            if model_error is None:
                self._create_file(step)
            return model_error, None
        if op in ("check", "measure"):
            return None, None
        assert step.proc is not None
        p = live.procs[step.proc]
        if op == "fork":
            assert step.bind is not None
            live.fork(step.proc, step.bind)
            return None, None
        if op == "exit":
            live.exit(step.proc)
            return None, None
        if op == "mmap":
            return self._live_mmap(step, p, model_error), None
        if op == "mremap":
            return self._live_mremap(step, p, model_error), None
        addr = self._live_addr(self.env.addr(a["addr"], self.sc, step), step)
        n = a["length"]
        npages = (n + self.ps - 1) // self.ps
        if op == "write":
            r = live.call(p, "write", addr, npages, a["value"])
            return (None, None) if r[0] == "ok" else (str(r[1]), None)
        if op == "read":
            r = live.call(p, "read", addr, npages)
            return (None, list(r[1])) if r[0] == "ok" else (str(r[1]), list(r[2]))
        if op in ("mprotect", "madvise"):
            r = live.call(p, op, addr, n, a["prot"] if op == "mprotect" else a["advice"])
        elif op == "munmap":
            r = live.call(p, "munmap", addr, n)
        elif op == "pin":
            r = live.call(p, "pin", addr, n)
        elif op == "unpin":
            r = live.call(p, "unpin", addr, n)
        elif op == "uffd-wp":
            r = live.call(p, "uffd_wp", addr, n, a["on"])
        else:
            raise ScenarioError(self.sc.path, step.line, f"'{op}' is not supported by the live oracle")
        return (None, None) if r[0] == "ok" else (str(r[1]), None)

    def _live_mmap(self, step: Step, p: Any, model_error: str | None) -> str | None:
        a = step.args
        fixed = a["flags"].endswith("|fixed")
        path = self.files.get(a["file"]) if a.get("file") else None
        if a.get("file") and path is None:
            raise ScenarioError(self.sc.path, step.line, f"file {a['file']!r} was not created")
        if model_error is None:
            assert step.bind is not None
            addr = self.env.addrs[step.bind]
            self.regions.append((addr, addr + a["length"]))
            if not step.bind.startswith("_"):
                self.namer.add(step.bind, addr, a["length"])
            live_addr = self._live_addr(addr, step)
        elif a.get("addr") is not None:
            live_addr = self._live_addr(self.env.addr(a["addr"], self.sc, step), step)
        else:
            live_addr = MODEL_WINDOW_LO - DELTA  # the model refused: see what the kernel says
        r = self.live.call(p, "mmap", live_addr, a["length"], a["prot"], a["flags"], path, a["offset"], fixed)
        if r[0] == "ok":
            if model_error is not None:
                self.live.call(p, "munmap", live_addr, a["length"])
            return None
        return str(r[1])

    def _live_mremap(self, step: Step, p: Any, model_error: str | None) -> str | None:
        """mremap on the live side, at the model's addresses minus ``DELTA``.

        The same flags, except that a mapping the model moved without
        MREMAP_FIXED goes to the model's new address with MREMAP_FIXED
        added (the live process would choose another place; everything the
        oracle compares is at the model's addresses).  The live result must
        then be that address: a different one is an outcome mismatch.
        """
        a = step.args
        addr = self._live_addr(self.env.addr(a["addr"], self.sc, step), step)
        flags = a["flags"]
        target = 0
        if a.get("new_addr") is not None:
            target = self._live_addr(self.env.addr(a["new_addr"], self.sc, step), step)
        want: int | None = None
        if model_error is None:
            assert step.bind is not None
            got = self.env.addrs[step.bind]
            want = self._live_addr(got, step)
            self.regions.append((got, got + a["new_length"]))
            if not step.bind.startswith("_"):
                self.namer.add(step.bind, got, a["new_length"])
            if want != addr and "fixed" not in flags and "maymove" in flags:
                flags = "|".join(f for f in ("maymove", "fixed", "dontunmap") if f in flags or f == "fixed")
                target = want
        r = self.live.call(p, "mremap", addr, a["length"], a["new_length"], flags, target)
        if r[0] != "ok":
            return str(r[1])
        if want is not None and r[1] != want:
            return f"moved to {r[1] + DELTA:#x}, not {want + DELTA:#x}"
        return None


def run_oracle(
    sc: Scenario,
    *,
    at: str = "step",
    keep_going: bool = False,
    progress: Callable[[str], None] | None = None,
    model_arch: str = "generic",
) -> OracleResult:
    """Run ``sc`` on the live kernel and on the model and compare them.

    ``at``: ``"step"`` compares the states after every step, ``"check"`` only
    after ``check`` steps and the last step.  Without ``keep_going`` the run
    stops after the first step that differs (later differences are mostly
    its consequences).  ``model_arch``: the model backend compared with
    the live kernel (``MODEL_ARCHS``).  Never leaves the THP policy changed
    or a process behind, also on an error or KeyboardInterrupt.
    """
    if at not in ("step", "check"):
        raise ValueError(f"at={at!r}: expected 'step' or 'check'")
    if model_arch not in MODEL_ARCHS:
        raise ValueError(f"model_arch={model_arch!r}: expected one of {', '.join(MODEL_ARCHS)}")
    expected = sc.expect_mismatch.get(ORACLE_NAME)
    res = OracleResult(
        sc.path, sc.title, ORACLE_NAME, "skipped", expect_mismatch=expected, model_arch=model_arch
    )
    res.kernel = f"Linux {platform.release()} {platform.machine()}"
    res.excluded = dict(ARCH_DIFFERENCES.get(model_arch, {}))
    # The scenario's header wins over the options chosen for the live kernel.
    res.options = {k: v for k, v in live_kernel_options().items() if k not in sc.machine}
    reason = live_unavailable_reason() or scenario_unsupported_reason(sc)
    if reason is not None:
        res.reason = reason
        return res
    # Unbound mmaps get a hidden name, so the model's address is known.
    steps = [
        replace(s, bind=f"_{s.op}{s.line}") if s.op in ("mmap", "mremap") and s.bind is None else s
        for s in sc.steps
    ]
    fallbacks_before = live_fallbacks()
    with _live_session(sc, res.options, model_arch) as (replay, settings):
        res.settings = settings
        swap = "swap" in sc.machine
        for i, step in enumerate(steps):
            if progress is not None:
                progress(format_step(step))
            if swap:
                before = (replay.m.stats(), vmstat_swap(), mthp_swap_stats())
            mo = run_step(replay.m, replay.env, sc, step, counters=False)
            try:
                live_error, live_values = replay.live_step(step, mo.error, mo.values)
            except LiveError as e:
                raise LiveError(f"{sc.path}:{step.line}: {e}") from None
            rep = StepReport(step.line, format_step(sc.steps[i]), mo.error, live_error)
            res.steps.append(rep)
            if (mo.error or None) != (live_error or None):
                rep.diffs.append(Diff(step.proc or "-", "-", "outcome", mo.error or "ok", live_error or "ok"))
            if (
                step.op == "read"
                and mo.values is not None
                and live_values is not None
                and mo.values != live_values
            ):
                rep.diffs += _read_diffs(step, replay, mo.values, live_values)
            if swap:
                rep.diffs += _swap_stat_diffs(step, replay.m, before)
            if mo.failed is not None and mo.violation is None:
                # The scenario's own expectation (!ERR, expect=) failed on the model.
                rep.diffs.append(Diff(step.proc or "-", "-", "expectation", mo.failed, live_error or "ok"))
            if mo.violation is not None:
                rep.diffs.append(Diff(step.proc or "-", "-", "model invariant", str(mo.violation), "-"))
                break
            last = i == len(steps) - 1
            if at == "step" or step.op == "check" or last:
                rep.compared = True
                ms = _model_state(replay.m, replay.env, replay.regions)
                ls = _live_state(replay.live, replay.regions, replay.ps)
                rep.diffs += compare_states(ms, ls, replay.namer, replay.ps, model_arch)
            if rep.diffs and not keep_going:
                break
    found = any(s.diffs for s in res.steps)
    live_fb = live_fallbacks() - fallbacks_before
    model_fb = sum(v for k, v in replay.m.stats().items() if k.endswith("fault_fallback"))
    if found and live_fb > model_fb:
        # The live kernel could not allocate the large folios the model did
        # (memory fragmented by whatever else runs here): not a verdict on the model.
        res.status = "skipped"
        res.reason = (
            f"inconclusive: the live kernel fell back to smaller folios {live_fb} time(s) during the run "
            f"(model: {model_fb}); its memory is fragmented; rerun on a quieter machine"
        )
        return res
    if expected is None:
        res.status = "mismatch" if found else "agree"
    else:
        res.status = "expected-mismatch" if found else "unexpected-agreement"
    return res


def _swap_stat_diffs(
    step: Step, m: Machine, before: tuple[dict[str, int], dict[str, int], dict[str, int]]
) -> list[Diff]:
    """The swap counters a step changed, model against live: ``/proc/vmstat``
    ``pswpin``/``pswpout``/``swp*_zero`` and the per-size ``swpout``,
    ``swpout_fallback``, ``swpin``, ``swpin_fallback`` files the live kernel has."""
    mb, vb, sb = before
    ma = m.stats()
    va, sa = vmstat_swap(), mthp_swap_stats()
    out = []
    for key in vmstat_swap():
        md = ma.get(key, 0) - mb.get(key, 0)
        ld = va[key] - vb[key]
        if md != ld:
            out.append(Diff(step.proc or "-", "-", f"vmstat {key} (delta)", str(md), str(ld)))
    for key in sorted(sa):
        size, stat = key.split(".")
        name = f"mthp.{size}.{stat}"
        md = ma.get(name, 0) - mb.get(name, 0)
        ld = sa[key] - sb.get(key, 0)
        if md != ld:
            out.append(
                Diff(step.proc or "-", "-", f"hugepages-{size}/stats/{stat} (delta)", str(md), str(ld))
            )
    return out


def _read_diffs(step: Step, replay: _Replay, mv: list[int], lv: list[int]) -> list[Diff]:
    base = replay.env.addr(step.args["addr"], replay.sc, step)
    items = []
    for i in range(max(len(mv), len(lv))):
        a = _fmt_value(mv[i]) if i < len(mv) else "-"
        b = _fmt_value(lv[i]) if i < len(lv) else "-"
        if a != b:
            items.append((base + i * replay.ps, "value read", a, b))
    return _merge_page_diffs(step.proc or "-", items, replay.namer, replay.ps)


@contextlib.contextmanager
def _live_session(
    sc: Scenario, options: dict[str, Any], model_arch: str
) -> Iterator[tuple[_Replay, dict[str, str]]]:
    """THP policy applied, a tmpfs directory, the live processes; all undone on exit."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with ThpSysfs() as thp, contextlib.ExitStack() as stack:
        settings = thp.apply(str(sc.machine.get("thp", "madvise")), sc.machine.get("mthp"))
        if "swap" in sc.machine:
            # A zram swap device for the run (oracle/swap.py); swapped off and
            # removed on exit, also on an error or an interrupt (SIGTERM too).
            stack.enter_context(_sigterm_raises())
            stack.enter_context(ZramSwap(parse_bytes(sc.machine["swap"], "swap")))
            settings["swap"] = f"zram {sc.machine['swap']}, vm.page-cluster=0"
        tmpdir = tempfile.mkdtemp(prefix="contpte-oracle-", dir=base)
        try:
            with LiveKernel(procfs.PAGE_SIZE) as live:
                yield _Replay(sc, live, tmpdir, options, model_arch), settings
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises SystemExit inside the block (so its cleanups run), in the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
