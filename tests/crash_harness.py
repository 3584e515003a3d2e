"""Kill -9 at the pipeline's step boundaries, then rerun: the lake and the flag must end as an
uninterrupted run leaves them.

A *world* is a demo landing zone, a lake with the releases registered and a flagd flag file with
every flag on at 100 %. `run_child` runs the whole graph's core path in a child process (ingest,
enrich, score, baselines, decisions, then the flag step as `flag_actions` runs it: the intent rows,
the actions, then the recovery of decisions without an audit row and of pending rows). With a kill
point the child SIGKILLs itself right after the named commit (or flag write): no `finally`, no
flush, no atexit, exactly what `kill -9` or an OOM kill does between two steps. The rerun is the
production recovery, nothing more: the same steps on the same landing zone, and a flag step that only
recovers (the sensor never issues a decision's run key twice, so only `unacted_decisions` and the
retry of pending rows can carry a killed action on).

`snapshot` reads every table minus what is run-specific by design (ingest, enrich, decide and audit
timestamps, run ids, the Delta versions a row names as lineage, attempt counts) and the flag
file's state; `differences` names what is not equal. Used by tests/test_crash_recovery.py (a few
kill points) and bench/chaos.py (every boundary, plus kills at random moments).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SALT = "crash-harness-salt-not-secret"
# Actions are planned and guarded (cooldown) against this clock in every run, so an interrupted and
# an uninterrupted run see the same time; the demo's feedback ends on 2026-10-13.
ACTION_CLOCK = datetime(2026, 10, 14, 6, tzinfo=timezone.utc)

# Every boundary between two durable writes, in the order a run makes them: "<table>:<n>" is "just
# after this process's n-th commit to <table>", "flag_write:<n>" just after the n-th flag-file write,
# "call:<step>" as the step starts (everything before it committed). The child ingests in batches of a
# third of the rows and enriches and scores in chunks of half of them, so the ledger and the
# watermarks have commits before and after them; the demo decides one flag change.
KILL_POINTS = {
    "ingest: first batch merged into raw_feedback, before its ledger rows": "raw_feedback:1",
    "ingest: first batch in the ledger, before the next batch": "landing_files:1",
    "ingest: quarantine merged, before the landing-file ledger": "quarantine:1",
    "ingest: done, before enrich": "call:enrich",
    "enrich: first chunk written, before the watermark": "enriched_feedback:1",
    "enrich: done, before score": "call:score_and_aggregate",
    "score: first chunk's rows written, before their sums": "scored_sentiment:1",
    "score: first chunk's rows and sums written, before the next chunk": "sentiment_daily:1",
    "score: done, before baselines": "call:baselines",
    "baselines: written, before decisions": "call:decide",
    "decisions: written, before the pending audit row": "call:record_intent",
    "flag step: pending audit row, before the flag is read": "flag_actions:1",
    "flag step: planned pending row, before the flag write": "flag_actions:2",
    "flag step: flag written, before the applied row": "flag_write:1",
    "flag step: applied row written, before the run ends": "flag_actions:3",
}
FAST_KILL_POINTS = (  # the test's subset: the ledger, a watermark, the intent row, the flag write
    "ingest: quarantine merged, before the landing-file ledger",
    "enrich: first chunk written, before the watermark",
    "score: first chunk's rows and sums written, before the next chunk",
    "decisions: written, before the pending audit row",
    "flag step: flag written, before the applied row",
)

# Run-specific by design: when and by which run a row was written, which Delta versions it names.
RUN_SPECIFIC = {
    "raw_feedback": ["ingested_at"],
    "quarantine": ["quarantined_at"],
    "landing_files": ["ingested_at", "raw_version"],
    "release_artifacts": ["registered_at"],
    "enriched_feedback": ["ingested_at", "enriched_at"],
    "scored_sentiment": ["ingested_at", "enriched_at"],
    "rollback_decisions": ["decided_at", "run_id", "input_versions"],
    "flag_actions": ["created_at", "updated_at", "lineage", "attempts"],
}


@dataclass(frozen=True)
class World:
    root: Path

    @property
    def lake_root(self) -> Path:
        return self.root / "lake"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def flag_file(self) -> Path:
        return self.root / "flags" / "flags.json"

    @property
    def flag_calls(self) -> Path:
        """One line per flag-file write (action id), appended by the child: the backend's own count."""
        return self.root / "flag_calls.log"


