"""Physical memory: one 64-bit value per frame.

Every simulated page stores a single ``uint64``; a write of a page sets it,
a read returns it.  This is enough to detect every mapping mistake: a process
that reads another process's value, or a stale value, has been given the
wrong frame.

``data`` is the numpy array (Python callers slice it); ``v`` is a typed
view of the same memory for compiled code.  Compiled (docs/core.md).
"""

from __future__ import annotations

import cython
import numpy as np

if not cython.compiled:
    from ..cdefs import i64, u64

__all__ = ["PhysMemory"]


@cython.final
@cython.cclass
class PhysMemory:
    """The frames of a machine, indexed by PFN."""

    def __init__(self, nr_frames: i64, page_size: i64) -> None:
        self.nr_frames = nr_frames
        self.page_size = page_size
        self.data = np.zeros(nr_frames, dtype=np.uint64)
        self.v = self.data

    @cython.ccall
    def fill(self, pfn: i64, nr: i64, value: u64) -> None:
        """Store ``value`` in frames ``[pfn, pfn + nr)`` (zeroing, copying)."""
        i: i64
        for i in range(pfn, pfn + nr):
            self.v[i] = value

    @cython.ccall
    def copy(self, dst_pfn: i64, src_pfn: i64, nr: i64) -> None:
        """Copy ``nr`` frames' contents (``copy_user_highpage``)."""
        i: i64
        if dst_pfn <= src_pfn:
            for i in range(nr):
                self.v[dst_pfn + i] = self.v[src_pfn + i]
        else:  # overlapping forward copy: back to front, as memmove
            for i in range(nr - 1, -1, -1):
                self.v[dst_pfn + i] = self.v[src_pfn + i]
