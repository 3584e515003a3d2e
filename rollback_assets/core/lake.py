"""Delta tables under one lake root, read and written through the schemas in `schemas.py`.

Every write returns the Delta version it produced, so callers can record it as lineage and a
postmortem can time-travel back to exactly what a decision saw. The root is a folder or an
object-store URL (`core/storage.py`: path joining and `storage_options` from the environment).
Writes that lose an optimistic-concurrency race (`CommitFailedError`: another run committed a
conflicting change first) are retried against the new snapshot with backoff.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pa_fs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.fs import DeltaStorageHandler

from . import storage
from .schemas import Table

log = logging.getLogger(__name__)
T = TypeVar("T")

COMMIT_ATTEMPTS = 8  # a conflicting commit is retried this many times in all
COMMIT_BACKOFF_S = 0.05  # first wait; doubles (with jitter) up to COMMIT_BACKOFF_MAX_S
COMMIT_BACKOFF_MAX_S = 2.0
MAX_SNAPSHOTS = 32  # pinned-version snapshots a Lake keeps (time travel reads a few versions a step)
# Properties of every table this Lake creates. A checkpoint every 10 commits (Delta's own default, which
# Spark's writer uses; delta-rs' is 100): opening a table replays the JSON commits after its newest
# checkpoint, and a step opens each table it touches (~26 opens a run). A daily run adds a few commits
# per table, so with 100 an open replayed up to 99 commits; on a 90-day lake with ~38 commits a table,
# opening all eleven tables took 110 ms without a checkpoint and 67 ms with one. A table made without them
# (by an earlier version, or another writer) gets the missing ones before this Lake first writes to it.
TABLE_PROPERTIES = {"delta.checkpointInterval": "10"}


class Lake:
    def __init__(self, root: str | os.PathLike, storage_options: dict[str, str] | None = None):
        """`root`: a folder or an `s3://`, `abfss://` or `gs://` URL. `storage_options` default to the
        environment's (see `storage.storage_options`); they are never logged or shown."""
        self.root = str(root)
        self.storage_options = storage_options if storage_options is not None else storage.storage_options(self.root)
        self._snapshots: dict[tuple[str, int | None], DeltaTable] = {}
        self._has_properties: set[str] = set()  # tables known to carry TABLE_PROPERTIES (shared with twins)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_snapshots": {}}  # snapshots are native objects, and cheap to reopen

    def twin(self) -> "Lake":
        """The same lake (root, credentials, kind) with snapshots of its own, for another thread."""
        twin = copy.copy(self)
        twin._snapshots = {}
        return twin

    def uri(self, table: Table) -> str:
        return self.path(table.name)

    def path(self, *parts: str) -> str:
        """A location under the root (folder or URL)."""
        return storage.join(self.root, *parts)

    def files(self, *parts: str) -> storage.Files:
        """Small non-table files under the root (e.g. the model store), with the lake's credentials."""
        return storage.Files(self.path(*parts), self.storage_options or {})

    def table(self, table: Table, version: int | None = None) -> DeltaTable:
        """The table at `version` (default: its newest commit). Opened once per Lake and then brought up
        to date from the log's new commits (`update_incremental`, ~1 ms): an open replays every file
        action of the log, ~10 ms at 90 daily partitions, and a new day's steps asked for a table ~80
        times (0.8 s CPU of a 5 s day, growing with history). A pinned version never changes. A Lake
        serves one thread at a time (as a step does), and does not notice a table deleted and made
        again under it."""
        key = (table.name, version)
        delta = self._snapshots.get(key)
        if delta is None:
            if version is not None and len(self._snapshots) >= MAX_SNAPSHOTS:
                self._snapshots = {k: v for k, v in self._snapshots.items() if k[1] is None}
            delta = self._snapshots[key] = DeltaTable(self.uri(table), version=version,
                                                      storage_options=self.storage_options)
        elif version is None:
            delta.update_incremental()
        return delta

    def exists(self, table: Table) -> bool:
        return DeltaTable.is_deltatable(self.uri(table), storage_options=self.storage_options)

    def version(self, table: Table) -> int | None:
        return self.table(table).version() if self.exists(table) else None

    def dataset(self, table: Table, version: int | None = None, days=None, dictionary: tuple[str, ...] = ()
                ) -> ds.Dataset | None:
        """`days`: values of the table's partition column; only their files are read. `dictionary`: string
        columns read as Arrow dictionaries straight from Parquet's own (a caller that groups by them
        wants codes: decoding a million strings and hashing them again cost 3x the read).

        Built from the log's add actions with each file's partition value as its only expression.
        deltalake's `to_pyarrow_dataset` also turns every file's min/max statistics of every column into
        a pyarrow expression: ~2.6 ms a file, 0.3-0.6 s for one read of a table with 90 daily partitions,
        most of what a new day's reads cost as history grows. Within a file, Parquet's own row-group
        statistics still prune a filter. A table using a reader feature this shortcut does not handle
        (deletion vectors, column mapping) goes through deltalake, which handles or refuses it."""
        if not self.exists(table):
            return None
        delta = self.table(table, version)
        protocol = delta.protocol()
        if protocol.min_reader_version > 1 or protocol.reader_features:
            if days is None:
                return delta.to_pyarrow_dataset()
            return delta.to_pyarrow_dataset(file_pruning_predicate=sql_in(table.partition_by[0], days))
        actions = pa.table(delta.get_add_actions(flatten=True))
        parts = [f"partition.{column}" for column in table.partition_by]
        actions = actions.select(["path", "size_bytes", *parts])
        if days is not None:
            wanted = pa.array(sorted({str(d) for d in days}), pa.string())
            actions = actions.filter(pc.is_in(pc.cast(actions.column(parts[0]), pa.string()), value_set=wanted))
        paths = actions.column("path").to_pylist()
        filesystem = pa_fs.PyFileSystem(DeltaStorageHandler(
            self.uri(table), self.storage_options, dict(zip(paths, actions.column("size_bytes").to_pylist()))))
        file_format = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(dictionary)),
                                           default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))
        values = [actions.column(part).to_pylist() for part in parts]
        fragments = [
            file_format.make_fragment(path, filesystem=filesystem,
                                      partition_expression=_partition_expression(table.partition_by, [v[i] for v in values]))
            for i, path in enumerate(paths)
        ]
        schema = pa.schema(delta.schema().to_arrow())
        for name in dictionary:
            index = schema.get_field_index(name)
            schema = schema.set(index, schema.field(index).with_type(pa.dictionary(pa.int32(), pa.string())))
        return ds.FileSystemDataset(fragments, schema, file_format, filesystem)

    def read_arrow(
        self,
        table: Table,
        columns: list[str] | None = None,
        filter: ds.Expression | None = None,
        version: int | None = None,
        days=None,
        dictionary: tuple[str, ...] = (),
    ) -> pa.Table:
        """`days`: read only these partitions, `dictionary`: these string columns as dictionaries (see
        `dataset`); `filter` still applies within the partitions."""
        data = self.dataset(table, version, days, dictionary) if days is None or len(days) else None
        if data is None:
            schema = table.arrow_schema
            if columns:
                schema = pa.schema([schema.field(c) for c in columns])
            return schema.empty_table()
        try:
            return data.to_table(columns=columns, filter=filter)
        except pa.ArrowNotImplementedError:
            # Files written by MERGE store strings as string_view and pyarrow cannot push a string
            # comparison into them: read, then filter in memory (hot paths filter strings themselves).
            table = data.to_table().filter(filter)
            return table.select(columns) if columns else table

    def read_keys_in(self, table: Table, column: str, values, columns: list[str], filter: ds.Expression | None = None,
                     version: int | None = None, days=None) -> pa.Table:
        """Rows whose `column` is one of `values`: pushdown only for `filter` (dates, numbers), the
        string match in memory, because MERGE-written files defeat string pushdown."""
        data = self.read_arrow(table, columns=list(dict.fromkeys([column, *columns])), filter=filter, version=version,
                               days=days)
        if isinstance(values, pa.ChunkedArray):  # an Arrow column stays Arrow: no Python string per value
            values = values.combine_chunks()
        wanted = values.cast(pa.string()) if isinstance(values, pa.Array) else pa.array(list(values), type=pa.string())
        return data.filter(pc.is_in(data.column(column).cast(pa.string()), value_set=wanted)).select(columns)

    def count_rows(self, table: Table, non_null: str | None = None) -> int:
        """Rows of the table (with a value in column `non_null`, if given) from the Delta log's per-file
        record and null counts: no data file is opened (opening every file's footer cost ~0.5 s at 90
        daily partitions; counting a column's values read that column of every file). A file written
        without those statistics makes it count from the files, as before."""
        if not self.exists(table):
            return 0
        actions = pa.table(self.table(table).get_add_actions(flatten=True))
        nulls = f"null_count.{non_null}"
        if non_null is None or nulls in actions.column_names:
            counts = actions.column("num_records")
            counts = counts if non_null is None else pc.subtract(counts, actions.column(nulls))
            if not counts.null_count:
                return int(pc.sum(counts).as_py() or 0)
        return self.dataset(table).count_rows(filter=~ds.field(non_null).is_null() if non_null else None)

    def read(self, table: Table, columns=None, filter=None, version=None, days=None) -> pd.DataFrame:
        return self.read_arrow(table, columns, filter, version, days).to_pandas()

    def commit_metadata(self, table: Table, key: str, lookback: int = 20) -> str | None:
        """The newest value of a custom commit-metadata key (e.g. which input version a write used)."""
        if not self.exists(table):
            return None
        for commit in self.table(table).history(lookback):
            if key in commit:
                return commit[key]
        return None

    def commits_after(self, table: Table, version: int | None, upto: int | None = None) -> list[dict]:
        """Commit infos of versions in (`version`, `upto`] (`upto` default: the newest), oldest first,
        each with its `version`, `operation` and custom metadata. `version` None means from the start."""
        if not self.exists(table):
            return []
        delta = self.table(table, upto)
        newest = delta.version()
        start = -1 if version is None else version
        if newest <= start:
            return []
        commits = [c for c in delta.history(newest - start) if start < int(c.get("version", -1)) <= newest]
        return sorted(commits, key=lambda c: int(c["version"]))

    def touched_partitions(self, table: Table, version: int | None, upto: int) -> set[str] | None:
        """Values of the table's (single) partition column that commits in (`version`, `upto`] added or
        removed files in, from the Delta log: whatever engine wrote them (delta-rs or Spark), a MERGE, a
        delete of a row that moved day, or an overwrite. None when that cannot be told (no `version`,
        a log file gone after log retention, a file without partition values): read everything."""
        if version is None or len(table.partition_by) != 1:
            return None
        log, lines = self.files(table.name, "_delta_log"), []
        for name in commit_log_names(version, upto):
            if not log.exists(name):
                return None
            lines += log.read_bytes(name).decode().splitlines()
        return partitions_touched(lines, table.partition_by[0])

    def newest_run_partitions(self, table: Table, marker: str, lookback: int = 50) -> set[str] | None:
        """Partitions the newest run that wrote `table` touched (Delta log, no data read): the newest commit
        carrying the custom metadata key `marker` and the commits back to the previous one carrying
        another value of it (a run stamps all its commits with one value, or only its last), with any
        unmarked commit in between (a run's earlier chunks, its deletes of moved rows). What a check
        of "what this materialization wrote" reads, whatever the history. None (read everything) when
        that run reaches past `lookback` commits or the table's start, or no commit carries `marker`."""
        if not self.exists(table):
            return set()
        newest, value, first = None, None, None
        for commit in self.table(table).history(lookback):
            version = int(commit["version"])
            newest = version if newest is None else newest
            if marker in commit:
                if value is None:
                    value = str(commit[marker])
                elif str(commit[marker]) != value:
                    return self.touched_partitions(table, version, newest) if first is not None else None
            first = version
        return None

    def replace_partitions(self, table: Table, frame: pd.DataFrame | pa.Table, values: list[str],
                           metadata: dict | None = None) -> int:
        """Replace the rows of these partition values with `frame` in one commit (Delta's replaceWhere):
        the other partitions' files are not touched. A value without rows in `frame` ends up empty."""
        data = self._arrow(table, frame)
        with self._creating(table):
            if not self.exists(table):
                self._write(table, data, "append", metadata)
                return self.version(table)
        column = table.partition_by[0]
        self._write(table, data, "overwrite", metadata, predicate=sql_in(column, values))
        return self.version(table)

    def overwrite(self, table: Table, frame: pd.DataFrame | pa.Table, metadata: dict | None = None) -> int:
        data = self._arrow(table, frame)
        with self._creating(table):
            self._write(table, data, "overwrite", metadata, schema_mode="overwrite")
        return self.version(table)

    def append(self, table: Table, frame: pd.DataFrame | pa.Table, metadata: dict | None = None) -> int:
        data = self._arrow(table, frame)
        with self._creating(table):
            self._write(table, data, "append", metadata)
        return self.version(table)

    def _write(self, table: Table, data: pa.Table, mode: str, metadata: dict | None, **options) -> None:
        """Into the snapshot this Lake holds (brought up to date each attempt), when the table exists:
        given a URI, delta-rs opens the table again, replaying its log."""
        def write() -> None:
            exists = self.exists(table)
            write_deltalake(self.table(table) if exists else self.uri(table), data, mode=mode,
                            partition_by=list(table.partition_by) or None, commit_properties=_commit(metadata),
                            configuration=None if exists else TABLE_PROPERTIES, storage_options=self.storage_options,
                            **options)

        retry_commit(write, table.name)

    def _create_empty(self, table: Table) -> None:
        """The table with no rows (its schema, partitioning and TABLE_PROPERTIES). A writer racing to make
        it too either loses the creation (an error here once the table exists) or lands it as a commit
        that adds no row: either way both then write into the one table."""
        try:
            DeltaTable.create(self.uri(table), schema=table.arrow_schema, mode="ignore",
                              partition_by=list(table.partition_by) or None, configuration=TABLE_PROPERTIES,
                              storage_options=self.storage_options)
        except Exception:  # noqa: BLE001 - only a creation someone else won is fine; anything else is raised
            if not self.exists(table):
                raise

    def _add_missing_properties(self, table: Table) -> None:
        """Before this Lake's first write to an existing table: set the TABLE_PROPERTIES it lacks, in one
        metadata commit, once per table ever (a value someone set stays). Tables made before they existed
        kept delta-rs' checkpoint interval of 100. A writer committing at the same moment conflicts with
        that commit once and retries, as with any concurrent commit."""
        if table.name in self._has_properties:
            return
        configuration = self.table(table).metadata().configuration
        missing = {key: value for key, value in TABLE_PROPERTIES.items() if key not in configuration}
        if missing:
            retry_commit(lambda: self.table(table).alter.set_table_properties(missing), table.name)
            log.info("%s: set %s (the table was made without them)", table.name, missing)
        self._has_properties.add(table.name)

    @contextmanager
    def _creating(self, table: Table):
        """Held by a writer that finds no table. Two writers that both find none would both create it:
        delta-rs writes the later creation as the next version (on S3: 8 of 8 trials of two first MERGEs
        of the same 500 keys left 1,000 rows), and both batches land as appends, whatever the write
        meant. On a local lake the first writers take turns on a lock file, so the second finds the table
        the first made (and merges into it). On an object store, where no lock is shared, the table is
        first made empty (`_create_empty`) and every writer then takes the existing-table path (a MERGE,
        a replace, an overwrite), whose commits conflict and retry as they do on a table that exists.
        Every write but a delete enters here, so a table that exists gets its missing properties here."""
        local = "://" not in self.root or self.root.startswith("file://")
        if self.exists(table):
            self._add_missing_properties(table)
            yield
            return
        if not local:
            self._create_empty(table)
            yield
            return
        folder = Path(self.root.removeprefix("file://"))
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f".{table.name}.create.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def merge(
        self, table: Table, frame: pd.DataFrame | pa.Table, update_when: str | None = None, metadata: dict | None = None,
        moved_rows_checked: bool = False,
    ) -> tuple[int, dict]:
        """Upsert on the table's key. `update_when` limits updates to changed rows (e.g. a content hash).
        `moved_rows_checked`: the caller already ran `drop_moved_rows` for these keys (once for many chunks).

        Returns the new version and Delta's merge metrics (rows inserted / updated / unchanged).
        """
        data = self._arrow(table, frame)
        with self._creating(table):
            if not self.exists(table):
                self._write(table, data, "append", metadata)
                return self.version(table), {"num_target_rows_inserted": data.num_rows, "num_target_rows_updated": 0}
        if data.num_rows == 0:
            return self.version(table), {"num_target_rows_inserted": 0, "num_target_rows_updated": 0}
        moved = 0 if moved_rows_checked else self.drop_moved_rows(table, data)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        for part in table.partition_by:
            # Pruning: only partitions present in the batch are scanned for matches.
            predicate += " AND " + sql_in(f"t.{part}", pc.unique(data.column(part)).to_pylist())

        def attempt() -> dict:
            # A fresh snapshot each attempt: a retry merges against what the winner committed.
            builder = self.table(table).merge(
                source=data, predicate=predicate, source_alias="s", target_alias="t", commit_properties=_commit(metadata)
            )
            if update_when:
                builder = builder.when_matched_update_all(predicate=update_when)
            else:
                builder = builder.when_matched_update_all()
            return builder.when_not_matched_insert_all().execute()

        metrics = retry_commit(attempt, table.name)
        if moved:  # deleted from their old day, then inserted: updates of known keys, as Spark's MERGE counts them
            metrics = {**metrics, "num_target_rows_inserted": int(metrics.get("num_target_rows_inserted", 0)) - moved,
                       "num_target_rows_updated": int(metrics.get("num_target_rows_updated", 0)) + moved}
        return self.version(table), metrics

    def merge_if_unchanged(self, table: Table, row: pd.DataFrame, expected: Mapping[str, Any] | None,
                           compared: Sequence[str]) -> bool:
        """Compare-and-set of one row on the table's key: write `row` only if the stored row still has
        `expected`'s values in the `compared` columns (with `expected` None: only if there is no row).
        Returns whether the write took. Two writers that read the same row cannot both take: the later
        commit conflicts (an update: both rewrote the file holding the row; an insert: the winner added
        data the loser's MERGE read), and its retry on the winner's snapshot finds the row changed or
        present (checked with two processes racing under load, both cases)."""
        data = self._arrow(table, row)
        if data.num_rows != 1:
            raise ValueError(f"{table.name}: merge_if_unchanged writes one row, got {data.num_rows}")
        with self._creating(table):
            if not self.exists(table):
                if expected is not None:
                    return False
                self._write(table, data, "append", None)
                return True
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        for name in compared:  # the values as read travel with the row, typed as the table's columns
            data = data.append_column(f"expected_{name}", pa.array([(expected or {}).get(name)], data.schema.field(name).type))
        unchanged = " AND ".join(f"(t.{c} = s.expected_{c} OR (t.{c} IS NULL AND s.expected_{c} IS NULL))" for c in compared)

        def attempt() -> dict:
            builder = self.table(table).merge(source=data, predicate=predicate, source_alias="s", target_alias="t")
            if expected is not None:
                return builder.when_matched_update({c: f"s.{c}" for c in table.names}, predicate=unchanged).execute()
            return builder.when_not_matched_insert({c: f"s.{c}" for c in table.names}).execute()

        metrics = retry_commit(attempt, table.name)
        return int(metrics.get("num_target_rows_updated", 0)) + int(metrics.get("num_target_rows_inserted", 0)) == 1

    def delete(self, table: Table, predicate: str, metadata: dict | None = None) -> int:
        """Delete the rows matching a SQL predicate (retried like every commit); returns the version."""
        self._add_missing_properties(table)
        retry_commit(lambda: self.table(table).delete(predicate, commit_properties=_commit(metadata)), table.name)
        return self.version(table)

    def drop_moved_rows(self, table: Table, data: pa.Table, days=None) -> int:
        """A key that comes back in another partition (a corrected day) would escape the pruned MERGE
        and be inserted twice: delete its old row first. `days`: the partitions an old row can be in,
        when the caller knows them (None: every partition, a read of the whole key column). Returns how
        many keys moved."""
        moving = [p for p in table.partition_by if p not in table.key]
        if not moving or len(table.key) != 1:
            return 0
        key = table.key[0]
        if not self.exists(table) or data.num_rows == 0:
            return 0
        existing = self.read_keys_in(table, key, data.column(key), [key, *moving], days=days)
        if existing.num_rows == 0:
            return 0
        incoming = data.select([key, *moving]).to_pandas()
        joined = existing.to_pandas().merge(incoming, on=key, suffixes=("", "_new"))
        moved = joined[(joined[moving].astype(str).to_numpy() != joined[[f"{m}_new" for m in moving]].astype(str).to_numpy()).any(axis=1)]
        keys = moved[key].unique()
        if len(keys):
            self.delete(table, sql_in(key, keys))
        return len(keys)

    @staticmethod
    def _arrow(table: Table, frame: pd.DataFrame | pa.Table) -> pa.Table:
        return frame if isinstance(frame, pa.Table) else table.to_arrow(frame)


