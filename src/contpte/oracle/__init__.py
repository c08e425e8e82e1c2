"""Oracles: the same scenarios on a real kernel and on the model, compared.

``run_oracle(scenario, model_arch=...)`` replays a parsed scenario
(``contpte.workloads.scenario``) on this machine's running Linux with real
processes and on the model (``generic`` or ``arm64`` backend), and reports every observable difference (``OracleResult``).
``ThpSysfs`` sets the live THP policy for a run and always restores it.
The scenario library lives in ``scenarios/`` (``library()`` lists it).
"""

from __future__ import annotations

from pathlib import Path

from .run import (
    ARCH_DIFFERENCES,
    MODEL_ARCHS,
    ORACLE_NAME,
    Diff,
    OracleResult,
    StepReport,
    compare_states,
    live_unavailable_reason,
    run_oracle,
    scenario_unsupported_reason,
)
from .sysfs import ThpSysfs

__all__ = [
    "run_oracle",
    "OracleResult",
    "StepReport",
    "Diff",
    "ORACLE_NAME",
    "MODEL_ARCHS",
    "ARCH_DIFFERENCES",
    "ThpSysfs",
    "compare_states",
    "live_unavailable_reason",
    "scenario_unsupported_reason",
    "SCENARIO_DIR",
    "library",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
"""The oracle's scenario library (``*.scn``)."""


def library() -> list[Path]:
    """Every scenario of the library, sorted by name."""
    return sorted(SCENARIO_DIR.glob("*.scn"))
