"""The daily aggregation as a Spark step: scored_sentiment → author_votes, negatives_daily, sentiment_daily,
for the days the scored commits touched, each table written with delta-spark.

What `core.pipeline.aggregate_daily` does in the Dagster process, on the cluster, with the same core
functions and the same tables, so the decision side reads the same sums whichever engine ran:
- which days: the partitions `scored_sentiment`'s commits since the recorded `scored_version` added or
  removed files in (its Delta log, `core.lake.partitions_touched`); a change of releases or of the
  aggregation code (`daily_store.aggregation_signature`), or a log that cannot tell, rebuilds every day;
- `author_votes`: each known author's first word per flag × release × cohort, over the whole history
  (a window ordered by created_at, then event id: `aggregates.first_votes`' order). Incrementally the
  days' first words against the recorded votes, as `core.daily_store.update_votes` does; a vote that
  moved day adds its old and new day to the days rewritten, and the votes commit names them
  (`daily_store.STALE_DAYS`), so a job that dies before the sums leaves them to the next;
- `sentiment_daily`: `aggregates.daily` inside `applyInArrow`, `negatives_daily`: `negatives_daily.daily`
  on the relevant negatives with their text. No cell of either spans two day × flag × release × cohort
  groups, so the rows are split into tasks of about ROWS_PER_TASK rows by a hash of that group: each
  group whole in one task, its cells final. (One Python call per group instead: the demo's 2,500 rows
  in ~2,000 groups took 88 s, against 44 s in tasks, each in a fresh local session. A group of millions
  of rows a day is one task's memory.)
- both tables replace those days in one commit each (replaceWhere; a full rebuild overwrites them),
  words first, then the sums with the processed markers (scored version, votes version) in the commit's
  userMetadata, so a job that dies between the two redoes both.
"""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa

from ..core import aggregates, daily_store, negatives_daily
from ..core.lake import sql_in
from ..core.schemas import AUTHOR_VOTES, NEGATIVES_DAILY, RELEASE_ARTIFACTS, SCORED_SENTIMENT, SENTIMENT_DAILY
from .spark_lake import SparkLake, spark_schema

GROUP = ["created_date", "attributed_flag", "release_version", "cohort"]  # cells never span two groups
ROWS_PER_TASK = 250_000  # rows a Python task aggregates at once (seconds and a few hundred MB in pandas)
TEXT_COLUMNS = [*negatives_daily.MASK_COLUMNS, "cohort", "created_at", "created_date", "issue_category", "confidence",
                "author_hash", "text"]


