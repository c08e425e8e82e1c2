"""The operation benchmarks (munmap, dontneed, exit, fault): plumbing and structural facts.

The plumbing tests price synthetic counters (no Machine).  The structural
tests simulate small regions on the real Machine and assert facts of the
kernel's behaviour (who converts, how many faults), never times.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from contpte import cli
from contpte.cost import fork_bench, op_bench
from contpte.cost.model import KINDS
from contpte.cost.op_bench import (
    BENCHES,
    CONFIGS,
    ORDERS,
    PATTERNS,
    SimResult,
    folio_size,
    run_op_bench,
    simulate_op,
)
from contpte.cost.profile import REQUIRED_FIGURES, load_profile
from contpte.errors import ModelUsageError
from contpte.report import fmt_ns, fmt_ns_pair, render_op_bench

from .synthetic import counters_for

PROFILES = [load_profile(n) for n in ("altra", "m2-vm", "x86")]
KB = 1024


def synthetic(bench: str, config: str, order: int, pattern: str, nbytes: int | None, cpus: int) -> SimResult:
    """Counters shaped like dontneed one page at a time: contpte converts per block."""
    ops = 64
    base = {"pte.read": ops, "pte.write": ops, "tlbi.VALE1IS": ops, "dsb.ish": ops, "dsb.ishst": ops}
    if config == "contpte" and order >= 4:
        blocks = ops // 16
        extra = {
            "pte.write": base["pte.write"] + 32 * blocks,
            "tlbi.VALE1IS": base["tlbi.VALE1IS"] + 16 * blocks,
            "contpte.convert": blocks,
            "contpte.unfold.try_unfold_partial": blocks,
        }
        base = base | extra
    return SimResult(base, ops)


# --- plumbing (synthetic counters) ----------------------------------------------------------


def test_table_shape_rows_per_order_and_pattern() -> None:
    r = run_op_bench("fault", PROFILES, fit=False, counters=synthetic)
    assert [(row.pattern, row.order) for row in r.rows] == [(p, o) for p in PATTERNS for o in ORDERS]
    for row in r.rows:
        assert set(row.cells) == {"altra", "m2-vm", "x86"}
        assert set(row.counters) == set(CONFIGS)
        assert set(row.counters["baseline"]) == {name for name, _ in BENCHES["fault"].key_counters}
    assert r.fits == {} and r.unmapped == ()


def test_change_is_throughput_change_and_per_op() -> None:
    r = run_op_bench("dontneed", PROFILES[:1], fit=False, counters=synthetic)
    by_order = {row.order: row.cells["altra"] for row in r.rows}
    assert by_order[0].change == pytest.approx(0.0)
    for order in (4, 9):
        cell = by_order[order]
        assert cell.time_ns["contpte"] > cell.time_ns["baseline"]
        assert cell.change == pytest.approx(cell.time_ns["baseline"] / cell.time_ns["contpte"] - 1)
        assert cell.change < 0
        # time per op = time of the whole phase / ops
        assert cell.time_ns["baseline"] == pytest.approx(cell.breakdown["baseline"].total_ns / 64)


def test_syscalls_are_priced_per_op() -> None:
    altra = PROFILES[0]
    no_work = SimResult({}, 10)
    assert op_bench.op_time(BENCHES["dontneed"], no_work, altra, 1).total_ns == pytest.approx(
        10 * altra["syscall"]
    )
    assert op_bench.op_time(BENCHES["exit"], no_work, altra, 1).total_ns == 0
    assert "syscall" in KINDS and "syscall" in REQUIRED_FIGURES


def test_fit_calibrates_profiles_with_free_parameters() -> None:
    steps: list[str] = []
    r = run_op_bench("munmap", PROFILES, counters=synthetic, fork_source=counters_for, progress=steps.append)
    assert set(r.fits) == {"altra"}
    assert r.profiles[0].free_parameters and r.profiles[0] is not PROFILES[0]
    assert r.profiles[1] is PROFILES[1]
    # 6 fork simulations for the fit, then 2 configurations x 3 orders
    assert len(steps) == 6 + 6 and steps[0].startswith("fork")
    assert len(op_bench.fit_points(PROFILES, None)) == 6
    assert op_bench.fit_points(PROFILES, False) == []
    assert op_bench.fit_points(PROFILES[1:], None) == []


def test_json_is_serialisable_and_complete() -> None:
    r = run_op_bench("fault", PROFILES, fit=False, counters=synthetic, orders=(4,), patterns=("page",))
    d = json.loads(json.dumps(r.as_dict()))
    assert d["benchmark"] == "fault" and d["profiles"] == ["altra", "m2-vm", "x86"]
    assert d["workload"]["patterns"] == {"page": PATTERNS["page"]}
    (row,) = d["rows"]
    assert row["folio"] == "64K" and row["pattern"] == "page"
    assert set(row["profiles"]["x86"]["op_ns"]) == {"baseline", "contpte"}
    assert set(d["counters_per_run"]) == {"64K/page/baseline", "64K/page/contpte"}


def test_bad_arguments() -> None:
    with pytest.raises(ModelUsageError, match="munmap"):
        run_op_bench("sideways", PROFILES, counters=synthetic)
    with pytest.raises(ModelUsageError, match="order 1"):
        run_op_bench("munmap", PROFILES, orders=(1,), counters=synthetic)
    with pytest.raises(ModelUsageError, match="pattern"):
        run_op_bench("fault", PROFILES, patterns=("sideways",), counters=synthetic)
    with pytest.raises(ModelUsageError, match="pattern"):
        run_op_bench("munmap", PROFILES, patterns=("page",), counters=synthetic)
    with pytest.raises(ModelUsageError, match="multiple of 2048K"):
        simulate_op("munmap", "baseline", 9, nbytes=1 << 20)
    with pytest.raises(ModelUsageError, match="configuration"):
        simulate_op("munmap", "before", 4, nbytes=64 * KB)


def test_simulations_are_cached_for_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, int, str]] = []

    def fake(
        bench: str, config: str, order: int, pattern: str = "", nbytes: int | None = None, cpus: int = 1
    ) -> SimResult:
        calls.append((bench, config, order, pattern))
        return synthetic(bench, config, order, pattern, nbytes, cpus)

    monkeypatch.setattr(op_bench, "simulate_op", fake)
    op_bench.clear_cache()
    try:
        run_op_bench("fault", PROFILES[1:], fit=False)
        run_op_bench("fault", PROFILES[1:], fit=False)
        first = op_bench.op_counters("fault", "contpte", 4, "page")
        first.counters["pte.read"] = -1  # a copy: the cache is not corrupted
        assert op_bench.op_counters("fault", "contpte", 4, "page").counters["pte.read"] > 0
    finally:
        op_bench.clear_cache()
    assert len(calls) == len(set(calls)) == len(PATTERNS) * len(ORDERS) * len(CONFIGS)


def test_folio_size() -> None:
    assert [folio_size(o) for o in (0, 2, 4, 9)] == ["4K", "16K", "64K", "2M"]


def test_report_renders_plain_data() -> None:
    r = run_op_bench("fault", PROFILES, fit=False, counters=synthetic)
    buf = io.StringIO()
    render_op_bench(Console(file=buf, width=200), r.as_dict())
    text = buf.getvalue()
    for word in (
        "pattern page",
        "pattern folio",
        "altra",
        "m2-vm",
        "x86",
        "4: 64K",
        "9: 2M",
        "fold attempts",
    ):
        assert word in text
    assert fmt_ns(412.7) == "413 ns" and fmt_ns(1271) == "1.27 \u00b5s"
    assert fmt_ns_pair(999, 1271) == "0.999 \u2192 1.27 \u00b5s"


# --- structural facts (the real Machine, small regions) ----------------------------------------


def counts(bench: str, config: str, order: int, pattern: str = "", nbytes: int = 256 * KB) -> SimResult:
    return simulate_op(bench, config, order, pattern, nbytes=nbytes)


def test_dontneed_one_page_at_a_time_converts_once_per_block_on_64k() -> None:
    blocks = 256 * KB // (64 * KB)
    on = counts("dontneed", "contpte", 4)
    off = counts("dontneed", "baseline", 4)
    assert on.ops == off.ops == 256 * KB // (4 * KB)
    assert on.counters.get("contpte.convert", 0) == blocks
    assert on.counters.get("contpte.unfold", 0) == blocks
    assert on.counters.get("contpte.fold", 0) == 0
    assert off.counters.get("contpte.convert", 0) == 0
    assert on.counters.get("tlbi.total", 0) > off.counters.get("tlbi.total", 0)


def test_dontneed_on_base_pages_never_converts() -> None:
    for config in CONFIGS:
        assert counts("dontneed", config, 0).counters.get("contpte.convert", 0) == 0


def test_dontneed_on_2m_splits_the_pmd_then_converts_per_block() -> None:
    on = counts("dontneed", "contpte", 9, nbytes=2 << 20)
    off = counts("dontneed", "baseline", 9, nbytes=2 << 20)
    assert on.counters.get("thp_split_pmd", 0) == off.counters.get("thp_split_pmd", 0) == 1
    assert on.counters.get("contpte.convert", 0) == (2 << 20) // (64 * KB)
    assert off.counters.get("contpte.convert", 0) == 0


@pytest.mark.parametrize("bench", ["munmap", "exit"])
def test_whole_range_teardown_does_not_unfold(bench: str) -> None:
    on = counts(bench, "contpte", 4)
    off = counts(bench, "baseline", 4)
    assert on.ops == off.ops == 1
    assert on.counters.get("contpte.convert", 0) == off.counters.get("contpte.convert", 0) == 0
    assert on.counters.get("tlbi.total", 0) == off.counters.get("tlbi.total", 0)
    assert on.counters.get("pte.write", 0) == off.counters.get("pte.write", 0) == 256 * KB // (4 * KB)


def test_munmap_of_pmd_mapped_thp_writes_no_pte() -> None:
    for config in CONFIGS:
        c = counts("munmap", config, 9, nbytes=2 << 20).counters
        assert c.get("pte.write", 0) == 0 and c.get("contpte.convert", 0) == 0


def test_fault_whole_folios_one_fault_per_folio_no_fold_attempt() -> None:
    pages = 256 * KB // (4 * KB)
    for config in CONFIGS:
        c = counts("fault", config, 4, "folio")
        assert c.ops == pages
        assert c.counters.get("pgfault", 0) == pages // 16
        # set_ptes(nr=16) on an aligned block sets PTE_CONT directly: no fold, no conversion
        for name in ("call.__contpte_try_fold", "contpte.fold", "contpte.convert"):
            assert c.counters.get(name, 0) == 0, (config, name)
    assert counts("fault", "contpte", 0, "folio").counters.get("pgfault", 0) == pages


def test_fault_one_page_at_a_time_maps_order0_and_never_folds() -> None:
    pages = 256 * KB // (4 * KB)
    for order in (0, 4):
        for config in CONFIGS:
            c = counts("fault", config, order, "page").counters
            assert c.get("pgfault", 0) == 2 * pages  # a read fault, then a CoW write fault, per page
            assert c.get("fault.wp_copy", 0) == pages
            assert c.get("contpte.fold", 0) == 0 and c.get("contpte.convert", 0) == 0


# --- the commands -----------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def synthetic_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        fork_bench, "simulate_fork", lambda config, cpus, nbytes=0: counters_for(config, cpus)
    )
    fork_bench.clear_cache()


@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_command_json(capsys: pytest.CaptureFixture[str], bench: str, synthetic_fork: None) -> None:
    rc, out, err = run(capsys, "bench", bench, "--json", "--size", "128K", "--orders", "0,4")
    assert rc == 0 and err == "", err
    data = json.loads(out)
    assert data["benchmark"] == bench and data["profiles"] == ["altra", "m2-vm", "x86"]
    assert [r["order"] for r in data["rows"]] == [0, 4] * len(BENCHES[bench].patterns)
    assert set(data["fit"]) == {"altra"}


def test_command_table_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "dontneed.svg"
    rc, out, err = run(
        capsys,
        "bench",
        "dontneed",
        "--size",
        "128K",
        "--orders",
        "4",
        "--profile",
        "m2-vm",
        "--no-fit",
        "--plot",
        str(plot),
    )
    assert rc == 0, err
    assert "m2-vm" in out and "conversions" not in err and plot.stat().st_size > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "munmap", "--orders", "1"],
        ["bench", "munmap", "--orders", "x"],
        ["bench", "fault", "--pattern", "sideways"],
        ["bench", "exit", "--profile", "nowhere"],
        ["bench", "dontneed", "--size", "100K"],
    ],
)
def test_command_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, _, err = run(capsys, *argv, "--no-fit")
    assert rc == 2 and "Traceback" not in err
