"""Landing-zone files → feedback rows or quarantine rows with a reason; MERGE on event_id."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute, patched in a test
import pyarrow.parquet as pq
import pytest

from rollback_assets.core import pipeline
from rollback_assets.core.ingest import read_file
from rollback_assets.core.landing import file_digest
from rollback_assets.core.mapping import Mapping, load_mapping
from rollback_assets.core.normalise import MAX_TEXT_CHARS
from rollback_assets.core.lake import Lake
from rollback_assets.core.schemas import LANDING_FILES, QUARANTINE, RAW_FEEDBACK

GOOD = {"event_id": "e-1", "source_kind": "review", "channel": "app_store", "created_at": "2026-09-10T10:00:00Z",
        "text": "checkout works", "rating": 4, "product": "shop-app", "app_version": "5.2", "locale": "de-DE",
        "device": "mobile", "verified_buyer": True}


def _jsonl(path, lines: list) -> None:
    data = b""
    for line in lines:
        data += (line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode()) + b"\n"
    path.write_bytes(data)


def _assert_accounted(result, lines: int) -> None:
    assert len(result.valid) + len(result.quarantined) == lines
    assert not set(result.valid.source_row) & set(result.quarantined.source_row)


# ------------------------------------------------------------------------------------------------ quarantine
def test_jsonl_every_reason_is_quarantined_with_file_row_and_reason(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        GOOD,                                                            # 1 valid
        {**GOOD, "event_id": ""},                                        # 2 missing id
        {**GOOD, "event_id": "e-3", "text": "   "},                      # 3 missing text (blank)
        {**GOOD, "event_id": "e-4", "created_at": "last tuesday"},       # 4 unparsable time
        {**GOOD, "event_id": "e-5", "rating": 9},                        # 5 rating out of range
        {**GOOD, "event_id": "e-6", "rating": 0},                        # 6 rating out of range (low)
        {**GOOD, "event_id": "e-7", "text": "x" * (MAX_TEXT_CHARS + 1)},  # 7 oversized
        b'{"event_id": "e-8", "text": "\xff\xfe broken"}',               # 8 undecodable bytes
        '{"event_id": "e-9", "text": "truncated',                       # 9 invalid JSON
        {**GOOD, "event_id": "e-10", "favourite_colour": "teal"},        # 10 unknown column (strict)
        {**GOOD, "event_id": "e-11", "text": "first delivery"},          # 11 duplicate, earlier
        {**GOOD, "event_id": "e-11", "text": "second delivery"},         # 12 duplicate, later: wins
        "[1, 2, 3]",                                                     # 13 not an object
        {**GOOD, "event_id": "e-14", "source_kind": "tweet"},            # 14 bad source kind
        {**GOOD, "event_id": "e-15", "rating": 3.5},                     # 15 non-integer rating
    ]
    _jsonl(path, lines)
    result = read_file(path, load_mapping("feedback_jsonl"))
    _assert_accounted(result, len(lines))
    q = result.quarantined.set_index("source_row")
    expected = {
        2: "missing event id", 3: "missing text", 4: "unparsable time", 5: "rating out of range", 6: "rating out of range",
        7: "oversized text", 8: "undecodable bytes", 9: "invalid JSON", 10: "unknown columns in strict mode: favourite_colour",
        11: "duplicate event id in file", 13: "not a JSON object", 14: "source_kind must be one of", 15: "rating out of range",
    }
    assert sorted(q.index) == sorted(expected)
    for row, reason in expected.items():
        assert reason in q.loc[row, "reason"], (row, q.loc[row, "reason"])
    assert (result.quarantined.source_file == str(path)).all()
    assert (result.quarantined.mapping == "feedback_jsonl").all()
    assert q.loc[4, "event_id"] == "e-4"
    assert json.loads(q.loc[5, "raw_record"])["rating"] == "9"
    assert len(q.loc[7, "raw_record"]) <= 4096
    assert sorted(result.valid.source_row) == [1, 12]
    assert result.valid.set_index("event_id").loc["e-11", "text"] == "second delivery"
    assert result.counts == {"rows_valid": 2, "rows_quarantined": 13}
    assert set(QUARANTINE.names) <= set(result.quarantined.columns)


def test_valid_jsonl_row_is_canonical(tmp_path):
    path = tmp_path / "one.jsonl"
    _jsonl(path, [{**GOOD, "rating": None}, "", {**GOOD, "event_id": "e-2", "verified_buyer": "no", "rating": "5"}])
    result = read_file(path, load_mapping("feedback_jsonl"))
    assert result.quarantined.empty
    v = result.valid.set_index("event_id")
    assert list(result.valid.columns) == RAW_FEEDBACK.names
    assert v.loc["e-1", "created_at"] == pd.Timestamp("2026-09-10T10:00:00Z")
    assert str(v.loc["e-1", "created_date"]) == "2026-09-10"
    assert pd.isna(v.loc["e-1", "rating"]) and v.loc["e-2", "rating"] == 5
    assert v.loc["e-1", "verified_buyer"] == True and v.loc["e-2", "verified_buyer"] == False  # noqa: E712
    assert sorted(result.valid.source_row) == [1, 3]  # blank line 2 is not a row
    RAW_FEEDBACK.to_arrow(result.valid)  # conforms to the declared schema


def test_csv_undecodable_bytes_and_unknown_columns(tmp_path):
    path = tmp_path / "tickets.csv"
    header = b"ticket_id,created_at,subject,description,product,locale,device,requester_id,status,surprise\n"
    rows = [
        b"t-1,2026-09-10T10:00:00Z,Checkout broken,the order button does nothing,shop-app,de-DE,mobile,u1,open,\n",
        b"t-2,2026-09-10T11:00:00Z,Caf\xe9 crash,app crashes,shop-app,de-DE,mobile,u2,open,\n",
        b"t-3,2026-09-10T12:00:00Z,Hello,world,shop-app,de-DE,mobile,u3,open,unexpected value\n",
        b",2026-09-10T12:00:00Z,no id,here,shop-app,de-DE,mobile,u4,open,\n",
    ]
    path.write_bytes(header + b"".join(rows))
    result = read_file(path, load_mapping("support_tickets"))
    _assert_accounted(result, len(rows))
    q = result.quarantined.set_index("source_row")
    assert "undecodable bytes" in q.loc[3, "reason"]  # line 3 of the file (line 1 is the header)
    assert "unknown columns in strict mode: surprise" in q.loc[4, "reason"]
    assert "missing event id" in q.loc[5, "reason"]
    assert result.valid.event_id.tolist() == ["t-1"] and result.valid.source_row.tolist() == [2]


def test_csv_row_with_extra_fields_is_quarantined_not_fatal(tmp_path):
    """BUG: one row with too many fields makes pandas raise for the whole file (the asset fails on every run)."""
    path = tmp_path / "tickets.csv"
    path.write_text(
        "ticket_id,created_at,subject,description\n"
        "t-1,2026-09-10T10:00:00Z,Checkout,broken\n"
        "t-2,2026-09-10T10:00:00Z,Checkout,broken,EXTRA,FIELDS\n"
        "t-3,2026-09-10T10:00:00Z,Search,fine\n"
    )
    result = read_file(path, load_mapping("support_tickets"))
    _assert_accounted(result, 3)
    assert result.quarantined.source_row.tolist() == [3]
    assert sorted(result.valid.event_id) == ["t-1", "t-3"]


# ------------------------------------------------------------------------------------------------ mappings
def test_google_play_scraper_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    frame = pd.DataFrame(
        {
            "reviewId": ["gp-1", "gp-2", "gp-3", "gp-4"],
            "userName": ["Alice", "Bob", "Carol", ""],
            "content": ["Checkout crashes every time", "Great app", "ok", "Terrible search"],
            "score": ["1", "5", "7", "2"],
            "thumbsUpCount": ["3", "0", "1", "0"],
            "reviewCreatedVersion": ["5.2.0", "", "5.1.0", "5.2.0"],
            "at": ["2026-09-10 10:00:00", "2026-09-11 09:30:00", "2026-09-11 09:31:00", "2026-09-11T09:31:00Z"],
            "appVersion": ["5.2.0", "", "5.1.0", "5.2.0"],
            "appId": ["com.acme.shop"] * 4,
        }
    )
    frame.to_csv(path, index=False)
    result = read_file(path, load_mapping("google_play"), author_salt="pepper")
    _assert_accounted(result, 4)
    q = result.quarantined.set_index("source_row")
    assert "rating out of range" in q.loc[4, "reason"]
    assert "unparsable time" in q.loc[5, "reason"]  # ISO is not the scraper's format
    v = result.valid.set_index("event_id")
    assert sorted(v.index) == ["gp-1", "gp-2"]
    assert (v.source_kind == "review").all() and (v.channel == "google_play").all()
    assert (v["product"] == "com.acme.shop").all()
    assert v.loc["gp-1", "text"] == "Checkout crashes every time"
    assert v.loc["gp-1", "rating"] == 1 and v.loc["gp-2", "rating"] == 5
    assert v.loc["gp-1", "app_version"] == "5.2" and v.loc["gp-1", "app_build"] == "5.2.0"
    assert pd.isna(v.loc["gp-2", "app_version"])
    assert v.loc["gp-1", "created_at"] == pd.Timestamp("2026-09-10 10:00:00", tz="UTC")
    assert v.loc["gp-1", "author_hash"] == hmac.new(b"pepper", b"Alice", hashlib.sha256).hexdigest()[:16]
    assert "Alice" not in json.dumps(result.valid.astype(str).to_dict("records"))


def test_support_tickets_subject_and_description_joined(tmp_path):
    path = tmp_path / "tickets.csv"
    pd.DataFrame(
        {
            "ticket_id": ["t-1", "t-2", "t-3", "t-4"],
            "created_at": ["2026-09-10T10:00:00Z"] * 4,
            "subject": ["Checkout broken", "Only a subject", "", ""],
            "description": ["the order button does nothing", "", "only a description", ""],
            "product": ["shop-app"] * 4,
            "requester_id": ["r1", "r2", "r3", "r4"],
            "status": ["open"] * 4,
            "priority": ["high"] * 4,
        }
    ).to_csv(path, index=False)
    result = read_file(path, load_mapping("support_tickets"))
    _assert_accounted(result, 4)
    text = result.valid.set_index("event_id").text
    assert text["t-1"] == "Checkout broken. the order button does nothing"
    assert text["t-2"] == "Only a subject"
    assert text["t-3"] == "only a description"
    assert result.quarantined.set_index("source_row").loc[5, "reason"] == "missing text"
    assert (result.valid.source_kind == "ticket").all() and (result.valid.channel == "helpdesk").all()
    assert result.valid.author_hash.notna().all()


def test_parquet_input(tmp_path):
    path = tmp_path / "nps.parquet"
    table = pa.table(
        {
            "id": ["n-1", "n-2", "n-3"],
            "ts": pa.array(pd.to_datetime(["2026-09-10 10:00", "2026-09-11 11:00", "2026-09-12 12:00"], utc=True)),
            "comment": ["love it", "", "search is slow"],
            "stars": pa.array([5, None, 2], type=pa.int64()),
        }
    )
    pq.write_table(table, path)
    mapping = Mapping.from_dict({"name": "nps_parquet", "format": "parquet", "source_kind": "nps",
                                 "columns": {"event_id": "id", "created_at": "ts", "text": "comment", "rating": "stars"}})
    result = read_file(path, mapping)
    _assert_accounted(result, 3)
    assert result.quarantined.source_row.tolist() == [2]
    assert result.quarantined.reason.tolist() == ["missing text"]
    v = result.valid.set_index("event_id")
    assert v.loc["n-1", "created_at"] == pd.Timestamp("2026-09-10 10:00", tz="UTC")
    assert v.loc["n-3", "rating"] == 2 and v.loc["n-1", "rating"] == 5
    assert v.loc["n-1", "source_row"] == 1 and v.loc["n-3", "source_row"] == 3


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"format": "xml"}, "format: Input should be 'csv', 'jsonl' or 'parquet'"),
        ({"columns": {"event_id": "id", "text": "t", "created_at": "c", "colour": "x"}}, "not canonical columns: colour"),
        ({"columns": {"event_id": "id", "text": "t"}}, "must map created_at"),
        ({"source_kind": "tweet"}, "source_kind: Input should be 'review', 'ticket', 'nps' or 'chat'"),
    ],
)
def test_mapping_validation(spec, message):
    base = {"name": "m", "format": "csv", "source_kind": "review", "columns": {"event_id": "id", "text": "t", "created_at": "c"}}
    with pytest.raises(ValueError, match=message):
        Mapping.from_dict({**base, **spec})


# ------------------------------------------------------------------------------------------------ MERGE
def _ingest(lake, path, mapping):
    return pipeline.ingest(lake, [(path, mapping, file_digest(path))])


def test_merge_on_event_id(tmp_path):
    lake, mapping = Lake(tmp_path / "lake"), load_mapping("feedback_jsonl")
    rows = [{**GOOD, "event_id": f"e-{i}", "created_at": f"2026-09-1{i}T10:00:00Z"} for i in range(3)]
    first = tmp_path / "a.jsonl"
    _jsonl(first, rows)
    result = _ingest(lake, first, mapping)
    assert result.stats["rows_inserted"] == 3
    version = lake.version(RAW_FEEDBACK)

    again = tmp_path / "b.jsonl"  # same rows, other order: other bytes, same content
    _jsonl(again, list(reversed(rows)))
    result = _ingest(lake, again, mapping)
    assert result.stats["rows_inserted"] == 0 and result.stats["rows_updated"] == 0
    assert len(lake.read(RAW_FEEDBACK)) == 3

    changed = tmp_path / "c.jsonl"
    _jsonl(changed, [{**rows[1], "text": "checkout is broken now"}])
    result = _ingest(lake, changed, mapping)
    assert result.stats["rows_inserted"] == 0 and result.stats["rows_updated"] == 1
    raw = lake.read(RAW_FEEDBACK).set_index("event_id")
    assert len(raw) == 3
    assert raw.loc["e-1", "text"] == "checkout is broken now"
    assert raw.loc["e-1", "source_file"] == str(changed)
    assert raw.loc["e-0", "text"] == GOOD["text"]
    assert lake.version(RAW_FEEDBACK) > version
    ledger = lake.read(LANDING_FILES)
    assert sorted(ledger.path) == sorted(map(str, [first, again, changed]))


def test_many_files_read_on_threads_merge_in_their_order(tmp_path, monkeypatch):
    """Files are read several at a time and a batch merges while the next is read: the later file still
    wins, across batches, and every file's rows and ledger entry land once."""
    monkeypatch.setattr(pipeline, "CHUNK_ROWS", 5)  # a batch every two or three files
    monkeypatch.setattr(pipeline, "READ_THREADS", 3)
    lake, mapping = Lake(tmp_path / "lake"), load_mapping("feedback_jsonl")
    files = []
    for n in range(9):
        path = tmp_path / f"day{n}.jsonl"
        _jsonl(path, [{**GOOD, "event_id": "shared", "text": f"version {n}"}]
               + [{**GOOD, "event_id": f"f{n}-{i}", "created_at": f"2026-09-1{i}T10:00:00Z"} for i in range(2)])
        files.append((path, mapping, file_digest(path)))
    read = pipeline.read_file

    def earlier_files_read_slower(path, *args, **kwargs):  # they finish last: their order must come from the list
        time.sleep(0.02 * (9 - int(path.stem.removeprefix("day"))))
        return read(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "read_file", earlier_files_read_slower)
    result = pipeline.ingest(lake, files)
    raw = lake.read(RAW_FEEDBACK).set_index("event_id")
    assert len(raw) == 1 + 9 * 2 and result.stats["rows_valid"] == 27
    assert raw.loc["shared", "text"] == "version 8" and raw.loc["shared", "source_file"] == str(files[-1][0])
    assert sorted(lake.read(LANDING_FILES).path) == sorted(str(f[0]) for f in files)
    assert result.version == lake.version(RAW_FEEDBACK)


