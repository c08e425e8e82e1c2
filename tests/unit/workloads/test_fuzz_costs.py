"""The fuzzer's counter oracle: record every step's counter deltas, compare a later run with them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from contpte import cli
from contpte.errors import ModelUsageError
from contpte.workloads.fuzz import CostBook, FuzzConfig, fuzz
from contpte.workloads.scenario import parse_file, run


def _record(path: Path, **kw: object) -> None:
    cfg = FuzzConfig(variants=["arm64", "generic"], steps=600, seed=4, **kw)  # type: ignore[arg-type]
    cfg.costs = CostBook.new(cfg, str(path))
    cfg.__post_init__()
    r = fuzz(cfg)
    assert r.finding is None
    cfg.costs.save()


def test_the_same_run_has_the_recorded_costs(tmp_path: Path) -> None:
    path = tmp_path / "costs.json.gz"
    _record(path)
    book = CostBook.load(str(path))
    assert len(book.runs["arm64"]) == 4 and all(len(ep) == 150 for ep in book.runs["arm64"])
    assert any(d.get("pte.write", 0) > 0 for ep in book.runs["arm64"] for d in ep)
    cfg = FuzzConfig(variants=["arm64", "generic"], steps=600, seed=4, costs=book)
    assert fuzz(cfg).finding is None


def test_a_cost_only_change_is_found_and_replays(tmp_path: Path) -> None:
    # v6.17 changes costs of the same episodes (batched mprotect, ptep_get
    # early exit, ...) without changing what any process observes: the
    # validators pass, the counter oracle reports the first step that differs.
    path = tmp_path / "costs.json.gz"
    _record(path)
    cfg = FuzzConfig(
        variants=["arm64", "generic"], steps=600, seed=4, kernel="6.17", costs=CostBook.load(str(path))
    )
    f = fuzz(cfg).finding
    assert f is not None and f.kind.startswith("cost:"), f and f.message
    assert "differ from the recorded run" in f.message
    out = tmp_path / "repro.scn"
    rc = cli.main(
        [
            "fuzz",
            "--steps",
            "600",
            "--seed",
            "4",
            "--variant",
            "arm64,generic",
            "--kernel-version",
            "6.17",
            "--check-costs",
            str(path),
            "--out",
            str(out),
        ]
    )
    assert rc == 1
    sc = parse_file(str(out))
    assert "not shrunk" in out.read_text() and sc.machine.get("kernel") == "6.17"
    outs = run(sc)
    assert len(outs) == len(sc.steps) and all(o.failed is None for o in outs)


def test_bad_cost_records_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "costs.json.gz"
    _record(path)
    assert (
        cli.main(
            [
                "fuzz",
                "--steps",
                "300",
                "--seed",
                "4",
                "--variant",
                "arm64,generic",
                "--check-costs",
                str(path),
            ]
        )
        == 2
    )
    assert "recorded with steps=600, this run has steps=300" in capsys.readouterr().err
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"not gzip")
    with pytest.raises(ModelUsageError, match=r"junk\.gz: not a readable cost record"):
        CostBook.load(str(junk))
    other = tmp_path / "other.json.gz"
    with gzip.open(other, "wt") as fh:
        json.dump({"format": "something-else"}, fh)
    with pytest.raises(ModelUsageError, match="not a contpte fuzz cost record"):
        CostBook.load(str(other))
    with pytest.raises(ModelUsageError, match="no such cost record"):
        CostBook.load(str(tmp_path / "missing.gz"))
    with pytest.raises(ModelUsageError, match="does not go with --differential"):
        FuzzConfig(variants=["arm64", "generic"], differential=True, costs=CostBook.load(str(path)))


def test_a_run_that_stops_at_a_finding_writes_no_record(tmp_path: Path) -> None:
    path = tmp_path / "costs.json.gz"
    rc = cli.main(
        [
            "fuzz",
            "--steps",
            "3000",
            "--seed",
            "1",
            "--bug",
            "fork_no_parent_tlb_flush",
            "--record-costs",
            str(path),
            "--out",
            str(tmp_path / "r.scn"),
            "--no-shrink",
        ]
    )
    assert rc == 1 and not path.exists()
