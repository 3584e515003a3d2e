"""core.key_index: which partitions hold some keys, answered from a Delta index beside the table, on a
real local lake. An answer must hold every partition that holds a key (drop_moved_rows and the author
votes rely on it): after moves, deletes, late appends of outdated entries, compaction and a lost index."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from rollback_assets.core import key_index
from rollback_assets.core.lake import Lake, sql_in
from rollback_assets.core.schemas import Table, _col, key_index_table

KEYED = Table("keyed", (_col("id", pa.string(), False), _col("day", pa.string(), False)), key=("id",),
              partition_by=("day",))


def rows(pairs: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"id": [i for i, _ in pairs], "day": [d for _, d in pairs]}, schema=KEYED.arrow_schema)


def truth(lake: Lake, ids: set[str]) -> set[str]:
    table = lake.read_arrow(KEYED)
    return {d for i, d in zip(table.column("id").to_pylist(), table.column("day").to_pylist()) if i in ids}


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    lake.append(KEYED, rows([(f"id-{n}", f"2026-09-{1 + n % 5:02d}") for n in range(500)]))
    return lake


def test_answers_equal_the_table_as_it_changes(lake):
    assert key_index.partitions_holding(lake, KEYED, "id", {"id-0", "id-7"}) == {"2026-09-01", "2026-09-03"}
    assert lake.exists(key_index_table(KEYED, "id"))
    lake.append(KEYED, rows([("new-1", "2026-09-06")]))
    lake.delete(KEYED, sql_in("id", ["id-7"]))  # id-7 leaves 2026-09-03
    lake.append(KEYED, rows([("id-7", "2026-09-05")]))  # and comes back on another day
    for ids in ({"id-7"}, {"new-1", "id-0"}, {"nowhere"}, {"id-1", "id-2", "id-3", "id-4"}):
        assert key_index.partitions_holding(lake, KEYED, "id", ids) == truth(lake, ids), ids
    assert key_index.partitions_holding(Lake(lake.root), KEYED, "id", {"id-7"}) == {"2026-09-05"}  # a fresh reader


def test_a_partition_emptied_stops_answering(lake):
    key_index.partitions_holding(lake, KEYED, "id", {"id-0"})
    lake.delete(KEYED, "day = '2026-09-01'")
    assert key_index.partitions_holding(lake, KEYED, "id", {"id-0", "id-5"}) == set()


def test_outdated_entries_appended_late_do_not_hide_a_partition(lake):
    """A run that read an older snapshot may append its entries after a newer run's: each partition is
    answered from its newest version, so a stale entry (here: id-7 still on 2026-09-03) cannot win."""
    key_index.partitions_holding(lake, KEYED, "id", {"id-7"})
    index = key_index_table(KEYED, "id")
    old = lake.version(KEYED)
    lake.delete(KEYED, sql_in("id", ["id-7"]))
    lake.append(KEYED, rows([("id-7", "2026-09-05")]))
    assert key_index.partitions_holding(lake, KEYED, "id", {"id-7"}) == {"2026-09-05"}
    late = pa.table({"key_hash": pa.array(key_index._hashes(pa.array(["id-7"])), pa.int64()),
                     "partition": ["2026-09-03"], "version": pa.array([old], pa.int64())}, schema=key_index.INDEX_SCHEMA)
    lake.append(index, late)
    assert key_index.partitions_holding(lake, KEYED, "id", {"id-7"}) == {"2026-09-05"}


def test_compaction_keeps_the_answers_and_drops_outdated_entries(lake, monkeypatch):
    monkeypatch.setattr(key_index, "COMPACT_AT_FILES", 3)
    index = key_index_table(KEYED, "id")
    for n in range(6):  # each run rewrites one day: its old entries become outdated
        lake.append(KEYED, rows([(f"extra-{n}", "2026-09-02")]))
        assert key_index.partitions_holding(lake, KEYED, "id", {f"extra-{n}", "id-0"}) == {"2026-09-02", "2026-09-01"}
    assert len(lake.table(index).file_uris()) <= 3
    assert lake.read_arrow(index).num_rows < 500 + 6 * 100 + 20  # not every run's copy of 2026-09-02
    assert key_index.partitions_holding(lake, KEYED, "id", {"extra-0", "id-4"}) == {"2026-09-02", "2026-09-05"}


def test_a_lost_index_is_built_again(lake):
    key_index.partitions_holding(lake, KEYED, "id", {"id-0"})
    shutil.rmtree(lake.path(key_index_table(KEYED, "id").name))
    fresh = Lake(lake.root)
    assert key_index.partitions_holding(fresh, KEYED, "id", {"id-3"}) == {"2026-09-04"}