class WriteBehind:
    """A step's writes on a second thread, in order, at most one in flight, while the step prepares its
    next chunk: delta-rs releases the GIL while it merges and writes, so a chunk's commit overlaps the
    Python work of the next (at 1M rows the graph spent ~6 s of ~60 waiting on MERGEs and rewrites).

        with WriteBehind(lake) as writes:
            for chunk in chunks:
                writes.submit(Lake.merge, table, prepare(chunk))
            version, _ = writes.wait()

    `submit(write, *args)` runs `write(twin, *args)` with the lake's twin (a Lake serves one thread).
    A failed write is raised by the next `submit` or by `wait`, before anything after it is written, so
    the tables end as a run stopped at that write would leave them, and the step's markers (written with
    its last chunk) are not recorded. Leaving the block on an error waits for the write in flight (the
    step reports only once its writes have ended) and raises the step's error.
    """

    def __init__(self, lake: Lake):
        self.lake = lake.twin()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="delta-write")
        self._in_flight: Future | None = None
        self._last = None

    def submit(self, write: Callable[..., T], *args, **kwargs) -> None:
        self.wait()
        self._in_flight = self._pool.submit(write, self.lake, *args, **kwargs)

    def wait(self):
        """The result of the last write submitted (None if none was); raises the error of a failed one."""
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._last = future.result()
        return self._last

    def __enter__(self) -> "WriteBehind":
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._in_flight is not None:
                wait_for([self._in_flight])
                if self._in_flight.exception() is not None:  # the step's error is raised; this one is logged
                    log.error("a write behind a failed step failed too: %r", self._in_flight.exception())
        finally:
            self._pool.shutdown(wait=True)


