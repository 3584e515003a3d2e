"""From a rollback decision to a flag change, exactly once, with an audit row before and after.

    plan = plan_action(decision, release, backend.get_state(flag), backend=backend.name, policy=policy)
    result = execute_action(lake, backend, plan, policy=policy, notifier=notifier, decision=decision)

Ladder math (`plan_action`, pure): the release's ladder (default 100 -> 25 -> 5) ends in a fallback:
switch to `fallback_variant` when the release names one, else disable the flag. `moderate` steps one
rung down from the flag's CURRENT rollout; `severe` goes straight to the fallback; `disable` /
`switch_variant` decisions go to that fallback. A decision that is unclear (low/no severity while
acting, a switch without a fallback variant, confidence under the policy minimum) waits for a human.

Intent before effect (`act`): for an acting decision the `pending` row (decision, flag, cohort,
backend, lineage: the plan's inputs) is written FIRST, before the flag's state is read or anything else
that can fail. A failure at any later point (flag file invalid, a directory, the flag missing, the
backend down, the process killed) leaves that pending row, and `resume` carries it on at the next sensor
tick or the daily upkeep: a row not yet planned (automatic, no `before_*` state) is planned then from
the decision and the flag's state at that time; a planned one is retried with its stored target. A
decision killed before even its intent row is found by `unacted_decisions` and acted on then.

Execution (`execute_action`): the `flag_actions` row keyed by `action_id` (the decision id for
automatic actions) is the lock and the ledger:
  applied / rejected / failed  -> terminal: never call the backend again (re-runs, restarts).
  pending                      -> written BEFORE the backend call; a failed call leaves it pending
                                  with attempts and a redacted last_error; the next tick retries with
                                  the same idempotency key. If the flag already shows the target
                                  (the process died after the call), the row is reconciled to applied
                                  without calling again.
  awaiting_approval            -> approval mode, an unclear decision, or a backend that wants approval.
  skipped                      -> a guard blocked it (hold, cooldown, would ramp up, already there);
                                  re-evaluated on later ticks, so a decision can act once its hold ends.
Guards for automatic actions: an active human hold; a per-flag cooldown after the last change; and
never ramp up automatically. Human overrides (`approve`, `reject`, `force`, `hold`, `release_hold`,
`promote`) each write their own audit row with actor and reason.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import pyarrow.dataset as ds

from .flags.base import (
    ApprovalRequiredError,
    FlagBackend,
    FlagBackendError,
    FlagState,
    FlagTarget,
    redact,
)
from .lake import Lake
from .notify import Notifier, build_notification, should_notify
from .policy import FLAG_CHANGING_ACTIONS
from .schemas import DECISIONS, FLAG_ACTIONS, RELEASE_ARTIFACTS

log = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_LADDER = (100, 25, 5)
AUTOMATIC_KINDS = ("step_down", "disable", "switch_variant")
CHANGE_KINDS = AUTOMATIC_KINDS + ("force", "promote")
TERMINAL = ("applied", "rejected", "failed")
OPEN = ("pending", "awaiting_approval")
LINEAGE_FIELDS = (
    "policy_name",
    "policy_version",
    "code_commit",
    "notebook_commit",
    "model_name",
    "model_version",
    "scorer_version",
    "input_versions",
    "run_id",
    "decided_at",
    "window_start",
    "window_end",
)


# ----------------------------------------------------------------------------------------------
# Policy and plan
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlagPolicy:
    """Per-flag control settings (the lead maps config / a Dagster resource onto this)."""

    approval_mode: str = "auto"  # auto | approve
    cooldown: timedelta = timedelta(minutes=60)
    max_attempts: int = 3  # backend attempts inside one execute_action call
    backoff_s: float = 0.5  # first retry delay; doubles, capped by max_backoff_s
    max_backoff_s: float = 5.0
    max_total_attempts: int = 50  # across ticks; beyond this a pending row becomes failed
    min_confidence: float | None = None  # decisions below this mean_confidence wait for approval

    def __post_init__(self):
        if self.approval_mode not in ("auto", "approve"):
            raise ValueError(f"approval_mode must be auto|approve, got {self.approval_mode!r}")


@dataclass(frozen=True)
class ActionPlan:
    action_id: str
    flag_key: str
    backend: str
    kind: str  # step_down | disable | switch_variant | force | promote | none
    status: str  # ready | awaiting_approval | skipped | noop
    target: FlagTarget | None
    reason: str
    decision_id: str | None = None
    release_version: str | None = None
    cohort: str | None = None
    severity: str | None = None
    actor: str = AUTO
    approver: str | None = None
    before: FlagState | None = None
    lineage: Mapping[str, Any] = field(default_factory=dict)

    @property
    def automatic(self) -> bool:
        return self.actor == AUTO


@dataclass
class ActionResult:
    row: dict | None  # the flag_actions row as written (None for a noop)
    called_backend: int  # backend apply() calls made by this execution
    status: str
    message: str = ""


def _as_dict(row: Any) -> dict:
    if row is None:
        return {}
    if isinstance(row, pd.Series):
        row = row.to_dict()
    return {k: _clean(v) for k, v in dict(row).items()}


def _clean(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple, dict)):
        return v
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy arrays / scalars
        return v.tolist()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def ladder_of(release: Mapping[str, Any] | None) -> list[int]:
    """Rungs above the fallback, highest first: [100, 25, 5, 0] -> [100, 25, 5]."""
    raw = (release or {}).get("ladder")
    values = [int(v) for v in (raw if raw is not None and len(raw) else DEFAULT_LADDER) if v is not None]
    return sorted({v for v in values if 0 < v <= 100}, reverse=True) or list(DEFAULT_LADDER)


def fallback_target(release: Mapping[str, Any] | None) -> tuple[str, FlagTarget]:
    variant = (release or {}).get("fallback_variant")
    if variant:
        return "switch_variant", FlagTarget(True, 0, variant)
    return "disable", FlagTarget(False, 0)


def next_rung_below(current: int, ladder: Iterable[int]) -> int | None:
    lower = [r for r in ladder if r < current]
    return max(lower) if lower else None


def _lineage(decision: Mapping[str, Any]) -> dict:
    out = {}
    for k in LINEAGE_FIELDS:
        v = decision.get(k)
        if v is not None:
            out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    if isinstance(out.get("input_versions"), str):
        try:
            out["input_versions"] = json.loads(out["input_versions"])
        except ValueError:
            pass
    return out


def acts(decision: Mapping[str, Any]) -> bool:
    """Does this decision ask for a flag change? (A superseded release acted on is marked bad, not stepped down.)"""
    return decision.get("state") == "act" and (decision.get("action") or "none") in FLAG_CHANGING_ACTIONS


def plan_action(
    decision_row: Mapping[str, Any] | pd.Series,
    release_row: Mapping[str, Any] | pd.Series | None,
    current_state: FlagState,
    *,
    backend: str,
    policy: FlagPolicy | None = None,
    history: Iterable[Mapping[str, Any]] | pd.DataFrame | None = None,
    now: datetime | None = None,
) -> ActionPlan:
    """What to do about one decision, given the flag's current state. Pure: no I/O.

    `history` (flag_actions rows of this flag) is optional; when given, the guards (hold, cooldown)
    are applied here too, otherwise `execute_action` applies them against the lake.
    """
    policy = policy or FlagPolicy()
    d = _as_dict(decision_row)
    release = _as_dict(release_row) if release_row is not None else {}
    flag = d["flag_key"]
    base = dict(
        action_id=d["decision_id"],
        flag_key=flag,
        backend=backend,
        decision_id=d["decision_id"],
        release_version=d.get("release_version"),
        cohort=d.get("cohort"),
        severity=d.get("severity"),
        before=current_state,
        lineage=_lineage(d),
    )
    state, action, severity = d.get("state"), d.get("action") or "none", d.get("severity") or "none"
    if not acts(d):
        return ActionPlan(kind="none", status="noop", target=None, reason=f"decision is {state}/{action}: no flag change", **base)

    current = current_state.effective_rollout
    ladder = ladder_of(release)
    fb_kind, fb_target = fallback_target(release)
    unclear: list[str] = []
    if action == "disable":
        kind, target = "disable", FlagTarget(False, 0)
    elif action == "switch_variant":
        if release.get("fallback_variant"):
            kind, target = fb_kind, fb_target
        else:
            kind, target = "disable", FlagTarget(False, 0)
            unclear.append("switch_variant decided but the release names no fallback_variant")
    elif action == "step_down":
        if severity == "severe":
            kind, target = fb_kind, fb_target
        else:
            rung = next_rung_below(current, ladder)
            kind, target = ("step_down", FlagTarget(True, rung)) if rung is not None else (fb_kind, fb_target)
    else:
        return ActionPlan(kind="none", status="awaiting_approval", target=None, reason=f"unknown decision action {action!r}", **base)

    if severity not in ("moderate", "severe"):
        unclear.append(f"severity {severity!r} does not justify an automatic {action}")
    conf = d.get("mean_confidence")
    if policy.min_confidence is not None and (conf is None or conf < policy.min_confidence):
        unclear.append(f"mean confidence {conf} below {policy.min_confidence}")

    step = _describe_step(current_state, target)
    reason = f"{(d.get('reason') or action).rstrip('.')}. {step} ({severity}; ladder {ladder} then {fb_kind})"
    plan = ActionPlan(kind=kind, status="ready", target=target, reason=reason, **base)

    if current == 0:
        return replace(plan, status="skipped", reason=f"flag already at {_state_text(current_state)}; nothing to step down")
    decided = d.get("target_rollout")
    if kind == "step_down" and severity != "severe" and decided is not None and current <= int(decided):
        return replace(
            plan, status="skipped",
            reason=f"flag already at {current}% <= the decision's target {int(decided)}%; not stepping twice for one decision",
        )
    if history is not None:
        blocked = guard(plan, history, current_state, policy, now)
        if blocked:
            return replace(plan, status="skipped", reason=blocked)
    if unclear:
        return replace(plan, status="awaiting_approval", reason=reason + ". Needs approval: " + "; ".join(unclear))
    if policy.approval_mode == "approve":
        return replace(plan, status="awaiting_approval", reason=reason + ". Approval mode: a human approves this change")
    return plan


def _state_text(s: FlagState) -> str:
    if not s.enabled:
        return "off"
    if s.variant:
        return f"variant {s.variant}"
    return f"{s.rollout}%"


def _target_text(t: FlagTarget) -> str:
    if not t.enabled:
        return "off"
    if t.variant:
        return f"variant {t.variant}"
    return f"{t.rollout}%"


def _describe_step(before: FlagState, target: FlagTarget) -> str:
    return f"{_state_text(before)} -> {_target_text(target)}"


def _target_effective(t: FlagTarget) -> int:
    return 0 if (not t.enabled or t.variant is not None) else int(t.rollout)


def _utc(now: datetime | None) -> datetime:
    n = now or datetime.now(timezone.utc)
    return n if n.tzinfo else n.replace(tzinfo=timezone.utc)


def _rows(history) -> list[dict]:
    if history is None:
        return []
    if isinstance(history, pd.DataFrame):
        return [_as_dict(r) for _, r in history.iterrows()]
    return [_as_dict(r) for r in history]


def active_hold(history, flag_key: str, now: datetime | None = None) -> dict | None:
    """The hold row in force on `flag_key`, if any: the latest hold/release_hold decides."""
    now = _utc(now)
    rows = [r for r in _rows(history) if r.get("flag_key") == flag_key and r.get("kind") in ("hold", "release_hold") and r.get("status") == "applied"]
    if not rows:
        return None
    latest = max(rows, key=lambda r: pd.Timestamp(r["created_at"]))
    if latest["kind"] == "hold" and (latest.get("hold_until") is None or pd.Timestamp(latest["hold_until"]) > now):
        return latest
    return None


def guard(plan: ActionPlan, history, current: FlagState, policy: FlagPolicy, now: datetime | None = None) -> str | None:
    """Why an automatic action must not run now, or None."""
    now = _utc(now)
    if plan.target is not None and plan.target.enabled and _target_effective(plan.target) >= current.effective_rollout and plan.target.variant is None:
        return f"would not lower exposure ({_state_text(current)} -> {_target_text(plan.target)}); automatic actions never ramp up"
    rows = _rows(history)
    hold = active_hold(rows, plan.flag_key, now)
    if hold:
        until = hold.get("hold_until")
        return f"flag held by {hold.get('actor')} until {pd.Timestamp(until).isoformat() if until is not None else 'released'}: {hold.get('reason')}"
    changes = [
        r for r in rows
        if r.get("flag_key") == plan.flag_key and r.get("kind") in AUTOMATIC_KINDS + ("force",)
        and r.get("status") == "applied" and r.get("action_id") != plan.action_id
    ]
    if changes and policy.cooldown:
        last = max(changes, key=lambda r: pd.Timestamp(r["updated_at"]))
        ends = pd.Timestamp(last["updated_at"]).to_pydatetime() + policy.cooldown
        if now < ends:
            return f"cooldown: {last['kind']} by {last['actor']} at {pd.Timestamp(last['updated_at']).isoformat()}; next automatic change after {ends.isoformat()}"
    return None


# ----------------------------------------------------------------------------------------------
# Audit rows
# ----------------------------------------------------------------------------------------------
def read_action(lake: Lake, action_id: str) -> dict | None:
    frame = lake.read(FLAG_ACTIONS, filter=ds.field("action_id") == action_id)
    return _as_dict(frame.iloc[0]) if len(frame) else None


def flag_history(lake: Lake, flag_key: str) -> list[dict]:
    return _rows(lake.read(FLAG_ACTIONS, filter=ds.field("flag_key") == flag_key))


def open_actions(lake: Lake, flag_key: str | None = None, statuses: Iterable[str] = OPEN) -> list[dict]:
    """Rows still pending or awaiting approval (what the sensor retries / shows)."""
    filt = ds.field("status").isin(list(statuses))
    if flag_key:
        filt = filt & (ds.field("flag_key") == flag_key)
    return _rows(lake.read(FLAG_ACTIONS, filter=filt))


def _write(lake: Lake, row: dict) -> dict:
    lake.merge(FLAG_ACTIONS, pd.DataFrame([row], columns=FLAG_ACTIONS.names))
    return row


def _base_row(plan: ActionPlan, now: datetime, existing: dict | None, run_id: str | None) -> dict:
    lineage = dict(plan.lineage or {})
    if run_id:
        lineage["action_run_id"] = run_id
    lineage["idempotency_key"] = plan.action_id
    t = plan.target
    b = plan.before
    return {
        "action_id": plan.action_id,
        "decision_id": plan.decision_id,
        "flag_key": plan.flag_key,
        "release_version": plan.release_version,
        "cohort": plan.cohort,
        "backend": plan.backend,
        "kind": plan.kind,
        "status": plan.status,
        "before_enabled": b.enabled if b else None,
        "before_rollout": b.rollout if b else None,
        "before_variant": b.variant if b else None,
        # A null target_rollout without a variant means "flag off" (the table has no target_enabled).
        "target_rollout": (None if t.variant else t.rollout) if (t and t.enabled) else None,
        "target_variant": t.variant if t else None,
        "after_enabled": None,
        "after_rollout": None,
        "after_variant": None,
        "actor": plan.actor,
        "approver": plan.approver if plan.approver else (existing or {}).get("approver"),
        "reason": plan.reason,
        "attempts": int((existing or {}).get("attempts") or 0),
        "last_error": (existing or {}).get("last_error"),
        "hold_until": None,
        "lineage": json.dumps(lineage, sort_keys=True, default=str),
        "created_at": (existing or {}).get("created_at") or now,
        "updated_at": now,
    }


def plan_from_row(row: Mapping[str, Any]) -> ActionPlan:
    """Rebuild the plan of a stored action (to retry a pending row or run an approved one)."""
    r = _as_dict(row)
    if r.get("target_rollout") is None and not r.get("target_variant"):
        target = FlagTarget(False, 0)
    else:
        target = FlagTarget(True, int(r.get("target_rollout") or 0), r.get("target_variant"))
    before = None
    if r.get("before_enabled") is not None:
        before = FlagState(r["flag_key"], bool(r["before_enabled"]), int(r.get("before_rollout") or 0), r.get("before_variant"))
    lineage = {}
    if r.get("lineage"):
        try:
            lineage = json.loads(r["lineage"])
        except ValueError:
            pass
    return ActionPlan(
        action_id=r["action_id"], flag_key=r["flag_key"], backend=r["backend"], kind=r["kind"], status="ready",
        target=target, reason=r.get("reason") or "", decision_id=r.get("decision_id"),
        release_version=r.get("release_version"), cohort=r.get("cohort"), actor=r.get("actor") or AUTO,
        approver=r.get("approver"), before=before, lineage=lineage,
    )


# ----------------------------------------------------------------------------------------------
# Executor
# ----------------------------------------------------------------------------------------------
def _notify(notifier: Notifier | None, row: dict, decision: Mapping[str, Any] | None) -> None:
    if notifier is None or not should_notify(row):
        return
    try:
        notifier.notify(build_notification(row, _as_dict(decision) if decision is not None else None))
    except Exception as exc:  # a notification failure never undoes or blocks a flag change
        log.warning("notification for %s failed: %s", row.get("action_id"), exc)


def _same_outcome(a: dict | None, b: dict) -> bool:
    return a is not None and all(a.get(k) == b.get(k) for k in ("status", "reason", "kind", "target_rollout", "target_variant"))


def execute_action(
    lake: Lake,
    backend: FlagBackend,
    plan: ActionPlan,
    *,
    policy: FlagPolicy | None = None,
    notifier: Notifier | None = None,
    decision: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ActionResult:
    """Carry out `plan` at most once. Safe to call on every sensor tick with the same plan."""
    policy = policy or FlagPolicy()
    explicit_now = now is not None
    now = _utc(now)
    secrets = tuple(backend.secrets())
    if plan.status == "noop":
        return ActionResult(None, 0, "noop", plan.reason)
    existing = read_action(lake, plan.action_id)
    if existing and existing["status"] in TERMINAL:
        return ActionResult(existing, 0, existing["status"], "already final; backend not called")
    human = not plan.automatic
    approved = bool(existing and existing.get("approver") and existing["status"] == "pending") or (human and plan.approver is not None)
    if existing and existing["status"] == "awaiting_approval" and not approved and not human:
        return ActionResult(existing, 0, "awaiting_approval", "waiting for a human approval")

    # Read the flag as it is now. With a pending row already written, any failure here (a transient
    # outage, an invalid flag file, a missing flag) is recorded on it and retried later.
    try:
        current = backend.get_state(plan.flag_key)
    except Exception as exc:
        if existing and existing["status"] == "pending":
            return _still_pending(lake, existing, exc, secrets, now)
        if not isinstance(exc, FlagBackendError) or not exc.transient or plan.status != "ready" or not plan.automatic:
            raise
        row = _base_row(replace(plan, status="pending"), now, existing, run_id)
        row.update(attempts=row["attempts"] + 1, last_error=redact(exc, secrets))
        _write(lake, row)
        return ActionResult(row, 0, "pending", row["last_error"])

    plan = replace(plan, before=current)
    if existing and existing["status"] == "pending" and existing.get("before_enabled") is not None:
        plan = replace(plan, before=FlagState(plan.flag_key, bool(existing["before_enabled"]), int(existing.get("before_rollout") or 0), existing.get("before_variant")))

    # Crash recovery: the call went through but the applied row was never written (only a planned
    # row can have made the call; an intent row has not).
    if existing and existing["status"] == "pending" and planned(existing) and plan.target is not None and current.matches(plan.target):
        row = _base_row(replace(plan, status="applied"), now, existing, run_id)
        row.update(after_enabled=current.enabled, after_rollout=current.rollout, after_variant=current.variant, last_error=None)
        _write(lake, row)
        _notify(notifier, row, decision)
        return ActionResult(row, 0, "applied", "reconciled: the flag already showed the target")

    if plan.automatic and not approved:
        if plan.target is not None and current.matches(plan.target):
            plan = replace(plan, status="skipped", reason=f"flag already at {_state_text(current)}")
        elif plan.status in ("ready", "awaiting_approval", "skipped"):
            blocked = guard(plan, flag_history(lake, plan.flag_key), current, policy, now)
            if blocked:
                plan = replace(plan, status="skipped", reason=blocked)
        if plan.status in ("skipped", "awaiting_approval"):
            row = _base_row(plan, now, existing, run_id)
            if _same_outcome(existing, row):
                return ActionResult(existing, 0, plan.status, plan.reason)
            _write(lake, row)
            if plan.status == "awaiting_approval":
                _notify(notifier, row, decision)
            return ActionResult(row, 0, plan.status, plan.reason)
    elif plan.automatic and approved and plan.target is not None and plan.target.enabled and plan.target.variant is None \
            and _target_effective(plan.target) >= current.effective_rollout:
        row = _base_row(replace(plan, status="skipped", reason=f"approved, but the flag is already at {_state_text(current)}; not ramping up"), now, existing, run_id)
        _write(lake, row)
        return ActionResult(row, 0, "skipped", row["reason"])

    if plan.target is None:
        raise ValueError(f"plan {plan.action_id} has no target")

    # Pending row BEFORE the call: if we die mid-call the next run knows to check / retry.
    row = _base_row(replace(plan, status="pending"), now, existing, run_id)
    _write(lake, row)

    calls = 0
    status, error, after = "pending", None, None
    for attempt in range(max(1, policy.max_attempts)):
        calls += 1
        row["attempts"] += 1
        try:
            after = backend.apply(plan.flag_key, plan.target, idempotency_key=plan.action_id, comment=f"{plan.kind} by {plan.actor}: {plan.reason}"[:500])
            status, error = "applied", None
            break
        except ApprovalRequiredError as exc:
            status, error = "awaiting_approval", redact(exc, secrets)
            break
        except FlagBackendError as exc:
            error = redact(exc, secrets)
            if not exc.transient:
                status = "failed"
                break
        except Exception as exc:  # unexpected: keep it pending and visible rather than lose it
            error = redact(f"{type(exc).__name__}: {exc}", secrets)
        if attempt + 1 < policy.max_attempts:
            sleep(min(policy.max_backoff_s, policy.backoff_s * (2**attempt)))
    if status == "pending" and row["attempts"] >= policy.max_total_attempts:
        status = "failed"
        error = f"gave up after {row['attempts']} attempts: {error}"
    row.update(status=status, last_error=error, updated_at=now if explicit_now else _utc(None))
    if after is not None:
        row.update(after_enabled=after.enabled, after_rollout=after.rollout, after_variant=after.variant)
    _write(lake, row)
    if status != "pending":
        _notify(notifier, row, decision)
    return ActionResult(row, calls, status, error or "")


def retry_open_actions(
    lake: Lake,
    backend_for: Callable[[str, str], FlagBackend],
    *,
    policy_for: Callable[[str], FlagPolicy] = lambda flag: FlagPolicy(),
    notifier: Notifier | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    exclude: Iterable[str] = (),
) -> list[ActionResult]:
    """Retry every `pending` row (sensor tick, daily upkeep) except `exclude` (actions this run
    already tried). `backend_for(backend_name, flag_key)` gives the client."""
    out = []
    skip = set(exclude)
    for row in open_actions(lake, statuses=("pending",)):
        if row["action_id"] in skip:
            continue
        out.append(
            resume(lake, backend_for(row["backend"], row["flag_key"]), row, policy=policy_for(row["flag_key"]),
                   notifier=notifier, now=now, run_id=run_id, sleep=sleep)
        )
    return out


# ----------------------------------------------------------------------------------------------
# Intent before effect
# ----------------------------------------------------------------------------------------------
def planned(row: Mapping[str, Any]) -> bool:
    """Has this row's change been planned (a target fixed from a state read)? An intent row has not:
    an automatic row without the flag's `before` state."""
    return row.get("before_enabled") is not None or (row.get("actor") or AUTO) != AUTO


