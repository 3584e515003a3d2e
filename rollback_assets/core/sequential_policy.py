"""The "sequential" rule: an always-valid test per flag and cohort, so checking every few hours is safe.

Registered as `sequential` (policy YAML `name: sequential`). Settings under `defaults:` / `flags:`
(declared, with their ranges and defaults, in core/policy_config.Thresholds):
  alpha               0.05  family-wise false-rollback probability per release over all looks
  margin              0.05  rises up to this relative size are treated as noise (H0: rise <= margin)
  tau_rel             0.30  relative rise the test is tuned to find fastest (power only, not validity)
  flag_alpha_share    0.50  share of alpha for the flag as a whole; the rest is split over cohorts
  min_cohorts         1     floor on the number of cohorts alpha is split over
  kpi_min_change      0.05  relative move of a business KPI in its bad direction that corroborates
  min_sample / min_baseline_sample / min_mean_confidence / require_high_risk_topic /
  severe_relative_rise    as in the fixed rule (min_mean_confidence is the full-weight confidence).

States: act (test rejected, complaints on a high-risk surface), hold (test rejected, complaints
elsewhere: a human decides), pass (the always-valid upper bound rules out a rise of
min_relative_rise), insufficient_data (too few rows, or the evidence is not conclusive yet).
"""

from __future__ import annotations

import json
from collections import namedtuple

import numpy as np
import pandas as pd

from .policy import KEY, VERDICT_COLUMNS, PolicyConfig, combine_verdicts, eligible_baselines, register_rule
from .schemas import ALL_COHORTS
from .stats import (
    confidence_weight, kpi_moves_bad, raise_severity, sequential_rise_test, split_alpha,
)

RULE_NAME = "sequential"
KPI_COLUMNS = ["flag_key", "cohort", "kpi", "current", "baseline", "higher_is_bad"]
def _setting(config: PolicyConfig, flag: str, key: str) -> float:
    return float(getattr(config.for_flag(flag), key))


