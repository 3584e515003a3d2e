"""A SparkSession with Delta Lake, configured so that delta-rs keeps reading what Spark writes.

`python -m rollback_assets.engines.spark_session --resolve` fetches delta-spark's jars (Maven Central,
through Ivy, cached in ~/.ivy2.5.2) ahead of time; `make test` calls it through scripts/ensure_spark.sh.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Timestamps in UTC end to end: Arrow batches handed to the core carry tz=UTC, as delta-rs reads do.
    "spark.sql.session.timeZone": "UTC",
    # delta-rs (the decision side) reads these tables: plain INT64 microsecond timestamps, and no
    # table feature it lacks (deletion vectors would make MERGE write DV files instead of rewriting).
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    "spark.databricks.delta.properties.defaults.minReaderVersion": "1",
    "spark.databricks.delta.properties.defaults.minWriterVersion": "2",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
# Local mode: a handful of partitions, no UI, no progress bars (the defaults suit a cluster, not a laptop).
LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


def delta_session(app_name: str = "rollback-assets", master: str | None = None, conf: dict | None = None):
    """getOrCreate: on Databricks (or under spark-submit) the existing session is reused as it is; in
    local mode (`master` like local[2]) the delta-spark jars are added through spark.jars.packages."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    settings = dict(DELTA_CONF)
    if master:
        builder = builder.master(master)
        if master.startswith("local"):
            settings.update(LOCAL_CONF)
            # Python workers run this interpreter (and its packages), not whatever `python3` is on PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    if master:
        builder = configure_spark_with_delta_pip(builder)
    return builder.getOrCreate()


def delta_jar() -> Path:
    """Where Ivy keeps the delta-spark jar this pyspark and delta-spark pair asks for."""
    from importlib.metadata import version

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    ivy = Path.home() / ".ivy2.5.2"  # spark.jars.ivy default in Spark 4
    return ivy / "jars" / f"io.delta_delta-spark_{spark_minor}_2.13-{version('delta-spark')}.jar"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolve", action="store_true", help="fetch delta-spark's jars unless already cached")
    args = parser.parse_args(argv)
    if args.resolve:
        jar = delta_jar()
        if jar.exists():
            print(f"delta-spark jars already resolved ({jar})")
            return
        print("resolving delta-spark jars from Maven Central (once, ~1 min)...", flush=True)
        delta_session("resolve-delta-jars", master="local[1]").stop()
        if not jar.exists():
            raise SystemExit(f"delta-spark jars not found at {jar} after resolution")
        print(f"delta-spark jars resolved ({jar})")


if __name__ == "__main__":
    main()
