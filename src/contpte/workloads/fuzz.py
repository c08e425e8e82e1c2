"""Random multi-process syscall sequences with every validator on.

``fuzz(config)`` runs *episodes*: a fresh Machine (``check=True``: the
kernel-invariant validators after every syscall and the Arm ARM rule
checker on every descriptor store) and a random sequence of steps from the
scenario vocabulary (spawn, fork, exit, mmap of every kind, write, read,
mprotect, munmap, mremap, madvise, pin, unpin, file mappings, memory
pressure, NUMA hinting, uffd-wp, threads: ``t = p thread``, accesses of a
thread on its own CPU, and ``at`` steps that run a thread's access at one
of fork's lock breaks or at the lockless block read of a fault, see
``contpte.system.sched``).  It stops at the first violation, shrinks the
episode to a minimal sequence that still shows it (delta debugging over
steps) and returns it as a ``Scenario`` that ``contpte run`` replays.

Every finding is then *attributed* to kernel versions (``attribute``): its
shrunk steps run again with the machine at each later modelled version
(``contpte.version.KERNEL_VERSIONS``); the first version where they pass is
where it is fixed, and the ``CHANGES`` of that version that apply to the
machine are the candidate fixes, each tried alone (its option back at its
old value) to see whether it is the one.  With ``keep_going`` a finding
that a later version fixes is recorded and the run goes on; the first that
no later version fixes ends it.

With ``differential=True`` every step runs on several machines (arm64 and
generic, ``batch_fork`` on and off, ...) that must agree on everything a
process can observe (``scenario.observe``: values, presence, folio order,
exclusivity, frame sharing, RSS, VMAs) and on each step's outcome (values
read, SIGSEGV, errno); only the counters (costs) may differ.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ScenarioError
from ..system import Machine
from ..version import CHANGES, KERNEL_VERSION, KERNEL_VERSIONS, Change, version_key
from .scenario import (
    AddrRef,
    Env,
    Outcome,
    Scenario,
    Step,
    format_scenario,
    make_machine,
    observe,
    run_step,
    stale_tlb_at_return,
    thread_action,
)

__all__ = [
    "FuzzConfig",
    "FuzzResult",
    "Finding",
    "Attribution",
    "attribute",
    "fuzz",
    "generate_episode",
    "run_episode",
    "shrink",
    "replay",
    "reproducer_text",
    "VARIANTS",
    "CostBook",
    "stale_tlb_at_return",
]

PS = 4096
VARIANTS: dict[str, dict[str, Any]] = {
    "arm64": {"arch": "arm64"},
    "generic": {"arch": "generic"},
    "arm64-nobatch": {"arch": "arm64", "batch_fork": False},
    "generic-nobatch": {"arch": "generic", "batch_fork": False},
    "arm64-nocontpte": {"arch": "arm64", "contpte": False},
    "arm64-nowrprotect": {"arch": "arm64", "wrprotect_ptes_opt": False},
    "arm64-noteardown": {"arch": "arm64", "teardown_opt": False},
    "arm64-bbml2": {"arch": "arm64", "bbml2_noabort": True, "cpu": "neoverse-v3"},
    # The OnePlus dynamic-hugepage design, every private anon VMA eligible
    # (CONFIG_CONT_PTE_HUGEPAGE_ON_QEMU): docs/oneplus.md.
    "arm64-oneplus": {"arch": "arm64", "policy": "oneplus", "cont_pte_hugepage_on_qemu": True},
}
"""Named backend + kernel-variant sets (``--variant``)."""

_MTHP_SIZES = ("16K", "32K", "64K", "128K", "2M")
_LARGE_MTHP_SIZES = ("256K", "512K", "1M")
#: the CPU preset without hardware Access flag or dirty management (HAFDBS = 0)
_NO_HAFDBS_CPU = "apple-m2"
#: what the ``arm64-oneplus`` variant runs instead: hardware Access flag, software dirty state
_ONEPLUS_SOFT_DIRTY_CPU = "cortex-a55"


def _weighted(*pairs: tuple[Any, int]) -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """(population, cumulative weights) for ``rng.choices``: the same draws as
    ``choices(population, weights)``, without summing the weights at every call."""
    return tuple(p for p, _ in pairs), tuple(itertools.accumulate(w for _, w in pairs))


# The generator's choices and their weights.
_OPS, _OPS_CUM = _weighted(
    ("write", 30),
    ("read", 18),
    ("mmap", 6),
    ("fork", 5),
    ("exit", 3),
    ("mprotect", 7),
    ("madvise", 7),
    ("munmap", 4),
    ("pin", 3),
    ("unpin", 3),
    ("reclaim", 2),
    ("khugepaged", 2),
    ("numa", 2),
    ("uffd-wp", 2),
    ("spawn", 1),
    ("check", 1),
)
_CAPS, _CAPS_CUM = _weighted((1, 30), (4, 25), (16, 30), (64, 10), (512, 5))
_KINDS, _KINDS_CUM = _weighted(("anon", 6), ("shanon", 1), ("file", 2), ("shfile", 1))
_PROTS, _PROTS_CUM = _weighted(("rw", 8), ("r", 1), ("none", 1))
#: The swap device of the episodes that have one (4 clusters of 512 slots with 4K pages).
_SWAP_SIZE = "8M"
_POLICIES, _POLICIES_CUM = _weighted(("always", 4), ("madvise", 2), ("never", 2), ("inherit", 1))


@dataclass
class FuzzConfig:
    """What to fuzz: ``variants`` (names of ``VARIANTS`` or dicts), steps, seed."""

    variants: list[str] = field(default_factory=lambda: ["arm64"])
    steps: int = 10_000
    seed: int = 0
    episode_steps: int = 150
    differential: bool = False
    memory: str = "32M"
    bugs: tuple[str, ...] = ()
    shrink: bool = True
    kernel: str | None = None
    """The kernel version of every machine (None: the default, 6.12)."""
    costs: "CostBook | None" = None
    """Record (``costs.recording``) or compare every step's counter deltas (see ``CostBook``)."""
    keep_going: bool = False
    """Record a finding that a later modelled kernel version fixes and go on with the next
    episode; stop at the first finding that no later version fixes."""

    def __post_init__(self) -> None:
        from ..errors import ModelUsageError
        from ..version import check_kernel

        if self.kernel is not None:
            check_kernel(self.kernel)
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ModelUsageError(f"fuzz steps must be a positive integer, not {self.steps!r}")
        if not isinstance(self.episode_steps, int) or self.episode_steps < 1:
            raise ModelUsageError(
                f"fuzz episode steps must be a positive integer, not {self.episode_steps!r}"
            )
        if not self.variants:
            raise ModelUsageError("fuzz needs at least one variant")
        if self.costs is not None:
            if self.differential:
                raise ModelUsageError(
                    "fuzz: a cost record is per variant; it does not go with --differential"
                )
            self.costs.check_config(self)
            if self.keep_going:
                raise ModelUsageError(
                    "fuzz: --keep-going does not go with a cost record (--record-costs/--check-costs): "
                    "a record is of whole runs, and a cost finding is not attributed to kernel versions"
                )