def record_intent(lake: Lake, decision: Mapping[str, Any], *, backend: str, now: datetime | None = None,
                  run_id: str | None = None) -> dict | None:
    """The pending row for an acting decision, unless it has a row already. Reads nothing but the
    audit table and calls nothing: it is the first write of an action, so nothing before it can fail
    and lose the decision. Returns the decision's row (None for a decision that changes nothing)."""
    d = _as_dict(decision)
    if not acts(d):
        return None
    existing = read_action(lake, d["decision_id"])
    if existing is not None:
        return existing
    now = _utc(now)
    lineage = _lineage(d)
    lineage["idempotency_key"] = d["decision_id"]
    if run_id:
        lineage["action_run_id"] = run_id
    row = {c: None for c in FLAG_ACTIONS.names}
    row.update(
        action_id=d["decision_id"], decision_id=d["decision_id"], flag_key=d["flag_key"],
        release_version=d.get("release_version"), cohort=d.get("cohort"), backend=backend, kind=d["action"],
        status="pending", actor=AUTO, attempts=0, created_at=now, updated_at=now,
        reason=f"intent: {(d.get('reason') or d['action']).rstrip('.')}. Planned from the flag's state when it is read",
        lineage=json.dumps(lineage, sort_keys=True, default=str),
    )
    return _write(lake, row)