def sequential_rule(baselines: pd.DataFrame, config: PolicyConfig, business_kpis: pd.DataFrame | None = None) -> pd.DataFrame:
    """Verdicts (VERDICT_COLUMNS) indexed by KEY (flag_key, release_version, cohort, window_end).

    `business_kpis` (optional): rows of KPI_COLUMNS. A KPI of the same flag and cohort (or cohort
    'all') that moved in its bad direction corroborates the complaint signal and raises severity one
    notch (moderate -> severe turns a step-down into a disable). It never creates an act on its own.
    """
    index_names = KEY
    if baselines.empty:
        return pd.DataFrame(columns=index_names + VERDICT_COLUMNS).set_index(index_names)
    chosen = eligible_baselines(baselines, config)
    flag_codes, flag_names = pd.factorize(chosen.flag_key.to_numpy())  # a setting per flag, spread by code

    def per_flag(key):
        return np.array([_setting(config, f, key) for f in flag_names], dtype=float)[flag_codes]

    def per_flag_threshold(attr):
        return np.array([getattr(config.for_flag(f), attr) for f in flag_names])[flag_codes]

    alpha_total = per_flag("alpha")
    is_flag = (chosen.cohort == ALL_COHORTS).to_numpy()
    # K per release and look: its distinct cohorts (besides 'all') at that look.
    n_cohorts = (chosen.cohort.where(~is_flag).groupby([chosen.flag_key, chosen.release_version, chosen.window_end],
                                                       observed=True).transform("nunique").to_numpy(dtype=float))
    # Each cohort's share of alpha is split again over the baselines it is tested against (Bonferroni):
    # "act if any baseline rejects" then keeps the release's family-wise error within alpha.
    alpha_row = split_alpha(is_flag, n_cohorts, alpha_total, per_flag("flag_alpha_share"), per_flag("min_cohorts"))
    alpha_row = alpha_row / chosen.n_baselines.to_numpy(dtype=float)

    n = chosen.n.to_numpy(dtype=float)
    weight = confidence_weight(chosen.mean_confidence.to_numpy(dtype=float), per_flag_threshold("min_mean_confidence").astype(float))
    n_eff, x_eff = n * weight, chosen.n_negative.to_numpy(dtype=float) * weight
    base_n = chosen.baseline_n.to_numpy(dtype=float)
    base_x = chosen.baseline_n_negative.to_numpy(dtype=float)
    min_rise = per_flag_threshold("min_relative_rise").astype(float)
    margin = per_flag("margin")
    tau = per_flag("tau_rel")
    min_n = per_flag_threshold("min_sample").astype(float)
    enough = (n >= min_n) & (base_n >= min_n)  # bounds are read (state, bound, reason) only where the test started
    # Margin and tau are per flag; the test is vectorised, so run it once per distinct setting.
    result = {k: np.empty(len(chosen)) for k in ("evalue", "p_anytime", "rise", "lower", "upper")}
    result["reject"] = np.zeros(len(chosen), bool)
    result["futile"] = np.zeros(len(chosen), bool)
    for m, t_rel, fut in np.unique(np.column_stack([margin, tau, min_rise]), axis=0):
        sel = (margin == m) & (tau == t_rel) & (min_rise == fut)
        part = sequential_rise_test(n_eff[sel], x_eff[sel], base_n[sel], base_x[sel], alpha=alpha_row[sel],
                                    margin=m, tau_rel=t_rel, futility_rise=fut, bounded=enough[sel])
        for key in result:
            result[key][sel] = part[key]

    on_surface = chosen.n_negative_high_risk.to_numpy(dtype=float) >= 0.5 * np.maximum(chosen.n_negative.to_numpy(dtype=float), 1)
    on_surface |= ~per_flag_threshold("require_high_risk_topic").astype(bool)
    severe_rise = per_flag_threshold("severe_relative_rise").astype(float)
    urgency = chosen.mean_urgency_high.to_numpy(dtype=float) if "mean_urgency_high" in chosen else np.full(len(chosen), np.nan)
    corroboration = _corroborating_kpis(chosen, business_kpis, per_flag("kpi_min_change"))

    state, action, severity = _states(result, enough, on_surface, min_rise, severe_rise, urgency,
                                      np.array([bool(k) for k in corroboration], dtype=bool))
    out = pd.DataFrame({
        "state": state, "action": action, "severity": severity,
        "statistic": np.minimum(result["evalue"], 1e12),
        # None where the test has not started: a list, so a batch with no started test keeps an all-None column
        "bound": [float(b) if e else None for b, e in zip(result["lower"].tolist(), enough.tolist())],
        "baseline_kind": chosen.baseline_kind.to_numpy(), "_row": np.arange(len(chosen)),
    })
    for name in index_names:  # column by column: one array of all four would box every window_end
        out[name] = chosen[name].array
    out = combine_verdicts(out)
    # The sentence people read, for the verdict kept per key only.
    kept = out.pop("_row").to_numpy()
    # Each fact a list of Python values (what a frame's itertuples gives), zipped into rows: no frame.
    facts = {name: chosen[name].iloc[kept].tolist() for name in _REASON_COLUMNS}
    facts.update({name: array[kept].tolist() for name, array in {
        "evalue": result["evalue"], "p_anytime": result["p_anytime"], "rise": result["rise"], "lower": result["lower"],
        "upper": result["upper"], "enough": enough, "min_n": min_n, "alpha": alpha_row, "alpha_total": alpha_total,
        "weight": weight, "min_rise": min_rise, "margin": margin}.items()})
    facts["kpis"] = [corroboration[k] for k in kept.tolist()]
    out["reason"] = [_reason(state, row) for state, row in zip(out.state.tolist(), map(_Facts._make, zip(*facts.values())))]
    return out.set_index(index_names)[VERDICT_COLUMNS]


def _states(result: dict, enough, on_surface, min_rise, severe_rise, urgency, corroborated) -> tuple:
    """(state, action, severity) arrays from the test results:
    act     the test rejects and the complaints are on a high-risk surface (or the flag needs none):
            disable when severe (a rise of severe_relative_rise whose lower bound clears
            min_relative_rise, or half the complaints urgent), else step down;
    hold    the test rejects, the complaints are elsewhere: promotion held for a human;
    pass    the always-valid upper bound rules out min_relative_rise;
    insufficient_data otherwise (below min_sample on either side, or not conclusive yet).
    A corroborating business KPI raises an act's or a hold's severity one notch."""
    reject, futile = result["reject"] & enough, result["futile"] & enough
    act, hold = reject & on_surface, reject & ~on_surface
    state = np.select([act, hold, futile], ["act", "hold", "pass"], "insufficient_data")
    with np.errstate(invalid="ignore"):
        severe = ((result["rise"] >= severe_rise) & (result["lower"] >= min_rise)) | (~np.isnan(urgency) & (urgency >= 0.5))
    severity = np.select([act & severe, act, hold], ["severe", "moderate", "low"], "none")
    bump = corroborated & (act | hold)
    severity[bump] = [raise_severity(s) for s in severity[bump].tolist()]
    action = np.select([act & (severity == "severe"), act, hold], ["disable", "step_down", "hold_promotion"], "none")
    return state, action, severity