def make_world(root: Path, frame: pd.DataFrame) -> World:
    """A landing zone written from `frame` (demo_data.generate), releases registered, flags at 100 %."""
    from rollback_assets.core import demo_data, pipeline
    from rollback_assets.core.flags import FlagTarget, make_flag_backend
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.releases import load_releases_yaml

    world = World(Path(root))
    world.root.mkdir(parents=True, exist_ok=True)
    (world.root / "rows.json").write_text(json.dumps({"rows": len(frame)}))
    releases_file = world.root / "releases.yaml"
    demo_data.write_landing_zone(frame, world.landing, releases_file)
    pipeline.register_releases(Lake(world.lake_root), load_releases_yaml(releases_file))
    flagd = make_flag_backend("flagd", path=world.flag_file)
    for flag in sorted({r["flag_key"] for r in demo_data.releases()}):
        flagd.apply(flag, FlagTarget(enabled=True, rollout=100), idempotency_key=f"seed-{flag}")
    return world


def run_pipeline(world: World, recover_only: bool) -> None:
    """The graph's steps in order, then the flag step as the `flag_actions` asset runs it.
    `recover_only`: the flag step acts on no named decision (their run keys were issued already)."""
    from rollback_assets.core import pipeline
    from rollback_assets.core.actions import executor, ledger, plan
    from rollback_assets.core.flags import make_flag_backend
    from rollback_assets.core.landing import scan_landing_zone
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.policy import PolicyConfig
    from rollback_assets.core.schemas import DECISIONS
    from rollback_assets.core.scoring.lexicon import LexiconScorer
    from rollback_assets.core.taxonomy import Taxonomy

    lake, policy = Lake(world.lake_root), PolicyConfig.load()
    scan = scan_landing_zone(world.landing, [])
    pipeline.ingest(lake, pipeline.pending_files(lake, scan.files), author_salt=SALT)
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score_and_aggregate(lake, LexiconScorer(), Taxonomy.load())  # as the scored_sentiment asset runs it
    pipeline.baselines(lake, policy)
    decided = pipeline.decide(lake, policy, run_id="crash-harness").stats["decisions"]

    backend = make_flag_backend("flagd", path=world.flag_file)

    def flag_policy(flag: str) -> plan.FlagPolicy:
        return plan.FlagPolicy(cooldown=timedelta(hours=policy.for_flag(flag).cooldown_hours))

    named = [] if recover_only else sorted(
        (d for d in decided.to_dict("records") if plan.acts(d)), key=lambda d: d["decision_id"])
    for decision in named:  # intent before effect, as flag_actions does
        ledger.record_intent(lake, decision, backend=backend.name, now=ACTION_CLOCK)
    results = [executor.act(lake, backend, d, policy=flag_policy(d["flag_key"]), now=ACTION_CLOCK) for d in named]
    for decision_id in ledger.unacted_decisions(lake, datetime.now(timezone.utc) - timedelta(days=7)):
        decision = lake.read(DECISIONS).set_index("decision_id", drop=False).loc[decision_id].to_dict()
        results.append(executor.act(lake, backend, decision, policy=flag_policy(decision["flag_key"]), now=ACTION_CLOCK))
    executor.retry_open_actions(lake, lambda name, flag: backend, policy_for=flag_policy, now=ACTION_CLOCK,
                               exclude={r.row["action_id"] for r in results if r.row})


def _install_kill_point(world: World, spec: str | None) -> None:
    """Count commits per table, flag-file writes and step calls; SIGKILL this process at the one
    `spec` names. Every flag-file write is logged with its action id first, as a backend would."""
    from rollback_assets.core import pipeline
    from rollback_assets.core.actions import ledger
    from rollback_assets.core.flags.flagd import FlagdFileBackend
    from rollback_assets.core.lake import Lake

    rows = json.loads((world.root / "rows.json").read_text())["rows"]
    ingest_rows, step_rows = rows // 3, rows // 2 + 1
    pipeline.CHUNK_ROWS = step_rows
    counts: dict[str, int] = {}
    target, _, nth = (spec or "").partition(":")

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1
        if target != "call" and name == target and counts[name] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    def counted(method):
        def wrapper(self, table, *args, **kwargs):
            result = method(self, table, *args, **kwargs)
            count(table.name)
            return result
        return wrapper

    for name in ("merge", "merge_if_unchanged", "overwrite", "append"):
        setattr(Lake, name, counted(getattr(Lake, name)))
    apply = FlagdFileBackend.apply

    def logged_apply(self, flag_key, flag_target, *, idempotency_key, comment=""):
        state = apply(self, flag_key, flag_target, idempotency_key=idempotency_key, comment=comment)
        with open(world.flag_calls, "a") as log:
            log.write(idempotency_key + "\n")
            log.flush()
            os.fsync(log.fileno())
        count("flag_write")
        return state

    FlagdFileBackend.apply = logged_apply
    ingest = pipeline.ingest

    def ingest_in_batches(lake, files, author_salt=""):
        # ingest batches by CHUNK_ROWS too: a third of the rows per batch gives the ledger several commits
        pipeline.CHUNK_ROWS = ingest_rows
        try:
            return ingest(lake, files, author_salt=author_salt)
        finally:
            pipeline.CHUNK_ROWS = step_rows

    pipeline.ingest = ingest_in_batches
    if target == "call":
        module = ledger if nth == "record_intent" else pipeline

        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        setattr(module, nth, killed)


