"""Snapshots of real processes on this machine's kernel, compared with tools/mm/thpmaps.

The target (``target.py``) maps anonymous memory in known shapes with
hugepages-64kB = always (the policy is set for the test and restored, also on
failure) and waits, quiescent, while it is captured.  The comparison with the
real thpmaps runs when the script is found: ``$CONTPTE_THPMAPS`` (e.g. a
kernel tree's ``tools/mm/thpmaps``) or ``thpmaps`` on ``$PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from contpte.cli import main
from contpte.snapshot import load
from contpte.snapshot.thpmaps import report

pytestmark = pytest.mark.live

TARGET = Path(__file__).with_name("target.py")


def thpmaps_script() -> str | None:
    path = os.environ.get("CONTPTE_THPMAPS") or shutil.which("thpmaps")
    return path if path and os.path.isfile(path) else None


@dataclass
class Family:
    pids: list[int]
    bases: dict[str, int]


@pytest.fixture
def family(request: pytest.FixtureRequest) -> Iterator[Family]:
    from contpte.oracle.procfs import procfs_unavailable_reason
    from contpte.oracle.sysfs import ThpSysfs

    reason = procfs_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    thp = ThpSysfs()
    reason = thp.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    if not (thp.root / "hugepages-64kB").exists():
        pytest.skip("no 64K mTHP size on this kernel")
    nfork = getattr(request, "param", 0)
    with thp:
        thp.apply("madvise", {"64K": "always"})
        proc = subprocess.Popen(
            [sys.executable, str(TARGET), "--fork", str(nfork)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            words = proc.stdout.readline().split()
            assert words and words[0] == "ready", words
            pid = int(words[1])
            bases = {k: int(v, 16) for k, v in (w.split("=") for w in words[2:])}
            kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            assert len(kids) == nfork
            yield Family([pid, *sorted(kids)], bases)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_categories_of_a_live_process(
    family: Family, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pid,) = family.pids
    f = tmp_path / "s.npz"
    cli(capsys, "snapshot", str(pid), "-o", str(f))
    snap = load(f)
    assert snap.processes[0].pid == pid and snap.thp["hugepages-64kB/enabled"] == "always"
    by_start = {r["vma"].start: r for r in report(snap, [4]) if r["pid"] == pid}
    kb = {
        k: {n: s["value"] for n, s in by_start[a]["stats"].items() if s["value"]}
        for k, a in family.bases.items()
    }
    assert kb["aligned"] == {"anon-thp-pte-aligned-64kB": 1024, "anon-cont-pte-aligned-64kB": 1024}
    assert kb["moved"] == {"anon-thp-pte-unaligned-64kB": 256}
    assert kb["partial"] == {
        "anon-thp-pte-aligned-64kB": 128,
        "anon-thp-pte-partial": 92,
        "anon-cont-pte-aligned-64kB": 128,
    }
    if by_start[family.bases["pmd"]]["vma"].stats["AnonHugePages"] == 2048:
        assert kb["pmd"] == {"anon-thp-pmd-aligned-2048kB": 2048, "anon-cont-pmd-aligned-64kB": 2048}


@pytest.mark.parametrize("family", [2], indirect=True)
def test_forked_family_keeps_sharing(
    family: Family, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = family.pids[0]
    f = tmp_path / "fam.npz"
    cli(capsys, "snapshot", str(parent), "--children", "-o", str(f))
    snap = load(f)
    assert [p.pid for p in snap.processes] == family.pids
    assert [p.ppid for p in snap.processes[1:]] == [parent, parent]
    a = family.bases["aligned"] // snap.page_size

    def pfns(i: int) -> np.ndarray:
        p = snap.processes[i]
        return p.pfn[p.pages_in(a, a + 256)]

    # The untouched child shares every page with the parent; the first child CoW'd page 5.
    assert np.array_equal(pfns(0), pfns(2))
    same = pfns(0) == pfns(1)
    assert same.sum() == 255 and not same[5]
    kc = snap.processes[0].kpagecount[snap.processes[0].pages_in(a, a + 256)]
    if snap.kpagecount_precise:
        assert kc[5] == 2 and kc[4] == 3


def compare_with_thpmaps(pids: list[int], capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, str]:
    script = thpmaps_script()
    if script is None:
        pytest.skip("tools/mm/thpmaps not found: set CONTPTE_THPMAPS to a kernel tree's tools/mm/thpmaps")
    argv = [a for pid in pids for a in ("--pid", str(pid))]
    real = subprocess.run(
        [sys.executable, script, *argv, "--cont", "64K", *extra], capture_output=True, text=True, check=True
    ).stdout
    ours = cli(capsys, "snapshot", "--report", *map(str, pids), "--cont", "64K", *extra)
    return real, ours


def test_report_equals_thpmaps(family: Family, capsys: pytest.CaptureFixture[str]) -> None:
    real, ours = compare_with_thpmaps(family.pids, capsys)
    assert ours.splitlines() == real.splitlines()
    assert "anon-thp-pte-unaligned-64kB:         256 kB (100%)" in ours


@pytest.mark.parametrize("family", [2], indirect=True)
def test_family_report_equals_thpmaps(family: Family, capsys: pytest.CaptureFixture[str]) -> None:
    for pid in family.pids:
        real, ours = compare_with_thpmaps([pid], capsys)
        assert ours.splitlines() == real.splitlines(), pid
    real, ours = compare_with_thpmaps(family.pids, capsys, "--rollup")
    assert ours.splitlines() == real.splitlines()


@pytest.mark.parametrize("family", [2], indirect=True)
def test_replay_of_a_live_family(family: Family, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from contpte.snapshot.replay import fidelity, rebuild

    f = tmp_path / "fam.npz"
    cli(capsys, "snapshot", str(family.pids[0]), "--children", "-o", str(f))
    snap = load(f)
    rb = rebuild(snap)
    fid = fidelity(snap, rb)
    assert fid.present == fid.order == fid.aligned == fid.pages
    ps = snap.page_size
    for proc, p in zip(snap.processes, rb.processes):
        rows = {r["vma"].start: r for r in report(snap, [4]) if r["pid"] == proc.pid}
        for name in ("aligned", "moved", "partial", "pmd"):
            start = family.bases[name]
            v = rows[start]["vma"]
            cont_kb = int(p.pagemap(start, v.end - start)["cont"].sum()) * ps >> 10
            inferred = rows[start]["stats"]["anon-cont-pte-aligned-64kB"]["value"]
            assert cont_kb == inferred, (proc.pid, name)
    out = cli(capsys, "replay", str(f))
    assert "Contiguous bit coverage" in out and "munmap" in out