@dataclass
class Attribution:
    """At which later modelled kernel versions a finding's shrunk steps still fail.

    ``attribute`` fills it in: ``later`` maps each modelled version after
    ``kernel`` (the run's) to the kind its replay failed with there (None:
    it passed).  The finding is fixed in the first version where it passes,
    provided it passes at the newest one too; ``fixes`` are the changes of
    that version that apply to the machine, each with whether setting its
    option back to its old value, alone, at that version brings the
    finding back (then the change is what fixes it).
    """

    kernel: str
    kind: str
    later: dict[str, str | None] = field(default_factory=dict)
    fixes: list[tuple[Change, bool]] = field(default_factory=list)

    @property
    def fixed_in(self) -> str | None:
        """The first later version where it passes, None if it still fails at the newest."""
        if not self.later or self.later[KERNEL_VERSIONS[-1]] is not None:
            return None
        return next(v for v, got in self.later.items() if got is None)

    @property
    def fails_again(self) -> list[str]:
        """Versions after ``fixed_in`` where it fails again (non-monotonic); [] when monotonic."""
        fixed = self.fixed_in
        if fixed is None:
            return []
        return [v for v, got in self.later.items() if version_key(v) > version_key(fixed) and got]

    def lines(self) -> list[str]:
        """What it says, one line per fact: the versions, then each candidate fix."""
        if not self.later:
            return [f"found at {self.kernel}, the newest modelled kernel version: no later version to check"]
        vs = list(self.later)
        fixed = self.fixed_in
        if fixed is None:
            newest = self.later[vs[-1]]
            line = f"not fixed in any modelled kernel version: it still fails at {vs[-1]}"
            if newest != self.kind:
                line += f", as {newest}"
            passing = [v for v, got in self.later.items() if got is None]
            line += f"; checked {vs[0]} to {vs[-1]}"
            if passing:
                line += f", passes at {', '.join(passing)} only"
            return [line]
        failing = [v for v in vs if version_key(v) < version_key(fixed)]
        line = f"fixed in {fixed}: " + (
            f"fails at {self.kernel} to {failing[-1]}" if failing else f"fails at {self.kernel}"
        )
        again = self.fails_again
        if again:
            line += (
                f", first passes at {fixed}, fails again at {', '.join(again)} (not monotonic), "
                f"passes at the newest ({vs[-1]})"
            )
        else:
            line += (
                f", passes at {fixed} and every version after it"
                if fixed != vs[-1]
                else f", passes at {fixed}"
            )
        other = [f"{v} as {got}" for v, got in self.later.items() if got is not None and got != self.kind]
        if other:
            line += f" (it fails otherwise at {', '.join(other)})"
        out = [line]
        if not self.fixes:
            out.append(f"no modelled change of {fixed} applies to this machine")
        for c, back in self.fixes:
            verdict = (
                f"{fixed} with {c.option}={c.before!r} alone fails again: this change fixes it"
                if back
                else f"{fixed} with {c.option}={c.before!r} alone still passes: not this one alone"
            )
            out.append(f"candidate fix: {c.option} ({c.where}; {c.commit}): {verdict}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "later": dict(self.later),
            "fixed_in": self.fixed_in,
            "fails_again": self.fails_again,
            "fixes": [_change_dict(c, back) for c, back in self.fixes],
            "text": self.lines(),
        }


def _change_dict(c: Change, back: bool) -> dict[str, Any]:
    return {
        "option": c.option,
        "since": c.since,
        "where": c.where,
        "commit": c.commit,
        "before": c.before,
        "after": c.after,
        "arch": c.arch,
        "reverting_it_brings_it_back": back,
    }


@dataclass
class Finding:
    """A violation or a disagreement, with its shrunk reproducer."""

    kind: str  # "violation:<rule>", "crash:<type>", "mismatch:<what>"
    message: str
    variant: str
    episode: int
    scenario: Scenario
    original_steps: int
    step: int = 0
    """The run's step (per variant, counted from 1) at which it showed."""
    attribution: Attribution | None = None
    """Its kernel versions (None for a ``cost:`` finding: that one compares with a recorded run)."""

    @property
    def fixed_in(self) -> str | None:
        """The later modelled kernel version that fixes it, None if none does."""
        return self.attribution.fixed_in if self.attribution is not None else None

    def as_dict(self) -> dict[str, Any]:
        att = self.attribution
        return {
            "kind": self.kind,
            "message": self.message,
            "variant": self.variant,
            "episode": self.episode,
            "step": self.step,
            "steps": len(self.scenario.steps),
            "original_steps": self.original_steps,
            "fixed_in": self.fixed_in,
            "fixes": [_change_dict(c, back) for c, back in att.fixes] if att is not None else [],
            "attribution": att.as_dict() if att is not None else None,
            "scenario": format_scenario(self.scenario),
        }


@dataclass
class FuzzResult:
    """What a run did.  ``finding``: the one that ended it, else (``keep_going``)
    the last one made, else None; ``findings``: every one, in order."""

    steps: int
    episodes: int
    seconds: float
    variants: list[str]
    finding: Finding | None = None
    per_variant_steps: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    finding_seconds: float = 0.0
    """Of ``seconds``, the time spent shrinking, replaying and attributing findings."""
    stopped: bool = False
    """A finding ended the run (any one; with ``keep_going``, one that no later version fixes)."""

    @property
    def fuzz_seconds(self) -> float:
        """The time spent generating and running episodes (what the step rate covers)."""
        return max(0.0, self.seconds - self.finding_seconds)

    @property
    def steps_per_second(self) -> float:
        """Steps run per variant per second of ``fuzz_seconds`` (not shrinking or attribution)."""
        ran = sum(self.per_variant_steps.values()) / max(1, len(self.variants))
        return ran / self.fuzz_seconds if self.fuzz_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "episodes": self.episodes,
            "seconds": round(self.seconds, 3),
            "fuzz_seconds": round(self.fuzz_seconds, 3),
            "finding_seconds": round(self.finding_seconds, 3),
            "steps_per_second": round(self.steps_per_second, 1),
            "variants": self.variants,
            "per_variant_steps": self.per_variant_steps,
            "finding": self.finding.as_dict() if self.finding else None,
            "findings": [f.as_dict() for f in self.findings],
            "stopped": self.stopped,
        }


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------
class _Region:
    __slots__ = ("name", "length", "anon", "shared", "writable")

    def __init__(self, name: str, length: int, anon: bool, shared: bool, writable: bool) -> None:
        self.name = name
        self.length = length
        self.anon = anon
        self.shared = shared
        self.writable = writable


