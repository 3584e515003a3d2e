"""Carrying a plan out exactly once: re-runs, a restart mid-call, retries and permanent failures, redaction,
the cooldown and never ramping up, intent before effect. The backend is the signed webhook backend
talking to a real local HTTP receiver that counts every request it gets."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pandas as pd
import pytest

from rollback_assets.core.actions import executor, ledger, overrides
from rollback_assets.core.actions.executor import execute_action
from rollback_assets.core.actions.plan import FlagPolicy, plan_action
from rollback_assets.core.flags import FlagState, FlagTarget, TransientBackendError, make_flag_backend
from rollback_assets.core.lake import Lake
from rollback_assets.core.schemas import FLAG_ACTIONS

from flag_actions_support import (
    LADDER, NO_SLEEP, T0, WEBHOOK_SECRET, RecordingNotifier, audit, decision, st, stored_decision,
)


def test_exactly_once_across_reruns(lake, backend, rx):
    notifier = RecordingNotifier()
    d = decision("dec-1")
    plan = plan_action(d, LADDER, backend.get_state("checkout"), backend="webhook")
    for i in range(3):
        res = execute_action(lake, backend, plan, notifier=notifier, decision=d, now=T0 + timedelta(seconds=i), run_id=f"run-{i}")
        assert res.status == "applied"
    assert rx.flag_posts == 1 and rx.changes["checkout"] == 1
    assert rx.flags["checkout"]["rollout"] == 25
    rows = audit(lake)
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
    backend = make_flag_backend("webhook", url=rx.url, secret=WEBHOOK_SECRET)
    plan = plan_action(decision("dec-crash"), LADDER, backend.get_state("checkout"), backend="webhook")
    with pytest.raises(SystemExit):
        execute_action(CrashAfterCall(root), backend, plan, now=T0)
    assert rx.flag_posts == 1
    assert Lake(root).read(FLAG_ACTIONS).iloc[0].status == "pending"  # written before the call
    # "Restart": fresh lake handle, fresh client; the sensor runs the same decision again.
    fresh_backend = make_flag_backend("webhook", url=rx.url, secret=WEBHOOK_SECRET)
    res = execute_action(Lake(root), fresh_backend, plan, now=T0 + timedelta(minutes=1))
    assert res.status == "applied" and res.called_backend == 0 and "reconciled" in res.message
    assert rx.flag_posts == 1 and rx.changes["checkout"] == 1
    res = execute_action(Lake(root), fresh_backend, plan, now=T0 + timedelta(minutes=2))
    assert res.called_backend == 0 and rx.flag_posts == 1


def test_two_runs_acting_on_one_row_at_once_call_the_backend_once(tmp_path, rx, monkeypatch):
    """Two runs (threads, each its own Lake handle) both plan from the intent row before either claims
    it, as when the orchestrator's pool lets two run workers through together: one calls the backend."""
    root = tmp_path / "lake"
    d = decision("dec-race")
    intent = ledger.record_intent(Lake(root), d, backend="webhook", now=T0, run_id="decide")
    both_planned = threading.Barrier(2, timeout=60)
    write_if_unchanged = ledger.write_if_unchanged

    def claim_together(*args):
        both_planned.wait()  # neither writes its pending row before both have read the row
        return write_if_unchanged(*args)

    monkeypatch.setattr(ledger, "write_if_unchanged", claim_together)
    results = {}

    def run(name):
        backend = make_flag_backend("webhook", url=rx.url, secret=WEBHOOK_SECRET)
        results[name] = executor.resume(Lake(root), backend, intent, decision=d, run_id=name, **NO_SLEEP)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("run-a", "run-b")]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    assert sorted(r.called_backend for r in results.values()) == [0, 1]
    assert rx.flag_posts == 1 and rx.changes["checkout"] == 1
    (winner,) = [name for name, r in results.items() if r.called_backend]
    (loser,) = [r for r in results.values() if not r.called_backend]
    assert f"changed by run {winner} meanwhile" in loser.message
    row = audit(Lake(root)).iloc[0]
    assert (row.status, row.after_rollout, row.attempts) == ("applied", 25, 1)
    assert ledger.acting_run(row) == winner


