"""A stand-in for the Machine in cost tests: counters made up from the measured steps.

``fake_run(sc, kw)`` replaces ``pricing._run``: it counts the measured steps
of the scenario by verb and invents counters shaped like what the kernel
variant would do (contpte conversions when batching or the batched teardown
is off, none when both are on), so pricing, benches and calibration can be tested in milliseconds.
Not a prediction of the Machine's counts.
"""

from __future__ import annotations

from typing import Any

from contpte.cost.pricing import Measured
from contpte.workloads.scenario import Scenario

PTES = 32768


def measured_steps(sc: Scenario) -> dict[str, int]:
    marked = any(s.op == "measure" for s in sc.steps)
    inside = not marked
    steps: dict[str, int] = {}
    for s in sc.steps:
        if s.op == "measure":
            inside = s.args["edge"] == "begin"
            continue
        if inside:
            steps[s.op] = steps.get(s.op, 0) + 1
    return steps


def fake_run(sc: Scenario, kw: dict[str, Any]) -> Measured:
    steps = measured_steps(sc)
    contpte = kw.get("contpte", True) and kw.get("arch", "arm64") == "arm64"
    batched = kw.get("batch_fork", True)
    converts = contpte and (not batched or not kw.get("teardown_opt", True))
    c: dict[str, int] = {}

    def add(name: str, n: int) -> None:
        if n:
            c[name] = c.get(name, 0) + n

    for op, n in steps.items():
        if op in ("fork", "exit", "munmap"):
            add("pte.read", 2 * PTES * n)
            add("pte.write", 2 * PTES * n)
            add("rmap.pages", PTES * n)
            add("rmap.op", (PTES // 16 if batched else PTES) * n)
            add("ref.op", (PTES // 16 if batched else PTES) * n)
            add("tlbi.ASIDE1IS", n)
            add("dsb.ish", n)
            add("dvm.sync", n)
            if converts:
                add("tlbi.VALE1IS", PTES * n)
                add("dvm.sync", PTES // 16 * n)
                add("contpte.convert", PTES // 16 * n)
                add("call.contpte_convert", PTES // 16 * n)
        elif op in ("madvise", "write", "read"):
            add("pte.read", n)
            add("pte.write", n)
            add("tlbi.VALE1IS", n)
            add("dvm.sync", n)
            if contpte:
                add("contpte.convert", n // 16)
                add("tlbi.VALE1IS", n)
                add("dvm.sync", n // 16)
    return Measured(dict(sorted(c.items())), steps)
