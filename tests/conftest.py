"""Shared fixtures.

``mthp_sysfs`` is for live-kernel tests (marker ``live``): it lets a test set
the kernel's multi-size THP policy and always puts the original settings back.
The logic is the library's ``contpte.oracle.sysfs.ThpSysfs`` (the oracle uses
it too), which also serialises the users of the global policy machine-wide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

MthpSetter = Callable[[str, str], None]


@pytest.fixture
def mthp_sysfs() -> Iterator[MthpSetter]:
    """Yield ``set(size, value)`` for the live kernel's THP policy; restore on exit.

    ``size`` is ``"64K"``, ``"64kB"``, ``"2M"`` or ``"thp"`` (the top level).
    Saves the top-level ``enabled`` and every ``hugepages-*kB/enabled`` first,
    and writes them all back in ``finally`` (which pytest also runs after a
    KeyboardInterrupt); an ``atexit`` hook covers a process that dies between.
    Skips, saying why, when the files are absent, we are not root, or they are
    not writable.
    """
    # imported here: the oracle imports every layer, and a layer's unit
    # tests must run while the layers above it do not import (issue 12)
    from contpte.oracle.sysfs import ThpSysfs

    thp = ThpSysfs(pin_nondeterminism=False)
    reason = thp.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with thp:
        yield thp.set


# Simulations priced by the cost model are cached on disk for users; the test
# suite never reads or writes that cache (every test sees the model it tests).
os.environ["CONTPTE_SIM_CACHE"] = "off"
