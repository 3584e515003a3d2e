"""Attribute each feedback row to the release cohort that produced it.

By explicit version where the row carries one; otherwise by the release of the product's flag that
was live when the customer wrote it, where the flag assigns users to releases (`randomized`): for
self-selected releases (app versions) a row without a version cannot be placed. Rows that match no
release are kept, marked `none`.
"""

from __future__ import annotations

import pandas as pd

DEFAULT_COHORT_DIMENSIONS = ("device", "locale")
UNKNOWN = "unknown"


def cohort_labels(frame: pd.DataFrame, dimensions: tuple[str, ...] | list[str]) -> pd.Series:
    if not dimensions:
        return pd.Series("all", index=frame.index)
    parts = [dim + "=" + frame[dim].fillna(UNKNOWN).astype(str) for dim in dimensions]
    label = parts[0]
    for part in parts[1:]:
        label = label + "|" + part
    return label


def attribute(feedback: pd.DataFrame, releases: pd.DataFrame, dimensions=DEFAULT_COHORT_DIMENSIONS) -> pd.DataFrame:
    out = feedback.copy()
    out["release_version"] = None
    out["attributed_flag"] = None
    out["attribution"] = "none"
    out["cohort"] = cohort_labels(out, tuple(dimensions))
    if releases.empty or out.empty:
        return out

    by_version = releases[["product", "version", "flag_key"]].rename(
        columns={"version": "app_version", "flag_key": "_flag"}
    )
    matched = out[["product", "app_version"]].reset_index().merge(by_version, on=["product", "app_version"], how="inner")
    matched = matched.drop_duplicates("index").set_index("index")
    out.loc[matched.index, "release_version"] = out.loc[matched.index, "app_version"]
    out.loc[matched.index, "attributed_flag"] = matched["_flag"]
    out.loc[matched.index, "attribution"] = "version"

    # Rows without a known version: the latest release of their product live at created_at.
    pending = out.index[(out.attribution == "none") & out.app_version.isna()]
    if len(pending):
        left = out.loc[pending, ["created_at", "product"]].reset_index().sort_values("created_at")
        adoption = releases["adoption"] if "adoption" in releases else pd.Series("randomized", index=releases.index)
        right = releases.assign(adoption=adoption.fillna("randomized"))[
            ["released_at", "product", "version", "flag_key", "adoption"]].sort_values("released_at")
        # One time unit on both sides: Arrow-read feedback comes in microseconds, releases may not.
        right = right.astype({"product": object, "released_at": "datetime64[ns, UTC]"})
        left = left.astype({"product": object, "created_at": "datetime64[ns, UTC]"})
        live = pd.merge_asof(left, right, left_on="created_at", right_on="released_at", by="product", direction="backward")
        # Users of a self-selected release (an app version) keep writing long after a newer one ships:
        # a row without a version then says nothing about which release its author runs, so it stays
        # unattributed rather than land on the live release (after a bad release is superseded its
        # users' unversioned complaints would otherwise be charged to its good successor).
        live = live[live.adoption != "self_selected"]
        live = live.dropna(subset=["version"]).set_index("index")
        out.loc[live.index, "release_version"] = live["version"]
        out.loc[live.index, "attributed_flag"] = live["flag_key"]
        out.loc[live.index, "attribution"] = "time"
    return out

