"""The cost model: machine profiles, the time model over counters, calibration.

Counters are the source of truth; time is a formula over them
(``model.time_breakdown``) with per-operation costs from a machine profile
(``profile.load_profile``), each figure with its provenance.
"""

from __future__ import annotations

from .calibrate import FitResult, Target, fit_profile
from .model import RULES, Breakdown, broadcast_cost, classify, time_breakdown, unmapped_counters
from .profile import Figure, Profile, list_profiles, load_profile

__all__ = [
    "Figure",
    "Profile",
    "load_profile",
    "list_profiles",
    "Breakdown",
    "RULES",
    "classify",
    "unmapped_counters",
    "broadcast_cost",
    "time_breakdown",
    "Target",
    "FitResult",
    "fit_profile",
]
