"""Every table's columns and types, declared once.

Writers, readers, Dagster column schemas and documentation all derive from the `Table` objects here,
so a column added in this module appears everywhere it should.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = True
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def to_arrow(self, frame: pd.DataFrame) -> pa.Table:
        """Conform a frame to this table: exact column order and types; missing nullable columns become null."""
        missing = [c.name for c in self.columns if c.name not in frame.columns and not c.nullable]
        if missing:
            raise ValueError(f"{self.name}: required columns missing: {missing}")
        arrays = []
        for c in self.columns:
            if c.name in frame.columns:
                arrays.append(pa.array(_python_values(frame[c.name], c.type), type=c.type, from_pandas=True))
            else:
                arrays.append(pa.nulls(len(frame), type=c.type))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema)

    def empty_frame(self) -> pd.DataFrame:
        return self.arrow_schema.empty_table().to_pandas()


def _python_values(series: pd.Series, arrow_type: pa.DataType):
    if pa.types.is_timestamp(arrow_type):
        return pd.to_datetime(series, utc=True)
    if pa.types.is_date(arrow_type):
        return pd.to_datetime(series, utc=True).dt.date if not _is_date_series(series) else series
    if pa.types.is_integer(arrow_type):
        return series.astype("Int64")
    if pa.types.is_list(arrow_type):
        return series.map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else list(v))
    return series


def _is_date_series(series: pd.Series) -> bool:
    first = series.dropna().head(1)
    return len(first) == 1 and type(first.iloc[0]).__name__ == "date"


def is_text(data_type: pa.DataType) -> bool:
    """A string column in any of Arrow's layouts (MERGE-written files hand strings back as string_view)."""
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_string_view(data_type)


def _col(name, type_, nullable=True, description=""):
    return Column(name, type_, nullable, description)


SOURCE_KINDS = ("review", "ticket", "nps", "chat")

# The canonical feedback record. Every landing-zone source is mapped onto these columns.
FEEDBACK_COLUMNS = (
    _col("event_id", pa.string(), False, "Source-unique id of the feedback event; MERGE key."),
    _col("source_kind", pa.string(), False, "review | ticket | nps | chat"),
    _col("channel", pa.string(), False, "Where it came from, e.g. google_play, zendesk."),
    _col("created_at", UTC_TS, False, "When the customer wrote it (UTC)."),
    _col("text", pa.string(), False, "The customer's words."),
    _col("rating", pa.int16(), True, "The customer's rating on the source's scale (see rating_scale), if any."),
    _col("rating_scale", pa.string(), True, "stars (1-5) | csat (1-5) | nps (0-10) | thumbs (0/1), from the mapping."),
    _col("sentiment_from", pa.string(), True, "rating | text | both: where a rated row's label comes from (mapping)."),
    _col("product", pa.string(), True, "Product, app id or SKU."),
    _col("app_version", pa.string(), True, "Release the feedback was written on (builds pooled by the mapping's version rule)."),
    _col("app_build", pa.string(), True, "The version string as the source wrote it, when the rule shortened it."),
    _col("flag_key", pa.string(), True, "Feature flag the source tagged, if any."),
    _col("locale", pa.string(), True, "Customer locale, e.g. de-DE."),
    _col("device", pa.string(), True, "mobile | desktop | tablet | ..."),
    _col("region", pa.string(), True, "Market or region."),
    _col("customer_tier", pa.string(), True, "Customer tier, e.g. free, plus."),
    _col("acquisition_channel", pa.string(), True, "How the customer was acquired."),
    _col("verified_buyer", pa.bool_(), True, "Whether the author is a verified buyer."),
    _col("author_hash", pa.string(), True, "Salted hash of the author; never the name."),
)
FEEDBACK_FIELDS = tuple(c.name for c in FEEDBACK_COLUMNS)
REQUIRED_FEEDBACK_FIELDS = tuple(c.name for c in FEEDBACK_COLUMNS if not c.nullable)

INGEST_COLUMNS = (
    _col("created_date", pa.date32(), False, "UTC day of created_at; Delta partition column."),
    _col("source_file", pa.string(), False, "Landing-zone file the row came from."),
    _col("source_row", pa.int64(), False, "1-based row (line) number in that file."),
    _col("content_hash", pa.string(), False, "Hash of the canonical fields; a changed re-delivery updates the row."),
    _col("ingested_at", UTC_TS, False, "When this version of the row was merged."),
)

