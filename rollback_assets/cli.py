"""`rollback-assets`: run the demo, register releases, replay history, act on flags."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _lake(args):
    from .core.lake import Lake

    return Lake(args.lake or os.environ.get("ROLLBACK_LAKE") or PROJECT_ROOT / "lake")


def cmd_demo(args) -> int:
    """Fresh demo data with a bad release in it, the whole graph through Dagster, then what it decided."""
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    lake_root = os.environ.setdefault("ROLLBACK_LAKE", str(PROJECT_ROOT / "lake"))
    landing = Path(os.environ.setdefault("ROLLBACK_LANDING", str(PROJECT_ROOT / "landing")))
    flag_file = Path(os.environ.setdefault("ROLLBACK_FLAGD_FILE", str(PROJECT_ROOT / "flags" / "flags.json")))
    releases_file = landing / "_releases.yaml"
    from .core import storage

    if storage.scheme(lake_root) is not None:
        print(f"the demo starts from an empty local lake; ROLLBACK_LAKE={lake_root} is object storage", file=sys.stderr)
        return 2
    for folder in (Path(lake_root), landing, flag_file.parent):
        shutil.rmtree(folder, ignore_errors=True)
    if not os.environ.get("ROLLBACK_AUTHOR_SALT"):
        os.environ["ROLLBACK_AUTHOR_SALT"] = secrets.token_hex(32)
        print("demo: generated a random ROLLBACK_AUTHOR_SALT for this run (author hashes are keyed by it); "
              "real deployments must set their own, keep it secret and keep it stable")
    reset_instance(Path(os.environ["DAGSTER_HOME"]))

    import dagster as dg

    from .core import demo_data, pipeline
    from .core.lake import Lake
    from .core.releases import load_releases_yaml

    spec = demo_data.DemoSpec(rows_per_day=args.rows_per_day)
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
    run = run_in_code_location(instance, defs, "feedback_job", run_config=quiet)
    evaluations = [
        e.dagster_event.asset_check_evaluation_data
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    failed = [f"{e.check_name} ({e.severity.value})" for e in evaluations if not e.passed]
    print(f"dagster run {run.run_id} of feedback_job in {os.environ['DAGSTER_HOME']}: {run.status.value.lower()}; "
          f"{len(evaluations)} checks, failing: {', '.join(failed) or 'none'}")
    print_decisions(Lake(lake_root))
    apply_decisions_like_the_daemon(defs, instance, quiet)
    print("\nflags now:")
    for flag in sorted({r["flag_key"] for r in demo_data.releases()}):
        state = flagd.get_state(flag)
        print(f"  {flag}: {'on' if state.enabled else 'off'} at {state.rollout} %" + (f", variant {state.variant}" if state.variant else ""))
    print("\nRelease health: rollback-assets dashboard --out reports/")
    print("Open the UI on the same instance: make ui  (then http://127.0.0.1:3000)")
    return 0


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


def cmd_release_register(args) -> int:
    from .core import pipeline
    from .core.releases import VersionRule, load_releases_yaml, release_record, releases_frame

    if args.file:
        frame = load_releases_yaml(args.file)
    else:
        if not (args.flag and args.version):
            print("release register needs --flag and --version (or --file releases.yaml)", file=sys.stderr)
            return 2
        frame = releases_frame([
            release_record(
                args.flag, args.version, args.released_at or _utc_now(), product=args.product,
                code_commit=args.code_commit, notebook_commit=args.notebook_commit, model_name=args.model_name,
                model_version=args.model_version, surfaces=args.surfaces, ladder=args.ladder,
                fallback_variant=args.fallback_variant, owner=args.owner, expires_at=args.expires_at,
                adoption=args.adoption, version_rule=VersionRule.from_spec(
                    {"pattern": args.version_pattern} if args.version_pattern else args.version_rule),
            )
        ])
    result = pipeline.register_releases(_lake(args), frame)
    for row in frame.itertuples():
        print(f"registered {row.flag_key} {row.version} (released {row.released_at:%Y-%m-%d %H:%M} UTC, ladder {list(row.ladder)})")
    print(f"release_artifacts at Delta version {result.version}")
    registered = ", ".join(f"{r.flag_key} {r.version}" for r in frame.itertuples())
    _tell_dagster("release_artifacts", f"registered from the CLI: {registered}", {
        "delta_version": result.version, "releases_registered": len(frame), "releases": registered,
        "code_commits": ", ".join(sorted({str(c) for c in frame.code_commit.dropna()})) or None,
    }, data_version=f"release_artifacts@{result.version}")
    return 0


def _tell_dagster(asset_name: str, description: str, metadata: dict, data_version: str | None = None) -> None:
    """Out-of-run writes show in the asset's history in the UI (a runless materialization)."""
    from .defs.launch import report_out_of_run_write

    home = report_out_of_run_write(asset_name, description, {**metadata, "source": "rollback-assets CLI"}, data_version)
    print(f"recorded in Dagster ({home}) as a materialization of {asset_name}" if home
          else "not recorded in Dagster: DAGSTER_HOME is not set")


