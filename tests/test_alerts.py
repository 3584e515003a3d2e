"""The two alerts: a guardrail turning red (business signal) and a failed run (pipeline broken), each
announced once, through the signed notification webhook, and never skipped by a fresh cursor."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from rollback_assets.defs.alerts import guardrail_alert, run_failure_alert
from rollback_assets.defs.checks import GUARDRAIL_CHECK
from rollback_assets.defs.flags import FlagControlResource

from webhook_receiver import WebhookReceiver

SECRET = "alert-test-secret"


@pytest.fixture
def receiver():
    rx = WebhookReceiver(SECRET).start()
    yield rx
    rx.stop()


def _flags(receiver, tmp_path) -> FlagControlResource:
    return FlagControlResource(backend="flagd", flagd_path=str(tmp_path / "flags.json"),
                               notify_url=f"{receiver.url}/notify", notify_secret=SECRET)


def _tick(sensor, instance, defs, resources, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=resources) as context:
        result = sensor(context)
        return result, context.cursor


def test_guardrail_alert_announces_a_trip_once(first_run, graph_defs, dagster_instance, receiver, tmp_path):
    resources = {**graph_defs.resources, "flags": _flags(receiver, tmp_path)}
    result, cursor = _tick(guardrail_alert, dagster_instance, graph_defs, resources, None)
    bad = GUARDRAIL_CHECK
    assert isinstance(result, dg.SkipReason) and result.skip_message == "notified 1 newly failing guardrail(s): checkout-redesign"
    (note,) = receiver.notifications
    decision = first_run.tables["rollback_decisions"].query("state == 'act'").iloc[0]
    assert note["check"] == bad and note["decision_id"] == note["flag_action_id"] == decision.decision_id
    assert note["text"] == first_run.checks[bad].description, "the notification is the check's own sentence"
    assert (note["flag"], note["cohort"]) == ("checkout-redesign", "device=mobile|locale=de-DE")

    # Nothing new: the next tick says so on the tick, and sends nothing.
    result, cursor = _tick(guardrail_alert, dagster_instance, graph_defs, resources, cursor)
    assert result.skip_message.startswith("no newly failing guardrail (0 new evaluation(s)")
    assert len(receiver.notifications) == 1
    assert json.loads(cursor)["acting"] == ["checkout-redesign"], "the cursor remembers which flags are red"


def test_run_failure_alert_reports_failures_from_before_its_first_tick(receiver, tmp_path):
    """Dagster's run_failure_sensor starts at the newest event and would drop `broken`'s first failure."""

    @dg.op
    def explode():
        raise RuntimeError("landing zone unreadable")

    broken = dg.GraphDefinition(name="broken", node_defs=[explode]).to_job()
    elsewhere = dg.GraphDefinition(name="elsewhere", node_defs=[explode]).to_job()
    resources = {"flags": _flags(receiver, tmp_path)}
    defs = dg.Definitions(jobs=[broken], sensors=[run_failure_alert], resources=resources)
    with dg.instance_for_test() as instance:
        first = broken.execute_in_process(instance=instance, raise_on_error=False)
        elsewhere.execute_in_process(instance=instance, raise_on_error=False)  # not a job of this code location
        result, cursor = _tick(run_failure_alert, instance, defs, resources, None)
        assert result.skip_message == f"announced 1 failed run(s): broken {first.run_id[:8]}"
        (note,) = receiver.notifications
        assert note["dedup_key"] == f"run-failure:{first.run_id}" and "broken" in note["text"]

        result, cursor = _tick(run_failure_alert, instance, defs, resources, cursor)
        assert result.skip_message == "no new failed runs" and len(receiver.notifications) == 1

        second = broken.execute_in_process(instance=instance, raise_on_error=False)
        result, cursor = _tick(run_failure_alert, instance, defs, resources, cursor)
        assert result.skip_message == f"announced 1 failed run(s): broken {second.run_id[:8]}"
        assert [n["dedup_key"] for n in receiver.notifications] == [f"run-failure:{first.run_id}", f"run-failure:{second.run_id}"]