def test_redelivery_that_moves_the_day_updates_not_duplicates(tmp_path):
    """BUG: the MERGE prunes target partitions to the *source* rows' created_date, so a corrected timestamp
    on another day misses the existing row and inserts a second one with the same event_id."""
    lake, mapping = Lake(tmp_path / "lake"), load_mapping("feedback_jsonl")
    first = tmp_path / "a.jsonl"
    _jsonl(first, [GOOD])
    _ingest(lake, first, mapping)
    corrected = tmp_path / "b.jsonl"
    _jsonl(corrected, [{**GOOD, "created_at": "2026-09-11T01:00:00Z"}])
    _ingest(lake, corrected, mapping)
    raw = lake.read(RAW_FEEDBACK)
    assert raw.event_id.tolist() == ["e-1"]
    assert raw.created_at.iloc[0] == pd.Timestamp("2026-09-11T01:00:00Z")


def test_an_event_id_with_a_quote_moves_day_like_any_other(tmp_path):
    """The moved row's delete names its id in SQL: quoted as a string literal (Python's repr put an id
    holding a quote in double quotes, a column name to delta-rs, and the whole batch failed)."""
    lake, mapping = Lake(tmp_path / "lake"), load_mapping("feedback_jsonl")
    for n, created_at in enumerate((GOOD["created_at"], "2026-09-11T01:00:00Z")):
        path = tmp_path / f"delivery{n}.jsonl"
        _jsonl(path, [{**GOOD, "event_id": "o'brien-1", "created_at": created_at}])
        _ingest(lake, path, mapping)
    raw = lake.read(RAW_FEEDBACK)
    assert raw.event_id.tolist() == ["o'brien-1"] and str(raw.created_date.iloc[0]) == "2026-09-11"


