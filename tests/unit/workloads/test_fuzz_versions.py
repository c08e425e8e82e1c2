"""Fuzz findings attributed to kernel versions, and ``--keep-going`` past the fixed ones.

Every finding's shrunk steps run again at each later modelled kernel
version; the first where they pass is where it is fixed, and the changes of
that version (``contpte.version.CHANGES``) are the candidate fixes, each
reverted alone to see which one it is.  The real findings here are the two
documented in docs/versions.md: the 6.12-7.0 swap-in data loss (a
skip-swapcache read fault, fork, a sibling's MADV_FREE, reclaim), fixed in
7.1 by swap-in through the swap cache (``swapin_via_swapcache``), and the
6.15-6.18 lazyfree restore that grants write, fixed in 6.19
(``lazyfree_batch_respect_write``).  The keep-going runs replace the
generator with those episodes so they hit at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contpte import cli
from contpte.version import CHANGES, KERNEL_VERSIONS
from contpte.workloads import fuzz as fuzz_mod
from contpte.workloads.fuzz import (
    Attribution,
    CostBook,
    FuzzConfig,
    attribute,
    fuzz,
    reproducer_text,
)
from contpte.workloads.scenario import Step, parse, run

#: docs/versions.md, "a swapped-in folio that a sibling's MADV_FREE discards"
#: (seed 20261209's finding at step 304,350, shrunk)
SWAPIN_LOSS = (
    "machine memory=32M cpus=4 thp=madvise mthp.16K=always mthp.32K=always mthp.64K=madvise"
    " mthp.128K=always mthp.2M=always check=true seed=20626 max_gather_batch_count=1 swap=8M\n"
    """\
p1 = spawn
m3 = p1 mmap 64K rw private|anonymous
p1 write m3 32K 0xa831
c8 = p1 fork
p1 exit
c8 uffd-wp m3 64K on
c9 = c8 fork
c8 exit
reclaim
c9 read m3 32K
c11 = c9 fork
c12 = c11 fork
c13 = c12 fork
c13 madvise m3 28K free
c9 madvise m3+16K 4K dontneed
reclaim
c12 read m3 32K
"""
)

#: tests/scenarios/test_lazyfree_restore_write.py (seed 20261216's finding at 7.1 before the fix)
LAZYFREE_RESTORE = """\
machine memory=32M cpus=2 mthp.128K=always check=true cpu=neoverse-v3
p1 = spawn
c4 = p1 fork
m8 = c4 mmap 128K rw private|anonymous
c4 write m8 4K 0x556b
c4 madvise m8 128K free
c9 = c4 fork
c4 write m8 128K 0x12fa
c9 write m8 4K 0x13f3
reclaim
reclaim
c9 read m8 128K
"""

#: the bug catalog's contpte_fold_without_bbm scenario: `bbm` at every version with the bug
FOLD_WITHOUT_BBM = """\
machine memory=32M mthp.64K=always check=true
p = spawn
buf = p mmap 64K rw private|anonymous
p write buf 64K 1
p mprotect buf+60K 4K r
p mprotect buf+60K 4K rw
p read buf 64K
"""
BBM_BUG = "contpte_fold_without_bbm"

CLEAN = """\
machine memory=32M mthp.64K=always check=true
p = spawn
buf = p mmap 64K rw private|anonymous
p write buf 64K 1
p read buf 64K
"""


def _episode(text: str) -> tuple[dict[str, Any], list[Step]]:
    sc = parse(text, "episode.scn")
    return dict(sc.machine), sc.steps


def _changes_of(version: str, arch: str) -> list[str]:
    return [c.option for c in CHANGES if c.since == version and c.arch in (None, arch)]


@pytest.fixture
def episodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The fuzzer's episodes, in order, instead of generated ones (the list is filled by the test)."""
    texts: list[str] = []
    drawn = iter(range(1 << 20))

    def generate(seed: int, nsteps: int, memory: str = "32M") -> tuple[dict[str, Any], list[Step]]:
        return _episode(texts[next(drawn) % len(texts)])

    monkeypatch.setattr(fuzz_mod, "generate_episode", generate)
    yield texts


