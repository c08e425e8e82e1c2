"""contpte cost and contpte calibrate: output, JSON as specified, bad input one line exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contpte import cli

WIS = "src/contpte/cost/scenarios/fitset/wis-fork.scn"
ROOT = Path(__file__).resolve().parents[3]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_cost_json_is_exactly_the_specified_shape(
    capsys: pytest.CaptureFixture[str], synthetic: None
) -> None:
    rc, out, err = run(
        capsys,
        "cost",
        WIS,
        "--json",
        "--cpus",
        "32",
        "--variant",
        "base:batch_fork=false,batch_zap=false,contpte=false",
        "--variant",
        "before:batch_fork=false,batch_zap=false",
        "--set",
        "dvm_sync=2000",
    )
    assert rc == 0 and err == "", err
    data = json.loads(out)
    assert set(data) == {"profile", "cpus", "variants"}
    assert data["profile"] == "altra" and data["cpus"] == 32
    assert [set(v) for v in data["variants"]] == [
        {"name", "time_ns", "change_pct", "breakdown", "counters"}
    ] * 2
    base, before = data["variants"]
    assert base["change_pct"] == 0 and before["change_pct"] > 0
    assert before["breakdown"]["dvm_sync"] > 0 and before["counters"]["tlbi.VALE1IS"] > 0


def test_cost_table(capsys: pytest.CaptureFixture[str], synthetic: None) -> None:
    rc, out, _ = run(capsys, "cost", WIS, "--variant", "base:contpte=false", "--variant", "on:")
    assert rc == 0
    assert "cost term" in out and "total" in out and "change vs base" in out and "counters of" in out
    assert "on: the header as is" in out
    rc, out, _ = run(capsys, "cost", WIS)
    assert rc == 0 and "wis-fork" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["cost", WIS, "--variant", "before"], "NAME:key=value"),
        (["cost", WIS, "--variant", "a:", "--variant", "a:"], "given twice"),
        (["cost", WIS, "--profile", "nowhere"], "unknown profile"),
        (["cost", WIS, "--set", "dvm_sync"], "FIGURE=VALUE"),
        (["cost", WIS, "--set", "warp=3"], "no figure 'warp'"),
        (["cost", "README.md"], "README.md:"),
        (["calibrate", "--profile", "altra", "--write", "x.toml", "--profile", "altra,x86"], "exactly one"),
        (["calibrate", "--profile", "no-such"], "unknown profile"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("contpte: error: ") and needle in err, err


def test_calibrate_reports_every_figure(
    capsys: pytest.CaptureFixture[str], synthetic: None, tmp_path: Path
) -> None:
    plot = tmp_path / "fit.png"
    rc, out, err = run(capsys, "calibrate", "--json", "--plot", str(plot))
    assert rc == 0 and err == "", err
    data = json.loads(out)
    assert [p["profile"] for p in data["profiles"]] == ["altra", "m2-vm", "x86"]
    altra = data["profiles"][0]
    assert len(altra["figures"]) == 10 and {p["name"] for p in altra["params"]} >= {
        "tlbi_va_bcast",
        "dvm_sync",
    }
    kept = [f["key"] for f in altra["figures"] if not f["in_fit"]]
    assert kept == ["fork-table before@1", "fork-table before@32"]
    assert all({"published", "model", "residual", "met", "factor"} <= set(f) for f in altra["figures"])
    assert plot.stat().st_size > 1000


def test_calibrate_table_and_write(
    capsys: pytest.CaptureFixture[str], synthetic: None, tmp_path: Path
) -> None:
    target = tmp_path / "fitted.toml"
    rc, out, _ = run(capsys, "calibrate", "--profile", "x86", "--write", str(target))
    assert rc == 0
    assert "every fit-set figure" in out and "residual" in out and "x86 fork 64K change" in out
    from contpte.cost.profile import load_profile

    fitted = load_profile(str(target))
    assert fitted.name == "x86-fitted" and fitted.extends == "x86"
    assert set(fitted.free_parameters) == {"rmap_update", "rmap_page", "pte_batch"}


def test_calibrate_no_fit(capsys: pytest.CaptureFixture[str], synthetic: None) -> None:
    rc, out, _ = run(capsys, "calibrate", "--profile", "m2-vm", "--no-fit")
    assert rc == 0 and "calibration of m2-vm" not in out and "(no fit)" in out


def test_calibrate_include_excluded_fits_every_figure(
    capsys: pytest.CaptureFixture[str], synthetic: None
) -> None:
    """--include-excluded puts the fork table's 'before' rows into the fit (to see what they do)."""
    rc, out, _ = run(capsys, "calibrate", "--json", "--profile", "altra", "--no-fit", "--include-excluded")
    assert rc == 0
    (altra,) = json.loads(out)["profiles"]
    assert len(altra["figures"]) == 10 and all(f["in_fit"] for f in altra["figures"])
    rc, out, _ = run(capsys, "calibrate", "--json", "--profile", "altra", "--include-excluded")
    assert rc == 0
    with_all = {p["name"]: p["fitted"] for p in json.loads(out)["profiles"][0]["params"]}
    rc, out, _ = run(capsys, "calibrate", "--json", "--profile", "altra")
    without = {p["name"]: p["fitted"] for p in json.loads(out)["profiles"][0]["params"]}
    assert with_all.keys() == without.keys() and with_all != without
