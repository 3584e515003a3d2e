"""Carrying a plan out at most once, whatever fails and whenever the process dies.

`act` writes the intent row and hands over to `resume`, which carries any audit row on from where it
stopped; `execute_action` reads the flag, applies the guards, writes the pending row BEFORE the backend
call, retries transient failures with capped exponential backoff inside one call and across ticks (the
same idempotency key every time), reconciles a call that went through before a crash, and notifies on
final outcomes and approval requests. `retry_open_actions` is what a sensor tick or the daily upkeep runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, TypedDict, Unpack

from ..clock import utc
from ..flags.base import ApprovalRequiredError, FlagBackend, FlagBackendError, FlagState, redact
from ..lake import Lake
from ..notify import Notifier, build_notification, should_notify
from ..vocabulary import TERMINAL, AuditStatus, PlanStatus
from . import ledger
from .plan import ActionPlan, FlagPolicy, as_dict, describe, guard, plan_action, ramps_up

log = logging.getLogger(__name__)


class RunOptions(TypedDict, total=False):
    """How an action runs, passed unchanged from every entry point down to `execute_action`."""

    notifier: Notifier | None  # told about final outcomes and approval requests
    now: datetime | None  # the clock (tests pin it); None: the time of each write
    run_id: str | None  # the Dagster run, recorded in the row's lineage
    sleep: Callable[[float], None]  # between retries (tests pass a no-op)
    still_running: Callable[[str], bool] | None  # is that run still going? (the orchestrator knows; None: not asked)


@dataclass
class ActionResult:
    row: dict | None  # the flag_actions row as written (None for a noop)
    called_backend: int  # backend apply() calls made by this execution
    status: AuditStatus | PlanStatus  # the row's status, or noop
    message: str = ""


def _notify(notifier: Notifier | None, row: dict, decision: Mapping[str, Any] | None) -> None:
    if notifier is None or not should_notify(row):
        return
    try:
        notifier.notify(build_notification(row, as_dict(decision) if decision is not None else None))
    except Exception as exc:  # a notification failure never undoes or blocks a flag change
        log.warning("notification for %s failed: %s", row.get("action_id"), exc)


def _same_outcome(a: dict | None, b: dict) -> bool:
    """Would writing `b` over `a` record nothing new? (A skip re-evaluated every tick writes once.)"""
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
    still_running: Callable[[str], bool] | None = None,
) -> ActionResult:
    """Carry out `plan` at most once. Safe to call on every sensor tick with the same plan, and from two
    runs at once: every write after the row is read here is made only if the row is unchanged
    (`ledger.write_if_unchanged`), so of two runs one writes the pending row and calls the backend and
    the other finds the row changed and stops (`_changed_meanwhile`); and a planned pending row is left to
    the run that wrote it while `still_running` says that run is alive (without it, such a row is retried
    at once, as after a crash)."""
    policy = policy or FlagPolicy()
    explicit_now = now is not None
    now = utc(now)
    secrets = tuple(backend.secrets())
    if plan.status == PlanStatus.NOOP:
        return ActionResult(None, 0, PlanStatus.NOOP, plan.reason)
    existing = ledger.read_action(lake, plan.action_id)
    if existing and existing["status"] in TERMINAL:
        return ActionResult(existing, 0, existing["status"], "already final; backend not called")
    human = not plan.automatic
    approved = bool(existing and existing.get("approver") and existing["status"] == AuditStatus.PENDING) or (human and plan.approver is not None)
    if existing and existing["status"] == AuditStatus.AWAITING_APPROVAL and not approved and not human:
        return ActionResult(existing, 0, AuditStatus.AWAITING_APPROVAL, "waiting for a human approval")
    holder = ledger.acting_run(existing) if existing and existing["status"] == AuditStatus.PENDING and ledger.planned(existing) else None
    if holder and holder != run_id and still_running is not None and still_running(holder):
        return ActionResult(existing, 0, AuditStatus.PENDING, f"in flight in run {holder}; left to it")

    # Read the flag as it is now. With a pending row already written, any failure here (a transient
    # outage, an invalid flag file, a missing flag) is recorded on it and retried later.
    try:
        current = backend.get_state(plan.flag_key)
    except Exception as exc:
        if existing and existing["status"] == AuditStatus.PENDING:
            return _still_pending(lake, existing, exc, secrets, now)
        if not isinstance(exc, FlagBackendError) or not exc.transient or plan.status != PlanStatus.READY or not plan.automatic:
            raise
        row = ledger.plan_row(replace(plan, status=AuditStatus.PENDING), now, existing, run_id)
        row.update(attempts=row["attempts"] + 1, last_error=redact(exc, secrets))
        if not ledger.write_if_unchanged(lake, row, existing):
            return _changed_meanwhile(lake, row)
        return ActionResult(row, 0, AuditStatus.PENDING, row["last_error"])

    # The state the change started from: what a pending row recorded before, else what the flag shows now.
    recorded = ledger.before_state(existing) if existing and existing["status"] == AuditStatus.PENDING else None
    plan = replace(plan, before=recorded or current)

    # Crash recovery: the call went through but the applied row was never written (only a planned
    # row can have made the call; an intent row has not).
    if existing and existing["status"] == AuditStatus.PENDING and ledger.planned(existing) and plan.target is not None and current.matches(plan.target):
        row = ledger.plan_row(replace(plan, status=AuditStatus.APPLIED), now, existing, run_id)
        row.update(after_enabled=current.enabled, after_rollout=current.rollout, after_variant=current.variant, last_error=None)
        if not ledger.write_if_unchanged(lake, row, existing):
            return _changed_meanwhile(lake, row)
        _notify(notifier, row, decision)
        return ActionResult(row, 0, AuditStatus.APPLIED, "reconciled: the flag already showed the target")

    if plan.automatic and not approved:
        if plan.target is not None and current.matches(plan.target):
            plan = replace(plan, status=PlanStatus.SKIPPED, reason=f"flag already at {describe(current)}")
        elif plan.status in (PlanStatus.READY, PlanStatus.AWAITING_APPROVAL, PlanStatus.SKIPPED):
            blocked = guard(plan, ledger.flag_history(lake, plan.flag_key), current, policy, now)
            if blocked:
                plan = replace(plan, status=PlanStatus.SKIPPED, reason=blocked)
        if plan.status in (PlanStatus.SKIPPED, PlanStatus.AWAITING_APPROVAL):
            row = ledger.plan_row(plan, now, existing, run_id)
            if _same_outcome(existing, row):
                return ActionResult(existing, 0, plan.status, plan.reason)
            if not ledger.write_if_unchanged(lake, row, existing):
                return _changed_meanwhile(lake, row)
            if plan.status == PlanStatus.AWAITING_APPROVAL:
                _notify(notifier, row, decision)
            return ActionResult(row, 0, plan.status, plan.reason)
    elif plan.automatic and approved and ramps_up(plan.target, current):
        reason = f"approved, but the flag is already at {describe(current)}; not ramping up"
        row = ledger.plan_row(replace(plan, status=PlanStatus.SKIPPED, reason=reason), now, existing, run_id)
        if not ledger.write_if_unchanged(lake, row, existing):
            return _changed_meanwhile(lake, row)
        return ActionResult(row, 0, AuditStatus.SKIPPED, row["reason"])

    if plan.target is None:
        raise ValueError(f"plan {plan.action_id} has no target")

    # Pending row BEFORE the call: if we die mid-call the next run knows to check / retry. Written only
    # if nobody wrote the row since it was read, so of two runs acting at once one calls the backend.
    row = ledger.plan_row(replace(plan, status=AuditStatus.PENDING), now, existing, run_id)
    if not ledger.write_if_unchanged(lake, row, existing):
        return _changed_meanwhile(lake, row)

    status, error, after, calls = _call_backend(backend, plan, policy, secrets, sleep)
    row["attempts"] += calls
    if status == AuditStatus.PENDING and row["attempts"] >= policy.max_total_attempts:
        status = AuditStatus.FAILED
        error = f"gave up after {row['attempts']} attempts: {error}"
    row.update(status=status, last_error=error, updated_at=now if explicit_now else utc(None))
    if after is not None:
        row.update(after_enabled=after.enabled, after_rollout=after.rollout, after_variant=after.variant)
    ledger.write(lake, row)  # what the backend did, recorded whatever: this run holds the row since its pending write
    if status != AuditStatus.PENDING:
        _notify(notifier, row, decision)
    return ActionResult(row, calls, status, error or "")


def _call_backend(backend: FlagBackend, plan: ActionPlan, policy: FlagPolicy, secrets: tuple, sleep
                  ) -> tuple[AuditStatus, str | None, FlagState | None, int]:
    """Up to `policy.max_attempts` calls with capped exponential backoff, always with the action id as
    idempotency key: (status, redacted error, state read back, calls made). A transient failure on
    the last attempt leaves the status pending, for the next tick."""
    status, error, after, calls = AuditStatus.PENDING, None, None, 0
    for attempt in range(max(1, policy.max_attempts)):
        calls += 1
        try:
            after = backend.apply(plan.flag_key, plan.target, idempotency_key=plan.action_id,
                                  comment=f"{plan.kind} by {plan.actor}: {plan.reason}"[:500])
            return AuditStatus.APPLIED, None, after, calls
        except ApprovalRequiredError as exc:
            return AuditStatus.AWAITING_APPROVAL, redact(exc, secrets), None, calls
        except FlagBackendError as exc:
            error = redact(exc, secrets)
            if not exc.transient:
                return AuditStatus.FAILED, error, None, calls
        except Exception as exc:  # unexpected: keep it pending and visible rather than lose it
            error = redact(f"{type(exc).__name__}: {exc}", secrets)
        if attempt + 1 < policy.max_attempts:
            sleep(min(policy.max_backoff_s, policy.backoff_s * (2**attempt)))
    return status, error, after, calls


def retry_open_actions(
    lake: Lake,
    backend_for: Callable[[str, str], FlagBackend],
    *,
    policy_for: Callable[[str], FlagPolicy] = lambda flag: FlagPolicy(),
    exclude: Iterable[str] = (),
    **run: Unpack[RunOptions],
) -> list[ActionResult]:
    """Retry every `pending` row (sensor tick, daily upkeep) except `exclude` (actions this run
    already tried). `backend_for(backend_name, flag_key)` gives the client."""
    out = []
    skip = set(exclude)
    for row in ledger.open_actions(lake, statuses=(AuditStatus.PENDING,)):
        if row["action_id"] in skip:
            continue
        out.append(
            resume(lake, backend_for(row["backend"], row["flag_key"]), row, policy=policy_for(row["flag_key"]), **run)
        )
    return out


def act_on(
    lake: Lake,
    backend: FlagBackend,
    decisions: Iterable[Mapping[str, Any]],
    *,
    policy_for: Callable[[str], FlagPolicy],
    recover_since: datetime | None = None,
    **run: Unpack[RunOptions],
) -> list[ActionResult]:
    """What one flag-action run does, after it wrote the decisions' intent rows: act on `decisions`;
    then, with `recover_since`, on the acting decisions since then that have no audit row (their run
    died first), and retry every other pending row. `policy_for(flag_key)` gives each flag's settings."""
    results = [act(lake, backend, d, policy=policy_for(d["flag_key"]), **run) for d in decisions]
    if recover_since is None:
        return results
    for decision_id in ledger.unacted_decisions(lake, recover_since):
        d = ledger.read_decision(lake, decision_id)
        results.append(act(lake, backend, d, policy=policy_for(d["flag_key"]), **run))
    results += retry_open_actions(lake, lambda name, flag: backend, policy_for=policy_for,
                                  exclude={r.row["action_id"] for r in results if r.row}, **run)
    return results


