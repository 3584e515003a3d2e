"""Replay: run the decision pipeline over historical feedback on a simulated clock, without Dagster.

The same core functions as the Dagster assets, in the same order: attribute -> the scorer the assets
would choose (`--scorer auto`: the text model trained on the feedback's own ratings where it beats the
lexicon; rated rows take the rating) -> baselines from aggregates -> `make_decisions` at every clock step. What a replay
says the policy would have done is therefore what the assets would have done, look by look, with only
the feedback written before each look. A release acted on at one look is known bad at the next, as
the assets know it from the decisions table.
"""

from __future__ import annotations

import argparse
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .attribution import DEFAULT_COHORT_DIMENSIONS, attribute
from .baselines import aggregate, baselines_frame, describe_baselines, judge_looks, window_edges
from .policy import PolicyConfig, known_bad_releases, make_decisions
from .releases import releases_from_first_appearance
from .schemas import ALL_COHORTS
from .scoring import calibrated
from .scoring.base import score_frame
from .scoring.registry import make_scorer
from .taxonomy import Taxonomy

REPLAY_COLUMNS = [
    "decided_at", "flag_key", "release_version", "release_live", "cohort", "baseline_kind", "baseline_versions",
    "state", "action", "severity", "negative_share", "baseline_negative_share", "relative_rise", "n", "baseline_n",
    "mean_confidence", "statistic", "bound", "reason", "top_topics", "evidence", "new_terms", "policy_name",
    "policy_version", "scorer_version", "decision_id",
]


def version_key(version: str) -> tuple:
    """'8.114.0 build 19 50680' -> (8, 114, 0, 19, 50680): numbers in order, for comparing versions."""
    return tuple(int(part) for part in re.findall(r"\d+", str(version)))


def inferred_releases(feedback: pd.DataFrame, taxonomy: Taxonomy, flag_key: str | None = None) -> pd.DataFrame:
    """Releases from first appearance when none are registered; flag = app (product).

    Old builds keep being reviewed for months, and an old build may be reviewed for the first time
    long after newer ones shipped. First appearance alone would then make it the "live" release and
    compare the real live release against nothing. A version cannot have shipped after a higher one,
    so each version's release time is capped just below the release time of every higher version:
    old builds become earlier releases (and feed the rolling baseline) instead of displacing the live
    one. Every topic that is not excluded counts as the release's surface: without release notes,
    any relevant complaint may be the release's fault.
    """
    releases = releases_from_first_appearance(feedback, flag_key)
    if releases.empty:
        return releases
    fixed = []
    for _, rows in releases.groupby("flag_key", sort=False):
        rows = rows.iloc[sorted(range(len(rows)), key=lambda i: version_key(rows.version.iloc[i]), reverse=True)].copy()
        cap = None
        times = []
        for released_at in rows.released_at:
            if cap is not None and released_at >= cap:
                released_at = cap - pd.Timedelta(seconds=1)
            times.append(released_at)
            cap = released_at
        rows["released_at"] = times
        fixed.append(rows)
    releases = pd.concat(fixed).sort_values(["flag_key", "released_at"]).reset_index(drop=True)
    surfaces = [t for t in taxonomy.topic_names if t not in taxonomy.excluded_topics]
    releases["surfaces"] = [list(surfaces) for _ in range(len(releases))]
    return releases


