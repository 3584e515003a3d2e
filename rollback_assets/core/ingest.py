"""Landing-zone files → canonical feedback rows, or quarantine rows with a reason.

Each source is described by a small mapping (YAML): file format, its columns → canonical columns,
its time format. A row that cannot become feedback is never dropped: it is returned with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import yaml

from .schemas import FEEDBACK_FIELDS, QUARANTINE, RAW_FEEDBACK, SOURCE_KINDS

MAX_TEXT_CHARS = 20_000
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
class IngestResult:
    valid: pd.DataFrame  # RAW_FEEDBACK columns
    quarantined: pd.DataFrame  # QUARANTINE columns

    @property
    def counts(self) -> dict:
        return {"rows_valid": len(self.valid), "rows_quarantined": len(self.quarantined)}


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_file(path: str | Path, mapping: Mapping, *, author_salt: str = "", now: datetime | None = None) -> IngestResult:
    now = now or datetime.now(timezone.utc)
    records, unreadable = _read_records(Path(path), mapping)
    frame, reasons = _canonical(records, mapping, author_salt)
    for row_number, reason, _ in unreadable:
        reasons.append((row_number, reason))
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


def _read_records(path: Path, mapping: Mapping) -> tuple[pd.DataFrame, list[tuple[int, str, str | None]]]:
    """All source columns as strings plus `source_row`; lines that cannot be parsed at all are listed.

    Arrow reads a well-formed file in one pass; a file with a malformed line is read again line by
    line so that only that line is quarantined.
    """
    table = _read_arrow(path, mapping)
    if table is not None:
        return _string_frame(table, first_row=2 if mapping.format == "csv" else 1), []
    unreadable: list[tuple[int, str, str | None]] = []
    if mapping.format == "csv":
        frame, unreadable = _read_csv_rows(path)
    else:
        rows = []
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                line = raw.decode("utf-8", errors="replace")[:4096]
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    unreadable.append((number, "undecodable bytes (not UTF-8)", line))
                    continue
                except json.JSONDecodeError as error:
                    unreadable.append((number, f"invalid JSON: {error.msg}", line))
                    continue
                if not isinstance(obj, dict):
                    unreadable.append((number, "line is not a JSON object", line))
                    continue
                rows.append({"source_row": number, **{k: "" if v is None else _json_text(v) for k, v in obj.items()}})
        frame = pd.DataFrame(rows) if rows else pd.DataFrame({"source_row": pd.Series(dtype="int64")})
    values = [c for c in frame.columns if c != "source_row"]
    frame[values] = frame[values].fillna("").astype(ARROW_STRING)
    return frame, unreadable


ARROW_STRING = pd.StringDtype("pyarrow")


def _read_csv_rows(path: Path) -> tuple[pd.DataFrame, list[tuple[int, str, str | None]]]:
    """Record by record: a row with the wrong number of fields or bytes that are not UTF-8 is
    quarantined on its own, numbered by the line it starts on."""
    unreadable, rows, numbers = [], [], []
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        start = reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            raw = ",".join(record).encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:4096]
            if len(record) != len(header):
                unreadable.append((line, f"wrong number of fields (expected {len(header)}, got {len(record)})", raw))
            elif any(re.search(_SURROGATES, value) for value in record):
                unreadable.append((line, "undecodable bytes (not UTF-8)", raw))
            else:
                rows.append(record)
                numbers.append(line)
    frame = pd.DataFrame(rows, columns=header)
    frame.insert(0, "source_row", np.array(numbers, dtype=np.int64))
    return frame, unreadable


def _json_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _read_arrow(path: Path, mapping: Mapping) -> pa.Table | None:
    """The whole file through Arrow, or None when it has a line Arrow rejects (then: line by line)."""
    try:
        if mapping.format == "parquet":
            return pq.read_table(path)
        if mapping.format == "csv":
            with open(path, newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), [])
            return pa_csv.read_csv(
                path,
                parse_options=pa_csv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
                convert_options=pa_csv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                      strings_can_be_null=False),
            )
        time_column = mapping.columns["created_at"]
        table = pa_json.read_json(
            path,
            parse_options=pa_json.ParseOptions(
                explicit_schema=pa.schema([(time_column, pa.string())]), unexpected_field_behavior="infer"
            ),
        )
        if table.num_rows != _line_count(path) or any(pa.types.is_nested(f.type) for f in table.schema):
            return None  # blank lines shift row numbers, nested values need the careful path
        return table
    except (pa.ArrowInvalid, UnicodeDecodeError, StopIteration):
        return None


def _line_count(path: Path) -> int:
    data = path.read_bytes()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def _string_frame(table: pa.Table, first_row: int) -> pd.DataFrame:
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            column = pc.if_else(column, "true", "false")
        columns[name] = pc.fill_null(column.cast(pa.string()), "")
    frame = pa.table(columns).to_pandas(types_mapper={pa.string(): ARROW_STRING}.get)
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
            out[target] = records[column].map(
                lambda v: hashlib.sha256((author_salt + v).encode()).hexdigest()[:16] if v else ""
            ).astype(ARROW_STRING)

    if mapping.strict:
        unknown = [c for c in records.columns if c != "source_row" and c not in mapping.source_columns]
        if unknown:
            has_value = records[unknown].ne("").any(axis=1)
            reasons.append((has_value, f"unknown columns in strict mode: {', '.join(sorted(unknown))}"))

    reasons.append((out.event_id == "", "missing event id"))
    reasons.append((out.text == "", "missing text"))
    reasons.append((out.text.str.len() > MAX_TEXT_CHARS, f"oversized text (over {MAX_TEXT_CHARS} characters)"))
    created = _parse_time(out.created_at, mapping.time_format)
    reasons.append((created.isna(), f"unparsable time (expected {mapping.time_format})"))
    out["created_at"] = created

    rating_text = out.rating.mask(out.rating == "")
    rating = pd.to_numeric(rating_text, errors="coerce")
    bad_rating = rating_text.notna() & (rating.isna() | (rating % 1 != 0) | (rating < 1) | (rating > 5))
    reasons.append((bad_rating, "rating out of range (1-5)"))
    out["rating"] = rating.where(~bad_rating).astype("Int64")
    bad_kind = ~out.source_kind.isin(SOURCE_KINDS)
    reasons.append((bad_kind, f"source_kind must be one of {', '.join(SOURCE_KINDS)}"))

    verified = out.verified_buyer.str.lower().astype(object)
    out["verified_buyer"] = verified.map({"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False})
    for column in FEEDBACK_FIELDS:
        if column not in ("created_at", "rating", "verified_buyer"):
            out[column] = out[column].replace("", None)
    return out, [(out.source_row[mask.to_numpy()], reason) for mask, reason in reasons]


def _parse_time(values: pd.Series, time_format: str) -> pd.Series:
    if time_format == "iso":
        return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    if time_format in ("epoch_s", "epoch_ms"):
        unit = "s" if time_format == "epoch_s" else "ms"
        return pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit=unit, utc=True, errors="coerce")
    return pd.to_datetime(values, format=time_format, utc=True, errors="coerce")


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
    rows = []
    for row, reason in sorted(bad_rows.items()):
        record = raw.loc[row].to_dict() if row in raw.index else None
        rows.append(
            {
                "source_file": path,
                "source_row": row,
                "mapping": mapping.name,
                "reason": reason,
                "event_id": (record or {}).get(_id_column(mapping)) or None,
                "raw_record": _raw_json(record) if record is not None else raw_lines.get(row),
                "quarantined_at": now,
            }
        )
    return pd.DataFrame(rows)


def _in_file_duplicates(good: pd.DataFrame) -> dict[int, str]:
    """A file that repeats an event id keeps its last row; the earlier ones are quarantined, not lost."""
    duplicated = good.duplicated("event_id", keep="last")
    return {int(r): "duplicate event id in file (a later row wins)" for r in good.source_row[duplicated]}


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


def landing_candidates(root: str | Path, mapping_dir: str | Path | None = None) -> list[tuple[Path, Mapping]]:
    """Files of a landing zone with the mapping of their folder (one subfolder per source, named after
    its mapping). Shared by the Dagster resource and the Spark job, which lists the zone on the cluster."""
    root = Path(root)
    if not root.exists():
        return []
    search = [Path(mapping_dir)] if mapping_dir else []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        mapping = load_mapping(folder.name, search)
        out.extend((f, mapping) for f in sorted(folder.iterdir()) if f.suffix in SUFFIXES[mapping.format])
    return out


def select_candidates(candidates: list[tuple[Path, Mapping]], files: list[str]) -> list[tuple[Path, Mapping]]:
    """The candidates named in `files` (all when empty); a named file outside the zone is an error."""
    if not files:
        return candidates
    wanted = {str(Path(f).resolve()) for f in files}
    chosen = [(p, m) for p, m in candidates if str(p.resolve()) in wanted]
    missing = wanted - {str(p.resolve()) for p, _ in chosen}
    if missing:
        raise FileNotFoundError(f"not in the landing zone (or no mapping for its folder): {sorted(missing)}")
    return chosen
