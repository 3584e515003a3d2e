"""Replay on generated reviews: the planted bad version is acted on, the good ones are not."""

import numpy as np
import pandas as pd
import pytest

from rollback_assets.core.policy import PolicyConfig
from rollback_assets.core.replay import REPLAY_COLUMNS, first_actions, inferred_releases, replay
from rollback_assets.core.replay_cli import run_replay_cli
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import Taxonomy

START = pd.Timestamp("2026-01-01", tz="UTC")
VERSIONS = [("1.0", 0), ("1.1", 10), ("1.2", 20), ("1.3", 30)]  # 1.2 is the bad one
BAD = "1.2"
NEGATIVE = ["the checkout is terrible and broken, I hate it", "awful update, search is useless and slow",
            "horrible, the app crashes constantly"]
POSITIVE = ["great app, I love the new checkout", "works well, search is fast and helpful", "excellent, very happy with it"]
SHIPPING = "the parcel delivery was terrible and the courier was awful"


def generated_feedback(seed=11, days=40, per_day=70):
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        live = [v for v, d in VERSIONS if d <= day]
        for i in range(per_day):
            # most reviews on the live version, old versions keep being reviewed
            version = live[-1] if rng.random() < 0.7 or len(live) == 1 else live[-2]
            bad = version == BAD
            text = (rng.choice(NEGATIVE) if rng.random() < (0.5 if bad else 0.15) else rng.choice(POSITIVE))
            if 31 <= day <= 34 and rng.random() < 0.5:  # off-topic incident on the newest version
                text, version = SHIPPING, live[-1]
            rows.append({
                "event_id": f"e{day}-{i}", "created_at": START + pd.Timedelta(days=day, minutes=int(rng.integers(0, 1440))),
                "text": text, "product": "app", "app_version": version if rng.random() > 0.1 else None,
                "rating": 1 if text in NEGATIVE else 5, "device": rng.choice(["mobile", "desktop"]), "locale": "en-US",
            })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def feedback():
    return generated_feedback()


@pytest.mark.parametrize("policy", ["policy_fixed_rule.yaml", "policy.yaml"])
def test_replay_acts_on_the_bad_version_only(feedback, policy):
    from importlib import resources

    config = PolicyConfig.from_dict(__import__("yaml").safe_load(
        resources.files("rollback_assets.config").joinpath(policy).read_text()))
    decisions = replay(feedback, None, config, LexiconScorer(), Taxonomy.load(), step=pd.Timedelta("12h"))
    assert list(decisions.columns) == REPLAY_COLUMNS
    acted = first_actions(decisions)
    assert set(acted.release_version) == {BAD}
    first = acted.decided_at.min()
    assert START + pd.Timedelta(days=20) < first < START + pd.Timedelta(days=30)  # while 1.2 was live
    # the shipping incident in days 31-34 lands on 1.3 and must not act
    assert not ((decisions.release_version == "1.3") & (decisions.state == "act")).any()
    assert decisions.decided_at.is_monotonic_increasing


def test_two_flags_replayed_together_decide_as_each_alone(feedback):
    """An act re-judges only its own flag's later looks: with two flags acting at different looks,
    each flag's decisions equal those of a replay of that flag alone."""
    other = generated_feedback(seed=5).assign(product="other")
    other["event_id"] = "o" + other.event_id
    both = pd.concat([feedback, other], ignore_index=True)
    config, taxonomy = PolicyConfig.load(), Taxonomy.load()
    window = {"step": pd.Timedelta("12h"), "start": START + pd.Timedelta(days=1), "end": START + pd.Timedelta(days=40)}
    together = replay(both, None, config, LexiconScorer(), taxonomy, **window)
    acted = first_actions(together).groupby("flag_key").decided_at.min()
    assert len(acted) == 2 and acted.nunique() == 2
    for flag, rows in together.groupby("flag_key"):
        alone = replay(both[both["product"] == flag], None, config, LexiconScorer(), taxonomy, **window)
        pd.testing.assert_frame_equal(rows.reset_index(drop=True), alone.reset_index(drop=True))


def test_inferred_releases_keep_old_builds_behind_the_live_one():
    feedback = pd.DataFrame({
        "product": "app", "created_at": pd.to_datetime(["2026-01-01", "2026-01-05", "2026-01-09"], utc=True),
        "app_version": ["2.0 build 7", "2.1 build 2", "1.9 build 99"],  # 1.9 first seen after 2.1
    })
    releases = inferred_releases(feedback, Taxonomy.load())
    ordered = releases.sort_values("released_at").version.tolist()
    assert ordered == ["1.9 build 99", "2.0 build 7", "2.1 build 2"]
    assert "other" in releases.surfaces.iloc[0] and "shipping" not in releases.surfaces.iloc[0]


