"""Asset checks. Each carries its threshold and the actual value as metadata, so a failure explains itself."""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import f1_score

from ..core.daily_store import newest_rows
from ..core.policy import latest_decisions
from ..core.schemas import (
    ALL_COHORTS, COHORT_BASELINES, DECISIONS, ENRICHED_FEEDBACK, FLAG_ACTIONS, QUARANTINE, RAW_FEEDBACK, SCORED_SENTIMENT,
)
from ..core.taxonomy import OTHER
from ..core.vocabulary import DecisionAction, DecisionState
from .assets import cohort_baselines, enriched_feedback, raw_feedback, rollback_decisions, sentiment_model
from .resources import LakeResource, SettingsResource

SCORED = dg.AssetKey("scored_sentiment")  # an asset of the scored_sentiment multi-asset (with sentiment_daily)
MIN_ATTRIBUTION_RATE = 0.70
MAX_QUARANTINE_SHARE = 0.05
MIN_RATING_AGREEMENT_F1 = 0.60
AGREEMENT_SAMPLE = 50_000
MAX_UNTOPICAL_NEGATIVE_SHARE = 0.5


@dg.asset_check(asset=raw_feedback, blocking=True, description="The Delta table has exactly the declared columns and types.")
def raw_feedback_schema(lake: LakeResource) -> dg.AssetCheckResult:
    the_lake = lake.lake()
    expected = RAW_FEEDBACK.arrow_schema
    # From the Delta log's schema, not a dataset over every file: the same answer at any history.
    actual = pa.schema(the_lake.table(RAW_FEEDBACK).schema().to_arrow()) if the_lake.exists(RAW_FEEDBACK) else None
    if actual is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": "table does not exist"})
    differences = [
        f"{f.name}: expected {f.type}, found {actual.field(f.name).type if f.name in actual.names else 'missing'}"
        for f in expected
        if f.name not in actual.names or not actual.field(f.name).type.equals(f.type)
    ]
    extra = sorted(set(actual.names) - set(expected.names))
    return dg.AssetCheckResult(
        passed=not differences and not extra,
        metadata={"differences": dg.MetadataValue.json(differences), "unexpected_columns": dg.MetadataValue.json(extra)},
    )


@dg.asset_check(asset=raw_feedback, blocking=True, description="event_id is unique in the days the newest ingest wrote: "
                                                                  "reruns and re-deliveries never duplicate.")
def raw_feedback_unique_event_id(lake: LakeResource) -> dg.AssetCheckResult:
    """The ids of the days the newest ingest touched (its commits, from the Delta log), not the whole table:
    reading every id cost more each day (~1 s at 90 days). What a run can duplicate lands in the days it
    wrote: a re-delivery or two concurrent runs inserting the same event on its day. An event whose day
    changed would leave its old row on an untouched day, but the ingest MERGE deletes that row first
    (Lake.drop_moved_rows reads every key for that), so this check no longer re-proves it.
    Without a readable log of that run (another engine's commits, or more than the lookback), every day."""
    the_lake = lake.lake()
    days = the_lake.newest_run_partitions(RAW_FEEDBACK, "ingested_at")
    ids = the_lake.read_arrow(RAW_FEEDBACK, columns=["event_id"], days=days).column("event_id").cast(pa.string())
    duplicates = len(ids) - pc.count_distinct(ids).as_py()
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={
        "rows": len(ids), "duplicate_ids": duplicates,
        "days_checked": dg.MetadataValue.json(sorted(days) if days is not None else "all")})


@dg.asset_check(asset=raw_feedback, description="Share of landed rows sent to quarantine stays small.")
def raw_feedback_quarantine_share(lake: LakeResource) -> dg.AssetCheckResult:
    the_lake = lake.lake()
    valid = the_lake.count_rows(RAW_FEEDBACK)
    quarantined = the_lake.count_rows(QUARANTINE)
    share = quarantined / (valid + quarantined) if valid + quarantined else 0.0
    return dg.AssetCheckResult(
        passed=share <= MAX_QUARANTINE_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantine_share": round(share, 4), "threshold": MAX_QUARANTINE_SHARE, "quarantined_rows": quarantined},
    )


