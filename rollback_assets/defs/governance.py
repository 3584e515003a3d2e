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

The rules live in the core (`core/governance.py`: `expired_flags`, `stale_fallbacks`); these checks
read the lake (and the flag backend, for expiry) and put the findings with owners into metadata.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from ..core.governance import DEFAULT_MAX_FALLBACK_DAYS, expired_flags, stale_fallbacks
from ..core.schemas import FLAG_ACTIONS, RELEASE_ARTIFACTS
from .assets import release_artifacts
from .flags import FlagControlResource, flag_actions
from .metadata import table_value
from .resources import LakeResource, SettingsResource

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
