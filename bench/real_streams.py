"""Real-text streams: synthetic release schedules whose feedback is real Google Play review text.

The simulated table in accuracy.py works on scored-row counts, so it cannot see what the scorer,
the mapping and release identity do to real text. Here each stream is a Google Play export CSV for
one app, fed through the product's own path (`rollback-assets replay`, i.e. `run_replay_cli`), and
the decisions it writes are compared with the truth the stream was built from.

A stream (one app, 8 weeks by default):
  * releases: one established version before the stream starts, the next 1-4 days in, then one every
    7-10 days; each release ships as a first build (`8.112.0 build 7 50631`) and, in ~40 % of
    releases, a hotfix build a few days later (`8.112.1 build 9 50634`). A release is major.minor:
    the product must pool its builds.
  * sticky adoption: four user cohorts (fast / medium / slow / laggard updaters, 30/40/22/8 % of
    reviews) adopt each version along a logistic curve (midpoints 1, 4, 12 and 40 days); a user is on
    the newest version they adopted, so older versions keep receiving reviews for weeks.
  * volume: a few hundred reviews a day (a per-stream base rate of 250-700), weekly seasonality
    (+-25 %), a daily cycle, and a short bump after each release.
  * 20-25 % of rows carry no version (both version columns empty), as in real exports.
  * stars: each review draws 1-2 stars with its version's probability (the app's base share,
    0.45-0.50), otherwise 3-5 stars in the real files' proportions; the text is a real review with
    that star rating, drawn at random from ../shared/data (Netflix + games files).
Truth: null streams (every release at the base share) and effect streams where ONE release (not
the first two, released at least 7 days before the end) has its 1-2 star share raised by +20 %,
+30 % or +60 % relative, for all its reviews whenever they are written.

Each stream is replayed with the default policy (policy.yaml, the sequential rule) and the seed
article's fixed rule (policy_fixed_rule.yaml). An action is any decision with state `act`, on any
cohort; it is counted once per release (major.minor). Reported per method:
  * false actions per app-week on null streams (releases acted on / (streams x weeks));
  * per effect size: detection rate (acted on the bad release within 7 days of its release),
    median hours from release to first action (detected streams), actions on good releases;
  * the ratio of median delays (policy / fixed rule) per effect size.
Also the real Netflix file, replayed as is: per release (major.minor) n, 1-2 star share, the share
the product's scorer labels negative, and the decision (first act, else first hold, else the last
state of the flag-level row).

Run:  python bench/real_streams.py [--null 20] [--per-effect 10] [--jobs 2] [--no-netflix]
      python bench/accuracy.py --real-only      (the same, from the accuracy benchmark)
Writes bench/results/real_streams.json and prints the tables. The stream CSVs hold real review text:
they go to a temporary directory (--workdir), never into the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_DIR = Path("/work/shared/data")
TEXT_FILES = ("playstore_reviews_netflix.csv", "playstore_reviews_games.csv")
NETFLIX = DATA_DIR / "playstore_reviews_netflix.csv"
CONFIG_DIR = ROOT / "rollback_assets" / "config"
POLICIES = {
    "sequential": CONFIG_DIR / "policy.yaml",
    "fixed-rule": CONFIG_DIR / "policy_fixed_rule.yaml",
}
EXPORT_COLUMNS = ["appId", "reviewId", "content", "score", "thumbsUpCount", "reviewCreatedVersion", "at", "appVersion"]
APP_ID = "com.example.streamingapp"
START = pd.Timestamp("2024-03-04 00:00:00")  # a Monday
EFFECTS = (0.2, 0.3, 0.6)
DETECT_DAYS = 7
STEP = "6h"
SECONDS_FILE = "bench_replay.json"  # beside decisions.csv: the replay's wall time, kept for --resume
MIN_LISTED, MIN_PRINTED = 10, 30  # Netflix releases with fewer reviews (and no decision / no act or hold) are left out
# Update behaviour: (share of reviews, logistic midpoint in days, logistic scale in days).
COHORTS = ((0.30, 1.0, 0.4), (0.40, 4.0, 1.5), (0.22, 12.0, 4.0), (0.08, 40.0, 12.0))


def release_of(version) -> str | None:
    """'8.104.0 build 5 50619' -> '8.104': the release a build belongs to (major.minor)."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(version)) if isinstance(version, str) else None
    return f"{match.group(1)}.{match.group(2)}" if match else None