@dg.asset_check(asset=enriched_feedback, description="Most of the feedback in the days the newest attribution wrote "
                                                     "can be tied to a release cohort.")
def attribution_rate_check(lake: LakeResource) -> dg.AssetCheckResult:
    """Over the days the newest enrich run wrote (up to AGREEMENT_SAMPLE rows): on a new day that day,
    as the first day's run reads its day, whatever the history. A day with few rows gives a noisier
    rate than weeks of rows did; the check is a WARN about the newest attribution, which that measures."""
    the_lake = lake.lake()
    methods = newest_rows(the_lake, ENRICHED_FEEDBACK, ["attribution"], lambda rows: rows.attribution.notna(),
                          AGREEMENT_SAMPLE, days=the_lake.newest_run_partitions(ENRICHED_FEEDBACK, "enriched_at")).attribution
    counts = {str(k): int(v) for k, v in methods.value_counts().items()}
    total = sum(counts.values())
    rate = 1 - counts.get("none", 0) / total if total else 1.0
    return dg.AssetCheckResult(
        passed=rate >= MIN_ATTRIBUTION_RATE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"attribution_rate": round(rate, 4), "threshold": MIN_ATTRIBUTION_RATE,
                  "unattributed_rows": counts.get("none", 0), "by_method": dg.MetadataValue.json(counts)},
    )


@dg.asset_check(asset=sentiment_model, description="The calibrated model is used only when it beats the lexicon on held-out rows.")
def calibrated_beats_lexicon(lake: LakeResource) -> dg.AssetCheckResult:
    model = lake.model_store().current()
    if model is None:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"status": "no model trained (too few rated rows); lexicon in use"})
    v = model.validation
    return dg.AssetCheckResult(
        passed=v.calibrated_wins,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"calibrated_macro_f1": round(v.calibrated_macro_f1, 4), "lexicon_macro_f1": round(v.lexicon_macro_f1, 4),
                  "holdout_rows": v.n_holdout, "model_version": model.version},
    )


@dg.asset_check(asset=SCORED, description="Text labels agree with star ratings on the rated rows a source sends "
                                                    "to the text scorer, in the days the newest scoring run wrote "
                                                    "(macro-F1, 1-2★ vs 4-5★).")
def scorer_agrees_with_ratings(lake: LakeResource) -> dg.AssetCheckResult:
    """Over the days the newest score run wrote (`scored_days`), up to AGREEMENT_SAMPLE rows: the scorer
    as it labels now, at the first day's cost whatever the history (a new day read two weeks of rows
    to fill the sample). Fewer rows on a quiet day: a noisier F1, reported with `rated_rows`."""
    # Rows labelled by their own rating agree by construction: only text-labelled rated rows say anything.
    the_lake = lake.lake()
    rated = newest_rows(the_lake, SCORED_SENTIMENT, ["rating", "sentiment_label", "label_source"],
                        lambda rows: rows.rating.notna() & (rows.rating != 3) & (rows.label_source != "rating"),
                        AGREEMENT_SAMPLE, days=scored_days(the_lake))
    if rated.empty:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata={"rated_rows": 0})
    f1 = float(f1_score(rated.rating <= 2, rated.sentiment_label == "negative", average="macro"))
    return dg.AssetCheckResult(
        passed=f1 >= MIN_RATING_AGREEMENT_F1,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"macro_f1": round(f1, 4), "threshold": MIN_RATING_AGREEMENT_F1, "rated_rows": len(rated)},
    )


