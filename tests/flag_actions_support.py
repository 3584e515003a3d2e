"""What the flag-action tests share: a decision as the graph writes it, flag states, the audit table,
and a notifier that keeps what it was asked to send (the product's notifiers post signed webhooks)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import pandas as pd

from rollback_assets.core.flags import FlagState
from rollback_assets.core.lake import Lake
from rollback_assets.core.schemas import DECISIONS, FLAG_ACTIONS, RELEASE_ARTIFACTS

WEBHOOK_SECRET = "whsec-test-0123456789abcdef"
T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
LADDER = {"flag_key": "checkout", "version": "7.1", "ladder": [100, 25, 5, 0], "fallback_variant": None}
NO_SLEEP = dict(sleep=lambda s: None)


class RecordingNotifier:
    """Keeps payloads in memory instead of posting them."""

    def __init__(self):
        self.sent: list[dict] = []

    def notify(self, payload: Mapping[str, Any]) -> None:
        self.sent.append(dict(payload))


def decision(did, severity="moderate", action="step_down", state="act", cohort="all", flag="checkout", **kw):
    return {
        "decision_id": did, "flag_key": flag, "release_version": "7.1", "cohort": cohort, "state": state,
        "action": action, "severity": severity, "reason": "Negative share rose", "policy_name": "ratio",
        "policy_version": "3", "code_commit": "abc123", "run_id": "decide-run-1", **kw,
    }


def st(rollout, enabled=True, variant=None):
    return FlagState("checkout", enabled, rollout, variant)


def audit(lake: Lake) -> pd.DataFrame:
    return lake.read(FLAG_ACTIONS)


def write_decisions(lake: Lake, *rows) -> None:
    base = {"baseline_kind": "concurrent", "window_start": T0 - timedelta(days=1), "window_end": T0, "n": 300,
            "baseline_n": 900, "policy_name": "ratio", "policy_version": "3"}
    lake.merge(DECISIONS, pd.DataFrame([{**base, **r} for r in rows]))


def stored_decision(lake: Lake, did, decided_at=T0, **kw) -> dict:
    """A decision as the graph stores it (rollback_decisions), plus its release."""
    d = decision(did, baseline_kind="concurrent", window_start=decided_at - timedelta(days=7), window_end=decided_at,
                 n=400, baseline_n=900, decided_at=decided_at, target_rollout=25, **kw)
    lake.merge(DECISIONS, pd.DataFrame([d]))
    if not lake.exists(RELEASE_ARTIFACTS):
        lake.merge(RELEASE_ARTIFACTS, pd.DataFrame([{**LADDER, "released_at": T0 - timedelta(days=10), "registered_at": T0}]))
    return d
