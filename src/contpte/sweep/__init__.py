"""Sweeps: a grid of workloads x kernel versions x variants x profiles x CPU counts.

``spec`` reads the grid (SPEC.toml), ``engine`` runs it on a local process
pool or a Ray cluster, ``store`` keeps one row per run in DuckDB, and
``contpte report`` draws the database as a static HTML page
(``contpte.report.html``).  This layer sits above ``cost`` (it prices the
workloads) and ``report`` (it hands them the rows), below ``cli``.
"""

from __future__ import annotations

from .engine import SweepResult, run_sweep
from .spec import VARIANTS, Spec, SpecError, load_spec, parse_spec
from .store import Store, read_runs

__all__ = [
    "VARIANTS",
    "Spec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "run_sweep",
    "SweepResult",
    "Store",
    "read_runs",
]
