"""Each flag's live release, per cohort, against two baselines.

- concurrent: the previous version's feedback inside the same time window. Old versions keep being
  reviewed for months, so this compares like with like (same season, same incidents).
- rolling: the previous releases' feedback in a trailing window before this release went live.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .releases import live_release, previous_releases
from .schemas import ALL_COHORTS, COHORT_BASELINES
from .scoring.redact import redact_quote

# Columns with few distinct values: read as categoricals, comparisons and group-bys are 10x cheaper.
CATEGORICAL_COLUMNS = ["attributed_flag", "release_version", "cohort", "sentiment_label", "issue_category",
                       "affected_surface", "urgency"]
# Columns of scored_sentiment that baselines read; reading only these keeps the scan narrow.
# `text` is needed only for evidence quotes: callers may supply it for negative rows in the window only.
BASELINE_INPUT_COLUMNS = [
    "event_id", "attributed_flag", "release_version", "cohort", "created_at", "sentiment_label",
    "sentiment_score", "confidence", "issue_category", "affected_surface", "topic_excluded",
    "high_risk", "urgency",
]


@dataclass(frozen=True)
class WindowConfig:
    window_days: float = 7.0
    rolling_releases: int = 3
    rolling_days: float = 28.0
    evidence_quotes: int = 5


def compute_baselines(
    scored: pd.DataFrame, releases: pd.DataFrame, as_of: pd.Timestamp, config: WindowConfig = WindowConfig()
) -> pd.DataFrame:
    rows: list[dict] = []
    scored = scored[scored.created_at <= as_of]
    for flag_key, flag_rows in scored.groupby("attributed_flag", observed=True):
        release = live_release(releases, flag_key, as_of)
        if release is None:
            continue
        window_start = max(release.released_at, as_of - pd.Timedelta(days=config.window_days))
        in_window = flag_rows[(flag_rows.created_at >= window_start)]
        current = in_window[in_window.release_version == release.version]
        if current.empty:
            continue
        high_risk = _high_risk_mask(flag_rows, release)
        earlier = previous_releases(releases, release, config.rolling_releases)
        baselines = {}
        if len(earlier):
            previous = earlier.iloc[-1]
            baselines["concurrent"] = (in_window[in_window.release_version == previous.version], [previous.version])
            rolling_start = release.released_at - pd.Timedelta(days=config.rolling_days)
            rolling = flag_rows[
                flag_rows.release_version.isin(earlier.version)
                & (flag_rows.created_at >= rolling_start)
                & (flag_rows.created_at < release.released_at)
            ]
            baselines["rolling"] = (rolling, list(earlier.version))
        else:
            baselines["rolling"] = (flag_rows.iloc[0:0], [])
        for cohort, cohort_rows in [(ALL_COHORTS, current), *current.groupby("cohort", observed=True)]:
            stats = _cohort_stats(cohort_rows, high_risk.loc[cohort_rows.index], config.evidence_quotes)
            for kind, (base_rows, versions) in baselines.items():
                base = base_rows if cohort == ALL_COHORTS else base_rows[base_rows.cohort == cohort]
                base_relevant = base[~base.topic_excluded.astype(bool)]
                base_negative = int((base_relevant.sentiment_label == "negative").sum())
                rows.append(
                    {
                        "flag_key": flag_key,
                        "release_version": release.version,
                        "cohort": cohort,
                        "baseline_kind": kind,
                        "baseline_versions": ",".join(versions),
                        "window_start": window_start,
                        "window_end": as_of,
                        **stats,
                        "baseline_n": len(base_relevant),
                        "baseline_n_negative": base_negative,
                        "baseline_negative_share": base_negative / len(base_relevant) if len(base_relevant) else None,
                        "baseline_mean_sentiment": float(base_relevant.sentiment_score.mean()) if len(base_relevant) else None,
                        "as_of": as_of,
                    }
                )
    if not rows:
        return COHORT_BASELINES.empty_frame()
    return pd.DataFrame(rows)[COHORT_BASELINES.names]


def _high_risk_mask(rows: pd.DataFrame, release: pd.Series) -> pd.Series:
    """High-risk: the taxonomy says so, or the release names the topic or surface as its own."""
    surfaces = set(release.surfaces if release.surfaces is not None else [])
    return rows.high_risk.astype(bool) | rows.issue_category.isin(surfaces) | rows.affected_surface.isin(surfaces)


def _cohort_stats(rows: pd.DataFrame, high_risk: pd.Series, quotes: int) -> dict:
    excluded = rows.topic_excluded.astype(bool)
    relevant = rows[~excluded]
    negative = relevant[relevant.sentiment_label == "negative"]
    topics = negative.issue_category.value_counts()
    topics = topics[topics > 0].head(3)
    top_topic = topics.index[0] if len(topics) else None
    urgency = negative.urgency.dropna() if "urgency" in negative else pd.Series(dtype=object)
    return {
        "n": len(relevant),
        "n_negative": len(negative),
        "negative_share": len(negative) / len(relevant) if len(relevant) else None,
        "n_negative_high_risk": int(high_risk.loc[negative.index].sum()),
        "n_excluded": int(excluded.sum()),
        "n_excluded_negative": int((rows[excluded].sentiment_label == "negative").sum()),
        "mean_confidence": float(relevant.confidence.mean()) if len(relevant) else None,
        "mean_sentiment": float(relevant.sentiment_score.mean()) if len(relevant) else None,
        "top_topics": json.dumps([[t, int(c)] for t, c in topics.items()]),
        "evidence": json.dumps(_evidence(negative, top_topic, quotes)),
        "mean_urgency_high": float((urgency == "high").mean()) if len(urgency) else None,
    }


def _evidence(negative: pd.DataFrame, topic: str | None, quotes: int) -> list[str]:
    """The most confident distinct complaints on the top topic: what a reviewer should read first."""
    if topic is None:
        return []
    on_topic = negative[negative.issue_category == topic].sort_values(["confidence", "created_at"], ascending=[False, True])
    texts = on_topic.text.map(redact_quote).drop_duplicates()  # people read these: same redaction as the LLM's input
    return texts.head(quotes).tolist()


def relative_rise(current: float | None, baseline: float | None) -> float | None:
    if current is None or baseline is None or np.isnan(current) or np.isnan(baseline):
        return None
    if baseline == 0:
        return float("inf") if current > 0 else 0.0
    return current / baseline - 1.0
