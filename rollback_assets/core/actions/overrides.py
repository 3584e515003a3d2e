"""What humans do about flag changes, each written as its own audit row with actor and reason.

hold / release_hold  block (or unblock) automatic actions on a flag, until a time or until released
approve / reject     decide an action that awaits approval (approve carries it out at once)
force                set the flag directly, in any direction, bypassing the guards
can_promote/promote  the promotion gate: a ramp-up only with no open decision, hold, pending action
                     or cooldown; a refused promotion is audited as a rejected `promote` row
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Callable

import pandas as pd
import pyarrow.dataset as ds

from ..clock import utc
from ..flags.base import FlagBackend, FlagTarget
from ..lake import Lake
from ..notify import Notifier
from ..schemas import DECISIONS
from . import ledger
from .executor import ActionResult, execute_action
from .plan import AUTO, AUTOMATIC_KINDS, CHANGE_KINDS, OPEN, ActionPlan, FlagPolicy, active_hold, as_rows

def _human(actor: str) -> str:
    if not actor or actor == AUTO:
        raise ValueError("a human override needs a named actor")
    return actor if actor.startswith("human:") else f"human:{actor}"


def hold(lake: Lake, flag_key: str, *, until: datetime | None = None, actor: str, reason: str, backend: str = "none",
         now: datetime | None = None) -> dict:
    """Block automatic actions on `flag_key` until `until`, or, without one, until release_hold."""
    now = utc(now)
    if not reason:
        raise ValueError("a hold needs a reason")
    if until is not None:
        until = utc(until)
        if until <= now:
            raise ValueError("hold_until must be in the future")
    row = ledger.audit_row(f"hold:{flag_key}:{uuid.uuid4().hex[:12]}", flag_key, backend, "hold", _human(actor), reason, now, hold_until=until)
    return ledger.write(lake, row)


def release_hold(lake: Lake, flag_key: str, *, actor: str, reason: str = "", backend: str = "none", now: datetime | None = None) -> dict:
    now = utc(now)
    row = ledger.audit_row(f"release_hold:{flag_key}:{uuid.uuid4().hex[:12]}", flag_key, backend, "release_hold", _human(actor), reason or "hold released", now)
    return ledger.write(lake, row)


def approve(
    lake: Lake,
    backend: FlagBackend,
    action_id: str,
    *,
    approver: str,
    reason: str = "",
    policy: FlagPolicy | None = None,
    notifier: Notifier | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ActionResult:
    """Approve an action awaiting approval and carry it out (accepts a decision id: it is the action id)."""
    now = utc(now)
    approver = _human(approver)
    row = ledger.read_action(lake, action_id)
    if row is None:
        raise KeyError(f"no flag action {action_id!r}")
    if row["status"] != "awaiting_approval":
        raise ValueError(f"action {action_id} is {row['status']}, not awaiting approval")
    ledger.write(lake, ledger.audit_row(f"approve:{action_id}", row["flag_key"], row["backend"], "approve", approver, reason or "approved", now, decision_id=row.get("decision_id"), approver=approver))
    row = {**row, "approver": approver, "status": "pending", "updated_at": now}
    ledger.write(lake, row)
    plan = replace(ledger.plan_from_row(row), approver=approver)
    return execute_action(lake, backend, plan, policy=policy, notifier=notifier, now=now, run_id=run_id, sleep=sleep)


def reject(lake: Lake, action_id: str, *, approver: str, reason: str, now: datetime | None = None) -> dict:
    now = utc(now)
    approver = _human(approver)
    if not reason:
        raise ValueError("a rejection needs a reason")
    row = ledger.read_action(lake, action_id)
    if row is None:
        raise KeyError(f"no flag action {action_id!r}")
    if row["status"] not in ("awaiting_approval", "pending", "skipped"):
        raise ValueError(f"action {action_id} is {row['status']}; only open actions can be rejected")
    ledger.write(lake, ledger.audit_row(f"reject:{action_id}", row["flag_key"], row["backend"], "reject", approver, reason, now, decision_id=row.get("decision_id"), approver=approver))
    row = {**row, "status": "rejected", "approver": approver, "reason": f"{row.get('reason') or ''} | rejected: {reason}", "updated_at": now}
    return ledger.write(lake, row)


def force(
    lake: Lake,
    backend: FlagBackend,
    flag_key: str,
    *,
    actor: str,
    reason: str,
    rollout: int | None = None,
    enabled: bool = True,
    variant: str | None = None,
    action_id: str | None = None,
    notifier: Notifier | None = None,
    policy: FlagPolicy | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ActionResult:
    """A human sets the flag directly (any direction). Bypasses guards; audited like any action."""
    if not reason:
        raise ValueError("force needs a reason")
    if enabled and variant is None and rollout is None:
        raise ValueError("force needs rollout, variant or enabled=False")
    target = FlagTarget(enabled, int(rollout or 0) if enabled else 0, variant if enabled else None)
    return _human_change(lake, backend, flag_key, "force", target, actor, reason, action_id, notifier, policy, now, run_id, sleep)


def _human_change(lake, backend, flag_key, kind, target, actor, reason, action_id, notifier, policy, now, run_id, sleep) -> ActionResult:
    now = utc(now)
    actor = _human(actor)
    plan = ActionPlan(
        action_id=action_id or f"{kind}:{flag_key}:{uuid.uuid4().hex[:12]}", flag_key=flag_key, backend=backend.name,
        kind=kind, status="ready", target=target, reason=reason, actor=actor, approver=actor,
    )
    return execute_action(lake, backend, plan, policy=policy, notifier=notifier, now=now, run_id=run_id, sleep=sleep)


def can_promote(
    flag_key: str,
    lake: Lake,
    *,
    guardrail_ok: bool | None = None,
    guardrail_reason: str = "",
    policy: FlagPolicy | None = None,
    now: datetime | None = None,
) -> tuple[bool, str]:
    """May `flag_key` be ramped up now? Refuses while a guardrail check fails, a hold is active, an
    action is pending / awaiting approval, the latest decision of any cohort says act or hold, or
    the last step-down is inside the cooldown."""
    now = utc(now)
    policy = policy or FlagPolicy()
    if guardrail_ok is False:
        return False, f"guardrail check failing: {guardrail_reason or 'see asset checks'}"
    history = ledger.flag_history(lake, flag_key)
    h = active_hold(history, flag_key, now)
    if h:
        return False, f"flag held by {h['actor']} until {h.get('hold_until')}: {h.get('reason')}"
    open_rows = [r for r in history if r.get("status") in OPEN and r.get("kind") in CHANGE_KINDS]
    if open_rows:
        r = open_rows[0]
        return False, f"action {r['action_id']} is {r['status']} ({r['kind']}): resolve it first"
    decisions = as_rows(lake.read(DECISIONS, filter=ds.field("flag_key") == flag_key))
    latest: dict[str, dict] = {}
    for d in decisions:
        key = d.get("cohort")
        if key not in latest or pd.Timestamp(d["decided_at"]) > pd.Timestamp(latest[key]["decided_at"]):
            latest[key] = d
    resolved = {r.get("decision_id") for r in history if r.get("status") in ("rejected",)}
    for cohort, d in sorted(latest.items(), key=lambda kv: str(kv[0])):
        if d.get("state") in ("act", "hold") and d["decision_id"] not in resolved:
            return False, f"open decision {d['decision_id']} on cohort {cohort}: {d.get('state')}/{d.get('action')}: {d.get('reason')}"
    downs = [r for r in history if r.get("kind") in AUTOMATIC_KINDS and r.get("status") == "applied"]
    if downs and policy.cooldown:
        last = max(downs, key=lambda r: pd.Timestamp(r["updated_at"]))
        ends = pd.Timestamp(last["updated_at"]).to_pydatetime() + policy.cooldown
        if now < ends:
            return False, f"stepped down at {pd.Timestamp(last['updated_at']).isoformat()}; cooldown until {ends.isoformat()}"
    return True, "no open decision, hold or pending action"


def promote(
    lake: Lake,
    backend: FlagBackend,
    flag_key: str,
    *,
    to: int,
    actor: str,
    reason: str = "",
    guardrail_ok: bool | None = None,
    guardrail_reason: str = "",
    policy: FlagPolicy | None = None,
    notifier: Notifier | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ActionResult:
    """Ramp the flag up to `to` % after `can_promote` agrees; refused promotions are audited as rejected."""
    now = utc(now)
    ok, why = can_promote(flag_key, lake, guardrail_ok=guardrail_ok, guardrail_reason=guardrail_reason, policy=policy, now=now)
    if not ok:
        row = ledger.audit_row(f"promote:{flag_key}:{uuid.uuid4().hex[:12]}", flag_key, backend.name, "promote", _human(actor),
                         f"promotion to {to}% refused: {why}", now, status="rejected", target_rollout=int(to))
        ledger.write(lake, row)
        return ActionResult(row, 0, "rejected", why)
    return _human_change(lake, backend, flag_key, "promote", FlagTarget(True, int(to)), actor, reason or f"promote to {to}%", None, notifier, policy, now, run_id, sleep)