def _tell_dagster_action(args, row: dict | None) -> None:
    """A human's hold, approval, rejection, promotion or forced change: one runless flag_actions event."""
    if not row:
        return
    from .core.actions.ledger import describe
    from .core.schemas import FLAG_ACTIONS

    version = _lake(args).version(FLAG_ACTIONS)
    fields = ("flag_key", "release_version", "cohort", "kind", "status", "actor", "approver", "decision_id",
              "before_rollout", "after_rollout", "reason")
    metadata = {}
    for name in fields:
        value = row.get(name)
        if value is None or value == "" or (isinstance(value, float) and value != value):  # value != value: NaN
            continue
        metadata[name] = int(value) if name.endswith("_rollout") else str(value)
    _tell_dagster("flag_actions", describe(row), {**metadata, "delta_version": version},
                  data_version=f"flag_actions@{version}")


def _control(args):
    """The lake, the configured flag backend and per-flag settings, as the Dagster resources see them."""
    from .core.actions.plan import FlagPolicy
    from .core.flags import backend_from_settings, settings_from_env
    from .core.notify import webhook_notifier
    from .core.policy import PolicyConfig

    policy = PolicyConfig.load(os.environ.get("ROLLBACK_POLICY"))
    notifier = webhook_notifier(os.environ.get("ROLLBACK_NOTIFY_URL"), os.environ.get("ROLLBACK_WEBHOOK_SECRET"))
    return _lake(args), backend_from_settings(**settings_from_env()), notifier, lambda flag: FlagPolicy.for_flag(policy, flag)


def _actor(args) -> str:
    return args.actor or os.environ.get("ROLLBACK_ACTOR") or os.environ.get("USER") or "unknown"


def _report(args, result) -> int:
    row = result.row or {}
    print(f"{result.status}: {result.message or row.get('reason', '')}")
    if row:
        print(f"  audit row {row['action_id']}: {row.get('before_rollout')} % -> {row.get('after_rollout')} % "
              f"(enabled {row.get('after_enabled')}, variant {row.get('after_variant')}), actor {row['actor']}")
    _tell_dagster_action(args, result.row)
    return 0 if result.status in ("applied", "noop", "skipped", "awaiting_approval") else 1


def cmd_replay(args) -> int:
    from .core.replay import run_replay_cli

    summary = run_replay_cli(args)
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def cmd_override(args) -> int:
    from datetime import datetime, timezone

    from .core.actions import overrides

    lake = _lake(args)
    if args.override_command == "hold":
        until = datetime.fromisoformat(args.until).astimezone(timezone.utc) if args.until else None
        row = overrides.hold(lake, args.flag, until=until, actor=_actor(args), reason=args.reason)
        print(f"hold on {args.flag} until {until or 'released'} by {row['actor']}: {args.reason}")
    else:
        row = overrides.release_hold(lake, args.flag, actor=_actor(args), reason=args.reason or "")
        print(f"hold on {args.flag} released by {row['actor']}")
    _tell_dagster_action(args, row)
    return 0


def cmd_approve(args) -> int:
    from .core.actions import ledger, overrides

    lake, backend, notifier, policy_for = _control(args)
    existing = ledger.read_action(lake, args.decision)
    if existing is None:
        print(f"no action awaiting approval for decision {args.decision}", file=sys.stderr)
        return 2
    return _report(args, overrides.approve(lake, backend, args.decision, approver=_actor(args), reason=args.reason or "",
                                     policy=policy_for(existing["flag_key"]), notifier=notifier))


