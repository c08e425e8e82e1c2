"""Machine: hardware + arch backend + core-mm + processes.

This is the public entry point (``contpte.Machine``).  A Machine owns the
simulated hardware (``hw``), the pgtable backend (``arch``), the core-mm
globals (``kernel``), the processes, the counters and, when ``check=True``,
the validators that run after every syscall.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..arch import ARCHES, make_arch
from ..bugs import check_bug_names
from ..counters import FAMILIES, MTHP_STATS, TOTALS, Counters, counter_names, describe, mthp_size_name
from ..errors import ModelUsageError
from ..hw.features import BBML2_NOABORT_CPU, DEFAULT_CPU, PRESETS, system_features
from ..hw.hardware import Hardware
from ..mm.kernel import MM_OPTIONS, Kernel
from ..mm.khugepaged import khugepaged_do_scan
from ..mm.mm_types import MmStruct
from ..mm.shmem import File
from ..mm.swapfile import SwapInfo
from ..mm.vmscan import shrink_all_memory
from ..version import KERNEL_VERSION, check_kernel, kernel_options, mthp_stat_files
from .process import Process
from .sched import Scheduler
from .sizes import parse_bytes

__all__ = ["Machine", "parse_bytes", "ARCH_OPTIONS"]

ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "arm64": {
        "contpte": True,
        "wrprotect_ptes_opt": True,
        "teardown_opt": True,
        "bbml2_noabort": False,
        "wrprotect_refold": False,
        "set_ptes_fold": True,
        "batch_hint": True,
        "modify_prot_ptes_opt": False,
        "ptep_get_early_exit": False,
        "access_flags_subptes": False,
        "tlbi_nobroadcast": False,
        "pte_flags_need_flush": False,
    },
    "generic": {},
}
"""Kernel variants understood by each backend (all default to mainline)."""

_ALL_ARCH_OPTIONS = {k for opts in ARCH_OPTIONS.values() for k in opts}
_CHP_SIZE_OPTIONS = ("chp_cma", "chp_pool_high", "chp_min_buddy", "chp_max_buddy", "chp_stable_max_buddy")
_PAGE_SIZES = {"4K": 12, "16K": 14, "64K": 16}


class Machine:
    """A simulated machine running the modelled Linux kernel.

    ``arch``: ``"arm64"`` or ``"generic"``.  ``memory``: physical memory
    (``"4G"``).  ``cpus``: CPUs (processes are placed round-robin).
    ``page_size``: ``"4K"``, ``"16K"`` or ``"64K"`` (arm64 granules).
    ``mthp``: per-size settings in the sysfs vocabulary (``{"64K":
    "always"}``); ``thp``: the top-level setting (default ``"madvise"``).
    ``check``: run every validator after every syscall.  Kernel variants
    (``batch_fork``, ``contpte``, ``wrprotect_ptes_opt``, ``teardown_opt``,
    ``bbml2_noabort``) default to mainline (``bbml2_noabort=True`` needs a
    CPU with BBML2_NOABORT and picks ``neoverse-v3`` when ``cpu`` is not
    given; ``"cpu"``, the default from v6.17, follows the CPU preset as
    ``system_supports_bbml2_noabort()`` does), as do the historical batching variants ``batch_zap``,
    ``batch_rmap`` and ``batch_extent`` (see ``MM_OPTIONS``).  ``kernel``:
    the mainline version followed (``"6.12"`` ... ``"7.2"``,
    ``contpte.version.KERNEL_VERSIONS``); it sets every option of a change
    up to it (``contpte.version.CHANGES``: ``huge_zero_wp_thp`` from v6.13,
    ``cow_reuse_large`` from v6.15, ...), and an option given explicitly
    overrides its one behaviour.  Hardware options: ``cpu`` (a
    preset name, or a list of one per CPU for a big.LITTLE machine whose
    cores differ in hardware A/D management, e.g. ``["cortex-a76",
    "cortex-a55"]``), ``adversarial_tlb``, ``seed``.  ``bugs``: names from the
    bug catalog (``contpte.bugs.BUGS``) to re-introduce (default none).  An
    unknown option is an error.
    """

    def __init__(
        self,
        arch: str = "arm64",
        memory: str | int = "4G",
        cpus: int = 4,
        page_size: str = "4K",
        mthp: dict[str, str] | None = None,
        thp: str = "madvise",
        check: bool = True,
        cpu: str | list[str] | tuple[str, ...] | None = None,
        adversarial_tlb: bool = False,
        seed: int = 0,
        bugs: tuple[str, ...] | list[str] | str = (),
        kernel: str = KERNEL_VERSION,
        swap: str | int | None = None,
        **options: Any,
    ) -> None:
        if arch not in ARCHES:
            raise ModelUsageError(f"arch={arch!r}: expected one of {', '.join(ARCHES)}")
        kernel = check_kernel(kernel)
        if page_size not in _PAGE_SIZES:
            raise ModelUsageError(f"page_size={page_size!r}: expected one of {', '.join(_PAGE_SIZES)}")
        page_shift = _PAGE_SIZES[page_size]
        if arch == "generic" and page_shift != 12:
            raise ModelUsageError("the generic backend supports page_size='4K' only")
        if not isinstance(cpus, int) or cpus < 1:
            raise ModelUsageError(f"cpus={cpus!r}: expected a positive integer")
        unknown = set(options) - set(MM_OPTIONS) - _ALL_ARCH_OPTIONS
        if unknown:
            known = sorted(set(MM_OPTIONS) | _ALL_ARCH_OPTIONS)
            raise ModelUsageError(
                f"unknown Machine option(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}"
            )
        cpu_list: list[str] | None = None
        if isinstance(cpu, (list, tuple)):
            # A heterogeneous machine: one preset per CPU (system_features()).
            if len(cpu) != cpus:
                raise ModelUsageError(f"cpu={list(cpu)!r}: {len(cpu)} presets for cpus={cpus}")
            for c in cpu:
                if c not in PRESETS:
                    raise ModelUsageError(f"cpu={c!r}: expected one of {', '.join(sorted(PRESETS))}")
            cpu_list = list(cpu)
            system_features([PRESETS[c] for c in cpu_list])  # raises if they cannot share a machine
            cpu = cpu_list[0]  # the hardware-wide features are the first CPU's
        if cpu is not None and cpu not in PRESETS:
            raise ModelUsageError(f"cpu={cpu!r}: expected one of {', '.join(sorted(PRESETS))}")
        fmt = "vmsa" if arch == "arm64" else "flat"
        if cpu is not None and PRESETS[cpu].fmt != fmt:
            fitting = sorted(n for n, f in PRESETS.items() if f.fmt == fmt)
            raise ModelUsageError(
                f"cpu={cpu!r} does not run arch={arch!r} (it walks {PRESETS[cpu].fmt!r} tables); "
                f"expected one of {', '.join(fitting)}"
            )
        # The version's behaviours, each overridable by its own option.
        options = {**kernel_options(kernel, arch), **options}
        bbml2_opt = options.get("bbml2_noabort", False)
        if bbml2_opt == "cpu":
            # v6.17+: contpte_convert() elides its TLBI where
            # system_supports_bbml2_noabort(): the CPU is on the kernel's
            # MIDR allow-list (the preset's ``bbml2_noabort``).
            bbml2 = arch == "arm64" and PRESETS[cpu or DEFAULT_CPU[fmt]].bbml2_noabort
        elif bbml2_opt in (True, False):
            bbml2 = bool(bbml2_opt)
        else:
            raise ModelUsageError(f"bbml2_noabort={bbml2_opt!r}: expected True, False or 'cpu'")
        if arch == "arm64" and bbml2_opt != "cpu" and bbml2:
            # Linux uses BBML2 only where system_supports_bbml2_noabort():
            # the option needs a CPU that has it, and picks one by default.
            if cpu is None:
                cpu = BBML2_NOABORT_CPU
            elif not PRESETS[cpu].bbml2_noabort:
                have = sorted(n for n, f in PRESETS.items() if f.bbml2_noabort)
                raise ModelUsageError(
                    f"bbml2_noabort=True needs a CPU with BBML2_NOABORT; cpu={cpu!r} has none "
                    f"(presets that have it: {', '.join(have)})"
                )
        if options.get("accounting") == "entire" and "policy" not in options:
            # Whole-block (entire) accounting is the OnePlus design's: it
            # selects that design (mm/kernel.py, ``accounting``).
            options["policy"] = "oneplus"
        policy = options.get("policy", "mainline")
        if policy not in ("mainline", "oneplus"):
            raise ModelUsageError(f"policy={policy!r}: expected 'mainline' or 'oneplus'")
        if policy == "oneplus":
            # The OnePlus design writes the Contiguous bit from core-mm
            # (docs/oneplus.md): arm64 with 4K pages, without contpte's
            # transparent fold/unfold.
            if arch != "arm64":
                raise ModelUsageError(
                    f"policy='oneplus' needs arch='arm64' (the design sets arm64's Contiguous bit); got arch={arch!r}"
                )
            if page_shift != 12:
                raise ModelUsageError(
                    f"policy='oneplus' needs page_size='4K' (64K blocks); got {page_size!r}"
                )
            if options.get("contpte", False):
                raise ModelUsageError(
                    "policy='oneplus' manages the Contiguous bit in core-mm: contpte=True (the arm64 "
                    "backend's transparent fold/unfold) does not combine with it"
                )
            options["contpte"] = False
        bug_set = check_bug_names(bugs)
        nbytes = parse_bytes(memory, "memory")
        nr_frames = nbytes >> page_shift
        if nr_frames < 1 << (2 * page_shift - 3 - page_shift + 1):
            raise ModelUsageError(f"memory={memory!r} is too small")
        self.arch_name = arch
        self.page_size = 1 << page_shift
        self.kernel_version = kernel
        self.counters = Counters()
        self._counter_names = counter_names(page_shift)
        self.check_enabled = bool(check)
        self.hw = Hardware(
            nr_frames,
            page_shift=page_shift,
            ncpus=cpus,
            features=tuple(cpu_list) if cpu_list is not None else cpu,
            fmt=fmt,
            counters=self.counters,
            checker=bool(check),
            adversarial_tlb=adversarial_tlb,
            seed=seed,
        )
        arch_opts = {k: v for k, v in options.items() if k in _ALL_ARCH_OPTIONS}
        bad = set(arch_opts) - set(ARCH_OPTIONS[arch])
        if bad and arch == "arm64":
            raise ModelUsageError(f"option(s) {', '.join(sorted(bad))} do not apply to arch {arch!r}")
        # Options of another backend are accepted and have no effect there
        # (running one variant set on both backends must be possible).
        arch_opts = {k: v for k, v in arch_opts.items() if k in ARCH_OPTIONS[arch]}
        if "bbml2_noabort" in arch_opts:
            arch_opts["bbml2_noabort"] = bbml2
        self.arch = make_arch(arch, self.hw, page_shift=page_shift, **arch_opts)
        mm_opts = {k: v for k, v in options.items() if k in MM_OPTIONS}
        for key in _CHP_SIZE_OPTIONS:
            # The hugepage pool's sizes (mm/chp_pool.py) take size strings like memory=.
            value = mm_opts.get(key)
            # 0 (or "0" from a scenario header) is a valid size: no CMA area, no buddy blocks.
            if value == "0":
                mm_opts[key] = 0
            elif value is not None and not (
                isinstance(value, int) and not isinstance(value, bool) and value == 0
            ):
                mm_opts[key] = parse_bytes(value, key)
        self.kernel = Kernel(self.hw, self.arch, self.counters, thp=thp, mthp=mthp, **mm_opts)
        #: The swap device (``swap="1G"``: a zRAM-like synchronous device), or None.
        self.swap: SwapInfo | None = None
        if swap is not None:
            swap_bytes = parse_bytes(swap, "swap")
            self.swap = SwapInfo(
                swap_bytes >> page_shift, self.arch.PTRS_PER_PTE, self.kernel.PMD_ORDER, True
            )
            self.kernel.swap = self.swap
        # The bug catalog (contpte.bugs): consulted where each bug lived.
        self.bugs = bug_set
        self.arch.bugs = bug_set
        self.kernel.bugs = bug_set
        self.options = {**ARCH_OPTIONS[arch], **MM_OPTIONS, **options}
        self.processes: dict[int, Process] = {}
        self._next_pid = 1
        self._next_asid = 1
        self._next_cpu = 0
        self._next_file = 1
        self._file_names: set[str] = set()
        self.validators: Any = None
        #: The scheduler of ``scheduler()``, None until one is installed.
        self.sched: Scheduler | None = None
        if self.check_enabled:
            from ..check.validators import Validators

            self.validators = Validators(self)

    def __repr__(self) -> str:
        return f"<Machine arch={self.arch_name} cpus={self.hw.ncpus} pages={self.hw.memory.nr_frames}>"

    # -- processes --------------------------------------------------------
    def _new_mm(self, pid: int) -> MmStruct:
        space = self.hw.new_space(self._next_asid, name=f"pid {pid}")
        self._next_asid += 1
        mm = MmStruct(self.kernel, space, pid)
        self.kernel.mms.append(mm)
        return mm

    def _new_process(self, parent: Process | None) -> Process:
        pid = self._next_pid
        self._next_pid += 1
        cpu = self._next_cpu
        self._next_cpu = (self._next_cpu + 1) % self.hw.ncpus
        p = Process(self, pid, self._new_mm(pid), cpu, parent)
        self.processes[pid] = p
        return p

    def scheduler(self, decide: Any = None) -> Scheduler:
        """Install (once) and return the scheduler that runs other threads' steps at preemption points.

        ``decide(point, occurrence, candidates) -> index | -1`` chooses where
        free actions fire (``contpte.system.sched``; the explorer's hook).
        Without a scheduler the preemption hooks are None and cost one test.
        """
        if self.sched is None:
            self.sched = Scheduler(self, decide)
        elif decide is not None:
            self.sched.decide = decide
        return self.sched

    def spawn(self) -> Process:
        """Start a new process with an empty address space and one thread."""
        p = self._new_process(None)
        if self.check_enabled:
            self.validators.on_spawn(p)
        return p

    def open_file(self, name: str, size: str | int, folio_size: str = "64K", fs: str = "disk") -> File:
        """Create a file whose page cache holds large folios of ``folio_size``.

        The file's pages start with distinct values (``file_initial_value``).
        ``fs``: ``"disk"`` (the default), a file of a disk filesystem whose
        page cache reads the values in clean, and whose shared writable
        mappings start read-only (write-notify); ``"tmpfs"``, a tmpfs
        (shmem) file its creator wrote whole: the page cache holds the
        values dirty, with no backing store (reclaim cannot drop them), and
        shared writable mappings are writable at once.  The oracles' files
        are tmpfs files.
        A name already created raises ``FileExistsError`` (EEXIST), as
        ``open(name, O_CREAT | O_EXCL)`` would.
        """
        if not isinstance(name, str) or not name:
            raise ModelUsageError(f"open_file: name must be a non-empty string, not {name!r}")
        if name in self._file_names:
            raise FileExistsError(errno.EEXIST, f"open_file: {os.strerror(errno.EEXIST)}", name)
        if fs not in ("disk", "tmpfs"):
            raise ModelUsageError(f"open_file: fs={fs!r}: expected 'disk' or 'tmpfs'")
        nbytes = parse_bytes(size, "file size")
        order = 0 if folio_size in ("4K", str(self.page_size)) else self.kernel.parse_size(folio_size)
        f = self._new_file(name, nbytes, order, shmem=fs == "tmpfs")
        f.written = fs == "tmpfs"
        self._file_names.add(name)
        return f

    def _new_file(self, name: str, nbytes: int, order: int, shmem: bool) -> File:
        fid = self._next_file
        self._next_file += 1
        f = File(self.kernel, fid, name, nbytes, order, shmem)
        self.kernel.files[fid] = f
        return f

    # -- observation --------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Every counter of this machine, zeros included, plus the totals; sorted by name.

        Like ``/proc/vmstat``: the names are the declared ones
        (``contpte.counters``), listed whether or not anything was counted
        yet (the per-size mTHP stats: the sizes of this machine's page size).
        """
        out = self.counters.values_of(self._counter_names)
        out.update(self.counters.totals())
        return dict(sorted(out.items()))

    def mthp_stats(self) -> dict[str, dict[str, int]]:
        """The per-size mTHP statistics, as ``hugepages-<size>kB/stats/`` of this kernel version shows them.

        ``{"64kB": {"anon_fault_alloc": 3, ...}, ...}``: one entry per
        large anon size of the page size (orders 2 up to the PMD order),
        each with exactly the files the version has
        (``contpte.version.MTHP_STAT_FILES``: ``zswpout``/``swpin*`` from
        6.13, the ``collapse_*`` files from 7.2).  The model counts
        ``anon_fault_alloc``, ``anon_fault_fallback``, ``split``,
        ``split_failed``, ``split_deferred``, ``nr_anon``,
        ``nr_anon_partially_mapped`` and the ``collapse_*`` files (also in ``stats()`` as
        ``mthp.<size>.<stat>``); the others read 0 because their event does
        not happen in the model: ``swpout``, ``swpout_fallback``, ``swpin``
        and ``swpin_fallback`` count only with a swap device
        (``Machine(swap=...)``); no zswap (``zswpout``), no
        memory cgroup (``*_fallback_charge``), files whose page cache is
        filled at ``open_file`` with the folio size given rather than
        through shmem's per-size policy (``shmem_*``).  The ``collapse_*``
        files (7.2) count khugepaged's collapses (``khugepaged_scan``);
        ``collapse_exceed_swap_pte`` stays 0 (no swap).
        """
        files = mthp_stat_files(self.kernel_version)
        out: dict[str, dict[str, int]] = {}
        for order in range(2, self.kernel.PMD_ORDER + 1):
            size = mthp_size_name(self.page_size, order)
            counted = self.counters.values_of([f"mthp.{size}.{f}" for f in files if f in MTHP_STATS])
            out[size] = {f: int(counted.get(f"mthp.{size}.{f}", 0)) for f in files}
        return out

    def chp_pool_stats(self) -> dict[str, int]:
        """The OnePlus hugepage pool, as ``/proc/cont_pte_hugepage/stat`` shows it; ``{}`` without a pool.

        Sizes in pages (``pool_cma_count``, ``pool_buddy_count``,
        ``pool_pages``: blocks held in the pool; ``usage_cma``,
        ``usage_buddy``: blocks in use; ``pool_high``, ``pool_low``,
        ``peak_usage_buddy``), watermarks and budgets in 64K blocks
        (``wmark_min``, ``wmark_low``, ``wmark_high``, ``min_buddy``,
        ``max_buddy``), ``cont_pte_cma_size`` in bytes (docs/oneplus-pool.md).
        The same levels, in blocks, are the ``chp.pool_*`` and
        ``chp.usage_*`` counters of ``stats()``.
        """
        pool = self.kernel.chp_pool
        return {} if pool is None else pool.stats()

    def stats_delta(self, before: Mapping[str, int]) -> dict[str, int]:
        """What was counted since ``before`` (an earlier ``stats()``): every name, zeros included."""
        return {name: value - before.get(name, 0) for name, value in self.stats().items()}

    @contextmanager
    def measure(self) -> Iterator[dict[str, int]]:
        """Count the operations inside a ``with`` block.

        ``with m.measure() as d: p.fork()`` fills ``d`` when the block ends
        (also when it raises) with ``stats_delta`` of the block: every
        counter and total, zeros included.
        """
        before = self.stats()
        delta: dict[str, int] = {}
        try:
            yield delta
        finally:
            delta.update(self.stats_delta(before))

    @staticmethod
    def describe_counter(name: str) -> tuple[str, str]:
        """(unit, description) of a name ``stats()`` returns: a counter or a total.

        Works before any Machine exists: the counters are declared in
        ``contpte.counters``, whatever was imported.
        """
        if name in TOTALS:
            # A total sums a family: it has the family's unit.
            family = FAMILIES.get(name) or FAMILIES.get(name.rsplit(".", 1)[0])
            if family is None:
                raise ModelUsageError(f"total {name!r} sums no declared family")
            return family.unit, TOTALS[name][0]
        spec = describe(name)
        return spec.unit, spec.description

    def reclaim(self, target: int | str | None = None) -> int:
        """Memory pressure: one reclaim pass (``mm/vmscan.py``); returns the pages freed.

        Discards clean lazyfree (MADV_FREE) anon folios, writes back dirty
        page-cache folios of regular files and drops clean ones; with a swap
        device (``Machine(swap=...)``) swaps out anon folios whose PTEs were
        not young (a young folio is kept once and its PTEs made old, as
        ``folio_check_references()`` does).  ``target``: stop once that many
        bytes (an int or a size string) are freed; None: the whole pass.
        """
        pages = 0
        if target is not None:
            pages = -(-parse_bytes(target, "reclaim target") // self.page_size)
            if pages <= 0:
                raise ModelUsageError(f"reclaim target={target!r}: expected a positive size")
        sched = self.sched
        nested = sched is not None and sched.nested
        if nested:
            assert sched is not None
            sched.may_reclaim()  # Blocked: it runs after the interrupted step
        self.hw.current_cpu = 0
        freed = shrink_all_memory(self.kernel, pages)
        if self.check_enabled and not nested:
            self.validators.after_syscall(None, "reclaim")
        return freed

    def khugepaged_scan(self, pages: int | None = None) -> dict[str, int]:
        """Run khugepaged now: collapse PTE-mapped anonymous memory into huge folios.

        Models one wake-up of the kernel thread, ``khugepaged_do_scan()``
        (``mm/khugepaged.py``).  ``pages=None``: scan until the list of mms
        has been passed twice at its head, i.e. the rest of the current pass
        and one full pass over every mm (from a fresh cursor: exactly one
        full pass).  ``pages=N``: stop after N units of progress, as
        ``/sys/kernel/mm/transparent_hugepage/khugepaged/pages_to_scan`` (the
        kernel's default is ``HPAGE_PMD_NR * 8``; a PMD range counts
        ``HPAGE_PMD_NR``, a skipped VMA or mm 1); the cursor (mm and
        address) persists between calls, as the kernel's does.  Every
        anonymous VMA the THP settings allow a PMD THP in (``thp="always"``,
        or ``"madvise"`` with ``MADV_HUGEPAGE``) is scanned; from
        ``kernel="7.2"`` every enabled anon mTHP size is a collapse target
        too (``khugepaged_mthp``).  Counted: ``thp_collapse_alloc``
        (``_failed``), ``thp_scan_exceed_*``, and from 7.2 the per-size
        ``collapse_*`` stats of ``mthp_stats()``.

        Returns ``{"progress": ..., "pages_collapsed": ..., "full_scans": ...}``:
        the progress made, and the deltas of khugepaged's
        ``pages_collapsed`` (PMD ranges where a collapse succeeded) and
        ``full_scans`` sysfs counters.
        """
        if pages is None:
            budget = 1 << 62
        elif isinstance(pages, int) and not isinstance(pages, bool) and pages > 0:
            budget = pages
        else:
            raise ModelUsageError(f"khugepaged_scan: pages must be a positive integer or None, not {pages!r}")
        k = self.kernel
        collapsed, full = k.khugepaged_pages_collapsed, k.khugepaged_full_scans
        self.hw.current_cpu = 0
        progress = khugepaged_do_scan(k, budget)
        if self.check_enabled:
            self.validators.after_syscall(None, "khugepaged")
        return {
            "progress": progress,
            "pages_collapsed": int(k.khugepaged_pages_collapsed - collapsed),
            "full_scans": int(k.khugepaged_full_scans - full),
        }

    def check(self) -> None:
        """Run every validator now; raises ``InvariantViolation`` on the first failure.

        Available with ``check=False`` too: the validators then recount
        everything from scratch (they keep no state between calls).
        """
        if self.validators is None:
            from ..check.validators import Validators

            self.validators = Validators(self)
        self.validators.run_all()
