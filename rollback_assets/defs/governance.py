"""Governance checks (WARN, never blocking): flag debt a human has to clean up, each naming the owner.

flag_expiry   (on release_artifacts)  a flag whose live release is past its `expires_at` while the
                                      backend still has the flag enabled (or cannot say), so the
                                      flag, and the code behind it, should have been removed.
fallback_age  (on flag_actions)       a fallback (disable / switch_variant, or a human `force` to off
                                      or to a variant) still in place more than N days later with no
                                      later `promote` / `force` that restored the release. N is 14 by
                                      default; `fallback_age_check(max_days=...)` changes it for all
                                      flags and `max_fallback_days:` in the policy YAML (defaults or
                                      per flag) overrides it.

The pure functions `expired_flags` and `stale_fallbacks` do the work; the checks read the lake (and
the flag backend, for expiry) and put the findings with owners into metadata.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import dagster as dg
import pandas as pd

from ..core.flags import FlagState, PermanentBackendError
from ..core.schemas import FLAG_ACTIONS, RELEASE_ARTIFACTS
from .assets import release_artifacts
from .flags import FlagControlResource, flag_actions
from .metadata import table_value
from .resources import LakeResource, SettingsResource

DEFAULT_MAX_FALLBACK_DAYS = 14.0
FALLBACK_KINDS = ("disable", "switch_variant")
NO_OWNER = "(no owner registered)"


def _utc(now: datetime | None) -> pd.Timestamp:
    ts = pd.Timestamp(now or datetime.now(timezone.utc))
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


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
    now = _utc(now)
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
    return row["kind"] == "force" and (row.get("after_enabled") is False or bool(row.get("after_variant")))


def _is_restore(row: dict) -> bool:
    """A later human change that put the release back in front of users."""
    if row["kind"] == "promote":
        return True
    return row["kind"] == "force" and row.get("after_enabled") is True and not row.get("after_variant") and (row.get("after_rollout") or 0) > 0


def stale_fallbacks(
    flag_actions_frame: pd.DataFrame,
    releases: pd.DataFrame,
    now: datetime | None = None,
    max_days_for: Callable[[str], float] = lambda flag: DEFAULT_MAX_FALLBACK_DAYS,
) -> tuple[list[dict], list[dict]]:
    """(stale, active): fallbacks still in place, those older than the flag's limit first."""
    now = _utc(now)
    applied = flag_actions_frame[flag_actions_frame.status == "applied"] if len(flag_actions_frame) else flag_actions_frame
    stale, active = [], []
    for flag_key, rows in (applied.groupby("flag_key") if len(applied) else []):
        since = None
        for row in rows.sort_values("updated_at").to_dict("records"):
            row = {k: (None if not isinstance(v, (list, tuple)) and pd.isna(v) else v) for k, v in row.items()}
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


def _owners_text(findings: list[dict]) -> str:
    return ", ".join(sorted({f["owner"] for f in findings})) or "-"


@dg.asset_check(
    asset=release_artifacts,
    name="flag_expiry",
    description="No flag is still enabled in the flag backend after its release's expires_at (names the owner).",
)
def flag_expiry(lake: LakeResource, flags: FlagControlResource) -> dg.AssetCheckResult:
    releases = lake.lake().read(RELEASE_ARTIFACTS)
    backend = flags.client()
    found = expired_flags(releases, backend.get_state)
    overdue = [f for f in found if f["live"] is not False]
    table = pd.DataFrame(overdue, columns=["flag_key", "version", "owner", "expires_at", "days_past_expiry", "backend_state"])
    return dg.AssetCheckResult(
        passed=not overdue,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(overdue)} expired flag(s) still enabled; owners: {_owners_text(overdue)}" if overdue
                     else "no expired flag is still enabled"),
        metadata={
            "backend": backend.name,
            "flags_checked": int(releases.flag_key.nunique()) if len(releases) else 0,
            "expired_still_enabled": dg.MetadataValue.json(overdue),
            "expired_retired": dg.MetadataValue.json([f for f in found if f["live"] is False]),
            "owners": _owners_text(overdue),
            "overdue": table_value(table),
        },
    )


def fallback_age_check(max_days: float = DEFAULT_MAX_FALLBACK_DAYS) -> dg.AssetChecksDefinition:
    """Fallbacks (disable / switch_variant) still active after `max_days`; per flag `max_fallback_days`
    in the policy YAML (under defaults: or flags: <key>:) overrides it."""

    @dg.asset_check(
        asset=flag_actions,
        name="fallback_age",
        description=f"No flag sits on its fallback (disabled / fallback variant) longer than {max_days:g} days "
                    "without a promote or force (names the owner).",
    )
    def fallback_age(lake: LakeResource, settings: SettingsResource) -> dg.AssetCheckResult:
        the_lake = lake.lake()
        policy = settings.policy()

        def limit(flag: str) -> float:
            days = policy.for_flag(flag).max_fallback_days
            return float(days if days is not None else max_days)

        stale, active = stale_fallbacks(the_lake.read(FLAG_ACTIONS), the_lake.read(RELEASE_ARTIFACTS), max_days_for=limit)
        table = pd.DataFrame(stale, columns=["flag_key", "owner", "kind", "since", "days_active", "max_days", "decision_id"])
        return dg.AssetCheckResult(
            passed=not stale,
            severity=dg.AssetCheckSeverity.WARN,
            description=(f"{len(stale)} fallback(s) active too long; owners: {_owners_text(stale)}" if stale
                         else f"no fallback older than its limit ({len(active)} active)"),
            metadata={
                "max_days_default": float(max_days),
                "stale_fallbacks": dg.MetadataValue.json(stale),
                "active_fallbacks": dg.MetadataValue.json(active),
                "owners": _owners_text(stale),
                "stale": table_value(table),
            },
        )

    return fallback_age


GOVERNANCE_CHECKS = [flag_expiry, fallback_age_check()]
