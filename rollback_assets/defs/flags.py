"""Decisions become flag changes: the flag_actions asset and the sensor that starts it.

The core (`core/actions/`) guarantees at most one backend change per decision; this module only
decides when to ask and shows what happened.
"""

import os
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pyarrow.dataset as ds

from ..core import flags as flag_backends, vocabulary
from ..core.actions import executor, ledger, plan
from ..core.actions.plan import FlagPolicy
from ..core.config_file import ConfigError
from ..core.flags import SETTINGS as BACKEND_SETTINGS
from ..core.flags import SECRET_SETTINGS, BackendKind, FlagBackend
from ..core.notify import WebhookNotifier, webhook_notifier
from ..core.policy import PolicyConfig
from ..core.schemas import DECISIONS, FLAG_ACTIONS
from ..core.settings import Settings
from ..core.vocabulary import AuditStatus
from .assets import rollback_decisions
from .metadata import code_version, table_metadata, table_value
from .resources import LakeResource, SettingsResource

FLAG_ACTION_JOB_NAME = "flag_action_job"
FLAG_POOL = "flag_backend"
UNACTED_LOOKBACK = timedelta(days=7)  # acting decisions this recent without an audit row are recovered
ACTION_RUN_MAX_SECONDS = 600  # a flag_action_job run takes seconds; one older than this is dead
NEVER_BLOCKED = pd.Timestamp(0, tz="UTC")  # the block end of a skip no hold or cooldown caused
MAX_RUN_KEY_SUFFIX = 50  # run-key suffixes tried per open item (killed runs in a row)
WEBHOOK_SECRET_ENV = "ROLLBACK_WEBHOOK_SECRET"  # signs webhook flag changes and notifications
AUDIT_COLUMNS_SHOWN = ["flag_key", "release_version", "cohort", "kind", "status", "before_rollout", "after_rollout",
                       "after_variant", "actor", "approver", "reason", "decision_id"]


class FlagControlResource(dg.ConfigurableResource):
    """The flag backend and where notifications go. Settings left None take the backend's defaults
    (`core.flags.backend_from_settings`, the one place a backend is built); secrets come from the
    environment (dg.EnvVar)."""

    backend: BackendKind = "flagd"
    flagd_path: str | None = None  # default: flags/flags.json in the project
    unleash_url: str | None = None
    unleash_environment: str | None = None
    unleash_project: str | None = None
    unleash_admin_token: str | None = None
    launchdarkly_base_url: str | None = None
    launchdarkly_project: str | None = None
    launchdarkly_environment: str | None = None
    launchdarkly_api_token: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    notify_url: str | None = None
    notify_secret: str | None = None

    def client(self) -> FlagBackend:
        # Looked up on the module at call time: one factory for the assets, the sensors and the CLI.
        return flag_backends.backend_from_settings(self.backend, **{name: getattr(self, name) for name in BACKEND_SETTINGS})

    def notifier(self) -> WebhookNotifier | None:
        return webhook_notifier(self.notify_url, self.notify_secret)


def flag_control_from_env(settings: Settings | None = None) -> FlagControlResource:
    """ROLLBACK_FLAG_BACKEND picks the backend (flagd file by default; another value is refused here,
    naming the choices); its token, and the notification secret, only as dg.EnvVar, resolved in the run.
    A secret the chosen backend needs is checked for at load, not at the first flag change hours later."""
    settings = settings or Settings.from_env()
    options = {
        "backend": settings.flag_backend,
        "flagd_path": settings.flagd_file,
        "unleash_url": settings.unleash_url,
        "unleash_environment": settings.unleash_environment,
        "launchdarkly_base_url": settings.launchdarkly_base_url,
        "launchdarkly_project": settings.launchdarkly_project,
        "launchdarkly_environment": settings.launchdarkly_environment,
        "webhook_url": settings.flag_webhook_url,
        "notify_url": settings.notify_url,
    }
    needed = []
    for name in sorted(SECRET_SETTINGS):
        variable, kind, _ = BACKEND_SETTINGS[name]
        if kind == settings.flag_backend:
            options[name] = dg.EnvVar(variable)
            needed.append((variable, f"ROLLBACK_FLAG_BACKEND={kind}"))
    if settings.notify_url:
        options["notify_secret"] = dg.EnvVar(WEBHOOK_SECRET_ENV)
        needed.append((WEBHOOK_SECRET_ENV, "ROLLBACK_NOTIFY_URL (notifications are signed)"))
    for variable, why in needed:
        if not os.environ.get(variable):
            raise ConfigError(f"environment: {variable}: required by {why}, but not set")
    return FlagControlResource(**{k: v for k, v in options.items() if v is not None})


class FlagActionConfig(dg.Config):
    decision_ids: list[str] = []  # decisions to act on; empty = only retry open actions
    retry_pending: bool = True


