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
from .schemas import FEEDBACK_FIELDS, SOURCE_KINDS, UTC_TS

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
    return hmac.digest(author_salt.encode(), value.encode(), hashlib.sha256)[:8].hex() if value else ""


def canonical(records: pa.Table, mapping: Mapping, author_salt: str) -> tuple[pa.Table, list]:
    """The canonical columns of `records` (`source_row` and FEEDBACK_FIELDS, typed as raw_feedback stores
    them), and (source rows, reason) for every check a row fails.

    Arrow kernels over whole columns; what only Python can decide (an author's HMAC, a rating, a release
    rule) is decided once per distinct value, which a day of feedback repeats thousands of times."""
    count = records.num_rows
    rows = records.column("source_row").to_numpy()
    blank = _constant("", count)
    reasons: list[tuple[np.ndarray, str]] = []

    def column(name: str) -> pa.Array:
        return records.column(name).combine_chunks() if name in records.column_names else blank

    def source(name) -> pa.Array:
        if isinstance(name, list):  # title + body: joined with ". ", a blank part left out
            parts = [pc.utf8_trim_whitespace(column(n)) for n in name]
            joined = parts[0]
            for part in parts[1:]:
                with_part = pc.if_else(pc.equal(joined, ""), part, pc.binary_join_element_wise(joined, part, ". "))
                joined = pc.if_else(pc.equal(part, ""), joined, with_part)
            return joined
        return column(name)

    out: dict[str, pa.Array] = {}
    for field_name in FEEDBACK_FIELDS:
        if field_name in mapping.columns:
            out[field_name] = pc.utf8_trim_whitespace(source(mapping.columns[field_name]))
        elif field_name in mapping.constants:
            out[field_name] = _constant(str(mapping.constants[field_name]), count)
        else:
            out[field_name] = blank
    if "source_kind" not in mapping.columns:
        out["source_kind"] = _constant(mapping.source_kind, count)
    if "channel" not in mapping.columns:
        out["channel"] = _constant(mapping.channel or mapping.name, count)
    for target, name in mapping.hash_columns.items():
        if name in records.column_names:
            out[target] = _per_distinct(column(name), lambda values: pa.array(
                [author_hash(v, author_salt) for v in values.to_pylist()], pa.string()))

    if mapping.strict:
        unknown = [c for c in records.column_names if c != "source_row" and c not in mapping.source_columns]
        if unknown:
            has_value = np.zeros(count, dtype=bool)
            for name in unknown:
                has_value |= _mask(pc.not_equal(column(name), ""))
            reasons.append((has_value, f"unknown columns in strict mode: {', '.join(sorted(unknown))}"))

    reasons.append((_mask(pc.equal(out["event_id"], "")), "missing event id"))
    reasons.append((_mask(pc.equal(out["text"], "")), "missing text"))
    reasons.append((_mask(pc.greater(pc.utf8_length(out["text"]), MAX_TEXT_CHARS)),
                    f"oversized text (over {MAX_TEXT_CHARS} characters)"))
    created = parse_time(out["created_at"].to_pandas(types_mapper={pa.string(): ARROW_STRING}.get), mapping)
    reasons.append((created.isna().to_numpy(), f"unparsable time (expected {mapping.time_format})"))
    # Delta keeps microseconds: a value given in nanoseconds is cut to them rather than refused.
    out["created_at"] = pc.cast(pa.array(created, from_pandas=True), UTC_TS, safe=False)

    scale = SCALES[mapping.rating_scale]
    ratings = _per_distinct(out["rating"], lambda values: _ratings_and_validity(values, mapping.rating_scale))
    reasons.append((_mask(pc.struct_field(ratings, "invalid")),
                    f"rating out of range for scale {scale.name} ({scale.low}-{scale.high})"))
    out["rating"] = pc.struct_field(ratings, "rating")
    out["rating_scale"] = _constant(mapping.rating_scale, count)
    out["sentiment_from"] = _constant(mapping.sentiment_from, count)
    version = pc.if_else(pc.equal(out["app_version"], ""), pa.scalar(None, pa.string()), out["app_version"])
    if mapping.version_rule:
        rule = mapping.version_rule
        out["app_version"] = _per_distinct(version, lambda values: pa.array(
            rule.release_of(values.to_pandas()), pa.string(), from_pandas=True))
    else:
        out["app_version"] = version
    out["app_build"] = pc.if_else(pc.fill_null(pc.not_equal(version, out["app_version"]), False), version,
                                  pa.scalar(None, pa.string()))
    reasons.append((~_mask(pc.is_in(out["source_kind"], pa.array(SOURCE_KINDS))),
                    f"source_kind must be one of {', '.join(SOURCE_KINDS)}"))

    verified = pc.utf8_lower(out["verified_buyer"])
    out["verified_buyer"] = pc.if_else(pc.is_in(verified, pa.array(["true", "1", "yes"])), True,
                                       pc.if_else(pc.is_in(verified, pa.array(["false", "0", "no"])), False,
                                                  pa.scalar(None, pa.bool_())))
    for name in FEEDBACK_FIELDS:
        if name not in ("created_at", "rating", "verified_buyer", "app_version", "app_build"):
            out[name] = pc.if_else(pc.equal(out[name], ""), pa.scalar(None, pa.string()), out[name])
    table = pa.table({"source_row": records.column("source_row").combine_chunks(), **{n: out[n] for n in FEEDBACK_FIELDS}})
    return table, [(rows[mask], reason) for mask, reason in reasons]


def _constant(value: str, count: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), count)


def _mask(condition) -> np.ndarray:
    """A boolean kernel's result as a numpy mask (null: False)."""
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)


def _per_distinct(values: pa.Array, decide) -> pa.Array:
    """`decide` (an array of distinct values → one result each) applied once per distinct value, then
    spread back over the rows. Nulls stay null."""
    encoded = pc.dictionary_encode(values)
    return decide(encoded.dictionary).take(encoded.indices)


def _ratings_and_validity(values: pa.Array, scale_name: str) -> pa.StructArray:
    rating, invalid = parse_ratings(values.to_pandas(), scale_name)
    return pa.StructArray.from_arrays([pa.array(rating, pa.int16(), from_pandas=True), pa.array(invalid, pa.bool_())],
                                      names=["rating", "invalid"])


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
    if aware.all() and not odd.any():  # the usual file: every value a time with its offset
        try:  # Arrow's ISO 8601 cast, in C++ and off the GIL (files are read on threads)
            return pd.Series(pc.cast(text, pa.timestamp("ns", "UTC")).to_pandas(), index=values.index)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # Arrow reads a value as pandas does or refuses the column (a bad day, a far year): pandas, value by value
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
