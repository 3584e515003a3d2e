"""The graph's steps as plain functions over the lake, each incremental.

Dagster assets call these and add metadata; the benchmark times them directly. Every step reads
only what changed since it last ran (a watermark column or a recorded input version), so a new day
of feedback costs a day's work, not a rescan of history.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from . import aggregates, attribution, daily_store, increments, negatives_daily
from .baselines import CATEGORICAL_COLUMNS, baselines_frame, judge_looks, window_edges
from .ingest import IngestResult, read_file
from .landing import file_digest
from .mapping import Mapping
from .normalise import require_author_salt
from .lake import Lake, WriteBehind
from .policy import PolicyConfig, known_bad_releases, make_decisions
from .scoring import calibrated
from .scoring import worker as scoring_worker
from .scoring.base import Scorer
from .scoring.model_store import ModelStore
from .schemas import (
    AUTHOR_VOTES, BUSINESS_KPIS, COHORT_BASELINES, DECISIONS, ENRICHED_FEEDBACK, LANDING_FILES, NEGATIVES_DAILY, QUARANTINE,
    RAW_FEEDBACK, RELEASE_ARTIFACTS, SCORE_FIELDS, SCORED_SENTIMENT, SENTIMENT_DAILY, Table,
)
from .taxonomy import Taxonomy


T = TypeVar("T")


@dataclass
class StepResult:
    version: int | None
    stats: dict = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- landing zone -> raw_feedback
def pending_files(lake: Lake, candidates: list[tuple[Path, Mapping]]) -> list[tuple[Path, Mapping, str]]:
    """Candidates whose bytes have not been ingested before (by content digest, not by name). Files are
    hashed READ_THREADS at a time (hashlib releases the GIL): a manual run hashes the whole landing zone."""
    seen = set(lake.read(LANDING_FILES, columns=["file_digest"]).file_digest)
    out, batch = [], set()
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="landing-digest") as pool:
        digests = list(pool.map(file_digest, [path for path, _ in candidates]))
    for (path, mapping), digest in zip(candidates, digests):
        if digest not in seen and digest not in batch:
            out.append((path, mapping, digest))
            batch.add(digest)
    return out


def ingest(lake: Lake, files: list[tuple[Path, Mapping, str]], author_salt: str = "") -> StepResult:
    """Read files into batches of about CHUNK_ROWS rows, one MERGE per batch (Delta commits cost more
    than rows do; a bounded batch bounds memory). A file enters the ledger with the batch that merged
    it, so a run that dies half-way redoes only the files it had not committed."""
    require_author_salt([mapping for _, mapping, _ in files], author_salt)
    now = _now()
    stats = {"files": len(files), "rows_valid": 0, "rows_quarantined": 0, "rows_inserted": 0, "rows_updated": 0, "reasons": {}}
    batch: list[tuple[str, Mapping, str, object]] = []

    def read(path: Path, mapping: Mapping) -> IngestResult:
        return read_file(path, mapping, author_salt=author_salt, now=now)

    # Files are read READ_THREADS at a time and a batch merges while the next is read: in memory at once,
    # the batch being merged, the batch being built and READ_THREADS files (a file may span months).
    with (ThreadPoolExecutor(READ_THREADS, thread_name_prefix="ingest-read") as readers, WriteBehind(lake) as writes,
          closing(_in_order(readers, read, [(path, mapping) for path, mapping, _ in files], ahead=READ_THREADS))
          as results):
        for index, ((path, mapping, digest), result) in enumerate(zip(files, results)):
            batch.append((str(path), mapping, digest, result))
            if sum(r.rows.num_rows for *_, r in batch) >= CHUNK_ROWS or index == len(files) - 1:
                writes.submit(_merge_batch, batch, now, stats)
                batch = []
        version = writes.wait() if files else lake.version(RAW_FEEDBACK)
    return StepResult(version, stats)


# Files parsed at once. Arrow's JSON and CSV readers and compute kernels release the GIL, pandas' parts
# do not: at 1M rows in 60 files, reading took 6.4 s on one thread and 5.0 s on two (2 cores).
READ_THREADS = max(1, min(4, os.cpu_count() or 1))


def _in_order(pool: ThreadPoolExecutor, work: Callable[..., T], items: list[tuple], ahead: int) -> Iterator[T]:
    """`work(*item)` of each item on the pool, yielded in the items' order, at most `ahead` running or
    done and not yet taken (a landing zone's backlog is never all in memory at once). A caller that
    stops early (an error) leaves the work not yet started undone."""
    running: deque[Future] = deque()
    try:
        for item in items:
            running.append(pool.submit(work, *item))
            if len(running) > ahead:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
    finally:
        for future in running:
            future.cancel()


def _read_ahead(lake: Lake, read: Callable[[Lake, list], T], chunks: list[list]) -> Iterator[tuple[list, T]]:
    """Each chunk and `read(twin, chunk)`, in order, read on a second thread one chunk ahead of the caller
    (with the lake's twin: a Lake serves one thread): Arrow's reads release the GIL, so a chunk's read
    overlaps the Python work on the chunk before it."""
    twin = lake.twin()
    with ThreadPoolExecutor(1, thread_name_prefix="chunk-read") as pool:
        yield from zip(chunks, _in_order(pool, read, [(twin, chunk) for chunk in chunks], ahead=1))


def _merge_batch(lake: Lake, batch: list, now, stats: dict) -> int | None:
    valid = pa.concat_tables([r.rows for *_, r in batch])
    # The same event in two files of one batch: the later file wins, as it would in two batches (checked in
    # Arrow first: most batches repeat no id, and their ids need not become Python strings).
    merged = valid
    if pc.count_distinct(valid.column("event_id")).as_py() < valid.num_rows:
        merged = valid.filter(~valid.column("event_id").to_pandas().duplicated(keep="last").to_numpy())
    # The commit names the stamp its rows carry, so `enrich` finds them by commit, not by clock.
    version, metrics = lake.merge(RAW_FEEDBACK, merged, update_when="s.content_hash != t.content_hash",
                                  metadata={"ingested_at": now})
    rejected = [r.quarantined for *_, r in batch if len(r.quarantined)]
    if rejected:  # merged on (file, line): a rerun or a retried unreadable file never duplicates a row
        lake.merge(QUARANTINE, pd.concat(rejected, ignore_index=True))
    # A file that could not be read stays out of the ledger, so the same bytes are read again once the
    # mapping is fixed; its quarantine row (source_row 0) says why.
    lake.merge(LANDING_FILES, pd.DataFrame([
        {"file_digest": digest, "path": path, "mapping": mapping.name, "rows_valid": r.rows.num_rows,
         "rows_quarantined": len(r.quarantined), "raw_version": version, "ingested_at": now}
        for path, mapping, digest, r in batch if r.file_error is None
    ], columns=LANDING_FILES.names))
    stats.setdefault("unreadable_files", {}).update({path: r.file_error for path, _, _, r in batch if r.file_error})
    stats["rows_valid"] += valid.num_rows
    stats["rows_inserted"] += int(metrics.get("num_target_rows_inserted", 0))
    stats["rows_updated"] += int(metrics.get("num_target_rows_updated", 0))
    for frame in rejected:
        stats["rows_quarantined"] += len(frame)
        for reason, count in frame.reason.value_counts().items():
            stats["reasons"][reason] = stats["reasons"].get(reason, 0) + int(count)
    return version


# ---------------------------------------------------------------- release artifacts
def register_releases(lake: Lake, releases: pd.DataFrame) -> StepResult:
    """Merge releases that are new or changed; re-registering the same release writes nothing
    (a new table version would re-attribute every feedback row)."""
    existing = lake.read(RELEASE_ARTIFACTS)
    compared = [c for c in RELEASE_ARTIFACTS.names if c != "registered_at"]
    if len(existing):
        seen = {_release_fingerprint(r) for r in existing[compared].to_dict("records")}
        releases = releases[[_release_fingerprint(r) not in seen for r in releases[compared].to_dict("records")]]
    if releases.empty:
        return StepResult(lake.version(RELEASE_ARTIFACTS), {"releases_registered": 0})
    version, _ = lake.merge(RELEASE_ARTIFACTS, releases)
    return StepResult(version, {"releases_registered": len(releases)})


def _release_fingerprint(record: dict) -> str:
    def plain(value):
        if hasattr(value, "tolist"):  # numpy arrays and scalars read back from Delta
            return value.tolist()
        return list(value) if isinstance(value, (list, tuple)) else value

    return json.dumps({k: plain(v) for k, v in record.items()}, sort_keys=True, default=str)


def read_releases(lake: Lake) -> pd.DataFrame:
    return lake.read(RELEASE_ARTIFACTS)


# ---------------------------------------------------------------- raw -> enriched
CHUNK_ROWS = 100_000  # rows per read-process-write round: bounds memory whatever the backlog


def enrich(lake: Lake, cohort_dimensions: tuple[str, ...]) -> StepResult:
    """Attribute raw rows changed since the raw version the last run processed; when the releases or
    the cohort dimensions changed, re-attribute all.

    Concurrency-safe: the watermark is a committed Delta version of `raw_feedback`, never a clock, so
    an ingest run that started earlier but committed later is still picked up (see `increments.changed_since`).
    Raw is read at one pinned version; commits after it are the next run's. The watermark is written
    with the last chunk only, so a run that dies half-way is redone, and the MERGEs make that harmless.
    """
    releases = read_releases(lake)
    signature = attribution.attribution_signature(lake.version(RELEASE_ARTIFACTS), cohort_dimensions)
    full = lake.commit_metadata(ENRICHED_FEEDBACK, attribution.SIGNATURE) != signature
    upto = lake.version(RAW_FEEDBACK)
    since = increments.processed(lake, ENRICHED_FEEDBACK, "raw_version")
    pending = None if full else increments.changed_since(lake, RAW_FEEDBACK, "ingested_at", since, upto)
    changed_days = increments.changed_days(lake, RAW_FEEDBACK, pending, since, upto)
    keys = lake.read_arrow(RAW_FEEDBACK, columns=["event_id", "created_date"], filter=pending, version=upto,
                           days=changed_days)
    if not full:
        lake.drop_moved_rows(ENRICHED_FEEDBACK, keys, days=changed_days)
    chunks = increments.date_chunks(keys.column("created_date"), CHUNK_ROWS)
    stats = {"rows_attributed": 0, "full_reattribution": full, "by_method": {}}
    now = _now()

    def read(twin: Lake, days: list) -> pa.Table:
        return twin.read_arrow(RAW_FEEDBACK, filter=pending, version=upto, days=days)

    with WriteBehind(lake) as writes:  # a chunk is read and written while the one between is attributed
        for i, (days, raw) in enumerate(_read_ahead(lake, read, chunks)):
            enriched = _attributed(raw, releases, cohort_dimensions, now)
            # Every commit names the stamp its rows carry (what `score` selects on); the last one also
            # records the raw version now fully processed.
            metadata = {"enriched_at": now}
            if i == len(chunks) - 1:
                metadata.update({attribution.SIGNATURE: signature, "raw_version": upto})
            if full and i == 0:
                writes.submit(Lake.overwrite, ENRICHED_FEEDBACK, enriched, metadata=metadata)
            else:
                # MERGE, not append, after the overwrite too: a concurrent run re-attributing the same
                # days must not add its rows a second time.
                writes.submit(_merged, ENRICHED_FEEDBACK, enriched, metadata=metadata, moved_rows_checked=True)
            stats["rows_attributed"] += enriched.num_rows
            for method in pc.value_counts(enriched.column("attribution")).to_pylist():
                stats["by_method"][method["values"]] = stats["by_method"].get(method["values"], 0) + method["counts"]
        version = writes.wait() if chunks else lake.version(ENRICHED_FEEDBACK)
    if stats["rows_attributed"]:
        stats["attribution_rate"] = round(1 - stats["by_method"].get("none", 0) / stats["rows_attributed"], 4)
    return StepResult(version, stats)


def _merged(lake: Lake, table: Table, data: pa.Table, **options) -> int:
    """`Lake.merge`'s new version, its metrics unread: for writes that mix a MERGE with an overwrite."""
    return lake.merge(table, data, **options)[0]


def _attributed(raw: pa.Table, releases: pd.DataFrame, cohort_dimensions: tuple[str, ...], now: datetime) -> pa.Table:
    """`attribute` on the columns it reads; every other raw column passes through as Arrow (a pandas round
    trip of all of them cost more than the attribution itself)."""
    read = list(dict.fromkeys(["product", "app_version", "created_at", *cohort_dimensions]))
    decided = attribution.attribute(daily_store.dictionary_frame(raw.select(read), read), releases, cohort_dimensions)
    columns = {}
    for column in ENRICHED_FEEDBACK.columns:
        if column.name == "enriched_at":
            columns[column.name] = pa.repeat(pa.scalar(now, column.type), raw.num_rows)
        elif column.name in decided.columns and column.name not in raw.column_names:
            columns[column.name] = pa.array(decided[column.name], column.type, from_pandas=True)
        else:  # MERGE-written files may hand strings back as string_view: stored as declared
            columns[column.name] = raw.column(column.name).cast(column.type)
    return pa.Table.from_arrays(list(columns.values()), schema=ENRICHED_FEEDBACK.arrow_schema)


# ---------------------------------------------------------------- enriched -> text model
def train_text_model(lake: Lake, store: ModelStore) -> StepResult:
    """Fit the text model on `calibrated.training_sample` of the rated rows once rated feedback has
    grown enough since the last fit (`ModelStore.needs_training`). The sample is chosen from ids and
    ratings, so only its own texts leave Arrow, whatever the history holds."""
    stats: dict = {"trained": False, "rated_rows": lake.count_rows(ENRICHED_FEEDBACK, non_null="rating")}
    previous = store.pointer()
    if not store.needs_training(stats["rated_rows"]):
        return StepResult(None, {**stats, "model_version": previous["version"],
                                 "retrain_at_rows": store.retrain_at(previous["rated_rows"])})
    rated = lake.read_arrow(ENRICHED_FEEDBACK, columns=["event_id", "rating", "rating_scale", "text"],
                            filter=~ds.field("rating").is_null())
    sample = calibrated.training_sample(rated.drop_columns(["text"]).to_pandas())
    texts = rated.column("text").take(pa.array(sample.index.to_numpy(), type=pa.int64()))
    model = calibrated.train_on(sample.assign(text=texts.to_numpy(zero_copy_only=False)))
    if model is None:
        return StepResult(None, stats)
    return StepResult(None, {**stats, "trained": True, "model": model,
                             "model_path": store.save(model, rated_rows=stats["rated_rows"])})


# ---------------------------------------------------------------- enriched -> scored
@dataclass
class _ScorePlan:
    """What a score run reads: the enriched version it scores up to, the rows changed since the last run
    (None: every row), and those rows' days in chunks."""
    upto: int | None
    pending: ds.Expression | None
    chunks: list[list]


def score(lake: Lake, scorer: Scorer, taxonomy: Taxonomy) -> StepResult:
    """Score rows attributed since the enriched version the last run processed, a chunk of days at
    a time. A row whose text did not change keeps its score (re-attribution never re-scores). An
    offline scorer scores in a worker process while this one writes the chunk before (scoring.worker)."""
    return _score_chunks(lake, _score_plan(lake), scorer, taxonomy, alongside=None)


def score_and_aggregate(lake: Lake, scorer: Scorer, taxonomy: Taxonomy, rederive: Iterable[str] = (),
                        rebuild: bool = False) -> tuple[StepResult, StepResult]:
    """`score`, then `aggregate_daily` (`rederive`, `rebuild`: its arguments); but on a first build (every
    enriched row is to be scored and every day of the daily tables rebuilt: a first run, a re-derivation from
    scratch) each chunk's days are summed from its rows as soon as they are scored, while the worker scores
    the next chunk (`_DailyAlongside`): the daily step's work hides behind the scorer's instead of following it."""
    plan = _score_plan(lake)
    signature = daily_store.aggregation_signature(lake.version(RELEASE_ARTIFACTS))
    if plan.pending is not None or len(plan.chunks) < 2 or not (rebuild or _rebuilds_daily(lake, signature)):
        return (_score_chunks(lake, plan, scorer, taxonomy, alongside=None),
                aggregate_daily(lake, rederive=rederive, rebuild=rebuild))
    alongside = _DailyAlongside(lake, plan.upto, signature)
    return _score_chunks(lake, plan, scorer, taxonomy, alongside), alongside.result()


def _score_plan(lake: Lake) -> _ScorePlan:
    """The run's plan; rows that moved day since they were scored leave their old day first."""
    upto = lake.version(ENRICHED_FEEDBACK)
    since = increments.processed(lake, SCORED_SENTIMENT, "enriched_version")
    pending = increments.changed_since(lake, ENRICHED_FEEDBACK, "enriched_at", since, upto)
    changed_days = increments.changed_days(lake, ENRICHED_FEEDBACK, pending, since, upto)
    keys = lake.read_arrow(ENRICHED_FEEDBACK, columns=["event_id", "created_date"], filter=pending, version=upto,
                           days=changed_days)
    lake.drop_moved_rows(SCORED_SENTIMENT, keys, days=changed_days)
    return _ScorePlan(upto, pending, increments.date_chunks(keys.column("created_date"), CHUNK_ROWS))


@dataclass
class _ScoringChunk:
    """A chunk from its submission to the scorer until it is written."""
    days: list
    fresh: pa.Table  # the rows whose text is new since they were last scored, if ever: being scored
    reused: pd.DataFrame  # the others, with the scores they have
    scores: Future | None  # score_fields of `fresh`


def _score_chunks(lake: Lake, plan: _ScorePlan, scorer: Scorer, taxonomy: Taxonomy,
                  alongside: _DailyAlongside | None) -> StepResult:
    """Each chunk read (a chunk ahead, on a thread), scored (in the worker, with a chunk queued behind it),
    then written (behind, on a thread); with `alongside`, written together with its days' sums."""
    stats = {"rows_scored": 0, "rows_reused": 0, "scorer": scorer.name, "scorer_version": scorer.version}
    negatives, confidence = 0, 0.0

    def read(twin: Lake, days: list) -> tuple[pa.Table, pd.DataFrame, pd.DataFrame]:
        changed = twin.read_arrow(ENRICHED_FEEDBACK, filter=plan.pending, version=plan.upto, days=days)
        keys = changed.select(["event_id", "content_hash", "created_date"]).to_pandas()
        return changed, keys, _reusable_scores(twin, keys)

    def submit(days: list, changed: pa.Table, keys: pd.DataFrame, reuse: pd.DataFrame) -> _ScoringChunk:
        is_fresh = ~keys.event_id.isin(reuse.event_id).to_numpy()
        fresh = changed if is_fresh.all() else changed.filter(pa.array(is_fresh))
        reused = (changed.filter(pa.array(~is_fresh)).to_pandas().merge(reuse, on=["event_id", "content_hash"], how="inner")
                  if len(reuse) else reuse)
        return _ScoringChunk(days, fresh, reused, scorers.submit(fresh.select(SCORE_INPUT)) if fresh.num_rows else None)

    def write(chunk: _ScoringChunk, index: int) -> None:
        nonlocal negatives, confidence
        scores = chunk.scores.result() if chunk.scores is not None else None
        combined = pa.concat_tables([*([_with_scores(chunk.fresh, scores)] if scores is not None else []),
                                     *([SCORED_SENTIMENT.to_arrow(chunk.reused)] if len(chunk.reused) else [])])
        last = index == len(plan.chunks) - 1
        metadata = {"enriched_version": plan.upto} if last else None
        if alongside is None:
            writes.submit(_merged, SCORED_SENTIMENT, combined, metadata=metadata, moved_rows_checked=True)
        else:
            alongside.add(writes, chunk.days, combined, metadata, first=index == 0, last=last)
        stats["rows_scored"] += chunk.fresh.num_rows
        stats["rows_reused"] += len(chunk.reused)
        if scores is not None:
            negatives += pc.sum(pc.equal(scores.column("sentiment_label"), "negative")).as_py() or 0
            confidence += pc.sum(scores.column("confidence")).as_py() or 0.0

    scorers = scoring_worker.scoring(scorer, taxonomy, len(plan.chunks))
    stats["scored_in"] = scorers.where
    try:
        # The next chunk is read, and the one before written, while a chunk is scored (the reuse lookup and
        # the MERGE touch other days).
        with WriteBehind(lake) as writes:
            queued: deque[_ScoringChunk] = deque()
            written = 0
            for i, (days, (changed, keys, reuse)) in enumerate(_read_ahead(lake, read, plan.chunks)):
                queued.append(submit(days, changed, keys, reuse))
                if i == 0 and alongside is not None:
                    alongside.begin(writes)  # while the first chunk is scored
                while len(queued) > scorers.ahead:
                    write(queued.popleft(), written)
                    written += 1
            while queued:
                write(queued.popleft(), written)
                written += 1
            version = writes.wait() if plan.chunks else lake.version(SCORED_SENTIMENT)
    finally:
        scorers.close()
    if stats["rows_scored"]:
        stats["negative_share"] = round(negatives / stats["rows_scored"], 4)
        stats["mean_confidence"] = round(confidence / stats["rows_scored"], 4)
    return StepResult(version, stats)


SCORE_INPUT = ["text", "rating", "rating_scale", "sentiment_from"]  # what score_frame reads of a row


def _with_scores(rows: pa.Table, fields: pa.Table) -> pa.Table:
    """Enriched rows as read, with their score fields (scoring.worker.score_fields), in scored_sentiment's
    schema: the enriched columns stay Arrow; only the few a scorer reads ever became Python objects (a
    full round trip through pandas cost as much as a fifth of the scorer's own time)."""
    return pa.Table.from_arrays(
        [fields.column(f.name) if f.name in SCORE_FIELDS else rows.column(f.name).cast(f.type)
         for f in SCORED_SENTIMENT.arrow_schema],
        schema=SCORED_SENTIMENT.arrow_schema)


def _reusable_scores(lake: Lake, changed: pd.DataFrame) -> pd.DataFrame:
    if not lake.exists(SCORED_SENTIMENT):
        return pd.DataFrame(columns=["event_id", "content_hash", *SCORE_FIELDS])
    existing = lake.read_keys_in(
        SCORED_SENTIMENT, "event_id", changed.event_id.tolist(), ["event_id", "content_hash", *SCORE_FIELDS],
        days=set(changed.created_date),
    ).to_pandas()
    return existing.merge(changed[["event_id", "content_hash"]], on=["event_id", "content_hash"], how="inner")


# ---------------------------------------------------------------- scored -> sentiment_daily
def aggregate_daily(lake: Lake, rederive: Iterable[str] = (), rebuild: bool = False) -> StepResult:
    """Rewrite the days of `sentiment_daily` whose scored rows changed since the scored version the
    last run processed, each day whole, in one replace-where commit per chunk of days: a late file for
    an old day rewrites that day, and the day an author's first word used to be on if it holds an
    earlier one. Which days changed comes from the Delta log of `scored_sentiment` (the partitions its
    commits added or removed files in), so it holds whichever engine wrote the rows; plus the days the
    votes commits after the sums' recorded votes version made stale (a run that died between its votes
    and its sums: `daily_store.stale_days`). A change of releases (ages since release, release surfaces)
    or of the aggregation code rebuilds every day (`daily_store.aggregation_signature`).

    A person may ask for more: the days `rederive` names (ISO dates) rewritten from their scored rows as
    well, or every day (`rebuild`), e.g. after restoring a table or to check a day's sums."""
    upto = lake.version(SCORED_SENTIMENT)
    if upto is None:
        return StepResult(lake.version(SENTIMENT_DAILY), {"days_rewritten": [], "full_rebuild": False, "rows_read": 0,
                                                          "aggregate_rows": 0})
    releases = read_releases(lake)
    signature = daily_store.aggregation_signature(lake.version(RELEASE_ARTIFACTS))
    full = rebuild or _rebuilds_daily(lake, signature)
    days = None if full else lake.touched_partitions(SCORED_SENTIMENT, increments.processed(lake, SENTIMENT_DAILY, "scored_version"), upto)
    if days is not None:
        days |= set(rederive)
    votes = None
    # The votes, then each chunk's sums, are written while the next chunk is summed.
    with WriteBehind(lake) as writes:
        if days is None:
            full = True
            days = daily_store.table_days(lake, SCORED_SENTIMENT, upto) | daily_store.table_days(lake, SENTIMENT_DAILY)
            votes = aggregates.first_votes_table(lake.read_arrow(
                SCORED_SENTIMENT, columns=daily_store.VOTE_INPUT_COLUMNS, filter=~ds.field("author_hash").is_null(),
                version=upto, dictionary=daily_store.VOTE_DICTIONARY_COLUMNS))
            writes.submit(Lake.overwrite, AUTHOR_VOTES, votes)
        else:
            votes_seen = increments.processed(lake, SENTIMENT_DAILY, daily_store.VOTES_VERSION)
            stale = set() if votes_seen is None else daily_store.stale_days(lake.commits_after(AUTHOR_VOTES, votes_seen))
            days |= daily_store.update_votes(lake, days, upto) | stale
        if not days:  # the scored commits since changed no day (nothing new); the next run looks again from here
            return StepResult(lake.version(SENTIMENT_DAILY), {"days_rewritten": [], "full_rebuild": False,
                                                              "rows_read": 0, "aggregate_rows": 0})
        chunks = increments.date_chunks(lake.read_arrow(SCORED_SENTIMENT, columns=["created_date"], version=upto,
                                                        days=days).column("created_date"), CHUNK_ROWS) or [[]]
        emptied = days - {str(d) for chunk in chunks for d in chunk}  # every row left the day: its sums go too
        stats = {"full_rebuild": full, "days_rewritten": sorted(days), "rows_read": 0, "aggregate_rows": 0}

        def read(twin: Lake, chunk: list) -> tuple[pd.DataFrame, pd.DataFrame]:
            """The chunk's rows with their repeat-vote marks, and its relevant negatives with their text."""
            rows = daily_store.read_narrow(twin, upto, chunk)
            first_ids = _first_ids_on(votes, chunk) if votes is not None else daily_store.first_ids(twin, rows)
            rows["repeat_vote"] = aggregates.repeat_votes(rows, first_ids)
            return rows, daily_store.with_text(twin, rows, chunk, upto)

        for i, (chunk, (rows, negatives)) in enumerate(_read_ahead(lake, read, chunks)):
            cube, words = _daily_sums(rows, negatives, releases)
            last = i == len(chunks) - 1
            marker = {"scored_version": upto, daily_store.SIGNATURE: signature} if last else None
            replaced = [str(d) for d in chunk] + (sorted(emptied) if last else [])
            writes.submit(_write_daily_chunk, words, cube, replaced, marker, overwrite=full and i == 0)
            stats["rows_read"] += len(rows)
            stats["aggregate_rows"] += len(cube)
        version = writes.wait()
    return StepResult(version, stats)


def _rebuilds_daily(lake: Lake, signature: str) -> bool:
    """Whether the daily tables' next run rebuilds every day: their sums were made with other releases or
    other code (`signature`: daily_store.aggregation_signature), or record no scored version processed."""
    return (lake.commit_metadata(SENTIMENT_DAILY, daily_store.SIGNATURE) != signature
            or increments.processed(lake, SENTIMENT_DAILY, "scored_version") is None)


def _first_ids_on(votes: pa.Table, days: list) -> pd.Series:
    """Event ids of the first votes (AUTHOR_VOTES rows of the whole history) on `days`: a row is its
    author's first vote only on its own day (matching a chunk against every vote of the history cost ~0.5 s
    per chunk at 1M rows)."""
    return votes.filter(pc.is_in(votes.column("first_date"), pa.array(days, pa.date32()))).column("first_event_id").to_pandas()


def _daily_sums(rows: pd.DataFrame, negatives: pd.DataFrame, releases: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whole days' SENTIMENT_DAILY and NEGATIVES_DAILY rows: from `rows` (marked `repeat_vote`) and their
    relevant negatives with text."""
    return (aggregates.daily(rows, releases, rows.repeat_vote.to_numpy()),
            negatives_daily.daily(negatives, negatives.repeat_vote.to_numpy(bool)))


class _DailyAlongside:
    """sentiment_daily, negatives_daily and author_votes rebuilt from the rows `_score_chunks` scores: each
    chunk's days summed once its scores are back (while the worker scores the next chunk) and written
    right after its rows, in the same write. Exact on a first build only (`score_and_aggregate`): every
    enriched row is being scored, so a chunk holds every row its days will have in scored_sentiment and
    nothing is read back; the votes (each author's first word over the history) come from
    enriched_feedback at the version scored, whose rows and attribution columns (VOTE_INPUT_COLUMNS)
    scored_sentiment copies. A run that dies half-way left no marker: the next one builds again."""

    def __init__(self, lake: Lake, enriched_version: int, signature: str):
        self.lake, self.enriched_version, self.signature = lake, enriched_version, signature
        self.releases = read_releases(lake)
        self.votes: pa.Table | None = None
        self.version: int | None = None  # sentiment_daily's, once written
        self.days = daily_store.table_days(lake, SENTIMENT_DAILY)  # the old ones go too (the first chunk overwrites)
        self.stats = {"full_rebuild": True, "rows_read": 0, "aggregate_rows": 0, "summed_while_scoring": True}

    def begin(self, writes: WriteBehind) -> None:
        """The whole history's first votes, written before any sums that count them."""
        self.votes = aggregates.first_votes_table(self.lake.read_arrow(
            ENRICHED_FEEDBACK, columns=daily_store.VOTE_INPUT_COLUMNS, filter=~ds.field("author_hash").is_null(),
            version=self.enriched_version, dictionary=daily_store.VOTE_DICTIONARY_COLUMNS))
        writes.submit(Lake.overwrite, AUTHOR_VOTES, self.votes)

    def add(self, writes: WriteBehind, days: list, scored: pa.Table, scored_metadata: dict | None, first: bool,
            last: bool) -> None:
        """A chunk's scored rows (every row of `days`): their sums, then one write of rows and sums."""
        rows = daily_store.dictionary_frame(scored.select(daily_store.AGGREGATE_INPUT_COLUMNS), CATEGORICAL_COLUMNS)
        rows["repeat_vote"] = aggregates.repeat_votes(rows, _first_ids_on(self.votes, days))
        negatives = rows[negatives_daily.relevant_negatives(rows)]
        text = scored.column("text").take(pa.array(negatives.index.to_numpy(), pa.int64()))
        negatives = negatives.reset_index(drop=True).assign(text=text.to_numpy(zero_copy_only=False))
        cube, words = _daily_sums(rows, negatives, self.releases)
        marker = {daily_store.SIGNATURE: self.signature} if last else None
        writes.submit(self._write, scored, scored_metadata, words, cube, [str(d) for d in days], marker, first)
        self.days |= {str(d) for d in days}
        self.stats["rows_read"] += len(rows)
        self.stats["aggregate_rows"] += len(cube)

    def _write(self, lake: Lake, scored: pa.Table, scored_metadata: dict | None, words: pd.DataFrame, cube: pd.DataFrame,
               days: list[str], marker: dict | None, overwrite: bool) -> int:
        """The chunk's scored rows, then its days' sums; the last sums record the scored version they
        reflect (this write's: another run's commit in between is not in them)."""
        version, _ = lake.merge(SCORED_SENTIMENT, scored, metadata=scored_metadata, moved_rows_checked=True)
        if marker is not None:
            marker = {**marker, "scored_version": version}
        self.version = _write_daily_chunk(lake, words, cube, days, marker, overwrite)
        return version

    def result(self) -> StepResult:
        return StepResult(self.version, {**self.stats, "days_rewritten": sorted(self.days)})


def _write_daily_chunk(lake: Lake, words: pd.DataFrame, cube: pd.DataFrame, days: list[str], marker: dict | None,
                       overwrite: bool) -> int:
    """One chunk's words and sums, replacing its days (or, for a full rebuild's first chunk, the tables).
    The words first: sentiment_daily's commit carries the processed marker, so a run that dies between
    the two redoes both. The marker records the votes version its sums reflect, read here: the votes
    were written before, in this thread."""
    if marker is not None:
        marker = {**marker, daily_store.VOTES_VERSION: lake.version(AUTHOR_VOTES)}
    for table, frame, metadata in ((NEGATIVES_DAILY, words, None), (SENTIMENT_DAILY, cube, marker)):
        version = (lake.overwrite(table, frame, metadata=metadata) if overwrite
                   else lake.replace_partitions(table, frame, days, metadata=metadata))
    return version


# ---------------------------------------------------------------- sentiment_daily -> cohort_baselines
def baselines(lake: Lake, config: PolicyConfig, as_of: pd.Timestamp | None = None) -> StepResult:
    """Judge every release with feedback in the window as of `as_of`. Default: the run's clock, or the
    newest feedback if that is older (a replayed or demo history); never a future-dated row's time.

    Reads `sentiment_daily` over the spans the looks' windows cover (the judged window, and for each
    release with feedback in it, its rolling window and, if self-selected, its predecessors' same ages),
    the rows of the few hour buckets a window edge splits (aggregates.split_buckets), and for evidence
    and new terms `negatives_daily` over the judged windows plus the rows of their edge days: what it
    reads is bounded by the policy's windows, whatever the history."""
    newest = _newest(lake, pd.Timestamp(_now()))
    if as_of is None and newest is not None:
        as_of = newest
    if as_of is None:
        return StepResult(lake.version(COHORT_BASELINES), {"cohorts": 0})
    as_of = pd.Timestamp(as_of)
    releases = read_releases(lake)
    windows = config.windows
    window = (as_of - pd.Timedelta(days=windows.window_days), as_of)
    present = daily_store.read_cube(lake, [window], as_of, columns=["flag_key", "release_version"])
    present = aggregates.distinct_rows(present)
    cube = daily_store.read_cube(lake, daily_store.spans(present, releases, as_of, windows), as_of)
    edges = window_edges(releases, [as_of], windows)
    split = aggregates.split_buckets(edges)
    buckets = [(pd.Timestamp(end, tz="UTC") - aggregates.BUCKET, pd.Timestamp(end, tz="UTC")) for end in split]
    split_rows = daily_store.read_rows(lake, ds.scalar(True), [(a, min(b, as_of)) for a, b in buckets if a < as_of],
                            daily_store.AGGREGATE_INPUT_COLUMNS)
    cells = pd.concat([aggregates.segment_cells(cube, split, edges),
                       aggregates.row_cells(split_rows, releases, aggregates.repeat_votes(split_rows, daily_store.first_ids(lake, split_rows)))],
                      ignore_index=True)
    agg = aggregates.aggregate(cells, edges, windows.one_vote_per_author)
    frame = baselines_frame(judge_looks(agg, releases, [as_of], windows, known_bad_releases(lake.read(DECISIONS))))
    edge_rows = 0
    if len(frame):
        text = daily_store.window_text(lake, frame)
        frame = negatives_daily.describe(frame, text, windows.evidence_quotes, windows.one_vote_per_author)
        edge_rows = text.edge_rows_read
    version = lake.overwrite(COHORT_BASELINES, frame, metadata={"as_of": as_of.isoformat()})
    return StepResult(version, {"cohorts": int(frame.cohort.nunique()) if len(frame) else 0, "rows": len(frame),
                                "as_of": as_of.isoformat(), "aggregate_rows_read": cube.num_rows,
                                "rows_read": len(split_rows) + edge_rows, "frame": frame})


def _newest(lake: Lake, now: pd.Timestamp) -> pd.Timestamp | None:
    """The newest feedback time not after `now`: a future-dated row (a mapping with a generous skew,
    another engine's writer) is no evidence of what time it is and must not empty the window. Days
    from the partition list, newest first, then that day's rows only."""
    days = sorted((d for d in (pd.Timestamp(day).date() for day in daily_store.table_days(lake, SCORED_SENTIMENT)) if d <= now.date()),
                  reverse=True)
    for day in days:
        newest = _max(lake, SCORED_SENTIMENT, "created_at", filter=ds.field("created_at") <= now, days=[day])
        if newest is not None:
            return newest
    return None


# ---------------------------------------------------------------- baselines -> decisions
def decide(lake: Lake, config: PolicyConfig, run_id: str | None = None) -> StepResult:
    frame = lake.read(COHORT_BASELINES)
    releases = read_releases(lake)
    lineage = {
        "scorer_version": _scorer_versions(lake, frame),
        "input_versions": {t.name: lake.version(t) for t in (RAW_FEEDBACK, ENRICHED_FEEDBACK, SCORED_SENTIMENT,
                                                             COHORT_BASELINES, RELEASE_ARTIFACTS, BUSINESS_KPIS)},
        "run_id": run_id,
    }
    kpis = lake.read(BUSINESS_KPIS) if lake.exists(BUSINESS_KPIS) else None
    decisions = make_decisions(frame, releases, config, lineage, decided_at=pd.Timestamp(_now()),
                               business_kpis=kpis if kpis is not None and len(kpis) else None)
    # The same decision id twice means the same inputs: keep the first record (and its run id).
    version, metrics = lake.merge(DECISIONS, decisions, update_when="false") if len(decisions) else (lake.version(DECISIONS), {})
    return StepResult(version, {"decisions": decisions, "new": int(metrics.get("num_target_rows_inserted", 0))})


def load_kpis(lake: Lake, path: str | Path | None) -> StepResult:
    """The KPI file (CSV with BUSINESS_KPIS columns) replaces the table; no file leaves it empty."""
    frame = pd.read_csv(path) if path else BUSINESS_KPIS.empty_frame()
    missing = set(BUSINESS_KPIS.names) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: business KPI file lacks columns {sorted(missing)}")
    frame["higher_is_bad"] = frame["higher_is_bad"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
    version = lake.overwrite(BUSINESS_KPIS, frame[BUSINESS_KPIS.names])
    return StepResult(version, {"rows": len(frame), "kpis": sorted(set(frame.kpi))})


def _scorer_versions(lake: Lake, frame: pd.DataFrame) -> str | None:
    if frame.empty or not lake.exists(SCORED_SENTIMENT):
        return None
    start = pd.Timestamp(frame.window_start.min()).date()
    # The window's days by name: a filter on created_date alone would list every file of the table.
    days = [d for d in daily_store.table_days(lake, SCORED_SENTIMENT) if pd.Timestamp(d).date() >= start]
    table = lake.read_arrow(SCORED_SENTIMENT, columns=["scorer_version"], days=days)
    return ",".join(sorted(set(pc.unique(table.column("scorer_version")).to_pylist()) - {None})) or None


def _max(lake: Lake, table, column: str, filter: ds.Expression | None = None, days=None):
    data = lake.read_arrow(table, columns=[column], filter=filter, days=days)
    if data.num_rows == 0:
        return None
    value = pc.max(data.column(column)).as_py()
    return pd.Timestamp(value) if value is not None else None
