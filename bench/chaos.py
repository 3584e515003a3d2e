"""Chaos: everything issue 11's hostile tester did, measured, with one summary table at the end.

1. fuzz: a landing zone of fuzzed CSV, JSONL and Parquet files through the real ingest step. Every
   poison the tester used is in the files (lone surrogate escapes, fields over the csv module's
   131,072-character limit, list- and struct-valued Parquet columns, object ids, list texts, relative and
   future times, quoted newlines, blank lines, wrong field counts, bytes that are not UTF-8), plus whole
   files that cannot be read, a `.CSV` in upper case, a `.parquet` in a JSONL folder, a `.txt`, a stray
   folder and a broken mapping. The answer for every record is known (tests/fuzz_files.py), so the run
   counts crashes, valid rows landed, bad rows quarantined at their true line with the right reason; a
   rerun must neither re-ingest nor duplicate quarantine rows; then `--mutations` randomly damaged copies
   are read: no reader error, no row both landed and quarantined, every JSON line accounted for.
2. kills: the demo through the core steps and the flag step in a child process (tests/crash_harness.py),
   SIGKILLed at every step boundary (ingest commit, quarantine vs ledger, enrich, score, baselines,
   decisions, pending audit row, flag write, applied row) and `--random-kills` times at a random moment;
   each is rerun the way production recovers and compared with an uninterrupted run: every table (minus
   run-specific timestamps, run ids and lineage versions), the flag's state and the flag-file writes.
3. concurrency: `--trials` times, four processes at once, each ingesting, enriching and scoring its own
   files: rows missing or duplicated in raw_feedback, enriched_feedback, scored_sentiment, quarantine
   and the ledger.
4. flag faults: invalid JSON, a directory, the flag missing, an unwritable folder, a run dead before
   the pending row: each must leave a pending row (or be found without one), stay pending while broken,
   and be applied exactly once (counted at the flag file) after the repair.
5. demo: one row dated 2099, or 300 one-star reviews from one author on a healthy release, added to the
   demo's landing zone: the acting decisions must be the demo's own.

    .venv/bin/python bench/chaos.py [--records 4000] [--files 4] [--mutations 300] [--random-kills 6]
                                    [--trials 3] [--rows-per-day 1000] [--seed 7] [--sections fuzz,kills,...]
Writes bench/results/chaos.json; exits 1 when any failure count is not 0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from fuzz_files import (  # noqa: E402
    FAILURE_COUNTS, PARQUET_MAPPING, Expected, check, check_mutated, mutate, write_csv, write_jsonl, write_parquet,
)

import crash_harness  # noqa: E402

from rollback_assets.core import demo_data, pipeline  # noqa: E402
from rollback_assets.core.actions import executor, ledger  # noqa: E402
from rollback_assets.core.flags import FlagTarget  # noqa: E402
from rollback_assets.core.ingest import read_file  # noqa: E402
from rollback_assets.core.landing import scan_landing_zone  # noqa: E402
from rollback_assets.core.mapping import load_mapping  # noqa: E402
from rollback_assets.core.lake import Lake  # noqa: E402
from rollback_assets.core.policy import PolicyConfig  # noqa: E402
from rollback_assets.core.releases import load_releases_yaml  # noqa: E402
from rollback_assets.core.schemas import (  # noqa: E402
    DECISIONS, ENRICHED_FEEDBACK, FLAG_ACTIONS, LANDING_FILES, QUARANTINE, RAW_FEEDBACK, RELEASE_ARTIFACTS, SCORED_SENTIMENT,
)
from rollback_assets.core.scoring.lexicon import LexiconScorer  # noqa: E402
from rollback_assets.core.taxonomy import Taxonomy  # noqa: E402
from rollback_assets.process import exit_now  # noqa: E402

SALT = "chaos-salt-not-secret"


def build_landing_zone(root: Path, records: int, files: int, seed: int) -> tuple[Path, Path, list[Expected], dict]:
    rng, now = random.Random(seed), datetime.now(timezone.utc)
    landing, mappings = root / "landing", root / "mappings"
    for folder in ("feedback_jsonl", "support_tickets", "fuzz_parquet", "stray", "broken"):
        (landing / folder).mkdir(parents=True)
    mappings.mkdir()
    (mappings / "fuzz_parquet.yaml").write_text(PARQUET_MAPPING)
    (mappings / "broken.yaml").write_text("name: broken\nformat: csv\ncolumns: {event_id: [unclosed\n")
    (landing / "stray" / "orphan.jsonl").write_text('{"event_id": "orphan"}\n')
    (landing / "broken" / "b.csv").write_text("event_id,text\nx,y\n")
    expected: list[Expected] = []
    per_file = max(1, records // files)
    for i in range(files):
        expected.append(write_jsonl(landing / "feedback_jsonl" / f"reviews_{i}.jsonl", per_file, rng, now))
        suffix = ".CSV" if i == 0 else ".csv"  # upper case is still CSV
        expected.append(write_csv(landing / "support_tickets" / f"tickets_{i}{suffix}", per_file, rng, now))
        expected.append(write_parquet(landing / "fuzz_parquet" / f"export_{i}.parquet", per_file, rng, now))
    # A Parquet file in the JSONL folder, in that source's columns: read as Parquet.
    frame = pd.DataFrame([{"event_id": f"pq-in-jsonl-{n}", "source_kind": "review", "channel": "fuzz",
                           "created_at": "2026-09-10T10:00:00Z", "text": "checkout fine", "product": "shop-app"}
                          for n in range(50)])
    frame.to_parquet(landing / "feedback_jsonl" / "misplaced.parquet")
    misplaced = Expected(landing / "feedback_jsonl" / "misplaced.parquet",
                         valid={r.event_id: (n + 1, pd.Timestamp(r.created_at)) for n, r in frame.iterrows()})
    expected.append(misplaced)
    unreadable = {
        landing / "fuzz_parquet" / "truncated.parquet": "not a readable Parquet file",
        landing / "support_tickets" / "notes.txt": "unsupported file type",
        landing / "support_tickets" / "other_export.csv": "no column ticket_id for event_id",
    }
    data = (landing / "fuzz_parquet" / "export_0.parquet").read_bytes()
    (landing / "fuzz_parquet" / "truncated.parquet").write_bytes(data[: len(data) // 2])
    (landing / "support_tickets" / "notes.txt").write_text("call me back")
    (landing / "support_tickets" / "other_export.csv").write_text("id,when,what\n1,2026-09-10,hello\n")
    return landing, mappings, expected, unreadable


def damage(files: list, folder: Path, count: int, rng: random.Random) -> dict:
    """Read randomly damaged copies of the landing files; count reader errors and accounting problems."""
    folder.mkdir()
    sources = [(p, m) for p, m in files if p.suffix.lower() in (".csv", ".jsonl", ".parquet")]
    crashes, problems, unreadable, lines = [], [], 0, 0
    for n in range(count):
        source, mapping = sources[n % len(sources)]
        damaged = folder / f"damaged_{n}{source.suffix.lower()}"
        damaged.write_bytes(mutate(source.read_bytes(), rng))
        try:
            result = read_file(damaged, mapping, author_salt=SALT)
        except Exception as error:  # noqa: BLE001 - counted, that is the point
            crashes.append(f"{damaged.name}: {type(error).__name__}: {error}")
            continue
        unreadable += result.file_error is not None
        lines += len(result.valid) + len(result.quarantined)
        problems += check_mutated(result, damaged)
    return {"damaged_files": count, "damaged_rows_seen": lines, "damaged_files_unreadable": unreadable,
            "damaged_crashes": len(crashes), "damaged_problems": len(problems),
            "damaged_examples": (crashes + problems)[:10]}


def fuzz(args) -> tuple[dict, dict]:
    """Section 1: (figures, failures)."""
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        root = Path(tmp)
        landing, mappings, expected, unreadable = build_landing_zone(root, args.records, args.files, args.seed)
        lake = Lake(root / "lake")
        scan = scan_landing_zone(landing, [mappings])
        files = pipeline.pending_files(lake, scan.files)
        crashes: list[str] = []
        started = time.perf_counter()
        try:
            stats = pipeline.ingest(lake, files, author_salt=SALT).stats
        except Exception as error:  # noqa: BLE001 - the point is to count them
            crashes.append(f"{type(error).__name__}: {error}")
            stats = {}
        seconds = time.perf_counter() - started
        valid, quarantined = lake.read(RAW_FEEDBACK), lake.read(QUARANTINE)
        figures = check(expected, valid, quarantined)
        file_rows = quarantined[quarantined.source_row == 0].set_index("source_file").reason.to_dict()
        figures["unreadable_files_expected"] = len(unreadable)
        figures["unreadable_files_reported_right"] = sum(words in file_rows.get(str(p), "") for p, words in unreadable.items())
        figures["landing_zone_problems"] = scan.problems
        figures["files_scanned"] = len(scan.files)
        # Rerun: nothing new is ingested, unreadable files are read again, no quarantine row is duplicated.
        quarantine_before = len(quarantined)
        try:
            again = pipeline.ingest(lake, pipeline.pending_files(lake, scan.files), author_salt=SALT).stats
        except Exception as error:  # noqa: BLE001
            crashes.append(f"rerun: {type(error).__name__}: {error}")
            again = {}
        figures["rerun_files_read"] = again.get("files")
        figures["rerun_rows_valid"] = again.get("rows_valid")
        figures["rerun_duplicate_quarantine_rows"] = len(lake.read(QUARANTINE)) - quarantine_before
        figures["ledger_files"] = len(lake.read(LANDING_FILES))
        figures["crashes"] = len(crashes)
        figures["crash_messages"] = crashes
        figures["ingest_seconds"] = round(seconds, 2)
        figures["records_per_second"] = round(figures["records"] / seconds) if seconds else None
        figures["reasons"] = stats.get("reasons", {})
        figures.update(damage(scan.files, root / "damaged", args.mutations, random.Random(args.seed + 1)))
    failures = {k: figures[k] for k in (*FAILURE_COUNTS, "crashes", "rerun_duplicate_quarantine_rows",
                                        "damaged_crashes", "damaged_problems") if figures[k]}
    if figures["unreadable_files_reported_right"] != figures["unreadable_files_expected"]:
        failures["unreadable_files_reported_right"] = figures["unreadable_files_reported_right"]
    if len(figures["landing_zone_problems"]) != 2:
        failures["landing_zone_problems"] = figures["landing_zone_problems"]
    if figures["examples"]:
        print("fuzz examples:\n  " + "\n  ".join(figures["examples"]))
    return figures, failures


def kills(args, root: Path) -> tuple[dict, dict]:
    """Section 2: every kill point of crash_harness, then random-moment kills; each rerun and compared."""
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=args.rows_per_day))
    template = crash_harness.make_world(root / "template", frame)
    reference = crash_harness.copy_world(template, root / "reference")
    started = time.perf_counter()
    crash_harness.run_child(reference)
    seconds = time.perf_counter() - started
    expected = crash_harness.snapshot(reference)
    outcomes = []
    for n, point in enumerate(crash_harness.KILL_POINTS):
        outcomes.append(crash_harness.kill_and_recover(template, expected, point, root / f"point-{n}"))
        print(f"  kill {'converged' if outcomes[-1].converged else 'FAILED'}: {point} {outcomes[-1].differences or ''}")
    rng, timed = random.Random(args.seed), []
    for n in range(args.random_kills):
        delay = round(rng.uniform(1.0, seconds), 2)
        timed.append(crash_harness.kill_and_recover(template, expected, "", root / f"random-{n}", kill_after_s=delay))
        print(f"  kill after {delay}s: {'killed' if timed[-1].killed else 'finished first'}, "
              f"{'converged' if not timed[-1].differences else timed[-1].differences}")
    figures = {
        "kill_rows": len(frame),
        "kill_points": len(outcomes),
        "kill_points_reached": sum(o.killed for o in outcomes),
        "kill_points_converged": sum(o.converged for o in outcomes),
        "random_kills": len(timed),
        "random_kills_landed": sum(t.killed for t in timed),
        "random_kills_converged": sum(not t.differences for t in timed),
        "flag_writes_per_action": sorted(set(expected["flag_writes"].values())),
        "uninterrupted_run_seconds": round(seconds, 1),
        "kill_failures": {o.kill_point: o.differences or "not reached" for o in outcomes if not o.converged}
                         | {f"random {n}": t.differences for n, t in enumerate(timed) if t.differences},
    }
    failures = {"kills": figures["kill_failures"]} if figures["kill_failures"] else {}
    return figures, failures


def _concurrent_run(lake_root: str, files: list[str]) -> None:
    """One of the concurrent runs (its own process): ingest its files, enrich, score."""
    lake = Lake(lake_root)
    jobs = [(Path(f), load_mapping(Path(f).parent.name)) for f in files]
    pipeline.ingest(lake, pipeline.pending_files(lake, jobs), author_salt=SALT)
    pipeline.enrich(lake, ("device", "locale"))
    pipeline.score(lake, LexiconScorer(), Taxonomy.load())
    exit_now(0)


def concurrency(args, root: Path) -> tuple[dict, dict]:
    """Section 3: four processes at once on different files, `--trials` times."""
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=max(args.rows_per_day // 4, 50), days=16))
    context = multiprocessing.get_context("spawn")
    totals = {"trials": args.trials, "runs_failed": 0}
    for trial in range(args.trials):
        here = root / f"trial-{trial}"
        files = demo_data.write_landing_zone(frame, here / "landing", here / "releases.yaml", period_days=1)
        lake = Lake(here / "lake")
        pipeline.register_releases(lake, load_releases_yaml(here / "releases.yaml"))
        random.Random(args.seed + trial).shuffle(files)
        runs = [context.Process(target=_concurrent_run, args=(str(lake.root), [str(f) for f in files[i::4]]))
                for i in range(4)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(900)
        totals["runs_failed"] += sum(run.exitcode != 0 for run in runs)
        raw = set(lake.read(RAW_FEEDBACK, columns=["event_id"]).event_id)
        for table, key, expected in ((RAW_FEEDBACK, ["event_id"], len(frame)), (ENRICHED_FEEDBACK, ["event_id"], len(frame)),
                                     (SCORED_SENTIMENT, ["event_id"], len(frame)), (QUARANTINE, ["source_file", "source_row"], 8),
                                     (LANDING_FILES, ["file_digest"], len(files))):
            rows = lake.read(table, columns=key)
            name = table.name
            totals[f"{name}_duplicates"] = totals.get(f"{name}_duplicates", 0) + int(rows.duplicated().sum())
            missing = expected - len(rows.drop_duplicates())
            if table in (ENRICHED_FEEDBACK, SCORED_SENTIMENT):
                missing = len(raw - set(rows.event_id)) + max(0, len(frame) - len(raw))
            totals[f"{name}_missing"] = totals.get(f"{name}_missing", 0) + max(missing, 0)
    totals["rows_per_trial"] = len(frame)
    failures = {k: v for k, v in totals.items() if (k.endswith(("_duplicates", "_missing")) or k == "runs_failed") and v}
    return totals, failures


BAD = {"flag_key": "checkout-redesign", "version": "5.2", "ladder": [100, 25, 5, 0], "fallback_variant": None}


def _flag_world(root: Path, decision_id: str):
    """A lake holding one acting decision and its release, a flag file with the flag at 100 %, and a
    backend that counts its writes."""
    from rollback_assets.core.flags.flagd import FlagdFileBackend

    class Counting(FlagdFileBackend):
        writes = 0

        def apply(self, flag_key, target, *, idempotency_key, comment=""):
            state = super().apply(flag_key, target, idempotency_key=idempotency_key, comment=comment)
            Counting.writes += 1
            return state

    lake, flag_file = Lake(root / "lake"), root / "flags" / "flags.json"
    now = pd.Timestamp.now(tz="UTC")
    lake.merge(RELEASE_ARTIFACTS, pd.DataFrame([{**BAD, "released_at": now - pd.Timedelta(days=10), "registered_at": now}]))
    lake.merge(DECISIONS, pd.DataFrame([{
        "decision_id": decision_id, "flag_key": BAD["flag_key"], "release_version": "5.2", "cohort": "all", "state": "act",
        "action": "step_down", "severity": "moderate", "reason": "Negative share rose", "policy_name": "sequential",
        "policy_version": "v", "baseline_kind": "concurrent", "window_start": now - pd.Timedelta(days=7), "window_end": now,
        "n": 400, "baseline_n": 900, "decided_at": now, "target_rollout": 25}]))
    backend = Counting(flag_file)
    backend.apply(BAD["flag_key"], FlagTarget(enabled=True, rollout=100), idempotency_key="seed")
    Counting.writes = 0
    return lake, flag_file, backend, Counting


def _immutable(folder: Path):
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cannot make {folder} unwritable: chattr: {done.stderr.strip()}")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def flag_faults(args, root: Path) -> tuple[dict, dict]:
    """Section 4: each flag-file fault through the core flag step (intent, act, retry, repair, retry)."""

    def invalid_json(flag_file):
        flag_file.write_text('{"flags": {"checkout-redesign": {"state": "ENAB')

    def a_directory(flag_file):
        flag_file.unlink()
        flag_file.mkdir()

    def flag_missing(flag_file):
        doc = json.loads(flag_file.read_text())
        del doc["flags"][BAD["flag_key"]]
        flag_file.write_text(json.dumps(doc))

    def unwritable(flag_file):
        return _immutable(flag_file.parent) if os.geteuid() == 0 else _chmod(flag_file.parent)

    faults = {"invalid JSON": invalid_json, "a directory": a_directory, "flag missing": flag_missing,
              "permission denied": unwritable, "run dies before the pending row": None}
    results = {}
    for n, (name, inject) in enumerate(faults.items()):
        lake, flag_file, backend, counter = _flag_world(root / f"fault-{n}", f"dec-fault-{n}")
        decision = lake.read(DECISIONS).to_dict("records")[0]
        good = flag_file.read_bytes()
        pending_while_broken = True
        if inject is None:  # the run died before record_intent: nothing in flag_actions, the decision is found
            pending_while_broken = ledger.unacted_decisions(lake, datetime.now(timezone.utc) - timedelta(days=7)) == [decision["decision_id"]]
        else:
            undo = inject(flag_file)
            try:
                first = executor.act(lake, backend, decision, now=datetime.now(timezone.utc), sleep=lambda s: None)
                retried = executor.retry_open_actions(lake, lambda b, f: backend, sleep=lambda s: None)
                pending_while_broken = first.status == "pending" and [r.status for r in retried] == ["pending"]
            finally:
                if undo:
                    undo()
            if flag_file.is_dir():
                flag_file.rmdir()
            flag_file.write_bytes(good)
        # The repaired world's next tick: decisions without an audit row, then every pending row.
        for decision_id in ledger.unacted_decisions(lake, datetime.now(timezone.utc) - timedelta(days=7)):
            executor.act(lake, backend, lake.read(DECISIONS).set_index("decision_id", drop=False).loc[decision_id].to_dict(),
                        sleep=lambda s: None)
        executor.retry_open_actions(lake, lambda b, f: backend, sleep=lambda s: None)
        executor.retry_open_actions(lake, lambda b, f: backend, sleep=lambda s: None)  # a later tick: nothing to do
        row = lake.read(FLAG_ACTIONS).iloc[0]
        results[name] = {"pending_while_broken": bool(pending_while_broken), "status_after_repair": row.status,
                         "flag_writes": counter.writes, "rollout": backend.get_state(BAD["flag_key"]).rollout}
    ok = {k: v for k, v in results.items() if v["pending_while_broken"] and v["status_after_repair"] == "applied"
          and v["flag_writes"] == 1 and v["rollout"] == 25}
    figures = {"flag_faults": len(results), "flag_faults_applied_once_after_repair": len(ok), "flag_fault_detail": results}
    return figures, ({"flag_faults": {k: v for k, v in results.items() if k not in ok}} if len(ok) < len(results) else {})


def _chmod(folder: Path):
    folder.chmod(0o555)
    return lambda: folder.chmod(0o755)


def demo(args, root: Path) -> tuple[dict, dict]:
    """Section 5: a 2099 row, then a review bomb, added to the demo: acting decisions unchanged."""
    import test_abuse as A

    frame = demo_data.generate(demo_data.DemoSpec())
    demo_data.write_landing_zone(frame, root / "landing", root / "releases.yaml")
    lake = Lake(root / "lake")
    pipeline.register_releases(lake, load_releases_yaml(root / "releases.yaml"))
    policy = PolicyConfig.load()
    plain = A._run_steps(lake, root / "landing", policy)
    figures, state = {"demo_acting_decisions": A._acting(plain)}, (root, plain, policy)
    future = {**A._bomb_lines("someone")[1], "event_id": "from-2099", "created_at": "2099-01-01T00:00:00Z"}
    for name, lines in (("future_row", [future]), ("review_bomb", A._bomb_lines("troll-0001"))):
        here = root / name
        here.mkdir()
        variant = A._variant(state, here, f"{name}.jsonl", lines)
        decisions = A._run_steps(variant, here / "landing", policy)
        figures[f"{name}_acting_unchanged"] = A._acting(decisions) == A._acting(plain)
        notes = [json.loads(e)[0] for e in decisions.evidence if json.loads(e) and json.loads(e)[0].startswith("suspected")]
        figures[f"{name}_notes"] = sorted(set(notes))
    failures = {k: False for k in ("future_row_acting_unchanged", "review_bomb_acting_unchanged") if not figures[k]}
    if not figures["review_bomb_notes"]:
        failures["review_bomb_notes"] = "no decision names the bomb"
    return figures, failures


SECTIONS = {"fuzz": fuzz, "kills": kills, "concurrency": concurrency, "flags": flag_faults, "demo": demo}


def summary(figures: dict) -> str:
    """One table of every figure the issue judges."""
    f = figures
    rows = []
    if "records" in f:
        rows += [
            ("fuzz", "records (CSV, JSONL, Parquet) / crashes", f"{f['records']} / {f['crashes']}"),
            ("fuzz", "valid rows landed", f"{f['landed']} of {f['valid_expected']}"),
            ("fuzz", "bad rows quarantined at their line, right reason",
             f"{f['bad_quarantined_right']} of {f['bad_expected']}"),
            ("fuzz", "unreadable files reported", f"{f['unreadable_files_reported_right']} of {f['unreadable_files_expected']}"),
            ("fuzz", "rerun: duplicate quarantine rows", f"{f['rerun_duplicate_quarantine_rows']}"),
            ("fuzz", "damaged files read / crashes / problems",
             f"{f['damaged_files']} / {f['damaged_crashes']} / {f['damaged_problems']}"),
        ]
    if "kill_points" in f:
        rows += [
            ("kill -9", "step boundaries reached / converged",
             f"{f['kill_points_reached']} / {f['kill_points_converged']} of {f['kill_points']}"),
            ("kill -9", "random moments landed / converged",
             f"{f['random_kills_landed']} / {f['random_kills_converged']} of {f['random_kills']}"),
            ("kill -9", "flag writes per action (backend count)", f"{f['flag_writes_per_action']}"),
        ]
    if "trials" in f:
        dup = sum(v for k, v in f.items() if k.endswith("_duplicates"))
        missing = sum(v for k, v in f.items() if k.endswith("_missing"))
        rows += [("concurrency", f"{f['trials']} trials x 4 processes: missing / duplicate rows (5 tables)",
                  f"{missing} / {dup}"), ("concurrency", "runs failed", f"{f['runs_failed']}")]
    if "flag_faults" in f:
        rows.append(("flag faults", "pending while broken, applied once after repair",
                     f"{f['flag_faults_applied_once_after_repair']} of {f['flag_faults']}"))
    if "demo_acting_decisions" in f:
        rows += [("demo", "acting decisions", f"{len(f['demo_acting_decisions'])}"),
                 ("demo", "2099 row: acting decisions unchanged", f"{f['future_row_acting_unchanged']}"),
                 ("demo", "review bomb: acting decisions unchanged", f"{f['review_bomb_acting_unchanged']}"),
                 ("demo", "review bomb: note", "; ".join(f["review_bomb_notes"]) or "none")]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{'section':<{width[0]}}  {'figure':<{width[1]}}  result", "-" * (width[0] + width[1] + 30)]
    lines += [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="records per format (CSV, JSONL, Parquet)")
    parser.add_argument("--files", type=int, default=4, help="files per format")
    parser.add_argument("--mutations", type=int, default=300, help="randomly damaged copies of the fuzzed files")
    parser.add_argument("--random-kills", type=int, default=6, help="kills at a random moment of a run")
    parser.add_argument("--trials", type=int, default=3, help="rounds of four concurrent runs")
    parser.add_argument("--rows-per-day", type=int, default=1000, help="demo size for the kill and demo sections")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "chaos.json"))
    args = parser.parse_args()
    os.environ["ROLLBACK_AUTHOR_SALT"] = SALT
    figures, failures = {}, {}
    for name in args.sections.split(","):
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
            section_figures, section_failures = SECTIONS[name](args, Path(tmp)) if name != "fuzz" else SECTIONS[name](args)
        figures.update(section_figures)
        failures.update(section_failures)
        figures[f"{name}_seconds"] = round(time.perf_counter() - started, 1)
    figures["failures"] = failures
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(summary(figures))
    print("OK: every figure as it must be" if not failures else f"FAILED: {json.dumps(failures, default=str)[:3000]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
