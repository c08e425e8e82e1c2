"""The cost model: machine profiles, the time model over counters, pricing, calibration.

Counters are the source of truth; time is a formula over them
(``model.time_breakdown``) with per-operation costs from a machine profile
(``profile.load_profile``), each figure with its provenance.  ``pricing``
prices any scenario file per kernel variant (``contpte cost``);
``calibrate.calibrate`` fits a profile's free parameters on its fit-set figures
(``fitset``, docs/numbers.md) and reports every residual.
"""

from __future__ import annotations

from .calibrate import Calibration
from .model import RULES, Breakdown, classify, time_breakdown, unmapped_counters
from .pricing import CostResult, Variant, parse_variant, price_scenario
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
    "time_breakdown",
    "Variant",
    "parse_variant",
    "CostResult",
    "price_scenario",
    "Calibration",
]
