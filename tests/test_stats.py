"""Decision statistics: validity under repeated looks, power, multi-cohort control, rule states."""

import numpy as np
import pandas as pd
import pytest

from rollback_assets.core.baselines import compute_baselines
from rollback_assets.core.policy import PolicyConfig, rule_for
from rollback_assets.core.releases import release_record, releases_frame
from rollback_assets.core.schemas import ALL_COHORTS
from rollback_assets.core.sequential_policy import sequential_rule, with_kpis
from rollback_assets.core.stats import confidence_weight, kpi_moves_bad, sequential_rise_test, split_alpha

SEQ = PolicyConfig.from_dict({
    "name": "sequential", "version": 1, "windows": {"window_days": 28},
    "defaults": {"alpha": 0.05, "margin": 0.05, "min_sample": 50, "min_baseline_sample": 50},
})


def count_paths(rng, streams, looks, per_look, p_current, p_base):
    """Cumulative sample sizes and negative counts at each look, for many independent streams."""
    n = np.broadcast_to(np.arange(1, looks + 1) * per_look, (streams, looks))
    xc = rng.binomial(per_look, p_current, (streams, looks)).cumsum(1)
    xb = rng.binomial(per_look, p_base, (streams, looks)).cumsum(1)
    return n, xc, xb


def test_type_one_error_under_many_looks_stays_below_alpha_where_a_peeked_z_test_does_not():
    rng = np.random.default_rng(7)
    n, xc, xb = count_paths(rng, 2000, 100, 15, 0.3, 0.3)
    r = sequential_rise_test(n.ravel(), xc.ravel(), n.ravel(), xb.ravel(), alpha=0.05)
    ever = r["reject"].reshape(n.shape).any(1).mean()
    assert ever <= 0.05
    # the same looks with a fixed-sample one-sided z test at 5 % reject far more often: peeking matters
    pc, pb = xc / n, xb / n
    pooled = (xc + xb) / (2 * n)
    z = (pc - pb) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    assert (z > 1.645).any(1).mean() > 3 * max(ever, 0.01)


def test_composite_null_below_margin_is_also_controlled():
    rng = np.random.default_rng(8)
    n, xc, xb = count_paths(rng, 1000, 60, 20, 0.33, 0.30)  # a 10 % rise, margin 10 %: still the null
    r = sequential_rise_test(n.ravel(), xc.ravel(), n.ravel(), xb.ravel(), alpha=0.05, margin=0.10)
    assert r["reject"].reshape(n.shape).any(1).mean() <= 0.05


def test_power_on_a_clear_effect_and_bounds_cover_it():
    rng = np.random.default_rng(9)
    n, xc, xb = count_paths(rng, 400, 60, 20, 0.45, 0.30)  # a 50 % rise
    r = sequential_rise_test(n.ravel(), xc.ravel(), n.ravel(), xb.ravel(), alpha=0.05)
    rejected = r["reject"].reshape(n.shape)
    assert rejected[:, -1].mean() >= 0.98
    lower, upper = r["lower"].reshape(n.shape), r["upper"].reshape(n.shape)
    assert ((lower <= 0.5) & (upper >= 0.5)).all(1).mean() >= 0.95  # always-valid coverage of the true rise
    assert (lower[rejected] > 0).all()  # a rejection at margin 0 means the lower bound is above 0


def test_bounds_asked_for_some_rows_equal_the_full_test_there_and_are_uninformative_elsewhere():
    rng = np.random.default_rng(3)
    n, xc, xb = count_paths(rng, 50, 20, 50, 0.30, 0.30)  # no rise: the upper bound rules out 30 % on some looks
    args = (n.ravel(), xc.ravel(), n.ravel(), xb.ravel())
    wanted = rng.random(n.size) < 0.4
    full = sequential_rise_test(*args, alpha=0.05, futility_rise=0.3)
    some = sequential_rise_test(*args, alpha=0.05, futility_rise=0.3, bounded=wanted)
    for key in ("lower", "upper", "futile"):
        np.testing.assert_array_equal(some[key][wanted], full[key][wanted])
    assert (some["lower"][~wanted] == -1.0).all() and np.isinf(some["upper"][~wanted]).all()
    assert not some["futile"][~wanted].any() and full["futile"][~wanted].any()
    for key in ("evalue", "reject", "rise"):
        np.testing.assert_array_equal(some[key], full[key])


