"""Scored feedback summed into hour buckets: the one home of the sums every decision reads.

Why: judging a look used to re-read the window's rows (28 days for the sequential rule) on every run,
so a decision cost more as history grew. Rows are summed once into `sentiment_daily` (per flag ×
release × cohort × hour × age since release × label × topic, and whether the row is an author's
repeat vote), a day at a time; a look reads those sums. The same functions build the table in the
`sentiment_daily` asset, in the Spark job (`engines/spark_aggregate.py`), in `replay` and in
`compute_baselines`, so there is one aggregation.

Exact, not approximate: windows are half-open, (start, end], and may end anywhere (the assets' clock
is the newest feedback's time). A bucket (end - 1 h, end] is wholly inside or outside every window
unless a window edge falls strictly inside it; only those few buckets (the look's hour, its window
start's hour, the hours releases went live) are read as rows (`split_buckets`). So decisions from the
buckets equal decisions from the rows, count for count, and replay's looks (on the hour) read none.

One vote per author: each known author's first feedback per flag, release and cohort counts
(`first_votes`); later ones are stored as `repeat_vote` rows, which the policy leaves out. The first
word over the whole history, so the assets and replay agree whatever window they read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .schemas import ALL_COHORTS, AUTHOR_VOTES, SENTIMENT_DAILY, is_text

BUCKET = pd.Timedelta(hours=1)  # time resolution of sentiment_daily; looks on the hour split none
AGE_STEP = pd.Timedelta(hours=6)  # resolution of the age-matched baseline's window ends
KEY = ["flag_key", "release_version", "cohort"]
VOTE_KEY = ["attributed_flag", "release_version", "cohort", "author_hash"]
DIMENSIONS = [c for c in SENTIMENT_DAILY.key]
SUMS = [c.name for c in SENTIMENT_DAILY.columns if c.name not in SENTIMENT_DAILY.key]
# What a look sums per key and segment (Aggregates.cum's last axis).
METRICS = ("n", "n_negative", "n_negative_high_risk", "n_excluded", "n_excluded_negative",
           "confidence_sum", "sentiment_sum", "n_urgency_high", "n_urgency_known", "n_authors")
M = {name: i for i, name in enumerate(METRICS)}


@dataclass
class Aggregates:
    """Cumulative sums per key (flag × release × cohort, 'all' included) over time segments."""

    keys: pd.DataFrame  # flag_key, release_version, cohort; position = first axis of the arrays
    edges: np.ndarray  # int64 ns; segment j is (edges[j], edges[j+1]]
    cum: np.ndarray  # keys × (segments + 1) × METRICS; cum[:, 0] = 0
    topics: np.ndarray  # topic names for topic_cum's last axis
    topic_cum: np.ndarray  # keys × (segments + 1) × topics: relevant negatives per topic
    age_cum: np.ndarray  # keys × (age steps + 1) × METRICS: rows with age since release <= j * AGE_STEP
    # time -> its index into edges: replay asks for the same few hundred looks' edges tens of thousands of times
    _edges_at: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
        index = self._edges_at.get(at)
        if index is None:
            index = self._edges_at[at] = self._find_edge(at)
        return index

    def _find_edge(self, at: pd.Timestamp) -> int:
        value = pd.Timestamp(at).value
        index = int(np.searchsorted(self.edges, value, side="left"))
        if index >= len(self.edges) or self.edges[index] != value:  # before the first row or after the last
            index = int(np.searchsorted(self.edges, value, side="right"))
        return min(index, len(self.edges) - 1)


# ---------------------------------------------------------------- one vote per author
def first_votes(rows: pd.DataFrame) -> pd.DataFrame:
    """`first_votes_table` for a pandas frame (a day's batch, replay's rows, the Spark job's groups)."""
    if "author_hash" not in rows:
        return AUTHOR_VOTES.empty_frame()
    narrow = rows[[*VOTE_KEY, "event_id"]].assign(created_at=utc_times(rows.created_at))
    return first_votes_table(pa.Table.from_pandas(narrow, preserve_index=False)).to_pandas()


def first_votes_table(rows: pa.Table) -> pa.Table:
    """Each known author's first feedback per flag, release and cohort (AUTHOR_VOTES rows, in the
    order of those first rows). The first, not the latest, word: a row once counted stays counted as
    later rows arrive. Ties: event id. In Arrow, keys as dictionary codes: at a million rows (nearly
    one vote each) a pandas frame's Python strings cost 2.5 s to read and pick from, this 1 s."""
    known = pc.and_(pc.and_(pc.is_valid(rows.column("author_hash")), pc.is_valid(rows.column("attributed_flag"))),
                    pc.is_valid(rows.column("release_version")))
    rows = rows.filter(known)
    order = pc.sort_indices(pa.table({"at": rows.column("created_at"), "id": rows.column("event_id").cast(pa.string())}),
                            sort_keys=[("at", "ascending"), ("id", "ascending")]).to_numpy()
    codes, _ = factorize_keys([arrow_indices(rows.column(c)) for c in VOTE_KEY])
    first = rows.take(order[np.sort(np.unique(codes[order], return_index=True)[1])])  # each key's first in that order
    at = first.column("created_at")  # in the rows' own unit (a lake's are microseconds, a caller's may be finer)
    schema = AUTHOR_VOTES.arrow_schema
    schema = schema.set(schema.get_field_index("first_at"), schema.field("first_at").with_type(at.type))
    return pa.Table.from_arrays(
        [first.column("attributed_flag").cast(pa.string()), first.column("release_version").cast(pa.string()),
         first.column("cohort").cast(pa.string()), first.column("author_hash").cast(pa.string()),
         first.column("event_id").cast(pa.string()), at, pc.cast(at, pa.date32())], schema=schema)


def factorize_keys(columns: list) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each row's combination of `columns` as a code in order of first appearance, and each column's
    values per code: what pd.factorize of a MultiIndex gives, without building a tuple per row (about
    a second per million rows). A column may be a numpy array or a pandas array (a Categorical is
    factorized on its codes, no string hashed)."""
    codes, span = np.zeros(len(columns[0]), np.int64), 1
    for values in columns:
        column_codes, uniques = pd.factorize(values, use_na_sentinel=False)
        width = max(len(uniques), 1)
        if span * width >= 2**62:  # renumbered only when the product of cardinalities could overflow
            codes, distinct = pd.factorize(codes)
            span = len(distinct)
        codes, span = codes * width + column_codes, span * width
    codes, _ = pd.factorize(codes)
    first_rows = np.unique(codes, return_index=True)[1]  # codes count up from 0 in order of appearance
    return codes, [np.asarray(values[first_rows]) for values in columns]


def repeat_votes(rows: pd.DataFrame, first_event_ids) -> np.ndarray:
    """True for a row whose author already counted: a known author's row that is not a first vote.
    Event ids are unique, so membership in the first votes' ids is enough (no key join)."""
    if "author_hash" not in rows:
        return np.zeros(len(rows), bool)
    return (rows.author_hash.notna() & ~rows.event_id.astype(str).isin(pd.Index(first_event_ids).astype(str))).to_numpy()


# ---------------------------------------------------------------- rows -> sentiment_daily
def row_cells(rows: pd.DataFrame, releases: pd.DataFrame, repeat: np.ndarray) -> pd.DataFrame:
    """One cell per attributed row: SENTIMENT_DAILY's dimensions and sums, with the row's own time
    (`at`, int64 ns) where the table has its bucket."""
    return pd.DataFrame({name: np.asarray(values, dtype=object) if isinstance(values, pd.Categorical) else values
                         for name, values in _cell_columns(rows, releases, repeat).items()})


def daily(rows: pd.DataFrame, releases: pd.DataFrame, repeat: np.ndarray) -> pd.DataFrame:
    """SENTIMENT_DAILY rows for `rows` (whole days, so a day's rows replace that day's sums), in the
    dimensions' order. Grouped on integer codes: each dimension numbered in its values' order (the text
    ones as Categoricals), the numbers combined into one code per row whose order is the keys' order, and
    pandas' sum over that one code (its compensated float sums, as a group-by on the columns gave); a
    group-by on a frame of a million text cells cost ~2 s."""
    cells = _cell_columns(rows, releases, repeat)
    if not len(cells["at"]):
        return SENTIMENT_DAILY.empty_frame()
    cells["bucket_end"] = bucket_ends(cells.pop("at"))
    ranked = [_ranked_codes(cells[name]) for name in DIMENSIONS]
    combined, span = np.zeros(len(cells["bucket_end"]), np.int64), 1
    for codes, values in ranked:
        if span * max(len(values), 1) >= 2**62:  # renumbered (in order) only where the product could overflow
            distinct, combined = np.unique(combined, return_inverse=True)
            span = len(distinct)
        combined, span = combined * max(len(values), 1) + codes, span * max(len(values), 1)
    _, first, group = np.unique(combined, return_index=True, return_inverse=True)  # groups in the keys' order
    out = pd.DataFrame({name: values[codes[first]] for name, (codes, values) in zip(DIMENSIONS, ranked)})
    summed = pd.DataFrame({name: cells[name] for name in SUMS}).groupby(group.reshape(-1), sort=True).sum()
    for name in SUMS:
        out[name] = summed[name].to_numpy()
    out["bucket_end"] = pd.to_datetime(out.bucket_end, utc=True)
    return out[SENTIMENT_DAILY.names]


def _cell_columns(rows: pd.DataFrame, releases: pd.DataFrame, repeat: np.ndarray) -> dict:
    """`row_cells`' columns, the text dimensions as Categoricals (`_text`)."""
    attributed = (rows.attributed_flag.notna() & rows.release_version.notna()).to_numpy()
    repeat = np.asarray(repeat, bool)
    if not attributed.all():  # a filter copies every column, text included: only when it drops rows
        rows, repeat = rows[attributed], repeat[attributed]
    times = nanoseconds(rows.created_at)
    flag, release, topic = _text(rows.attributed_flag), _text(rows.release_version), _text(rows.issue_category)
    surface_codes, surfaces_seen = pd.factorize(rows.affected_surface)  # a categorical's codes; none: -1
    excluded = rows.topic_excluded.astype(bool).to_numpy()
    relevant = ~excluded
    # Per release (few), not per row (millions): its own surfaces, and its release time for the row's age.
    release_codes, release_pairs = factorize_keys([flag.codes, release.codes]) if len(rows) else ([], [[], []])
    release_pairs = [(flag.categories[f], release.categories[r]) for f, r in zip(*release_pairs)]
    surfaces = {(r.flag_key, r.version): frozenset(r.surfaces if r.surfaces is not None else [])
                for r in releases.itertuples(index=False)}
    released = {(f, v): pd.Timestamp(t).value for f, v, t in zip(releases.flag_key, releases.version, releases.released_at)}
    on_release_surface = np.zeros(len(rows), bool)
    release_time = times.copy()
    for code, pair in enumerate(release_pairs):
        mine = release_codes == code
        own = list(surfaces.get(pair, ()))
        if own:
            # per distinct topic and surface, then by code (-1, no surface, takes the appended False)
            on_topic = np.isin(np.asarray(topic.categories, dtype=object), own)[topic.codes[mine]]
            on_surface = np.append(np.isin(np.asarray(surfaces_seen, dtype=object), own), False)[surface_codes[mine]]
            on_release_surface[mine] = on_topic | on_surface
        if pair in released:
            release_time[mine] = released[pair]
    high_risk = rows.high_risk.astype(bool).to_numpy() | on_release_surface
    urgency = rows.urgency.astype(object).to_numpy() if "urgency" in rows else np.full(len(rows), None, dtype=object)
    urgency_known = pd.notna(urgency)
    author = rows.author_hash.notna().to_numpy() if "author_hash" in rows else np.zeros(len(rows), bool)
    rated = rows.rating.notna().to_numpy() if "rating" in rows else np.zeros(len(rows), bool)
    created_date = rows.created_date if "created_date" in rows else utc_dates(rows.created_at)
    return {
        "flag_key": flag, "release_version": release, "cohort": _text(rows.cohort),
        "created_date": np.asarray(created_date, dtype=object), "at": times,
        "age_step": np.maximum(np.ceil((times - release_time) / AGE_STEP.value), 0).astype(np.int64),
        "sentiment_label": _text(rows.sentiment_label), "issue_category": topic, "repeat_vote": repeat,
        "n_relevant": relevant.astype(np.int64), "n_excluded": excluded.astype(np.int64),
        "n_high_risk": (relevant & high_risk).astype(np.int64),
        "n_urgency_high": (relevant & urgency_known & (urgency == "high")).astype(np.int64),
        "n_urgency_known": (relevant & urgency_known).astype(np.int64),
        "n_rated": rated.astype(np.int64), "n_authors": author.astype(np.int64),
        "confidence_sum": np.where(relevant, rows.confidence.astype(float).to_numpy(), 0.0),
        "sentiment_sum": np.where(relevant, rows.sentiment_score.astype(float).to_numpy(), 0.0),
    }


def _text(values: pd.Series) -> pd.Categorical:
    """A column's values as text (what `astype(str)` gives: a categorical's missing value reads 'nan', an
    object column's None 'None'), as a Categorical with sorted categories: a read's categorical is
    converted per category, not per row, and its codes order as the text does."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        names = np.asarray(values.cat.categories.astype(str), dtype=object)
        codes = values.cat.codes.to_numpy().astype(np.int64)
        if (codes < 0).any():
            names, codes = np.append(names, "nan"), np.where(codes < 0, len(names), codes)
    else:
        codes, names = pd.factorize(values.astype(str).to_numpy())
    categories, rank = np.unique(names, return_inverse=True)  # two categories may read alike as text
    return pd.Categorical.from_codes(rank[codes], categories=pd.Index(categories, dtype=object))


def _ranked_codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Codes numbering `values` in their sort order, and the sorted distinct values."""
    if isinstance(values, pd.Categorical):  # `_text`'s categories are sorted already
        return values.codes.astype(np.int64), np.asarray(values.categories, dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], np.asarray(uniques)[order]


def bucket_ends(times_ns: np.ndarray) -> np.ndarray:
    """End of each time's bucket (end - BUCKET, end]: a time on the hour ends its bucket."""
    step = BUCKET.value
    return -(-np.asarray(times_ns, dtype=np.int64) // step) * step


def split_buckets(edges) -> np.ndarray:
    """Bucket ends of the buckets an edge falls strictly inside: those must be read as rows."""
    values = np.asarray([pd.Timestamp(e).value for e in edges], dtype=np.int64)
    ends = bucket_ends(values)
    return np.unique(ends[ends != values])


def cube_cells(cube: pd.DataFrame, split: np.ndarray) -> pd.DataFrame:
    """sentiment_daily rows as cells at their bucket's end, less the buckets read as rows."""
    at = nanoseconds(cube.bucket_end) if len(cube) else np.zeros(0, np.int64)
    keep = ~np.isin(at, split)
    return cube[keep].drop(columns=["bucket_end"]).assign(at=at[keep])


def segment_cells(cube: pa.Table, split: np.ndarray, edges) -> pd.DataFrame:
    """sentiment_daily buckets as cells summed per segment between `edges`, less the buckets read as
    rows: what `aggregate` makes of `cube_cells`, from far fewer cells. A bucket no edge splits lies
    wholly in one segment (edges[j], edges[j+1]], so it may as well sit at the segment's end; summed
    there, a look's hour buckets (~10k a day at a million rows a day, 28 days and, for a release older
    than the window, its 28 days before release) become a few cells per key, segment, age, label and
    topic. `aggregate` on the buckets themselves cost 1.4 s at 90 days of history: most of what a new
    day cost over the first. Grouped on integer codes (Arrow's own group-by cost 1.3 s on its first
    call in a process)."""
    at = cube.column("bucket_end").cast(pa.timestamp("ns", "UTC")).cast(pa.int64()).to_numpy()
    ends = np.unique(np.asarray([pd.Timestamp(e).value for e in edges], dtype=np.int64))
    index = np.searchsorted(ends, at, side="left")  # the first edge at or after the bucket's end
    keep = ~np.isin(at, split)
    segment_end = np.where(index < len(ends), ends[np.minimum(index, len(ends) - 1)], at)[keep]
    keys = [c for c in DIMENSIONS if c not in ("created_date", "bucket_end")]
    encoded = [arrow_codes(cube.column(c)) for c in keys]
    group, per_group = factorize_keys([codes[keep] for codes, _ in encoded] + [segment_end])
    cells = {c: values[codes] for c, (_, values), codes in zip(keys, encoded, per_group)}
    cells["at"] = per_group[-1]
    for name in SUMS:
        summed = np.bincount(group, weights=cube.column(name).to_numpy()[keep], minlength=len(per_group[-1]))
        cells[name] = summed if cube.schema.field(name).type == pa.float64() else summed.astype(np.int64)
    return pd.DataFrame(cells)


def distinct_rows(table: pa.Table) -> pd.DataFrame:
    """The distinct rows of an Arrow table, in order of first appearance."""
    encoded = [arrow_codes(column) for column in table.columns]
    _, per_group = factorize_keys([codes for codes, _ in encoded])
    return pd.DataFrame({name: values[codes] for name, (_, values), codes in zip(table.column_names, encoded, per_group)})


def arrow_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A column as integer codes and the values they stand for: strings dictionary-encoded by Arrow,
    without a Python string per row (to_numpy on 600k strings costs more than grouping them)."""
    encoded = _encoded(column)
    if isinstance(encoded, pa.DictionaryArray):
        return encoded.indices.to_numpy(zero_copy_only=False), np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    codes, values = pd.factorize(encoded.to_numpy(zero_copy_only=False), use_na_sentinel=False)
    return codes, np.asarray(values)


def arrow_indices(column: pa.ChunkedArray) -> np.ndarray:
    """`arrow_codes`' codes alone: no Python value made for the values (a million authors' hashes)."""
    encoded = _encoded(column)
    if isinstance(encoded, pa.DictionaryArray):
        return encoded.indices.to_numpy(zero_copy_only=False)
    return pd.factorize(encoded.to_numpy(zero_copy_only=False), use_na_sentinel=False)[0]


def _encoded(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: a string column as a dictionary (as read, or encoded by Arrow), any other
    as it is."""
    array = column.combine_chunks()
    return array.dictionary_encode() if is_text(array.type) else array


# ---------------------------------------------------------------- cells -> Aggregates
def aggregate(cells: pd.DataFrame, edges, one_vote_per_author: bool = True) -> Aggregates:
    """Sum cells (sentiment_daily buckets and rows of split buckets) into the segments between `edges`
    (baselines.window_edges), cumulated over time and over age since release. Ages and release
    surfaces were resolved when the cells were built."""
    if one_vote_per_author:
        cells = cells[~cells.repeat_vote.astype(bool).to_numpy()]
    times = cells["at"].to_numpy(dtype=np.int64)
    bounds = np.unique(np.concatenate([
        np.asarray([pd.Timestamp(e).value for e in edges], dtype=np.int64),
        [times.min() - 1 if len(times) else 0, times.max() if len(times) else 1],
    ]))
    segment = np.searchsorted(bounds, times, side="left") - 1  # (edges[j], edges[j+1]] -> j
    negative = (cells.sentiment_label.astype(str) == "negative").to_numpy()

    def col(name):
        return cells[name].to_numpy(dtype=float)

    first = ~cells.repeat_vote.astype(bool).to_numpy()
    values = np.column_stack([
        col("n_relevant"), col("n_relevant") * negative, col("n_high_risk") * negative, col("n_excluded"),
        col("n_excluded") * negative, col("confidence_sum"), col("sentiment_sum"), col("n_urgency_high") * negative,
        col("n_urgency_known") * negative, col("n_authors") * first,
    ]) if len(cells) else np.zeros((0, len(METRICS)))
    topic = cells.issue_category.astype(str).to_numpy()
    # np.unique's order (sorted) by hashing, not by sorting every row's topic name
    topic_index, topics = pd.factorize(topic, sort=True) if len(cells) else (np.array([], int), np.array([], dtype=object))
    topic_weight = values[:, M["n_negative"]] if len(cells) else np.zeros(0)

    keys = pd.DataFrame({c: cells[c].astype(str).to_numpy() for c in KEY})
    has_dimensions = not (keys.cohort == ALL_COHORTS).all()
    key_frames = [keys] + ([keys.assign(cohort=ALL_COHORTS)] if has_dimensions else [])
    all_keys = pd.concat(key_frames, ignore_index=True)
    codes, uniques = factorize_keys([all_keys[c].to_numpy() for c in KEY])
    n_keys, width = len(uniques[0]), len(bounds)
    cum = np.zeros((n_keys, width, len(METRICS)))
    topic_cum = np.zeros((n_keys, width, len(topics)))
    age_index = cells.age_step.to_numpy(dtype=np.int64)
    ages = int(age_index.max()) + 2 if len(cells) else 2
    age_cum = np.zeros((n_keys, ages, len(METRICS)))
    n = len(cells)
    for part in range(len(key_frames)):
        code = codes[part * n:(part + 1) * n]
        cell, age_cell = code * width + segment + 1, code * ages + age_index
        for m in range(len(METRICS)):
            cum[:, :, m] += np.bincount(cell, weights=values[:, m], minlength=n_keys * width).reshape(n_keys, width)
            age_cum[:, :, m] += np.bincount(age_cell, weights=values[:, m], minlength=n_keys * ages).reshape(n_keys, ages)
        topic_cum += np.bincount(cell * len(topics) + topic_index, weights=topic_weight,
                                 minlength=n_keys * width * len(topics)).reshape(n_keys, width, len(topics))
    for array in (cum, topic_cum, age_cum):
        np.cumsum(array, axis=1, out=array)
    return Aggregates(pd.DataFrame(dict(zip(KEY, uniques))), bounds, cum, topics, topic_cum, age_cum)


def from_rows(rows: pd.DataFrame, releases: pd.DataFrame, edges, one_vote_per_author: bool = True
              ) -> tuple[Aggregates, np.ndarray]:
    """Rows -> sentiment_daily -> Aggregates, the assets' path, for callers that hold rows (replay,
    postmortems, tests). Returns the aggregates and each row's repeat-vote mark (for evidence)."""
    repeat = repeat_votes(rows, first_votes(rows).first_event_id)
    split = split_buckets(edges)
    in_split = np.isin(bucket_ends(nanoseconds(rows.created_at)), split) if len(rows) else np.zeros(0, bool)
    cells = pd.concat([cube_cells(daily(rows, releases, repeat), split),
                       row_cells(rows[in_split], releases, repeat[in_split])], ignore_index=True)
    return aggregate(cells, edges, one_vote_per_author), repeat


def utc_dates(times: pd.Series) -> np.ndarray:
    """UTC days as datetime.date (numpy's day unit: no per-row Python call)."""
    days = utc_times(times).dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    return days.astype(object)


def nanoseconds(times: pd.Series) -> np.ndarray:
    """Epoch nanoseconds whatever the unit the frame came in (Delta reads microseconds)."""
    return utc_times(times).dt.as_unit("ns").astype("int64").to_numpy()


def utc_times(times: pd.Series) -> pd.Series:
    """`times` as UTC datetimes. Without pandas' cache of parsed values: deciding whether to use it
    builds a Timestamp object per sampled value, even for a column that is datetimes already (~0.1 s
    a look over the dozens of conversions a window's cells go through)."""
    return pd.to_datetime(times, utc=True, cache=False)