@dg.asset(
    group_name="flags",
    deps=[rollback_decisions],
    kinds={"deltalake"},
    code_version=code_version(plan, ledger, executor, vocabulary),
    # One flag-changing step at a time across runs (the instance's `concurrency: pools` limit, 1 in the
    # shipped dagster.yaml): an action is planned from the flag's state, so two at once could both act.
    pool=FLAG_POOL,
    description="Audit trail of flag changes: before/after state, actor, approver, reason, decision, lineage.",
)
def flag_actions(
    context: dg.AssetExecutionContext, config: FlagActionConfig, lake: LakeResource, flags: FlagControlResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    the_lake = lake.lake()
    decisions = the_lake.read(DECISIONS, filter=ds.field("decision_id").isin(config.decision_ids)) if config.decision_ids else DECISIONS.empty_frame()
    # Intent before effect: the pending rows go in before the policy, the backend or the flag's state
    # are touched, so whatever fails after this leaves something the next tick retries.
    for decision in decisions.to_dict("records"):
        ledger.record_intent(the_lake, decision, backend=flags.backend, run_id=context.run_id)
    policy = settings.policy()
    backend = flags.client()
    since = datetime.now(timezone.utc) - UNACTED_LOOKBACK if config.retry_pending else None
    results = executor.act_on(the_lake, backend, decisions.to_dict("records"), policy_for=lambda flag: FlagPolicy.for_flag(policy, flag),
                              notifier=flags.notifier(), run_id=context.run_id, recover_since=since,
                              still_running=lambda run_id: _in_flight(context.instance, run_id))
    rows = pd.DataFrame([r.row for r in results if r.row])
    for r in results:
        context.log.info(f"{r.status}: {r.message or ledger.describe(r.row)}")
    shown = (rows if len(rows) else FLAG_ACTIONS.empty_frame())[AUDIT_COLUMNS_SHOWN]
    decision_runs = {d["decision_id"]: d.get("run_id") for d in decisions.to_dict("records")}
    version = the_lake.version(FLAG_ACTIONS)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(FLAG_ACTIONS, the_lake.uri(FLAG_ACTIONS), version),
            "backend": backend.name,
            "backend_calls": sum(r.called_backend for r in results),
            "by_status": dg.MetadataValue.json(rows.status.value_counts().to_dict() if len(rows) else {}),
            "actions": table_value(shown, FLAG_ACTIONS),
            **_single_action(rows),
            "decisions": dg.MetadataValue.asset(rollback_decisions.key),
            **{f"decision_run_{i}": dg.MetadataValue.dagster_run(run) for i, run in enumerate(decision_runs.values()) if run},
        },
        data_version=dg.DataVersion(f"flag_actions@{version}"),
    )


def _single_action(rows: pd.DataFrame) -> dict:
    """When a run handled one action (the usual case: one run per decision), its scope as plain fields."""
    if len(rows) != 1:
        return {}
    row = rows.iloc[0]
    fields = {"flag": row.flag_key, "release": row.release_version, "cohort": row.cohort, "kind": row.kind,
              "status": row.status, "actor": row.actor, "approver": row.approver, "decision_id": row.decision_id}
    return {k: str(v) for k, v in fields.items() if v is not None and pd.notna(v)}


@dg.sensor(
    job_name=FLAG_ACTION_JOB_NAME, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts flag_action_job once per actionable rollback decision (run key = decision id), retries pending "
                "actions and re-checks actions a hold or cooldown skipped once that block has ended.",
)
def rollback_decision_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, settings: SettingsResource):
    """One run per actionable decision (run key = decision id, so a decision is acted on once however
    often it is re-materialized), plus a run for each pending action, for each acting decision that
    has no audit row yet (its run died before the intent row: found in the table, not in the cursor),
    and a re-check of actions a hold or cooldown skipped once that block has ended. Cursor: the last
    decision materialization's storage id."""
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=rollback_decisions.key, after_storage_id=after), limit=100, ascending=True
    ).records
    requests = []
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        ids = metadata.get("actionable_decision_ids")
        for decision_id in (ids.value if ids is not None else []):
            requests.append(_action_request(decision_id, [decision_id]))
    requested = {r.run_key for r in requests}
    the_lake = lake.lake()
    now = datetime.now(timezone.utc)
    open_work = [(f"retry:{row['action_id']}:{row['attempts']}", [], pd.Timestamp(row["updated_at"]))
                 for row in ledger.open_actions(the_lake, statuses=(AuditStatus.PENDING,))]
    open_work += [(decision_id, [decision_id], None) for decision_id in ledger.unacted_decisions(the_lake, now - UNACTED_LOOKBACK)
                  if decision_id not in requested]
    for base, decision_ids, since in open_work:
        run_key = _unused_run_key(context.instance, base, now, since)
        if run_key is not None:
            requests.append(_action_request(run_key, decision_ids))
    requests += _rechecks(the_lake, settings.policy())
    if records:
        context.update_cursor(str(records[-1].storage_id))
    unique = list({r.run_key: r for r in requests}.values())
    if unique:
        _create_flag_pool(context)
    return unique or dg.SkipReason("no new decisions or open actions")


