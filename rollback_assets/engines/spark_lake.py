"""The lake's Delta tables through delta-spark: the same paths, schemas and partitioning as
`core.lake.Lake`, so the decision side (delta-rs) reads what the Spark job writes.

Run markers (watermarks, the versions a step processed) live in each commit's `userMetadata` (JSON)
rather than delta-rs' custom commit keys; switching engine on an existing lake costs one full pass.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pyarrow as pa

from ..core.lake import commit_log_names, commit_text, partitions_touched
from ..core.schemas import Table


def spark_schema(schema: pa.Schema):
    """The Spark schema of an Arrow schema from core/schemas.py (one declaration for both engines)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


class SparkLake:
    """The lake's Delta tables through delta-spark: the same paths and tables as core.lake.Lake."""

    def __init__(self, spark, root: str):
        self.spark = spark
        self.root = str(root).rstrip("/")

    def uri(self, table: Table) -> str:
        return f"{self.root}/{table.name}"

    def exists(self, table: Table) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, self.uri(table))

    def read(self, table: Table, version: int | None = None):
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.uri(table))

    def version(self, table: Table) -> int | None:
        return self._history(table, 1)[0]["version"] if self.exists(table) else None

    def commit_metadata(self, table: Table, key: str, lookback: int = 20) -> str | None:
        return self.commit_markers(table, [key], lookback).get(key)

    def commit_markers(self, table: Table, keys: list[str], lookback: int = 20) -> dict[str, str]:
        """The newest value of each run marker in the last `lookback` commits' userMetadata, from one
        history read (each is a Spark job: a step reads its markers together)."""
        found: dict[str, str] = {}
        if not self.exists(table):
            return found
        for commit in self._history(table, lookback):
            recorded = json.loads(commit["userMetadata"]) if commit["userMetadata"] else {}
            for key in keys:
                if key not in found and recorded.get(key) is not None:
                    found[key] = recorded[key]
        return found

    def commits_after(self, table: Table, version: int) -> list[dict]:
        """What `core.lake.Lake.commits_after` gives: the commits after `version`, oldest first, each its
        `version` and the run markers of its userMetadata."""
        newest = self.version(table)
        if newest is None or newest <= version:
            return []
        commits = [{**json.loads(c["userMetadata"] or "{}"), "version": c["version"]}
                   for c in self._history(table, newest - version)]
        return sorted((c for c in commits if c["version"] > version), key=lambda c: c["version"])

    def touched_partitions(self, table: Table, version: int | None, upto: int) -> set[str] | None:
        """What `core.lake.Lake.touched_partitions` tells, read through Spark (any file system it reads:
        DBFS, Volumes, s3a, abfss): the partitions commits in (`version`, `upto`] added or removed files
        in; None when that cannot be told (no `version`, a log file gone after log retention)."""
        from pyspark.errors import AnalysisException

        if version is None or len(table.partition_by) != 1:
            return None
        if upto <= version:
            return set()
        paths = [f"{self.uri(table)}/_delta_log/{name}" for name in commit_log_names(version, upto)]
        try:
            lines = [row.value for row in self.spark.read.text(paths).collect()]
        except AnalysisException:  # a commit file is gone
            return None
        return partitions_touched(lines, table.partition_by[0])

    def _history(self, table: Table, limit: int) -> list:
        from delta.tables import DeltaTable

        history = DeltaTable.forPath(self.spark, self.uri(table)).history(limit)
        return history.select("version", "userMetadata", "operationMetrics").collect()

    def newest_metrics(self, table: Table) -> dict:
        """The newest commit's operation metrics (row counts Delta recorded)."""
        return self._history(table, 1)[0]["operationMetrics"] or {}

    @contextmanager
    def _user_metadata(self, metadata: dict | None):
        key = "spark.databricks.delta.commitInfo.userMetadata"
        recorded = commit_text(metadata)
        if recorded:
            self.spark.conf.set(key, json.dumps(recorded))
        try:
            yield
        finally:
            self.spark.conf.unset(key)

    def write(self, table: Table, frame, mode: str, metadata: dict | None = None, replace_where: str | None = None) -> int:
        """Append or overwrite (the whole table, or with `replace_where` only the rows it selects: Delta's
        replaceWhere, e.g. the days an aggregate rewrites)."""
        writer = frame.select(*table.names).write.format("delta").mode(mode)
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        if mode == "overwrite" and replace_where and self.exists(table):
            writer = writer.option("replaceWhere", replace_where)
        elif mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        with self._user_metadata(metadata):
            writer.save(self.uri(table))
        return self.version(table)

    def merge(self, table: Table, frame, update_when: str | None = None, deleted: str | None = None,
              metadata: dict | None = None) -> tuple[int, dict]:
        """Upsert on the table's key; `deleted`: a boolean column of the source marking keys to remove.
        The match is on the key alone (not pruned to the batch's days): Spark reads only the key and
        partition columns to find matches, rewrites only touched files, and a row whose day changed
        moves partition in the same commit. Columns are named, so the source may carry extra ones."""
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        if not self.exists(table):
            version = self.write(table, frame.filter(~F.col(deleted)) if deleted else frame, "append", metadata)
            return version, {"num_target_rows_inserted": self.read(table).count(), "num_target_rows_updated": 0}
        condition = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        columns = {c: f"s.{c}" for c in table.names}
        builder = DeltaTable.forPath(self.spark, self.uri(table)).alias("t").merge(frame.alias("s"), condition)
        if deleted:
            builder = builder.whenMatchedDelete(condition=f"s.{deleted}")
        builder = builder.whenMatchedUpdate(condition=update_when, set=columns)
        builder = builder.whenNotMatchedInsert(condition=f"NOT s.{deleted}" if deleted else None, values=columns)
        with self._user_metadata(metadata):
            builder.execute()
        newest = self._history(table, 1)[0]
        metrics = newest["operationMetrics"] or {}
        return newest["version"], {
            "num_target_rows_inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "num_target_rows_updated": int(metrics.get("numTargetRowsUpdated", 0)),
        }

    def from_arrow(self, table: Table, data: pa.Table):
        return self.spark.createDataFrame(data.to_pandas(), schema=spark_schema(table.arrow_schema))

    def frame(self, table: Table, empty):
        """A small table (releases) as pandas on the driver; `empty` when it does not exist yet."""
        return self.read(table).toArrow().to_pandas() if self.exists(table) else empty
