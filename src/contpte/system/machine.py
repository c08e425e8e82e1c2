"""Machine: hardware + arch backend + core-mm + processes.

This is the public entry point (``contpte.Machine``).  A Machine owns the
simulated hardware (``hw``), the pgtable backend (``arch``), the core-mm
globals (``kernel``), the processes, the counters and, when ``check=True``,
the validators that run after every syscall.
"""

from __future__ import annotations

import re
from typing import Any

from ..arch import ARCHES, make_arch
from ..bugs import check_bug_names
from ..check.validators import Validators
from ..counters import FAMILIES, TOTALS, Counters, describe
from ..errors import ModelUsageError
from ..hw.features import PRESETS
from ..hw.hardware import Hardware
from ..mm.kernel import MM_OPTIONS, Kernel
from ..mm.mm_types import MmStruct
from ..mm.shmem import File
from ..mm.vmscan import shrink_all_memory
from ..version import KERNEL_VERSION
from .process import Process

__all__ = ["Machine", "parse_bytes", "ARCH_OPTIONS"]

ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "arm64": {
        "contpte": True,
        "wrprotect_ptes_opt": True,
        "teardown_opt": True,
        "bbml2_noabort": False,
        "wrprotect_refold": False,
    },
    "generic": {},
}
"""Kernel variants understood by each backend (all default to mainline)."""

_ALL_ARCH_OPTIONS = {k for opts in ARCH_OPTIONS.values() for k in opts}
_PAGE_SIZES = {"4K": 12, "16K": 14, "64K": 16}


def parse_bytes(text: str | int, what: str = "size") -> int:
    """``"4G"`` -> 4 GiB.  Accepts ints, and K/M/G/T suffixes (binary)."""
    if isinstance(text, int):
        if text <= 0:
            raise ModelUsageError(f"{what} must be positive, not {text}")
        return text
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ModelUsageError(f"{what} {text!r}: expected a number with an optional K/M/G/T suffix")
    n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    if n <= 0:
        raise ModelUsageError(f"{what} must be positive, not {text!r}")
    return n


class Machine:
    """A simulated machine running the modelled Linux kernel.

    ``arch``: ``"arm64"`` or ``"generic"``.  ``memory``: physical memory
    (``"4G"``).  ``cpus``: CPUs (processes are placed round-robin).
    ``page_size``: ``"4K"``, ``"16K"`` or ``"64K"`` (arm64 granules).
    ``mthp``: per-size settings in the sysfs vocabulary (``{"64K":
    "always"}``); ``thp``: the top-level setting (default ``"madvise"``).
    ``check``: run every validator after every syscall.  Kernel variants
    (``batch_fork``, ``contpte``, ``wrprotect_ptes_opt``, ``teardown_opt``,
    ``bbml2_noabort``) default to mainline, as do the historical batching
    variants ``batch_zap``, ``batch_rmap`` and ``batch_extent`` (see
    ``MM_OPTIONS``); the newer-kernel core-mm
    behaviours ``cow_reuse_large`` (v6.15) and ``huge_zero_wp_thp`` (v6.13)
    default to off (v6.12, see ``MM_OPTIONS``); hardware options: ``cpu`` (a
    preset name), ``adversarial_tlb``, ``seed``.  ``bugs``: names from the
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
        cpu: str | None = None,
        adversarial_tlb: bool = False,
        seed: int = 0,
        bugs: tuple[str, ...] | list[str] | str = (),
        **options: Any,
    ) -> None:
        if arch not in ARCHES:
            raise ModelUsageError(f"arch={arch!r}: expected one of {', '.join(ARCHES)}")
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
        if cpu is not None and cpu not in PRESETS:
            raise ModelUsageError(f"cpu={cpu!r}: expected one of {', '.join(sorted(PRESETS))}")
        bug_set = check_bug_names(bugs)
        nbytes = parse_bytes(memory, "memory")
        nr_frames = nbytes >> page_shift
        if nr_frames < 1 << (2 * page_shift - 3 - page_shift + 1):
            raise ModelUsageError(f"memory={memory!r} is too small")
        self.arch_name = arch
        self.page_size = 1 << page_shift
        self.kernel_version = KERNEL_VERSION
        self.counters = Counters()
        self.check_enabled = bool(check)
        fmt = "vmsa" if arch == "arm64" else "flat"
        self.hw = Hardware(
            nr_frames,
            page_shift=page_shift,
            ncpus=cpus,
            features=cpu,
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
        self.arch = make_arch(arch, self.hw, page_shift=page_shift, **arch_opts)
        mm_opts = {k: v for k, v in options.items() if k in MM_OPTIONS}
        self.kernel = Kernel(self.hw, self.arch, self.counters, thp=thp, mthp=mthp, **mm_opts)
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

    def spawn(self) -> Process:
        """Start a new process with an empty address space and one thread."""
        p = self._new_process(None)
        self.validators.on_spawn(p)
        return p

    def open_file(self, name: str, size: str | int, folio_size: str = "64K") -> File:
        """Create a file whose page cache holds large folios of ``folio_size``.

        The file's pages start with distinct values (``file_initial_value``).
        """
        nbytes = parse_bytes(size, "file size")
        order = 0 if folio_size in ("4K", str(self.page_size)) else self.kernel.parse_size(folio_size)
        return self._new_file(name, nbytes, order, shmem=False)

    def _new_file(self, name: str, nbytes: int, order: int, shmem: bool) -> File:
        fid = self._next_file
        self._next_file += 1
        f = File(self.kernel, fid, name, nbytes, order, shmem)
        self.kernel.files[fid] = f
        return f

    # -- observation --------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Every non-zero counter (stable names; see ``contpte.counters``) plus totals."""
        out = self.counters.snapshot()
        out.update({k: v for k, v in self.counters.totals().items() if v})
        return dict(sorted(out.items()))

    @staticmethod
    def describe_counter(name: str) -> tuple[str, str]:
        """(unit, description) of a name ``stats()`` returns: a counter or a total."""
        if name in TOTALS:
            # A total sums a family: it has the family's unit.
            family = FAMILIES.get(name)
            return (family or describe(name)).unit, TOTALS[name][0]
        spec = describe(name)
        return spec.unit, spec.description

    def reclaim(self) -> int:
        """Memory pressure: one reclaim pass (``mm/vmscan.py``); returns the pages freed.

        Discards clean lazyfree (MADV_FREE) anon folios, writes back dirty
        page-cache folios of regular files and drops clean ones.
        """
        self.hw.current_cpu = 0
        freed = shrink_all_memory(self.kernel)
        if self.check_enabled:
            self.validators.run_all()
        return freed

    def check(self) -> None:
        """Run every validator now; raises ``InvariantViolation`` on the first failure."""
        self.validators.run_all()
