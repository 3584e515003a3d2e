"""sentiment_daily is maintained a day at a time and always equals a recomputation from the rows.

The steps run as the graph runs them (ingest → enrich → score → sentiment_daily → baselines) on a real
local Delta lake, one landing file at a time, so each run is an incremental batch.
"""

from __future__ import annotations

import pandas as pd
import pytest

from rollback_assets.core import aggregates, daily_store, demo_data, negatives_daily, pipeline
from rollback_assets.core.baselines import compute_baselines
from rollback_assets.core.mapping import load_mapping
from rollback_assets.core.lake import Lake
from rollback_assets.core.policy import PolicyConfig
from rollback_assets.core.releases import load_releases_yaml
from rollback_assets.core.schemas import AUTHOR_VOTES, NEGATIVES_DAILY, SCORED_SENTIMENT, SENTIMENT_DAILY
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import Taxonomy

DAYS = 12
LATE = 3  # the day whose file arrives last


def run(lake: Lake, files) -> pipeline.StepResult:
    pipeline.ingest(lake, pipeline.pending_files(lake, [(f, load_mapping(f.parent.name)) for f in files]),
                    author_salt="aggregates-test-salt")
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score(lake, LexiconScorer(), Taxonomy.load())
    return pipeline.aggregate_daily(lake)


def day(d: int) -> str:
    return str((demo_data.START + pd.Timedelta(days=d)).date())


def stored(lake: Lake) -> pd.DataFrame:
    frame = lake.read(SENTIMENT_DAILY)
    frame["created_date"] = frame.created_date.astype(str)
    return frame.sort_values(list(SENTIMENT_DAILY.key)).reset_index(drop=True)


def recomputed(lake: Lake) -> pd.DataFrame:
    """sentiment_daily from scratch: every scored row, votes over the whole history."""
    rows = lake.read(SCORED_SENTIMENT, columns=daily_store.AGGREGATE_INPUT_COLUMNS)
    frame = aggregates.daily(rows, pipeline.read_releases(lake), aggregates.repeat_votes(rows, aggregates.first_votes(rows).first_event_id))
    frame = SENTIMENT_DAILY.to_arrow(frame).to_pandas()
    frame["created_date"] = frame.created_date.astype(str)
    return frame.sort_values(list(SENTIMENT_DAILY.key)).reset_index(drop=True)


@pytest.fixture(scope="module")
def lake_with_a_late_day(tmp_path_factory):
    """Every day's file but day LATE's ingested one run per file; then day LATE's file, late."""
    root = tmp_path_factory.mktemp("aggregates")
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=150, days=DAYS))
    late = frame.created_at.dt.date.astype(str) == day(LATE)
    files = demo_data.write_landing_zone(frame[~late], root / "landing", root / "releases.yaml", period_days=1, malformed=False)
    lake = Lake(root / "lake")
    pipeline.register_releases(lake, load_releases_yaml(root / "releases.yaml"))
    by_day: dict[str, list] = {}
    for f in files:
        by_day.setdefault(f.stem.rsplit("_", 1)[-1], []).append(f)
    for group in by_day.values():  # several incremental batches
        run(lake, group)
    policy = PolicyConfig.load()
    before = {
        "daily": stored(lake), "version": lake.version(SENTIMENT_DAILY),
        "early": pipeline.baselines(lake, policy, demo_data.START + pd.Timedelta(days=LATE - 1, hours=12)).stats["frame"],
        "after": pipeline.baselines(lake, policy, demo_data.START + pd.Timedelta(days=LATE + 2, hours=12)).stats["frame"],
    }
    result = run(lake, demo_data.write_landing_zone(frame[late], root / "late", period_days=1, malformed=False))
    after = {
        "daily": stored(lake), "version": lake.version(SENTIMENT_DAILY),
        "early": pipeline.baselines(lake, policy, demo_data.START + pd.Timedelta(days=LATE - 1, hours=12)).stats["frame"],
        "after": pipeline.baselines(lake, policy, demo_data.START + pd.Timedelta(days=LATE + 2, hours=12)).stats["frame"],
    }
    return lake, before, after, result


