"""Tests for benchmarks.metrics.regression."""
import numpy as np
import pytest

from benchmarks.metrics.regression import (
    average_mae, average_normalized_mae, mae, mae_across_seeds, pearson_r,
)


def test_mae_and_pearson():
    t = np.array([1.0, 2.0, 4.0, 8.0])
    assert mae(t + [0.5, -0.5, 1.0, 0.0], t) == pytest.approx(0.5)
    assert pearson_r(3 * t + 1, t) == pytest.approx(1.0)
    assert pearson_r(-t, t) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert pearson_r(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    with pytest.raises(ValueError):
        mae(t, t[:3])


def test_qm9_aggregation():
    per_seed = {"mu": [0.20, 0.22, 0.24], "gap": [0.0050, 0.0052, 0.0054]}
    s = mae_across_seeds(per_seed)
    assert s["mu"]["mean"] == pytest.approx(0.22) and s["mu"]["std"] == pytest.approx(0.02)
    assert s["gap"]["n_seeds"] == 3
    assert mae_across_seeds(per_seed, ddof=0)["mu"]["std"] == pytest.approx(0.02 * np.sqrt(2 / 3))
    assert np.isnan(mae_across_seeds({"mu": [0.2]})["mu"]["std"])
    assert average_mae(s) == pytest.approx((0.22 + 0.0052) / 2)
    assert average_mae({"mu": 1.0, "alpha": 3.0}) == 2.0
    assert average_normalized_mae(s, {"mu": 1.1, "gap": 0.052}) == pytest.approx((0.2 + 0.1) / 2)
    with pytest.raises(ValueError):
        average_normalized_mae(s, {"mu": 1.0})


def test_pair_checks_and_plain_values():
    assert mae([1.0], [3.0]) == 2.0                             # one sample is enough
    with pytest.raises(ValueError, match="equal non-empty"):
        mae([], [])
    with pytest.raises(ValueError, match="equal non-empty"):
        mae([1.0, 2.0], [1.0])
    assert average_normalized_mae({"mu": 0.2, "gap": 0.01}, {"mu": 2.0, "gap": 0.1}) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lacks"):
        average_normalized_mae({"mu": 0.2}, {})