def test_same_bytes_under_another_name_are_pending_once(tmp_path):
    lake, mapping = Lake(tmp_path / "lake"), load_mapping("feedback_jsonl")
    a, b = tmp_path / "a.jsonl", tmp_path / "copy.jsonl"
    _jsonl(a, [GOOD])
    b.write_bytes(a.read_bytes())
    pending = pipeline.pending_files(lake, [(a, mapping), (b, mapping)])
    assert [p for p, _, _ in pending] == [a]
    pipeline.ingest(lake, pending)
    assert pipeline.pending_files(lake, [(a, mapping), (b, mapping)]) == []


def test_redelivery_that_moves_the_day_moves_it_downstream_too(tmp_path):
    """A corrected day must not leave the old row behind in enriched_feedback or scored_sentiment."""
    from rollback_assets.core import pipeline
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.releases import release_record, releases_frame
    from rollback_assets.core.schemas import ENRICHED_FEEDBACK, SCORED_SENTIMENT
    from rollback_assets.core.scoring.lexicon import LexiconScorer
    from rollback_assets.core.taxonomy import Taxonomy

    lake = Lake(tmp_path / "lake")
    pipeline.register_releases(lake, releases_frame([release_record("app", "1.0", "2026-01-01", product="shop")]))
    mapping = load_mapping("feedback_jsonl")
    for n, day in enumerate(("2026-02-01", "2026-02-03")):
        path = tmp_path / f"delivery{n}.jsonl"
        path.write_text(json.dumps({"event_id": "e-1", "source_kind": "review", "channel": "app", "product": "shop",
                                    "created_at": f"{day}T10:00:00Z", "text": f"checkout broken ({n})", "rating": 1}) + "\n")
        counts = pipeline.ingest(lake, pipeline.pending_files(lake, [(path, mapping)])).stats
        pipeline.enrich(lake, ("device",))
        pipeline.score(lake, LexiconScorer(), Taxonomy.load())
    # The moved row is an update of a known event (deleted from its old day, then inserted), as Spark counts it.
    assert (counts["rows_inserted"], counts["rows_updated"]) == (0, 1)
    for table in (ENRICHED_FEEDBACK, SCORED_SENTIMENT):
        rows = lake.read(table, columns=["event_id", "created_date", "text"])
        assert rows.event_id.tolist() == ["e-1"], table.name
        assert str(rows.created_date.iloc[0]) == "2026-02-03" and rows.text.iloc[0].endswith("(1)")