def prepare(feedback: pd.DataFrame, releases: pd.DataFrame | None, scorer, taxonomy: Taxonomy,
            cohort_dimensions=DEFAULT_COHORT_DIMENSIONS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attribute and score once: (scored rows attributed to a release, releases)."""
    feedback = feedback.copy()
    feedback["created_at"] = pd.to_datetime(feedback["created_at"], utc=True)
    for column in set(cohort_dimensions) | {"product", "app_version"}:
        if column not in feedback:
            feedback[column] = None
    if releases is None or releases.empty:
        releases = inferred_releases(feedback, taxonomy)
    attributed = attribute(feedback, releases, cohort_dimensions)
    attributed = attributed[attributed.attribution != "none"]
    scored = score_frame(scorer, taxonomy, attributed) if len(attributed) else attributed
    return scored.sort_values("created_at").reset_index(drop=True), releases


def clock(scored: pd.DataFrame, releases: pd.DataFrame, step: pd.Timedelta, start=None, end=None) -> pd.DatetimeIndex:
    first = pd.Timestamp(start) if start is not None else max(scored.created_at.min(), releases.released_at.min())
    last = pd.Timestamp(end) if end is not None else scored.created_at.max()
    first = first.tz_localize("UTC") if first.tzinfo is None else first
    last = last.tz_localize("UTC") if last.tzinfo is None else last
    return pd.date_range(first.ceil(step), last.ceil(step), freq=step)


def decide_looks(scored: pd.DataFrame, releases: pd.DataFrame, config: PolicyConfig, steps: pd.DatetimeIndex,
                 lineage: dict) -> pd.DataFrame:
    """Decisions at every clock step, as the decision assets make them at one look (`compute_baselines`
    then `make_decisions`: the same functions).

    The rows are aggregated once for all looks (baselines.aggregate), every look is judged from the
    aggregates, and the rule runs once over all looks together. A release acted on at one look is
    known bad from the next look on (it stops serving as a last-known-good baseline): when a new
    release acts, the looks after it are judged again with it known bad. Evidence and new terms are
    filled in for the first look of each act or hold, the ones a person reads.
    """
    windows = config.windows
    agg = aggregate(scored, releases, window_edges(releases, steps, windows), windows)
    known_bad: frozenset = frozenset()
    kept: list[pd.DataFrame] = []
    remaining = pd.DatetimeIndex(steps)
    while len(remaining):
        rows = judge_looks(agg, releases, remaining, windows, known_bad)
        decisions = make_decisions(baselines_frame(rows), releases, config, lineage, decided_at=None)
        newly_bad = decisions[(decisions.state == "act")
                              & ~pd.Series(list(zip(decisions.flag_key, decisions.release_version)), index=decisions.index)
                              .isin(known_bad)]
        if newly_bad.empty:
            kept.append(decisions)
            break
        first_look = newly_bad.window_end.min()
        kept.append(decisions[decisions.window_end <= first_look])
        known_bad = known_bad | known_bad_releases(newly_bad[newly_bad.window_end == first_look])
        remaining = remaining[remaining > first_look]
    with warnings.catch_warnings():  # all-None columns (e.g. bound) in some passes: the dtype is object either way
        warnings.simplefilter("ignore", FutureWarning)
        decisions = pd.concat([k for k in kept if len(k)] or [kept[0]], ignore_index=True)
    decisions = decisions.sort_values(["window_end", "flag_key", "release_version", "cohort"], kind="stable")
    return _describe_first_alerts(decisions.reset_index(drop=True), scored, releases, config, agg)


def _describe_first_alerts(decisions, scored, releases, config, agg) -> pd.DataFrame:
    alerts = decisions[decisions.state.isin(["act", "hold"])]
    first = alerts.sort_values("window_end").drop_duplicates(["flag_key", "release_version", "cohort", "state"])
    for as_of in sorted(set(first.window_end)):
        rows = scored[scored.created_at <= as_of]
        baselines = baselines_frame(judge_looks(agg, releases, [as_of], config.windows, known_bad_before(decisions, as_of)))
        wanted = first[first.window_end == as_of][["flag_key", "release_version", "cohort"]].drop_duplicates()
        baselines = baselines.merge(wanted, on=["flag_key", "release_version", "cohort"])
        described = describe_baselines(baselines, rows, config.windows)
        for row in described.drop_duplicates(["flag_key", "release_version", "cohort"]).itertuples(index=False):
            at = ((decisions.flag_key == row.flag_key) & (decisions.release_version == row.release_version)
                  & (decisions.cohort == row.cohort) & (decisions.window_end == as_of))
            decisions.loc[at, "evidence"] = row.evidence
            decisions.loc[at, "new_terms"] = row.new_terms
    return decisions


def known_bad_before(decisions: pd.DataFrame, as_of: pd.Timestamp) -> frozenset:
    return known_bad_releases(decisions[decisions.window_end < as_of])


def replay(feedback: pd.DataFrame, releases: pd.DataFrame | None, config: PolicyConfig, scorer, taxonomy: Taxonomy,
           step: pd.Timedelta = pd.Timedelta(hours=6), cohort_dimensions=DEFAULT_COHORT_DIMENSIONS,
           start=None, end=None, prepared: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Decisions the policy would have made at every clock step (one row per judged release x cohort x step).

    `prepared`: the (scored, releases) pair from `prepare`, to replay several policies on one scoring.
    """
    scored, releases = prepared if prepared is not None else prepare(feedback, releases, scorer, taxonomy, cohort_dimensions)
    if scored.empty:
        return pd.DataFrame(columns=REPLAY_COLUMNS)
    versions = ",".join(sorted(set(scored.scorer_version.dropna()))) if "scorer_version" in scored else None
    lineage = {"scorer_version": versions or getattr(scorer, "version", None), "input_versions": {}, "run_id": "replay"}
    decisions = decide_looks(scored, releases, config, clock(scored, releases, step, start, end), lineage)
    if decisions.empty:
        return pd.DataFrame(columns=REPLAY_COLUMNS)
    return decisions[REPLAY_COLUMNS]


def first_actions(decisions: pd.DataFrame) -> pd.DataFrame:
    """The first act per flag x release x cohort: what an operator would have seen fire."""
    acted = decisions[decisions.state == "act"]
    return acted.sort_values("decided_at").drop_duplicates(["flag_key", "release_version", "cohort"])


def plot_timeline(scored: pd.DataFrame, decisions: pd.DataFrame, path: str | Path, flag_key: str | None = None,
                  freq: str = "7D", min_rows: int = 15, top_versions: int = 14) -> Path:
    """PNG: weekly negative share per release version over time, first act/hold per version marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scored[~scored.topic_excluded.astype(bool)]
    if flag_key is None and len(rows):
        flag_key = rows.attributed_flag.value_counts().index[0]
    rows = rows[rows.attributed_flag == flag_key]
    versions = rows.release_version.value_counts().head(top_versions).index
    versions = sorted(versions, key=version_key)
    fig, ax = plt.subplots(figsize=(12, 5.5))
    colors = plt.cm.viridis(np.linspace(0, 0.95, max(len(versions), 1)))
    for color, version in zip(colors, versions):
        v = rows[rows.release_version == version].set_index("created_at")
        weekly = v.sentiment_label.eq("negative").resample(freq).agg(["mean", "count"])
        weekly = weekly[weekly["count"] >= min_rows]
        if len(weekly):
            ax.plot(weekly.index, weekly["mean"], "-o", ms=3, lw=1.2, color=color, label=str(version)[:18])
    flagged = decisions[(decisions.flag_key == flag_key) & (decisions.cohort == ALL_COHORTS)] if len(decisions) else decisions
    for state, marker, color in (("act", "v", "red"), ("hold", "D", "orange")):
        first = flagged[flagged.state == state].sort_values("decided_at").drop_duplicates("release_version")
        for r in first.itertuples():
            ax.axvline(r.decided_at, color=color, alpha=0.35, lw=1)
            ax.plot([r.decided_at], [r.negative_share], marker, color=color, ms=10)
            ax.annotate(f"{state} {str(r.release_version)[:10]}", (r.decided_at, r.negative_share),
                        textcoords="offset points", xytext=(4, 6), fontsize=7, color=color)
    ax.set_ylabel("negative share (relevant topics)")
    ax.set_title(f"{flag_key}: negative share per version, first act (red) / hold (orange) per version")
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scorer_for(kind: str, feedback: pd.DataFrame, taxonomy: Taxonomy, lake_root: str):
    """The scorer the assets would use on this feedback: for auto / calibrated, the text model
    trained the way the `sentiment_model` asset trains it (same rows, same parameters, same version);
    for openai / azure, the LLM scorer with the lake's score cache, shared with the assets."""
    if kind in ("openai", "azure"):
        return make_scorer(kind, taxonomy, cache_root=lake_root)
    needs_model = kind in ("auto", "calibrated") and "rating" in feedback and (kind == "calibrated" or _needs_text(feedback))
    return make_scorer(kind, taxonomy, text_model=calibrated.train_on(feedback) if needs_model else None)


def _needs_text(feedback: pd.DataFrame) -> bool:
    """Whether any row takes its label from the text scorer; when every row is rated by a source that
    labels by rating (a Play export), training a text model would be wasted time."""
    source = feedback["sentiment_from"] if "sentiment_from" in feedback else pd.Series("rating", index=feedback.index)
    return bool((feedback["rating"].isna() | (source.fillna("rating") != "rating")).any())


def _read_feedback(path: str, mapping: str | None) -> pd.DataFrame:
    from .ingest import read_file
    from .mapping import load_mapping

    if mapping is None:
        suffix = Path(path).suffix.lower()
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        mapping = "google_play" if suffix == ".csv" else "feedback_jsonl"
    return read_file(path, load_mapping(mapping)).valid


def replay_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="rollback-assets replay", description=__doc__.splitlines()[0])
    parser.add_argument("--feedback", required=True, help="feedback file (CSV/JSONL via a mapping, or canonical parquet)")
    parser.add_argument("--mapping", default=None, help="mapping name or YAML path (default: google_play for .csv)")
    parser.add_argument("--releases", default=None, help="releases YAML; default: each version at its first appearance")
    parser.add_argument("--policy", default=None, help="policy YAML (default: the shipped policy.yaml)")
    parser.add_argument("--step", default="6h", help="clock step, e.g. 6h, 1d")
    parser.add_argument("--scorer", default="auto",
                        help="text scorer for unrated rows: auto (what the assets use: the model trained on this "
                             "feedback's ratings where it beats the lexicon), calibrated, lexicon, openai, azure")
    parser.add_argument("--lake", default=None,
                        help="lake root whose LLM score cache replay shares with the assets (default: ROLLBACK_LAKE, "
                             "else ./lake)")
    parser.add_argument("--cohorts", default=",".join(DEFAULT_COHORT_DIMENSIONS), help="cohort dimensions, comma-separated")
    parser.add_argument("--out", required=True, help="output directory for decisions.csv and timeline.png")
    return parser


