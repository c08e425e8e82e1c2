"""The fork benchmark's plumbing, on synthetic counters (no Machine needed)."""

from __future__ import annotations

import pytest

from contpte.cost import fork_bench
from contpte.cost.fork_bench import TABLE_CPUS, run_fork_bench, simulation_points
from contpte.cost.profile import load_profile

from .synthetic import counters_for


def test_table_shape_and_roles() -> None:
    result = run_fork_bench(load_profile("altra"), counters=counters_for)
    assert [r.ncpus for r in result.rows] == list(TABLE_CPUS)
    roles = {r.ncpus: r.role for r in result.rows}
    assert roles == {1: "fit", 8: "prediction", 16: "prediction", 24: "prediction", 32: "fit"}
    assert result.rows[0].published == {"before": -0.104, "after": -0.052}
    assert result.fit is not None
    assert result.unmapped == ()
    d = result.as_dict()
    assert d["rows"][0]["cpus"] == 1 and "change_pct" in d["rows"][0]


def test_before_gets_worse_with_cpus_after_does_not() -> None:
    result = run_fork_bench(load_profile("altra"), counters=counters_for)
    before = [r.change["before"] for r in result.rows]
    assert before == sorted(before, reverse=True)
    assert before[-1] < before[0] < 0
    after = [r.change["after"] for r in result.rows]
    assert max(after) - min(after) < 0.01


def test_unfitted_profile_uses_its_figures() -> None:
    m2 = load_profile("m2-vm")
    result = run_fork_bench(m2, (1, 4), counters=counters_for)
    assert result.fit is None
    assert result.profile is m2


def test_simulation_points() -> None:
    assert simulation_points((8,), fit=False) == [("baseline", 8), ("before", 8), ("after", 8)]
    assert [n for _, n in simulation_points((8,), fit=True)] == [1, 1, 1, 8, 8, 8, 32, 32, 32]


def test_counters_are_cached_for_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    def fake(config: str, cpus: int, nbytes: int = fork_bench.FORK_BYTES) -> dict[str, int]:
        calls.append((config, cpus))
        return counters_for(config, cpus)

    monkeypatch.setattr(fork_bench, "simulate_fork", fake)
    fork_bench.clear_cache()
    try:
        run_fork_bench(load_profile("altra"))
        run_fork_bench(load_profile("altra"))
        first = fork_bench.fork_counters("after", 1)
        first["pte.read"] = -1  # a copy: the cache is not corrupted
        assert fork_bench.fork_counters("after", 1)["pte.read"] > 0
    finally:
        fork_bench.clear_cache()
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 3 * len(TABLE_CPUS)


def test_simulate_fork_rejects_unknown_configuration() -> None:
    from contpte.errors import ModelUsageError

    with pytest.raises(ModelUsageError, match="baseline"):
        fork_bench.simulate_fork("sideways", 1)
