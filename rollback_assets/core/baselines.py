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

How: rows are summed once into time segments per flag × release × cohort (the segment edges are the
looks, the window starts and the release times), cumulated over time, and every window at every look
is a difference of two cumulative sums. Judging a look costs the same whatever the history, so replay
judges hundreds of looks in the time one row-level look used to take. Windows are half-open, (start, end].
Evidence quotes, new terms and author counts need the text: `describe` adds them for the looks a
person will read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .abuse import VOTE_KEYS, VOTED_BEFORE, review_bomb_note
from .new_terms import rising_terms
from .schemas import ALL_COHORTS, COHORT_BASELINES
from .scoring.redact import redact_quote

# Columns with few distinct values: read as categoricals, comparisons and group-bys are 10x cheaper.
CATEGORICAL_COLUMNS = ["attributed_flag", "release_version", "cohort", "sentiment_label", "issue_category",
                       "affected_surface", "urgency"]
# Columns of scored_sentiment that baselines read; reading only these keeps the scan narrow.
# `text` is needed only by `describe`: callers may supply it for negative rows in the window only.
BASELINE_INPUT_COLUMNS = [
    "event_id", "attributed_flag", "release_version", "cohort", "created_at", "sentiment_label",
    "sentiment_score", "confidence", "issue_category", "affected_surface", "topic_excluded",
    "high_risk", "urgency", "author_hash",
]
BASELINE_KINDS = ("concurrent", "last_good", "age_matched", "rolling")
SAME_PERIOD_KINDS = ("concurrent", "last_good", "age_matched")
AGE_STEP = pd.Timedelta(hours=6)  # resolution of the age-matched baseline's window ends
AGE_MATCHED_RELEASES = 3  # earlier good releases pooled into the age-matched baseline
METRICS = ("n", "n_negative", "n_negative_high_risk", "n_excluded", "n_excluded_negative",
           "confidence_sum", "sentiment_sum", "n_urgency_high", "n_urgency_known")
_M = {name: i for i, name in enumerate(METRICS)}


@dataclass(frozen=True)
class WindowConfig:
    window_days: float = 7.0
    rolling_releases: int = 3
    rolling_days: float = 28.0
    evidence_quotes: int = 5
    min_rows_to_judge: int = 20  # a superseded release with fewer rows in the window is not judged
    one_vote_per_author: bool = True


def one_vote_per_author(scored: pd.DataFrame) -> pd.DataFrame:
    """Each known author's first feedback per flag, release and cohort; anonymous rows all count.
    The first (not the latest) word, so a row once counted stays counted as later rows arrive; a row
    marked VOTED_BEFORE (the author spoke before the rows read, `abuse.mark_earlier_votes`) never counts."""
    if "author_hash" not in scored or scored.author_hash.isna().all():
        return scored
    known = scored[scored.author_hash.notna()].sort_values("created_at", kind="stable")
    repeat = known.index[known.duplicated(VOTE_KEYS, keep="first")]
    if VOTED_BEFORE in scored:
        repeat = repeat.union(scored.index[scored[VOTED_BEFORE].to_numpy(bool)])
    return scored.drop(index=repeat)