@dg.asset_check(asset=SCORED, description="An LLM scorer stayed within its budget and rarely fell back to offline.")
def llm_budget_respected(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(SCORED)
    stats = {}
    if event is not None and event.asset_materialization is not None:
        value = event.asset_materialization.metadata.get("scorer_stats")
        stats = value.value if value is not None else {}
    if not stats:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata={"scorer": "offline"})
    rows = max(int(stats.get("rows", 0)), 1)
    fallback_share = int(stats.get("fallback_rows", 0)) / rows
    return dg.AssetCheckResult(
        passed=not stats.get("budget_exhausted") and fallback_share <= 0.05,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"budget_exhausted": bool(stats.get("budget_exhausted")), "budget_usd": stats.get("budget_usd") or 0.0,
                  "est_cost_usd": stats.get("est_cost_usd", 0.0), "fallback_share": round(fallback_share, 4),
                  "fallback_threshold": 0.05, "tokens_in": stats.get("tokens_in", 0), "tokens_out": stats.get("tokens_out", 0)},
    )


@dg.asset_check(asset=SCORED, description="Most negative feedback in the days the newest scoring run wrote falls in "
                                                    "a taxonomy topic; otherwise surfaces and evidence are thin and the "
                                                    "taxonomy needs the suggested terms.")
def negatives_have_topics(lake: LakeResource) -> dg.AssetCheckResult:
    """Over the days the newest score run wrote (`scored_days`), up to AGREEMENT_SAMPLE negatives: see
    scorer_agrees_with_ratings for why those days and what it trades."""
    the_lake = lake.lake()
    topics = newest_rows(the_lake, SCORED_SENTIMENT, ["issue_category", "sentiment_label"],
                         lambda rows: rows.sentiment_label == "negative", AGREEMENT_SAMPLE,
                         days=scored_days(the_lake)).issue_category
    share = float((topics == OTHER).mean()) if len(topics) else 0.0
    return dg.AssetCheckResult(
        passed=share <= MAX_UNTOPICAL_NEGATIVE_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"negative_share_without_topic": round(share, 4), "threshold": MAX_UNTOPICAL_NEGATIVE_SHARE,
                  "negative_rows": len(topics),
                  "hint": "see suggested_taxonomy_terms on rollback_decisions for phrases to add"},
    )


@dg.asset_check(asset=cohort_baselines, description="Each flag's live release has enough feedback to be judged as a whole.")
def minimum_sample(lake: LakeResource, settings: SettingsResource) -> dg.AssetCheckResult:
    frame = lake.lake().read(COHORT_BASELINES)
    policy = settings.policy()
    flag_level = frame[frame.cohort == ALL_COHORTS].drop_duplicates("flag_key")
    short = {r.flag_key: int(r.n) for r in flag_level.itertuples() if r.n < policy.for_flag(r.flag_key).min_sample}
    return dg.AssetCheckResult(
        passed=not short,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"threshold": policy.defaults.min_sample, "flags_below_minimum": dg.MetadataValue.json(short),
                  "cohorts_below_minimum": int((frame.n < policy.defaults.min_sample).sum())},
    )


def scored_days(the_lake) -> set[str] | None:
    """Days the newest score run wrote: `pipeline.score` marks only a run's last commit (`enriched_version`)."""
    return the_lake.newest_run_partitions(SCORED_SENTIMENT, "enriched_version")


GUARDRAIL_CHECK = "sentiment_guardrail"


@dg.asset_check(asset=rollback_decisions, name=GUARDRAIL_CHECK, blocking=False,
                description="Customers of every flag's live release are not unhappier than its baseline in any cohort "
                            "(red = the policy acts on a flag: step down, disable or switch variant; per flag in metadata).")
def sentiment_guardrail(lake: LakeResource, settings: SettingsResource) -> dg.AssetCheckResult:
    """One ERROR check over every flag, read from the decisions at run time: a flag registered after the
    code location loaded is covered by the next run, with no reload (per-flag checks needed the flag
    list from the lake at load time).

    Not blocking: a tripped guardrail is the product working (a business signal, acted on by the flag
    action sensor), not a pipeline failure, so the run succeeds and the check carries the story."""
    the_lake = lake.lake()
    decisions = the_lake.read(DECISIONS)
    policy = settings.policy()
    latest = latest_decisions(decisions[decisions.policy_version == policy.version])
    return guardrail_result(latest, policy, _action_status(the_lake))


