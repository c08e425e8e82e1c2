"""The hardware: descriptor memory, TLBs, walker, TLB maintenance, rule checks.

Knows nothing of Linux.  Arm ARM vocabulary throughout.  Import the
modules themselves (``contpte.hw.hardware``, ``contpte.hw.tables``, ...).
"""
