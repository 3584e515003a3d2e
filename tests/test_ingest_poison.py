"""Reliability suite for ingest (issue 11): poison records, unreadable files, timestamps, landing-zone
config, privacy of quarantine and hashes. Each test reproduces a failure seen by the hostile tester."""

from __future__ import annotations

import json
import random
from importlib import resources
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fuzz_files import FAILURE_COUNTS, PARQUET_MAPPING, check, check_mutated, mutate, write_csv, write_jsonl, write_parquet

from rollback_assets.core import pipeline
from rollback_assets.core.file_records import JSONL_BLOCK_BYTES
from rollback_assets.core.ingest import read_file
from rollback_assets.core.landing import file_digest, scan_landing_zone
from rollback_assets.core.mapping import Mapping, load_mapping, mapping_fingerprint
from rollback_assets.core.normalise import MissingAuthorSalt, author_hash
from rollback_assets.core.lake import Lake
from rollback_assets.core.schemas import LANDING_FILES, QUARANTINE, RAW_FEEDBACK
from rollback_assets.defs.resources import LakeResource, LandingZoneResource
from rollback_assets.defs.sensors import landing_zone_sensor

NOW = datetime(2026, 9, 20, 12, 0, tzinfo=timezone.utc)
ROW = {"event_id": "e-1", "source_kind": "review", "channel": "app", "created_at": "2026-09-10T10:00:00Z",
       "text": "checkout works", "rating": 4, "product": "shop-app"}
SALT = "test-salt-not-secret"


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _reasons(result) -> dict[int, str]:
    return result.quarantined.set_index("source_row").reason.to_dict()


# ------------------------------------------------------------------------------------------------ fuzzed files
@pytest.mark.filterwarnings("ignore:The behavior of DataFrame concatenation:FutureWarning")
def test_fuzzed_files_every_valid_row_lands_every_bad_row_is_quarantined_at_its_line(tmp_path):
    """Small version of bench/chaos.py: 0 crashes, all valid rows landed, all bad rows at their true line."""
    rng, now = random.Random(11), datetime.now(timezone.utc)
    expected = [write_jsonl(tmp_path / "a.jsonl", 300, rng, now), write_csv(tmp_path / "b.csv", 300, rng, now),
                write_parquet(tmp_path / "c.parquet", 300, rng, now)]
    mappings = [load_mapping("feedback_jsonl"), load_mapping("support_tickets"), Mapping.from_dict(yaml.safe_load(PARQUET_MAPPING))]
    results = [read_file(e.path, m, author_salt=SALT) for e, m in zip(expected, mappings)]
    figures = check(expected, pd.concat([r.valid for r in results if len(r.valid)]),
                    pd.concat([r.quarantined for r in results if len(r.quarantined)]))
    assert {k: figures[k] for k in FAILURE_COUNTS} == dict.fromkeys(FAILURE_COUNTS, 0), figures["examples"]
    assert figures["landed"] == figures["valid_expected"] > 400 and figures["bad_quarantined_right"] > 150


def test_randomly_damaged_files_never_crash_and_every_line_is_accounted_for(tmp_path):
    rng, now = random.Random(5), datetime.now(timezone.utc)
    sources = [(write_jsonl(tmp_path / "a.jsonl", 40, rng, now).path, load_mapping("feedback_jsonl")),
               (write_csv(tmp_path / "b.csv", 40, rng, now).path, load_mapping("support_tickets")),
               (write_parquet(tmp_path / "c.parquet", 40, rng, now).path, Mapping.from_dict(yaml.safe_load(PARQUET_MAPPING)))]
    problems = []
    for n in range(30):
        source, mapping = sources[n % 3]
        damaged = tmp_path / f"m{n}{source.suffix}"
        damaged.write_bytes(mutate(source.read_bytes(), rng))
        problems += check_mutated(read_file(damaged, mapping, author_salt=SALT), damaged)
    assert problems == []


