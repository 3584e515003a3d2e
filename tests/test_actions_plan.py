"""Planning a flag change from a decision, a release and the flag's current state: ladder math, no-ops,
decisions that wait for a human. Pure: no lake, no backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rollback_assets.core.actions.plan import FlagPolicy, cooldown_ends, plan_action
from rollback_assets.core.flags import FlagTarget
from rollback_assets.core.policy import PolicyConfig

from flag_actions_support import LADDER, T0, decision, st


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


def test_one_default_for_approval_and_cooldown_the_policy_files():
    assert FlagPolicy() == FlagPolicy.for_flag(PolicyConfig.load(), "any-flag")
    assert FlagPolicy().cooldown == timedelta(hours=6)


def test_one_cooldown_rule_counts_automatic_changes_and_forces_not_promotions():
    def row(action_id, kind, minutes, status="applied", flag="checkout"):
        return {"action_id": action_id, "flag_key": flag, "kind": kind, "status": status, "actor": "auto",
                "created_at": T0 + timedelta(minutes=minutes), "updated_at": T0 + timedelta(minutes=minutes)}

    hour = timedelta(hours=1)
    history = [row("a", "step_down", 0), row("b", "force", 10), row("c", "promote", 20), row("d", "disable", 30, "pending"),
               row("e", "disable", 40, flag="other"), row("f", "approve", 50)]
    last, ends = cooldown_ends(history, "checkout", hour)
    assert last["action_id"] == "b" and ends == T0 + timedelta(minutes=70)
    assert cooldown_ends(history, "checkout", hour, exclude="b")[0]["action_id"] == "a"  # the action being judged
    assert cooldown_ends(history, "checkout", timedelta(0)) is None
    assert cooldown_ends(history[2:], "checkout", hour) is None
    plan = plan_action(decision("d2"), LADDER, st(25), backend="w", policy=FlagPolicy(cooldown=hour), history=history,
                       now=T0 + timedelta(minutes=69))
    assert plan.status == "skipped" and plan.reason.startswith("cooldown: force")
