"""The guest C program of a scenario: generate it, cross-compile it.

A ``GuestStep`` is a scenario step with every operand resolved to what the
model did (the address each ``mmap`` got, the addresses the names stood for
at that step, the file ids).  ``generate_c`` writes the step table into
``guest_runtime.c`` (the fixed part: controller, workers, THP policy,
trace markers); ``compile_programs`` cross-compiles static arm64 binaries,
cached by the hash of their source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GuestStep",
    "GuestFile",
    "GuestProgram",
    "OPS",
    "RUNTIME",
    "generate_c",
    "compile_programs",
    "CompileError",
]

RUNTIME = Path(__file__).with_name("guest_runtime.c")

OPS = (
    "nop", "spawn", "file", "fork", "exit", "mmap", "write", "read", "mprotect", "madvise", "munmap", "uffd_wp",
)  # fmt: skip
"""Guest step kinds, in the order of ``enum op`` in guest_runtime.c."""

_PROT = {"none": "0", "r": "PROT_READ", "rw": "PROT_READ|PROT_WRITE", "rwx": "PROT_READ|PROT_WRITE|PROT_EXEC"}
_MAP = {"private": "MAP_PRIVATE", "shared": "MAP_SHARED", "anonymous": "MAP_ANONYMOUS", "fixed": "MAP_FIXED"}
#: mremap's flags (an mremap step's ``flags``; its new length is ``value``, its new address ``offset``)
_MREMAP = {"maymove": "MREMAP_MAYMOVE", "fixed": "MREMAP_FIXED", "dontunmap": "MREMAP_DONTUNMAP"}
_MADV = {
    "dontneed": "MADV_DONTNEED",
    "free": "MADV_FREE",
    "hugepage": "MADV_HUGEPAGE",
    "nohugepage": "MADV_NOHUGEPAGE",
    "dontfork": "MADV_DONTFORK",
    "dofork": "MADV_DOFORK",
    "collapse": "25",  # MADV_COLLAPSE (v6.1)
}


class CompileError(RuntimeError):
    """The cross compiler rejected a generated program (a bug of the generator)."""


@dataclass
class GuestStep:
    """One step as the guest runs it (model addresses, resolved)."""

    line: int
    op: str
    proc: int = -1
    child: int = -1
    addr: int = 0
    length: int = 0
    value: int = 0
    prot: str = "none"
    flags: str = ""
    advice: str = ""
    file: int = -1
    offset: int = 0
    expect_fail: bool = False
    noreplace: bool = False


@dataclass
class GuestFile:
    """A file the guest creates on tmpfs with the model file's initial contents."""

    path: str
    size: int
    file_id: int


@dataclass
class GuestProgram:
    """Everything one scenario's guest program needs."""

    name: str
    steps: list[GuestStep]
    files: list[GuestFile]
    nprocs: int
    thp: str
    mthp_kb: dict[int, str]
    page_size: int = 4096
    """The guest kernel's page size in bytes (4K or 16K)."""


def _c_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flags(step: GuestStep) -> str:
    names = _MREMAP if step.op == "mremap" else _MAP
    words = [names[w] for w in step.flags.split("|") if w]
    if step.noreplace:
        words.append("MAP_FIXED_NOREPLACE")
    return "|".join(words) or "0"


def generate_c(prog: GuestProgram) -> str:
    """The C source of ``prog``: its tables inserted into the runtime."""
    runtime = RUNTIME.read_text()
    head, sep, tail = runtime.partition("/* @TABLES@ */")
    if not sep:
        raise CompileError(f"{RUNTIME} lost its /* @TABLES@ */ marker")
    defs = [
        f"#define SCENARIO_NAME {_c_str(prog.name)}",
        f"#define MAXPROCS {max(1, prog.nprocs)}",
        f"#define NSTEPS {len(prog.steps)}",
        f"#define NSIZES {len(prog.mthp_kb)}",
        f"#define THP_TOP {_c_str(prog.thp)}",
        f"#define PAGE {prog.page_size}UL",
        # A PMD maps one table of page_size / 8 entries.
        f"#define PMD_KB {(prog.page_size // 8) * prog.page_size >> 10}",
    ]
    sizes = sorted(prog.mthp_kb)
    tables = [
        f"static const int mthp_kb[] = {{ {', '.join(str(k) for k in sizes) or '0'} }};",
        f"static const char *const mthp_val[] = {{ {', '.join(_c_str(prog.mthp_kb[k]) for k in sizes) or '0'} }};",
        "static const struct filedesc files[] = {",
        *[f"\t{{ {_c_str(f.path)}, {f.size:#x}UL, {f.file_id:#x}ULL }}," for f in prog.files],
        "\t{ 0, 0, 0 }",
        "};",
        "static const struct step steps[] = {",
    ]
    for s in prog.steps:
        tables.append(
            f"\t{{ .line = {s.line}, .op = OP_{s.op.upper()}, .proc = {s.proc}, .child = {s.child}, "
            f".addr = {s.addr:#x}UL, .len = {s.length:#x}UL, .value = {s.value:#x}ULL, "
            f".prot = {_PROT.get(s.prot, '0')}, .flags = {_flags(s)}, "
            f".advice = {_MADV.get(s.advice, '0')}, .file = {s.file}, .offset = {s.offset:#x}UL, "
            f".expect_fail = {int(s.expect_fail)} }},"
        )
    tables += ["\t{ 0 }", "};"]
    return head + "\n".join(defs + tables) + "\n" + tail


def _compile_one(cc: str, source: str, out_dir: Path) -> Path:
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    binary = out_dir / f"g-{digest}"
    if binary.exists():
        return binary
    src = out_dir / f"g-{digest}.c"
    tmp = out_dir / f".g-{digest}.{os.getpid()}"
    src.write_text(source)
    r = subprocess.run(
        [cc, "-O2", "-static", "-Wall", "-Wno-unused-function", "-o", str(tmp), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        raise CompileError(f"{cc} failed on {src}:\n{r.stderr.strip()}")
    tmp.replace(binary)
    return binary


def compile_programs(sources: list[str], cache: Path, cc: str = "aarch64-linux-gnu-gcc") -> list[Path]:
    """Static arm64 binaries of ``sources`` (cached in ``cache/bin`` by content hash)."""
    if shutil.which(cc) is None:
        raise CompileError(f"no {cc} (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)")
    out_dir = cache / "bin"
    out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        binaries = list(pool.map(lambda s: _compile_one(cc, s, out_dir), sources))
    _prune(out_dir, keep=set(binaries))
    return binaries


KEEP_PROGRAMS = 400
"""Compiled programs kept in the cache (the newest; a library run needs one per scenario)."""


def _prune(out_dir: Path, keep: set[Path]) -> None:
    progs = sorted(
        (p for p in out_dir.glob("g-*") if p.suffix != ".c"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for p in progs[KEEP_PROGRAMS:]:
        if p not in keep:
            p.unlink(missing_ok=True)
            p.with_suffix(".c").unlink(missing_ok=True)
