"""Landing files → records: every source column as text, numbered by the file's real line.

Reads CSV, JSON lines (or one JSON array) and Parquet by the file's own format. A line that cannot be
read, or a value of the wrong kind in a column the mapping uses, is returned with its reason (never
dropped, never fatal); a file that cannot be read at all raises `UnreadableFile`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .landing import SUFFIX_FORMATS, file_format
from .mapping import Mapping

_UNDECODED = re.compile(r"[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


class UnreadableFile(ValueError):
    """The file as a whole cannot be read: not the format it claims, an unknown type, no mapped columns."""


# (source_row, reason, raw line or None) for lines that never became a record; (source_row, reason) for records
# that were read but hold a value of the wrong kind in a column the mapping reads.
Unreadable = list[tuple[int, str, "str | None"]]
Flagged = list[tuple[int, str]]


def read_records(path: Path, mapping: Mapping) -> tuple[pa.Table, Unreadable, Flagged]:
    """All source columns as non-null strings ("" where a value is missing) plus `source_row` (the file's
    real line; row number for Parquet). Arrow, not pandas: normalising a clean file is then a handful of
    vectorised kernels over its columns (a pandas operation per column per file cost more than the rows)."""
    kind = file_format(path)
    if kind is None:
        raise UnreadableFile(f"unsupported file type {path.suffix or '(no suffix)'!r}: the landing zone reads "
                             f"{', '.join(sorted(SUFFIX_FORMATS))}")
    if kind == "parquet":
        frame, unreadable, flagged = _read_parquet(path, mapping)
    elif kind == "csv":
        frame, unreadable, flagged = _read_csv(path, mapping)
    else:
        frame, unreadable, flagged = _read_jsonl(path, mapping)
    filled = [frame.column(c) if c == "source_row" else pc.fill_null(frame.column(c).cast(pa.string()), "")
              for c in frame.column_names]
    return pa.table(filled, names=frame.column_names), unreadable, flagged


ARROW_STRING = pd.StringDtype("pyarrow")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
CSV_FIELD_LIMIT = 1 << 30  # the csv module's default (131,072) made one long field abort the whole file


def _data_name(name: str) -> str:
    """Ingest numbers records in a `source_row` column; a source column of that name is kept beside it."""
    return "source_row (in file)" if name == "source_row" else name


def _check_columns(columns: list[str], mapping: Mapping) -> None:
    """File-level checks for formats with a header or schema: a file without the mapped id, text or time
    column is not this mapping's file (quarantined as a file, not as every one of its rows)."""
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise UnreadableFile(f"duplicate column names: {', '.join(duplicated)}")
    for canonical in ("event_id", "text", "created_at"):
        source = mapping.columns[canonical]
        wanted = source if isinstance(source, list) else [source]
        if not set(wanted) & set(columns):
            shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
            raise UnreadableFile(f"no column {' or '.join(wanted)} for {canonical} (mapping {mapping.name}); "
                                 f"the file has: {shown or 'no columns'}")


# ------------------------------------------------------------------------------------------------ CSV
class _csv_field_limit:
    """Raise the csv module's per-field limit while reading (it is process-wide; restored afterwards)."""

    def __enter__(self):
        self.previous = csv.field_size_limit(CSV_FIELD_LIMIT)

    def __exit__(self, *exc):
        csv.field_size_limit(self.previous)


def _read_csv(path: Path, mapping: Mapping) -> tuple[pa.Table, Unreadable, Flagged]:
    """Arrow reads a well-formed file in one pass. When its row count differs from the file's line count
    (quoted newlines, blank lines) or it rejects a line, the file is read again record by record so that
    line numbers are the file's real lines and only the bad line is quarantined."""
    with _csv_field_limit(), open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        try:
            header = next(csv.reader(handle), None)
        except csv.Error as error:
            raise UnreadableFile(f"malformed CSV header: {error}") from None
    if header is None:
        return _no_records(), [], []
    if any(_LONE_SURROGATE.search(name) for name in header):
        raise UnreadableFile("the header is not UTF-8")
    _check_columns(header, mapping)
    try:
        table = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={c: pa.string() for c in header}, strings_can_be_null=False),
        )
        if table.num_rows == _line_count(path) - 1 and table.column_names == header:
            return _string_frame(table, first_row=2, read_columns=set()), [], []
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    return _read_csv_rows(path, header)


