"""Cost tests start with an empty run cache; ``synthetic`` swaps the Machine for made-up counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contpte.cost import pricing

from .synthetic import fake_run


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    pricing.clear_cache()
    yield
    pricing.clear_cache()


@pytest.fixture
def synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulations return made-up counters (milliseconds instead of minutes)."""
    monkeypatch.setattr(pricing, "_run", fake_run)