# ------------------------------------------------------------------------------------------------ poison records
def test_lone_surrogate_object_id_and_list_text_quarantine_only_their_row(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [
        ROW,
        json.dumps({**ROW, "event_id": "e-2", "text": "bad \ud800 char"}),  # json.dumps escapes it as \ud800
        {**ROW, "event_id": {"nested": 1}},
        {**ROW, "event_id": "e-4", "text": ["a", "b"]},
        {**ROW, "event_id": "e-5", "product": {"id": 1}},
        {**ROW, "event_id": "e-6", "text": "fine 😀"},
    ])
    assert "\\ud800" in path.read_text()
    result = read_file(path, load_mapping("feedback_jsonl"), now=NOW)
    reasons = _reasons(result)
    assert sorted(result.valid.event_id) == ["e-1", "e-6"]
    assert "text: lone surrogate escape" in reasons[2]
    assert "event_id: is an object" in reasons[3]
    assert "text: is a list" in reasons[4]
    assert "product: is an object" in reasons[5]
    RAW_FEEDBACK.to_arrow(result.valid)
    QUARANTINE.to_arrow(result.quarantined)  # a lone surrogate never reaches the Delta writer


def test_bad_lines_in_a_long_jsonl_file_cost_only_themselves_whichever_block_they_fall_in(tmp_path):
    """Long files are read a block of lines at a time (Arrow for a clean block, record by record for a
    block with a bad line): every good line lands once, every bad one is quarantined at its real line."""
    per_block = JSONL_BLOCK_BYTES // len(json.dumps({**ROW, "event_id": "e-00000", "rating": 1}))
    lines = 3 * per_block + per_block // 2
    bad = {2: '{"event_id": "cut', per_block + 1: "[1, 2]", 2 * per_block + 5: "",
           lines: {**ROW, "event_id": "e-last", "text": ["a list"]}}
    path = _jsonl(tmp_path / "long.jsonl", [bad.get(n, {**ROW, "event_id": f"e-{n}", "rating": n % 5 + 1})
                                             for n in range(1, lines + 1)])
    result = read_file(path, load_mapping("feedback_jsonl"), now=NOW)
    reasons = _reasons(result)
    assert path.stat().st_size > 3 * JSONL_BLOCK_BYTES  # four blocks, three of them with a bad line
    assert set(reasons) == {2, per_block + 1, lines}  # the blank line is not a record
    assert "invalid JSON" in reasons[2] and "not a JSON object" in reasons[per_block + 1]
    assert "text: is a list" in reasons[lines]
    expected = [n for n in range(1, lines + 1) if n not in bad]
    assert result.valid.source_row.tolist() == expected
    assert result.valid.event_id.tolist() == [f"e-{n}" for n in expected]
    assert result.valid.rating.tolist() == [n % 5 + 1 for n in expected]


def test_csv_field_over_the_csv_module_limit_costs_only_its_row(tmp_path):
    path = tmp_path / "t.csv"
    huge = "x" * 140_000
    path.write_text("ticket_id,created_at,subject,description,requester_id\n"
                    "t-1,2026-09-10T10:00:00Z,ok,fine,u1\n"
                    f't-2,2026-09-10T10:00:00Z,long,"{huge}",u2\n'
                    't-3,2026-09-10T10:00:00Z,bad,"unbalanced, extra",field,u3\n'
                    "t-4,2026-09-10T10:00:00Z,ok,fine,u4\n")
    result = read_file(path, load_mapping("support_tickets"), author_salt=SALT, now=NOW)
    assert sorted(result.valid.event_id) == ["t-1", "t-4"]
    reasons = _reasons(result)
    assert "oversized text" in reasons[3] and "wrong number of fields" in reasons[4]


def test_csv_quarantine_lines_are_real_lines_with_embedded_newlines_and_blank_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("ticket_id,created_at,subject,description\n"        # 1
                    't-1,2026-09-10T10:00:00Z,multi,"line one\nline two\nline three"\n'  # 2-4
                    "\n"                                                   # 5 blank: not a record
                    't-2,now,bad time,"a\nb"\n'                           # 6-7
                    "t-3,2026-09-10T10:00:00Z,,\n"                         # 8 missing text
                    "t-4,2026-09-10T11:00:00Z,ok,done\n")                  # 9
    result = read_file(path, load_mapping("support_tickets"), author_salt=SALT, now=NOW)
    assert dict(zip(result.valid.event_id, result.valid.source_row)) == {"t-1": 2, "t-4": 9}
    assert {row: reason.split(" (")[0] for row, reason in _reasons(result).items()} == {6: "unparsable time", 8: "missing text"}