def test_a_run_that_read_the_row_before_another_applied_it_does_not_overwrite_it(tmp_path, rx, monkeypatch):
    """Run B reads the intent row, then run A plans, calls and records `applied`; B, finding the flag
    already at the target, would record a skip over A's applied row (and a later run would plan a second
    step down from it). B's write is refused instead: the applied row stands, one backend call."""
    root = tmp_path / "lake"
    d = decision("dec-stale")
    intent = ledger.record_intent(Lake(root), d, backend="webhook", now=T0, run_id="decide")
    b_has_read, a_is_done = threading.Event(), threading.Event()
    read_action = ledger.read_action

    def read_then_wait_in_b(lake, action_id):
        row = read_action(lake, action_id)
        if threading.current_thread().name == "run-b" and not b_has_read.is_set():
            b_has_read.set()
            a_is_done.wait(60)
        return row

    monkeypatch.setattr(ledger, "read_action", read_then_wait_in_b)
    results = {}

    def run(name):
        backend = make_flag_backend("webhook", url=rx.url, secret=WEBHOOK_SECRET)
        if name == "run-a":
            b_has_read.wait(60)
        results[name] = executor.resume(Lake(root), backend, intent, decision=d, run_id=name, **NO_SLEEP)
        if name == "run-a":
            a_is_done.set()

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in ("run-a", "run-b")]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    assert (results["run-a"].status, results["run-a"].called_backend) == ("applied", 1)
    assert results["run-b"].called_backend == 0 and "changed by run run-a meanwhile" in results["run-b"].message
    row = audit(Lake(root)).iloc[0]
    assert (row.status, row.after_rollout) == ("applied", 25) and ledger.acting_run(row) == "run-a"
    monkeypatch.setattr(ledger, "read_action", read_action)
    backend = make_flag_backend("webhook", url=rx.url, secret=WEBHOOK_SECRET)
    again = executor.act(Lake(root), backend, d, run_id="run-c", **NO_SLEEP)
    assert (again.status, again.called_backend) == ("applied", 0) and rx.flag_posts == 1


def test_a_row_another_run_is_still_calling_is_left_to_it(lake, backend, rx):
    """A planned pending row names the run that claimed it; while that run is alive another run leaves
    the row alone, and once it has ended the row is retried (as after a crash)."""
    plan = plan_action(decision("dec-held"), LADDER, backend.get_state("checkout"), backend="webhook")
    rx.fail_next = [503, 503]
    res = execute_action(lake, backend, plan, policy=FlagPolicy(max_attempts=2), now=T0, run_id="run-a", **NO_SLEEP)
    assert res.status == "pending" and rx.flag_posts == 2
    alive = {"run-a"}
    retried = executor.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=1), run_id="run-b",
                                          still_running=alive.__contains__, **NO_SLEEP)
    assert [(r.status, r.called_backend, r.message) for r in retried] == [("pending", 0, "in flight in run run-a; left to it")]
    assert rx.flag_posts == 2 and audit(lake).iloc[0].attempts == 2
    alive.clear()
    retried = executor.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=2), run_id="run-b",
                                          still_running=alive.__contains__, **NO_SLEEP)
    assert [(r.status, r.called_backend) for r in retried] == [("applied", 1)]
    assert rx.changes["checkout"] == 1 and ledger.acting_run(audit(lake).iloc[0]) == "run-b"


def test_failing_backend_stays_pending_then_applies_once(lake, backend, rx):
    sleeps = []
    policy = FlagPolicy(max_attempts=3, backoff_s=0.1, max_backoff_s=0.15)
    plan = plan_action(decision("dec-f"), LADDER, backend.get_state("checkout"), backend="webhook")
    rx.fail_next = [503, 502, 500]
    res = execute_action(lake, backend, plan, policy=policy, now=T0, sleep=sleeps.append)
    assert res.status == "pending" and res.called_backend == 3 and rx.flag_posts == 3
    assert sleeps == [0.1, 0.15]  # bounded, growing backoff between attempts
    row = audit(lake).iloc[0]
    assert row.status == "pending" and row.attempts == 3 and "500" in row.last_error
    assert rx.flags["checkout"]["rollout"] == 100

    # The next sensor tick retries every pending row; it applies exactly once.
    results = executor.retry_open_actions(lake, lambda name, flag: backend, policy_for=lambda f: policy, now=T0 + timedelta(minutes=1), **NO_SLEEP)
    assert [r.status for r in results] == ["applied"]
    row = audit(lake).iloc[0]
    assert row.status == "applied" and row.attempts == 4 and pd.isna(row.last_error)
    assert rx.changes["checkout"] == 1 and rx.flag_posts == 4
    assert executor.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=2), **NO_SLEEP) == []
    assert execute_action(lake, backend, plan, now=T0 + timedelta(minutes=3)).called_backend == 0


