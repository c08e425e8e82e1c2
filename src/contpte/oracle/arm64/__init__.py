"""The arm64 oracle: scenarios on a Debian arm64 kernel (6.12 by default, up to 7.2; 4K or 16K pages) under qemu.

``run_arm64_oracle(scenarios)`` replays scenarios on the model (arm64
backend) and, in one qemu boot, on the real arm64 kernel, and compares per
step the entries into the contpte functions (``boot.TRACED``) with the
model's ``call.<symbol>`` counters, the outcomes and the values read.
Everything it needs is fetched on first use into a cache directory
(``env.py``).  The scenario library is ``scenarios/*.scn`` (``library()``).
"""

from __future__ import annotations

from pathlib import Path

from .boot import TRACED, BootError
from .env import Arm64EnvError, cache_dir, ensure_guest_files, tools_unavailable_reason
from .run import ORACLE_NAME, Arm64Report, Arm64StepReport, run_arm64_oracle, scenario_unsupported_reason

__all__ = [
    "ORACLE_NAME",
    "TRACED",
    "SCENARIO_DIR",
    "library",
    "run_arm64_oracle",
    "Arm64Report",
    "Arm64StepReport",
    "Arm64EnvError",
    "BootError",
    "cache_dir",
    "ensure_guest_files",
    "tools_unavailable_reason",
    "scenario_unsupported_reason",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
"""The arm64 oracle's scenario library (``*.scn``: 4K pages; ``16K/*.scn``: 16K pages)."""


def library(page_size: str = "4K") -> list[Path]:
    """Every scenario of the arm64 library for ``page_size`` (``"4K"``, ``"16K"``), sorted by name."""
    if page_size.upper() == "4K":
        return sorted(SCENARIO_DIR.glob("*.scn"))
    return sorted((SCENARIO_DIR / page_size.upper()).glob("*.scn"))
