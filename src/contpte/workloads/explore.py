"""Explore the interleavings of a threaded scenario (``contpte run FILE --explore N``).

A scenario's ``at`` steps (docs/SCENARIOS.md) are steps of other threads
that run at a preemption point of the next step (``contpte.system.sched``).
``at POINT:N`` fixes the point; ``at *`` and, here, a bare ``at POINT`` leave
it *free*: the explorer decides at every occurrence of a matching point
whether the action fires there, and otherwise it runs after the step.

``explore(sc, bound)`` is systematic, like CHESS or loom: a depth-first
search over the decisions, replaying the scenario from a fresh Machine for
each schedule, that visits every schedule with at most ``bound``
preemptions (actions fired at a point; running after the step is free).
``explore_random(sc, seed, runs)`` draws schedules with a seeded RNG.  Every
validator and the Arm ARM rule checker run as in ``contpte run``; a schedule
fails when one of its steps fails, and comes back as a scenario that
replays it with explicit ``at POINT:N`` lines (``replay_scenario``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..system.sched import POINTS, prefix_decider, seeded_decider
from .scenario import Outcome, Scenario, format_scenario, make_machine, run

__all__ = ["ExploreResult", "explore", "explore_random", "replay_scenario"]


@dataclass
class ExploreResult:
    """What an exploration found: schedules run, and the first failing one (if any)."""

    schedules: int = 0
    decisions: int = 0
    failure: list[Outcome] | None = None
    replay: Scenario | None = None
    choices: list[int] = field(default_factory=list)
    complete: bool = True

    @property
    def ok(self) -> bool:
        return self.failure is None

    def replay_text(self) -> str:
        """The failing schedule as scenario text (empty when none failed)."""
        if self.replay is None:
            return ""
        return format_scenario(
            self.replay, [f"the failing interleaving found by the explorer (choices {self.choices})"]
        )


def _run_one(
    sc: Scenario, decide: Any, overrides: dict[str, Any]
) -> tuple[list[Outcome], list[tuple[str, int, int, int]]]:
    m = make_machine(sc, **overrides)
    outs = run(sc, machine=m, counters=False, decide=decide)
    trace = list(m.sched.trace) if m.sched is not None else []
    return outs, trace


def replay_scenario(sc: Scenario, outs: list[Outcome]) -> Scenario:
    """``sc`` with every ``at`` step pinned where it ran in ``outs`` (``at POINT:N``, or after its step)."""
    ran = {o.line: o.ran for o in outs if o.ran is not None}
    steps = []
    moved: list[Any] = []
    for st in sc.steps:
        if st.at is None:
            steps.append(st)
            steps += moved
            moved = []
            continue
        where = ran.get(st.line) or "after"
        point = where.removeprefix("blocked at ").split(",")[0]
        new = copy.copy(st)
        if point.partition(":")[0] in POINTS:
            new.at = point
            steps.append(new)
        else:
            new.at = None
            moved.append(new)
    steps += moved
    return Scenario(sc.path, dict(sc.machine), steps, sc.title, dict(sc.expect_mismatch), sc.header_line)


def _failed(outs: list[Outcome]) -> bool:
    return any(o.failed for o in outs)


def explore(sc: Scenario, bound: int = 2, max_schedules: int = 10000, **overrides: Any) -> ExploreResult:
    """Every schedule of ``sc`` with at most ``bound`` preemptions (up to ``max_schedules``)."""
    res = ExploreResult()
    stack: list[list[int]] = [[]]
    while stack:
        if res.schedules >= max_schedules:
            res.complete = False
            break
        prefix = stack.pop()
        outs, trace = _run_one(sc, prefix_decider(prefix), overrides)
        res.schedules += 1
        res.decisions += len(trace)
        choices = [c for (_p, _n, _k, c) in trace]
        if _failed(outs):
            res.failure, res.choices = outs, choices
            res.replay = replay_scenario(sc, outs)
            break
        used = sum(1 for c in choices[: len(prefix)] if c)
        if used >= bound:
            continue
        for d in range(len(trace) - 1, len(prefix) - 1, -1):
            for alt in range(trace[d][2] - 1, 0, -1):
                stack.append([*choices[:d], alt])
    return res


def explore_random(sc: Scenario, seed: int = 0, runs: int = 100, **overrides: Any) -> ExploreResult:
    """``runs`` schedules drawn with seeds ``seed``, ``seed+1``, ... (each action fires at a point with p=1/4)."""
    res = ExploreResult(complete=False)
    for i in range(runs):
        outs, trace = _run_one(sc, seeded_decider(seed + i), overrides)
        res.schedules += 1
        res.decisions += len(trace)
        if _failed(outs):
            res.failure, res.choices = outs, [c for (_p, _n, _k, c) in trace]
            res.replay = replay_scenario(sc, outs)
            break
    return res
