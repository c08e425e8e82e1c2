"""The live oracle compares the arm64 model with the live kernel too, and so catches arm64-only bugs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contpte.cli import main
from contpte.oracle import SCENARIO_DIR, run_oracle
from contpte.workloads.scenario import parse

# wrprotect_partial_block_no_unfold (bug catalog, arch layer): MADV_DONTFORK
# of the upper half splits the VMA inside a folded 64K block, so fork
# write-protects only its lower 8 entries; without the unfold the block keeps
# the Contiguous bit with mixed permissions and the parent's store goes
# through a writable entry's TLB translation into the frame the child shares.
# check=false: the model's checkers would stop the run at the broken
# invariant; here the comparison with the live kernel must find it.
BLOCK_WRPROTECT = """\
machine arch=arm64 memory=32M mthp.64K=always check=false{bugs}
title fork write-protects half of a folded 64K block
p = spawn
buf = p mmap 64K rw private|anonymous
p write buf 64K 1
p madvise buf+32K 32K dontfork
c = p fork
p write buf 4K 2
c read buf 4K
"""

pytestmark = pytest.mark.live


def test_an_arm64_only_bug_shows_on_the_arm64_model_only(live_kernel: None) -> None:
    sc = parse(BLOCK_WRPROTECT.format(bugs=" bugs=wrprotect_partial_block_no_unfold"), "bug.scn")
    generic = run_oracle(sc, model_arch="generic")
    assert generic.status == "agree", generic.diffs
    arm64 = run_oracle(sc, model_arch="arm64")
    assert arm64.status == "mismatch" and arm64.model_arch == "arm64"
    first = arm64.first_difference
    assert first is not None and first.text == "p write buf 4K 2"
    got = {(d.proc, d.field, d.model, d.live) for d in first.diffs}
    # The parent's store lands in the frame it still shares with the child
    # (no CoW): the child's page changes; the live kernel copied the page.
    assert ("c", "value", "2", "1") in got
    assert ("p", "shares frame with", "c", "none") in got
    assert ("p", "order", "4", "0") in got


def test_without_the_bug_both_model_arches_agree(live_kernel: None) -> None:
    sc = parse(BLOCK_WRPROTECT.format(bugs=""), "nobug.scn")
    for arch in ("generic", "arm64"):
        res = run_oracle(sc, model_arch=arch)
        assert res.status == "agree", (arch, res.diffs)


def test_arm64_records_its_arch_differences(live_kernel: None) -> None:
    # One page written after MADV_FREE of a folded 64K block: arm64's smaps
    # counts the whole block dirty (0 LazyFree pages), x86 all but that page.
    sc = parse((SCENARIO_DIR / "madvise-free-64K.scn").read_text(), "madvise-free-64K.scn")
    res = run_oracle(sc, model_arch="arm64", keep_going=True)
    assert res.status == "agree", res.diffs
    assert "smaps LazyFree (pages)" in res.excluded
    assert run_oracle(sc, model_arch="generic").excluded == {}


def test_cli_reports_every_model_arch(live_kernel: None, capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIO_DIR / "cow-64K-parent-writes.scn"
    assert main(["oracle", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # The keys of a one-arch run are the first arch's (generic) ...
    assert out["status"] == "agree" and out["model_arch"] == "generic"
    # ... and every arch's verdict is there too.
    assert out["model_archs"] == {"generic": "agree", "arm64": "agree"} and out["all_ok"]
    assert out["by_model_arch"]["arm64"]["model_arch"] == "arm64"
    assert all(s["compared"] for s in out["by_model_arch"]["arm64"]["steps"])
    assert main(["oracle", str(path), "--model-arch", "arm64"]) == 0
    text = capsys.readouterr().out
    assert "model=arm64" in text and "model=generic" not in text


def test_cli_bug_scenario_fails_with_both_arches(
    live_kernel: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scn = tmp_path / "bug.scn"
    scn.write_text(BLOCK_WRPROTECT.format(bugs=" bugs=wrprotect_partial_block_no_unfold"))
    assert main(["oracle", str(scn), "--model-arch", "generic"]) == 0
    capsys.readouterr()
    assert main(["oracle", str(scn), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "agree" and not out["all_ok"]
    assert out["model_archs"] == {"generic": "agree", "arm64": "mismatch"}


def test_an_unknown_model_arch_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIO_DIR / "cow-64K-parent-writes.scn"
    assert main(["oracle", str(path), "--model-arch", "generic,riscv"]) == 2
    assert "--model-arch" in capsys.readouterr().err