def run_replay_cli(args: argparse.Namespace | list[str] | None = None) -> dict:
    """Entry point for `rollback-assets replay`: writes DIR/decisions.csv and DIR/timeline.png."""
    if not isinstance(args, argparse.Namespace):
        args = replay_arg_parser().parse_args(args)
    from .releases import load_releases_yaml

    started = time.perf_counter()
    taxonomy = Taxonomy.load()
    config = PolicyConfig.load(args.policy)
    feedback = _read_feedback(args.feedback, args.mapping)
    releases = load_releases_yaml(args.releases) if args.releases else None
    lake_root = args.lake or os.environ.get("ROLLBACK_LAKE") or "lake"
    scorer = scorer_for(args.scorer, feedback, taxonomy, lake_root)
    dims = tuple(d for d in (args.cohorts or "").split(",") if d)
    prepared = prepare(feedback, releases, scorer, taxonomy, dims)
    decisions = replay(feedback, None, config, scorer, taxonomy, pd.Timedelta(args.step), dims, prepared=prepared)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    decisions.to_csv(out / "decisions.csv", index=False)
    plot_timeline(prepared[0], decisions, out / "timeline.png")
    acted = first_actions(decisions)
    summary = {
        "rows": len(feedback), "decisions": len(decisions), "policy": config.version,
        "acted_on": sorted(set(acted.release_version), key=version_key),
        "seconds": round(time.perf_counter() - started, 2), "out": str(out),
    }
    print(f"replayed {summary['rows']} feedback rows with {config.version}: {summary['decisions']} decisions, "
          f"acted on {summary['acted_on'] or 'nothing'} in {summary['seconds']} s -> {out}")
    return summary


if __name__ == "__main__":
    run_replay_cli()