def test_parquet_with_list_and_struct_columns_lands_its_good_rows(tmp_path):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({
        "id": ["p-1", "p-2", "p-3"], "title": ["ok", "ok", None], "at": ["2026-09-10T10:00:00Z"] * 3, "app": ["a"] * 3,
        "body": pa.array([None, ["list", "valued"], None], pa.list_(pa.string())),
        "tags": pa.array([["x"], [], None], pa.list_(pa.string())),
        "meta": pa.array([{"k": 1}, None, {"k": 2}], pa.struct([("k", pa.int64())])),
    }), path)
    result = read_file(path, Mapping.from_dict(yaml.safe_load(PARQUET_MAPPING)), now=NOW)
    assert result.valid.event_id.tolist() == ["p-1"]
    reasons = _reasons(result)
    assert "body: is a list" in reasons[2] and "missing text" in reasons[3]


# ------------------------------------------------------------------------------------------------ whole files
def test_every_file_in_a_folder_is_read_by_its_real_format_or_reported(tmp_path):
    landing = tmp_path / "landing"
    folder = landing / "feedback_jsonl"
    folder.mkdir(parents=True)
    _jsonl(folder / "a.jsonl", [ROW])
    pd.DataFrame([{**ROW, "event_id": "e-pq"}]).to_parquet(folder / "b.parquet")    # Parquet in a JSONL folder
    pd.DataFrame([{**ROW, "event_id": "e-up"}]).to_csv(folder / "C.CSV", index=False)  # upper-case suffix
    (folder / "notes.txt").write_text("not feedback")
    (folder / ".upload.tmp").write_text("in progress")  # hidden: an upload in progress, not a source file
    scan = scan_landing_zone(landing)
    assert sorted(p.name for p, _ in scan.files) == ["C.CSV", "a.jsonl", "b.parquet", "notes.txt"]
    results = {p.name: read_file(p, m, now=NOW) for p, m in scan.files}
    assert results["b.parquet"].valid.event_id.tolist() == ["e-pq"]
    assert results["C.CSV"].valid.event_id.tolist() == ["e-up"]
    txt = results["notes.txt"]
    assert "unsupported file type '.txt'" in txt.file_error
    assert txt.quarantined.source_row.tolist() == [0] and txt.quarantined.reason[0].startswith("file not read")


def test_unreadable_file_is_quarantined_once_kept_out_of_the_ledger_and_retried_when_fixed(tmp_path):
    lake, mapping = Lake(tmp_path / "lake"), load_mapping("feedback_jsonl")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + b"\x00garbage" * 10)
    good = _jsonl(tmp_path / "good.jsonl", [ROW])
    for _ in range(2):  # a rerun re-reads the broken file (not in the ledger) but never duplicates its row
        pipeline.ingest(lake, pipeline.pending_files(lake, [(broken, mapping), (good, mapping)]))
    q = lake.read(QUARANTINE)
    assert len(q) == 1 and q.source_row.tolist() == [0] and "not a readable Parquet file" in q.reason[0]
    assert set(lake.read(LANDING_FILES).path) == {str(good)}
    assert lake.read(RAW_FEEDBACK).event_id.tolist() == ["e-1"]
    pd.DataFrame([{**ROW, "event_id": "e-fixed"}]).to_parquet(broken)  # the corrected re-delivery
    assert [p for p, *_ in pipeline.pending_files(lake, [(broken, mapping)])] == [broken]
    pipeline.ingest(lake, pipeline.pending_files(lake, [(broken, mapping)]))
    assert sorted(lake.read(RAW_FEEDBACK).event_id) == ["e-1", "e-fixed"]


