"""A live process holding mTHP memory in known shapes, for the snapshot tests.

Run as ``python target.py [--fork N]``: it maps anonymous memory and writes
it, in the shapes below, prints ``ready <pid> <base addresses>`` and waits
until its stdin closes (quiescent meanwhile).  The caller sets the THP policy
(hugepages-64kB = always; top level madvise for the 2M region).

- ``aligned``: 1M, 64K-aligned, every page written (16 x 64K folios);
- ``partial``: 256K, 64K-aligned, written, then 4K of the 2nd folio and the
  last 32K of the 4th dropped with MADV_DONTNEED;
- ``moved``: 256K written at a 64K-aligned address, then moved with
  mremap(MREMAP_FIXED) 16K past a 64K boundary (unaligned folios);
- ``pmd``: 2M, 2M-aligned, MADV_HUGEPAGE, written (one PMD-mapped THP if
  the kernel can allocate one).

``--fork N``: after that, fork N children that wait on the same stdin; the
first child writes one page of ``aligned`` (CoW) and drops 64K of ``pmd``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PROT_RW = 3
MAP_PRIVATE_ANON = 0x02 | 0x20
MAP_FIXED = 0x10
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MADV_DONTNEED, MADV_HUGEPAGE = 4, 14


def _check(ret: int | None, what: str) -> int:
    if ret is None or ret == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), what)
    return int(ret)


def aligned_map(size: int, align: int) -> int:
    """An anonymous private mapping of ``size`` at an ``align``-aligned address."""
    raw = _check(libc.mmap(None, size + align, PROT_RW, MAP_PRIVATE_ANON, -1, 0), "mmap")
    base = (raw + align - 1) & ~(align - 1)
    if base > raw:
        libc.munmap(raw, base - raw)
    tail = raw + size + align - (base + size)
    if tail:
        libc.munmap(base + size, tail)
    return base


def touch(addr: int, size: int, value: int = 1) -> None:
    for off in range(0, size, PAGE):
        ctypes.c_char.from_address(addr + off).value = bytes([value])


def build() -> dict[str, int]:
    k64 = 64 << 10
    out = {}
    a = aligned_map(1 << 20, k64)
    touch(a, 1 << 20)
    out["aligned"] = a
    p = aligned_map(256 << 10, k64)
    touch(p, 256 << 10)
    libc.madvise(p + k64 + PAGE, PAGE, MADV_DONTNEED)
    libc.madvise(p + 3 * k64 + 32 * 1024, 32 * 1024, MADV_DONTNEED)
    out["partial"] = p
    src = aligned_map(256 << 10, k64)
    touch(src, 256 << 10)
    hole = aligned_map(512 << 10, k64)  # a free, 64K-aligned range to move to
    libc.munmap(hole, 512 << 10)
    dst = hole + 16 * 1024
    _check(libc.mremap(src, 256 << 10, 256 << 10, MREMAP_MAYMOVE | MREMAP_FIXED, dst), "mremap")
    out["moved"] = dst
    h = aligned_map(2 << 20, 2 << 20)
    libc.madvise(h, 2 << 20, MADV_HUGEPAGE)
    touch(h, 2 << 20)
    out["pmd"] = h
    return out


def main() -> None:
    nfork = int(sys.argv[sys.argv.index("--fork") + 1]) if "--fork" in sys.argv else 0
    bases = build()
    kids = []
    for i in range(nfork):
        pid = os.fork()
        if pid == 0:
            if i == 0:
                touch(bases["aligned"] + 5 * PAGE, PAGE, 2)
                libc.madvise(bases["pmd"] + (64 << 10), 64 << 10, MADV_DONTNEED)
            sys.stdin.read()
            os._exit(0)
        kids.append(pid)
    print("ready", os.getpid(), " ".join(f"{k}={v:#x}" for k, v in bases.items()), flush=True)
    sys.stdin.read()
    for k in kids:
        os.waitpid(k, 0)


if __name__ == "__main__":
    main()
