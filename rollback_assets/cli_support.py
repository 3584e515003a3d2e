"""What every `rollback-assets` command shares: exit codes, the result on stdout (or --json), progress
and notes on stderr, user errors, the lake, and the runless Dagster events of CLI writes."""

from __future__ import annotations

import json
import os
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


def progress(message: str) -> None:
    """Long work says where it is, on stderr, so stdout stays the result (and --json stays parseable)."""
    print(f"rollback-assets: {message}", file=sys.stderr, flush=True)


def emit(args, payload: dict, lines: list[str]) -> None:
    """The command's result: `lines` for people, or `payload` as one JSON object with --json."""
    if getattr(args, "json", False):
        print(json.dumps(payload, default=str, sort_keys=True))
    else:
        for line in lines:
            print(line)


def known_flag(lake, flag: str) -> None:
    """A flag must be registered (release_artifacts) before a human acts on it: a typo would otherwise
    create a flag in the backend and an audit trail for nothing."""
    from .core.schemas import RELEASE_ARTIFACTS

    known = set(lake.read(RELEASE_ARTIFACTS, columns=["flag_key"]).flag_key) if lake.exists(RELEASE_ARTIFACTS) else set()
    if flag not in known:
        raise UserError(f"unknown flag {flag!r}: no release of it is registered (registered: {', '.join(sorted(known)) or 'none'}); "
                        "register one with `rollback-assets release register`")


def lake_of(args):
    from .core.lake import Lake

    return Lake(args.lake or os.environ.get("ROLLBACK_LAKE") or PROJECT_ROOT / "lake")


def tell_dagster(asset_name: str, description: str, metadata: dict, data_version: str | None = None) -> None:
    """Out-of-run writes show in the asset's history in the UI (a runless materialization)."""
    from .defs.launch import report_out_of_run_write

    home = report_out_of_run_write(asset_name, description, {**metadata, "source": "rollback-assets CLI"}, data_version)
    progress(f"recorded in Dagster ({home}) as a materialization of {asset_name}" if home
              else "not recorded in Dagster: DAGSTER_HOME is not set")


def tell_dagster_action(args, row: dict | None) -> None:
    """A human's hold, approval, rejection, promotion or forced change: one runless flag_actions event."""
    if not row:
        return
    from .core.schemas import FLAG_ACTIONS
    from .core.actions.ledger import describe

    version = lake_of(args).version(FLAG_ACTIONS)
    fields = ("flag_key", "release_version", "cohort", "kind", "status", "actor", "approver", "decision_id",
              "before_rollout", "after_rollout", "reason")
    metadata = {}
    for name in fields:
        value = row.get(name)
        if value is None or value == "" or (isinstance(value, float) and value != value):  # value != value: NaN
            continue
        metadata[name] = int(value) if name.endswith("_rollout") else str(value)
    tell_dagster("flag_actions", describe(row), {**metadata, "delta_version": version},
                  data_version=f"flag_actions@{version}")


def actor_of(args) -> str:
    return args.actor or os.environ.get("ROLLBACK_ACTOR") or os.environ.get("USER") or "unknown"


def action_payload(row: dict | None) -> dict:
    keys = ("action_id", "flag_key", "kind", "status", "actor", "approver", "decision_id", "before_rollout",
            "after_rollout", "after_enabled", "after_variant", "reason")
    return {k: row.get(k) for k in keys if k in row} if row else {}
