"""Pure core: attribution, taxonomy, scorers, baselines, fixed-rule policy, releases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rollback_assets.core.attribution import attribute, cohort_labels
from rollback_assets.core.baselines import BASELINE_INPUT_COLUMNS, WindowConfig, compute_baselines, relative_rise
from rollback_assets.core.policy import PolicyConfig, choose_baseline, fixed_rule, make_decisions
from rollback_assets.core.releases import load_releases_yaml, parse_ladder, release_record, releases_frame
from rollback_assets.core.schemas import BUSINESS_KPIS, COHORT_BASELINES, DECISIONS
from rollback_assets.core.scoring.base import score_frame
from rollback_assets.core.scoring.calibrated import CalibratedScorer, training_sample
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import Taxonomy

T0 = pd.Timestamp("2026-01-01", tz="UTC")

FIXED_RULE = PolicyConfig.load(Path(__file__).parents[1] / "rollback_assets" / "config" / "policy_fixed_rule.yaml")


def day(d: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=d)


def _releases():
    return releases_frame([
        release_record("checkout-redesign", "5.1", day(0), product="shop-app", surfaces=["checkout"]),
        release_record("checkout-redesign", "5.2", day(10), product="shop-app", surfaces=["checkout"],
                       code_commit="abc123", notebook_commit="nb1"),
        release_record("search-v2", "2.0", day(5), product="shop-search"),
    ])


# ------------------------------------------------------------------------------------------------ attribution
def test_attribution_by_version_by_time_and_none():
    feedback = pd.DataFrame({
        "event_id": list("abcdef"),
        "product": ["shop-app", "shop-app", "shop-app", "unknown-app", "shop-app", "shop-search"],
        "app_version": ["5.1", None, None, None, "9.9", None],
        "created_at": [day(12), day(11), day(-1), day(11), day(11), day(6)],
        "device": ["mobile", "desktop", None, "mobile", "mobile", "tablet"],
        "locale": ["de-DE", "en-US", "en-US", "de-DE", "de-DE", "fr-FR"],
        "region": ["dach", "us", "us", "dach", "dach", "fr"],
    })
    out = attribute(feedback, _releases()).set_index("event_id")
    assert out.loc["a", ["release_version", "attributed_flag", "attribution"]].tolist() == ["5.1", "checkout-redesign", "version"]
    assert out.loc["b", ["release_version", "attributed_flag", "attribution"]].tolist() == ["5.2", "checkout-redesign", "time"]
    assert out.loc["f", ["release_version", "attributed_flag", "attribution"]].tolist() == ["2.0", "search-v2", "time"]
    for none in ("c", "d", "e"):  # before any release, unknown product, unknown version
        assert out.loc[none, "attribution"] == "none" and pd.isna(out.loc[none, "release_version"])
    assert out.loc["a", "cohort"] == "device=mobile|locale=de-DE"
    assert out.loc["c", "cohort"] == "device=unknown|locale=en-US"
    assert (out.attribution != "none").mean() == pytest.approx(3 / 6)
    assert len(out) == len(feedback)

    by_region = attribute(feedback, _releases(), dimensions=("region",)).set_index("event_id")
    assert by_region.loc["a", "cohort"] == "region=dach"
    assert (cohort_labels(feedback, ()) == "all").all()


def test_attribution_by_time_takes_feedback_times_in_microseconds():
    """Feedback read through Arrow (ingest's read_file, replay's files) carries microsecond times; the
    releases nanoseconds. The as-of join must not refuse the pair (it did: replay of a Play export failed)."""
    feedback = pd.DataFrame({
        "event_id": ["a"], "product": ["shop-app"], "app_version": [None], "device": ["mobile"], "locale": ["de-DE"],
        "created_at": pd.Series([day(11)]).astype("datetime64[us, UTC]"),
    })
    out = attribute(feedback, _releases())
    assert out[["release_version", "attribution"]].iloc[0].tolist() == ["5.2", "time"]


def test_attribution_without_releases_keeps_rows():
    feedback = pd.DataFrame({"product": ["x"], "app_version": [None], "created_at": [day(1)], "device": ["m"], "locale": ["l"]})
    out = attribute(feedback, releases_frame([]))
    assert out.attribution.tolist() == ["none"] and out.cohort.tolist() == ["device=m|locale=l"]


# ------------------------------------------------------------------------------------------------ taxonomy
def test_taxonomy_classification_and_exclusions():
    taxonomy = Taxonomy.load()
    texts = pd.Series([
        "The checkout is broken, cart empties",       # checkout
        "Parcel never arrived, tracking useless",     # shipping: excluded
        "Way too expensive now",                      # pricing: excluded
        "hello there",                                # other
        "cart and payment both fail",                 # tie checkout 1 / payments 1: the earlier topic wins
        "an adventure in badness",                    # 'ad' must match on word boundaries only
        "SEARCH gives no results",                    # case-insensitive
    ], index=[10, 11, 12, 13, 14, 15, 16])
    out = taxonomy.classify(texts)
    assert list(out.index) == list(texts.index)
    assert out.issue_category.tolist() == ["checkout", "shipping", "pricing", "other", "checkout", "other", "search"]
    assert out.topic_excluded.tolist() == [False, True, True, False, False, False, False]
    assert out.high_risk.tolist() == [True, False, False, False, True, False, True]
    assert out.affected_surface[10] == "checkout" and out.affected_surface[11] == "fulfilment"
    assert pd.isna(out.affected_surface[13])


def test_taxonomy_rejects_unknown_excluded_topic_and_versions_content():
    spec = {"version": 1, "high_risk_surfaces": ["s"], "excluded_topics": ["nope"],
            "topics": {"a": {"surface": "s", "phrases": ["alpha"]}}}
    with pytest.raises(ValueError, match="nope"):
        Taxonomy.from_dict(spec)
    one = Taxonomy.from_dict({**spec, "excluded_topics": []})
    two = Taxonomy.from_dict({**spec, "excluded_topics": [], "topics": {"a": {"surface": "s", "phrases": ["alpha", "beta"]}}})
    assert one.version != two.version and one.version.startswith("1-")


# ------------------------------------------------------------------------------------------------ scorers
def test_lexicon_scorer_labels():
    scores = LexiconScorer().score(["I love it, great app!", "terrible, awful, hate it", "", "the app has a button"])
    assert scores.sentiment_label.tolist() == ["positive", "negative", "neutral", "neutral"]
    assert scores.sentiment_score[0] > 0.5 and scores.sentiment_score[1] < -0.5 and scores.sentiment_score[2] == 0
    assert scores.confidence.between(0.5, 1.0).all()
    assert scores.confidence[1] > scores.confidence[3]


def test_score_frame_adds_every_score_column():
    frame = pd.DataFrame({"text": ["checkout is terrible", "parcel arrived, great"]}, index=[5, 7])
    out = score_frame(LexiconScorer(), Taxonomy.load(), frame)
    assert list(out.index) == [5, 7]
    assert out.loc[5, "sentiment_label"] == "negative" and out.loc[5, "issue_category"] == "checkout"
    assert bool(out.loc[7, "topic_excluded"]) is True
    assert (out.scorer == "lexicon-vader").all() and (out.scorer_version == LexiconScorer.version).all()


# Domain complaints without sentiment words: a lexicon cannot read them, a model trained on stars can.
NEG = ["the order button does nothing", "cart empties itself before payment", "stuck on the address form",
       "charged twice for one order", "the page goes blank after login", "promo code field is gone"]
POS = ["placed my order in seconds", "the address form fills itself", "one tap and the order was done",
       "payment went through first time", "found the size quickly", "delivery slot picked in one step"]


def _rated(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    negative = rng.random(n) < 0.4
    texts = [f"{rng.choice(NEG if neg else POS)} {rng.choice(['', 'today', 'again', 'on android', 'on ios'])}".strip()
             for neg in negative]
    ratings = np.where(negative, rng.choice([1, 2], n), rng.choice([4, 5], n))
    ratings = pd.Series(ratings, dtype="Int64")
    ratings[rng.random(n) < 0.1] = 3  # 3 stars: no label
    return pd.Series(texts), ratings


def test_calibrated_scorer_trains_and_beats_lexicon():
    texts, ratings = _rated(900)
    model = CalibratedScorer.train(texts, ratings)
    assert model is not None
    v = model.validation
    assert v.n_train + v.n_holdout == int(ratings.isin([1, 2, 4, 5]).sum())
    assert v.calibrated_macro_f1 > 0.9
    assert v.calibrated_macro_f1 > v.lexicon_macro_f1 and v.calibrated_wins
    out = model.score(["the order button does nothing", "placed my order in seconds"])
    assert out.sentiment_label.tolist() == ["negative", "positive"]
    assert out.confidence.between(0.5, 1.0).all()


def test_calibrated_version_is_a_hash_of_its_training_rows():
    """Same rows, same model version (assets and replay agree); one changed rating, a new version."""
    texts, ratings = _rated(600)
    a = CalibratedScorer.train(texts, ratings)
    a_again = CalibratedScorer.train(texts.copy(), ratings.copy())
    changed = ratings.copy()
    changed.iloc[0] = 1 if changed.iloc[0] != 1 else 5
    b = CalibratedScorer.train(texts, changed)
    assert a.version == a_again.version
    assert a.version != b.version and b.version.startswith("tfidf-lr-")


def test_calibrated_trains_on_any_rating_scale():
    """NPS 0-6 detractors are negative, 9-10 promoters positive, passives left out."""
    texts, stars = _rated(800)
    nps = stars.map({1: 0, 2: 5, 3: 7, 4: 9, 5: 10})
    model = CalibratedScorer.train(texts, nps, "nps")
    assert model is not None and model.validation.n_train + model.validation.n_holdout == int(stars.isin([1, 2, 4, 5]).sum())
    assert model.score(["the order button does nothing"]).sentiment_label.tolist() == ["negative"]


def test_training_sample_is_bounded_stratified_and_chosen_by_the_rows_themselves():
    """At most max_rows labelled rows, each label at its share, 3 stars never; the same rows in the same
    order however the rows were read (assets and replay train the same model), and a sample of the
    sample is itself (the lake path picks rows before reading their texts)."""
    _, ratings = _rated(5000, seed=11)
    rows = pd.DataFrame({"event_id": [f"ev-{i}" for i in range(len(ratings))], "rating": ratings, "rating_scale": "stars"})
    sample = training_sample(rows, max_rows=1000)
    labelled = rows[rows.rating != 3]
    assert len(sample) == 1000 and (sample.rating != 3).all()
    assert abs((sample.rating <= 2).sum() - 1000 * (labelled.rating <= 2).mean()) <= 1
    shuffled = training_sample(rows.sample(frac=1, random_state=5).reset_index(drop=True), max_rows=1000)
    assert shuffled.event_id.tolist() == sample.event_id.tolist()
    assert training_sample(sample, max_rows=1000).event_id.tolist() == sample.event_id.tolist()
    grown = pd.concat([rows, rows.assign(event_id=rows.event_id + "-late")], ignore_index=True)
    assert len(set(training_sample(grown, max_rows=1000).event_id) & set(sample.event_id)) > 300
    assert len(training_sample(rows.head(300), max_rows=1000)) == int((rows.head(300).rating != 3).sum())


def test_calibrated_refuses_too_little_or_one_class_data():
    texts, ratings = _rated(100)
    assert CalibratedScorer.train(texts, ratings) is None
    assert CalibratedScorer.train(pd.Series(["ok"] * 600), pd.Series([5] * 600)) is None


# ------------------------------------------------------------------------------------------------ baselines
def _scored_row(version, created, cohort, label, topic="checkout", excluded=False, flag="checkout-redesign"):
    high_risk = topic in ("checkout", "payments", "search")
    return {"event_id": f"{version}-{created}-{cohort}-{label}-{topic}", "attributed_flag": flag, "release_version": version,
            "cohort": cohort, "created_at": day(created), "text": f"{label} about {topic}", "sentiment_label": label,
            "sentiment_score": {"negative": -0.8, "neutral": 0.0, "positive": 0.8}[label], "confidence": 0.9,
            "issue_category": topic, "affected_surface": topic, "topic_excluded": excluded, "high_risk": high_risk,
            "urgency": None, "author_hash": None}


def _tiny_scored() -> pd.DataFrame:
    rows = [
        # current release 5.2 inside the window (day 10 .. 14)
        _scored_row("5.2", 11, "A", "negative"), _scored_row("5.2", 12, "A", "negative"),
        _scored_row("5.2", 12.5, "A", "positive"), _scored_row("5.2", 13, "A", "negative", "shipping", excluded=True),
        _scored_row("5.2", 11, "B", "negative", "login"), _scored_row("5.2", 13, "B", "neutral", "login"),
        _scored_row("5.2", 14.5, "A", "negative"),  # after as_of: ignored
        # previous release 5.1 in the same window: concurrent baseline
        _scored_row("5.1", 11, "A", "negative"), _scored_row("5.1", 12, "A", "positive"), _scored_row("5.1", 13, "A", "positive"),
        _scored_row("5.1", 12, "B", "positive"), _scored_row("5.1", 12, "B", "negative", "shipping", excluded=True),
        # 5.1 before 5.2 went live: rolling baseline (rolling_days=5 -> from day 5)
        _scored_row("5.1", 6, "A", "negative"), _scored_row("5.1", 7, "A", "positive"), _scored_row("5.1", 8, "B", "positive"),
        _scored_row("5.1", 3, "A", "negative"),  # before the rolling window: ignored
        # a flag without a registered release is not judged
        _scored_row("9.9", 12, "A", "negative", flag="unregistered"),
    ]
    return pd.DataFrame(rows)


def test_baselines_concurrent_vs_rolling_exact_counts():
    assert set(BASELINE_INPUT_COLUMNS) <= set(_tiny_scored().columns)
    out = compute_baselines(_tiny_scored(), _releases(), day(14), WindowConfig(window_days=7, rolling_days=5))
    assert list(out.columns) == COHORT_BASELINES.names
    assert set(out.flag_key) == {"checkout-redesign"} and set(out.release_version) == {"5.2"}
    assert len(out) == 6
    got = out.set_index(["cohort", "baseline_kind"])
    expected = {  # n, n_negative, n_excluded, n_excluded_negative, n_negative_high_risk, baseline_n, baseline_n_negative
        ("all", "concurrent"): (5, 3, 1, 1, 2, 4, 1),
        ("all", "rolling"): (5, 3, 1, 1, 2, 3, 1),
        ("A", "concurrent"): (3, 2, 1, 1, 2, 3, 1),
        ("A", "rolling"): (3, 2, 1, 1, 2, 2, 1),
        ("B", "concurrent"): (2, 1, 0, 0, 0, 1, 0),
        ("B", "rolling"): (2, 1, 0, 0, 0, 1, 0),
    }
    cols = ["n", "n_negative", "n_excluded", "n_excluded_negative", "n_negative_high_risk", "baseline_n", "baseline_n_negative"]
    for key, values in expected.items():
        assert tuple(int(v) for v in got.loc[key, cols]) == values, key
    assert got.loc[("all", "concurrent"), "negative_share"] == pytest.approx(3 / 5)
    assert got.loc[("all", "concurrent"), "baseline_negative_share"] == pytest.approx(1 / 4)
    assert got.loc[("all", "concurrent"), "baseline_versions"] == "5.1"
    assert (out.window_start == day(10)).all() and (out.window_end == day(14)).all()
    assert json.loads(got.loc[("all", "concurrent"), "top_topics"]) == [["checkout", 2], ["login", 1]]
    assert json.loads(got.loc[("A", "rolling"), "evidence"]) == ["negative about checkout"]


def test_relative_rise():
    assert relative_rise(0.4, 0.25) == pytest.approx(0.6)
    assert relative_rise(0.1, 0.0) == float("inf") and relative_rise(0.0, 0.0) == 0.0
    assert relative_rise(None, 0.2) is None and relative_rise(float("nan"), 0.2) is None


# ------------------------------------------------------------------------------------------------ policy
def _baseline_row(cohort, **over):
    row = {
        "flag_key": "checkout-redesign", "release_version": "5.2", "cohort": cohort, "baseline_kind": "concurrent",
        "baseline_versions": "5.1", "window_start": day(7), "window_end": day(14), "n": 300, "n_negative": 120,
        "negative_share": 0.40, "n_negative_high_risk": 100, "n_excluded": 5, "n_excluded_negative": 5,
        "mean_confidence": 0.9, "mean_sentiment": -0.2, "baseline_n": 400, "baseline_n_negative": 100,
        "baseline_negative_share": 0.25, "baseline_mean_sentiment": 0.1, "top_topics": '[["checkout", 90]]',
        "evidence": '["q1", "q2", "q3"]', "mean_urgency_high": None, "as_of": day(14), "release_live": True,
        "new_terms": "[]", "n_authors": None,
    }
    row.update(over)
    return row


POLICY_CASES = {
    "act": (_baseline_row("act"), ("act", "step_down", "moderate")),
    "severe": (_baseline_row("severe", negative_share=0.6, n_negative=180, n_negative_high_risk=150), ("act", "disable", "severe")),
    "off-surface": (_baseline_row("off-surface", n_negative_high_risk=10, top_topics='[["login", 90]]'), ("hold", "hold_promotion", "low")),
    "unsure": (_baseline_row("unsure", mean_confidence=0.6), ("hold", "hold_promotion", "low")),
    "pass": (_baseline_row("pass", negative_share=0.27, n_negative=81), ("pass", "none", "none")),
    "thin": (_baseline_row("thin", n=150, n_negative=60), ("insufficient_data", "none", "none")),
}


def test_fixed_rule_verdicts():
    baselines = pd.DataFrame([row for row, _ in POLICY_CASES.values()])
    verdicts = fixed_rule(baselines, FIXED_RULE)
    for cohort, (_, expected) in POLICY_CASES.items():
        got = verdicts.loc[("checkout-redesign", "5.2", cohort, day(14))]
        assert (got.state, got.action, got.severity) == expected, cohort
        assert got.reason
    assert verdicts.loc[("checkout-redesign", "5.2", "act", day(14)), "statistic"] == pytest.approx(0.6)


def test_thin_concurrent_baseline_falls_back_to_rolling():
    rows = pd.DataFrame([
        _baseline_row("A", baseline_n=50, baseline_n_negative=10, baseline_negative_share=0.2),
        _baseline_row("A", baseline_kind="rolling", baseline_n=500, baseline_n_negative=190, baseline_negative_share=0.38),
    ])
    chosen = choose_baseline(rows, FIXED_RULE)
    assert chosen.baseline_kind.tolist() == ["rolling"]
    verdict = fixed_rule(rows, FIXED_RULE).iloc[0]
    assert verdict.baseline_kind == "rolling" and verdict.state == "pass"


def test_per_flag_override():
    config = PolicyConfig.from_dict({"name": "fixed-rule", "version": 2, "flags": {"checkout-redesign": {"min_sample": 100}}})
    verdicts = fixed_rule(pd.DataFrame([_baseline_row("thin", n=150, n_negative=60)]), config)
    assert verdicts.iloc[0].state == "act"
    assert config.version.startswith("fixed-rule-v2-") and config.version != FIXED_RULE.version


def _decide(config=None, run_id="run-1", decided_at=day(15), fallback=None, baselines=None):
    releases = _releases()
    releases.loc[releases.version == "5.2", "fallback_variant"] = fallback
    baselines = baselines if baselines is not None else pd.DataFrame([row for row, _ in POLICY_CASES.values()])
    lineage = {"scorer_version": "s1", "input_versions": {"scored_sentiment": 4}, "run_id": run_id}
    return make_decisions(baselines, releases, config or FIXED_RULE, lineage, decided_at)


def test_make_decisions_targets_lineage_and_deterministic_ids():
    first = _decide()
    assert list(first.columns) == DECISIONS.names
    by_cohort = first.set_index("cohort")
    assert by_cohort.loc["act", "target_rollout"] == 25
    assert by_cohort.loc["severe", "target_rollout"] == 0
    assert pd.isna(by_cohort.loc["pass", "target_rollout"])
    assert by_cohort.loc["act", "code_commit"] == "abc123" and by_cohort.loc["act", "notebook_commit"] == "nb1"
    assert json.loads(by_cohort.loc["act", "input_versions"]) == {"scored_sentiment": 4}
    assert (first.run_id == "run-1").all() and (first.scorer_version == "s1").all()
    assert first.decision_id.is_unique

    again = _decide(run_id="run-2", decided_at=day(16))
    assert again.decision_id.tolist() == first.decision_id.tolist()
    other_policy = _decide(config=PolicyConfig.from_dict({"name": "fixed-rule", "version": 9}))
    assert not set(other_policy.decision_id) & set(first.decision_id)
    changed = pd.DataFrame([_baseline_row("act", n=301)])
    assert _decide(baselines=changed).decision_id.iloc[0] != by_cohort.loc["act", "decision_id"]


def test_decision_ids_hash_the_keys_as_text_whatever_their_type():
    """Ids are stored in the lake: the column-wise ids must be the documented hash of each row, with
    numbers printed as Python prints them (1 and 1.0 differ) and text JSON-escaped."""
    import hashlib

    from rollback_assets.core.policy import DECISION_ID_KEYS, decision_ids

    rows = pd.DataFrame({
        "flag_key": ["checkout", "checkout"], "release_version": ["2.0", "2.0"], "cohort": ["all", "locale=fr-FR|é\"q"],
        "baseline_kind": ["concurrent", "declared"], "window_start": [day(1), day(2)], "window_end": [day(8), day(8)],
        "n": [300, 300], "n_negative": [90, 91], "baseline_n": pd.Series([1, 1.0], dtype=object),
        "baseline_n_negative": [40, np.nan],
    })
    expected = [hashlib.sha256(json.dumps([str(row[k]) for k in DECISION_ID_KEYS] + ["p-v1"]).encode()).hexdigest()[:20]
                for row in rows.to_dict("records")]
    assert decision_ids(rows, "p-v1") == expected


def test_disable_with_fallback_variant_becomes_switch_variant():
    decisions = _decide(fallback="classic").set_index("cohort")
    assert decisions.loc["severe", "action"] == "switch_variant"
    assert decisions.loc["severe", "target_rollout"] == 0
    assert decisions.loc["act", "action"] == "step_down"


# ------------------------------------------------------------------------------------------------ releases
def test_releases_yaml_both_shapes(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text(
        "- flag_key: f\n  version: '1.0'\n  released_at: '2026-09-01T08:00:00'\n  ladder: [100, 50, 0]\n  surfaces: checkout, search\n"
        "- flag_key: f\n  version: '1.1'\n  released_at: '2026-09-08T10:00:00+02:00'\n"
    )
    frame = load_releases_yaml(listing)
    assert frame.version.tolist() == ["1.0", "1.1"]
    assert frame.released_at.tolist() == [pd.Timestamp("2026-09-01T08:00:00Z"), pd.Timestamp("2026-09-08T08:00:00Z")]
    assert list(frame.ladder[0]) == [100, 50, 0] and list(frame.ladder[1]) == [100, 25, 5, 0]
    assert list(frame.surfaces[0]) == ["checkout", "search"]
    mapping = tmp_path / "map.yaml"
    mapping.write_text("releases:\n  - {flag_key: g, version: '2', released_at: '2026-09-01'}\n")
    assert load_releases_yaml(mapping).flag_key.tolist() == ["g"]


def test_releases_yaml_with_unquoted_timestamps(tmp_path):
    """BUG: YAML parses an unquoted `expires_at: 2026-12-31T00:00:00Z` to an aware datetime, and
    release_record calls pd.Timestamp(aware, tz="UTC"), which raises."""
    path = tmp_path / "releases.yaml"
    path.write_text("- flag_key: f\n  version: '1.0'\n  released_at: 2026-09-01T08:00:00Z\n  expires_at: 2026-12-31T00:00:00Z\n")
    frame = load_releases_yaml(path)
    assert frame.expires_at[0] == pd.Timestamp("2026-12-31T00:00:00Z")
    assert frame.released_at[0] == pd.Timestamp("2026-09-01T08:00:00Z")


@pytest.mark.parametrize("ladder", ["100,25,50,0", [150, 50, 0], [100, 25, -5], []])
def test_invalid_ladders(ladder):
    with pytest.raises(ValueError, match="ladder"):
        parse_ladder(ladder)


def test_valid_ladders_and_required_fields():
    assert parse_ladder("100, 25, 5, 0") == [100, 25, 5, 0]
    assert parse_ladder([50, 0]) == [50, 0]
    with pytest.raises(ValueError, match="flag key and a version"):
        release_record("", "1.0", day(0))


def test_kpi_file_reaches_the_default_rule_and_raises_severity(tmp_path):
    from rollback_assets.core import pipeline
    from rollback_assets.core.lake import Lake

    lake = Lake(tmp_path / "lake")
    kpis = tmp_path / "kpis.csv"
    kpis.write_text("flag_key,cohort,kpi,current,baseline,higher_is_bad\n"
                    "checkout-redesign,all,checkout_conversion,0.030,0.036,false\n")
    assert pipeline.load_kpis(lake, kpis).stats["rows"] == 1
    frame = lake.read(BUSINESS_KPIS)
    assert frame.higher_is_bad.tolist() == [False]

    baselines = pd.DataFrame([_baseline_row("all", n=900, n_negative=360, n_negative_high_risk=300,
                                            baseline_n=1200, baseline_n_negative=300)])
    releases = releases_frame([release_record("checkout-redesign", "5.2", day(7))])
    config = PolicyConfig.load()  # the default: the sequential rule
    plain = make_decisions(baselines, releases, config, {}, day(14)).iloc[0]
    with_kpi = make_decisions(baselines, releases, config, {}, day(14), business_kpis=frame).iloc[0]
    assert plain.state == with_kpi.state == "act"
    assert (plain.severity, with_kpi.severity) == ("moderate", "severe")
    assert "checkout_conversion" in with_kpi.reason


def test_kpi_file_without_the_declared_columns_is_refused(tmp_path):
    from rollback_assets.core import pipeline
    from rollback_assets.core.lake import Lake

    bad = tmp_path / "kpis.csv"
    bad.write_text("flag,kpi,value\nx,conversion,0.1\n")
    with pytest.raises(ValueError, match="lacks columns"):
        pipeline.load_kpis(Lake(tmp_path / "lake"), bad)


# ------------------------------------------------------------------------------------------------ lake reads
def test_lake_reads_partitions_filters_and_versions_as_deltalake_does(tmp_path):
    """Lake.dataset builds the pyarrow dataset from the log's add actions (partition values only, not
    deltalake's per-file statistics expressions): the same rows as deltalake's reader for a day subset,
    a filter, an old version, and MERGE-written files."""
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.schemas import AUTHOR_VOTES

    lake = Lake(tmp_path)
    votes = pd.DataFrame({
        "flag_key": ["f"] * 4, "release_version": ["1", "1", "2", "2"], "cohort": ["c"] * 4,
        "author_hash": ["a", "b", "c", "d"], "first_event_id": ["e1", "e2", "e3", "e4"],
        "first_at": pd.to_datetime(["2026-01-01 01:00", "2026-01-02 02:00", "2026-01-02 03:00", "2026-01-03 04:00"], utc=True),
    })
    votes["first_date"] = votes.first_at.dt.date
    first = lake.merge(AUTHOR_VOTES, votes.iloc[:3])[0]
    lake.merge(AUTHOR_VOTES, votes.iloc[1:].assign(first_event_id=["x2", "x3", "x4"]))  # updates two, inserts one

    def ours(**kw):
        return lake.read(AUTHOR_VOTES, **kw).sort_values("author_hash").reset_index(drop=True)

    def theirs(version=None, days=None, filter=None):
        data = lake.table(AUTHOR_VOTES, version).to_pyarrow_dataset().to_table(filter=filter).to_pandas()
        if days is not None:
            data = data[data.first_date.astype(str).isin(days)]
        return data[AUTHOR_VOTES.names].sort_values("author_hash").reset_index(drop=True)

    import pyarrow.dataset as ds
    pd.testing.assert_frame_equal(ours(), theirs())
    assert list(ours().first_event_id) == ["e1", "x2", "x3", "x4"]
    assert list(ours(days=["2026-01-02"]).author_hash) == ["b", "c"]
    pd.testing.assert_frame_equal(ours(days=["2026-01-02", "2026-01-03"]), theirs(days=["2026-01-02", "2026-01-03"]))
    later = ds.field("first_at") > pd.Timestamp("2026-01-02 02:30", tz="UTC")
    pd.testing.assert_frame_equal(ours(filter=later, days=["2026-01-02"]), theirs(filter=later, days=["2026-01-02"]))
    pd.testing.assert_frame_equal(ours(version=first), theirs(version=first))
    assert ours(days=["2026-02-01"]).empty
    assert str(ours().first_date.iloc[0]) == "2026-01-01"  # the partition column comes from the path, typed


def test_a_lake_keeps_its_snapshots_current_with_other_writers(tmp_path):
    """Lake.table keeps each table open and brings it up to date with update_incremental: another
    writer's commits (another process, another engine) show in the next read, a pinned version keeps
    its rows, and a Lake still pickles (its snapshots are dropped, not sent)."""
    import pickle

    from rollback_assets.core.lake import Lake
    from rollback_assets.core.schemas import AUTHOR_VOTES

    votes = pd.DataFrame({
        "flag_key": ["f"] * 3, "release_version": ["1"] * 3, "cohort": ["c"] * 3, "author_hash": ["a", "b", "c"],
        "first_event_id": ["e1", "e2", "e3"], "first_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
    })
    votes["first_date"] = votes.first_at.dt.date
    reader, writer = Lake(tmp_path), Lake(tmp_path)
    first = writer.append(AUTHOR_VOTES, votes.iloc[:1])
    assert list(reader.read(AUTHOR_VOTES).author_hash) == ["a"]
    second = writer.append(AUTHOR_VOTES, votes.iloc[1:2])
    writer.merge(AUTHOR_VOTES, votes.iloc[2:].assign(first_event_id="x3"))
    assert reader.version(AUTHOR_VOTES) == writer.version(AUTHOR_VOTES) > second
    assert sorted(reader.read(AUTHOR_VOTES).author_hash) == ["a", "b", "c"]
    assert list(reader.read(AUTHOR_VOTES, version=first).author_hash) == ["a"]
    assert sorted(reader.read(AUTHOR_VOTES, version=second).author_hash) == ["a", "b"]
    reader.delete(AUTHOR_VOTES, "author_hash = 'a'")
    assert sorted(writer.read(AUTHOR_VOTES).author_hash) == ["b", "c"]
    copy = pickle.loads(pickle.dumps(reader))
    assert sorted(copy.read(AUTHOR_VOTES).author_hash) == ["b", "c"]


def test_tables_the_lake_creates_are_checkpointed_every_ten_commits_and_read_back_whole(tmp_path):
    """Opening a table replays the commits after its newest checkpoint; delta-rs checkpoints every 100
    by default, so a daily lake's opens grew with history. Tables the Lake creates carry Delta's own
    interval (10), whichever write made them, and every version still reads back."""
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.schemas import AUTHOR_VOTES

    lake = Lake(tmp_path)
    votes = pd.DataFrame({"flag_key": "f", "release_version": "1", "cohort": "c", "author_hash": [f"a{i}" for i in range(12)],
                          "first_event_id": [f"e{i}" for i in range(12)],
                          "first_at": pd.date_range("2026-01-01", periods=12, freq="D", tz="UTC")})
    votes["first_date"] = votes.first_at.dt.date
    for i in range(12):
        lake.merge(AUTHOR_VOTES, votes.iloc[i:i + 1])
    log = tmp_path / AUTHOR_VOTES.name / "_delta_log"
    assert lake.table(AUTHOR_VOTES).metadata().configuration["delta.checkpointInterval"] == "10"
    assert sorted(p.name for p in log.glob("*.checkpoint.parquet")) == ["00000000000000000009.checkpoint.parquet"]
    assert sorted(Lake(tmp_path).read(AUTHOR_VOTES).author_hash) == sorted(votes.author_hash)
    assert len(Lake(tmp_path).read(AUTHOR_VOTES, version=4)) == 5


def test_a_table_made_without_the_checkpoint_interval_gets_it_at_its_next_write_and_a_set_one_stays(tmp_path):
    """Lakes written before the Lake set `delta.checkpointInterval` kept delta-rs' 100: their first write
    by this version adds it (one metadata commit), so their opens stop replaying up to 99 commits. Each
    kind of write does it; an interval someone chose is left as it is."""
    from deltalake import DeltaTable, write_deltalake

    from rollback_assets.core.lake import Lake
    from rollback_assets.core.schemas import AUTHOR_VOTES

    votes = pd.DataFrame({"flag_key": "f", "release_version": "1", "cohort": "c", "author_hash": [f"a{i}" for i in range(12)],
                          "first_event_id": [f"e{i}" for i in range(12)],
                          "first_at": pd.date_range("2026-01-01", periods=12, freq="D", tz="UTC")})
    votes["first_date"] = votes.first_at.dt.date
    writes = {
        "merge": lambda lake, rows: lake.merge(AUTHOR_VOTES, rows),
        "append": lambda lake, rows: lake.append(AUTHOR_VOTES, rows),
        "replace_partitions": lambda lake, rows: lake.replace_partitions(AUTHOR_VOTES, rows, ["2026-01-02"]),
        "delete": lambda lake, rows: lake.delete(AUTHOR_VOTES, "author_hash = 'a0'"),
    }
    for name, write in writes.items():
        root = tmp_path / name
        legacy = AUTHOR_VOTES.to_arrow(votes.iloc[:1])
        write_deltalake(str(root / AUTHOR_VOTES.name), legacy, partition_by=list(AUTHOR_VOTES.partition_by))
        assert "delta.checkpointInterval" not in DeltaTable(str(root / AUTHOR_VOTES.name)).metadata().configuration
        lake = Lake(root)
        write(lake, votes.iloc[1:2])
        assert Lake(root).table(AUTHOR_VOTES).metadata().configuration["delta.checkpointInterval"] == "10", name
    lake = Lake(tmp_path / "merge")
    for i in range(2, 12):
        lake.merge(AUTHOR_VOTES, votes.iloc[i:i + 1])
    log = tmp_path / "merge" / AUTHOR_VOTES.name / "_delta_log"
    assert [p.name for p in log.glob("*.checkpoint.parquet")] == ["00000000000000000009.checkpoint.parquet"]
    assert sorted(Lake(tmp_path / "merge").read(AUTHOR_VOTES).author_hash) == sorted(votes.author_hash)

    chosen = tmp_path / "chosen" / AUTHOR_VOTES.name
    write_deltalake(str(chosen), AUTHOR_VOTES.to_arrow(votes.iloc[:1]), configuration={"delta.checkpointInterval": "50"})
    Lake(tmp_path / "chosen").merge(AUTHOR_VOTES, votes.iloc[1:2])
    assert DeltaTable(str(chosen)).metadata().configuration["delta.checkpointInterval"] == "50"


def test_a_table_with_a_reader_feature_goes_through_deltalake_which_refuses_what_it_cannot_read(tmp_path):
    """Lake.dataset reads the log's files itself only for tables without reader features: a table
    with deletion vectors (Databricks' default for new tables) goes through deltalake, which refuses
    it by name, rather than having its files read with their deleted rows back in them."""
    from deltalake import write_deltalake
    from deltalake.exceptions import DeltaProtocolError

    from rollback_assets.core.lake import Lake
    from rollback_assets.core.schemas import AUTHOR_VOTES

    lake = Lake(tmp_path)
    votes = AUTHOR_VOTES.empty_frame()
    write_deltalake(lake.uri(AUTHOR_VOTES), AUTHOR_VOTES.to_arrow(votes), partition_by=list(AUTHOR_VOTES.partition_by),
                    configuration={"delta.enableDeletionVectors": "true"})
    assert "deletionVectors" in (lake.table(AUTHOR_VOTES).protocol().reader_features or [])
    with pytest.raises(DeltaProtocolError, match="deletionVectors"):
        lake.read(AUTHOR_VOTES, days=["2026-01-01"])
