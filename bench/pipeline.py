"""Pipeline benchmark: the whole graph through Dagster against the scorer alone in the same process.

    python bench/pipeline.py [--rows 1000000] [--days 30] [--long-days 90] [--samples 3] [--replay-flags 10]

Prints per-asset seconds and rows/s, the ratio full graph / scorer only (target <= 1.5), peak RSS
(target <= 2 GB), the cost of one new day at `--days` and at `--long-days` of history (same rows per
day) against the first day (target <= 1.2; decisions read `sentiment_daily`, not rows, so history
should not show), and `replay` over `--long-days` days x `--replay-flags` flags of generated history
(target <= 10 s for the policy over every 6-hour look), and the one-off set-up of a process's first
run. Every figure is a ratio against a baseline run in the same (fresh, warmed-up) process, or a wall
time; no test asserts a time. Writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd


def run_job(files: list[Path] | None):
    import dagster as dg

    from rollback_assets.definitions import build_definitions

    defs = build_definitions()
    config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    if files is not None:
        config["ops"] = {"raw_feedback": {"config": {"files": [str(f) for f in files]}}}
    sampler = RssSampler()
    started = time.perf_counter()
    with sampler:
        instance = dg.DagsterInstance.ephemeral()
        result = defs.resolve_job_def("feedback_job").execute_in_process(
            instance=instance, run_config=config, raise_on_error=False
        )
    wall = time.perf_counter() - started
    # A failing guardrail check (the bad release) fails its own step by design; anything else is a bug.
    steps = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key != "sentiment_guardrails"]
    if failed:
        raise SystemExit(f"step {failed[0].step_key} failed: {failed[0].event_specific_data.error.to_string()}")
    logs = [entry for entry in instance.all_logs(result.run_id) if entry.dagster_event is not None]
    starts = {e.step_key: e.timestamp for e in logs if e.dagster_event.event_type_value == "STEP_START"}
    ends = {e.step_key: e.timestamp for e in logs if e.dagster_event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")}
    peaks = {step: sampler.peak_mb(starts[step], ends[step]) for step in steps if step in starts and step in ends}
    return wall, steps, peaks, sampler.children_peak_mb


class RssSampler:
    """Resident memory sampled every 20 ms in a thread while a run executes in this process, so a
    step's peak can be read off its start and end times (VmHWM gives only the run's overall peak; a
    spike shorter than the interval may be missed here). Also the processes this one started (the
    scorer's worker): their resident memory summed, at its largest (`children_peak_mb`). Sampled, because
    getrusage's peak for children counts the parent's pages a spawned child had between fork and exec
    (it reported the Dagster process's 1.2 GB for the worker)."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s, self.samples, self.children_peak_mb = interval_s, [], 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        children: list[str] = []
        with open("/proc/self/statm") as statm:
            for tick in itertools.count():
                if self._stop.is_set():
                    break
                statm.seek(0)
                self.samples.append((time.time(), int(statm.read().split()[1]) * self._page_mb))
                if tick % 25 == 0:  # the children, listed twice a second (a listing reads a file per thread)
                    children = self._children()
                self.children_peak_mb = max(self.children_peak_mb, sum(self._resident_mb(pid) for pid in children))
                self._stop.wait(self.interval_s)

    @staticmethod
    def _children() -> list[str]:
        pids = []
        for task in Path("/proc/self/task").iterdir():
            try:  # a thread may end between the listing and the read
                pids += (task / "children").read_text().split()
            except FileNotFoundError:
                pass
        return pids

    def _resident_mb(self, pid: str) -> float:
        try:
            return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self._page_mb
        except (FileNotFoundError, ProcessLookupError):  # ended since it was listed
            return 0.0

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float, end: float) -> float | None:
        inside = [mb for at, mb in self.samples if start <= at <= end]
        return max(inside) if inside else None


def reset_peak_rss() -> None:
    """Linux: restart the peak-RSS counter, so a figure covers one phase and not the data generation."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(work: Path, rows_per_day: int, days: int) -> int:
    """(In a child process.) The demo data of `days` days plus one: the history as the full run's
    landing zone and releases under work/full, the new day and the first day as parquet. Returns the
    history's rows."""
    from rollback_assets.core import demo_data, pipeline
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.releases import load_releases_yaml

    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=rows_per_day, days=days + 1))
    cut = demo_data.START + pd.Timedelta(days=days)
    history = frame[frame.created_at < cut]
    root = work / "full"
    demo_data.write_landing_zone(history, root / "landing", root / "releases.yaml", period_days=1, malformed=False)
    pipeline.register_releases(Lake(root / "lake"), load_releases_yaml(root / "releases.yaml"))
    frame[frame.created_at >= cut].to_parquet(work / "new_day.parquet")
    history[history.created_at < demo_data.START + pd.Timedelta(days=1)].to_parquet(work / "first_day.parquet")
    return len(history)


