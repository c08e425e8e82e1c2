"""The snapshot file: round trip, atomic writes, and one clear line (exit 2) for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from contpte.cli import main
from contpte.errors import ScenarioError
from contpte.snapshot.format import FORMAT_VERSION, load, save

from .synth import Folio, Proc, snapshot, vma


def small() -> Proc:
    return Proc(7, [vma(0x10000000, 0x10020000)], [Folio(0x10000000, 0x100, 4), Folio(0x10010000, 0x200, 0)])


def test_round_trip(tmp_path: Path) -> None:
    snap = snapshot(small())
    f = tmp_path / "s.npz"
    save(snap, f)
    back = load(f)
    assert back.page_size == 4096 and back.pmd_size == 2 << 20 and back.kernel == snap.kernel
    assert back.version == FORMAT_VERSION and back.thp == snap.thp
    (p,) = back.processes
    assert p.pid == 7 and len(p.vmas) == 1 and p.vmas[0].stats == snap.processes[0].vmas[0].stats
    for a in ("vfn", "pagemap", "kpageflags", "kpagecount", "order", "index"):
        assert np.array_equal(getattr(p, a), getattr(snap.processes[0], a)), a
    assert [f.name for f in tmp_path.iterdir()] == ["s.npz"]  # no temporary left


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_report_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.npz"
    save(snapshot(small()), f)
    rc, out, _ = run_cli(capsys, "snapshot", "--report", str(f), "--cont", "64K", "--rollup")
    assert rc == 0
    assert out.splitlines() == [
        "anon-thp-pte-aligned-64kB:            64 kB (94%)",
        "anon-cont-pte-aligned-64kB:           64 kB (94%)",
    ]


def corrupt_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.npz"
    save(snapshot(small()), good)
    raw = good.read_bytes()
    out = {}
    out["truncated"] = tmp_path / "truncated.npz"
    out["truncated"].write_bytes(raw[: len(raw) // 2])
    out["garbage"] = tmp_path / "garbage.npz"
    out["garbage"].write_bytes(os.urandom(300))
    out["empty"] = tmp_path / "empty.npz"
    out["empty"].write_bytes(b"")
    out["npy"] = tmp_path / "one.npz"
    np.save(out["npy"].open("wb"), np.arange(3))

    def with_meta(name: str, meta: object) -> None:
        arrays = dict(np.load(good))
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        out[name] = tmp_path / f"{name}.npz"
        np.savez(out[name], **arrays)

    meta = json.loads(dict(np.load(good))["meta"].tobytes())
    with_meta("foreign", {**meta, "format": "something-else"})
    with_meta("newer", {**meta, "version": FORMAT_VERSION + 1})
    with_meta("no-pages", {**meta, "processes": meta["processes"] * 2})
    return out


@pytest.mark.parametrize(
    "case,message",
    [
        ("truncated", "truncated or corrupt"),
        ("garbage", "truncated or corrupt"),
        ("empty", "truncated or corrupt"),
        ("npy", "not a .npz"),
        ("foreign", "format 'something-else'"),
        ("newer", f"version {FORMAT_VERSION + 1}"),
        ("no-pages", "member p1_vfn missing"),
    ],
)
def test_bad_file_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    path = corrupt_files(tmp_path)[case]
    with pytest.raises(ScenarioError, match=message):
        load(path)
    rc, out, err = run_cli(capsys, "snapshot", "--report", str(path))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and message in err, err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(capsys, "snapshot", "--report", str(tmp_path / "nope.npz"))
    assert rc == 2 and "nope.npz" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["snapshot", "123"], "-o FILE"),
        (["snapshot", "abc", "-o", "x.npz"], "'abc' is not a PID"),
        (["snapshot", "-o", "x.npz"], "at least one PID"),
        (["snapshot", "--report", "a.npz", "b.npz"], "one snapshot file"),
        (["snapshot", "1", "-o", "x.npz", "--rollup"], "go with --report"),
        (["snapshot", "--report", "--self", "--cont", "3K"], "--cont '3K'"),
    ],
)
def test_wrong_arguments(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if "--cont" in argv and not os.access("/proc/kpageflags", os.R_OK):
        pytest.skip("needs /proc/kpageflags (root) to get as far as --cont")
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_no_such_pid_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "s.npz"
    out_file.write_bytes(b"previous")
    rc, _, err = run_cli(capsys, "snapshot", "999999999", "-o", str(out_file))
    assert rc == 2 and "pid 999999999" in err and err.count("\n") == 1
    assert out_file.read_bytes() == b"previous"
    assert [f.name for f in tmp_path.iterdir()] == ["s.npz"]


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not os.access("/proc/kpageflags", os.R_OK):
        pytest.skip("capturing needs /proc/kpageflags (root)")
    target = tmp_path / "no-such-dir" / "s.npz"
    rc, _, err = run_cli(capsys, "snapshot", "--self", "-o", str(target))
    assert rc == 2 and str(target) in err and err.count("\n") == 1


def test_pid_vanishing_mid_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not os.access("/proc/kpageflags", os.R_OK):
        pytest.skip("capturing needs /proc/kpageflags (root)")
    from contpte.snapshot import capture

    real = capture.read_pagemap
    calls = {"n": 0}

    def vanish(pid: int, addr: int, n: int) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:  # the process is gone after a few VMAs
            raise ProcessLookupError(3, "No such process")
        return real(pid, addr, n)

    monkeypatch.setattr(capture, "read_pagemap", vanish)
    out_file = tmp_path / "s.npz"
    rc, _, err = run_cli(capsys, "snapshot", "--self", "-o", str(out_file))
    assert rc == 2 and f"pid {os.getpid()}" in err and "exited during the capture" in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        save(snapshot(small()), tmp_path / "s.npz")
    assert list(tmp_path.iterdir()) == []


def test_report_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.npz"
    save(snapshot(small()), f)
    rc, out, _ = run_cli(capsys, "snapshot", "--report", str(f), "--cont", "64K", "--json")
    assert rc == 0
    (v,) = json.loads(out)["vmas"]
    assert (v["pid"], v["start"], v["anon_kb"]) == (7, 0x10000000, 68)
    assert v["kb"]["anon-thp-pte-aligned-64kB"] == 64 and v["kb"]["anon-cont-pte-aligned-64kB"] == 64


def test_pid_reused_mid_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not os.access("/proc/kpageflags", os.R_OK):
        pytest.skip("capturing needs /proc/kpageflags (root)")
    from contpte.snapshot import capture

    times = iter([100, 200])  # the start time read before and after the pages differ
    monkeypatch.setattr(capture, "_start_time", lambda pid: next(times))
    rc, _, err = run_cli(capsys, "snapshot", "--self", "-o", str(tmp_path / "s.npz"))
    assert rc == 2 and "PID was reused" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