def guardrail_result(latest: pd.DataFrame, policy, action_status: dict[str, str]) -> dg.AssetCheckResult:
    """Red while any flag acts. The description is the worst acting flag's sentence; `acting_flags` gives
    each acting flag's sentence (guardrail_alert announces each flag once), `by_flag` every flag's state."""
    verdicts = {flag: flag_verdict(rows, policy.for_flag(flag), action_status)
                for flag, rows in latest.groupby("flag_key", sort=True)}
    acting = sorted((v for v in verdicts.values() if not v.passed), key=lambda v: -v.rise)
    by_flag = dg.MetadataValue.table(
        records=[dg.TableRecord({"flag": f, "state": (DecisionState.ACT if not v.passed else DecisionState.PASS).value, "release": v.release,
                                 "cohorts_evaluated": v.metadata["cohorts_evaluated"],
                                 "cohorts_acting": v.metadata["cohorts_acting"], "summary": v.sentence})
                 for f, v in verdicts.items()],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("flag", "string"), dg.TableColumn("state", "string"), dg.TableColumn("release", "string"),
            dg.TableColumn("cohorts_evaluated", "int"), dg.TableColumn("cohorts_acting", "int"),
            dg.TableColumn("summary", "string", description="The flag's one-sentence verdict."),
        ]),
    )
    overall = {"flags_evaluated": len(verdicts), "flags_acting_count": len(acting), "by_flag": by_flag,
               "acting_flags": dg.MetadataValue.json({v.flag: v.summary() for v in acting})}
    if not acting:
        rises = ", ".join(f"{f} {_percent(v.metadata.get('max_relative_rise'))}" for f, v in verdicts.items())
        return dg.AssetCheckResult(
            passed=True, severity=dg.AssetCheckSeverity.ERROR, metadata=overall,
            description=f"No flag needs action ({len(verdicts)} flag(s) evaluated; largest rise per flag: {rises or '-'}).",
        )
    worst = acting[0]
    others = [v.flag for v in acting[1:]]
    more = f" Also acting: {', '.join(others)}." if others else ""
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description=worst.sentence + more,
                               metadata={**worst.metadata, **overall})


@dataclass(frozen=True)
class FlagVerdict:
    flag: str
    passed: bool
    release: str
    rise: float  # worst acting cohort's relative rise (orders acting flags)
    sentence: str
    metadata: dict

    def summary(self) -> dict:
        """What an alert about this flag says: its sentence and the ids to follow."""
        keys = ("release", "cohort", "decision_id", "flag_action_id")
        return {"sentence": self.sentence, **{k: str(self.metadata[k]) for k in keys if k in self.metadata}}


