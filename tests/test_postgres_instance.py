"""The graph on a Dagster instance stored in PostgreSQL (the shipped dagster.postgres.yaml)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest

from conftest import make_demo_env, run_job, set_env

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.postgres.yaml"


def _connect(dbname: str):
    import psycopg2

    connection = psycopg2.connect(dbname=dbname, connect_timeout=3, **PG)
    connection.autocommit = True
    return connection


@pytest.fixture
def pg_database():
    name = f"rollback_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = _connect("postgres")
    except Exception as error:  # noqa: BLE001 - any connection failure means no server to test against
        print(f"PostgreSQL at {PG['host']}:{PG['port']} is unreachable: {error}")
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {PG['host']}:{PG['port']} is unreachable: {error}")
        pytest.skip(f"PostgreSQL at {PG['host']}:{PG['port']} is unreachable: {error}")
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert cur.fetchone()[0] == 0
        admin.close()


def test_runs_and_materializations_are_stored_in_postgres(pg_database, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(SHIPPED_CONFIG, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_USER", PG["user"])
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "")
    monkeypatch.setenv("DAGSTER_PG_HOST", PG["host"])
    monkeypatch.setenv("DAGSTER_PG_DB", pg_database)

    env = make_demo_env(tmp_path / "demo", rows_per_day=40)
    set_env(monkeypatch, env)
    from rollback_assets.definitions import build_definitions

    defs = build_definitions()
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = run_job(defs, instance)
        run_id = result.run_id
        stored = instance.get_run_by_id(run_id)
        assert stored is not None and stored.job_name == "feedback_job"
        assert stored.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        records = instance.fetch_materializations(dg.AssetKey("rollback_decisions"), limit=10).records
        assert [r.run_id for r in records] == [run_id]
        assert "delta_version" in records[0].asset_materialization.metadata
        raw = instance.get_latest_materialization_event(dg.AssetKey("raw_feedback"))
        assert raw.run_id == run_id and raw.asset_materialization.metadata["rows_valid"].value > 0
    finally:
        instance.dispose()

    # and directly in the database, independent of Dagster's API
    connection = _connect(pg_database)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pipeline_name FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchall() == [("feedback_job",)]
            cur.execute(
                "SELECT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (run_id,),
            )
            keys = {json.loads(row[0])[0] for row in cur.fetchall()}
            assert keys == {"raw_feedback", "release_artifacts", "enriched_feedback", "sentiment_model", "scored_sentiment",
                            "sentiment_daily", "cohort_baselines", "business_kpis", "rollback_decisions"}  # feedback_job's assets
            cur.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_CHECK_EVALUATION'",
                (run_id,),
            )
            assert cur.fetchone()[0] >= 7
    finally:
        connection.close()