def aggregate(lake: SparkLake) -> dict:
    """Rewrite the days of the daily tables the scored rows changed; the stats the pandas step reports."""
    from pyspark.sql import functions as F

    stats = {"full_rebuild": False, "days_rewritten": [], "rows_read": 0, "aggregate_rows": 0,
             "version": lake.version(SENTIMENT_DAILY)}
    upto = lake.version(SCORED_SENTIMENT)
    if upto is None:
        return stats
    releases = lake.frame(RELEASE_ARTIFACTS, RELEASE_ARTIFACTS.empty_frame())
    signature = daily_store.aggregation_signature(lake.version(RELEASE_ARTIFACTS))
    scored = lake.read(SCORED_SENTIMENT, version=upto)
    markers = lake.commit_markers(SENTIMENT_DAILY, [daily_store.SIGNATURE, "scored_version", daily_store.VOTES_VERSION])
    full = markers.get(daily_store.SIGNATURE) != signature
    processed = markers.get("scored_version")
    days = None if full or processed is None else lake.touched_partitions(SCORED_SENTIMENT, int(processed), upto)
    if days is None:
        full = True
        days = _days(scored) | (_days(lake.read(SENTIMENT_DAILY)) if lake.exists(SENTIMENT_DAILY) else set())
        lake.write(AUTHOR_VOTES, first_votes(_authored(scored)), "overwrite")
    else:  # a run that died between its votes and its sums left the days it made stale (daily_store.stale_days)
        votes_seen = markers.get(daily_store.VOTES_VERSION)
        stale = set() if votes_seen is None else daily_store.stale_days(lake.commits_after(AUTHOR_VOTES, int(votes_seen)))
        if days:  # none: the scored commits since changed no day (nothing new)
            days |= update_votes(lake, scored, days)
        days |= stale
    if not days:
        return stats
    persisted = rows = _rows_with_votes(lake, scored, days).persist()
    try:
        stats["rows_read"] = rows.count()
        tasks = max(1, -(-stats["rows_read"] // ROWS_PER_TASK))
        rows = rows.withColumn("_task", F.pmod(F.hash(*GROUP), F.lit(tasks)))
        marker = {"scored_version": upto, daily_store.SIGNATURE: signature,
                  daily_store.VOTES_VERSION: lake.version(AUTHOR_VOTES)}
        where = None if full else sql_in("created_date", days)
        lake.write(NEGATIVES_DAILY, _words(rows), "overwrite", replace_where=where)
        version = lake.write(SENTIMENT_DAILY, _sums(rows, releases), "overwrite", marker, replace_where=where)
    finally:
        persisted.unpersist()
    stats.update(full_rebuild=full, days_rewritten=sorted(days), version=version,
                 aggregate_rows=int(lake.newest_metrics(SENTIMENT_DAILY).get("numOutputRows", 0)))
    return stats


def table_days(lake: SparkLake, table) -> list[str]:
    """The days a created_date-partitioned table holds, in order (what its materialization lists)."""
    return sorted(_days(lake.read(table))) if lake.exists(table) else []


# ------------------------------------------------------------------------------------------ author votes
def _authored(scored):
    """Rows that may be a vote: a known author on an attributed release (what first_votes keeps)."""
    from pyspark.sql import functions as F

    return scored.select(*daily_store.VOTE_INPUT_COLUMNS).filter(
        F.col("author_hash").isNotNull() & F.col("attributed_flag").isNotNull() & F.col("release_version").isNotNull())


def first_votes(authored):
    """AUTHOR_VOTES rows: each key's first row by (created_at, event id), as `aggregates.first_votes`."""
    from pyspark.sql import Window, functions as F

    order = Window.partitionBy(*aggregates.VOTE_KEY).orderBy("created_at", "event_id")
    first = authored.withColumn("_n", F.row_number().over(order)).filter(F.col("_n") == 1)
    return first.select(
        F.col("attributed_flag").alias("flag_key"), "release_version", "cohort", "author_hash",
        F.col("event_id").alias("first_event_id"), F.col("created_at").alias("first_at"),
        F.to_date("created_at").alias("first_date"))


def update_votes(lake: SparkLake, scored, days: set[str]) -> set[str]:
    """Bring `author_votes` up to date for the rows of `days`; returns the other days whose rows changed
    vote. The rule of `core.daily_store.update_votes`, so the cost follows the days, not the history:
    rows outside `days` did not change, so a recorded vote outside them stays a candidate and the new
    first vote is the earlier of it and the days' first row. Only a recorded vote inside `days` whose
    row is gone or moved later has its author's rows read across the history (rare). A changed vote is
    updated, a new one inserted, one whose author has no row left deleted, in one MERGE."""
    from pyspark.sql import functions as F

    dates = [date.fromisoformat(d) for d in days]
    batch = first_votes(_authored(scored.filter(F.col("created_date").isin(dates))))
    if not lake.exists(AUTHOR_VOTES):
        lake.write(AUTHOR_VOTES, batch, "append")
        return set()
    key, values = list(AUTHOR_VOTES.key), [c for c in AUTHOR_VOTES.names if c not in AUTHOR_VOTES.key]
    recorded = lake.read(AUTHOR_VOTES)
    keys = batch.select(*key).union(recorded.filter(F.col("first_date").isin(dates)).select(*key)).distinct()
    n, o = (lambda c: F.col(f"n.{c}")), (lambda c: F.col(f"o.{c}"))
    n_first = (n("first_at") < o("first_at")) | ((n("first_at") == o("first_at")) & (n("first_event_id") < o("first_event_id")))
    o_first = (o("first_at") < n("first_at")) | ((o("first_at") == n("first_at")) & (o("first_event_id") < n("first_event_id")))
    inside = o("first_date").isin(dates)
    pairs = (batch.alias("n").join(recorded.join(keys, key, "left_semi").alias("o"), key, "full_outer")
             .withColumn("_recheck", o("first_event_id").isNotNull() & inside & (n("first_event_id").isNull() | o_first))
             .withColumn("_keep", o("first_event_id").isNotNull() & ~inside & (n("first_event_id").isNull() | ~n_first)))
    after = {c: F.when(F.col("_keep"), o(c)).otherwise(n(c)) for c in values}
    recheck = pairs.filter(F.col("_recheck")).select(*key)
    if recheck.take(1):  # a recorded first word left these days or moved later: its author's history
        history = _authored(scored).join(
            recheck.withColumnRenamed("flag_key", "attributed_flag"), aggregates.VOTE_KEY, "left_semi")
        pairs = pairs.join(first_votes(history).alias("a"), key, "left")
        after = {c: F.when(F.col("_recheck"), F.col(f"a.{c}")).otherwise(after[c]) for c in values}
    same = None
    for c in values:
        same = after[c].eqNullSafe(o(c)) if same is None else same & after[c].eqNullSafe(o(c))
    changed = pairs.filter(~same).select(
        *key, *[after[c].alias(c) for c in values], after["first_event_id"].isNull().alias("_gone"),
        o("first_date").alias("_old_date")).persist()
    try:
        moved = changed.select(F.explode(F.array("first_date", "_old_date")).alias("day")).distinct().collect()
        other_days = {str(r["day"]) for r in moved if r["day"] is not None} - days
        if moved:  # every changed vote has a day, old or new
            marker = {daily_store.STALE_DAYS: json.dumps(sorted(days | other_days))}
            lake.merge(AUTHOR_VOTES, changed, deleted="_gone", metadata=marker)
    finally:
        changed.unpersist()
    return other_days


# ------------------------------------------------------------------------------------------ the days' tables
def _rows_with_votes(lake: SparkLake, scored, days: set[str]):
    """The scored rows of `days` with their repeat-vote mark (a known author whose first word is another
    row: `aggregates.repeat_votes`), text kept only on the relevant negatives (all the words need)."""
    from pyspark.sql import functions as F

    dates = [date.fromisoformat(d) for d in days]
    firsts = (lake.read(AUTHOR_VOTES).filter(F.col("first_date").isin(dates))
              .select(F.col("first_event_id").alias("event_id"), F.lit(True).alias("_first")))
    relevant = (F.col("attributed_flag").isNotNull() & F.col("release_version").isNotNull()
                & (F.col("sentiment_label") == "negative") & ~F.coalesce(F.col("topic_excluded"), F.lit(False)))
    columns = sorted({*daily_store.AGGREGATE_INPUT_COLUMNS, *TEXT_COLUMNS})
    return (scored.filter(F.col("created_date").isin(dates)).select(*columns)
            .join(firsts, "event_id", "left")
            .withColumn("repeat_vote", F.col("author_hash").isNotNull() & F.col("_first").isNull())
            .withColumn("_relevant", relevant)
            .withColumn("text", F.when(F.col("_relevant"), F.col("text")))
            .drop("_first"))


def _sums(rows, releases):
    from pyspark.sql import functions as F

    def sums(table: pa.Table) -> pa.Table:
        frame = table.to_pandas()
        return SENTIMENT_DAILY.to_arrow(aggregates.daily(frame, releases, frame.repeat_vote.to_numpy(bool)))

    attributed = rows.filter(F.col("attributed_flag").isNotNull() & F.col("release_version").isNotNull())
    columns = [*daily_store.AGGREGATE_INPUT_COLUMNS, "repeat_vote"]
    return attributed.select(*columns, "_task").groupBy("_task").applyInArrow(sums, spark_schema(SENTIMENT_DAILY.arrow_schema))


def _words(rows):
    from pyspark.sql import functions as F

    def words(table: pa.Table) -> pa.Table:
        frame = table.to_pandas()
        return NEGATIVES_DAILY.to_arrow(negatives_daily.daily(frame, frame.repeat_vote.to_numpy(bool)))

    negatives = rows.filter(F.col("_relevant")).select(*TEXT_COLUMNS, "repeat_vote", "_task")
    return negatives.groupBy("_task").applyInArrow(words, spark_schema(NEGATIVES_DAILY.arrow_schema))


def _days(frame) -> set[str]:
    return {str(r[0]) for r in frame.select("created_date").distinct().collect()}
