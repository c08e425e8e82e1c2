"""Snapshots of live processes: capture, thpmaps' categories, and replay on the model.

``capture(pids)`` reads a live process's VMAs, pages, folios and THP
settings (root) into a ``Snapshot``; ``save``/``load`` write and read the
versioned file (``format``); ``thpmaps.report`` computes tools/mm/thpmaps'
per-VMA categories from it; ``replay.replay`` rebuilds the address space on
the arm64 model through its syscalls and faults, reports the Contiguous bit
coverage and the fidelity of the rebuild, and prices fork, exit and munmap
(docs/snapshots.md).  This layer sits above ``oracle`` (whose /proc readers
it uses) and ``cost`` (whose pricing it uses), below the CLI.
"""

from __future__ import annotations

from .format import FORMAT, FORMAT_VERSION, ProcRecord, Snapshot, VmaRecord, load, save

__all__ = ["FORMAT", "FORMAT_VERSION", "Snapshot", "ProcRecord", "VmaRecord", "save", "load"]