RAW_FEEDBACK = Table(
    "raw_feedback",
    FEEDBACK_COLUMNS + INGEST_COLUMNS,
    key=("event_id",),
    partition_by=("created_date",),
    description="Canonical customer feedback, merged on event_id from landing-zone files.",
)

QUARANTINE = Table(
    "quarantine",
    (
        _col("source_file", pa.string(), False),
        _col("source_row", pa.int64(), False),
        _col("mapping", pa.string(), False, "Name of the source mapping used to read the file."),
        _col("reason", pa.string(), False, "Why the row was rejected, readable by a person."),
        _col("event_id", pa.string(), True),
        _col("raw_record", pa.string(), True, "The row as read, JSON-encoded (truncated to 4 KB)."),
        _col("quarantined_at", UTC_TS, False),
    ),
    key=("source_file", "source_row"),
    description="Rows that could not become feedback, with the reason. Nothing is dropped silently.",
)

LANDING_FILES = Table(
    "landing_files",
    (
        _col("file_digest", pa.string(), False, "SHA-256 of the file's bytes: the same file twice is one file."),
        _col("path", pa.string(), False),
        _col("mapping", pa.string(), False),
        _col("rows_valid", pa.int64(), False),
        _col("rows_quarantined", pa.int64(), False),
        _col("raw_version", pa.int64(), True, "raw_feedback Delta version the file landed in."),
        _col("ingested_at", UTC_TS, False),
    ),
    key=("file_digest",),
    description="Ledger of landing-zone files already ingested.",
)

RELEASE_ARTIFACTS = Table(
    "release_artifacts",
    (
        _col("flag_key", pa.string(), False, "Feature flag that governs exposure of this release."),
        _col("version", pa.string(), False, "Release / app version."),
        _col("product", pa.string(), True, "Product or app id the release ships in."),
        _col("released_at", UTC_TS, False, "When the release went live."),
        _col("code_commit", pa.string(), True),
        _col("notebook_commit", pa.string(), True),
        _col("model_name", pa.string(), True),
        _col("model_version", pa.string(), True),
        _col("surfaces", pa.list_(pa.string()), True, "Topics this release touches; empty = any high-risk."),
        _col("ladder", pa.list_(pa.int16()), False, "Rollout ladder, e.g. [100, 25, 5, 0]."),
        _col("fallback_variant", pa.string(), True, "Variant to switch to at the bottom of the ladder."),
        _col("adoption", pa.string(), True,
             "randomized (the flag assigns users: same-weeks baselines) | self_selected (users choose when to update, "
             "as app-store versions: age-matched baselines)."),
        _col("owner", pa.string(), True),
        _col("expires_at", UTC_TS, True, "Flag expiry; a governance check names the owner after it."),
        _col("registered_at", UTC_TS, False),
    ),
    key=("flag_key", "version"),
    description="One row per release of a flag: what shipped, who owns it, how to step it down.",
)

ATTRIBUTION_COLUMNS = (
    _col("release_version", pa.string(), True, "Release cohort the row is attributed to; null if none."),
    _col("attributed_flag", pa.string(), True, "Flag of that release."),
    _col("attribution", pa.string(), False, "version | time | none"),
    _col("cohort", pa.string(), False, "Cohort dimensions as 'dim=value|dim=value'."),
    _col("enriched_at", UTC_TS, False, "When attribution last ran for the row; downstream watermark."),
)

RAW_FIELDS_CARRIED = tuple(
    c for c in RAW_FEEDBACK.columns if c.name not in ("source_file", "source_row")
)

ENRICHED_FEEDBACK = Table(
    "enriched_feedback",
    RAW_FIELDS_CARRIED + ATTRIBUTION_COLUMNS,
    key=("event_id",),
    partition_by=("created_date",),
    description="Feedback attributed to the release cohort that produced it.",
)

SCORE_COLUMNS = (
    _col("sentiment_score", pa.float32(), False, "-1 (negative) .. 1 (positive)."),
    _col("sentiment_label", pa.string(), False, "negative | neutral | positive"),
    _col("confidence", pa.float32(), False, "0..1: how sure the scorer is of the label."),
    _col("label_source", pa.string(), False, "rating | text | rating+text: what decided the label."),
    _col("issue_category", pa.string(), False, "Topic from the taxonomy, or 'other'."),
    _col("affected_surface", pa.string(), True, "Product surface the topic belongs to, if any."),
    _col("topic_excluded", pa.bool_(), False, "Topic is unrelated to releases (shipping, pricing, ...)."),
    _col("high_risk", pa.bool_(), False, "Topic sits on a high-risk surface (checkout, search, ...)."),
    _col("urgency", pa.string(), True, "low | medium | high (LLM scorers)."),
    _col("intent", pa.string(), True, "complaint | praise | question | ... (LLM scorers)."),
    _col("scorer", pa.string(), False, "Scorer name."),
    _col("scorer_version", pa.string(), False, "Scorer version: code, parameters and training data."),
)
SCORE_FIELDS = tuple(c.name for c in SCORE_COLUMNS)