def cmd_reject(args) -> int:
    from .core.actions import overrides

    row = overrides.reject(_lake(args), args.decision, approver=_actor(args), reason=args.reason)
    print(f"rejected {args.decision} by {row.get('approver') or row.get('actor')}: {args.reason}")
    _tell_dagster_action(args, row)
    return 0


def cmd_force(args) -> int:
    from .core.actions import overrides

    lake, backend, notifier, policy_for = _control(args)
    return _report(args, overrides.force(lake, backend, args.flag, actor=_actor(args), reason=args.reason, rollout=args.rollout,
                                   enabled=not args.disable, variant=args.variant, notifier=notifier,
                                   policy=policy_for(args.flag)))


def cmd_promote(args) -> int:
    from .core.actions import overrides
    from .core.policy import guardrail_status
    from .core.schemas import DECISIONS

    lake, backend, notifier, policy_for = _control(args)
    passing, why = guardrail_status(lake.read(DECISIONS), args.flag)
    result = overrides.promote(lake, backend, args.flag, to=args.to, actor=_actor(args), reason=args.reason or "",
                               guardrail_ok=passing, guardrail_reason=why, policy=policy_for(args.flag), notifier=notifier)
    if result.status == "rejected":  # audited as a refused promotion; nothing was changed
        print(f"refused: promotion of {args.flag} to {args.to} % is blocked: {result.message}", file=sys.stderr)
        _tell_dagster_action(args, result.row)
        return 3
    return _report(args, result)


def cmd_postmortem(args) -> int:
    from .core import postmortem
    from .core.policy import PolicyConfig

    report = postmortem.build(_lake(args), args.decision, PolicyConfig.load(os.environ.get("ROLLBACK_POLICY")))
    paths = postmortem.write(report, args.out)
    print(report.sentence)
    print(postmortem.match_statement(report))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0 if report.matches else 4


def cmd_dashboard(args) -> int:
    from .core import dashboard

    result = dashboard.write(_lake(args), args.out)
    for flag, health in result.items():
        print(f"{flag}: {health.rollbacks} rollback(s), {len(health.open_holds)} open hold(s), "
              f"{health.awaiting_approval} awaiting approval -> {Path(args.out) / dashboard.file_name(flag)}")
    print(f"index: {Path(args.out) / 'index.html'}")
    return 0