def child_main(argv: list[str]) -> None:
    """The child: `<world root> <kill spec or ''> <first|recover>`; leaves through exit_now."""
    from rollback_assets.process import exit_now

    world, kill_at, mode = World(Path(argv[0])), argv[1] or None, argv[2]
    _install_kill_point(world, kill_at)
    run_pipeline(world, recover_only=mode == "recover")
    exit_now(0)


def run_child(world: World, kill_at: str | None = None, mode: str = "first", kill_after_s: float | None = None,
              timeout: float = 900) -> int:
    """Run the pipeline in a child process; its return code (-9 when killed). `kill_after_s`: the
    parent SIGKILLs the child after that many seconds instead (a kill at a random moment, mid-commit)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "ROLLBACK_AUTHOR_SALT": SALT}
    for name in ("ROLLBACK_POLICY", "ROLLBACK_TAXONOMY", "ROLLBACK_MAPPINGS"):
        env.pop(name, None)
    command = [sys.executable, str(Path(__file__).resolve()), str(world.root), kill_at or "", mode]
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = child.communicate(timeout=kill_after_s if kill_after_s is not None else timeout)
    except subprocess.TimeoutExpired:
        if kill_after_s is None:
            child.kill()
            raise
        child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=60)
    if child.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"pipeline child failed ({child.returncode}): {stderr.decode(errors='replace')[-3000:]}")
    return child.returncode


def copy_world(template: World, root: Path) -> World:
    """A fresh copy of a world that has not run yet (one per kill point: the same files, releases, flags)."""
    shutil.copytree(template.root, root)
    return World(Path(root))


@dataclass
class Outcome:
    kill_point: str
    killed: bool  # the child died at the kill point (False: the run never reached it)
    differences: list[str]

    @property
    def converged(self) -> bool:
        return self.killed and not self.differences


def kill_and_recover(template: World, expected: dict, kill_point: str, root: Path,
                     kill_after_s: float | None = None) -> Outcome:
    """Copy the template, run it killed at `kill_point` (or after `kill_after_s` seconds), rerun it
    the way production recovers, and compare with the uninterrupted snapshot."""
    world = copy_world(template, root)
    code = run_child(world, KILL_POINTS.get(kill_point), kill_after_s=kill_after_s)
    run_child(world, mode="recover")
    return Outcome(kill_point, code == -signal.SIGKILL, differences(expected, snapshot(world)))


def snapshot(world: World) -> dict:
    """Every table (run-specific columns dropped, rows sorted by key), the flags' states, and the
    number of flag-file writes per action id."""
    from rollback_assets.core.flags import make_flag_backend
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.schemas import TABLES

    lake, out = Lake(world.lake_root), {}
    for name, table in TABLES.items():
        if not lake.exists(table):
            out[name] = None
            continue
        frame = lake.read(table).drop(columns=RUN_SPECIFIC.get(name, []))
        for column in ("source_file", "path"):  # rows name their file by a path under the world's folder
            if column in frame:
                frame[column] = frame[column].str.replace(str(world.root), "", regex=False)
        out[name] = frame.sort_values(list(table.key)).reset_index(drop=True)
    backend = make_flag_backend("flagd", path=world.flag_file)
    flags = json.loads(world.flag_file.read_text())["flags"]
    out["flag_state"] = {key: backend.get_state(key) for key in sorted(flags)}
    writes = world.flag_calls.read_text().split() if world.flag_calls.exists() else []
    out["flag_writes"] = {key: writes.count(key) for key in sorted(set(writes))}
    return out


def differences(expected: dict, actual: dict) -> list[str]:
    """What differs between two snapshots, one line per table (empty: converged)."""
    out = []
    for name in expected:
        a, b = expected[name], actual.get(name)
        if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
            if len(a) != len(b):
                out.append(f"{name}: {len(b)} rows, expected {len(a)}")
            elif not a.equals(b[a.columns] if set(a.columns) <= set(b.columns) else b):
                columns = [c for c in a.columns if not a[c].equals(b[c])]
                out.append(f"{name}: values differ in {columns}")
        elif a != b and not (a is None and b is None):
            out.append(f"{name}: {b!r}, expected {a!r}")
    return out


if __name__ == "__main__":
    child_main(sys.argv[1:])
