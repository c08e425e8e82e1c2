"""Real processes on the live kernel, driven step by step.

Every scenario process is a real forked Python process (a *server*) that
executes one command at a time sent over a Unix socket: ``mmap``,
``mprotect``, ``madvise``, ``munmap``, ``mremap`` through ctypes on libc; stores and
loads of one 64-bit value per page, as the model's ``write``/``read`` do;
``fork`` with ``os.fork`` (the new process gets its own socket, passed with
SCM_RIGHTS); long-term pins through io_uring fixed buffers
(``IORING_REGISTER_BUFFERS`` pins with FOLL_WRITE | FOLL_LONGTERM);
userfaultfd write-protection (``UFFDIO_REGISTER`` in WP mode, then
``UFFDIO_WRITEPROTECT``, on one userfaultfd per process opened with
UFFD_FEATURE_SIGBUS); ``exit``.

A *zygote* forked once at start is the parent of every ``spawn``ed process,
so a new process is a fresh fork with nothing mapped in the scenario window.
All of them run on one CPU, and each ``madvise`` step ends with an
``lru_add_drain()`` (MADV_FREE of a never-touched scratch page), so the
kernel's per-CPU folio batches never hold back a state the oracle reads
(a lazyfree order-0 folio keeps PG_swapbacked until its batch is drained).

Addresses: the model places mappings in ``[MODEL_WINDOW_LO, MODEL_WINDOW_HI)``
(top-down from its ``TASK_MMAP_BASE``); a live process maps the same
mapping at the model's address minus ``DELTA`` (1 << 46), which keeps every
alignment (and so every THP/mTHP decision) identical, and lies far below
the live process's own libraries and heap: nothing else is ever mapped in
the live window, so smaps totals over it count the scenario only.

A step that would raise SIGSEGV is predicted from /proc/self/maps (no VMA:
MAPERR; VMA without the permission: ACCERR), SIGBUS from the file's size
(a page of a file mapping beyond the end of the file), and a uffd-wp fault
(``UFFD_WP``) from the page's PM_UFFD_WP bit in /proc/self/pagemap (the
kernel's own uffd-wp bit of the PTE or PMD), instead of taking the signal,
which would kill the process.  A write the prediction lets through to a
uffd-wp page gets SIGBUS (UFFD_FEATURE_SIGBUS), ending the process: the
oracle then fails, it never hangs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import pickle
import platform
import signal
import socket
import struct
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DELTA",
    "MODEL_WINDOW_LO",
    "MODEL_WINDOW_HI",
    "LiveKernel",
    "LiveProcess",
    "LiveError",
    "io_uring_unavailable_reason",
]

DELTA = 1 << 46
MODEL_WINDOW_HI = 0x7F00_0000_0000
MODEL_WINDOW_LO = 0x7E00_0000_0000

PROT = {"none": 0, "r": 1, "rw": 3, "rwx": 7}
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_FIXED_NOREPLACE = 0x100000
MADV = {
    "dontneed": 4,
    "free": 8,
    "dontfork": 10,
    "dofork": 11,
    "hugepage": 14,
    "nohugepage": 15,
    "cold": 20,
    "pageout": 21,
    "collapse": 25,
}
MREMAP = {"maymove": 1, "fixed": 2, "dontunmap": 4}
PR_SET_PDEATHSIG = 1

SYS_io_uring_setup = 425
SYS_io_uring_register = 427
IORING_REGISTER_BUFFERS = 0
IORING_UNREGISTER_BUFFERS = 1
_IO_URING_PARAMS_SIZE = 120

SYS_userfaultfd = 282 if platform.machine() == "aarch64" else 323  # x86_64
UFFD_API = 0xAA
UFFD_FEATURE_SIGBUS = 1 << 7
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
PM_UFFD_WP = 1 << 57
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63


def _uffd_iowr(nr: int, size: int) -> int:
    """``_IOWR(UFFDIO, nr, size)`` of include/uapi/linux/userfaultfd.h."""
    return (3 << 30) | (size << 16) | (UFFD_API << 8) | nr


UFFDIO_API = _uffd_iowr(0x3F, 24)
UFFDIO_REGISTER = _uffd_iowr(0x00, 32)
UFFDIO_WRITEPROTECT = _uffd_iowr(0x06, 24)


class LiveError(RuntimeError):
    """The live side could not do what a step asks (not a kernel outcome)."""


# ---------------------------------------------------------------------------
# Wire format: 8-byte length + pickle, optionally with one fd (SCM_RIGHTS)
# ---------------------------------------------------------------------------
def _send(sock: socket.socket, obj: Any, fd: int | None = None) -> None:
    data = pickle.dumps(obj)
    msg = struct.pack("<Q", len(data)) + data
    if fd is None:
        sock.sendall(msg)
    else:
        n = socket.send_fds(sock, [msg], [fd])
        if n < len(msg):
            sock.sendall(msg[n:])


def _recv(sock: socket.socket) -> tuple[Any, list[int]]:
    """One message and the fds that came with it; (None, []) at EOF."""
    head = b""
    fds: list[int] = []
    while len(head) < 8:
        chunk, got, _flags, _addr = socket.recv_fds(sock, 8 - len(head), 4)
        if not chunk:
            return None, fds
        head += chunk
        fds += got
    (n,) = struct.unpack("<Q", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None, fds
        body += chunk
    return pickle.loads(body), fds


# ---------------------------------------------------------------------------
# The server (runs in the forked processes)
# ---------------------------------------------------------------------------
class _Libc:
    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        self.mmap = lib.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        self.munmap = lib.munmap
        self.munmap.restype = ctypes.c_int
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.mprotect = lib.mprotect
        self.madvise = lib.madvise
        for fn in (self.mprotect, self.madvise):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.mremap = lib.mremap
        self.mremap.restype = ctypes.c_void_p
        self.mremap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        self.syscall = lib.syscall
        self.syscall.restype = ctypes.c_long
        self.prctl = lib.prctl
        self.prctl.restype = ctypes.c_int


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _maps_self() -> list[tuple[int, int, str, int, str]]:
    """(start, end, perms, file offset, path) per line of /proc/self/maps."""
    out = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split(None, 5)
            lo, hi = parts[0].split("-")
            path = parts[5].strip() if len(parts) > 5 else ""
            out.append((int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), path))
    return out


def _fault(maps: list[tuple[int, int, str, int, str]], va: int, write: bool) -> str | None:
    """The signal an access at ``va`` would get (None: none), as the model names it.

    ``SIGSEGV:MAPERR`` (no VMA), ``SIGSEGV:ACCERR`` (the VMA forbids the
    access), ``SIGBUS:ADRERR`` (a page of a regular file's mapping at or
    beyond the end of the file).
    """
    for lo, hi, perms, offset, path in maps:
        if lo <= va < hi:
            if write and "w" not in perms:
                return "SIGSEGV:ACCERR"
            if not write and not set(perms[:3]) & set("rwx"):
                return "SIGSEGV:ACCERR"
            if path.startswith("/") and os.path.isfile(path):
                page = os.sysconf("SC_PAGE_SIZE")
                pgoff = (offset + va - lo) // page
                if pgoff >= -(-os.stat(path).st_size // page):
                    return "SIGBUS:ADRERR"
            return None
    return "SIGSEGV:MAPERR"


class _Server:
    def __init__(self, sock: socket.socket, page_size: int) -> None:
        self.sock = sock
        self.ps = page_size
        self.libc = _Libc()
        self.rings: dict[tuple[int, int], int] = {}
        self.uffd = -1
        # One never-touched anonymous page outside the window, inherited at
        # fork: MADV_FREE of it does nothing but lru_add_drain() (see op_madvise).
        self.scratch = self.libc.mmap(None, page_size, PROT["rw"], MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)

    def serve(self) -> None:
        while True:
            msg, fds = _recv(self.sock)
            if msg is None:
                os._exit(0)
            op, args = msg
            try:
                reply = getattr(self, "op_" + op)(*args, fds=fds)
            except Exception as e:  # report, keep serving
                reply = ("exc", f"{type(e).__name__}: {e}")
            if op == "fork" and reply[0] == "child":
                continue  # we are the new process: serve on the new socket
            _send(self.sock, reply)
            if op == "exit":
                os._exit(0)

    def _err(self) -> tuple[str, str]:
        e = ctypes.get_errno()
        return ("err", errno.errorcode.get(e, f"E{e}"))

    def op_ping(self, fds: list[int]) -> tuple[Any, ...]:
        return ("ok", os.getpid())

    def op_mmap(
        self,
        addr: int,
        length: int,
        prot: str,
        flags: str,
        path: str | None,
        offset: int,
        fixed: bool,
        fds: list[int],
    ) -> tuple[Any, ...]:
        fl = MAP_SHARED if flags.startswith("shared") else MAP_PRIVATE
        fl |= MAP_FIXED if fixed else MAP_FIXED_NOREPLACE
        fd = -1
        if path is None:
            fl |= MAP_ANONYMOUS
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            got = self.libc.mmap(addr, length, PROT[prot], fl, fd, offset)
            if got is None or got == ctypes.c_void_p(-1).value:
                return self._err()
        finally:
            if fd >= 0:
                os.close(fd)
        if got != addr:
            self.libc.munmap(got, length)
            return ("exc", f"mmap placed {got:#x}, not {addr:#x}")
        return ("ok", got)

    def op_munmap(self, addr: int, length: int, fds: list[int]) -> tuple[Any, ...]:
        return ("ok",) if self.libc.munmap(addr, length) == 0 else self._err()

    def op_mremap(
        self, addr: int, old_len: int, new_len: int, flags: str, new_addr: int, fds: list[int]
    ) -> tuple[Any, ...]:
        """mremap(2) with ``flags`` by name (``"maymove|fixed"``); ("ok", address) or ("err", errno)."""
        fl = 0
        for f in flags.split("|"):
            if f:
                fl |= MREMAP[f]
        got = self.libc.mremap(addr, old_len, new_len, fl, new_addr)
        if got is None or got == ctypes.c_void_p(-1).value:
            return self._err()
        return ("ok", got)

    def op_mprotect(self, addr: int, length: int, prot: str, fds: list[int]) -> tuple[Any, ...]:
        return ("ok",) if self.libc.mprotect(addr, length, PROT[prot]) == 0 else self._err()

    def op_madvise(self, addr: int, length: int, advice: str, fds: list[int]) -> tuple[Any, ...]:
        if advice in ("cold", "pageout"):
            # MADV_COLD/PAGEOUT skip a folio not on the LRU yet (still in this
            # CPU's lru_add batch): drain first, as the model's folios always are.
            self.libc.madvise(self.scratch, self.ps, MADV["free"])
        if self.libc.madvise(addr, length, MADV[advice]) != 0:
            return self._err()
        # folio_mark_lazyfree() queues an order-0 folio in a per-CPU batch
        # (lru_lazyfree); PG_swapbacked is cleared when the batch is drained.
        # Drain it (every scenario process runs on one CPU, see
        # _server_main), so /proc/kpageflags shows what the model's state is.
        self.libc.madvise(self.scratch, self.ps, MADV["free"])
        return ("ok",)

    def op_write(self, addr: int, npages: int, value: int, fds: list[int]) -> tuple[Any, ...]:
        maps = _maps_self()
        # A pure store: ``c_uint64.from_address(va).value = v`` loads the
        # page first (a read fault maps the zero page, and the store then
        # CoWs it into an order-0 folio); memmove only stores.
        src = ctypes.create_string_buffer(value.to_bytes(8, "little"), 8)
        for i in range(npages):
            va = addr + i * self.ps
            sig = _fault(maps, va, True)
            if sig is None and self.uffd >= 0 and self._uffd_wp(va):
                sig = "UFFD_WP"
            if sig is not None:
                return ("signal", sig, i)
            ctypes.memmove(va, src, 8)
        return ("ok", npages)

    def _uffd_wp(self, va: int) -> bool:
        """The page at ``va`` is present and uffd-wp (/proc/self/pagemap PM_UFFD_WP)."""
        with open("/proc/self/pagemap", "rb") as fh:
            fh.seek(va // self.ps * 8)
            (ent,) = struct.unpack("<Q", fh.read(8))
        return bool(ent & PM_PRESENT and ent & PM_UFFD_WP)

    def op_uffd_wp(self, addr: int, length: int, on: bool, fds: list[int]) -> tuple[Any, ...]:
        """UFFDIO_REGISTER(MODE_WP) (when ``on``), then UFFDIO_WRITEPROTECT, as ``p.uffd_wp()``."""
        try:
            if self.uffd < 0:
                fd = self.libc.syscall(SYS_userfaultfd, ctypes.c_int(os.O_CLOEXEC | os.O_NONBLOCK))
                if fd < 0:
                    return self._err()
                self.uffd = fd
                fcntl.ioctl(fd, UFFDIO_API, bytearray(struct.pack("<QQQ", UFFD_API, UFFD_FEATURE_SIGBUS, 0)))
            if on:
                reg = bytearray(struct.pack("<QQQQ", addr, length, UFFDIO_REGISTER_MODE_WP, 0))
                fcntl.ioctl(self.uffd, UFFDIO_REGISTER, reg)
            mode = UFFDIO_WRITEPROTECT_MODE_WP if on else 0
            fcntl.ioctl(self.uffd, UFFDIO_WRITEPROTECT, bytearray(struct.pack("<QQQ", addr, length, mode)))
        except OSError as e:
            return ("err", errno.errorcode.get(e.errno or 0, f"E{e.errno}"))
        return ("ok",)

    def op_read(self, addr: int, npages: int, fds: list[int]) -> tuple[Any, ...]:
        maps = _maps_self()
        vals: list[int] = []
        for i in range(npages):
            va = addr + i * self.ps
            sig = _fault(maps, va, False)
            if sig is not None:
                return ("signal", sig, vals)
            vals.append(int.from_bytes(ctypes.string_at(va, 8), "little"))
        return ("ok", vals)

    def op_pin(self, addr: int, length: int, fds: list[int]) -> tuple[Any, ...]:
        params = ctypes.create_string_buffer(_IO_URING_PARAMS_SIZE)
        ring = self.libc.syscall(SYS_io_uring_setup, ctypes.c_uint(1), params)
        if ring < 0:
            return self._err()
        iov = _Iovec(addr, length)
        ret = self.libc.syscall(
            SYS_io_uring_register,
            ctypes.c_int(ring),
            ctypes.c_uint(IORING_REGISTER_BUFFERS),
            ctypes.byref(iov),
            ctypes.c_uint(1),
        )
        if ret < 0:
            err = self._err()
            os.close(ring)
            return err
        self.rings[(addr, length)] = ring
        return ("ok",)

    def _unregister(self, ring: int) -> None:
        self.libc.syscall(
            SYS_io_uring_register,
            ctypes.c_int(ring),
            ctypes.c_uint(IORING_UNREGISTER_BUFFERS),
            None,
            ctypes.c_uint(0),
        )
        os.close(ring)

    def op_unpin(self, addr: int, length: int, fds: list[int]) -> tuple[Any, ...]:
        ring = self.rings.pop((addr, length), None)
        if ring is None:
            return ("exc", "unpin: the live oracle unpins only a range pinned by one earlier pin step")
        self._unregister(ring)
        return ("ok",)

    def op_fork(self, fds: list[int]) -> tuple[Any, ...]:
        if len(fds) != 1:
            return ("exc", f"fork: expected one socket fd, got {len(fds)}")
        pid = os.fork()
        if pid == 0:
            # The child: serve on the new socket; the pins stay the parent's
            # (closing our copies of its rings releases nothing: it keeps its own).
            self.sock.close()
            for ring in self.rings.values():
                os.close(ring)
            self.rings = {}
            self.sock = socket.socket(fileno=fds[0])
            # No PR_SET_PDEATHSIG here: a scenario's parent may exit before
            # its child.  If the oracle dies, the socket's EOF ends us.
            self.libc.prctl(PR_SET_PDEATHSIG, 0)
            _send(self.sock, ("ok", os.getpid()))
            return ("child",)
        os.close(fds[0])
        return ("ok", pid)

    def op_exit(self, fds: list[int]) -> tuple[Any, ...]:
        # Release the pins before the address space goes (the model's exit
        # unpins first too); the ring's own teardown would do it later, async.
        for ring in self.rings.values():
            self._unregister(ring)
        self.rings = {}
        return ("ok",)


def _server_main(sock: socket.socket, page_size: int) -> None:
    """Entry point of a forked server; never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped at once
        # Every scenario process (the zygote's descendants) runs on one CPU:
        # the kernel's per-CPU folio batches (new folios wait in lru_add
        # before they reach the LRU; MADV_FREE's lazyfree batch) are then
        # all drained by the lru_add_drain() of the next MADV_FREE, whichever
        # process makes it, and none is left waiting on another CPU.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        srv = _Server(sock, page_size)
        srv.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        srv.serve()
    finally:
        os._exit(1)


