"""Boot the arm64 kernel under qemu and run guest programs in it.

One boot runs any number of scenario programs, one after the other.  The
initramfs (a gzipped newc cpio written here, no ``cpio`` tool needed)
holds busybox, an ``/init`` script and the programs.  ``/init`` mounts
proc, sysfs, tracefs and a tmpfs, pins the knobs that would make a run
nondeterministic (shmem mTHP off, khugepaged idle, no proactive
compaction or watermark boosting, whose migrations would fault a
scenario's pages anew), and creates one kprobe
event per traced contpte function that the booted kernel has as a symbol
of its own (``/proc/kallsyms``; a function the compiler inlined, renamed or
only cloned as ``.isra``/``.constprop``, whose arguments then sit in other
registers, or a kprobe the kernel refuses, is reported by an
``@@NOTRACE`` line, ``BootResult.untraced``, and left out of the
comparison), recording its ``addr`` and ``ptep``
arguments (``x1``, ``x2`` of the ``(mm, addr, ptep, ...)`` and ``(vma, addr,
ptep, ...)`` functions), or
only ``ptep`` (``x0``) for the getters ``contpte_ptep_get(ptep, orig_pte)``
and ``contpte_ptep_get_lockless(ptep)``, which have no address: the host
learns which virtual region (2M with 4K pages, 32M with 16K) each page-table page maps from the
``(addr, ptep)`` events (a contiguous block is only ever made by
``contpte_set_ptes`` or ``__contpte_try_fold``, both traced, so its table is
known before any getter reads it) and counts only the calls on the
scenario's addresses.

qemu: ``-M virt -cpu max,pauth=off -smp 2 -m 2G -nographic -nic none``.
Pointer authentication is off because TCG emulates it slowly (the kernel
signs every return address); it changes nothing the oracle observes.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .env import ORACLE_UNAVAILABLE, Arm64Env

__all__ = [
    "TRACED",
    "PTEP_ONLY",
    "BootError",
    "BootResult",
    "GuestRun",
    "build_initramfs",
    "boot",
    "parse_console",
    "count_calls",
    "parse_untraced",
    "QEMU_ARGS",
]

TRACED = (
    "contpte_convert",
    "__contpte_try_fold",
    "__contpte_try_unfold",
    "contpte_set_ptes",
    "contpte_wrprotect_ptes",
    "contpte_clear_full_ptes",
    "contpte_get_and_clear_full_ptes",
    "contpte_try_unfold_partial",
    "contpte_ptep_get",
    "contpte_ptep_get_lockless",
    "tlb_flush_rmaps",
    "contpte_clear_young_dirty_ptes",
    "contpte_ptep_set_access_flags",
)
"""The kernel functions whose entries are counted (kprobe event ``fN`` is ``TRACED[N]``)."""

FETCH_ADDR = {"tlb_flush_rmaps": "+0(%x1):x64"}
"""Traced functions that record only an ``addr`` that is not their second
argument: ``tlb_flush_rmaps(tlb, vma)`` records ``vma->vm_start`` (the first
field of ``struct vm_area_struct``), the start of the VMA whose forced flush
it ends (no ``ptep``)."""

PTEP_ONLY = frozenset({"contpte_ptep_get", "contpte_ptep_get_lockless"})
"""Traced functions whose first argument is the ``pte_t *`` (no ``mm``, no address)."""


def _fetch_args(sym: str) -> str:
    """The kprobe fetch arguments recorded for ``sym``."""
    if sym in FETCH_ADDR:
        return f"addr={FETCH_ADDR[sym]}"
    return "ptep=%x0" if sym in PTEP_ONLY else "addr=%x1 ptep=%x2"


QEMU_ARGS = (
    "-M",
    "virt",
    "-cpu",
    "max,pauth=off",
    "-smp",
    "2",
    "-m",
    "2G",
    "-nographic",
    "-nic",
    "none",
    "-no-reboot",
)
CMDLINE = "console=ttyAMA0 rdinit=/init quiet loglevel=1 panic=-1"


class BootError(RuntimeError):
    """The guest did not boot or did not run to the end."""


@dataclass
class GuestRun:
    """What one scenario program printed."""

    name: str
    results: list[tuple[int, int, int, list[int] | None]] = field(default_factory=list)
    """Per step: (step index, line, err, values read or None)."""
    trace: list[str] = field(default_factory=list)
    fatal: str | None = None
    complete: bool = False


@dataclass
class BootResult:
    """One boot: the console and the runs of the programs."""

    console: str
    runs: dict[str, GuestRun]
    seconds: float
    kernel: str = ""
    untraced: dict[str, str] = field(default_factory=dict)
    """The ``TRACED`` functions the booted kernel could not trace: symbol -> why (``@@NOTRACE``)."""


def _init_script(programs: list[str]) -> str:
    probes = "\n".join(f"probe {i} {sym} '{_fetch_args(sym)}'" for i, sym in enumerate(TRACED))
    runs = "\n".join(f"/scn/{p}" for p in programs)
    return f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
fail() {{ echo "@@BOOT-FATAL $*"; poweroff -f; }}
# probe N SYMBOL FETCHARGS...: kprobe event fN on SYMBOL, or say why not (@@NOTRACE).
probe() {{
	n=$1; s=$2; shift 2
	if ! grep -q " [tT] $s\\$" /proc/kallsyms; then
		c=$(grep -E " [tT] $s\\.[a-z_]+\\.[0-9]+" /proc/kallsyms | awk '{{print $3}}' | tr '\\n' ' ')
		echo "@@NOTRACE $s not in kallsyms (inlined or renamed)${{c:+; only the clones $c}}"
		return
	fi
	if echo "p:contpte/f$n $s $*" >> $T/kprobe_events 2>/dev/null; then
		echo "@@TRACED $s"
	else
		echo "@@NOTRACE $s the kprobe was refused"
	fi
}}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tracefs tracefs /sys/kernel/tracing || fail "no tracefs"
mount -t tmpfs tmp /tmp
T=/sys/kernel/tracing
M=/sys/kernel/mm/transparent_hugepage
[ -e $M/enabled ] || fail "no transparent hugepages"
echo 0 > $T/tracing_on
echo global > $T/trace_clock
echo 8192 > $T/buffer_size_kb
{probes}
echo 1 > $T/events/contpte/enable || fail "cannot enable the kprobe events"
echo never > $M/shmem_enabled
for f in $M/hugepages-*kB/shmem_enabled; do echo never > $f; done
echo 0 > $M/khugepaged/max_ptes_none
echo 0 > $M/khugepaged/max_ptes_shared
echo 3600000 > $M/khugepaged/scan_sleep_millisecs
echo 3600000 > $M/khugepaged/alloc_sleep_millisecs
# No background compaction: kcompactd migrating a scenario's folio would fault it anew.
echo 0 > /proc/sys/vm/compaction_proactiveness 2>/dev/null
echo 0 > /proc/sys/vm/watermark_boost_factor 2>/dev/null
echo "@@KERNEL $(uname -r)"
echo "@@READY"
{runs}
echo "@@ALLDONE"
poweroff -f
"""


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data); directories have no data."""
    out = io.BytesIO()
    ino = 1
    for name, mode, data in [*entries, ("TRAILER!!!", 0, b"")]:
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nameb), 0)
        )
        ino += 1
        out.write(hdr.encode())
        out.write(nameb)
        out.write(b"\0" * (-(110 + len(nameb)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
    return out.getvalue()


def build_initramfs(env: Arm64Env, programs: dict[str, Path], dest: Path) -> Path:
    """Write the gzipped initramfs running ``programs`` (name -> arm64 binary) in order."""
    entries: list[tuple[str, int, bytes]] = []
    for d in ("bin", "dev", "proc", "sys", "tmp", "scn"):
        entries.append((d, 0o040755, b""))
    entries.append(("bin/busybox", 0o100755, env.busybox.read_bytes()))
    entries.append(("init", 0o100755, _init_script(list(programs)).encode()))
    for name, binary in programs.items():
        entries.append((f"scn/{name}", 0o100755, binary.read_bytes()))
    # /dev/console comes from the kernel's built-in initramfs, unpacked first.
    data = _cpio_newc(entries)
    dest.write_bytes(gzip.compress(data, compresslevel=1))
    return dest


_RESULT_RE = re.compile(r"^@@S (\d+) (\d+) (-?\d+)(.*)$")


def parse_console(text: str) -> dict[str, GuestRun]:
    """The scenario runs in a console log (``\\r`` and kernel lines tolerated)."""
    runs: dict[str, GuestRun] = {}
    cur: GuestRun | None = None
    in_trace = False
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line.startswith("@@SCENARIO "):
            cur = GuestRun(line.split(" ", 1)[1].strip())
            runs[cur.name] = cur
            in_trace = False
            continue
        if cur is None:
            continue
        if line.startswith("@@TRACE-BEGIN"):
            in_trace = True
        elif line.startswith("@@TRACE-END"):
            in_trace = False
        elif line.startswith("@@SCENARIO-END"):
            cur.complete = True
            cur = None
        elif line.startswith("@@FATAL"):
            cur.fatal = line[len("@@FATAL") :].strip()
        elif in_trace:
            cur.trace.append(line)
        else:
            m = _RESULT_RE.match(line)
            if m:
                vals: list[int] | None = None
                if m.group(4).strip():
                    vals = []
                    for tok in m.group(4).split():
                        v, _, n = tok.partition("*")
                        vals += [int(v, 16)] * int(n)
                cur.results.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), vals))
    return runs


def boot(env: Arm64Env, programs: dict[str, Path], workdir: Path, timeout: float) -> BootResult:
    """Boot once, run ``programs`` in order, return what they printed."""
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        raise BootError(f"{ORACLE_UNAVAILABLE}: no qemu-system-aarch64 (apt-get install qemu-system-arm)")
    initrd = build_initramfs(env, programs, workdir / "initramfs.gz")
    cmd = [qemu, *QEMU_ARGS, "-kernel", str(env.image), "-initrd", str(initrd), "-append", CMDLINE]
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
        )
        console = r.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, bytes) else b""
        tail = out.decode("utf-8", "replace")[-2000:]
        raise BootError(f"qemu did not finish within {timeout:.0f} s; console ends with:\n{tail}") from None
    seconds = time.monotonic() - t0
    (workdir / "console.log").write_text(console)
    if "@@BOOT-FATAL" in console:
        what = console.split("@@BOOT-FATAL", 1)[1].splitlines()[0].strip()
        raise BootError(f"{ORACLE_UNAVAILABLE}: the guest kernel cannot be traced: {what}")
    if "@@READY" not in console:
        raise BootError(
            f"the guest did not reach /init (qemu exit {r.returncode}); console ends with:\n{console[-2000:]}"
        )
    kernel = ""
    m = re.search(r"@@KERNEL (\S+)", console)
    if m:
        kernel = m.group(1)
    return BootResult(console, parse_console(console), seconds, kernel, parse_untraced(console))


_NOTRACE_RE = re.compile(r"^@@NOTRACE (\S+) (.*?)\s*$", re.M)


def parse_untraced(console: str) -> dict[str, str]:
    """The ``@@NOTRACE symbol why`` lines of the console: symbol -> why."""
    return {m.group(1): m.group(2) for m in _NOTRACE_RE.finditer(console.replace("\r", ""))}


_MARK_RE = re.compile(r"tracing_mark_write: @@([BE]) (\d+)")
_EVENT_RE = re.compile(r"\sf(\d+): \((\S+)\)(?: addr=0x([0-9a-fA-F]+))?(?: ptep=0x([0-9a-fA-F]+))?")


def count_calls(
    trace: list[str], lo: int, hi: int, page_shift: int = 12
) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    """Per step index: calls of each traced function on ``[lo, hi)``, and those elsewhere.

    A call belongs to step ``i`` when it lies between the ``@@B i`` and
    ``@@E i`` markers (the trace clock is global, so the order across CPUs
    is the order of events).  A getter's address is found from its ``ptep``
    through the latest ``(addr, ptep)`` event on the same page-table page
    (a table is one page of 8-byte descriptors: with 4K pages 512 of them
    map 2M, with 16K pages 2048 map 32M; ``page_shift`` is the kernel's);
    a getter on a table no such event has named yet counts as elsewhere.
    """
    table_mask = ~((1 << page_shift) - 1)
    region_mask = ~((1 << (2 * page_shift - 3)) - 1)
    inside: dict[int, dict[str, int]] = {}
    outside: dict[int, dict[str, int]] = {}
    tables: dict[int, int] = {}  # page-table page -> the region it maps
    cur: int | None = None
    for line in trace:
        m = _MARK_RE.search(line)
        if m:
            cur = int(m.group(2)) if m.group(1) == "B" else None
            continue
        e = _EVENT_RE.search(line)
        if e is None:
            continue
        sym = TRACED[int(e.group(1))]
        addr: int | None
        if e.group(4) is None:  # an address only (FETCH_ADDR)
            addr = None if e.group(3) is None else int(e.group(3), 16)
        elif e.group(3) is not None:
            ptep = int(e.group(4), 16)
            addr = int(e.group(3), 16)
            tables[ptep & table_mask] = addr & region_mask
        else:
            ptep = int(e.group(4), 16)
            region = tables.get(ptep & table_mask)
            addr = None if region is None else region | ((ptep & ~table_mask) >> 3) << page_shift
        if cur is None:
            continue
        where = inside if addr is not None and lo <= addr < hi else outside
        per = where.setdefault(cur, {})
        per[sym] = per.get(sym, 0) + 1
    return inside, outside
