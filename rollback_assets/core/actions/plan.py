"""Decision + release + the flag's current state -> what to do. Pure: no I/O, no clock but `now`.

Ladder math (`plan_action`): the release's ladder (default 100 -> 25 -> 5) ends in a fallback:
switch to `fallback_variant` when the release names one, else disable the flag. `moderate` steps one
rung down from the flag's CURRENT rollout; `severe` goes straight to the fallback; `disable` /
`switch_variant` decisions go to that fallback. A decision that is unclear (low/no severity while
acting, a switch without a fallback variant, confidence under the policy minimum) waits for a human.

Guards for automatic actions (`guard`): an active human hold; the per-flag cooldown after the last
change; and never ramp up automatically. The executor applies them against the audit table at the
moment it would act, the sensor asks `block_ends` when a skipped action deserves another look, and the
promotion gate (`overrides.can_promote`) uses the same hold and cooldown rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

import pandas as pd

from ..flags.base import FlagState, FlagTarget
from ..clock import utc
from ..policy import FLAG_CHANGING_ACTIONS

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


def as_dict(row: Any) -> dict:
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


def lineage_of(decision: Mapping[str, Any]) -> dict:
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
    d = as_dict(decision_row)
    release = as_dict(release_row) if release_row is not None else {}
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
        lineage=lineage_of(d),
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
        return replace(plan, status="skipped", reason=f"flag already at {state_text(current_state)}; nothing to step down")
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


def state_text(s: FlagState) -> str:
    if not s.enabled:
        return "off"
    if s.variant:
        return f"variant {s.variant}"
    return f"{s.rollout}%"


def target_text(t: FlagTarget) -> str:
    if not t.enabled:
        return "off"
    if t.variant:
        return f"variant {t.variant}"
    return f"{t.rollout}%"


def _describe_step(before: FlagState, target: FlagTarget) -> str:
    return f"{state_text(before)} -> {target_text(target)}"


def target_effective(t: FlagTarget) -> int:
    return 0 if (not t.enabled or t.variant is not None) else int(t.rollout)


def as_rows(history) -> list[dict]:
    if history is None:
        return []
    if isinstance(history, pd.DataFrame):
        return [as_dict(r) for _, r in history.iterrows()]
    return [as_dict(r) for r in history]


def active_hold(history, flag_key: str, now: datetime | None = None) -> dict | None:
    """The hold row in force on `flag_key`, if any: the latest hold/release_hold decides."""
    now = utc(now)
    rows = [r for r in as_rows(history) if r.get("flag_key") == flag_key and r.get("kind") in ("hold", "release_hold") and r.get("status") == "applied"]
    if not rows:
        return None
    latest = max(rows, key=lambda r: pd.Timestamp(r["created_at"]))
    if latest["kind"] == "hold" and (latest.get("hold_until") is None or pd.Timestamp(latest["hold_until"]) > now):
        return latest
    return None


def guard(plan: ActionPlan, history, current: FlagState, policy: FlagPolicy, now: datetime | None = None) -> str | None:
    """Why an automatic action must not run now, or None."""
    now = utc(now)
    if plan.target is not None and plan.target.enabled and target_effective(plan.target) >= current.effective_rollout and plan.target.variant is None:
        return f"would not lower exposure ({state_text(current)} -> {target_text(plan.target)}); automatic actions never ramp up"
    rows = as_rows(history)
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