def test_smaller_alpha_and_lower_confidence_need_more_evidence():
    base = sequential_rise_test([400], [160], [400], [120], alpha=0.05)
    strict = sequential_rise_test([400], [160], [400], [120], alpha=0.005)
    assert base["lower"][0] > strict["lower"][0]
    assert confidence_weight(0.8) == 1.0 and confidence_weight(0.5) == pytest.approx(0.05)
    assert confidence_weight(0.65) == pytest.approx(0.5)


def test_alpha_split_sums_to_alpha_and_gives_every_cohort_a_share():
    flag = np.array([True, False, False, False, False])
    a = split_alpha(flag, np.full(5, 4), 0.05)
    assert a.sum() == pytest.approx(0.05)
    assert a[0] == pytest.approx(0.025) and a[1] == pytest.approx(0.025 / 4)
    assert split_alpha(flag, np.full(5, 4), 0.05, min_cohorts=10)[1] == pytest.approx(0.0025)


def _frame(rows):
    base = {"baseline_versions": "1.0", "n_excluded": 0, "n_excluded_negative": 0,
            "mean_confidence": 0.9, "mean_sentiment": 0.0, "baseline_mean_sentiment": 0.0,
            "top_topics": '[["checkout", 10]]', "evidence": "[]", "mean_urgency_high": None,
            "window_start": pd.Timestamp("2026-01-01", tz="UTC"), "window_end": pd.Timestamp("2026-01-08", tz="UTC"),
            "as_of": pd.Timestamp("2026-01-08", tz="UTC"), "release_version": "2.0", "baseline_kind": "concurrent"}
    out = []
    for r in rows:
        row = {**base, **r}
        row.setdefault("n_negative_high_risk", row["n_negative"])
        row["negative_share"] = row["n_negative"] / row["n"] if row["n"] else None
        row["baseline_negative_share"] = row["baseline_n_negative"] / row["baseline_n"] if row["baseline_n"] else None
        out.append(row)
    return pd.DataFrame(out)


def _verdicts(frame, config=SEQ, **kw):
    return sequential_rule(frame, config, **kw).reset_index().set_index("cohort")


def test_regression_confined_to_one_cohort_is_caught_and_the_null_cohorts_pass_or_wait():
    cohorts = [f"device=mobile|locale={loc}" for loc in ("de-DE", "en-US", "fr-FR", "en-GB", "it-IT", "es-ES", "nl-NL")]
    rows = [{"flag_key": "f", "cohort": c, "n": 600, "n_negative": 300 if i == 0 else 180,
             "baseline_n": 600, "baseline_n_negative": 180} for i, c in enumerate(cohorts)]
    rows.append({"flag_key": "f", "cohort": ALL_COHORTS, "n": 4200, "n_negative": 300 + 6 * 180,
                 "baseline_n": 4200, "baseline_n_negative": 7 * 180})
    v = _verdicts(_frame(rows))
    assert v.loc[cohorts[0], "state"] == "act"
    assert (v.loc[cohorts[1:], "state"] != "act").all()
    assert v.loc[ALL_COHORTS, "state"] != "act"  # the flag as a whole is diluted: a flag-level gate would miss it
    assert "alpha share 0.0036" in v.loc[cohorts[0], "reason"]  # 0.025 / 7 cohorts


def test_insufficient_data_is_its_own_state_and_a_big_null_sample_passes():
    rows = [{"flag_key": "f", "cohort": ALL_COHORTS, "n": 30, "n_negative": 20, "baseline_n": 500, "baseline_n_negative": 150}]
    v = _verdicts(_frame(rows))
    assert v.loc[ALL_COHORTS, "state"] == "insufficient_data" and v.loc[ALL_COHORTS, "action"] == "none"
    undecided = _verdicts(_frame([{"flag_key": "f", "cohort": ALL_COHORTS, "n": 120, "n_negative": 40,
                                   "baseline_n": 120, "baseline_n_negative": 36}]))
    assert undecided.loc[ALL_COHORTS, "state"] == "insufficient_data"
    passed = _verdicts(_frame([{"flag_key": "f", "cohort": ALL_COHORTS, "n": 8000, "n_negative": 2400,
                                "baseline_n": 8000, "baseline_n_negative": 2400}]))
    assert passed.loc[ALL_COHORTS, "state"] == "pass"