def test_cli_writes_decisions_and_timeline(feedback, tmp_path):
    path = tmp_path / "feedback.parquet"
    feedback.to_parquet(path)
    out = tmp_path / "out"
    summary = run_replay_cli(["--feedback", str(path), "--step", "1d", "--out", str(out),
                              "--policy", str(__import__("pathlib").Path(__file__).resolve().parents[1]
                                              / "rollback_assets" / "config" / "policy.yaml")])
    decisions = pd.read_csv(out / "decisions.csv")
    assert set(REPLAY_COLUMNS) <= set(decisions.columns)
    assert summary["acted_on"] == [BAD]
    assert set(decisions.state) <= {"act", "hold", "pass", "insufficient_data"}
    png = (out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_timeline_of_a_small_export_says_why_it_has_no_lines(tmp_path, recwarn):
    """Too few rows per version and week for a line: the chart says so instead of warning about an
    empty legend (what a 294-row export of 21 apps printed)."""
    from rollback_assets.core.replay_cli import plot_timeline

    scored = pd.DataFrame({
        "topic_excluded": False, "attributed_flag": "app", "release_version": ["1.0", "1.1"],
        "created_at": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True), "sentiment_label": "negative",
    })
    path = plot_timeline(scored, pd.DataFrame(columns=REPLAY_COLUMNS), tmp_path / "timeline.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [w for w in recwarn if "legend" in str(w.message)]


def test_replay_last_look_equals_the_asset_decisions(first_run, demo_env):
    """One decision path: replay's look at the assets' clock reproduces their decisions, ids and all,
    with the scorer the assets chose (`--scorer auto`: the same rows train the same text model)."""
    from rollback_assets.core.replay import scorer_for
    from rollback_assets.core.schemas import RAW_FEEDBACK, RELEASE_ARTIFACTS

    assets = first_run.tables["rollback_decisions"]
    as_of = assets.window_end.max()
    feedback = demo_env.lake.read(RAW_FEEDBACK, version=first_run.versions["raw_feedback"])
    releases = demo_env.lake.read(RELEASE_ARTIFACTS)
    taxonomy, config = Taxonomy.load(), PolicyConfig.load()
    scorer = scorer_for("auto", feedback, taxonomy, str(demo_env.lake_root))
    decisions = replay(feedback, releases, config, scorer, taxonomy, step=pd.Timedelta("1us"), start=as_of, end=as_of)
    columns = ["decision_id", "flag_key", "release_version", "cohort", "baseline_kind", "state", "action", "n", "baseline_n"]
    mine = decisions[columns].sort_values("decision_id").reset_index(drop=True)
    theirs = assets[assets.window_end == as_of][columns].sort_values("decision_id").reset_index(drop=True)
    assert len(theirs) > 10 and (theirs.state == "act").sum() == 1
    pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
    assert set(decisions.scorer_version.iloc[0].split(",")) == set(assets.scorer_version.iloc[0].split(","))


def test_replay_reads_a_play_export_with_builds_and_judges_superseded_releases(tmp_path):
    """A Play export without appId, builds with suffixes: builds pool, a superseded bad release acts."""
    rng = np.random.default_rng(5)
    rows = []
    schedule = [("3.1", 0), ("3.2", 8), ("3.3", 16)]  # 3.2 is bad and superseded on day 16
    for d in range(30):
        live = [v for v, start in schedule if start <= d]
        for i in range(60):
            version = live[-1] if rng.random() < 0.6 or len(live) == 1 else rng.choice(live[:-1])
            bad = version == "3.2" and rng.random() < 0.6
            stars = 1 if bad or rng.random() < 0.3 else 5
            rows.append({"reviewId": f"r{d}-{i}", "content": "checkout broken" if stars == 1 else "works well",
                         "score": stars, "thumbsUpCount": 0,
                         "reviewCreatedVersion": f"{version}.{rng.integers(0, 3)} build {rng.integers(1, 9)} 5061{d % 10}",
                         "at": (START + pd.Timedelta(days=d, minutes=int(rng.integers(0, 1440)))).strftime("%Y-%m-%d %H:%M:%S"),
                         "appVersion": ""})
    path = tmp_path / "play.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    summary = run_replay_cli(["--feedback", str(path), "--out", str(tmp_path / "out"), "--step", "12h",
                              "--lake", str(tmp_path / "lake")])
    decisions = pd.read_csv(tmp_path / "out" / "decisions.csv")
    assert set(decisions.release_version.astype(str)) == {"3.1", "3.2", "3.3"}
    assert summary["acted_on"] == ["3.2"]
    late = decisions[(decisions.release_version.astype(str) == "3.2") & (decisions.state == "act")]
    assert (~late.release_live.astype(bool)).any() and set(late.action[~late.release_live.astype(bool)]) == {"block_release"}


def test_a_second_llm_replay_of_the_same_file_sends_no_request(tmp_path, monkeypatch, feedback):
    """Replay shares the lake's LLM score cache with the assets: the same texts are never paid twice."""
    from llm_stub_server import StubServer

    unrated = feedback.head(600).assign(rating=None)  # tickets and chats: the text scorer decides
    path = tmp_path / "feedback.parquet"
    unrated.to_parquet(path)
    with StubServer(api_key="sk-replay-test") as stub:
        monkeypatch.setenv("OPENAI_BASE_URL", stub.openai_base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-replay-test")
        args = ["--feedback", str(path), "--out", str(tmp_path / "out"), "--scorer", "openai", "--lake", str(tmp_path / "lake")]
        run_replay_cli(args)
        first = stub.stats()["requests"]
        run_replay_cli(args)
        assert first > 0 and stub.stats()["requests"] == first
    decisions = pd.read_csv(tmp_path / "out" / "decisions.csv")
    assert decisions.scorer_version.str.contains("openai:").all()
