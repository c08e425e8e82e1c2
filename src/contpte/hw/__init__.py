"""The hardware: descriptor memory, TLBs, walker, TLB maintenance, rule checks.

Knows nothing of Linux.  Arm ARM vocabulary throughout.
"""

from __future__ import annotations

from .checker import RULES, RuleChecker
from .features import PRESETS, CpuFeatures, preset
from .format import DescriptorFormat, FlatFormat, VmsaFormat, make_format
from .hardware import Hardware, HwFault
from .memory import PhysMemory
from .tables import AddressSpace, PteTable, StoreObserver
from .tlb import Tlb, TlbEntry

__all__ = [
    "Hardware",
    "HwFault",
    "CpuFeatures",
    "PRESETS",
    "preset",
    "DescriptorFormat",
    "VmsaFormat",
    "FlatFormat",
    "make_format",
    "PhysMemory",
    "AddressSpace",
    "PteTable",
    "StoreObserver",
    "Tlb",
    "TlbEntry",
    "RuleChecker",
    "RULES",
]
