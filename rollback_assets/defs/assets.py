"""Software-defined assets: raw_feedback → enriched_feedback → scored_sentiment → sentiment_daily → cohort_baselines →
rollback_decisions (scored_sentiment and sentiment_daily are one step: `scored_sentiment`).

Each asset calls one step of `core.pipeline`, which reads and writes Delta tables, and reports what it
did: row counts, the Delta version written (as its data version, so Dagster links the events), and
what a person needs to see in the UI.
"""

import hashlib
import json
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import field_validator

from ..core import (
    aggregates, attribution, baselines as baselines_module, ingest as ingest_module, normalise, pipeline, policy, taxonomy,
)
from ..core.landing import select_candidates
from ..core.releases import load_releases_yaml
from ..core.schemas import (
    BUSINESS_KPIS, COHORT_BASELINES, DECISIONS, ENRICHED_FEEDBACK, QUARANTINE, RAW_FEEDBACK, RELEASE_ARTIFACTS, SCORED_SENTIMENT,
    SENTIMENT_DAILY,
)
from ..core import daily_store, new_terms, ratings, sequential_policy, stats
from ..core.scoring import base as scoring_base, calibrated, lexicon, model_store, registry, worker as scoring_worker
from ..core.vocabulary import FLAG_CHANGING_ACTIONS
from .metadata import code_version, data_version, decision_lineage, evidence_markdown, flag_series, table_metadata, table_value
from .resources import LakeResource, LandingZoneResource, ScorerResource, SettingsResource


class IngestConfig(dg.Config):
    files: list[str] = []  # landing-zone files to ingest; empty = every file not ingested yet


class DailyConfig(dg.Config):
    """What sentiment_daily rewrites besides the days new scored rows touched (the scored_sentiment step's
    config in the launchpad): a day's sums made again from its scored rows, or every day's."""

    rederive_days: list[str] = []  # days as YYYY-MM-DD, e.g. ["2026-10-13"]
    rebuild_all_days: bool = False

    @field_validator("rederive_days")
    @classmethod
    def _iso_days(cls, days: list[str]) -> list[str]:
        try:
            return sorted({date.fromisoformat(day.strip()).isoformat() for day in days})
        except ValueError as error:
            raise ValueError(f"rederive_days: each day as YYYY-MM-DD ({error})") from None


class BaselineConfig(dg.Config):
    as_of: str | None = None  # judge as of this time (ISO); default: the newest feedback


@dg.asset(
    group_name="ingest",
    kinds={"deltalake", "pandas"},
    code_version=code_version(pipeline, ingest_module),
    description="Canonical feedback merged on event_id from landing-zone files; malformed rows go to quarantine.",
)
def raw_feedback(
    context: dg.AssetExecutionContext, config: IngestConfig, lake: LakeResource, landing: LandingZoneResource
) -> dg.MaterializeResult:
    the_lake = lake.lake()
    scan = landing.scan()
    for problem in scan.problems:  # a stray folder or a bad mapping skips only itself
        context.log.warning(problem)
    try:
        candidates = select_candidates(scan.files, config.files)
    except FileNotFoundError as error:
        raise dg.Failure(str(error), metadata={"problems": dg.MetadataValue.json(scan.problems)}) from None
    files = pipeline.pending_files(the_lake, candidates)
    context.log.info(f"{len(files)} new file(s) of {len(candidates)} in the landing zone")
    try:
        result = pipeline.ingest(the_lake, files, author_salt=landing.author_salt)
    except normalise.MissingAuthorSalt as error:
        raise dg.Failure(str(error)) from None
    stats = result.stats
    for path, reason in stats.get("unreadable_files", {}).items():
        context.log.warning(f"{path}: file not read, quarantined as a file (source_row 0): {reason}")
    total = stats["rows_valid"] + stats["rows_quarantined"]
    return dg.MaterializeResult(
        metadata={
            **table_metadata(RAW_FEEDBACK, the_lake.uri(RAW_FEEDBACK), result.version),
            "files_ingested": stats["files"],
            "rows_valid": stats["rows_valid"],
            "rows_inserted": stats["rows_inserted"],
            "rows_updated": stats["rows_updated"],
            "rows_quarantined": stats["rows_quarantined"],
            "quarantine_share": round(stats["rows_quarantined"] / total, 4) if total else 0.0,
            "quarantine_reasons": dg.MetadataValue.json(stats["reasons"]),
            "quarantine_path": dg.MetadataValue.path(the_lake.uri(QUARANTINE)),
            "unreadable_files": dg.MetadataValue.json(stats.get("unreadable_files", {})),
            "landing_zone_problems": dg.MetadataValue.json(scan.problems),
        },
        data_version=data_version("raw_feedback", result.version),
    )


