"""Run on the live kernel (root): swap-in by read fault, fork, the child's MADV_FREE, reclaim.

Pages written, paged out to a zram swap device (MADV_PAGEOUT), read back (a
read fault on a synchronous device with swap count 1: the skip-swapcache
path of do_swap_page), then the process forks and the child calls MADV_FREE
on the range; reclaim (memory.force_empty of a v1 memory cgroup holding
both, on one CPU) follows, and the parent reads its pages.  Prints
``RESULT kept`` or ``RESULT LOST``.  The zram device, the swap and the
cgroup are removed afterwards, also on failure.  Used by
test_swapin_madvfree.py (docs/versions.md, "A finding at 6.12-6.19").
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import struct
import subprocess
import time

PS = 4096
N = 8
MADV_FREE = 8
MADV_PAGEOUT = 21
CGROUP = "/sys/fs/cgroup/memory/contpte-madvfree"


def put(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def get(path: str) -> str:
    with open(path) as f:
        return f.read()


def main() -> None:
    # One CPU for both processes: MADV_FREE's folio_mark_lazyfree() goes
    # through a per-CPU LRU batch, which reclaim drains only on its own CPU.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if not os.path.exists("/sys/class/zram-control") and shutil.which("modprobe"):
        subprocess.run(["modprobe", "zram"], capture_output=True)
    dev = get("/sys/class/zram-control/hot_add").strip()
    os.makedirs(CGROUP, exist_ok=True)
    try:
        put(f"/sys/block/zram{dev}/disksize", "64M")
        subprocess.run(["mkswap", f"/dev/zram{dev}"], capture_output=True, check=True)
        subprocess.run(["swapon", "-p", "100", f"/dev/zram{dev}"], capture_output=True, check=True)
        put(f"{CGROUP}/cgroup.procs", str(os.getpid()))
        m = mmap.mmap(-1, N * PS, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))

        def state(i: int) -> str:
            with open("/proc/self/pagemap", "rb") as f:
                f.seek(((addr >> 12) + i) * 8)
                v = struct.unpack("Q", f.read(8))[0]
            return ("present" if v >> 63 & 1 else "") + ("swapped" if v >> 62 & 1 else "")

        def values() -> list[int]:
            return [struct.unpack("Q", m[i * PS : i * PS + 8])[0] for i in range(N)]

        for i in range(N):
            m[i * PS : i * PS + 8] = struct.pack("Q", 0xA831 + i)
        assert libc.madvise(addr, N * PS, MADV_PAGEOUT) == 0
        print("after pageout:", [state(i) for i in range(N)])
        print("after read:", [hex(v) for v in values()], [state(i) for i in range(N)])
        r, w = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            assert libc.madvise(addr, N * PS, MADV_FREE) == 0
            os.write(w, b"x")
            os.read(r2, 1)
            os._exit(0)
        os.read(r, 1)
        for _ in range(6):
            try:
                put(f"{CGROUP}/memory.force_empty", "1")
            except OSError as e:
                print("force_empty:", e)
            time.sleep(0.2)
        print("after reclaim:", [state(i) for i in range(N)])
        got = values()
        print("parent reads:", [hex(v) for v in got])
        print("RESULT", "LOST" if got != [0xA831 + i for i in range(N)] else "kept")
        os.write(w2, b"x")
        os.waitpid(pid, 0)
    finally:
        put("/sys/fs/cgroup/memory/cgroup.procs", str(os.getpid()))
        os.rmdir(CGROUP)
        subprocess.run(["swapoff", f"/dev/zram{dev}"], capture_output=True)
        put("/sys/class/zram-control/hot_remove", dev)


if __name__ == "__main__":
    main()
