"""The audit table as a ledger: the intent row comes first and only for acting decisions; decisions whose
run died before it are found."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from rollback_assets.core.actions import executor, ledger
from rollback_assets.core.lake import Lake
from rollback_assets.core.schemas import FLAG_ACTIONS

from flag_actions_support import NO_SLEEP, T0, audit, decision, stored_decision


def test_intent_is_written_before_anything_else_and_only_for_acting_decisions(lake):
    assert ledger.record_intent(lake, decision("dec-pass", state="pass", action="none"), backend="webhook") is None
    assert ledger.record_intent(lake, decision("dec-hold", state="act", action="hold_promotion"), backend="webhook") is None
    assert not lake.exists(FLAG_ACTIONS)
    first = ledger.record_intent(lake, decision("dec-i"), backend="webhook", now=T0)
    again = ledger.record_intent(lake, decision("dec-i"), backend="webhook", now=T0 + timedelta(hours=1))
    assert first["status"] == "pending" and pd.Timestamp(again["created_at"]) == pd.Timestamp(T0)
    assert len(audit(lake)) == 1


def test_decisions_without_an_audit_row_are_found(lake, backend, rx):
    stored_decision(lake, "dec-orphan", decided_at=T0)
    stored_decision(lake, "dec-old", decided_at=T0 - timedelta(days=30))
    stored_decision(lake, "dec-pass", decided_at=T0, state="pass", action="none")
    stored_decision(lake, "dec-done", decided_at=T0)
    executor.act(lake, backend, ledger.read_decision(lake, "dec-done"), now=T0, **NO_SLEEP)
    assert ledger.unacted_decisions(lake, since=T0 - timedelta(days=7)) == ["dec-orphan"]
    assert ledger.unacted_decisions(Lake(lake.root + "-empty"), since=T0) == []
