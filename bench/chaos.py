"""Chaos ingest: a landing zone of fuzzed CSV, JSONL and Parquet files through the real ingest step.

Every poison the hostile tester used is in the files (lone surrogate escapes, fields over the csv
module's 131,072-character limit, list- and struct-valued Parquet columns, object ids, list texts,
relative and future times, quoted newlines, blank lines, wrong field counts, bytes that are not UTF-8),
plus whole files that cannot be read, a `.CSV` in upper case, a `.parquet` in a JSONL folder, a `.txt`,
a stray folder and a broken mapping. The answer for every record is known (tests/fuzz_files.py), so the
run counts: crashes, valid rows landed, bad rows quarantined at their true line with the right reason.
A second pass checks that a rerun neither re-ingests nor duplicates quarantine rows. Then `--mutations`
copies of those files are damaged at random (flipped, inserted, deleted bytes, cuts, splices, surrogate
escapes) and read: no reader error, no row both landed and quarantined, every JSON line accounted for.

    .venv/bin/python bench/chaos.py [--records 4000] [--files 4] [--mutations 300] [--seed 7]
Writes bench/results/chaos.json; exits 1 when any failure count is not 0.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from fuzz_files import (  # noqa: E402
    FAILURE_COUNTS, PARQUET_MAPPING, Expected, check, check_mutated, mutate, write_csv, write_jsonl, write_parquet,
)

from rollback_assets.core import pipeline  # noqa: E402
from rollback_assets.core.ingest import read_file  # noqa: E402
from rollback_assets.core.landing import scan_landing_zone  # noqa: E402
from rollback_assets.core.lake import Lake  # noqa: E402
from rollback_assets.core.schemas import LANDING_FILES, QUARANTINE, RAW_FEEDBACK  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="records per format (CSV, JSONL, Parquet)")
    parser.add_argument("--files", type=int, default=4, help="files per format")
    parser.add_argument("--mutations", type=int, default=300, help="randomly damaged copies of the fuzzed files")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "chaos.json"))
    args = parser.parse_args()
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
    figures["failures"] = failures
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    shown = {k: v for k, v in figures.items() if k not in ("reasons", "examples")}
    print(json.dumps(shown, indent=2, default=str))
    if figures["examples"]:
        print("examples:\n  " + "\n  ".join(figures["examples"]))
    print("OK: every valid row landed, every bad row quarantined at its line" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
