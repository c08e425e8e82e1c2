"""Process: the syscalls and user accesses of one simulated process.

A user access goes through the hardware (TLB, table walk); a fault enters
the kernel's arch fault handler (``do_page_fault``: find the VMA, check the
access against it), then core-mm's ``handle_mm_fault``, and the access is
retried.  Syscalls run on the process's CPU; misuse raises the ``OSError``
Linux would return.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..check.pagemap import PAGEMAP_DTYPE, page_pfn, pagemap_rows
from ..errors import (
    BusError,
    InvariantViolation,
    ModelUsageError,
    OutOfMemory,
    SegmentationFault,
    UserfaultWP,
)
from ..mm.fork import dup_mmap, mmput
from ..mm.gup import pin_user_pages_fast, unpin_user_pages
from ..mm.madvise import ADVICE, do_madvise
from ..mm.memory import handle_mm_fault
from ..mm.mm_types import (
    FAULT_FLAG_WRITE,
    VM_ACCESS_FLAGS,
    VM_EXEC,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
    VM_FAULT_UFFD_WP,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
)
from ..mm.mmap import do_mmap, do_munmap
from ..mm.mprotect import change_prot_numa, do_mprotect_pkey
from ..mm.mremap import MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, do_mremap
from ..mm.shmem import File
from ..mm.userfaultfd import mwriteprotect_range, userfaultfd_register_wp
from .sched import Blocked
from .sizes import parse_length

if TYPE_CHECKING:
    from .machine import Machine

__all__ = [
    "Process",
    "Thread",
    "PAGEMAP_DTYPE",
    "parse_prot",
    "parse_flags",
    "parse_mremap_flags",
    "MREMAP_FLAGS",
]


_PROT = {"r": VM_READ, "w": VM_WRITE, "x": VM_EXEC}
_MAX_FAULTS_PER_PAGE = 8


def parse_prot(prot: str | int) -> int:
    """``"rw"`` -> VM_READ|VM_WRITE; ``"none"``/``""`` -> 0; ints pass through."""
    if isinstance(prot, int):
        if prot & ~VM_ACCESS_FLAGS:
            raise OSError(errno.EINVAL, f"prot {prot:#x}: unknown bits")
        return prot
    p = prot.strip().lower()
    if p in ("", "none", "-", "---"):
        return 0
    out = 0
    for ch in p:
        if ch == "-":
            continue
        if ch not in _PROT:
            raise ModelUsageError(f"prot {prot!r}: expected letters from 'rwx' or 'none'")
        out |= _PROT[ch]
    return out


def parse_flags(flags: str) -> set[str]:
    """``"private|anonymous"`` -> {"private", "anonymous"} (checked)."""
    parts = {f.strip().lower() for f in flags.replace(",", "|").split("|") if f.strip()}
    known = {"private", "shared", "anonymous", "fixed", "populate"}
    bad = parts - known
    if bad:
        raise ModelUsageError(
            f"mmap flags {flags!r}: unknown {', '.join(sorted(bad))}; known: {', '.join(sorted(known))}"
        )
    return parts


MREMAP_FLAGS = {"maymove": MREMAP_MAYMOVE, "fixed": MREMAP_FIXED, "dontunmap": MREMAP_DONTUNMAP}
"""The MREMAP_* flags by name (include/uapi/linux/mman.h)."""


def parse_mremap_flags(flags: str | int) -> int:
    """``"maymove|fixed"`` -> MREMAP_MAYMOVE|MREMAP_FIXED; ``""``/``"none"`` -> 0; ints pass through.

    An unknown name is a ModelUsageError; unknown bits of an int are the
    kernel's to refuse (EINVAL).
    """
    if isinstance(flags, (int, np.integer)):
        return int(flags)
    out = 0
    for part in flags.replace(",", "|").split("|"):
        name = part.strip().lower()
        if name in ("", "none", "0"):
            continue
        if name not in MREMAP_FLAGS:
            raise ModelUsageError(
                f"mremap flags {flags!r}: unknown {name!r}; known: {', '.join(MREMAP_FLAGS)}"
            )
        out |= MREMAP_FLAGS[name]
    return out


def _oserror(ret: int, call: str) -> OSError:
    code = -ret
    return OSError(code, f"{call}: {os.strerror(code)}")


class Process:
    """A simulated process, running on one CPU; its main thread.

    ``clone_thread()`` adds threads (``Thread``) that share the address
    space, each on a CPU of its own.
    """

    def __init__(
        self, machine: "Machine", pid: int, mm: MmStruct, cpu: int, parent: "Process | None"
    ) -> None:
        self.machine = machine
        self.pid = pid
        self.mm = mm
        self.cpu = cpu
        self.parent = parent
        self.alive = True
        #: The thread id (the pid for the main thread).
        self.tid = pid
        #: The other threads (``clone_thread``), alive ones.
        self.threads: list[Thread] = []

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} cpu={self.cpu}{'' if self.alive else ' dead'}>"

    # -- plumbing -----------------------------------------------------------
    def _enter(self, syscall: str = "") -> None:
        if not self.alive:
            raise ModelUsageError(f"pid {self.pid} tid {self.tid} has exited")
        sched = self.machine.sched
        if syscall and sched is not None and sched.stack:
            sched.may_syscall(self, syscall)
        self.machine.hw.current_cpu = self.cpu
        # The mm's cpumask: every CPU a thread of it ran on (TLBIs and ASID
        # flushes must reach them).
        self.mm.cpumask.add(self.cpu)

    def _leave(self, what: str) -> None:
        if self.machine.check_enabled:
            sched = self.machine.sched
            if sched is not None and sched.nested:
                return  # checked when the interrupted step returns (system/sched.py)
            self.machine.validators.after_syscall(self, what)

    def clone_thread(self) -> "Thread":
        """clone(CLONE_VM | CLONE_THREAD): a new thread of this process, on the next CPU.

        The thread shares the address space (and so the ASID); it has its
        own CPU, so its accesses go through that CPU's TLB.  It has the
        access and syscall methods of a Process (``write``, ``read``,
        ``mmap``, ``munmap``, ``mprotect``, ``madvise``, ``fork``, ...);
        ``exit()`` ends the thread only.
        """
        owner = self.process
        owner._enter()
        m = self.machine
        cpu = m._next_cpu
        m._next_cpu = (m._next_cpu + 1) % m.hw.ncpus
        t = Thread(owner, m._next_pid, cpu)
        m._next_pid += 1
        owner.threads.append(t)
        return t

    @property
    def process(self) -> "Process":
        """The thread group leader (the process itself for its main thread)."""
        return self

    def _pages(self, addr: int, length: int | str, what: str) -> int:
        ps = self.machine.page_size
        length = parse_length(length, f"{what} length")
        if not isinstance(addr, (int, np.integer)):
            raise ModelUsageError(f"{what}: address must be an integer, not {addr!r}")
        if addr & (ps - 1):
            raise ModelUsageError(f"{what}: address {addr:#x} is not page aligned")
        if length <= 0:
            raise ModelUsageError(f"{what}: length must be positive, not {length}")
        return (int(length) + ps - 1) // ps

    # -- user accesses --------------------------------------------------------
    def _fault(self, addr: int, write: bool) -> None:
        """The arch fault handler: ``do_page_fault()`` -> ``handle_mm_fault()``."""
        mm = self.mm
        vma = mm.vma_lookup(addr)
        if vma is None:
            raise SegmentationFault(addr, "MAPERR", write, self.pid)
        need = VM_WRITE if write else (VM_READ | VM_WRITE | VM_EXEC)
        if not vma.vm_flags & need:
            raise SegmentationFault(addr, "ACCERR", write, self.pid)
        sched = self.machine.sched
        if sched is not None and sched.stack:
            sched.may_fault(self, vma, addr)
        ret = handle_mm_fault(vma, addr, FAULT_FLAG_WRITE if write else 0)
        if ret & VM_FAULT_SIGBUS:
            raise BusError(addr, "ADRERR", write, self.pid)
        if ret & VM_FAULT_OOM:
            raise OutOfMemory(f"pid {self.pid}: out of memory handling a fault at {addr:#x}")
        if ret & VM_FAULT_SIGSEGV:
            raise SegmentationFault(addr, "ACCERR", write, self.pid)
        if ret & VM_FAULT_UFFD_WP:
            raise UserfaultWP(addr, self.pid)

    def _access(self, addr: int, npages: int, write: bool, value: Any, out: np.ndarray | None) -> None:
        hw = self.machine.hw
        space = self.mm.space
        ps = self.machine.page_size
        done = 0
        reported = 0
        last_fault = -1
        repeats = 0
        sched = self.machine.sched
        try:
            while done < npages:
                sub_out = out[done:] if out is not None else None
                sub_val = value[done:] if isinstance(value, np.ndarray) else value
                n, fault = hw.access(
                    self.cpu, space, addr + done * ps, npages - done, write, sub_val, sub_out
                )
                done += n
                if fault is None:
                    break
                va = addr + done * ps
                if va == last_fault:
                    repeats += 1
                    if repeats > _MAX_FAULTS_PER_PAGE and sched is not None and sched.stack:
                        # A nested step spinning on a stale TLB entry that the
                        # interrupted step (a zap) has not flushed yet: in Linux it
                        # faults again until that flush; here it waits for it.
                        raise Blocked(va)
                    if repeats > _MAX_FAULTS_PER_PAGE:
                        raise InvariantViolation(
                            "fault-loop",
                            f"pid {self.pid}: the fault at {va:#x} ({fault.kind}) never resolves",
                            va,
                        )
                else:
                    last_fault, repeats = va, 0
                if sched is not None and done > reported and self.machine.check_enabled:
                    # Other threads may run in the fault (a preemption
                    # point): what this access did so far happened before.
                    self._report(addr, reported, done, write, value, out)
                    reported = done
                hw.current_cpu = self.cpu
                preempted = sched.preemptions if sched is not None else 0
                self._fault(va, write)
                if (
                    fault.ptep >= 0
                    and int(hw.pool.peek(fault.ptep)) == fault.desc
                    and not (sched is not None and (sched.stack or sched.preemptions != preempted))
                ):
                    # Nothing a retry depends on changed: a walker that
                    # evaluates this descriptor takes the same fault forever
                    # (the architecture lets it pick any member of a
                    # Contiguous block; the model's random pick may escape).
                    # Not so where another thread ran inside the fault: the
                    # handler may have backed off because of what it did (a
                    # PTE of the block changed under it: pte_same() fails on
                    # arm64's gathered young/dirty bits) and the retry reads
                    # the new state; a retry that loops is still caught above.
                    raise InvariantViolation(
                        "fault-loop",
                        f"pid {self.pid}: the {fault.kind} fault at {va:#x} (cpu {self.cpu}) left the "
                        f"descriptor it was taken on unchanged ({fault.desc:#x}); the same fault repeats forever",
                        va,
                        [fault.desc],
                    )
        finally:
            if done > reported and self.machine.check_enabled:
                self._report(addr, reported, done, write, value, out)

    def _report(
        self, addr: int, first: int, done: int, write: bool, value: Any, out: np.ndarray | None
    ) -> None:
        """Tell the validators about pages ``first`` to ``done`` of an access from ``addr``."""
        v = self.machine.validators
        a = addr + first * self.machine.page_size
        sched = self.machine.sched
        if write and sched is not None and sched.stack:
            # Nested in a zap whose flush is pending, a write may go through a
            # stale TLB entry to a page no longer mapped, or no longer mapped
            # there (a fault mapped a new one over the cleared entry): it is
            # lost with that page.  Only a write the mapped page holds counts.
            ps = self.machine.page_size
            arch = self.machine.kernel.arch
            for i in range(first, done):
                pfn = page_pfn(self.mm, addr + i * ps)
                if pfn < 0:
                    continue
                val = value[i : i + 1] if isinstance(value, np.ndarray) else value
                if int(arch.memcpy_from_page(pfn)) == int(
                    value[i] if isinstance(value, np.ndarray) else value
                ):
                    v.on_write(self, addr + i * ps, 1, val)
            return
        if write:
            v.on_write(self, a, done - first, value[first:done] if isinstance(value, np.ndarray) else value)
        elif out is not None:
            v.on_read(self, a, out[first:done])

    def write(self, addr: int, length: int | str, value: int | np.ndarray = 0) -> None:
        """Store ``value`` in every page of ``[addr, addr+length)`` (as user code would)."""
        npages = self._pages(addr, length, "write")
        if isinstance(value, np.ndarray):
            if len(value) != npages:
                raise ModelUsageError(f"write: {len(value)} values for {npages} pages")
            value = value.astype(np.uint64)
        elif not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 1 << 64:
            raise ModelUsageError(f"write: value must be a 64-bit unsigned integer, not {value!r}")
        self._enter()
        self._access(addr, npages, True, value, None)
        self._leave("write")

    def read(self, addr: int, length: int | str) -> np.ndarray:
        """Load every page of ``[addr, addr+length)``: one uint64 per page."""
        npages = self._pages(addr, length, "read")
        self._enter()
        out = np.zeros(npages, dtype=np.uint64)
        self._access(addr, npages, False, None, out)
        self._leave("read")
        return out

    # -- syscalls -------------------------------------------------------------
    def mmap(
        self,
        length: int | str,
        prot: str | int = "rw",
        flags: str = "private|anonymous",
        file: File | None = None,
        offset: int | str = 0,
        addr: int = 0,
    ) -> int:
        """Map memory; returns the address.  ``flags``: private|shared, anonymous, fixed.

        ``length`` and ``offset``: integers or sizes such as ``"1M"``.
        """
        length = parse_length(length, "mmap length")
        offset = parse_length(offset, "mmap offset")
        fl = parse_flags(flags)
        vm = parse_prot(prot)
        self._enter("mmap")
        ps = self.machine.page_size
        if ("private" in fl) == ("shared" in fl):
            raise OSError(errno.EINVAL, "mmap: exactly one of private and shared is required")
        if "anonymous" in fl and file is not None:
            raise ModelUsageError("mmap: anonymous mappings take no file")
        if "anonymous" not in fl and file is None:
            raise OSError(errno.EBADF, "mmap: a file mapping needs file=")
        if length <= 0 or offset & (ps - 1) or offset < 0:
            raise OSError(errno.EINVAL, f"mmap: invalid length {length} or offset {offset}")
        if "shared" in fl:
            vm |= VM_SHARED
        pgoff = offset // ps
        if file is None and "shared" in fl:
            file = self.machine._new_file(f"dev/zero (shared anon, pid {self.pid})", length, 0, shmem=True)
            file.anon_shmem = True
        ret = do_mmap(self.mm, file, addr, length, vm, pgoff, "fixed" in fl)
        if ret < 0:
            raise _oserror(ret, "mmap")
        if self.machine.check_enabled:
            self.machine.validators.on_unmap(self, ret, length)
        self._leave("mmap")
        if "populate" in fl:
            self.write(ret, length, 0) if vm & VM_WRITE else self.read(ret, length)
        return ret

    def munmap(self, addr: int, length: int | str) -> None:
        """Unmap a range (partial folios are fine)."""
        length = parse_length(length, "munmap length")
        self._enter("munmap")
        ret = do_munmap(self.mm, addr, length)
        if ret:
            raise _oserror(ret, "munmap")
        if self.machine.check_enabled:
            self.machine.validators.on_unmap(self, addr, length)
        self._leave("munmap")

    def mremap(
        self,
        old_addr: int,
        old_len: int | str,
        new_len: int | str,
        flags: str | int = 0,
        new_addr: int | None = None,
    ) -> int:
        """Resize and/or move a mapping; returns its (new) address.

        ``flags``: ``"maymove"``, ``"fixed"``, ``"dontunmap"`` joined with
        ``|`` (or the MREMAP_* bits as an int); ``new_addr``: the target of
        MREMAP_FIXED (a hint with MREMAP_DONTUNMAP alone).  Errors as
        Linux: EINVAL (bad flags, alignment, lengths, overlapping ranges),
        EFAULT (no mapping at ``old_addr``, or the old range leaves it),
        ENOMEM (cannot grow in place without MREMAP_MAYMOVE).  Models
        mm/mremap.c (``contpte.mm.mremap``).
        """
        old_n = parse_length(old_len, "mremap old length")
        new_n = parse_length(new_len, "mremap new length")
        if old_n < 0 or new_n < 0:
            raise ModelUsageError(f"mremap: lengths must not be negative, not {old_n} and {new_n}")
        fl = parse_mremap_flags(flags)
        if not isinstance(old_addr, (int, np.integer)) or old_addr < 0:
            raise ModelUsageError(f"mremap: old address must be a non-negative integer, not {old_addr!r}")
        if new_addr is not None and (not isinstance(new_addr, (int, np.integer)) or new_addr < 0):
            raise ModelUsageError(f"mremap: new address must be a non-negative integer, not {new_addr!r}")
        target = int(new_addr or 0)
        self._enter("mremap")
        check = self.machine.check_enabled
        ps = self.machine.page_size
        old_a = int(old_addr)
        old_pages = (old_n + ps - 1) // ps
        new_pages = (new_n + ps - 1) // ps
        # What the validators need to follow the move (values by virtual page).
        saved = self.machine.validators.mremap_begin(self, old_a, old_pages) if check else None
        had_dst = bool(self.mm.vmas_in(target, target + new_pages * ps)) if fl & MREMAP_FIXED else False
        had_tail = bool(self.mm.vmas_in(old_a + new_pages * ps, old_a + old_pages * ps))
        ret = do_mremap(self.mm, old_a, old_n, new_n, fl, target)
        if check:
            v = self.machine.validators
            # The unmaps mremap does before it moves anything: of the
            # MREMAP_FIXED target, of the tail a shrink gives up.  On an
            # error they may have happened already (they stay done): then
            # the range is empty now.
            tail = (old_a + new_pages * ps, max(0, old_pages - new_pages) * ps)
            if had_dst and (ret >= 0 or not self.mm.vmas_in(target, target + new_pages * ps)):
                v.on_unmap(self, target, new_pages * ps)
            if had_tail and (ret >= 0 or not self.mm.vmas_in(tail[0], tail[0] + tail[1])):
                v.on_unmap(self, tail[0], tail[1])
            if ret >= 0 and (ret != old_a or fl & (MREMAP_FIXED | MREMAP_DONTUNMAP)):
                v.on_mremap_move(self, saved, old_a, ret, min(old_pages, new_pages))
        if ret < 0:
            raise _oserror(ret, "mremap")
        self._leave("mremap")
        return ret

    def mprotect(self, addr: int, length: int | str, prot: str | int) -> None:
        """Change protection; EINVAL/ENOMEM/EACCES as Linux."""
        length = parse_length(length, "mprotect length")
        vm = parse_prot(prot)
        self._enter("mprotect")
        ret = do_mprotect_pkey(self.mm, addr, length, vm)
        if ret:
            raise _oserror(ret, "mprotect")
        self._leave("mprotect")

    def madvise(self, addr: int, length: int | str, advice: str) -> None:
        """``advice``: dontneed, free, cold, pageout, hugepage, nohugepage, dontfork, dofork, collapse.

        ``pageout`` (MADV_PAGEOUT) reclaims the range's exclusively mapped
        folios now (with swap, ``Machine(swap=...)``, anon folios are swapped
        out); ``cold`` makes their PTEs old for the next reclaim.

        ``collapse`` is MADV_COLLAPSE: collapse every whole PMD range of the
        anonymous memory in the range into a PMD THP now, whatever the THP
        settings (``madvise_collapse`` in ``mm/khugepaged.py``); it fails
        with EAGAIN (a pinned page), EBUSY, ENOMEM or EINVAL as Linux does.
        """
        length = parse_length(length, "madvise length")
        if advice not in ADVICE:
            raise OSError(errno.EINVAL, f"madvise: unknown advice {advice!r} (known: {', '.join(ADVICE)})")
        # madvise_need_mmap_write(): the name the scheduler's lock rules use.
        if advice in ("dontneed", "free", "cold", "pageout"):
            self._enter("madvise")
        else:
            self._enter("madvise.collapse" if advice == "collapse" else "madvise.write")
        check = self.machine.check_enabled
        if advice == "dontneed" and check:
            self.machine.validators.dontneed_begin(self, addr, length)
        try:
            ret = do_madvise(self.mm, addr, length, advice)
        finally:
            done = self.machine.validators.dontneed_end(self) if advice == "dontneed" and check else addr
        if advice == "dontneed" and check and ret in (0, -errno.ENOMEM):
            # The part not reported at a preemption point (zap_progress).
            self.machine.validators.on_unmap(self, done, addr + length - done, dontneed=True)
        if advice == "free" and self.machine.check_enabled and not addr & (self.machine.page_size - 1):
            # Even a failing MADV_FREE advised the VMAs before the one it failed on.
            self.machine.validators.on_madvise_free(self, addr, length)
        if ret:
            raise _oserror(ret, "madvise")
        self._leave("madvise")

    def prctl_set_vma_name(self, addr: int, length: int | str, name: str | None) -> int:
        """prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, length, name); returns 0.

        EINVAL for an unaligned ``addr``, a wrapping range or a bad name
        (80 characters or more, non-printable, or one of ``\\`$[]``), EBADF
        for a file mapping, ENOMEM if part of the range is unmapped (the
        mapped parts are still named), as Linux.  Under
        ``Machine(policy="oneplus")`` the name "libc_malloc" or "dalvik-main
        space (region space)" on 2 MB or more makes the VMAs eligible for
        64K blocks (``mm/cont_pte_hugepage.py``); another name, or None,
        makes them ineligible.  Elsewhere the name changes nothing the model
        keeps.
        """
        from ..mm.cont_pte_hugepage import prctl_set_vma_name

        length = parse_length(length, "prctl length")
        self._enter("prctl")
        ret = prctl_set_vma_name(self.mm, addr, length, name)
        if ret:
            raise _oserror(ret, "prctl(PR_SET_VMA_ANON_NAME)")
        self._leave("prctl")
        return 0

    def numa_hint(self, addr: int, length: int | str) -> None:
        """Arm NUMA hinting faults on a range, as the scheduler's scanner does.

        Models ``task_numa_work()`` -> ``change_prot_numa()`` on the VMAs of
        ``[addr, addr+length)`` (unmapped parts are skipped): present PTEs
        become PROT_NONE and the next access takes a hinting fault that
        restores them (no migration is modelled).
        """
        n = self._pages(addr, length, "numa_hint")
        self._enter("numa_hint")
        end = addr + n * self.machine.page_size
        for v in list(self.mm.vmas_in(addr, end)):
            change_prot_numa(v, max(addr, v.vm_start), min(end, v.vm_end))
        self._leave("numa_hint")

    def uffd_wp(self, addr: int, length: int | str, on: bool = True) -> None:
        """userfaultfd write-protect (``on``) or resolve a range.

        Registers the range with UFFDIO_REGISTER_MODE_WP first if needed
        (anonymous memory and shmem only: EINVAL otherwise), then
        UFFDIO_WRITEPROTECT.  A later write to a protected page raises
        ``UserfaultWP``.  Children inherit the registration and the bits
        (UFFD_FEATURE_EVENT_FORK).
        """
        length = parse_length(length, "uffd_wp length")
        self._enter("uffd_wp")
        if on:
            ret = userfaultfd_register_wp(self.mm, addr, length)
            if ret:
                raise _oserror(ret, "userfaultfd(UFFDIO_REGISTER)")
        ret = mwriteprotect_range(self.mm, addr, length, on)
        if ret:
            raise _oserror(ret, "userfaultfd(UFFDIO_WRITEPROTECT)")
        self._leave("uffd_wp")

    def pin(self, addr: int, length: int | str, write: bool = True) -> None:
        """Long-term pin (``pin_user_pages_fast(FOLL_LONGTERM)``, as io_uring's fixed buffers).

        GUP-fast first, the slow path (faults) for the rest; a read pin
        unshares first.
        """
        n = self._pages(addr, length, "pin")
        self._enter("pin")
        pages: list[int] = []
        ret = pin_user_pages_fast(self.mm, addr, n, write, pages)
        if ret:
            if self.machine.check_enabled:
                self.machine.validators.on_pin_failed(self, addr, n, write)
            raise _oserror(ret, "pin")
        if self.machine.check_enabled:
            self.machine.validators.on_pin(self, addr, n, write, pages)
        self._leave("pin")

    def unpin(self, addr: int, length: int | str) -> None:
        """Release pins taken by ``pin`` on this range (by the pages pinned then)."""
        n = self._pages(addr, length, "unpin")
        self._enter("unpin")
        # Check every page before releasing any pin: a failed unpin keeps them all.
        remaining = list(self.mm.pinned)
        targets = []
        for i in range(n):
            got = self._pinned_pfn(addr + i * self.machine.page_size)
            if got is None or got not in remaining:
                raise OSError(errno.EINVAL, f"unpin: {addr + i * self.machine.page_size:#x} is not pinned")
            remaining.remove(got)
            targets.append(got)
        self.mm.pinned[:] = remaining
        unpin_user_pages(self.mm, targets)
        if self.machine.check_enabled:
            self.machine.validators.on_unpin(self, targets)
        self._leave("unpin")

    def _pinned_pfn(self, addr: int) -> int | None:
        row = self._pagemap_rows(addr, 1)[0]
        return int(row["pfn"]) if row["present"] else None

    def fork(self) -> "Process":
        """fork(): a child with a copy-on-write copy of the address space."""
        self._enter("fork")
        child = self.machine._new_process(self)
        if self.machine.check_enabled:
            self.machine.validators.before_fork(self)
        ret = dup_mmap(child.mm, self.mm)
        if ret:
            mmput(child.mm)
            raise _oserror(ret, "fork")
        if self.machine.check_enabled:
            self.machine.validators.on_fork(self, child)
        self._leave("fork")
        return child

    def exit(self) -> None:
        """Exit: tear down the address space (a fullmm zap), drop the pins."""
        self._enter("exit")
        for t in self.threads:  # exit_group(): every thread goes
            t.alive = False
        self.threads.clear()
        if self.mm.pinned:
            unpin_user_pages(self.mm, list(self.mm.pinned))
            self.mm.pinned.clear()
        # The last thread is gone: no CPU runs this ASID again.
        self.machine.hw.release_space(self.mm.space)
        mmput(self.mm)
        self.machine.kernel.mms.remove(self.mm)
        self.machine.hw.retire_space(self.mm.space)
        self.alive = False
        del self.machine.processes[self.pid]
        if self.machine.check_enabled:
            self.machine.validators.on_exit(self)
            self.machine.validators.after_syscall(self, "exit")

    # -- observation ------------------------------------------------------------
    def _pagemap_rows(self, addr: int, npages: int) -> np.ndarray:
        return pagemap_rows(self.mm, addr, npages)

    def pagemap(self, addr: int, length: int | str) -> np.ndarray:
        """One row per page: present, pfn, order, writable, dirty, young, cont, exclusive."""
        n = self._pages(addr, length, "pagemap")
        return self._pagemap_rows(addr, n)

    def maps(self) -> list[tuple[int, int, str, str]]:
        """The VMAs as (start, end, perms, name), like /proc/pid/maps."""
        out = []
        for v in self.mm.vmas:
            perms = "".join(
                c if v.vm_flags & f else "-" for c, f in (("r", VM_READ), ("w", VM_WRITE), ("x", VM_EXEC))
            )
            perms += "s" if v.vm_flags & VM_SHARED else "p"
            out.append((v.vm_start, v.vm_end, perms, v.vm_file.name if v.vm_file else ""))
        return out

    def rss(self) -> dict[str, int]:
        """RSS counters in pages: file, anon, shmem."""
        r = self.mm.rss
        return {"file": r[0], "anon": r[1], "shmem": r[3]}


class Thread(Process):
    """Another thread of a process (``Process.clone_thread``): same mm and pid, its own CPU."""

    def __init__(self, owner: Process, tid: int, cpu: int) -> None:
        super().__init__(owner.machine, owner.pid, owner.mm, cpu, owner.parent)
        self.owner = owner
        self.tid = tid

    def __repr__(self) -> str:
        return f"<Thread pid={self.pid} tid={self.tid} cpu={self.cpu}{'' if self.alive else ' dead'}>"

    @property
    def process(self) -> Process:
        return self.owner

    def clone_thread(self) -> "Thread":
        return self.owner.clone_thread()

    def exit(self) -> None:
        """This thread exits (``exit()``, not ``exit_group()``): the address space stays."""
        self._enter("exit")
        self.alive = False
        if self in self.owner.threads:
            self.owner.threads.remove(self)
