"""Scenario files: parse them, run them, observe what a process can see.

The format is specified in docs/SCENARIOS.md: a ``machine`` header line,
optional metadata (``title``, ``expect-mismatch``), then one step per line.
``parse(text, path)`` returns a ``Scenario``; malformed input raises
``ScenarioError(path, line, what was expected)``.  ``run(scenario)`` replays
it on a Machine and returns one ``Outcome`` per step; it never raises for
what a step *did* (an errno, a SIGSEGV, a broken invariant): that is the
outcome, compared with the step's ``!EXPECT`` if it has one.

``observe(machine, env)`` is the state a process can observe (values,
presence, folio order, exclusivity, which pages share a frame, RSS),
canonicalised so two runs on different backends or kernel variants compare
equal exactly when no process could tell them apart.
"""

from __future__ import annotations

import errno as _errno
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..check.stale_tlb import stale_tlb_at_return
from ..errors import (
    BusError,
    InvariantViolation,
    ModelUsageError,
    OutOfMemory,
    ScenarioError,
    SegmentationFault,
    UserfaultWP,
)
from ..mm.memmap import PG_lazyfree
from ..system import Machine, Process
from ..system.process import Thread
from ..system.sched import ANY_POINT, POINTS, Action, Blocked

__all__ = [
    "stale_tlb_at_return",
    "AddrRef",
    "Step",
    "Scenario",
    "Outcome",
    "parse",
    "parse_file",
    "run",
    "observe",
    "pte_picture",
    "label_state",
    "PTE_PICTURE_PAGES",
    "format_scenario",
    "format_step",
    "parse_machine_options",
    "OPS",
    "PROTS",
    "MMAP_FLAGS",
    "ADVICES",
    "MREMAP_FLAG_NAMES",
]

PROTS = ("r", "rw", "rwx", "none")
MMAP_FLAGS = ("private|anonymous", "shared|anonymous", "private", "shared")
ADVICES = ("dontneed", "free", "hugepage", "nohugepage", "dontfork", "dofork", "collapse", "cold", "pageout")
MREMAP_FLAG_NAMES = ("maymove", "fixed", "dontunmap")
VMA_NAME_ALIASES = {"dalvik": "dalvik-main space (region space)"}
"""``vma-name ADDR LEN NAME``: one-word NAMEs standing for names with spaces."""
"""The names ``mremap flags=`` takes, in the order ``format_step`` writes them."""
MACHINE_OPS = ("spawn", "file", "check", "reclaim", "khugepaged", "measure")
PROC_OPS = (
    "mmap",
    "write",
    "read",
    "mprotect",
    "madvise",
    "munmap",
    "mremap",
    "pin",
    "unpin",
    "fork",
    "exit",
    "numa",
    "uffd-wp",
    "vma-name",
    "thread",
)
OPS = MACHINE_OPS + PROC_OPS
"""Every step verb."""

_BINDS = {"spawn": "proc", "fork": "proc", "thread": "proc", "file": "file", "mmap": "addr", "mremap": "addr"}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SIZE_RE = re.compile(r"(0[xX][0-9a-fA-F]+|\d+)([KMGT]?)\Z")
_ADDR_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:([+-])(.+))?\Z")
_RESERVED = set(OPS) | {"machine", "title", "expect-mismatch", "true", "false", "repeat", "end", "at"}
_EXPECT_RE = re.compile(r"(SIGSEGV(?::(MAPERR|ACCERR))?|SIGBUS(?::ADRERR)?|E[A-Z0-9]+|OOM|UFFD_WP|any)\Z")


@dataclass(frozen=True)
class AddrRef:
    """An address operand: ``name + offset`` (``name`` None: a literal address)."""

    name: str | None
    offset: int = 0

    def __str__(self) -> str:
        if self.name is None:
            return f"{self.offset:#x}"
        if self.offset == 0:
            return self.name
        sign = "+" if self.offset > 0 else "-"
        return f"{self.name}{sign}{_fmt_size(abs(self.offset))}"


@dataclass
class Step:
    """One step: ``[bind =] [proc] op args... [!EXPECT]`` at ``line``."""

    line: int
    proc: str | None
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    bind: str | None = None
    expect: str | None = None
    #: ``at POINT[:N]`` / ``at *``: the step runs at a preemption point of the next step
    #: (``contpte.system.sched``), None for an ordinary step.
    at: str | None = None


@dataclass
class Scenario:
    """A parsed scenario file."""

    path: str
    machine: dict[str, Any]
    steps: list[Step]
    title: str | None = None
    expect_mismatch: dict[str, str] = field(default_factory=dict)
    header_line: int = 1


@dataclass
class Outcome:
    """What one step did.

    ``error`` is None (success), ``"SIGSEGV:MAPERR"``/``"SIGSEGV:ACCERR"``,
    ``"SIGBUS:ADRERR"``,
    an errno name (``"EINVAL"``), ``"OOM"``, or ``"violation:<rule>"`` (an
    ``InvariantViolation``; ``violation`` holds it and the run stops there).
    ``failed`` says why the step's expectation was not met (None: it was).
    ``state`` is ``observe()`` after the step and ``ptes`` the
    ``pte_picture()`` of its range (both only when the run observes state).
    """

    line: int
    op: str
    text: str
    error: str | None = None
    values: list[int] | None = None
    counters: dict[str, int] = field(default_factory=dict)
    expect: str | None = None
    failed: str | None = None
    violation: InvariantViolation | None = None
    state: dict[str, Any] | None = None
    ptes: dict[str, Any] | None = None
    #: For an ``at`` step: where it ran (``"fork.lock_break:2"``, ``"after"``,
    #: ``"blocked at fork.lock_break:1, resumed after"``).
    ran: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "line": self.line,
            "op": self.op,
            "text": self.text,
            "error": self.error,
            "expect": self.expect,
            "failed": self.failed,
            "counters": self.counters,
        }
        if self.values is not None:
            out["values"] = self.values
        if self.violation is not None:
            out["violation"] = str(self.violation)
        if self.state is not None:
            out["state"] = label_state(self.state)
        if self.ptes is not None:
            out["ptes"] = self.ptes
        if self.ran is not None:
            out["ran"] = self.ran
        return out


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------
def _fmt_size(n: int) -> str:
    for suffix, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return f"{n:#x}" if n >= 4096 else str(n)


