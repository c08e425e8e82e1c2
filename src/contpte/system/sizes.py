"""Sizes as users write them: ``"4G"``, ``"64K"``, ``"16KiB"`` or a plain integer.

Every length the public API takes (``Machine(memory=)``, ``open_file``,
``mmap``, ``munmap``, ``mprotect``, ``madvise``, ``write``, ``read``,
``pin``, ...) goes through here, so all of them accept the same strings.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ModelUsageError

__all__ = ["parse_bytes", "parse_length"]

_SIZE_RE = re.compile(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", re.IGNORECASE)
_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def _parse_text(text: str, what: str) -> int:
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise ModelUsageError(f"{what} {text!r}: expected a number with an optional K/M/G/T suffix")
    return int(m.group(1)) << _SHIFT[m.group(2).upper()]


def parse_bytes(text: str | int, what: str = "size") -> int:
    """``"4G"`` -> 4 GiB.  Accepts ints, and K/M/G/T suffixes (binary); must be positive."""
    if isinstance(text, bool) or not isinstance(text, (str, int, np.integer)):
        raise ModelUsageError(f"{what} {text!r}: expected an integer or a size such as '64K' or '4G'")
    if not isinstance(text, str):
        if text <= 0:
            raise ModelUsageError(f"{what} must be positive, not {text}")
        return int(text)
    n = _parse_text(text, what)
    if n <= 0:
        raise ModelUsageError(f"{what} must be positive, not {text!r}")
    return n


def parse_length(value: str | int, what: str) -> int:
    """A syscall's length argument: an integer, or a size string as ``parse_bytes`` takes.

    Integers pass unchanged, zero and negative ones included: the syscall
    answers them with the errno Linux would (``EINVAL`` for a zero-length
    munmap, success for a zero-length mprotect, ...).  ``what`` names the
    argument in the error (``"mmap length"``).
    """
    if type(value) is int:  # the common case, before the slower tests below
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
        raise ModelUsageError(f"{what} {value!r}: expected an integer or a size such as '64K' or '1M'")
    if isinstance(value, str):
        return _parse_text(value, what)
    return int(value)
