"""Concurrent runs never strand rows between steps and never duplicate them.

The steps run as the graph runs them (ingest → enrich → score) on a real local Delta lake, in threads
so that commits really interleave. The watermarks are committed Delta versions, so the order in which
runs started does not matter; a lost commit race is retried (see test_object_storage for a forced
MERGE conflict).
"""

from __future__ import annotations

import threading

import pytest

from rollback_assets.core import demo_data, pipeline
from rollback_assets.core.mapping import load_mapping
from rollback_assets.core.lake import Lake
from rollback_assets.core.releases import load_releases_yaml
from rollback_assets.core.policy import PolicyConfig
from rollback_assets.core.schemas import (
    DECISIONS, ENRICHED_FEEDBACK, LANDING_FILES, QUARANTINE, RAW_FEEDBACK, SCORED_SENTIMENT,
)
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import Taxonomy


def _landing_zone(tmp_path, malformed: bool) -> dict:
    """Daily landing files (about 120 rows each) and a lake with the releases registered."""
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=120, days=12))
    landing, releases_file = tmp_path / "landing", tmp_path / "releases.yaml"
    files = demo_data.write_landing_zone(frame, landing, releases_file, period_days=1, malformed=malformed)
    lake = Lake(tmp_path / "lake")
    pipeline.register_releases(lake, load_releases_yaml(releases_file))
    jobs = [(f, load_mapping(f.parent.name)) for f in files]
    return {"lake": lake, "files": jobs, "rows": len(frame)}


@pytest.fixture
def zone(tmp_path):
    return _landing_zone(tmp_path, malformed=False)


POLICY = PolicyConfig.load()


def ingest(lake: Lake, files) -> None:
    pipeline.ingest(lake, pipeline.pending_files(lake, files), author_salt="concurrency-test-salt")


def downstream(lake: Lake) -> None:
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score(lake, LexiconScorer(), Taxonomy.load())
    pipeline.aggregate_daily(lake)


def assert_every_row_everywhere_once(lake: Lake, expected_rows: int) -> None:
    raw = lake.read(RAW_FEEDBACK, columns=["event_id"]).event_id
    assert len(raw) == expected_rows and raw.is_unique
    for table in (ENRICHED_FEEDBACK, SCORED_SENTIMENT):
        ids = lake.read(table, columns=["event_id"]).event_id
        assert ids.is_unique, f"{table.name}: {ids.duplicated().sum()} duplicate rows"
        missing = set(raw) - set(ids)
        assert not missing, f"{table.name}: {len(missing)} of {len(raw)} rows never arrived"
        assert len(ids) == expected_rows


class GatedLake(Lake):
    """A run that has read its files and stamped its rows, then stalls just before its raw_feedback
    MERGE until the test opens the gate (a slow backfill that started first and commits last)."""

    def __init__(self, root):
        super().__init__(root)
        self.arrived, self.gate = threading.Event(), threading.Event()

    def merge(self, table, frame, **kwargs):
        if table is RAW_FEEDBACK and not self.gate.is_set():
            self.arrived.set()
            assert self.gate.wait(120), "the gate was never opened"
        return super().merge(table, frame, **kwargs)


def test_a_run_that_starts_first_but_commits_last_is_enriched_and_scored(zone):
    lake, files = zone["lake"], zone["files"]
    backfill, small = files[:-2], files[-2:]  # the backfill holds most rows, the small run one day
    slow = GatedLake(lake.root)
    errors = []

    def backfill_run():
        try:
            ingest(slow, backfill)
            downstream(slow)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=backfill_run)
    thread.start()
    assert slow.arrived.wait(120), "the backfill never reached its commit"
    # The later, smaller run commits, enriches and scores first: its stamps are newer than the backfill's.
    ingest(lake, small)
    downstream(lake)
    assert lake.read(SCORED_SENTIMENT, columns=["event_id"]).shape[0] < zone["rows"]
    slow.gate.set()
    thread.join(300)
    assert not thread.is_alive() and not errors, errors

    assert_every_row_everywhere_once(lake, zone["rows"])
    # A later run on nothing new changes nothing.
    versions = (lake.version(ENRICHED_FEEDBACK), lake.version(SCORED_SENTIMENT))
    downstream(lake)
    assert (lake.version(ENRICHED_FEEDBACK), lake.version(SCORED_SENTIMENT)) == versions


def test_a_late_commit_after_downstream_ran_is_picked_up_by_the_next_run(zone):
    """The backfill commits after the small run's downstream steps finished and runs no steps of its
    own: the next scheduled run still finds its rows (by commit, not by clock)."""
    lake, files = zone["lake"], zone["files"]
    slow = GatedLake(lake.root)
    thread = threading.Thread(target=ingest, args=(slow, files[:-1]))
    thread.start()
    assert slow.arrived.wait(120)
    ingest(lake, files[-1:])
    downstream(lake)
    slow.gate.set()
    thread.join(300)
    downstream(lake)
    assert_every_row_everywhere_once(lake, zone["rows"])


def test_four_concurrent_runs_on_different_files(tmp_path):
    """Four runs at once, each on its own files (one holds the malformed lines): every valid row in
    raw, enriched and scored once; every bad line in quarantine once; every file in the ledger once;
    each run's decisions merged without a duplicate id."""
    zone = _landing_zone(tmp_path, malformed=True)
    lake, jobs = zone["lake"], zone["files"]
    groups = [jobs[i::4] for i in range(4)]
    errors = []

    def run(group):
        try:
            own = Lake(lake.root)
            ingest(own, group)
            downstream(own)
            pipeline.baselines(own, POLICY)
            pipeline.decide(own, POLICY)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    # Each run's own downstream steps covered its rows: nothing waits for a later run.
    assert_every_row_everywhere_once(lake, zone["rows"])
    assert lake.read(SCORED_SENTIMENT, columns=["sentiment_label"]).sentiment_label.notna().all()
    quarantine = lake.read(QUARANTINE)
    assert len(quarantine) == 8 and not quarantine.duplicated(["source_file", "source_row"]).any()
    ledger = lake.read(LANDING_FILES)
    assert len(ledger) == len(jobs) and ledger.file_digest.is_unique
    assert sorted(ledger.path) == sorted(str(f) for f, _ in jobs)
    decisions = lake.read(DECISIONS, columns=["decision_id"]).decision_id
    assert len(decisions) and decisions.is_unique


@pytest.mark.parametrize("attempt", range(4))
def test_four_first_writers_of_a_table_land_its_rows_once(tmp_path, attempt):
    """Writers that all find no table would each write a version 0 (delta-rs does not refuse the second
    creation) and every batch would land: on a local lake they take turns creating it, and the others
    merge into what the first made."""
    import pandas as pd

    from rollback_assets.core.schemas import AUTHOR_VOTES

    votes = pd.DataFrame({
        "flag_key": "f", "release_version": "1", "cohort": "all", "author_hash": [f"a{i}" for i in range(50)],
        "first_event_id": [f"e{i}" for i in range(50)], "first_at": pd.Timestamp("2026-09-01", tz="UTC"),
        "first_date": pd.Timestamp("2026-09-01").date(),
    })
    start, errors = threading.Barrier(4), []

    def write():
        try:
            own = Lake(tmp_path / "lake")
            start.wait()
            own.merge(AUTHOR_VOTES, votes)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    stored = Lake(tmp_path / "lake").read(AUTHOR_VOTES)
    assert len(stored) == 50 and not stored.author_hash.duplicated().any()
