"""Records → canonical feedback columns: mapped columns, constants, hashed authors, ratings, release
versions and times in UTC, with the reason each row that cannot be feedback fails.

Why apart from reading: every engine (pandas, Spark's executors) and replay normalise through this one
function, whatever file a record came from.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .file_records import ARROW_STRING
from .mapping import Mapping
from .ratings import SCALES, parse_ratings
from .schemas import FEEDBACK_FIELDS, SOURCE_KINDS

MAX_TEXT_CHARS = 20_000
SALT_ENV = "ROLLBACK_AUTHOR_SALT"  # a secret: keys author hashes; from the environment, never from config


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


def canonical(records: pd.DataFrame, mapping: Mapping, author_salt: str) -> tuple[pd.DataFrame, list]:
    """The canonical columns of `records`, and (rows, reason) for every check a row fails."""
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

    for field_name in FEEDBACK_FIELDS:
        if field_name in mapping.columns:
            out[field_name] = source(mapping.columns[field_name]).str.strip()
        elif field_name in mapping.constants:
            out[field_name] = mapping.constants[field_name]
        else:
            out[field_name] = ""
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
# Strict ISO 8601: a date, optionally a time, and an offset only after a time. Relative words ("now",
# "today") never match: pandas would read them as the ingest time and hide the row's real age.
_ISO_TIME = re.compile(
    r"\s*(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)"
    r"(?:\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))?)?\s*",
    re.IGNORECASE,
)


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
