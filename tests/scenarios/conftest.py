"""Fixtures for the kernel-visible semantics scenarios."""

from __future__ import annotations

import pytest
from scenario_util import ARCHES, FOLIO_SIZES, Setup


@pytest.fixture(params=ARCHES)
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=FOLIO_SIZES)
def setup(request: pytest.FixtureRequest, arch: str) -> Setup:
    return Setup(arch, str(request.param))