# ---------------------------------------------------------------------------
# Attribution
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["arm64", "generic"])
def test_swapin_data_loss_at_6_12_is_fixed_in_7_1_by_swapin_via_swapcache(variant: str) -> None:
    header, steps = _episode(SWAPIN_LOSS)
    att = attribute({**header, "kernel": "6.12"}, steps, [variant], "violation:isolation")
    later = list(KERNEL_VERSIONS[1:])
    assert list(att.later) == later
    assert all(att.later[v] == "violation:isolation" for v in later[: later.index("7.1")])
    assert att.later["7.1"] is None and att.later["7.2"] is None
    assert att.fixed_in == "7.1" and att.fails_again == []
    # every change of 7.1 that applies is a candidate; only the swap-cache one brings it back reverted
    assert [c.option for c, _ in att.fixes] == _changes_of("7.1", variant)
    assert [c.option for c, back in att.fixes if back] == ["swapin_via_swapcache"]
    text = "\n".join(att.lines())
    assert "fixed in 7.1" in text and "swapin_via_swapcache=False alone fails again" in text


def test_lazyfree_restore_at_6_15_is_fixed_in_6_19_by_respecting_the_write_bit() -> None:
    header, steps = _episode(LAZYFREE_RESTORE)
    att = attribute({**header, "kernel": "6.15"}, steps, ["arm64"], "violation:writable-anon-exclusive")
    assert att.later == {
        "6.16": "violation:writable-anon-exclusive",
        "6.17": "violation:writable-anon-exclusive",
        "6.18": "violation:writable-anon-exclusive",
        "6.19": None,
        "7.0": None,
        "7.1": None,
        "7.2": None,
    }
    assert att.fixed_in == "6.19"
    assert [c.option for c, _ in att.fixes] == _changes_of("6.19", "arm64")
    assert [c.option for c, back in att.fixes if back] == ["lazyfree_batch_respect_write"]


def test_a_variant_that_sets_an_option_leaves_that_change_out() -> None:
    # arm64-bbml2 sets bbml2_noabort itself: the 6.17 change cannot be what a version changes there
    header, _ = _episode(CLEAN)
    machines = [fuzz_mod._machine_header(header, v, ()) for v in ("arm64", "arm64-bbml2", "generic")]
    bbml2 = next(c for c in CHANGES if c.option == "bbml2_noabort")
    assert [fuzz_mod._applies(bbml2, m) for m in machines] == [True, False, False]
    # the OnePlus policy runs without arm64's contpte: a contpte.c-only change does not reach it
    early = next(c for c in CHANGES if c.option == "ptep_get_early_exit")
    oneplus = fuzz_mod._machine_header(header, "arm64-oneplus", ())
    assert fuzz_mod._applies(early, machines[0]) and not fuzz_mod._applies(early, oneplus)


def test_at_the_newest_version_there_is_nothing_later() -> None:
    header, steps = _episode(SWAPIN_LOSS)
    att = attribute({**header, "kernel": KERNEL_VERSIONS[-1]}, steps, ["arm64"], "violation:isolation")
    assert att.later == {} and att.fixed_in is None and att.fixes == []
    assert att.lines() == [
        f"found at {KERNEL_VERSIONS[-1]}, the newest modelled kernel version: no later version to check"
    ]


def test_not_monotonic_is_said() -> None:
    later: dict[str, str | None] = dict.fromkeys(KERNEL_VERSIONS[1:])
    later["6.13"] = "violation:y"
    later["6.16"] = "violation:x"
    att = Attribution("6.12", "violation:x", later)
    assert att.fixed_in == "6.14" and att.fails_again == ["6.16"]
    assert "fails again at 6.16 (not monotonic)" in att.lines()[0]
    assert att.lines()[0].endswith("(it fails otherwise at 6.13 as violation:y)")
    later["7.2"] = "violation:y"
    assert att.fixed_in is None
    assert att.lines()[0].startswith(
        "not fixed in any modelled kernel version: it still fails at 7.2, as violation:y"
    )


def test_an_injected_bug_is_not_fixed_in_any_version(episodes: list[str]) -> None:
    episodes.append(FOLD_WITHOUT_BBM)
    r = fuzz(FuzzConfig(steps=20, episode_steps=20, bugs=(BBM_BUG,)))
    f = r.finding
    assert f is not None and f.kind == "violation:bbm"
    assert f.attribution is not None and f.fixed_in is None
    assert set(f.attribution.later.values()) == {"violation:bbm"}
    assert f.as_dict()["fixed_in"] is None and f.as_dict()["fixes"] == []
    assert "# contpte fuzz reproducer" in reproducer_text(f, 0)
    assert "not fixed in any modelled kernel version" in reproducer_text(f, 0)