_REASON_COLUMNS = ("cohort", "baseline_kind", "baseline_versions", "negative_share", "baseline_negative_share", "n",
                   "baseline_n", "n_excluded", "top_topics")
_Facts = namedtuple("_Facts", [*_REASON_COLUMNS, "evalue", "p_anytime", "rise", "lower", "upper", "enough", "min_n",
                               "alpha", "alpha_total", "weight", "min_rise", "margin", "kpis"])


def _reason(state: str, row) -> str:
    """The sentence people read for a verdict `_states` reached. `row`: the comparison's baseline row
    with its test results and the settings that judged it (evalue ... margin, kpis)."""
    evalue, rise, lower, upper = row.evalue, row.rise, row.lower, row.upper
    alpha, alpha_total, weight, margin, kpis = row.alpha, row.alpha_total, row.weight, row.margin, row.kpis
    where = "the flag as a whole" if row.cohort == ALL_COHORTS else f"cohort {row.cohort}"
    base = f"{row.baseline_kind} baseline ({row.baseline_versions or 'none'})"
    share = f"{row.negative_share:.0%}" if not _missing(row.negative_share) else "n/a"
    base_share = f"{row.baseline_negative_share:.0%}" if not _missing(row.baseline_negative_share) else "n/a"
    weighted = f", confidence-weighted n={row.n * weight:.0f}" if weight < 0.999 else ""
    excluded = f"; {row.n_excluded} rows on excluded topics not counted" if row.n_excluded else ""
    counts = f"negative share {share} vs {base_share} on the {base}, n={row.n} vs {row.baseline_n}{weighted}{excluded}"
    if not row.enough:
        return f"Not enough feedback yet for {where}: {counts}; the test starts at {row.min_n:.0f} rows on each side."
    evidence = (f"evidence e={evalue:.3g} vs threshold 1/alpha={1 / alpha:.3g} (alpha share {alpha:.4f} of {alpha_total:.2f}, "
                f"anytime p={row.p_anytime:.3g})")
    kpi_note = f"; corroborated by {kpis}" if kpis else ""
    if state in ("act", "hold"):
        top_topic = (json.loads(row.top_topics or "[]") or [[None]])[0][0]
        bound_text = f"rise {rise:+.0%}, always-valid lower bound {lower:+.0%} (margin {margin:.0%})"
        if state == "hold":
            return (f"Complaints rose for {where} ({counts}; {bound_text}; {evidence}), but mostly about '{top_topic}', "
                    f"which is not a high-risk surface of this release, so promotion is held for a human{kpi_note}.")
        about = f", mostly about {top_topic}" if top_topic else ""
        return f"Negative feedback rose for {where}{about}: {counts}; {bound_text}; {evidence}{kpi_note}."
    if state == "pass":
        return (f"No regression for {where}: {counts}; a rise of {row.min_rise:.0%} is ruled out "
                f"(always-valid upper bound {upper:+.0%}; {evidence}).")
    return (f"Not conclusive yet for {where}: {counts}; rise {rise:+.0%} with always-valid bounds "
            f"[{lower:+.0%}, {upper:+.0%}]; {evidence}; still watching.")


def _missing(value) -> bool:
    """pd.isna for one value, without its dispatch for the common float (a reason per verdict row)."""
    return value != value if type(value) is float else value is None or bool(pd.isna(value))


def _corroborating_kpis(chosen: pd.DataFrame, kpis: pd.DataFrame | None, min_change: np.ndarray) -> list[str]:
    """Per verdict row: a readable list of KPIs of its flag and cohort (or 'all') that moved the bad way."""
    if kpis is None or len(kpis) == 0:
        return [""] * len(chosen)
    missing = set(KPI_COLUMNS) - set(kpis.columns)
    if missing:
        raise ValueError(f"business_kpis lacks columns {sorted(missing)}; expected {KPI_COLUMNS}")
    notes = []
    for row, threshold in zip(chosen.itertuples(index=False), min_change):
        mine = kpis[(kpis.flag_key == row.flag_key) & kpis.cohort.isin([row.cohort, ALL_COHORTS])]
        bad = mine[kpi_moves_bad(mine.current, mine.baseline, mine.higher_is_bad, threshold)] if len(mine) else mine
        notes.append(", ".join(
            f"KPI {k.kpi} {k.baseline:.3g} -> {k.current:.3g}" for k in bad.itertuples(index=False)
        ))
    return notes


def with_kpis(business_kpis: pd.DataFrame | None):
    """A Rule with the KPI frame bound, for callers of the two-argument rule protocol (make_decisions)."""
    def rule(baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
        return sequential_rule(baselines, config, business_kpis=business_kpis)
    return rule


register_rule(RULE_NAME, sequential_rule)