def test_connection_refused_then_recovers(lake, rx):
    dead = make_flag_backend("webhook", url="http://127.0.0.1:9", secret=WEBHOOK_SECRET, timeout=1)
    live = make_flag_backend("webhook", url=rx.url, secret=WEBHOOK_SECRET)
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
    dump = audit(lake).to_json()
    assert token not in dump and "***" in res.row["last_error"]


def test_permanent_failure_is_final(lake):
    leaky = LeakyBackend("sk_live_9f8e7d6c5b4a39281706", permanent=True)
    plan = plan_action(decision("dec-p"), LADDER, st(100), backend="webhook")
    notifier = RecordingNotifier()
    res = execute_action(lake, leaky, plan, now=T0, notifier=notifier, **NO_SLEEP)
    assert res.status == "failed" and leaky.calls == 1
    assert notifier.sent[0]["severity"] == "critical"
    assert execute_action(lake, leaky, plan, now=T0 + timedelta(hours=1), **NO_SLEEP).called_backend == 0
    assert executor.retry_open_actions(lake, lambda *a: leaky, **NO_SLEEP) == [] and leaky.calls == 1


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
    overrides.force(lake, backend, "checkout", actor="alice", reason="incident: manual cut", rollout=5, now=T0, **NO_SLEEP)
    assert rx.flags["checkout"]["rollout"] == 5
    res = execute_action(lake, backend, stale, policy=FlagPolicy(cooldown=timedelta(0)), now=T0 + timedelta(hours=3))
    assert res.status == "skipped" and "never ramp up" in res.row["reason"]
    assert rx.flags["checkout"]["rollout"] == 5 and rx.flag_posts == 1
    forced = audit(lake).set_index("kind").loc["force"]
    assert forced.actor == "human:alice" and forced.reason == "incident: manual cut" and forced.after_rollout == 5


def test_ambiguous_decision_waits_even_in_auto_mode(lake, backend, rx):
    plan = plan_action(decision("dec-amb", severity="low"), LADDER, backend.get_state("checkout"), backend="webhook")
    res = execute_action(lake, backend, plan, now=T0)
    assert res.status == "awaiting_approval" and rx.flag_posts == 0


def test_a_failed_state_read_leaves_an_intent_row_that_the_retry_plans_and_applies_once(lake, backend, rx):
    d = stored_decision(lake, "dec-intent")
    del rx.flags["checkout"]  # the flag is missing: reading its state fails permanently
    res = executor.act(lake, backend, d, now=T0, run_id="run-1", **NO_SLEEP)
    assert res.status == "pending" and "404" in res.message and rx.flag_posts == 0
    row = audit(lake).iloc[0]
    assert (row.action_id, row.status, row.kind, row.actor, row.attempts) == ("dec-intent", "pending", "step_down", "auto", 1)
    assert pd.isna(row.before_enabled) and pd.isna(row.target_rollout), "not planned: no state was read"
    assert not ledger.planned(row.to_dict()) and json.loads(row.lineage)["action_run_id"] == "run-1"

    assert executor.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=1), **NO_SLEEP)[0].status == "pending"
    assert audit(lake).iloc[0].attempts == 2 and rx.flag_posts == 0

    rx.flags["checkout"] = {"enabled": True, "rollout": 100, "variant": None}  # repaired
    (res,) = executor.retry_open_actions(lake, lambda name, flag: backend, now=T0 + timedelta(minutes=2), **NO_SLEEP)
    assert res.status == "applied" and res.called_backend == 1
    row = audit(lake).iloc[0]
    assert (row.status, row.before_rollout, row.target_rollout, row.after_rollout, row.last_error) == ("applied", 100, 25, 25, None)
    assert row.created_at == pd.Timestamp(T0), "the row is the intent written first"
    assert executor.retry_open_actions(lake, lambda name, flag: backend, **NO_SLEEP) == []
    assert executor.act(lake, backend, d, **NO_SLEEP).called_backend == 0 and rx.flag_posts == 1 and rx.changes["checkout"] == 1