def act(
    lake: Lake,
    backend: FlagBackend,
    decision: Mapping[str, Any],
    *,
    policy: FlagPolicy | None = None,
    **run: Unpack[RunOptions],
) -> ActionResult:
    """One decision to at most one flag change: the intent row first, then `resume`."""
    d = as_dict(decision)
    row = ledger.record_intent(lake, d, backend=backend.name, now=run.get("now"), run_id=run.get("run_id"))
    if row is None:
        return ActionResult(None, 0, PlanStatus.NOOP, f"decision is {d.get('state')}/{d.get('action')}: no flag change")
    return resume(lake, backend, row, decision=d, policy=policy, **run)


def resume(
    lake: Lake,
    backend: FlagBackend,
    row: Mapping[str, Any],
    *,
    decision: Mapping[str, Any] | None = None,
    policy: FlagPolicy | None = None,
    **run: Unpack[RunOptions],
) -> ActionResult:
    """Carry an audit row on from wherever it stopped. Final rows are left alone; a planned pending
    row is retried with its stored target (so a change is never applied twice); an automatic row that
    is not planned yet, or was skipped / awaits approval, is planned from its decision and the flag's
    state now. A failure while planning keeps a pending row pending, with the error and one more attempt."""
    row = as_dict(row)
    if row["status"] in TERMINAL:
        return ActionResult(row, 0, row["status"], "already final; backend not called")
    if ledger.planned(row) and row["status"] == AuditStatus.PENDING:
        return execute_action(lake, backend, ledger.plan_from_row(row), policy=policy, decision=decision, **run)
    try:
        d = as_dict(decision) if decision is not None else ledger.read_decision(lake, row["decision_id"])
        release = ledger.release_of(lake, d)
        plan = plan_action(d, release, backend.get_state(row["flag_key"]), backend=backend.name, policy=policy)
    except Exception as exc:
        if row["status"] != AuditStatus.PENDING:
            log.warning("re-planning %s failed; it stays %s: %s", row["action_id"], row["status"], redact(exc, backend.secrets()))
            return ActionResult(row, 0, row["status"], redact(exc, backend.secrets()))
        return _still_pending(lake, row, exc, tuple(backend.secrets()), utc(run.get("now")))
    return execute_action(lake, backend, plan, policy=policy, decision=d, **run)


def _still_pending(lake: Lake, row: dict, exc: Exception, secrets: tuple, now: datetime) -> ActionResult:
    """`row` (as read) stays pending, with the error and one more attempt, unless another run changed it."""
    error = redact(exc if isinstance(exc, FlagBackendError) else f"{type(exc).__name__}: {exc}", secrets)
    failed = {**row, "attempts": int(row.get("attempts") or 0) + 1, "last_error": error, "updated_at": now}
    if not ledger.write_if_unchanged(lake, failed, row):
        return _changed_meanwhile(lake, failed)
    return ActionResult(failed, 0, AuditStatus.PENDING, error)


def _changed_meanwhile(lake: Lake, row: dict) -> ActionResult:
    """Another run wrote this action's row after this one read it (it took the action, or recorded an
    outcome): its row stands; nothing is written or called here."""
    current = ledger.read_action(lake, row["action_id"]) or row
    writer = ledger.acting_run(current)
    return ActionResult(current, 0, current["status"],
                        f"changed by {f'run {writer}' if writer else 'another writer'} meanwhile; left as it is, backend not called")


