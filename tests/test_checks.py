"""Asset checks read what the newest run wrote (its days, from the Delta log), not the whole history.

A lake of four days, one run per day, then the checks called as Dagster calls them.
"""

from __future__ import annotations

import pandas as pd
import pytest

from rollback_assets.core import demo_data, pipeline
from rollback_assets.core.lake import Lake
from rollback_assets.core.mapping import load_mapping
from rollback_assets.core.releases import load_releases_yaml
from rollback_assets.core.schemas import ENRICHED_FEEDBACK, QUARANTINE, RAW_FEEDBACK, SCORED_SENTIMENT
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import Taxonomy
from rollback_assets.defs import checks
from rollback_assets.defs.resources import LakeResource


def day(d: int) -> str:
    return str((demo_data.START + pd.Timedelta(days=d)).date())


def run(lake: Lake, files) -> None:
    pipeline.ingest(lake, pipeline.pending_files(lake, [(f, load_mapping(f.parent.name)) for f in files]),
                    author_salt="checks-test-salt")
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score(lake, LexiconScorer(), Taxonomy.load())


def duplicate_a_row_of(lake: Lake, d: int, stamp: str | None = None) -> None:
    """A second copy of one of day d's raw rows, written behind the MERGE's back (`stamp`: as an ingest
    run of its own would mark its commit)."""
    rows = lake.read_arrow(RAW_FEEDBACK, days=[day(d)])
    lake.append(RAW_FEEDBACK, rows.slice(0, 1), metadata={"ingested_at": stamp} if stamp else None)


@pytest.fixture(scope="module")
def four_days(tmp_path_factory):
    """Days 0-2 through ingest, enrich and score, one run each; a duplicate on day 0 (an old day, as
    its own write); then day 3 ingested only (the newest ingest)."""
    root = tmp_path_factory.mktemp("checks")
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=150, days=4))
    files = demo_data.write_landing_zone(frame, root / "landing", root / "releases.yaml", period_days=1, malformed=False)
    lake = Lake(root / "lake")
    pipeline.register_releases(lake, load_releases_yaml(root / "releases.yaml"))
    by_day: dict[str, list] = {}
    for f in files:
        by_day.setdefault(f.stem.rsplit("_", 1)[-1], []).append(f)
    groups = list(by_day.values())
    for group in groups[:3]:
        run(lake, group)
    duplicate_a_row_of(lake, 0, stamp="2000-01-01T00:00:00+00:00")
    pipeline.ingest(lake, pipeline.pending_files(lake, [(f, load_mapping(f.parent.name)) for f in groups[3]]),
                    author_salt="checks-test-salt")
    return lake


def test_the_newest_run_is_found_in_the_delta_log(four_days):
    lake = four_days
    assert lake.newest_run_partitions(RAW_FEEDBACK, "ingested_at") == {day(3)}
    assert lake.newest_run_partitions(ENRICHED_FEEDBACK, "enriched_at") == {day(2)}
    assert checks.scored_days(lake) == {day(2)}  # score marks only a run's last commit


def test_unique_event_id_checks_the_days_the_newest_ingest_wrote(four_days):
    """Day 0's duplicate is outside the newest ingest's days: the check no longer reads the whole table
    (its docstring says why that is sound)."""
    result = checks.raw_feedback_unique_event_id(lake=LakeResource(root=str(four_days.root)))
    assert result.passed is True
    assert result.metadata["days_checked"].value == [day(3)]
    assert result.metadata["rows"].value == len(four_days.read(RAW_FEEDBACK, columns=["event_id"], days=[day(3)]))


def test_a_duplicate_in_the_newest_days_fails_the_check(four_days, tmp_path):
    import shutil
    shutil.copytree(four_days.root, tmp_path / "lake")
    lake = Lake(tmp_path / "lake")
    duplicate_a_row_of(lake, 3)  # an unmarked commit after the run counts as the run's
    result = checks.raw_feedback_unique_event_id(lake=LakeResource(root=str(lake.root)))
    assert result.passed is False and result.metadata["duplicate_ids"].value == 1


def test_sampling_checks_read_the_days_the_newest_run_wrote(four_days):
    lake, resource = four_days, LakeResource(root=str(four_days.root))
    scored = lake.read(SCORED_SENTIMENT, columns=["created_date", "sentiment_label"])
    newest = scored[scored.created_date.astype(str) == day(2)]
    assert (scored.created_date.astype(str) != day(2)).any()
    topics = checks.negatives_have_topics(lake=resource)
    assert topics.metadata["negative_rows"].value == int((newest.sentiment_label == "negative").sum())
    enriched = lake.read(ENRICHED_FEEDBACK, columns=["created_date", "attribution"])
    rate = checks.attribution_rate_check(lake=resource)
    newest_enriched = enriched[enriched.created_date.astype(str) == day(2)]
    assert sum(rate.metadata["by_method"].value.values()) == int(newest_enriched.attribution.notna().sum())


def test_row_counts_come_from_the_delta_log_and_follow_deletes(four_days, tmp_path):
    """The quarantine share and the text model's rated rows count from the log's per-file record and null
    counts (no file opened)."""
    import shutil
    shutil.copytree(four_days.root, tmp_path / "lake")
    lake = Lake(tmp_path / "lake")
    rows = len(lake.read(RAW_FEEDBACK, columns=["event_id"]))
    assert lake.count_rows(RAW_FEEDBACK) == rows
    lake.delete(RAW_FEEDBACK, f"created_date = '{day(1)}'")
    assert lake.count_rows(RAW_FEEDBACK) == len(lake.read(RAW_FEEDBACK, columns=["event_id"])) < rows
    ratings = lake.read(RAW_FEEDBACK, columns=["rating"]).rating
    assert 0 < lake.count_rows(RAW_FEEDBACK, non_null="rating") == int(ratings.notna().sum()) < len(ratings)
    result = checks.raw_feedback_quarantine_share(lake=LakeResource(root=str(lake.root)))
    assert result.metadata["quarantined_rows"].value == lake.count_rows(QUARANTINE) == (
        len(lake.read(QUARANTINE, columns=["reason"])) if lake.exists(QUARANTINE) else 0)