# ---------------------------------------------------------------------------
# The run: without and with --keep-going
# ---------------------------------------------------------------------------
def test_without_keep_going_a_fixed_finding_still_ends_the_run(episodes: list[str]) -> None:
    episodes.extend([SWAPIN_LOSS, CLEAN])
    r = fuzz(FuzzConfig(steps=100, episode_steps=17, kernel="6.12"))
    assert r.stopped and r.episodes == 1 and r.findings == [r.finding]
    assert r.finding is not None and r.finding.fixed_in == "7.1" and r.finding.step == 17
    text = reproducer_text(r.finding, 0)
    assert "fixed in 7.1" in text and "swapin_via_swapcache" in text
    # the step rate covers the episodes only: shrinking and attributing are counted apart
    assert r.finding_seconds > 0 and r.fuzz_seconds + r.finding_seconds == pytest.approx(r.seconds)


def test_keep_going_goes_past_a_fixed_finding_and_stops_at_one_no_version_fixes(episodes: list[str]) -> None:
    episodes.extend([SWAPIN_LOSS, CLEAN, FOLD_WITHOUT_BBM, SWAPIN_LOSS])
    seen: list[str] = []
    r = fuzz(
        FuzzConfig(steps=400, episode_steps=17, bugs=(BBM_BUG,), keep_going=True),
        on_finding=lambda f: seen.append(f.kind),
    )
    assert [f.kind for f in r.findings] == seen == ["violation:isolation", "violation:bbm"]
    assert [f.fixed_in for f in r.findings] == ["7.1", None]
    assert [f.episode for f in r.findings] == [0, 2]
    # the last step of the first episode; the fourth of the third (the mprotect that unfolds the block)
    assert [f.step for f in r.findings] == [17, 2 * 17 + 4]
    assert r.stopped and r.finding is r.findings[1] and r.episodes == 3


def test_keep_going_runs_every_step_when_each_finding_is_fixed(episodes: list[str]) -> None:
    episodes.extend([SWAPIN_LOSS, CLEAN])
    r = fuzz(FuzzConfig(steps=17 * 4, episode_steps=17, keep_going=True))
    assert [f.fixed_in for f in r.findings] == ["7.1", "7.1"]
    assert not r.stopped and r.episodes == 4 and r.steps == 68
    assert r.finding is r.findings[-1]  # set whenever there is a finding, as before


def test_keep_going_with_differential(episodes: list[str]) -> None:
    episodes.extend([SWAPIN_LOSS, CLEAN])
    r = fuzz(
        FuzzConfig(
            variants=["arm64", "generic"], steps=17 * 2, episode_steps=17, differential=True, keep_going=True
        )
    )
    assert [(f.kind, f.fixed_in) for f in r.findings] == [("violation:isolation", "7.1")]
    assert not r.stopped and r.per_variant_steps == {"arm64": 17 + 4, "generic": 17 + 4}


def test_progress_counts_every_variants_steps() -> None:
    """The bar's total is steps x variants: each variant's run of an episode advances it."""
    calls: list[int] = []
    fuzz(FuzzConfig(variants=["arm64", "generic"], steps=60, seed=3), progress=calls.append)
    assert sum(calls) == 120


