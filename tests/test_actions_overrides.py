"""Human overrides: holds (timed and open-ended), approval mode with approve and reject, and the promotion
gate, against the signed webhook backend and a real local receiver."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from rollback_assets.core.actions import ledger, overrides
from rollback_assets.core.actions.executor import execute_action
from rollback_assets.core.actions.overrides import can_promote
from rollback_assets.core.actions.plan import FlagPolicy, plan_action

from flag_actions_support import LADDER, NO_SLEEP, T0, RecordingNotifier, audit, decision, st, write_decisions


def test_hold_blocks_until_released_or_expired(lake, backend, rx):
    hourly = FlagPolicy(cooldown=timedelta(hours=1))  # the holds decide here, not the cooldown
    h = overrides.hold(lake, "checkout", until=T0 + timedelta(hours=1), actor="bob", reason="launch event", now=T0)
    assert h["status"] == "applied" and h["actor"] == "human:bob"
    plan = plan_action(decision("dec-h"), LADDER, backend.get_state("checkout"), backend="webhook")
    res = execute_action(lake, backend, plan, policy=hourly, now=T0 + timedelta(minutes=5))
    assert res.status == "skipped" and "held by human:bob" in res.row["reason"] and rx.flag_posts == 0
    # Hold expiry lifts the block.
    assert execute_action(lake, backend, plan, policy=hourly, now=T0 + timedelta(hours=2)).status == "applied"

    overrides.hold(lake, "checkout", until=T0 + timedelta(days=1), actor="bob", reason="again", now=T0 + timedelta(hours=3))
    p2 = plan_action(decision("dec-h2"), LADDER, backend.get_state("checkout"), backend="webhook")
    assert execute_action(lake, backend, p2, policy=hourly, now=T0 + timedelta(hours=5)).status == "skipped"
    overrides.release_hold(lake, "checkout", actor="bob", reason="event over", now=T0 + timedelta(hours=6))
    assert execute_action(lake, backend, p2, policy=hourly, now=T0 + timedelta(hours=6, minutes=1)).status == "applied"
    assert rx.flags["checkout"]["rollout"] == 5
    kinds = audit(lake).kind.value_counts().to_dict()
    assert kinds["hold"] == 2 and kinds["release_hold"] == 1
    # The plan-time guard agrees when given the history.
    overrides.hold(lake, "checkout", until=T0 + timedelta(days=1), actor="bob", reason="x", now=T0 + timedelta(hours=7))
    planned = plan_action(decision("dec-h3"), LADDER, st(5), backend="webhook", history=ledger.flag_history(lake, "checkout"), now=T0 + timedelta(hours=8))
    assert planned.status == "skipped" and "held" in planned.reason


def test_a_hold_without_an_end_lasts_until_released(lake, backend, rx):
    held = overrides.hold(lake, "checkout", actor="bob", reason="investigating", now=T0)
    assert held["hold_until"] is None or pd.isna(held["hold_until"])
    plan = plan_action(decision("dec-open"), LADDER, backend.get_state("checkout"), backend="webhook")
    assert execute_action(lake, backend, plan, now=T0 + timedelta(days=30)).status == "skipped" and rx.flag_posts == 0
    overrides.release_hold(lake, "checkout", actor="bob", now=T0 + timedelta(days=31))
    assert execute_action(lake, backend, plan, now=T0 + timedelta(days=31, minutes=1)).status == "applied"
    with pytest.raises(ValueError, match="in the future"):
        overrides.hold(lake, "checkout", until=T0 - timedelta(hours=1), actor="bob", reason="x", now=T0)


def test_approval_mode_approve_and_reject(lake, backend, rx):
    policy = FlagPolicy(approval_mode="approve", cooldown=timedelta(hours=1))
    notifier = RecordingNotifier()
    d = decision("dec-ap")
    plan = plan_action(d, LADDER, backend.get_state("checkout"), backend="webhook", policy=policy)
    assert plan.status == "awaiting_approval"
    for i in range(2):
        res = execute_action(lake, backend, plan, policy=policy, notifier=notifier, decision=d, now=T0 + timedelta(minutes=i))
        assert res.status == "awaiting_approval"
    assert rx.flag_posts == 0 and len(notifier.sent) == 1 and "Approval needed" in notifier.sent[0]["summary"]
    with pytest.raises(ValueError):
        overrides.approve(lake, backend, "dec-ap", approver="auto")
    res = overrides.approve(lake, backend, "dec-ap", approver="carol", reason="looks real", policy=policy, notifier=notifier, now=T0 + timedelta(minutes=5))
    assert res.status == "applied" and rx.flags["checkout"]["rollout"] == 25 and rx.flag_posts == 1
    rows = audit(lake).set_index("action_id")
    assert rows.loc["dec-ap"].approver == "human:carol" and rows.loc["dec-ap"].actor == "auto"
    assert rows.loc["approve:dec-ap"].kind == "approve" and rows.loc["approve:dec-ap"].reason == "looks real"
    assert notifier.sent[-1]["status"] == "applied"
    with pytest.raises(ValueError):
        overrides.approve(lake, backend, "dec-ap", approver="carol")  # already applied

    d2 = decision("dec-rj")
    plan2 = plan_action(d2, LADDER, backend.get_state("checkout"), backend="webhook", policy=policy)
    execute_action(lake, backend, plan2, policy=policy, now=T0 + timedelta(hours=2))
    overrides.reject(lake, "dec-rj", approver="dave", reason="spam wave, not the release", now=T0 + timedelta(hours=2, minutes=1))
    res = execute_action(lake, backend, plan2, policy=FlagPolicy(), now=T0 + timedelta(hours=3))
    assert res.status == "rejected" and res.called_backend == 0 and rx.flag_posts == 1
    rows = audit(lake).set_index("action_id")
    assert rows.loc["reject:dec-rj"].actor == "human:dave" and "spam wave" in rows.loc["dec-rj"].reason


def test_promotion_gate(lake, backend, rx):
    nocool = FlagPolicy(cooldown=timedelta(0))
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0)
    assert ok, why
    write_decisions(lake, {**decision("dec-g1"), "decided_at": T0})
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0)
    assert not ok and "dec-g1" in why
    res = overrides.promote(lake, backend, "checkout", to=100, actor="erin", policy=nocool, now=T0, **NO_SLEEP)
    assert res.status == "rejected" and rx.flag_posts == 0
    assert audit(lake).iloc[0].kind == "promote" and audit(lake).iloc[0].status == "rejected"

    # Acting on it, then a newer passing decision for the cohort closes it.
    plan = plan_action(decision("dec-g1"), LADDER, backend.get_state("checkout"), backend="webhook")
    execute_action(lake, backend, plan, policy=FlagPolicy(), now=T0)
    ok, why = can_promote("checkout", lake, policy=FlagPolicy(cooldown=timedelta(hours=4)), now=T0 + timedelta(hours=1))
    assert not ok  # the act decision is still the latest
    write_decisions(lake, {**decision("dec-g2", state="pass", action="none", severity="none"), "decided_at": T0 + timedelta(hours=2)})
    ok, why = can_promote("checkout", lake, policy=FlagPolicy(cooldown=timedelta(hours=4)), now=T0 + timedelta(hours=3))
    assert not ok and "cooldown" in why
    assert can_promote("checkout", lake, guardrail_ok=False, guardrail_reason="complaint rate check failed", policy=nocool, now=T0 + timedelta(hours=5)) == (
        False, "guardrail check failing: complaint rate check failed")
    ok, why = can_promote("checkout", lake, policy=FlagPolicy(cooldown=timedelta(hours=4)), now=T0 + timedelta(hours=5))
    assert ok, why
    # A pending approval or a hold blocks promotion too.
    write_decisions(lake, {**decision("dec-g3", cohort="region=EU", severity="low"), "decided_at": T0 + timedelta(hours=5)})
    execute_action(lake, backend, plan_action(decision("dec-g3", cohort="region=EU", severity="low"), LADDER, backend.get_state("checkout"), backend="webhook"),
                   policy=nocool, now=T0 + timedelta(hours=5))
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0 + timedelta(hours=6))
    assert not ok and "awaiting_approval" in why
    overrides.reject(lake, "dec-g3", approver="erin", reason="noise", now=T0 + timedelta(hours=6))
    assert can_promote("checkout", lake, policy=nocool, now=T0 + timedelta(hours=6))[0]
    overrides.hold(lake, "checkout", until=T0 + timedelta(days=1), actor="erin", reason="freeze", now=T0 + timedelta(hours=6))
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0 + timedelta(hours=7))
    assert not ok and "held" in why
    overrides.release_hold(lake, "checkout", actor="erin", now=T0 + timedelta(hours=7))
    res = overrides.promote(lake, backend, "checkout", to=100, actor="erin", reason="recovered", policy=nocool, now=T0 + timedelta(hours=8), **NO_SLEEP)
    assert res.status == "applied" and rx.flags["checkout"]["rollout"] == 100
    assert res.row["before_rollout"] == 25 and res.row["actor"] == "human:erin"
