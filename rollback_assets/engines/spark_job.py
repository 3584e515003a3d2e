"""The heavy steps as one PySpark job: landing files → raw_feedback (+ quarantine, landing_files),
raw → enriched_feedback (attribution), enriched → scored_sentiment (scoring), scored → the daily
tables (sentiment_daily, negatives_daily, author_votes: `engines/spark_aggregate.py`).

Each step calls the same core function the pandas engine calls (`ingest.read_file`,
`attribution.attribute`, `scoring.base.score_frame`, `aggregates.daily`, `negatives_daily.daily`) on
Arrow batches inside `mapInArrow` / `applyInArrow`, conforms the result with the table's
`Table.to_arrow` from `core/schemas.py`, and writes the same Delta table (same schema and
partitioning) with delta-spark: MERGE on event_id, overwrite on full re-attribution, replaceWhere on
the days an aggregation rewrites.
Watermarks and the attribution signature live in the commit's `userMetadata` (JSON), read back from
the table history, so each step is incremental as in `core/pipeline.py`.

Run it three ways:
- launched by Dagster through Pipes (`PipesSubprocessClient`: `python -m rollback_assets.engines.spark_job`),
  parameters from the Pipes extras, results reported as asset materializations;
- on Databricks (`PipesDatabricksClient`) with `--pipes dbfs`: context and messages through DBFS;
- by hand or from `spark-submit` with `--lake/--landing/--steps`: results printed as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import sys
from pathlib import Path
from contextlib import contextmanager
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa

from ..core.attribution import DEFAULT_COHORT_DIMENSIONS, SIGNATURE, attribute, attribution_signature
from ..core.ingest import read_file
from ..core.landing import file_digest, scan_landing_zone, select_candidates
from ..core.daily_store import days_listed
from ..core.normalise import SALT_ENV  # a secret: from the environment, never from Pipes extras
from ..core.schemas import (
    ENRICHED_FEEDBACK, LANDING_FILES, QUARANTINE, RAW_FEEDBACK, RELEASE_ARTIFACTS, SCORE_FIELDS, SCORED_SENTIMENT, SENTIMENT_DAILY,
    Table,
)
from ..core.scoring.base import score_frame
from ..core.scoring.lexicon import LexiconScorer
from ..core.taxonomy import Taxonomy
from .spark_aggregate import aggregate, table_days
from .spark_lake import SparkLake, spark_schema

STEPS = ("ingest", "attribute", "score", "aggregate")
DBFS_MOUNT_ENV = "ROLLBACK_DBFS_MOUNT"  # where DBFS is mounted on the cluster (/dbfs on Databricks)


# ------------------------------------------------------------------------------------------ schemas
def _envelope_schema() -> pa.Schema:
    """raw_feedback ∪ quarantine columns plus the row kind and file index: one pass over each file
    yields both its valid and its quarantined rows."""
    fields = [f.with_nullable(True) for f in RAW_FEEDBACK.arrow_schema]
    fields += [f.with_nullable(True) for f in QUARANTINE.arrow_schema if f.name not in RAW_FEEDBACK.names]
    return pa.schema([*fields, pa.field("_kind", pa.string()), pa.field("_file", pa.int64())])


ENVELOPE = _envelope_schema()


def _to_envelope(table: pa.Table, kind: str, file_index: int) -> pa.Table:
    columns = []
    for field in ENVELOPE:
        if field.name == "_kind":
            columns.append(pa.array([kind] * table.num_rows, pa.string()))
        elif field.name == "_file":
            columns.append(pa.array([file_index] * table.num_rows, pa.int64()))
        elif field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=ENVELOPE)


# ------------------------------------------------------------------------------------------ watermarks
def _timestamp(value: str | None) -> datetime | None:
    return pd.Timestamp(value).to_pydatetime() if value else None


def _newest(rows: list, current: datetime | None) -> datetime:
    """The newer of the rows' `newest` and the current watermark. PySpark hands timestamps back as
    naive local times; astimezone reads them as such."""
    return max([r["newest"].astimezone(timezone.utc) for r in rows] + ([current] if current else []))


# ------------------------------------------------------------------------------------------ steps
def ingest(lake: SparkLake, candidates: list, author_salt: str, now: datetime) -> dict:
    """Landing files not ingested yet (by content digest) → raw_feedback, quarantine, landing_files."""
    from pyspark.sql import Window, functions as F

    seen = set()
    if lake.exists(LANDING_FILES):
        seen = {r.file_digest for r in lake.read(LANDING_FILES).select("file_digest").collect()}
    files, batch = [], set()
    for path, mapping in candidates:
        digest = file_digest(path)
        if digest not in seen and digest not in batch:
            files.append((str(path), mapping, digest))
            batch.add(digest)
    stats = {"files": len(files), "rows_valid": 0, "rows_quarantined": 0, "rows_inserted": 0, "rows_updated": 0,
             "reasons": {}, "unreadable_files": {}, "version": lake.version(RAW_FEEDBACK)}
    if not files:
        return stats

    def read_files(batches):
        for ids in batches:
            for index in ids.column("id").to_pylist():
                path, mapping, _ = files[index]
                result = read_file(path, mapping, author_salt=author_salt, now=now)
                yield from _to_envelope(result.rows, "valid", index).to_batches()
                yield from _to_envelope(QUARANTINE.to_arrow(result.quarantined), "quarantine", index).to_batches()

    staged = lake.spark.range(len(files), numPartitions=len(files)).mapInArrow(read_files, spark_schema(ENVELOPE))
    staged = staged.persist()
    try:
        counts = {(r["_file"], r["_kind"]): r["count"] for r in staged.groupBy("_file", "_kind").count().collect()}
        # The same event in two files of one run: the later file wins, as in the pandas engine.
        latest = Window.partitionBy("event_id").orderBy(F.col("_file").desc())
        valid = (staged.filter(F.col("_kind") == "valid").withColumn("_rank", F.row_number().over(latest))
                 .filter(F.col("_rank") == 1).select(*RAW_FEEDBACK.names))
        version, metrics = lake.merge(RAW_FEEDBACK, valid, update_when="s.content_hash != t.content_hash")
        quarantined = staged.filter(F.col("_kind") == "quarantine")
        if any(kind == "quarantine" for _, kind in counts):
            reasons = quarantined.groupBy("reason").count().collect()
            stats["reasons"] = {r["reason"]: int(r["count"]) for r in reasons}
            # A file that could not be read at all is one quarantine row at line 0 (core/ingest.py); it
            # stays out of the ledger so it is read again once fixed, as in the pandas engine.
            stats["unreadable_files"] = {r["source_file"]: r["reason"] for r in
                                         quarantined.filter(F.col("source_row") == 0).select("source_file", "reason").collect()}
            lake.merge(QUARANTINE, quarantined.select(*QUARANTINE.names))
    finally:
        staged.unpersist()
    ledger = pd.DataFrame([
        {"file_digest": digest, "path": path, "mapping": mapping.name, "rows_valid": counts.get((i, "valid"), 0),
         "rows_quarantined": counts.get((i, "quarantine"), 0), "raw_version": version, "ingested_at": now}
        for i, (path, mapping, digest) in enumerate(files) if path not in stats["unreadable_files"]
    ])
    if len(ledger):
        lake.merge(LANDING_FILES, lake.from_arrow(LANDING_FILES, LANDING_FILES.to_arrow(ledger)))
    stats.update(
        rows_valid=sum(c for (_, kind), c in counts.items() if kind == "valid"),
        rows_quarantined=sum(c for (_, kind), c in counts.items() if kind == "quarantine"),
        rows_inserted=metrics["num_target_rows_inserted"], rows_updated=metrics["num_target_rows_updated"],
        version=version,
    )
    return stats


def enrich(lake: SparkLake, cohort_dimensions: tuple[str, ...], now: datetime) -> dict:
    """Attribute raw rows ingested since the last run; all of them when the releases or the cohort
    dimensions changed (the signature in the last commit differs), as `core.pipeline.enrich` does."""
    from pyspark.sql import functions as F

    releases = lake.frame(RELEASE_ARTIFACTS, RELEASE_ARTIFACTS.empty_frame())
    signature = attribution_signature(lake.version(RELEASE_ARTIFACTS), cohort_dimensions)
    markers = lake.commit_markers(ENRICHED_FEEDBACK, [SIGNATURE, "raw_watermark"])
    full = markers.get(SIGNATURE) != signature
    watermark = None if full else _timestamp(markers.get("raw_watermark"))
    stats = {"rows_attributed": 0, "full_reattribution": full, "by_method": {}, "version": lake.version(ENRICHED_FEEDBACK)}
    if not lake.exists(RAW_FEEDBACK):
        return stats
    raw = lake.read(RAW_FEEDBACK)
    if watermark is not None:
        raw = raw.filter(F.col("ingested_at") > F.lit(watermark))

    def attribute_batches(batches):
        for batch in batches:
            enriched = attribute(batch.to_pandas(), releases, cohort_dimensions)
            enriched["enriched_at"] = now
            yield from ENRICHED_FEEDBACK.to_arrow(enriched).to_batches()

    enriched = raw.mapInArrow(attribute_batches, spark_schema(ENRICHED_FEEDBACK.arrow_schema)).persist()
    try:
        summary = enriched.groupBy("attribution").agg(F.count("*").alias("n"), F.max("ingested_at").alias("newest")).collect()
        if not summary:
            return stats
        metadata = {SIGNATURE: signature, "raw_watermark": _newest(summary, watermark)}
        if full:
            version = lake.write(ENRICHED_FEEDBACK, enriched, "overwrite", metadata)
        else:
            version, _ = lake.merge(ENRICHED_FEEDBACK, enriched, metadata=metadata)
    finally:
        enriched.unpersist()
    stats["by_method"] = {r["attribution"]: int(r["n"]) for r in summary}
    stats["rows_attributed"] = sum(stats["by_method"].values())
    stats["attribution_rate"] = round(1 - stats["by_method"].get("none", 0) / stats["rows_attributed"], 4)
    stats["version"] = version
    return stats


def score(lake: SparkLake, scorer, taxonomy: Taxonomy) -> dict:
    """Score rows attributed since the last run; a row whose text did not change keeps its score."""
    from pyspark.sql import functions as F

    watermark = _timestamp(lake.commit_metadata(SCORED_SENTIMENT, "enriched_watermark"))
    stats = {"rows_scored": 0, "rows_reused": 0, "scorer": scorer.name, "scorer_version": scorer.version,
             "version": lake.version(SCORED_SENTIMENT)}
    if not lake.exists(ENRICHED_FEEDBACK):
        return stats
    changed = lake.read(ENRICHED_FEEDBACK)
    if watermark is not None:
        changed = changed.filter(F.col("enriched_at") > F.lit(watermark))
    keys = ["event_id", "content_hash"]
    if lake.exists(SCORED_SENTIMENT):
        existing = lake.read(SCORED_SENTIMENT).select(*keys, *SCORE_FIELDS)
        reused = changed.join(existing, on=keys, how="inner").withColumn("_fresh", F.lit(False))
        fresh = changed.join(existing.select(*keys), on=keys, how="left_anti")
    else:
        reused, fresh = None, changed

    def score_batches(batches):
        for batch in batches:
            scored = score_frame(scorer, taxonomy, batch.to_pandas())
            yield from SCORED_SENTIMENT.to_arrow(scored).to_batches()

    scored = fresh.mapInArrow(score_batches, spark_schema(SCORED_SENTIMENT.arrow_schema)).withColumn("_fresh", F.lit(True))
    if reused is not None:
        scored = scored.unionByName(reused.select(*SCORED_SENTIMENT.names, "_fresh"))
    scored = scored.persist()
    try:
        summary = scored.groupBy("_fresh").agg(
            F.count("*").alias("n"), F.sum((F.col("sentiment_label") == "negative").cast("long")).alias("negatives"),
            F.sum("confidence").alias("confidence"), F.max("enriched_at").alias("newest"),
        ).collect()
        if not summary:
            return stats
        metadata = {"enriched_watermark": _newest(summary, watermark)}
        stats["version"], _ = lake.merge(SCORED_SENTIMENT, scored.select(*SCORED_SENTIMENT.names), metadata=metadata)
    finally:
        scored.unpersist()
    by_kind = {r["_fresh"]: r for r in summary}
    stats["rows_reused"] = int(by_kind[False]["n"]) if False in by_kind else 0
    if True in by_kind:
        fresh_row = by_kind[True]
        stats["rows_scored"] = int(fresh_row["n"])
        stats["negative_share"] = round(fresh_row["negatives"] / fresh_row["n"], 4)
        stats["mean_confidence"] = round(fresh_row["confidence"] / fresh_row["n"], 4)
    return stats


# ------------------------------------------------------------------------------------------ reports
def reports(step: str, stats: dict, lake: SparkLake, params: dict) -> list[dict]:
    """Materializations with the metadata the pandas assets report, so the UI reads the same."""
    def report(table: Table, metadata: dict) -> dict:
        version = stats["version"]
        return {"asset_key": table.name, "data_version": f"{table.name}@{version}",
                "metadata": {"delta_version": version if version is not None else -1, "engine": params["engine"],
                             **metadata}}

    if step == "ingest":
        total = stats["rows_valid"] + stats["rows_quarantined"]
        return [report(RAW_FEEDBACK, {
            "files_ingested": stats["files"], "rows_valid": stats["rows_valid"], "rows_inserted": stats["rows_inserted"],
            "rows_updated": stats["rows_updated"], "rows_quarantined": stats["rows_quarantined"],
            "quarantine_share": round(stats["rows_quarantined"] / total, 4) if total else 0.0,
            "quarantine_reasons": {"raw_value": stats["reasons"], "type": "json"},
            "quarantine_path": {"raw_value": lake.uri(QUARANTINE), "type": "path"},
            "unreadable_files": {"raw_value": stats.get("unreadable_files", {}), "type": "json"},
            "landing_zone_problems": {"raw_value": stats.get("landing_zone_problems", []), "type": "json"},
        })]
    if step == "attribute":
        return [report(ENRICHED_FEEDBACK, {
            "rows_attributed": stats["rows_attributed"], "full_reattribution": stats["full_reattribution"],
            "attribution_rate": stats.get("attribution_rate", 1.0),
            "attribution_by_method": {"raw_value": stats["by_method"], "type": "json"},
            "cohort_dimensions": ", ".join(params["cohort_dimensions"]),
        })]
    if step == "aggregate":
        days = table_days(lake, SENTIMENT_DAILY)
        return [report(SENTIMENT_DAILY, {
            "full_rebuild": stats["full_rebuild"], "days_rewritten": len(stats["days_rewritten"]),
            "summed_while_scoring": False,  # Spark sums after scoring, across its tasks
            "days_rewritten_list": {"raw_value": days_listed(stats["days_rewritten"]), "type": "json"},
            "scored_rows_read": stats["rows_read"], "aggregate_rows_written": stats["aggregate_rows"],
            "days_in_table": len(days), "first_day": days[0] if days else "-", "last_day": days[-1] if days else "-",
        })]
    return [report(SCORED_SENTIMENT, {
        "rows_scored": stats["rows_scored"], "rows_reused": stats["rows_reused"], "scored_in": "spark tasks",
        "scorer": stats["scorer"], "scorer_version": stats["scorer_version"], "taxonomy_version": params["taxonomy_version"],
        "negative_share_new_rows": stats.get("negative_share", 0.0),
        "mean_confidence_new_rows": stats.get("mean_confidence", 0.0),
    })]


def run(spark, params: dict) -> list[dict]:
    """Run the requested steps in order; one report per step."""
    lake = SparkLake(spark, params["lake"])
    now = datetime.now(timezone.utc)
    taxonomy = Taxonomy.load(params.get("taxonomy_path"))
    params = {"engine": "spark", "cohort_dimensions": list(DEFAULT_COHORT_DIMENSIONS), **params,
              "taxonomy_version": taxonomy.version}
    out = []
    for step in params["steps"]:
        if step == "ingest":
            mapping_dirs = [Path(params["mapping_dir"])] if params.get("mapping_dir") else []
            scan = scan_landing_zone(params["landing"], mapping_dirs)
            candidates = select_candidates(scan.files, params.get("files") or [])
            stats = {**ingest(lake, candidates, os.environ.get(SALT_ENV, ""), now), "landing_zone_problems": scan.problems}
        elif step == "attribute":
            stats = enrich(lake, tuple(params["cohort_dimensions"]), now)
        elif step == "score":
            stats = score(lake, load_scorer(params.get("scorer")), taxonomy)
        elif step == "aggregate":
            stats = aggregate(lake)
        else:
            raise ValueError(f"unknown step {step!r}: {', '.join(STEPS)}")
        out.extend(reports(step, stats, lake, params))
    return out


def dump_scorer(scorer) -> str:
    """The scorer the Dagster side chose, for the job: pickled, base64 text (it travels in Pipes extras)."""
    return base64.b64encode(pickle.dumps(scorer)).decode()


def load_scorer(text: str | None):
    return pickle.loads(base64.b64decode(text)) if text else LexiconScorer()


# ------------------------------------------------------------------------------------------ entry point
def _dbfs_pipes():
    """dagster-pipes' DBFS loader and writer use `/dbfs/<path>`; these use `$ROLLBACK_DBFS_MOUNT/<path>`
    (default /dbfs), so a cluster with DBFS mounted elsewhere, or a local emulation of one, works too."""
    from dagster_pipes import PipesBufferedFilesystemMessageWriterChannel, PipesContextLoader, PipesDbfsMessageWriter

    mount = os.environ.get(DBFS_MOUNT_ENV, "/dbfs")

    class ContextLoader(PipesContextLoader):
        @contextmanager
        def load_context(self, params):
            with open(os.path.join(mount, params["path"].lstrip("/")), encoding="utf-8") as handle:
                yield json.load(handle)

    class MessageWriter(PipesDbfsMessageWriter):
        def make_channel(self, params):
            return PipesBufferedFilesystemMessageWriterChannel(
                path=os.path.join(mount, params["path"].lstrip("/")), interval=self.interval)

    return ContextLoader(), MessageWriter(interval=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The heavy steps as a Spark job (see module docstring).")
    parser.add_argument("--pipes", choices=("env", "dbfs", "none"), default="env",
                        help="Pipes channel: env (PipesSubprocessClient), dbfs (Databricks), none (standalone)")
    parser.add_argument("--master", default=os.environ.get("ROLLBACK_SPARK_MASTER"),
                        help="Spark master, e.g. local[2]; unset under spark-submit or on Databricks")
    parser.add_argument("--lake")
    parser.add_argument("--landing")
    parser.add_argument("--steps", default=",".join(STEPS))
    args, _ = parser.parse_known_args(argv)  # Pipes may append its own CLI arguments
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    from .spark_session import delta_session

    if args.pipes == "none" or (args.pipes == "env" and not PipesEnvVarParamsLoader().is_dagster_pipes_process()):
        # Outside a Pipes launch open_dagster_pipes() would hand back a MagicMock that accepts anything.
        if not args.lake:
            parser.error("not launched through Dagster Pipes: --lake (and --landing for ingest) are required")
        params = {"lake": args.lake, "landing": args.landing, "steps": args.steps.split(",")}
        print(json.dumps(run(delta_session(master=args.master), params), default=str))
        return
    spark, loader, writer = None, None, None
    if args.pipes == "dbfs":
        # On Databricks the session exists already (and the DBFS message writer insists on it).
        spark = delta_session(master=args.master)
        loader, writer = _dbfs_pipes()
    with open_dagster_pipes(context_loader=loader, message_writer=writer) as pipes:
        params = dict(pipes.extras)
        spark = spark or delta_session(master=params.get("master") or args.master)
        for entry in run(spark, params):
            pipes.log.info(f"{entry['asset_key']}: {entry['data_version']}")
            pipes.report_asset_materialization(asset_key=entry["asset_key"], metadata=entry["metadata"],
                                               data_version=entry["data_version"])


if __name__ == "__main__":
    main(sys.argv[1:])
