"""Calibration: the fitter, and recovery of known parameters from synthetic counters."""

from __future__ import annotations

import math

import pytest

from contpte.cost.calibrate import Target, fit_profile, nelder_mead
from contpte.cost.fork_bench import PUBLISHED_FORK, calibrate_fork, fork_change
from contpte.cost.profile import load_profile
from contpte.errors import ModelUsageError

from .synthetic import counters_for


def test_nelder_mead_finds_a_quadratic_minimum() -> None:
    x, fx, _ = nelder_mead(lambda v: (v[0] - 3) ** 2 + 2 * (v[1] + 1) ** 2, [0.0, 0.0])
    assert x[0] == pytest.approx(3, abs=1e-4) and x[1] == pytest.approx(-1, abs=1e-4)
    assert fx == pytest.approx(0, abs=1e-8)


@pytest.mark.parametrize(("b", "bk"), [(0.04, 0.03), (0.2, 0.01), (0.01, 0.1)])
def test_fit_recovers_known_parameters(b: float, bk: float) -> None:
    truth = load_profile("altra").with_values({"tlbi_bcast_per_core": b, "tlbi_contention_per_core": bk})
    targets = [
        Target(t.label, t.ncpus, t.config, fork_change(counters_for, truth, t.ncpus, t.config))
        for t in PUBLISHED_FORK
    ]
    start = load_profile("altra")
    result = calibrate_fork(start, counters_for, targets)
    assert result.params["tlbi_bcast_per_core"] == pytest.approx(b, rel=1e-3)
    assert result.params["tlbi_contention_per_core"] == pytest.approx(bk, rel=1e-3)
    assert result.rms < 1e-5
    assert result.profile["tlbi_bcast_per_core"] == pytest.approx(b, rel=1e-3)
    assert "fitted" in result.profile.figures["tlbi_bcast_per_core"].source
    # figures that are not free keep their value
    assert result.profile["pte_read"] == start["pte_read"]


def test_fit_on_published_rows_reports_residuals() -> None:
    result = calibrate_fork(load_profile("altra"), counters_for)
    assert [r.target.label for r in result.results] == ["before@1", "after@1", "before@32", "after@32"]
    for r in result.results:
        assert math.isfinite(r.residual)
    d = result.as_dict()
    assert set(d) >= {"params", "start", "targets", "rms_pct"}


def test_fit_refuses_as_many_parameters_as_targets() -> None:
    p = load_profile("altra")
    with pytest.raises(ModelUsageError, match="targets"):
        fit_profile(p, list(PUBLISHED_FORK[:2]), lambda prof, t: 0.0)


def test_fit_refuses_a_profile_without_free_parameters() -> None:
    with pytest.raises(ModelUsageError, match="no free parameters"):
        calibrate_fork(load_profile("m2-vm"), counters_for)
