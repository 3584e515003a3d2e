"""Unleash backend against a real unleash-server (tests/unleash_server.py); the effect is checked with
the official Unleash Python SDK, polling, because clients see changes after their refresh interval."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rollback_assets.core.actions.executor import execute_action
from rollback_assets.core.actions.plan import FlagPolicy, plan_action
from rollback_assets.core.flags import FlagState, FlagTarget, PermanentBackendError, make_flag_backend
from rollback_assets.core.lake import Lake

from conftest import poll
from unleash_server import unleash_server  # noqa: F401  (session fixture)

UnleashClient = pytest.importorskip("UnleashClient").UnleashClient
USERS = [f"user-{i}" for i in range(1000)]
T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def sdk(unleash_server, tmp_path):  # noqa: F811
    client = UnleashClient(
        url=unleash_server.api_url,
        app_name="rollback-assets-test",
        environment=unleash_server.environment,
        custom_headers={"Authorization": unleash_server.client_token},
        refresh_interval=1,
        disable_metrics=True,
        disable_registration=True,
        cache_directory=str(tmp_path / "unleash-cache"),
    )
    client.initialize_client()
    yield client
    client.destroy()



def poll_sdk(fn, ok):
    """The Unleash SDK refreshes its toggles on an interval: allow it longer than a file provider."""
    return poll(fn, ok, timeout=15.0, every=0.25)

def share_on(sdk, flag):
    return sum(sdk.is_enabled(flag, {"userId": u}) for u in USERS) / len(USERS)



def test_rollout_100_to_25_then_off_seen_by_sdk(unleash_server, sdk, tmp_path):  # noqa: F811
    backend = make_flag_backend(
        "unleash", url=unleash_server.url, admin_token=unleash_server.admin_token,
        environment=unleash_server.environment, create_missing=True,
    )
    flag = "checkout-redesign"
    assert backend.apply(flag, FlagTarget(True, 100), idempotency_key="setup") == FlagState(flag, True, 100)
    assert poll_sdk(lambda: share_on(sdk, flag), lambda s: s == 1.0) == 1.0

    lake = Lake(tmp_path / "lake")
    release = {"ladder": [100, 25, 5, 0], "fallback_variant": None}
    d = {"decision_id": "d-u1", "flag_key": flag, "state": "act", "action": "step_down", "severity": "moderate",
         "cohort": "device=mobile", "release_version": "7.1", "reason": "mobile checkout complaints doubled"}
    plan = plan_action(d, release, backend.get_state(flag), backend="unleash")
    policy = FlagPolicy(cooldown=timedelta(hours=1))
    res = execute_action(lake, backend, plan, policy=policy, now=T0)
    assert res.status == "applied" and res.row["before_rollout"] == 100 and res.row["after_rollout"] == 25
    got = poll_sdk(lambda: share_on(sdk, flag), lambda s: abs(s - 0.25) < 0.05)
    assert abs(got - 0.25) < 0.05, got
    # Re-running the same decision does not touch Unleash again.
    again = execute_action(lake, backend, plan, policy=policy, now=T0 + timedelta(minutes=1))
    assert again.called_backend == 0 and again.status == "applied"

    d2 = {**d, "decision_id": "d-u2", "severity": "severe", "action": "step_down", "reason": "payments failing"}
    plan2 = plan_action(d2, release, backend.get_state(flag), backend="unleash")
    assert plan2.kind == "disable"
    res2 = execute_action(lake, backend, plan2, policy=policy, now=T0 + timedelta(hours=2))
    assert res2.status == "applied" and res2.row["after_enabled"] is False
    assert poll_sdk(lambda: share_on(sdk, flag), lambda s: s == 0.0) == 0.0


def test_variant_switch_and_errors(unleash_server, sdk):  # noqa: F811
    backend = make_flag_backend(
        "unleash", url=unleash_server.url, admin_token=unleash_server.admin_token,
        environment=unleash_server.environment, create_missing=True,
    )
    flag = "search-ranking"
    backend.apply(flag, FlagTarget(True, 25), idempotency_key="s1")
    state = backend.apply(flag, FlagTarget(True, 0, "legacy"), idempotency_key="s2")
    assert state == FlagState(flag, True, 100, "legacy") and state.effective_rollout == 0
    names = poll_sdk(
        lambda: {sdk.get_variant(flag, {"userId": u})["name"] for u in USERS[:50]},
        lambda n: n == {"legacy"},
    )
    assert names == {"legacy"}

    with pytest.raises(PermanentBackendError) as e:
        make_flag_backend("unleash", url=unleash_server.url, admin_token="*:*.0123456789abcdef0123456789abcdef").get_state(flag)
    assert e.value.status_code == 401 and "0123456789abcdef0123" not in str(e.value)
    strict = make_flag_backend("unleash", url=unleash_server.url, admin_token=unleash_server.admin_token)
    with pytest.raises(PermanentBackendError):
        strict.apply("does-not-exist", FlagTarget(True, 25), idempotency_key="x")