def _create_flag_pool(context: dg.SensorEvaluationContext) -> None:
    """Create the `flag_backend` pool (at the instance's default limit) before the first run that claims
    it. Dagster creates a pool at its first claim, and on PostgreSQL two runs doing that at once crash
    one of them: the second insert fails inside its transaction and the update after it raises
    InFailedSqlTransaction (measured: 8 of 8 trials with two processes claiming a fresh pool at the same
    moment, 0 of 8 once the pool existed). The sensor is one thread, so it cannot race itself; a run
    started by hand at the same moment could, and then this tick only logs it."""
    storage = context.instance.event_log_storage
    if context.instance.global_op_concurrency_default_limit is None or FLAG_POOL in storage.get_concurrency_keys():
        return
    try:
        storage.initialize_concurrency_limit_to_default(FLAG_POOL)
    except Exception as error:  # noqa: BLE001 - the first claim creates it anyway; the runs must still be asked for
        context.log.warning(f"could not create the {FLAG_POOL} pool before its first run: {type(error).__name__}: {error}")


def _action_request(run_key: str, decision_ids: list[str]) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        run_config={"ops": {"flag_actions": {"config": {"decision_ids": decision_ids}}}},
        # Run monitoring (dagster.yaml) fails a run past this, so a killed run does not look alive for ever.
        tags={"rollback/decisions": ",".join(decision_ids)[:200], "dagster/max_runtime": str(ACTION_RUN_MAX_SECONDS)},
    )


# A canceling run has not ended: its step may still be inside a backend call.
_IN_FLIGHT = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def _in_flight(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Could this run still be acting? Not once it ended, nor once it is older than a flag_action_job run
    can be (ACTION_RUN_MAX_SECONDS): run monitoring fails a killed run past its `dagster/max_runtime`
    tag, but runs launched from the UI or the daily upkeep carry no such tag, and a killed one would
    look alive for ever, leaving the rows it claimed to nobody."""
    record = instance.get_run_record_by_id(run_id)
    if record is None or record.dagster_run.status not in _IN_FLIGHT:
        return False
    started = record.start_time or record.create_timestamp.timestamp()
    return time.time() - started < ACTION_RUN_MAX_SECONDS


def _unused_run_key(instance: dg.DagsterInstance, base: str, now: datetime, since: pd.Timestamp | None) -> str | None:
    """The run key for open work: `base`, or `base#n` when the runs under the earlier keys ended and
    the work is still open (killed, or failed before writing anything), since the daemon never runs a
    key twice. None while one of them is still in flight, or until the back-off after the n-th
    failed attempt (30 s doubling, at most an hour) has passed. Runs created before `since` (the
    row's last change) were about an earlier state and do not count."""
    for n in range(0, MAX_RUN_KEY_SUFFIX):
        key = base if n == 0 else f"{base}#{n}"
        runs = [r for r in instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": key}), limit=10)
                if since is None or r.create_timestamp >= since.floor("s")]  # run storage may keep whole seconds
        if not runs:
            return key
        if any(r.dagster_run.status in _IN_FLIGHT for r in runs):
            return None
        ended = max((r.end_time or r.update_timestamp.timestamp()) for r in runs)
        wait = 0 if n == 0 else min(3600, 30 * 2 ** (n - 1))
        if now.timestamp() < ended + wait:
            return None
    return None


def _rechecks(the_lake, policy: PolicyConfig) -> list[dg.RunRequest]:
    """Skipped automatic actions get one more look when the hold or cooldown that blocked them ends
    (the cooldown as the executor applies it: `plan.cooldown_ends`). The run key names the end of the
    block, so each block ending asks once."""
    now = datetime.now(timezone.utc)
    out = []
    for row in ledger.open_actions(the_lake, statuses=(AuditStatus.SKIPPED,)):
        history = ledger.flag_history(the_lake, row["flag_key"])
        if plan.active_hold(history, row["flag_key"], now) is not None:
            continue
        cooling = plan.cooldown_ends(history, row["flag_key"], FlagPolicy.for_flag(policy, row["flag_key"]).cooldown)
        blocked_until = cooling[1] if cooling else NEVER_BLOCKED
        if blocked_until <= now and row.get("decision_id"):
            out.append(_action_request(f"recheck:{row['action_id']}:{blocked_until.isoformat()}", [row["decision_id"]]))
    return out
