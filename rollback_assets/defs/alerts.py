"""Two alerts with two meanings: a guardrail turned red (the product working: customers dislike a
release) and a run failed (the pipeline broken). Both are plain sensors with storage-id cursors so
no event is skipped: Dagster's `run_failure_sensor` starts its cursor at the newest event on its first
tick, which drops the failures of runs made before the daemon started (the demo's, a CI backfill's).
"""

from __future__ import annotations

import json
import time
from functools import partial

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from .assets import rollback_decisions
from .checks import GUARDRAIL_CHECK
from .flags import FlagControlResource

FIRST_TICK_LOOKBACK_SECONDS = 24 * 3600  # a new daemon reports the last day's failures, not all history
BATCH = 100
GUARDRAIL_KEY = dg.AssetCheckKey(rollback_decisions.key, GUARDRAIL_CHECK)
# Running from the start, ticking every 30 s: an alert that waits for someone to switch it on is no alert.
alert_sensor = partial(dg.sensor, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)


def _notify(context: dg.SensorEvaluationContext, flags: FlagControlResource, payload: dict) -> None:
    notifier = flags.notifier()
    if notifier is not None:
        notifier.notify(payload)
    context.log.warning(json.dumps(payload))


def _belongs_here(context: dg.SensorEvaluationContext, run: dg.DagsterRun) -> bool:
    """Runs of this code location, and runs without an origin (execute_in_process) of one of its jobs."""
    origin = context.code_location_origin
    if run.remote_job_origin is not None:
        return origin is None or run.remote_job_origin.repository_origin.code_location_origin.location_name == origin.location_name
    repository = context.repository_def
    return repository is None or repository.has_job(run.job_name)


@alert_sensor(
    description="Announces every failed run of this code location (pipeline broken: a crash, a blocking data-quality "
                "check, a flag backend that kept failing). Guardrail trips are not failures: see guardrail_alert.",
)
def run_failure_alert(context: dg.SensorEvaluationContext, flags: FlagControlResource):
    """Cursor: the storage id of the last RUN_FAILURE event read. Without one it starts a day back."""
    first_tick = context.cursor is None
    after = int(context.cursor) if context.cursor else -1
    records = context.instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(event_type=dg.DagsterEventType.RUN_FAILURE, after_storage_id=after),
        limit=BATCH, ascending=True,
    ).records
    announced = []
    for record in records:
        if first_tick and record.timestamp < time.time() - FIRST_TICK_LOOKBACK_SECONDS:
            continue
        run = context.instance.get_run_by_id(record.event_log_entry.run_id)
        if run is None or not _belongs_here(context, run):
            continue
        message = record.event_log_entry.message or "run failed"
        _notify(context, flags, {
            "text": f"rollback-assets run {run.run_id} of {run.job_name} failed: {message}",
            "summary": f"{run.job_name} failed", "severity": "error", "source": "rollback-assets",
            "dedup_key": f"run-failure:{run.run_id}",
        })
        announced.append(f"{run.job_name} {run.run_id[:8]}")
    if records:
        context.update_cursor(str(records[-1].storage_id))
    if announced:
        return dg.SkipReason(f"announced {len(announced)} failed run(s): {', '.join(announced)}")
    return dg.SkipReason(f"no new failed runs ({len(records)} failure event(s) read, none of this code location)"
                         if records else "no new failed runs")


@alert_sensor(
    description="Notifies the flag's owner channel when a flag turns red on the sentiment guardrail check (it "
                "passed or had never acted before), with the flag's sentence: flag, release, cohort, rise, bound, action.",
)
def guardrail_alert(context: dg.SensorEvaluationContext, flags: FlagControlResource):
    """Cursor: the id of the last guardrail evaluation read and the flags acting in it, so a flag that
    stays red is announced once, and again only after it has passed in between."""
    state: dict = json.loads(context.cursor) if context.cursor else {}
    last_id, was_acting = state.get("last_id", -1), set(state.get("acting", []))
    history = context.instance.event_log_storage.get_asset_check_execution_history(
        GUARDRAIL_KEY, limit=BATCH,
        status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED},
    )
    announced, read = [], 0
    for record in sorted((r for r in history if r.id > last_id), key=lambda r: r.id):
        read += 1
        evaluation = record.event.dagster_event.asset_check_evaluation_data if record.event else None
        value = (evaluation.metadata if evaluation else {}).get("acting_flags")
        acting: dict = value.value if value is not None and record.status == AssetCheckExecutionRecordStatus.FAILED else {}
        for flag, about in sorted(acting.items()):
            if flag in was_acting:
                continue
            _notify(context, flags, {
                "text": about.get("sentence", f"{flag}: guardrail red"), "summary": f"guardrail red: {flag}",
                "severity": "warning", "source": "rollback-assets", "check": GUARDRAIL_CHECK, "run_id": record.run_id,
                "flag": flag, **{k: v for k, v in about.items() if k != "sentence"},
                "dedup_key": f"guardrail:{flag}:{about.get('decision_id', record.id)}",
            })
            announced.append(flag)
        last_id, was_acting = record.id, set(acting)
    context.update_cursor(json.dumps({"last_id": last_id, "acting": sorted(was_acting)}))
    if announced:
        return dg.SkipReason(f"notified {len(announced)} newly failing guardrail(s): {', '.join(announced)}")
    return dg.SkipReason(f"no newly failing guardrail ({read} new evaluation(s) of {GUARDRAIL_CHECK})")