def test_content_hash_is_the_one_earlier_releases_stored(tmp_path):
    """A re-delivered unchanged row must keep its hash across releases of this code, or every row of a lake
    would look changed (and be re-scored) after an upgrade. Pinned values: computed by 78fedb1, before the
    hash read its text columns as Arrow dictionaries and hashed them with `text_hash` instead of pandas."""
    rows = [GOOD, {**GOOD, "event_id": "e-2", "text": "Zahlung schlägt fehl 😡", "rating": None, "locale": None,
                   "created_at": "2026-09-10T12:30:00.250+02:00"},
            {**GOOD, "event_id": "e-3", "product": "shop-web", "app_version": None, "verified_buyer": False}]
    path = tmp_path / "pinned.jsonl"
    _jsonl(path, rows)
    result = read_file(path, load_mapping("feedback_jsonl"))
    assert dict(zip(result.valid.event_id, result.valid.content_hash)) == {
        "e-1": "44d06c17d4661a6b", "e-2": "91ae80f10957f9c7", "e-3": "21ef379efade79cb"}


def test_times_with_offsets_read_alike_whether_arrow_reads_the_whole_file_or_not(tmp_path, monkeypatch):
    """A file of times with offsets is cast by Arrow; one value Arrow refuses (no 30 February) sends the file
    through pandas. Every other row must get the same instant either way, and the bad one is quarantined."""
    cast, to_times = pa.compute.cast, []

    def counted(values, target_type=None, *args, **kwargs):  # counts the casts of text to times, casts as before
        if target_type == pa.timestamp("ns", "UTC") and pa.types.is_string(getattr(values, "type", None)):
            to_times.append(len(values))
        return cast(values, target_type, *args, **kwargs)

    monkeypatch.setattr(pa.compute, "cast", counted)
    times = ["2026-09-10T10:00:00Z", "2026-09-10T12:30:00.250+02:00", "2026-09-10T23:59:59.123456-07:30",
             "2026-09-10T05:00:00+0530", "2026-09-10T05:00+01:00", "2024-02-29T12:00:00-00:00"]
    rows = [{**GOOD, "event_id": f"e-{i}", "created_at": t} for i, t in enumerate(times)]
    clean, mixed = tmp_path / "clean.jsonl", tmp_path / "mixed.jsonl"
    _jsonl(clean, rows)
    _jsonl(mixed, rows + [{**GOOD, "event_id": "bad", "created_at": "2026-02-30T10:00:00Z"}])
    by_arrow = read_file(clean, load_mapping("feedback_jsonl")).valid.set_index("event_id").created_at
    assert to_times == [len(times)]  # the clean file's times went through Arrow's cast
    by_pandas = read_file(mixed, load_mapping("feedback_jsonl"))
    assert by_arrow.to_dict() == by_pandas.valid.set_index("event_id").created_at.to_dict()
    assert by_arrow["e-2"] == pd.Timestamp("2026-09-11T07:29:59.123456Z")
    assert by_arrow["e-3"] == pd.Timestamp("2026-09-09T23:30:00Z")
    assert by_pandas.quarantined.event_id.tolist() == ["bad"]
    assert "unparsable time" in by_pandas.quarantined.reason[0]
