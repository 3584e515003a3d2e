"""Decision -> flag action: ladder math, exactly-once at the backend, retries, cooldown, holds,
approvals, promotion gate. The backend is the signed webhook backend talking to a real local HTTP
receiver that counts every request it gets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from rollback_assets.core import actions as A
from rollback_assets.core.actions import FlagPolicy, can_promote, execute_action, plan_action
from rollback_assets.core.flags import FlagState, FlagTarget, TransientBackendError, make_flag_backend
from rollback_assets.core.lake import Lake
from rollback_assets.core.notify import RecordingNotifier
from rollback_assets.core.schemas import DECISIONS, FLAG_ACTIONS, RELEASE_ARTIFACTS

from webhook_receiver import WebhookReceiver

SECRET = "whsec-actions-abcdef0123456789"
T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
LADDER = {"flag_key": "checkout", "version": "7.1", "ladder": [100, 25, 5, 0], "fallback_variant": None}
NO_SLEEP = dict(sleep=lambda s: None)


def decision(did, severity="moderate", action="step_down", state="act", cohort="all", flag="checkout", **kw):
    return {
        "decision_id": did, "flag_key": flag, "release_version": "7.1", "cohort": cohort, "state": state,
        "action": action, "severity": severity, "reason": "Negative share rose", "policy_name": "ratio",
        "policy_version": "3", "code_commit": "abc123", "run_id": "decide-run-1", **kw,
    }


def st(rollout, enabled=True, variant=None):
    return FlagState("checkout", enabled, rollout, variant)


@pytest.fixture
def rx():
    r = WebhookReceiver(SECRET).start()
    r.flags["checkout"] = {"enabled": True, "rollout": 100, "variant": None}
    yield r
    r.stop()


@pytest.fixture
def backend(rx):
    return make_flag_backend("webhook", url=rx.url, secret=SECRET)


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path / "lake")


def actions(lake):
    return lake.read(FLAG_ACTIONS)


# ---------------------------------------------------------------------------------------------- ladder
@pytest.mark.parametrize(
    "current,severity,action,release,expected_kind,expected",
    [
        (st(100), "moderate", "step_down", LADDER, "step_down", FlagTarget(True, 25)),
        (st(25), "moderate", "step_down", LADDER, "step_down", FlagTarget(True, 5)),
        (st(5), "moderate", "step_down", LADDER, "disable", FlagTarget(False, 0)),
        (st(5), "moderate", "step_down", {**LADDER, "fallback_variant": "legacy"}, "switch_variant", FlagTarget(True, 0, "legacy")),
        (st(40), "moderate", "step_down", LADDER, "step_down", FlagTarget(True, 25)),  # between rungs: next lower rung
        (st(100), "severe", "step_down", LADDER, "disable", FlagTarget(False, 0)),
        (st(100), "severe", "step_down", {**LADDER, "fallback_variant": "legacy"}, "switch_variant", FlagTarget(True, 0, "legacy")),
        (st(100), "moderate", "disable", {**LADDER, "fallback_variant": "legacy"}, "disable", FlagTarget(False, 0)),
        (st(100), "moderate", "step_down", {**LADDER, "ladder": [100, 50, 10, 0]}, "step_down", FlagTarget(True, 50)),
        (st(50), "moderate", "step_down", {**LADDER, "ladder": [100, 50, 10, 0]}, "step_down", FlagTarget(True, 10)),
        (st(100), "moderate", "step_down", None, "step_down", FlagTarget(True, 25)),  # default ladder
        (st(25), "moderate", "step_down", {**LADDER, "ladder": []}, "step_down", FlagTarget(True, 5)),
    ],
)
def test_ladder_math(current, severity, action, release, expected_kind, expected):
    plan = plan_action(decision("d", severity=severity, action=action), release, current, backend="webhook")
    assert (plan.kind, plan.target, plan.status) == (expected_kind, expected, "ready")


def test_no_op_and_already_at_fallback():
    for state, action in (("pass", "none"), ("hold", "hold_promotion"), ("insufficient_data", "none")):
        assert plan_action(decision("d", state=state, action=action, severity="none"), LADDER, st(100), backend="w").status == "noop"
    plan = plan_action(decision("d"), LADDER, st(25, enabled=False), backend="w")
    assert plan.status == "skipped" and "already" in plan.reason
    plan = plan_action(decision("d", severity="severe"), {**LADDER, "fallback_variant": "legacy"}, st(0, True, "legacy"), backend="w")
    assert plan.status == "skipped"
    # A decision computed against 100% (target 25) must not push a flag that is already at 25 to 5.
    plan = plan_action(decision("d", target_rollout=25), LADDER, st(25), backend="w")
    assert plan.status == "skipped" and "not stepping twice" in plan.reason


def test_ambiguous_decisions_wait_for_a_human():
    low = plan_action(decision("d", severity="low"), LADDER, st(100), backend="w")
    assert low.status == "awaiting_approval" and low.target == FlagTarget(True, 25)
    no_variant = plan_action(decision("d", action="switch_variant"), LADDER, st(100), backend="w")
    assert no_variant.status == "awaiting_approval" and "fallback_variant" in no_variant.reason
    unsure = plan_action(decision("d", mean_confidence=0.4), LADDER, st(100), backend="w", policy=FlagPolicy(min_confidence=0.6))
    assert unsure.status == "awaiting_approval"
    sure = plan_action(decision("d", mean_confidence=0.9), LADDER, st(100), backend="w", policy=FlagPolicy(min_confidence=0.6))
    assert sure.status == "ready"


# ---------------------------------------------------------------------------------------------- exactly once
def test_exactly_once_across_reruns(lake, backend, rx):
    notifier = RecordingNotifier()
    d = decision("dec-1")
    plan = plan_action(d, LADDER, backend.get_state("checkout"), backend="webhook")
    for i in range(3):
        res = execute_action(lake, backend, plan, notifier=notifier, decision=d, now=T0 + timedelta(seconds=i), run_id=f"run-{i}")
        assert res.status == "applied"
    assert rx.flag_posts == 1 and rx.changes["checkout"] == 1
    assert rx.flags["checkout"]["rollout"] == 25
    rows = actions(lake)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row.action_id, row.decision_id, row.status, row.actor) == ("dec-1", "dec-1", "applied", "auto")
    assert (row.before_rollout, row.target_rollout, row.after_rollout, row.attempts) == (100, 25, 25, 1)
    lineage = json.loads(row.lineage)
    assert lineage["policy_name"] == "ratio" and lineage["action_run_id"] == "run-0" and lineage["idempotency_key"] == "dec-1"
    assert rx.posts[0]["idempotency_key"] == "dec-1"
    assert len(notifier.sent) == 1 and notifier.sent[0]["dedup_key"] == "dec-1:applied"


class CrashAfterCall(Lake):
    """Dies (like a killed daemon) when it is about to record that the backend call succeeded."""

    def merge(self, table, frame, update_when=None):
        if table is FLAG_ACTIONS and (frame["status"] == "applied").any():
            raise SystemExit("daemon killed")
        return super().merge(table, frame, update_when)


def test_exactly_once_across_a_restart_mid_call(tmp_path, rx):
    root = tmp_path / "lake"
    backend = make_flag_backend("webhook", url=rx.url, secret=SECRET)
    plan = plan_action(decision("dec-crash"), LADDER, backend.get_state("checkout"), backend="webhook")
    with pytest.raises(SystemExit):
        execute_action(CrashAfterCall(root), backend, plan, now=T0)
    assert rx.flag_posts == 1
    assert Lake(root).read(FLAG_ACTIONS).iloc[0].status == "pending"  # written before the call
    # "Restart": fresh lake handle, fresh client; the sensor runs the same decision again.
    fresh_backend = make_flag_backend("webhook", url=rx.url, secret=SECRET)
    res = execute_action(Lake(root), fresh_backend, plan, now=T0 + timedelta(minutes=1))
    assert res.status == "applied" and res.called_backend == 0 and "reconciled" in res.message
    assert rx.flag_posts == 1 and rx.changes["checkout"] == 1
    res = execute_action(Lake(root), fresh_backend, plan, now=T0 + timedelta(minutes=2))
    assert res.called_backend == 0 and rx.flag_posts == 1


# ---------------------------------------------------------------------------------------------- failures
def test_failing_backend_stays_pending_then_applies_once(lake, backend, rx):
    sleeps = []
    policy = FlagPolicy(max_attempts=3, backoff_s=0.1, max_backoff_s=0.15)
    plan = plan_action(decision("dec-f"), LADDER, backend.get_state("checkout"), backend="webhook")
    rx.fail_next = [503, 502, 500]
    res = execute_action(lake, backend, plan, policy=policy, now=T0, sleep=sleeps.append)
    assert res.status == "pending" and res.called_backend == 3 and rx.flag_posts == 3
    assert sleeps == [0.1, 0.15]  # bounded, growing backoff between attempts
    row = actions(lake).iloc[0]
    assert row.status == "pending" and row.attempts == 3 and "500" in row.last_error
    assert rx.flags["checkout"]["rollout"] == 100

    # The next sensor tick retries every pending row; it applies exactly once.
    results = A.retry_open_actions(lake, lambda name, flag: backend, policy_for=lambda f: policy, now=T0 + timedelta(minutes=1), **NO_SLEEP)
    assert [r.status for r in results] == ["applied"]
    row = actions(lake).iloc[0]
    assert row.status == "applied" and row.attempts == 4 and pd.isna(row.last_error)
    assert rx.changes["checkout"] == 1 and rx.flag_posts == 4
    assert A.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=2), **NO_SLEEP) == []
    assert execute_action(lake, backend, plan, now=T0 + timedelta(minutes=3)).called_backend == 0


def test_connection_refused_then_recovers(lake, rx):
    dead = make_flag_backend("webhook", url="http://127.0.0.1:9", secret=SECRET, timeout=1)
    live = make_flag_backend("webhook", url=rx.url, secret=SECRET)
    plan = plan_action(decision("dec-c"), LADDER, st(100), backend="webhook")
    res = execute_action(lake, dead, plan, policy=FlagPolicy(max_attempts=2), now=T0, **NO_SLEEP)
    assert res.status == "pending" and "ConnectError" in res.row["last_error"]
    res = execute_action(lake, live, plan, now=T0 + timedelta(minutes=1), **NO_SLEEP)
    assert res.status == "applied" and rx.changes["checkout"] == 1


class LeakyBackend:
    """A backend whose errors echo its credentials: the executor must still redact them."""

    name = "webhook"

    def __init__(self, token, permanent=False):
        self.token, self.permanent, self.calls = token, permanent, 0

    def secrets(self):
        return (self.token,)

    def get_state(self, flag_key):
        return FlagState(flag_key, True, 100)

    def apply(self, flag_key, target, *, idempotency_key, comment=""):
        self.calls += 1
        from rollback_assets.core.flags import PermanentBackendError

        cls = PermanentBackendError if self.permanent else TransientBackendError
        raise cls(f"upstream said: bad header X-Api: {self.token} (Authorization: Bearer {self.token})")


def test_secrets_never_reach_the_audit_table(lake):
    token = "sk_live_9f8e7d6c5b4a39281706"
    leaky = LeakyBackend(token)
    plan = plan_action(decision("dec-s"), LADDER, st(100), backend="webhook")
    res = execute_action(lake, leaky, plan, policy=FlagPolicy(max_attempts=2), now=T0, **NO_SLEEP)
    assert res.status == "pending" and leaky.calls == 2
    dump = actions(lake).to_json()
    assert token not in dump and "***" in res.row["last_error"]


def test_permanent_failure_is_final(lake):
    leaky = LeakyBackend("sk_live_9f8e7d6c5b4a39281706", permanent=True)
    plan = plan_action(decision("dec-p"), LADDER, st(100), backend="webhook")
    notifier = RecordingNotifier()
    res = execute_action(lake, leaky, plan, now=T0, notifier=notifier, **NO_SLEEP)
    assert res.status == "failed" and leaky.calls == 1
    assert notifier.sent[0]["severity"] == "critical"
    assert execute_action(lake, leaky, plan, now=T0 + timedelta(hours=1), **NO_SLEEP).called_backend == 0
    assert A.retry_open_actions(lake, lambda *a: leaky, **NO_SLEEP) == [] and leaky.calls == 1


# ---------------------------------------------------------------------------------------------- guards
def test_cooldown_then_next_step(lake, backend, rx):
    policy = FlagPolicy(cooldown=timedelta(minutes=60))
    a = plan_action(decision("dec-a", cohort="device=mobile"), LADDER, backend.get_state("checkout"), backend="webhook")
    assert execute_action(lake, backend, a, policy=policy, now=T0).status == "applied"
    # Another cohort's decision ten minutes later: same flag, inside the cooldown.
    b = plan_action(decision("dec-b", cohort="region=EU"), LADDER, backend.get_state("checkout"), backend="webhook")
    assert b.target == FlagTarget(True, 5)
    res = execute_action(lake, backend, b, policy=policy, now=T0 + timedelta(minutes=10))
    assert res.status == "skipped" and "cooldown" in res.row["reason"] and rx.flag_posts == 1
    # The same tick again writes nothing new.
    version = lake.version(FLAG_ACTIONS)
    execute_action(lake, backend, b, policy=policy, now=T0 + timedelta(minutes=11))
    assert lake.version(FLAG_ACTIONS) == version
    # After the cooldown the still-open decision acts.
    res = execute_action(lake, backend, b, policy=policy, now=T0 + timedelta(minutes=61))
    assert res.status == "applied" and rx.flags["checkout"]["rollout"] == 5 and rx.flag_posts == 2


def test_never_ramps_back_up_automatically(lake, backend, rx):
    stale = plan_action(decision("dec-stale"), LADDER, backend.get_state("checkout"), backend="webhook")  # 100 -> 25
    A.force(lake, backend, "checkout", actor="alice", reason="incident: manual cut", rollout=5, now=T0, **NO_SLEEP)
    assert rx.flags["checkout"]["rollout"] == 5
    res = execute_action(lake, backend, stale, policy=FlagPolicy(cooldown=timedelta(0)), now=T0 + timedelta(hours=3))
    assert res.status == "skipped" and "never ramp up" in res.row["reason"]
    assert rx.flags["checkout"]["rollout"] == 5 and rx.flag_posts == 1
    forced = actions(lake).set_index("kind").loc["force"]
    assert forced.actor == "human:alice" and forced.reason == "incident: manual cut" and forced.after_rollout == 5


def test_hold_blocks_until_released_or_expired(lake, backend, rx):
    h = A.hold(lake, "checkout", until=T0 + timedelta(hours=1), actor="bob", reason="launch event", now=T0)
    assert h["status"] == "applied" and h["actor"] == "human:bob"
    plan = plan_action(decision("dec-h"), LADDER, backend.get_state("checkout"), backend="webhook")
    res = execute_action(lake, backend, plan, now=T0 + timedelta(minutes=5))
    assert res.status == "skipped" and "held by human:bob" in res.row["reason"] and rx.flag_posts == 0
    # Hold expiry lifts the block.
    assert execute_action(lake, backend, plan, now=T0 + timedelta(hours=2)).status == "applied"

    A.hold(lake, "checkout", until=T0 + timedelta(days=1), actor="bob", reason="again", now=T0 + timedelta(hours=3))
    p2 = plan_action(decision("dec-h2"), LADDER, backend.get_state("checkout"), backend="webhook")
    assert execute_action(lake, backend, p2, now=T0 + timedelta(hours=5)).status == "skipped"
    A.release_hold(lake, "checkout", actor="bob", reason="event over", now=T0 + timedelta(hours=6))
    assert execute_action(lake, backend, p2, now=T0 + timedelta(hours=6, minutes=1)).status == "applied"
    assert rx.flags["checkout"]["rollout"] == 5
    kinds = actions(lake).kind.value_counts().to_dict()
    assert kinds["hold"] == 2 and kinds["release_hold"] == 1
    # The plan-time guard agrees when given the history.
    A.hold(lake, "checkout", until=T0 + timedelta(days=1), actor="bob", reason="x", now=T0 + timedelta(hours=7))
    planned = plan_action(decision("dec-h3"), LADDER, st(5), backend="webhook", history=A.flag_history(lake, "checkout"), now=T0 + timedelta(hours=8))
    assert planned.status == "skipped" and "held" in planned.reason


def test_a_hold_without_an_end_lasts_until_released(lake, backend, rx):
    held = A.hold(lake, "checkout", actor="bob", reason="investigating", now=T0)
    assert held["hold_until"] is None or pd.isna(held["hold_until"])
    plan = plan_action(decision("dec-open"), LADDER, backend.get_state("checkout"), backend="webhook")
    assert execute_action(lake, backend, plan, now=T0 + timedelta(days=30)).status == "skipped" and rx.flag_posts == 0
    A.release_hold(lake, "checkout", actor="bob", now=T0 + timedelta(days=31))
    assert execute_action(lake, backend, plan, now=T0 + timedelta(days=31, minutes=1)).status == "applied"
    with pytest.raises(ValueError, match="in the future"):
        A.hold(lake, "checkout", until=T0 - timedelta(hours=1), actor="bob", reason="x", now=T0)


def test_approval_mode_approve_and_reject(lake, backend, rx):
    policy = FlagPolicy(approval_mode="approve")
    notifier = RecordingNotifier()
    d = decision("dec-ap")
    plan = plan_action(d, LADDER, backend.get_state("checkout"), backend="webhook", policy=policy)
    assert plan.status == "awaiting_approval"
    for i in range(2):
        res = execute_action(lake, backend, plan, policy=policy, notifier=notifier, decision=d, now=T0 + timedelta(minutes=i))
        assert res.status == "awaiting_approval"
    assert rx.flag_posts == 0 and len(notifier.sent) == 1 and "Approval needed" in notifier.sent[0]["summary"]
    with pytest.raises(ValueError):
        A.approve(lake, backend, "dec-ap", approver="auto")
    res = A.approve(lake, backend, "dec-ap", approver="carol", reason="looks real", policy=policy, notifier=notifier, now=T0 + timedelta(minutes=5))
    assert res.status == "applied" and rx.flags["checkout"]["rollout"] == 25 and rx.flag_posts == 1
    rows = actions(lake).set_index("action_id")
    assert rows.loc["dec-ap"].approver == "human:carol" and rows.loc["dec-ap"].actor == "auto"
    assert rows.loc["approve:dec-ap"].kind == "approve" and rows.loc["approve:dec-ap"].reason == "looks real"
    assert notifier.sent[-1]["status"] == "applied"
    with pytest.raises(ValueError):
        A.approve(lake, backend, "dec-ap", approver="carol")  # already applied

    d2 = decision("dec-rj")
    plan2 = plan_action(d2, LADDER, backend.get_state("checkout"), backend="webhook", policy=policy)
    execute_action(lake, backend, plan2, policy=policy, now=T0 + timedelta(hours=2))
    A.reject(lake, "dec-rj", approver="dave", reason="spam wave, not the release", now=T0 + timedelta(hours=2, minutes=1))
    res = execute_action(lake, backend, plan2, policy=FlagPolicy(), now=T0 + timedelta(hours=3))
    assert res.status == "rejected" and res.called_backend == 0 and rx.flag_posts == 1
    rows = actions(lake).set_index("action_id")
    assert rows.loc["reject:dec-rj"].actor == "human:dave" and "spam wave" in rows.loc["dec-rj"].reason


def test_ambiguous_decision_waits_even_in_auto_mode(lake, backend, rx):
    plan = plan_action(decision("dec-amb", severity="low"), LADDER, backend.get_state("checkout"), backend="webhook")
    res = execute_action(lake, backend, plan, now=T0)
    assert res.status == "awaiting_approval" and rx.flag_posts == 0


# ---------------------------------------------------------------------------------------------- promotion gate
def write_decisions(lake, *rows):
    base = {"baseline_kind": "concurrent", "window_start": T0 - timedelta(days=1), "window_end": T0, "n": 300,
            "baseline_n": 900, "policy_name": "ratio", "policy_version": "3"}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    lake.merge(DECISIONS, frame)


def test_promotion_gate(lake, backend, rx):
    nocool = FlagPolicy(cooldown=timedelta(0))
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0)
    assert ok, why
    write_decisions(lake, {**decision("dec-g1"), "decided_at": T0})
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0)
    assert not ok and "dec-g1" in why
    res = A.promote(lake, backend, "checkout", to=100, actor="erin", policy=nocool, now=T0, **NO_SLEEP)
    assert res.status == "rejected" and rx.flag_posts == 0
    assert actions(lake).iloc[0].kind == "promote" and actions(lake).iloc[0].status == "rejected"

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
    execute_action(lake, backend, plan_action(decision("dec-g3", cohort="region=EU", severity="low"), LADDER, backend.get_state("checkout"), backend="webhook"), now=T0 + timedelta(hours=5))
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0 + timedelta(hours=6))
    assert not ok and "awaiting_approval" in why
    A.reject(lake, "dec-g3", approver="erin", reason="noise", now=T0 + timedelta(hours=6))
    assert can_promote("checkout", lake, policy=nocool, now=T0 + timedelta(hours=6))[0]
    A.hold(lake, "checkout", until=T0 + timedelta(days=1), actor="erin", reason="freeze", now=T0 + timedelta(hours=6))
    ok, why = can_promote("checkout", lake, policy=nocool, now=T0 + timedelta(hours=7))
    assert not ok and "held" in why
    A.release_hold(lake, "checkout", actor="erin", now=T0 + timedelta(hours=7))
    res = A.promote(lake, backend, "checkout", to=100, actor="erin", reason="recovered", policy=nocool, now=T0 + timedelta(hours=8), **NO_SLEEP)
    assert res.status == "applied" and rx.flags["checkout"]["rollout"] == 100
    assert res.row["before_rollout"] == 25 and res.row["actor"] == "human:erin"


# ---------------------------------------------------------------------------------------------- intent before effect
def stored_decision(lake, did, decided_at=T0, **kw) -> dict:
    """A decision as the graph stores it (rollback_decisions), plus its release."""
    d = decision(did, baseline_kind="concurrent", window_start=decided_at - timedelta(days=7), window_end=decided_at,
                 n=400, baseline_n=900, decided_at=decided_at, target_rollout=25, **kw)
    lake.merge(DECISIONS, pd.DataFrame([d]))
    if not lake.exists(RELEASE_ARTIFACTS):
        lake.merge(RELEASE_ARTIFACTS, pd.DataFrame([{**LADDER, "released_at": T0 - timedelta(days=10), "registered_at": T0}]))
    return d


def test_a_failed_state_read_leaves_an_intent_row_that_the_retry_plans_and_applies_once(lake, backend, rx):
    d = stored_decision(lake, "dec-intent")
    del rx.flags["checkout"]  # the flag is missing: reading its state fails permanently
    res = A.act(lake, backend, d, now=T0, run_id="run-1", **NO_SLEEP)
    assert res.status == "pending" and "404" in res.message and rx.flag_posts == 0
    row = actions(lake).iloc[0]
    assert (row.action_id, row.status, row.kind, row.actor, row.attempts) == ("dec-intent", "pending", "step_down", "auto", 1)
    assert pd.isna(row.before_enabled) and pd.isna(row.target_rollout), "not planned: no state was read"
    assert not A.planned(row.to_dict()) and json.loads(row.lineage)["action_run_id"] == "run-1"

    assert A.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=1), **NO_SLEEP)[0].status == "pending"
    assert actions(lake).iloc[0].attempts == 2 and rx.flag_posts == 0

    rx.flags["checkout"] = {"enabled": True, "rollout": 100, "variant": None}  # repaired
    (res,) = A.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=2), **NO_SLEEP)
    assert res.status == "applied" and res.called_backend == 1
    row = actions(lake).iloc[0]
    assert (row.status, row.before_rollout, row.target_rollout, row.after_rollout, row.last_error) == ("applied", 100, 25, 25, None)
    assert row.created_at == pd.Timestamp(T0), "the row is the intent written first"
    assert A.retry_open_actions(lake, lambda name, flag: backend, **NO_SLEEP) == []
    assert A.act(lake, backend, d, **NO_SLEEP).called_backend == 0 and rx.flag_posts == 1 and rx.changes["checkout"] == 1


def test_intent_is_written_before_anything_else_and_only_for_acting_decisions(lake):
    assert A.record_intent(lake, decision("dec-pass", state="pass", action="none"), backend="webhook") is None
    assert A.record_intent(lake, decision("dec-hold", state="act", action="hold_promotion"), backend="webhook") is None
    assert not lake.exists(FLAG_ACTIONS)
    first = A.record_intent(lake, decision("dec-i"), backend="webhook", now=T0)
    again = A.record_intent(lake, decision("dec-i"), backend="webhook", now=T0 + timedelta(hours=1))
    assert first["status"] == "pending" and pd.Timestamp(again["created_at"]) == pd.Timestamp(T0)
    assert len(actions(lake)) == 1


def test_decisions_without_an_audit_row_are_found(lake, backend, rx):
    stored_decision(lake, "dec-orphan", decided_at=T0)
    stored_decision(lake, "dec-old", decided_at=T0 - timedelta(days=30))
    stored_decision(lake, "dec-pass", decided_at=T0, state="pass", action="none")
    stored_decision(lake, "dec-done", decided_at=T0)
    A.act(lake, backend, A._decision(lake, "dec-done"), now=T0, **NO_SLEEP)
    assert A.unacted_decisions(lake, since=T0 - timedelta(days=7)) == ["dec-orphan"]
    assert A.unacted_decisions(Lake(lake.root + "-empty"), since=T0) == []
