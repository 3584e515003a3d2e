"""The words decisions and flag actions are written in, declared once.

Tables store these as plain strings (a StrEnum member IS its string: it compares equal to the stored
value, formats as it and converts to Arrow as it), so rows read back from Delta need no conversion;
code names the member, so a typo is an AttributeError at import, not a branch that never runs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class DecisionState(StrEnum):
    """What the rule concluded about one flag x release x cohort (`rollback_decisions.state`)."""

    ACT = "act"
    HOLD = "hold"
    PASS = "pass"
    INSUFFICIENT_DATA = "insufficient_data"


class DecisionAction(StrEnum):
    """What the decision recommends (`rollback_decisions.action`)."""

    NONE = "none"
    HOLD_PROMOTION = "hold_promotion"
    STEP_DOWN = "step_down"
    DISABLE = "disable"
    SWITCH_VARIANT = "switch_variant"
    BLOCK_RELEASE = "block_release"


# The recommendations that change a flag; `block_release` marks a superseded release bad instead.
FLAG_CHANGING_ACTIONS = (DecisionAction.STEP_DOWN, DecisionAction.DISABLE, DecisionAction.SWITCH_VARIANT)


class Severity(StrEnum):
    NONE = "none"
    LOW = "low"
    MODERATE = "moderate"
    SEVERE = "severe"


class ActionKind(StrEnum):
    """What an audit row records (`flag_actions.kind`): a flag change, or a human override."""

    STEP_DOWN = "step_down"
    DISABLE = "disable"
    SWITCH_VARIANT = "switch_variant"
    FORCE = "force"
    PROMOTE = "promote"
    HOLD = "hold"
    RELEASE_HOLD = "release_hold"
    APPROVE = "approve"
    REJECT = "reject"
    NONE = "none"  # a plan that changes nothing; never written


AUTOMATIC_KINDS = (ActionKind.STEP_DOWN, ActionKind.DISABLE, ActionKind.SWITCH_VARIANT)
# Every kind that changes the flag; the others only record what a human decided.
CHANGE_KINDS = AUTOMATIC_KINDS + (ActionKind.FORCE, ActionKind.PROMOTE)


class AuditStatus(StrEnum):
    """Where an audit row stands (`flag_actions.status`); see core/actions/__init__.py."""

    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    SKIPPED = "skipped"
    APPLIED = "applied"
    REJECTED = "rejected"
    FAILED = "failed"


TERMINAL = (AuditStatus.APPLIED, AuditStatus.REJECTED, AuditStatus.FAILED)  # the backend is never called again
OPEN = (AuditStatus.PENDING, AuditStatus.AWAITING_APPROVAL)  # waiting for a retry or a human


class PlanStatus(StrEnum):
    """What a plan asks the executor to do; `awaiting_approval` and `skipped` are written as such."""

    READY = "ready"
    AWAITING_APPROVAL = "awaiting_approval"
    SKIPPED = "skipped"
    NOOP = "noop"


# Per flag, in the policy YAML (`approval:`): `approve` makes a human approve every flag change.
ApprovalMode = Literal["auto", "approve"]
APPROVAL_MODES: tuple[str, ...] = get_args(ApprovalMode)
