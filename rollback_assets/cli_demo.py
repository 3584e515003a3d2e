"""`rollback-assets demo`: fresh demo data with a bad release in it, the whole graph through Dagster as
the daemon would run it, then what it decided and did. Results on stdout, progress on stderr."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from .cli_support import EXIT_OK, PROJECT_ROOT, UserError, progress


def cmd_demo(args) -> int:
    """Fresh demo data with a bad release in it, the whole graph through Dagster, then what it decided."""
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    lake_root = os.environ.setdefault("ROLLBACK_LAKE", str(PROJECT_ROOT / "lake"))
    landing = Path(os.environ.setdefault("ROLLBACK_LANDING", str(PROJECT_ROOT / "landing")))
    flag_file = Path(os.environ.setdefault("ROLLBACK_FLAGD_FILE", str(PROJECT_ROOT / "flags" / "flags.json")))
    releases_file = landing / "_releases.yaml"
    from .core import storage

    if storage.scheme(lake_root) is not None:
        raise UserError(f"the demo starts from an empty local lake; ROLLBACK_LAKE={lake_root} is object storage")
    for folder in (Path(lake_root), landing, flag_file.parent):
        shutil.rmtree(folder, ignore_errors=True)
    if not os.environ.get("ROLLBACK_AUTHOR_SALT"):
        os.environ["ROLLBACK_AUTHOR_SALT"] = secrets.token_hex(32)
        progress("demo: generated a random ROLLBACK_AUTHOR_SALT for this run (author hashes are keyed by it); "
                  "real deployments must set their own, keep it secret and keep it stable")
    reset_instance(Path(os.environ["DAGSTER_HOME"]))

    import dagster as dg

    from .core import demo_data, pipeline
    from .core.lake import Lake
    from .core.releases import load_releases_yaml

    spec = demo_data.DemoSpec(rows_per_day=args.rows_per_day)
    progress(f"demo 1/4: generating {spec.rows_per_day * spec.days:,} feedback rows")
    files = demo_data.write_landing_zone(demo_data.generate(spec), landing, releases_file)
    print(f"demo data: {len(files)} files, {spec.rows_per_day * spec.days:,} feedback rows in {landing}")
    pipeline.register_releases(Lake(lake_root), load_releases_yaml(releases_file))
    print(f"registered releases from {releases_file}")

    from .core.flags import FlagTarget, make_flag_backend
    from .definitions import build_definitions
    from .defs.launch import run_in_code_location

    flagd = make_flag_backend("flagd", path=flag_file)
    for flag in sorted({r["flag_key"] for r in demo_data.releases()}):
        flagd.apply(flag, FlagTarget(enabled=True, rollout=100), idempotency_key=f"demo-seed-{flag}")
    print(f"flagd flag file {flag_file}: every flag on at 100 %")

    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    progress("demo 2/4: feedback_job (ingest, attribution, scoring, baselines, decisions, checks); about a minute")
    run = run_in_code_location(instance, defs, "feedback_job", run_config=quiet)
    evaluations = [
        e.dagster_event.asset_check_evaluation_data
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    failed = [f"{e.check_name} ({e.severity.value})" for e in evaluations if not e.passed]
    print(f"dagster run {run.run_id} of feedback_job in {os.environ['DAGSTER_HOME']}: {run.status.value.lower()}; "
          f"{len(evaluations)} checks, failing: {', '.join(failed) or 'none'}")
    print_decisions(Lake(lake_root))
    progress("demo 3/4: the decision sensor's tick and the flag action runs it asks for")
    apply_decisions_like_the_daemon(defs, instance, quiet)
    progress("demo 4/4: done")
    print("\nflags now:")
    for flag in sorted({r["flag_key"] for r in demo_data.releases()}):
        state = flagd.get_state(flag)
        print(f"  {flag}: {'on' if state.enabled else 'off'} at {state.rollout} %" + (f", variant {state.variant}" if state.variant else ""))
    print("\nRelease health: rollback-assets dashboard --out reports/")
    print("Open the UI on the same instance: make ui  (then http://127.0.0.1:3000)")
    return EXIT_OK


def reset_instance(dagster_home: Path) -> None:
    """The demo starts from an empty lake, so its Dagster history starts empty too (config files stay)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    for entry in dagster_home.iterdir():
        if entry.suffix in (".yaml", ".md"):
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def apply_decisions_like_the_daemon(defs, instance, run_config) -> None:
    """One tick of the decision sensor, and the runs it asks for, as the Dagster daemon would do:
    a run key that already has a run is not run again. The tick is recorded, so the sensor's page shows it."""
    from .defs.launch import tick_sensor

    runs, _, skip = tick_sensor(instance, defs, "rollback_decision_sensor", run_config=run_config)
    if skip:
        print(f"\nrollback_decision_sensor: skipped, {skip}")
    for run in runs:
        print(f"\nflag action run {run.run_id} (sensor rollback_decision_sensor, run key {run.tags['dagster/run_key']}): "
              f"{run.status.value.lower()}")
    from .core.lake import Lake
    from .core.schemas import FLAG_ACTIONS

    audit = Lake(os.environ["ROLLBACK_LAKE"]).read(FLAG_ACTIONS)
    for row in audit.itertuples():
        print(f"  {row.flag_key}: {row.kind} {row.status}, {row.before_rollout} % -> {row.after_rollout} % by {row.actor}: {row.reason}")


def print_decisions(lake) -> None:
    from .core.schemas import DECISIONS

    decisions = lake.read(DECISIONS)
    latest = decisions[decisions.decided_at == decisions.decided_at.max()]
    print(f"\n{len(latest)} cohort evaluations: " + ", ".join(f"{k} {v}" for k, v in latest.state.value_counts().items()))
    for row in latest[latest.state.isin(["act", "hold"])].itertuples():
        target = f" to {int(row.target_rollout)} %" if row.action == "step_down" else ""
        print(f"\n  {row.flag_key} {row.release_version} [{row.cohort}]: {row.action}{target} ({row.severity})")
        print(f"    {row.reason}")
        print(f"    decision {row.decision_id}, policy {row.policy_version}, code {row.code_commit}, notebook {row.notebook_commit}")
        print(f"    postmortem: rollback-assets postmortem {row.decision_id} --out postmortems/")
    untouched = sorted(set(latest.flag_key) - set(latest[latest.state == "act"].flag_key))
    print(f"\n  no action on: {', '.join(untouched) or '-'}")
