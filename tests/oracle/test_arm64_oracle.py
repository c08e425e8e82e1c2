"""The arm64 oracle: the scenario library against Debian's Linux 6.12 arm64 kernel under qemu.

``test_library_agrees_with_the_arm64_kernel`` boots the kernel once and runs
every scenario of ``contpte/oracle/arm64/scenarios`` in that boot; it skips,
saying why, where qemu, the cross compiler or the Debian packages cannot be
had (``.ci/run`` installs and fetches them).  The other tests need none of
that.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from contpte.cli import main
from contpte.oracle.arm64 import ORACLE_NAME, TRACED, library
from contpte.oracle.arm64 import env as arm64_env
from contpte.oracle.arm64.boot import (
    FETCH_ADDR,
    PTEP_ONLY,
    _cpio_newc,
    _init_script,
    count_calls,
    parse_console,
)
from contpte.oracle.arm64.guest import generate_c
from contpte.oracle.arm64.run import _guest_error, prepare, run_arm64_oracle
from contpte.oracle.live import MODEL_WINDOW_HI, MODEL_WINDOW_LO
from contpte.oracle.run import scenario_unsupported_reason as live_unsupported_reason
from contpte.workloads.scenario import parse, parse_file

LIBRARY = library()


# -- without qemu ------------------------------------------------------------------
def test_library_has_the_required_scenarios() -> None:
    names = {p.stem for p in LIBRARY}
    assert len(names) >= 15
    for want in (
        "fault-64K-whole-folios",
        "fold-on-last-pte",
        "fork-cow-child-exit",
        "fork-exit-no-cow",
        "fault-cow-folded-block",
        "fault-range-none-stops",
        "mprotect-whole-blocks",
        "mprotect-single-page",
        "dontneed-partial-block",
        "munmap-partial-whole",
        "mixed-16K-32K-64K",
        "zero-page-read-first",
        "file-private-shared",
    ):
        assert want in names


@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
def test_library_scenario_prepares(path: Path) -> None:
    """The model side runs every step and the guest program covers every step."""
    sc = parse_file(str(path))
    prep = prepare(sc, path.stem)
    assert prep.reason is None and prep.program is not None
    assert len(prep.program.steps) == len(sc.steps) == len(prep.model)
    assert all(m.violation is None for m in prep.model)
    for gs in prep.program.steps:
        if gs.op in ("mmap", "write", "read", "mprotect", "madvise", "munmap") and gs.addr:
            assert MODEL_WINDOW_LO <= gs.addr < MODEL_WINDOW_HI
    src = generate_c(prep.program)
    assert f"#define NSTEPS {len(sc.steps)}" in src and "/* @TABLES@ */" not in src
    if sc.expect_mismatch:
        assert set(sc.expect_mismatch) == {ORACLE_NAME}


def test_unsupported_steps_skip_the_scenario() -> None:
    sc = parse(
        "machine arch=arm64 mthp.64K=always\np = spawn\nb = p mmap 64K rw private|anonymous\np pin b 4K\n"
    )
    prep = prepare(sc, "pin")
    assert prep.program is None and "pin" in str(prep.reason)


def test_fork_after_uffd_wp_skips_the_scenario() -> None:
    # The model keeps uffd-wp across fork (UFFD_FEATURE_EVENT_FORK); the
    # guest has no monitor to read the fork event, so it cannot.
    text = "machine arch=arm64\np = spawn\nb = p mmap 64K rw private|anonymous\np uffd-wp b 64K on\n"
    assert prepare(parse(text), "uffd").program is not None
    prep = prepare(parse(text + "c = p fork\n"), "uffd-fork")
    assert prep.program is None and "UFFD_FEATURE_EVENT_FORK" in str(prep.reason)
    assert live_unsupported_reason(parse(text)) is None
    assert "UFFD_FEATURE_EVENT_FORK" in str(live_unsupported_reason(parse(text + "c = p fork\n")))


def test_guest_error_codes() -> None:
    assert _guest_error(0) is None
    assert _guest_error(-2) == "SIGSEGV:ACCERR"
    assert _guest_error(-100) == "UFFD_WP"
    assert _guest_error(-202) == "SIGBUS:ADRERR"
    assert _guest_error(22) == "EINVAL"


def _trace_line(cpu: int, ts: float, body: str) -> str:
    return f"           g-123     [{cpu:03d}] d..1.   {ts:.6f}: {body}"


def test_count_calls_splits_per_step_and_filters_the_window() -> None:
    inside = MODEL_WINDOW_LO + 0x10000
    table = 0xFFFF_0000_C123_4000  # the page-table page mapping the 2M around `inside`
    ptep = table + ((inside >> 12) & 511) * 8
    other = 0xFFFF_0000_C777_7000  # a table of another region (the stack's)
    trace = [
        _trace_line(
            0, 1.0, f"f0: (contpte_convert+0x4/0x250) addr={inside:#x} ptep={ptep:#x}"
        ),  # no step yet
        _trace_line(0, 1.1, "tracing_mark_write: @@B 0"),
        _trace_line(1, 1.2, f"f3: (contpte_set_ptes+0x4/0x140) addr={inside:#x} ptep={ptep:#x}"),
        _trace_line(
            1, 1.3, f"f3: (contpte_set_ptes+0x4/0x140) addr={inside + 0x10000:#x} ptep={ptep + 128:#x}"
        ),
        _trace_line(0, 1.4, f"f1: (__contpte_try_fold+0x4/0x190) addr=0xffff8000000f ptep={other:#x}"),
        _trace_line(0, 1.5, "tracing_mark_write: @@E 0"),
        _trace_line(0, 1.6, "tracing_mark_write: @@B 1"),
        _trace_line(1, 1.7, f"f7: (contpte_try_unfold_partial+0x4/0xf8) addr={inside:#x} ptep={ptep:#x}"),
        # The getters have no address: their ptep's table was named by the events above.
        _trace_line(1, 1.8, f"f8: (contpte_ptep_get+0x4/0x80) ptep={ptep + 8:#x}"),
        _trace_line(1, 1.9, f"f9: (contpte_ptep_get_lockless+0x4/0xc0) ptep={ptep + 136:#x}"),
        _trace_line(1, 2.0, f"f8: (contpte_ptep_get+0x4/0x80) ptep={other + 8:#x}"),  # the stack's table
        _trace_line(1, 2.1, "f8: (contpte_ptep_get+0x4/0x80) ptep=0xffff0000c9990000"),  # a table never named
        # An address-only event (FETCH_ADDR: the VMA's start), which names no table.
        _trace_line(1, 2.15, f"f10: (tlb_flush_rmaps+0x4/0x60) addr={inside:#x}"),
        _trace_line(0, 2.2, "tracing_mark_write: @@E 1"),
    ]
    ins, out = count_calls(trace, MODEL_WINDOW_LO, MODEL_WINDOW_HI)
    assert ins == {
        0: {"contpte_set_ptes": 2},
        1: {
            "contpte_try_unfold_partial": 1,
            "contpte_ptep_get": 1,
            "contpte_ptep_get_lockless": 1,
            "tlb_flush_rmaps": 1,
        },
    }
    assert out == {0: {"__contpte_try_fold": 1}, 1: {"contpte_ptep_get": 2}}
    assert TRACED[7] == "contpte_try_unfold_partial" and TRACED[10] == "tlb_flush_rmaps"


def test_parse_console_reads_results_values_and_trace() -> None:
    text = "\r\n".join(
        [
            "[    1.0] some kernel line",
            "@@SCENARIO s000-x",
            "@@S 0 3 0",
            "@@S 1 4 0 1*3 2*1",
            "@@S 2 5 -2",
            "@@TRACE-BEGIN",
            "# tracer: nop",
            _trace_line(0, 1.0, "tracing_mark_write: @@B 0"),
            "@@TRACE-END",
            "@@SCENARIO-END",
            "@@SCENARIO s001-y",
            "@@S 0 3 22",
            "@@FATAL mmap ctl (errno 12)",
        ]
    )
    runs = parse_console(text)
    x, y = runs["s000-x"], runs["s001-y"]
    assert x.complete and x.results == [(0, 3, 0, None), (1, 4, 0, [1, 1, 1, 2]), (2, 5, -2, None)]
    assert len(x.trace) == 2 and x.trace[1].endswith("@@B 0")
    assert not y.complete and y.fatal == "mmap ctl (errno 12)" and y.results == [(0, 3, 22, None)]


def test_initramfs_is_a_newc_archive_with_a_trailer() -> None:
    data = _cpio_newc([("bin", 0o040755, b""), ("init", 0o100755, b"#!/bin/sh\n")])
    assert data.startswith(b"070701") and b"TRAILER!!!" in data and len(data) % 4 == 0
    assert gzip.decompress(gzip.compress(data)) == data
    script = _init_script(["s000-a", "s001-b"])
    for i, sym in enumerate(TRACED):
        if sym in FETCH_ADDR:
            args = f"addr={FETCH_ADDR[sym]}"
        else:
            args = "ptep=%x0" if sym in PTEP_ONLY else "addr=%x1 ptep=%x2"
        assert f"probe {i} {sym} '{args}'" in script
    # Each probe is event fN on the symbol, when the kernel has it (else @@NOTRACE, not fatal).
    assert 'echo "p:contpte/f$n $s $*" >> $T/kprobe_events' in script
    assert 'grep -q " [tT] $s\\$" /proc/kallsyms' in script and "@@NOTRACE $s" in script
    # tlb_flush_rmaps(tlb, vma) is counted on the VMA's start (vma->vm_start).
    assert "tlb_flush_rmaps 'addr=+0(%x1):x64'" in script
    assert script.index("/scn/s000-a") < script.index("/scn/s001-b") < script.rindex("poweroff -f")


def test_fetch_without_apt_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arm64_env.shutil, "which", lambda name: None)
    with pytest.raises(arm64_env.Arm64EnvError, match="apt-get"):
        arm64_env.ensure_guest_files(tmp_path)
    reason = arm64_env.tools_unavailable_reason()
    assert reason is not None and "qemu-system-aarch64" in reason and "apt-get install" in reason


def test_cache_dir_is_outside_the_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONTPTE_ARM64_CACHE", str(tmp_path / "c"))
    assert arm64_env.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CONTPTE_ARM64_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert arm64_env.cache_dir() == tmp_path / "contpte" / "arm64"


def test_cli_reports_a_missing_toolchain(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from contpte.oracle.arm64 import run as arm64_run

    monkeypatch.setattr(
        arm64_run, "tools_unavailable_reason", lambda: "the arm64 oracle cannot run here: missing qemu"
    )
    rc = main(["oracle", "--kernel", "arm64", str(LIBRARY[0])])
    assert rc == 3
    assert "missing qemu" in capsys.readouterr().err


# -- against the real kernel ----------------------------------------------------------
@pytest.fixture(scope="module")
def library_report() -> object:
    reason = arm64_env.tools_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    try:
        arm64_env.ensure_guest_files()
    except arm64_env.Arm64EnvError as e:
        pytest.skip(str(e))
    return run_arm64_oracle([parse_file(str(p)) for p in LIBRARY])


def test_library_agrees_with_the_arm64_kernel(library_report: object) -> None:
    """One boot, every scenario: contpte call counts, outcomes and values per step."""
    from contpte.oracle.arm64.run import Arm64Report

    assert isinstance(library_report, Arm64Report)
    bad = []
    for r in library_report.results:
        if r.status not in ("agree", "expected-mismatch"):
            diffs = [f"line {s.line} {s.text}: {d.field} model {d.model} kernel {d.live}" for s, d in r.diffs]
            bad.append(f"{r.path}: {r.status} {r.reason or ''}\n    " + "\n    ".join(diffs))
    assert not bad, "\n".join(bad)
    assert len(library_report.results) == len(LIBRARY)
    # the JSON form is what `contpte oracle --kernel arm64 --json` prints
    json.loads(json.dumps(library_report.as_dict(), default=str))
