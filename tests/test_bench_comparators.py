"""The benchmark's comparators (bench/comparators.py): Kayenta's Mann-Whitney / Hodges-Lehmann judge and
GrowthBook's confidence sequence, which `bench/accuracy.py` measures the sequential rule against."""

import sys
from pathlib import Path

import numpy as np
import pytest

from test_stats import count_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from comparators import growthbook_cs_lower, hl_lower_batch, mann_whitney_hl  # noqa: E402


def test_mann_whitney_hodges_lehmann_on_known_data():
    x = np.arange(10, 20, dtype=float)
    y = np.arange(0, 10, dtype=float)
    r = mann_whitney_hl(x, y, confidence=0.98)
    assert r["estimate"] == pytest.approx(10.0)
    assert r["u"] == 100.0 and r["p_value"] < 0.001
    assert 5 <= r["lower"] < 10 < r["upper"] <= 15
    same = mann_whitney_hl(y, y)
    assert same["lower"] < 0 < same["upper"] and same["estimate"] == 0
    est, low = hl_lower_batch(np.vstack([x, np.r_[y[:-1], np.nan]]), np.vstack([y, y]), 0.98)
    assert est[0] == pytest.approx(10.0) and low[0] == pytest.approx(r["lower"])
    assert low[1] < 0


def test_growthbook_cs_is_wider_than_a_fixed_interval_and_valid_under_looks():
    rng = np.random.default_rng(3)
    n, xc, xb = count_paths(rng, 1000, 80, 20, 0.3, 0.3)
    lower, diff = growthbook_cs_lower(n.ravel(), xc.ravel(), n.ravel(), xb.ravel(), alpha=0.05)
    assert (lower.reshape(n.shape) > 0).any(1).mean() <= 0.05
    fixed_half = 1.645 * np.sqrt(2 * 0.21 / n.ravel())
    assert (diff - lower > fixed_half).all()
