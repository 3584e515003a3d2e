"""Every release that still gets feedback, per cohort, against its baselines — from aggregates.

Apps are reviewed on old versions for months: a bad release that was quickly superseded keeps
collecting complaints after it stops being the newest, so each release of a flag with feedback in the
window is judged, not only the live one. Baselines, all but the last measured in the judged release's
own window (same weeks, same season, same incidents):

- concurrent: the previous release.
- last_good: the most-reviewed earlier release not known to be bad. A slow slide over several
  releases passes every concurrent comparison (each against an already-degraded predecessor); the
  release most customers still use, if it was never found bad, catches it.
- age_matched: for releases users choose to install (app-store versions, `adoption: self_selected`)
  the two above are biased: customers who stay on an old version are not like those who update (on
  the Netflix Play reviews, versions two or more behind run 0.37-0.40 1-2 star share in the same weeks
  as the newest release's 0.50-0.55, release after release). The fair comparison there is lifecycle:
  the up to three most recent earlier releases not known to be bad, over the same ages since their own
  release (a release judged 5 days after launch against its predecessors' first 5 days).
- rolling: the previous releases' feedback in a trailing window before this release went live; a
  fallback for a flag whose other baselines are too thin.

One vote per author: where the source knows the author, each author counts once per release and
cohort (their first word), so one person posting 300 reviews is one unhappy customer, not 300.

How: `aggregates` sums the hour buckets of `sentiment_daily` (and the rows of the few buckets a window
edge splits) into time segments per flag × release × cohort (the segment edges are the looks, the
window starts and the release times), cumulated over time, and every window at every look is a
difference of two cumulative sums. Judging a look costs the same whatever the history, so replay
judges hundreds of looks in the time one row-level look used to take. Windows are half-open, (start, end].
Evidence quotes, new terms and the review-bomb note need the text: `negatives_daily` keeps what a day's
negatives say (term counts, quote candidates, repeat authors), summed the same way, and
`describe_baselines` adds them for the looks a person will read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import negatives_daily
from .aggregates import M as _M, Aggregates, nanoseconds, from_rows
from .schemas import ALL_COHORTS, COHORT_BASELINES

# Columns with few distinct values: read as categoricals, comparisons and group-bys are 10x cheaper.
CATEGORICAL_COLUMNS = ["attributed_flag", "release_version", "cohort", "sentiment_label", "issue_category",
                       "affected_surface", "urgency"]
# Columns of scored_sentiment that baselines read from rows; reading only these keeps the scan narrow.
# `text` is needed only by `describe`: callers may supply it for negative rows in the window only.
BASELINE_INPUT_COLUMNS = [
    "event_id", "attributed_flag", "release_version", "cohort", "created_at", "sentiment_label",
    "sentiment_score", "confidence", "issue_category", "affected_surface", "topic_excluded",
    "high_risk", "urgency", "author_hash",
]
BASELINE_KINDS = ("concurrent", "last_good", "age_matched", "rolling")
SAME_PERIOD_KINDS = ("concurrent", "last_good", "age_matched")
AGE_MATCHED_RELEASES = 3  # earlier good releases pooled into the age-matched baseline


@dataclass(frozen=True)
class WindowConfig:
    window_days: float = 28.0  # the shipped policy.yaml's (the fixed rule's file sets 7)
    rolling_releases: int = 3
    rolling_days: float = 28.0
    evidence_quotes: int = 5
    min_rows_to_judge: int = 20  # a superseded release with fewer rows in the window is not judged
    one_vote_per_author: bool = True


def window_edges(releases: pd.DataFrame, looks, config: WindowConfig) -> list[pd.Timestamp]:
    """Every time a window can start or end at the given looks."""
    looks = pd.DatetimeIndex(looks)
    edges = [*looks, *(looks - pd.Timedelta(days=config.window_days)), *releases.released_at,
             *(releases.released_at - pd.Timedelta(days=config.rolling_days))]
    return edges


@dataclass(frozen=True)
class _Flag:
    """One flag's keys and releases, prepared once for every look."""

    positions: np.ndarray  # rows of Aggregates.keys
    versions: np.ndarray
    cohorts: np.ndarray
    everyone: np.ndarray  # mask: the 'all' cohort keys
    everyone_positions: np.ndarray
    releases: list  # release records (namedtuples) sorted by released_at
    released_at: np.ndarray  # int64 ns, same order