def test_a_late_file_rewrites_only_its_day(lake_with_a_late_day):
    lake, before, after, result = lake_with_a_late_day
    assert result.stats["days_rewritten"] == [day(LATE)] and not result.stats["full_rebuild"]
    # the commits of the late run added or removed files in that day's partition only
    assert lake.touched_partitions(SENTIMENT_DAILY, before["version"], after["version"]) == {day(LATE)}
    old, new = before["daily"], after["daily"]
    assert not (old.created_date == day(LATE)).any() and (new.created_date == day(LATE)).any()
    pd.testing.assert_frame_equal(old, new[new.created_date != day(LATE)].reset_index(drop=True))


def test_only_the_decisions_that_read_the_late_day_change(lake_with_a_late_day):
    _, before, after, _ = lake_with_a_late_day
    columns = ["flag_key", "release_version", "cohort", "baseline_kind", "n", "n_negative", "baseline_n", "baseline_n_negative"]
    key = columns[:4]

    def counts(frame):
        return frame[columns].sort_values(key).reset_index(drop=True)

    pd.testing.assert_frame_equal(counts(before["early"]), counts(after["early"]))  # judged before the late day
    grown = counts(after["after"]).merge(counts(before["after"]), on=key, suffixes=("", "_before"))
    assert (grown.n >= grown.n_before).all() and (grown.n > grown.n_before).any()


def test_incremental_sums_equal_a_recomputation_from_the_rows(lake_with_a_late_day):
    lake, _, after, _ = lake_with_a_late_day
    pd.testing.assert_frame_equal(after["daily"], recomputed(lake), check_dtype=False)
    assert after["daily"].n_relevant.sum() + after["daily"].n_excluded.sum() == len(
        lake.read(SCORED_SENTIMENT, columns=["release_version"]).dropna())


def test_an_authors_earlier_word_moves_their_vote_and_only_those_days_change(lake_with_a_late_day, tmp_path):
    source, _, _, _ = lake_with_a_late_day
    lake = Lake(tmp_path / "lake")
    releases = pipeline.read_releases(source)
    pipeline.register_releases(lake, releases)
    scored = source.read(SCORED_SENTIMENT)
    lake.merge(SCORED_SENTIMENT, scored)
    pipeline.aggregate_daily(lake)
    # an author's first word, on day 8, gets an earlier one (a late delivery) on day 2 ...
    voter = scored[(scored.created_date.astype(str) == day(8)) & scored.author_hash.notna()
                   & scored.release_version.notna()].iloc[0]
    earlier = pd.DataFrame([voter]).assign(event_id="late-word", created_at=pd.Timestamp(day(2) + " 10:00", tz="UTC"),
                                           created_date=pd.Timestamp(day(2)).date())
    version = lake.version(SENTIMENT_DAILY)
    lake.merge(SCORED_SENTIMENT, earlier)
    result = pipeline.aggregate_daily(lake)
    assert result.stats["days_rewritten"] == [day(2), day(8)]
    assert lake.touched_partitions(SENTIMENT_DAILY, version, lake.version(SENTIMENT_DAILY)) == {day(2), day(8)}
    votes = lake.read(AUTHOR_VOTES)
    assert votes[votes.author_hash == voter.author_hash].first_event_id.tolist() == ["late-word"]
    daily = stored(lake)
    assert daily[daily.created_date == day(8)].repeat_vote.any()
    pd.testing.assert_frame_equal(daily, recomputed(lake), check_dtype=False)
    # ... and when that earlier word is withdrawn, the vote goes back to day 8
    lake.table(SCORED_SENTIMENT).delete("event_id = 'late-word'")
    result = pipeline.aggregate_daily(lake)
    assert result.stats["days_rewritten"] == [day(2), day(8)]
    votes = lake.read(AUTHOR_VOTES)
    assert votes[votes.author_hash == voter.author_hash].first_event_id.tolist() == [voter.event_id]
    pd.testing.assert_frame_equal(stored(lake), recomputed(lake), check_dtype=False)


