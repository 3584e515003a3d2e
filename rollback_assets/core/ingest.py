"""Landing-zone file + mapping → canonical feedback rows, or quarantine rows with a reason.

The order of one file's read: records (core/file_records.py), canonical columns (core/normalise.py),
then every reason a row cannot be feedback; a row is never dropped, it is quarantined with its line and
reason. Mappings live in core/mapping.py, the landing-zone scan in core/landing.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .file_records import UnreadableFile, read_records
from .mapping import Mapping
from .normalise import canonical
from .schemas import FEEDBACK_FIELDS, QUARANTINE, RAW_FEEDBACK


@dataclass
class IngestResult:
    valid: pd.DataFrame  # RAW_FEEDBACK columns
    quarantined: pd.DataFrame  # QUARANTINE columns
    file_error: str | None = None  # set when the file as a whole could not be read (one quarantine row, source_row 0)

    @property
    def counts(self) -> dict:
        return {"rows_valid": len(self.valid), "rows_quarantined": len(self.quarantined)}


def read_file(path: str | Path, mapping: Mapping, *, author_salt: str = "", now: datetime | None = None) -> IngestResult:
    """Never raises for what is in the file: a bad record is quarantined with its line and reason, a file
    that cannot be read at all becomes one quarantine row (source_row 0) and `file_error`."""
    now = now or datetime.now(timezone.utc)
    try:
        return _read_file(Path(path), mapping, author_salt, now)
    except UnreadableFile as error:
        return _unreadable_file(path, mapping, str(error), now)
    except OSError as error:
        return _unreadable_file(path, mapping, f"cannot open the file: {error.strerror or error}", now)
    except Exception as error:  # noqa: BLE001 - a reader bug must cost one file, not the batch; the reason says so
        return _unreadable_file(path, mapping, f"internal error while reading: {type(error).__name__}: {error}", now)


def _read_file(path: Path, mapping: Mapping, author_salt: str, now: datetime) -> IngestResult:
    records, unreadable, flagged = read_records(path, mapping)
    frame, reasons = canonical(records, mapping, author_salt)
    reasons.extend((row, reason) for row, reason in flagged)
    for row_number, reason, _ in unreadable:
        reasons.append((row_number, reason))
    reasons.append((frame.source_row[(frame.created_at > now + mapping.future_skew).to_numpy()],
                    f"time in the future (later than ingest time + {mapping.max_future_skew})"))
    bad_rows = _reasons_by_row(reasons)
    bad_rows.update(_in_file_duplicates(frame[~frame["source_row"].isin(bad_rows)]))
    raw_lines = {number: line for number, _, line in unreadable}
    quarantine = _quarantine_rows(records, bad_rows, raw_lines, str(path), mapping, now)
    good = frame[~frame["source_row"].isin(bad_rows)].copy()
    good["source_file"] = str(path)
    good["created_date"] = good["created_at"].dt.date
    good["content_hash"] = _content_hash(good)
    good["ingested_at"] = now
    return IngestResult(good[RAW_FEEDBACK.names].reset_index(drop=True), quarantine)


def _unreadable_file(path, mapping: Mapping, reason: str, now: datetime) -> IngestResult:
    row = {"source_file": str(path), "source_row": 0, "mapping": mapping.name,
           "reason": f"file not read: {reason}"[:2000], "event_id": None, "raw_record": None, "quarantined_at": now}
    return IngestResult(RAW_FEEDBACK.empty_frame(), pd.DataFrame([row]), file_error=reason)


def _reasons_by_row(reasons: list) -> dict[int, str]:
    by_row: dict[int, list[str]] = {}
    for rows, reason in reasons:
        for row in (rows.tolist() if isinstance(rows, pd.Series) else [rows]):
            by_row.setdefault(int(row), []).append(reason)
    return {row: "; ".join(dict.fromkeys(rs)) for row, rs in by_row.items()}


def _quarantine_rows(
    records: pd.DataFrame, bad_rows: dict[int, str], raw_lines: dict[int, str | None], path: str, mapping: Mapping, now
) -> pd.DataFrame:
    if not bad_rows:
        return QUARANTINE.empty_frame()
    raw = records.set_index("source_row")
    kept = _kept_columns(mapping)
    # A line that never became a record cannot be split into fields: withheld when the mapping hashes or
    # drops any (it may carry a user name in clear); the landing file itself still has it.
    keep_lines = mapping.strict and not mapping.hash_columns and not mapping.ignore
    read = raw.loc[raw.index.intersection(list(bad_rows)), [c for c in raw.columns if c in kept]].to_dict("index")
    rows = []
    for row, reason in sorted(bad_rows.items()):
        record = read.get(row)
        rows.append(
            {
                "source_file": path,
                "source_row": row,
                "mapping": mapping.name,
                "reason": reason,
                "event_id": (record or {}).get(_id_column(mapping)) or None,
                "raw_record": _raw_json(record) if record is not None else (raw_lines.get(row) if keep_lines else None),
                "quarantined_at": now,
            }
        )
    return pd.DataFrame(rows)


def _in_file_duplicates(good: pd.DataFrame) -> dict[int, str]:
    """A file that repeats an event id keeps its last row; the earlier ones are quarantined, not lost."""
    duplicated = good.duplicated("event_id", keep="last")
    return {int(r): "duplicate event id in file (a later row wins)" for r in good.source_row[duplicated]}


def _kept_columns(mapping: Mapping) -> set[str]:
    """What a quarantine row may show of a record: the columns the mapping stores as they are, never one it
    hashes (the point of hashing is that the value is not kept) or ignores or does not know."""
    return mapping.read_columns - set(mapping.hash_columns.values())


def _id_column(mapping: Mapping) -> str:
    source = mapping.columns["event_id"]
    return source if isinstance(source, str) else source[0]


def _raw_json(record: dict | None) -> str | None:
    if record is None:
        return None
    text = json.dumps(record, ensure_ascii=True, default=str)
    return text[:4096]


def _content_hash(frame: pd.DataFrame) -> pd.Series:
    hashed = pd.util.hash_pandas_object(frame[list(FEEDBACK_FIELDS)], index=False)
    return pd.Series([f"{h:016x}" for h in hashed.to_numpy()], index=frame.index, dtype=object)
