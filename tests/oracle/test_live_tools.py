"""The live-side tools: the sysfs policy, pagemap/kpageflags, the process servers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contpte.cli import main
from contpte.oracle import SCENARIO_DIR, ThpSysfs, procfs, sysfs
from contpte.oracle.live import DELTA, LiveKernel
from contpte.oracle.sysfs import THP_DIR, current_setting

pytestmark = pytest.mark.live


def _snapshot() -> dict[str, str]:
    files = [
        THP_DIR / "enabled",
        *sorted(THP_DIR.glob("hugepages-*kB/*enabled")),
        *sorted(THP_DIR.glob("khugepaged/*")),
    ]
    return {str(f): f.read_text() for f in files if f.is_file() and os.access(f, os.R_OK)}


def test_policy_is_restored_after_an_error(live_kernel: None) -> None:
    with ThpSysfs(pin_nondeterminism=False):  # hold the lock: no parallel worker changes the policy meanwhile
        before = _snapshot()
        with pytest.raises(RuntimeError, match="boom"), ThpSysfs() as thp:
            thp.apply("always", {"64K": "always", "16K": "madvise"})
            assert current_setting((THP_DIR / "hugepages-64kB/enabled").read_text()) == "always"
            assert current_setting((THP_DIR / "enabled").read_text()) == "always"
            raise RuntimeError("boom")
        after = _snapshot()
    changed = {
        k for k in before if before[k] != after[k] and "full_scans" not in k and "pages_collapsed" not in k
    }
    assert not changed


def test_a_killed_run_is_repaired_by_the_next(live_kernel: None) -> None:
    """A run killed with the policy applied (no finally) leaves its saved values; the next run restores them."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child is killed
        sysfs._lock_depth, sysfs._lock_fd = 0, -1  # a fresh process as far as the lock goes
        ThpSysfs().apply("always", {"32K": "always"})
        os.kill(os.getpid(), 9)
    os.waitpid(pid, 0)
    stale = json.loads(sysfs.SAVED_PATH.read_text())
    with ThpSysfs():  # recovers first, under the lock
        now = {k: current_setting(Path(k).read_text()) for k in stale}
    assert now == stale
    assert not sysfs.SAVED_PATH.exists()


def test_apply_follows_the_machine_defaults(live_kernel: None) -> None:
    with ThpSysfs() as thp:
        got = thp.apply("madvise", {"32K": "always"})
    assert got["hugepages-32kB/enabled"] == "always"
    assert got["hugepages-64kB/enabled"] == "never"
    assert got["hugepages-2048kB/enabled"] == "inherit"
    assert got["enabled"] == "madvise"


def test_live_processes_write_fork_and_share(live_kernel: None) -> None:
    """A 64K folio written by a real process, then shared with a forked child."""
    addr = 0x7EFF_FFF0_0000
    with ThpSysfs() as thp:
        thp.apply("madvise", {"64K": "always"})
        with LiveKernel() as live, procfs.KpageflagsReader() as kpf:
            p = live.spawn("p")
            assert (
                live.call(p, "mmap", addr - DELTA, 1 << 20, "rw", "private|anonymous", None, 0, False)[0]
                == "ok"
            )
            assert live.call(p, "write", addr - DELTA, 32, 7) == ("ok", 32)
            c = live.fork("p", "c")
            pe = procfs.read_pagemap(p.pid, addr - DELTA, 32)
            ce = procfs.read_pagemap(c.pid, addr - DELTA, 32)
            assert all(int(e) & procfs.PM_PRESENT for e in pe)
            assert [int(e) & procfs.PM_PFN_MASK for e in pe] == [int(e) & procfs.PM_PFN_MASK for e in ce]
            assert {kpf.order(int(e) & procfs.PM_PFN_MASK) for e in pe} == {4}
            assert not any(int(e) & procfs.PM_MMAP_EXCLUSIVE for e in pe)
            vals = procfs.read_values(c.pid, [addr - DELTA + i * 4096 for i in range(32)])
            assert set(vals.values()) == {7}
            # A store in a PROT_NONE range is predicted, not taken (the process survives).
            assert live.call(p, "mprotect", addr - DELTA, 4096, "none") == ("ok",)
            assert live.call(p, "write", addr - DELTA, 1, 1) == ("signal", "SIGSEGV:ACCERR", 0)
            assert live.call(p, "read", addr - DELTA - 4096, 1)[:2] == ("signal", "SIGSEGV:MAPERR")
            live.exit("c")
            assert live.call(p, "ping")[0] == "ok"


def test_cli_oracle_json(live_kernel: None, capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIO_DIR / "cow-64K-parent-writes.scn"
    assert main(["oracle", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "agree"
    assert out["oracle"] == "oracle-x86"
    assert all(s["compared"] for s in out["steps"])


def test_cli_oracle_reports_a_difference_as_a_table(
    live_kernel: None, tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A deliberately wrong expectation: the header pins the model to v6.12
    # (cow_reuse_large=false wins over the option chosen for the live
    # kernel), which copies on the write after the child exited; 6.18 reuses
    # the large folio -- and the file declares no mismatch, so the oracle
    # must report it.
    scn = os.path.join(tmp_path, "diff.scn")
    with open(scn, "w") as fh:
        fh.write(
            "machine arch=arm64 memory=64M mthp.64K=always cow_reuse_large=false\n"
            "p = spawn\nbuf = p mmap 128K rw private|anonymous\np write buf 128K 1\n"
            "c = p fork\nc exit\np write buf 4K 2\n"
        )
    assert main(["oracle", scn]) == 1
    out = capsys.readouterr().out
    assert "mismatch" in out and "order" in out
