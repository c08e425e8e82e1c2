"""Synthetic per-fork counters of the three fork configurations.

Shaped like one fork + exit of 128 MiB of 64K folios (32768 PTEs, 2048
folios): the test double for ``fork_bench.simulate_fork`` until (and besides)
the Machine.  Not a prediction of the Machine's counts.
"""

from __future__ import annotations

PTES = 32768
FOLIOS = 2048

BASELINE = {
    "pte.read": 2 * PTES,
    "pte.write": 3 * PTES,
    "rmap.op": 2 * FOLIOS,
    "rmap.pages": 2 * PTES,
    "ref.op": 2 * FOLIOS,
    "tlbi.ASIDE1IS": 2,
    "dsb.ishst": 2,
    "dsb.ish": 2,
    "buddy.alloc": 64,
    "buddy.free": 64,
    "fork.ptes": PTES,
}
AFTER = BASELINE | {"pte.read": BASELINE["pte.read"] + 3 * PTES, "pte.write": BASELINE["pte.write"] + PTES}
BEFORE = AFTER | {
    "pte.read": AFTER["pte.read"] + 2 * PTES,
    "pte.write": AFTER["pte.write"] + 3 * PTES,
    "tlbi.VALE1IS": 2 * PTES,
    "dsb.ishst": 2 + 2 * FOLIOS,
    "dsb.ish": 2 + 2 * FOLIOS,
    "contpte.convert": 2 * FOLIOS,
}
CONFIG_COUNTERS = {"baseline": BASELINE, "before": BEFORE, "after": AFTER}


def counters_for(config: str, ncpus: int) -> dict[str, int]:
    """Per-fork counters; the same at every CPU count (one copy's fork)."""
    return dict(CONFIG_COUNTERS[config])


def simulate_fork(config: str, cpus: int, nbytes: int = 128 << 20) -> dict[str, int]:
    """Drop-in for ``fork_bench.simulate_fork``."""
    return counters_for(config, cpus)
