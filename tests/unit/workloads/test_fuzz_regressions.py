"""Reproducers written by `contpte fuzz` for what it found (each fixed): they must now pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from contpte.workloads.scenario import parse_file, run

FILES = sorted((Path(__file__).parent / "regressions").glob("*.scn"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_reproducer_passes(path: Path, arch: str) -> None:
    outs = run(parse_file(str(path)), arch=arch)
    assert [o.failed for o in outs] == [None] * len(outs)