def build_history(root: Path, rows_per_day: int, days: int, long_days: int) -> list[Path]:
    """(In a child process.) `long_days` days of history under root, run through the graph, and the
    day after it as landing files (returned): the long new day's input. Ends where the short history's
    new day ends: from the default start, 90 days would reach past today, and ingest quarantines
    feedback from the future."""
    from rollback_assets.core import demo_data, pipeline
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.releases import load_releases_yaml

    start = demo_data.START - pd.Timedelta(days=long_days - days)
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=rows_per_day, days=long_days + 1, seed=12), start=start)
    cut = start + pd.Timedelta(days=long_days)
    point_at(root)
    demo_data.write_landing_zone(frame[frame.created_at < cut], root / "landing", root / "releases.yaml", period_days=1,
                                 malformed=False, start=start)
    pipeline.register_releases(Lake(root / "lake"), load_releases_yaml(root / "releases.yaml"))
    run_job(None)
    return demo_data.write_landing_zone(frame[frame.created_at >= cut], root / "landing", period_days=1, malformed=False,
                                        start=start)


def point_at(root: Path, landing: Path | None = None) -> None:
    """The graph's lake is root/lake; its landing zone root/landing unless `landing` names another."""
    os.environ["ROLLBACK_LAKE"] = str(root / "lake")
    os.environ["ROLLBACK_LANDING"] = str(landing or root / "landing")
    os.environ.setdefault("ROLLBACK_AUTHOR_SALT", "bench-salt-not-secret")  # required: tickets hash requester ids


def replay_bench(days: int, flags: int, rows_per_day: int) -> dict:
    """Generated history for `flags` flags (the demo's three products, copied with their releases)
    replayed at a 6-hour step: the time of the policy over every look, apart from attribution and
    scoring (which cost what the scorer costs)."""
    from rollback_assets.core import demo_data
    from rollback_assets.core.policy import PolicyConfig
    from rollback_assets.core.releases import release_record, releases_frame
    from rollback_assets.core.replay import clock, decide_looks, prepare
    from rollback_assets.core.scoring.lexicon import LexiconScorer
    from rollback_assets.core.taxonomy import Taxonomy

    copies = -(-flags // len(demo_data.PRODUCT_WEIGHT))
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=rows_per_day * len(demo_data.PRODUCT_WEIGHT), days=days))
    frames, records = [], []
    for k in range(copies):
        frames.append(frame.assign(event_id=frame.event_id + f"-{k}", product=frame["product"] + f"-{k}"))
        records += [release_record(**{**r, "flag_key": f"{r['flag_key']}-{k}", "product": f"{r['product']}-{k}"})
                    for r in demo_data.releases()]
    feedback = pd.concat(frames, ignore_index=True)
    kept = sorted({r["flag_key"] for r in records})[:flags]
    records = [r for r in records if r["flag_key"] in kept]
    feedback = feedback[feedback["product"].isin({r["product"] for r in records})]
    releases = releases_frame(records)
    taxonomy, config = Taxonomy.load(), PolicyConfig.load()
    started = time.perf_counter()
    scored, releases = prepare(feedback, releases, LexiconScorer(), taxonomy, ("device", "locale"))
    prepare_s = time.perf_counter() - started
    steps = clock(scored, releases, pd.Timedelta(hours=6))
    started = time.perf_counter()
    decisions = decide_looks(scored, releases, config, steps, {"scorer_version": "bench", "input_versions": {}, "run_id": "bench"})
    decide_s = time.perf_counter() - started
    return {"flags": len(kept), "days": days, "rows": len(scored), "looks": len(steps), "decisions": len(decisions),
            "prepare_s": prepare_s, "decide_s": decide_s}