def flag_verdict(rows: pd.DataFrame, thresholds, action_status: dict[str, str]) -> FlagVerdict:
    """One flag's sentence and figures, from its latest decision rows (worst acting cohort first)."""
    flag = str(rows.flag_key.iloc[0])
    acting = rows[rows.state == DecisionState.ACT].sort_values("relative_rise", ascending=False)
    rises = rows.relative_rise.replace([np.inf, -np.inf], np.nan).dropna()
    metadata = {
        "cohorts_evaluated": len(rows),
        "cohorts_acting": len(acting),
        "max_relative_rise": _round(rises.max()) if len(rises) else None,
        "threshold_min_relative_rise": thresholds.min_relative_rise,
        "threshold_min_sample": thresholds.min_sample,
        "threshold_min_mean_confidence": thresholds.min_mean_confidence,
        "flag_actions": dg.MetadataValue.asset(dg.AssetKey("flag_actions")),
    }
    if acting.empty:
        release = ", ".join(sorted(set(rows.release_version))) or "-"
        return FlagVerdict(flag, True, release, 0.0,
                           f"Flag {flag}: no cohort of release {release} needs action ({len(rows)} evaluated, "
                           f"largest rise {_percent(metadata['max_relative_rise'])}).",
                           {k: v for k, v in metadata.items() if v is not None})
    worst = acting.iloc[0]
    # Automatic actions are keyed by their decision: the action id is the decision id.
    action_id = worst.decision_id
    metadata.update({
        "flag": worst.flag_key,
        "release": worst.release_version,
        "cohort": worst.cohort,
        "action": worst.action,
        "target_rollout": int(worst.target_rollout) if pd.notna(worst.target_rollout) else -1,
        "negative_share": _round(worst.negative_share),
        "baseline_negative_share": _round(worst.baseline_negative_share),
        "relative_rise": _round(worst.relative_rise),
        "relative_rise_lower_bound": _round(worst.bound),
        "n": int(worst.n),
        "baseline_n": int(worst.baseline_n),
        "mean_confidence": _round(worst.mean_confidence),
        "decision_id": worst.decision_id,
        "flag_action_id": action_id,
        "flag_action_status": action_status.get(action_id, "not yet applied (the decision sensor starts it)"),
        "acting_cohorts": dg.MetadataValue.table(
            records=[dg.TableRecord({"cohort": r.cohort, "action": r.action, "relative_rise": _round(r.relative_rise),
                                     "n": int(r.n), "decision_id": r.decision_id}) for r in acting.itertuples()],
            schema=dg.TableSchema(columns=[
                dg.TableColumn("cohort", "string"), dg.TableColumn("action", "string"),
                dg.TableColumn("relative_rise", "float", description="Rise of the negative share over the baseline."),
                dg.TableColumn("n", "int", description="Feedback rows in the cohort."),
                dg.TableColumn("decision_id", "string", description="Row of rollback_decisions; also the flag action id."),
            ]),
        ),
    })
    more = f" ({len(acting) - 1} more cohort(s) acting)" if len(acting) > 1 else ""
    target = f" to {int(worst.target_rollout)} %" if worst.action == DecisionAction.STEP_DOWN and pd.notna(worst.target_rollout) else ""
    description = (
        f"Flag {worst.flag_key} release {worst.release_version}, cohort {worst.cohort}: negative share "
        f"{_percent(worst.negative_share, signed=False)} vs {_percent(worst.baseline_negative_share, signed=False)}, "
        # The bound is what the rule tested (for the sequential rule: above its noise margin); the policy's
        # thresholds are in the metadata, not here, where a reader would take them for the bar it cleared.
        f"rise {_percent(worst.relative_rise)} with lower bound {_percent(worst.bound)} (n={int(worst.n)}); action: "
        f"{worst.action.replace('_', ' ')}{target} (decision {worst.decision_id}, flag action {action_id}){more}."
    )
    rise = float(worst.relative_rise) if pd.notna(worst.relative_rise) else 0.0
    return FlagVerdict(flag, False, str(worst.release_version), rise, description,
                       {k: v for k, v in metadata.items() if v is not None})


def _action_status(the_lake) -> dict[str, str]:
    if not the_lake.exists(FLAG_ACTIONS):
        return {}
    audit = the_lake.read(FLAG_ACTIONS, columns=["action_id", "status"])
    return dict(zip(audit.action_id, audit.status))


def _round(value, digits: int = 3) -> float | None:
    """Figures people read: three decimals; missing or infinite values are left out of the metadata."""
    return round(float(value), digits) if value is not None and pd.notna(value) and np.isfinite(value) else None


def _percent(value, signed: bool = True) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    if not np.isfinite(value):
        return "+inf"
    return f"{value:+.0%}" if signed else f"{value:.0%}"


CHECKS = [raw_feedback_schema, raw_feedback_unique_event_id, raw_feedback_quarantine_share, attribution_rate_check,
                 calibrated_beats_lexicon, scorer_agrees_with_ratings, negatives_have_topics, llm_budget_respected,
                 minimum_sample, sentiment_guardrail]
