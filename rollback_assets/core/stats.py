"""Decision statistics: tests that stay valid when a release is checked every few hours.

A rollback guardrail looks at the same release again and again while its feedback accumulates. A
fixed-sample test (or a fixed threshold such as "rise >= 30 % at n >= 200") checked at every look
fires on noise sooner or later: the chance of a false alarm grows with the number of looks. The
functions here keep the false-alarm probability below alpha *over all looks together*.

Method (project policy): a one-sided **mixture sequential probability ratio test** (mSPRT, Johari et
al. 2017; Robbins' normal mixture, Howard et al. 2021) on the difference
    delta = p_current - (1 + margin) * p_baseline
of negative shares, in its Gaussian (asymptotic) form with plug-in variance, as used by GrowthBook's
and Eppo's sequential engines. The likelihood ratio of effect theta against delta = 0 is mixed over
a half-normal prior on theta >= 0; the mixture is a non-negative supermartingale under every null
delta <= 0, so by Ville's inequality P(it ever exceeds 1/alpha) <= alpha. The mixture value is an
e-value: 1/e is an anytime-valid p-value and is reported as "error spent".
Why an mSPRT rather than a betting confidence sequence: it has a closed form (vectorises over
millions of rows in the benchmark), it needs only the aggregate counts the baselines table holds,
and inverting it over the margin gives an always-valid lower bound on the relative rise.

Multiple cohorts: the flag as a whole gets alpha/2; the cohorts share the other alpha/2 equally
(Bonferroni). A regression confined to one cohort is then still found (a flag-level gate would
dilute it away), while the family-wise false-alarm rate over flag + cohorts stays <= alpha.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

from .vocabulary import Severity

DEFAULT_ALPHA = 0.05


# --------------------------------------------------------------------------- confidence weighting

def confidence_weight(mean_confidence, reference: float = 0.8, floor: float = 0.05) -> np.ndarray:
    """Fraction of a row's information kept, given the scorer's mean confidence on the cohort.

    A label the scorer is sure of (confidence >= `reference`, the policy's confidence floor) counts as
    a full observation; a coin-flip label (0.5) carries no information about the true share; linear in
    between. Shrinking n (not the share) only widens the test, so it can never inflate false alarms:
    a cohort the scorer reads badly needs more feedback before it can trigger a rollback, instead of
    being blocked outright (the fixed rule's hard gate) or trusted blindly.
    """
    c = np.asarray(mean_confidence, dtype=float)
    c = np.where(np.isnan(c), reference, c)
    ref = np.asarray(reference, dtype=float)
    return np.clip((c - 0.5) / np.maximum(ref - 0.5, 1e-9), floor, 1.0)


# --------------------------------------------------------------------------- the sequential test

def negative_shares(n, x):
    """(n, negative share, a share shrunk away from 0 and 1 for the variance) per row."""
    n = np.asarray(n, dtype=float)
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, x / np.maximum(n, 1e-12), np.nan)
        # Shrunk share for the variance only: never 0 or 1, so a cohort with no negatives yet still has variance.
        p_var = (x + 0.5) / (n + 1.0)
    return n, p, p_var


def msprt_log_evalue(z, info, tau) -> np.ndarray:
    """log of the one-sided half-normal-mixture likelihood ratio (the mSPRT statistic).

    z = estimate / standard error, info = 1 / variance of the estimate, tau = prior scale of the effect.
    Closed form of  integral_0^inf exp(theta*z*sqrt(info) - theta^2*info/2) * 2*phi(theta/tau)/tau dtheta.
    """
    z = np.asarray(z, dtype=float)
    s = np.asarray(tau, dtype=float) ** 2 * np.asarray(info, dtype=float)
    r = s / (1.0 + s)
    return math.log(2.0) - 0.5 * np.log1p(s) + 0.5 * z * z * r + log_ndtr(z * np.sqrt(r))


def _log_evalue_for_margin(n_c, p_c, pv_c, n_b, p_b, pv_b, margin, tau_rel, sign=1.0):
    """log e-value against H0: sign * (p_c - (1+margin) p_b) <= 0."""
    k = 1.0 + margin
    diff = sign * (p_c - k * p_b)
    var = pv_c * (1 - pv_c) / n_c + k * k * pv_b * (1 - pv_b) / n_b
    info = 1.0 / var
    tau = np.maximum(tau_rel * pv_b, 0.01)
    return msprt_log_evalue(diff * np.sqrt(info), info, tau)


def sequential_rise_test(
    n, n_negative, baseline_n, baseline_n_negative, *,
    alpha=DEFAULT_ALPHA, margin: float = 0.0, tau_rel: float = 0.3, futility_rise: float | None = None,
    bounded: np.ndarray | None = None,
) -> dict:
    """Always-valid one-sided test of "current negative share > baseline share x (1 + margin)".

    Vectorised over rows; `alpha` may be an array (per-row error budget after the multi-cohort split).
    `tau_rel`: scale of the effects we want to find fast, relative to the baseline share (0.3 = a 30 %
    rise); it tunes where the test is most powerful, never its validity.
    Returns arrays:
      evalue       mixture likelihood ratio at this look (reject when >= 1/alpha)
      p_anytime    min(1, 1/evalue): an anytime-valid p-value, the share of alpha this evidence uses
      reject       evalue >= 1/alpha
      rise         point estimate of the relative rise p_c/p_b - 1
      lower        always-valid (1-alpha) lower bound on the relative rise (-1 when uninformative)
      upper        always-valid (1-alpha) upper bound on the relative rise (inf when uninformative)
      futile       upper < futility_rise: a rise of that size is ruled out (a real "pass")
    `bounded`: mask of the rows whose bounds are wanted (None: every row); the bisection is most of the
    cost, and a caller that reads bounds only above its minimum sample skips the rest (they get the
    uninformative -1 / inf, so never futile).
    """
    n_c, p_c, pv_c = negative_shares(n, n_negative)
    n_b, p_b, pv_b = negative_shares(baseline_n, baseline_n_negative)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=float), n_c.shape)
    log_threshold = np.log(1.0 / alpha)
    ok = (n_c > 0) & (n_b > 0)
    safe_nc, safe_nb = np.where(ok, n_c, 1.0), np.where(ok, n_b, 1.0)
    pc0, pb0 = np.nan_to_num(p_c), np.nan_to_num(p_b)
    log_e = np.where(ok, _log_evalue_for_margin(safe_nc, pc0, pv_c, safe_nb, pb0, pv_b, margin, tau_rel), 0.0)
    lower, upper = np.full(n_c.shape, -1.0), np.full(n_c.shape, np.inf)
    rows = slice(None) if bounded is None else np.asarray(bounded, bool)
    inputs = [np.broadcast_to(v, n_c.shape)[rows] for v in (safe_nc, pc0, pv_c, safe_nb, pb0, pv_b)]
    lower[rows] = _invert(*inputs, tau_rel, log_threshold[rows], +1.0)
    upper[rows] = _invert(*inputs, tau_rel, log_threshold[rows], -1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.where(ok & (pb0 > 0), pc0 / np.where(pb0 > 0, pb0, 1.0) - 1.0, np.nan)
    evalue = np.exp(np.minimum(log_e, 700.0))
    futile = ok & (upper < (futility_rise if futility_rise is not None else -np.inf))
    return {
        "evalue": np.where(ok, evalue, 1.0),
        "p_anytime": np.where(ok, np.minimum(1.0, 1.0 / evalue), 1.0),
        "reject": ok & (log_e >= log_threshold),
        "rise": rise,
        "lower": np.where(ok, lower, -1.0),
        "upper": np.where(ok, upper, np.inf),
        "futile": futile,
        "alpha": alpha,
    }


def _invert(n_c, p_c, pv_c, n_b, p_b, pv_b, tau_rel, log_threshold, sign, lo=-1.0, hi=20.0, iters=48):
    """Bound on the relative rise m: the set of margins whose null the test rejects, found by bisection.

    sign=+1: lower bound = sup{m : reject H0 p_c <= (1+m) p_b}; sign=-1: upper bound = inf{m : reject
    H0 p_c >= (1+m) p_b}. Each fixed-margin test is valid, so the bound covers the true rise at all
    looks simultaneously with probability >= 1 - alpha.
    """
    def rejects(m):
        return _log_evalue_for_margin(n_c, p_c, pv_c, n_b, p_b, pv_b, m, tau_rel, sign) >= log_threshold

    lo_arr = np.full(np.shape(n_c), lo, dtype=float)
    hi_arr = np.full(np.shape(n_c), hi, dtype=float)
    if sign > 0:
        informative = rejects(lo_arr)          # rejects even "no negatives at all relative to baseline"
        for _ in range(iters):
            mid = 0.5 * (lo_arr + hi_arr)
            r = rejects(mid)
            lo_arr = np.where(r, mid, lo_arr)
            hi_arr = np.where(r, hi_arr, mid)
        return np.where(informative, lo_arr, -1.0)
    informative = rejects(hi_arr)
    for _ in range(iters):
        mid = 0.5 * (lo_arr + hi_arr)
        r = rejects(mid)
        hi_arr = np.where(r, mid, hi_arr)
        lo_arr = np.where(r, lo_arr, mid)
    return np.where(informative, hi_arr, np.inf)


# --------------------------------------------------------------------------- multi-cohort error control

def split_alpha(is_flag_level, n_cohorts, alpha=DEFAULT_ALPHA, flag_share: float = 0.5, min_cohorts: int = 1) -> np.ndarray:
    """Per-row error budget: the flag as a whole gets alpha*flag_share, each of K cohorts the rest / K.

    Why not "flag-level gate first, then localise": a regression in one cohort out of eight moves the
    flag-level share by an eighth of its size and the gate would stay shut. Why not FDR: a rollback is
    a family-wise decision for the flag (one false step-down is one incident), so the union bound over
    flag + cohorts is the error we promise. K is the number of cohorts evaluated for the release at the
    look, floored at `min_cohorts` (set it to the cohorts you expect, so a late-appearing cohort does
    not enlarge the family after the fact).
    """
    flag = np.asarray(is_flag_level, dtype=bool)
    k = np.maximum(np.asarray(n_cohorts, dtype=float), np.asarray(min_cohorts, dtype=float))
    alpha = np.asarray(alpha, dtype=float)
    flag_share = np.asarray(flag_share, dtype=float)
    return np.where(flag, alpha * flag_share, alpha * (1.0 - flag_share) / np.maximum(k, 1.0))


# --------------------------------------------------------------------------- business KPIs

SEVERITIES = tuple(Severity)  # in rising order


def kpi_moves_bad(current, baseline, higher_is_bad, min_relative_change: float = 0.05) -> np.ndarray:
    """True where a business KPI moved in its bad direction by at least `min_relative_change`."""
    cur = np.asarray(current, dtype=float)
    base = np.asarray(baseline, dtype=float)
    sign = np.where(np.asarray(higher_is_bad, dtype=bool), 1.0, -1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = sign * (cur - base) / np.where(base != 0, np.abs(base), np.nan)
    return np.nan_to_num(change, nan=0.0) >= min_relative_change


def raise_severity(severity: str) -> str:
    if severity == "none":
        return "none"
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