def sql_literal(value) -> str:
    """A SQL string literal for delta-rs' and Spark's predicates: single quotes, a quote inside doubled.
    (Python's repr switches to double quotes for a value holding a quote: an identifier in SQL.)"""
    return "'" + str(value).replace("'", "''") + "'"


def sql_in(column: str, values) -> str:
    """`column IN ('a', 'b')` over the distinct values, sorted: a delete, a replaceWhere, a MERGE's pruning."""
    return f"{column} IN ({', '.join(sql_literal(v) for v in sorted({str(v) for v in values}))})"


def commit_log_names(version: int, upto: int) -> list[str]:
    """The Delta log's commit files of versions (`version`, `upto`]."""
    return [f"{v:020d}.json" for v in range(version + 1, upto + 1)]


def partitions_touched(log_lines, column: str) -> set[str] | None:
    """Values of the partition `column` that these Delta log lines add or remove files in; None when a
    file carries no value for it (then nothing can be told). Both engines read the log with this."""
    values = set()
    for line in log_lines:
        action = json.loads(line) if line.strip() else {}
        for kind in ("add", "remove"):
            if kind in action:
                value = (action[kind].get("partitionValues") or {}).get(column)
                if value is None:
                    return None
                values.add(value)
    return values


def _partition_expression(columns: tuple[str, ...], values: list) -> ds.Expression:
    """A file's partition values as the expression pyarrow fills those columns from (they are not in
    the file) and prunes by."""
    expression = ds.scalar(True)
    for column, value in zip(columns, values):
        expression &= ds.field(column).is_null() if value is None else ds.field(column) == value
    return expression


def retry_commit(write: Callable[[], T], what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `write`; when another writer won the commit race, wait (exponential backoff with jitter,
    so two losers do not collide again) and run it again on the new snapshot."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return write()
        except CommitFailedError as exc:
            if attempt == COMMIT_ATTEMPTS:
                raise
            wait = min(COMMIT_BACKOFF_MAX_S, COMMIT_BACKOFF_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning("%s: commit conflict (%s); retry %d/%d in %.2f s", what, str(exc).splitlines()[0][:200],
                        attempt, COMMIT_ATTEMPTS - 1, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def commit_text(metadata: dict | None) -> dict[str, str]:
    """Run markers as a commit records them, in both engines: text (times in ISO form); a key whose value
    is None is left out (a reader finds no value, not the text "None")."""
    return {k: v.isoformat() if hasattr(v, "isoformat") else str(v) for k, v in (metadata or {}).items() if v is not None}


def _commit(metadata: dict | None) -> CommitProperties | None:
    recorded = commit_text(metadata)
    return CommitProperties(custom_metadata=recorded) if recorded else None
