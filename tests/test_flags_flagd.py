"""flagd backend: every action is checked by evaluating the written file with the real OpenFeature
SDK + flagd provider in FILE (in-process) mode, the way an application would read it."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from rollback_assets.core.actions.executor import execute_action
from rollback_assets.core.actions.plan import FlagPolicy, plan_action
from rollback_assets.core.flags import FlagState, FlagTarget, PermanentBackendError, make_flag_backend
from rollback_assets.core.lake import Lake

from conftest import poll

of_api = pytest.importorskip("openfeature.api")
from openfeature.contrib.provider.flagd import FlagdProvider  # noqa: E402
from openfeature.contrib.provider.flagd.config import ResolverType  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402

USERS = [f"user-{i}" for i in range(2000)]
T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def flag_file(tmp_path):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            "new-checkout": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
            "search-v2": {
                "state": "ENABLED",
                "variants": {"on": "v2", "off": "v1", "legacy": "v0-legacy"},
                "defaultVariant": "on",
            },
        },
    }))
    return path


@pytest.fixture
def client(flag_file):
    of_api.set_provider(FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(flag_file)))
    c = of_api.get_client()
    deadline = time.monotonic() + 10
    while c.get_boolean_details("new-checkout", False, EvaluationContext(targeting_key="probe")).reason != "STATIC":
        assert time.monotonic() < deadline, "flagd provider did not load the file"
        time.sleep(0.05)
    yield c
    of_api.shutdown()


def share_on(client, flag="new-checkout"):
    return sum(client.get_boolean_value(flag, False, EvaluationContext(targeting_key=u)) for u in USERS) / len(USERS)



def decision(i, severity="moderate", action="step_down", flag="new-checkout", target=None):
    return {
        "decision_id": f"d-{flag}-{i}", "flag_key": flag, "release_version": "2.0", "cohort": "all",
        "state": "act", "action": action, "severity": severity, "target_rollout": target,
        "reason": "Negative share doubled on checkout", "policy_name": "p", "policy_version": "1",
    }


def test_ladder_100_25_5_off_evaluated_by_openfeature(tmp_path, flag_file, client):
    backend = make_flag_backend("flagd", path=flag_file)
    lake = Lake(tmp_path / "lake")
    release = {"flag_key": "new-checkout", "version": "2.0", "ladder": [100, 25, 5, 0], "fallback_variant": None}
    policy = FlagPolicy(cooldown=timedelta(minutes=30))
    assert share_on(client) == 1.0

    expected = [(25, 0.25), (5, 0.05)]
    for i, (rollout, share) in enumerate(expected):
        state = backend.get_state("new-checkout")
        plan = plan_action(decision(i), release, state, backend="flagd", policy=policy)
        assert plan.target == FlagTarget(True, rollout)
        res = execute_action(lake, backend, plan, policy=policy, now=T0 + timedelta(hours=i))
        assert res.status == "applied" and res.called_backend == 1
        assert res.row["after_rollout"] == rollout
        got = poll(lambda: share_on(client), lambda s: abs(s - share) < 0.03)
        assert abs(got - share) < 0.03, f"expected ~{share} of users on, got {got}"

    # The bottom of the ladder without a fallback variant: the flag is disabled, callers get their default.
    plan = plan_action(decision(9), release, backend.get_state("new-checkout"), backend="flagd", policy=policy)
    assert plan.kind == "disable"
    res = execute_action(lake, backend, plan, policy=policy, now=T0 + timedelta(hours=5))
    assert res.status == "applied" and res.row["after_enabled"] is False
    assert poll(lambda: share_on(client), lambda s: s == 0.0) == 0.0
    details = client.get_boolean_details("new-checkout", False, EvaluationContext(targeting_key="user-1"))
    assert details.reason == "DISABLED" and details.flag_metadata.get("lastActionId") == "d-new-checkout-9"


def test_sticky_subset_and_severe_switches_variant(flag_file, client):
    backend = make_flag_backend("flagd", path=flag_file)
    backend.apply("search-v2", FlagTarget(True, 25), idempotency_key="a1")
    ctx = [EvaluationContext(targeting_key=u) for u in USERS]
    on25 = poll(
        lambda: {u.targeting_key for u in ctx if client.get_string_value("search-v2", "v1", u) == "v2"},
        lambda s: abs(len(s) / len(USERS) - 0.25) < 0.03,
    )
    backend.apply("search-v2", FlagTarget(True, 5), idempotency_key="a2")
    on5 = poll(
        lambda: {u.targeting_key for u in ctx if client.get_string_value("search-v2", "v1", u) == "v2"},
        lambda s: abs(len(s) / len(USERS) - 0.05) < 0.02,
    )
    assert on5 <= on25, "users kept at 5% must be a subset of the 25% cohort"

    release = {"flag_key": "search-v2", "version": "2.0", "ladder": [100, 25, 5, 0], "fallback_variant": "legacy"}
    plan = plan_action(decision(1, severity="severe", flag="search-v2"), release, backend.get_state("search-v2"), backend="flagd")
    assert plan.kind == "switch_variant" and plan.target == FlagTarget(True, 0, "legacy")
    after = backend.apply("search-v2", plan.target, idempotency_key=plan.action_id)
    assert after == FlagState("search-v2", True, 0, "legacy")
    values = poll(lambda: {client.get_string_value("search-v2", "v1", c) for c in ctx[:200]}, lambda v: v == {"v0-legacy"})
    assert values == {"v0-legacy"}


def test_file_is_valid_after_every_write_and_unknown_variant_is_permanent(flag_file):
    backend = make_flag_backend("flagd", path=flag_file)
    for r in (100, 60, 25, 5, 0):
        backend.apply("new-checkout", FlagTarget(True, r), idempotency_key=f"k{r}")
        doc = json.loads(flag_file.read_text())  # atomically replaced: always whole JSON
        assert backend.get_state("new-checkout").rollout == r
        assert doc["flags"]["search-v2"]["defaultVariant"] == "on", "other flags are untouched"
    assert not list(flag_file.parent.glob(".flags.json.*.tmp"))
    with pytest.raises(PermanentBackendError):
        backend.apply("new-checkout", FlagTarget(True, 0, "nope"), idempotency_key="bad")
    with pytest.raises(PermanentBackendError):
        backend.get_state("missing-flag")
