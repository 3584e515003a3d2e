"""Flag debt a human has to clean up, found from the lake and the flag backend, each naming the owner.

expired_flags    a flag whose live release is past its `expires_at` while the backend still has the
                 flag enabled (or cannot say), so the flag, and the code behind it, should be removed.
stale_fallbacks  a fallback (disable / switch_variant, or a human `force` to off or to a variant) still
                 in place more than N days later with no later `promote` / `force` that restored the
                 release (N: DEFAULT_MAX_FALLBACK_DAYS, or `max_fallback_days` in the policy YAML).

Pure rules over frames (and the backend's `get_state` for expiry): the Dagster checks in
`defs/governance.py` run them and report the findings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

import pandas as pd

from .actions.plan import as_dict
from .clock import utc
from .flags import FlagState, PermanentBackendError
from .vocabulary import ActionKind, AuditStatus

DEFAULT_MAX_FALLBACK_DAYS = 14.0
FALLBACK_KINDS = (ActionKind.DISABLE, ActionKind.SWITCH_VARIANT)
NO_OWNER = "(no owner registered)"


def latest_releases(releases: pd.DataFrame) -> pd.DataFrame:
    """The live (latest released) release of each flag."""
    if releases.empty:
        return releases
    return releases.sort_values("released_at").groupby("flag_key", as_index=False).tail(1).set_index("flag_key", drop=False)


def _owner(releases: pd.DataFrame, flag_key: str, version: str | None = None) -> str:
    rows = releases[releases.flag_key == flag_key]
    if version is not None and (rows.version == version).any():
        rows = rows[rows.version == version]
    owners = rows.sort_values("released_at").owner.dropna()
    return str(owners.iloc[-1]) if len(owners) else NO_OWNER


def expired_flags(releases: pd.DataFrame, state_of: Callable[[str], FlagState], now: datetime | None = None) -> list[dict]:
    """Flags whose live release expired. `live` is True when the backend still has the flag enabled,
    None when the backend could not be read (treated as live: nobody proved it is gone), False when
    the flag is disabled or no longer exists in the backend."""
    now = utc(now)
    out = []
    for row in latest_releases(releases).itertuples(index=False):
        if row.expires_at is None or pd.isna(row.expires_at) or pd.Timestamp(row.expires_at) > now:
            continue
        try:
            state = state_of(row.flag_key)
            live, served = bool(state.enabled), (f"on at {state.rollout}%" + (f", variant {state.variant}" if state.variant else "")
                                                 if state.enabled else "disabled")
        except PermanentBackendError as exc:
            gone = "no flag" in str(exc) or exc.status_code == 404
            live, served = (False, "removed from the backend") if gone else (None, f"unknown: {exc}")
        except Exception as exc:  # a backend outage must not hide debt, nor fail the run
            live, served = None, f"unknown: {type(exc).__name__}: {exc}"
        out.append({
            "flag_key": row.flag_key, "version": row.version, "owner": row.owner if isinstance(row.owner, str) and row.owner else NO_OWNER,
            "expires_at": pd.Timestamp(row.expires_at).isoformat(), "days_past_expiry": round((now - pd.Timestamp(row.expires_at)).total_seconds() / 86400, 1),
            "live": live, "backend_state": served,
        })
    return out


def _is_fallback(row: dict) -> bool:
    if row["kind"] in FALLBACK_KINDS:
        return True
    return row["kind"] == ActionKind.FORCE and (row.get("after_enabled") is False or bool(row.get("after_variant")))


def _is_restore(row: dict) -> bool:
    """A later human change that put the release back in front of users."""
    if row["kind"] == ActionKind.PROMOTE:
        return True
    return row["kind"] == ActionKind.FORCE and row.get("after_enabled") is True and not row.get("after_variant") and (row.get("after_rollout") or 0) > 0


def stale_fallbacks(
    flag_actions_frame: pd.DataFrame,
    releases: pd.DataFrame,
    now: datetime | None = None,
    max_days_for: Callable[[str], float] = lambda flag: DEFAULT_MAX_FALLBACK_DAYS,
) -> tuple[list[dict], list[dict]]:
    """(stale, active): fallbacks still in place, those older than the flag's limit first."""
    now = utc(now)
    applied = flag_actions_frame[flag_actions_frame.status == AuditStatus.APPLIED] if len(flag_actions_frame) else flag_actions_frame
    stale, active = [], []
    for flag_key, rows in (applied.groupby("flag_key") if len(applied) else []):
        since = None
        for row in rows.sort_values("updated_at").to_dict("records"):
            row = as_dict(row)
            if _is_restore(row):
                since = None
            elif _is_fallback(row) and since is None:
                since = row
        if since is None:
            continue
        age_days = (now - pd.Timestamp(since["updated_at"])).total_seconds() / 86400
        limit = float(max_days_for(flag_key))
        finding = {
            "flag_key": flag_key, "owner": _owner(releases, flag_key, since.get("release_version")),
            "kind": since["kind"], "since": pd.Timestamp(since["updated_at"]).isoformat(), "days_active": round(age_days, 1),
            "max_days": limit, "action_id": since["action_id"], "decision_id": since.get("decision_id"),
            "actor": since["actor"], "reason": (since.get("reason") or "")[:200],
        }
        (stale if age_days > limit else active).append(finding)
    return stale, active