def test_a_run_that_dies_after_moving_a_vote_leaves_the_day_it_left_to_the_next_run(lake_with_a_late_day, tmp_path,
                                                                                      monkeypatch):
    source, _, _, _ = lake_with_a_late_day
    lake = Lake(tmp_path / "lake")
    pipeline.register_releases(lake, pipeline.read_releases(source))
    scored = source.read(SCORED_SENTIMENT)
    lake.merge(SCORED_SENTIMENT, scored)
    pipeline.aggregate_daily(lake)
    voter = scored[(scored.created_date.astype(str) == day(8)) & scored.author_hash.notna()
                   & scored.release_version.notna()].iloc[0]
    lake.merge(SCORED_SENTIMENT, pd.DataFrame([voter]).assign(
        event_id="late-word", created_at=pd.Timestamp(day(2) + " 10:00", tz="UTC"), created_date=pd.Timestamp(day(2)).date()))
    with monkeypatch.context() as patched:  # killed after the votes commit, before the words and the sums
        def killed(*args, **kwargs):
            raise SystemExit("killed")
        patched.setattr(Lake, "replace_partitions", killed)
        with pytest.raises(SystemExit):
            pipeline.aggregate_daily(lake)
    votes = lake.read(AUTHOR_VOTES)
    assert votes[votes.author_hash == voter.author_hash].first_event_id.tolist() == ["late-word"]  # the vote moved
    # The rerun finds the vote moved already; the votes commit's record names day 8 (the day it left).
    result = pipeline.aggregate_daily(lake)
    assert result.stats["days_rewritten"] == [day(2), day(8)]
    pd.testing.assert_frame_equal(stored(lake), recomputed(lake), check_dtype=False)
    assert not pipeline.aggregate_daily(lake).stats["days_rewritten"]  # the sums caught up: nothing stale left


def test_a_change_of_releases_rebuilds_every_day(lake_with_a_late_day, tmp_path):
    source, _, after, _ = lake_with_a_late_day
    lake = Lake(tmp_path / "lake")
    releases = pipeline.read_releases(source)
    pipeline.register_releases(lake, releases)
    lake.merge(SCORED_SENTIMENT, source.read(SCORED_SENTIMENT))
    assert pipeline.aggregate_daily(lake).stats["full_rebuild"]
    assert not pipeline.aggregate_daily(lake).stats["days_rewritten"]  # nothing new: nothing rewritten
    moved = releases.iloc[[-1]].assign(released_at=releases.released_at.iloc[-1] - pd.Timedelta(hours=5))
    pipeline.register_releases(lake, moved)  # a release time corrected: every row's age may change
    result = pipeline.aggregate_daily(lake)
    assert result.stats["full_rebuild"] and len(result.stats["days_rewritten"]) == DAYS
    pd.testing.assert_frame_equal(stored(lake), recomputed(lake), check_dtype=False)


def _summed_without_day_5(source: Lake, root) -> Lake:
    """`source`'s scored rows in a new lake, summed, then day 5's sums lost (a restore gone wrong)."""
    lake = Lake(root / "lake")
    pipeline.register_releases(lake, pipeline.read_releases(source))
    lake.merge(SCORED_SENTIMENT, source.read(SCORED_SENTIMENT))
    pipeline.aggregate_daily(lake)
    lake.delete(SENTIMENT_DAILY, f"created_date = '{day(5)}'")
    return lake


def test_a_person_can_have_chosen_days_or_every_day_summed_again(lake_with_a_late_day, tmp_path):
    """A day's sums lost or suspect (a restore gone wrong, a check): nothing new touched it, so the next run
    leaves it as it is; naming the day (`rederive`, the step's `rederive_days`) rewrites it from its scored
    rows, and `rebuild` every day."""
    lake = _summed_without_day_5(lake_with_a_late_day[0], tmp_path)
    assert not pipeline.aggregate_daily(lake).stats["days_rewritten"]
    assert day(5) not in set(stored(lake).created_date)
    result = pipeline.aggregate_daily(lake, rederive=[day(5)])
    assert result.stats["days_rewritten"] == [day(5)] and not result.stats["full_rebuild"]
    pd.testing.assert_frame_equal(stored(lake), recomputed(lake), check_dtype=False)
    result = pipeline.aggregate_daily(lake, rebuild=True)
    assert result.stats["full_rebuild"] and len(result.stats["days_rewritten"]) == DAYS
    pd.testing.assert_frame_equal(stored(lake), recomputed(lake), check_dtype=False)
    assert not pipeline.aggregate_daily(lake).stats["days_rewritten"]