def _flags(agg: Aggregates, releases: pd.DataFrame) -> dict[str, _Flag]:
    out = {}
    for flag_key, key_rows in agg.keys.groupby("flag_key", sort=True):
        flag_releases = releases[releases.flag_key == flag_key].sort_values("released_at", kind="stable")
        if flag_releases.empty:
            continue
        cohorts = key_rows.cohort.to_numpy()
        positions = key_rows.index.to_numpy()
        everyone = cohorts == ALL_COHORTS
        out[flag_key] = _Flag(_as_slice(positions), key_rows.release_version.to_numpy(), cohorts,
                              everyone, positions[everyone], list(flag_releases.itertuples(index=False)),
                              nanoseconds(flag_releases.released_at))
    return out


def _as_slice(positions: np.ndarray) -> np.ndarray | slice:
    """A contiguous run of keys as a slice: numpy then takes a view instead of copying."""
    if len(positions) and (np.diff(positions) == 1).all():
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


def judge_looks(agg: Aggregates, releases: pd.DataFrame, looks, config: WindowConfig,
                known_bad: frozenset = frozenset()) -> list[dict]:
    """Baseline rows (COHORT_BASELINES columns but the text-derived ones) for every look."""
    out: list[dict] = []
    window = pd.Timedelta(days=config.window_days)
    flags = _flags(agg, releases)
    for as_of in pd.DatetimeIndex(looks):
        for flag in flags.values():
            count = int(np.searchsorted(flag.released_at, as_of.value, side="right"))
            if count == 0:
                continue
            recent = agg.window(as_of - window, as_of, flag.everyone_positions)
            recent_n = dict(zip(flag.versions[flag.everyone], recent[:, _M["n"]] + recent[:, _M["n_excluded"]]))
            for i in range(count):
                release = flag.releases[i]
                live = i == count - 1
                if not live and recent_n.get(release.version, 0) < config.min_rows_to_judge:
                    continue
                start = max(release.released_at, as_of - window)
                earlier = [r.version for r in flag.releases[:i]]
                out.extend(_judge_release(agg, flag, earlier, release, live, start, as_of, config, known_bad))
    return out


def _judge_release(agg, flag, earlier, release, live, start, as_of, config, known_bad) -> list[dict]:
    sums = agg.window(start, as_of, flag.positions)
    versions, cohorts = flag.versions, flag.cohorts
    mine = np.flatnonzero(versions == release.version)
    if len(mine) == 0:
        return []
    positions = (np.arange(flag.positions.start, flag.positions.stop) if isinstance(flag.positions, slice)
                 else flag.positions)
    topic_sums = agg.topic_window(start, as_of, positions[mine])
    baselines: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}  # kind -> (sums, cohorts, versions)

    def rows_of(chosen_versions, window_sums=sums):
        chosen = np.isin(versions, chosen_versions)
        return window_sums[chosen], cohorts[chosen], list(chosen_versions)

    good = [v for v in earlier if (release.flag_key, v) not in known_bad]
    if earlier and getattr(release, "adoption", None) == "self_selected":
        age_end = as_of - release.released_at
        pooled = good[-AGE_MATCHED_RELEASES:]
        chosen = np.isin(versions, pooled)
        age_sums = agg.at_age(age_end - (as_of - start), age_end, positions[chosen])
        baselines["age_matched"] = (age_sums, cohorts[chosen], pooled)
    elif earlier:
        previous = earlier[-1]
        baselines["concurrent"] = rows_of([previous])
        volume, named = sums[flag.everyone, _M["n"]], versions[flag.everyone]
        usable = np.isin(named, good) & (volume > 0)
        if usable.any():
            volume, named = volume[usable], named[usable]
            best = named[np.argmax(volume)]
            if best != previous and volume.max() > volume[named == previous].sum():
                baselines["last_good"] = rows_of([best])
    if earlier:
        rolling_sums = agg.window(release.released_at - pd.Timedelta(days=config.rolling_days), release.released_at,
                                     flag.positions)
        baselines["rolling"] = rows_of(earlier[-config.rolling_releases:], rolling_sums)
    else:
        baselines["rolling"] = rows_of([])
    # Per baseline kind and cohort once (not per judged row); Python numbers, not numpy scalars: this
    # loop runs for every look of a replay.
    compared = {kind: _by_cohort(*parts) for kind, parts in baselines.items()}
    tops = np.argsort(-topic_sums, axis=1, kind="stable")[:, :3] if len(agg.topics) else np.zeros((len(mine), 0), int)
    out = []
    for row, metrics, topics, top in zip(mine, sums[mine].tolist(), topic_sums.tolist(), tops.tolist()):
        stats = _stats(metrics, [[str(agg.topics[i]), int(topics[i])] for i in top if topics[i] > 0])
        if stats["n"] + stats["n_excluded"] == 0:
            continue
        cohort = cohorts[row]
        for kind, by_cohort in compared.items():
            base_n, base_neg, base_sentiment, base_versions = by_cohort.get(cohort, (0, 0, 0.0, by_cohort[None]))
            out.append({
                "flag_key": release.flag_key, "release_version": release.version, "cohort": cohort,
                "baseline_kind": kind, "baseline_versions": base_versions, "release_live": live,
                "window_start": start, "window_end": as_of, **stats,
                "baseline_n": base_n, "baseline_n_negative": base_neg,
                "baseline_negative_share": base_neg / base_n if base_n else None,
                "baseline_mean_sentiment": base_sentiment / base_n if base_n else None,
                "as_of": as_of,
            })
    return out


