"""The CLI behaves as a Unix tool: --version, --help with exit codes, one-line errors, pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contpte import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_version_names_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"contpte {version('contpte')} (models Linux 6.12)"


def test_run_help_documents_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "run", "--help")
    assert rc == 0
    status = out.split("exit status:", 1)[1]
    for code in ("0 ", "1 ", "2 "):
        assert f"\n  {code}" in status
    assert "missing or malformed scenario file" in status


@pytest.mark.parametrize("command", ["fuzz", "check"])
def test_other_commands_document_the_exit_status(capsys: pytest.CaptureFixture[str], command: str) -> None:
    rc, out, _ = run(capsys, command, "--help")
    assert rc == 0 and "exit status:" in out


def test_a_missing_scenario_file_names_no_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "run", "/no/such/file.scn")
    assert rc == 2 and out == ""
    assert err == "contpte: error: /no/such/file.scn: cannot read the file: No such file or directory\n"


@pytest.mark.parametrize(
    "argv", [["fuzz", "--steps", "-5"], ["run"], [], ["nope"], ["run", "x.scn", "--arch", "riscv"]]
)
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "error:" in err and "--help" in err, err


def test_piping_into_head_exits_quietly(tmp_path: Path) -> None:
    # Enough output to fill the pipe long after head has gone.
    steps = "".join("p read buf 16M\n" for _ in range(40))
    scn = tmp_path / "big.scn"
    scn.write_text(
        "machine arch=generic memory=64M\np = spawn\nbuf = p mmap 16M rw private|anonymous\np write buf 16M 1\n"
        + steps
    )
    code = "import sys; from contpte.cli import main; sys.exit(main())"
    r = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{sys.executable}' -c '{code}' run '{scn}' --state | head -n 1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.stderr == ""
    assert r.stdout.count("\n") == 1
    assert r.returncode == cli.EXIT_BROKEN_PIPE == 141