@dataclass
class Aggregates:
    """Cumulative sums per key (flag × release × cohort, 'all' included) over time segments."""

    keys: pd.DataFrame  # flag_key, release_version, cohort; position = first axis of the arrays
    edges: np.ndarray  # int64 ns; segment j is (edges[j], edges[j+1]]
    cum: np.ndarray  # keys × (segments + 1) × METRICS; cum[:, 0] = 0
    topics: np.ndarray  # topic names for topic_cum's last axis
    topic_cum: np.ndarray  # keys × (segments + 1) × topics: relevant negatives per topic
    age_cum: np.ndarray  # keys × (age steps + 1) × METRICS: rows with age since release <= j * AGE_STEP

    def at_age(self, start: pd.Timedelta, end: pd.Timedelta, rows: np.ndarray) -> np.ndarray:
        """Metrics summed over ages (start, end] since each key's release, to AGE_STEP resolution."""
        last = self.age_cum.shape[1] - 1
        a = min(max(int(start / AGE_STEP), 0), last)
        b = min(max(int(end / AGE_STEP), 0), last)
        return self.age_cum[rows, b] - self.age_cum[rows, a]

    def window(self, start: pd.Timestamp, end: pd.Timestamp, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Metrics summed over (start, end] for the given keys."""
        a, b = self._edge(start), self._edge(end)
        return self.cum[rows, b] - self.cum[rows, a]

    def topic_window(self, start: pd.Timestamp, end: pd.Timestamp, rows: np.ndarray) -> np.ndarray:
        """Relevant negatives per topic summed over (start, end] for the given keys."""
        a, b = self._edge(start), self._edge(end)
        return self.topic_cum[rows, b] - self.topic_cum[rows, a]

    def _edge(self, at: pd.Timestamp) -> int:
        value = pd.Timestamp(at).value
        index = int(np.searchsorted(self.edges, value, side="left"))
        if index >= len(self.edges) or self.edges[index] != value:  # before the first row or after the last
            index = int(np.searchsorted(self.edges, value, side="right"))
        return min(index, len(self.edges) - 1)


def window_edges(releases: pd.DataFrame, looks, config: WindowConfig) -> list[pd.Timestamp]:
    """Every time a window can start or end at the given looks."""
    looks = pd.DatetimeIndex(looks)
    edges = [*looks, *(looks - pd.Timedelta(days=config.window_days)), *releases.released_at,
             *(releases.released_at - pd.Timedelta(days=config.rolling_days))]
    return edges


def aggregate(scored: pd.DataFrame, releases: pd.DataFrame, edges, config: WindowConfig = WindowConfig()) -> Aggregates:
    """Sum scored rows into the segments between `edges` (see `window_edges`)."""
    if config.one_vote_per_author:
        scored = one_vote_per_author(scored)
    rows = scored[scored.attributed_flag.notna() & scored.release_version.notna()]
    times = _nanoseconds(rows.created_at)
    bounds = np.unique(np.concatenate([
        np.asarray([pd.Timestamp(e).value for e in edges], dtype=np.int64),
        [times.min() - 1 if len(times) else 0, times.max() if len(times) else 1],
    ]))
    segment = np.searchsorted(bounds, times, side="left") - 1  # (edges[j], edges[j+1]] -> j

    flag = rows.attributed_flag.astype(str).to_numpy()
    release = rows.release_version.astype(str).to_numpy()
    cohort = rows.cohort.astype(str).to_numpy()
    label = rows.sentiment_label.astype(str).to_numpy()
    excluded = rows.topic_excluded.astype(bool).to_numpy()
    negative = label == "negative"
    relevant = ~excluded
    topic = rows.issue_category.astype(str).to_numpy()
    surface = rows.affected_surface.astype(object).to_numpy()
    # Per release (few), not per row (millions): its own surfaces, and its release time for the row's age.
    release_codes, release_pairs = pd.factorize(pd.MultiIndex.from_arrays([flag, release])) if len(rows) else ([], [])
    surfaces = _release_surfaces(releases)
    released = {(f, v): pd.Timestamp(t).value for f, v, t in zip(releases.flag_key, releases.version, releases.released_at)}
    on_release_surface = np.zeros(len(rows), bool)
    release_time = times.copy()
    for code, pair in enumerate(release_pairs):
        mine = release_codes == code
        own = list(surfaces.get(pair, ()))
        if own:
            on_release_surface[mine] = np.isin(topic[mine], own) | np.isin(surface[mine], own)
        if pair in released:
            release_time[mine] = released[pair]
    high_risk = rows.high_risk.astype(bool).to_numpy() | on_release_surface
    urgency = rows.urgency.astype(object).to_numpy() if "urgency" in rows else np.full(len(rows), None, dtype=object)
    urgency_known = pd.notna(urgency)

    values = np.column_stack([
        relevant, relevant & negative, relevant & negative & high_risk, excluded, excluded & negative,
        np.where(relevant, rows.confidence.astype(float).to_numpy(), 0.0),
        np.where(relevant, rows.sentiment_score.astype(float).to_numpy(), 0.0),
        relevant & negative & urgency_known & (urgency == "high"), relevant & negative & urgency_known,
    ]).astype(float) if len(rows) else np.zeros((0, len(METRICS)))
    topics, topic_index = np.unique(topic, return_inverse=True) if len(rows) else (np.array([], dtype=object), np.array([], int))

    keys = pd.DataFrame({"flag_key": flag, "release_version": release, "cohort": cohort})
    has_dimensions = not (keys.cohort == ALL_COHORTS).all()
    key_frames = [keys] + ([keys.assign(cohort=ALL_COHORTS)] if has_dimensions else [])
    all_keys = pd.concat(key_frames, ignore_index=True)
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(all_keys))
    n_keys, n_segments = len(uniques), len(bounds) - 1
    width = n_segments + 1
    cum = np.zeros((n_keys, width, len(METRICS)))
    topic_cum = np.zeros((n_keys, width, len(topics)))
    chosen = relevant & negative
    for part in range(len(key_frames)):
        cell = codes[part * len(rows):(part + 1) * len(rows)] * width + segment + 1
        for m in range(len(METRICS)):
            cum[:, :, m] += np.bincount(cell, weights=values[:, m], minlength=n_keys * width).reshape(n_keys, width)
        topic_cell = cell[chosen] * len(topics) + topic_index[chosen]
        topic_cum += np.bincount(topic_cell, minlength=n_keys * width * len(topics)).reshape(n_keys, width, len(topics))
    np.cumsum(cum, axis=1, out=cum)
    np.cumsum(topic_cum, axis=1, out=topic_cum)
    age_index = np.maximum(np.ceil((times - release_time) / AGE_STEP.value).astype(np.int64), 0) if len(rows) else times
    ages = int(age_index.max()) + 2 if len(rows) else 2
    age_cum = np.zeros((n_keys, ages, len(METRICS)))
    for part in range(len(key_frames)):
        cell = codes[part * len(rows):(part + 1) * len(rows)] * ages + age_index
        for m in range(len(METRICS)):
            age_cum[:, :, m] += np.bincount(cell, weights=values[:, m], minlength=n_keys * ages).reshape(n_keys, ages)
    np.cumsum(age_cum, axis=1, out=age_cum)
    key_frame = uniques.to_frame(index=False, name=["flag_key", "release_version", "cohort"])
    return Aggregates(key_frame, bounds, cum, topics, topic_cum, age_cum)


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """Epoch nanoseconds whatever the unit the frame came in (Delta reads microseconds)."""
    return pd.to_datetime(times, utc=True).dt.as_unit("ns").astype("int64").to_numpy()


def _release_surfaces(releases: pd.DataFrame) -> dict:
    return {(r.flag_key, r.version): frozenset(r.surfaces if r.surfaces is not None else [])
            for r in releases.itertuples(index=False)}


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
                              _nanoseconds(flag_releases.released_at))
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
        volume = pd.Series(sums[flag.everyone, _M["n"]], index=versions[flag.everyone])
        volume = volume[volume.index.isin(good) & (volume > 0)]
        if len(volume):
            best = volume.index[np.argmax(volume.to_numpy())]
            if best != previous and volume[best] > volume.get(previous, 0):
                baselines["last_good"] = rows_of([best])
    if earlier:
        rolling_sums = agg.window(release.released_at - pd.Timedelta(days=config.rolling_days), release.released_at,
                                     flag.positions)
        baselines["rolling"] = rows_of(earlier[-config.rolling_releases:], rolling_sums)
    else:
        baselines["rolling"] = rows_of([])
    out = []
    for row, topics in zip(mine, topic_sums):
        stats = _stats(sums[row], topics, agg.topics)
        if stats["n"] + stats["n_excluded"] == 0:
            continue
        for kind, (base_sums, base_cohorts, base_versions) in baselines.items():
            base = base_sums[base_cohorts == cohorts[row]].sum(axis=0)
            base_n, base_neg = int(base[_M["n"]]), int(base[_M["n_negative"]])
            out.append({
                "flag_key": release.flag_key, "release_version": release.version, "cohort": cohorts[row],
                "baseline_kind": kind, "baseline_versions": ",".join(base_versions), "release_live": live,
                "window_start": start, "window_end": as_of, **stats,
                "baseline_n": base_n, "baseline_n_negative": base_neg,
                "baseline_negative_share": base_neg / base_n if base_n else None,
                "baseline_mean_sentiment": base[_M["sentiment_sum"]] / base_n if base_n else None,
                "as_of": as_of,
            })
    return out


def _stats(metrics: np.ndarray, topic_negatives: np.ndarray, topics: np.ndarray) -> dict:
    n, negatives = int(metrics[_M["n"]]), int(metrics[_M["n_negative"]])
    order = np.argsort(-topic_negatives, kind="stable")[:3]
    top = [[str(topics[i]), int(topic_negatives[i])] for i in order if topic_negatives[i] > 0]
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
    }


def compute_baselines(
    scored: pd.DataFrame, releases: pd.DataFrame, as_of: pd.Timestamp, config: WindowConfig = WindowConfig(),
    known_bad: frozenset = frozenset(), describe: bool = True,
) -> pd.DataFrame:
    """One row per judged release × cohort × baseline kind at one look. `known_bad`: (flag, version)
    pairs an earlier decision acted on; they never serve as a last-known-good baseline."""
    scored = scored[scored.created_at <= as_of]
    agg = aggregate(scored, releases, window_edges(releases, [as_of], config), config)
    frame = baselines_frame(judge_looks(agg, releases, [as_of], config, known_bad))
    return describe_baselines(frame, scored, config) if describe else frame


def baselines_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return COHORT_BASELINES.empty_frame()
    frame = pd.DataFrame(rows)
    for column in ("evidence", "new_terms"):
        frame[column] = "[]"
    frame["n_authors"] = None
    return frame[COHORT_BASELINES.names]


def describe_baselines(frame: pd.DataFrame, scored: pd.DataFrame, config: WindowConfig) -> pd.DataFrame:
    """Evidence quotes, what is new in the complaints, and author counts: the parts that need text."""
    if frame.empty:
        return frame
    frame = frame.copy()
    posts = scored  # every post, for the review-bomb note; the figures below count votes
    if config.one_vote_per_author:
        scored = one_vote_per_author(scored)
    described: dict[tuple, tuple[str, str, int | None]] = {}
    for key, group in frame.groupby(["flag_key", "release_version", "cohort", "window_start", "window_end"], sort=False):
        flag, version, cohort, start, end = key
        in_window = scored[(scored.attributed_flag == flag) & (scored.created_at > start) & (scored.created_at <= end)]
        if cohort != ALL_COHORTS:
            in_window = in_window[in_window.cohort == cohort]
        current = in_window[in_window.release_version == version]
        compared_versions = {v for kind, vs in zip(group.baseline_kind, group.baseline_versions)
                             if kind != "rolling" for v in (vs or "").split(",") if v}
        compared = in_window[in_window.release_version.isin(compared_versions)]
        top = (json.loads(group.top_topics.iloc[0] or "[]") or [[None]])[0][0]
        relevant_negative = current[(current.sentiment_label == "negative") & ~current.topic_excluded.astype(bool)]
        quotes = _evidence(relevant_negative, top, config.evidence_quotes)
        bomb = review_bomb_note(_rows_of(posts, flag, version, cohort, start, end), config.one_vote_per_author)
        quotes = [bomb, *quotes] if bomb else quotes
        terms = rising_terms(_texts(current), _texts(compared))
        authors = current.author_hash.dropna().nunique() if "author_hash" in current else 0
        described[key] = (json.dumps(quotes), json.dumps(terms), int(authors) if authors else None)
    keys = list(zip(frame.flag_key, frame.release_version, frame.cohort, frame.window_start, frame.window_end))
    frame["evidence"] = [described[k][0] for k in keys]
    frame["new_terms"] = [described[k][1] for k in keys]
    frame["n_authors"] = [described[k][2] for k in keys]
    return frame


def _rows_of(scored: pd.DataFrame, flag, version, cohort, start, end) -> pd.DataFrame:
    """One judged release's rows in one cohort and window (cohort 'all': every cohort)."""
    mine = scored[(scored.attributed_flag == flag) & (scored.release_version == version)
                  & (scored.created_at > start) & (scored.created_at <= end)]
    return mine if cohort == ALL_COHORTS else mine[mine.cohort == cohort]


def _texts(rows: pd.DataFrame) -> pd.Series:
    """Texts of the relevant negatives (callers read text for negatives only)."""
    if "text" not in rows:
        return pd.Series(dtype=object)
    return rows.text[(rows.sentiment_label == "negative") & ~rows.topic_excluded.astype(bool)]


def _evidence(negative: pd.DataFrame, topic: str | None, quotes: int) -> list[str]:
    """The most confident distinct complaints on the top topic: what a reviewer should read first.
    Near-duplicates (same words, other case or punctuation) count once."""
    if topic is None or "text" not in negative or quotes == 0:
        return []
    on_topic = negative[negative.issue_category == topic].sort_values(["confidence", "created_at"], ascending=[False, True])
    texts = on_topic.text.dropna().map(redact_quote)  # people read these: same redaction as the LLM's input
    fingerprint = texts.map(lambda t: " ".join(re.findall(r"\w+", t.lower()))[:80])
    return texts[~fingerprint.duplicated()].head(quotes).tolist()


def relative_rise(current: float | None, baseline: float | None) -> float | None:
    if current is None or baseline is None or np.isnan(current) or np.isnan(baseline):
        return None
    if baseline == 0:
        return float("inf") if current > 0 else 0.0
    return current / baseline - 1.0