def _by_cohort(base_sums: np.ndarray, base_cohorts: np.ndarray, base_versions: list[str]) -> dict:
    """cohort -> (n, negatives, sentiment sum, versions) of a baseline; None -> its versions."""
    versions = ",".join(base_versions)
    out: dict = {None: versions}
    if len(base_cohorts):
        names, index = np.unique(base_cohorts, return_inverse=True)
        summed = np.zeros((len(names), base_sums.shape[1]))
        np.add.at(summed, index, base_sums)
        for name, total in zip(names, summed.tolist()):
            out[name] = (int(total[_M["n"]]), int(total[_M["n_negative"]]), total[_M["sentiment_sum"]], versions)
    return out


def _stats(metrics: list[float], top: list) -> dict:
    n, negatives = int(metrics[_M["n"]]), int(metrics[_M["n_negative"]])
    urgency_known = metrics[_M["n_urgency_known"]]
    return {
        "n": n,
        "n_negative": negatives,
        "negative_share": negatives / n if n else None,
        "n_negative_high_risk": int(metrics[_M["n_negative_high_risk"]]),
        "n_excluded": int(metrics[_M["n_excluded"]]),
        "n_excluded_negative": int(metrics[_M["n_excluded_negative"]]),
        "mean_confidence": metrics[_M["confidence_sum"]] / n if n else None,
        "mean_sentiment": metrics[_M["sentiment_sum"]] / n if n else None,
        "top_topics": json.dumps(top),
        "mean_urgency_high": metrics[_M["n_urgency_high"]] / urgency_known if urgency_known else None,
        "n_authors": int(metrics[_M["n_authors"]]) or None,
    }


def compute_baselines(
    scored: pd.DataFrame, releases: pd.DataFrame, as_of: pd.Timestamp, config: WindowConfig = WindowConfig(),
    known_bad: frozenset = frozenset(), describe: bool = True,
) -> pd.DataFrame:
    """One row per judged release × cohort × baseline kind at one look. `known_bad`: (flag, version)
    pairs an earlier decision acted on; they never serve as a last-known-good baseline. From rows,
    through the same sums the assets read from `sentiment_daily` (aggregates.from_rows)."""
    scored = scored[scored.created_at <= as_of]
    agg, repeat = from_rows(scored, releases, window_edges(releases, [as_of], config), config.one_vote_per_author)
    frame = baselines_frame(judge_looks(agg, releases, [as_of], config, known_bad))
    return describe_baselines(frame, scored.assign(repeat_vote=repeat), config) if describe else frame


def baselines_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return COHORT_BASELINES.empty_frame()
    frame = pd.DataFrame(rows)
    for column in ("evidence", "new_terms"):
        frame[column] = "[]"
    return frame[COHORT_BASELINES.names]


def describe_baselines(frame: pd.DataFrame, scored: pd.DataFrame, config: WindowConfig) -> pd.DataFrame:
    """Evidence quotes and what is new in the complaints, from rows (replay, postmortems, tests): the
    rows (with text, marked `repeat_vote`: aggregates.repeat_votes) summed a day at a time as the
    `negatives_daily` table holds them, so the words come from the rows the counts count."""
    if frame.empty:
        return frame
    window = scored[pd.to_datetime(scored.created_at, utc=True) > pd.Timestamp(frame.window_start.min())]
    return negatives_daily.describe(frame, negatives_daily.WindowText.from_rows(window, scored),
                                    config.evidence_quotes, config.one_vote_per_author)


def relative_rise(current: float | None, baseline: float | None) -> float | None:
    if current is None or baseline is None or np.isnan(current) or np.isnan(baseline):
        return None
    if baseline == 0:
        return float("inf") if current > 0 else 0.0
    return current / baseline - 1.0
