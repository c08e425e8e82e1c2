"""benchmarks/run.py keeps running: a tiny model-only run, and the report built from it.

No timing is asserted (benchmarks never are); no sysfs is touched (the
real-kernel side is not run here).  What must not rot silently: the
layouts' recipe, the model side of every layout through the public API,
the ratios, the issue-12 targets table and the markdown.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

RUNNER = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", RUNNER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(run: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every layout in the model, checker off and on, a 1M region (and a 512K one), plus memory and fuzz.

    (1M keeps it fast under load: the uniform-2M layout then gets 4K folios, which is enough here.)
    """
    out = tmp_path_factory.mktemp("bench")
    argv = ["sim", "memory", "fuzz", "--size", "1M", "--small-size", "512K", "--arches", "arm64"]
    argv += ["--iters", "6", "--repeat", "2", "--budget", "0.5", "--fuzz-steps", "20", "--out", str(out)]
    assert run.main([*argv, "--json"]) == 0
    (doc_file,) = out.glob("*.json")
    (md_file,) = out.glob("*.md")
    return {"doc": json.loads(doc_file.read_text()), "md": md_file.read_text()}


def test_recipe_pages(run: ModuleType) -> None:
    npages = 4096
    zapped = run.zapped_pages(run.FRAGMENTED, npages)
    assert zapped[0] == run.FRAG_ZAP_FIRST and np.all(np.diff(zapped) == run.FRAG_ZAP_EVERY)
    assert set(run.rewritten_pages(run.FRAGMENTED, npages)) < set(zapped)
    assert len(run.cow_pages(run.PARTIAL_COW, npages)) == npages // run.COW_EVERY
    q, cq = run.probe_pages(run.FRAGMENTED, npages, 50)
    gone = set(zapped) - set(run.rewritten_pages(run.FRAGMENTED, npages))
    assert len(q) == 50 and not set(q) & set(cq) and not (set(q) | set(cq)) & gone


def test_census_counts_partly_mapped_folios(run: ModuleType) -> None:
    # one 64K folio (16 pages at PFN 0x100) with page 3 unmapped, a 4K folio in the hole
    present = np.ones(16, dtype=bool)
    pfn = np.arange(0x100, 0x110)
    order = np.full(16, 4)
    pfn[3], order[3] = 0x999, 0
    c = run.folio_census(0x10000, present, pfn, order)
    assert c["folios"] == {"4K": 1, "64K": 1}
    assert c["partly_mapped_large"] == 1 and c["order0_in_holes"] == 1


def test_every_layout_runs_in_the_model(run: ModuleType, tiny: dict) -> None:
    doc = tiny["doc"]
    rows = doc["sim"]
    assert [r.get("error") for r in rows] == [None] * len(rows)
    assert {r["layout"] for r in rows} == {
        lay.name for lay in run.select_layouts("uniform,fragmented,partial-cow", run.SIZES)
    }
    for r in rows:
        assert set(run.OPS) <= set(r["ops"]) and set(run.SYSCALLS) <= set(r["syscalls_us"])
        assert r["small"]["size"] == 512 << 10
        if r["check"]:
            assert r["check_on_over_off"]["ops"]["fork"] is not None
    frag = next(r for r in rows if r["layout"] == "fragmented")
    assert frag["census"]["partly_mapped_large"] > 0 and frag["census"]["order0_in_holes"] > 0
    cow = next(r for r in rows if r["layout"] == "partial-cow")
    assert cow["census"]["partly_mapped_large"] == cow["census"]["folios"]["64K"]
    assert "steps_per_second" in doc["fuzz"]["arm64"]
    assert all("after_fork_bytes_per_mapping" in m for m in doc["memory"])


def test_targets_table(run: ModuleType, tiny: dict) -> None:
    # Without the real side, the ratio targets say "not measured" ...
    assert "## Targets (issue 12)" in tiny["md"].splitlines()[4]
    rows = {t["what"]: t for t in tiny["doc"]["targets"]}
    assert len(rows) == 13
    assert rows["fork of 1M, uniform layouts (4K..2M), checker off, / real fork"]["measured"] is None
    # ... and with real figures equal to the model's, every ratio target is met at 1x.
    doc = copy.deepcopy(tiny["doc"])
    doc["real"] = [
        {"layout": r["layout"], "ops": r["ops"], "syscalls_us": r["syscalls_us"], "fork_baseline": 0.001}
        for r in doc["sim"]
        if not r["check"]
    ]
    run.analyse(doc)
    rows = {t["what"]: t for t in doc["targets"]}
    for what in (
        "fork of 1M, uniform layouts (4K..2M), checker off, / real fork",
        "fork of 1M, fragmented layouts (fragmented; partial CoW), checker off, / real fork",
        "munmap of 1M, every layout, checker off, / real munmap",
    ):
        assert rows[what]["measured"] == pytest.approx(1.0) and rows[what]["met"]
    md = run.markdown(doc)
    assert "| uniform-64K | real |" in md and "(1.00x)" in md
