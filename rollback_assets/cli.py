"""`rollback-assets`: run the demo, register releases, replay history, act on flags."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Exit codes, documented in --help and README: a script (CI, a runbook) branches on them.
EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and did not succeed: a flag change failed, the drill's flag did not change
EXIT_USAGE = 2  # usage or config error: bad option, config file or setting, unknown decision or flag, missing file
EXIT_REFUSED = 3  # refused by a guardrail: promotion blocked while the guardrail fails or a decision is open
EXIT_MISMATCH = 4  # postmortem: the recomputed figures differ from the recorded decision
EPILOG = """exit codes:
  0  done
  1  the work ran but did not succeed (a flag change failed; the drill's flag did not change)
  2  usage or config error: a bad option, config file or setting, an unknown decision id or flag,
     a missing file (one line on stderr, nothing written)
  3  refused: promotion blocked while the flag's guardrail fails or a decision is open
  4  postmortem: the figures recomputed from the recorded Delta versions differ from the decision

Results go to stdout (--json: one JSON object), progress and notes to stderr. Settings come from the
environment (ROLLBACK_LAKE, ROLLBACK_POLICY, ROLLBACK_FLAG_BACKEND, ...: see README)."""


class UserError(Exception):
    """A mistake the user can fix (unknown id or flag, missing file): one line on stderr, exit 2."""


def _progress(message: str) -> None:
    """Long work says where it is, on stderr, so stdout stays the result (and --json stays parseable)."""
    print(f"rollback-assets: {message}", file=sys.stderr, flush=True)


def _emit(args, payload: dict, lines: list[str]) -> None:
    """The command's result: `lines` for people, or `payload` as one JSON object with --json."""
    if getattr(args, "json", False):
        print(json.dumps(payload, default=str, sort_keys=True))
    else:
        for line in lines:
            print(line)


def _known_flag(lake, flag: str) -> None:
    """A flag must be registered (release_artifacts) before a human acts on it: a typo would otherwise
    create a flag in the backend and an audit trail for nothing."""
    from .core.schemas import RELEASE_ARTIFACTS

    known = set(lake.read(RELEASE_ARTIFACTS, columns=["flag_key"]).flag_key) if lake.exists(RELEASE_ARTIFACTS) else set()
    if flag not in known:
        raise UserError(f"unknown flag {flag!r}: no release of it is registered (registered: {', '.join(sorted(known)) or 'none'}); "
                        "register one with `rollback-assets release register`")


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
        raise UserError(f"the demo starts from an empty local lake; ROLLBACK_LAKE={lake_root} is object storage")
    for folder in (Path(lake_root), landing, flag_file.parent):
        shutil.rmtree(folder, ignore_errors=True)
    if not os.environ.get("ROLLBACK_AUTHOR_SALT"):
        os.environ["ROLLBACK_AUTHOR_SALT"] = secrets.token_hex(32)
        _progress("demo: generated a random ROLLBACK_AUTHOR_SALT for this run (author hashes are keyed by it); "
                  "real deployments must set their own, keep it secret and keep it stable")
    reset_instance(Path(os.environ["DAGSTER_HOME"]))

    import dagster as dg

    from .core import demo_data, pipeline
    from .core.lake import Lake
    from .core.releases import load_releases_yaml

    spec = demo_data.DemoSpec(rows_per_day=args.rows_per_day)
    _progress(f"demo 1/4: generating {spec.rows_per_day * spec.days:,} feedback rows")
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
    _progress("demo 2/4: feedback_job (ingest, attribution, scoring, baselines, decisions, checks); about a minute")
    run = run_in_code_location(instance, defs, "feedback_job", run_config=quiet)
    evaluations = [
        e.dagster_event.asset_check_evaluation_data
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    failed = [f"{e.check_name} ({e.severity.value})" for e in evaluations if not e.passed]
    print(f"dagster run {run.run_id} of feedback_job in {os.environ['DAGSTER_HOME']}: {run.status.value.lower()}; "
          f"{len(evaluations)} checks, failing: {', '.join(failed) or 'none'}")
    print_decisions(Lake(lake_root))
    _progress("demo 3/4: the decision sensor's tick and the flag action runs it asks for")
    apply_decisions_like_the_daemon(defs, instance, quiet)
    _progress("demo 4/4: done")
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
    from .core.releases import load_releases_yaml, release_from_entry, releases_frame

    if args.file:
        frame = load_releases_yaml(args.file)
    else:
        if not (args.flag and args.version):
            raise UserError("release register needs --flag and --version (or --file releases.yaml)")
        options = {
            "flag_key": args.flag, "version": args.version, "released_at": args.released_at or _utc_now(),
            "product": args.product, "code_commit": args.code_commit, "notebook_commit": args.notebook_commit,
            "model_name": args.model_name, "model_version": args.model_version, "surfaces": args.surfaces,
            "ladder": args.ladder, "fallback_variant": args.fallback_variant, "owner": args.owner,
            "expires_at": args.expires_at, "adoption": args.adoption,
            "version_rule": {"pattern": args.version_pattern} if args.version_pattern else args.version_rule,
        }
        frame = releases_frame([release_from_entry({k: v for k, v in options.items() if v is not None}, "release register")])
    result = pipeline.register_releases(_lake(args), frame)
    registered = ", ".join(f"{r.flag_key} {r.version}" for r in frame.itertuples())
    _emit(args, {"registered": [{"flag_key": r.flag_key, "version": r.version, "released_at": r.released_at,
                                 "ladder": list(r.ladder)} for r in frame.itertuples()],
                 "delta_version": result.version},
          [f"registered {r.flag_key} {r.version} (released {r.released_at:%Y-%m-%d %H:%M} UTC, ladder {list(r.ladder)})"
           for r in frame.itertuples()] + [f"release_artifacts at Delta version {result.version}"])
    _tell_dagster("release_artifacts", f"registered from the CLI: {registered}", {
        "delta_version": result.version, "releases_registered": len(frame), "releases": registered,
        "code_commits": ", ".join(sorted({str(c) for c in frame.code_commit.dropna()})) or None,
    }, data_version=f"release_artifacts@{result.version}")
    return EXIT_OK


def _tell_dagster(asset_name: str, description: str, metadata: dict, data_version: str | None = None) -> None:
    """Out-of-run writes show in the asset's history in the UI (a runless materialization)."""
    from .defs.launch import report_out_of_run_write

    home = report_out_of_run_write(asset_name, description, {**metadata, "source": "rollback-assets CLI"}, data_version)
    _progress(f"recorded in Dagster ({home}) as a materialization of {asset_name}" if home
              else "not recorded in Dagster: DAGSTER_HOME is not set")


def _tell_dagster_action(args, row: dict | None) -> None:
    """A human's hold, approval, rejection, promotion or forced change: one runless flag_actions event."""
    if not row:
        return
    from .core.schemas import FLAG_ACTIONS
    from .defs.flags import describe_action

    version = _lake(args).version(FLAG_ACTIONS)
    fields = ("flag_key", "release_version", "cohort", "kind", "status", "actor", "approver", "decision_id",
              "before_rollout", "after_rollout", "reason")
    metadata = {}
    for name in fields:
        value = row.get(name)
        if value is None or value == "" or (isinstance(value, float) and value != value):  # value != value: NaN
            continue
        metadata[name] = int(value) if name.endswith("_rollout") else str(value)
    _tell_dagster("flag_actions", describe_action(row), {**metadata, "delta_version": version},
                  data_version=f"flag_actions@{version}")


def _control(args):
    """The lake, the configured flag backend and per-flag settings, as the Dagster resources see them
    (secrets resolved from the environment, as a run resolves its dg.EnvVar)."""
    from .core.policy import PolicyConfig
    from .core.settings import Settings
    from .defs.flags import flag_control_from_env, flag_policy

    settings = Settings.from_env()
    flags = flag_control_from_env(settings).process_config_and_initialize()
    policy = PolicyConfig.load(settings.policy)
    return _lake(args), flags.client(), flags.notifier(), lambda flag: flag_policy(policy, flag)


def _actor(args) -> str:
    return args.actor or os.environ.get("ROLLBACK_ACTOR") or os.environ.get("USER") or "unknown"


def _action_payload(row: dict | None) -> dict:
    keys = ("action_id", "flag_key", "kind", "status", "actor", "approver", "decision_id", "before_rollout",
            "after_rollout", "after_enabled", "after_variant", "reason")
    return {k: row.get(k) for k in keys if k in row} if row else {}


def _report(args, result) -> int:
    row = result.row or {}
    lines = [f"{result.status}: {result.message or row.get('reason', '')}"]
    if row:
        lines.append(f"  audit row {row['action_id']}: {row.get('before_rollout')} % -> {row.get('after_rollout')} % "
                     f"(enabled {row.get('after_enabled')}, variant {row.get('after_variant')}), actor {row['actor']}")
    _emit(args, {"status": result.status, "message": result.message, "action": _action_payload(row)}, lines)
    _tell_dagster_action(args, result.row)
    return EXIT_OK if result.status in ("applied", "noop", "skipped", "awaiting_approval") else EXIT_FAILED


def cmd_replay(args) -> int:
    from .core.replay import run_replay_cli

    _progress(f"replay: scoring {args.feedback} and running the policy every {args.step}; "
              "large histories take minutes (scoring dominates)")
    summary = run_replay_cli(args)
    _emit(args, summary, [f"{key}: {value}" for key, value in summary.items()])
    return EXIT_OK


def cmd_override(args) -> int:
    from datetime import timezone

    from .core import actions

    lake = _lake(args)
    _known_flag(lake, args.flag)
    if args.override_command == "hold":
        until = _time(args.until, "--until").astimezone(timezone.utc) if args.until else None
        row = actions.hold(lake, args.flag, until=until, actor=_actor(args), reason=args.reason)
        line = f"hold on {args.flag} until {until or 'released'} by {row['actor']}: {args.reason}"
    else:
        row = actions.release_hold(lake, args.flag, actor=_actor(args), reason=args.reason or "")
        line = f"hold on {args.flag} released by {row['actor']}"
    _emit(args, {"action": _action_payload(row)}, [line])
    _tell_dagster_action(args, row)
    return EXIT_OK


def _time(value: str, option: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option}: {value!r} is not an ISO time (e.g. 2026-10-01T08:00:00+00:00)") from None


def _decision_action(lake, decision_id: str) -> dict:
    from .core import actions

    existing = actions.read_action(lake, decision_id)
    if existing is None:
        raise UserError(f"unknown decision {decision_id!r}: no flag action awaits it (see the rollback_decisions "
                        "asset or `rollback-assets dashboard` for decision ids)")
    return existing


def cmd_approve(args) -> int:
    from .core import actions

    lake, backend, notifier, policy_for = _control(args)
    existing = _decision_action(lake, args.decision)
    return _report(args, actions.approve(lake, backend, args.decision, approver=_actor(args), reason=args.reason or "",
                                         policy=policy_for(existing["flag_key"]), notifier=notifier))


def cmd_reject(args) -> int:
    from .core import actions

    lake = _lake(args)
    _decision_action(lake, args.decision)
    row = actions.reject(lake, args.decision, approver=_actor(args), reason=args.reason)
    _emit(args, {"action": _action_payload(row)},
          [f"rejected {args.decision} by {row.get('approver') or row.get('actor')}: {args.reason}"])
    _tell_dagster_action(args, row)
    return EXIT_OK


def cmd_force(args) -> int:
    from .core import actions

    lake, backend, notifier, policy_for = _control(args)
    _known_flag(lake, args.flag)
    return _report(args, actions.force(lake, backend, args.flag, actor=_actor(args), reason=args.reason, rollout=args.rollout,
                                       enabled=not args.disable, variant=args.variant, notifier=notifier,
                                       policy=policy_for(args.flag)))


def cmd_promote(args) -> int:
    from .core import actions
    from .core.policy import guardrail_status
    from .core.schemas import DECISIONS

    lake, backend, notifier, policy_for = _control(args)
    _known_flag(lake, args.flag)
    passing, why = guardrail_status(lake.read(DECISIONS) if lake.exists(DECISIONS) else DECISIONS.empty_frame(), args.flag)
    result = actions.promote(lake, backend, args.flag, to=args.to, actor=_actor(args), reason=args.reason or "",
                             guardrail_ok=passing, guardrail_reason=why, policy=policy_for(args.flag), notifier=notifier)
    if result.status == "rejected":  # audited as a refused promotion; nothing was changed
        print(f"refused: promotion of {args.flag} to {args.to} % is blocked: {result.message}", file=sys.stderr)
        if args.json:
            _emit(args, {"status": "refused", "message": result.message, "action": _action_payload(result.row)}, [])
        _tell_dagster_action(args, result.row)
        return EXIT_REFUSED
    return _report(args, result)


def cmd_postmortem(args) -> int:
    from .core import postmortem
    from .core.policy import PolicyConfig
    from .core.settings import Settings

    report = postmortem.build(_lake(args), args.decision, PolicyConfig.load(Settings.from_env().policy))
    paths = postmortem.write(report, args.out)
    _emit(args, {"decision_id": args.decision, "sentence": report.sentence, "matches": report.matches,
                 "match_statement": postmortem.match_statement(report), "files": {k: str(v) for k, v in paths.items()}},
          [report.sentence, postmortem.match_statement(report), *(f"{kind}: {path}" for kind, path in paths.items())])
    return EXIT_OK if report.matches else EXIT_MISMATCH


def cmd_dashboard(args) -> int:
    from .core import dashboard

    result = dashboard.write(_lake(args), args.out)
    _emit(args, {"flags": {flag: {"rollbacks": h.rollbacks, "open_holds": len(h.open_holds),
                                  "awaiting_approval": h.awaiting_approval,
                                  "page": str(Path(args.out) / dashboard.file_name(flag))} for flag, h in result.items()},
                 "index": str(Path(args.out) / "index.html")},
          [f"{flag}: {h.rollbacks} rollback(s), {len(h.open_holds)} open hold(s), {h.awaiting_approval} awaiting "
           f"approval -> {Path(args.out) / dashboard.file_name(flag)}" for flag, h in result.items()]
          + [f"index: {Path(args.out) / 'index.html'}"])
    return EXIT_OK


def cmd_drill(args) -> int:
    """Kill-switch drill in a staging lake, landing zone, flag file and instance; the result goes to $DAGSTER_HOME."""
    from .defs.drill import report_to_main_instance, run_drill

    _progress(f"drill on {args.flag}: staging lake and instance, history, a regression, the real sensors; a few minutes")
    result = run_drill(args.flag, rows_per_day=args.rows_per_day, workdir=args.workdir, keep=args.keep)
    lines = [
        f"drill {result.drill_id} on {result.flag_key}: {'PASSED' if result.flag_changed else 'FAILED'}",
        f"  time to detection: {result.seconds_to_detection} s; time to the flag change: {result.seconds_to_flag_change} s",
        f"  decision {result.decision_id}; flag {result.flag_before} -> {result.flag_after}; {len(result.runs)} runs",
    ] + [f"  audit {row.action_id}: {row.kind} {row.status}, {row.before_rollout} % -> {row.after_rollout} %"
         f"{f', variant {row.after_variant}' if row.after_variant else ''} by {row.actor}" for row in result.audit.itertuples()]
    home = report_to_main_instance(result)
    _progress(f"drill recorded in Dagster ({home}) as an observation of flag_actions" if home
              else "drill not recorded in Dagster: DAGSTER_HOME is not set")
    lines.append(f"  staging kept in {args.workdir}" if args.keep and args.workdir else "  staging removed")
    _emit(args, {"drill_id": result.drill_id, "flag_key": result.flag_key, "passed": bool(result.flag_changed),
                 "seconds_to_detection": result.seconds_to_detection,
                 "seconds_to_flag_change": result.seconds_to_flag_change, "decision_id": result.decision_id,
                 "flag_before": result.flag_before, "flag_after": result.flag_after, "runs": len(result.runs)}, lines)
    return EXIT_OK if result.flag_changed else EXIT_FAILED


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollback-assets", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", help="lake root, a folder or s3:// abfss:// gs:// URL (default: $ROLLBACK_LAKE or ./lake)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    result = argparse.ArgumentParser(add_help=False)
    result.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", help="who acts, recorded in the audit row (default: $ROLLBACK_ACTOR, else $USER)")

    def command(container, name: str, help: str, parents=(result,)):
        return container.add_parser(name, help=help, description=help, epilog=EPILOG, parents=list(parents),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)

    demo = command(sub, "demo", "generate demo data, run the whole graph in Dagster, show the decisions", parents=())
    demo.add_argument("--rows-per-day", type=int, default=1000, help="feedback rows per demo day (default 1000)")
    demo.set_defaults(func=cmd_demo)

    release = command(sub, "release", "release artifacts", parents=()).add_subparsers(
        dest="release_command", required=True, metavar="SUBCOMMAND")
    register = command(release, "register", "register a release of a flag (from CI), or every release of a YAML file")
    register.add_argument("--file", help="YAML file with a list of releases (keys as the options below, e.g. flag_key)")
    register.add_argument("--flag", help="the flag the release ships behind")
    register.add_argument("--version", help="the release's version string")
    register.add_argument("--released-at", help="ISO time it went live (default: now)")
    register.add_argument("--product", help="product or app id, as in the feedback's product column")
    register.add_argument("--code-commit", help="commit of the code shipped (decision lineage)")
    register.add_argument("--notebook-commit", help="commit of the notebook or job shipped (decision lineage)")
    register.add_argument("--model-name", help="model the release serves, if any (decision lineage)")
    register.add_argument("--model-version", help="that model's version (decision lineage)")
    register.add_argument("--surfaces", help="comma-separated topics or surfaces the release touches")
    register.add_argument("--ladder", default="100,25,5,0", help="rollout percentages, high to low (default 100,25,5,0)")
    register.add_argument("--fallback-variant", help="variant a severe regression switches to, instead of disabling")
    register.add_argument("--owner", help="who governance checks and notifications name")
    register.add_argument("--expires-at", help="ISO time the flag should be cleaned up by (governance check)")
    register.add_argument("--adoption", choices=("randomized", "self_selected"), default="randomized",
                          help="randomized: the flag assigns users (default); self_selected: users update when they "
                               "choose, as app-store versions (compared with earlier releases at the same age)")
    register.add_argument("--version-rule", choices=("store_build",), default=None,
                          help="normalise --version to its release: store_build turns '8.104.0 build 5 50619' into 8.104")
    register.add_argument("--version-pattern", default=None,
                          help="normalise --version with a regex that has a named group (?P<release>...)")
    register.set_defaults(func=cmd_release_register)

    from .core.replay import replay_arg_parser

    replay = command(sub, "replay", "what the policy would have done on your history (no Dagster)")
    replay_arg_parser(replay)
    replay.set_defaults(func=cmd_replay)

    override = command(sub, "override", "human holds on automatic actions", parents=()).add_subparsers(
        dest="override_command", required=True, metavar="SUBCOMMAND")
    hold = command(override, "hold", "block automatic flag changes, until a time or until released", parents=(result, actor))
    hold.add_argument("flag", help="a registered flag key")
    hold.add_argument("--until", help="ISO time the hold ends; omit to hold until `override release`")
    hold.add_argument("--reason", required=True, help="why, recorded in the audit row")
    release_hold = command(override, "release", "lift a hold", parents=(result, actor))
    release_hold.add_argument("flag", help="a registered flag key")
    release_hold.add_argument("--reason", help="why, recorded in the audit row")
    for p in (hold, release_hold):
        p.set_defaults(func=cmd_override)

    approve = command(sub, "approve", "approve a decision that waits for a human, and apply it", parents=(result, actor))
    approve.add_argument("decision", help="decision id (= its flag action id)")
    approve.add_argument("--reason", help="why, recorded in the audit row")
    approve.set_defaults(func=cmd_approve)
    reject = command(sub, "reject", "reject a decision: no flag change", parents=(result, actor))
    reject.add_argument("decision", help="decision id (= its flag action id)")
    reject.add_argument("--reason", required=True, help="why, recorded in the audit row")
    reject.set_defaults(func=cmd_reject)
    force = command(sub, "force", "set a flag by hand (audited)", parents=(result, actor))
    force.add_argument("flag", help="a registered flag key")
    force.add_argument("--rollout", type=int, help="rollout percentage to set (0-100)")
    force.add_argument("--variant", help="variant to serve")
    force.add_argument("--disable", action="store_true", help="turn the flag off")
    force.add_argument("--reason", required=True, help="why, recorded in the audit row")
    force.set_defaults(func=cmd_force)
    promote = command(sub, "promote", "ramp a flag up; refused while its guardrail fails or a decision is open",
                      parents=(result, actor))
    promote.add_argument("flag", help="a registered flag key")
    promote.add_argument("--to", type=int, required=True, help="rollout percentage to ramp up to (0-100)")
    promote.add_argument("--reason", help="why, recorded in the audit row")
    promote.set_defaults(func=cmd_promote)
    postmortem = command(sub, "postmortem", "one decision's report: why, what happened, lineage recomputed (HTML + Markdown)")
    postmortem.add_argument("decision", help="decision id, from the rollback_decisions asset or a notification")
    postmortem.add_argument("--out", required=True, help="folder for postmortem-<id>.html, .md and .svg")
    postmortem.set_defaults(func=cmd_postmortem)
    dashboard = command(sub, "dashboard", "release-health pages, one per flag, offline HTML")
    dashboard.add_argument("--out", required=True, help="folder for index.html and <flag>.html")
    dashboard.set_defaults(func=cmd_dashboard)
    drill = command(sub, "drill", "kill-switch drill: inject a regression for one flag in staging, time detection and the flag change")
    drill.add_argument("--flag", required=True, help="a flag of the demo releases to inject the regression into")
    drill.add_argument("--rows-per-day", type=int, default=1000, help="feedback rows per simulated day (default 1000)")
    drill.add_argument("--workdir", help="staging folder (default: a temp folder)")
    drill.add_argument("--keep", action="store_true", help="keep the staging folder (e.g. to open dagster dev on it)")
    drill.set_defaults(func=cmd_drill)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command. A user's mistake is one line on stderr and exit 2, never a traceback; anything
    else is a bug and keeps its traceback."""
    from .core.config_file import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ConfigError) as error:
        return _fail(str(error))
    except KeyError as error:  # an id the core did not find: its message is the first argument
        return _fail(str(error.args[0]) if error.args else "not found")
    except FileNotFoundError as error:
        return _fail(f"{error.filename}: no such file" if error.filename else str(error))
    except ValueError as error:  # the core's refusals: a hold in the past, an invalid ladder, a bad time
        return _fail(str(error))


def _fail(message: str) -> int:
    print(f"rollback-assets: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def run() -> None:
    """Console entry point: see `process.exit_now` for why it does not simply return."""
    from .process import exit_now

    exit_now(main())


if __name__ == "__main__":
    run()