def cmd_drill(args) -> int:
    """Kill-switch drill in a staging lake, landing zone, flag file and instance; the result goes to $DAGSTER_HOME."""
    from .defs.drill import report_to_main_instance, run_drill

    result = run_drill(args.flag, rows_per_day=args.rows_per_day, workdir=args.workdir, keep=args.keep)
    print(f"\ndrill {result.drill_id} on {result.flag_key}: {'PASSED' if result.flag_changed else 'FAILED'}")
    print(f"  time to detection: {result.seconds_to_detection} s; time to the flag change: {result.seconds_to_flag_change} s")
    print(f"  decision {result.decision_id}; flag {result.flag_before} -> {result.flag_after}; {len(result.runs)} runs")
    for row in result.audit.itertuples():
        print(f"  audit {row.action_id}: {row.kind} {row.status}, {row.before_rollout} % -> {row.after_rollout} %"
              f"{f', variant {row.after_variant}' if row.after_variant else ''} by {row.actor}")
    home = report_to_main_instance(result)
    print(f"  recorded in Dagster ({home}) as an observation of flag_actions" if home
          else "  not recorded in Dagster: DAGSTER_HOME is not set")
    print(f"  staging kept in {args.workdir}" if args.keep and args.workdir else "  staging removed")
    return 0 if result.flag_changed else 1


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollback-assets", description=__doc__)
    parser.add_argument("--lake", help="lake root (default: $ROLLBACK_LAKE or ./lake)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate demo data, run the whole graph in Dagster, show the decisions")
    demo.add_argument("--rows-per-day", type=int, default=1000)
    demo.set_defaults(func=cmd_demo)

    release = sub.add_parser("release", help="release artifacts").add_subparsers(dest="release_command", required=True)
    register = release.add_parser("register", help="register a release of a flag (from CI)")
    register.add_argument("--file", help="YAML file with a list of releases")
    register.add_argument("--flag")
    register.add_argument("--version")
    register.add_argument("--released-at", help="ISO time (default: now)")
    register.add_argument("--product")
    register.add_argument("--code-commit")
    register.add_argument("--notebook-commit")
    register.add_argument("--model-name")
    register.add_argument("--model-version")
    register.add_argument("--surfaces", help="comma-separated topics or surfaces the release touches")
    register.add_argument("--ladder", default="100,25,5,0")
    register.add_argument("--fallback-variant")
    register.add_argument("--owner")
    register.add_argument("--expires-at")
    register.add_argument("--adoption", choices=("randomized", "self_selected"), default="randomized",
                          help="randomized: the flag assigns users (default); self_selected: users update when they "
                               "choose, as app-store versions (compared with earlier releases at the same age)")
    register.add_argument("--version-rule", choices=("store_build",), default=None,
                          help="normalise --version to its release: store_build turns '8.104.0 build 5 50619' into 8.104")
    register.add_argument("--version-pattern", default=None,
                          help="normalise --version with a regex that has a named group (?P<release>...)")
    register.set_defaults(func=cmd_release_register)

    from .core.replay import replay_arg_parser

    replay = sub.add_parser("replay", help="what the policy would have done on your history (no Dagster)")
    replay_arg_parser(replay)
    replay.set_defaults(func=cmd_replay)

    override = sub.add_parser("override", help="human holds on automatic actions").add_subparsers(dest="override_command", required=True)
    hold = override.add_parser("hold", help="block automatic flag changes until a time")
    hold.add_argument("flag")
    hold.add_argument("--until", help="ISO time; omit to hold until released")
    hold.add_argument("--reason", required=True)
    release_hold = override.add_parser("release", help="lift a hold")
    release_hold.add_argument("flag")
    release_hold.add_argument("--reason")
    for p in (hold, release_hold):
        p.add_argument("--actor")
        p.set_defaults(func=cmd_override)

    approve = sub.add_parser("approve", help="approve a decision that waits for a human, and apply it")
    approve.add_argument("decision")
    approve.add_argument("--reason")
    approve.add_argument("--actor")
    approve.set_defaults(func=cmd_approve)
    reject = sub.add_parser("reject", help="reject a decision: no flag change")
    reject.add_argument("decision")
    reject.add_argument("--reason", required=True)
    reject.add_argument("--actor")
    reject.set_defaults(func=cmd_reject)
    force = sub.add_parser("force", help="set a flag by hand (audited)")
    force.add_argument("flag")
    force.add_argument("--rollout", type=int)
    force.add_argument("--variant")
    force.add_argument("--disable", action="store_true")
    force.add_argument("--reason", required=True)
    force.add_argument("--actor")
    force.set_defaults(func=cmd_force)
    promote = sub.add_parser("promote", help="ramp a flag up; refused while its guardrail fails or a decision is open")
    promote.add_argument("flag")
    promote.add_argument("--to", type=int, required=True)
    promote.add_argument("--reason")
    promote.add_argument("--actor")
    promote.set_defaults(func=cmd_promote)
    postmortem = sub.add_parser("postmortem", help="one decision's report: why, what happened, lineage recomputed (HTML + Markdown)")
    postmortem.add_argument("decision")
    postmortem.add_argument("--out", required=True, help="folder for postmortem-<id>.html, .md and .svg")
    postmortem.set_defaults(func=cmd_postmortem)
    dashboard = sub.add_parser("dashboard", help="release-health pages, one per flag, offline HTML")
    dashboard.add_argument("--out", required=True, help="folder for index.html and <flag>.html")
    dashboard.set_defaults(func=cmd_dashboard)
    drill = sub.add_parser("drill", help="kill-switch drill: inject a regression for one flag in staging, time detection and the flag change")
    drill.add_argument("--flag", required=True)
    drill.add_argument("--rows-per-day", type=int, default=1000)
    drill.add_argument("--workdir", help="staging folder (default: a temp folder)")
    drill.add_argument("--keep", action="store_true", help="keep the staging folder (e.g. to open dagster dev on it)")
    drill.set_defaults(func=cmd_drill)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"rollback-assets: {error}", file=sys.stderr)
        return 2


def run() -> None:
    """Console entry point: see `process.exit_now` for why it does not simply return."""
    from .process import exit_now

    exit_now(main())


if __name__ == "__main__":
    run()
