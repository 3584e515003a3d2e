"""Landing-zone files → canonical feedback rows, or quarantine rows with a reason.

Each source is described by a small mapping (YAML): file format, its columns → canonical columns,
its time format. A row that cannot become feedback is never dropped: it is returned with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import yaml

from .ratings import SCALES, SENTIMENT_SOURCES, parse_ratings
from .releases import VersionRule
from .schemas import FEEDBACK_FIELDS, QUARANTINE, RAW_FEEDBACK, SOURCE_KINDS

MAX_TEXT_CHARS = 20_000
DEFAULT_FUTURE_SKEW = "5m"  # clock skew between the source and us; later rows are quarantined
FORMATS = ("csv", "jsonl", "parquet")
_SURROGATES = r"[\udc80-\udcff]"


@dataclass(frozen=True)
class Mapping:
    name: str
    format: str
    columns: dict  # canonical -> source column (or list of source columns joined with ". ")
    time_format: str = "iso"
    source_kind: str | None = None
    channel: str | None = None
    strict: bool = False
    ignore: tuple[str, ...] = ()
    hash_columns: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)
    rating_scale: str = "stars"  # stars | csat | nps | thumbs (core/ratings.py)
    sentiment_from: str = "rating"  # rating | text | both: where a rated row's label comes from
    version_rule: VersionRule | None = None  # pools builds of one release (core/releases.py)
    timezone: str = "UTC"  # zone of timestamps that carry no offset of their own
    max_future_skew: str = DEFAULT_FUTURE_SKEW  # rows dated later than ingest time + this are quarantined

    @classmethod
    def from_dict(cls, spec: dict) -> "Mapping":
        mapping = cls(
            name=spec["name"],
            format=spec["format"],
            columns=dict(spec["columns"]),
            time_format=spec.get("time_format", "iso"),
            source_kind=spec.get("source_kind"),
            channel=spec.get("channel"),
            strict=bool(spec.get("strict", False)),
            ignore=tuple(spec.get("ignore", ())),
            hash_columns=dict(spec.get("hash_columns") or {}),
            constants=dict(spec.get("constants") or {}),
            rating_scale=spec.get("rating_scale", "stars"),
            sentiment_from=spec.get("sentiment_from", "rating"),
            version_rule=VersionRule.from_spec(spec.get("version_rule")),
            timezone=str(spec.get("timezone") or "UTC"),
            max_future_skew=str(spec.get("max_future_skew") or DEFAULT_FUTURE_SKEW),
        )
        mapping.validate()
        return mapping

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"mapping {self.name}: format must be one of {FORMATS}, got {self.format!r}")
        unknown = set(self.columns) - set(FEEDBACK_FIELDS)
        if unknown:
            raise ValueError(f"mapping {self.name}: not canonical columns: {sorted(unknown)}")
        for required in ("event_id", "text", "created_at"):
            if required not in self.columns:
                raise ValueError(f"mapping {self.name}: must map '{required}'")
        if "source_kind" not in self.columns and self.source_kind not in SOURCE_KINDS:
            raise ValueError(f"mapping {self.name}: source_kind must be one of {SOURCE_KINDS}")
        if self.rating_scale not in SCALES:
            raise ValueError(f"mapping {self.name}: rating_scale must be one of {tuple(SCALES)}, got {self.rating_scale!r}")
        if self.sentiment_from not in SENTIMENT_SOURCES:
            raise ValueError(f"mapping {self.name}: sentiment_from must be one of {SENTIMENT_SOURCES}, "
                             f"got {self.sentiment_from!r}")
        for derived in ("rating_scale", "sentiment_from", "app_build"):
            if derived in self.columns:
                raise ValueError(f"mapping {self.name}: '{derived}' is set by the mapping itself, not mapped from a column")
        validate_time_settings(self)

    @property
    def source_columns(self) -> set[str]:
        names: set[str] = set(self.ignore) | set(self.hash_columns.values())
        for source in self.columns.values():
            names.update(source if isinstance(source, list) else [source])
        return names


def load_mapping(name_or_path: str | Path, search_dirs: list[Path] | None = None) -> Mapping:
    """A mapping by file path, by name in `search_dirs`, or by name among the shipped mappings."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return Mapping.from_dict(yaml.safe_load(path.read_text()))
    for folder in search_dirs or []:
        candidate = Path(folder) / f"{name_or_path}.yaml"
        if candidate.exists():
            return Mapping.from_dict(yaml.safe_load(candidate.read_text()))
    shipped = resources.files("rollback_assets.config").joinpath("mappings", f"{name_or_path}.yaml")
    if shipped.is_file():
        return Mapping.from_dict(yaml.safe_load(shipped.read_text()))
    raise FileNotFoundError(f"no mapping named {name_or_path!r}")


