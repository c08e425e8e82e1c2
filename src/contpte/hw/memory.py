"""Physical memory: one 64-bit value per frame.

Every simulated page stores a single ``uint64``; a write of a page sets it,
a read returns it.  This is enough to detect every mapping mistake: a process
that reads another process's value, or a stale value, has been given the
wrong frame.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PhysMemory"]


class PhysMemory:
    """The frames of a machine, indexed by PFN."""

    __slots__ = ("nr_frames", "page_size", "data")

    def __init__(self, nr_frames: int, page_size: int) -> None:
        self.nr_frames = nr_frames
        self.page_size = page_size
        self.data = np.zeros(nr_frames, dtype=np.uint64)

    def fill(self, pfn: int, nr: int, value: int) -> None:
        """Store ``value`` in frames ``[pfn, pfn + nr)`` (zeroing, copying)."""
        self.data[pfn : pfn + nr] = np.uint64(value)

    def copy(self, dst_pfn: int, src_pfn: int, nr: int) -> None:
        """Copy ``nr`` frames' contents (``copy_user_highpage``)."""
        self.data[dst_pfn : dst_pfn + nr] = self.data[src_pfn : src_pfn + nr]