@dg.asset(
    group_name="ingest",
    kinds={"deltalake"},
    code_version=code_version(pipeline),
    description="Every release of every flag: version, commits, model, rollout ladder, owner, expiry.",
)
def release_artifacts(lake: LakeResource, settings: SettingsResource) -> dg.MaterializeResult:
    the_lake = lake.lake()
    if settings.releases_path and Path(settings.releases_path).exists():
        pipeline.register_releases(the_lake, load_releases_yaml(settings.releases_path))
    releases = pipeline.read_releases(the_lake)
    version = the_lake.version(RELEASE_ARTIFACTS)
    shown = releases[["flag_key", "version", "released_at", "model_name", "model_version", "ladder", "fallback_variant", "owner"]]
    return dg.MaterializeResult(
        metadata={
            **table_metadata(RELEASE_ARTIFACTS, the_lake.uri(RELEASE_ARTIFACTS), version, len(releases)),
            "flags": len(set(releases.flag_key)),
            "releases": table_value(shown.sort_values(["flag_key", "released_at"]), RELEASE_ARTIFACTS),
        },
        data_version=data_version("release_artifacts", version),
    )


@dg.asset(
    group_name="attribution",
    deps=[raw_feedback, release_artifacts],
    kinds={"deltalake", "pandas"},
    code_version=code_version(pipeline, attribution),
    description="Feedback attributed to a release cohort: by explicit version, else by the release live at the time.",
)
def enriched_feedback(lake: LakeResource, settings: SettingsResource) -> dg.MaterializeResult:
    the_lake = lake.lake()
    result = pipeline.enrich(the_lake, tuple(settings.cohort_dimensions))
    stats = result.stats
    return dg.MaterializeResult(
        metadata={
            **table_metadata(ENRICHED_FEEDBACK, the_lake.uri(ENRICHED_FEEDBACK), result.version),
            "rows_attributed": stats["rows_attributed"],
            "full_reattribution": stats["full_reattribution"],
            "attribution_rate": stats.get("attribution_rate", 1.0),
            "attribution_by_method": dg.MetadataValue.json(stats.get("by_method", {})),
            "cohort_dimensions": ", ".join(settings.cohort_dimensions),
        },
        data_version=data_version("enriched_feedback", result.version),
    )


