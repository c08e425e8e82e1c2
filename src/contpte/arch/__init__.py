"""The Linux arch layer: generic pgtable.h fallbacks, arm64 (contpte), ...

``make_arch(name, hw, **options)`` builds the backend a Machine uses.  Core-mm
reaches the architecture only through the methods of ``arch.pgtable.Pgtable``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelUsageError
from .pgtable import Pgtable

__all__ = ["Pgtable", "make_arch", "ARCHES"]

ARCHES = ("arm64", "generic")


def make_arch(name: str, hw: Any, **options: Any) -> Pgtable:
    """Return the pgtable backend ``name`` (``"arm64"`` or ``"generic"``)."""
    if name == "generic":
        from .generic import GenericPgtable

        return GenericPgtable(hw, **options)
    if name == "arm64":
        from .arm64.pgtable import Arm64Pgtable

        return Arm64Pgtable(hw, **options)
    raise ModelUsageError(f"unknown arch {name!r}; expected one of {', '.join(ARCHES)}")
