"""The Spark engine: the heavy steps as a PySpark job (real local Spark, real delta-spark) launched through
Dagster Pipes, equivalent to the pandas engine on the demo data, and the Databricks path against a stub
of the Jobs + DBFS API. One graph run per engine for the module; the Databricks test adds one launch."""

from __future__ import annotations

import base64
import json
import os

import dagster as dg
import pandas as pd
import pytest
from dagster_pipes import decode_param
from deltalake import DeltaTable

from rollback_assets.core import pipeline
from rollback_assets.core.lake import Lake
from rollback_assets.core.releases import load_releases_yaml
from rollback_assets.core.schemas import (
    AUTHOR_VOTES, ENRICHED_FEEDBACK, NEGATIVES_DAILY, QUARANTINE, RAW_FEEDBACK, SCORED_SENTIMENT, SENTIMENT_DAILY,
)
from rollback_assets.engines import ENGINE_ENV, Engine, engine_from_env

from conftest import QUIET, capture, make_demo_env, run_job, set_env
from databricks_stub import DatabricksStub

HEAVY = {"raw_feedback": RAW_FEEDBACK, "enriched_feedback": ENRICHED_FEEDBACK, "scored_sentiment": SCORED_SENTIMENT,
         "sentiment_daily": SENTIMENT_DAILY}
RUN_TIMES = {"ingested_at", "enriched_at", "quarantined_at"}  # when this engine's run wrote the row
ROWS_PER_DAY = 60


def test_engine_choice_is_strict():
    assert engine_from_env({}) is Engine.PANDAS
    assert engine_from_env({ENGINE_ENV: "Spark"}) is Engine.SPARK
    with pytest.raises(ValueError, match=r"ROLLBACK_ENGINE must be one of pandas, spark, databricks; got 'dask'"):
        engine_from_env({ENGINE_ENV: "dask"})


