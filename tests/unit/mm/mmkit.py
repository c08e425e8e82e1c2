"""Helpers for the core-mm unit tests: a kernel without the system layer.

``make_kernel`` builds Hardware + pgtable backend + ``Kernel`` (what a
Machine builds, without processes or validators), ``new_mm`` an address
space, and ``fault`` faults pages in through ``handle_mm_fault``, so the mm
layer's unit tests run while the layers above it do not import (issue 12).
"""

from __future__ import annotations

from typing import Any

from contpte.arch import make_arch
from contpte.counters import Counters
from contpte.hw.hardware import Hardware
from contpte.mm.kernel import Kernel
from contpte.mm.mm_types import MmStruct

PAGE = 4096


def make_kernel(
    arch: str = "arm64",
    frames: int = 1 << 14,
    thp: str = "madvise",
    mthp: dict[str, str] | None = None,
    **options: Any,
) -> Kernel:
    """A kernel on ``frames`` 4K frames (64 MiB by default), no rule checker."""
    counters = Counters()
    hw = Hardware(
        frames,
        page_shift=12,
        ncpus=2,
        fmt="vmsa" if arch == "arm64" else "flat",
        counters=counters,
        checker=False,
    )
    a = make_arch(arch, hw, page_shift=12)
    return Kernel(hw, a, counters, thp=thp, mthp=mthp, **options)


def new_mm(k: Kernel, pid: int = 1) -> MmStruct:
    """A new address space (ASID ``pid``) that has run on CPU 0."""
    mm = MmStruct(k, k.hw.new_space(pid, f"pid {pid}"), pid)
    k.mms.append(mm)
    mm.cpumask.add(0)
    return mm


def fault(mm: MmStruct, addr: int, nr_pages: int, write: bool = True) -> None:
    """Fault in ``nr_pages`` from ``addr`` (``handle_mm_fault`` on each page)."""
    from contpte.mm.memory import handle_mm_fault
    from contpte.mm.mm_types import FAULT_FLAG_WRITE

    for i in range(nr_pages):
        va = addr + i * PAGE
        vma = mm.vma_lookup(va)
        assert vma is not None, hex(va)
        assert handle_mm_fault(vma, va, FAULT_FLAG_WRITE if write else 0) == 0


def pte_of(mm: MmStruct, addr: int) -> int:
    """The PTE of ``addr`` (0 if it has no level-3 table), read uncounted."""
    ptep = mm.space.pte_ptr(addr)
    return 0 if ptep < 0 else int(mm.space.pool.peek(ptep))
