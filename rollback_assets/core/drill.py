"""Kill-switch drill data: a realistic regression of one flag's newest release, delivered as its own
landing-zone file after the history, so detection and the flag change can be timed end to end."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import demo_data


def newest_release(flag_key: str) -> dict:
    mine = [r for r in demo_data.releases() if r["flag_key"] == flag_key]
    if not mine:
        known = sorted({r["flag_key"] for r in demo_data.releases()})
        raise ValueError(f"the drill knows flags {known}, not {flag_key!r}")
    return max(mine, key=lambda r: r["released_at"])


def split_with_regression(flag_key: str, rows_per_day: int = 1000, days: int = 7, negative_rate: float = 0.45,
                          seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, regression): demo feedback with no natural regression, and its last `days` in which a share
    `negative_rate` of the customers of the flag's newest release complain about the release's own surfaces
    (in its own words: the demo's complaint texts for those topics, 1-2★ on reviews)."""
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=rows_per_day, bad_negative_rate=0.0, seed=seed))
    frame = frame.drop(columns="_truth").assign(_truth="normal")
    release = newest_release(flag_key)
    cut = frame.created_at.max() - pd.Timedelta(days=days)
    later = frame[frame.created_at > cut].copy()
    rng = np.random.default_rng(seed)
    on_release = (later["product"] == release["product"]) & (later.created_at >= pd.Timestamp(release["released_at"])) & \
                 (later.app_version.isna() | (later.app_version == release["version"]))
    hit = on_release & (rng.random(len(later)) < negative_rate)
    topics = rng.choice(release["surfaces"], int(hit.sum()))
    openers = demo_data.OPENERS[rng.integers(len(demo_data.OPENERS), size=len(topics))]
    closers = demo_data.CLOSERS[True][rng.integers(len(demo_data.CLOSERS[True]), size=len(topics))]
    texts = [o + demo_data.NEGATIVE[t][rng.integers(len(demo_data.NEGATIVE[t]))] + c for o, t, c in zip(openers, topics, closers)]
    later.loc[hit, "text"] = texts
    reviews = hit & (later.source_kind == "review")
    later.loc[reviews, "rating"] = rng.choice([1, 2], int(reviews.sum()))
    later.loc[hit, "_truth"] = "drill_regression"
    return frame[frame.created_at <= cut], later


def write_delivery(frame: pd.DataFrame, landing: Path, prefix: str) -> list[Path]:
    """The rows as landing-zone files named `<prefix>-…`, like a source's delivery (JSONL + ticket CSV)."""
    written = []
    with tempfile.TemporaryDirectory() as staging:
        for path in demo_data.write_landing_zone(frame, Path(staging), period_days=10_000, malformed=False):
            target = Path(landing) / path.parent.name / f"{prefix}-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target)
            written.append(target)
    return written