# ---------------------------------------------------------------------------
# The oracle's side
# ---------------------------------------------------------------------------
@dataclass
class LiveProcess:
    """A live server process as the oracle sees it."""

    name: str
    pid: int
    sock: socket.socket
    alive: bool = True
    mapped: list[tuple[int, int]] = field(default_factory=list)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` has exited (zombie or reaped): its mm is torn down by then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.001)
    raise LiveError(f"pid {pid} did not exit within {timeout:.0f}s")


class LiveKernel:
    """The scenario's processes on the running kernel."""

    def __init__(self, page_size: int = 4096) -> None:
        self.ps = page_size
        self.procs: dict[str, LiveProcess] = {}
        self._all: list[LiveProcess] = []
        self._zygote: LiveProcess | None = None
        self._zygote = self._fork_zygote()

    # -- plumbing -----------------------------------------------------------
    def _fork_zygote(self) -> LiveProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        others = [p.sock for p in self._all]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
            pid = os.fork()
        if pid == 0:
            ours.close()
            for s in others:
                s.close()
            _server_main(theirs, self.ps)
        theirs.close()
        z = LiveProcess("<zygote>", pid, ours)
        self._all.append(z)
        return z

    def call(self, proc: LiveProcess, op: str, *args: Any, fd: int | None = None) -> tuple[Any, ...]:
        if not proc.alive:
            raise LiveError(f"process {proc.name} has exited")
        _send(proc.sock, (op, args), fd)
        reply, _ = _recv(proc.sock)
        if reply is None:
            proc.alive = False
            raise LiveError(f"live process {proc.name} (pid {proc.pid}) died during {op}")
        if reply[0] == "exc":
            raise LiveError(f"live process {proc.name}: {op}: {reply[1]}")
        return tuple(reply)

    def _fork_from(self, parent: LiveProcess, name: str) -> LiveProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            reply = self.call(parent, "fork", fd=theirs.fileno())
        finally:
            theirs.close()
        hello, _ = _recv(ours)
        if hello is None or hello[0] != "ok":
            raise LiveError(f"fork of {parent.name}: the child did not start")
        child = LiveProcess(name, int(reply[1]), ours, mapped=list(parent.mapped))
        self._all.append(child)
        self.procs[name] = child
        return child

    # -- steps --------------------------------------------------------------
    def spawn(self, name: str) -> LiveProcess:
        assert self._zygote is not None
        p = self._fork_from(self._zygote, name)
        p.mapped = []
        return p

    def fork(self, parent: str, child: str) -> LiveProcess:
        return self._fork_from(self.procs[parent], child)

    def exit(self, name: str) -> None:
        p = self.procs[name]
        self.call(p, "exit")
        p.alive = False
        p.sock.close()
        _wait_gone(p.pid)

    def close(self) -> None:
        """End every process this object started (by pid) and wait for them."""
        for p in reversed(self._all):
            if p.alive:
                p.alive = False
                with contextlib.suppress(OSError):
                    p.sock.close()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        for p in self._all:
            with contextlib.suppress(LiveError):
                _wait_gone(p.pid, timeout=5.0)
        if self._zygote is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._zygote.pid, 0)
            self._zygote = None

    def __enter__(self) -> LiveKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def io_uring_unavailable_reason() -> str | None:
    """Why long-term pins cannot be taken from user space here (None: they can)."""
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as fh:
            if fh.read().strip() not in ("0", ""):
                return "io_uring is disabled (kernel.io_uring_disabled != 0): no user-space long-term pins"
    except FileNotFoundError:
        pass
    libc = _Libc()
    params = ctypes.create_string_buffer(_IO_URING_PARAMS_SIZE)
    ring = libc.syscall(SYS_io_uring_setup, ctypes.c_uint(1), params)
    if ring < 0:
        e = ctypes.get_errno()
        return f"io_uring_setup failed ({os.strerror(e)}): no user-space long-term pins"
    os.close(ring)
    return None
