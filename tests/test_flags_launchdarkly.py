"""LaunchDarkly backend against a strict local stub of the REST API; the flag data the stub writes
is evaluated by the real LaunchDarkly Python SDK (file data source)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from rollback_assets.core.actions.executor import execute_action
from rollback_assets.core.actions.plan import FlagPolicy, plan_action
from rollback_assets.core.flags import (
    ApprovalRequiredError,
    FlagState,
    FlagTarget,
    PermanentBackendError,
    TransientBackendError,
    make_flag_backend,
)
from rollback_assets.core.lake import Lake

from launchdarkly_stub import LaunchDarklyStub

ldclient = pytest.importorskip("ldclient")
from ldclient import Context  # noqa: E402
from ldclient.client import LDClient  # noqa: E402
from ldclient.config import Config  # noqa: E402
from ldclient.integrations import Files  # noqa: E402

TOKEN = "api-0f3c2a1e-1111-4222-8333-944455566677"
T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def stub(tmp_path):
    s = LaunchDarklyStub(TOKEN, tmp_path / "ld-flags.json").start()
    s.add_boolean_flag("new-checkout")
    s.add_boolean_flag("search-v2", extra_variations=("legacy",))
    yield s
    s.stop()


@pytest.fixture
def backend(stub):
    return make_flag_backend("launchdarkly", api_token=TOKEN, base_url=stub.url, project="default", environment="production")


def sdk_values(stub, flag, n=2000, default=None):
    """Evaluate `flag` for n users with the real SDK reading the stub's flag file."""
    config = Config(
        sdk_key="sdk-local-test",
        update_processor_class=Files.new_data_source(paths=[str(stub.sdk_file)]),
        send_events=False,
        diagnostic_opt_out=True,
    )
    client = LDClient(config=config, start_wait=5)
    try:
        assert client.is_initialized()
        return [client.variation(flag, Context.builder(f"user-{i}").kind("user").build(), default) for i in range(n)]
    finally:
        client.close()


def test_step_down_ladder_evaluated_by_sdk(tmp_path, stub, backend):
    logging.getLogger("ldclient").setLevel(logging.WARNING)
    lake = Lake(tmp_path / "lake")
    release = {"ladder": [100, 25, 5, 0], "fallback_variant": None}
    assert sdk_values(stub, "new-checkout", 200, False).count(True) == 200
    for i, (rollout, share) in enumerate([(25, 0.25), (5, 0.05)]):
        d = {"decision_id": f"d{i}", "flag_key": "new-checkout", "state": "act", "action": "step_down",
             "severity": "moderate", "cohort": "all", "release_version": "2.0", "reason": "checkout complaints"}
        plan = plan_action(d, release, backend.get_state("new-checkout"), backend="launchdarkly")
        res = execute_action(lake, backend, plan, policy=FlagPolicy(cooldown=timedelta(hours=1)), now=T0 + timedelta(hours=2 * i))
        assert res.status == "applied" and res.row["after_rollout"] == rollout
        values = sdk_values(stub, "new-checkout", 2000, False)
        assert abs(values.count(True) / 2000 - share) < 0.03
    # What went over the wire: a semantic patch with weights summing to 100000 keyed by variation _id.
    flag = stub.flags["new-checkout"]
    on_id, off_id = flag["variations"][0]["_id"], flag["variations"][1]["_id"]
    last = stub.patches[-1]
    assert last["environmentKey"] == "production"
    ins = [i for i in last["instructions"] if i["kind"] == "updateFallthroughVariationOrRollout"][0]
    assert ins["rolloutWeights"] == {on_id: 5000, off_id: 95000} and ins["rolloutContextKind"] == "user"
    assert last["_idempotency_key"] == "d1" and "d1" in last["comment"]

    d = {"decision_id": "d-severe", "flag_key": "new-checkout", "state": "act", "action": "step_down",
         "severity": "severe", "cohort": "all", "release_version": "2.0", "reason": "payment failures"}
    plan = plan_action(d, release, backend.get_state("new-checkout"), backend="launchdarkly")
    res = execute_action(lake, backend, plan, policy=FlagPolicy(cooldown=timedelta(0)), now=T0 + timedelta(hours=9))
    assert res.status == "applied" and res.row["after_enabled"] is False
    assert set(sdk_values(stub, "new-checkout", 300, True)) == {False}  # offVariation served