def _read_csv_rows(path: Path, header: list[str]) -> tuple[pa.Table, Unreadable, Flagged]:
    """Record by record: a row with the wrong number of fields, bytes that are not UTF-8 or a CSV syntax
    error is quarantined on its own, numbered by the line it starts on. Blank lines are not records."""
    unreadable, rows, numbers = [], [], []
    with _csv_field_limit(), open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        start = reader.line_num + 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                unreadable.append((start, f"malformed CSV: {error}", None))
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not record:
                continue
            joined = ",".join(record)  # a field holds undecodable bytes exactly when the joined line does
            if len(record) != len(header):
                unreadable.append((line, f"wrong number of fields (expected {len(header)}, got {len(record)})", _shown(joined)))
            elif _UNDECODED.search(joined):
                unreadable.append((line, "undecodable bytes (not UTF-8)", _shown(joined)))
            else:
                rows.append(record)
                numbers.append(line)
    fields = list(zip(*rows)) if rows else [()] * len(header)
    columns = {"source_row": pa.array(numbers, pa.int64())}
    columns.update({_data_name(name): pa.array(values, pa.string()) for name, values in zip(header, fields)})
    return pa.table(columns), unreadable, []


def _shown(joined: str) -> str:
    return joined.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:4096]


# ------------------------------------------------------------------------------------------------ JSON lines
def _read_jsonl(path: Path, mapping: Mapping) -> tuple[pa.Table, Unreadable, Flagged]:
    """JSON lines a block of lines at a time: Arrow reads a block in one call; a block it rejects is read
    record by record, so one bad line costs its block, not its file."""
    read_columns = mapping.read_columns
    unreadable: Unreadable = []
    flagged: Flagged = []
    array = _json_array(path)
    if array is not None:  # one JSON document holding a list of records: numbered by element
        rows = []
        for number, obj in enumerate(array, start=1):
            if isinstance(obj, dict):
                rows.append(_json_record(obj, number, read_columns, flagged))
            else:
                unreadable.append((number, "array element is not a JSON object", json.dumps(obj)[:4096]))
        return _records_table(rows), unreadable, flagged
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not part of the first record
    # A block is a slice of the file's bytes ending at a newline: no Python object per line, and Arrow
    # reads it without a copy. Only a block Arrow rejects is split into lines.
    tables = []
    start, first_line = 0, 1
    while start < len(data):
        cut = data.find(b"\n", min(start + JSONL_BLOCK_BYTES, len(data)) - 1)
        end = len(data) if cut < 0 else cut + 1
        block = memoryview(data)[start:end]
        complete = block[-1:] == b"\n"  # False only for a last line without a newline
        # Counted by numpy, which releases the GIL (bytes.count held it: 0.2 s over 1M rows' files).
        newlines = np.count_nonzero(np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start) == ord("\n"))
        line_count = int(newlines) + (0 if complete else 1)
        table = _arrow_jsonl_block(block, line_count, complete, mapping)
        if table is not None:
            tables.append(_string_frame(table, first_row=first_line, read_columns=set()))
        else:
            rows = []
            lines = bytes(block).split(b"\n")[:line_count]
            for offset, line in enumerate(lines):
                # The line as the file holds it, newline included (JSON's error message for a cut-off
                # string depends on it), except a last line that has none.
                raw = line if offset == line_count - 1 and not complete else line + b"\n"
                record = _json_line(raw, first_line + offset, read_columns, unreadable, flagged)
                if record is not None:
                    rows.append(record)
            tables.append(_records_table(rows))
        start, first_line = end, first_line + line_count
    if not tables:
        return _no_records(), unreadable, flagged
    names = list(dict.fromkeys(name for table in tables for name in table.column_names))
    return pa.concat_tables(tables, promote_options="default").select(names), unreadable, flagged


JSONL_BLOCK_BYTES = 1 << 20  # bytes per Arrow read: a bad line sends only its block down the record-by-record path
# (~60 ms for a block of 2,400 generated reviews); 256 KiB blocks spent a third more on Arrow's per-call cost


def _json_line(raw: bytes, number: int, read_columns: set[str], unreadable: Unreadable, flagged: Flagged) -> dict | None:
    """One line as a record, or None (blank, or unreadable with its reason)."""
    if not raw.strip():
        return None
    line = raw.decode("utf-8", errors="replace")[:4096]
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        unreadable.append((number, "undecodable bytes (not UTF-8)", line))
        return None
    except json.JSONDecodeError as error:
        unreadable.append((number, f"invalid JSON: {error.msg}", line))
        return None
    except RecursionError:
        unreadable.append((number, "invalid JSON: nested too deeply", None))
        return None
    if not isinstance(obj, dict):
        unreadable.append((number, "line is not a JSON object", line))
        return None
    return _json_record(obj, number, read_columns, flagged)


