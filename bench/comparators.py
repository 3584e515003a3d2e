"""The comparators `bench/accuracy.py` measures the sequential rule against; the product does not use them.

GrowthBook's asymptotic confidence sequence (the safe-rollout guardrail) and Netflix Kayenta's judge
(Mann-Whitney U with a Hodges-Lehmann shift interval). Kept apart from `rollback_assets/core/stats.py`
so that the decision statistics hold only what a decision runs (and what its policy version hashes).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from rollback_assets.core.stats import DEFAULT_ALPHA, negative_shares


# --------------------------------------------------------------------------- GrowthBook-style CS

def growthbook_cs_lower(n, n_negative, baseline_n, baseline_n_negative, *, alpha=DEFAULT_ALPHA, tuning_n: float = 5000.0):
    """Lower end of a one-sided asymptotic confidence sequence on p_current - p_baseline (GrowthBook-style).

    Waudby-Smith et al. (2023) normal-mixture asymptotic CS as GrowthBook uses it for sequential
    testing and safe-rollout guardrails: half-width
        sigma * sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * log( sqrt(N rho^2 + 1) / alpha ) ),
    sigma^2 the per-unit variance of the difference, N = n_current + n_baseline, and rho chosen to be
    tightest at the tuning sample size (GrowthBook's default 5000). Using alpha (not alpha/2) makes it
    the one-sided bound; a guardrail fails when the lower end is above 0.
    """
    n_c, p_c, pv_c = negative_shares(n, n_negative)
    n_b, p_b, pv_b = negative_shares(baseline_n, baseline_n_negative)
    ok = (n_c > 0) & (n_b > 0)
    n_c, n_b = np.where(ok, n_c, 1.0), np.where(ok, n_b, 1.0)
    var_diff = pv_c * (1 - pv_c) / n_c + pv_b * (1 - pv_b) / n_b
    total = n_c + n_b
    sigma2 = var_diff * total
    rho2 = (-2.0 * math.log(alpha) + math.log(-2.0 * math.log(alpha) + 1.0)) / tuning_n
    half = np.sqrt(sigma2) * np.sqrt(2.0 * (total * rho2 + 1.0) / (total**2 * rho2) * np.log(np.sqrt(total * rho2 + 1.0) / alpha))
    diff = np.nan_to_num(p_c) - np.nan_to_num(p_b)
    return np.where(ok, diff - half, -np.inf), np.where(ok, diff, np.nan)


# --------------------------------------------------------------------------- Kayenta-style judge

def mann_whitney_hl(current, baseline, confidence: float = 0.98) -> dict:
    """Mann-Whitney U test and Hodges-Lehmann shift with its confidence interval (Kayenta's judge).

    Netflix's Kayenta (NetflixACAJudge) compares a canary metric's observations with the baseline's by
    a rank test, and classifies the metric by the Hodges-Lehmann confidence interval of the shift
    (canary - baseline): "High" when the whole interval is above 0. Distribution-free; no repeated-look
    correction. The interval is the normal-approximation order-statistic interval of all pairwise
    differences (as R's wilcox.test(conf.int=TRUE) for larger samples).
    """
    x = np.asarray(current, dtype=float)
    y = np.asarray(baseline, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if len(x) == 0 or len(y) == 0:
        return {"u": np.nan, "p_value": np.nan, "estimate": np.nan, "lower": np.nan, "upper": np.nan}
    test = sps.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic" if len(x) * len(y) > 400 else "auto")
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    lower, upper = _hl_interval(diffs, len(x), len(y), confidence)
    return {"u": float(test.statistic), "p_value": float(test.pvalue), "estimate": float(np.median(diffs)),
            "lower": lower, "upper": upper}


def _hl_rank(n: int, m: int, confidence: float) -> int:
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    k = int(math.floor(n * m / 2.0 - z * math.sqrt(n * m * (n + m + 1) / 12.0)))
    return max(k, 0)


def _hl_interval(sorted_diffs: np.ndarray, n: int, m: int, confidence: float) -> tuple[float, float]:
    k = _hl_rank(n, m, confidence)
    total = len(sorted_diffs)
    if k >= total - k:
        return float(sorted_diffs[0]), float(sorted_diffs[-1])
    return float(sorted_diffs[k]), float(sorted_diffs[total - k - 1])


def hl_lower_batch(current: np.ndarray, baseline: np.ndarray, confidence: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Hodges-Lehmann (estimate, lower bound) for many rows of NaN-padded samples.

    current: (R, a), baseline: (R, b). Same interval as `mann_whitney_hl`; used by the benchmark,
    where Python-level loops over a million judgements would dominate the runtime.
    """
    x = np.asarray(current, dtype=float)
    y = np.asarray(baseline, dtype=float)
    nx = (~np.isnan(x)).sum(1)
    ny = (~np.isnan(y)).sum(1)
    d = (x[:, :, None] - y[:, None, :]).reshape(len(x), -1)
    d = np.sort(d, axis=1)  # NaNs sort last
    total = nx * ny
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    k = np.floor(total / 2.0 - z * np.sqrt(total * (nx + ny + 1) / 12.0)).astype(int)
    k = np.clip(k, 0, None)
    rows = np.arange(len(x))
    valid = total > 0
    idx_lower = np.where(valid, np.minimum(k, np.maximum(total - 1, 0)), 0)
    lower = np.where(valid & (k < total - k), d[rows, idx_lower], np.where(valid, d[rows, 0], np.nan))
    mid_lo = np.maximum((total - 1) // 2, 0)
    mid_hi = np.maximum(total // 2, 0)
    estimate = np.where(valid, 0.5 * (d[rows, mid_lo] + d[rows, mid_hi]), np.nan)
    return estimate, lower
