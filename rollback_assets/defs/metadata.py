"""Metadata shared by every asset: column schemas from `schemas.py`, content-hash code versions."""

from __future__ import annotations

import hashlib
import inspect
from types import ModuleType

import dagster as dg
import pandas as pd

from ..core.schemas import Table


def code_version(*modules: ModuleType) -> str:
    """Content hash of the modules an asset runs: editing them marks the asset stale, nothing else does."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, str(c.type), description=c.description or None,
                           constraints=dg.TableColumnConstraints(nullable=c.nullable))
            for c in table.columns
        ]
    )


def table_metadata(table: Table, lake_uri: str, version: int | None, rows: int | None = None) -> dict:
    meta = {
        "delta_path": dg.MetadataValue.path(lake_uri),
        "delta_version": version if version is not None else -1,
        "dagster/column_schema": column_schema(table),
    }
    if rows is not None:
        meta["dagster/row_count"] = rows
    return meta


def markdown_table(frame: pd.DataFrame, limit: int = 30) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_none_")
    shown = frame.head(limit)
    header = "| " + " | ".join(map(str, shown.columns)) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "\n".join("| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False))
    more = f"\n\n_{len(frame) - limit} more rows_" if len(frame) > limit else ""
    return dg.MetadataValue.md(header + body + more)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")[:400]


def data_version(table_name: str, version: int | None) -> dg.DataVersion:
    return dg.DataVersion(f"{table_name}@{version}")