SCORED_SENTIMENT = Table(
    "scored_sentiment",
    ENRICHED_FEEDBACK.columns + SCORE_COLUMNS,
    key=("event_id",),
    partition_by=("created_date",),
    description="Attributed feedback with sentiment, topic, confidence and surface.",
)

ALL_COHORTS = "all"

SENTIMENT_DAILY = Table(
    "sentiment_daily",
    (
        _col("flag_key", pa.string(), False),
        _col("release_version", pa.string(), False),
        _col("cohort", pa.string(), False, "A cohort as in enriched_feedback; 'all' is their sum, never stored."),
        _col("created_date", pa.date32(), False, "UTC day of the rows (scored_sentiment's partition); Delta partition column."),
        _col("bucket_end", UTC_TS, False,
             "End of the hour (bucket_end - 1 h, bucket_end] the rows were written in: windows ending on the hour "
             "never split a bucket."),
        _col("age_step", pa.int32(), False, "ceil((created_at - released_at) / 6 h), at least 0: age-matched baselines."),
        _col("sentiment_label", pa.string(), False, "negative | neutral | positive"),
        _col("issue_category", pa.string(), False, "Topic from the taxonomy, or 'other'."),
        _col("repeat_vote", pa.bool_(), False,
             "Rows of an author already counted for this flag, release and cohort (one vote per author)."),
        _col("n_relevant", pa.int64(), False, "Rows on topics that are not excluded."),
        _col("n_excluded", pa.int64(), False, "Rows on excluded topics (shipping, pricing, ...)."),
        _col("n_high_risk", pa.int64(), False, "Relevant rows on a high-risk surface or one of the release's surfaces."),
        _col("n_urgency_high", pa.int64(), False, "Relevant rows an LLM scorer marked high urgency."),
        _col("n_urgency_known", pa.int64(), False, "Relevant rows with an urgency."),
        _col("n_rated", pa.int64(), False, "Rows (relevant or not) that carry the customer's rating."),
        _col("n_authors", pa.int64(), False, "Rows (relevant or not) with a known author."),
        _col("confidence_sum", pa.float64(), False, "Sum of the scorer's confidence over relevant rows."),
        _col("sentiment_sum", pa.float64(), False, "Sum of sentiment_score over relevant rows."),
    ),
    key=("flag_key", "release_version", "cohort", "created_date", "bucket_end", "age_step", "sentiment_label",
         "issue_category", "repeat_vote"),
    partition_by=("created_date",),
    description="Scored feedback summed per flag x release x cohort x hour x age x label x topic; what baselines, "
                "decisions and replay read instead of rows. Rewritten a day at a time, only for the days a run touched.",
)

AUTHOR_VOTES = Table(
    "author_votes",
    (
        _col("flag_key", pa.string(), False),
        _col("release_version", pa.string(), False),
        _col("cohort", pa.string(), False),
        _col("author_hash", pa.string(), False),
        _col("first_event_id", pa.string(), False, "The author's first feedback here: the one that counts."),
        _col("first_at", UTC_TS, False),
        _col("first_date", pa.date32(), False, "UTC day of first_at; Delta partition column: a day's rows look up that day only."),
    ),
    key=("flag_key", "release_version", "cohort", "author_hash"),
    partition_by=("first_date",),
    description="Each known author's first word per flag, release and cohort (one vote per author in sentiment_daily).",
)

