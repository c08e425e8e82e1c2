"""The human output of ``contpte run``, ``fuzz`` and ``check``."""

from __future__ import annotations

import pytest

from contpte import cli
from contpte.workloads.catalog import check_bug


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_check_bugs_wraps_long_messages_instead_of_cutting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    bug = "fork_no_parent_tlb_flush"
    full = check_bug(bug).message
    assert full is not None and len(full) > 200 and "ptes=[" in full
    assert cli.main(["check", "--bugs", "--only", bug]) == 0
    out = capsys.readouterr().out
    assert _norm(full) in _norm(out)  # every PTE value, whole
    assert all(len(line) <= 80 for line in out.splitlines()), out
    ptes = full[full.index("ptes=[") + 6 : -1].split()
    assert len(ptes) == 2 and all(pte in out for pte in ptes)  # no PTE cut in the middle
