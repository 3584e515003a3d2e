"""Governance checks (rollback_assets/defs/governance.py): expired flags still enabled, fallbacks left in place
too long. Each is run as a real Dagster asset check (a check-only job on a temp lake + flagd file) and must
name the owner in its metadata."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from rollback_assets.core import pipeline
from rollback_assets.core.actions import executor, overrides
from rollback_assets.core.actions.plan import FlagPolicy, plan_action
from rollback_assets.core.flags import FlagTarget, make_flag_backend
from rollback_assets.core.governance import stale_fallbacks
from rollback_assets.core.lake import Lake
from rollback_assets.core.releases import release_record, releases_frame
from rollback_assets.defs.assets import release_artifacts
from rollback_assets.defs.flags import FlagControlResource, flag_actions
from rollback_assets.defs.governance import GOVERNANCE_CHECKS, fallback_age_check
from rollback_assets.defs.resources import LakeResource, SettingsResource

NOW = datetime.now(timezone.utc)


def _release(flag, owner, expires_days, version="1.0", fallback_variant=None, released_days_ago=60):
    return release_record(flag, version, NOW - timedelta(days=released_days_ago), owner=owner, fallback_variant=fallback_variant,
                          expires_at=(NOW + timedelta(days=expires_days)).isoformat() if expires_days is not None else None)


def _fallback(lake, backend, flag, days_ago, severity="severe", action="disable", version="1.0"):
    """An automatic fallback applied `days_ago` days ago, through the real planner and executor."""
    decision = {"decision_id": f"d-{flag}-{days_ago}", "flag_key": flag, "release_version": version, "cohort": "all",
                "state": "act", "action": action, "severity": severity, "reason": f"{flag} complaints doubled"}
    release = {"ladder": [100, 25, 5, 0], "fallback_variant": "legacy" if action == "switch_variant" else None}
    plan = plan_action(decision, release, backend.get_state(flag), backend="flagd")
    res = executor.execute_action(lake, backend, plan, policy=FlagPolicy(cooldown=timedelta(0)),
                                  now=NOW - timedelta(days=days_ago))
    assert res.status == "applied", res.message
    return res.row


@pytest.fixture
def world(tmp_path):
    """Releases with owners and expiry dates, a flagd file, and flag_actions history relative to now."""
    lake = Lake(tmp_path / "lake")
    pipeline.register_releases(lake, releases_frame([
        _release("old-banner", "growth@acme.test", -10),          # expired, still on at 100 %  -> finding
        _release("old-banner", "growth@acme.test", -10, "0.9", released_days_ago=90),  # an older release of it
        _release("retired-flag", "web@acme.test", -30),           # expired, disabled in the backend -> fine
        _release("gone-flag", "web@acme.test", -30),              # expired, removed from the backend -> fine
        _release("fresh-flag", "search-team@acme.test", 30),      # not expired
        _release("no-expiry", None, None),                        # no expiry at all
        _release("checkout", "checkout-team@acme.test", 90),      # disabled 20 days ago -> stale fallback
        _release("reco", "ranking-team@acme.test", 90, fallback_variant="legacy"),  # switched 3 days ago -> active, fine
        _release("search", "search-team@acme.test", 90),          # disabled 30 days ago, promoted 25 days ago -> fine
        _release("payments", "payments-team@acme.test", 90),      # disabled 20 days ago, per-flag limit 30 days -> fine
    ]))
    flag_file = tmp_path / "flags.json"
    backend = make_flag_backend("flagd", path=flag_file)
    for flag in ("old-banner", "retired-flag", "fresh-flag", "no-expiry", "checkout", "search", "payments"):
        backend.apply(flag, FlagTarget(True, 100), idempotency_key=f"seed-{flag}")
    doc = json.loads(flag_file.read_text())
    doc["flags"]["reco"] = {"state": "ENABLED", "variants": {"on": True, "off": False, "legacy": "v1"}, "defaultVariant": "on"}
    flag_file.write_text(json.dumps(doc))
    backend.apply("retired-flag", FlagTarget(False, 0), idempotency_key="retire")

    _fallback(lake, backend, "checkout", 20)
    _fallback(lake, backend, "reco", 3, action="switch_variant")
    _fallback(lake, backend, "search", 30)
    restored = overrides.promote(lake, backend, "search", to=100, actor="carol", reason="fixed in 1.1",
                                 policy=FlagPolicy(cooldown=timedelta(0)), now=NOW - timedelta(days=25))
    assert restored.status == "applied", restored.message
    _fallback(lake, backend, "payments", 20)

    policy = tmp_path / "policy.yaml"
    policy.write_text("name: fixed-rule\nversion: 1\nflags:\n  payments:\n    max_fallback_days: 30\n")
    resources = {"lake": LakeResource(root=str(lake.root)), "settings": SettingsResource(policy_path=str(policy)),
                 "flags": FlagControlResource(backend="flagd", flagd_path=str(flag_file))}
    return lake, backend, resources


def _run_checks(resources, checks=GOVERNANCE_CHECKS):
    job = dg.define_asset_job("governance", selection=dg.AssetSelection.checks(*checks))
    defs = dg.Definitions(assets=[release_artifacts, flag_actions], asset_checks=checks, jobs=[job], resources=resources)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("governance").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, "a WARN governance check must never fail the run"
    evaluations = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert set(evaluations) == {c.check_key.name for c in checks}
    return evaluations


def test_expired_flag_still_enabled_warns_and_names_owner(world):
    _, _, resources = world
    check = _run_checks(resources)["flag_expiry"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    overdue = check.metadata["expired_still_enabled"].value
    assert [(f["flag_key"], f["version"], f["owner"]) for f in overdue] == [("old-banner", "1.0", "growth@acme.test")]
    assert overdue[0]["backend_state"] == "on at 100%" and 9.9 <= overdue[0]["days_past_expiry"] <= 10.1
    assert check.metadata["owners"].value == "growth@acme.test"
    assert "growth@acme.test" in check.description
    retired = {f["flag_key"]: f["backend_state"] for f in check.metadata["expired_retired"].value}
    assert retired == {"retired-flag": "disabled", "gone-flag": "removed from the backend"}


def test_expiry_passes_once_the_flag_is_turned_off(world):
    _, backend, resources = world
    backend.apply("old-banner", FlagTarget(False, 0), idempotency_key="cleanup")
    check = _run_checks(resources)["flag_expiry"]
    assert check.passed is True and check.metadata["expired_still_enabled"].value == []


def test_expiry_with_unreadable_backend_counts_as_still_enabled(world, tmp_path):
    _, _, resources = world
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    check = _run_checks({**resources, "flags": FlagControlResource(backend="flagd", flagd_path=str(broken))})["flag_expiry"]
    assert check.passed is False
    flags = {f["flag_key"]: f for f in check.metadata["expired_still_enabled"].value}
    assert set(flags) == {"old-banner", "retired-flag", "gone-flag"}  # nobody proved they are gone
    assert all(f["backend_state"].startswith("unknown:") for f in flags.values())


def test_fallback_older_than_14_days_warns_and_names_owner(world):
    _, _, resources = world
    check = _run_checks(resources)["fallback_age"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    stale = check.metadata["stale_fallbacks"].value
    assert [(f["flag_key"], f["owner"], f["kind"], f["decision_id"]) for f in stale] == [
        ("checkout", "checkout-team@acme.test", "disable", "d-checkout-20")]
    assert 19.9 <= stale[0]["days_active"] <= 20.1 and stale[0]["max_days"] == 14.0 and stale[0]["actor"] == "auto"
    active = {f["flag_key"]: f for f in check.metadata["active_fallbacks"].value}
    # reco: switched 3 days ago; payments: 20 days but its policy allows 30; search: promoted after the fallback.
    assert set(active) == {"reco", "payments"} and active["payments"]["max_days"] == 30.0
    assert active["reco"]["kind"] == "switch_variant" and active["reco"]["owner"] == "ranking-team@acme.test"
    assert check.metadata["owners"].value == "checkout-team@acme.test"


def test_fallback_limit_is_configurable_and_force_restores(world):
    lake, backend, resources = world
    check = _run_checks(resources, [fallback_age_check(max_days=2)])["fallback_age"]
    # The factory limit applies to every flag except where the policy YAML sets max_fallback_days (payments: 30).
    assert {f["flag_key"] for f in check.metadata["stale_fallbacks"].value} == {"checkout", "reco"}
    assert {f["flag_key"] for f in check.metadata["active_fallbacks"].value} == {"payments"}
    # A human force back to a rollout ends the fallback; a force to off starts / keeps one.
    overrides.force(lake, backend, "checkout", actor="dana", reason="fix shipped", rollout=25)
    overrides.force(lake, backend, "fresh-flag", actor="erin", reason="kill switch", enabled=False,
                  now=NOW - timedelta(days=15))
    check = _run_checks(resources)["fallback_age"]
    stale = check.metadata["stale_fallbacks"].value
    assert [(f["flag_key"], f["kind"], f["actor"], f["owner"]) for f in stale] == [
        ("fresh-flag", "force", "human:erin", "search-team@acme.test")]


def test_no_history_passes():
    import pandas as pd

    from rollback_assets.core.schemas import FLAG_ACTIONS, RELEASE_ARTIFACTS

    assert stale_fallbacks(FLAG_ACTIONS.empty_frame(), RELEASE_ARTIFACTS.empty_frame()) == ([], [])
    assert stale_fallbacks(pd.DataFrame(columns=FLAG_ACTIONS.names), RELEASE_ARTIFACTS.empty_frame()) == ([], [])


def test_checks_load_into_the_code_location(tmp_path, monkeypatch):
    """What the lead's one-line change produces: build_definitions() + GOVERNANCE_CHECKS resolve, and the
    checks join the jobs of their assets (flag_expiry -> feedback_job, fallback_age -> flag_action_job)."""
    from rollback_assets.definitions import build_definitions

    monkeypatch.setenv("ROLLBACK_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("ROLLBACK_LANDING", str(tmp_path / "landing"))
    monkeypatch.setenv("ROLLBACK_FLAGD_FILE", str(tmp_path / "flags.json"))
    base = build_definitions()
    defs = dg.Definitions(assets=base.assets, asset_checks=[*base.asset_checks, *GOVERNANCE_CHECKS], jobs=base.jobs,
                          sensors=base.sensors, resources=base.resources)
    defs.validate_loadable(defs)
    feedback = defs.resolve_job_def("feedback_job").asset_layer.asset_graph
    actions_job = defs.resolve_job_def("flag_action_job").asset_layer.asset_graph
    assert dg.AssetCheckKey(release_artifacts.key, "flag_expiry") in feedback.asset_check_keys
    assert dg.AssetCheckKey(flag_actions.key, "fallback_age") in actions_job.asset_check_keys
