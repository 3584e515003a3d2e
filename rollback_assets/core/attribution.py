"""Attribute each feedback row to the release cohort that produced it.

By explicit version where the row carries one; otherwise by the release of the product's flag that
was live when the customer wrote it, where the flag assigns users to releases (`randomized`): for
self-selected releases (app versions) a row without a version cannot be placed. Rows that match no
release are kept, marked `none`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .aggregates import factorize_keys

DEFAULT_COHORT_DIMENSIONS = ("device", "locale")
UNKNOWN = "unknown"
SIGNATURE = "attribution_signature"  # commit metadata of enriched_feedback, in both engines


def attribution_signature(releases_version: int | None, cohort_dimensions) -> str:
    """What enriched rows were attributed with: the releases' table version and the cohort dimensions.
    Recorded with every attribution; when it differs from what a run would use, every row is attributed again."""
    return json.dumps({"releases": releases_version, "cohort": list(cohort_dimensions)})


def cohort_labels(frame: pd.DataFrame, dimensions: tuple[str, ...] | list[str]) -> pd.Series:
    """Each row's cohort ("device=mobile|locale=de-DE", a missing value as "unknown"), written once
    per distinct combination of the dimensions' values (a few dozen), not once per row: building a
    string per row cost most of the attribution at a million rows."""
    if not dimensions:
        return pd.Series("all", index=frame.index)
    codes, combinations = factorize_keys([frame[dim].to_numpy() for dim in dimensions])
    parts = [dim + "=" + pd.Series(values).fillna(UNKNOWN).astype(str) for dim, values in zip(dimensions, combinations)]
    label = parts[0]
    for part in parts[1:]:
        label = label + "|" + part
    return pd.Series(label.to_numpy(dtype=object)[codes], index=frame.index)


def attribute(feedback: pd.DataFrame, releases: pd.DataFrame, dimensions=DEFAULT_COHORT_DIMENSIONS) -> pd.DataFrame:
    """`feedback` with release_version, attributed_flag, attribution (version | time | none) and cohort.
    Decided on row positions (arrays), not index labels: aligning a million labels per assignment cost
    as much as the matching."""
    out = feedback.copy()
    n = len(out)
    version, flag, method = np.full(n, None, dtype=object), np.full(n, None, dtype=object), np.full(n, "none", dtype=object)
    cohort = cohort_labels(out, tuple(dimensions))
    if not releases.empty and n:
        by_version = releases[["product", "version", "flag_key"]].rename(
            columns={"version": "app_version", "flag_key": "_flag"}
        )
        matched = (out[["product", "app_version"]].assign(_row=np.arange(n))
                   .merge(by_version, on=["product", "app_version"], how="inner").drop_duplicates("_row"))
        rows = matched._row.to_numpy()
        version[rows] = matched.app_version.to_numpy()
        flag[rows] = matched._flag.to_numpy()
        method[rows] = "version"

        # Rows without a known version: the latest release of their product live at created_at.
        pending = np.flatnonzero((method == "none") & out.app_version.isna().to_numpy())
        if len(pending):
            left = out.iloc[pending][["created_at", "product"]].assign(_row=pending).sort_values("created_at")
            adoption = releases["adoption"] if "adoption" in releases else pd.Series("randomized", index=releases.index)
            right = releases.assign(adoption=adoption.fillna("randomized"))[
                ["released_at", "product", "version", "flag_key", "adoption"]].sort_values("released_at")
            # One time unit on both sides: Arrow-read feedback comes in microseconds, releases may not.
            right = right.astype({"product": object, "released_at": "datetime64[ns, UTC]"})
            left = left.astype({"product": object, "created_at": "datetime64[ns, UTC]"})
            live = pd.merge_asof(left, right, left_on="created_at", right_on="released_at", by="product",
                                 direction="backward")
            # Users of a self-selected release (an app version) keep writing long after a newer one ships:
            # a row without a version then says nothing about which release its author runs, so it stays
            # unattributed rather than land on the live release (after a bad release is superseded its
            # users' unversioned complaints would otherwise be charged to its good successor).
            live = live[live.adoption != "self_selected"].dropna(subset=["version"])
            rows = live._row.to_numpy()
            version[rows] = live.version.to_numpy()
            flag[rows] = live.flag_key.to_numpy()
            method[rows] = "time"
    out["release_version"] = version
    out["attributed_flag"] = flag
    out["attribution"] = method
    out["cohort"] = cohort
    return out
