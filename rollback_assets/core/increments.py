"""What a step has not processed yet, read from the Delta log of its upstream table.

Each incremental step (enrich, score, aggregate_daily) records in its own commit the upstream version it
processed; the next run reads the upstream commits after it. Which rows those commits wrote comes from
the stamp each writer puts on its rows and names in its commit metadata, and which days they touched from
the partitions they added or removed files in: so a run reads those days, not the whole history, and a
run that dies half-way leaves its marker unwritten and is redone. Split out of pipeline.py, which keeps
the steps themselves.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .lake import Lake
from .schemas import UTC_TS

# Commits that change no rows a downstream step must see (a delete only removes a row that moved day).
NO_NEW_ROWS = {"DELETE", "OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "CREATE TABLE"}


def processed(lake: Lake, table, key: str) -> int | None:
    """The upstream version the newest commit of `table` says it processed. The newest, not the
    largest: when two runs race, the later commit may have processed less, and re-reading those
    versions repairs anything its MERGE overwrote with older input."""
    value = lake.commit_metadata(table, key)
    return int(value) if value is not None else None


def changed_since(lake: Lake, upstream, stamp: str, since: int | None, upto: int | None) -> ds.Expression | None:
    """Rows of `upstream` written by its commits in (since, upto]: every writer stamps its rows with
    one value of `stamp` and names it in the commit metadata, so the stamps of those commits select
    exactly their rows, whatever order concurrent runs started in. None (read everything) on the
    first run, or when a commit carries no stamp (e.g. another engine's writer)."""
    if since is None or upto is None:
        return None
    stamps = []
    for commit in lake.commits_after(upstream, since, upto):
        if commit.get(stamp) is not None:
            stamps.append(pd.Timestamp(commit[stamp]))
        elif commit.get("operation") not in NO_NEW_ROWS:
            return None
    return ds.field(stamp).isin(pa.array(stamps, type=UTC_TS))


def changed_days(lake: Lake, upstream, pending: ds.Expression | None, since: int | None, upto: int | None) -> set[str] | None:
    """The partitions the commits `pending` selects rows of touched (Delta log): the keys' read then lists
    those days' files, not every file of the table. None: every day.
    They also hold every downstream row that can have moved: a row moves downstream only after it moved
    upstream, whose MERGE deleted it from its old day first (a remove in that day's partition), in those
    same commits. So the downstream check for moved rows reads these days' keys, not every key."""
    return None if pending is None else lake.touched_partitions(upstream, since, upto)


def date_chunks(days: pa.ChunkedArray, max_rows: int) -> list[list]:
    """Consecutive days holding at most `max_rows` rows each (a bigger single day is one chunk)."""
    if len(days) == 0:
        return []
    counts = pc.value_counts(days).to_pylist()
    chunks, current, size = [], [], 0
    for entry in sorted(counts, key=lambda e: e["values"]):
        if current and size + entry["counts"] > max_rows:
            chunks.append(current)
            current, size = [], 0
        current.append(entry["values"])
        size += entry["counts"]
    return chunks + [current]
