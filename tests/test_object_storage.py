"""The lake on object storage: Delta tables, the model store and a whole graph run on an `s3://` root,
against a real S3-compatible server (moto in server mode, its own process on a free loopback port).

delta-rs holds the GIL in places while it waits for HTTP, so the server cannot run as a thread of the
test process (moto's ThreadedMotoServer deadlocks here); it runs as `python -m moto.server`.
"""

from __future__ import annotations

import logging
import secrets
import socket
import subprocess
import sys
import time

import boto3
import dagster as dg
import httpx
import pandas as pd
import pyarrow as pa
import pytest
from dagster._serdes import serialize_value

from rollback_assets.core import demo_data, lake as lake_module, pipeline, storage
from rollback_assets.core.lake import Lake
from rollback_assets.core.releases import load_releases_yaml
from rollback_assets.core.schemas import DECISIONS, ENRICHED_FEEDBACK, RAW_FEEDBACK, SCORED_SENTIMENT, Column, Table

from conftest import QUIET

BUCKET = "rollback-lake"
ITEMS = Table("items", (Column("item_id", pa.string(), False), Column("value", pa.int64()), Column("note", pa.string())),
              key=("item_id",))
DAY_ITEMS = Table("day_items", (*ITEMS.columns, Column("day", pa.string(), False)), key=("item_id",), partition_by=("day",))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on 127.0.0.1:<free port>, with credentials made up for this run."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            assert process.poll() is None, "moto server exited"
            assert time.monotonic() < deadline, "moto server did not start in 30 s"
            time.sleep(0.1)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}",
           "AWS_SECRET_ACCESS_KEY": f"moto-secret-{secrets.token_hex(16)}", "AWS_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=BUCKET)
    yield {"env": env, "client": client}
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Credentials and endpoint in the environment only, as in production."""
    for name, value in s3_server["env"].items():
        monkeypatch.setenv(name, value)
    return s3_server


def keys_under(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def items(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=ITEMS.names)


def sorted_rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(frame[ITEMS.names].itertuples(index=False, name=None))


# ------------------------------------------------------------------------------------------ paths and options
def test_lake_paths_keep_the_url_and_options_come_from_the_scheme_family(tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AZURE_STORAGE_ACCOUNT_NAME": "acct",
           "GOOGLE_SERVICE_ACCOUNT": "/sa.json", "OTHER": "x"}
    for root, options in (
        ("s3://bucket/lake", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}),
        ("s3://bucket/lake/", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}),
        ("abfss://container@acct.dfs.core.windows.net/lake", {"AZURE_STORAGE_ACCOUNT_NAME": "acct"}),
        ("gs://bucket/lake", {"GOOGLE_SERVICE_ACCOUNT": "/sa.json"}),
    ):
        lake = Lake(root, storage.storage_options(root, env))
        assert lake.uri(RAW_FEEDBACK) == root.rstrip("/") + "/raw_feedback"
        assert lake.path("models", "current.json") == root.rstrip("/") + "/models/current.json"
        assert lake.storage_options == options
    local = Lake(tmp_path / "lake")
    assert local.uri(RAW_FEEDBACK) == str(tmp_path / "lake" / "raw_feedback") and local.storage_options is None
    assert Lake(f"file://{tmp_path}/lake").uri(RAW_FEEDBACK) == str(tmp_path / "lake" / "raw_feedback")
    with pytest.raises(ValueError, match="unsupported lake root"):
        Lake("ftp://host/lake")


# ------------------------------------------------------------------------------------------ Delta on S3
def test_create_append_merge_and_time_travel_on_s3(s3_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a Path-joined root would show up here as a local "s3:" folder
    lake = Lake(f"s3://{BUCKET}/delta-basics")
    assert not lake.exists(ITEMS) and lake.version(ITEMS) is None and lake.read(ITEMS).empty

    # On an object store a table is made empty first (version 0), then written (Lake._creating).
    v1 = lake.append(ITEMS, items(("a", 1, "first"), ("b", 2, "first")), metadata={"batch": "one"})
    v2 = lake.append(ITEMS, items(("c", 3, "second")))
    v3, metrics = lake.merge(ITEMS, items(("b", 20, "merged"), ("d", 4, "merged")))
    assert (v1, v2, v3) == (1, 2, 3)
    assert (metrics["num_target_rows_updated"], metrics["num_target_rows_inserted"]) == (1, 1)

    assert sorted_rows(lake.read(ITEMS)) == [("a", 1, "first"), ("b", 20, "merged"), ("c", 3, "second"), ("d", 4, "merged")]
    assert lake.read(ITEMS, version=0).empty
    assert sorted_rows(lake.read(ITEMS, version=1)) == [("a", 1, "first"), ("b", 2, "first")]
    assert sorted_rows(lake.read(ITEMS, version=2)) == [("a", 1, "first"), ("b", 2, "first"), ("c", 3, "second")]
    assert [(c["version"], c["operation"]) for c in lake.commits_after(ITEMS, 0)] == [(1, "WRITE"), (2, "WRITE"), (3, "MERGE")]
    assert lake.commit_metadata(ITEMS, "batch") == "one"

    stored = keys_under(s3_env["client"], "delta-basics/items/")
    assert "delta-basics/items/_delta_log/00000000000000000003.json" in stored
    assert sum(k.endswith(".parquet") for k in stored) >= 3
    assert not list(tmp_path.iterdir()), "nothing may be written to local disk"


class RacedLake(Lake):
    """A Lake whose first MERGE snapshot is overtaken: right before its MERGE starts, another writer (a
    second Lake on the same table) commits a MERGE that rewrites the same row, so the first commit conflicts."""

    def __init__(self, root, rival_rows: pd.DataFrame):
        super().__init__(root)
        self.rival_rows, self.raced = rival_rows, False

    def table(self, table, version=None):
        snapshot = super().table(table, version)
        return snapshot if self.raced else _Overtaken(snapshot, self, table)


class _Overtaken:
    """A snapshot whose first `merge` lets the rival commit first (anything else passes through)."""

    def __init__(self, snapshot, lake: RacedLake, table):
        self._snapshot, self._lake, self._table = snapshot, lake, table

    def __getattr__(self, name):
        return getattr(self._snapshot, name)

    def merge(self, *args, **kwargs):
        self._lake.raced = True
        Lake(self._lake.root).merge(self._table, self._lake.rival_rows, moved_rows_checked=True)
        return self._snapshot.merge(*args, **kwargs)


def test_a_merge_conflict_is_retried_and_lands(s3_env, caplog):
    root = f"s3://{BUCKET}/merge-race"
    Lake(root).append(ITEMS, items(("a", 1, "base"), ("b", 2, "base")))
    raced = RacedLake(root, items(("a", 10, "rival"), ("r", 9, "rival")))
    with caplog.at_level(logging.WARNING, logger=lake_module.__name__):
        version, metrics = raced.merge(ITEMS, items(("a", 100, "ours"), ("o", 7, "ours")), moved_rows_checked=True)
    assert raced.raced and any("commit conflict" in r.getMessage() for r in caplog.records), "the first commit must have conflicted"
    assert version == 3 and (metrics["num_target_rows_updated"], metrics["num_target_rows_inserted"]) == (1, 1)
    # Both writers' rows are in; the retried MERGE ran against the rival's commit, so ours wins on "a".
    assert sorted_rows(Lake(root).read(ITEMS)) == [("a", 100, "ours"), ("b", 2, "base"), ("o", 7, "ours"), ("r", 9, "rival")]
    assert [c["operation"] for c in Lake(root).commits_after(ITEMS, 1)] == ["MERGE", "MERGE"]


def test_two_first_writes_of_a_table_on_s3_make_one_table_and_keep_their_meaning(s3_env):
    """Two writers that both find no table on an object store: each used to create it, delta-rs landed
    the later creation as the next version and both batches as appends (two first MERGEs of the same
    500 keys left 1,000 rows in 8 of 8 trials; two first replaces of a day, two copies of its rows).
    Now the table is made empty first and both write into it as into any table."""
    import threading

    for trial, write in enumerate(("replace_partitions", "merge", "replace_partitions", "merge")):
        root = f"s3://{BUCKET}/first-writes-{trial}"
        barrier = threading.Barrier(2)
        errors = []

        def first_write(note: str) -> None:
            rows = items(*[(f"i{i}", i, note) for i in range(200)])
            lake = Lake(root)
            barrier.wait()
            try:
                if write == "merge":
                    lake.merge(ITEMS, rows)
                else:
                    lake.replace_partitions(DAY_ITEMS, rows.assign(day="2026-11-01"), ["2026-11-01"])
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        writers = [threading.Thread(target=first_write, args=(note,)) for note in ("a", "b")]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        assert not errors
        stored = Lake(root).read(ITEMS if write == "merge" else DAY_ITEMS)
        assert len(stored) == 200 and stored.item_id.is_unique, (trial, write, len(stored))
        assert stored.note.nunique() == 1, "one writer's rows, whole: the later write replaced or updated them"


def test_a_compare_and_set_overtaken_by_another_writer_does_not_write(s3_env, caplog):
    """Lake.merge_if_unchanged on S3 (what makes a flag action's row its lock): a writer whose snapshot is
    overtaken by a rival's MERGE of the same row conflicts, retries, finds the row changed and writes
    nothing; an insert-if-absent overtaken by a rival insert of the key does not insert; unraced, it writes."""
    root = f"s3://{BUCKET}/compare-and-set"
    Lake(root).append(ITEMS, items(("a", 1, "base"), ("b", 2, "base")))
    read = {"value": 1, "note": "base"}
    raced = RacedLake(root, items(("a", 10, "rival")))
    with caplog.at_level(logging.WARNING, logger=lake_module.__name__):
        written = raced.merge_if_unchanged(ITEMS, items(("a", 100, "ours")), read, ("value", "note"))
    assert raced.raced and any("commit conflict" in r.getMessage() for r in caplog.records), "the first commit must have conflicted"
    assert written is False
    raced = RacedLake(root, items(("n", 5, "rival")))
    assert raced.merge_if_unchanged(ITEMS, items(("n", 6, "ours")), None, ("value", "note")) is False
    assert sorted_rows(Lake(root).read(ITEMS)) == [("a", 10, "rival"), ("b", 2, "base"), ("n", 5, "rival")]
    assert Lake(root).merge_if_unchanged(ITEMS, items(("b", 20, None)), {"value": 2, "note": "base"}, ("value", "note"))
    assert Lake(root).merge_if_unchanged(ITEMS, items(("b", 21, "x")), {"value": 20, "note": None}, ("value", "note")), "NULL compares equal to NULL"
    assert not Lake(root).merge_if_unchanged(ITEMS, items(("b", 22, "y")), {"value": 20, "note": None}, ("value", "note"))
    assert sorted_rows(Lake(root).read(ITEMS)) == [("a", 10, "rival"), ("b", 21, "x"), ("n", 5, "rival")]


def test_commit_retries_give_up_after_the_limit():
    from deltalake.exceptions import CommitFailedError

    calls, waits = [], []

    def always_conflicts():
        calls.append(1)
        raise CommitFailedError("version 3 already exists")

    with pytest.raises(CommitFailedError):
        lake_module.retry_commit(always_conflicts, "items", sleep=waits.append)
    assert len(calls) == lake_module.COMMIT_ATTEMPTS and len(waits) == lake_module.COMMIT_ATTEMPTS - 1
    assert all(0 < w <= lake_module.COMMIT_BACKOFF_MAX_S * 1.5 for w in waits) and waits[-1] > waits[0]


# ------------------------------------------------------------------------------------------ the whole graph on S3
def test_feedback_job_and_model_store_on_an_s3_lake(s3_env, tmp_path, monkeypatch, caplog):
    from rollback_assets.defs.resources import LakeResource

    root = f"s3://{BUCKET}/graph"
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=250, days=20))
    landing, releases_file = tmp_path / "landing", tmp_path / "releases.yaml"
    demo_data.write_landing_zone(frame, landing, releases_file)
    pipeline.register_releases(Lake(root), load_releases_yaml(releases_file))
    for name in ("ROLLBACK_RELEASES", "ROLLBACK_POLICY", "ROLLBACK_TAXONOMY", "ROLLBACK_MAPPINGS", "ROLLBACK_DEPLOYMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROLLBACK_LAKE", root)
    monkeypatch.setenv("ROLLBACK_LANDING", str(landing))
    monkeypatch.setenv("ROLLBACK_AUTHOR_SALT", "object-storage-test")
    monkeypatch.chdir(tmp_path)
    from rollback_assets.definitions import build_definitions

    defs = build_definitions()
    with dg.instance_for_test() as instance, caplog.at_level(logging.DEBUG):
        result = defs.resolve_job_def("feedback_job").execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        records = instance.all_logs(result.run_id)
        run = instance.get_run_by_id(result.run_id)

    lake = Lake(root)
    raw = lake.read(RAW_FEEDBACK, columns=["event_id"])
    assert len(raw) > 0.9 * len(frame) and raw.event_id.is_unique
    for table in (ENRICHED_FEEDBACK, SCORED_SENTIMENT):
        assert sorted(lake.read(table, columns=["event_id"]).event_id) == sorted(raw.event_id), table.name
    assert lake.exists(DECISIONS) and len(lake.read(DECISIONS)) > 0
    stored = {k.split("/")[1] for k in keys_under(s3_env["client"], "graph/")}
    assert {"raw_feedback", "enriched_feedback", "scored_sentiment", "cohort_baselines", "rollback_decisions", "models"} <= stored
    assert not (tmp_path / "s3:").exists()

    # The model store lives in the bucket, read back through the resource.
    store = LakeResource(root=root).model_store()
    pointer = store.pointer()
    assert pointer is not None and f"graph/models/{pointer['file']}" in keys_under(s3_env["client"], "graph/models/")
    model = store.current()
    assert model is not None and model.version == pointer["version"]
    mats = result.asset_materializations_for_node("sentiment_model")
    assert mats and mats[0].metadata["model_path"].value == f"{root}/models/{pointer['file']}"
    # Table locations in metadata are the URL, not a mangled path.
    assert result.asset_materializations_for_node("raw_feedback")[0].metadata["delta_path"].value == f"{root}/raw_feedback"

    # Secrets never reach run config, event metadata, messages or Python logs.
    secret, key_id = s3_env["env"]["AWS_SECRET_ACCESS_KEY"], s3_env["env"]["AWS_ACCESS_KEY_ID"]
    events = "".join(serialize_value(r) for r in records)
    assert root in events, "the events do name the lake"
    for text in (events, serialize_value(run), caplog.text):
        assert secret not in text and key_id not in text