def test_the_steps_config_names_days_to_sum_again_and_refuses_a_day_it_cannot_read(lake_with_a_late_day, tmp_path):
    """The same from the launchpad: sentiment_daily alone, `rederive_days` in the scored_sentiment step's config;
    a day written another way fails the step naming the key."""
    import dagster as dg

    from rollback_assets.defs.assets import scored_sentiment
    from rollback_assets.defs.resources import LakeResource, ScorerResource, SettingsResource

    lake = _summed_without_day_5(lake_with_a_late_day[0], tmp_path)
    resources = {"lake": LakeResource(root=str(tmp_path / "lake")), "scorer": ScorerResource(kind="lexicon"),
                 "settings": SettingsResource()}

    def run(config: dict):
        return dg.materialize([scored_sentiment], selection=[dg.AssetKey("sentiment_daily")], resources=resources,
                              run_config={"ops": {"scored_sentiment": {"config": config}}}, raise_on_error=False)

    result = run({"rederive_days": [day(5)]})
    assert result.success
    [materialization] = result.asset_materializations_for_node("scored_sentiment")
    assert materialization.asset_key == dg.AssetKey("sentiment_daily")
    assert materialization.metadata["days_rewritten_list"].value == [day(5)]
    pd.testing.assert_frame_equal(stored(lake), recomputed(lake), check_dtype=False)
    refused = run({"rederive_days": ["5/10/2026"]})
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "rederive_days: each day as YYYY-MM-DD" in failure.event_specific_data.error.to_string()


def test_a_change_of_the_aggregation_code_rebuilds_every_day(lake_with_a_late_day, tmp_path, monkeypatch):
    """Sums made by older code must not stay under the days later runs do not touch: an edit to the code
    that turns rows into sums (aggregates, negatives_daily or what they import) rebuilds every day once,
    as a change of releases does; the same code again rewrites nothing."""
    from rollback_assets.core import code_digest

    source, _, _, _ = lake_with_a_late_day
    lake = Lake(tmp_path / "lake")
    pipeline.register_releases(lake, pipeline.read_releases(source))
    lake.merge(SCORED_SENTIMENT, source.read(SCORED_SENTIMENT))
    assert pipeline.aggregate_daily(lake).stats["full_rebuild"]
    assert not pipeline.aggregate_daily(lake).stats["days_rewritten"]
    edited = code_digest.source_digest

    def after_an_edit(name: str) -> str:
        return "edited" if name == aggregates.__name__ else edited(name)

    monkeypatch.setattr(code_digest, "source_digest", after_an_edit)
    result = pipeline.aggregate_daily(lake)
    assert result.stats["full_rebuild"] and len(result.stats["days_rewritten"]) == DAYS
    pd.testing.assert_frame_equal(stored(lake), recomputed(lake), check_dtype=False)
    assert not pipeline.aggregate_daily(lake).stats["days_rewritten"]


def _every_table(lake: Lake) -> dict[str, pd.DataFrame]:
    """The scored rows and the daily tables, sorted, without what a write stamps (when it ran)."""
    tables = {}
    for table in (SCORED_SENTIMENT, SENTIMENT_DAILY, NEGATIVES_DAILY, AUTHOR_VOTES):
        frame = lake.read(table).drop(columns=["ingested_at", "enriched_at"], errors="ignore")
        frame = frame.astype({c: str for c in frame.columns if frame[c].dtype in (object, "category")})
        tables[table.name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return tables


def test_a_first_build_summed_while_scoring_equals_scoring_then_summing(tmp_path, monkeypatch):
    """score_and_aggregate on a first build: chunks scored in the worker process and each chunk's days
    summed from its rows as they come back, votes from enriched_feedback. Every table equals what
    `score` (one chunk, in this process) then `aggregate_daily` make; so does the next, incremental, batch
    (there score_and_aggregate is score then aggregate_daily); and the markers let the next run rewrite nothing."""
    from rollback_assets.core.scoring import worker

    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=150, days=DAYS))
    last_day = frame.created_at.dt.date.astype(str) == day(DAYS - 1)
    files = demo_data.write_landing_zone(frame[~last_day], tmp_path / "landing", tmp_path / "releases.yaml",
                                         period_days=1, malformed=False)
    later = demo_data.write_landing_zone(frame[last_day], tmp_path / "later", period_days=1, malformed=False)
    submitted = []
    worker_submit = worker.WorkerProcess.submit
    monkeypatch.setattr(worker.WorkerProcess, "submit", lambda self, rows: submitted.append(rows.num_rows) or worker_submit(self, rows))
    lakes = {}
    for name, chunk_rows in (("in_turn", pipeline.CHUNK_ROWS), ("alongside", 400)):
        lake = lakes[name] = Lake(tmp_path / name)
        pipeline.register_releases(lake, load_releases_yaml(tmp_path / "releases.yaml"))
        monkeypatch.setattr(pipeline, "CHUNK_ROWS", chunk_rows)
        for batch in (files, later):
            pipeline.ingest(lake, pipeline.pending_files(lake, [(f, load_mapping(f.parent.name)) for f in batch]),
                            author_salt="aggregates-test-salt")
            pipeline.enrich(lake, ("device", "locale"))
            if name == "in_turn":
                pipeline.score(lake, LexiconScorer(), Taxonomy.load())
                daily = pipeline.aggregate_daily(lake)
            else:
                _, daily = pipeline.score_and_aggregate(lake, LexiconScorer(), Taxonomy.load())
            if batch is files:
                assert daily.stats["full_rebuild"] and len(daily.stats["days_rewritten"]) == DAYS - 1
                assert daily.stats["rows_read"] == len(frame[~last_day])
                if name == "alongside":  # several chunks, each scored in the worker
                    assert len(submitted) > 2 and sum(submitted) == len(frame[~last_day])
            else:
                assert daily.stats["days_rewritten"][-1] == day(DAYS - 1) and not daily.stats["full_rebuild"]
        assert lake.commit_metadata(SENTIMENT_DAILY, "scored_version") == str(lake.version(SCORED_SENTIMENT))
        assert not pipeline.aggregate_daily(lake).stats["days_rewritten"]  # nothing left for a next run
    expected, built = _every_table(lakes["in_turn"]), _every_table(lakes["alongside"])
    for name, table in expected.items():
        pd.testing.assert_frame_equal(built[name], table, check_dtype=False, obj=name)
    pd.testing.assert_frame_equal(stored(lakes["alongside"]), recomputed(lakes["alongside"]), check_dtype=False)


