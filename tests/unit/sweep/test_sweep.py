"""``contpte sweep`` and ``contpte report``: the grid, the database, re-runs, interruption, bad input.

The engines' agreement (local pool against a local Ray cluster) is in
test_sweep_ray.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contpte import cli
from contpte.sweep import Store, load_spec, read_runs, run_sweep
from contpte.sweep.engine import plan, run_task
from contpte.sweep.store import COLUMNS

SPEC = """\
name = "tiny"
workloads = ["allocator-holes", "redis-bgsave"]
kernels = ["6.12", "7.2"]
variants = ["mainline", "contpte-off"]
profiles = ["altra"]
cpus = [1, 8]

[params.allocator-holes]
arena = "512K"
rounds = 1

[params.redis-bgsave]
heap = "1M"
chunks = 2
"""
RUNS = 2 * 2 * 2 * 1 * 2


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(SPEC)
    return p


def test_spec_grid(spec_file: Path) -> None:
    spec = load_spec(str(spec_file))
    assert spec.name == "tiny" and spec.size == RUNS
    assert [v.name for v in spec.variants] == ["mainline", "contpte-off"]
    assert spec.workloads[1].params == {"heap": 1 << 20, "chunks": 2, "write_every": 64 << 10}
    tasks, skipped = plan(spec, set())
    assert skipped == 0 and len(tasks) == RUNS // 2 and all(t.cpus == (1, 8) for t in tasks)


def test_sweep_stores_one_row_per_run_and_reruns_skip(spec_file: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.duckdb")
    first = run_sweep(load_spec(str(spec_file)), db, jobs=2)
    assert (first.runs, first.skipped, first.ran) == (RUNS, 0, RUNS)
    again = run_sweep(load_spec(str(spec_file)), db, jobs=2)
    assert (again.skipped, again.ran, again.tasks) == (RUNS, 0, 0)
    rows = read_runs(db)
    assert len(rows) == RUNS and len({r["run_id"] for r in rows}) == RUNS
    assert set(rows[0]) == {c for c, _ in COLUMNS}
    by = {(r["workload"], r["kernel"], r["variant"], r["cpus"]): r for r in rows}
    # The full counters and the totals, queryable: a 4K MADV_DONTNEED in each of the
    # 8 folded 64K blocks unfolds it with contpte on, never with it off.
    assert by[("allocator-holes", "6.12", "mainline", 1)]["counters"]["contpte.unfold"] == 8
    assert "contpte.unfold" not in by[("allocator-holes", "6.12", "contpte-off", 1)]["counters"]
    # More copies at once stretch broadcast TLB maintenance: the same counts cost more.
    one, eight = by[("redis-bgsave", "7.2", "mainline", 1)], by[("redis-bgsave", "7.2", "mainline", 8)]
    assert one["counters"] == eight["counters"] and eight["time_ns"] > one["time_ns"]
    assert one["params"] == {"heap": 1 << 20, "chunks": 2, "write_every": 64 << 10}


def test_changed_parameters_are_new_runs(spec_file: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.duckdb")
    run_sweep(load_spec(str(spec_file)), db, jobs=1)
    spec_file.write_text(SPEC.replace("rounds = 1", "rounds = 2"))
    res = run_sweep(load_spec(str(spec_file)), db, jobs=1)
    assert (res.skipped, res.ran) == (RUNS // 2, RUNS // 2)


def test_interrupted_sweep_keeps_what_completed(spec_file: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.duckdb")
    seen: list[str] = []

    def stop_after_first_task(label: str) -> None:
        seen.append(label)
        if len(seen) == 2:  # both runs of the first task are stored
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_spec(str(spec_file)), db, jobs=1, progress=stop_after_first_task)
    assert len(read_runs(db)) == 2
    res = run_sweep(load_spec(str(spec_file)), db, jobs=1)
    assert (res.skipped, res.ran) == (2, RUNS - 2)


def test_a_failed_insert_writes_nothing(spec_file: Path, tmp_path: Path) -> None:
    tasks, _ = plan(load_spec(str(spec_file)), set())
    rows = run_task(tasks[0])
    for r in rows:
        r.update(engine="pool", finished_at=None)
    broken = [rows[0], {k: v for k, v in rows[1].items() if k != "time_ns"}]
    with Store(tmp_path / "runs.duckdb") as db:
        with pytest.raises(KeyError):
            db.insert(broken)
        assert db.done() == set()
        assert db.insert(rows) == 2 and len(db.done()) == 2


def test_cli_sweep_and_report(spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.duckdb"
    assert cli.main(["sweep", str(spec_file), "--db", str(db), "-j", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["runs"], data["ran"], data["engine"]) == (RUNS, RUNS, "pool")
    html = tmp_path / "report.html"
    assert cli.main(["report", str(db), "-o", str(html)]) == 0
    text = html.read_text()
    # The overview and one figure per workload, embedded; the summary and one table per workload.
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', text)) == 3
    assert text.count("<table>") == 3
    assert "allocator-holes" in text and "contpte-off" in text
    assert cli.main(["report", str(tmp_path / "none.duckdb"), "-o", str(html)]) == 2
    assert "no such sweep database" in capsys.readouterr().err


BAD = {
    "toml": ('workloads = ["redis-bgsave"\nkernels = ["6.12"]\n', ":2:1: not valid TOML"),
    "key": (SPEC.replace("cpus = [1, 8]", "cpus = [1, 8]\nthreads = 2"), ": threads: unknown key"),
    "workload": (SPEC.replace('"redis-bgsave"]', '"redis"]'), ":2: workloads: unknown workload 'redis'"),
    "kernel": (SPEC.replace('"7.2"]', '"7.9"]'), ":3: kernels: unknown kernel version '7.9'"),
    "variant": (
        SPEC.replace('"contpte-off"]', '"contpte-of"]'),
        ":4: variants: unknown variant 'contpte-of'",
    ),
    "profile": (SPEC.replace('["altra"]', '["altro"]'), ":5: profiles: unknown profile 'altro'"),
    "cpus": (SPEC.replace("[1, 8]", "[1, 0]"), ":6: cpus: expected a list of positive integers"),
    "param": (SPEC.replace("rounds = 1", "round = 1"), ":10: params.allocator-holes:"),
    "variant key": (
        SPEC.replace('"contpte-off"]', '"x"]') + "\n[variant.x]\ncontpt = false\n",
        ":17: variant.x: machine: unknown key 'contpt'",
    ),
    "variant value": (
        SPEC.replace('"contpte-off"]', '"x"]') + '\n[variant.x]\n"mthp.64K" = "sometimes"\n',
        ":17: variant.x: machine mthp.64K=: expected always",
    ),
    "variant kernel": (
        SPEC.replace('"contpte-off"]', '"x"]') + '\n[variant.x]\nkernel = "7.2"\n',
        ":17: variant.x.kernel: not a variant key",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_spec_is_one_line_exit_2_and_no_database(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD[case]
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    db = tmp_path / "bad.duckdb"
    assert cli.main(["sweep", str(spec), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"contpte: error: {spec}") and message in err, err
    assert not db.exists()


def test_the_example_spec_is_valid() -> None:
    spec = load_spec(str(Path(__file__).parents[3] / "examples" / "sweep.toml"))
    assert spec.size == 5 * 2 * 3 * 2 * 2 == 120
    assert spec.variants[2].overrides == {"batch_fork": False, "batch_zap": False}


def test_report_of_one_variant_has_no_changes(tmp_path: Path) -> None:
    from contpte.report.html import write_html_report

    spec = tmp_path / "one.toml"
    spec.write_text(SPEC.replace('"mainline", "contpte-off"', '"mainline"').replace(', "7.2"', ""))
    db = str(tmp_path / "one.duckdb")
    run_sweep(load_spec(str(spec)), db, jobs=1)
    text = write_html_report(tmp_path / "one.html", read_runs(db), source=db).read_text()
    assert "One variant only" in text and text.count("data:image/png;base64,") == 2


def test_a_scenario_file_is_a_workload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cow.scn").write_text(
        "machine arch=arm64 memory=64M mthp.64K=always\n"
        "p = spawn\nbuf = p mmap 256K rw private|anonymous\np write buf 256K 1\n"
        "measure begin\nc = p fork\nc write buf 4K 2\nmeasure end\n"
    )
    spec = tmp_path / "scn.toml"
    spec.write_text(
        'workloads = ["cow.scn"]\nkernels = ["6.12"]\nvariants = ["mainline"]\nprofiles = ["x86"]\ncpus = [2]\n'
    )
    db = str(tmp_path / "scn.duckdb")
    assert run_sweep(load_spec(str(spec)), db, jobs=1).ran == 1
    (row,) = read_runs(db)
    assert (row["workload"], row["profile"], row["steps"]) == ("cow", "x86", {"fork": 1, "write": 1})
    assert row["counters"]["page.copy"] == 1
    (tmp_path / "cow.scn").write_text("machine arch=arm64\np = spawn\np frobnicate\n")
    assert cli.main(["sweep", str(spec), "--db", str(tmp_path / "bad.duckdb")]) == 2
    err = capsys.readouterr().err
    assert f"{spec}: workloads: {tmp_path / 'cow.scn'}:3:" in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad.duckdb").exists()


def test_a_worker_with_another_model_refuses_the_task(spec_file: Path) -> None:
    from dataclasses import replace

    from contpte.errors import ModelUsageError

    tasks, _ = plan(load_spec(str(spec_file)), set())
    with pytest.raises(ModelUsageError, match="is not the driver's"):
        run_task(replace(tasks[0], model="0" * 16))
