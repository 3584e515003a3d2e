"""`rollback-assets replay`: read a feedback file, replay the policy over it, write decisions.csv and a timeline.

The simulation itself is `replay.py`; this module is what a person runs: arguments, file formats,
the plot.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .attribution import DEFAULT_COHORT_DIMENSIONS
from .policy import PolicyConfig
from .replay import first_actions, prepare, replay, scorer_for, version_key
from .schemas import ALL_COHORTS
from .taxonomy import Taxonomy


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
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:  # a small export: say why the chart has no lines rather than leave it blank
        ax.text(0.5, 0.5, f"no version has {min_rows} or more rows in any {freq} period", transform=ax.transAxes,
                ha="center", va="center", color="gray")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    return summary


def summary_line(summary: dict) -> str:
    """The one line a person reads after a replay (the CLI prints it, or the summary as JSON with --json)."""
    return (f"replayed {summary.get('rows')} feedback rows with {summary.get('policy')}: {summary.get('decisions')} "
            f"decisions, acted on {summary.get('acted_on') or 'nothing'} in {summary.get('seconds')} s -> {summary.get('out')}")


if __name__ == "__main__":
    print(summary_line(run_replay_cli()))
