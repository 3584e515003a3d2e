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
    cohort_codes: np.ndarray  # each key's cohort as a number 0..n_cohorts-1: baselines sum per cohort by it
    n_cohorts: int
    version_rows: dict  # version -> its keys (indices into versions)
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
        cohort_codes, cohort_names = pd.factorize(cohorts)
        versions = key_rows.release_version.to_numpy()
        version_codes, version_names = pd.factorize(versions)
        version_rows = {v: np.flatnonzero(version_codes == code) for code, v in enumerate(version_names)}
        positions = key_rows.index.to_numpy()
        everyone = cohorts == ALL_COHORTS
        out[flag_key] = _Flag(_as_slice(positions), versions, cohorts, cohort_codes, len(cohort_names), version_rows,
                              everyone, positions[everyone], list(flag_releases.itertuples(index=False)),
                              nanoseconds(flag_releases.released_at))
    return out


def _as_slice(positions: np.ndarray) -> np.ndarray | slice:
    """A contiguous run of keys as a slice: numpy then takes a view instead of copying."""
    if len(positions) and (np.diff(positions) == 1).all():
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


def judge_looks(agg: Aggregates, releases: pd.DataFrame, looks, config: WindowConfig,
                known_bad: frozenset = frozenset()) -> pd.DataFrame:
    """Baseline rows (COHORT_BASELINES columns but the text-derived ones) for every look.

    Each judged release at each look gives a block of arrays (its cohorts × baseline kinds); the frame
    is built from all blocks at once, column by column: replay judges thousands of them."""
    blocks: list[_Block] = []
    window = pd.Timedelta(days=config.window_days)
    flags = _flags(agg, releases)
    cache: dict = {}  # see _judge_release
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
                block = _judge_release(agg, flag, earlier, release, live, start, as_of, config, known_bad, cache)
                if block is not None:
                    blocks.append(block)
    return _rows(blocks, agg.topics)


@dataclass(frozen=True)
class _Block:
    """One judged release at one look: its cohorts' sums, each compared with every baseline kind."""

    flag_key: str
    release_version: str
    live: bool
    start: pd.Timestamp
    as_of: pd.Timestamp
    cohorts: np.ndarray  # the release's cohorts with feedback in the window
    metrics: np.ndarray  # cohorts × METRICS
    topic_sums: np.ndarray  # cohorts × topics
    kinds: list[str]
    baseline_versions: list[str]  # per kind
    baseline_sums: np.ndarray  # cohorts × kinds × (n, negatives, sentiment sum)


def _judge_release(agg, flag, earlier, release, live, start, as_of, config, known_bad, cache: dict) -> _Block | None:
    """`cache`: what one judge_looks call reuses across its looks and releases (its agg, flags, config and
    known-bad releases are fixed): window sums per (flag, start, end), a set of versions' keys, and each
    release's rolling baseline, which does not depend on the look."""
    def once(key, compute):
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    flag_key = release.flag_key
    sums = once((flag_key, "window", start, as_of), lambda: agg.window(start, as_of, flag.positions))
    versions, cohorts = flag.versions, flag.cohorts
    mine = flag.version_rows.get(release.version)
    if mine is None:
        return None
    positions = (np.arange(flag.positions.start, flag.positions.stop) if isinstance(flag.positions, slice)
                 else flag.positions)
    baselines: dict[str, tuple[np.ndarray, list[str]]] = {}  # kind -> (sums per cohort code, versions)

    def keys_of(chosen_versions) -> np.ndarray:
        """The keys of these versions in key order (the order a mask over `versions` gives)."""
        def compute():
            parts = [flag.version_rows[v] for v in chosen_versions if v in flag.version_rows]
            return np.unique(np.concatenate(parts)) if parts else np.zeros(0, int)
        return once((flag_key, "keys", tuple(chosen_versions)), compute)

    def rows_of(chosen_versions, window_sums=sums):
        chosen = keys_of(chosen_versions)
        return _by_cohort(window_sums[chosen], flag.cohort_codes[chosen], flag.n_cohorts), list(chosen_versions)

    good = [v for v in earlier if (flag_key, v) not in known_bad]
    if earlier and getattr(release, "adoption", None) == "self_selected":
        age_end = as_of - release.released_at
        pooled = good[-AGE_MATCHED_RELEASES:]
        chosen = keys_of(pooled)
        age_sums = agg.at_age(age_end - (as_of - start), age_end, positions[chosen])
        baselines["age_matched"] = (_by_cohort(age_sums, flag.cohort_codes[chosen], flag.n_cohorts), pooled)
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

    def rolling():
        if not earlier:
            return rows_of([])
        rolling_sums = agg.window(release.released_at - pd.Timedelta(days=config.rolling_days), release.released_at,
                                  flag.positions)
        return rows_of(earlier[-config.rolling_releases:], rolling_sums)
    baselines["rolling"] = once((flag_key, "rolling", release.version), rolling)
    metrics = sums[mine]
    seen = metrics[:, _M["n"]] + metrics[:, _M["n_excluded"]] != 0  # a cohort with no feedback in the window is not judged
    if not seen.any():
        return None
    mine, metrics = mine[seen], metrics[seen]
    wanted = flag.cohort_codes[mine]
    return _Block(flag_key, release.version, live, start, as_of, cohorts[mine], metrics,
                  agg.topic_window(start, as_of, positions[mine]), list(baselines),
                  [",".join(parts[1]) for parts in baselines.values()],
                  np.stack([by_cohort[wanted] for by_cohort, _ in baselines.values()], axis=1))