def test_the_words_kept_a_day_at_a_time_equal_a_recomputation_from_the_rows(lake_with_a_late_day):
    """negatives_daily after incremental runs and a late day = the summary of every scored row at once."""
    lake, _, _, _ = lake_with_a_late_day
    rows = lake.read(SCORED_SENTIMENT, columns=[*daily_store.AGGREGATE_INPUT_COLUMNS, "text"])
    repeat = aggregates.repeat_votes(rows, aggregates.first_votes(rows).first_event_id)

    def ordered(frame):
        frame = NEGATIVES_DAILY.to_arrow(frame).to_pandas().astype({"created_date": str})
        return frame.sort_values(list(NEGATIVES_DAILY.key)).reset_index(drop=True)

    kept = ordered(lake.read(NEGATIVES_DAILY))
    assert set(kept.kind) == {"total", "term", "quote"} and kept.created_date.nunique() == DAYS
    pd.testing.assert_frame_equal(kept, ordered(negatives_daily.daily(rows, repeat)), check_dtype=False)


def test_the_assets_words_equal_the_words_of_the_rows_at_a_look_inside_a_day(lake_with_a_late_day):
    """Evidence and new terms from negatives_daily plus the window's edge days (the assets) equal those
    from the window's rows (compute_baselines, replay): the look and the window start fall mid-day."""
    lake, _, after, _ = lake_with_a_late_day
    as_of = demo_data.START + pd.Timedelta(days=LATE + 2, hours=12)
    scored = lake.read(SCORED_SENTIMENT, columns=[*daily_store.AGGREGATE_INPUT_COLUMNS, "text"])
    windows = PolicyConfig.load().windows
    from_rows = compute_baselines(scored, pipeline.read_releases(lake), as_of, windows)
    key = ["flag_key", "release_version", "cohort", "baseline_kind"]
    assets = after["after"].sort_values(key).reset_index(drop=True)
    rows = from_rows.sort_values(key).reset_index(drop=True)
    assert (assets.evidence != "[]").any()  # (too few negatives here for new terms: test_new_terms sums days)
    pd.testing.assert_frame_equal(assets[[*key, "evidence", "new_terms"]], rows[[*key, "evidence", "new_terms"]])


def test_a_check_reads_the_newest_days_only(lake_with_a_late_day):
    lake, _, _, _ = lake_with_a_late_day
    rows = daily_store.newest_rows(lake, SCORED_SENTIMENT, ["created_date", "sentiment_label"],
                                   lambda rows: rows.sentiment_label == "negative", limit=50, days_per_read=2)
    assert len(rows) == 50 and (rows.sentiment_label == "negative").all()
    assert set(rows.created_date.astype(str)) <= {day(DAYS - 1), day(DAYS - 2)}


