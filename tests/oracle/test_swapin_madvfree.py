"""The model's swap finding at 6.12-6.19, checked on this machine's kernel.

A page swapped in by a read fault on a synchronous device (skip-swapcache:
clean, no swap entry left), shared by fork, is marked lazyfree by the
child's MADV_FREE (madvise_free_pte_range checks sharing only for folios in
the swap cache or with PG_dirty) and discarded by reclaim: the parent reads
zeros.  The fuzzer found it on the model (docs/versions.md); here the model
and the live kernel must agree on the outcome.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contpte import Machine

SCRIPT = Path(__file__).with_name("live_madvfree_swapin.py")


def _model_outcome(kernel: str) -> str:
    # check=False: the isolation validator rightly flags the loss; here the values are the point
    m = Machine(arch="generic", memory="64M", swap="64M", kernel=kernel, check=False)
    p = m.spawn()
    a = p.mmap(8 * 4096, prot="rw", flags="private|anonymous")
    for i in range(8):
        p.write(a + i * 4096, 4096, 0xA831 + i)
    p.madvise(a, 8 * 4096, "pageout")
    assert p.pagemap(a, 8 * 4096)["swap"].all()
    assert list(p.read(a, 8 * 4096)) == [0xA831 + i for i in range(8)]
    c = p.fork()
    c.madvise(a, 8 * 4096, "free")
    m.reclaim()
    m.reclaim()
    got = list(p.read(a, 8 * 4096))
    return "kept" if got == [0xA831 + i for i in range(8)] else "LOST"


def test_the_model_loses_the_parents_pages_at_6_12_and_keeps_them_at_7_1() -> None:
    assert _model_outcome("6.12") == "LOST"
    assert _model_outcome("6.18") == "LOST"
    assert _model_outcome("7.1") == "kept"  # swap-in through the swap cache dirties the folio


def test_the_live_kernel_agrees() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (zram, swapon, a memory cgroup)")
    if not Path("/sys/class/zram-control").exists() and (
        not shutil.which("modprobe") or subprocess.run(["modprobe", "zram"], capture_output=True).returncode
    ):
        pytest.skip("no zram on this kernel")
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("no v1 memory cgroup (memory.force_empty) to reclaim with")
    release = os.uname().release
    major, minor = (int(x) for x in release.split(".")[:2])
    if (major, minor) >= (7, 1) or (major, minor) < (6, 12):
        pytest.skip(f"live kernel {release}: the skip-swapcache path is modelled for 6.12-7.0 only")
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    live = lines[0].split()[1]
    model = _model_outcome(f"{major}.{minor}" if (major, minor) <= (7, 0) else "7.0")
    assert live == model == "LOST", f"live {live}, model {model}\n{r.stdout}"