def _by_cohort(base_sums: np.ndarray, base_cohorts: np.ndarray, n_cohorts: int) -> np.ndarray:
    """(n, negatives, sentiment sum) of a baseline per cohort code; zeros where it has none."""
    picked = base_sums[:, [_M["n"], _M["n_negative"], _M["sentiment_sum"]]]
    # bincount adds in row order as np.add.at does (the same float sums), at a fraction of its cost
    cells = (np.asarray(base_cohorts, dtype=np.int64)[:, None] * 3 + np.arange(3)).ravel()
    return np.bincount(cells, weights=picked.ravel(), minlength=n_cohorts * 3).reshape(n_cohorts, 3)


def _rows(blocks: list[_Block], topics: np.ndarray) -> pd.DataFrame:
    """The blocks as one frame: a row per cohort × baseline kind, in block, cohort, kind order."""
    if not blocks:
        return pd.DataFrame()
    sizes = np.array([len(b.cohorts) * len(b.kinds) for b in blocks])
    per_cohort = np.array([len(b.kinds) for b in blocks]).repeat([len(b.cohorts) for b in blocks])  # rows per cohort

    def each_block(values, dtype=None):
        return np.repeat(np.asarray(values, dtype=dtype), sizes)

    # Row r of a block is its cohort r // kinds against its kind r % kinds; `kind`: index into all blocks' kinds.
    kinds = np.array([len(b.kinds) for b in blocks])
    block = np.repeat(np.arange(len(blocks)), sizes)
    within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    kind = np.repeat(np.cumsum(kinds) - kinds, sizes) + within % kinds[block]
    metrics = np.concatenate([b.metrics for b in blocks]).repeat(per_cohort, axis=0)
    baseline = np.concatenate([b.baseline_sums.reshape(-1, 3) for b in blocks])
    top_topics = _top_topics(np.concatenate([b.topic_sums for b in blocks]), topics)
    frame = pd.DataFrame({
        "flag_key": each_block([b.flag_key for b in blocks], object),
        "release_version": each_block([b.release_version for b in blocks], object),
        "cohort": np.concatenate([b.cohorts for b in blocks]).repeat(per_cohort),
        "baseline_kind": np.asarray([k for b in blocks for k in b.kinds], dtype=object)[kind],
        "baseline_versions": np.asarray([v for b in blocks for v in b.baseline_versions], dtype=object)[kind],
        "release_live": each_block([b.live for b in blocks], bool),
        "window_start": pd.to_datetime(each_block([pd.Timestamp(b.start).value for b in blocks], np.int64), utc=True),
        "window_end": pd.to_datetime(each_block([b.as_of.value for b in blocks], np.int64), utc=True),
        **_stats(metrics, np.repeat(np.asarray(top_topics, dtype=object), per_cohort)),
    })
    base_n, base_negatives = baseline[:, 0].astype(np.int64), baseline[:, 1].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["baseline_n"] = base_n
        frame["baseline_n_negative"] = base_negatives
        frame["baseline_negative_share"] = _optional(base_negatives / base_n, base_n != 0)
        frame["baseline_mean_sentiment"] = _optional(baseline[:, 2] / base_n, base_n != 0)
    frame["as_of"] = frame.window_end
    return frame


