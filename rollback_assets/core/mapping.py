"""A source's mapping (YAML): its file format, its columns → canonical columns, its time format.

Typed and strict (core/config_file.py): an unknown key (`colums:`), an unknown canonical column, a
format, scale or zone that does not exist is refused when the mapping loads, with the file, the key and
what is allowed, so a landing folder with a broken mapping is reported by name and skipped
(core/landing.py) rather than failing deep inside a read.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config_file import ConfigError, read_yaml, validated
from .ratings import SCALES, SENTIMENT_SOURCES
from .releases import VersionRule
from .schemas import FEEDBACK_FIELDS, SOURCE_KINDS

FORMATS = ("csv", "jsonl", "parquet")
REQUIRED_COLUMNS = ("event_id", "text", "created_at")
DERIVED_COLUMNS = ("rating_scale", "sentiment_from", "app_build")  # set by the mapping, never mapped from a column
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?", re.IGNORECASE)
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Mapping(BaseModel):
    """One source. `columns` maps a canonical column to a source column, or to a list of source columns
    joined with ". " (title + body)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(min_length=1)
    format: Literal[FORMATS]
    columns: dict[str, Union[str, list[str]]]
    time_format: str = Field("iso", description="iso, epoch_s, epoch_ms or a strftime pattern")
    source_kind: Literal[SOURCE_KINDS] | None = Field(None, description="required unless a column maps it")
    channel: str | None = None
    strict: bool = Field(False, description="quarantine rows with values in columns the mapping does not name")
    ignore: tuple[str, ...] = ()
    hash_columns: dict[str, str] = Field(default_factory=dict, description="canonical column -> source column, HMAC-hashed")
    constants: dict[str, str | int | float | bool] = Field(default_factory=dict)
    rating_scale: Literal[tuple(SCALES)] = "stars"
    sentiment_from: Literal[SENTIMENT_SOURCES] = Field("rating", description="where a rated row's label comes from")
    version_rule: VersionRule | None = Field(None, description="pools builds of one release (core/releases.py)")
    timezone: str = Field("UTC", description="zone of timestamps that carry no offset of their own")
    max_future_skew: str = Field("5m", description="rows dated later than ingest time + this are quarantined")

    @classmethod
    def from_dict(cls, spec: dict, source: str | None = None) -> "Mapping":
        where = source or (f"mapping {spec.get('name')}" if isinstance(spec, dict) else "mapping")
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: a mapping is a YAML mapping with name, format, columns, ...")
        return validated(cls, spec, where)

    @field_validator("version_rule", mode="before")
    @classmethod
    def _version_rule(cls, value):
        return value if isinstance(value, VersionRule) else VersionRule.from_spec(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA zone name (e.g. UTC, Europe/Berlin)") from None
        return value

    @field_validator("max_future_skew")
    @classmethod
    def _skew(cls, value):
        parse_duration(value)
        return value

    @field_validator("columns")
    @classmethod
    def _canonical(cls, columns: dict):
        unknown = sorted(set(columns) - set(FEEDBACK_FIELDS))
        if unknown:
            raise ValueError(f"not canonical columns: {', '.join(unknown)} (allowed: {', '.join(FEEDBACK_FIELDS)})")
        derived = sorted(set(columns) & set(DERIVED_COLUMNS))
        if derived:
            raise ValueError(f"{', '.join(derived)} is set by the mapping itself, not mapped from a column")
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"must map {', '.join(missing)} (required: {', '.join(REQUIRED_COLUMNS)})")
        return columns

    @model_validator(mode="after")
    def _kind_known(self):
        if "source_kind" not in self.columns and self.source_kind is None:
            raise ValueError(f"source_kind: required unless a column maps it (allowed: {', '.join(SOURCE_KINDS)})")
        return self

    @property
    def future_skew(self) -> pd.Timedelta:
        """How far past ingest time a row may be dated (clock skew between systems)."""
        return parse_duration(self.max_future_skew)

    @property
    def read_columns(self) -> set[str]:
        """Source columns whose values the mapping uses (a wrong-kind value there spoils the record)."""
        return self.source_columns - set(self.ignore)

    @property
    def source_columns(self) -> set[str]:
        names: set[str] = set(self.ignore) | set(self.hash_columns.values())
        for source in self.columns.values():
            names.update(source if isinstance(source, list) else [source])
        return names


def parse_duration(text: str) -> pd.Timedelta:
    """`90s`, `5m`, `2h`, `1d` (a bare number is seconds)."""
    match = _DURATION.fullmatch(str(text).strip())
    if not match:
        raise ValueError("must be a duration like 90s, 5m or 2h")
    return pd.Timedelta(**{_DURATION_UNITS[(match.group(2) or "s").lower()]: float(match.group(1))})


def load_mapping(name_or_path: str | Path, search_dirs: list[Path] | None = None) -> Mapping:
    """A mapping by file path, by name in `search_dirs`, or by name among the shipped mappings."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return Mapping.from_dict(read_yaml(path), source=str(path))
    for folder in search_dirs or []:
        candidate = Path(folder) / f"{name_or_path}.yaml"
        if candidate.exists():
            return Mapping.from_dict(read_yaml(candidate), source=str(candidate))
    shipped = resources.files("rollback_assets.config").joinpath("mappings", f"{name_or_path}.yaml")
    if shipped.is_file():
        where = f"rollback_assets/config/mappings/{name_or_path}.yaml"
        return Mapping.from_dict(read_yaml(where, shipped.read_text()), source=where)
    raise FileNotFoundError(f"no mapping named {name_or_path!r}")


def mapping_fingerprint(mapping: Mapping) -> str:
    """Changes when the mapping does: part of a file's run key, so a fixed mapping re-reads a file it failed on."""
    spec = json.dumps(mapping.model_dump(), sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]
