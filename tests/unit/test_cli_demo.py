"""``contpte demo``: a process with 64K-folio anonymous memory forks (small sizes here)."""

from __future__ import annotations

import json

import pytest

from contpte import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_demo_json(capsys: pytest.CaptureFixture[str], arch: str) -> None:
    rc, out, err = run(capsys, "demo", "--size", "1M", "--arch", arch, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["arch"] == arch and data["size_bytes"] == 1 << 20
    fork = data["fork"]
    # 1 MiB = 16 folios of 64K: every PTE copied, in one batch per folio.
    assert fork["fork.ptes"] == 256
    assert fork["fork.batch"] == 16
    assert fork["pte.write"] >= 256
    assert fork["folio.alloc"] == 0  # fork copies nothing
    assert data["setup"]["folio.alloc"] == 16 and data["folios_mapped"] == 16
    assert fork["check.runs"] >= 1
    assert ("contpte.fold" in fork) == (arch == "arm64")


def test_demo_arm64_keeps_blocks_folded(capsys: pytest.CaptureFixture[str]) -> None:
    """The batched fork write-protects whole contiguous blocks: no unfold."""
    rc, out, _ = run(capsys, "demo", "--size", "1M", "--arch", "arm64", "--json")
    assert rc == 0
    assert json.loads(out)["fork"]["contpte.unfold"] == 0


def test_demo_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "demo", "--size", "512K", "--no-check")
    assert rc == 0, err
    assert "PTEs copied" in out and "fork.batch" in out and "validator runs" in out
    assert "512K" not in err


def test_demo_default_arch_works(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "demo", "--size", "256K", "--json")
    assert rc == 0, err
    assert json.loads(out)["arch"] in ("arm64", "generic")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--size", "100K"], "multiple of 64K"),
        (["--size", "lots"], "--size"),
        (["--cpus", "0"], "--cpus"),
    ],
)
def test_demo_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    rc, out, err = run(capsys, "demo", *argv)
    assert rc == 2
    assert out == ""
    assert err.startswith("contpte: error:") and err.count("\n") == 1 and needle in err


def test_demo_unknown_arch_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "demo", "--arch", "riscv")
    assert rc == 2 and "invalid choice" in err


def test_demo_reports_contiguous_ptes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "demo", "--size", "1M", "--arch", "arm64", "--json")
    assert rc == 0
    cont = json.loads(out)["cont_ptes_after_fork"]
    assert cont["parent"] == 256  # every block stays folded in the parent
    assert 0 <= cont["child"] <= 256
