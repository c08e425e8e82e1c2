"""A deterministic scheduler: other threads' steps at the kernel's preemption points.

The model's syscalls and accesses run to completion, one at a time.  Where
the kernel may be overtaken by another CPU in the middle of one, the
kernel-shaped code calls a hook, and the scheduler installed on the
Machine may run whole steps of other threads there, nested, before the
interrupted code goes on.  The points (``POINTS``):

- ``fork.lock_break``: ``copy_pte_range()`` has dropped both PTLs at a lock
  break (mm/memory.c).  dup_mmap() still holds the parent's mmap_lock for
  write and has write-locked every VMA up to the one being copied
  (v6.12 kernel/fork.c ``mmap_write_lock_killable(oldmm)``,
  ``vma_start_write(mpnt)``; ``mm/fork.py``).  So another thread of the
  parent can run there only what takes no lock of that mm: user accesses
  that hit in its CPU's TLB or that the hardware completes (a walk, the
  FEAT_HAFDBS access and dirty updates on any entry of a block), and page
  faults through the per-VMA lock on a VMA not write-locked
  (``lock_vma_under_rcu()``: not on the VMA being copied nor before it).
  A fault on a write-locked VMA, and every syscall of that mm, would sleep
  on the mmap_lock: that thread *blocks* and its step goes on after the
  interrupted step returns.  Other processes run anything.  The issue's
  premise that "a fault in another thread refolds the block" is therefore
  impossible in v6.12; it was possible in v6.4 (per-VMA locks without the
  VMA write-lock in dup_mmap), bug catalog ``fork_no_vma_write_lock``.
- ``contpte_ptep_get_lockless``: between the read of the entry and the
  reads of its contiguous block (arch/arm64/mm/contpte.c).  Its callers are
  page faults (``handle_pte_fault``, ``pte_range_none`` of
  ``alloc_anon_folio``) holding the per-VMA lock (or the mmap_lock) for
  read: another thread of the mm may access, fault, and run MADV_DONTNEED,
  MADV_FREE and pins (mmap_lock for read) there; syscalls that need the
  mmap_lock for write block.
- ``copy_present_ptes``: fork's window between the pin check of a batch
  (``folio_try_dup_anon_rmap_ptes``) and its write-protect, both PTLs held
  (mm/memory.c).  Only what takes no lock runs: TLB hits and GUP-fast,
  which must not keep a pin of a page fork is about to share
  (``mm->write_protect_seq``, mm/gup.py).  Locks as at ``fork.lock_break``.
- The mmap_lock (or per-VMA lock) read sections that sleep or drop the PTL
  (v6.12 mm/memory.c, mm/madvise.c): ``do_anonymous_page`` (the folio
  allocation, before ``pte_offset_map_lock`` and the re-check),
  ``wp_page_copy`` (allocation and copy, before the ``pte_same``
  re-check), ``zap_pte_range`` (its PTL drop under MADV_DONTNEED, the TLB
  flush and the freeing of the gathered pages still to come),
  ``madvise_free_pte_range`` and ``madvise_cold_or_pageout_pte_range``
  (the split of a partly covered large folio, PTL dropped).  The faulting
  thread holds the per-VMA lock for read (``lock_vma_under_rcu``, arm64
  ``do_page_fault``), madvise the mmap_lock for read: other threads of the
  mm may fault, run MADV_DONTNEED/FREE/COLD/PAGEOUT and pins there;
  syscalls that need the mmap_lock for write block (the model blocks them
  all, also munmap of another VMA, which a per-VMA-locked fault would let
  run).
- ``gup_fast_pte_range``: GUP-fast between its lockless read of a PTE and
  the grab of the folio (mm/gup.c); it holds no lock, IRQs off: anything
  of the mm may run there, but what frees page tables (munmap, mremap,
  exit, MADV_COLLAPSE), which the disabled IRQs hold off: those block.
  GUP-fast's slow path takes the mmap_lock for read
  (``Kernel.on_mmap_read_lock``): it blocks under a writer.
- ``chp.alloc`` (policy oneplus): a whole-block write fault has its block
  from the pool and has not yet taken the PTL
  (``do_huge_cont_pte_anonymous_page``); the same locks are held as at
  ``contpte_ptep_get_lockless``, so the same steps may run there.

A reclaim pass (``at POINT reclaim``: kswapd, or direct reclaim of another
task) takes no mmap_lock: its rmap walk (``try_to_unmap()`` ->
``rmap_walk_anon()``) takes the anon_vma lock for read and each PTL.  It
runs at ``fork.lock_break``, where fork holds the parent's mmap_lock for
write and no PTL, and its anon_vma locks are free again
(``anon_vma_fork()`` is done; the child's VMA is already linked, so the
walk finds the child's PTEs of the tables fork has copied); fork then
re-reads each source PTE after the break (``copy_pte_range()`` restarts
at ``addr`` with ``pte_offset_map_lock()``), so a page swapped out there
is copied as a swap entry.  At any other point the model defers it to
after the step (``Scheduler.may_reclaim``): its interplay with the
locks held there is not modelled (``copy_present_ptes`` holds both
PTLs, which the walk would wait for).

A step that an interleaving runs is an *action*: armed for the next step
(``at POINT[:N] THREAD STEP`` in a scenario, ``Scheduler.arm``), it fires at
the N-th occurrence of POINT during that step (bare POINT: the first; ``*``
or a bare POINT under exploration: wherever the explorer decides), or, not
fired, right after the step.  Validators: a nested step's own end-of-syscall
checks are deferred to the end of the step it interrupted (the state in the
middle of a fork is not quiescent: the child's RSS is added at the end of a
table); the Arm ARM rule checker runs throughout.

``explore`` enumerates the interleavings of a scenario systematically, every
one with up to ``bound`` preemptions (an action fired at a preemption point
counts one), like CHESS or loom; ``explore_random`` draws them with a seeded
RNG.  A failing interleaving comes back as a scenario that replays it
(explicit ``at POINT:N`` lines).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ContpteError, InvariantViolation
from ..mm.fork import vma_is_write_locked
from ..mm.mm_types import Vma, vma_is_anonymous

if TYPE_CHECKING:
    from .machine import Machine
    from .process import Process

__all__ = ["Scheduler", "Action", "Blocked", "POINTS", "ANY_POINT"]

_T = TypeVar("_T")

POINTS: tuple[str, ...] = (
    "fork.lock_break",
    "copy_present_ptes",
    "contpte_ptep_get_lockless",
    "do_anonymous_page",
    "wp_page_copy",
    "zap_pte_range",
    "madvise_free_pte_range",
    "madvise_cold_or_pageout_pte_range",
    "gup_fast_pte_range",
    "chp.alloc",
)
"""The preemption points the kernel-shaped code reports."""
ANY_POINT = "*"
#: The points inside fork (the parent's mmap_lock held for write).
FORK_POINTS = frozenset({"fork.lock_break", "copy_present_ptes"})

#: Syscalls that take the mmap_lock for read (``madvise``: the read-locked
#: advice, DONTNEED/FREE/COLD/PAGEOUT; ``madvise.write`` the others) or no
#: mmap lock (``pin``: GUP-fast, its slow path asks ``on_mmap_read_lock``;
#: ``unpin``).
_READERS = frozenset({"madvise", "pin", "unpin"})
#: Syscalls that free page tables (GUP-fast's disabled IRQs hold them off).
_FREE_TABLES = frozenset({"munmap", "mremap", "exit", "madvise.collapse"})

#: What a thread of the interrupted mm may run at each point: the syscalls
#: that take no lock the interrupted code holds exclusively (accesses and
#: their faults are decided fault by fault: ``may_fault``).  None: all
#: but ``_FREE_TABLES``.
_SAME_MM_SYSCALLS: dict[str, frozenset[str] | None] = {
    "fork.lock_break": frozenset({"pin", "unpin"}),
    "copy_present_ptes": frozenset({"pin", "unpin"}),
    "contpte_ptep_get_lockless": _READERS,
    "do_anonymous_page": _READERS,
    "wp_page_copy": _READERS,
    "zap_pte_range": _READERS,
    "madvise_free_pte_range": _READERS,
    "madvise_cold_or_pageout_pte_range": _READERS,
    "gup_fast_pte_range": None,
    "chp.alloc": _READERS,
}


class Blocked(ContpteError):
    """A nested step must sleep on a lock the interrupted code holds (internal to the scheduler)."""

    def __init__(self, va: int | None) -> None:
        super().__init__("blocked on the mmap_lock" if va is None else f"fault at {va:#x} blocked on a lock")
        self.va = va


@dataclass
class Action:
    """One armed step of another thread (``thread`` None: a machine-level step, reclaim).

    ``run(resume_va)`` performs it (``resume_va``: None the first time; after
    ``Blocked``, the address its access stopped at).  ``point``: a POINT,
    ``POINT:N``, or ``*``.  ``free``: the explorer decides where it fires.
    ``ran``: where it ran, once it did (``"fork.lock_break:2"``, ``"after"``,
    ``"blocked at fork.lock_break:1"``).
    """

    thread: "Process | None"
    kind: str
    run: Callable[[int | None], Any]
    point: str = ANY_POINT
    free: bool = False
    label: str = ""
    ran: str | None = None
    result: Any = None
    error: BaseException | None = None
    resume_va: int | None = None
    done: bool = False
    on_done: Callable[["Action"], None] | None = None

    def want(self) -> tuple[str, int]:
        """(point name, occurrence) for an explicit action; occurrence 0: none given."""
        name, _, n = self.point.partition(":")
        return name, int(n) if n else 0


@dataclass
class _Frame:
    point: str
    thread: "Process | None"


@dataclass
class Scheduler:
    """The scheduler installed on a Machine (``Machine.scheduler()``).

    ``decide(point, occurrence, candidates) -> index or -1`` chooses, at a
    point where free actions are armed, which one fires (-1: none); the
    default fires none.  ``trace`` records ``(point, occurrence, n_options,
    choice)`` for every such decision (the explorer's search tree).
    """

    machine: "Machine"
    decide: Callable[[str, int, list[Action]], int] | None = None
    armed: list[Action] = field(default_factory=list)
    deferred: list[Action] = field(default_factory=list)
    trace: list[tuple[str, int, int, int]] = field(default_factory=list)
    current: "Process | None" = None
    stack: list[_Frame] = field(default_factory=list)
    occurrences: dict[str, int] = field(default_factory=dict)
    nested_actors: list["Process"] = field(default_factory=list)
    #: A machine-level step (reclaim) ran nested: its checks wait too.
    nested_machine: bool = False
    #: Nested steps run so far (a fault that let one run may be retried on new state).
    preemptions: int = 0
    violation: InvariantViolation | None = None

    def __post_init__(self) -> None:
        m = self.machine
        m.kernel.on_lock_break = self._on_lock_break
        m.kernel.yield_hook = self._on_yield
        m.kernel.on_mmap_read_lock = self._on_mmap_read_lock
        m.hw.yield_hook = self._yield

    # -- the hooks ---------------------------------------------------------
    def _on_lock_break(self, mm: Any, addr: int) -> None:
        self._on_yield("fork.lock_break", mm, addr)

    def _on_yield(self, point: str, mm: Any, addr: int) -> bool:
        if point == "zap_pte_range" and self.armed and self.machine.check_enabled:
            # MADV_DONTNEED's pages before addr are gone: the validators learn it now.
            self.machine.validators.zap_progress(mm, addr)
        reclaimed = self.nested_machine
        self.nested_machine = False
        ran = self._yield(point, addr)
        if ran and point in FORK_POINTS and self.machine.check_enabled:
            # fork-copy: from addr on, fork copies what the parent holds now;
            # reclaim's rmap walk also changed pages fork had copied already.
            self.machine.validators.fork_rebase(mm, addr, self.nested_machine)
        self.nested_machine = self.nested_machine or reclaimed
        return ran

    def _on_mmap_read_lock(self, mm: Any) -> None:
        """``mmap_read_lock(mm)`` of a nested step: it sleeps if an interrupted step holds it for write."""
        if mm.mmap_write_locked and any(
            fr.thread is not None and fr.thread.mm is mm and fr.point in FORK_POINTS for fr in self.stack
        ):
            raise Blocked(None)

    def _yield(self, point: str, va: int) -> bool:
        """A preemption point: run the actions due here; True if any ran."""
        if not self.armed:
            return False
        n = self.occurrences.get(point, 0) + 1
        self.occurrences[point] = n
        due: list[Action] = []
        free: list[Action] = []
        for act in self.armed:
            if act.thread is self.current:
                continue
            if act.free:
                name, _ = act.want()
                if name in (ANY_POINT, point):
                    free.append(act)
                continue
            name, occ = act.want()
            if name == point and occ in (0, n):
                due.append(act)
        if free and self.decide is not None:
            choice = self.decide(point, n, free)
            self.trace.append((point, n, len(free) + 1, choice + 1))
            if choice >= 0:
                act = free[choice]
                act.point = f"{point}:{n}"
                due.append(act)
        ran = False
        for act in due:
            self.armed.remove(act)
            ran = self._run_nested(act, f"{point}:{n}") or ran
        return ran

    # -- running actions ---------------------------------------------------
    def _run_nested(self, act: Action, where: str) -> bool:
        m = self.machine
        interrupted = self.current
        cpu = m.hw.current_cpu
        self.stack.append(_Frame(where.partition(":")[0], interrupted))
        self.current = act.thread
        self.preemptions += 1
        m.counters.add("sched.preempt", 1)
        chk = m.hw.checker
        concurrent = chk.concurrent if chk is not None else False
        if chk is not None:
            chk.concurrent = True
        try:
            self._perform(act, where)
        finally:
            self.stack.pop()
            self.current = interrupted
            m.hw.current_cpu = cpu
            if chk is not None:
                chk.concurrent = concurrent
        if act.thread is None:
            self.nested_machine = True
        elif act.thread not in self.nested_actors:
            self.nested_actors.append(act.thread)
        return True

    def _perform(self, act: Action, where: str) -> None:
        try:
            act.result = act.run(act.resume_va)
        except Blocked as b:
            act.resume_va = b.va
            act.ran = f"blocked at {where}"
            self.deferred.append(act)
            return
        except Exception as e:
            act.error = e
            act.ran = where
            act.done = True
            if act.on_done is not None:
                act.on_done(act)
            if isinstance(e, InvariantViolation):
                raise
            return
        act.ran = where if act.ran is None else f"{act.ran}, resumed {where}"
        act.done = True
        if act.on_done is not None:
            act.on_done(act)

    def arm(self, act: Action) -> None:
        """Arm ``act`` for the next step run with ``step()``."""
        self.armed.append(act)

    def step(self, thread: "Process | None", fn: Callable[[], _T]) -> _T:
        """Run one step of ``thread`` with the armed actions, then the ones not run or blocked.

        Returns what ``fn`` returns (an exception of ``fn`` propagates after
        the remaining actions ran).  A violation in a remaining action is in
        its ``error`` and in ``violation`` (the actions after it do not run).
        """
        self.current = thread
        self.occurrences = {}
        self.nested_actors = []
        self.nested_machine = False
        self.violation = None
        try:
            return fn()
        finally:
            self.current = None
            self._finish()

    def _finish(self) -> None:
        m = self.machine
        if m.check_enabled:
            # The nested steps' own end-of-syscall checks, now that the state is quiescent.
            if self.nested_machine:
                try:
                    m.validators.after_syscall(None, "nested reclaim")
                except InvariantViolation as e:
                    self.violation = e
            for t in self.nested_actors if self.violation is None else ():
                if t.alive:
                    try:
                        m.validators.after_syscall(t, "nested")
                    except InvariantViolation as e:
                        # Reported with the step (``violation``); what is still armed does not run.
                        self.violation = e
                        break
        pending = self.deferred + self.armed
        self.deferred, self.armed = [], []
        for act in pending:
            if self.violation is not None:
                act.ran = "not run (an invariant broke before)"
                act.done = True
                if act.on_done is not None:
                    act.on_done(act)
                continue
            self.current = act.thread
            try:
                self._perform_after(act)
            finally:
                self.current = None

    def _perform_after(self, act: Action) -> None:
        prior = act.ran
        try:
            act.result = act.run(act.resume_va)
        except Exception as e:
            act.error = e
            if isinstance(e, InvariantViolation):
                self.violation = e
        act.ran = "after" if prior is None else f"{prior}, resumed after"
        act.done = True
        if act.on_done is not None:
            act.on_done(act)

    # -- what may run where -------------------------------------------------
    @property
    def nested(self) -> bool:
        """True while a nested action runs (its end-of-syscall checks wait)."""
        return bool(self.stack)

    def _frame_for(self, thread: "Process") -> _Frame | None:
        """The innermost interrupted frame of ``thread``'s mm, if any."""
        for fr in reversed(self.stack):
            if fr.thread is not None and fr.thread.mm is thread.mm:
                return fr
        return None

    def may_syscall(self, thread: "Process", name: str) -> None:
        """Raise ``Blocked`` if ``thread``'s syscall ``name`` needs a lock an interrupted step holds.

        Every interrupted step of the mm counts (a GUP-fast inside a fork
        holds nothing, the fork still holds the mmap_lock for write).
        """
        for fr in self.stack:
            if fr.thread is None or fr.thread.mm is not thread.mm:
                continue
            allowed = _SAME_MM_SYSCALLS.get(fr.point, frozenset())
            if (name in _FREE_TABLES) if allowed is None else (name not in allowed):
                raise Blocked(None)

    def may_reclaim(self) -> None:
        """Raise ``Blocked`` unless every interrupted step is at ``fork.lock_break``.

        Reclaim takes no mmap_lock; the model runs it nested only where
        the interrupted code holds no PTL and no anon_vma lock: fork's lock
        break (see the module docstring); elsewhere it runs after the step.
        """
        if any(fr.point != "fork.lock_break" for fr in self.stack):
            raise Blocked(None)

    def may_fault(self, thread: "Process", vma: Vma, va: int) -> None:
        """Raise ``Blocked`` if ``thread`` cannot take the page fault at ``va`` now.

        The fault handler's ``lock_vma_under_rcu()`` fails on a write-locked
        VMA (and on an anonymous VMA without an anon_vma); it then sleeps
        in ``mmap_read_lock()`` behind the interrupted writer.
        """
        fr = self._frame_for(thread)
        if fr is None:
            return
        mm = thread.mm
        if not mm.mmap_write_locked:
            return  # the interrupted code holds read locks only
        if vma_is_write_locked(vma) or (vma_is_anonymous(vma) and vma.anon_vma is None):
            raise Blocked(va)


def seeded_decider(seed: int, p: float = 0.25) -> Callable[[str, int, list[Action]], int]:
    """A ``decide`` that fires each armed free action with probability ``p`` (seeded)."""
    rng = random.Random(seed)

    def decide(point: str, occurrence: int, candidates: list[Action]) -> int:
        if rng.random() < p:
            return rng.randrange(len(candidates))
        return -1

    return decide


def prefix_decider(prefix: list[int]) -> Callable[[str, int, list[Action]], int]:
    """A ``decide`` that follows ``prefix`` (choice+1 per decision; 0 none), then fires nothing."""
    it = iter(prefix)

    def decide(point: str, occurrence: int, candidates: list[Action]) -> int:
        c = next(it, 0)
        return c - 1

    return decide
