"""Fixtures for the arm64 backend tests (doubles in arm64_fakes.py)."""

from __future__ import annotations

import pytest
from arm64_fakes import Env


@pytest.fixture
def env() -> Env:
    return Env()


@pytest.fixture
def make_env() -> type[Env]:
    return Env
