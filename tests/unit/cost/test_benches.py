"""The benchmarks: shipped scenarios priced by the pricing code; plumbing on made-up counters,
kernel facts on small real simulations (who converts, how many faults), never times."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from contpte import cli
from contpte.cost.fitset import EXPERIMENTS, load_scenario
from contpte.cost.fork_bench import TABLE_CPUS, run_fork_bench
from contpte.cost.op_bench import BENCHES, bench_scenario, order_overrides, run_op_bench
from contpte.cost.pricing import simulate
from contpte.cost.profile import load_profile
from contpte.errors import ModelUsageError
from contpte.report import render_op_bench

ALTRA = load_profile("altra")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_fork_table_rows_roles_and_published_only_beside_altra(synthetic: None) -> None:
    res = run_fork_bench(ALTRA)
    assert [r.ncpus for r in res.rows] == list(TABLE_CPUS)
    roles = {r.ncpus: bool(r.published) for r in res.rows}
    assert roles == {1: True, 8: False, 16: False, 24: False, 32: True}
    one = res.rows[0]
    assert one.published["before"].value == -10.4 and one.published["after"].value == -5.2
    assert one.fitted == {"before": False, "after": True}  # the 'before' rows are kept out of the fit
    for name in ("m2-vm", "x86"):
        other = run_fork_bench(load_profile(name), (1, 32))
        assert not other.has_published and all(not r.published for r in other.rows)


def test_fork_table_flags_copies_beyond_the_cores(synthetic: None) -> None:
    res = run_fork_bench(load_profile("m2-vm"), (4, 8, 9, 16))
    assert [r.over_cores for r in res.rows] == [False, False, True, True]


def test_fork_table_before_regresses_with_copies_after_does_not(synthetic: None) -> None:
    res = run_fork_bench(ALTRA, (1, 32))
    assert res.rows[1].change["before"] < res.rows[0].change["before"] < 0
    assert res.rows[1].change["after"] == pytest.approx(res.rows[0].change["after"], abs=0.5)


def test_bench_fork_command(capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic: None) -> None:
    plot = tmp_path / "fork.svg"
    rc, out, err = run(capsys, "bench", "fork", "--plot", str(plot))
    assert rc == 0 and err == "" and plot.stat().st_size > 0
    assert "(out)" in out and "(fit)" in out and "prediction" in out
    rc, out, err = run(capsys, "bench", "fork", "--profile", "m2-vm", "--cpus", "1,16")
    assert rc == 0 and "published:" not in out and "16 *" in out and "8 cores" in out
    rc, out, _ = run(capsys, "bench", "fork", "--json", "--set", "dvm_sync=10")
    data = json.loads(out)
    assert data["profile"] == "altra" and [r["cpus"] for r in data["rows"]] == list(TABLE_CPUS)
    assert data["rows"][1]["role"] == "prediction" and data["rows"][0]["published_pct"]["before"] == -10.4


def test_bench_fork_help_explains_and_prints_the_default_as_a_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, _ = run(capsys, "bench", "fork", "--help")
    assert rc == 0
    assert "1,8,16,24,32" in out and "(1, 8" not in out
    text = " ".join(out.split())
    assert "One steady" in text and "fitset/wis" in text and "128 MiB" in text and "published" in text
    assert "--fit" not in out


def test_bench_scenarios_resize() -> None:
    sc = bench_scenario(BENCHES["dontneed"], nbytes=2 << 20)
    assert sum(1 for s in sc.steps if s.op == "madvise" and s.args["advice"] == "dontneed") == 512
    assert {s.args["length"] for s in sc.steps if s.op == "write"} == {2 << 20}
    munmap = bench_scenario(BENCHES["munmap"], nbytes=4 << 20)
    assert [s.args["length"] for s in munmap.steps if s.op == "munmap"] == [4 << 20]
    with pytest.raises(ModelUsageError, match="pattern"):
        bench_scenario(BENCHES["fault"], "sideways")


def test_op_bench_plumbing(capsys: pytest.CaptureFixture[str], synthetic: None) -> None:
    res = run_op_bench("dontneed", [ALTRA, load_profile("x86")], orders=(0, 4), nbytes=1 << 20)
    assert [(r.order, r.ops) for r in res.rows] == [(0, 256), (4, 256)]
    data = res.as_dict()
    assert data["profiles"] == ["altra", "x86"] and data["scenarios"] == {
        "-": "cost/scenarios/bench/dontneed.scn"
    }
    console = Console(file=io.StringIO(), width=120)
    render_op_bench(console, data)
    with pytest.raises(ModelUsageError, match="order 1"):
        run_op_bench("munmap", [ALTRA], orders=(1,))
    with pytest.raises(ModelUsageError, match="multiple of 2048K"):
        run_op_bench("munmap", [ALTRA], orders=(9,), nbytes=1 << 20)


@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_op_bench_commands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench: str, synthetic: None
) -> None:
    plot = tmp_path / f"{bench}.png"
    rc, out, err = run(
        capsys, "bench", bench, "--json", "--size", "1M", "--orders", "0,4", "--plot", str(plot)
    )
    assert rc == 0 and err == "", err
    data = json.loads(out)
    assert data["benchmark"] == bench and data["profiles"] == ["altra", "m2-vm", "x86"]
    assert [r["order"] for r in data["rows"]] == [0, 4] * len(BENCHES[bench].patterns)
    assert plot.stat().st_size > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "munmap", "--orders", "1"],
        ["bench", "munmap", "--orders", "x"],
        ["bench", "fault", "--pattern", "sideways"],
        ["bench", "exit", "--profile", "nowhere"],
        ["bench", "dontneed", "--size", "100K"],
        ["bench", "dontneed", "--set", "warp=1"],
    ],
)
def test_op_bench_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and "Traceback" not in err


# -- kernel facts on the real Machine (small regions) ---------------------------


def _sim(
    bench: str, order: int, contpte: bool = True, pattern: str = "", size: int = 1 << 20
) -> dict[str, int]:
    sc = bench_scenario(BENCHES[bench], pattern, size)
    over = {**order_overrides(order), "memory": 64 << 20} | ({} if contpte else {"contpte": False})
    return simulate(sc, over).counters


def test_dontneed_one_page_at_a_time_converts_once_per_block_on_64k() -> None:
    c = _sim("dontneed", 4)
    assert c["contpte.convert"] == 16 and c["contpte.unfold.clear_full_ptes"] == 16
    assert "contpte.convert" not in _sim("dontneed", 4, contpte=False)
    assert "contpte.convert" not in _sim("dontneed", 0)


def test_dontneed_on_2m_splits_the_pmd_then_converts_per_block() -> None:
    c = _sim("dontneed", 9, size=2 << 20)
    assert c["thp_split_pmd"] == 1 and c["contpte.convert"] == 32


@pytest.mark.parametrize("bench", ["munmap", "exit"])
def test_whole_range_teardown_does_not_unfold(bench: str) -> None:
    c = _sim(bench, 4)
    assert "contpte.convert" not in c and c["zap.ptes"] == 256


def test_fault_whole_folios_one_fault_per_folio_no_fold_attempt() -> None:
    c = _sim("fault", 4, pattern="folio")
    assert c["pgfault"] == 16 and "call.__contpte_try_fold" not in c and "contpte.fold" not in c


def test_fault_one_page_at_a_time_maps_order0_and_never_folds() -> None:
    for order in (0, 4):
        c = _sim("fault", order, pattern="page")
        assert c["pgfault"] == 2 * 256 and c["fault.wp_copy"] == 256  # a read fault, then a CoW write
        assert "contpte.fold" not in c and "contpte.convert" not in c


def test_the_fork_loop_steady_state_never_write_protects() -> None:
    """After the first fork the parent's PTEs are read-only: the measured fork write-protects nothing."""
    sc = load_scenario("wis-fork")
    before = simulate(sc, EXPERIMENTS["wis-fork"]["before"]).counters
    after = simulate(sc, EXPERIMENTS["wis-fork"]["after"]).counters
    assert "contpte.unfold.wrprotect_ptes" not in before and "call.contpte_wrprotect_ptes" not in after
    # the 'before' kernel (v6 patch 12) converts every block once per iteration, at the child's
    # exit; the child is written folded by set_ptes(nr=16), nothing folds (tests/scenarios/test_v6_fork_loop.py)
    assert "contpte.fold" not in before and before["contpte.unfold.clear_full_ptes"] == 2048
    assert "contpte.convert" not in after
