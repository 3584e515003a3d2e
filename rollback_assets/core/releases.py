"""Release artifacts: what shipped behind which flag, who owns it, and how to step it down."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .clock import utc
from .config_file import ConfigError, read_yaml, validated
from .schemas import RELEASE_ARTIFACTS

DEFAULT_LADDER = (100, 25, 5, 0)
# How users come to a release decides what it can fairly be compared with (core/baselines.py):
# randomized  the flag assigns users to it, so the previous release's users in the same weeks are a fair control;
# self_selected  users update when they choose (app-store versions): those who stay behind are not like those who
#   update (on real Play reviews older versions in the same weeks run ~25 % fewer 1-2 star reviews than the newest),
#   so a release is compared with earlier releases at the same age since their release.
ADOPTIONS = ("randomized", "self_selected")

# Store builds name the release and then the build: `8.104.0 build 5 50619` and `8.104.2` are
# release 8.104; a date-versioned `24.07.29.3` is release 24.07.29. The rule: keep at least two numeric
# parts, drop the last one when there are three or more, and drop any suffix after a space or + - _.
STORE_BUILD_PATTERN = r"^(?P<release>\d+\.\d+(?:\.\d+)*?)(?:\.\d+)?(?:[ _+-].*)?$"


@dataclass(frozen=True)
class VersionRule:
    """How a version string names its release, so builds of one release pool together.

    `pattern`: a regex with a named group `release` (matched from the start); `parts`: keep the first
    N dot-separated parts. A version the rule does not match is its own release, unchanged."""

    pattern: str | None = None
    parts: int | None = None

    def __post_init__(self):
        if self.pattern is not None and self.parts is not None:
            raise ValueError("a version rule takes a pattern or a number of parts, not both")
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"version pattern {self.pattern!r} is not a valid regex: {error}") from None
            if "release" not in compiled.groupindex:
                raise ValueError(f"version pattern {self.pattern!r} needs a named group (?P<release>...)")
        if self.parts is not None and (not isinstance(self.parts, int) or self.parts < 1):
            raise ValueError(f"version parts must be a whole number >= 1, got {self.parts!r}")

    @classmethod
    def from_spec(cls, spec) -> "VersionRule | None":
        """`store_build` (the shipped rule), a dict with `pattern` or `parts`, or None (no rule)."""
        if spec is None:
            return None
        if spec == "store_build":
            return cls(pattern=STORE_BUILD_PATTERN)
        if isinstance(spec, dict) and set(spec) <= {"pattern", "parts"} and spec:
            return cls(**spec)
        raise ValueError(f"a version rule is 'store_build', {{pattern: REGEX}} or {{parts: N}}, got {spec!r}")

    def release_of(self, versions: pd.Series) -> pd.Series:
        """The release each version string belongs to (nulls stay null)."""
        text = versions.astype("string").str.strip()
        if self.pattern is not None:
            release = text.str.extract(self.pattern, expand=True)["release"]
        else:
            release = text.str.split(".").str[: self.parts].str.join(".")
        return release.fillna(text).astype(object).where(text.notna(), None)


def parse_ladder(value) -> list[int]:
    try:
        steps = [int(s) for s in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        raise ValueError(f"a rollout ladder is a list of whole percentages like 100,25,5,0, got {value!r}") from None
    if not steps or steps != sorted(steps, reverse=True) or steps[0] > 100 or steps[-1] < 0:
        raise ValueError(f"a rollout ladder runs from high to low within 0..100, got {steps}")
    return steps


def release_record(
    flag_key: str,
    version: str,
    released_at: str | datetime,
    *,
    product: str | None = None,
    code_commit: str | None = None,
    notebook_commit: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    surfaces: list[str] | str | None = None,
    ladder=DEFAULT_LADDER,
    fallback_variant: str | None = None,
    owner: str | None = None,
    expires_at: str | datetime | None = None,
    adoption: str = "randomized",
    version_rule: VersionRule | None = None,
) -> dict:
    """One release row. With a `version_rule` the version is normalised to its release (a CI job may
    register `8.104.0 build 5 50619`; feedback names builds of 8.104 and pools under it)."""
    if not flag_key or not version:
        raise ValueError("a release needs a flag key and a version")
    if version_rule is not None:
        version = version_rule.release_of(pd.Series([str(version)])).iloc[0]
    if adoption not in ADOPTIONS:
        raise ValueError(f"release {flag_key} {version}: adoption must be one of {ADOPTIONS}, got {adoption!r}")
    if isinstance(surfaces, str):
        surfaces = [s.strip() for s in surfaces.split(",") if s.strip()]
    return {
        "flag_key": flag_key,
        "version": str(version),
        "product": product,
        "released_at": utc(released_at),
        "code_commit": code_commit,
        "notebook_commit": notebook_commit,
        "model_name": model_name,
        "model_version": model_version,
        "surfaces": list(surfaces or []),
        "ladder": parse_ladder(ladder),
        "fallback_variant": fallback_variant,
        "adoption": adoption,
        "owner": owner,
        "expires_at": utc(expires_at) if expires_at else None,
        "registered_at": datetime.now(timezone.utc),
    }


class ReleaseEntry(BaseModel):
    """One release in a releases YAML: the keyword arguments of `release_record`, strict (a typo such as
    `onwer:` is refused naming the file, the entry and the keys allowed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    flag_key: str = Field(min_length=1)
    version: str = Field(min_length=1)
    released_at: datetime
    product: str | None = None
    code_commit: str | None = None
    notebook_commit: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    surfaces: list[str] = Field(default_factory=list, description="topics or surfaces the release touches")
    ladder: list[int] = Field(list(DEFAULT_LADDER), description="rollout percentages, high to low")
    fallback_variant: str | None = None
    owner: str | None = None
    expires_at: datetime | None = None
    adoption: Literal[ADOPTIONS] = "randomized"
    version_rule: VersionRule | None = None

    @field_validator("version", "product", "code_commit", "notebook_commit", "model_name", "model_version",
                     "fallback_variant", "owner", mode="before")
    @classmethod
    def _text(cls, value):
        """YAML reads `1.10` as a number and a short hex commit as an int: they are names, kept as written."""
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("surfaces", mode="before")
    @classmethod
    def _surfaces(cls, value):
        return [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else (value or [])

    @field_validator("ladder", mode="before")
    @classmethod
    def _ladder(cls, value):
        return parse_ladder(value)

    @field_validator("version_rule", mode="before")
    @classmethod
    def _version_rule(cls, value):
        return value if isinstance(value, VersionRule) else VersionRule.from_spec(value)


def load_releases_yaml(path: str | Path) -> pd.DataFrame:
    """A YAML list of releases (or {releases: [...]}), each a `ReleaseEntry`."""
    spec = read_yaml(path) or []
    entries = spec.get("releases", []) if isinstance(spec, dict) else spec
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: a list of releases (or releases: [...]) is expected")
    return releases_frame([release_from_entry(entry, f"{path}: releases[{i}]") for i, entry in enumerate(entries)])


def release_from_entry(entry, source: str) -> dict:
    """One release row from a YAML entry or the CLI's options, refused as a whole when any key is wrong."""
    named = f" ({entry.get('flag_key')} {entry.get('version')})" if isinstance(entry, dict) else ""
    return release_record(**dict(validated(ReleaseEntry, entry, source + named)))


def releases_frame(records: list[dict]) -> pd.DataFrame:
    if not records:
        return RELEASE_ARTIFACTS.empty_frame()
    frame = pd.DataFrame.from_records(records)
    frame["released_at"] = pd.to_datetime(frame["released_at"], utc=True)
    frame["expires_at"] = pd.to_datetime(frame["expires_at"], utc=True)
    return frame.drop_duplicates(["flag_key", "version"], keep="last")[RELEASE_ARTIFACTS.names].reset_index(drop=True)


def releases_from_first_appearance(feedback: pd.DataFrame, flag_key: str | None = None) -> pd.DataFrame:
    """Without registered releases: each app version becomes a release at its first feedback, flag = app.
    Users pick app versions themselves, so these releases are `self_selected`."""
    versioned = feedback.dropna(subset=["app_version"])
    if versioned.empty:
        return RELEASE_ARTIFACTS.empty_frame()
    first = versioned.groupby(["product", "app_version"], dropna=False)["created_at"].min().reset_index()
    records = [
        release_record(flag_key or _product_or_app(row.product), row.app_version, row.created_at,
                       product=row.product if _present(row.product) else None, adoption="self_selected")
        for row in first.itertuples()
    ]
    return releases_frame(records)


def _present(value) -> bool:
    return isinstance(value, str) and value != ""


def _product_or_app(product) -> str:
    """Feedback without a product (a Play export without appId) belongs to one app."""
    return product if _present(product) else "app"


def live_release(releases: pd.DataFrame, flag_key: str, at: pd.Timestamp) -> pd.Series | None:
    """The release of a flag that was live at `at`: the latest released at or before it."""
    rows = releases[(releases.flag_key == flag_key) & (releases.released_at <= at)]
    return None if rows.empty else rows.sort_values("released_at").iloc[-1]


def previous_releases(releases: pd.DataFrame, release: pd.Series, count: int) -> pd.DataFrame:
    rows = releases[(releases.flag_key == release.flag_key) & (releases.released_at < release.released_at)]
    return rows.sort_values("released_at").tail(count)
