"""Baselines from aggregates: every release still reviewed is judged, against fair baselines."""

import numpy as np
import pandas as pd
import pytest

from rollback_assets.core.aggregates import from_rows
from rollback_assets.core.baselines import WindowConfig, compute_baselines, judge_looks, window_edges
from rollback_assets.core.policy import PolicyConfig, make_decisions
from rollback_assets.core.releases import release_record, releases_frame
from rollback_assets.core.schemas import COHORT_BASELINES

T0 = pd.Timestamp("2026-03-01", tz="UTC")
CONFIG = WindowConfig(window_days=14, rolling_days=14, min_rows_to_judge=20)
POLICY = PolicyConfig.load()
LINEAGE = {"scorer_version": "s", "input_versions": {}, "run_id": "t"}


def day(d: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=d)


def reviews(version, n, negative_share, first_day, last_day, seed=0, flag="app", author=None, topic="checkout"):
    rng = np.random.default_rng(seed)
    negative = np.arange(n) < round(n * negative_share)
    times = np.sort(rng.uniform(first_day, last_day, n))
    return pd.DataFrame({
        "event_id": [f"{version}-{seed}-{i}" for i in range(n)], "attributed_flag": flag, "release_version": version,
        "cohort": "all", "created_at": [day(t) for t in times],
        "sentiment_label": np.where(rng.permutation(negative), "negative", "positive"),
        "sentiment_score": 0.0, "confidence": 0.95, "issue_category": topic, "affected_surface": topic,
        "topic_excluded": False, "high_risk": True, "urgency": None,
        "author_hash": author if author is not None else [None] * n,
        "text": [f"review {i} about {topic}" for i in range(n)],
    })


def releases(*versions, adoption="randomized"):
    return releases_frame([release_record("app", v, day(d), surfaces=["checkout"], adoption=adoption) for v, d in versions])


def test_a_superseded_bad_release_is_judged_and_marked_bad_not_stepped_down():
    scored = pd.concat([
        reviews("1.0", 600, 0.30, 0, 30, seed=1),
        reviews("1.1", 500, 0.60, 10, 30, seed=2),  # bad, superseded on day 14 but still reviewed
        reviews("1.2", 400, 0.30, 14, 30, seed=3),
    ], ignore_index=True)
    rel = releases(("1.0", 0), ("1.1", 10), ("1.2", 14))
    base = compute_baselines(scored, rel, day(20), CONFIG)
    assert list(base.columns) == COHORT_BASELINES.names
    judged = base.drop_duplicates("release_version").set_index("release_version").release_live.to_dict()
    assert judged == {"1.0": False, "1.1": False, "1.2": True}
    decisions = make_decisions(base, rel, POLICY, LINEAGE, day(20)).set_index("release_version")
    assert decisions.loc["1.1", "state"] == "act" and decisions.loc["1.1", "action"] == "block_release"
    assert pd.isna(decisions.loc["1.1", "target_rollout"])
    assert decisions.loc["1.2", "state"] != "act"


def test_last_good_catches_a_slow_slide_that_each_concurrent_step_misses():
    scored = pd.concat([
        reviews("1.0", 2000, 0.30, 0, 40, seed=1),  # most customers stay here
        reviews("1.1", 800, 0.37, 10, 40, seed=2),
        reviews("1.2", 800, 0.44, 20, 40, seed=3),
        reviews("1.3", 800, 0.52, 30, 40, seed=4),
    ], ignore_index=True)
    rel = releases(("1.0", 0), ("1.1", 10), ("1.2", 20), ("1.3", 30))
    base = compute_baselines(scored, rel, day(40), CONFIG)
    mine = base[(base.release_version == "1.3")].set_index("baseline_kind")
    assert mine.loc["concurrent", "baseline_versions"] == "1.2" and mine.loc["last_good", "baseline_versions"] == "1.0"
    # known bad releases are never the last good one
    again = compute_baselines(scored, rel, day(40), CONFIG, known_bad=frozenset({("app", "1.0")}))
    kinds = again[again.release_version == "1.3"].set_index("baseline_kind")
    assert "last_good" not in kinds.index or kinds.loc["last_good", "baseline_versions"] != "1.0"
    decisions = make_decisions(base, rel, POLICY, LINEAGE, day(40)).set_index("release_version")
    assert decisions.loc["1.3", "state"] == "act" and decisions.loc["1.3", "baseline_kind"] == "last_good"