def test_csv_without_the_mapped_columns_is_one_file_error_not_every_row(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("id,when,what\n1,2026-09-10,hello\n2,2026-09-10,world\n")
    result = read_file(path, load_mapping("support_tickets"), now=NOW)
    assert result.valid.empty and len(result.quarantined) == 1
    assert "no column ticket_id for event_id" in result.file_error and "id, when, what" in result.file_error


# ------------------------------------------------------------------------------------------------ timestamps
@pytest.mark.parametrize("value", ["now", "today", "Now", " today ", "yesterday", "tomorrow"])
def test_relative_words_are_never_times(tmp_path, value):
    iso = read_file(_jsonl(tmp_path / "r.jsonl", [{**ROW, "created_at": value}]), load_mapping("feedback_jsonl"), now=NOW)
    assert iso.valid.empty and "unparsable time" in iso.quarantined.reason[0]
    path = tmp_path / "play.csv"
    pd.DataFrame({"reviewId": ["g1"], "content": ["hi"], "score": [5], "at": [value], "userName": ["Ann"]}).to_csv(path, index=False)
    play = read_file(path, load_mapping("google_play"), author_salt=SALT, now=NOW)
    assert play.valid.empty and "unparsable time" in play.quarantined.reason[0]


def test_future_rows_beyond_the_skew_are_quarantined_and_the_skew_is_configurable(tmp_path):
    rows = [{**ROW, "event_id": "past"}, {**ROW, "event_id": "skew", "created_at": "2026-09-20T12:04:00Z"},
            {**ROW, "event_id": "hour", "created_at": "2026-09-20T13:00:00Z"},
            {**ROW, "event_id": "2099", "created_at": "2099-01-01T00:00:00Z"}]
    path = _jsonl(tmp_path / "f.jsonl", rows)
    default = read_file(path, load_mapping("feedback_jsonl"), now=NOW)
    assert sorted(default.valid.event_id) == ["past", "skew"]
    assert all("time in the future" in r for r in default.quarantined.reason)
    shipped = resources.files("rollback_assets.config").joinpath("mappings", "feedback_jsonl.yaml").read_text()
    spec = {**yaml.safe_load(shipped), "max_future_skew": "2h"}
    lenient = read_file(path, Mapping.from_dict(spec), now=NOW)
    assert sorted(lenient.valid.event_id) == ["hour", "past", "skew"]


def test_naive_time_gets_the_mapping_zone_never_a_neighbours_offset(tmp_path):
    rows = [{**ROW, "event_id": "offset", "created_at": "2026-09-10T10:00:00+08:00"},
            {**ROW, "event_id": "naive", "created_at": "2026-09-10T10:00:00"},
            {**ROW, "event_id": "date", "created_at": "2026-09-10"}]
    path = _jsonl(tmp_path / "t.jsonl", rows)
    utc = read_file(path, load_mapping("feedback_jsonl"), now=NOW).valid.set_index("event_id").created_at
    assert utc["offset"] == pd.Timestamp("2026-09-10T02:00:00Z")
    assert utc["naive"] == pd.Timestamp("2026-09-10T10:00:00Z")
    assert utc["date"] == pd.Timestamp("2026-09-10T00:00:00Z")
    berlin = Mapping.from_dict({"name": "berlin", "format": "jsonl", "source_kind": "review", "timezone": "Europe/Berlin",
                                "columns": {"event_id": "event_id", "text": "text", "created_at": "created_at"}})
    local = read_file(path, berlin, now=NOW).valid.set_index("event_id").created_at
    assert local["offset"] == pd.Timestamp("2026-09-10T02:00:00Z")  # an explicit offset wins over the zone
    assert local["naive"] == pd.Timestamp("2026-09-10T08:00:00Z")  # CEST = UTC+2


@pytest.mark.parametrize("spec, message", [
    ({"timezone": "Mars/Olympus"}, "not an IANA zone name"),
    ({"max_future_skew": "soon"}, "max_future_skew: must be a duration like 90s"),
])
def test_bad_time_settings_are_refused_at_load(spec, message):
    base = {"name": "m", "format": "jsonl", "source_kind": "review",
            "columns": {"event_id": "event_id", "text": "text", "created_at": "created_at"}}
    with pytest.raises(ValueError, match=message):
        Mapping.from_dict({**base, **spec})


# ------------------------------------------------------------------------------------------------ landing zone config
@pytest.fixture
def messy_zone(tmp_path):
    """A good source, a stray folder with no mapping, and a folder whose mapping YAML is broken."""
    landing, mappings = tmp_path / "landing", tmp_path / "mappings"
    for folder in ("feedback_jsonl", "stray", "broken"):
        (landing / folder).mkdir(parents=True)
    mappings.mkdir()
    (mappings / "broken.yaml").write_text("name: broken\nformat: jsonl\ncolumns: [unclosed\n")
    good = _jsonl(landing / "feedback_jsonl" / "a.jsonl", [ROW])
    _jsonl(landing / "stray" / "x.jsonl", [ROW])
    _jsonl(landing / "broken" / "y.jsonl", [ROW])
    resources = {"landing": LandingZoneResource(path=str(landing), mapping_dir=str(mappings), author_salt=SALT),
                 "lake": LakeResource(root=str(tmp_path / "lake"))}
    return landing, mappings, good, resources


def test_stray_folder_and_bad_mapping_affect_only_themselves(messy_zone):
    landing, mappings, good, _ = messy_zone
    scan = scan_landing_zone(landing, [mappings])
    assert [p for p, _ in scan.files] == [good]
    assert len(scan.problems) == 2
    broken, stray = sorted(scan.problems)
    assert str(landing / "stray") in stray and "no mapping named 'stray'" in stray
    assert str(landing / "broken") in broken and "mapping 'broken' is invalid" in broken


def test_sensor_warns_about_bad_folders_and_still_requests_good_files(messy_zone, dagster_instance, capfd):
    landing, mappings, good, resources = messy_zone
    context = dg.build_sensor_context(instance=dagster_instance, resources=resources)
    requests = landing_zone_sensor(context)
    assert [r.run_config["ops"]["raw_feedback"]["config"]["files"] for r in requests] == [[str(good)]]
    warned = capfd.readouterr().err  # the tick's log
    assert "WARNING" in warned and "no mapping named 'stray'" in warned and "mapping 'broken' is invalid" in warned
    (Path(good)).unlink()  # nothing new to run: the skip reason itself names the problems
    skip = landing_zone_sensor(dg.build_sensor_context(instance=dagster_instance, resources=resources))
    assert "2 problem(s)" in skip.skip_message and "stray" in skip.skip_message


def test_run_key_changes_when_the_mapping_is_fixed_so_a_failed_file_is_retried(messy_zone, dagster_instance):
    landing, mappings, _, resources = messy_zone
    (mappings / "broken.yaml").write_text("name: broken\nformat: jsonl\nsource_kind: review\n"
                                          "columns: {event_id: id, text: text, created_at: created_at}\n")
    first = {r.run_config["ops"]["raw_feedback"]["config"]["files"][0]: r.run_key
             for r in landing_zone_sensor(dg.build_sensor_context(instance=dagster_instance, resources=resources))}
    broken_file = str(landing / "broken" / "y.jsonl")
    assert first[broken_file] == f"landing:{file_digest(broken_file)}:{mapping_fingerprint(load_mapping(mappings / 'broken.yaml'))}"
    (mappings / "broken.yaml").write_text("name: broken\nformat: jsonl\nsource_kind: review\n"
                                          "columns: {event_id: event_id, text: text, created_at: created_at}\n")
    again = {r.run_config["ops"]["raw_feedback"]["config"]["files"][0]: r.run_key
             for r in landing_zone_sensor(dg.build_sensor_context(instance=dagster_instance, resources=resources))}
    assert again[broken_file] != first[broken_file]


def test_raw_feedback_run_ingests_good_sources_and_logs_the_bad_ones(messy_zone, dagster_instance):
    from rollback_assets.defs.assets import raw_feedback

    landing, _, _, resources = messy_zone
    result = dg.materialize([raw_feedback], instance=dagster_instance, resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_feedback")[0].metadata
    assert metadata["rows_valid"].value == 1 and len(metadata["landing_zone_problems"].value) == 2
    warnings = [e.message for e in dagster_instance.all_logs(result.run_id) if e.level >= 30]
    assert any("no mapping named 'stray'" in w for w in warnings)


# ------------------------------------------------------------------------------------------------ privacy
def test_empty_salt_is_refused_where_a_mapping_hashes_personal_columns(tmp_path, dagster_instance):
    from rollback_assets.defs.assets import raw_feedback

    landing = tmp_path / "landing" / "support_tickets"
    landing.mkdir(parents=True)
    (landing / "t.csv").write_text("ticket_id,created_at,subject,description,requester_id\nt-1,2026-09-10,a,b,alice\n")
    lake = Lake(tmp_path / "lake")
    files = pipeline.pending_files(lake, scan_landing_zone(landing.parent).files)
    with pytest.raises(MissingAuthorSalt, match="ROLLBACK_AUTHOR_SALT is empty"):
        pipeline.ingest(lake, files)
    assert not lake.exists(RAW_FEEDBACK)  # refused before anything was written
    resources = {"landing": LandingZoneResource(path=str(landing.parent)), "lake": LakeResource(root=str(tmp_path / "lake"))}
    result = dg.materialize([raw_feedback], instance=dagster_instance, resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "ROLLBACK_AUTHOR_SALT is empty" in failure.step_failure_data.error.message
    # jsonl sources that hash nothing still ingest without a salt
    assert pipeline.ingest(lake, [(p, load_mapping("feedback_jsonl"), file_digest(p))
                                  for p in [_jsonl(tmp_path / "a.jsonl", [ROW])]]).stats["rows_valid"] == 1


def test_author_hash_is_keyed_by_the_salt():
    assert author_hash("alice", "s1") != author_hash("alice", "s2")
    assert author_hash("alice", "s1") == author_hash("alice", "s1") and author_hash("", "s1") == ""


def test_quarantine_keeps_no_hashed_or_ignored_personal_fields(tmp_path):
    path = tmp_path / "play.csv"
    pd.DataFrame({"reviewId": ["g1", "g2"], "userName": ["Alice Example", "Bob Example"], "userImage": ["https://img/a", "x"],
                  "content": ["fine", "bad rating"], "score": [5, 9], "at": ["2026-09-10 10:00:00"] * 2,
                  "thumbsUpCount": [1, 2]}).to_csv(path, index=False)
    with open(path, "a") as handle:
        handle.write("g3,Carol Example,img,too,many,fields,here,and,more\n")
    result = read_file(path, load_mapping("google_play"), author_salt=SALT, now=NOW)
    dumped = result.quarantined.to_json()
    assert "Example" not in dumped and "img" not in dumped
    record = json.loads(result.quarantined.set_index("source_row").loc[3, "raw_record"])
    assert record["reviewId"] == "g2" and "userName" not in record and "userImage" not in record
    assert pd.isna(result.quarantined.set_index("source_row").loc[4, "raw_record"])  # unsplittable line: withheld


def test_odd_but_legal_files_are_read(tmp_path):
    """A byte-order mark, a source column named like ingest's own `source_row`, old Mac line ends, an
    empty file: all read, nothing crashes."""
    mapping = load_mapping("feedback_jsonl")
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROW).encode() + b"\n" + json.dumps({**ROW, "event_id": "e-2", "text": ["x"]}).encode() + b"\n")
    result = read_file(bom, mapping, now=NOW)
    assert result.valid.event_id.tolist() == ["e-1"] and result.quarantined.source_row.tolist() == [2]
    clash = _jsonl(tmp_path / "clash.jsonl", [{**ROW, "source_row": 99}])
    result = read_file(clash, mapping, now=NOW)  # strict mapping: an unknown column, at the real line
    assert result.quarantined.source_row.tolist() == [1] and "unknown columns" in result.quarantined.reason[0]
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b"ticket_id,created_at,subject,description\rt-1,2026-09-10T10:00:00Z,a,b\rt-2,now,a,b\r")
    result = read_file(mac, load_mapping("support_tickets"), author_salt=SALT, now=NOW)
    assert result.valid.event_id.tolist() == ["t-1"] and result.quarantined.source_row.tolist() == [3]
    for name in ("empty.csv", "empty.jsonl"):
        (tmp_path / name).write_bytes(b"")
        result = read_file(tmp_path / name, load_mapping("support_tickets"), author_salt=SALT, now=NOW)
        assert result.valid.empty and result.quarantined.empty and result.file_error is None


def test_a_json_array_export_is_read_record_by_record(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([ROW, {**ROW, "event_id": "e-2", "text": ["x"]}, "stray", {**ROW, "event_id": "e-4"}], indent=2))
    result = read_file(path, load_mapping("feedback_jsonl"), now=NOW)
    assert sorted(result.valid.event_id) == ["e-1", "e-4"]
    reasons = _reasons(result)
    assert "text: is a list" in reasons[2] and "not a JSON object" in reasons[3]