class _Gen:
    """Random steps over what the sequence has bound so far."""

    MAX_PROCS = 4

    #: the chance that a step is followed by an mremap
    MREMAP_RATE = 0.04
    #: the chance that a step is followed by a mixed-state move (``maybe_mix``)
    MIX_RATE = 0.03
    MAX_REGIONS = 12
    #: the chance that a range is taken at or inside one of the ``RECENT`` last ones
    LOCALITY = 0.3
    RECENT = 6
    #: a step kind -> the kind whose recent ranges it mostly (``FOLLOW``) works on
    FOLLOWS = {
        "uffd-wp-off": "uffd-wp-on",
        "madvise-dofork": "madvise-dontfork",
        "mprotect-rw": "mprotect-r",
        "write": "madvise-free",
    }
    FOLLOW = 0.6
    #: the chance that a step on a region another process mapped moves to a process that maps it
    OWNER = 0.85

    #: the chance that a step is followed by a thread step (``trng``'s own stream)
    THREAD_RATE = 0.05
    MAX_THREADS = 2

    def __init__(
        self,
        rng: random.Random,
        xrng: random.Random,
        mrng: random.Random | None = None,
        krng: random.Random | None = None,
        trng: random.Random | None = None,
    ) -> None:
        self.rng = rng
        #: the thread steps' own stream (threads came later: the other draws stay as they were)
        self.trng = trng if trng is not None else random.Random(0)
        #: the threads of each process (by the process's name)
        self.threads: dict[str, list[str]] = {}
        #: choices added later draw from their own stream, so ``rng``'s draws
        #: (and the episodes of existing seeds, but for those choices) stay as they were
        self.xrng = xrng
        #: mremap's own stream: its steps come after a step ``rng`` chose, as an extra one
        self.mrng = mrng if mrng is not None else random.Random(0)
        #: the mixed-state moves' own stream
        self.krng = krng if krng is not None else random.Random(1)
        #: an mremap step to emit after the step just generated
        self.after: Step | None = None
        self.procs: list[str] = []
        self.regions: list[_Region] = []
        self.files: list[str] = []
        self.pins: dict[str, list[tuple[str, int, int]]] = {}
        self.n = 0
        self.line = 1
        self.recent: list[tuple[str, _Region, int, int]] = []
        self.recent_by_kind: dict[str, list[tuple[str, _Region, int, int]]] = {}
        #: process -> the regions it mapped or inherited (a guess: steps may fail)
        self.maps: dict[str, set[str]] = {}
        #: a ``file`` step the next mmap needs, emitted before it
        self.pending: Step | None = None
        #: the episode's machine has swap: some madvise steps become pageout
        #: or cold, drawn from their own stream (``srng``)
        self.swap = False
        self.srng = random.Random(0)
        #: reclaim at fork's lock breaks in swap episodes: its own stream too
        self.rrng = random.Random(0)

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def step(self, proc: str | None, op: str, args: dict[str, Any], bind: str | None = None) -> Step:
        self.line += 1
        return Step(self.line, proc, op, args, bind)

    def _range(self) -> tuple[_Region, int, int]:
        rng = self.rng
        r = rng.choice(self.regions)
        npages = r.length // PS
        roll = rng.random()
        if roll < 0.03:  # off the end: SIGSEGV or ENOMEM on purpose
            off = rng.randrange(npages) * PS
            return r, off, r.length - off + PS * rng.randint(1, 16)
        if roll < 0.35 and npages >= 16:  # a whole or partial 64K block
            blk = rng.randrange(npages // 16)
            first = rng.choice((0, 0, rng.randrange(16)))
            last = rng.choice((16, 16, rng.randint(first + 1, 16)))
            return r, (blk * 16 + first) * PS, (last - first) * PS
        start = rng.randrange(npages)
        # Mostly short accesses (each faulting page is a full trip through
        # the model), sometimes long ones that cross folios and tables.
        cap = rng.choices(_CAPS, cum_weights=_CAPS_CUM)[0]
        n = rng.randint(1, min(npages - start, cap))
        return r, start * PS, n * PS

    def _near_recent(self, kind: str) -> tuple[str | None, _Region, int, int] | None:
        """A range at or inside a recent step's range, or None (then a random one).

        Most kernel bugs need several steps on the same folio: a state that
        only some of its PTEs have (written again after MADV_FREE, uffd-wp
        resolved on some pages, a VMA split inside a block and merged again)
        and then the step that trips on it.  Independent random ranges rarely
        line up, so a step that undoes another (``FOLLOWS``) mostly works on
        part of a recent range of that other step, in the same process, and
        any step sometimes (``LOCALITY``) on part of any recent range.  From
        ``xrng`` only, so ``rng`` draws as it would without it.
        """
        x = self.xrng
        pool = None
        after = self.FOLLOWS.get(kind)
        if after is not None and self.recent_by_kind.get(after) and x.random() < self.FOLLOW:
            pool = self.recent_by_kind[after]
        elif self.recent and x.random() < self.LOCALITY:
            pool = self.recent
        if pool is None:
            return None
        p, r, off, length = x.choice(pool)
        proc = p if p in self.procs else None
        npages = length // PS
        roll = x.random()
        if roll < 0.35 or npages < 2:
            return proc, r, off, length  # the same range
        if roll < 0.75:  # a piece of it: one page, or an aligned half or quarter of a block
            piece = x.choice((1, 1, 4, 8))
            if piece >= npages:
                piece = 1
            start = x.randrange(npages // piece) * piece
            return proc, r, off + start * PS, piece * PS
        # the 64K block(s) around it
        first = off // (16 * PS) * 16 * PS
        last = min(r.length, -(-(off + length) // (16 * PS)) * 16 * PS)
        return proc, r, first, max(PS, last - first)

    def _ranged(self, kind: str) -> tuple[str, AddrRef, int]:
        """(process, address, length) for a step of ``kind``; remembers the range."""
        proc = self.rng.choice(self.procs)
        near = self._near_recent(kind)
        if near is not None:
            p, r, off, length = near
            if p is not None:
                proc = p
        else:
            r, off, length = self._range()
        if r.name not in self.maps.get(proc, ()) and self.xrng.random() < self.OWNER:
            owners = [q for q in self.procs if r.name in self.maps.get(q, ())]
            if owners:
                proc = self.xrng.choice(owners)
        if off + length <= r.length:
            entry = (proc, r, off, length)
            self.recent.append(entry)
            if len(self.recent) > self.RECENT:
                del self.recent[0]
            mine = self.recent_by_kind.setdefault(kind, [])
            mine.append(entry)
            if len(mine) > 4:
                del mine[0]
        return proc, AddrRef(r.name, off), length

    def next(self) -> Step:
        rng = self.rng
        if not self.procs:
            name = self.fresh("p")
            return self.step(None, "spawn", {}, name)
        if not self.regions:
            return self._mmap()
        op = rng.choices(_OPS, cum_weights=_OPS_CUM)[0]
        if op == "spawn" and len(self.procs) < self.MAX_PROCS:
            return self.step(None, "spawn", {}, self.fresh("p"))
        if op == "fork" and len(self.procs) < self.MAX_PROCS:
            parent = rng.choice(self.procs)
            return self.step(parent, "fork", {}, self.fresh("c"))
        if op == "exit" and len(self.procs) > 1:
            return self.step(rng.choice(self.procs), "exit", {})
        if op == "mmap" and len(self.regions) < 8:
            return self._mmap()
        if op in ("reclaim", "check"):
            return self.step(None, op, {})
        if op == "khugepaged":
            # A full pass, or pages_to_scan-like budgets that leave the cursor mid-way.
            budget = rng.choice((0, 0, 512, 2048))
            return self.step(None, op, {"pages": budget} if budget else {})
        if op == "write":
            proc, addr, length = self._ranged("write")
            return self.step(
                proc, "write", {"addr": addr, "length": length, "value": rng.randrange(1, 1 << 16)}
            )
        if op == "mprotect":
            prot = rng.choice(("r", "rw", "rw", "none"))
            proc, addr, length = self._ranged(f"mprotect-{prot}")
            return self.step(proc, "mprotect", {"addr": addr, "length": length, "prot": prot})
        if op == "madvise":
            adv = rng.choice(
                (
                    "dontneed",
                    "dontneed",
                    "free",
                    "free",
                    "hugepage",
                    "nohugepage",
                    "dontfork",
                    "dofork",
                    "collapse",
                )
            )
            if self.swap and self.srng.random() < 0.4:
                adv = self.srng.choice(("pageout", "pageout", "cold"))
            proc, addr, length = self._ranged(f"madvise-{adv}")
            return self.step(proc, "madvise", {"addr": addr, "length": length, "advice": adv})
        if op == "uffd-wp":
            on = rng.random() < 0.7
            proc, addr, length = self._ranged(f"uffd-wp-{'on' if on else 'off'}")
            return self.step(proc, "uffd-wp", {"addr": addr, "length": length, "on": on})
        proc, addr, length = self._ranged(op)
        if op == "munmap":
            return self.step(proc, "munmap", {"addr": addr, "length": length})
        if op == "pin":
            n = min(length, PS * rng.randint(1, 4))
            return self.step(proc, "pin", {"addr": addr, "length": n, "write": rng.random() < 0.8})
        if op == "unpin":
            pins = self.pins.get(proc)
            if pins:
                name, off, n = pins[-1]
                return self.step(proc, "unpin", {"addr": AddrRef(name, off), "length": n})
        if op == "numa":
            return self.step(proc, "numa", {"addr": addr, "length": length})
        return self.step(proc, "read", {"addr": addr, "length": length, "expect": None})

    def thread_steps(self, s: Step) -> tuple[list[Step], Step]:
        """Thread steps around ``s`` (from ``trng`` only): (steps before it, ``s`` or its thread form).

        Sometimes a process gets a thread (``t = p thread``, on the next
        CPU) or a thread exits; an access of a process with threads is
        sometimes done by one of them (through that CPU's TLB); before a
        fork of such a process, often a thread's access at one of fork's
        lock breaks (``at fork.lock_break:K``); before a write, sometimes a
        thread's access or MADV_DONTNEED at the lockless read of the write's
        fault (``at contpte_ptep_get_lockless``) or where it allocates
        (``do_anonymous_page``, ``wp_page_copy``); before a fork, sometimes a
        thread's write pin (GUP-fast) at ``copy_present_ptes``; before
        MADV_DONTNEED/FREE/COLD/PAGEOUT, a thread's access at the point where
        it drops the PTL; before a pin, a thread's MADV_DONTNEED and access
        at ``gup_fast_pte_range``.  In a swap episode, before a fork,
        sometimes reclaim at one of its lock breaks (from ``rrng``).
        """
        x = self.trng
        before: list[Step] = []
        if not self.procs:
            return before, s
        if s.op == "fork" and self.swap and self.regions and self.rrng.random() < 0.2:
            # Reclaim's rmap walk needs no mmap_lock: it runs while fork holds it.
            st = self.step(None, "reclaim", {})
            st.at = f"fork.lock_break:{self.rrng.randint(1, 4)}"
            before.append(st)
        mine = self.threads.get(s.proc or "", [])
        if s.op == "fork" and mine and self.regions and x.random() < 0.5:
            for _ in range(x.choice((1, 1, 2))):
                st = self._thread_access(x.choice(mine), s.proc or "", x)
                st.at = f"fork.lock_break:{x.randint(1, 4)}"
                before.append(st)
            if x.random() < 0.6:
                # GUP-fast between fork's pin check of a batch and its write-protect.
                st = self._thread_access(x.choice(mine), s.proc or "", x, pin=True)
                st.at = f"copy_present_ptes:{x.randint(1, 2)}"
                before.append(st)
        elif s.op == "write" and mine and self.regions and x.random() < 0.1:
            st = self._thread_access(x.choice(mine), s.proc or "", x, dontneed=x.random() < 0.5)
            st.at = x.choice(("contpte_ptep_get_lockless", "do_anonymous_page", "wp_page_copy"))
            before.append(st)
        elif s.op == "madvise" and mine and self.regions and x.random() < 0.2:
            advice = s.args.get("advice")
            point = {
                "dontneed": "zap_pte_range",
                "free": "madvise_free_pte_range",
                "cold": "madvise_cold_or_pageout_pte_range",
                "pageout": "madvise_cold_or_pageout_pte_range",
            }.get(str(advice))
            if point is not None:
                st = self._thread_access(x.choice(mine), s.proc or "", x, dontneed=x.random() < 0.3)
                st.at = point
                before.append(st)
        elif s.op == "pin" and mine and self.regions and x.random() < 0.3:
            # GUP-fast between its read and its grab: another thread unmaps
            # the page and faults (the frame may come back elsewhere).
            t = x.choice(mine)
            st = self._thread_access(t, s.proc or "", x, dontneed=True)
            st.at = "gup_fast_pte_range"
            before.append(st)
            st = self._thread_access(t, s.proc or "", x)
            st.at = "gup_fast_pte_range"
            before.append(st)
        elif x.random() < self.THREAD_RATE:
            if x.random() < 0.8:
                owner = x.choice(self.procs)
                if len(self.threads.get(owner, ())) < self.MAX_THREADS:
                    before.append(self.step(owner, "thread", {}, self.fresh("t")))
            else:
                ts = [t for ts in self.threads.values() for t in ts]
                if ts:
                    before.append(self.step(x.choice(ts), "exit", {}))
        elif s.op in ("write", "read") and mine and x.random() < 0.3:
            s.proc = x.choice(mine)
        return before, s

    def _thread_access(
        self, t: str, owner: str, x: random.Random, dontneed: bool = False, pin: bool = False
    ) -> Step:
        """A short access (or MADV_DONTNEED, or a write pin) of thread ``t`` of ``owner`` to a region it maps, drawn from ``x``."""
        mapped = self.maps.get(owner, set())
        r = x.choice([q for q in self.regions if q.name in mapped] or self.regions)
        npages = r.length // PS
        off = x.randrange(npages)
        n = x.randint(1, min(npages - off, 16))
        args: dict[str, Any] = {"addr": AddrRef(r.name, off * PS), "length": n * PS}
        if dontneed:
            return self.step(t, "madvise", {**args, "advice": "dontneed"})
        if pin:
            return self.step(t, "pin", {**args, "length": min(n, 4) * PS, "write": True})
        if x.random() < 0.7:
            return self.step(t, "write", {**args, "value": x.randrange(1, 1 << 16)})
        return self.step(t, "read", {**args, "expect": None})

    def maybe_mremap(self) -> None:
        """With probability ``MREMAP_RATE`` (from ``mrng`` only), queue an mremap in ``after``."""
        x = self.mrng
        if not self.procs or not self.regions or x.random() >= self.MREMAP_RATE:
            return
        if len(self.regions) >= self.MAX_REGIONS:
            return
        self.after = self._mremap()

    def maybe_mix(self) -> list[Step]:
        """With probability ``MIX_RATE`` (from ``krng`` only), a *mixed-state move*.

        Batched PTE code (fork's ``folio_pte_batch``, ``wrprotect_ptes``,
        MADV_FREE, reclaim) goes wrong where the PTEs of one large folio in
        one VMA differ: some uffd-wp protected, some write-protected by an
        earlier fork, some dirty again after MADV_FREE, some pinned, a VMA
        split inside a block and merged again.  Random steps rarely build
        such a folio and then use it, so a move does, on a 64K-aligned
        range of a private anonymous region the process maps: write it
        (large folios), mix its PTEs one way, then fork and use the result
        (the child writes or reads it, the parent exits, reclaim runs).
        The moves' steps are ordinary steps; shrinking drops what is not
        needed.
        """
        x = self.krng
        if not self.procs or x.random() >= self.MIX_RATE:
            return []
        cands = [
            (q, r)
            for q in self.procs
            for r in self.regions
            if r.name in self.maps.get(q, ())
            and r.anon
            and not r.shared
            and r.writable
            and r.length >= 16 * PS
        ]
        if not cands:
            return []
        proc, r = x.choice(cands)
        nblk = r.length // (16 * PS)
        blocks = min(nblk, x.choice((1, 1, 2)))
        start = x.randrange(nblk - blocks + 1) * 16 * PS
        length = blocks * 16 * PS
        sub_pages = x.choice((1, 1, 4, 8))
        sub = start + x.randrange(16 // sub_pages) * sub_pages * PS
        sub_len = sub_pages * PS
        whole, part = AddrRef(r.name, start), AddrRef(r.name, sub)
        out = [self.step(proc, "write", {"addr": whole, "length": length, "value": x.randrange(1, 1 << 16)})]
        kind = x.choice(("uffd-wp", "dontfork", "free", "mprotect", "pin"))
        forked: list[str] = []  # children of this move (not in self.procs until accepted)

        def fork() -> str | None:
            if len(self.procs) + len(forked) >= self.MAX_PROCS:
                return None
            forked.append(self.fresh("c"))
            out.append(self.step(proc, "fork", {}, forked[-1]))
            return forked[-1]

        if kind == "uffd-wp":
            out.append(self.step(proc, "uffd-wp", {"addr": whole, "length": length, "on": True}))
            out.append(self.step(proc, "uffd-wp", {"addr": part, "length": sub_len, "on": False}))
        elif kind == "dontfork":
            out.append(self.step(proc, "madvise", {"addr": part, "length": sub_len, "advice": "dontfork"}))
            c = fork()
            if c is not None:
                out.append(self.step(c, "exit", {}))
                forked.remove(c)
            out.append(self.step(proc, "madvise", {"addr": part, "length": sub_len, "advice": "dofork"}))
        elif kind == "free":
            out.append(self.step(proc, "madvise", {"addr": whole, "length": length, "advice": "free"}))
            out.append(
                self.step(proc, "write", {"addr": part, "length": sub_len, "value": x.randrange(1, 1 << 16)})
            )
        elif kind == "mprotect":
            out.append(self.step(proc, "mprotect", {"addr": part, "length": sub_len, "prot": "r"}))
            out.append(self.step(proc, "mprotect", {"addr": part, "length": sub_len, "prot": "rw"}))
        else:
            out.append(self.step(proc, "pin", {"addr": part, "length": sub_len, "write": True}))
        child = fork()
        if child is not None:
            value = x.randrange(1, 1 << 16)
            use = x.choice(("child-write", "parent-write", "parent-exit"))
            if use == "child-write":
                out.append(self.step(child, "write", {"addr": part, "length": sub_len, "value": value}))
            elif use == "parent-write":
                out.append(self.step(proc, "write", {"addr": whole, "length": length, "value": value}))
            elif len(self.pins.get(proc, ())) == 0 and kind != "pin":
                out.append(self.step(proc, "exit", {}))
                out.append(self.step(None, "reclaim", {}))
            out.append(self.step(child, "read", {"addr": whole, "length": length, "expect": None}))
        for q, ref, n in ((proc, whole, length), (proc, part, sub_len)):
            self.recent.append((q, r, ref.offset, n))
        del self.recent[: -self.RECENT]
        return out

    def _mremap(self) -> Step:
        """An mremap of a region: whole, whole 64K blocks or any pages; grown, shrunk or moved."""
        x = self.mrng
        proc = x.choice(self.procs)
        r = x.choice(self.regions)
        npages = r.length // PS
        roll = x.random()
        if roll < 0.4:
            off, old = 0, npages
        elif roll < 0.7 and npages >= 16:
            blk = x.randrange(npages // 16)
            off, old = blk * 16, 16 * x.randint(1, max(1, min(4, npages // 16 - blk)))
        else:
            off = x.randrange(npages)
            old = x.randint(1, npages - off)
        flags = x.choice(
            (
                "",
                "maymove",
                "maymove",
                "maymove",
                "maymove|fixed",
                "maymove|fixed",
                "maymove|dontunmap",
                "fixed",
            )
        )
        if "dontunmap" in flags:
            new = old
        else:
            new = x.choice((old, old, 2 * old, max(1, old // 2), old + x.randint(1, 16), 512))
        args: dict[str, Any] = {
            "addr": AddrRef(r.name, off * PS),
            "length": old * PS,
            "new_length": new * PS,
            "flags": flags,
            "new_addr": None,
        }
        if "fixed" in flags:
            t = x.choice(self.regions)
            tpages = t.length // PS
            toff = x.choice((0, 0, 16 * x.randrange(max(1, tpages // 16)), x.randrange(tpages)))
            args["new_addr"] = AddrRef(t.name, toff * PS)
        return self.step(proc, "mremap", args, self.fresh("r"))

    def _mmap(self) -> Step:
        rng = self.rng
        proc = rng.choice(self.procs)
        kind = rng.choices(_KINDS, cum_weights=_KINDS_CUM)[0]
        length = rng.choice((16, 16, 32, 64, 128, 256, 512, 1024)) * PS
        if rng.random() < 0.15:
            length += rng.randint(1, 15) * PS
        prot = rng.choices(_PROTS, cum_weights=_PROTS_CUM)[0]
        flags = {
            "anon": "private|anonymous",
            "shanon": "shared|anonymous",
            "file": "private",
            "shfile": "shared",
        }[kind]
        name = self.fresh("m")
        args: dict[str, Any] = {
            "length": length,
            "prot": prot,
            "flags": flags,
            "file": None,
            "offset": 0,
            "addr": None,
        }
        if kind in ("file", "shfile"):
            if not self.files or rng.random() < 0.2:
                f = self.fresh("f")
                self.line += 1
                size = rng.choice((256, 512, 1024)) * PS
                self.files.append(f)
                self.pending = Step(
                    self.line,
                    None,
                    "file",
                    {
                        "name": f"file{self.n}",
                        "size": size,
                        "folio": self._file_folio(rng.choice((16, 64, 64))),
                    },
                    f,
                )
            args["file"] = rng.choice(self.files)
            args["offset"] = rng.choice((0, 0, 16 * PS, PS))
            if self.xrng.random() < 0.25:
                args["offset"] = self.xrng.choice((48, 80, 3)) * PS  # inside a 128K+ folio
        return self.step(proc, "mmap", args, name)

    def _file_folio(self, kib: int) -> int:
        """The file's folio size: ``kib`` K, one file in three 128K or 256K (several contiguous blocks)."""
        if self.xrng.random() < 1 / 3:
            kib = self.xrng.choice((128, 256))
        return kib * 1024

    def accept(self, step: Step, out: Outcome) -> None:
        """Update the bookkeeping with what the step did on the (first) machine."""
        if out.error is not None:
            if step.op == "mmap" and step.bind:
                pass
            return
        if step.op == "thread" and step.bind:
            assert step.proc is not None
            self.threads.setdefault(step.proc, []).append(step.bind)
            return
        if step.op == "exit" and step.proc not in self.procs:
            for ts in self.threads.values():  # a thread exits
                if step.proc in ts:
                    ts.remove(step.proc)
            return
        if step.at:
            return
        if step.op in ("spawn", "fork") and step.bind:
            self.procs.append(step.bind)
            inherited = self.maps.get(step.proc or "", set()) if step.op == "fork" else set()
            self.maps[step.bind] = set(inherited)
            if step.op == "fork" and step.proc in self.pins:
                pass  # pins are not inherited
        elif step.op == "exit":
            assert step.proc is not None
            self.procs.remove(step.proc)
            self.pins.pop(step.proc, None)
            self.maps.pop(step.proc, None)
            self.threads.pop(step.proc, None)  # exit_group: its threads go too
        elif step.op == "mmap" and step.bind:
            a = step.args
            self.maps.setdefault(step.proc or "", set()).add(step.bind)
            self.regions.append(
                _Region(
                    step.bind,
                    a["length"],
                    a["file"] is None,
                    a["flags"].startswith("shared"),
                    "w" in a["prot"],
                )
            )
        elif step.op == "mremap" and step.bind:
            src = next((r for r in self.regions if r.name == step.args["addr"].name), None)
            if src is not None:
                self.maps.setdefault(step.proc or "", set()).add(step.bind)
                self.regions.append(
                    _Region(step.bind, step.args["new_length"], src.anon, src.shared, src.writable)
                )
        elif step.op == "pin":
            assert step.proc is not None
            ref = step.args["addr"]
            self.pins.setdefault(step.proc, []).append((ref.name, ref.offset, step.args["length"]))
        elif step.op == "unpin":
            assert step.proc is not None
            self.pins[step.proc].pop()


def _episode_machine(rng: random.Random, memory: str) -> dict[str, Any]:
    mthp = {}
    for size in _MTHP_SIZES:
        mthp[size] = rng.choices(_POLICIES, cum_weights=_POLICIES_CUM)[0]
    header: dict[str, Any] = {
        "memory": memory,
        "cpus": rng.choice((1, 2, 4)),
        "thp": rng.choice(("always", "madvise", "never")),
        "mthp": mthp,
        "check": True,
        "seed": rng.randrange(1 << 16),
    }
    seed = int(header["seed"])
    # Small mmu_gathers (the on-stack bundle only, or one batch page) fill in
    # the middle of a VMA, so zaps force flushes where a free/flush reorder
    # shows.  Taken from the seed: the generator's draws stay as they were.
    gather = (0, 1, -1)[seed % 3]
    if gather >= 0:
        header["max_gather_batch_count"] = gather
    # Also from the seed: one arm64 episode in four on a CPU without
    # FEAT_HAFDBS (software Access flag and dirty state: every first access
    # and first write faults), and one in three with mTHP sizes above 128K
    # (the layouts that span several contiguous blocks).
    if (seed // 3) % 4 == 0:
        header["cpu"] = _NO_HAFDBS_CPU
    if (seed // 12) % 3 == 0:
        for i, size in enumerate(_LARGE_MTHP_SIZES):
            header["mthp"][size] = _POLICIES[(seed >> (4 + 2 * i)) % len(_POLICIES)]
    # One episode in two has a swap device: reclaim and MADV_PAGEOUT swap
    # anon memory out, later accesses swap it in (mm/swapfile.py).
    if (seed // 36) % 2 == 0:
        header["swap"] = _SWAP_SIZE
    return header


def generate_episode(seed: int, nsteps: int, memory: str = "32M") -> tuple[dict[str, Any], list[Step]]:
    """A machine header and ``nsteps`` random steps, generated without running them.

    The generator's bookkeeping assumes every step succeeds; steps that do
    not are harmless (their outcome is part of what is compared).
    """
    rng = random.Random(seed)
    header = _episode_machine(rng, memory)
    g = _Gen(
        rng,
        random.Random(seed ^ 0x5EED_F17E),
        random.Random(seed ^ 0x3E3A_9000),
        random.Random(seed ^ 0x0B1C_3D5A),
        random.Random(seed ^ 0x7E4D),
    )
    g.swap = "swap" in header
    g.srng = random.Random(seed ^ 0x5A4D_0E17)
    g.rrng = random.Random(seed ^ 0x7EC1_A1B0)
    steps: list[Step] = []
    while len(steps) < nsteps:
        s = g.next()
        if g.pending is not None:
            steps.append(g.pending)
            g.pending = None
        before, s = g.thread_steps(s)
        for b in before:
            if len(steps) < nsteps - 1:
                steps.append(b)
                g.accept(b, Outcome(b.line, b.op, ""))
        steps.append(s)
        g.accept(s, Outcome(s.line, s.op, ""))
        g.maybe_mremap()
        if g.after is not None and len(steps) < nsteps:
            steps.append(g.after)
            g.accept(g.after, Outcome(g.after.line, g.after.op, ""))
        g.after = None
        for m in g.maybe_mix():
            if len(steps) >= nsteps:
                break
            steps.append(m)
            g.accept(m, Outcome(m.line, m.op, ""))
    return header, steps


# ---------------------------------------------------------------------------
# Running, comparing, shrinking
# ---------------------------------------------------------------------------
def _variant_kwargs(variant: str) -> dict[str, Any]:
    if variant in VARIANTS:
        return dict(VARIANTS[variant])
    raise ScenarioError("<fuzz>", 0, f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def _machine_header(base: dict[str, Any], variant: str, bugs: tuple[str, ...]) -> dict[str, Any]:
    h = {"arch": "arm64", **base, **_variant_kwargs(variant)}
    if h["arch"] != "arm64" and h.get("cpu") == _NO_HAFDBS_CPU:
        del h["cpu"]  # an arm64 core: the other backends keep their default CPU
    if h.get("policy") == "oneplus" and h.get("cpu") == _NO_HAFDBS_CPU:
        # The OnePlus design sets the Access flag of one entry of a block
        # (stock ptep_set_access_flags): on a CPU without hardware Access
        # flag management its blocks can fault forever (docs/oneplus.md).
        # It ships on cores with hardware AF; the software-dirty case stays
        # covered by a core with HA but no HD (Cortex-A510, like the A55).
        h["cpu"] = _ONEPLUS_SOFT_DIRTY_CPU
    if bugs:
        h["bugs"] = tuple(bugs)
    return h


class _Run:
    """One episode on one machine, step by step."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.m: Machine = make_machine(sc)
        self.env = Env()
        #: each outcome carries the step's counter deltas
        self.counters = False
        #: the outcomes of the ``at`` steps armed for the next step
        self.armed: list[Outcome] = []

    def step(self, s: Step) -> Outcome:
        try:
            if s.at:
                s = _policy_step(self.sc.machine, s)
                o = Outcome(s.line, s.op, "")
                self.m.scheduler().arm(thread_action(self.m, self.env, self.sc, s, o))
                self.armed.append(o)
                return o
            sched = self.m.sched
            if sched is None or not sched.armed:
                return run_step(self.m, self.env, self.sc, s, counters=self.counters, text=False)
            thread = self.env.procs.get(s.proc) if s.proc else None
            o = sched.step(
                thread, lambda: run_step(self.m, self.env, self.sc, s, counters=self.counters, text=False)
            )
            armed, self.armed = self.armed, []
            if o.violation is None:
                for a in armed:
                    if a.violation is not None:
                        return a
                if sched.violation is not None:
                    o.error, o.violation = f"violation:{sched.violation.rule}", sched.violation
                    return o
                stale = stale_tlb_at_return(self.m)
                if stale is not None:
                    o.error, o.violation = f"violation:{stale.rule}", stale
            return o
        except ScenarioError as e:
            # A name whose binding step failed (shrinking creates these): the step is void.
            o = Outcome(s.line, s.op, "", error="void")
            o.failed = None
            del e
            return o
        except Exception as e:  # a crash of the model is a finding too
            o = Outcome(s.line, s.op, "", error=f"crash:{type(e).__name__}")
            o.failed = f"{type(e).__name__}: {e}"
            return o


def _problem(o: Outcome) -> tuple[str, str] | None:
    if o.violation is not None:
        return f"violation:{o.violation.rule}", str(o.violation)
    if o.error is not None and o.error.startswith("crash:"):
        return o.error, o.failed or o.error
    return None


def _describe_state_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            return f"process {name} exists in one run only"
        pa, pb = a[name], b[name]
        for key in ("maps", "rss", "lazyfree"):
            if pa[key] != pb[key]:
                return f"process {name}: {key} differ: {pa[key]} vs {pb[key]}"
        da = {r[0]: r for r in pa["pages"]}
        db = {r[0]: r for r in pb["pages"]}
        for va in sorted(set(da) | set(db)):
            ra, rb = da.get(va), db.get(va)
            if ra != rb:
                return f"process {name} page {va:#x}: (addr, value, order, exclusive, class) {ra} vs {rb}"
    return "states differ"


def run_episode(
    header: dict[str, Any],
    steps: list[Step],
    variants: list[str],
    bugs: tuple[str, ...] = (),
    differential: bool = False,
    on_step: Callable[[], None] | None = None,
    record: list[dict[str, int]] | None = None,
    expected: list[dict[str, int]] | None = None,
) -> tuple[int, tuple[str, str, str] | None]:
    """Run ``steps`` on each variant; return (steps run, (kind, message, variant) or None).

    ``record``: append each step's counter deltas (first variant).
    ``expected``: each step's counter deltas must be these (first variant):
    the first step whose deltas differ is a ``cost:<counter>`` finding.
    """
    runs = [(v, _Run(Scenario("<fuzz>", _machine_header(header, v, bugs), steps))) for v in variants]
    if record is not None or expected is not None:
        runs[0][1].counters = True
    compare = differential and len(runs) > 1
    lazy = False  # some variant holds lazyfree pages (as of the last comparison)
    for i, s in enumerate(steps):
        if compare and s.at:
            # Where a thread's step lands at fork's lock breaks depends on
            # the variant (per-PTE or batched progress, the TLBs' contents):
            # a TLB hit runs it during the fork, a fault blocks it until
            # after.  Both are Linux; from here on the variants run on with
            # their validators, uncompared.
            compare = False
        if compare and s.op == "reclaim" and (lazy or "swap" in header):
            # Reclaim discards a lazyfree folio only if no PTE mapping it is
            # dirty, and PTE dirtiness legitimately differs between variants:
            # v6.12 arm64's batched fork gives the child dirty PTEs for clean
            # writable ones (copy_present_ptes: pte_mkwrite() of a batch with
            # any_writable clears PTE_RDONLY, so pte_wrprotect() sets
            # PTE_DIRTY), per-PTE copies and x86 do not.  From here on the
            # variants run on with their validators, uncompared.  With swap,
            # which anon folios reclaim takes depends on young bits the same
            # way (folio_check_references), so the comparison stops there too.
            compare = False
        outs = []
        for v, r in runs:
            o = r.step(s)
            p = _problem(o)
            if p is not None:
                return i + 1, (p[0], p[1], v)
            outs.append((v, o))
        if record is not None:
            record.append(outs[0][1].counters)
        if expected is not None:
            want = expected[i] if i < len(expected) else {}
            got_c = outs[0][1].counters
            if got_c != want:
                return i + 1, (*_cost_difference(s, want, got_c), outs[0][0])
        if compare:
            v0, o0 = outs[0]
            for v, o in outs[1:]:
                if (o.error, o.values) != (o0.error, o0.values):
                    msg = f"step '{s.op}' on line {s.line}: {v0} gave {o0.error or 'ok'} {o0.values}, {v} gave {o.error or 'ok'} {o.values}"
                    return i + 1, ("mismatch:outcome", msg, f"{v0} vs {v}")
            st0 = observe(runs[0][1].m, runs[0][1].env)
            lazy = any(ps["lazyfree"] for ps in st0.values())
            for v, r in runs[1:]:
                st = observe(r.m, r.env)
                lazy = lazy or any(ps["lazyfree"] for ps in st.values())
                if st != st0:
                    return i + 1, (
                        "mismatch:state",
                        f"after line {s.line}: {_describe_state_diff(st0, st)}",
                        f"{v0} vs {v}",
                    )
        if on_step is not None:
            on_step()
    return len(steps), None


def _cost_difference(s: Step, want: dict[str, int], got: dict[str, int]) -> tuple[str, str]:
    """(kind, message) for a step whose counter deltas differ from the recorded ones."""
    names = sorted(n for n in set(want) | set(got) if want.get(n, 0) != got.get(n, 0))
    shown = ", ".join(f"{n} {want.get(n, 0)} -> {got.get(n, 0)}" for n in names[:6])
    more = f" (+{len(names) - 6} more)" if len(names) > 6 else ""
    return (
        f"cost:{names[0]}",
        f"step '{s.op}' on line {s.line}: its counters differ from the recorded run: {shown}{more}",
    )


COSTS_FORMAT = "contpte-fuzz-costs"
COSTS_VERSION = 1
#: what must match between the recorded run and the compared one (the
#: kernel version and the bug options may differ: they are the change)
_COSTS_KEYS = ("seed", "steps", "episode_steps", "memory", "variants")


class CostBook:
    """Every step's counter deltas of a fuzz run, per variant and episode: a counter oracle.

    The validators see state; a change that alters only costs (a lock break
    moved, a TLBI range threshold, a fold that no longer happens, or a
    policy a kernel developer is trying) passes them.  Record a run on one
    tree or kernel version (``contpte fuzz --record-costs FILE``), then run
    the same seed on another (``--check-costs FILE``): the episodes are the
    same, so the first step whose counter deltas differ is a finding
    (``cost:<counter>``), written as a reproducer of the steps up to it
    with the differing counters.  It is not shrunk: the recorded tree is
    not at hand to run shorter sequences on.  The file is gzip'd JSON
    (format ``contpte-fuzz-costs``, version 1).
    """

    def __init__(self, config: dict[str, Any], recording: bool, path: str = "<costs>") -> None:
        self.config = config
        self.recording = recording
        self.path = path
        self.runs: dict[str, list[list[dict[str, int]]]] = {}

    @staticmethod
    def config_of(cfg: FuzzConfig) -> dict[str, Any]:
        return {
            "seed": cfg.seed,
            "steps": cfg.steps,
            "episode_steps": cfg.episode_steps,
            "memory": cfg.memory,
            "variants": list(cfg.variants),
            "kernel": cfg.kernel,
            "bugs": list(cfg.bugs),
        }

    @classmethod
    def new(cls, cfg: FuzzConfig, path: str) -> "CostBook":
        """An empty record of ``cfg``'s run, to be saved to ``path``."""
        return cls(cls.config_of(cfg), True, path)

    def check_config(self, cfg: FuzzConfig) -> None:
        from ..errors import ModelUsageError

        if self.recording:
            self.config = self.config_of(cfg)
            return
        now = self.config_of(cfg)
        for key in _COSTS_KEYS:
            if self.config.get(key) != now[key]:
                raise ModelUsageError(
                    f"{self.path}: recorded with {key}={self.config.get(key)!r}, this run has "
                    f"{key}={now[key]!r}; a cost comparison needs the same episodes"
                )

    def episode(self, variant: str, index: int) -> list[dict[str, int]]:
        """The recorded deltas of episode ``index`` on ``variant`` (the list to fill when recording)."""
        eps = self.runs.setdefault(variant, [])
        if self.recording:
            while len(eps) <= index:
                eps.append([])
            return eps[index]
        if index >= len(eps):
            return []
        return eps[index]

    def save(self, path: str | None = None) -> None:
        """Write the record (atomically: a temporary file renamed over ``path``)."""
        import gzip
        import json
        import os

        path = path or self.path
        tmp = f"{path}.tmp{os.getpid()}"
        doc = {"format": COSTS_FORMAT, "version": COSTS_VERSION, "config": self.config, "runs": self.runs}
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "CostBook":
        """Read a record; a missing, corrupt or foreign file is a ``ModelUsageError`` naming it."""
        import gzip
        import json

        from ..errors import ModelUsageError

        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            raise ModelUsageError(f"{path}: no such cost record") from None
        except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
            raise ModelUsageError(f"{path}: not a readable cost record ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != COSTS_FORMAT:
            raise ModelUsageError(f"{path}: not a contpte fuzz cost record (format {COSTS_FORMAT!r})")
        if doc.get("version") != COSTS_VERSION:
            raise ModelUsageError(
                f"{path}: cost record version {doc.get('version')!r}; this contpte reads {COSTS_VERSION}"
            )
        runs = doc.get("runs")
        config = doc.get("config")
        if not isinstance(runs, dict) or not isinstance(config, dict):
            raise ModelUsageError(f"{path}: cost record without its config or runs")
        book = cls(config, False, path)
        for v, eps in runs.items():
            if not isinstance(eps, list) or not all(
                isinstance(ep, list) and all(isinstance(d, dict) for d in ep) for ep in eps
            ):
                raise ModelUsageError(f"{path}: the runs of variant {v!r} are malformed")
            book.runs[str(v)] = eps
        return book


def _close_names(steps: list[Step]) -> list[Step]:
    """Drop steps that use a name no remaining step binds (or bind after use)."""
    bound: set[str] = set()
    out = []
    for s in steps:
        uses = set()
        if s.proc:
            uses.add(s.proc)
        for v in s.args.values():
            if isinstance(v, AddrRef) and v.name:
                uses.add(v.name)
        if s.op == "mmap" and s.args.get("file"):
            uses.add(s.args["file"])
        if uses <= bound:
            out.append(s)
            if s.bind:
                bound.add(s.bind)
    return out


def shrink(
    header: dict[str, Any],
    steps: list[Step],
    variants: list[str],
    kind: str,
    bugs: tuple[str, ...] = (),
    differential: bool = False,
    budget: float = 120.0,
) -> list[Step]:
    """Delta debugging over steps: the shortest sublist still showing ``kind``."""
    deadline = time.monotonic() + budget

    def still(cand: list[Step]) -> bool:
        _, got = run_episode(header, cand, variants, bugs, differential)
        return got is not None and got[0] == kind

    cur = _close_names(steps)
    if not still(cur):
        cur = steps
    n = 2
    while len(cur) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(cur) // n)
        reduced = False
        for start in range(0, len(cur), chunk):
            cand = _close_names(cur[:start] + cur[start + chunk :])
            if cand and len(cand) < len(cur) and still(cand):
                cur = cand
                n = max(n - 1, 2)
                reduced = True
                break
            if time.monotonic() >= deadline:
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(cur), n * 2)
    # Then simplify arguments: shorter lengths keep reproducers readable.
    for i in range(len(cur)):
        s = cur[i]
        ln = s.args.get("length")
        if s.op in ("write", "read", "mprotect", "madvise", "munmap") and isinstance(ln, int) and ln > PS:
            for new in (PS, ln // 2):
                cand = [
                    *cur[:i],
                    Step(s.line, s.proc, s.op, {**s.args, "length": new}, s.bind, at=s.at),
                    *cur[i + 1 :],
                ]
                if time.monotonic() < deadline and still(cand):
                    cur = cand
                    break
    return cur


def _renumber(steps: list[Step], first_line: int) -> list[Step]:
    return [
        Step(first_line + i, s.proc, s.op, dict(s.args), s.bind, s.expect, s.at) for i, s in enumerate(steps)
    ]


def replay(header: dict[str, Any], steps: list[Step], variant: str, bugs: tuple[str, ...] = ()) -> Scenario:
    """The reproducer: each step carries the outcome it had (``!EINVAL``...), the last one fails."""
    sc = Scenario("<reproducer>", _machine_header(header, variant, bugs), _renumber(steps, 3))
    r = _Run(sc)
    out = []
    #: ``at`` steps armed, not run yet: (index in out, their outcome)
    armed: list[tuple[int, Outcome]] = []
    for s in sc.steps:
        o = r.step(s)
        if o.error == "void":
            continue
        expect = None
        if o.error is not None and not o.error.startswith(("violation:", "crash:")):
            expect = o.error
        at = _policy_step(sc.machine, s).at
        out.append(Step(s.line, s.proc, s.op, s.args, s.bind, expect, at))
        if at:
            armed.append((len(out) - 1, o))
            continue
        for i, ao in armed:  # they ran during (or after) this step
            if ao.error is not None and not ao.error.startswith(("violation:", "crash:")):
                a = out[i]
                out[i] = Step(a.line, a.proc, a.op, a.args, a.bind, ao.error, a.at)
        armed = []
        if _problem(o) is not None:
            break
    sc.steps = _renumber(out, 3)
    return sc


def _policy_step(header: dict[str, Any], s: Step) -> Step:
    """``s`` with its preemption point as the machine's policy has it.

    The generator arms a thread's step at a write fault's lockless window
    (``contpte_ptep_get_lockless``).  Under ``policy="oneplus"`` that point
    is never reached (the arch's contpte is off); the whole-block fault's
    window before its PTL (``chp.alloc``) takes its place.
    """
    point, sep, occ = (s.at or "").partition(":")
    if header.get("policy") != "oneplus" or point != "contpte_ptep_get_lockless":
        return s
    return Step(s.line, s.proc, s.op, s.args, s.bind, s.expect, "chp.alloc" + sep + occ)


def _applies(c: Change, machine: dict[str, Any]) -> bool:
    """Whether the kernel version's value of ``c`` reaches the machine ``machine`` describes."""
    if c.option in machine:
        return False  # set explicitly (a variant's option): the version does not change it
    if c.arch is not None and c.arch != machine.get("arch"):
        return False
    contpte = machine.get("policy") != "oneplus" and machine.get("contpte", True)
    files = re.findall(r"[\w./-]+\.[ch]\b", c.where)
    # arm64's transparent contpte off: a change of contpte.c alone is not reached
    return contpte or not files or any(f != "arch/arm64/mm/contpte.c" for f in files)


def attribute(
    header: dict[str, Any],
    steps: list[Step],
    variants: list[str],
    kind: str,
    bugs: tuple[str, ...] = (),
    differential: bool = False,
) -> Attribution:
    """Run a finding's steps at every later modelled kernel version; name the fix.

    ``header`` is the episode's (its ``kernel`` the run's version, default
    ``KERNEL_VERSION``), ``steps`` what shrinking kept, ``variants`` the
    machines that ran them (several with ``differential``).  The steps run
    as shrinking runs them (``run_episode``), with every validator on.  If
    a version fixes it, each change of that version that applies to the
    machine (its arch, options the variant does not set, contpte.c only
    where arm64's contpte is on) is tried alone: the same version with that
    option at its ``before`` value.
    """
    kernel = str(header.get("kernel") or KERNEL_VERSION)

    def outcome(h: dict[str, Any]) -> str | None:
        _, got = run_episode(h, steps, variants, bugs, differential)
        return got[0] if got is not None else None

    later = {
        v: outcome({**header, "kernel": v}) for v in KERNEL_VERSIONS if version_key(v) > version_key(kernel)
    }
    att = Attribution(kernel, kind, later)
    fixed = att.fixed_in
    if fixed is not None:
        machines = [_machine_header(header, v, bugs) for v in variants]
        for c in CHANGES:
            if c.since == fixed and any(_applies(c, m) for m in machines):
                att.fixes.append((c, outcome({**header, "kernel": fixed, c.option: c.before}) == kind))
    return att


def _finding(
    cfg: FuzzConfig,
    header: dict[str, Any],
    cut: list[Step],
    group: list[str],
    got: tuple[str, str, str],
    episode: int,
    step: int,
) -> Finding:
    """The finding ``run_episode`` reported: shrunk, as a reproducer, attributed to kernel versions."""
    kind, msg, who = got
    orig = len(cut)
    if kind.startswith("cost:"):
        sc = replay(header, cut, group[0], cfg.bugs)  # each step with the outcome it had
        return Finding(kind, msg, who, episode, sc, orig, step)
    if cfg.shrink:
        cut = shrink(header, cut, group, kind, cfg.bugs, cfg.differential)
    variant = group[0]
    if len(group) > 1 and not kind.startswith("mismatch"):
        # Shrinking keeps the kind, not the machine: in a differential group
        # the shrunk steps may break on another variant first.  The
        # reproducer is that variant's, with its message.
        _, again = run_episode(header, cut, group, cfg.bugs, cfg.differential)
        if again is not None and again[0] == kind and again[2] in group:
            _, msg, who = again
            variant = who
    sc = (
        replay(header, cut, variant, cfg.bugs)
        if not kind.startswith("mismatch")
        else Scenario("<reproducer>", _machine_header(header, variant, cfg.bugs), _renumber(cut, 3))
    )
    att = attribute(header, cut, group, kind, cfg.bugs, cfg.differential)
    return Finding(kind, msg, who, episode, sc, orig, step, att)


def fuzz(
    cfg: FuzzConfig,
    progress: Callable[[int], None] | None = None,
    phase: Callable[[str], None] | None = None,
    on_finding: Callable[[Finding], None] | None = None,
) -> FuzzResult:
    """Run episodes until ``cfg.steps`` steps per variant ran or a finding ended the run.

    ``progress(n)``: ``n`` steps of one variant (or of the differential
    group) are done.  ``phase(text)``: the run is busy with something else
    than fuzz steps (shrinking and attributing a finding).  ``on_finding``:
    each finding, complete, as it is made (before the run goes on).
    """
    variants = list(cfg.variants)
    for v in variants:
        _variant_kwargs(v)
    master = random.Random(cfg.seed)
    done = 0
    episodes = 0
    t0 = time.monotonic()
    finding_seconds = 0.0
    per_variant = dict.fromkeys(variants, 0)
    findings: list[Finding] = []
    stop: Finding | None = None
    groups = [variants] if cfg.differential else [[v] for v in variants]
    while done < cfg.steps and stop is None:
        ep_seed = master.randrange(1 << 32)
        nsteps = min(cfg.episode_steps, cfg.steps - done)
        header, steps = generate_episode(ep_seed, nsteps, cfg.memory)
        if cfg.kernel is not None:
            header["kernel"] = cfg.kernel
        for group in groups:
            record = expected = None
            if cfg.costs is not None:
                book = cfg.costs.episode(group[0], episodes)
                record, expected = (book, None) if cfg.costs.recording else (None, book)
            ran, got = run_episode(
                header, steps, group, cfg.bugs, cfg.differential, record=record, expected=expected
            )
            for v in group:
                per_variant[v] += ran
            if progress is not None:
                progress(nsteps)
            if got is None:
                continue
            t1 = time.monotonic()
            if phase is not None:
                phase(f"finding {len(findings) + 1} ({got[0]}): shrinking and attributing, not fuzzing")
            f = _finding(cfg, header, steps[:ran], group, got, episodes, done + ran)
            findings.append(f)
            if on_finding is not None:
                on_finding(f)
            finding_seconds += time.monotonic() - t1
            if phase is not None:
                phase(f"{len(findings)} finding(s)")
            if not (cfg.keep_going and f.fixed_in is not None):
                stop = f
                break
        episodes += 1
        done += nsteps
    return FuzzResult(
        done,
        episodes,
        time.monotonic() - t0,
        variants,
        stop if stop is not None else (findings[-1] if findings else None),
        per_variant,
        findings,
        finding_seconds,
        stop is not None,
    )


def reproducer_text(f: Finding, seed: int) -> str:
    """The reproducer file: comments saying what it shows, then the scenario."""
    comments = [
        f"contpte fuzz reproducer (seed {seed}, episode {f.episode}): {f.kind}",
        f"found on {f.variant}; "
        + (
            f"not shrunk ({f.original_steps} steps)"
            if f.kind.startswith("cost:")
            else f"shrunk from {f.original_steps} to {len(f.scenario.steps)} steps"
        ),
        *(f"  {line}" for line in f.message.splitlines()[:6]),
    ]
    if f.kind.startswith("mismatch"):
        comments.append("differential: replay with `contpte run --arch arm64|generic FILE` and compare")
    if f.kind.startswith("cost:"):
        comments.append(
            "counter oracle: the last step's counters differ from the recorded run; "
            "replay with `contpte run --counters FILE` on both trees and compare"
        )
    if f.attribution is not None:
        comments.append("kernel versions (the same steps at each later modelled version):")
        comments.extend(f"  {line}" for line in f.attribution.lines())
        if f.fixed_in is not None:
            comments.append(
                f"  replay at the fixing version: `contpte run --kernel-version {f.fixed_in} FILE`"
            )
    f.scenario.title = f.scenario.title or f"fuzz finding: {f.kind}"
    return format_scenario(f.scenario, comments)
