"""What humans do about flag changes, each written as its own audit row with actor and reason.

hold / release_hold  block (or unblock) automatic actions on a flag, until a time or until released
approve / reject     decide an action that awaits approval (approve carries it out at once)
force                set the flag directly, in any direction, bypassing the guards
can_promote/promote  the promotion gate: a ramp-up only with no open decision, hold, pending action
                     or cooldown; a refused promotion is audited as a rejected `promote` row
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Unpack

import pandas as pd
import pyarrow.dataset as ds

from ..clock import utc
from ..flags.base import FlagBackend, FlagTarget
from ..lake import Lake
from ..schemas import DECISIONS
from ..vocabulary import CHANGE_KINDS, OPEN, ActionKind, AuditStatus, DecisionState, PlanStatus
from . import ledger
from .executor import ActionResult, RunOptions, execute_action
from .plan import AUTO, ActionPlan, FlagPolicy, active_hold, as_rows, cooldown_ends, describe_cooldown, describe_hold

# What a human may still reject: an action that has not reached the backend for good.
REJECTABLE = (AuditStatus.AWAITING_APPROVAL, AuditStatus.PENDING, AuditStatus.SKIPPED)


def _new_id(kind: ActionKind, flag_key: str) -> str:
    """Human actions have no decision to be keyed by: a fresh id each."""
    return f"{kind}:{flag_key}:{uuid.uuid4().hex[:12]}"


def _human(actor: str) -> str:
    """The actor as audit rows name people (`human:<name>`); automation may not pose as one."""
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
    row = ledger.audit_row(_new_id(ActionKind.HOLD, flag_key), flag_key, backend, ActionKind.HOLD, _human(actor), reason, now,
                           hold_until=until)
    return ledger.write(lake, row)


def release_hold(lake: Lake, flag_key: str, *, actor: str, reason: str = "", backend: str = "none", now: datetime | None = None) -> dict:
    """End the hold in force on `flag_key` (the latest hold / release_hold row decides)."""
    row = ledger.audit_row(_new_id(ActionKind.RELEASE_HOLD, flag_key), flag_key, backend, ActionKind.RELEASE_HOLD, _human(actor),
                           reason or "hold released", utc(now))
    return ledger.write(lake, row)


def approve(
    lake: Lake,
    backend: FlagBackend,
    action_id: str,
    *,
    approver: str,
    reason: str = "",
    policy: FlagPolicy | None = None,
    **run: Unpack[RunOptions],
) -> ActionResult:
    """Approve an action awaiting approval and carry it out (accepts a decision id: it is the action id)."""
    now = utc(run.get("now"))
    approver = _human(approver)
    row = ledger.read_action(lake, action_id)
    if row is None:
        raise KeyError(f"no flag action {action_id!r}")
    if row["status"] != AuditStatus.AWAITING_APPROVAL:
        raise ValueError(f"action {action_id} is {row['status']}, not awaiting approval")
    approved = {**row, "approver": approver, "status": AuditStatus.PENDING, "updated_at": now}
    if not ledger.write_if_unchanged(lake, approved, row):
        raise ValueError(_changed(action_id, "approved"))
    _record_verdict(lake, ActionKind.APPROVE, row, approver, reason or "approved", now)
    plan = replace(ledger.plan_from_row(approved), approver=approver)
    return execute_action(lake, backend, plan, policy=policy, **{**run, "now": now})


def reject(lake: Lake, action_id: str, *, approver: str, reason: str, now: datetime | None = None) -> dict:
    """Close an open action without calling the backend; its decision no longer blocks promotion."""
    now = utc(now)
    approver = _human(approver)
    if not reason:
        raise ValueError("a rejection needs a reason")
    row = ledger.read_action(lake, action_id)
    if row is None:
        raise KeyError(f"no flag action {action_id!r}")
    if row["status"] not in REJECTABLE:
        raise ValueError(f"action {action_id} is {row['status']}; only open actions can be rejected")
    rejected = {**row, "status": AuditStatus.REJECTED, "approver": approver, "reason": f"{row.get('reason') or ''} | rejected: {reason}",
                "updated_at": now}
    if not ledger.write_if_unchanged(lake, rejected, row):
        raise ValueError(_changed(action_id, "rejected"))
    _record_verdict(lake, ActionKind.REJECT, row, approver, reason, now)
    return rejected


def _changed(action_id: str, verdict: str) -> str:
    return (f"action {action_id} changed while it was being {verdict} (a run or another person acted on it); "
            f"nothing was recorded: look at it again")


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
    policy: FlagPolicy | None = None,
    **run: Unpack[RunOptions],
) -> ActionResult:
    """A human sets the flag directly (any direction). Bypasses guards; audited like any action."""
    if not reason:
        raise ValueError("force needs a reason")
    if enabled and variant is None and rollout is None:
        raise ValueError("force needs rollout, variant or enabled=False")
    target = FlagTarget(enabled, int(rollout or 0) if enabled else 0, variant if enabled else None)
    return _human_change(lake, backend, flag_key, ActionKind.FORCE, target, actor, reason, action_id, policy, run)


def _record_verdict(lake: Lake, kind: ActionKind, row: dict, approver: str, reason: str, now) -> None:
    """The approval or rejection as its own row, beside the action it decides."""
    ledger.write(lake, ledger.audit_row(f"{kind}:{row['action_id']}", row["flag_key"], row["backend"], kind, approver, reason, now,
                                        decision_id=row.get("decision_id"), approver=approver))


def _human_change(lake: Lake, backend: FlagBackend, flag_key: str, kind: ActionKind, target: FlagTarget, actor: str,
                  reason: str, action_id: str | None, policy: FlagPolicy | None, run: RunOptions) -> ActionResult:
    """A change a human asked for and so approved: no guards, executed at once."""
    actor = _human(actor)
    plan = ActionPlan(
        action_id=action_id or _new_id(kind, flag_key), flag_key=flag_key, backend=backend.name,
        kind=kind, status=PlanStatus.READY, target=target, reason=reason, actor=actor, approver=actor,
    )
    return execute_action(lake, backend, plan, policy=policy, **{**run, "now": utc(run.get("now"))})


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
    action is pending / awaiting approval, the latest decision of any cohort says act or hold, or the
    last change is inside the cooldown (the same rule the automatic actions obey: `plan.cooldown_ends`)."""
    now = utc(now)
    policy = policy or FlagPolicy()
    if guardrail_ok is False:
        return False, f"guardrail check failing: {guardrail_reason or 'see asset checks'}"
    history = ledger.flag_history(lake, flag_key)
    hold_row = active_hold(history, flag_key, now)
    if hold_row:
        return False, describe_hold(hold_row)
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
    resolved = {r.get("decision_id") for r in history if r.get("status") == AuditStatus.REJECTED}
    for cohort, d in sorted(latest.items(), key=lambda kv: str(kv[0])):
        if d.get("state") in (DecisionState.ACT, DecisionState.HOLD) and d["decision_id"] not in resolved:
            return False, f"open decision {d['decision_id']} on cohort {cohort}: {d.get('state')}/{d.get('action')}: {d.get('reason')}"
    cooling = cooldown_ends(history, flag_key, policy.cooldown)
    if cooling and now < cooling[1]:
        return False, describe_cooldown(*cooling)
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
    **run: Unpack[RunOptions],
) -> ActionResult:
    """Ramp the flag up to `to` % after `can_promote` agrees; refused promotions are audited as rejected."""
    now = utc(run.get("now"))
    ok, why = can_promote(flag_key, lake, guardrail_ok=guardrail_ok, guardrail_reason=guardrail_reason, policy=policy, now=now)
    if not ok:
        row = ledger.audit_row(_new_id(ActionKind.PROMOTE, flag_key), flag_key, backend.name, ActionKind.PROMOTE, _human(actor),
                               f"promotion to {to}% refused: {why}", now, status=AuditStatus.REJECTED, target_rollout=int(to))
        ledger.write(lake, row)
        return ActionResult(row, 0, AuditStatus.REJECTED, why)
    return _human_change(lake, backend, flag_key, ActionKind.PROMOTE, FlagTarget(True, int(to)), actor, reason or f"promote to {to}%",
                         None, policy, {**run, "now": now})