# ----------------------------------------------------------------------------------- streams

def load_pools(data_dir: Path = DATA_DIR) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Real review texts by star rating, and each rating's share among all rated rows."""
    frames = [pd.read_csv(data_dir / name, usecols=["content", "score"]) for name in TEXT_FILES]
    rows = pd.concat(frames, ignore_index=True).dropna()
    rows = rows[rows.content.str.strip().str.len() > 0]
    rows["score"] = rows.score.astype(int)
    pools = {star: rows.content[rows.score == star].to_numpy() for star in range(1, 6)}
    share = rows.score.value_counts(normalize=True).to_dict()
    return pools, {star: float(share.get(star, 0.0)) for star in range(1, 6)}


def _adoption(days_since: np.ndarray, midpoint: float, scale: float) -> np.ndarray:
    """Share of a cohort's users that have installed a version `days_since` after its release."""
    with np.errstate(over="ignore"):
        curve = 1.0 / (1.0 + np.exp(-(days_since - midpoint) / scale))
    return np.where(days_since >= 0, curve, 0.0)


def schedule(rng: np.random.Generator, days: int) -> list[dict]:
    """Releases (major.minor) with their builds: the first is established before the stream starts."""
    minor = int(rng.integers(100, 130))
    serial = int(rng.integers(50500, 50700))
    releases, at = [], -30.0
    while at < days - 1:
        builds = [{"patch": 0, "at": at}]
        if rng.random() < 0.4:
            builds.append({"patch": int(rng.integers(1, 3)), "at": at + float(rng.uniform(1, 4))})
        for build in builds:
            serial += int(rng.integers(1, 5))
            build["version"] = f"8.{minor}.{build['patch']} build {int(rng.integers(2, 32))} {serial}"
        releases.append({"release": f"8.{minor}", "released_day": at, "builds": builds})
        minor += 1
        at = float(rng.uniform(1, 4)) if at < 0 else at + float(rng.uniform(7, 10))
    return releases


