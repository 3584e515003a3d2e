"""The heavy steps (ingest, attribution, scoring, daily aggregation) on the pandas engine and on the Spark
engine (local mode), same generated rows, same lexicon scorer, each in its own process.

    python bench/spark_engine.py [--rows 200000] [--master local[2]]

Prints wall seconds, rows/s and peak RSS: for the pandas engine its process (`driver_python`) and its
tree (with the scorer's worker process); for Spark the Python driver, the JVM (driver and, in local mode,
the executors) and the whole process tree (Python workers included), sampled every 0.2 s. Writes bench/results/spark_engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pandas_steps(lake: str, landing: str) -> None:
    """The pandas engine's heavy steps, as the assets call them (child process)."""
    from rollback_assets.core import pipeline
    from rollback_assets.core.attribution import DEFAULT_COHORT_DIMENSIONS
    from rollback_assets.core.landing import scan_landing_zone
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.scoring.lexicon import LexiconScorer
    from rollback_assets.core.taxonomy import Taxonomy

    the_lake = Lake(lake)
    pipeline.ingest(the_lake, pipeline.pending_files(the_lake, scan_landing_zone(landing).files),
                    author_salt=os.environ["ROLLBACK_AUTHOR_SALT"])
    pipeline.enrich(the_lake, DEFAULT_COHORT_DIMENSIONS)
    pipeline.score_and_aggregate(the_lake, LexiconScorer(), Taxonomy.load())


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            children = []
        todo.extend(int(c) for c in children)
    return out


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def measure(command: list[str], env: dict) -> dict:
    """Run `command`; wall time and peak RSS of the process, its JVM child and the whole tree."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = {"driver_python_mb": 0.0, "jvm_mb": 0.0, "tree_mb": 0.0}

    def sample():
        while process.poll() is None:
            pids = _tree(process.pid)
            sizes = {p: _rss_mb(p) for p in pids}
            peaks["driver_python_mb"] = max(peaks["driver_python_mb"], sizes.get(process.pid, 0.0))
            peaks["jvm_mb"] = max([peaks["jvm_mb"], *(s for p, s in sizes.items() if _name(p) == "java")])
            peaks["tree_mb"] = max(peaks["tree_mb"], sum(sizes.values()))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{stderr.decode(errors='replace')[-3000:]}")
    return {"seconds": round(wall, 1), **{k: round(v) for k, v in peaks.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "spark_engine.json"))
    parser.add_argument("--pandas-child", nargs=2, metavar=("LAKE", "LANDING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Both engines' children hash the ticket requesters with it (required since personal columns are keyed).
    os.environ.setdefault("ROLLBACK_AUTHOR_SALT", "bench-salt-not-secret")
    if args.pandas_child:
        pandas_steps(*args.pandas_child)
        return 0

    from rollback_assets.core import demo_data, pipeline
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.releases import load_releases_yaml

    work = Path(tempfile.mkdtemp(prefix="rollback-spark-bench-"))
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=max(1, args.rows // demo_data.DAYS)))
    releases = work / "releases.yaml"
    demo_data.write_landing_zone(frame, work / "landing", releases, malformed=False)
    rows = len(frame)
    del frame
    for engine in ("pandas", "spark"):
        pipeline.register_releases(Lake(work / engine), load_releases_yaml(releases))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {"rows": rows, "master": args.master, "cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0]}
    results["pandas"] = measure([sys.executable, __file__, "--pandas-child", str(work / "pandas"), str(work / "landing")], env)
    results["spark"] = measure([sys.executable, "-m", "rollback_assets.engines.spark_job", "--pipes", "none",
                                "--master", args.master, "--lake", str(work / "spark"), "--landing", str(work / "landing")], env)
    for engine in ("pandas", "spark"):
        r = results[engine]
        r["rows_per_s"] = round(rows / r["seconds"])
        print(f"{engine:>6}: {rows:,} rows in {r['seconds']:.0f} s = {r['rows_per_s']:,} rows/s; peak RSS "
              + ", ".join(f"{k.removesuffix('_mb')} {v:,} MB" for k, v in r.items() if k.endswith("_mb")))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
