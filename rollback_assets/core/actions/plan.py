"""Decision + release + the flag's current state -> what to do. Pure: no I/O, no clock but `now`.

Ladder math (`plan_action`): the release's ladder (default `releases.DEFAULT_LADDER`, 100 -> 25 -> 5)
ends in a fallback: switch to `fallback_variant` when the release names one, else disable the flag.
`moderate` steps one rung down from the flag's CURRENT rollout; `severe` goes straight to the fallback;
`disable` / `switch_variant` decisions go to that fallback. A decision that is unclear (low/no severity
while acting, a switch without a fallback variant, confidence under the policy minimum) waits for a human.

Guards for automatic actions (`guard`): never ramp up; an active human hold; the cooldown. There is one
cooldown rule (`cooldown_ends`): no automatic change and no promotion within `FlagPolicy.cooldown` of
the flag's last applied change by automation or a human `force` (a promotion does not start one: a
ramp-up that goes wrong must be rolled back at once). The executor applies the guards when it would
act, the promotion gate (`overrides.can_promote`) refuses within the same window, and the decision
sensor re-checks a skipped action when the same window ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

import pandas as pd

from ..clock import utc
from ..flags.base import FlagState, FlagTarget, describe_exposure
from ..policy_config import PolicyConfig, Thresholds
from ..releases import DEFAULT_LADDER
from ..vocabulary import (
    APPROVAL_MODES,
    AUTOMATIC_KINDS,
    FLAG_CHANGING_ACTIONS,
    ActionKind,
    ApprovalMode,
    AuditStatus,
    DecisionAction,
    DecisionState,
    PlanStatus,
    Severity,
)

AUTO = "auto"  # the actor of automatic actions
COOLDOWN_KINDS = AUTOMATIC_KINDS + (ActionKind.FORCE,)  # applied changes that start the cooldown
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
_DEFAULTS = Thresholds()  # the policy file's defaults: one source for the approval mode and the cooldown


@dataclass(frozen=True)
class FlagPolicy:
    """Per-flag control settings: approval and cooldown from the policy YAML (`for_flag`), the retry
    budget from here. The defaults are the policy file's, so a caller without a policy acts as a
    deployment without overrides would."""

    approval_mode: ApprovalMode = _DEFAULTS.approval
    cooldown: timedelta = timedelta(hours=_DEFAULTS.cooldown_hours)
    max_attempts: int = 3  # backend attempts inside one execute_action call
    backoff_s: float = 0.5  # first retry delay; doubles, capped by max_backoff_s
    max_backoff_s: float = 5.0
    max_total_attempts: int = 50  # across ticks; beyond this a pending row becomes failed
    min_confidence: float | None = None  # decisions below this mean_confidence wait for approval

    def __post_init__(self):
        if self.approval_mode not in APPROVAL_MODES:
            raise ValueError(f"approval_mode must be one of {APPROVAL_MODES}, got {self.approval_mode!r}")

    @classmethod
    def for_flag(cls, config: PolicyConfig, flag_key: str) -> "FlagPolicy":
        """The settings the policy YAML gives `flag_key` (its overrides, else the defaults)."""
        thresholds = config.for_flag(flag_key)
        return cls(approval_mode=thresholds.approval, cooldown=timedelta(hours=thresholds.cooldown_hours))


@dataclass(frozen=True)
class ActionPlan:
    action_id: str
    flag_key: str
    backend: str
    kind: ActionKind
    status: PlanStatus
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


def as_dict(row: Any) -> dict:
    """A decision or audit row (dict or pandas row) as a plain dict: NaN/NaT -> None, numpy -> Python."""
    if row is None:
        return {}
    if isinstance(row, pd.Series):
        row = row.to_dict()
    return {k: _clean(v) for k, v in dict(row).items()}


def as_rows(history) -> list[dict]:
    """Audit rows (a frame or any iterable of rows) as plain dicts."""
    if history is None:
        return []
    if isinstance(history, pd.DataFrame):
        return [as_dict(r) for _, r in history.iterrows()]
    return [as_dict(r) for r in history]


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
    return sorted({v for v in values if 0 < v <= 100}, reverse=True) or ladder_of(None)


def fallback_target(release: Mapping[str, Any] | None) -> tuple[ActionKind, FlagTarget]:
    variant = (release or {}).get("fallback_variant")
    if variant:
        return ActionKind.SWITCH_VARIANT, FlagTarget(True, 0, variant)
    return ActionKind.DISABLE, FlagTarget(False, 0)


def next_rung_below(current: int, ladder: Iterable[int]) -> int | None:
    lower = [r for r in ladder if r < current]
    return max(lower) if lower else None


def lineage_of(decision: Mapping[str, Any]) -> dict:
    """The decision's lineage fields, JSON-ready, for the audit row."""
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
    return decision.get("state") == DecisionState.ACT and (decision.get("action") or DecisionAction.NONE) in FLAG_CHANGING_ACTIONS


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
    d = as_dict(decision_row)
    release = as_dict(release_row) if release_row is not None else {}
    base = dict(
        action_id=d["decision_id"],
        flag_key=d["flag_key"],
        backend=backend,
        decision_id=d["decision_id"],
        release_version=d.get("release_version"),
        cohort=d.get("cohort"),
        severity=d.get("severity"),
        before=current_state,
        lineage=lineage_of(d),
    )
    state, action, severity = d.get("state"), str(d.get("action") or DecisionAction.NONE), str(d.get("severity") or Severity.NONE)
    if not acts(d):
        return ActionPlan(kind=ActionKind.NONE, status=PlanStatus.NOOP, target=None,
                          reason=f"decision is {state}/{action}: no flag change", **base)

    current = current_state.effective_rollout
    ladder = ladder_of(release)
    fb_kind, fb_target = fallback_target(release)
    unclear: list[str] = []
    if action == DecisionAction.DISABLE:
        kind, target = ActionKind.DISABLE, FlagTarget(False, 0)
    elif action == DecisionAction.SWITCH_VARIANT:
        if release.get("fallback_variant"):
            kind, target = fb_kind, fb_target
        else:
            kind, target = ActionKind.DISABLE, FlagTarget(False, 0)
            unclear.append("switch_variant decided but the release names no fallback_variant")
    elif severity == Severity.SEVERE:  # step_down
        kind, target = fb_kind, fb_target
    else:
        rung = next_rung_below(current, ladder)
        kind, target = (ActionKind.STEP_DOWN, FlagTarget(True, rung)) if rung is not None else (fb_kind, fb_target)

    if severity not in (Severity.MODERATE, Severity.SEVERE):
        unclear.append(f"severity {severity!r} does not justify an automatic {action}")
    conf = d.get("mean_confidence")
    if policy.min_confidence is not None and (conf is None or conf < policy.min_confidence):
        unclear.append(f"mean confidence {conf} below {policy.min_confidence}")

    step = f"{describe(current_state)} -> {describe(target)}"
    reason = f"{(d.get('reason') or action).rstrip('.')}. {step} ({severity}; ladder {ladder} then {fb_kind})"
    plan = ActionPlan(kind=kind, status=PlanStatus.READY, target=target, reason=reason, **base)

    if current == 0:
        return replace(plan, status=PlanStatus.SKIPPED, reason=f"flag already at {describe(current_state)}; nothing to step down")
    decided = d.get("target_rollout")
    if kind == ActionKind.STEP_DOWN and severity != Severity.SEVERE and decided is not None and current <= int(decided):
        return replace(
            plan, status=PlanStatus.SKIPPED,
            reason=f"flag already at {current}% <= the decision's target {int(decided)}%; not stepping twice for one decision",
        )
    if history is not None:
        blocked = guard(plan, history, current_state, policy, now)
        if blocked:
            return replace(plan, status=PlanStatus.SKIPPED, reason=blocked)
    if unclear:
        return replace(plan, status=PlanStatus.AWAITING_APPROVAL, reason=reason + ". Needs approval: " + "; ".join(unclear))
    if policy.approval_mode == "approve":
        return replace(plan, status=PlanStatus.AWAITING_APPROVAL, reason=reason + ". Approval mode: a human approves this change")
    return plan