def simulate_stream(pools: dict[int, np.ndarray], star_share: dict[int, float], seed: int, effect: float,
                    days: int = 56) -> tuple[pd.DataFrame, dict]:
    """One app's Google Play export (real texts) and its truth. effect 0 = null stream."""
    rng = np.random.default_rng(seed)
    releases = schedule(rng, days)
    base_share = float(rng.uniform(0.45, 0.50))
    eligible = [i for i, r in enumerate(releases) if i >= 2 and r["released_day"] <= days - DETECT_DAYS]
    bad = int(rng.choice(eligible)) if effect > 0 and eligible else None
    neg_share = np.full(len(releases), base_share)
    if bad is not None:
        neg_share[bad] = min(base_share * (1 + effect), 0.98)
    hours = np.arange(days * 24) + 0.5
    day = hours / 24
    daily = float(rng.uniform(250, 700))
    weekly = 1 + 0.25 * np.sin(2 * np.pi * day / 7 + rng.uniform(0, 2 * np.pi))
    diurnal = 1 + 0.5 * np.sin(2 * np.pi * (day % 1) - np.pi / 2)
    release_days = np.array([r["released_day"] for r in releases])
    since_last = day[:, None] - release_days[None, :]
    bump = 1 + 0.3 * np.exp(-np.where(since_last >= 0, since_last, np.inf) / 2).sum(1)
    counts = rng.poisson(daily / 24 * weekly * diurnal * bump)
    # Version shares per hour: a user is on the newest version their cohort has adopted.
    shares = np.zeros((len(hours), len(releases)))
    for weight, midpoint, scale in COHORTS:
        adopted = _adoption(day[:, None] - release_days[None, :], midpoint, scale)
        adopted[:, 0] = 1.0
        on = adopted - np.concatenate([adopted[:, 1:], np.zeros((len(hours), 1))], axis=1)
        shares += weight * np.clip(on, 0, None)
    shares /= shares.sum(1, keepdims=True)
    n = int(counts.sum())
    hour_of_row = np.repeat(np.arange(len(hours)), counts)
    cum = shares.cumsum(1)[hour_of_row]
    release_idx = np.minimum((rng.random(n)[:, None] > cum).sum(1), len(releases) - 1)
    at = START + pd.to_timedelta(hour_of_row * 3600 + rng.integers(0, 3600, n), unit="s")
    # Build within the release: the hotfix replaces the first build over ~a day once it ships.
    version = np.empty(n, dtype=object)
    for i, r in enumerate(releases):
        rows = np.where(release_idx == i)[0]
        version[rows] = r["builds"][0]["version"]
        if len(r["builds"]) > 1:
            hotfix = r["builds"][1]
            since = day[hour_of_row[rows]] - hotfix["at"]
            moved = rng.random(len(rows)) < np.where(since >= 0, 1 / (1 + np.exp(-(since - 1))), 0)
            version[rows[moved]] = hotfix["version"]
    # Stars: 1-2 with the release's share (1 vs 2 as in the real files), else 3-5 as in the real files.
    negative = rng.random(n) < neg_share[release_idx]
    low = np.array([star_share[1], star_share[2]]) / (star_share[1] + star_share[2])
    high = np.array([star_share[3], star_share[4], star_share[5]]) / (star_share[3] + star_share[4] + star_share[5])
    score = np.where(negative, rng.choice([1, 2], n, p=low), rng.choice([3, 4, 5], n, p=high))
    content = np.empty(n, dtype=object)
    for star in range(1, 6):
        rows = np.where(score == star)[0]
        content[rows] = pools[star][rng.integers(0, len(pools[star]), len(rows))]
    missing_share = float(rng.uniform(0.20, 0.25))
    version[rng.random(n) < missing_share] = None
    export = pd.DataFrame({
        "appId": APP_ID,
        "reviewId": [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)],
        "content": content, "score": score,
        "thumbsUpCount": rng.geometric(0.6, n) - 1,
        "reviewCreatedVersion": version,
        "at": at.strftime("%Y-%m-%d %H:%M:%S"),
        "appVersion": version,
    })[EXPORT_COLUMNS]
    # What the stream looks like (reported, so a reader can check the claims above).
    newest = np.searchsorted(release_days, day[hour_of_row], side="right") - 1
    daily_counts = np.bincount(hour_of_row // 24, minlength=days)
    first_week = [(release_idx == i)[(day[hour_of_row] >= d) & (day[hour_of_row] < d + 7)].mean()
                  for i, d in enumerate(release_days) if 0 <= d <= days - 7]
    shape = {
        "reviews_per_day": float(daily_counts.mean()),
        "weekday_volume_max_over_min": float(np.bincount(np.arange(days) % 7, daily_counts).max()
                                             / max(np.bincount(np.arange(days) % 7, daily_counts).min(), 1)),
        "rows_without_version": float(np.mean([v is None for v in version])),
        "reviews_on_older_releases": float((release_idx < newest).mean()),
        "new_release_share_of_its_first_week": float(np.mean(first_week)) if first_week else None,
        "builds_per_release": float(np.mean([len(r["builds"]) for r in releases])),
    }
    truth = {
        "seed": seed, "shape": {k: (round(v, 3) if v is not None else None) for k, v in shape.items()}, "effect": effect, "days": days, "rows": n, "base_share": round(base_share, 4),
        "missing_version_share": round(missing_share, 4),
        "bad_release": releases[bad]["release"] if bad is not None else None,
        "releases": [{"release": r["release"], "released_at": str(START + pd.Timedelta(days=r["released_day"])),
                      "builds": [b["version"] for b in r["builds"]], "negative_share": round(float(neg_share[i]), 4)}
                     for i, r in enumerate(releases)],
    }
    return export.sort_values("at", ascending=False).reset_index(drop=True), truth


# ----------------------------------------------------------------------------------- replay

def _replay(task: tuple[str, str, str]) -> dict:
    """One `rollback-assets replay` run (in a worker process); its console line is kept, not printed."""
    feedback, policy, out = task
    from rollback_assets.core.replay_cli import run_replay_cli

    buffer = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        run_replay_cli(["--feedback", feedback, "--mapping", "google_play", "--step", STEP, "--out", out,
                        "--policy", policy])
    done = {"out": out, "seconds": round(time.perf_counter() - started, 2), "console": buffer.getvalue().strip()}
    (Path(out) / SECONDS_FILE).write_text(json.dumps(done))
    return done


def _replay_seconds(out: Path) -> float | None:
    """Wall time of an earlier replay into `out` (for --resume), if it was recorded."""
    path = out / SECONDS_FILE
    return json.loads(path.read_text()).get("seconds") if path.exists() else None


def read_decisions(path: Path) -> pd.DataFrame:
    """decisions.csv, only the columns the benchmark reads: extra columns and new action values are fine."""
    wanted = {"decided_at", "release_version", "cohort", "state", "action", "n", "negative_share"}
    frame = pd.read_csv(path, usecols=lambda c: c in wanted, dtype={"release_version": str, "state": str, "action": str})
    missing = {"decided_at", "release_version", "state"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: decisions.csv lacks {sorted(missing)}")
    frame["decided_at"] = pd.to_datetime(frame.decided_at, utc=True)
    frame["release"] = frame.release_version.map(release_of)
    if "cohort" not in frame:
        frame["cohort"] = "all"
    return frame


def first_acts(decisions: pd.DataFrame) -> pd.DataFrame:
    """First `act` per release (major.minor), over all cohorts and builds."""
    acted = decisions[decisions.state.str.lower() == "act"]
    return acted.sort_values("decided_at").drop_duplicates("release")


def score_stream(decisions: pd.DataFrame, truth: dict) -> dict:
    acts = first_acts(decisions)
    released = {r["release"]: pd.Timestamp(r["released_at"], tz="UTC") for r in truth["releases"]}
    bad = truth["bad_release"]
    out = {"acted_releases": sorted(acts.release.dropna()), "good_acted": [r for r in acts.release.dropna() if r != bad],
           "action_values": sorted(set(decisions.loc[decisions.state.str.lower() == "act", "action"].dropna()))
           if "action" in decisions else []}
    if bad is not None:
        hit = acts[acts.release == bad]
        hours = (hit.decided_at.iloc[0] - released[bad]).total_seconds() / 3600 if len(hit) else None
        out.update(bad_acted_hours=hours, detected=hours is not None and hours <= DETECT_DAYS * 24)
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def summarise(streams: list[dict], methods: list[str]) -> dict:
    """The table: per method, null false actions and, per effect size, detection / delay / good-version actions."""
    table = {}
    for method in methods:
        null = [s for s in streams if s["effect"] == 0]
        weeks = sum(s["days"] for s in null) / 7
        false = sum(len(s["result"][method]["acted_releases"]) for s in null)
        row = {"null_streams": len(null), "null_app_weeks": round(weeks, 1), "false_actions": false,
               "false_actions_per_app_week": false / weeks if weeks else None,
               "null_streams_with_any_action": sum(bool(s["result"][method]["acted_releases"]) for s in null),
               "action_values": sorted({a for s in streams for a in s["result"][method]["action_values"]})}
        for effect in sorted({s["effect"] for s in streams if s["effect"] > 0}):
            group = [s for s in streams if s["effect"] == effect]
            detected = [s["result"][method] for s in group if s["result"][method].get("detected")]
            good = sum(len(s["result"][method]["good_acted"]) for s in group)
            row[f"+{effect:.0%}"] = {
                "streams": len(group), "detected": len(detected), "detection": len(detected) / len(group),
                "acted_ever": sum(s["result"][method].get("bad_acted_hours") is not None for s in group),
                "median_hours": _median([r["bad_acted_hours"] for r in detected]),
                "good_release_actions": good,
                "good_release_actions_per_app_week": good / (sum(s["days"] for s in group) / 7),
            }
        table[method] = row
    if {"sequential", "fixed-rule"} <= set(table):
        for key in [k for k in table["sequential"] if k.startswith("+")]:
            a, b = table["sequential"][key]["median_hours"], table["fixed-rule"][key]["median_hours"]
            table["sequential"][key]["delay_ratio_vs_fixed_rule"] = a / b if a is not None and b else None
    return table


# ----------------------------------------------------------------------------------- Netflix

def netflix_versions(decisions: dict[str, pd.DataFrame], replay_dir: Path, path: Path = NETFLIX) -> list[dict]:
    """Per release (major.minor) of the real file: n, 1-2 star share, product label share, each method's decision."""
    raw = pd.read_csv(path, usecols=["reviewId", "content", "score", "reviewCreatedVersion", "at"])
    raw["release"] = raw.reviewCreatedVersion.map(release_of)
    labels = replay_labels(replay_dir)
    if labels is None:
        labels = product_labels(path)
    if labels is not None:
        raw = raw.merge(labels, on="reviewId", how="left")
    rows = []
    for release, group in raw.dropna(subset=["release"]).groupby("release"):
        first = pd.to_datetime(group["at"], utc=True).min()
        row = {"release": release, "n": len(group), "low_star_share": float((group.score <= 2).mean()),
               "label_negative_share": float(group.negative.mean()) if "negative" in group and group.negative.notna().any() else None,
               "first_review": str(first)}
        for method, frame in decisions.items():
            row[method] = _decision_of(frame[frame.release == release], first)
        if row["n"] >= MIN_LISTED or any(row[m]["state"] != "none" for m in decisions):
            rows.append(row)
    return sorted(rows, key=lambda r: tuple(int(p) for p in r["release"].split(".")))


def netflix_targets(versions: list[dict], methods: list[str]) -> dict:
    """Issue 8's targets on the real file: 8.104 acted on within 14 days of its first review; 8.113-8.127 not."""
    def acts(row, method):
        return row[method]["state"] == "act"
    by_release = {r["release"]: r for r in versions}
    quiet = [r for r in versions if r["release"].startswith("8.") and 113 <= int(r["release"].split(".")[1]) <= 127]
    out = {}
    for m in methods:
        bad = by_release.get("8.104")
        out[m] = {"8.104_acted_within_14_days": bool(bad and acts(bad, m) and bad[m]["days_after_first_review"] <= 14),
                  "acted_among_8.113-8.127": [r["release"] for r in quiet if acts(r, m)]}
    return out


def _decision_of(frame: pd.DataFrame, first_review: pd.Timestamp) -> dict:
    """First act, else first hold, else the last flag-level state (the last state of any cohort without one)."""
    if frame.empty:
        return {"state": "none"}
    states = frame.state.str.lower()
    for state in ("act", "hold"):
        hit = frame[states == state].sort_values("decided_at")
        if len(hit):
            r = hit.iloc[0]
            return {"state": state, "action": r.get("action"), "at": str(r.decided_at),
                    "days_after_first_review": round((r.decided_at - first_review).total_seconds() / 86400, 1)}
    flag = frame[frame.cohort == "all"] if (frame.cohort == "all").any() else frame
    return {"state": flag.sort_values("decided_at").state.iloc[-1]}


def replay_labels(replay_dir: Path) -> pd.DataFrame | None:
    """Per-row labels written by replay itself, if it writes its scored rows (scored.parquet / scored.csv)."""
    for name in ("scored.parquet", "scored.csv"):
        path = replay_dir / name
        if path.exists():
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
            if {"event_id", "sentiment_label"} <= set(frame.columns):
                return pd.DataFrame({"reviewId": frame.event_id.astype(str),
                                     "negative": (frame.sentiment_label == "negative").astype(float)}).drop_duplicates("reviewId")
    return None


def product_labels(path: Path) -> pd.DataFrame | None:
    """The product's sentiment label per review (reviewId, negative), scored as replay scores by default.

    Replay's decisions.csv holds window shares, not per-row labels, so this scores the file once with
    the scorer replay would pick (`--scorer` default) through the public scoring entry points. If the
    scoring API has moved, the label column is left empty rather than failing the benchmark.
    """
    try:
        from rollback_assets.core.ingest import read_file
        from rollback_assets.core.mapping import load_mapping
        from rollback_assets.core.replay import scorer_for
        from rollback_assets.core.replay_cli import replay_arg_parser
        from rollback_assets.core.scoring.base import score_frame
        from rollback_assets.core.taxonomy import Taxonomy

        kind = replay_arg_parser().get_default("scorer")
        taxonomy = Taxonomy.load()
        feedback = read_file(path, load_mapping("google_play"), author_salt="bench").valid
        scorer = scorer_for(kind, feedback, taxonomy, tempfile.mkdtemp(prefix="real_streams_lake_"))
        scored = score_frame(scorer, taxonomy, feedback)
        return pd.DataFrame({"reviewId": scored.event_id.astype(str),
                             "negative": (scored.sentiment_label == "negative").astype(float)})
    except Exception as error:  # noqa: BLE001 - a benchmark column, not a product path
        print(f"  (product labels unavailable: {type(error).__name__}: {error})", flush=True)
        return None


# ----------------------------------------------------------------------------------- main

def run(n_null: int = 20, per_effect: int = 10, jobs: int = 2, days: int = 56, seed: int = 20261127,
        netflix: bool = True, workdir: str | None = None, keep: bool = False,
        out: Path = ROOT / "bench" / "results" / "real_streams.json", policies: dict[str, Path] | None = None,
        resume: bool = False) -> dict:
    """resume: keep replay outputs already in `workdir` (streams are rebuilt from their seeds, bit for bit)."""
    started = time.perf_counter()
    policies = dict(policies or POLICIES)
    work = Path(workdir or tempfile.mkdtemp(prefix="real_streams_"))
    work.mkdir(parents=True, exist_ok=True)
    pools, star_share = load_pools()
    plan = [(f"null-{i:02d}", 0.0) for i in range(n_null)]
    plan += [(f"eff{effect:.0%}-{i:02d}", effect) for effect in EFFECTS for i in range(per_effect)]
    streams, tasks = [], []
    for k, (name, effect) in enumerate(plan):
        export, truth = simulate_stream(pools, star_share, seed + k, effect, days)
        path = work / f"{name}.csv"
        export.to_csv(path, index=False)
        streams.append({"name": name, "csv": str(path), **truth})
        for method, policy in policies.items():
            tasks.append((str(path), str(policy), str(work / name / method)))
    if netflix and NETFLIX.exists():
        for method, policy in policies.items():
            tasks.append((str(NETFLIX), str(policy), str(work / "netflix" / method)))
    rows = sum(s["rows"] for s in streams)
    print(f"real-text streams: {n_null} null + {per_effect} per effect {', '.join(f'+{e:.0%}' for e in EFFECTS)}, "
          f"{days} days each, {rows} reviews in all ({rows / max(len(streams), 1) / days:.0f}/day/stream); "
          f"{len(tasks)} replays on {jobs} processes (step {STEP}) in {work}", flush=True)
    # Netflix replays are the longest: start them first so they do not trail at the end.
    tasks.sort(key=lambda t: "netflix" not in t[2])
    seconds: dict[str, float | None] = {}
    if resume:
        seconds = {t[2]: _replay_seconds(Path(t[2])) for t in tasks if (Path(t[2]) / "decisions.csv").exists()}
        tasks = [t for t in tasks if t[2] not in seconds]
        print(f"  resuming: {len(seconds)} replays already done", flush=True)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("fork")) as pool:
        for i, done in enumerate(pool.map(_replay, tasks), 1):
            seconds[done["out"]] = done["seconds"]
            if i % 10 == 0 or i == len(tasks):
                print(f"  {i}/{len(tasks)} replays done ({time.perf_counter() - started:.0f} s)", flush=True)
    for s in streams:
        s["result"] = {}
        for method in policies:
            out_dir = work / s["name"] / method
            s["result"][method] = score_stream(read_decisions(out_dir / "decisions.csv"), s)
            s["result"][method]["replay_seconds"] = seconds.get(str(out_dir))
    report = {
        "streams": {"null": n_null, "per_effect": per_effect, "effects": list(EFFECTS), "days": days, "seed": seed,
                    "step": STEP, "reviews": rows, "detect_within_days": DETECT_DAYS,
                    "shape_median": {k: _median([s["shape"][k] for s in streams]) for k in streams[0]["shape"]} if streams else {}},
        "policies": {m: str(p) for m, p in policies.items()},
        "table": summarise(streams, list(policies)),
        "replay_seconds_median": {m: _median([s["result"][m]["replay_seconds"] for s in streams]) for m in policies},
        "per_stream": [{k: v for k, v in s.items() if k != "csv"} for s in streams],
    }
    if netflix and NETFLIX.exists():
        decisions = {m: read_decisions(work / "netflix" / m / "decisions.csv") for m in policies}
        report["netflix"] = {"replay_seconds": {m: seconds.get(str(work / "netflix" / m)) for m in policies},
                             "versions": netflix_versions(decisions, work / "netflix" / next(iter(policies)))}
        report["netflix"]["targets"] = netflix_targets(report["netflix"]["versions"], list(policies))
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"real-text streams: {report['seconds']} s -> {out}")
    if not keep and workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _fmt(value, spec="{:.0f}"):
    return "-" if value is None else spec.format(value)


