"""Fuzzed landing-zone files with known answers, for the reliability suite and `bench/chaos.py`.

Each writer returns what must happen to every record it wrote: valid records must land with their id,
their file's real line and the right UTC time; bad ones must be quarantined at their real line with a
reason containing the expected words. `check` compares an ingest's outcome with that and counts.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# A source whose Parquet export has a list-valued and a struct-valued column next to the mapped ones, and
# whose text is joined from a title and a body that is sometimes (wrongly) a list.
PARQUET_MAPPING = """\
name: fuzz_parquet
format: parquet
source_kind: review
channel: fuzz
strict: false
columns:
  event_id: id
  text: [title, body]
  created_at: at
  product: app
"""

WORDS = ["checkout", "crash", "love", "slow", "search", "Zahlung", "kaputt", "très", "lent", "😡", "👍", "naïve",
         "\"quoted\"", "comma,separated", "semi;colon", "tab\tbed", "back\\slash", "<b>html</b>", "日本語", "ölçü"]


@dataclass
class Expected:
    """What one file must produce."""

    path: Path
    valid: dict[str, tuple[int, pd.Timestamp]] = field(default_factory=dict)  # event id -> (line, created_at UTC)
    bad: dict[int, str] = field(default_factory=dict)  # line -> words the quarantine reason must contain

    @property
    def records(self) -> int:
        return len(self.valid) + len(self.bad)


class _Ids:
    def __init__(self, prefix: str):
        self.prefix, self.n = prefix, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n}"


def _text(rng: random.Random, newlines: bool = False) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
    if newlines and rng.random() < 0.3:
        words.insert(rng.randint(0, len(words)), "\n")
    return " ".join(words)


def _time(rng: random.Random, now: datetime) -> tuple[str, pd.Timestamp]:
    """A past time in one of the ISO forms sources really send, and the UTC instant it means (naive = UTC)."""
    instant = (now - timedelta(days=rng.randint(0, 400), seconds=rng.randint(0, 86_399))).replace(microsecond=0)
    form = rng.randrange(6)
    if form == 0:
        return instant.strftime("%Y-%m-%dT%H:%M:%SZ"), pd.Timestamp(instant)
    if form in (1, 2):
        hours = rng.choice([-8, -3, 2, 5, 9]) + (0.5 if form == 2 else 0)
        offset = timezone(timedelta(hours=hours))
        local = instant.astimezone(offset)
        return local.isoformat(), pd.Timestamp(instant)
    if form == 3:  # naive, with a space: the mapping's zone (UTC) applies, never a neighbour's offset
        return instant.strftime("%Y-%m-%d %H:%M:%S"), pd.Timestamp(instant)
    if form == 4:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.123+00:00"), pd.Timestamp(instant) + pd.Timedelta(milliseconds=123)
    near_future = now + timedelta(seconds=60)  # inside the allowed skew: lands
    return near_future.strftime("%Y-%m-%dT%H:%M:%SZ"), pd.Timestamp(near_future.replace(microsecond=0))


def _bad_time(rng: random.Random, now: datetime) -> tuple[str, str]:
    return rng.choice([
        ("now", "unparsable time"), ("today", "unparsable time"), ("yesterday", "unparsable time"),
        ("2099-01-01T00:00:00Z", "time in the future"),
        ((now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"), "time in the future"),
        ("10/09/2026", "unparsable time"), ("2026-13-45T99:00:00", "unparsable time"),
    ])


# ------------------------------------------------------------------------------------------------ JSON lines
def write_jsonl(path: Path, records: int, rng: random.Random, now: datetime) -> Expected:
    """feedback_jsonl rows; about a third poisoned in every way the issue lists."""
    out, ids, lines = Expected(path), _Ids(path.stem), []

    def add(line: bytes, bad: str | None = None, valid: tuple[str, pd.Timestamp] | None = None):
        lines.append(line)
        if bad:
            out.bad[len(lines)] = bad
        if valid:
            out.valid[valid[0]] = (len(lines), valid[1])

    def row(**changes) -> dict:
        created, _ = _time(rng, now)
        base = {"event_id": ids(), "source_kind": "review", "channel": "fuzz", "created_at": created,
                "text": _text(rng), "rating": rng.choice([1, 2, 3, 4, 5, None]), "product": "shop-app"}
        return {**base, **changes}

    written = 0
    while written < records:
        if rng.random() < 0.05:
            lines.append(rng.choice([b"", b"   ", b"\t"]))  # blank lines are not records
            continue
        written += 1
        kind = rng.randrange(20)
        if kind >= 7:
            created, instant = _time(rng, now)
            event_id = ids()
            if rng.random() < 0.1:  # a numeric id is still an id
                event_id = str(rng.randint(10**8, 10**9))
            record = row(event_id=int(event_id) if event_id.isdigit() else event_id, created_at=created)
            add(json.dumps(record, ensure_ascii=rng.random() < 0.5).encode(), valid=(event_id, instant))
        elif kind == 0:
            add(json.dumps(row(text="before \ud800 after")).encode(), "lone surrogate")
        elif kind == 1:
            add(json.dumps(row(event_id={"id": ids()})).encode(), "event_id: is an object")
        elif kind == 2:
            add(json.dumps(row(text=[_text(rng), _text(rng)])).encode(), "text: is a list")
        elif kind == 3:
            value, reason = _bad_time(rng, now)
            add(json.dumps(row(created_at=value)).encode(), reason)
        elif kind == 4:
            add(json.dumps(row(event_id=""))[: rng.randint(5, 40)].encode(), "invalid JSON")
        elif kind == 5:
            add(json.dumps(row()).encode().replace(b"shop-app", b"shop-\xff\xfe"), "undecodable bytes")
        else:
            add(rng.choice([b"[1, 2, 3]", b"\"just a string\"", b"42", b"null"]), "not a JSON object")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return out


# ------------------------------------------------------------------------------------------------ CSV
CSV_HEADER = ["ticket_id", "created_at", "subject", "description", "product", "requester_id", "status", "surprise"]


def write_csv(path: Path, records: int, rng: random.Random, now: datetime) -> Expected:
    """support_tickets rows with quoted newlines (real line numbers move), blank lines, a field longer than
    the csv module's default limit, wrong field counts, bytes that are not UTF-8, relative and future times."""
    out, ids = Expected(path), _Ids(path.stem)
    chunks: list[bytes] = []
    line = 1

    def serialise(fields: list[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(fields)
        return buffer.getvalue()

    chunks.append(serialise(CSV_HEADER).encode())
    line += 1
    written = 0
    while written < records:
        if rng.random() < 0.03:
            chunks.append(b"\n")
            line += 1
            continue
        written += 1
        created, instant = _time(rng, now)
        event_id = ids()
        fields = [event_id, created, _text(rng), _text(rng, newlines=True), "shop-app", f"user{rng.randint(1, 999)}",
                  "open", ""]
        kind = rng.randrange(20)
        reason = None
        if kind == 0:
            fields[0], reason = "", "missing event id"
        elif kind == 1:
            fields[3], reason = "x" * rng.randint(131_073, 150_000), "oversized text"
        elif kind == 2:
            fields, reason = fields + ["EXTRA"], "wrong number of fields"
        elif kind == 3:
            fields[1], reason = _bad_time(rng, now)
        elif kind == 4:
            fields[7], reason = "unexpected", "unknown columns in strict mode: surprise"
        text = serialise(fields)
        data = text.encode()
        if kind == 5:
            data, reason = data.replace(b"shop-app", b"shop-\xe9", 1), "undecodable bytes"
        chunks.append(data)
        if reason:
            out.bad[line] = reason
        else:
            out.valid[event_id] = (line, instant)
        line += text.count("\n")
    path.write_bytes(b"".join(chunks))
    return out


# ------------------------------------------------------------------------------------------------ Parquet
def write_parquet(path: Path, records: int, rng: random.Random, now: datetime) -> Expected:
    """fuzz_parquet rows: list and struct columns beside the mapped ones, a body that is sometimes a list."""
    out, ids = Expected(path), _Ids(path.stem)
    columns: dict[str, list] = {"id": [], "title": [], "body": [], "at": [], "app": [], "tags": [], "meta": []}
    for number in range(1, records + 1):
        created, instant = _time(rng, now)
        event_id = ids()
        values = {"id": event_id, "title": _text(rng), "body": None, "at": created, "app": "shop-app",
                  "tags": [rng.choice(WORDS) for _ in range(rng.randint(0, 3))], "meta": {"k": rng.randint(0, 9)}}
        kind = rng.randrange(12)
        if kind == 0:
            values["body"], reason = [_text(rng)], "body: is a list"
        elif kind == 1:
            values["id"], reason = None, "missing event id"
        elif kind == 2:
            values["at"], reason = _bad_time(rng, now)
        elif kind == 3:
            values["title"], reason = None, "missing text"
        else:
            reason = None
        for name, value in values.items():
            columns[name].append(value)
        if reason:
            out.bad[number] = reason
        else:
            out.valid[event_id] = (number, instant)
    table = pa.table({
        "id": pa.array(columns["id"], pa.string()), "title": pa.array(columns["title"], pa.string()),
        "body": pa.array(columns["body"], pa.list_(pa.string())), "at": pa.array(columns["at"], pa.string()),
        "app": pa.array(columns["app"], pa.string()), "tags": pa.array(columns["tags"], pa.list_(pa.string())),
        "meta": pa.array(columns["meta"], pa.struct([("k", pa.int64())])),
    })
    pq.write_table(table, path)
    return out


# ------------------------------------------------------------------------------------------------ checking
def check(expected: list[Expected], valid: pd.DataFrame, quarantined: pd.DataFrame) -> dict:
    """Counts of what went right and wrong; every `*_wrong`/`missing`/`unexpected` count must be 0."""
    figures = {"files": len(expected), "records": 0, "valid_expected": 0, "landed": 0, "valid_missing": 0,
               "valid_wrong_line": 0, "valid_wrong_time": 0, "bad_expected": 0, "bad_quarantined_right": 0,
               "bad_missing": 0, "bad_wrong_reason": 0, "unexpected_quarantine": 0, "bad_landed": 0,
               "internal_errors": int(quarantined.reason.str.contains("internal error").sum()) if len(quarantined) else 0}
    landed = valid.set_index("event_id") if len(valid) else pd.DataFrame()
    examples: list[str] = []
    for exp in expected:
        figures["records"] += exp.records
        figures["valid_expected"] += len(exp.valid)
        figures["bad_expected"] += len(exp.bad)
        q = quarantined[quarantined.source_file == str(exp.path)].set_index("source_row").reason.to_dict()
        for event_id, (line, instant) in exp.valid.items():
            if event_id not in landed.index:
                figures["valid_missing"] += 1
                examples.append(f"{exp.path.name}:{line} {event_id} not landed ({q.get(line)})")
                continue
            figures["landed"] += 1
            row = landed.loc[event_id]
            if int(row.source_row) != line:
                figures["valid_wrong_line"] += 1
                examples.append(f"{exp.path.name}:{line} {event_id} landed as line {row.source_row}")
            if pd.Timestamp(row.created_at) != instant:
                figures["valid_wrong_time"] += 1
                examples.append(f"{exp.path.name}:{line} {event_id} time {row.created_at} != {instant}")
        for line, words in exp.bad.items():
            if line not in q:
                figures["bad_missing"] += 1
                examples.append(f"{exp.path.name}:{line} expected quarantine ({words}), not there")
            elif words not in q[line]:
                figures["bad_wrong_reason"] += 1
                examples.append(f"{exp.path.name}:{line} reason {q[line]!r} lacks {words!r}")
            else:
                figures["bad_quarantined_right"] += 1
        figures["unexpected_quarantine"] += len(set(q) - set(exp.bad))
        examples.extend(f"{exp.path.name}:{line} unexpectedly quarantined: {q[line]}" for line in sorted(set(q) - set(exp.bad))[:5])
        landed_here = valid[valid.source_file == str(exp.path)] if len(valid) else valid
        figures["bad_landed"] += int(landed_here.source_row.isin(list(exp.bad)).sum()) if len(landed_here) else 0
    figures["examples"] = examples[:20]
    return figures


FAILURE_COUNTS = ("valid_missing", "valid_wrong_line", "valid_wrong_time", "bad_missing", "bad_wrong_reason",
                  "unexpected_quarantine", "bad_landed", "internal_errors")


# ------------------------------------------------------------------------------------------------ mutation
def mutate(data: bytes, rng: random.Random) -> bytes:
    """Random byte-level damage: flipped, inserted and deleted bytes, a cut, a spliced-in repeat."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        if not data:
            break
        where, action = rng.randrange(len(data)), rng.randrange(6)
        if action == 0:
            data[where] = rng.randrange(256)
        elif action == 1:
            data[where:where] = bytes(rng.choice(b'\x00\xff\n\r",{}[]\\:') for _ in range(rng.randint(1, 4)))
        elif action == 2:
            del data[where:where + rng.randint(1, 64)]
        elif action == 3:
            del data[where:]
        elif action == 4:
            start = rng.randrange(len(data))
            data[where:where] = data[start:start + rng.randint(1, 200)]
        else:
            data[where:where] = "\ud800".encode("utf-8", "surrogatepass") if rng.random() < 0.5 else b"\\ud800"
    return bytes(data)


def check_mutated(result, path: Path) -> list[str]:
    """What must hold for any damaged file: no reader error, no row both landed and quarantined, and for
    JSON lines every non-blank line accounted for exactly once (or the whole file quarantined)."""
    problems = []
    reasons = result.quarantined.reason.tolist()
    problems += [f"{path.name}: {r}" for r in reasons if "internal error" in r]
    landed, quarantined = set(result.valid.source_row), list(result.quarantined.source_row)
    if landed & set(quarantined) or len(quarantined) != len(set(quarantined)):
        problems.append(f"{path.name}: a row both landed and quarantined, or quarantined twice")
    if path.suffix == ".jsonl" and result.file_error is None:
        lines = {n for n, line in enumerate(path.read_bytes().split(b"\n"), start=1) if line.strip()}
        if landed | set(quarantined) != lines:
            problems.append(f"{path.name}: lines not accounted for: {sorted(lines ^ (landed | set(quarantined)))[:10]}")
    return problems
