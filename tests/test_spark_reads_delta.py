"""delta-spark (local mode) reads the Delta versions the pandas engine wrote with delta-rs, and agrees."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from rollback_assets.core import aggregates, daily_store, pipeline
from rollback_assets.core.lake import Lake
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.schemas import AUTHOR_VOTES, NEGATIVES_DAILY, RAW_FEEDBACK, SCORED_SENTIMENT, SENTIMENT_DAILY
from rollback_assets.engines import spark_aggregate
from rollback_assets.engines.spark_lake import SparkLake
from rollback_assets.core.taxonomy import Taxonomy
from rollback_assets.defs.resources import LandingZoneResource

from conftest import make_demo_env


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None:
        if os.environ.get("CI"):
            pytest.fail("java is required in CI: PySpark cannot start (make test runs scripts/ensure_spark.sh)")
        pytest.skip("java is not installed: PySpark cannot start")
    from rollback_assets.engines.spark_session import delta_session

    session = delta_session("rollback-assets-reads-delta", master="local[1]", conf={"spark.driver.memory": "512m"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    """A small pipeline run: ingest in two batches (two raw versions), attribute, score."""
    env = make_demo_env(tmp_path_factory.mktemp("spark"), rows_per_day=40)
    lake = env.lake
    candidates = LandingZoneResource(path=str(env.landing)).scan().files
    first, rest = candidates[:4], candidates[4:]
    pipeline.ingest(lake, pipeline.pending_files(lake, first), author_salt="test-salt-not-secret")
    early_version = lake.version(RAW_FEEDBACK)
    pipeline.ingest(lake, pipeline.pending_files(lake, rest), author_salt="test-salt-not-secret")
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score(lake, LexiconScorer(), Taxonomy.load())
    assert lake.version(RAW_FEEDBACK) > early_version
    return lake, early_version


def _spark_frame(spark, uri: str, version: int):
    """Delta's own Spark reader, time-travelling to a version delta-rs wrote: what a Databricks notebook
    reading the lake for a postmortem does."""
    return spark.read.format("delta").option("versionAsOf", version).load(uri)


def test_spark_counts_match_pandas_at_each_version(spark, small_lake):
    lake, early_version = small_lake
    uri = lake.uri(RAW_FEEDBACK)
    for version in (early_version, lake.version(RAW_FEEDBACK)):
        expected = lake.read(RAW_FEEDBACK, version=version)
        frame = _spark_frame(spark, uri, version)
        assert frame.count() == len(expected) > 0
        assert {r.event_id for r in frame.select("event_id").collect()} == set(expected.event_id)
        by_day = {str(r.created_date): r["count"] for r in frame.groupBy("created_date").count().collect()}
        assert by_day == {str(k): int(v) for k, v in expected.groupby("created_date").size().items()}
    assert early_version is not None and len(lake.read(RAW_FEEDBACK, version=early_version)) < len(lake.read(RAW_FEEDBACK))


def test_spark_groupby_matches_pandas(spark, small_lake):
    lake, _ = small_lake
    scored = lake.read(SCORED_SENTIMENT)
    frame = _spark_frame(spark, lake.uri(SCORED_SENTIMENT), lake.version(SCORED_SENTIMENT))
    rows = frame.groupBy("attributed_flag", "sentiment_label").count().collect()
    got = {(r.attributed_flag, r.sentiment_label): r["count"] for r in rows}
    expected = scored.groupby(["attributed_flag", "sentiment_label"], dropna=False).size()
    assert got == {(None if f != f else f, label): int(n) for (f, label), n in expected.items()}
    means = {r.attributed_flag: r["avg(confidence)"] for r in frame.groupBy("attributed_flag").avg("confidence").collect()}
    for flag, value in scored.dropna(subset=["attributed_flag"]).groupby("attributed_flag").confidence.mean().items():
        assert means[flag] == pytest.approx(float(value), rel=1e-5)


def test_spark_aggregation_rewrites_the_days_a_dead_run_left_stale(spark, small_lake, tmp_path, monkeypatch):
    """The Spark job dies after moving a vote (its author_votes MERGE) and before the sums: the rerun finds
    the vote moved already, and rewrites the day it left from the votes commit's record
    (daily_store.stale_days), as the pandas engine does (tests/test_aggregates.py)."""
    shutil.copytree(small_lake[0].root, tmp_path / "lake")
    lake = Lake(tmp_path / "lake")
    spark_lake = SparkLake(spark, str(tmp_path / "lake"))
    assert spark_aggregate.aggregate(spark_lake)["full_rebuild"]
    scored = lake.read(SCORED_SENTIMENT)
    days = sorted(scored.created_date.astype(str).unique())
    voters = scored[scored.author_hash.notna() & scored.release_version.notna()]
    voter = voters[voters.created_date.astype(str) == days[-2]].iloc[0]
    earlier_day = days[1]
    lake.merge(SCORED_SENTIMENT, pd.DataFrame([voter]).assign(
        event_id="late-word", created_at=pd.Timestamp(earlier_day + " 10:00", tz="UTC"),
        created_date=pd.Timestamp(earlier_day).date()))
    write = SparkLake.write

    def killed_at_the_words(self, table, *args, **kwargs):
        if table is NEGATIVES_DAILY:
            raise SystemExit("killed")
        return write(self, table, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(SparkLake, "write", killed_at_the_words)
        with pytest.raises(SystemExit):
            spark_aggregate.aggregate(spark_lake)
    votes = lake.read(AUTHOR_VOTES)
    assert votes[votes.author_hash == voter.author_hash].first_event_id.tolist() == ["late-word"]
    stats = spark_aggregate.aggregate(spark_lake)
    assert stats["days_rewritten"] == sorted([earlier_day, str(voter.created_date)])
    rows = lake.read(SCORED_SENTIMENT, columns=daily_store.AGGREGATE_INPUT_COLUMNS)
    expected = SENTIMENT_DAILY.to_arrow(aggregates.daily(
        rows, pipeline.read_releases(lake), aggregates.repeat_votes(rows, aggregates.first_votes(rows).first_event_id)))
    key = list(SENTIMENT_DAILY.key)
    pd.testing.assert_frame_equal(lake.read(SENTIMENT_DAILY).sort_values(key).reset_index(drop=True),
                                  expected.to_pandas().sort_values(key).reset_index(drop=True), rtol=1e-5)
    assert spark_aggregate.aggregate(spark_lake)["days_rewritten"] == []  # nothing stale is left
