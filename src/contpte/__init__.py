"""contpte: an executable model of Linux's transparent contiguous PTEs.

The public API: ``Machine`` (``spawn``, ``open_file``, ``stats``,
``check``), ``Process`` (``mmap``, ``write``, ``read``, ``fork``,
``mprotect``, ``madvise``, ``munmap``, ``pin``/``unpin``, ``pagemap``,
``exit``) and the error types.  See the README and docs/DESIGN.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _compiled

if _compiled.interpreted_requested():
    _compiled.install_source_finder()
else:
    _compiled.check_fresh()
    _compiled.warn_if_interpreted()

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
from .version import KERNEL_VERSION

if TYPE_CHECKING:
    from .system.machine import Machine
    from .system.process import PAGEMAP_DTYPE, Process, Thread

__all__ = [
    "Machine",
    "Process",
    "Thread",
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


def __getattr__(name: str) -> Any:
    # The system layer is imported on first use, so that ``import contpte.hw``
    # (or any lower layer) does not import every layer above it.
    if name == "Machine":
        from .system.machine import Machine

        return Machine
    if name in ("Process", "Thread", "PAGEMAP_DTYPE"):
        from .system import process

        return getattr(process, name)
    raise AttributeError(f"module 'contpte' has no attribute {name!r}")
