"""The kernel version whose behaviour the model follows, in one constant."""

KERNEL_VERSION = "6.12"
"""Mainline Linux release modelled unless an option selects a variant."""

__all__ = ["KERNEL_VERSION"]