def copy_lake(history: Path, to: Path) -> None:
    """A run's own copy of a lake after its history (untimed): every sample starts from the same tables.
    The landing zone is shared (runs name their files), so ROLLBACK_LANDING stays on the history's."""
    shutil.copytree(history / "lake", to / "lake")
    point_at(to, landing=history / "landing")


def in_child(work, *args):
    """`work(*args)` in a fresh (spawned) process: its result, and none of its leftovers here."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(work, *args).result()


def warm_up(work: Path, tag: str) -> dict:
    """(In a child process, before its timed runs.) The graph twice on a few hundred rows of the first day:
    a process's first run pays for what Dagster, Arrow and the steps set up once (0.75 s on a 600-row run,
    ~1 s on a day), which every run in production pays too (a run is a fresh process) but which would land
    on whichever timed run came first. Returns both walls: their difference is that cost."""
    from rollback_assets.core import demo_data, pipeline
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.releases import load_releases_yaml

    walls = []
    for attempt in ("cold", "warm"):
        root = work / f"warm-{tag}-{attempt}"
        point_at(root)
        demo_data.write_landing_zone(pd.read_parquet(work / "first_day.parquet").head(600), root / "landing",
                                     root / "releases.yaml", period_days=1, malformed=False)
        pipeline.register_releases(Lake(root / "lake"), load_releases_yaml(root / "releases.yaml"))
        walls.append(run_job(None)[0])
        shutil.rmtree(root, ignore_errors=True)
    return {"cold_s": walls[0], "warm_s": walls[1]}


def full_round(root: Path) -> dict:
    """(In a child process.) The graph over root's landing zone, then the scorer alone on the rows it
    ingested (sentiment, label, confidence, topic, surface), in the same process."""
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.schemas import RAW_FEEDBACK
    from rollback_assets.core.scoring.base import score_frame
    from rollback_assets.core.scoring.model_store import ModelStore
    from rollback_assets.core.scoring.registry import make_scorer
    from rollback_assets.core.taxonomy import Taxonomy

    warm = warm_up(root.parent, root.name)
    point_at(root)
    reset_peak_rss()
    wall, steps, peaks, worker_mb = run_job(None)
    # The scorer's worker process (core/scoring/worker.py) runs beside this one: its peak is added.
    peak_mb = peak_rss_mb() + worker_mb
    scorer = make_scorer("auto", text_model=ModelStore(Lake(root / "lake").files("models")).current())
    texts = Lake(root / "lake").read(RAW_FEEDBACK, columns=["text", "rating", "rating_scale", "sentiment_from"])
    started = time.perf_counter()
    score_frame(scorer, Taxonomy.load(), texts)
    alone = time.perf_counter() - started
    return {"full_graph_s": wall, "scorer_only_s": alone, "ratio": wall / alone, "peak_rss_mb": peak_mb,
            "worker_peak_rss_mb": worker_mb, "steps_s": steps, "step_peak_rss_mb": peaks, "scorer": f"{scorer.name} ({scorer.version})", "warm_up": warm}


def day_round(work: Path, k: int, history: Path, new_files: list[Path], long_root: Path | None,
              long_new: list[Path] | None) -> dict:
    """(In a child process.) The first day alone on an empty lake, then one new day on a copy of the
    --days history and, with `long_root`, one on a copy of the --long-days history."""
    from rollback_assets.core import demo_data, pipeline
    from rollback_assets.core.lake import Lake
    from rollback_assets.core.releases import load_releases_yaml

    warm = warm_up(work, f"days-{k}")
    first = work / f"first-{k}"
    point_at(first)
    demo_data.write_landing_zone(pd.read_parquet(work / "first_day.parquet"), first / "landing", first / "releases.yaml",
                                 period_days=1, malformed=False)
    pipeline.register_releases(Lake(first / "lake"), load_releases_yaml(first / "releases.yaml"))
    first_wall, first_steps, *_ = run_job(None)
    copy_lake(history, work / f"new-{k}")
    new_wall, new_steps, *_ = run_job(new_files)
    run = {"first_day_s": first_wall, "first_day_steps_s": first_steps, "new_day_s": new_wall,
           "new_day_steps_s": new_steps, "new_day_to_first_day": new_wall / first_wall, "warm_up": warm}
    if long_root is not None:
        copy_lake(long_root, work / f"long-{k}")
        long_wall, long_steps, *_ = run_job(long_new)
        run.update(long_new_day_s=long_wall, long_new_day_steps_s=long_steps, long_new_day_to_first_day=long_wall / first_wall)
    for name in ("first", "new", "long"):
        shutil.rmtree(work / f"{name}-{k}", ignore_errors=True)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--long-days", type=int, default=90, help="history for the second new-day point (0: skip)")
    parser.add_argument("--samples", type=int, default=3,
                        help="rounds of every timed run; each ratio is the median of its rounds' ratios")
    parser.add_argument("--replay-flags", type=int, default=10, help="flags in the replay benchmark (0: skip)")
    parser.add_argument("--replay-rows-per-day", type=int, default=300, help="rows per flag and day in the replay benchmark")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline.json"))
    args = parser.parse_args()

    from rollback_assets.core import demo_data

    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    rows_per_day = args.rows // args.days

    # This machine's speed drifts by a third within an hour (the same scorer run took 31 s and 45 s):
    # every timed run is repeated `--samples` times, a ratio is taken between runs of the same round (close
    # in time), and the median of the rounds' ratios is reported, with every sample in the JSON. Each round
    # runs in a fresh process (rounds run one after another in one process carried the earlier rounds'
    # leftovers: the full graph's peak RSS rose 1,240 -> 1,476 MB over three rounds, and its time with it),
    # warmed up first by two small runs (`warm_up`: a process's first run pays a one-off set-up, reported
    # on its own, that would otherwise land on whichever timed run came first).
    # 1. The whole history at once, through Dagster, then the scorer alone on the same rows. The data is
    #    generated in a child process too. Each round starts from its own copy of the landing zone and the
    #    registered releases.
    n = in_child(generate, work, rows_per_day, args.days)
    full_runs = []
    for k in range(args.samples):
        root = work / f"full-{k}"
        shutil.copytree(work / "full", root)
        full_runs.append(in_child(full_round, root))
        run = full_runs[-1]
        print(f"round {k + 1}: full graph {run['full_graph_s']:.2f} s, scorer alone {run['scorer_only_s']:.2f} s, "
              f"ratio {run['ratio']:.2f}, peak RSS {run['peak_rss_mb']:,.0f} MB", flush=True)
    history = work / "full-0"  # the first round's lake is the history of the new day at --days
    for k in range(1, args.samples):
        shutil.rmtree(work / f"full-{k}", ignore_errors=True)

    # 2. The histories of the day runs. At --days: the lake round 1 left, with the next day's landing
    #    files. At --long-days, same rows per day: built first, untimed, in a child process.
    new_files = demo_data.write_landing_zone(pd.read_parquet(work / "new_day.parquet"), history / "landing", period_days=1,
                                             malformed=False)
    long_root = work / "long"
    long_new = in_child(build_history, long_root, rows_per_day, args.days, args.long_days) if args.long_days else None

    # 3. Rounds of: the first day alone on an empty lake, one new day at --days, one at --long-days.
    day_runs = []
    for k in range(args.samples):
        run = in_child(day_round, work, k, history, new_files, long_root if long_new is not None else None, long_new)
        day_runs.append(run)
        print(f"round {k + 1}: first day {run['first_day_s']:.2f} s, new day at {args.days} {run['new_day_s']:.2f} s"
              + (f", at {args.long_days} {run['long_new_day_s']:.2f} s" if long_new is not None else ""), flush=True)

    # 4. Replay: the policy over every 6-hour look of --long-days days of --replay-flags flags.
    replay_figures = replay_bench(args.long_days or args.days, args.replay_flags, args.replay_rows_per_day) if args.replay_flags else {}

    typical = sorted(full_runs, key=lambda r: r["ratio"])[len(full_runs) // 2]  # the median round, for its steps
    assets = ["raw_feedback", "release_artifacts", "enriched_feedback", "sentiment_model", "scored_sentiment",
              "cohort_baselines", "rollback_decisions"]  # scored_sentiment's step makes sentiment_daily too
    print(f"\nrows {n:,} over {args.days} days; scorer {typical['scorer']}; {args.samples} rounds in fresh processes; "
          f"steps of the median round")
    print(f"{'step':34s} {'seconds':>9s} {'rows/s':>12s} {'peak MB':>9s}")
    for step, seconds in sorted(typical["steps_s"].items(), key=lambda i: (i[0] not in assets, assets.index(i[0]) if i[0] in assets else 0, i[0])):
        rate = f"{n / seconds:,.0f}" if step in assets and seconds > 0 else ""
        peak = f"{typical['step_peak_rss_mb'][step]:,.0f}" if typical["step_peak_rss_mb"].get(step) else ""
        print(f"{step:34s} {seconds:9.2f} {rate:>12s} {peak:>9s}")
    print(f"{'full graph (wall, in Dagster)':34s} {typical['full_graph_s']:9.2f} {n / typical['full_graph_s']:12,.0f}")
    print(f"{'scorer only':34s} {typical['scorer_only_s']:9.2f} {n / typical['scorer_only_s']:12,.0f}")

    def summary(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} (rounds: {', '.join(f'{v:.2f}' for v in values)})"

    ratio = statistics.median([r["ratio"] for r in full_runs])
    peak = max(r["peak_rss_mb"] for r in full_runs)
    day_ratio = statistics.median([r["new_day_to_first_day"] for r in day_runs])
    long_ratio = statistics.median([r["long_new_day_to_first_day"] for r in day_runs]) if long_new is not None else None
    print(f"\nfull graph / scorer only: {summary([r['ratio'] for r in full_runs])} (target <= 1.5)")
    peaks = ", ".join(f"{r['peak_rss_mb']:,.0f}" for r in full_runs)
    print(f"peak RSS of the full graph, largest round: {peak:,.0f} MB (target <= 2048; rounds: {peaks}; the Dagster "
          f"process's peak plus the scorer worker's, {max(r['worker_peak_rss_mb'] for r in full_runs):,.0f} MB at most)")
    print(f"new day at {args.days} days of history / first day: {summary([r['new_day_to_first_day'] for r in day_runs])} "
          f"(target <= 1.2); first day {statistics.median([r['first_day_s'] for r in day_runs]):.2f} s, new day "
          f"{statistics.median([r['new_day_s'] for r in day_runs]):.2f} s (medians)")
    if long_new is not None:
        print(f"new day at {args.long_days} days of history / first day: "
              f"{summary([r['long_new_day_to_first_day'] for r in day_runs])} (target <= 1.2); new day "
              f"{statistics.median([r['long_new_day_s'] for r in day_runs]):.2f} s (median)")
    for day_name, key in (("first day", "first_day_steps_s"), (f"new day at {args.days}", "new_day_steps_s"),
                          (f"new day at {args.long_days}", "long_new_day_steps_s")):
        if key in day_runs[0]:
            steps = {step: statistics.median([r[key][step] for r in day_runs]) for step in day_runs[0][key] if step in assets}
            print(f"  {day_name:18s} " + "  ".join(f"{k} {v:.2f}" for k, v in steps.items()) + " (medians)")
    cold = [r["warm_up"]["cold_s"] - r["warm_up"]["warm_s"] for r in (*full_runs, *day_runs)]
    print(f"a process's first run (600 rows) took {statistics.median(cold):.2f} s more than its second (median of "
          f"{len(cold)} processes): the one-off set-up each production run pays, left out of the ratios above")
    if replay_figures:
        print(f"replay: {replay_figures['flags']} flags x {replay_figures['days']} days, {replay_figures['rows']:,} rows, "
              f"{replay_figures['looks']} looks: policy over all looks {replay_figures['decide_s']:.2f} s (target <= 10); "
              f"attribution + scoring before it {replay_figures['prepare_s']:.2f} s")
    results = {
        "rows": n, "days": args.days, "scorer": typical["scorer"], "samples": args.samples,
        "ratio_full_to_scorer": ratio, "peak_rss_mb": peak, "new_day_to_first_day": day_ratio,
        "long_days": args.long_days, "long_new_day_to_first_day": long_ratio,
        "full_graph_rounds": full_runs, "day_rounds": day_runs, "replay": replay_figures,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)  # a 1M-row run leaves ~2 GB of lakes and landing files
    return 0


if __name__ == "__main__":
    from rollback_assets.process import exit_now

    exit_now(main())