def act(
    lake: Lake,
    backend: FlagBackend,
    decision: Mapping[str, Any],
    *,
    policy: FlagPolicy | None = None,
    notifier: Notifier | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ActionResult:
    """One decision to at most one flag change: the intent row first, then `resume`."""
    d = _as_dict(decision)
    row = record_intent(lake, d, backend=backend.name, now=now, run_id=run_id)
    if row is None:
        return ActionResult(None, 0, "noop", f"decision is {d.get('state')}/{d.get('action')}: no flag change")
    return resume(lake, backend, row, decision=d, policy=policy, notifier=notifier, now=now, run_id=run_id, sleep=sleep)


def resume(
    lake: Lake,
    backend: FlagBackend,
    row: Mapping[str, Any],
    *,
    decision: Mapping[str, Any] | None = None,
    policy: FlagPolicy | None = None,
    notifier: Notifier | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ActionResult:
    """Carry an audit row on from wherever it stopped. Final rows are left alone; a planned pending
    row is retried with its stored target (so a change is never applied twice); an automatic row that
    is not planned yet, or was skipped / awaits approval, is planned from its decision and the flag's
    state now. A failure while planning keeps a pending row pending, with the error and one more attempt."""
    row = _as_dict(row)
    if row["status"] in TERMINAL:
        return ActionResult(row, 0, row["status"], "already final; backend not called")
    if planned(row) and row["status"] == "pending":
        return execute_action(lake, backend, plan_from_row(row), policy=policy, notifier=notifier, decision=decision,
                              now=now, run_id=run_id, sleep=sleep)
    try:
        d = _as_dict(decision) if decision is not None else _decision(lake, row["decision_id"])
        release = _release_of(lake, d)
        plan = plan_action(d, release, backend.get_state(row["flag_key"]), backend=backend.name, policy=policy)
    except Exception as exc:
        if row["status"] != "pending":
            log.warning("re-planning %s failed; it stays %s: %s", row["action_id"], row["status"], redact(exc, backend.secrets()))
            return ActionResult(row, 0, row["status"], redact(exc, backend.secrets()))
        return _still_pending(lake, row, exc, tuple(backend.secrets()), _utc(now))
    return execute_action(lake, backend, plan, policy=policy, notifier=notifier, decision=d, now=now, run_id=run_id, sleep=sleep)


def unacted_decisions(lake: Lake, since: datetime) -> list[str]:
    """Ids of acting decisions made since `since` that have no audit row: their run died (or never
    ran) before the intent row. The sensor and the daily upkeep act on them."""
    decisions = lake.read(DECISIONS, columns=["decision_id", "state", "action", "decided_at"],
                          filter=ds.field("decided_at") >= pd.Timestamp(_utc(since)))
    acting = decisions[[acts(d) for d in decisions.to_dict("records")]]
    if acting.empty:
        return []
    known = set(lake.read_keys_in(FLAG_ACTIONS, "action_id", acting.decision_id, ["action_id"]).column("action_id").to_pylist())
    return sorted(set(acting.decision_id) - known)


def _decision(lake: Lake, decision_id: str | None) -> dict:
    frame = lake.read(DECISIONS, filter=ds.field("decision_id") == decision_id) if decision_id else DECISIONS.empty_frame()
    if frame.empty:
        raise LookupError(f"decision {decision_id!r} is not in {DECISIONS.name}")
    return _as_dict(frame.iloc[0])


def _release_of(lake: Lake, decision: Mapping[str, Any]) -> dict | None:
    releases = lake.read(RELEASE_ARTIFACTS, filter=ds.field("flag_key") == decision["flag_key"])
    match = releases[releases.version == decision.get("release_version")]
    return _as_dict(match.iloc[0]) if len(match) else None


def _still_pending(lake: Lake, row: dict, exc: Exception, secrets: tuple, now: datetime) -> ActionResult:
    error = redact(exc if isinstance(exc, FlagBackendError) else f"{type(exc).__name__}: {exc}", secrets)
    row = {**row, "attempts": int(row.get("attempts") or 0) + 1, "last_error": error, "updated_at": now}
    _write(lake, row)
    return ActionResult(row, 0, "pending", error)


# ----------------------------------------------------------------------------------------------
# Human overrides
# ----------------------------------------------------------------------------------------------
def _human(actor: str) -> str:
    if not actor or actor == AUTO:
        raise ValueError("a human override needs a named actor")
    return actor if actor.startswith("human:") else f"human:{actor}"


def _audit_row(action_id: str, flag_key: str, backend: str, kind: str, actor: str, reason: str | None, now: datetime, **extra) -> dict:
    row = {c: None for c in FLAG_ACTIONS.names}
    row.update(
        action_id=action_id, flag_key=flag_key, backend=backend, kind=kind, status="applied", actor=actor,
        reason=reason, attempts=0, created_at=now, updated_at=now,
    )
    row.update(extra)
    return row


def hold(lake: Lake, flag_key: str, *, until: datetime | None = None, actor: str, reason: str, backend: str = "none",
         now: datetime | None = None) -> dict:
    """Block automatic actions on `flag_key` until `until`, or, without one, until release_hold."""
    now = _utc(now)
    if not reason:
        raise ValueError("a hold needs a reason")
    if until is not None:
        until = until if until.tzinfo else until.replace(tzinfo=timezone.utc)
        if until <= now:
            raise ValueError("hold_until must be in the future")
    row = _audit_row(f"hold:{flag_key}:{uuid.uuid4().hex[:12]}", flag_key, backend, "hold", _human(actor), reason, now, hold_until=until)
    return _write(lake, row)


def release_hold(lake: Lake, flag_key: str, *, actor: str, reason: str = "", backend: str = "none", now: datetime | None = None) -> dict:
    now = _utc(now)
    row = _audit_row(f"release_hold:{flag_key}:{uuid.uuid4().hex[:12]}", flag_key, backend, "release_hold", _human(actor), reason or "hold released", now)
    return _write(lake, row)


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
    now = _utc(now)
    approver = _human(approver)
    row = read_action(lake, action_id)
    if row is None:
        raise KeyError(f"no flag action {action_id!r}")
    if row["status"] != "awaiting_approval":
        raise ValueError(f"action {action_id} is {row['status']}, not awaiting approval")
    _write(lake, _audit_row(f"approve:{action_id}", row["flag_key"], row["backend"], "approve", approver, reason or "approved", now, decision_id=row.get("decision_id"), approver=approver))
    row = {**row, "approver": approver, "status": "pending", "updated_at": now}
    _write(lake, row)
    plan = replace(plan_from_row(row), approver=approver)
    return execute_action(lake, backend, plan, policy=policy, notifier=notifier, now=now, run_id=run_id, sleep=sleep)


def reject(lake: Lake, action_id: str, *, approver: str, reason: str, now: datetime | None = None) -> dict:
    now = _utc(now)
    approver = _human(approver)
    if not reason:
        raise ValueError("a rejection needs a reason")
    row = read_action(lake, action_id)
    if row is None:
        raise KeyError(f"no flag action {action_id!r}")
    if row["status"] not in ("awaiting_approval", "pending", "skipped"):
        raise ValueError(f"action {action_id} is {row['status']}; only open actions can be rejected")
    _write(lake, _audit_row(f"reject:{action_id}", row["flag_key"], row["backend"], "reject", approver, reason, now, decision_id=row.get("decision_id"), approver=approver))
    row = {**row, "status": "rejected", "approver": approver, "reason": f"{row.get('reason') or ''} | rejected: {reason}", "updated_at": now}
    return _write(lake, row)


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
    now = _utc(now)
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
    now = _utc(now)
    policy = policy or FlagPolicy()
    if guardrail_ok is False:
        return False, f"guardrail check failing: {guardrail_reason or 'see asset checks'}"
    history = flag_history(lake, flag_key)
    h = active_hold(history, flag_key, now)
    if h:
        return False, f"flag held by {h['actor']} until {h.get('hold_until')}: {h.get('reason')}"
    open_rows = [r for r in history if r.get("status") in OPEN and r.get("kind") in CHANGE_KINDS]
    if open_rows:
        r = open_rows[0]
        return False, f"action {r['action_id']} is {r['status']} ({r['kind']}): resolve it first"
    decisions = _rows(lake.read(DECISIONS, filter=ds.field("flag_key") == flag_key))
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
    now = _utc(now)
    ok, why = can_promote(flag_key, lake, guardrail_ok=guardrail_ok, guardrail_reason=guardrail_reason, policy=policy, now=now)
    if not ok:
        row = _audit_row(f"promote:{flag_key}:{uuid.uuid4().hex[:12]}", flag_key, backend.name, "promote", _human(actor),
                         f"promotion to {to}% refused: {why}", now, status="rejected", target_rollout=int(to))
        _write(lake, row)
        return ActionResult(row, 0, "rejected", why)
    return _human_change(lake, backend, flag_key, "promote", FlagTarget(True, int(to)), actor, reason or f"promote to {to}%", None, notifier, policy, now, run_id, sleep)
