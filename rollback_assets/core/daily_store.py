"""What the decision side reads of the daily sums, and the author-vote ledger the sums depend on.

`sentiment_daily` holds hour buckets; a look reads the buckets its windows cover (`spans`, `read_cube`),
the rows of the few buckets a window edge splits (`read_rows`), and for evidence and new terms
`negatives_daily` plus the rows of the windows' edge days (`window_text`). `author_votes` records each known author's
first word per flag x release x cohort over the whole history, kept current a day at a time
(`update_votes`), so a window's counts are votes, not posts, exactly as replay counts them.
Split out of pipeline.py, which keeps the steps themselves.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from . import aggregates, negatives_daily
from .abuse import BOMB_POSTS_PER_AUTHOR
from .baselines import BASELINE_INPUT_COLUMNS, CATEGORICAL_COLUMNS
from .code_digest import closure_digest
from .lake import Lake, sql_literal
from .schemas import AUTHOR_VOTES, NEGATIVES_DAILY, SCORED_SENTIMENT, SENTIMENT_DAILY, is_text


AGGREGATE_INPUT_COLUMNS = [*BASELINE_INPUT_COLUMNS, "created_date", "rating"]


VOTE_INPUT_COLUMNS = ["event_id", "attributed_flag", "release_version", "cohort", "author_hash", "created_at"]
VOTE_DICTIONARY_COLUMNS = ("attributed_flag", "release_version", "cohort")  # few values: read as codes

# Commit metadata that keeps the sums and the votes in step across a run that dies between them: each
# commit to author_votes names the days whose sums it made stale, and sentiment_daily's marker commit the
# author_votes version its sums reflect. Both engines write and read these keys.
STALE_DAYS = "stale_days"
VOTES_VERSION = "votes_version"

# sentiment_daily's marker commit also records what its days were summed with: the releases (ages since
# release, release surfaces) and the code that turns rows into sums and term counts. When either differs
# from what a run would use, every day is rebuilt, by either engine: sums made by older code would
# otherwise stay under every day the new runs do not touch, and decisions would mix the two.
SIGNATURE = "aggregation_signature"
AGGREGATION_MODULES = (aggregates.__name__, negatives_daily.__name__)


def aggregation_signature(releases_version: int | None) -> str:
    """The value of SIGNATURE for these releases and this code (the aggregation modules' import closure)."""
    return json.dumps({"releases": releases_version, "code": closure_digest(*AGGREGATION_MODULES)[:16]})


def read_narrow(lake: Lake, version: int, days) -> pd.DataFrame:
    """The rows of `days` with the columns the sums need, low-cardinality ones as categoricals
    (group-bys 10x cheaper); only the days' files are listed (Lake.dataset)."""
    return categorical(lake, SCORED_SENTIMENT, CATEGORICAL_COLUMNS, columns=AGGREGATE_INPUT_COLUMNS, version=version,
                       days=days)


# negatives_daily's few-valued columns: a window's hundreds of thousands of cells grouped by codes, not strings
NEGATIVES_CATEGORICAL = ["flag_key", "release_version", "cohort", "kind", "issue_category"]


def categorical(lake: Lake, table, names: list[str], **read) -> pd.DataFrame:
    """Rows of `table` (`read`: Lake.read_arrow's arguments) as pandas with the columns `names` as
    categoricals: read as Arrow dictionaries straight from Parquet's (no Python string per row, and a
    group-by or a factorize works on integer codes), or encoded here where the read gave strings (a
    table read through deltalake)."""
    return dictionary_frame(lake.read_arrow(table, dictionary=tuple(names), **read), names)


def dictionary_frame(data: pa.Table, names) -> pd.DataFrame:
    """`data` as pandas with those of the columns `names` that hold text as categoricals, encoded in Arrow
    where they are not dictionaries yet (no Python string hashed per row; Arrow does it without holding
    the GIL). A column of another type (a cohort dimension may be a number) stays as it is."""
    for name in names:
        index = data.schema.get_field_index(name)
        if is_text(data.schema.field(index).type):
            data = data.set_column(index, name, pc.dictionary_encode(data.column(index).cast(pa.string())))
    return data.to_pandas()


def table_days(lake: Lake, table, version: int | None = None) -> set[str]:
    """The table's created_date partitions, from the snapshot's file list (no data read)."""
    if not lake.exists(table):
        return set()
    return {p["created_date"] for p in lake.table(table, version).partitions()}


def days_listed(days: list[str], limit: int = 60) -> list[str]:
    """A run's rewritten days as its materialization lists them: all of them, or the first and last
    `limit / 2` around "..." (a landing file spanning years rewrites hundreds)."""
    return days if len(days) <= limit else [*days[:limit // 2], "...", *days[-(limit // 2):]]


def newest_rows(lake: Lake, table, columns: list[str], keep: Callable[[pd.DataFrame], pd.Series], limit: int,
                days_per_read: int = 7, days: set[str] | None = None) -> pd.DataFrame:
    """Up to `limit` rows that `keep` selects from the newest days of a created_date-partitioned table
    (of `days` if given: the days a run wrote, Lake.newest_run_partitions), a week of partitions at a
    time: what a check of the scorer's current behaviour reads, bounded by `limit` whatever the history
    (a check that read the whole table cost more every day). `keep` runs in memory: a string comparison
    pushed into MERGE-written files makes the read fall back to the whole table (Lake.read_arrow)."""
    days = sorted(table_days(lake, table) if days is None else days, reverse=True)
    frames, found = [], 0
    for i in range(0, len(days), days_per_read):
        part = lake.read(table, columns=columns, days=days[i:i + days_per_read])
        part = part[keep(part)]
        frames.append(part)
        found += len(part)
        if found >= limit:
            break
    return pd.concat(frames, ignore_index=True).head(limit) if frames else table.empty_frame()[columns]


def first_ids(lake: Lake, rows: pd.DataFrame) -> pd.Series:
    """Event ids of the first votes recorded on the days of `rows`: a row is its author's vote only on
    its own day, so only those partitions of `author_votes` are read, whatever the history."""
    if not lake.exists(AUTHOR_VOTES) or len(rows) == 0:
        return pd.Series([], dtype=object)
    days = np.unique(aggregates.utc_dates(rows.created_at))
    return lake.read(AUTHOR_VOTES, columns=["first_event_id"], days=days).first_event_id


def stale_days(commits: list[dict]) -> set[str]:
    """The days `author_votes` commits made stale (their STALE_DAYS). Given the commits after the votes
    version the newest sums recorded (VOTES_VERSION), the days of a run that changed votes and died
    before rewriting their sums: the next run sees those votes already moved, so only this record names
    the day a vote left."""
    return {day for commit in commits for day in json.loads(commit.get(STALE_DAYS) or "[]")}


def update_votes(lake: Lake, days: set[str], upto: int) -> set[str]:
    """Bring `author_votes` up to date for the rows of `days`; returns the other days whose rows
    changed vote (an author's first word moved to or from them).

    Rows outside `days` did not change, so a recorded first vote outside them stays a candidate and
    the new first vote is the earlier of it and the days' earliest row. A recorded vote inside `days`
    whose row is gone or moved later may give way to a row on an untouched day: only then are that
    author's rows read across the history. Finding the recorded votes of the days' authors scans the
    author column of `author_votes` (see ARCHITECTURE, known limits). Its commits name the days whose sums
    they make stale (STALE_DAYS)."""
    authored = lake.read(SCORED_SENTIMENT, columns=VOTE_INPUT_COLUMNS, version=upto,
                         filter=~ds.field("author_hash").is_null(), days=days)
    batch = aggregates.first_votes(authored)
    existing = AUTHOR_VOTES.empty_frame()
    if lake.exists(AUTHOR_VOTES):  # the days' authors' votes, and votes on these days whose author left them
        authors = authored.author_hash.astype(str).unique()
        existing = pd.concat([
            _votes_of(lake, authors),
            lake.read(AUTHOR_VOTES, days=days),
        ]).drop_duplicates(list(AUTHOR_VOTES.key))
    # A key with no recorded vote takes the days' first vote as it is (most keys of a new day): only
    # the keys that have one are compared, a row at a time.
    key = list(AUTHOR_VOTES.key)
    recorded = pd.MultiIndex.from_frame(batch[key]).isin(pd.MultiIndex.from_frame(existing[key])) if len(existing) \
        else np.zeros(len(batch), bool)
    fresh, batch = batch.loc[~recorded, AUTHOR_VOTES.names], batch[recorded]
    old = {tuple(r[:4]): r for r in existing[AUTHOR_VOTES.names].itertuples(index=False)}
    new = {tuple(r[:4]): r for r in batch[AUTHOR_VOTES.names].itertuples(index=False)}
    changed, recheck, other_days = {}, [], set()
    for key in old.keys() | new.keys():
        before, candidate = old.get(key), new.get(key)
        if before is not None and str(before.first_date) not in days:
            after = candidate if candidate is not None and _earlier(candidate, before) else before
        elif before is not None and (candidate is None or _earlier(before, candidate)):
            recheck.append(key)  # its first row left these days or moved later
            continue
        else:
            after = candidate
        if before is None or tuple(after) != tuple(before):
            changed[key] = after
            if before is not None and str(before.first_date) not in days:
                other_days.add(str(before.first_date))
    if recheck:
        history = lake.read_keys_in(SCORED_SENTIMENT, "author_hash", {k[3] for k in recheck}, VOTE_INPUT_COLUMNS).to_pandas()
        again = {tuple(r[:4]): r for r in aggregates.first_votes(history)[AUTHOR_VOTES.names].itertuples(index=False)}
        for key in recheck:
            changed[key] = again.get(key)  # None: the author has no row here any more
            if key in again:
                other_days.add(str(again[key].first_date))
    other_days -= days
    marker = {STALE_DAYS: json.dumps(sorted(days | other_days))}
    replaced = [old[k] for k in changed if k in old]
    if replaced:  # out of their old day's partition first: a MERGE only looks in the new votes' days
        columns = [*AUTHOR_VOTES.key, "first_date"]
        lake.delete(AUTHOR_VOTES, " OR ".join(
            "(" + " AND ".join(f"{c} = {sql_literal(getattr(vote, c))}" for c in columns) + ")" for vote in replaced),
            metadata=marker)
    kept = [v for v in changed.values() if v is not None]
    if kept or len(fresh):
        lake.merge(AUTHOR_VOTES, pd.concat([fresh, pd.DataFrame(kept, columns=AUTHOR_VOTES.names)], ignore_index=True)
                   if kept else fresh, metadata=marker)
    return other_days


def _votes_of(lake: Lake, authors) -> pd.DataFrame:
    """The recorded votes of `authors`: the author column of every day first (the scan named in
    update_votes), then every column of only the days holding one of them. Reading every column of
    every day cost ~0.9 s at a million votes; most authors of a day have no earlier vote."""
    keys = lake.read_arrow(AUTHOR_VOTES, columns=["author_hash", "first_date"])
    hit = pc.is_in(keys.column("author_hash").cast(pa.string()), value_set=pa.array(list(authors), pa.string()))
    days = set(pc.unique(pc.filter(keys.column("first_date"), hit)).to_pylist())
    if not days:
        return AUTHOR_VOTES.empty_frame()
    return lake.read_keys_in(AUTHOR_VOTES, "author_hash", authors, AUTHOR_VOTES.names, days=days).to_pandas()


def _earlier(a, b) -> bool:
    return (pd.Timestamp(a.first_at), a.first_event_id) < (pd.Timestamp(b.first_at), b.first_event_id)


def spans(present: pd.DataFrame, releases: pd.DataFrame, as_of: pd.Timestamp, windows) -> list[tuple]:
    """Time spans (a, b] holding every row a look at `as_of` sums: the judged window; for each release
    that may be judged (feedback in the window, or live) its rolling window, and where users choose
    when to update, its predecessors' same ages (a step wider: ages are read at AGE_STEP resolution).
    A superset is harmless (rows outside every window sum to nothing); a missing row is not."""
    window, rolling = pd.Timedelta(days=windows.window_days), pd.Timedelta(days=windows.rolling_days)
    spans = [(as_of - window, as_of)]
    judged = set(zip(present.flag_key.astype(str), present.release_version.astype(str)))
    live = releases[releases.released_at <= as_of]
    for flag, group in live.groupby("flag_key"):
        newest = group.released_at.max()
        for r in group.itertuples(index=False):
            if (flag, r.version) not in judged and r.released_at != newest:
                continue
            spans.append((r.released_at - rolling, r.released_at))
            if getattr(r, "adoption", None) == "self_selected":
                age = as_of - r.released_at
                spans += [(t + age - window - aggregates.AGE_STEP, t + age)
                          for t in group.released_at[group.released_at <= r.released_at]]
    merged: list[list] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [tuple(span) for span in merged]


def read_cube(lake: Lake, spans: list[tuple], as_of: pd.Timestamp, columns: list[str] | None = None) -> pa.Table:
    """sentiment_daily buckets overlapping the spans (a, b] and ending by `as_of` (the bucket `as_of`
    falls inside is split: read as rows)."""
    days = sorted({d.date() for a, b in spans
                   for d in pd.date_range((a - pd.Timedelta(days=1)).floor("D"), b.floor("D"), freq="D")})
    overlapping = None
    for a, b in spans:
        span = (ds.field("bucket_end") > a) & (ds.field("bucket_end") < b + aggregates.BUCKET)
        overlapping = span if overlapping is None else overlapping | span
    condition = overlapping & (ds.field("bucket_end") <= as_of)
    # Its string columns are keys the buckets are grouped by (aggregates.arrow_codes): read as dictionaries.
    keys = tuple(c.name for c in SENTIMENT_DAILY.columns if is_text(c.type) and (columns is None or c.name in columns))
    return lake.read_arrow(SENTIMENT_DAILY, columns=columns, filter=condition, days=days, dictionary=keys)


def read_rows(lake: Lake, condition: ds.Expression, spans: list[tuple[pd.Timestamp, pd.Timestamp]],
               columns: list[str]) -> pd.DataFrame:
    """Scored rows in the half-open spans (a, b], read by their days and times (pushdown)."""
    if not spans:
        return pd.DataFrame(columns=columns)
    days = sorted({d.date() for a, b in spans for d in pd.date_range(a.floor("D"), b.floor("D"), freq="D")})
    in_spans = None
    for a, b in spans:
        span = (ds.field("created_at") > a) & (ds.field("created_at") <= b)
        in_spans = span if in_spans is None else in_spans | span
    return lake.read(SCORED_SENTIMENT, columns=columns, filter=condition & in_spans, days=days)


def with_text(lake: Lake, rows: pd.DataFrame, days, version: int | None = None) -> pd.DataFrame:
    """The relevant negatives among `rows` (those of `days`) with their text: the only rows whose words
    a decision quotes or counts, so text is read for the negatives only."""
    rows = rows[negatives_daily.relevant_negatives(rows)]
    # The days' texts, matched in memory: a string comparison pushed into MERGE-written files would
    # make the read fall back to the whole table (Lake.read_arrow).
    texts = lake.read_keys_in(SCORED_SENTIMENT, "event_id", rows.event_id.astype(str), ["event_id", "text"],
                              version=version, days=days).to_pandas()
    return rows.merge(texts, on="event_id", how="left")


def window_text(lake: Lake, frame: pd.DataFrame) -> negatives_daily.WindowText:
    """What the windows of baseline rows need of the words: `negatives_daily` for the days wholly inside
    them, the rows of their edge days (cut at the edges in WindowText), whatever the history."""
    starts, ends = aggregates.utc_times(frame.window_start), aggregates.utc_times(frame.window_end)
    first, last = starts.min().date(), ends.max().date()
    inside = list(pd.date_range(first, last, freq="D").date)
    # the first and last too: a window may keep them whole
    days = categorical(lake, NEGATIVES_DAILY, NEGATIVES_CATEGORICAL, days=inside)
    edges = sorted({*starts.dt.date, *ends.dt.date})
    version = lake.version(SCORED_SENTIMENT)
    rows = read_narrow(lake, version, edges)
    read = len(rows)
    # Only the flag-day-releases a window keeps part of are summarised from rows (with their text and
    # votes); a window keeps all of most, or none, and those come from the table or nothing.
    rows = rows[negatives_daily.relevant_negatives(rows)]
    spans, codes, keys = negatives_daily.edge_spans(rows)
    partly = negatives_daily.partly_kept(spans, set(zip(frame.flag_key.astype(str), starts, ends)))
    rows = rows[np.asarray([key in partly for key in keys], bool)[codes]] if partly else rows.iloc[:0]
    rows = rows.assign(repeat_vote=aggregates.repeat_votes(rows, first_ids(lake, rows)))
    rows = with_text(lake, rows, sorted({day for _, day, _ in partly}), version)
    # Whether an author's first word was a complaint matters only to one whose repeats could make a burst:
    # their repeats on the windows' days (the table's whole days: a superset of any cut of them).
    repeats = days[days.kind == "author"].groupby("value")["count"].sum()
    repeat_authors = set(repeats.index[repeats >= BOMB_POSTS_PER_AUTHOR - 1])
    if not repeat_authors or not lake.exists(AUTHOR_VOTES):
        return negatives_daily.WindowText(days, rows, AUTHOR_VOTES.empty_frame(), set(inside), spans, read)
    # Only a first word inside a window counts (posts_per_author): the votes of the windows' days.
    votes = lake.read_keys_in(AUTHOR_VOTES, "author_hash", repeat_authors, AUTHOR_VOTES.names, days=inside).to_pandas()
    firsts = lake.read_keys_in(  # were their first words complaints? (few authors: a few days' rows)
        SCORED_SENTIMENT, "event_id", votes.first_event_id, ["event_id", *negatives_daily.MASK_COLUMNS],
        days=set(votes.first_date)).to_pandas()
    complaints = firsts.event_id[negatives_daily.relevant_negatives(firsts)]
    return negatives_daily.WindowText(days, rows, votes[votes.first_event_id.isin(complaints)], set(inside), spans, read)
