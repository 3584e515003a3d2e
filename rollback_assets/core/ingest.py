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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import text_hash
from .file_records import UnreadableFile, read_records
from .mapping import Mapping
from .normalise import canonical
from .schemas import FEEDBACK_FIELDS, QUARANTINE, RAW_FEEDBACK, UTC_TS, is_text


@dataclass
class IngestResult:
    rows: pa.Table  # RAW_FEEDBACK's Arrow schema: what the pipeline merges as it is
    quarantined: pd.DataFrame  # QUARANTINE columns
    file_error: str | None = None  # set when the file as a whole could not be read (one quarantine row, source_row 0)

    @property
    def valid(self) -> pd.DataFrame:
        """The rows as a pandas frame (RAW_FEEDBACK columns), for callers that work in pandas; ratings as
        Int64 (whole numbers, blank where unrated), not floats."""
        return self.rows.to_pandas(types_mapper={pa.int16(): pd.Int64Dtype()}.get)

    @property
    def counts(self) -> dict:
        return {"rows_valid": self.rows.num_rows, "rows_quarantined": len(self.quarantined)}


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
    latest = pa.scalar(pd.Timestamp(now) + mapping.future_skew, UTC_TS)
    future = pc.fill_null(pc.greater(frame.column("created_at"), latest), False).to_numpy(zero_copy_only=False)
    reasons.append((frame.column("source_row").to_numpy()[future],
                    f"time in the future (later than ingest time + {mapping.max_future_skew})"))
    bad_rows = _reasons_by_row(reasons)
    rows = frame.column("source_row").to_numpy()
    good = frame.filter(pa.array(~np.isin(rows, list(bad_rows))))
    duplicates = _in_file_duplicates(good)
    if duplicates:
        bad_rows.update(duplicates)
        good = good.filter(pa.array(~np.isin(good.column("source_row").to_numpy(), list(duplicates))))
    quarantine = _quarantine_rows(records, bad_rows, str(path), mapping, now)
    count = good.num_rows
    columns = {name: good.column(name) for name in good.column_names}
    columns.update(
        source_file=pa.repeat(pa.scalar(str(path), pa.string()), count),
        created_date=pc.cast(good.column("created_at"), pa.date32()),
        content_hash=_content_hash(good, verified_as_bool=frame.column("verified_buyer").null_count == 0),
        ingested_at=pa.repeat(pa.scalar(now, UTC_TS), count),
    )
    return IngestResult(pa.Table.from_arrays([columns[n] for n in RAW_FEEDBACK.names], schema=RAW_FEEDBACK.arrow_schema),
                        quarantine)


def _unreadable_file(path, mapping: Mapping, reason: str, now: datetime) -> IngestResult:
    row = {"source_file": str(path), "source_row": 0, "mapping": mapping.name,
           "reason": f"file not read: {reason}"[:2000], "event_id": None, "raw_record": None, "quarantined_at": now}
    return IngestResult(RAW_FEEDBACK.arrow_schema.empty_table(), pd.DataFrame([row]), file_error=reason)


def _reasons_by_row(reasons: list) -> dict[int, str]:
    by_row: dict[int, list[str]] = {}
    for rows, reason in reasons:
        for row in (rows.tolist() if isinstance(rows, np.ndarray) else [rows]):
            by_row.setdefault(int(row), []).append(reason)
    return {row: "; ".join(dict.fromkeys(rs)) for row, rs in by_row.items()}


def _quarantine_rows(
    records: pa.Table, bad_rows: dict[int, str], path: str, mapping: Mapping, now
) -> pd.DataFrame:
    if not bad_rows:
        return QUARANTINE.empty_frame()
    kept = _kept_columns(mapping)
    # A line that never became a record cannot be split into fields, so nobody can tell which of them it
    # holds (a user name, an unknown column): it is withheld; its line number finds it in the landing file.
    bad = records.filter(pc.is_in(records.column("source_row"), pa.array(list(bad_rows), pa.int64())))
    shown = bad.select([c for c in bad.column_names if c in kept]).to_pylist()
    read = dict(zip(bad.column("source_row").to_pylist(), shown))
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
                "raw_record": _raw_json(record),
                "quarantined_at": now,
            }
        )
    return pd.DataFrame(rows)


def _in_file_duplicates(good: pa.Table) -> dict[int, str]:
    """A file that repeats an event id keeps its last row; the earlier ones are quarantined, not lost."""
    duplicated = pd.Series(good.column("event_id").to_numpy(zero_copy_only=False)).duplicated(keep="last").to_numpy()
    return {int(r): "duplicate event id in file (a later row wins)" for r in good.column("source_row").to_numpy()[duplicated]}


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


def _content_hash(rows: pa.Table, verified_as_bool: bool) -> pa.Array:
    """pandas' row hash (`hash_pandas_object`) of the canonical fields, as 16 hex digits: the hash stored
    rows have always carried, so a corrected re-delivery of an unchanged row keeps its hash and is not
    rewritten (nor re-scored). Each column is hashed as the frame it was first computed on held it:
    text as categoricals (`text_hash`, from Arrow's buffers without the GIL: files are read on threads),
    Int64 ratings, nanosecond UTC times, `verified_buyer` as bool where the file had no blank one, else
    as objects; those few columns go through pandas' own `hash_array`."""
    others = rows.select([name for name in FEEDBACK_FIELDS if not is_text(rows.schema.field(name).type)])
    frame = others.to_pandas(types_mapper={pa.int16(): pd.Int64Dtype()}.get)
    frame["created_at"] = frame["created_at"].astype("datetime64[ns, UTC]")
    frame["verified_buyer"] = frame["verified_buyer"].astype(bool if verified_as_bool else object)
    hashed = text_hash.combine([text_hash.hash_text(rows.column(name)) if name not in frame
                                else pd.util.hash_pandas_object(frame[name], index=False).to_numpy()
                                for name in FEEDBACK_FIELDS])
    hex_digits = hashed.astype(">u8").tobytes().hex().encode()
    return pa.array(np.frombuffer(hex_digits, dtype="S16")).cast(pa.string())