NEGATIVES_DAILY = Table(
    "negatives_daily",
    (
        _col("flag_key", pa.string(), False),
        _col("release_version", pa.string(), False),
        _col("cohort", pa.string(), False, "A cohort as in enriched_feedback; 'all' is their sum, never stored."),
        _col("created_date", pa.date32(), False, "UTC day of the rows; Delta partition column."),
        _col("repeat_vote", pa.bool_(), False, "Rows of an author already counted (one vote per author)."),
        _col("kind", pa.string(), False,
             "total: relevant negatives | term: of them, those containing `value` | quote: an evidence candidate "
             "| author: `value`'s repeat posts"),
        _col("value", pa.string(), False, "The term, the quote as written (redacted when shown), the author_hash; '' for total."),
        _col("issue_category", pa.string(), False, "A quote's topic; '' for the other kinds."),
        _col("count", pa.int64(), False, "Rows: negatives (total), negatives containing the term (term), 1 (quote), posts (author)."),
        _col("confidence", pa.float64(), True, "A quote's scorer confidence: the most confident are shown first."),
        _col("created_at", UTC_TS, True, "A quote's time (earliest first on equal confidence)."),
    ),
    key=("flag_key", "release_version", "cohort", "created_date", "repeat_vote", "kind", "value", "issue_category"),
    partition_by=("created_date",),
    description="What each day's relevant negatives say in words, per flag x release x cohort: term document counts "
                "(new terms), evidence candidates, repeat authors (review bombs). Rewritten with sentiment_daily's days.",
)

COHORT_BASELINES = Table(
    "cohort_baselines",
    (
        _col("flag_key", pa.string(), False),
        _col("release_version", pa.string(), False),
        _col("cohort", pa.string(), False, "'all' for the flag as a whole."),
        _col("baseline_kind", pa.string(), False,
             "concurrent (previous release, same weeks) | last_good (most-reviewed earlier good release, same weeks) | "
             "age_matched (earlier good releases at the same age since release) | rolling"),
        _col("release_live", pa.bool_(), False, "The judged release is still the flag's newest at as_of."),
        _col("baseline_versions", pa.string(), True, "Versions the baseline is made of."),
        _col("window_start", UTC_TS, False),
        _col("window_end", UTC_TS, False),
        _col("n", pa.int64(), False, "Relevant (non-excluded) feedback rows in the current cohort."),
        _col("n_negative", pa.int64(), False),
        _col("negative_share", pa.float64(), True),
        _col("n_negative_high_risk", pa.int64(), False, "Negatives on a high-risk surface of the flag."),
        _col("n_excluded", pa.int64(), False, "Rows on excluded topics, not counted in n."),
        _col("n_excluded_negative", pa.int64(), False),
        _col("mean_confidence", pa.float64(), True),
        _col("mean_sentiment", pa.float64(), True),
        _col("baseline_n", pa.int64(), False),
        _col("baseline_n_negative", pa.int64(), False),
        _col("baseline_negative_share", pa.float64(), True),
        _col("baseline_mean_sentiment", pa.float64(), True),
        _col("top_topics", pa.string(), True, "JSON list of [topic, negatives] in the current cohort."),
        _col("evidence", pa.string(), True, "JSON list of up to 5 negative quotes on the top topic, after a "
             "'suspected review bomb: ...' note when few authors wrote a burst of the negatives."),
        _col("new_terms", pa.string(), True,
             "JSON list of [term, z]: words whose share of negative feedback rose most against the baseline."),
        _col("n_authors", pa.int64(), True, "Distinct known authors behind n (one vote per author and cohort)."),
        _col("mean_urgency_high", pa.float64(), True, "Share of negatives marked high urgency (LLM scorers)."),
        _col("as_of", UTC_TS, False),
    ),
    key=("flag_key", "release_version", "cohort", "baseline_kind"),
    description="Current release cohort vs its baseline, per flag x cohort.",
)