def print_report(report: dict) -> None:
    s = report["streams"]
    print(f"\nReal-text streams ({s['null']} null, {s['per_effect']} per effect; {s['days']} days; replay step {s['step']};"
          f" detected = acted on the bad release within {s['detect_within_days']} days)")
    first = next(iter(report["table"].values()), {})
    effects = [f"+{e:.0%}" for e in s["effects"] if f"+{e:.0%}" in first]  # sizes with at least one stream
    print(f"{'method':12s} {'false/app-wk':>12s} " + " ".join(f"{e:>26s}" for e in effects))
    print(f"{'':12s} {'(null)':>12s} " + " ".join(f"{'det% / med h / good acts':>26s}" for _ in effects))
    for method, row in report["table"].items():
        cells = [f"{row[e]['detection']:.0%} / {_fmt(row[e]['median_hours'])} / {row[e]['good_release_actions']}" for e in effects]
        print(f"{method:12s} {_fmt(row['false_actions_per_app_week'], '{:.2%}'):>12s} " + " ".join(f"{c:>26s}" for c in cells))
    seq = report["table"].get("sequential", {})
    if seq:
        print(f"{'delay ratio':12s} {'':>12s} " + " ".join(
            f"{_fmt(seq[e].get('delay_ratio_vs_fixed_rule'), '{:.2f}x'):>26s}" for e in effects))
    acted_with = {m: row.get("action_values") for m, row in report["table"].items() if row.get("action_values")}
    if acted_with:
        print("action values on acts: " + "; ".join(f"{m}: {', '.join(v)}" for m, v in acted_with.items()))
    shape = s.get("shape_median") or {}
    if shape:
        print("stream shape (median over streams): " + ", ".join(f"{k} {_fmt(v, '{:.2f}')}" for k, v in shape.items()))
    print("median replay time per stream: " + ", ".join(f"{m} {_fmt(v, '{:.1f}')} s" for m, v in report["replay_seconds_median"].items()))
    if "netflix" in report:
        nf = report["netflix"]
        methods = list(nf["replay_seconds"])
        timing = ", ".join(f"{m} replay {_fmt(v, '{:.1f}')} s" for m, v in nf["replay_seconds"].items())
        print(f"\nNetflix file, per release with >= {MIN_PRINTED} reviews or an act/hold ({timing}); "
              f"label- = share the product labels negative; +Nd = days after the release's first review:")
        print(f"{'release':9s} {'n':>6s} {'1-2★':>6s} {'label-':>7s} " + " ".join(f"{m:>24s}" for m in methods))
        shown = [r for r in nf["versions"]
                 if r["n"] >= MIN_PRINTED or any(r[m]["state"] in ("act", "hold") for m in methods)]
        for r in shown:
            cells = []
            for m in methods:
                d = r[m]
                cells.append(d["state"] + (f" +{d['days_after_first_review']:.0f}d" if "days_after_first_review" in d else ""))
            print(f"{r['release']:9s} {r['n']:>6d} {r['low_star_share']:>6.2f} {_fmt(r['label_negative_share'], '{:.2f}'):>7s} "
                  + " ".join(f"{c:>24s}" for c in cells))
        for m, t in nf.get("targets", {}).items():
            print(f"  {m}: 8.104 acted on within 14 days: {'yes' if t['8.104_acted_within_14_days'] else 'NO'}; "
                  f"acted on among 8.113-8.127: {', '.join(t['acted_among_8.113-8.127']) or 'none'}")


def arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null", type=int, default=20, help="null streams")
    parser.add_argument("--per-effect", type=int, default=10, help="streams per effect size")
    parser.add_argument("--jobs", type=int, default=2, help="replay processes (<= 2 on the shared machine)")
    parser.add_argument("--days", type=int, default=56)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--no-netflix", action="store_true", help="skip the real Netflix file")
    parser.add_argument("--workdir", default=None, help="where the stream CSVs and replay outputs go (default: a temp dir, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--resume", action="store_true", help="reuse replay outputs already in --workdir")
    parser.add_argument("--real-out", default=str(ROOT / "bench" / "results" / "real_streams.json"))
    parser.add_argument("--policy", action="append", default=[], metavar="NAME=YAML",
                        help="compare this policy file too (repeatable; NAME sequential or fixed-rule replaces the shipped one)")
    return parser


def main(argv=None) -> dict:
    args = arg_parser().parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> dict:
    policies = dict(POLICIES)
    for item in args.policy:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--policy wants NAME=YAML, not {item!r}")
        policies[name] = Path(path)
    return run(args.null, args.per_effect, args.jobs, args.days, args.seed, not args.no_netflix, args.workdir,
               args.keep, Path(args.real_out), policies, args.resume)


if __name__ == "__main__":
    main()
