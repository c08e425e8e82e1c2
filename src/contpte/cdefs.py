"""The C types of the compiled core, as mypy sees them.

The kernel-shaped modules of ``hw``, ``arch``, ``mm`` and ``check`` are
compiled with Cython in pure-Python mode (``docs/core.md``).  Their
annotations use the names below.  To Cython they are the C types declared
in ``cdefs.pxd`` (``u64`` is ``unsigned long long``, ``U64View`` a
C-contiguous typed memoryview of them); to mypy and to the interpreter
they are the Python types here: ints and numpy arrays.

A module uses them with::

    import cython

    if not cython.compiled:
        from ..cdefs import i64, u64, U64View

and cimports them in its ``.pxd`` (``from contpte.cdefs cimport ...``);
compiled, the ``if`` is dead code and the cimported C types apply.

This module is never compiled.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "u64",
    "i64",
    "u32",
    "i32",
    "u16",
    "u8",
    "i8",
    "U64View",
    "I64View",
    "U32View",
    "I32View",
    "U16View",
    "U8View",
    "I8View",
    "U64_MAX",
]

u64 = int
i64 = int
u32 = int
i32 = int
u16 = int
u8 = int
i8 = int

U64View = npt.NDArray[np.uint64]
I64View = npt.NDArray[np.int64]
U32View = npt.NDArray[np.uint32]
I32View = npt.NDArray[np.int32]
U16View = npt.NDArray[np.uint16]
U8View = npt.NDArray[np.uint8]
I8View = npt.NDArray[np.int8]

U64_MAX = (1 << 64) - 1
"""All 64 bits: ``~x & U64_MAX`` is C's ``~x`` on a u64 (Python's ``~`` is negative)."""
