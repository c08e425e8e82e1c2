"""The model's exception types: one module, as drgn keeps one errors module.

Three kinds are kept apart, so a caller can tell who is at fault:

- ``ModelUsageError``: the model was called wrongly (bad argument, unknown
  option, malformed input file).  Syscall misuse is *not* this: it raises the
  ``OSError`` Linux would return.
- ``SegmentationFault``: the simulated program touched memory it may not
  (what Linux would deliver as SIGSEGV).
- ``BusError``: the simulated program touched a mapped page that has no
  backing (what Linux would deliver as SIGBUS, e.g. a file page beyond the
  end of the file).
- ``InvariantViolation``: a kernel invariant or an architectural rule was
  broken.  This is what the validators and the rule checker raise.
"""

from __future__ import annotations

__all__ = [
    "ContpteError",
    "ModelUsageError",
    "ScenarioError",
    "SegmentationFault",
    "BusError",
    "UserfaultWP",
    "InvariantViolation",
    "KernelBug",
    "OutOfMemory",
]


class ContpteError(Exception):
    """Base of every error the model raises (syscall errnos excepted)."""


class ModelUsageError(ContpteError, ValueError):
    """The model itself was called with a bad argument or option."""


class ScenarioError(ModelUsageError):
    """A scenario, trace or snapshot file is malformed.

    The message names the file, the line and what was expected there
    (``line`` 0: the file as a whole, e.g. it cannot be read; no line shown).
    """

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.detail = message
        super().__init__(f"{path}:{line}: {message}" if line > 0 else f"{path}: {message}")


class SegmentationFault(ContpteError):
    """A user access the kernel answers with SIGSEGV.

    ``code`` is ``"MAPERR"`` (no VMA) or ``"ACCERR"`` (VMA forbids it).
    """

    def __init__(self, addr: int, code: str, write: bool, pid: int | None = None) -> None:
        self.addr = addr
        self.code = code
        self.write = write
        self.pid = pid
        who = f"pid {pid}: " if pid is not None else ""
        kind = "write" if write else "read"
        super().__init__(f"{who}SIGSEGV ({'SEGV_' + code}) on {kind} at {addr:#x}")


class BusError(ContpteError):
    """A user access the kernel answers with SIGBUS.

    ``code`` is ``"ADRERR"`` (BUS_ADRERR: the page has no backing, e.g. a
    file mapping read or written beyond the end of the file).
    """

    def __init__(self, addr: int, code: str, write: bool, pid: int | None = None) -> None:
        self.addr = addr
        self.code = code
        self.write = write
        self.pid = pid
        who = f"pid {pid}: " if pid is not None else ""
        kind = "write" if write else "read"
        super().__init__(f"{who}SIGBUS ({'BUS_' + code}) on {kind} at {addr:#x}")


class UserfaultWP(ContpteError):
    """A write hit a userfaultfd write-protected page.

    Linux would queue a UFFD_EVENT_PAGEFAULT (WP) message and block the
    thread until the monitor resolves it; the model runs no monitor, so the
    access stops here (pages before ``addr`` were written).
    """

    def __init__(self, addr: int, pid: int | None = None) -> None:
        self.addr = addr
        self.pid = pid
        who = f"pid {pid}: " if pid is not None else ""
        super().__init__(f"{who}userfaultfd write-protect fault at {addr:#x}")


class InvariantViolation(ContpteError):
    """A kernel invariant or an architectural rule does not hold.

    ``rule`` is a stable short name (e.g. ``"refcount>=mapcount"``,
    ``"bbm"``, ``"contig-consistency"``, ``"isolation"``).
    """

    def __init__(
        self,
        rule: str,
        message: str,
        addr: int | None = None,
        ptes: list[int] | None = None,
    ) -> None:
        self.rule = rule
        self.addr = addr
        self.ptes = list(ptes) if ptes is not None else []
        text = f"[{rule}] {message}"
        if addr is not None:
            text += f" (addr {addr:#x})"
        if self.ptes:
            text += " ptes=[" + " ".join(f"{p:#018x}" for p in self.ptes) + "]"
        super().__init__(text)


class KernelBug(InvariantViolation):
    """A modelled ``VM_BUG_ON``/``VM_WARN_ON``: a kernel-contract violation."""


class OutOfMemory(ContpteError):
    """Physical memory is exhausted: even an order-0 allocation failed."""
