"""Asset checks. Each carries its threshold and the actual value as metadata, so a failure explains itself."""

import re

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from sklearn.metrics import f1_score

from ..core.policy import latest_decisions
from ..core.schemas import ALL_COHORTS, COHORT_BASELINES, DECISIONS, ENRICHED_FEEDBACK, QUARANTINE, RAW_FEEDBACK, SCORED_SENTIMENT
from .assets import cohort_baselines, enriched_feedback, raw_feedback, rollback_decisions, scored_sentiment, sentiment_model
from .resources import MODEL_POINTER, LakeResource, SettingsResource, current_model

MIN_ATTRIBUTION_RATE = 0.70
MAX_QUARANTINE_SHARE = 0.05
MIN_RATING_AGREEMENT_F1 = 0.60
AGREEMENT_SAMPLE = 50_000


@dg.asset_check(asset=raw_feedback, blocking=True, description="The Delta table has exactly the declared columns and types.")
def raw_feedback_schema(lake: LakeResource) -> dg.AssetCheckResult:
    data = lake.lake().dataset(RAW_FEEDBACK)
    expected = RAW_FEEDBACK.arrow_schema
    actual = data.schema if data is not None else None
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


@dg.asset_check(asset=raw_feedback, blocking=True, description="event_id is unique: reruns and re-deliveries never duplicate.")
def raw_feedback_unique_event_id(lake: LakeResource) -> dg.AssetCheckResult:
    ids = lake.lake().read_arrow(RAW_FEEDBACK, columns=["event_id"]).column("event_id").cast(pa.string())
    duplicates = len(ids) - pc.count_distinct(ids).as_py()
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"rows": len(ids), "duplicate_ids": duplicates})


@dg.asset_check(asset=raw_feedback, description="Share of landed rows sent to quarantine stays small.")
def raw_feedback_quarantine_share(lake: LakeResource) -> dg.AssetCheckResult:
    the_lake = lake.lake()
    valid = _count_rows(the_lake, RAW_FEEDBACK)
    quarantined = _count_rows(the_lake, QUARANTINE)
    share = quarantined / (valid + quarantined) if valid + quarantined else 0.0
    return dg.AssetCheckResult(
        passed=share <= MAX_QUARANTINE_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantine_share": round(share, 4), "threshold": MAX_QUARANTINE_SHARE, "quarantined_rows": quarantined},
    )


@dg.asset_check(asset=enriched_feedback, description="Most feedback can be tied to a release cohort.")
def attribution_rate_check(lake: LakeResource) -> dg.AssetCheckResult:
    methods = lake.lake().read_arrow(ENRICHED_FEEDBACK, columns=["attribution"]).column("attribution").cast(pa.string())
    counts = {entry["values"]: entry["counts"] for entry in pc.value_counts(methods).to_pylist()}
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
    store = lake.model_dir()
    model = current_model(store)
    if not store.exists(MODEL_POINTER):
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"status": "no model trained (too few rated rows); lexicon in use"})
    if model is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"status": "calibrated model lost to the lexicon; lexicon in use"})
    v = model.validation
    return dg.AssetCheckResult(
        passed=v.calibrated_wins,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"calibrated_macro_f1": round(v.calibrated_macro_f1, 4), "lexicon_macro_f1": round(v.lexicon_macro_f1, 4),
                  "holdout_rows": v.n_holdout, "model_version": model.version},
    )


@dg.asset_check(asset=scored_sentiment, description="Scores agree with star ratings where customers gave them (macro-F1, 1-2★ vs 4-5★).")
def scorer_agrees_with_ratings(lake: LakeResource) -> dg.AssetCheckResult:
    rated = lake.lake().read(SCORED_SENTIMENT, columns=["rating", "sentiment_label"], filter=~ds.field("rating").is_null())
    rated = rated[rated.rating != 3].tail(AGREEMENT_SAMPLE)
    if rated.empty:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata={"rated_rows": 0})
    f1 = float(f1_score(rated.rating <= 2, rated.sentiment_label == "negative", average="macro"))
    return dg.AssetCheckResult(
        passed=f1 >= MIN_RATING_AGREEMENT_F1,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"macro_f1": round(f1, 4), "threshold": MIN_RATING_AGREEMENT_F1, "rated_rows": len(rated)},
    )


@dg.asset_check(asset=scored_sentiment, description="An LLM scorer stayed within its budget and rarely fell back to offline.")
def llm_budget_respected(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(scored_sentiment.key)
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


def _count_rows(the_lake, table) -> int:
    data = the_lake.dataset(table)
    return data.count_rows() if data is not None else 0


def guardrail_check_name(flag_key: str) -> str:
    return "sentiment_guardrail_" + re.sub(r"[^A-Za-z0-9_]", "_", flag_key)


def guardrail_checks(flag_keys: list[str]) -> dg.AssetChecksDefinition:
    """One blocking ERROR check per flag: it fails while any cohort of the flag's live release says act."""
    specs = [
        dg.AssetCheckSpec(guardrail_check_name(flag), asset=rollback_decisions, blocking=True,
                          description=f"Sentiment guardrail for flag {flag}")
        for flag in sorted(flag_keys)
    ] or [dg.AssetCheckSpec("sentiment_guardrail", asset=rollback_decisions, blocking=True,
                            description="Sentiment guardrail (no flags registered when the code location loaded)")]

    @dg.multi_asset_check(specs=specs, can_subset=True, name="sentiment_guardrails")
    def sentiment_guardrails(context: dg.AssetCheckExecutionContext, lake: LakeResource, settings: SettingsResource):
        the_lake = lake.lake()
        decisions = the_lake.read(DECISIONS)
        policy = settings.policy()
        latest = latest_decisions(decisions[decisions.policy_version == policy.version])
        for key in context.selected_asset_check_keys:
            flags = [f for f in flag_keys if guardrail_check_name(f) == key.name] or sorted(set(latest.flag_key))
            rows = latest[latest.flag_key.isin(flags)]
            acting = rows[rows.state == "act"]
            t = policy.for_flag(flags[0]) if flags else policy.defaults
            yield dg.AssetCheckResult(
                check_name=key.name,
                passed=acting.empty,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "threshold_min_relative_rise": t.min_relative_rise,
                    "threshold_min_sample": t.min_sample,
                    "threshold_min_mean_confidence": t.min_mean_confidence,
                    "cohorts_evaluated": len(rows),
                    "cohorts_acting": len(acting),
                    "max_relative_rise": float(rows.relative_rise.replace(np.inf, np.nan).max()) if len(rows) and rows.relative_rise.notna().any() else 0.0,
                    "acting": dg.MetadataValue.json(
                        [{"cohort": r.cohort, "action": r.action, "relative_rise": r.relative_rise, "n": int(r.n),
                          "mean_confidence": r.mean_confidence, "decision_id": r.decision_id} for r in acting.itertuples()]
                    ),
                },
            )

    return sentiment_guardrails


STATIC_CHECKS = [raw_feedback_schema, raw_feedback_unique_event_id, raw_feedback_quarantine_share, attribution_rate_check,
                 calibrated_beats_lexicon, scorer_agrees_with_ratings, llm_budget_respected, minimum_sample]
