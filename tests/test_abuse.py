"""Abuse resistance: a review bomb is counted once and said out loud; one vote per author holds over a
release's whole life in the assets as in replay; a future-dated row or a review bomb leaves the demo's
decisions as they were (run through the real steps on the demo's landing zone)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from rollback_assets.core import demo_data, pipeline
from rollback_assets.core.abuse import review_bomb_note
from rollback_assets.core.baselines import compute_baselines
from rollback_assets.core.landing import scan_landing_zone
from rollback_assets.core.lake import Lake
from rollback_assets.core.policy import PolicyConfig, make_decisions
from rollback_assets.core.releases import load_releases_yaml, release_record, releases_frame
from rollback_assets.core.schemas import QUARANTINE, RAW_FEEDBACK, SCORED_SENTIMENT
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import Taxonomy

from test_baselines import CONFIG, day, reviews

SALT = "abuse-test-salt-not-secret"
LINEAGE = {"scorer_version": "s", "input_versions": {}, "run_id": "t"}


def evidence_of(frame: pd.DataFrame, version: str, cohort: str = "all") -> list[str]:
    row = frame[(frame.release_version == version) & (frame.cohort == cohort)].iloc[0]
    return json.loads(row.evidence)


# ------------------------------------------------------------------------------------ the note
def test_a_burst_from_one_author_is_named_in_the_evidence_and_counted_once():
    honest = reviews("1.1", 300, 0.30, 10, 20, seed=2)
    bomb = reviews("1.1", 300, 1.0, 15, 16, seed=9, author=["troll"] * 300)
    scored = pd.concat([reviews("1.0", 600, 0.30, 0, 20, seed=1), honest, bomb], ignore_index=True)
    rel = releases_frame([release_record("app", v, day(d), surfaces=["checkout"]) for v, d in (("1.0", 0), ("1.1", 10))])
    base = compute_baselines(scored, rel, day(20), CONFIG)
    assert evidence_of(base, "1.1")[0] == "suspected review bomb: 300 of 390 negative reviews from 1 author; counted once"
    assert evidence_of(base, "1.0")[0] != evidence_of(base, "1.1")[0] and not evidence_of(base, "1.0")[0].startswith("suspected")
    decisions = make_decisions(base, rel, PolicyConfig.load(), LINEAGE, day(20))
    assert json.loads(decisions[decisions.release_version == "1.1"].evidence.iloc[0])[0].startswith("suspected review bomb: 300")

    uncapped = compute_baselines(scored, rel, day(20), replace(CONFIG, one_vote_per_author=False))
    assert evidence_of(uncapped, "1.1")[0].endswith("counted 300 times (one vote per author is off)")


def test_few_authors_are_counted_and_ordinary_repeat_posters_are_not_a_bomb():
    assert review_bomb_note(pd.Series({"a": 20, "b": 20, "c": 20}), 90, counted_once=True) == \
        "suspected review bomb: 60 of 90 negative reviews from 3 authors; each counted once"
    assert review_bomb_note(pd.Series({f"u{i}": 2 for i in range(30)}), 90, counted_once=True) is None  # 30 people, 2 each
    assert review_bomb_note(pd.Series({"x": 8}), 38, counted_once=True) is None  # a burst, but too small to matter
    assert review_bomb_note(pd.Series({"x": 25}), 200, counted_once=True) is None  # a small share of the negatives


# ------------------------------------------------------------- one vote over the release's life
def _lake_with(tmp_path, scored: pd.DataFrame, rel: pd.DataFrame) -> Lake:
    lake = Lake(tmp_path / "lake")
    full = scored.assign(
        created_at=scored.created_at.dt.floor("s"), source_kind="review", channel="app_store", created_date=scored.created_at.dt.date, content_hash="h",
        ingested_at=day(0), enriched_at=day(0), attribution="version", label_source="rating", scorer="test",
        scorer_version="1", product="app",
    )
    lake.merge(SCORED_SENTIMENT, full[[c for c in SCORED_SENTIMENT.names if c in full]])
    pipeline.register_releases(lake, rel)
    pipeline.aggregate_daily(lake)
    return lake


def test_an_author_who_spoke_before_the_window_read_counts_no_more_in_the_assets_than_in_replay(tmp_path):
    """A superseded release still reviewed: the troll's first word on 1.1 came long before the days the
    assets read (the live release's rolling weeks), then 300 posts in the window. Replay and the
    postmortem read the whole history and count the troll zero times there; the assets must too."""
    rel = releases_frame([release_record("app", v, day(d), surfaces=["checkout"]) for v, d in
                          (("1.0", 0), ("1.1", 30), ("1.2", 60), ("1.3", 90))])
    scored = pd.concat([
        reviews("1.1", 400, 0.3, 31, 120, seed=1), reviews("1.2", 500, 0.3, 61, 120, seed=2),
        reviews("1.3", 500, 0.3, 91, 120, seed=3),
        reviews("1.1", 1, 0.0, 40, 40.5, seed=4, author=["troll"]),  # first word, long before the window
        reviews("1.1", 300, 1.0, 116, 119, seed=5, author=["troll"] * 300),
    ], ignore_index=True)
    policy = PolicyConfig.from_dict({"name": "sequential", "windows": {"window_days": 7, "rolling_days": 7,
                                                                       "rolling_releases": 1}})
    lake = _lake_with(tmp_path, scored, rel)
    assets = pipeline.baselines(lake, policy, as_of=day(120)).stats["frame"]
    replayed = compute_baselines(lake.read(SCORED_SENTIMENT), pipeline.read_releases(lake), day(120), policy.windows)
    assert pipeline.baselines(lake, policy, as_of=day(120)).stats["rows_read"] < len(scored), "the assets read a window"
    key = ["flag_key", "release_version", "cohort", "baseline_kind"]
    figures = ["n", "n_negative", "baseline_n", "baseline_n_negative"]
    assert assets[key + figures].sort_values(key).reset_index(drop=True).equals(
        replayed[key + figures].sort_values(key).reset_index(drop=True))
    honest = scored[(scored.release_version == "1.1") & (scored.created_at > day(113)) & scored.author_hash.isna()]
    mine = assets[(assets.release_version == "1.1") & (assets.cohort == "all")]
    assert int(mine.n.iloc[0]) == len(honest), "the troll's 300 window posts count zero times"
    assert evidence_of(assets, "1.1")[0].startswith("suspected review bomb: 300 of ")


# ------------------------------------------------------------------- the demo, through the steps
BOMB = {"flag": "search-v2", "version": "2.1", "product": "shop-search", "device": "mobile", "locale": "en-US"}


def _bomb_lines(author: str) -> list[dict]:
    """300 one-star reviews on a healthy release from one author, in the demo's last week, after the
    author's first (happy) review of that release."""
    rng = np.random.default_rng(5)
    first = demo_data.START + pd.Timedelta(days=27, hours=3)
    times = [first] + sorted(demo_data.START + pd.Timedelta(days=36) + pd.to_timedelta(rng.integers(0, 5 * 86_400, 300), unit="s"))
    texts = ["search finds exactly what I want, excellent"] + ["search is useless, no results for obvious things, terrible"] * 300
    return [{"event_id": f"bomb-{i:03d}", "source_kind": "review", "channel": "app_store", "created_at": t.isoformat(),
             "text": text, "rating": 5 if i == 0 else 1, "product": BOMB["product"], "app_version": BOMB["version"],
             "flag_key": None, "locale": BOMB["locale"], "device": BOMB["device"], "region": "us", "customer_tier": "free",
             "acquisition_channel": "organic", "verified_buyer": False, "author_hash": author}
            for i, (t, text) in enumerate(zip(times, texts))]


def _run_steps(lake: Lake, landing, policy: PolicyConfig) -> pd.DataFrame:
    scan = scan_landing_zone(landing, [])
    pipeline.ingest(lake, pipeline.pending_files(lake, scan.files), author_salt=SALT)
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score(lake, LexiconScorer(), Taxonomy.load())
    pipeline.aggregate_daily(lake)
    pipeline.baselines(lake, policy)
    return pipeline.decide(lake, policy).stats["decisions"]


def _verdicts(decisions: pd.DataFrame) -> pd.DataFrame:
    columns = ["decision_id", "flag_key", "release_version", "cohort", "state", "action"]
    return decisions[columns].sort_values(columns[1:4]).reset_index(drop=True)


def _acting(decisions: pd.DataFrame) -> list[tuple]:
    acting = decisions[decisions.state == "act"]
    return sorted(zip(acting.flag_key, acting.release_version, acting.cohort, acting.action))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's landing zone run once through the steps (the decisions every variant is compared with)."""
    root = tmp_path_factory.mktemp("abuse-demo")
    frame = demo_data.generate(demo_data.DemoSpec())
    demo_data.write_landing_zone(frame, root / "landing", root / "releases.yaml")
    lake = Lake(root / "lake")
    pipeline.register_releases(lake, load_releases_yaml(root / "releases.yaml"))
    policy = PolicyConfig.load()
    decisions = _run_steps(lake, root / "landing", policy)
    assert _acting(decisions) == [("checkout-redesign", "5.2", "device=mobile|locale=de-DE", "step_down")]
    return root, decisions, policy


def _variant(demo, tmp_path, name: str, lines: list[dict]) -> Lake:
    """The demo's landing zone and lake after its first run, plus one more landing file."""
    root, _, _ = demo
    shutil.copytree(root / "landing", tmp_path / "landing")
    shutil.copytree(root / "lake", tmp_path / "lake")
    (tmp_path / "landing" / "feedback_jsonl" / name).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Lake(tmp_path / "lake")


def test_one_row_dated_2099_leaves_the_demo_decisions_unchanged(demo, tmp_path):
    _, expected, policy = demo
    future = {**_bomb_lines("someone")[1], "event_id": "from-2099", "created_at": "2099-01-01T00:00:00Z"}
    lake = _variant(demo, tmp_path, "late_export.jsonl", [future])
    decisions = _run_steps(lake, tmp_path / "landing", policy)
    assert _verdicts(decisions).equals(_verdicts(expected))
    quarantined = lake.read(QUARANTINE).set_index("event_id")
    assert "time in the future" in quarantined.loc["from-2099", "reason"]


def test_a_future_row_let_in_by_a_lenient_source_never_moves_the_clock(demo, tmp_path):
    """Second line of defence: a source whose mapping allows any skew lets the 2099 row in; the judging
    clock is still the newest feedback not after now, so the demo is judged where it was."""
    _, expected, policy = demo
    lake = _variant(demo, tmp_path, "unused.jsonl", [])
    lenient = tmp_path / "mappings"
    lenient.mkdir()
    (lenient / "lenient_jsonl.yaml").write_text(_mapping_text("lenient_jsonl", "876000h"))
    (tmp_path / "landing" / "lenient_jsonl").mkdir()
    future = {**_bomb_lines("someone")[1], "event_id": "from-2099", "created_at": "2099-01-01T00:00:00Z"}
    (tmp_path / "landing" / "lenient_jsonl" / "late.jsonl").write_text(json.dumps(future) + "\n")
    scan = scan_landing_zone(tmp_path / "landing", [lenient])
    pipeline.ingest(lake, pipeline.pending_files(lake, scan.files), author_salt=SALT)
    assert "from-2099" in set(lake.read(RAW_FEEDBACK, columns=["event_id"]).event_id)
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score(lake, LexiconScorer(), Taxonomy.load())
    pipeline.aggregate_daily(lake)
    as_of = pipeline.baselines(lake, policy).stats["as_of"]
    assert pd.Timestamp(as_of) < pd.Timestamp("2026-10-14", tz="UTC")
    assert _verdicts(pipeline.decide(lake, policy).stats["decisions"]).equals(_verdicts(expected))


def _mapping_text(name: str, skew: str) -> str:
    from importlib import resources

    shipped = resources.files("rollback_assets.config").joinpath("mappings/feedback_jsonl.yaml").read_text()
    return shipped.replace("name: feedback_jsonl", f"name: {name}") + f"max_future_skew: {skew}\n"


def test_a_review_bomb_on_a_healthy_release_leaves_the_demo_decisions_unchanged(demo, tmp_path):
    _, expected, policy = demo
    lake = _variant(demo, tmp_path, "bomb.jsonl", _bomb_lines("troll-0001"))
    decisions = _run_steps(lake, tmp_path / "landing", policy)
    assert _acting(decisions) == _acting(expected)
    bombed = decisions[(decisions.flag_key == BOMB["flag"]) & (decisions.release_version == BOMB["version"])
                       & (decisions.cohort == f"device={BOMB['device']}|locale={BOMB['locale']}")].iloc[0]
    before = expected.set_index(["flag_key", "release_version", "cohort"]).loc[
        (BOMB["flag"], BOMB["version"], bombed.cohort)]
    # The author counts once, with their first word (a happy review): 301 posts, one more row, no more negatives.
    assert (bombed.state, bombed.n) == (before.state, before.n + 1)
    assert round(bombed.negative_share * bombed.n) == round(before.negative_share * before.n)
    note = json.loads(bombed.evidence)[0]
    assert note.startswith("suspected review bomb: 300 of ") and note.endswith("from 1 author; counted once")

    # Without the cap the same bomb would flip that healthy cohort to a flag change: the test can fail.
    uncapped = replace(policy, windows=replace(policy.windows, one_vote_per_author=False))
    rerun = pipeline.baselines(lake, uncapped).stats["frame"]
    flipped = make_decisions(rerun, pipeline.read_releases(lake), uncapped, LINEAGE, None)
    flipped = flipped[(flipped.flag_key == BOMB["flag"]) & (flipped.cohort == bombed.cohort)
                      & (flipped.release_version == BOMB["version"])].iloc[0]
    assert flipped.state == "act" and json.loads(flipped.evidence)[0].endswith("(one vote per author is off)")
