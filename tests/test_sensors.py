"""landing_zone_sensor: one run per new file, keyed by content hash, cursor caches hashes."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from rollback_assets.core import pipeline
from rollback_assets.core.landing import file_digest
from rollback_assets.core.mapping import load_mapping, mapping_fingerprint
from rollback_assets.defs.resources import LakeResource, LandingZoneResource
from rollback_assets.defs.sensors import landing_zone_sensor

ROW = {"event_id": "s-1", "source_kind": "review", "channel": "app_store", "created_at": "2026-09-10T10:00:00Z",
       "text": "checkout works", "rating": 5, "product": "shop-app"}


@pytest.fixture
def zone(tmp_path):
    landing = tmp_path / "landing"
    (landing / "feedback_jsonl").mkdir(parents=True)
    (landing / "_ignored").mkdir()  # folders starting with _ are not sources
    (landing / "_ignored" / "notes.jsonl").write_text("{}\n")
    resources = {"landing": LandingZoneResource(path=str(landing)), "lake": LakeResource(root=str(tmp_path / "lake"))}
    return landing, resources


def _evaluate(instance, resources, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = landing_zone_sensor(context)
    return (result if isinstance(result, list) else []), context.cursor, result


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_new_file_yields_one_run_request(zone, dagster_instance):
    landing, resources = zone
    path = _write(landing / "feedback_jsonl" / "a.jsonl", [ROW])
    requests, cursor, _ = _evaluate(dagster_instance, resources)
    assert len(requests) == 1
    request = requests[0]
    assert request.run_key == f"landing:{file_digest(path)}:{mapping_fingerprint(load_mapping('feedback_jsonl'))}"
    assert request.run_config == {"ops": {"raw_feedback": {"config": {"files": [str(path)]}}}}
    assert request.tags["rollback/mapping"] == "feedback_jsonl" and request.tags["rollback/source_file"] == "a.jsonl"
    assert json.loads(cursor)[str(path)][2] == file_digest(path)


def test_ingested_file_is_not_requested_again(zone, dagster_instance):
    landing, resources = zone
    path = _write(landing / "feedback_jsonl" / "a.jsonl", [ROW])
    _, cursor, _ = _evaluate(dagster_instance, resources)
    lake = resources["lake"].lake()
    pipeline.ingest(lake, pipeline.pending_files(lake, [(path, load_mapping("feedback_jsonl"))]))
    requests, cursor2, raw = _evaluate(dagster_instance, resources, cursor)
    assert requests == [] and isinstance(raw, dg.SkipReason)
    assert json.loads(cursor2) == json.loads(cursor)
    # a second new file after that: only it is requested
    other = _write(landing / "feedback_jsonl" / "b.jsonl", [{**ROW, "event_id": "s-2"}])
    requests, _, _ = _evaluate(dagster_instance, resources, cursor2)
    assert [r.run_config["ops"]["raw_feedback"]["config"]["files"] for r in requests] == [[str(other)]]


def test_same_bytes_under_another_name_share_the_run_key(zone, dagster_instance):
    landing, resources = zone
    a = _write(landing / "feedback_jsonl" / "a.jsonl", [ROW])
    b = landing / "feedback_jsonl" / "renamed.jsonl"
    b.write_bytes(a.read_bytes())
    requests, _, _ = _evaluate(dagster_instance, resources)
    assert len({r.run_key for r in requests}) == 1
    a.unlink()
    requests_b, _, _ = _evaluate(dagster_instance, resources)
    assert requests_b[0].run_key == requests[0].run_key


def test_cursor_round_trips_and_caches_hashes(zone, dagster_instance):
    landing, resources = zone
    path = _write(landing / "feedback_jsonl" / "a.jsonl", [ROW])
    _, cursor, _ = _evaluate(dagster_instance, resources)
    _, cursor_again, _ = _evaluate(dagster_instance, resources, cursor)
    assert json.loads(cursor_again) == json.loads(cursor)
    # An unchanged (mtime, size) stamp is trusted: the cached digest is used, the file is not re-read.
    entry = json.loads(cursor)[str(path)]
    planted = json.dumps({str(path): [entry[0], entry[1], "cafebabe"]})
    requests, _, _ = _evaluate(dagster_instance, resources, planted)
    assert requests[0].run_key.startswith("landing:cafebabe:")
    # A changed file (new size) is hashed again.
    _write(path, [ROW, {**ROW, "event_id": "s-2"}])
    requests, cursor3, _ = _evaluate(dagster_instance, resources, planted)
    assert requests[0].run_key.startswith(f"landing:{file_digest(path)}:")
    assert json.loads(cursor3)[str(path)][2] == file_digest(path)
