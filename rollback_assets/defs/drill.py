"""The kill-switch drill, run as production runs it: a staging lake, landing zone, flag file and Dagster
instance; the landing-zone sensor starts the feedback runs, the decision sensor starts the flag action,
every run in the code location. It measures time to detection and to the flag change, keeps the audit
trail, reports the result to the main instance (a runless observation of `flag_actions`) and cleans up.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ..core import demo_data, pipeline
from ..core import drill as drill_data
from ..core.flags import FlagTarget, make_flag_backend
from ..core.lake import Lake
from ..core.releases import load_releases_yaml
from ..core.schemas import DECISIONS, FLAG_ACTIONS
from ..core.normalise import SALT_ENV
from ..core.vocabulary import AuditStatus, DecisionState
from .resources import PROJECT_ROOT

STAGING_ENV = ("DAGSTER_HOME", "ROLLBACK_LAKE", "ROLLBACK_LANDING", "ROLLBACK_FLAGD_FILE", "ROLLBACK_FLAG_BACKEND",
               "ROLLBACK_RELEASES", SALT_ENV)
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class DrillResult:
    drill_id: str
    flag_key: str
    detected: bool
    flag_changed: bool
    seconds_to_detection: float | None
    seconds_to_flag_change: float | None
    decision_id: str | None
    flag_before: str
    flag_after: str
    audit: pd.DataFrame
    runs: list[str] = field(default_factory=list)


def run_drill(flag_key: str, rows_per_day: int = 1000, workdir: str | None = None, keep: bool = False) -> DrillResult:
    drill_id = f"drill-{uuid.uuid4().hex[:8]}"
    root = Path(workdir or tempfile.mkdtemp(prefix=f"rollback-{drill_id}-"))
    saved = {name: os.environ.get(name) for name in STAGING_ENV}
    try:
        return _drill(drill_id, flag_key, rows_per_day, root)
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _drill(drill_id: str, flag_key: str, rows_per_day: int, root: Path) -> DrillResult:
    import dagster as dg

    from .launch import tick_sensor

    home, lake_root, landing, flag_file = root / "dagster_home", root / "lake", root / "landing", root / "flags" / "flags.json"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster_home" / "dagster.yaml").read_text())
    os.environ.update(DAGSTER_HOME=str(home), ROLLBACK_LAKE=str(lake_root), ROLLBACK_LANDING=str(landing),
                      ROLLBACK_FLAGD_FILE=str(flag_file), ROLLBACK_FLAG_BACKEND="flagd")
    os.environ.pop("ROLLBACK_RELEASES", None)
    # The drill's support tickets hash requester ids; its staging data is thrown away, so without a salt of
    # the deployment's it uses a random one (ingest refuses to hash with none), as the demo does.
    os.environ.setdefault(SALT_ENV, secrets.token_hex(32))
    def say(line: str) -> None:
        print(line, flush=True)

    history, regression = drill_data.split_with_regression(flag_key, rows_per_day=rows_per_day)
    releases_file = root / "releases.yaml"
    drill_data.write_delivery(history, landing, "history")
    releases_file.write_text(yaml.safe_dump({"releases": demo_data.releases()}, sort_keys=False))
    lake = Lake(lake_root)
    pipeline.register_releases(lake, load_releases_yaml(releases_file))
    flags = make_flag_backend("flagd", path=flag_file)
    for flag in sorted({r["flag_key"] for r in demo_data.releases()}):
        flags.apply(flag, FlagTarget(enabled=True, rollout=100), idempotency_key=f"{drill_id}-seed-{flag}")
    before = flags.get_state(flag_key)
    say(f"{drill_id}: staging in {root}; {flag_key} on at {before.rollout} %; {len(history):,} rows of history")

    from ..definitions import build_definitions

    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    runs: list[str] = []
    landing_cursor = None

    def landing_tick() -> None:
        nonlocal landing_cursor
        started, count = time.time(), 0
        while True:  # one tick per file would be the daemon's pace; here ticks follow each other at once
            new, landing_cursor, skip = tick_sensor(instance, defs, "landing_zone_sensor", landing_cursor, run_config=QUIET)
            runs.extend(r.run_id for r in new)
            count += len(new)
            failed = [r.run_id for r in new if r.status != dg.DagsterRunStatus.SUCCESS]
            if failed:
                raise RuntimeError(f"feedback run(s) failed: {failed}")
            if not new:
                break
        say(f"  landing_zone_sensor: {count} feedback run(s) in {time.time() - started:.1f} s")

    landing_tick()
    decision_cursor = None
    _, decision_cursor, _ = tick_sensor(instance, defs, "rollback_decision_sensor", decision_cursor, run_config=QUIET)

    injected_at = time.time()
    files = drill_data.write_delivery(regression, landing, drill_id)
    say(f"  injected {int((regression._truth == 'drill_regression').sum()):,} complaints on "
        f"{drill_data.newest_release(flag_key)['version']} in {', '.join(p.name for p in files)}")
    landing_tick()
    decisions = lake.read(DECISIONS)
    acting = decisions[(decisions.flag_key == flag_key) & (decisions.state == DecisionState.ACT)]
    detected_at = time.time() if len(acting) else None
    if detected_at:
        say(f"  detected after {detected_at - injected_at:.1f} s: {acting.iloc[0].reason}")
    new, decision_cursor, skip = tick_sensor(instance, defs, "rollback_decision_sensor", decision_cursor, run_config=QUIET)
    runs.extend(r.run_id for r in new)
    audit = lake.read(FLAG_ACTIONS) if lake.exists(FLAG_ACTIONS) else FLAG_ACTIONS.empty_frame()
    audit = audit[audit.flag_key == flag_key]
    changed = audit[audit.status == AuditStatus.APPLIED]
    changed_at = time.time() if len(changed) else None
    after = flags.get_state(flag_key)
    result = DrillResult(
        drill_id=drill_id, flag_key=flag_key, detected=detected_at is not None, flag_changed=changed_at is not None,
        seconds_to_detection=round(detected_at - injected_at, 1) if detected_at else None,
        seconds_to_flag_change=round(changed_at - injected_at, 1) if changed_at else None,
        decision_id=(changed.iloc[0].decision_id if len(changed) else acting.iloc[0].decision_id if len(acting) else None),
        flag_before=_state(before), flag_after=_state(after),
        audit=audit[["action_id", "kind", "status", "before_rollout", "after_rollout", "after_variant", "actor", "decision_id"]],
        runs=runs,
    )
    say(f"  flag {flag_key}: {result.flag_before} -> {result.flag_after}"
        + (f" after {result.seconds_to_flag_change} s" if result.flag_changed else f" (no change: {skip or 'no action applied'})"))
    return result


def _state(state) -> str:
    return f"{'on' if state.enabled else 'off'} at {state.rollout} %" + (f", variant {state.variant}" if state.variant else "")


def report_to_main_instance(result: DrillResult) -> str | None:
    """The drill's outcome as a runless observation of flag_actions in $DAGSTER_HOME: it shows in the UI."""
    from .launch import report_out_of_run_write

    audit = "; ".join(f"{r.kind} {r.status} {r.before_rollout}->{r.after_rollout} by {r.actor}" for r in result.audit.itertuples())
    return report_out_of_run_write("flag_actions", f"kill-switch drill {result.drill_id} on {result.flag_key}: "
                                   f"{'passed' if result.flag_changed else 'FAILED'}", {
        "drill_id": result.drill_id, "flag": result.flag_key, "detected": result.detected,
        "flag_changed": result.flag_changed, "seconds_to_detection": result.seconds_to_detection,
        "seconds_to_flag_change": result.seconds_to_flag_change, "decision_id": result.decision_id,
        "flag_before": result.flag_before, "flag_after": result.flag_after, "audit_trail": audit or "-",
    }, observation=True)
