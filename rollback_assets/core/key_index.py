"""Which partitions of a table hold any of some keys, without reading the table's whole key column.

Why: two steps ask it of every run. Ingest (`Lake.drop_moved_rows`: does a re-delivered event sit in
another day?) and the daily aggregation (`daily_store._votes_of`: which days hold these authors' first
votes?). Answered by reading a string column of every partition, each cost ~0.3 s at 3M rows (90 days
of history): the parts of a new day's cost that grew with history.

The index of a table's column is a Delta table beside it (`<table>__<column>_index`): each partition's
keys as 64-bit hashes, with the table version they were read at. It is only appended to (compaction
aside), so concurrent runs cannot undo each other's entries:
- a reader takes C, the newest version in the index. The partitions the table's commits after C touched
  (Delta log, whichever engine wrote them) are read from the table itself; the others are answered from
  the index, each from the newest version it was indexed at;
- it appends what it read from the table (and a row per partition read, so a partition emptied since
  stops answering), at the table's version: the next reader starts from there. A run's reader finds only
  the partitions written since the last one.
Every partition touched up to C was indexed at or after its last change (each append indexes all the
partitions touched since the C its reader started from), so an answer holds every partition that holds
a key; a hash collision only adds a partition the caller reads for nothing. Compaction (when outdated
entries are most of the index) rewrites it with each partition's newest entries; an append it loses
only lowers C, so the next reader reads more from the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .schemas import KEY_INDEX_COLUMNS, Table, key_index_table

if TYPE_CHECKING:
    from .lake import Lake

INDEX_SCHEMA = pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in KEY_INDEX_COLUMNS])
# Rewritten with each partition's newest entries only once appends have left it in more than this many
# files (a reader opens every one; the outdated entries of partitions indexed again go then too).
COMPACT_AT_FILES = 32


def partitions_holding(lake: Lake, table: Table, column: str, values) -> set[str]:
    """Partitions of `table` (one partition column) that hold any of `values` in `column`, or may (a
    superset: the caller reads them). Brings the index up to the table's current version on the way."""
    if not lake.exists(table):
        return set()
    (partition,) = table.partition_by
    wanted = _text(values)
    index = key_index_table(table, column)
    current = lake.version(table)
    indexed = lake.read_arrow(index, dictionary=("partition",)) if lake.exists(index) else INDEX_SCHEMA.empty_table()
    versions = indexed.column("version").to_numpy()
    covered = int(versions.max()) if len(versions) else None
    stale = lake.touched_partitions(table, covered, current) if covered is not None else None
    if stale is None:  # no index yet, or the log cannot tell: every partition is read (and indexed)
        stale = {str(p[partition]) for p in lake.table(table, current).partitions()}
    newest = _newest_versions(indexed)
    hits = _indexed_hits(indexed, newest, stale, _hashes(wanted))
    if covered == current and not stale:
        return hits
    read = lake.read_arrow(table, columns=[column, partition], version=current, days=stale)
    keys, places = read.column(column).cast(pa.string()), read.column(partition).cast(pa.string())
    hits |= set(pc.unique(pc.filter(places, pc.is_in(keys, value_set=wanted))).to_pylist())
    marks = sorted(stale) + [None]  # each partition read, and the index, now at `current`
    added = pa.table({
        "key_hash": pa.concat_arrays([pa.array(_hashes(keys), pa.int64()), pa.nulls(len(marks), pa.int64())]),
        "partition": pa.concat_arrays([places.combine_chunks(), pa.array(marks, pa.string())]),
        "version": pa.repeat(pa.scalar(current, pa.int64()), read.num_rows + len(marks)),
    }, schema=INDEX_SCHEMA)
    if lake.exists(index) and len(lake.table(index).file_uris()) > COMPACT_AT_FILES:
        lake.overwrite(index, pa.concat_tables([_newest_entries(indexed, newest, stale), added]))
    else:
        lake.append(index, added)
    return hits


def _newest_versions(indexed: pa.Table) -> dict[str, int]:
    """Each partition's newest indexed version, from the marks every append leaves per partition it
    indexed (rows without a hash): a few rows per run, not one per key."""
    marks = indexed.filter(pc.and_(pc.is_null(indexed.column("key_hash")), pc.is_valid(indexed.column("partition"))))
    newest: dict[str, int] = {}
    for place, version in zip(marks.column("partition").cast(pa.string()).to_pylist(), marks.column("version").to_pylist()):
        newest[place] = max(version, newest.get(place, version))
    return newest


def _indexed_hits(indexed: pa.Table, newest: dict[str, int], stale: set[str], wanted: np.ndarray) -> set[str]:
    """Partitions outside `stale` whose newest entries hold a wanted hash."""
    found = indexed.filter(pc.is_in(indexed.column("key_hash"), value_set=pa.array(wanted, pa.int64())))
    return {place for place, version in zip(found.column("partition").cast(pa.string()).to_pylist(),
                                            found.column("version").to_pylist())
            if place not in stale and version == newest.get(place)}


def _newest_entries(indexed: pa.Table, newest: dict[str, int], stale: set[str]) -> pa.Table:
    """The index as compaction keeps it: each partition's newest entries (marks included), outside `stale`."""
    places = indexed.column("partition").cast(pa.string()).combine_chunks()
    encoded = places.dictionary_encode()
    names = encoded.dictionary.to_pylist()
    wanted_version = np.asarray([-1 if name in stale else newest.get(name, -1) for name in names] + [-1], np.int64)
    codes = encoded.indices.fill_null(len(names)).to_numpy()  # none (the index's own mark): not kept
    keep = indexed.column("version").to_numpy() == wanted_version[codes]
    return pa.table({"key_hash": indexed.column("key_hash"), "partition": places, "version": indexed.column("version")},
                    schema=INDEX_SCHEMA).filter(pa.array(keep))


def _text(values) -> pa.Array:
    """Keys as one Arrow string array, whatever they came as (an Arrow column, a set of strings)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.string()).drop_null()
    return pa.array([v for v in values if v is not None], pa.string())


def _hashes(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """pandas' 64-bit hash of each key (the same on every platform and run), as int64."""
    return pd.util.hash_array(np.asarray(keys.to_numpy(zero_copy_only=False), dtype=object)).view(np.int64)