def test_keep_going_refuses_a_cost_record(tmp_path: Path) -> None:
    from contpte.errors import ModelUsageError

    cfg = FuzzConfig(steps=10, keep_going=True)
    cfg.costs = CostBook.new(cfg, str(tmp_path / "c.gz"))
    with pytest.raises(ModelUsageError, match="--keep-going does not go with a cost record"):
        cfg.__post_init__()


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def test_cli_keep_going_json(episodes: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    episodes.extend([SWAPIN_LOSS, CLEAN, FOLD_WITHOUT_BBM])
    out_file = tmp_path / "r.scn"
    argv = ["fuzz", "--keep-going", "--steps", "170", "--episode", "17", "--bug", BBM_BUG]
    rc = cli.main([*argv, "--seed", "5", "--out", str(out_file), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["keep_going"] and doc["stopped"]
    first, second = doc["findings"]
    assert (first["kind"], first["fixed_in"], first["step"]) == ("violation:isolation", "7.1", 17)
    assert [c["option"] for c in first["fixes"]] == _changes_of("7.1", "arm64")
    assert [c["option"] for c in first["fixes"] if c["reverting_it_brings_it_back"]] == [
        "swapin_via_swapcache"
    ]
    assert first["reproducer"] == str(tmp_path / "fuzz-5-1.scn")
    assert (second["kind"], second["fixed_in"], second["fixes"]) == ("violation:bbm", None, [])
    # the single-finding keys stay what they were: the finding that ended the run, its file
    assert second["reproducer"] == doc["reproducer"] == str(out_file)
    assert doc["finding"] == {k: v for k, v in second.items() if k != "reproducer"}
    assert "fixed in 7.1" in Path(first["reproducer"]).read_text()
    assert cli.main(["run", first["reproducer"], "--json"]) == 1
    capsys.readouterr()
    assert cli.main(["run", first["reproducer"], "--kernel-version", "7.1", "--json"]) == 0


def test_cli_keep_going_summary(
    episodes: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    episodes.extend([SWAPIN_LOSS, CLEAN])
    out_file = tmp_path / "r.scn"
    rc = cli.main(["fuzz", "--keep-going", "--steps", "34", "--episode", "17", "--out", str(out_file)])
    text = " ".join(capsys.readouterr().out.split())  # as printed, but for the wrapping
    assert rc == 1 and not out_file.exists()
    assert "1 finding(s):" in text
    assert (
        f"1. step 17 on arm64: violation:isolation; fixed in 7.1 by swapin_via_swapcache; reproducer {tmp_path / 'fuzz-0-1.scn'}"
        in text
    )
    assert "went on to step 34 (each finding ends its episode): every finding is fixed in a later" in text
    assert "machine-steps/s (21 machine-steps run in the" in text  # 17 + 4: the steps that ran


def test_cli_names_the_fix_without_keep_going(
    episodes: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    episodes.append(SWAPIN_LOSS)
    rc = cli.main(["fuzz", "--steps", "17", "--episode", "17", "--out", str(tmp_path / "r.scn")])
    text = " ".join(capsys.readouterr().out.split())
    assert rc == 1 and (tmp_path / "r.scn").exists()
    assert "fixed in 7.1" in text and "--keep-going records such findings" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--keep-going", "--record-costs", "c.gz"],
        ["--keep-going", "--check-costs", "c.gz"],
    ],
)
def test_cli_keep_going_refuses_cost_records(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fuzz", "--steps", "10", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--keep-going" in err and "not allowed with" in err


#: seed 20261225's differential finding at 7.2, shrunk (a 1M folio: 1M inherits
#: thp=always, 2M is madvise): only the per-PTE fork (batch_fork=False) leaves
#: the block for uffd-wp's batch to refold without break-before-make (the
#: documented 6.17+ finding; Neoverse-N1, no BBML2).
_DIFFERENTIAL_REFOLD = """\
machine arch=arm64 memory=32M cpus=2 thp=always mthp.64K=madvise mthp.2M=madvise mthp.1M=inherit check=true kernel=7.2
p1 = spawn
m11 = p1 mmap 4M rw private|anonymous
p1 write m11+2304K 4K 0x55ff
c13 = p1 fork
p1 uffd-wp m11+2752K 64K on
"""


def test_a_differential_reproducer_is_for_the_variant_that_breaks(episodes: list[str]) -> None:
    # The group's first variant (arm64, batched fork) passes these steps;
    # the reproducer used to carry its header all the same, so `contpte run`
    # of it passed.  It is now arm64-nobatch's, and fails when replayed.
    episodes.append(_DIFFERENTIAL_REFOLD)
    group = ["arm64", "generic", "arm64-nobatch", "generic-nobatch"]
    res = fuzz_mod.fuzz(fuzz_mod.FuzzConfig(variants=group, steps=5, episode_steps=5, differential=True))
    f = res.finding
    assert f is not None and f.kind == "violation:bbm" and f.variant == "arm64-nobatch"
    assert f.scenario.machine["batch_fork"] is False
    outs = run(f.scenario)
    assert [o.error for o in outs if o.failed] == ["violation:bbm"]