def _records_table(rows: list[dict]) -> pa.Table:
    """Records that may name different keys: one column per key, in order of first appearance (a record
    without a key has a null there, read as "")."""
    if not rows:
        return _no_records()
    names = list(dict.fromkeys(key for row in rows for key in row))
    return pa.table({name: pa.array([row.get(name) for row in rows], pa.int64() if name == "source_row" else pa.string())
                     for name in names})


def _no_records() -> pa.Table:
    return pa.table({"source_row": pa.array([], pa.int64())})


def _json_record(obj: dict, number: int, read_columns: set[str], flagged: Flagged) -> dict:
    row = {"source_row": number}
    for key, value in obj.items():
        key = _data_name(key if key.isascii() else _LONE_SURROGATE.sub("\ufffd", key))
        text, problem = _cell_text(value)
        if problem and key in read_columns:
            flagged.append((number, f"{key}: {problem}"))
        row[key] = text
    return row


def _json_array(path: Path) -> list | None:
    """The records of a `.json` export that is one JSON array rather than JSON lines, else None."""
    with open(path, "rb") as handle:
        if not handle.read(256).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, list) else None


def _arrow_jsonl_block(block: memoryview, line_count: int, complete: bool, mapping: Mapping) -> pa.Table | None:
    """A block of `line_count` lines (`complete`: ending with a newline) through Arrow, or None when the
    careful path is needed: a line Arrow rejects (bad JSON, a lone surrogate escape, mixed types), blank
    lines (they would shift row numbers), nested values."""
    time_column = mapping.columns["created_at"]
    source = pa.BufferReader(block) if complete else io.BytesIO(bytes(block) + b"\n")
    try:
        table = pa_json.read_json(
            source,
            parse_options=pa_json.ParseOptions(
                explicit_schema=pa.schema([(time_column, pa.string())]), unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if table.num_rows != line_count or any(pa.types.is_nested(f.type) for f in table.schema):
        return None
    return table


def _cell_text(value) -> tuple[str, str | None]:
    """A JSON or Parquet value as text, and what is wrong with it where a single value is expected."""
    if isinstance(value, str):  # by far the most common: checked first, and ASCII text needs no scan
        if value.isascii() or not _LONE_SURROGATE.search(value):
            return value, None
        return _LONE_SURROGATE.sub("\ufffd", value), "lone surrogate escape (not valid Unicode)"
    if value is None:
        return "", None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, (dict, list, tuple)):
        kind = "an object" if isinstance(value, dict) else "a list"
        return _LONE_SURROGATE.sub("\ufffd", json.dumps(value, ensure_ascii=False, default=str)), f"is {kind}, expected a single value"
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8"), None
        except UnicodeDecodeError:
            return value.decode("utf-8", "replace"), "undecodable bytes (not UTF-8)"
    return _cell_text(str(value))


# ------------------------------------------------------------------------------------------------ Parquet
def _read_parquet(path: Path, mapping: Mapping) -> tuple[pa.Table, Unreadable, Flagged]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise UnreadableFile(f"not a readable Parquet file: {error}") from None
    _check_columns(table.column_names, mapping)
    read_columns = mapping.read_columns
    flagged: Flagged = []
    return _string_frame(table, first_row=1, read_columns=read_columns, flagged=flagged), [], flagged


def _line_count(path: Path) -> int:
    data = path.read_bytes()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def _string_frame(table: pa.Table, first_row: int, read_columns: set[str], flagged: Flagged | None = None) -> pa.Table:
    """Every column as text. A column Arrow cannot cast (lists, structs, bytes that are not UTF-8) is
    converted value by value; a wrong-kind value in a column the mapping reads is flagged for its row."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            column = pc.if_else(column, "true", "false")
        try:
            if pa.types.is_nested(column.type):
                raise pa.ArrowNotImplementedError("nested")
            columns[name] = pc.fill_null(column.cast(pa.string()), "")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            texts = []
            for offset, value in enumerate(column.to_pylist()):
                text, problem = _cell_text(value)
                if problem and name in read_columns and flagged is not None:
                    flagged.append((first_row + offset, f"{name}: {problem}"))
                texts.append(text)
            columns[name] = pa.array(texts, pa.string())
    rows = pa.array(np.arange(first_row, first_row + table.num_rows, dtype=np.int64))
    return pa.table({"source_row": rows, **{_data_name(n): c for n, c in columns.items()}})
