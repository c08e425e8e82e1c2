"""The counter deltas of named operations must match their expected-cost files.

The files live in ``expected_costs/`` and are generated; when a change is
meant to alter a cost, regenerate them (``python -m
tests.scenarios.expected_costs --update``) and review the diff.
"""

from __future__ import annotations

import pytest
from expected_costs import OPERATIONS, compute, diff_text, load

REGENERATE = "regenerate (after review) with: python -m tests.scenarios.expected_costs --update"


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_expected_costs(name: str) -> None:
    got = compute(name)
    text = diff_text(name, load(name), got)
    assert not text, f"{text}\n{REGENERATE}"


def test_no_stale_files() -> None:
    """Every expected-cost file belongs to a named operation."""
    from expected_costs import DIR

    stale = sorted(p.stem for p in DIR.glob("*.json") if p.stem not in OPERATIONS)
    assert not stale, f"expected-cost files without an operation: {stale}"
