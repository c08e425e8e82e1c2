"""CLI plumbing: --json everywhere, one-line errors with exit 2, plots.

The fork simulation is replaced by synthetic counters, so these tests do not
depend on the Machine (and take no time).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contpte import cli
from contpte.cost import fork_bench

SYNTH = {
    "baseline": {"pte.read": 65536, "pte.write": 98304, "rmap.pages": 65536, "rmap.op": 4096, "ref.op": 4096},
}
SYNTH["after"] = SYNTH["baseline"] | {"pte.read": 163840, "pte.write": 131072}
SYNTH["before"] = SYNTH["after"] | {"pte.write": 229376, "tlbi.VALE1IS": 65536, "dsb.ish": 4096}


@pytest.fixture(autouse=True)
def synthetic_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(config: str, cpus: int, nbytes: int = fork_bench.FORK_BYTES) -> dict[str, int]:
        return dict(SYNTH[config])

    monkeypatch.setattr(fork_bench, "simulate_fork", fake)
    fork_bench.clear_cache()
    yield
    fork_bench.clear_cache()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_bench_fork_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "bench", "fork", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["benchmark"] == "fork" and data["profile"] == "altra"
    assert [r["cpus"] for r in data["rows"]] == [1, 8, 16, 24, 32]
    assert data["rows"][0]["published_pct"] == {"before": -10.4, "after": -5.2}
    assert data["rows"][1]["role"] == "prediction"
    assert set(data["fit"]["params"]) == {"tlbi_bcast_per_core", "tlbi_contention_per_core"}
    assert data["unmapped_counters"] == []


def test_bench_fork_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "bench", "fork", "--profile", "m2-vm", "--cpus", "1,2,4")
    assert rc == 0
    assert "m2-vm" in out and "-10.4%" in out  # the published figures beside the 1-CPU row


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_bench_fork_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"fork.{suffix}"
    rc, out, err = run(capsys, "bench", "fork", "--json", "--plot", str(target))
    assert rc == 0, err
    assert target.stat().st_size > 1000
    assert json.loads(out)["plot"] == str(target)


def test_calibrate_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "calibrate", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert [t["label"] for t in data["targets"]] == ["before@1", "after@1", "before@32", "after@32"]
    assert all("residual_pct" in t for t in data["targets"])


def test_calibrate_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "calibrate")
    assert rc == 0 and "tlbi_bcast_per_core" in out and "residual" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "fork", "--profile", "no-such"], "unknown profile"),
        (["calibrate", "--profile", "x86", "--json"], "no free parameters"),
        (["bench", "fork", "--plot", "out.gif"], "png, svg"),
    ],
)
def test_model_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("contpte: error: ") and needle in err
    assert "Traceback" not in err


def test_oserror_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(config: str, cpus: int, nbytes: int = 0) -> dict[str, int]:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(fork_bench, "simulate_fork", boom)
    fork_bench.clear_cache()
    rc, _, err = run(capsys, "bench", "fork", "--json")
    assert rc == 2 and err.count("\n") == 1 and "Invalid argument" in err


@pytest.mark.parametrize(
    "argv", [["bench", "fork", "--cpus", "0"], ["bench", "fork", "--cpus", "x"], ["nope"], []]
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "bench" in out and "calibrate" in out


def test_every_command_has_json() -> None:
    parser = cli.build_parser()
    import argparse

    def leaves(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [p]
        return [leaf for s in subs for child in s.choices.values() for leaf in leaves(child)]

    for leaf in leaves(parser):
        assert any("--json" in a.option_strings for a in leaf._actions), leaf.prog


def test_no_progress_bar_without_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "bench", "fork")
    assert rc == 0 and err == ""
