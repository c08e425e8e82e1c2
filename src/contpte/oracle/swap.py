"""A zram swap device on the live kernel for one oracle run, always undone.

A scenario whose header has ``swap=SIZE`` runs on the live kernel with a
fresh zram device of that size as its swap (zram is a
``SWP_SYNCHRONOUS_IO`` device, as the model's swap device is): the device
is added through ``/sys/class/zram-control/hot_add`` (after ``modprobe
zram`` if the control directory is missing), sized (``disksize``),
formatted (``mkswap``) and enabled at the highest priority (``swapon -p
32767``).  ``vm.page-cluster`` is set to 0 for the run: the model does not
model swap readahead, which a window of one page turns off.  On exit, also
after an error or an interrupt, the device is switched off (``swapoff``),
reset and removed, and ``vm.page-cluster`` restored.

Swap statistics: ``vmstat_swap()`` reads ``pswpin``/``pswpout``, the
zero-page counters and ``thp_swpout``/``thp_swpout_fallback`` of ``/proc/vmstat``; ``mthp_swap_stats()`` the per-size
``swpout``, ``swpout_fallback``, ``swpin``, ``swpin_fallback`` files.
They are global: the oracle compares their change over a step, which
nothing else on the machine swapping at the same time would disturb.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "ZramSwap",
    "swap_unavailable_reason",
    "vmstat_swap",
    "mthp_swap_stats",
    "VMSTAT_SWAP",
    "MTHP_SWAP_STATS",
]

ZRAM_CONTROL = Path("/sys/class/zram-control")
PAGE_CLUSTER = Path("/proc/sys/vm/page-cluster")
THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
VMSTAT_SWAP = ("pswpin", "pswpout", "swpin_zero", "swpout_zero", "thp_swpout", "thp_swpout_fallback")
MTHP_SWAP_STATS = ("swpout", "swpout_fallback", "swpin", "swpin_fallback")


def _modprobe_zram() -> None:
    if ZRAM_CONTROL.is_dir():
        return
    exe = shutil.which("modprobe") or "/usr/sbin/modprobe"
    if os.path.exists(exe):
        subprocess.run([exe, "zram"], capture_output=True, check=False, timeout=60)


def swap_unavailable_reason() -> str | None:
    """Why no zram swap device can be set up here (None: it can)."""
    if os.geteuid() != 0:
        return "a zram swap device needs root (swapon, /sys/class/zram-control)"
    for tool in ("mkswap", "swapon", "swapoff"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed"
    try:
        _modprobe_zram()
    except (OSError, subprocess.SubprocessError) as e:
        return f"modprobe zram failed: {e}"
    if not (ZRAM_CONTROL / "hot_add").exists():
        return "zram is unavailable (no /sys/class/zram-control after modprobe zram)"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class ZramSwap:
    """``with ZramSwap(nbytes): ...``: a zram swap device for the block; everything undone after."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.dev_id: int | None = None
        self.swapped_on = False
        self.page_cluster: str | None = None

    @property
    def dev(self) -> str:
        return f"/dev/zram{self.dev_id}"

    def __enter__(self) -> ZramSwap:
        reason = swap_unavailable_reason()
        if reason is not None:
            raise OSError(reason)
        try:
            self.dev_id = int((ZRAM_CONTROL / "hot_add").read_text().strip())
            sysdir = Path(f"/sys/block/zram{self.dev_id}")
            (sysdir / "disksize").write_text(str(self.nbytes))
            subprocess.run([_tool("mkswap"), self.dev], capture_output=True, check=True, timeout=60)
            subprocess.run(
                [_tool("swapon"), "-p", "32767", self.dev], capture_output=True, check=True, timeout=60
            )
            self.swapped_on = True
            self.page_cluster = PAGE_CLUSTER.read_text().strip()
            PAGE_CLUSTER.write_text("0")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Undo everything done so far (each step on its own: one failing does not stop the rest)."""
        if self.page_cluster is not None:
            with contextlib.suppress(OSError):
                PAGE_CLUSTER.write_text(self.page_cluster)
            self.page_cluster = None
        if self.swapped_on:
            subprocess.run([_tool("swapoff"), self.dev], capture_output=True, check=False, timeout=600)
            self.swapped_on = False
        if self.dev_id is not None:
            with contextlib.suppress(OSError):
                Path(f"/sys/block/zram{self.dev_id}/reset").write_text("1")
            with contextlib.suppress(OSError):
                (ZRAM_CONTROL / "hot_remove").write_text(str(self.dev_id))
            self.dev_id = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def vmstat_swap() -> dict[str, int]:
    """The swap counters of ``/proc/vmstat`` (``VMSTAT_SWAP``; 0 where the kernel has none)."""
    out = dict.fromkeys(VMSTAT_SWAP, 0)
    with open("/proc/vmstat") as f:
        for line in f:
            key, _, val = line.partition(" ")
            if key in out:
                out[key] = int(val)
    return out


def mthp_swap_stats() -> dict[str, int]:
    """``{"64kB.swpout": n, ...}``: the per-size swap stats files that exist."""
    out: dict[str, int] = {}
    for d in sorted(THP_DIR.glob("hugepages-*kB")):
        size = d.name.removeprefix("hugepages-")
        for stat in MTHP_SWAP_STATS:
            p = d / "stats" / stat
            if p.exists():
                out[f"{size}.{stat}"] = int(p.read_text())
    return out