def _late_file(env) -> tuple[set[str], str]:
    """A late delivery: five known events with corrected text (updated, re-scored), five new ones, an
    author's word from the day before their first (their vote moves a day earlier), and an author's
    only word corrected to a day later (the row and its vote move day). Returns the days whose sums it
    changes (its rows' days and the days votes and rows moved from) and the moved row's event id."""
    rows = env.frame[env.frame.source_kind != "ticket"].drop(columns="_truth").head(10).copy()
    rows.loc[rows.index[:5], "text"] = rows.text[:5] + " (edited: checkout still broken)"
    rows.loc[rows.index[5:], "event_id"] = rows.event_id[5:] + "-late"
    reviews = env.frame[env.frame.source_kind == "review"].drop(columns="_truth")
    earlier = reviews.iloc[[len(reviews) // 3]].copy()
    vote_day = earlier.created_at.iloc[0].date()
    earlier["event_id"] += "-earlier"
    earlier["created_at"] -= pd.Timedelta(days=1)
    later = reviews.iloc[[len(reviews) // 2]].copy()
    later_day = later.created_at.iloc[0].date()
    later["created_at"] += pd.Timedelta(days=1)
    rows = pd.concat([rows, earlier, later])
    days = {str(d) for d in pd.to_datetime(rows.created_at, utc=True).dt.date} | {str(vote_day), str(later_day)}
    rows["created_at"] = rows.created_at.map(pd.Timestamp.isoformat)
    rows["rating"] = rows.rating.map(lambda r: None if pd.isna(r) else int(r))
    with open(env.landing / "feedback_jsonl" / "feedback_late.jsonl", "w") as handle:
        for record in rows.to_dict("records"):
            handle.write(json.dumps(record) + "\n")
    return days, later.event_id.iloc[0]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The same landing zone ingested into two lakes, one per engine, through the whole Dagster graph;
    then a late file and a second run of each (the incremental path: watermarks, updates, reused scores)."""
    from rollback_assets.definitions import build_definitions

    env = make_demo_env(tmp_path_factory.mktemp("engines"), rows_per_day=ROWS_PER_DAY)
    lakes = {Engine.PANDAS: env.lake, Engine.SPARK: Lake(env.root / "lake_spark")}
    pipeline.register_releases(lakes[Engine.SPARK], load_releases_yaml(env.releases_file))
    runs, late_runs, late = {}, {}, (set(), "")
    with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as mp:
        set_env(mp, env)
        mp.setenv("ROLLBACK_SPARK_MASTER", "local[2]")
        for rounds in (runs, late_runs):
            if rounds is late_runs:
                late = _late_file(env)
            for engine, lake in lakes.items():
                mp.setenv("ROLLBACK_LAKE", str(lake.root))
                rounds[engine] = capture(run_job(build_definitions(engine=engine), instance), lake,
                                         tables=("rollback_decisions",))
    return env, lakes, runs, late_runs, late


def _rows(lake: Lake, table) -> pd.DataFrame:
    frame = lake.read(table).drop(columns=sorted(RUN_TIMES & set(table.names)))
    key = list(table.key)
    return frame.sort_values(key).reset_index(drop=True)[[c for c in table.names if c not in RUN_TIMES]]


def test_spark_job_runs_through_pipes_in_a_dagster_run(engines):
    _, lakes, runs, _, _ = engines
    run = runs[Engine.SPARK]
    mats = run.materializations
    assert {"cohort_baselines", "rollback_decisions"} <= set(mats)
    for name, table in HEAVY.items():
        meta = mats[name].metadata
        version = run.versions[name]
        assert meta["engine"].value == "spark"
        assert meta["delta_version"].value == version
        assert mats[name].tags["dagster/data_version"] == f"{name}@{version}"
        assert meta["dagster/column_schema"].value.columns[0].name == table.names[0]
    spark_lake = lakes[Engine.SPARK]
    assert mats["raw_feedback"].metadata["rows_valid"].value == len(spark_lake.read(RAW_FEEDBACK, version=run.versions["raw_feedback"]))
    assert mats["raw_feedback"].metadata["rows_quarantined"].value == 8  # the demo's malformed lines
    # Downstream events name the Spark-written versions they read (lineage across engines).
    assert mats["cohort_baselines"].tags["dagster/input_data_version/scored_sentiment"] == \
        f"scored_sentiment@{run.versions['scored_sentiment']}"
    # delta-rs (the decision side) reads Spark's tables: declared types, no reader feature it lacks.
    assert run.checks["raw_feedback_schema"].passed
    for table in HEAVY.values():
        protocol = DeltaTable(lakes[Engine.SPARK].uri(table)).protocol()
        assert protocol.min_reader_version == 1 and not protocol.reader_features


def test_both_engines_report_the_same_metadata(engines):
    _, _, runs, _, _ = engines
    for name in HEAVY:
        pandas_keys = set(runs[Engine.PANDAS].materializations[name].metadata)
        spark_keys = set(runs[Engine.SPARK].materializations[name].metadata) - {"engine"}
        assert spark_keys == pandas_keys, name
        for key in ("rows_valid", "rows_quarantined", "rows_attributed", "rows_scored", "attribution_rate",
                    "scored_rows_read", "aggregate_rows_written", "days_rewritten", "days_in_table", "first_day"):
            if key in pandas_keys:
                assert runs[Engine.SPARK].materializations[name].metadata[key] == \
                    runs[Engine.PANDAS].materializations[name].metadata[key], (name, key)


@pytest.mark.parametrize("table", [RAW_FEEDBACK, QUARANTINE, ENRICHED_FEEDBACK, SCORED_SENTIMENT, SENTIMENT_DAILY,
                                   NEGATIVES_DAILY, AUTHOR_VOTES],
                         ids=lambda t: t.name)
def test_engines_write_the_same_rows(engines, table):
    _, lakes, _, _, _ = engines
    pandas_rows, spark_rows = _rows(lakes[Engine.PANDAS], table), _rows(lakes[Engine.SPARK], table)
    assert len(pandas_rows) > 0
    pd.testing.assert_frame_equal(spark_rows, pandas_rows)


def test_a_late_file_is_merged_the_same_way(engines):
    _, lakes, _, late, (late_days, moved_id) = engines
    for name, keys in {"raw_feedback": ("files_ingested", "rows_inserted", "rows_updated"),
                       "enriched_feedback": ("rows_attributed", "full_reattribution"),
                       "scored_sentiment": ("rows_scored", "rows_reused")}.items():
        got = {e: {k: late[e].materializations[name].metadata[k].value for k in keys} for e in late}
        assert got[Engine.SPARK] == got[Engine.PANDAS], name
    raw = late[Engine.SPARK].materializations["raw_feedback"].metadata
    assert raw["rows_inserted"].value > 0 and raw["rows_updated"].value > 0  # new events and corrected ones
    # Only the late rows are attributed and (their text being new) scored again.
    assert got[Engine.SPARK] == {"rows_scored": raw["rows_inserted"].value + raw["rows_updated"].value, "rows_reused": 0}
    # Each engine's aggregation rewrites only the late file's days (its scored commits' partitions, read
    # from the Delta log); the tables and decisions after it are compared by the tests above and below.
    days = {e: {k: late[e].materializations["sentiment_daily"].metadata[k].value for k in ("full_rebuild", "days_rewritten_list")}
            for e in late}
    assert days[Engine.SPARK] == days[Engine.PANDAS] == {"full_rebuild": False, "days_rewritten_list": sorted(late_days)}
    assert late[Engine.SPARK].materializations["sentiment_daily"].metadata["engine"].value == "spark"
    for lake in lakes.values():  # in both engines' ledgers: a vote moved to the earlier word, one moved with its row
        votes = lake.read(AUTHOR_VOTES)
        assert votes.first_event_id.str.endswith("-earlier").sum() == 1
        (vote_day,) = votes.first_date[votes.first_event_id == moved_id]
        (row_day,) = lake.read(SCORED_SENTIMENT, columns=["event_id", "created_date"]).query("event_id == @moved_id").created_date
        assert vote_day == row_day and str(row_day) in late_days


def test_engines_reach_the_same_decisions(engines):
    _, _, runs, late, _ = engines
    ids = {e: set(r.tables["rollback_decisions"].decision_id) for e, r in runs.items()}
    assert ids[Engine.PANDAS] and ids[Engine.SPARK] == ids[Engine.PANDAS]
    # Each run's decision ids, hashed into rollback_decisions' data version, after the late file too.
    for rounds in (runs, late):
        versions = {e: r.materializations["rollback_decisions"].tags["dagster/data_version"] for e, r in rounds.items()}
        assert versions[Engine.SPARK] == versions[Engine.PANDAS]


def test_databricks_path_submits_the_job_and_reads_its_messages(tmp_path, monkeypatch):
    """PipesDatabricksClient against the stub: the job runs as the cluster would run it, reports through
    DBFS, and the requests are the ones the Jobs and DBFS APIs document."""
    from rollback_assets.defs.engines import DatabricksLauncher, spark_ingest_and_attribute
    from rollback_assets.defs.resources import LakeResource, LandingZoneResource, SettingsResource

    for name in [k for k in os.environ if k.startswith("DATABRICKS_")]:
        monkeypatch.delenv(name)
    env = make_demo_env(tmp_path, rows_per_day=10, days=14)
    lake_root, landing = env.lake_root, env.landing
    stub = DatabricksStub(token="dapi-secret", cluster_env={"ROLLBACK_SPARK_MASTER": "local[2]"}).start()
    try:
        launcher = DatabricksLauncher(host=stub.url, token="dapi-secret", python_file="dbfs:/rollback/spark_job_main.py",
                                      poll_interval_seconds=0.5, message_interval_seconds=0.5)
        result = dg.materialize(
            [spark_ingest_and_attribute],
            resources={"lake": LakeResource(root=str(lake_root)), "landing": LandingZoneResource(path=str(landing)),
                       "settings": SettingsResource(), "spark_job_launcher": launcher},
            selection=[dg.AssetKey("raw_feedback"), dg.AssetKey("enriched_feedback")],
            run_config=QUIET, raise_on_error=False,
        )
        leftover = [p for p in stub.dbfs.rglob("*") if p.is_file()]
    finally:
        stub.stop()
    assert result.success, [e.event_specific_data.error.to_string() for e in result.all_events if e.is_failure]
    mats = {m.asset_key.to_user_string(): m for m in result.asset_materializations_for_node("raw_feedback")}
    lake = Lake(lake_root)
    assert mats["raw_feedback"].metadata["rows_valid"].value == len(lake.read(RAW_FEEDBACK)) > 0
    assert mats["enriched_feedback"].metadata["rows_attributed"].value == len(lake.read(ENRICHED_FEEDBACK))
    assert mats["raw_feedback"].metadata["Databricks Job Run URL"].value.endswith("/#job/runs/1001")
    assert all("dapi-secret" not in str(v.value) for m in mats.values() for v in m.metadata.values())

    # The requests, in the documented order and shape.
    assert all(r["status"] != 401 for r in stub.requests)
    paths = [r["path"] for r in stub.requests]
    assert paths.index("/api/2.0/dbfs/put") < paths.index("/api/2.2/jobs/runs/submit") < paths.index("/api/2.2/jobs/runs/get")
    assert {"/api/2.0/dbfs/mkdirs", "/api/2.0/dbfs/read"} <= set(paths)
    assert [p for p in paths if "/dbfs/" in p][-2:] == ["/api/2.0/dbfs/delete"] * 2  # messages, then context
    (body,) = stub.submits
    (task,) = body["tasks"]
    assert body["run_name"].startswith("rollback-assets ")
    assert task["spark_python_task"] == {"python_file": "dbfs:/rollback/spark_job_main.py", "parameters": ["--pipes", "dbfs"]}
    env_vars = task["new_cluster"]["spark_env_vars"]
    context_path = decode_param(env_vars["DAGSTER_PIPES_CONTEXT"])["path"]
    assert "DAGSTER_PIPES_MESSAGES" in env_vars
    put = next(r for r in stub.requests if r["path"] == "/api/2.0/dbfs/put")
    assert put["body"]["path"] == context_path
    extras = json.loads(base64.b64decode(put["body"]["contents"]))["extras"]
    assert extras["steps"] == ["ingest", "attribute"] and extras["lake"] == str(lake_root)
    assert leftover == []  # the context and message folders on DBFS are removed once read


def test_both_engines_select_landing_files_the_same_way(tmp_path):
    """The landing-zone listing and the `files` selection live in the core, shared by both engines."""
    from rollback_assets.core.landing import scan_landing_zone, select_candidates

    (tmp_path / "feedback_jsonl").mkdir()
    (tmp_path / "_staging").mkdir()
    for name in ("a.jsonl", "b.jsonl", "notes.txt"):
        (tmp_path / "feedback_jsonl" / name).write_text("{}\n")
    (tmp_path / "_staging" / "c.jsonl").write_text("{}\n")
    candidates = scan_landing_zone(tmp_path).files
    assert [p.name for p, _ in candidates] == ["a.jsonl", "b.jsonl", "notes.txt"]  # read or reported, never skipped
    assert {m.name for _, m in candidates} == {"feedback_jsonl"}
    assert select_candidates(candidates, []) == candidates
    assert [p.name for p, _ in select_candidates(candidates, [str(tmp_path / "feedback_jsonl" / "b.jsonl")])] == ["b.jsonl"]
    with pytest.raises(FileNotFoundError, match="c.jsonl"):
        select_candidates(candidates, [str(tmp_path / "_staging" / "c.jsonl")])



@pytest.mark.parametrize("selected, steps", [
    (["sentiment_daily"], ["aggregate"]),
    (["scored_sentiment"], ["score"]),
    (["scored_sentiment", "sentiment_daily"], ["score", "aggregate"]),
])
def test_scoring_and_aggregation_launch_only_what_is_selected(tmp_path, selected, steps):
    """Re-deriving the daily tables (sentiment_daily alone) launches only the aggregation, without
    scoring again; a graph run scores and aggregates in one launch (one job start). The launcher here
    records what it is asked to run: this tests the asset's selection logic; the job runs above."""
    from rollback_assets.defs.engines import SparkJobLauncher, spark_score_and_aggregate
    from rollback_assets.defs.resources import LakeResource, ScorerResource, SettingsResource

    launched = []

    class RecordingLauncher(SparkJobLauncher):
        def launch(self, context, extras, env):
            launched.append(extras["steps"])
            return [dg.MaterializeResult(asset_key=key, metadata={}) for key in ("scored_sentiment", "sentiment_daily")
                    if dg.AssetKey(key) in context.selected_asset_keys]  # in step order, as the job reports

    result = dg.materialize(
        [spark_score_and_aggregate], selection=[dg.AssetKey(k) for k in selected], run_config=QUIET,
        resources={"lake": LakeResource(root=str(tmp_path / "lake")), "scorer": ScorerResource(kind="lexicon"),
                   "settings": SettingsResource(), "spark_job_launcher": RecordingLauncher()},
    )
    assert result.success and launched == [steps]
    assert {m.asset_key.to_user_string() for m in result.asset_materializations_for_node("scored_sentiment")} == set(selected)
