"""`rollback-assets`: run the demo, register releases, replay history, act on flags."""

from __future__ import annotations

import argparse
import os
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
    lake_root = Path(os.environ.setdefault("ROLLBACK_LAKE", str(PROJECT_ROOT / "lake")))
    landing = Path(os.environ.setdefault("ROLLBACK_LANDING", str(PROJECT_ROOT / "landing")))
    releases_file = landing / "_releases.yaml"
    for folder in (lake_root, landing):
        shutil.rmtree(folder, ignore_errors=True)

    import dagster as dg

    from .core import demo_data, pipeline
    from .core.lake import Lake
    from .core.releases import load_releases_yaml

    spec = demo_data.DemoSpec(rows_per_day=args.rows_per_day)
    files = demo_data.write_landing_zone(demo_data.generate(spec), landing, releases_file)
    print(f"demo data: {len(files)} files, {spec.rows_per_day * spec.days:,} feedback rows in {landing}")
    pipeline.register_releases(Lake(lake_root), load_releases_yaml(releases_file))
    print(f"registered releases from {releases_file}")

    from .definitions import build_definitions

    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    result = defs.resolve_job_def("feedback_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    )
    failed_checks = [
        e.asset_check_evaluation_data.check_name
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    print(f"dagster run {result.run_id} in {os.environ['DAGSTER_HOME']}: "
          f"{'success' if result.success else 'stopped by a blocking check'}; failed checks: {', '.join(failed_checks) or 'none'}")
    print_decisions(Lake(lake_root))
    return 0


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
    untouched = sorted(set(latest.flag_key) - set(latest[latest.state == "act"].flag_key))
    print(f"\n  no action on: {', '.join(untouched) or '-'}")


def cmd_release_register(args) -> int:
    from .core import pipeline
    from .core.releases import load_releases_yaml, release_record, releases_frame

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
            )
        ])
    result = pipeline.register_releases(_lake(args), frame)
    for row in frame.itertuples():
        print(f"registered {row.flag_key} {row.version} (released {row.released_at:%Y-%m-%d %H:%M} UTC, ladder {list(row.ladder)})")
    print(f"release_artifacts at Delta version {result.version}")
    return 0


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
    register.set_defaults(func=cmd_release_register)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
