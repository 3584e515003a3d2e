"""`rollback-assets`: run the demo, register releases, replay history, act on flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_demo import cmd_demo
from .cli_support import (
    EPILOG, EXIT_FAILED, EXIT_MISMATCH, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, UserError, action_payload, actor_of, emit,
    known_flag, lake_of, progress, tell_dagster, tell_dagster_action,
)

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
    result = pipeline.register_releases(lake_of(args), frame)
    registered = ", ".join(f"{r.flag_key} {r.version}" for r in frame.itertuples())
    emit(args, {"registered": [{"flag_key": r.flag_key, "version": r.version, "released_at": r.released_at,
                                 "ladder": list(r.ladder)} for r in frame.itertuples()],
                 "delta_version": result.version},
          [f"registered {r.flag_key} {r.version} (released {r.released_at:%Y-%m-%d %H:%M} UTC, ladder {list(r.ladder)})"
           for r in frame.itertuples()] + [f"release_artifacts at Delta version {result.version}"])
    tell_dagster("release_artifacts", f"registered from the CLI: {registered}", {
        "delta_version": result.version, "releases_registered": len(frame), "releases": registered,
        "code_commits": ", ".join(sorted({str(c) for c in frame.code_commit.dropna()})) or None,
    }, data_version=f"release_artifacts@{result.version}")
    return EXIT_OK


def _control(args):
    """The lake, the configured flag backend and per-flag settings, as the Dagster resources see them
    (secrets resolved from the environment, as a run resolves its dg.EnvVar)."""
    from .core.actions.plan import FlagPolicy
    from .core.policy import PolicyConfig
    from .core.settings import Settings
    from .defs.flags import flag_control_from_env

    settings = Settings.from_env()
    flags = flag_control_from_env(settings).process_config_and_initialize()
    policy = PolicyConfig.load(settings.policy)
    return lake_of(args), flags.client(), flags.notifier(), lambda flag: FlagPolicy.for_flag(policy, flag)


def _report(args, result) -> int:
    row = result.row or {}
    lines = [f"{result.status}: {result.message or row.get('reason', '')}"]
    if row:
        lines.append(f"  audit row {row['action_id']}: {row.get('before_rollout')} % -> {row.get('after_rollout')} % "
                     f"(enabled {row.get('after_enabled')}, variant {row.get('after_variant')}), actor {row['actor']}")
    emit(args, {"status": result.status, "message": result.message, "action": action_payload(row)}, lines)
    tell_dagster_action(args, result.row)
    return EXIT_OK if result.status in ("applied", "noop", "skipped", "awaiting_approval") else EXIT_FAILED


def cmd_replay(args) -> int:
    from .core.replay_cli import run_replay_cli, summary_line

    progress(f"replay: scoring {args.feedback} and running the policy every {args.step}; "
              "large histories take minutes (scoring dominates)")
    summary = run_replay_cli(args)
    emit(args, summary, [summary_line(summary)])
    return EXIT_OK


def cmd_override(args) -> int:
    from datetime import timezone

    from .core.actions import overrides

    lake = lake_of(args)
    known_flag(lake, args.flag)
    if args.override_command == "hold":
        until = _time(args.until, "--until").astimezone(timezone.utc) if args.until else None
        row = overrides.hold(lake, args.flag, until=until, actor=actor_of(args), reason=args.reason)
        line = f"hold on {args.flag} until {until or 'released'} by {row['actor']}: {args.reason}"
    else:
        row = overrides.release_hold(lake, args.flag, actor=actor_of(args), reason=args.reason or "")
        line = f"hold on {args.flag} released by {row['actor']}"
    emit(args, {"action": action_payload(row)}, [line])
    tell_dagster_action(args, row)
    return EXIT_OK


def _time(value: str, option: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option}: {value!r} is not an ISO time (e.g. 2026-10-01T08:00:00+00:00)") from None


def _decision_action(lake, decision_id: str) -> dict:
    from .core.actions import ledger

    existing = ledger.read_action(lake, decision_id)
    if existing is None:
        raise UserError(f"unknown decision {decision_id!r}: no flag action awaits it (see the rollback_decisions "
                        "asset or `rollback-assets dashboard` for decision ids)")
    return existing


def cmd_approve(args) -> int:
    from .core.actions import overrides

    lake, backend, notifier, policy_for = _control(args)
    existing = _decision_action(lake, args.decision)
    return _report(args, overrides.approve(lake, backend, args.decision, approver=actor_of(args), reason=args.reason or "",
                                         policy=policy_for(existing["flag_key"]), notifier=notifier))


def cmd_reject(args) -> int:
    from .core.actions import overrides

    lake = lake_of(args)
    _decision_action(lake, args.decision)
    row = overrides.reject(lake, args.decision, approver=actor_of(args), reason=args.reason)
    emit(args, {"action": action_payload(row)},
          [f"rejected {args.decision} by {row.get('approver') or row.get('actor')}: {args.reason}"])
    tell_dagster_action(args, row)
    return EXIT_OK


def cmd_force(args) -> int:
    from .core.actions import overrides

    lake, backend, notifier, policy_for = _control(args)
    known_flag(lake, args.flag)
    return _report(args, overrides.force(lake, backend, args.flag, actor=actor_of(args), reason=args.reason, rollout=args.rollout,
                                       enabled=not args.disable, variant=args.variant, notifier=notifier,
                                       policy=policy_for(args.flag)))


def cmd_promote(args) -> int:
    from .core.actions import overrides
    from .core.policy import guardrail_status
    from .core.schemas import DECISIONS

    lake, backend, notifier, policy_for = _control(args)
    known_flag(lake, args.flag)
    passing, why = guardrail_status(lake.read(DECISIONS) if lake.exists(DECISIONS) else DECISIONS.empty_frame(), args.flag)
    result = overrides.promote(lake, backend, args.flag, to=args.to, actor=actor_of(args), reason=args.reason or "",
                             guardrail_ok=passing, guardrail_reason=why, policy=policy_for(args.flag), notifier=notifier)
    if result.status == "rejected":  # audited as a refused promotion; nothing was changed
        print(f"refused: promotion of {args.flag} to {args.to} % is blocked: {result.message}", file=sys.stderr)
        if args.json:
            emit(args, {"status": "refused", "message": result.message, "action": action_payload(result.row)}, [])
        tell_dagster_action(args, result.row)
        return EXIT_REFUSED
    return _report(args, result)


def cmd_postmortem(args) -> int:
    from .core import postmortem
    from .core.policy import PolicyConfig
    from .core.settings import Settings

    report = postmortem.build(lake_of(args), args.decision, PolicyConfig.load(Settings.from_env().policy))
    paths = postmortem.write(report, args.out)
    emit(args, {"decision_id": args.decision, "sentence": report.sentence, "matches": report.matches,
                 "match_statement": postmortem.match_statement(report), "files": {k: str(v) for k, v in paths.items()}},
          [report.sentence, postmortem.match_statement(report), *(f"{kind}: {path}" for kind, path in paths.items())])
    return EXIT_OK if report.matches else EXIT_MISMATCH


def cmd_dashboard(args) -> int:
    from .core import dashboard

    result = dashboard.write(lake_of(args), args.out)
    emit(args, {"flags": {flag: {"rollbacks": h.rollbacks, "open_holds": len(h.open_holds),
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

    progress(f"drill on {args.flag}: staging lake and instance, history, a regression, the real sensors; a few minutes")
    result = run_drill(args.flag, rows_per_day=args.rows_per_day, workdir=args.workdir, keep=args.keep)
    lines = [
        f"drill {result.drill_id} on {result.flag_key}: {'PASSED' if result.flag_changed else 'FAILED'}",
        f"  time to detection: {result.seconds_to_detection} s; time to the flag change: {result.seconds_to_flag_change} s",
        f"  decision {result.decision_id}; flag {result.flag_before} -> {result.flag_after}; {len(result.runs)} runs",
    ] + [f"  audit {row.action_id}: {row.kind} {row.status}, {row.before_rollout} % -> {row.after_rollout} %"
         f"{f', variant {row.after_variant}' if row.after_variant else ''} by {row.actor}" for row in result.audit.itertuples()]
    home = report_to_main_instance(result)
    progress(f"drill recorded in Dagster ({home}) as an observation of flag_actions" if home
              else "drill not recorded in Dagster: DAGSTER_HOME is not set")
    lines.append(f"  staging kept in {args.workdir}" if args.keep and args.workdir else "  staging removed")
    emit(args, {"drill_id": result.drill_id, "flag_key": result.flag_key, "passed": bool(result.flag_changed),
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

    from .core.replay_cli import replay_arg_parser

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
    """Console entry point: see `process.exit_now` for why it does not simply return. The core's own
    log lines (LLM retries and fallbacks, commit retries, failed notifications) go to stderr beside the
    progress lines, as they go to the run's event log in Dagster."""
    import logging

    from .process import exit_now

    logging.basicConfig(format="rollback-assets: %(name)s: %(message)s", stream=sys.stderr, level=logging.WARNING)
    logging.getLogger("rollback_assets").setLevel(logging.INFO)
    exit_now(main())


if __name__ == "__main__":
    run()
