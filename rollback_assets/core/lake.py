"""Delta tables under one lake root, read and written through the schemas in `schemas.py`.

Every write returns the Delta version it produced, so callers can record it as lineage and a
postmortem can time-travel back to exactly what a decision saw.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, write_deltalake

from .schemas import Table


class Lake:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def uri(self, table: Table) -> str:
        return str(self.root / table.name)

    def exists(self, table: Table) -> bool:
        return DeltaTable.is_deltatable(self.uri(table))

    def version(self, table: Table) -> int | None:
        return DeltaTable(self.uri(table)).version() if self.exists(table) else None

    def dataset(self, table: Table, version: int | None = None) -> ds.Dataset | None:
        if not self.exists(table):
            return None
        return DeltaTable(self.uri(table), version=version).to_pyarrow_dataset()

    def read_arrow(
        self,
        table: Table,
        columns: list[str] | None = None,
        filter: ds.Expression | None = None,
        version: int | None = None,
    ) -> pa.Table:
        data = self.dataset(table, version)
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

    def read_keys_in(self, table: Table, column: str, values, columns: list[str], filter: ds.Expression | None = None) -> pa.Table:
        """Rows whose `column` is one of `values`: pushdown only for `filter` (dates, numbers), the
        string match in memory, because MERGE-written files defeat string pushdown."""
        data = self.read_arrow(table, columns=list(dict.fromkeys([column, *columns])), filter=filter)
        wanted = pa.array(list(values), type=pa.string())
        return data.filter(pc.is_in(data.column(column).cast(pa.string()), value_set=wanted)).select(columns)

    def read(self, table: Table, columns=None, filter=None, version=None) -> pd.DataFrame:
        return self.read_arrow(table, columns, filter, version).to_pandas()

    def commit_metadata(self, table: Table, key: str, lookback: int = 20) -> str | None:
        """The newest value of a custom commit-metadata key (e.g. which input version a write used)."""
        if not self.exists(table):
            return None
        for commit in DeltaTable(self.uri(table)).history(lookback):
            if key in commit:
                return commit[key]
        return None

    def overwrite(self, table: Table, frame: pd.DataFrame | pa.Table, metadata: dict | None = None) -> int:
        write_deltalake(
            self.uri(table),
            self._arrow(table, frame),
            mode="overwrite",
            partition_by=list(table.partition_by) or None,
            schema_mode="overwrite",
            commit_properties=_commit(metadata),
        )
        return self.version(table)

    def append(self, table: Table, frame: pd.DataFrame | pa.Table, metadata: dict | None = None) -> int:
        write_deltalake(
            self.uri(table), self._arrow(table, frame), mode="append",
            partition_by=list(table.partition_by) or None, commit_properties=_commit(metadata),
        )
        return self.version(table)

    def merge(
        self, table: Table, frame: pd.DataFrame | pa.Table, update_when: str | None = None, metadata: dict | None = None,
        moved_rows_checked: bool = False,
    ) -> tuple[int, dict]:
        """Upsert on the table's key. `update_when` limits updates to changed rows (e.g. a content hash).
        `moved_rows_checked`: the caller already ran `drop_moved_rows` for these keys (once for many chunks).

        Returns the new version and Delta's merge metrics (rows inserted / updated / unchanged).
        """
        data = self._arrow(table, frame)
        if not self.exists(table):
            self.append(table, data, metadata)
            return self.version(table), {"num_target_rows_inserted": data.num_rows, "num_target_rows_updated": 0}
        if data.num_rows == 0:
            return self.version(table), {"num_target_rows_inserted": 0, "num_target_rows_updated": 0}
        if not moved_rows_checked:
            self.drop_moved_rows(table, data)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        for part in table.partition_by:
            # Pruning: only partitions present in the batch are scanned for matches.
            values = sorted({str(v) for v in data.column(part).to_pylist()})
            predicate += f" AND t.{part} IN ({', '.join(repr(v) for v in values)})"
        builder = DeltaTable(self.uri(table)).merge(
            source=data, predicate=predicate, source_alias="s", target_alias="t", commit_properties=_commit(metadata)
        )
        if update_when:
            builder = builder.when_matched_update_all(predicate=update_when)
        else:
            builder = builder.when_matched_update_all()
        metrics = builder.when_not_matched_insert_all().execute()
        return self.version(table), metrics

    def drop_moved_rows(self, table: Table, data: pa.Table) -> None:
        """A key that comes back in another partition (a corrected day) would escape the pruned MERGE
        and be inserted twice: delete its old row first."""
        moving = [p for p in table.partition_by if p not in table.key]
        if not moving or len(table.key) != 1:
            return
        key = table.key[0]
        if not self.exists(table) or data.num_rows == 0:
            return
        existing = self.read_keys_in(table, key, data.column(key).to_pylist(), [key, *moving])
        if existing.num_rows == 0:
            return
        incoming = data.select([key, *moving]).to_pandas()
        joined = existing.to_pandas().merge(incoming, on=key, suffixes=("", "_new"))
        moved = joined[(joined[moving].astype(str).to_numpy() != joined[[f"{m}_new" for m in moving]].astype(str).to_numpy()).any(axis=1)]
        if len(moved):
            keys = ", ".join(repr(str(k)) for k in moved[key].unique())
            DeltaTable(self.uri(table)).delete(f"{key} IN ({keys})")

    @staticmethod
    def _arrow(table: Table, frame: pd.DataFrame | pa.Table) -> pa.Table:
        return frame if isinstance(frame, pa.Table) else table.to_arrow(frame)


def _commit(metadata: dict | None) -> CommitProperties | None:
    def text(value) -> str:
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    return CommitProperties(custom_metadata={k: text(v) for k, v in metadata.items()}) if metadata else None
