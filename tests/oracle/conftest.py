"""Live-kernel oracle tests: skip, saying why, where no live kernel can be used."""

from __future__ import annotations

import pytest

from contpte.oracle import live_unavailable_reason


@pytest.fixture(scope="session")
def live_kernel() -> None:
    """Skip unless this machine's kernel can be driven and inspected (root, sysfs, pagemap, kpageflags)."""
    reason = live_unavailable_reason()
    if reason is not None:
        pytest.skip(f"live kernel oracle unavailable: {reason}")
