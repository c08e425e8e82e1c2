"""Expected-cost files: the counter deltas of named operations, per backend.

Each ``<operation>.json`` next to this module holds, for one operation
(fork of 1 MiB of 64K folios, mprotect of half a block, ...), the counter
deltas that operation costs on ``arm64`` and on ``generic``, measured with
``m.stats()`` around the operation alone (set-up excluded; the validators'
own ``check.*`` counters left out).  ``test_expected_costs.py`` recomputes
them and diffs.

The files are generated, never edited by hand.  After a change that is
meant to change a cost, regenerate them and review the diff:

    python -m tests.scenarios.expected_costs            # show the differences
    python -m tests.scenarios.expected_costs --update   # rewrite the files
    python -m tests.scenarios.expected_costs --update fork_1M_64K   # just one

(run from the repository root).  The machine of every operation is the
default CPU preset (Neoverse N1: no FEAT_TLBIRANGE, FEAT_HAFDBS), 4K pages,
64K mTHP ``always``, 4 CPUs, ``check=True``, seed 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import contpte

__all__ = ["OPERATIONS", "Operation", "DIR", "ARCHES", "compute", "load", "render", "diff_text"]

DIR = Path(__file__).resolve().parent
ARCHES = ("arm64", "generic")
ARENA = 0x10_0000_0000
PAGE = 4096
BLOCK = 64 << 10
MIB = 1 << 20


@dataclass(frozen=True)
class Operation:
    """A named operation: ``setup(m)`` returns the callable whose cost is measured."""

    name: str
    description: str
    setup: Callable[[contpte.Machine], Callable[[], Any]]
    options: dict[str, Any] = field(default_factory=dict)


def _populated(m: contpte.Machine, size: int = MIB) -> tuple[contpte.Process, int]:
    p = m.spawn()
    a = p.mmap(size, flags="private|anonymous|fixed", addr=ARENA)
    p.write(a, size, 1)
    return p, a


def _fork(m: contpte.Machine) -> Callable[[], Any]:
    p, _ = _populated(m)
    return p.fork


def _mprotect_half_block(m: contpte.Machine) -> Callable[[], Any]:
    p, a = _populated(m)
    return lambda: p.mprotect(a + BLOCK, BLOCK // 2, "r")


def _mprotect_all(m: contpte.Machine) -> Callable[[], Any]:
    p, a = _populated(m)
    return lambda: p.mprotect(a, MIB, "r")


def _dontneed_one_page(m: contpte.Machine) -> Callable[[], Any]:
    p, a = _populated(m)
    return lambda: p.madvise(a + BLOCK + 3 * PAGE, PAGE, "dontneed")


def _munmap_partial(m: contpte.Machine) -> Callable[[], Any]:
    p, a = _populated(m)
    return lambda: p.munmap(a + BLOCK // 2, 2 * BLOCK)


def _exit(m: contpte.Machine) -> Callable[[], Any]:
    p, _ = _populated(m)
    return p.exit


def _fault_in(m: contpte.Machine) -> Callable[[], Any]:
    p = m.spawn()
    a = p.mmap(MIB, flags="private|anonymous|fixed", addr=ARENA)
    return lambda: p.write(a + 5 * PAGE, PAGE, 7)


def _cow_write(m: contpte.Machine) -> Callable[[], Any]:
    p, a = _populated(m)
    c = p.fork()
    return lambda: c.write(a + BLOCK + 5 * PAGE, PAGE, 9)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "fork_1M_64K",
            "fork() of a process with 1 MiB of written private anonymous memory in 64K folios "
            "(16 folded blocks on arm64)",
            _fork,
        ),
        Operation(
            "fork_1M_64K_no_wrprotect_opt",
            "the same fork with wrprotect_ptes_opt=False (the parent is write-protected one PTE "
            "at a time; no effect on generic)",
            _fork,
            {"wrprotect_ptes_opt": False},
        ),
        Operation(
            "mprotect_half_block",
            "mprotect(PROT_READ) of the first half (32K) of the second 64K block of 1 MiB of 64K folios",
            _mprotect_half_block,
        ),
        Operation(
            "mprotect_half_block_v7_2",
            "the same mprotect on kernel 7.2 (batched: modify_prot_start_ptes of the 8 PTEs unfolds the "
            "partly covered block, as 6.12's first ptep_modify_prot_start does)",
            _mprotect_half_block,
            {"kernel": "7.2"},
        ),
        Operation(
            "mprotect_1M_64K",
            "mprotect(PROT_READ) of all of 1 MiB of 64K folios (16 folded blocks on arm64: each unfolded "
            "and folded again, PTE by PTE)",
            _mprotect_all,
        ),
        Operation(
            "mprotect_1M_64K_v7_2",
            "the same mprotect on kernel 7.2 (one batch per folio; arm64: each block cleared and set "
            "again folded, no unfold)",
            _mprotect_all,
            {"kernel": "7.2"},
        ),
        Operation(
            "fork_1M_64K_v7_2",
            "fork() of 1 MiB of 64K folios on kernel 7.2 (folio_pte_batch no longer reads the PTE after "
            "each folio)",
            _fork,
            {"kernel": "7.2"},
        ),
        Operation(
            "dontneed_one_page",
            "MADV_DONTNEED of one page (index 3) of the second 64K block of 1 MiB of 64K folios",
            _dontneed_one_page,
        ),
        Operation(
            "munmap_partial",
            "munmap of [32K, 160K) of 1 MiB of 64K folios: half of block 0, all of block 1, half of block 2",
            _munmap_partial,
        ),
        Operation(
            "exit",
            "exit() of a process with 1 MiB of written private anonymous memory in 64K folios",
            _exit,
        ),
        Operation(
            "fault_in_64K_folio",
            "the first write to an untouched 64K-aligned range: one anonymous fault allocating "
            "and mapping a 64K folio",
            _fault_in,
        ),
        Operation(
            "cow_write_folded_block",
            "after fork, the child writes one page of a folded, read-only 64K block: a CoW copy of that page",
            _cow_write,
        ),
    )
}


def _machine(arch: str, op: Operation) -> contpte.Machine:
    return contpte.Machine(
        arch=arch,
        memory="256M",
        cpus=4,
        page_size="4K",
        mthp={"64K": "always"},
        check=True,
        seed=0,
        **op.options,
    )


def compute(name: str) -> dict[str, dict[str, int]]:
    """Run operation ``name`` on each backend; return ``{arch: counter deltas}``."""
    op = OPERATIONS[name]
    out: dict[str, dict[str, int]] = {}
    for arch in ARCHES:
        m = _machine(arch, op)
        fn = op.setup(m)
        before = m.stats()
        fn()
        after = m.stats()
        m.check()
        deltas = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
        out[arch] = {k: v for k, v in sorted(deltas.items()) if v and not k.startswith("check.")}
    return out


def path(name: str) -> Path:
    return DIR / f"{name}.json"


def render(name: str, costs: dict[str, dict[str, int]]) -> str:
    """The file text for ``name`` (stable formatting, so diffs stay small)."""
    op = OPERATIONS[name]
    doc = {
        "operation": name,
        "description": op.description,
        "machine": {
            "memory": "256M",
            "cpus": 4,
            "page_size": "4K",
            "mthp": {"64K": "always"},
            **op.options,
        },
        "generated_by": "python -m tests.scenarios.expected_costs --update",
        "costs": costs,
    }
    return json.dumps(doc, indent=2) + "\n"


def load(name: str) -> dict[str, dict[str, int]] | None:
    """The stored costs of ``name``, or None when the file does not exist."""
    p = path(name)
    if not p.exists():
        return None
    costs: dict[str, dict[str, int]] = json.loads(p.read_text())["costs"]
    return costs


def diff_text(name: str, expected: dict[str, dict[str, int]] | None, got: dict[str, dict[str, int]]) -> str:
    """A readable diff (empty when equal): one line per counter that differs."""
    if expected is None:
        return f"{name}: no expected-cost file {path(name).name}"
    lines = []
    for arch in sorted(set(expected) | set(got)):
        e, g = expected.get(arch, {}), got.get(arch, {})
        for k in sorted(set(e) | set(g)):
            if e.get(k, 0) != g.get(k, 0):
                ev, gv = e.get(k, 0), g.get(k, 0)
                lines.append(f"  {arch:8} {k:40} expected {ev:>8}  got {gv:>8}  ({gv - ev:+d})")
    if not lines:
        return ""
    return f"{name}: counter deltas differ from {path(name).name}:\n" + "\n".join(lines)
