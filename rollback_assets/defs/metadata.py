"""Metadata people read in the UI: column schemas from `schemas.py`, tables with schemas, per-flag series
for the Plots tab, evidence lists, decision lineage, relative paths, content-hash code versions."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import dagster as dg
import numpy as np
import pandas as pd

from ..core import postmortem
from ..core.code_digest import closure_digest
from ..core.evidence import distinct_quotes
from ..core.schemas import DECISIONS, Table
from ..core.vocabulary import DecisionState

REPORTS_DIR = Path("reports")  # under the lake root
POSTMORTEM_DIR = REPORTS_DIR / "postmortems"


def code_version(*modules: ModuleType) -> str:
    """Content hash of the code an asset runs: the modules it calls and their import closure within
    the package (core/code_digest.py), so editing any of them, e.g. a statistic under the decisions,
    marks the asset stale, and nothing else does."""
    return closure_digest(*(module.__name__ for module in modules))[:12]


def column_schema(table: Table, names: list[str] | None = None) -> dg.TableSchema:
    """The declared columns (all, or `names` in that order) as Dagster shows them: type, description, nullability."""
    by_name = {c.name: c for c in table.columns}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, str(c.type), description=c.description or None,
                           constraints=dg.TableColumnConstraints(nullable=c.nullable))
            for c in (by_name[n] for n in (names or table.names))
        ]
    )


def table_location(lake_uri: str, table: Table) -> dg.MetadataValue:
    """Where the table lives, readable on any machine: a URL for object storage, else the path relative to
    the lake root (ROLLBACK_LAKE), never the absolute path of the machine that ran it."""
    if "://" in lake_uri:
        return dg.MetadataValue.url(lake_uri)
    return dg.MetadataValue.path(table.name)


def table_metadata(table: Table, lake_uri: str, version: int | None, rows: int | None = None) -> dict:
    meta = {
        "delta_path": table_location(lake_uri, table),
        "delta_version": version if version is not None else -1,
        "dagster/column_schema": column_schema(table),
    }
    if rows is not None:
        meta["dagster/row_count"] = rows
    return meta


def table_value(frame: pd.DataFrame, table: Table | None = None, limit: int = 50,
                descriptions: dict[str, str] | None = None) -> dg.MetadataValue:
    """Rows as a Dagster table (sortable, with a column schema): declared columns take their type and
    description from `table`; derived columns get an inferred type and the given description."""
    shown = frame.head(limit)
    declared = {c.name: c for c in table.columns} if table is not None else {}
    columns = []
    for name in shown.columns:
        column = declared.get(name)
        columns.append(dg.TableColumn(
            name, str(column.type) if column else _kind(shown[name]),
            description=(descriptions or {}).get(name) or (column.description if column else None) or None,
        ))
    records = [dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in shown.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _cell(value):
    """Table cells Dagster accepts (str, int, float, bool, None); floats rounded for reading."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 3)
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(map(str, value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)[:400]


def flag_series(flag_level: pd.DataFrame) -> dict:
    """Per flag, the figures that matter over time, under stable keys (`<flag>/negative_share`, ...), so
    the Plots tab draws one line per flag across materializations instead of single points."""
    out = {}
    for row in flag_level.sort_values("flag_key").itertuples():
        baseline = row.baseline_negative_share
        rise = row.negative_share / baseline - 1 if baseline and pd.notna(baseline) and pd.notna(row.negative_share) else None
        figures = {"negative_share": row.negative_share, "baseline_negative_share": baseline, "n": row.n, "relative_rise": rise}
        for name, value in figures.items():
            if value is not None and pd.notna(value) and np.isfinite(value):
                out[f"{row.flag_key}/{name}"] = int(value) if name == "n" else round(float(value), 4)
    return out


def evidence_markdown(decisions: pd.DataFrame) -> str:
    """Per acting or held decision: a heading, then its quotes as a list, de-duplicated."""
    if decisions.empty:
        return "_no flag needs action_"
    parts = []
    for row in decisions.itertuples():
        quotes = distinct_quotes(json.loads(row.evidence or "[]"))
        bullets = "\n".join(f"- \u201c{q.strip()}\u201d" for q in quotes) or "- _no quotes_"
        terms = ", ".join(f"{t} (z={z:.1f})" for t, z in json.loads(getattr(row, "new_terms", None) or "[]"))
        new = f"\n\nNew in the complaints: {terms}" if terms else ""
        parts.append(f"**{row.flag_key} {row.release_version} \u2014 {row.cohort}** ({row.action}, decision `{row.decision_id}`)"
                     f"{new}\n\n{bullets}")
    return "\n\n".join(parts)


def decision_lineage(decisions: pd.DataFrame) -> dict:
    """What a reviewer needs to reproduce the decisions: policy, scorer, input Delta versions (shared by
    the run) and, per acting decision, the release's code and notebook commits and model."""
    if decisions.empty:
        return {}
    first = decisions.iloc[0]
    meta = {"policy_version": str(first.policy_version), "scorer_version": str(first.scorer_version or "-")}
    for table_name, version in sorted(json.loads(first.input_versions or "{}").items()):
        meta[f"input_version/{table_name}"] = int(version) if version is not None else -1
    acting = decisions[decisions.state.isin([DecisionState.ACT, DecisionState.HOLD])]
    if len(acting):
        worst = acting.sort_values("relative_rise", ascending=False).iloc[0]
        meta.update({"code_commit": str(worst.code_commit or "-"), "notebook_commit": str(worst.notebook_commit or "-"),
                     "model": f"{worst.model_name or '-'} {worst.model_version or ''}".strip(),
                     "postmortem": dg.MetadataValue.path(postmortem_page(worst.decision_id)),
                     "postmortem_command": f"rollback-assets postmortem {worst.decision_id} --out postmortems/"})
        acted = sorted(acting[acting.state == DecisionState.ACT].decision_id)
        if acted:  # forward links: an automatic action's id is its decision's id
            meta["flag_action_ids"] = dg.MetadataValue.json(acted)
            meta["flag_actions"] = dg.MetadataValue.asset(dg.AssetKey("flag_actions"))
        meta["lineage"] = table_value(
            acting[["decision_id", "flag_key", "release_version", "cohort", "code_commit", "notebook_commit", "model_name",
                    "model_version", "scorer_version", "policy_version", "input_versions", "run_id"]],
            DECISIONS,
        )
    return meta


def postmortem_page(decision_id: str) -> str:
    """Where the postmortems asset writes a decision's postmortem, relative to the lake root."""
    return str(POSTMORTEM_DIR / f"{postmortem.file_stem(decision_id)}.html")


def data_version(table_name: str, version: int | None) -> dg.DataVersion:
    return dg.DataVersion(f"{table_name}@{version}")