def test_window_vocabulary_merges_the_edge_days_terms_into_the_flags_sorted_terms():
    """_merge_sorted: the sorted union, and where each side's terms land in it (a window's counts add
    into that vocabulary from both parts)."""
    import numpy as np

    inside = np.array(["app", "crash", "slow"], dtype=object)
    edges = np.array(["bug", "crash", "zoom"], dtype=object)
    merged, from_inside, from_edges = negatives_daily._merge_sorted(inside, edges)
    assert list(merged) == ["app", "bug", "crash", "slow", "zoom"]
    assert list(merged[from_inside]) == list(inside) and list(merged[from_edges]) == list(edges)
    for a, b in ((inside, np.array([], dtype=object)), (np.array([], dtype=object), edges)):
        merged, from_a, from_b = negatives_daily._merge_sorted(a, b)
        assert list(merged) == sorted({*a, *b}) and list(merged[from_a]) == list(a) and list(merged[from_b]) == list(b)


def test_only_the_edge_days_a_window_keeps_part_of_are_summarised_from_rows():
    """partly_kept: a window that keeps all of a release's complaints on an edge day (a look after the
    last one; a window starting when the release went live) or none of them takes the table's cells or
    nothing; only a real cut needs the rows, and only that release's."""
    at = pd.to_datetime(["2026-03-01 09:00", "2026-03-01 15:00", "2026-03-02 10:00", "2026-03-01 16:00"], utc=True)
    rows = pd.DataFrame({"attributed_flag": ["f"] * 4, "release_version": ["1", "1", "1", "2"], "created_at": at,
                         "sentiment_label": ["negative"] * 4, "topic_excluded": [False] * 4})
    spans = negatives_daily.edge_spans(rows)[0]
    first, second = pd.Timestamp("2026-03-01").date(), pd.Timestamp("2026-03-02").date()
    assert spans == {("f", first): {"1": (at[0].value, at[1].value), "2": (at[3].value, at[3].value)},
                     ("f", second): {"1": (at[2].value, at[2].value)}}

    def partly(start, end):
        return negatives_daily.partly_kept(spans, [("f", pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"))])

    assert partly("2026-03-01 08:00", "2026-03-02 23:00") == set()  # keeps both days whole
    assert partly("2026-03-01 15:00", "2026-03-02 23:00") == set()  # (start, ...]: release 1's last one is out
    assert partly("2026-03-01 12:00", "2026-03-02 23:00") == {("f", first, "1")}  # release 2's only one is in
    assert partly("2026-03-01 08:00", "2026-03-02 09:59") == set()  # ends before the second day's complaint
    assert partly("2026-02-20 00:00", "2026-03-01 09:00") == {("f", first, "1")}  # (..., end]: keeps 09:00 only
    assert partly("2026-02-20 00:00", "2026-03-01 15:30") == set()  # all of release 1, none of 2: no rows
    assert negatives_daily.partly_kept(spans, [("other", at[0] - pd.Timedelta(hours=1), at[1])]) == set()


def test_daily_sums_alike_from_categorical_and_text_columns(lake_with_a_late_day):
    """The assets read key columns as categoricals, replay and the Spark job hand over text: the same rows
    make the same sums, in the same order, a missing cohort included (read as 'nan', as astype(str) does)."""
    lake = lake_with_a_late_day[0]
    releases = pipeline.read_releases(lake)
    rows = daily_store.read_narrow(lake, lake.version(SCORED_SENTIMENT), [day(d) for d in range(DAYS)])
    assert isinstance(rows.cohort.dtype, pd.CategoricalDtype)
    rows.loc[rows.index[:5], "cohort"] = None
    repeat = aggregates.repeat_votes(rows, aggregates.first_votes(rows).first_event_id)
    text = rows.astype({name: object for name in daily_store.CATEGORICAL_COLUMNS if name in rows})
    from_categoricals = aggregates.daily(rows, releases, repeat)
    pd.testing.assert_frame_equal(from_categoricals, aggregates.daily(text, releases, repeat), check_exact=True)
    assert (from_categoricals.cohort == "nan").any()
    keys = list(SENTIMENT_DAILY.key)
    assert from_categoricals[keys].equals(from_categoricals[keys].sort_values(keys).reset_index(drop=True))