def _top_topics(topic_sums: np.ndarray, topics: np.ndarray) -> list[str]:
    """Per cohort: JSON [[topic, negatives], ...] of its three most complained-about topics."""
    if not len(topics):
        return ["[]"] * len(topic_sums)
    names = np.array([json.dumps(str(t)) for t in topics], dtype=object)
    tops = np.argsort(-topic_sums, axis=1, kind="stable")[:, :3]
    counts = np.take_along_axis(topic_sums, tops, axis=1)
    # Column by column over all cohorts (object arrays add as Python strings): a row per cohort and look.
    text, started = np.full(len(topic_sums), "[", dtype=object), np.zeros(len(topic_sums), bool)
    for k in range(tops.shape[1]):
        shown = counts[:, k] > 0
        number = np.where(shown, counts[:, k], 0).astype(np.int64).astype(str).astype(object)
        piece = np.where(started, ", ", "").astype(object) + "[" + names[tops[:, k]] + ", " + number + "]"
        text = np.where(shown, text + piece, text)
        started |= shown
    return (text + "]").tolist()


def _stats(metrics: np.ndarray, top_topics: np.ndarray) -> dict:
    """A cohort's figures from its summed METRICS (rows × METRICS)."""
    def column(name):
        return metrics[:, _M[name]]

    n, negatives = column("n").astype(np.int64), column("n_negative").astype(np.int64)
    urgency_known, authors = column("n_urgency_known"), column("n_authors").astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "n": n,
            "n_negative": negatives,
            "negative_share": _optional(negatives / n, n != 0),
            "n_negative_high_risk": column("n_negative_high_risk").astype(np.int64),
            "n_excluded": column("n_excluded").astype(np.int64),
            "n_excluded_negative": column("n_excluded_negative").astype(np.int64),
            "mean_confidence": _optional(column("confidence_sum") / n, n != 0),
            "mean_sentiment": _optional(column("sentiment_sum") / n, n != 0),
            "top_topics": top_topics,
            "mean_urgency_high": _optional(column("n_urgency_high") / urgency_known, urgency_known != 0),
            "n_authors": _optional(authors, authors != 0),
        }


def _optional(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`values` where known, missing elsewhere, typed as pandas types a column of numbers and None:
    the values' own dtype when all are known, float with NaN when some are, None (object) when none is."""
    if known.all():
        return values
    if known.any():
        return np.where(known, values, np.nan)
    return np.full(len(values), None, dtype=object)


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


def baselines_frame(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return COHORT_BASELINES.empty_frame()
    frame = rows.copy()
    for column in ("evidence", "new_terms"):
        frame[column] = "[]"
    return frame[COHORT_BASELINES.names]


def describe_baselines(frame: pd.DataFrame, scored: pd.DataFrame, config: WindowConfig) -> pd.DataFrame:
    """Evidence quotes and what is new in the complaints, from rows (replay, postmortems, tests): the
    rows (with text, marked `repeat_vote`: aggregates.repeat_votes) summed a day at a time as the
    `negatives_daily` table holds them, so the words come from the rows the counts count."""
    if frame.empty:
        return frame
    window = scored[(pd.to_datetime(scored.created_at, utc=True) > pd.Timestamp(frame.window_start.min()))
                    & scored.attributed_flag.isin(set(frame.flag_key))]
    return negatives_daily.describe(frame, negatives_daily.WindowText.from_rows(window, scored),
                                    config.evidence_quotes, config.one_vote_per_author)


def relative_rise(current: float | None, baseline: float | None) -> float | None:
    """How far `current` rose above `baseline` (0.3: 30 % higher); None where either is missing."""
    rise = float(relative_rises([current], [baseline])[0])
    return None if np.isnan(rise) else rise


def relative_rises(current, baseline) -> np.ndarray:
    """`relative_rise` of each pair, as floats (NaN where either is missing; inf above a zero baseline): a
    decision batch has a row per release, cohort and look."""
    current, baseline = np.asarray(current, dtype=float), np.asarray(baseline, dtype=float)  # None -> NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.where(baseline == 0, np.where(current > 0, np.inf, 0.0), current / baseline - 1.0)
    return np.where(np.isnan(current) | np.isnan(baseline), np.nan, rise)