@dg.asset(
    group_name="scoring",
    deps=[enriched_feedback],
    kinds={"scikitlearn"},
    code_version=code_version(pipeline, calibrated, model_store),
    description="Text model (word + character n-grams, logistic regression) trained on the customer's own "
                "ratings; it labels the rows that carry no rating, where it beats the lexicon on held-out rows.",
)
def sentiment_model(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    result = pipeline.train_text_model(lake.lake(), lake.model_store())
    stats = result.stats
    if "retrain_at_rows" in stats:
        context.log.info(f"{stats['rated_rows']} rated rows, fewer than the {stats['retrain_at_rows']} a refit waits for: "
                         "model kept")
        return dg.MaterializeResult(
            metadata={key: stats[key] for key in ("trained", "model_version", "rated_rows", "retrain_at_rows")},
            data_version=dg.DataVersion(stats["model_version"]),
        )
    if not stats["trained"]:
        context.log.info(f"only {stats['rated_rows']} rated rows: keeping the lexicon scorer")
        return dg.MaterializeResult(metadata={"trained": False, "rated_rows": stats["rated_rows"]},
                                    data_version=dg.DataVersion("lexicon"))
    model = stats["model"]
    v = model.validation
    return dg.MaterializeResult(
        metadata={
            "trained": True,
            "model_version": model.version,
            "model_path": dg.MetadataValue.path(stats["model_path"]),
            "rated_rows": stats["rated_rows"],
            "training_rows": v.n_train,
            "holdout_rows": v.n_holdout,
            "calibrated_macro_f1": round(v.calibrated_macro_f1, 4),
            "lexicon_macro_f1": round(v.lexicon_macro_f1, 4),
            "in_use": v.calibrated_wins,
        },
        data_version=dg.DataVersion(model.version),
    )


SCORED_DESCRIPTION = "Sentiment, label, confidence, topic and affected surface per feedback row."
DAILY_DESCRIPTION = ("Scored feedback summed per flag × release × cohort × hour × label × topic, a day partition at a time: "
                     "only the days this run's scored rows touched are rewritten. What baselines, decisions and replay read.")


@dg.multi_asset(
    name="scored_sentiment",
    specs=[
        dg.AssetSpec("scored_sentiment", group_name="scoring", deps=[enriched_feedback, sentiment_model],
                     kinds={"deltalake", "pandas"}, description=SCORED_DESCRIPTION,
                     code_version=code_version(pipeline, scoring_base, scoring_worker, lexicon, taxonomy, ratings, registry)),
        dg.AssetSpec("sentiment_daily", group_name="decisions", deps=["scored_sentiment", release_artifacts],
                     kinds={"deltalake", "pandas"}, description=DAILY_DESCRIPTION,
                     code_version=code_version(pipeline, aggregates)),
    ],
    can_subset=True,
)
def scored_sentiment(context: dg.AssetExecutionContext, config: DailyConfig, lake: LakeResource, scorer: ScorerResource,
                     settings: SettingsResource):
    """One step, as with the Spark engine: on a first build the daily sums of each chunk are made while the
    scorer's worker process scores the next (pipeline.score_and_aggregate), so they cost little beyond the
    scoring. Either asset alone when only it is selected (a re-derivation of the daily tables, say).
    Not a Dagster-partitioned sentiment_daily: one landing file spans months and the landing-zone sensor
    runs one feedback_job per file, so the days a run rewrites come from the data (Delta partitions)."""
    the_lake = lake.lake()
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    asked = {"rederive": config.rederive_days, "rebuild": config.rebuild_all_days}
    if "scored_sentiment" not in selected:
        yield _daily_materialization(the_lake, pipeline.aggregate_daily(the_lake, **asked))
        return
    taxonomy_ = settings.taxonomy()
    chosen = scorer.scorer(lake, taxonomy_)
    if "sentiment_daily" in selected:
        scored, daily = pipeline.score_and_aggregate(the_lake, chosen, taxonomy_, **asked)
    else:
        scored, daily = pipeline.score(the_lake, chosen, taxonomy_), None
    stats = scored.stats
    extra = getattr(chosen, "last_stats", None)
    yield dg.MaterializeResult(
        asset_key="scored_sentiment",
        metadata={
            **table_metadata(SCORED_SENTIMENT, the_lake.uri(SCORED_SENTIMENT), scored.version),
            "rows_scored": stats["rows_scored"],
            "rows_reused": stats["rows_reused"],
            "scored_in": stats["scored_in"],  # the worker process on a large run with an offline scorer
            "scorer": chosen.name,
            "scorer_version": chosen.version,
            "taxonomy_version": taxonomy_.version,
            "negative_share_new_rows": stats.get("negative_share", 0.0),
            "mean_confidence_new_rows": stats.get("mean_confidence", 0.0),
            **({"scorer_stats": dg.MetadataValue.json(extra)} if extra else {}),
        },
        data_version=data_version("scored_sentiment", scored.version),
    )
    if daily is not None:
        yield _daily_materialization(the_lake, daily)


def _daily_materialization(the_lake, result: pipeline.StepResult) -> dg.MaterializeResult:
    stats = result.stats
    days = sorted(daily_store.table_days(the_lake, SENTIMENT_DAILY))
    rewritten = stats["days_rewritten"]
    return dg.MaterializeResult(
        asset_key="sentiment_daily",
        metadata={
            **table_metadata(SENTIMENT_DAILY, the_lake.uri(SENTIMENT_DAILY), result.version),
            "full_rebuild": stats["full_rebuild"],
            "summed_while_scoring": stats.get("summed_while_scoring", False),  # a first build, chunk by chunk
            "days_rewritten": len(rewritten),
            "days_rewritten_list": dg.MetadataValue.json(daily_store.days_listed(rewritten)),
            "scored_rows_read": stats["rows_read"],
            "aggregate_rows_written": stats["aggregate_rows"],
            "days_in_table": len(days),
            "first_day": days[0] if days else "-",
            "last_day": days[-1] if days else "-",
        },
        data_version=data_version("sentiment_daily", result.version),
    )


@dg.asset(
    group_name="decisions",
    deps=["sentiment_daily", "scored_sentiment", release_artifacts],
    kinds={"deltalake", "pandas"},
    code_version=code_version(pipeline, aggregates, daily_store, baselines_module, new_terms),
    description="Each flag's live release per cohort vs the previous version (same window) and a rolling baseline.",
)
def cohort_baselines(config: BaselineConfig, lake: LakeResource, settings: SettingsResource) -> dg.MaterializeResult:
    the_lake = lake.lake()
    as_of = pd.Timestamp(config.as_of, tz="UTC") if config.as_of else None
    result = pipeline.baselines(the_lake, settings.policy(), as_of)
    frame: pd.DataFrame = result.stats.get("frame", COHORT_BASELINES.empty_frame())
    flag_level = frame[(frame.cohort == "all")]
    shown = flag_level[["flag_key", "release_version", "baseline_kind", "n", "negative_share", "baseline_n",
                        "baseline_negative_share", "mean_confidence"]]
    return dg.MaterializeResult(
        metadata={
            **table_metadata(COHORT_BASELINES, the_lake.uri(COHORT_BASELINES), result.version, len(frame)),
            "as_of": result.stats.get("as_of", ""),
            "cohorts": result.stats.get("cohorts", 0),
            "rows_read": result.stats.get("rows_read", 0),
            "aggregate_rows_read": result.stats.get("aggregate_rows_read", 0),
            "flags": table_value(shown, COHORT_BASELINES),
            **flag_series(flag_level[flag_level.release_live.astype(bool)].drop_duplicates("flag_key")),
        },
        data_version=data_version("cohort_baselines", result.version),
    )


@dg.asset(
    group_name="decisions",
    kinds={"deltalake"},
    code_version=code_version(pipeline),
    description="Optional business KPIs per flag and cohort (conversion, cart abandonment, contact rate) from a file.",
)
def business_kpis(lake: LakeResource, settings: SettingsResource) -> dg.MaterializeResult:
    the_lake = lake.lake()
    result = pipeline.load_kpis(the_lake, settings.kpis_path)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(BUSINESS_KPIS, the_lake.uri(BUSINESS_KPIS), result.version, result.stats["rows"]),
            "source": settings.kpis_path or "none configured (ROLLBACK_KPIS)",
            "kpis": ", ".join(result.stats["kpis"]) or "-",
        },
        data_version=data_version("business_kpis", result.version),
    )