def test_low_scorer_confidence_needs_more_evidence():
    row = {"flag_key": "f", "cohort": ALL_COHORTS, "n": 300, "n_negative": 120, "baseline_n": 600, "baseline_n_negative": 160}
    sure = _verdicts(_frame([{**row, "mean_confidence": 0.9}]))
    unsure = _verdicts(_frame([{**row, "mean_confidence": 0.6}]))
    assert sure.loc[ALL_COHORTS, "state"] == "act"
    assert unsure.loc[ALL_COHORTS, "state"] == "insufficient_data"
    assert "confidence-weighted n=100" in unsure.loc[ALL_COHORTS, "reason"]


def test_off_surface_rise_is_a_hold_and_kpi_corroboration_raises_severity():
    row = {"flag_key": "f", "cohort": ALL_COHORTS, "n": 800, "n_negative": 320, "baseline_n": 800, "baseline_n_negative": 200}
    v = _verdicts(_frame([row]))
    assert (v.loc[ALL_COHORTS, "state"], v.loc[ALL_COHORTS, "action"], v.loc[ALL_COHORTS, "severity"]) == ("act", "step_down", "moderate")
    assert v.loc[ALL_COHORTS, "bound"] > 0 and v.loc[ALL_COHORTS, "statistic"] >= 1 / 0.025
    kpis = pd.DataFrame([
        {"flag_key": "f", "cohort": ALL_COHORTS, "kpi": "checkout_conversion", "current": 0.030, "baseline": 0.034, "higher_is_bad": False},
        {"flag_key": "other", "cohort": ALL_COHORTS, "kpi": "refunds", "current": 9.0, "baseline": 1.0, "higher_is_bad": True},
    ])
    corroborated = _verdicts(_frame([row]), business_kpis=kpis)
    assert (corroborated.loc[ALL_COHORTS, "action"], corroborated.loc[ALL_COHORTS, "severity"]) == ("disable", "severe")
    assert "checkout_conversion" in corroborated.loc[ALL_COHORTS, "reason"] and "refunds" not in corroborated.loc[ALL_COHORTS, "reason"]
    improving = kpis.assign(current=[0.040, 1.0])
    assert _verdicts(_frame([row]), business_kpis=improving).loc[ALL_COHORTS, "severity"] == "moderate"
    assert with_kpis(kpis)(_frame([row]), SEQ).reset_index().severity.iloc[0] == "severe"
    off = _verdicts(_frame([{**row, "n_negative_high_risk": 50}]))
    assert (off.loc[ALL_COHORTS, "state"], off.loc[ALL_COHORTS, "action"]) == ("hold", "hold_promotion")
    assert kpi_moves_bad([1.1, 0.9], [1.0, 1.0], [True, True]).tolist() == [True, False]


def test_excluded_topic_complaints_do_not_count():
    """A shipping incident on the new version moves the raw negative share, never the decision."""
    rng = np.random.default_rng(5)
    t0 = pd.Timestamp("2026-03-01", tz="UTC")
    releases = releases_frame([release_record("f", "1.0", t0 - pd.Timedelta(days=30), product="app"),
                               release_record("f", "1.1", t0, product="app")])
    rows = []
    for version, count, shipping in (("1.0", 900, 0), ("1.1", 900, 700)):
        for i in range(count + shipping):
            is_shipping = i >= count
            rows.append({
                "event_id": f"{version}-{i}", "attributed_flag": "f", "release_version": version, "cohort": "all-users",
                "created_at": t0 + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 6))),
                "text": "late parcel" if is_shipping else "ok", "sentiment_score": -0.8 if is_shipping else 0.0,
                "sentiment_label": "negative" if is_shipping or rng.random() < 0.3 else "positive",
                "confidence": 0.9, "issue_category": "shipping" if is_shipping else "checkout",
                "affected_surface": "fulfilment" if is_shipping else "checkout", "topic_excluded": is_shipping,
                "high_risk": not is_shipping, "urgency": None,
            })
    scored = pd.DataFrame(rows)
    baselines = compute_baselines(scored, releases, t0 + pd.Timedelta(days=7), SEQ.windows)
    flag = baselines[(baselines.cohort == ALL_COHORTS) & (baselines.baseline_kind == "concurrent")].iloc[0]
    assert flag.n_excluded == 700 and flag.n == 900
    verdicts = rule_for(SEQ)(baselines, SEQ).reset_index()
    assert not (verdicts.state == "act").any()
    assert "700 rows on excluded topics not counted" in verdicts.reason.iloc[0]
