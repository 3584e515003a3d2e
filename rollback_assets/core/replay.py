"""Replay: run the decision pipeline over historical feedback on a simulated clock, without Dagster.

The loop only; `replay_cli` reads files, plots and writes what `rollback-assets replay` shows.

The same core functions as the Dagster assets, in the same order: attribute -> the scorer the assets
would choose (`--scorer auto`: the text model trained on the feedback's own ratings where it beats the
lexicon; rated rows take the rating) -> baselines from aggregates -> `make_decisions` at every clock step. What a replay
says the policy would have done is therefore what the assets would have done, look by look, with only
the feedback written before each look. A release acted on at one look is known bad at the next, as
the assets know it from the decisions table.
"""

from __future__ import annotations

import re
import warnings

import pandas as pd

from .attribution import DEFAULT_COHORT_DIMENSIONS, attribute
from .aggregates import from_rows
from .baselines import baselines_frame, describe_baselines, judge_looks, window_edges
from .policy import PolicyConfig, known_bad_releases, make_decisions
from .releases import releases_from_first_appearance
from .schemas import DECISIONS
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

    The rows are summed once into the `sentiment_daily` buckets (aggregates.from_rows: the looks are on
    the clock's step, so no bucket is split but those holding a release time), every look is judged
    from those sums, and the rule runs once over all looks together. A release acted on at one look is
    known bad from the next look on (it stops serving as a last-known-good baseline): when a new
    release acts, its flag's looks after it are judged again with it known bad. Evidence and new terms are
    filled in for the first look of each act or hold, the ones a person reads.
    """
    windows = config.windows
    agg, repeat = from_rows(scored, releases, window_edges(releases, steps, windows), windows.one_vote_per_author)
    known_bad: frozenset = frozenset()
    kept: list[pd.DataFrame] = []
    # A flag's decisions depend on its own known-bad releases only: an act re-judges the looks after it
    # of its own flag, not of every flag. Each flag's looks still to judge (a suffix of the clock's):
    remaining = {flag: pd.DatetimeIndex(steps) for flag in releases.flag_key.unique()}
    while remaining:
        flags_by_looks: dict[int, list[str]] = {}
        for flag, looks in remaining.items():
            flags_by_looks.setdefault(len(looks), []).append(flag)
        judged = [judge_looks(agg, releases[releases.flag_key.isin(flags)], remaining[flags[0]], windows, known_bad)
                  for flags in flags_by_looks.values()]
        judged = [rows for rows in judged if len(rows)]
        decisions = make_decisions(baselines_frame(pd.concat(judged, ignore_index=True) if judged else pd.DataFrame()),
                                   releases, config, lineage, decided_at=None)
        acts = decisions[decisions.state == "act"]
        newly_bad = acts[~pd.Series(list(zip(acts.flag_key, acts.release_version)), index=acts.index, dtype=object)
                         .isin(known_bad)]
        first_look = newly_bad.groupby("flag_key").window_end.min()  # per flag with a new act
        limit = decisions.flag_key.map(first_look)
        kept.append(decisions[limit.isna() | (decisions.window_end <= limit)])
        known_bad = known_bad | known_bad_releases(newly_bad[newly_bad.window_end == newly_bad.flag_key.map(first_look)])
        remaining = {flag: remaining[flag][remaining[flag] > at] for flag, at in first_look.items()}
        remaining = {flag: looks for flag, looks in remaining.items() if len(looks)}
    with warnings.catch_warnings():  # all-None columns (e.g. bound) in some passes: the dtype is object either way
        warnings.simplefilter("ignore", FutureWarning)
        decisions = pd.concat([k for k in kept if len(k)] or kept[:1] or [DECISIONS.empty_frame()], ignore_index=True)
    decisions = decisions.sort_values(["window_end", "flag_key", "release_version", "cohort"], kind="stable")
    return _describe_first_alerts(decisions.reset_index(drop=True), scored, repeat, releases, config, agg)


def _describe_first_alerts(decisions, scored, repeat, releases, config, agg) -> pd.DataFrame:
    alerts = decisions[decisions.state.isin(["act", "hold"])]
    first = alerts.sort_values("window_end").drop_duplicates(["flag_key", "release_version", "cohort", "state"])
    for as_of in sorted(set(first.window_end)):
        baselines = baselines_frame(judge_looks(agg, releases, [as_of], config.windows, known_bad_before(decisions, as_of)))
        wanted = first[first.window_end == as_of][["flag_key", "release_version", "cohort"]].drop_duplicates()
        baselines = baselines.merge(wanted, on=["flag_key", "release_version", "cohort"])
        # The windows' rows only (describe_baselines reads no others): its term index is fitted on what it is given.
        in_windows = ((scored.created_at > baselines.window_start.min()) & (scored.created_at <= as_of)
                      & scored.attributed_flag.isin(wanted.flag_key.unique()))
        # Marked on the window's rows only: a copy of every row with its text costs more than the look.
        described = describe_baselines(baselines, scored[in_windows].assign(repeat_vote=repeat[in_windows.to_numpy()]),
                                       config.windows)
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
