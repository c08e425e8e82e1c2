"""CLI plumbing: --json everywhere, one-line errors with exit 2, plots.

The fork simulation is replaced by synthetic counters, so these tests do not
depend on the Machine (and take no time).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from contpte import cli
from contpte.cost import pricing
from contpte.workloads.scenario import Scenario


def _fake_run(sc: Scenario, kw: dict[str, object]) -> pricing.Measured:
    """Made-up counters for every priced simulation: the CLI plumbing, not the Machine."""
    c = {"pte.read": 65536, "pte.write": 98304, "rmap.pages": 65536, "rmap.op": 4096, "ref.op": 4096}
    if kw.get("contpte", True) and kw.get("batch_fork", True) is False:
        c |= {"tlbi.VALE1IS": 65536, "dvm.sync": 4096, "dsb.ish": 4096}
    return pricing.Measured(c, {"fork": 1, "exit": 1})


@pytest.fixture(autouse=True)
def synthetic_sims(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pricing, "_run", _fake_run)
    pricing.clear_cache()
    yield
    pricing.clear_cache()


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
    assert data["rows"][0]["fitted"] == {"before": False, "after": True}
    assert data["rows"][1]["role"] == "prediction"
    assert data["unmapped_counters"] == []


def test_bench_fork_table_beside_another_profile(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "bench", "fork", "--profile", "m2-vm", "--cpus", "1,2,4")
    assert rc == 0
    assert "m2-vm" in out and "-10.4%" not in out  # Altra's published figures only beside altra
    assert "(fit)" not in out and "every row is a prediction" in out


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_bench_fork_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"fork.{suffix}"
    rc, out, err = run(capsys, "bench", "fork", "--json", "--plot", str(target))
    assert rc == 0, err
    assert target.stat().st_size > 1000
    assert json.loads(out)["plot"] == str(target)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "fork", "--profile", "no-such"], "unknown profile"),
        (
            [
                "calibrate",
                "--profile",
                "x86",
                "--json",
                "--set",
                "rmap_update=1",
                "--set",
                "rmap_page=1",
                "--set",
                "pte_batch=1",
            ],
            "no free parameters",
        ),
        (["cost", "nowhere.scn"], "cannot read"),
        (["cost", "src/contpte/cost/scenarios/fitset/wis-fork.scn", "--variant", "x:frob=1"], "unknown key"),
        (["cost", "src/contpte/cost/scenarios/fitset/wis-fork.scn", "--cpus", "0"], "--cpus 0"),
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
    def boom(sc: object, kw: object) -> pricing.Measured:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(pricing, "_run", boom)
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
