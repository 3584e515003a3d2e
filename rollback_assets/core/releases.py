"""Release artifacts: what shipped behind which flag, who owns it, and how to step it down."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from .schemas import RELEASE_ARTIFACTS

DEFAULT_LADDER = (100, 25, 5, 0)


def _utc(value) -> pd.Timestamp:
    """Naive times are UTC; aware ones (YAML parses unquoted ISO times to aware datetimes) are converted."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


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
) -> dict:
    if not flag_key or not version:
        raise ValueError("a release needs a flag key and a version")
    if isinstance(surfaces, str):
        surfaces = [s.strip() for s in surfaces.split(",") if s.strip()]
    return {
        "flag_key": flag_key,
        "version": str(version),
        "product": product,
        "released_at": _utc(released_at),
        "code_commit": code_commit,
        "notebook_commit": notebook_commit,
        "model_name": model_name,
        "model_version": model_version,
        "surfaces": list(surfaces or []),
        "ladder": parse_ladder(ladder),
        "fallback_variant": fallback_variant,
        "owner": owner,
        "expires_at": _utc(expires_at) if expires_at else None,
        "registered_at": datetime.now(timezone.utc),
    }


def load_releases_yaml(path: str | Path) -> pd.DataFrame:
    """A YAML list of releases (or {releases: [...]}) with the fields of `release_record`."""
    spec = yaml.safe_load(Path(path).read_text()) or []
    entries = spec.get("releases", []) if isinstance(spec, dict) else spec
    records = [release_record(**entry) for entry in entries]
    return releases_frame(records)


def releases_frame(records: list[dict]) -> pd.DataFrame:
    if not records:
        return RELEASE_ARTIFACTS.empty_frame()
    frame = pd.DataFrame.from_records(records)
    frame["released_at"] = pd.to_datetime(frame["released_at"], utc=True)
    frame["expires_at"] = pd.to_datetime(frame["expires_at"], utc=True)
    return frame.drop_duplicates(["flag_key", "version"], keep="last")[RELEASE_ARTIFACTS.names].reset_index(drop=True)


def releases_from_first_appearance(feedback: pd.DataFrame, flag_key: str | None = None) -> pd.DataFrame:
    """Without registered releases: each app version becomes a release at its first feedback, flag = app."""
    versioned = feedback.dropna(subset=["app_version"])
    if versioned.empty:
        return RELEASE_ARTIFACTS.empty_frame()
    first = versioned.groupby(["product", "app_version"], dropna=False)["created_at"].min().reset_index()
    records = [
        release_record(flag_key or (row.product or "app"), row.app_version, row.created_at, product=row.product)
        for row in first.itertuples()
    ]
    return releases_frame(records)


def live_release(releases: pd.DataFrame, flag_key: str, at: pd.Timestamp) -> pd.Series | None:
    """The release of a flag that was live at `at`: the latest released at or before it."""
    rows = releases[(releases.flag_key == flag_key) & (releases.released_at <= at)]
    return None if rows.empty else rows.sort_values("released_at").iloc[-1]


def previous_releases(releases: pd.DataFrame, release: pd.Series, count: int) -> pd.DataFrame:
    rows = releases[(releases.flag_key == release.flag_key) & (releases.released_at < release.released_at)]
    return rows.sort_values("released_at").tail(count)