def describe(s: FlagState | FlagTarget) -> str:
    """A flag state or target as reasons show it: off, variant X, or N%."""
    return describe_exposure(s.enabled, s.rollout, s.variant)


def ramps_up(target: FlagTarget | None, current: FlagState) -> bool:
    """Would `target` expose at least as many users to the release as `current` does?"""
    return (target is not None and target.enabled and target.variant is None
            and int(target.rollout) >= current.effective_rollout)


def active_hold(history, flag_key: str, now: datetime | None = None) -> dict | None:
    """The hold row in force on `flag_key`, if any: the latest hold/release_hold decides."""
    now = utc(now)
    rows = [r for r in as_rows(history) if r.get("flag_key") == flag_key and r.get("status") == AuditStatus.APPLIED
            and r.get("kind") in (ActionKind.HOLD, ActionKind.RELEASE_HOLD)]
    if not rows:
        return None
    latest = max(rows, key=lambda r: pd.Timestamp(r["created_at"]))
    if latest["kind"] == ActionKind.HOLD and (latest.get("hold_until") is None or pd.Timestamp(latest["hold_until"]) > now):
        return latest
    return None


def describe_hold(hold: Mapping[str, Any]) -> str:
    until = hold.get("hold_until")
    return f"flag held by {hold.get('actor')} until {utc(until).isoformat() if until is not None else 'released'}: {hold.get('reason')}"


def cooldown_ends(history, flag_key: str, cooldown: timedelta, *, exclude: str | None = None
                  ) -> tuple[dict, pd.Timestamp] | None:
    """The cooldown rule: the last applied change to `flag_key` that starts a cooldown (COOLDOWN_KINDS;
    `exclude` names an action that does not count, the one being judged) and when its cooldown ends.
    None when there is none or the cooldown is zero."""
    changes = [r for r in as_rows(history) if r.get("flag_key") == flag_key and r.get("kind") in COOLDOWN_KINDS
               and r.get("status") == AuditStatus.APPLIED and r.get("action_id") != exclude]
    if not changes or not cooldown:
        return None
    last = max(changes, key=lambda r: pd.Timestamp(r["updated_at"]))
    return last, utc(last["updated_at"]) + cooldown


def describe_cooldown(last: Mapping[str, Any], ends: pd.Timestamp) -> str:
    return f"cooldown: {last['kind']} by {last['actor']} at {utc(last['updated_at']).isoformat()}; cooldown until {ends.isoformat()}"


def guard(plan: ActionPlan, history, current: FlagState, policy: FlagPolicy, now: datetime | None = None) -> str | None:
    """Why an automatic action must not run now, or None."""
    now = utc(now)
    if ramps_up(plan.target, current):
        return f"would not lower exposure ({describe(current)} -> {describe(plan.target)}); automatic actions never ramp up"
    rows = as_rows(history)
    hold = active_hold(rows, plan.flag_key, now)
    if hold:
        return describe_hold(hold)
    cooling = cooldown_ends(rows, plan.flag_key, policy.cooldown, exclude=plan.action_id)
    if cooling and now < cooling[1]:
        return describe_cooldown(*cooling)
    return None
