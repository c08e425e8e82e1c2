"""Fixtures for the arm64 backend tests (arm64kit.py: the backend on a real Hardware)."""

from __future__ import annotations

import pytest
from arm64kit import Env


@pytest.fixture
def env() -> Env:
    return Env()


@pytest.fixture
def make_env() -> type[Env]:
    return Env