def test_self_selected_releases_are_compared_at_the_same_age():
    # stayers on old versions are happier in the same weeks; at the same age every release runs at 0.5
    scored = pd.concat([
        reviews("1.0", 400, 0.50, 0, 7, seed=1), reviews("1.0", 400, 0.30, 7, 30, seed=11),
        reviews("1.1", 400, 0.50, 10, 17, seed=2), reviews("1.1", 400, 0.30, 17, 30, seed=12),
        reviews("1.2", 400, 0.50, 20, 27, seed=3),
    ], ignore_index=True)
    rel = releases(("1.0", 0), ("1.1", 10), ("1.2", 20), adoption="self_selected")
    base = compute_baselines(scored, rel, day(27), CONFIG)
    mine = base[base.release_version == "1.2"].set_index("baseline_kind")
    assert "concurrent" not in mine.index
    assert mine.loc["age_matched", "baseline_versions"] == "1.0,1.1"
    assert mine.loc["age_matched", "baseline_negative_share"] == pytest.approx(0.5, abs=0.03)
    decisions = make_decisions(base, rel, POLICY, LINEAGE, day(27)).set_index("release_version")
    assert decisions.loc["1.2", "state"] != "act"
    # the same data judged as a randomized flag would see a false rise against the stayers
    randomized = compute_baselines(scored, releases(("1.0", 0), ("1.1", 10), ("1.2", 20)), day(27), CONFIG)
    concurrent = randomized[randomized.release_version == "1.2"].set_index("baseline_kind").loc["concurrent"]
    assert concurrent.baseline_negative_share < 0.35


def test_one_vote_per_author_and_author_counts():
    honest = reviews("1.1", 300, 0.30, 10, 20, seed=2)
    bomb = reviews("1.1", 300, 1.0, 15, 16, seed=9, author=["troll"] * 300)
    scored = pd.concat([reviews("1.0", 600, 0.30, 0, 20, seed=1), honest, bomb], ignore_index=True)
    rel = releases(("1.0", 0), ("1.1", 10))
    base = compute_baselines(scored, rel, day(20), CONFIG)
    mine = base[base.release_version == "1.1"].iloc[0]
    assert mine.n == 301 and mine.n_authors == 1
    counted = compute_baselines(scored, rel, day(20), WindowConfig(**{**CONFIG.__dict__, "one_vote_per_author": False}))
    assert counted[counted.release_version == "1.1"].iloc[0].n == 600


def test_declared_reference_is_the_cold_start_baseline():
    scored = reviews("1.0", 300, 0.70, 0, 10, seed=1)
    rel = releases(("1.0", 0))
    base = compute_baselines(scored, rel, day(10), CONFIG)
    plain = make_decisions(base, rel, POLICY, LINEAGE, day(10))
    assert plain.state.tolist() == ["insufficient_data"]
    declared = PolicyConfig.from_dict({**_policy_spec(), "defaults": {**_policy_spec()["defaults"],
                                                                      "reference_negative_share": 0.45}})
    acted = make_decisions(base, rel, declared, LINEAGE, day(10)).iloc[0]
    assert acted.state == "act" and acted.baseline_kind == "declared" and acted.baseline_n == 1000


def _policy_spec():
    from importlib import resources

    import yaml
    return yaml.safe_load(resources.files("rollback_assets.config").joinpath("policy.yaml").read_text())


def test_many_looks_from_one_aggregate_equal_one_look_at_a_time():
    scored = pd.concat([reviews("1.0", 600, 0.30, 0, 30, seed=1), reviews("1.1", 500, 0.45, 10, 30, seed=2)],
                       ignore_index=True)
    rel = releases(("1.0", 0), ("1.1", 10))
    looks = pd.date_range(day(12), day(30), freq="2D")
    agg, _ = from_rows(scored, rel, window_edges(rel, looks, CONFIG), CONFIG.one_vote_per_author)
    batch = pd.DataFrame(judge_looks(agg, rel, looks, CONFIG))
    for as_of in looks[::3]:
        single = compute_baselines(scored, rel, as_of, CONFIG, describe=False)
        same = batch[batch.window_end == as_of].reset_index(drop=True)
        cols = ["release_version", "baseline_kind", "n", "n_negative", "baseline_n", "baseline_n_negative"]
        pd.testing.assert_frame_equal(same[cols], single[cols].reset_index(drop=True), check_dtype=False)