DECISIONS = Table(
    "rollback_decisions",
    (
        _col("decision_id", pa.string(), False, "Deterministic hash of the decision's inputs."),
        _col("flag_key", pa.string(), False),
        _col("release_version", pa.string(), False),
        _col("cohort", pa.string(), False),
        _col("baseline_kind", pa.string(), False),
        _col("baseline_versions", pa.string(), True, "Releases the baseline is made of."),
        _col("window_start", UTC_TS, False),
        _col("window_end", UTC_TS, False),
        _col("negative_share", pa.float64(), True),
        _col("baseline_negative_share", pa.float64(), True),
        _col("relative_rise", pa.float64(), True),
        _col("n", pa.int64(), False),
        _col("baseline_n", pa.int64(), False),
        _col("mean_confidence", pa.float64(), True),
        _col("statistic", pa.float64(), True, "Test statistic of the policy's test."),
        _col("bound", pa.float64(), True, "Lower confidence bound on the rise, where the policy has one."),
        _col("state", pa.string(), False, "act | hold | pass | insufficient_data"),
        _col("action", pa.string(), False,
             "none | hold_promotion | step_down | disable | switch_variant | block_release (superseded release marked bad)"),
        _col("target_rollout", pa.int16(), True, "Rollout % the action steps to, if any."),
        _col("severity", pa.string(), False, "none | low | moderate | severe"),
        _col("reason", pa.string(), False, "One sentence a product manager can read."),
        _col("top_topics", pa.string(), True),
        _col("evidence", pa.string(), True, "JSON list of 3-5 quotes, after a 'suspected review bomb: ...' note "
             "when few authors wrote a burst of the negatives."),
        _col("new_terms", pa.string(), True, "JSON list of [term, z]: what is new in the complaints."),
        _col("release_live", pa.bool_(), True, "False: a superseded release, judged on the feedback it still gets."),
        _col("policy_name", pa.string(), False),
        _col("policy_version", pa.string(), False),
        _col("code_commit", pa.string(), True),
        _col("notebook_commit", pa.string(), True),
        _col("model_name", pa.string(), True),
        _col("model_version", pa.string(), True),
        _col("scorer_version", pa.string(), True),
        _col("input_versions", pa.string(), True, "JSON {table: Delta version} of the inputs."),
        _col("run_id", pa.string(), True, "Dagster run id, when decided under Dagster."),
        _col("decided_at", UTC_TS, False),
    ),
    key=("decision_id",),
    description="One row per flag x cohort evaluation: what the policy recommends and why.",
)

BUSINESS_KPIS = Table(
    "business_kpis",
    (
        _col("flag_key", pa.string(), False),
        _col("cohort", pa.string(), False, "A cohort label as in enriched_feedback, or 'all'."),
        _col("kpi", pa.string(), False, "e.g. conversion, cart_abandonment, support_contact_rate"),
        _col("current", pa.float64(), False, "Value for the live release."),
        _col("baseline", pa.float64(), False, "Value for the baseline."),
        _col("higher_is_bad", pa.bool_(), False, "True for abandonment or contact rates, False for conversion."),
    ),
    key=("flag_key", "cohort", "kpi"),
    description="Optional business KPIs per flag and cohort: moving the same way corroborates and raises severity.",
)

FLAG_ACTIONS = Table(
    "flag_actions",
    (
        _col("action_id", pa.string(), False, "Deterministic: the decision id for automatic actions."),
        _col("decision_id", pa.string(), True, "Decision that caused the action; null for human-only actions."),
        _col("flag_key", pa.string(), False),
        _col("release_version", pa.string(), True),
        _col("cohort", pa.string(), True),
        _col("backend", pa.string(), False, "flagd | unleash | launchdarkly | webhook"),
        _col("kind", pa.string(), False, "step_down | disable | switch_variant | force | hold | release_hold | approve | reject | promote"),
        _col("status", pa.string(), False, "pending | applied | failed | awaiting_approval | rejected | skipped"),
        _col("before_enabled", pa.bool_(), True),
        _col("before_rollout", pa.int16(), True),
        _col("before_variant", pa.string(), True),
        _col("target_rollout", pa.int16(), True),
        _col("target_variant", pa.string(), True),
        _col("after_enabled", pa.bool_(), True),
        _col("after_rollout", pa.int16(), True),
        _col("after_variant", pa.string(), True),
        _col("actor", pa.string(), False, "auto, or human:<name>"),
        _col("approver", pa.string(), True),
        _col("reason", pa.string(), True),
        _col("attempts", pa.int32(), False),
        _col("last_error", pa.string(), True, "Backend error text, secrets redacted."),
        _col("hold_until", UTC_TS, True),
        _col("lineage", pa.string(), True, "JSON: decision lineage plus the Dagster run id."),
        _col("created_at", UTC_TS, False),
        _col("updated_at", UTC_TS, False),
    ),
    key=("action_id",),
    description="Audit trail of every flag change and human override, written before and after the call.",
)

TABLES = {
    t.name: t
    for t in (RAW_FEEDBACK, QUARANTINE, LANDING_FILES, RELEASE_ARTIFACTS, ENRICHED_FEEDBACK, SCORED_SENTIMENT, SENTIMENT_DAILY,
              AUTHOR_VOTES, NEGATIVES_DAILY, COHORT_BASELINES, DECISIONS, BUSINESS_KPIS, FLAG_ACTIONS)
}