def test_switch_variant_and_turn_back_on(stub, backend):
    state = backend.apply("search-v2", FlagTarget(True, 0, "legacy"), idempotency_key="k1")
    assert state == FlagState("search-v2", True, 0, "legacy")
    assert set(sdk_values(stub, "search-v2", 100)) == {"legacy"}
    backend.apply("search-v2", FlagTarget(False, 0), idempotency_key="k2")
    state = backend.apply("search-v2", FlagTarget(True, 100), idempotency_key="k3")
    assert state == FlagState("search-v2", True, 100)
    kinds = [i["kind"] for i in stub.patches[-1]["instructions"]]
    assert kinds == ["updateFallthroughVariationOrRollout", "turnFlagOn"]
    assert set(sdk_values(stub, "search-v2", 100)) == {True}


def test_contract_errors_are_classified(stub, backend):
    stub.pending.add(("new-checkout", "production"))
    with pytest.raises(TransientBackendError) as e:
        backend.apply("new-checkout", FlagTarget(True, 25), idempotency_key="k")
    assert e.value.status_code == 400
    stub.pending.clear()

    stub.approval_required.add("production")
    with pytest.raises(ApprovalRequiredError):
        backend.apply("new-checkout", FlagTarget(True, 25), idempotency_key="k")
    stub.approval_required.clear()

    with pytest.raises(PermanentBackendError) as e:
        make_flag_backend("launchdarkly", api_token="api-wrong", base_url=stub.url).get_state("new-checkout")
    assert e.value.status_code == 401 and TOKEN not in str(e.value)

    with pytest.raises(PermanentBackendError):
        backend.apply("new-checkout", FlagTarget(True, 0, "no-such-variant"), idempotency_key="k")

    stub.fail_next = [503]
    with pytest.raises(TransientBackendError):
        backend.apply("new-checkout", FlagTarget(True, 25), idempotency_key="k")
    assert backend.apply("new-checkout", FlagTarget(True, 25), idempotency_key="k").rollout == 25


def test_pending_conflict_keeps_action_pending_then_applies_once(tmp_path, stub, backend):
    lake = Lake(tmp_path / "lake")
    stub.pending.add(("new-checkout", "production"))
    d = {"decision_id": "d-conflict", "flag_key": "new-checkout", "state": "act", "action": "step_down",
         "severity": "moderate", "cohort": "all", "release_version": "2.0", "reason": "r"}
    plan = plan_action(d, {"ladder": [100, 25, 5, 0]}, backend.get_state("new-checkout"), backend="launchdarkly")
    policy = FlagPolicy(max_attempts=2, backoff_s=0)
    res = execute_action(lake, backend, plan, policy=policy, sleep=lambda s: None)
    assert res.status == "pending" and res.row["attempts"] == 2 and "pending change" in res.row["last_error"]
    stub.pending.clear()
    res = execute_action(lake, backend, plan, policy=policy, sleep=lambda s: None)
    assert res.status == "applied" and res.row["attempts"] == 3
    res = execute_action(lake, backend, plan, policy=policy, sleep=lambda s: None)
    assert res.called_backend == 0 and len(stub.patches) == 1


def test_approval_required_environment_writes_awaiting_approval(tmp_path, stub, backend):
    lake = Lake(tmp_path / "lake")
    stub.approval_required.add("production")
    d = {"decision_id": "d-appr", "flag_key": "new-checkout", "state": "act", "action": "step_down",
         "severity": "moderate", "cohort": "all", "release_version": "2.0", "reason": "r"}
    plan = plan_action(d, {"ladder": [100, 25, 5, 0]}, backend.get_state("new-checkout"), backend="launchdarkly")
    res = execute_action(lake, backend, plan, sleep=lambda s: None)
    assert res.status == "awaiting_approval" and res.called_backend == 1 and "requires approval" in res.row["last_error"]
    assert backend.get_state("new-checkout").rollout == 100