def _size(tok: str, what: str, path: str, line: int, allow_zero: bool = False) -> int:
    m = _SIZE_RE.match(tok)
    if not m:
        raise ScenarioError(path, line, f"{what}: expected a size like 4096, 0x3000, 64K or 2M, got {tok!r}")
    n = int(m.group(1), 0) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2)]
    if n == 0 and not allow_zero:
        raise ScenarioError(path, line, f"{what}: expected a positive size, got {tok!r}")
    return n


def _value(tok: str, what: str, path: str, line: int) -> int:
    try:
        v = int(tok, 0)
    except ValueError:
        raise ScenarioError(
            path, line, f"{what}: expected an integer (decimal or 0x hex), got {tok!r}"
        ) from None
    if not 0 <= v < 1 << 64:
        raise ScenarioError(path, line, f"{what}: expected a 64-bit unsigned value, got {tok!r}")
    return v


def _bool(tok: str, what: str, path: str, line: int) -> bool:
    t = tok.lower()
    if t in ("true", "yes", "1", "on"):
        return True
    if t in ("false", "no", "0", "off"):
        return False
    raise ScenarioError(path, line, f"{what}: expected true or false, got {tok!r}")


class _Names:
    """Names bound so far, by kind (proc, addr, file)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.kind: dict[str, str] = {}

    def bind(self, name: str, kind: str, line: int) -> None:
        if not _NAME_RE.match(name) or name in _RESERVED:
            raise ScenarioError(
                self.path,
                line,
                f"expected a name (letters, digits, _; not a keyword) before '=', got {name!r}",
            )
        old = self.kind.get(name)
        if old is not None and old != kind:
            raise ScenarioError(
                self.path, line, f"{name!r} is already bound to a {old}, cannot rebind it to a {kind}"
            )
        self.kind[name] = kind

    def use(self, name: str, kind: str, line: int) -> None:
        got = self.kind.get(name)
        if got is None:
            raise ScenarioError(
                self.path, line, f"expected a {kind} name bound by an earlier step, got unknown {name!r}"
            )
        if got != kind:
            raise ScenarioError(self.path, line, f"expected a {kind} name, but {name!r} is a {got}")


def _addr(tok: str, names: _Names, path: str, line: int) -> AddrRef:
    if tok[:2].lower() == "0x" or tok[:1].isdigit():
        return AddrRef(None, _size(tok, "address", path, line, allow_zero=True))
    m = _ADDR_RE.match(tok)
    if not m:
        raise ScenarioError(
            path, line, f"address: expected NAME, NAME+OFFSET, NAME-OFFSET or a hex address, got {tok!r}"
        )
    names.use(m.group(1), "addr", line)
    off = 0
    if m.group(2):
        off = _size(m.group(3), "address offset", path, line, allow_zero=True)
        if m.group(2) == "-":
            off = -off
    return AddrRef(m.group(1), off)


def _split(raw: str, path: str, line: int) -> list[str]:
    lex = shlex.shlex(raw, posix=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        return list(lex)
    except ValueError as e:
        raise ScenarioError(path, line, f"expected balanced quotes ({e})") from None


def _keywords(toks: list[str], allowed: tuple[str, ...], what: str, path: str, line: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in toks:
        key, eq, val = t.partition("=")
        if not eq or key not in allowed:
            want = " ".join(f"[{a}=...]" for a in allowed) if allowed else "nothing more"
            raise ScenarioError(path, line, f"{what}: expected {want}, got {t!r}")
        if key in out:
            raise ScenarioError(path, line, f"{what}: {key}= given twice")
        if not val:
            raise ScenarioError(path, line, f"{what}: expected a value after {key}=")
        out[key] = val
    return out


def _positional(toks: list[str], n: int, usage: str, path: str, line: int) -> list[str]:
    pos = [t for t in toks if "=" not in t]
    if len(pos) != n or toks[:n] != pos:
        raise ScenarioError(
            path, line, f"expected '{usage}', got {' '.join(toks) or 'nothing'!r} after the verb"
        )
    return pos


_MACHINE_INT = {"cpus", "seed"}
_MACHINE_BOOL = {"check", "adversarial_tlb"}
_MACHINE_STR = {"arch", "memory", "page_size", "thp", "cpu", "kernel", "swap"}


def _machine_keys() -> set[str]:
    from ..mm.kernel import MM_OPTIONS
    from ..system.machine import ARCH_OPTIONS

    keys = set(MM_OPTIONS) | {k for v in ARCH_OPTIONS.values() for k in v}
    return keys | _MACHINE_INT | _MACHINE_BOOL | _MACHINE_STR | {"bugs"}


def _machine_value(key: str, val: str, path: str, line: int) -> Any:
    from ..mm.kernel import MM_OPTIONS
    from ..system.machine import ARCH_OPTIONS

    if key == "bugs":
        from ..bugs import check_bug_names

        try:
            return tuple(sorted(check_bug_names(val)))
        except ModelUsageError as e:
            raise ScenarioError(path, line, f"machine bugs=: {e}") from None
    if key in _MACHINE_INT:
        try:
            return int(val, 0)
        except ValueError:
            raise ScenarioError(path, line, f"machine {key}=: expected an integer, got {val!r}") from None
    if key in _MACHINE_BOOL:
        return _bool(val, f"machine {key}=", path, line)
    if key == "kernel":
        from ..version import check_kernel

        try:
            return check_kernel(val)
        except ModelUsageError as e:
            raise ScenarioError(path, line, f"machine {e}") from None
    if key in _MACHINE_STR:
        return val
    default = MM_OPTIONS.get(key, next((o[key] for o in ARCH_OPTIONS.values() if key in o), None))
    if isinstance(default, bool):
        return _bool(val, f"machine {key}=", path, line)
    if isinstance(default, tuple):
        return tuple(v for v in val.split(",") if v)
    if isinstance(default, int):
        try:
            return int(val, 0)
        except ValueError:
            raise ScenarioError(path, line, f"machine {key}=: expected an integer, got {val!r}") from None
    return val


def _parse_machine(toks: list[str], path: str, line: int) -> dict[str, Any]:
    known = _machine_keys()
    out: dict[str, Any] = {}
    for t in toks:
        key, eq, val = t.partition("=")
        if not eq or not val:
            raise ScenarioError(path, line, f"machine: expected key=value pairs, got {t!r}")
        if key.startswith("mthp."):
            size = key[5:]
            if not re.fullmatch(r"\d+[KMG]", size):
                raise ScenarioError(
                    path, line, f"machine: expected mthp.<size>=<setting> like mthp.64K=always, got {t!r}"
                )
            if val not in ("always", "madvise", "inherit", "never"):
                raise ScenarioError(
                    path, line, f"machine {key}=: expected always, madvise, inherit or never, got {val!r}"
                )
            out.setdefault("mthp", {})[size] = val
            continue
        if key not in known:
            raise ScenarioError(
                path,
                line,
                f"machine: unknown key {key!r}; expected one of {', '.join(sorted(known))} or mthp.<size>",
            )
        if key in out:
            raise ScenarioError(path, line, f"machine: {key}= given twice")
        out[key] = _machine_value(key, val, path, line)
    return out


def parse_machine_options(pairs: list[str], path: str = "<options>", line: int = 0) -> dict[str, Any]:
    """``["batch_fork=false", "mthp.64K=always"]`` -> Machine keyword arguments, as the header reads them.

    Malformed pairs raise ``ScenarioError(path, line, ...)``.
    """
    return _parse_machine(pairs, path, line)


def _mremap_flags(text: str, path: str, line: int) -> str:
    """``flags=`` of mremap, checked and in canonical order (``""``: none)."""
    got = [t for t in text.split("|") if t and t != "none"]
    bad = [t for t in got if t not in MREMAP_FLAG_NAMES]
    if bad or len(set(got)) != len(got):
        raise ScenarioError(
            path,
            line,
            f"mremap flags=: expected names from {', '.join(MREMAP_FLAG_NAMES)} joined by '|' (each once), "
            f"got {text!r}",
        )
    return "|".join(f for f in MREMAP_FLAG_NAMES if f in got)


def _parse_at(toks: list[str], names: _Names, path: str, line: int) -> Step:
    """``at POINT[:N] PROC VERB ...``: a step of another thread at a preemption point of the next step.

    ``at POINT[:N] reclaim [target=SIZE]``: a reclaim pass (kswapd or
    another task's direct reclaim) there instead.
    """
    if len(toks) < (3 if len(toks) >= 3 and toks[2] == "reclaim" else 4):
        raise ScenarioError(
            path, line, "expected 'at POINT[:N] PROC VERB ...' (POINT: * or one of the points)"
        )
    spec = toks[1]
    name, _, occ = spec.partition(":")
    if (name != ANY_POINT and name not in POINTS) or (occ and (not occ.isdigit() or int(occ) < 1)):
        raise ScenarioError(
            path,
            line,
            f"at: expected *, POINT or POINT:N with POINT one of {', '.join(POINTS)}; got {spec!r}",
        )
    if name == ANY_POINT and occ:
        raise ScenarioError(path, line, "at: '*' takes no ':N'")
    step = _parse_step(toks[2:], names, path, line)
    if (step.proc is None and step.op != "reclaim") or step.bind is not None or step.op in ("thread",):
        raise ScenarioError(path, line, "at: expected 'PROC VERB ...' that binds no name, or 'reclaim'")
    step.at = spec
    return step


def _parse_step(toks: list[str], names: _Names, path: str, line: int) -> Step:
    if toks and toks[0] == "at":
        return _parse_at(toks, names, path, line)
    expect = None
    if toks and toks[-1].startswith("!"):
        expect = toks.pop()[1:]
        if not _EXPECT_RE.match(expect):
            raise ScenarioError(
                path,
                line,
                f"expected an outcome like !SIGSEGV, !SIGSEGV:ACCERR, !SIGBUS, !EINVAL, !OOM or !any, got '!{expect}'",
            )
    bind = None
    if len(toks) >= 2 and toks[1] == "=":
        bind = toks[0]
        toks = toks[2:]
    elif toks and toks[0].endswith("=") and len(toks[0]) > 1 and "=" not in toks[0][:-1]:
        bind = toks[0][:-1]
        toks = toks[1:]
    if not toks:
        raise ScenarioError(path, line, "expected a step after '='")
    if toks[0] in MACHINE_OPS:
        proc, op, rest = None, toks[0], toks[1:]
    elif len(toks) >= 2 and toks[1] in PROC_OPS:
        proc, op, rest = toks[0], toks[1], toks[2:]
        names.use(proc, "proc", line)
    else:
        raise ScenarioError(
            path,
            line,
            f"expected a step: '{'|'.join(MACHINE_OPS)} ...' or 'PROC VERB ...' with VERB one of "
            f"{', '.join(PROC_OPS)}; got {' '.join(toks)!r}",
        )
    want_bind = _BINDS.get(op)
    if bind is not None and want_bind is None:
        raise ScenarioError(path, line, f"'{op}' binds no name; expected no 'NAME =' before it")
    if bind is None and op in ("spawn", "file", "fork", "thread"):
        raise ScenarioError(
            path, line, f"expected 'NAME = {'PROC ' if proc else ''}{op} ...': {op} binds a name"
        )
    args: dict[str, Any] = {}
    if op in ("spawn", "check", "fork", "exit", "thread"):
        _positional(rest, 0, op, path, line)
    elif op == "reclaim":
        kw = _keywords(rest, ("target",), "reclaim", path, line)
        if "target" in kw:
            args = {"target": _size(kw["target"], "reclaim target=", path, line, allow_zero=True)}
            if args["target"] < 1:
                raise ScenarioError(
                    path, line, f"reclaim: target= expects a positive size, got {kw['target']!r}"
                )
    elif op == "khugepaged":
        kw = _keywords(rest, ("pages",), "khugepaged", path, line)
        if "pages" in kw:
            try:
                pages = int(kw["pages"], 0)
            except ValueError:
                pages = 0
            if pages < 1:
                raise ScenarioError(
                    path, line, f"khugepaged: pages= expects a positive integer, got {kw['pages']!r}"
                )
            args = {"pages": pages}
    elif op == "measure":
        pos = _positional(rest, 1, "measure begin|end", path, line)
        if pos[0] not in ("begin", "end"):
            raise ScenarioError(
                path, line, f"expected 'measure begin' or 'measure end', got 'measure {pos[0]}'"
            )
        args = {"edge": pos[0]}
    elif op == "file":
        pos = [t for t in rest if "=" not in t]
        usage = "file NAME SIZE [folio=SIZE] [fs=disk|tmpfs]"
        if len(pos) != 2 or rest[:2] != pos:
            raise ScenarioError(
                path, line, f"expected '{usage}', got {' '.join(rest) or 'nothing'!r} after the verb"
            )
        kw = _keywords(rest[2:], ("folio", "fs"), "file", path, line)
        args = {"name": pos[0], "size": _size(pos[1], "file size", path, line)}
        args["folio"] = _size(kw["folio"], "folio=", path, line) if "folio" in kw else 64 << 10
        if args["folio"] & (args["folio"] - 1):
            raise ScenarioError(path, line, f"folio=: expected a power of two, got {kw['folio']!r}")
        if kw.get("fs", "disk") not in ("disk", "tmpfs"):
            raise ScenarioError(path, line, f"fs=: expected disk or tmpfs, got {kw['fs']!r}")
        if "fs" in kw:
            args["fs"] = kw["fs"]
    elif op == "mmap":
        usage = "mmap LEN PROT FLAGS [file=F] [offset=OFF] [addr=ADDR]"
        pos = [t for t in rest if "=" not in t]
        if len(pos) != 3 or rest[:3] != pos:
            raise ScenarioError(
                path, line, f"expected '{usage}', got {' '.join(rest) or 'nothing'!r} after the verb"
            )
        kw = _keywords(rest[3:], ("file", "offset", "addr"), "mmap", path, line)
        prot = pos[1]
        if prot not in PROTS:
            raise ScenarioError(path, line, f"mmap PROT: expected one of {', '.join(PROTS)}, got {prot!r}")
        flags = pos[2]
        base = flags.removesuffix("|fixed")
        if base not in MMAP_FLAGS:
            raise ScenarioError(
                path,
                line,
                f"mmap FLAGS: expected one of {', '.join(MMAP_FLAGS)} (optionally |fixed), got {flags!r}",
            )
        fname = kw.get("file")
        if fname is not None:
            names.use(fname, "file", line)
        if ("anonymous" in base) == (fname is not None):
            raise ScenarioError(path, line, "mmap: expected file=F exactly when FLAGS has no 'anonymous'")
        args = {
            "length": _size(pos[0], "mmap LEN", path, line),
            "prot": prot,
            "flags": flags,
            "file": fname,
            "offset": _size(kw["offset"], "offset=", path, line, allow_zero=True) if "offset" in kw else 0,
            "addr": _addr(kw["addr"], names, path, line) if "addr" in kw else None,
        }
    elif op == "mremap":
        usage = "mremap ADDR OLD_LEN NEW_LEN [flags=maymove|fixed|dontunmap] [new=ADDR]"
        pos = [t for t in rest if "=" not in t]
        if len(pos) != 3 or rest[:3] != pos:
            raise ScenarioError(
                path, line, f"expected '{usage}', got {' '.join(rest) or 'nothing'!r} after the verb"
            )
        kw = _keywords(rest[3:], ("flags", "new"), "mremap", path, line)
        flags = _mremap_flags(kw.get("flags", ""), path, line)
        args = {
            "addr": _addr(pos[0], names, path, line),
            "length": _size(pos[1], "mremap OLD_LEN", path, line, allow_zero=True),
            "new_length": _size(pos[2], "mremap NEW_LEN", path, line, allow_zero=True),
            "flags": flags,
            "new_addr": _addr(kw["new"], names, path, line) if "new" in kw else None,
        }
    else:
        extra: tuple[str, ...] = ()
        usage = f"{op} ADDR LEN"
        npos = 2
        if op == "write":
            usage, npos = "write ADDR LEN VALUE", 3
        elif op == "read":
            usage, extra = "read ADDR LEN [expect=VALUE]", ("expect",)
        elif op == "mprotect":
            usage, npos = "mprotect ADDR LEN PROT", 3
        elif op == "madvise":
            usage, npos = "madvise ADDR LEN ADVICE", 3
        elif op == "pin":
            usage, extra = "pin ADDR LEN [write=true|false]", ("write",)
        elif op == "uffd-wp":
            usage, npos = "uffd-wp ADDR LEN on|off", 3
        elif op == "vma-name":
            usage, npos = "vma-name ADDR LEN NAME", 3
        pos = [t for t in rest if "=" not in t]
        if len(pos) != npos or rest[:npos] != pos:
            raise ScenarioError(
                path, line, f"expected '{usage}', got {' '.join(rest) or 'nothing'!r} after the verb"
            )
        kw = _keywords(rest[npos:], extra, op, path, line)
        args = {"addr": _addr(pos[0], names, path, line), "length": _size(pos[1], f"{op} LEN", path, line)}
        if op == "write":
            args["value"] = _value(pos[2], "write VALUE", path, line)
        elif op == "read":
            args["expect"] = _value(kw["expect"], "expect=", path, line) if "expect" in kw else None
        elif op == "mprotect":
            if pos[2] not in PROTS:
                raise ScenarioError(
                    path, line, f"mprotect PROT: expected one of {', '.join(PROTS)}, got {pos[2]!r}"
                )
            args["prot"] = pos[2]
        elif op == "madvise":
            if pos[2] not in ADVICES:
                raise ScenarioError(
                    path, line, f"madvise ADVICE: expected one of {', '.join(ADVICES)}, got {pos[2]!r}"
                )
            args["advice"] = pos[2]
        elif op == "pin":
            args["write"] = _bool(kw["write"], "pin write=", path, line) if "write" in kw else True
        elif op == "uffd-wp":
            if pos[2] not in ("on", "off"):
                raise ScenarioError(path, line, f"uffd-wp: expected on or off, got {pos[2]!r}")
            args["on"] = pos[2] == "on"
        elif op == "vma-name":
            args["name"] = VMA_NAME_ALIASES.get(pos[2], pos[2])
    if bind is not None:
        assert want_bind is not None
        names.bind(bind, want_bind, line)
    return Step(line, proc, op, args, bind, expect)


@dataclass
class _Repeat:
    """A ``repeat N [stride=SIZE]`` block being read; expanded at its ``end``."""

    line: int
    count: int
    stride: int
    steps: list[Step] = field(default_factory=list)

    def expand(self) -> list[Step]:
        """The block's steps ``count`` times, address operands moved by ``i * stride``."""
        out: list[Step] = []
        for i in range(self.count):
            for st in self.steps:
                args = {
                    k: AddrRef(v.name, v.offset + i * self.stride) if isinstance(v, AddrRef) else v
                    for k, v in st.args.items()
                }
                out.append(Step(st.line, st.proc, st.op, args, st.bind, st.expect, st.at))
        return out


def _parse_repeat(toks: list[str], path: str, line: int) -> _Repeat:
    pos = [t for t in toks[1:] if "=" not in t]
    if len(pos) != 1 or toks[1:2] != pos:
        raise ScenarioError(path, line, f"expected 'repeat COUNT [stride=SIZE]', got {' '.join(toks)!r}")
    try:
        count = int(pos[0], 0)
    except ValueError:
        count = 0
    if count < 1:
        raise ScenarioError(path, line, f"repeat COUNT: expected a positive integer, got {pos[0]!r}")
    kw = _keywords(toks[2:], ("stride",), "repeat", path, line)
    stride = _size(kw["stride"], "repeat stride=", path, line, allow_zero=True) if "stride" in kw else 0
    return _Repeat(line, count, stride)


def parse(text: str, path: str = "<scenario>") -> Scenario:
    """Parse a scenario file's text; raises ``ScenarioError`` saying where and what was expected."""
    machine: dict[str, Any] | None = None
    header_line = 0
    title: str | None = None
    mismatch: dict[str, str] = {}
    steps: list[Step] = []
    names = _Names(path)
    repeat: _Repeat | None = None
    measuring = 0  # line of the open 'measure begin', 0 when none is open
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word = stripped.split(None, 1)[0]
        if machine is not None and word in ("repeat", "end"):
            toks = _split(stripped, path, lineno)
            if word == "repeat":
                if repeat is not None:
                    raise ScenarioError(
                        path, lineno, f"expected 'end' of the repeat on line {repeat.line} first (no nesting)"
                    )
                repeat = _parse_repeat(toks, path, lineno)
            else:
                if repeat is None:
                    raise ScenarioError(path, lineno, "'end' without a 'repeat' before it")
                if len(toks) != 1:
                    raise ScenarioError(path, lineno, f"expected 'end' alone, got {stripped!r}")
                if not repeat.steps:
                    raise ScenarioError(path, lineno, f"the repeat on line {repeat.line} has no steps")
                steps += repeat.expand()
                repeat = None
            continue
        if machine is None:
            if word != "machine":
                raise ScenarioError(
                    path,
                    lineno,
                    f"expected the header 'machine key=value ...' as the first line, got {stripped!r}",
                )
            machine = _parse_machine(_split(stripped, path, lineno)[1:], path, lineno)
            header_line = lineno
            continue
        if word == "machine":
            raise ScenarioError(
                path, lineno, f"expected one 'machine' header only (the first is on line {header_line})"
            )
        if word in ("title", "expect-mismatch"):
            if steps:
                raise ScenarioError(path, lineno, f"expected '{word}' before the first step")
            if word == "title":
                rest = stripped[len(word) :]
                cut = rest.find(" #")
                title = (rest[:cut] if cut >= 0 else rest).strip()
                if not title:
                    raise ScenarioError(path, lineno, "title: expected text after 'title'")
            else:
                toks = _split(stripped, path, lineno)
                if len(toks) != 3:
                    raise ScenarioError(path, lineno, "expected 'expect-mismatch ORACLE \"reason\"'")
                mismatch[toks[1]] = toks[2]
            continue
        toks = _split(stripped, path, lineno)
        if not toks:
            continue
        step = _parse_step(toks, names, path, lineno)
        if step.op == "measure":
            if repeat is not None:
                raise ScenarioError(path, lineno, "expected no 'measure' inside a repeat")
            if (step.args["edge"] == "begin") == bool(measuring):
                raise ScenarioError(
                    path,
                    lineno,
                    f"'measure begin' already open since line {measuring}"
                    if measuring
                    else "'measure end' without a 'measure begin' before it",
                )
            measuring = lineno if step.args["edge"] == "begin" else 0
        if repeat is not None:
            if step.bind is not None:
                raise ScenarioError(
                    path, lineno, f"expected no 'NAME =' inside a repeat ({step.bind!r} would be rebound)"
                )
            repeat.steps.append(step)
        else:
            steps.append(step)
    if repeat is not None:
        raise ScenarioError(path, repeat.line, "repeat: expected an 'end' line closing it")
    if measuring:
        raise ScenarioError(path, measuring, "'measure begin' never closed by 'measure end'")
    if machine is None:
        raise ScenarioError(
            path,
            max(1, len(text.splitlines())),
            "expected the header 'machine key=value ...', found no lines",
        )
    return Scenario(path, machine, steps, title, mismatch, header_line)


def parse_file(path: str) -> Scenario:
    """Read and parse a ``.scn`` file."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise ScenarioError(path, 0, f"cannot read the file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(path, 0, "expected UTF-8 text") from None
    return parse(text, path)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
def format_step(step: Step) -> str:
    """The text of one step (parses back to an equal ``Step``, line aside)."""
    a = step.args
    op = step.op
    if op in ("spawn", "check"):
        words = [op]
    elif op == "reclaim":
        words = [op] + ([f"target={_fmt_size(a['target'])}"] if a.get("target") else [])
    elif op == "khugepaged":
        words = [op] + ([f"pages={a['pages']}"] if a.get("pages") else [])
    elif op == "measure":
        words = [op, a["edge"]]
    elif op == "file":
        words = [op, shlex.quote(a["name"]), _fmt_size(a["size"]), f"folio={_fmt_size(a['folio'])}"]
        if a.get("fs"):
            words.append(f"fs={a['fs']}")
    elif op in ("fork", "exit", "thread"):
        words = [str(step.proc), op]
    elif op == "mmap":
        words = [str(step.proc), op, _fmt_size(a["length"]), a["prot"], a["flags"]]
        if a.get("file"):
            words.append(f"file={a['file']}")
        if a.get("offset"):
            words.append(f"offset={_fmt_size(a['offset'])}")
        if a.get("addr") is not None:
            words.append(f"addr={a['addr']}")
    elif op == "mremap":
        words = [str(step.proc), op, str(a["addr"]), _fmt_size(a["length"]), _fmt_size(a["new_length"])]
        if a.get("flags"):
            words.append(f"flags={a['flags']}")
        if a.get("new_addr") is not None:
            words.append(f"new={a['new_addr']}")
    else:
        words = [str(step.proc), op, str(a["addr"]), _fmt_size(a["length"])]
        if op == "write":
            words.append(f"{a['value']:#x}" if a["value"] > 9 else str(a["value"]))
        elif op == "read" and a.get("expect") is not None:
            words.append(f"expect={a['expect']:#x}")
        elif op == "mprotect":
            words.append(a["prot"])
        elif op == "madvise":
            words.append(a["advice"])
        elif op == "pin" and not a.get("write", True):
            words.append("write=false")
        elif op == "uffd-wp":
            words.append("on" if a["on"] else "off")
        elif op == "vma-name":
            words.append({v: k for k, v in VMA_NAME_ALIASES.items()}.get(a["name"], a["name"]))
    text = " ".join(words)
    if step.bind:
        text = f"{step.bind} = {text}"
    if step.at:
        text = f"at {step.at} {text}"
    if step.expect:
        text += f"  !{step.expect}"
    return text


def _fmt_machine_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return str(v)


def format_scenario(sc: Scenario, comments: list[str] | None = None) -> str:
    """The text of a scenario file (``parse`` reads it back)."""
    lines = [f"# {c}" for c in comments or []]
    kv = []
    for k, v in sc.machine.items():
        if k == "mthp":
            kv += [f"mthp.{size}={setting}" for size, setting in v.items()]
        else:
            kv.append(f"{k}={_fmt_machine_value(v)}")
    lines.append("machine " + " ".join(kv))
    if sc.title:
        lines.append(f"title {sc.title}")
    for oracle, reason in sc.expect_mismatch.items():
        lines.append(f"expect-mismatch {oracle} {shlex.quote(reason)}")
    lines += [format_step(s) for s in sc.steps]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------
class Env:
    """Names bound while running: processes, files, addresses (with their owner)."""

    def __init__(self) -> None:
        self.procs: dict[str, Process] = {}
        self.files: dict[str, Any] = {}
        self.addrs: dict[str, int] = {}

    def addr(self, ref: AddrRef, sc: Scenario, step: Step) -> int:
        if ref.name is None:
            return ref.offset
        base = self.addrs.get(ref.name)
        if base is None:
            raise ScenarioError(sc.path, step.line, f"address {ref.name!r} is not mapped (its mmap failed)")
        return base + ref.offset

    def proc(self, step: Step, sc: Scenario) -> Process:
        assert step.proc is not None
        p = self.procs.get(step.proc)
        if p is None:
            raise ScenarioError(sc.path, step.line, f"process {step.proc!r} does not exist (its fork failed)")
        if not p.alive:
            raise ScenarioError(sc.path, step.line, f"process {step.proc!r} has exited")
        return p


def _errname(e: OSError) -> str:
    return _errno.errorcode.get(e.errno or 0, f"E{e.errno}")


def _expect_met(expect: str | None, error: str | None) -> bool:
    if expect == "any":
        return True
    if expect is None:
        return error is None
    if error is None:
        return False
    if expect in ("SIGSEGV", "SIGBUS"):
        return error.startswith(expect + ":")
    return expect == error


def make_machine(sc: Scenario, **overrides: Any) -> Machine:
    """The Machine the header describes (``overrides`` win)."""
    kw = dict(sc.machine)
    kw.update(overrides)
    try:
        return Machine(**kw)
    except ModelUsageError as e:
        raise ScenarioError(sc.path, sc.header_line, f"machine: {e}") from None


def exec_step(m: Machine, env: Env, sc: Scenario, step: Step) -> list[int] | None:
    """Run one step on ``m``; raises what the operation raises."""
    op = step.op
    a = step.args
    if op == "spawn":
        assert step.bind is not None
        env.procs[step.bind] = m.spawn()
        return None
    if op == "file":
        assert step.bind is not None
        folio = a["folio"]
        env.files[step.bind] = m.open_file(
            a["name"], a["size"], f"{folio >> 10}K" if folio >= 1024 else str(folio), fs=a.get("fs", "disk")
        )
        return None
    if op == "check":
        m.check()
        return None
    if op == "measure":
        return None  # a marker for the cost model (contpte cost): no kernel work
    if op == "reclaim":
        m.reclaim(a.get("target"))
        return None
    if op == "khugepaged":
        m.khugepaged_scan(a.get("pages"))
        return None
    p = env.proc(step, sc)
    if op == "thread":
        assert step.bind is not None
        env.procs[step.bind] = p.clone_thread()
        return None
    if op == "fork":
        c = p.fork()
        assert step.bind is not None
        env.procs[step.bind] = c
        return None
    if op == "exit":
        p.exit()
        return None
    if op == "mmap":
        f = env.files[a["file"]] if a.get("file") else None
        addr = env.addr(a["addr"], sc, step) if a.get("addr") is not None else 0
        got = p.mmap(a["length"], a["prot"], a["flags"], file=f, offset=a["offset"], addr=addr)
        if step.bind:
            env.addrs[step.bind] = got
        return None
    addr = env.addr(a["addr"], sc, step)
    n = a["length"]
    if op == "mremap":
        target = env.addr(a["new_addr"], sc, step) if a.get("new_addr") is not None else None
        got = p.mremap(addr, n, a["new_length"], a["flags"], target)
        if step.bind:
            env.addrs[step.bind] = got
        return None
    if op == "write":
        p.write(addr, n, a["value"])
    elif op == "read":
        return [int(x) for x in p.read(addr, n)]
    elif op == "mprotect":
        p.mprotect(addr, n, a["prot"])
    elif op == "madvise":
        p.madvise(addr, n, a["advice"])
    elif op == "munmap":
        p.munmap(addr, n)
    elif op == "pin":
        p.pin(addr, n, write=a["write"])
    elif op == "unpin":
        p.unpin(addr, n)
    elif op == "numa":
        p.numa_hint(addr, n)
    elif op == "uffd-wp":
        p.uffd_wp(addr, n, a["on"])
    elif op == "vma-name":
        p.prctl_set_vma_name(addr, n, a["name"])
    else:  # pragma: no cover - the parser admits only known verbs
        raise ScenarioError(sc.path, step.line, f"unknown verb {op!r}")
    return None


def _describe_error(e: BaseException, sc: Scenario, step: Step) -> tuple[str, InvariantViolation | None]:
    """The outcome name of what a step raised (ScenarioError for misuse)."""
    if isinstance(e, SegmentationFault):
        return f"SIGSEGV:{e.code}", None
    if isinstance(e, BusError):
        return f"SIGBUS:{e.code}", None
    if isinstance(e, UserfaultWP):
        return "UFFD_WP", None
    if isinstance(e, OutOfMemory):
        return "OOM", None
    if isinstance(e, InvariantViolation):
        return f"violation:{e.rule}", e
    if isinstance(e, ScenarioError):
        raise e
    if isinstance(e, ModelUsageError):
        raise ScenarioError(sc.path, step.line, str(e)) from None
    if isinstance(e, OSError):
        return _errname(e), None
    raise e


def _judge(step: Step, out: Outcome) -> None:
    """Set ``out.failed`` when the step's expectation (or ``read expect=``) is not met."""
    if out.violation is not None:
        out.failed = str(out.violation)
    elif not _expect_met(step.expect, out.error):
        want = f"!{step.expect}" if step.expect else "success"
        out.failed = f"expected {want}, got {out.error or 'success'}"
    elif step.op == "read" and step.args.get("expect") is not None and out.values is not None:
        want_v = step.args["expect"]
        bad = [i for i, v in enumerate(out.values) if v != want_v]
        if bad:
            out.failed = (
                f"read {out.values[bad[0]]:#x} at page {bad[0]}, expected {want_v:#x} "
                f"({len(bad)} page(s) differ)"
            )


def run_step(
    m: Machine, env: Env, sc: Scenario, step: Step, counters: bool = True, text: bool = True
) -> Outcome:
    """Run one step and describe its outcome (never raises for the step's own failure).

    ``text=False``: leave ``Outcome.text`` empty (the fuzzer, which runs
    thousands of steps and formats only a reproducer's).
    """
    out = Outcome(step.line, step.op, format_step(step) if text else "", expect=step.expect)
    before = m.counters.snapshot() if counters else None
    try:
        out.values = exec_step(m, env, sc, step)
    except Exception as e:
        out.error, out.violation = _describe_error(e, sc, step)
    if out.violation is None:
        stale = stale_tlb_at_return(m)
        if stale is not None:
            out.error = f"violation:{stale.rule}"
            out.violation = stale
    if before is not None:
        after = m.counters.snapshot()
        out.counters = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    _judge(step, out)
    return out


def thread_action(
    m: Machine, env: Env, sc: Scenario, step: Step, out: Outcome, explore: bool = False
) -> Action:
    """The scheduler action of an ``at`` step; it fills ``out`` when it has run.

    A read or write runs page by page, so that a page fault the interrupted
    code's locks forbid blocks the thread at that page (``Blocked``) and the
    rest runs when the lock is free.
    """
    p = env.proc(step, sc) if step.proc is not None else None
    op = step.op
    values: list[int] = []
    # Names are resolved now: a ScenarioError must not unwind through the
    # kernel code the action interrupts.
    addr = env.addr(step.args["addr"], sc, step) if isinstance(step.args.get("addr"), AddrRef) else 0

    def perform(resume: int | None) -> Any:
        if op not in ("write", "read"):
            return exec_step(m, env, sc, step)
        ps = m.page_size
        n = (step.args["length"] + ps - 1) // ps
        first = 0 if resume is None else (resume - addr) // ps
        assert p is not None
        for i in range(first, n):
            va = addr + i * ps
            try:
                if op == "write":
                    p.write(va, ps, step.args["value"])
                else:
                    values.append(int(p.read(va, ps)[0]))
            except Blocked:
                raise Blocked(va) from None
        return values if op == "read" else None

    def done(act: Action) -> None:
        out.ran = act.ran
        if act.error is not None:
            try:
                out.error, out.violation = _describe_error(act.error, sc, step)
            except Exception as e:  # misuse (the thread exited...): the step fails
                out.error, out.failed = "error", str(e)
                return
            out.values = list(values) if op == "read" and values else None
        else:
            out.values = act.result
        _judge(step, out)

    spec = step.at or ANY_POINT
    free = spec == ANY_POINT or (explore and ":" not in spec)
    return Action(p, op, perform, point=spec, free=free, label=format_step(step), on_done=done)


def run(
    sc: Scenario,
    machine: Machine | None = None,
    observe_state: bool = False,
    counters: bool = True,
    decide: Any = None,
    observe_values: bool = True,
    **overrides: Any,
) -> list[Outcome]:
    """Replay ``sc``; one ``Outcome`` per step run.

    Stops after a step that broke an invariant (the machine's state is not
    meaningful afterwards).  ``observe_state`` attaches ``observe()`` to every
    outcome (unless ``observe_values`` is False: it holds every mapped page
    of every process, per step), and ``pte_picture()`` of the step's range.  ``overrides`` change Machine options of the header (e.g.
    ``arch="generic"``); they are ignored when ``machine`` is given.
    ``at`` steps arm a scheduler action for the next ordinary step
    (``contpte.system.sched``); ``decide`` is the scheduler's choice of
    where free actions (``at *``, and with an explorer every ``at POINT``
    without ``:N``) fire.
    """
    m = machine if machine is not None else make_machine(sc, **overrides)
    env = Env()
    outs: list[Outcome] = []
    sched = m.scheduler(decide) if any(s.at for s in sc.steps) else None
    armed_outs: list[Outcome] = []
    for step in sc.steps:
        if step.at:
            assert sched is not None
            o = Outcome(step.line, step.op, format_step(step), expect=step.expect)
            try:
                act = thread_action(m, env, sc, step, o, explore=decide is not None)
            except ScenarioError:
                raise
            sched.arm(act)
            outs.append(o)
            armed_outs.append(o)
            continue
        if sched is not None and sched.armed:
            thread = env.procs.get(step.proc) if step.proc else None
            o = sched.step(thread, lambda step=step: run_step(m, env, sc, step, counters))  # type: ignore[misc]
            if (
                o.violation is None
                and sched.violation is not None
                and not any(a.violation is sched.violation for a in armed_outs)
            ):
                # The nested steps' own end-of-syscall checks (deferred to the step's end).
                o.error, o.violation = f"violation:{sched.violation.rule}", sched.violation
                o.failed = str(sched.violation)
            if o.violation is None and sched.violation is None:
                stale = stale_tlb_at_return(m)
                if stale is not None:
                    o.error, o.violation = f"violation:{stale.rule}", stale
                    o.failed = str(stale)
        else:
            o = run_step(m, env, sc, step, counters)
        if observe_state and o.violation is None:
            if observe_values:
                o.state = observe(m, env)
            o.ptes = pte_picture(m, env, sc, step)
        outs.append(o)
        broken = o.violation is not None or any(a.violation is not None for a in armed_outs)
        armed_outs = []
        if broken:
            break
    return outs


def observe(m: Machine, env: Env) -> dict[str, Any]:
    """What the processes can observe, canonical across backends and variants.

    Per live process (by scenario name) and mapped page: the value it would
    read if present (from the frame the page table maps: no fault, no
    counter), presence, folio order, exclusivity, and a sharing class (pages
    backed by the same frame get the same class number, numbered in order of
    first appearance); plus RSS, the VMA list and ``lazyfree``: the present
    pages whose folio MADV_FREE made lazyfree (reclaim may discard them;
    the kernel's anon folios without PG_swapbacked, as /proc/kpageflags and
    smaps ``LazyFree`` show them).
    """
    ps = m.page_size
    classes: dict[int, int] = {}
    out: dict[str, Any] = {}
    data = m.hw.memory.data
    mem = m.kernel.memmap
    head = np.asarray(mem.head)
    flags = np.asarray(mem.flags)
    for name in sorted(env.procs):
        p = env.procs[name]
        if not p.alive or isinstance(p, Thread):
            continue  # a thread sees what its process sees
        maps = p.maps()
        pages: list[tuple[int, ...]] = []
        lazy: list[int] = []
        for start, end, _perms, _name in maps:
            rows = p.pagemap(start, end - start)
            pres = rows["present"]
            pfns = rows["pfn"]
            vals = np.where(pres, data[np.where(pres, pfns, 0)], 0)
            for i in np.nonzero(pres)[0]:
                pfn = int(pfns[i])
                cls = classes.setdefault(pfn, len(classes))
                pages.append(
                    (start + int(i) * ps, int(vals[i]), int(rows["order"][i]), int(rows["exclusive"][i]), cls)
                )
                if int(flags[int(head[pfn])]) & PG_lazyfree:
                    lazy.append(start + int(i) * ps)
        out[name] = {
            "maps": [(s, e, perms) for s, e, perms, _ in maps],
            "pages": pages,
            "rss": p.rss(),
            "lazyfree": lazy,
        }
    return out


def label_state(state: dict[str, Any]) -> dict[str, Any]:
    """``observe()``'s tuples as labelled records (the JSON form of ``Outcome.state``)."""
    out: dict[str, Any] = {}
    for name, st in state.items():
        out[name] = {
            "maps": [{"start": s, "end": e, "perms": perms} for s, e, perms in st["maps"]],
            "pages": [
                {"addr": va, "value": val, "order": order, "exclusive": bool(excl), "share_class": cls}
                for va, val, order, excl, cls in st["pages"]
            ],
            "rss": st["rss"],
            "lazyfree": st["lazyfree"],
        }
    return out


PTE_PICTURE_PAGES = 4096
"""At most this many pages of a step's range are pictured (from its start)."""

_PICTURE_FIELDS = ("present", "pfn", "order", "writable", "dirty", "young", "cont", "exclusive")


def pte_picture(m: Machine, env: Env, sc: Scenario, step: Step) -> dict[str, Any] | None:
    """The PTEs around the range a step touched, page by page, after it ran.

    For steps with an address range (mmap: the mapping it made; write, read,
    mprotect, madvise, munmap, pin, unpin, numa, uffd-wp: their range; mremap:
    the mapping's new range when it binds a name, else the old one) of a
    live process, the range widened to whole contiguous blocks (16 pages
    with 4K pages; the arm64 block size of the page size), so a fold or an
    unfold shows whole: ``{"process", "pid", "step_start", "step_pages",
    "start", "pages", "shown", "rows"}``, one row per page (the first
    ``PTE_PICTURE_PAGES``) with ``addr`` and the ``pagemap`` fields
    (present, pfn, order, writable, dirty, young, cont, exclusive).  None for
    other steps.  Reads no counter.
    """
    if step.proc is None or step.op not in PROC_OPS or step.op in ("fork", "exit"):
        return None
    a = step.args
    if "length" not in a:
        return None  # a step with no range (thread, ...)
    length = int(a["length"])
    if step.op == "mmap":
        if not step.bind or step.bind not in env.addrs:
            return None
        first = env.addrs[step.bind]
    elif step.op == "mremap" and step.bind and step.bind in env.addrs:
        first = env.addrs[step.bind]  # the mapping where it is now
        length = int(a["new_length"])
    else:
        try:
            first = env.addr(a["addr"], sc, step)
        except ScenarioError:
            return None
    p = env.procs.get(step.proc)
    if p is None or not p.alive:
        return None
    ps = m.page_size
    first &= ~(ps - 1)
    step_pages = max(1, (length + ps - 1) // ps)
    block = int(getattr(m.arch, "CONT_PTES", 16)) * ps
    start = first & ~(block - 1)
    end = (first + step_pages * ps + block - 1) & ~(block - 1)
    npages = (end - start) // ps
    shown = min(npages, PTE_PICTURE_PAGES)
    try:
        rows = p.pagemap(start, shown * ps)
    except ModelUsageError:
        return None
    pages = [
        {"addr": start + i * ps}
        | {f: (int(r[f]) if f in ("pfn", "order") else bool(r[f])) for f in _PICTURE_FIELDS}
        for i, r in enumerate(rows)
    ]
    return {
        "process": step.proc,
        "pid": p.pid,
        "step_start": first,
        "step_pages": step_pages,
        "start": start,
        "pages": npages,
        "shown": shown,
        "rows": pages,
    }