@dataclass
class LandingScan:
    """What a landing zone holds: files to read with their mapping, and problems that keep a folder or
    file from being read (each named, so one bad folder never hides or stops the others)."""

    files: list[tuple[Path, Mapping]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def scan_landing_zone(root: str | Path, search_dirs: list[Path] | None = None) -> LandingScan:
    """One subfolder per source, named after its mapping. Folders and files starting with `_` or `.` are
    not sources (notes, the releases file, uploads in progress, Spark's `_SUCCESS` and `.crc` files).
    Every other file of a source folder is a candidate whatever its suffix: `read_file` reads it by its
    real format or quarantines it as a file, so nothing in a source folder is skipped without a trace."""
    root, scan = Path(root), LandingScan()
    if not root.is_dir():
        return scan
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if not entry.is_dir():
            scan.problems.append(f"{entry}: a file at the landing-zone root is not read; put it in its source's folder")
            continue
        try:
            mapping = load_mapping(entry.name, search_dirs)
        except FileNotFoundError:
            scan.problems.append(f"{entry}: no mapping named {entry.name!r}, so its files are not read; add "
                                 f"{entry.name}.yaml to the mappings folder, or start the folder's name with _")
            continue
        except Exception as error:  # noqa: BLE001 - YAML syntax, missing keys, bad values: all reported alike
            detail = " ".join(str(error).split())  # YAML errors span lines; one line reads better in a tick log
            scan.problems.append(f"{entry}: mapping {entry.name!r} is invalid, so its files are not read: "
                                 f"{type(error).__name__}: {detail}")
            continue
        for path in sorted(entry.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.is_dir():
                scan.problems.append(f"{path}: folders inside a source folder are not read")
            else:
                scan.files.append((path, mapping))
    return scan


def mapping_fingerprint(mapping: Mapping) -> str:
    """Changes when the mapping does: part of a file's run key, so a fixed mapping re-reads a file it failed on."""
    spec = json.dumps(asdict(mapping), sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


@dataclass
class IngestResult:
    valid: pd.DataFrame  # RAW_FEEDBACK columns
    quarantined: pd.DataFrame  # QUARANTINE columns
    file_error: str | None = None  # set when the file as a whole could not be read (one quarantine row, source_row 0)

    @property
    def counts(self) -> dict:
        return {"rows_valid": len(self.valid), "rows_quarantined": len(self.quarantined)}


class UnreadableFile(ValueError):
    """The file as a whole cannot be read: not the format it claims, an unknown type, no mapped columns."""


class MissingAuthorSalt(ValueError):
    """Author hashes without a secret salt can be reversed with a dictionary of names."""


def require_author_salt(mappings, author_salt: str) -> None:
    """Refuse to hash personal columns with an empty salt (a 10,000-name dictionary reverses such hashes)."""
    hashing = sorted({m.name for m in mappings if m.hash_columns})
    if hashing and not author_salt:
        raise MissingAuthorSalt(
            f"ROLLBACK_AUTHOR_SALT is empty, but mapping(s) {', '.join(hashing)} hash personal columns: without a "
            "secret salt the hashes can be reversed by hashing a list of names. Set ROLLBACK_AUTHOR_SALT to a long "
            "random secret (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`) and keep it stable; "
            "the demo generates one for itself."
        )


def author_hash(value: str, author_salt: str) -> str:
    """Keyed hash (HMAC-SHA256): the same author gives the same hash under one salt, nothing without it."""
    return hmac.new(author_salt.encode(), value.encode(), hashlib.sha256).hexdigest()[:16] if value else ""


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_PARQUET_MAGIC = b"PAR1"


def file_format(path: str | Path) -> str | None:
    """The format a file is read as: its own bytes and suffix, not its folder's mapping. A Parquet file in a
    JSONL folder is read as Parquet, `.CSV` as CSV; None for a type we cannot read (reported, never skipped)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if handle.read(4) == _PARQUET_MAGIC:
                return "parquet"
    except OSError:
        pass
    return SUFFIX_FORMATS.get(path.suffix.lower())


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
    records, unreadable, flagged = _read_records(path, mapping)
    frame, reasons = _canonical(records, mapping, author_salt)
    reasons.extend((row, reason) for row, reason in flagged)
    for row_number, reason, _ in unreadable:
        reasons.append((row_number, reason))
    reasons.append((frame.source_row[(frame.created_at > now + future_skew(mapping)).to_numpy()],
                    f"time in the future (later than ingest time + {mapping.max_future_skew})"))
    bad_rows = _reasons_by_row(reasons)
    bad_rows.update(_in_file_duplicates(frame[~frame["source_row"].isin(bad_rows)]))
    quarantine = _quarantine_rows(records, bad_rows, str(path), mapping, now)
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


# (source_row, reason, raw line or None) for lines that never became a record; (source_row, reason) for records
# that were read but hold a value of the wrong kind in a column the mapping reads.
Unreadable = list[tuple[int, str, "str | None"]]
Flagged = list[tuple[int, str]]


def _read_records(path: Path, mapping: Mapping) -> tuple[pd.DataFrame, Unreadable, Flagged]:
    """All source columns as strings plus `source_row` (the file's real line; row number for Parquet)."""
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
    values = [c for c in frame.columns if c != "source_row"]
    frame[values] = frame[values].fillna("").astype(ARROW_STRING)
    return frame, unreadable, flagged


ARROW_STRING = pd.StringDtype("pyarrow")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
CSV_FIELD_LIMIT = 1 << 30  # the csv module's default (131,072) made one long field abort the whole file


def _data_name(name: str) -> str:
    """Ingest numbers records in a `source_row` column; a source column of that name is kept beside it."""
    return "source_row (in file)" if name == "source_row" else name


def _read_columns(mapping: Mapping) -> set[str]:
    """Source columns whose values the mapping uses (a wrong-kind value there spoils the record)."""
    return mapping.source_columns - set(mapping.ignore)


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


def _read_csv(path: Path, mapping: Mapping) -> tuple[pd.DataFrame, Unreadable, Flagged]:
    """Arrow reads a well-formed file in one pass. When its row count differs from the file's line count
    (quoted newlines, blank lines) or it rejects a line, the file is read again record by record so that
    line numbers are the file's real lines and only the bad line is quarantined."""
    with _csv_field_limit(), open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        try:
            header = next(csv.reader(handle), None)
        except csv.Error as error:
            raise UnreadableFile(f"malformed CSV header: {error}") from None
    if header is None:
        return pd.DataFrame({"source_row": pd.Series(dtype="int64")}), [], []
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


def _read_csv_rows(path: Path, header: list[str]) -> tuple[pd.DataFrame, Unreadable, Flagged]:
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
            raw = ",".join(record).encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:4096]
            if len(record) != len(header):
                unreadable.append((line, f"wrong number of fields (expected {len(header)}, got {len(record)})", raw))
            elif any(re.search(_SURROGATES, value) for value in record):
                unreadable.append((line, "undecodable bytes (not UTF-8)", raw))
            else:
                rows.append(record)
                numbers.append(line)
    frame = pd.DataFrame(rows, columns=[_data_name(c) for c in header])
    frame.insert(0, "source_row", np.array(numbers, dtype=np.int64))
    return frame, unreadable, []


# ------------------------------------------------------------------------------------------------ JSON lines
def _read_jsonl(path: Path, mapping: Mapping) -> tuple[pd.DataFrame, Unreadable, Flagged]:
    table = _arrow_jsonl(path, mapping)
    if table is not None:
        return _string_frame(table, first_row=1, read_columns=set()), [], []
    read_columns = _read_columns(mapping)
    unreadable: Unreadable = []
    flagged: Flagged = []
    rows = []
    array = _json_array(path)
    if array is not None:  # one JSON document holding a list of records: numbered by element
        for number, obj in enumerate(array, start=1):
            if isinstance(obj, dict):
                rows.append(_json_record(obj, number, read_columns, flagged))
            else:
                unreadable.append((number, "array element is not a JSON object", json.dumps(obj)[:4096]))
        frame = pd.DataFrame(rows) if rows else pd.DataFrame({"source_row": pd.Series(dtype="int64")})
        return frame, unreadable, flagged
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not part of the first record
            line = raw.decode("utf-8", errors="replace")[:4096]
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                unreadable.append((number, "undecodable bytes (not UTF-8)", line))
                continue
            except json.JSONDecodeError as error:
                unreadable.append((number, f"invalid JSON: {error.msg}", line))
                continue
            except RecursionError:
                unreadable.append((number, "invalid JSON: nested too deeply", None))
                continue
            if not isinstance(obj, dict):
                unreadable.append((number, "line is not a JSON object", line))
                continue
            rows.append(_json_record(obj, number, read_columns, flagged))
    frame = pd.DataFrame(rows) if rows else pd.DataFrame({"source_row": pd.Series(dtype="int64")})
    return frame, unreadable, flagged


def _json_record(obj: dict, number: int, read_columns: set[str], flagged: Flagged) -> dict:
    row = {"source_row": number}
    for key, value in obj.items():
        key = _data_name(_LONE_SURROGATE.sub("\ufffd", key))
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


def _arrow_jsonl(path: Path, mapping: Mapping) -> pa.Table | None:
    """The whole file through Arrow, or None when the careful path is needed: a line Arrow rejects (bad
    JSON, a lone surrogate escape, mixed types), blank lines (they shift row numbers), nested values."""
    time_column = mapping.columns["created_at"]
    try:
        table = pa_json.read_json(
            path,
            parse_options=pa_json.ParseOptions(
                explicit_schema=pa.schema([(time_column, pa.string())]), unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if table.num_rows != _line_count(path) or any(pa.types.is_nested(f.type) for f in table.schema):
        return None
    return table


def _cell_text(value) -> tuple[str, str | None]:
    """A JSON or Parquet value as text, and what is wrong with it where a single value is expected."""
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
    text = value if isinstance(value, str) else str(value)
    if _LONE_SURROGATE.search(text):
        return _LONE_SURROGATE.sub("\ufffd", text), "lone surrogate escape (not valid Unicode)"
    return text, None


# ------------------------------------------------------------------------------------------------ Parquet
def _read_parquet(path: Path, mapping: Mapping) -> tuple[pd.DataFrame, Unreadable, Flagged]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise UnreadableFile(f"not a readable Parquet file: {error}") from None
    _check_columns(table.column_names, mapping)
    read_columns = _read_columns(mapping)
    flagged: Flagged = []
    return _string_frame(table, first_row=1, read_columns=read_columns, flagged=flagged), [], flagged


def _line_count(path: Path) -> int:
    data = path.read_bytes()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def _string_frame(table: pa.Table, first_row: int, read_columns: set[str], flagged: Flagged | None = None) -> pd.DataFrame:
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
    frame = pa.table({_data_name(n): c for n, c in columns.items()}).to_pandas(types_mapper={pa.string(): ARROW_STRING}.get)
    frame.insert(0, "source_row", np.arange(first_row, first_row + len(frame)))
    return frame



def _canonical(records: pd.DataFrame, mapping: Mapping, author_salt: str) -> tuple[pd.DataFrame, list]:
    reasons: list[tuple[pd.Series, str]] = []
    out = pd.DataFrame({"source_row": records["source_row"]})
    blank = pd.Series("", index=records.index, dtype=ARROW_STRING)

    def source(name):
        if isinstance(name, list):
            parts = [records.get(n, blank).str.strip() for n in name]
            joined = parts[0]
            for part in parts[1:]:
                joined = joined.where(part == "", joined.where(joined == "", joined + ". ") + part)
            return joined
        return records.get(name, blank)

    for canonical in FEEDBACK_FIELDS:
        if canonical in mapping.columns:
            out[canonical] = source(mapping.columns[canonical]).str.strip()
        elif canonical in mapping.constants:
            out[canonical] = mapping.constants[canonical]
        else:
            out[canonical] = ""
    if "source_kind" not in mapping.columns:
        out["source_kind"] = mapping.source_kind
    if "channel" not in mapping.columns:
        out["channel"] = mapping.channel or mapping.name
    for target, column in mapping.hash_columns.items():
        if column in records:
            out[target] = records[column].map(lambda v: author_hash(v, author_salt)).astype(ARROW_STRING)

    if mapping.strict:
        unknown = [c for c in records.columns if c != "source_row" and c not in mapping.source_columns]
        if unknown:
            has_value = records[unknown].ne("").any(axis=1)
            reasons.append((has_value, f"unknown columns in strict mode: {', '.join(sorted(unknown))}"))

    reasons.append((out.event_id == "", "missing event id"))
    reasons.append((out.text == "", "missing text"))
    reasons.append((out.text.str.len() > MAX_TEXT_CHARS, f"oversized text (over {MAX_TEXT_CHARS} characters)"))
    created = parse_time(out.created_at, mapping)
    reasons.append((created.isna(), f"unparsable time (expected {mapping.time_format})"))
    out["created_at"] = created

    rating, bad_rating = parse_ratings(out.rating, mapping.rating_scale)
    scale = SCALES[mapping.rating_scale]
    reasons.append((bad_rating, f"rating out of range for scale {scale.name} ({scale.low}-{scale.high})"))
    out["rating"] = rating
    out["rating_scale"] = mapping.rating_scale
    out["sentiment_from"] = mapping.sentiment_from
    version = out.app_version.astype(object).where(out.app_version != "", None)
    out["app_version"] = mapping.version_rule.release_of(version) if mapping.version_rule else version
    out["app_build"] = version.where(version.notna() & (version != out.app_version), None)
    bad_kind = ~out.source_kind.isin(SOURCE_KINDS)
    reasons.append((bad_kind, f"source_kind must be one of {', '.join(SOURCE_KINDS)}"))

    verified = out.verified_buyer.str.lower().astype(object)
    out["verified_buyer"] = verified.map({"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False})
    for column in FEEDBACK_FIELDS:
        if column not in ("created_at", "rating", "verified_buyer", "app_version", "app_build"):
            out[column] = out[column].replace("", None)
    return out, [(out.source_row[mask.to_numpy()], reason) for mask, reason in reasons]


# ------------------------------------------------------------------------------------------------ time
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?", re.IGNORECASE)
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Strict ISO 8601: a date, optionally a time, and an offset only after a time. Relative words ("now",
# "today") never match: pandas would read them as the ingest time and hide the row's real age.
_ISO_TIME = re.compile(
    r"\s*(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)"
    r"(?:\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))?)?\s*",
    re.IGNORECASE,
)


def future_skew(mapping: Mapping) -> pd.Timedelta:
    """How far past ingest time a row may be dated (clock skew between systems), e.g. `90s`, `5m`, `1h`."""
    match = _DURATION.fullmatch(str(mapping.max_future_skew).strip())
    if not match:
        raise ValueError(f"mapping {mapping.name}: max_future_skew must be a duration like 90s, 5m or 2h, "
                         f"got {mapping.max_future_skew!r}")
    return pd.Timedelta(**{_DURATION_UNITS[(match.group(2) or "s").lower()]: float(match.group(1))})


def validate_time_settings(mapping: Mapping) -> None:
    try:
        ZoneInfo(mapping.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"mapping {mapping.name}: timezone {mapping.timezone!r} is not an IANA zone name "
                         "(e.g. UTC, Europe/Berlin)") from None
    future_skew(mapping)


def parse_time(values: pd.Series, mapping: Mapping) -> pd.Series:
    """UTC timestamps, NaT where a value is not a time in the mapping's format. Each value is read on its
    own: a value with an offset keeps it, a value without one is in the mapping's `timezone` (never the
    offset of a neighbouring row, as pandas' mixed ISO parsing does)."""
    time_format = mapping.time_format
    if time_format in ("epoch_s", "epoch_ms"):
        unit, limit = ("s", 1e11) if time_format == "epoch_s" else ("ms", 1e14)
        numbers = pd.to_numeric(values, errors="coerce")
        numbers = numbers.where(numbers.abs() < limit)
        return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    if time_format == "iso":
        return _parse_iso(values, mapping.timezone)
    # A strftime pattern. Values without a digit ("now", "today") are never times.
    candidates = values.where(values.str.contains(r"\d", regex=True).fillna(False).astype(bool))
    if "%z" in time_format or "%Z" in time_format:
        return pd.to_datetime(candidates, format=time_format, utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    parsed = pd.to_datetime(candidates, format=time_format, errors="coerce")
    return _localize(parsed, mapping.timezone)


def _parse_iso(values: pd.Series, zone: str) -> pd.Series:
    """Strict ISO values → UTC. Arrow's RE2 sorts the values (not ISO / with an offset / without one) at C
    speed; pandas then parses each group whole, so no value can borrow a neighbour's offset. The rare
    forms pandas does not read (a decimal comma, `UTC`/`GMT`, a space before the offset) are rewritten first."""
    text = pa.array(values, from_pandas=True)
    text = text.cast(pa.string()) if text.type != pa.string() else text
    iso = _matches(text, f"(?i)^{_ISO_TIME.pattern}$")
    aware = iso & _matches(text, _OFFSET_AT_END)
    odd = iso & _matches(text, r"(?i),|UTC|GMT|\d\s+(?:Z|[+-]\d)")
    strings = values
    if odd.any():
        strings = values.astype(object)
        strings[odd] = [_normalised_iso(v) for v in strings[odd]]
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        result[aware] = pd.to_datetime(strings[aware], format="ISO8601", utc=True, errors="coerce")
    naive = iso & ~aware
    if naive.any():
        result[naive] = _localize(pd.to_datetime(strings[naive], format="ISO8601", errors="coerce"), zone)
    return result


_OFFSET_AT_END = r"(?i)\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)\s*$"


def _matches(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy(zero_copy_only=False)


def _normalised_iso(value: str) -> str:
    match = _ISO_TIME.fullmatch(value)
    local = match["date"] + ("T" + match["time"].replace(",", ".") if match["time"] else "")
    zone = (match["zone"] or "").upper()
    return local + ("+00:00" if zone in ("Z", "UTC", "GMT") else zone)


def _localize(naive: pd.Series, zone: str) -> pd.Series:
    """Wall-clock times in `zone` → UTC. A time skipped by a DST change moves forward; a repeated one is
    read as the first (summer-time) occurrence."""
    localized = naive.dt.tz_localize(zone, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
    return localized.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _reasons_by_row(reasons: list) -> dict[int, str]:
    by_row: dict[int, list[str]] = {}
    for rows, reason in reasons:
        for row in (rows.tolist() if isinstance(rows, pd.Series) else [rows]):
            by_row.setdefault(int(row), []).append(reason)
    return {row: "; ".join(dict.fromkeys(rs)) for row, rs in by_row.items()}


def _quarantine_rows(
    records: pd.DataFrame, bad_rows: dict[int, str], path: str, mapping: Mapping, now
) -> pd.DataFrame:
    if not bad_rows:
        return QUARANTINE.empty_frame()
    raw = records.set_index("source_row")
    kept = _kept_columns(mapping)
    # A line that never became a record cannot be split into fields, so nobody can tell which of them it
    # holds (a user name, an unknown column): it is withheld; its line number finds it in the landing file.
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
                "raw_record": _raw_json(record),
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
    return _read_columns(mapping) - set(mapping.hash_columns.values())


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


SUFFIXES = {"csv": (".csv",), "jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}


def select_candidates(candidates: list[tuple[Path, Mapping]], files: list[str]) -> list[tuple[Path, Mapping]]:
    """The candidates named in `files` (all when empty); a named file outside the zone is an error."""
    if not files:
        return candidates
    wanted = {str(Path(f).resolve()) for f in files}
    chosen = [(p, m) for p, m in candidates if str(p.resolve()) in wanted]
    missing = wanted - {str(p.resolve()) for p, _ in chosen}
    if missing:
        raise FileNotFoundError(f"not in the landing zone (or no valid mapping for its folder): {sorted(missing)}")
    return chosen
