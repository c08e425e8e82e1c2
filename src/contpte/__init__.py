"""contpte: an executable model of Linux's transparent contiguous PTEs.

The public API: ``Machine`` (``spawn``, ``open_file``, ``stats``,
``check``), ``Process`` (``mmap``, ``write``, ``read``, ``fork``,
``mprotect``, ``madvise``, ``munmap``, ``pin``/``unpin``, ``pagemap``,
``exit``) and the error types.  See the README and docs/DESIGN.md.
"""

from __future__ import annotations

from .errors import (
    BusError,
    ContpteError,
    InvariantViolation,
    KernelBug,
    ModelUsageError,
    OutOfMemory,
    ScenarioError,
    SegmentationFault,
    UserfaultWP,
)
from .system.machine import Machine
from .system.process import PAGEMAP_DTYPE, Process
from .version import KERNEL_VERSION

__all__ = [
    "Machine",
    "Process",
    "PAGEMAP_DTYPE",
    "ContpteError",
    "ModelUsageError",
    "ScenarioError",
    "SegmentationFault",
    "BusError",
    "UserfaultWP",
    "InvariantViolation",
    "KernelBug",
    "OutOfMemory",
    "KERNEL_VERSION",
]