@dg.asset(
    group_name="decisions",
    deps=[cohort_baselines, release_artifacts, business_kpis],
    kinds={"deltalake"},
    code_version=code_version(pipeline, policy, sequential_policy, stats),
    description="What the policy recommends per flag × cohort, why, with evidence and full lineage.",
)
def rollback_decisions(context: dg.AssetExecutionContext, lake: LakeResource, settings: SettingsResource) -> dg.MaterializeResult:
    the_lake = lake.lake()
    config = settings.policy()
    result = pipeline.decide(the_lake, config, run_id=context.run_id)
    decisions: pd.DataFrame = result.stats["decisions"]
    acting = decisions[decisions.state.isin(["act", "hold"])]
    flag_changing = decisions[decisions.state.eq("act") & decisions.action.isin(FLAG_CHANGING_ACTIONS)]
    ids = ",".join(sorted(decisions.decision_id))
    return dg.MaterializeResult(
        metadata={
            **table_metadata(DECISIONS, the_lake.uri(DECISIONS), result.version, len(decisions)),
            "policy_version": config.version,
            "decisions_new": result.stats["new"],
            "by_state": dg.MetadataValue.json(decisions.state.value_counts().to_dict()),
            # Only decisions that change a flag start a flag action; a superseded release is marked bad instead.
            "actionable_decision_ids": dg.MetadataValue.json(sorted(flag_changing.decision_id)),
            "releases_marked_bad": dg.MetadataValue.json(sorted(
                f"{r.flag_key} {r.release_version}" for r in decisions[decisions.action == "block_release"].itertuples())),
            "actions": table_value(acting[["flag_key", "release_version", "release_live", "cohort", "baseline_kind",
                                           "action", "target_rollout", "severity", "relative_rise", "n", "reason"]], DECISIONS),
            "evidence": dg.MetadataValue.md(evidence_markdown(acting)),
            "suggested_taxonomy_terms": dg.MetadataValue.json(_suggested_terms(decisions, settings.taxonomy())),
            **decision_lineage(decisions),
        },
        data_version=dg.DataVersion(hashlib.sha256(ids.encode()).hexdigest()[:16]),
    )


def _suggested_terms(decisions: pd.DataFrame, taxonomy_: taxonomy.Taxonomy) -> list[str]:
    """Rising complaint terms no taxonomy phrase covers: candidates for new topics or phrases."""
    terms = [t for cell in decisions.new_terms.dropna() for t in json.loads(cell or "[]")]
    phrases = [p for topic in taxonomy_.topics for p in topic.phrases]
    return sorted(set(new_terms.uncovered(terms, phrases)))


FEEDBACK_ASSETS = [raw_feedback, release_artifacts, enriched_feedback, sentiment_model, scored_sentiment,
                   cohort_baselines, business_kpis, rollback_decisions]
