"""``contpte oracle`` where the live oracle cannot run: one line, exit 3, as the README says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contpte import cli
from contpte.oracle import commands

README = Path(__file__).parents[3] / "README.md"


@pytest.fixture
def no_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "live_unavailable_reason", lambda: "the live oracle needs root (test)")


def test_library_without_root_says_it_once(no_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["oracle", "--library"])
    out, err = capsys.readouterr()
    assert rc == commands.EXIT_SKIPPED == 3
    assert out == ""
    assert err.splitlines() == [
        "contpte oracle: the live kernel oracle cannot run here: the live oracle needs root (test)"
    ]


def test_library_without_root_json(no_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["oracle", "--library", "--json"])
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert rc == 3 and data["status"] == "skipped" and "root" in data["reason"]
    assert len(data["scenarios"]) > 30


def test_a_malformed_file_is_still_exit_2(
    no_root: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.scn"
    bad.write_text("machine arch=arm64\np = spawn\np frobnicate\n")
    assert cli.main(["oracle", str(bad)]) == 2
    assert "bad.scn:3:" in capsys.readouterr().err


def test_readme_documents_the_exit_status() -> None:
    text = README.read_text()
    section = text.split("### `contpte oracle`", 1)[1].split("\n### ", 1)[0]
    assert re.search(r"3 when it cannot run here", section)
    assert "one line on stderr" in section
