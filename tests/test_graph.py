"""The whole Dagster graph on generated demo data: decisions, checks, metadata, lineage, reruns, increments."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from rollback_assets.core.baselines import BASELINE_INPUT_COLUMNS, compute_baselines
from rollback_assets.core.policy import PolicyConfig
from rollback_assets.core.schemas import (
    BUSINESS_KPIS, COHORT_BASELINES, DECISIONS, LANDING_FILES, RAW_FEEDBACK, RELEASE_ARTIFACTS, SCORED_SENTIMENT,
    SENTIMENT_DAILY,
)
from rollback_assets.defs.checks import GUARDRAIL_CHECK
from rollback_assets.defs.resources import LakeResource, LandingZoneResource
from rollback_assets.defs.sensors import landing_zone_sensor

from conftest import capture, run_job

BAD_COHORT = "device=mobile|locale=de-DE"
DELTA_ASSETS = {
    "raw_feedback": RAW_FEEDBACK, "release_artifacts": RELEASE_ARTIFACTS, "enriched_feedback": None,
    "scored_sentiment": SCORED_SENTIMENT, "sentiment_daily": SENTIMENT_DAILY, "cohort_baselines": COHORT_BASELINES,
    "rollback_decisions": DECISIONS, "business_kpis": BUSINESS_KPIS,
}
COUNT_KEYS = {"raw_feedback": "rows_valid", "enriched_feedback": "rows_attributed", "scored_sentiment": "rows_scored",
              "sentiment_daily": "scored_rows_read"}


def _decisions(run):
    frame = run.tables["rollback_decisions"]
    return frame[frame.run_id == run.run_id]


# ------------------------------------------------------------------------------------------------ decisions
def test_bad_release_acts_on_its_cohort_only(first_run):
    d = _decisions(first_run)
    assert len(d) > 0
    acting = d[d.state == "act"]
    assert list(zip(acting.flag_key, acting.release_version, acting.cohort)) == [("checkout-redesign", "5.2", BAD_COHORT)]
    row = acting.iloc[0]
    assert row.action == "step_down"
    assert row.target_rollout == 25
    assert row.n >= 200
    assert "checkout" in row.reason
    evidence = json.loads(row.evidence)
    assert 3 <= len(evidence) <= 5


def test_good_releases_and_shipping_incident_do_not_act(first_run):
    d = _decisions(first_run)
    for flag in ("reco-model", "search-v2"):
        rows = d[d.flag_key == flag]
        assert len(rows) > 0, f"{flag} was not evaluated"
        assert set(rows.state) <= {"pass", "insufficient_data", "hold"}
        assert not set(rows.state) & {"act"}
    # The courier strike (days 36-41) is in every window: it must show up as excluded rows, not as action.
    baselines = first_run.tables["cohort_baselines"]
    all_rows = baselines[baselines.cohort == "all"]
    assert (all_rows.n_excluded_negative > 0).all()
    checkout_all = d[(d.flag_key == "checkout-redesign") & (d.cohort == "all")]
    assert set(checkout_all.state) != {"act"}


def test_guardrail_check_fails_for_bad_flag_only(first_run):
    checks = first_run.checks
    bad = checks[GUARDRAIL_CHECK]
    assert bad.passed is False
    assert bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["cohorts_acting"].value == 1
    assert list(bad.metadata["acting_flags"].value) == ["checkout-redesign"]
    states = {r.data["flag"]: (r.data["state"], r.data["summary"]) for r in bad.metadata["by_flag"].value.records}
    assert states["checkout-redesign"][0] == "act"
    for flag in ("reco-model", "search-v2"):
        assert states[flag][0] == "pass"
        assert states[flag][1].startswith(f"Flag {flag}: no cohort of release")
    assert checks["raw_feedback_schema"].passed is True
    assert checks["raw_feedback_unique_event_id"].passed is True


def test_tripped_guardrail_is_a_business_signal_not_a_crash(first_run):
    """The run succeeds; the red check says in one sentence who, how much and what happens, with links."""
    assert first_run.result.success, "a tripped guardrail must not fail the run"
    bad = first_run.checks[GUARDRAIL_CHECK]
    decision = _decisions(first_run).query("state == 'act'").iloc[0]
    text = bad.description
    for part in ("checkout-redesign", "5.2", BAD_COHORT, "step down to 25 %", decision.decision_id,
                 f"{decision.relative_rise:+.0%}", f"{decision.bound:+.0%}"):
        assert part in text, f"{part!r} missing from {text!r}"
    meta = {k: v.value for k, v in bad.metadata.items()}
    assert meta["relative_rise"] == round(decision.relative_rise, 3) and meta["n"] == decision.n
    assert meta["relative_rise_lower_bound"] == round(decision.bound, 3)
    assert meta["decision_id"] == meta["flag_action_id"] == decision.decision_id
    assert (meta["flag"], meta["release"], meta["cohort"], meta["action"], meta["target_rollout"]) == (
        "checkout-redesign", "5.2", BAD_COHORT, "step_down", 25)


def test_descriptions_everywhere(graph_defs):
    repo = graph_defs.get_repository_def()
    graph = repo.asset_graph
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, f"asset {key.to_user_string()} has no description"
    for check_key in graph.asset_check_keys:
        assert graph.get_check_spec(check_key).description, f"check {check_key.name} has no description"
    for job in repo.get_all_jobs():
        if not job.name.startswith("__"):
            assert job.description, f"job {job.name} has no description"
    for instigator in [*repo.sensor_defs, *repo.schedule_defs]:
        assert instigator.description, f"{instigator.name} has no description"


# ------------------------------------------------------------------------------------------------ metadata
def test_every_materialization_has_version_counts_and_data_version(first_run):
    mats = first_run.materializations
    assert set(mats) == set(DELTA_ASSETS) | {"sentiment_model"}
    for name, mat in mats.items():
        assert mat.tags.get("dagster/data_version"), f"{name} has no data version"
        meta = mat.metadata
        if name == "sentiment_model":
            assert meta["trained"].value is True
            assert meta["rated_rows"].value > 0
            assert mat.tags["dagster/data_version"] == meta["model_version"].value
            continue
        assert "delta_version" in meta, f"{name} has no delta_version"
        version = meta["delta_version"].value
        assert version == first_run.versions[name], f"{name}: metadata {version} vs table {first_run.versions[name]}"
        if name == "rollback_decisions":  # by design: a hash of the decision ids, so reruns share it
            assert len(mat.tags["dagster/data_version"]) == 16
        else:
            assert mat.tags["dagster/data_version"] == f"{name}@{version}"
        count_key = COUNT_KEYS.get(name, "dagster/row_count")
        assert count_key in meta, f"{name} has no {count_key}"
        if name != "business_kpis":  # the demo configures no KPI file: an empty, declared table
            assert meta[count_key].value > 0


def test_counts_metadata_matches_tables(first_run, demo_env):
    mats = first_run.materializations
    raw = first_run.tables["raw_feedback"]
    assert mats["raw_feedback"].metadata["rows_valid"].value == len(raw) == len(demo_env.frame)
    assert mats["raw_feedback"].metadata["rows_inserted"].value == len(raw)
    assert mats["enriched_feedback"].metadata["rows_attributed"].value == len(raw)
    assert mats["scored_sentiment"].metadata["rows_scored"].value == len(raw)
    # The first run has several chunks (conftest.first_run): scored in the worker, summed while scoring.
    assert mats["scored_sentiment"].metadata["scored_in"].value == "worker process"
    assert mats["sentiment_daily"].metadata["summed_while_scoring"].value is True
    assert mats["sentiment_daily"].metadata["scored_rows_read"].value == len(raw)
    assert mats["cohort_baselines"].metadata["dagster/row_count"].value == len(first_run.tables["cohort_baselines"])
    assert mats["rollback_decisions"].metadata["dagster/row_count"].value == len(_decisions(first_run))


def test_malformed_file_lands_in_quarantine_and_metadata(first_run):
    q = first_run.tables["quarantine"]
    malformed = q[q.source_file.str.endswith("feedback_malformed.jsonl")]
    assert sorted(malformed.source_row) == list(range(1, 9))
    assert malformed.reason.str.len().gt(0).all()
    reasons = " / ".join(malformed.reason)
    for expected in ("missing event id", "missing text", "rating out of range", "unparsable time", "oversized text",
                     "unknown columns in strict mode", "invalid JSON", "undecodable bytes"):
        assert expected in reasons
    meta = first_run.materializations["raw_feedback"].metadata
    assert meta["rows_quarantined"].value == len(q) == 8
    assert sum(meta["quarantine_reasons"].value.values()) == 8
    assert 0 < meta["quarantine_share"].value < 0.01
    assert first_run.checks["raw_feedback_quarantine_share"].metadata["quarantined_rows"].value == 8


# ------------------------------------------------------------------------------------------------ lineage
def test_decisions_carry_lineage(first_run):
    d = _decisions(first_run)
    assert (d.run_id == first_run.run_id).all()
    assert d.policy_version.str.startswith("sequential-v1-").all()
    assert d.scorer_version.notna().all() and d.scorer_version.str.len().gt(0).all()
    # rated reviews are labelled by their stars, tickets by the text model the graph trained
    assert set(d.scorer_version.iloc[0].split(",")) == {
        "rating-v1", first_run.materializations["sentiment_model"].metadata["model_version"].value}
    act = d[d.state == "act"].iloc[0]
    assert act.code_commit and act.notebook_commit
    versions = json.loads(act.input_versions)
    assert set(versions) == {"raw_feedback", "enriched_feedback", "scored_sentiment", "cohort_baselines", "release_artifacts",
                             "business_kpis"}
    for table, version in versions.items():
        assert isinstance(version, int)
        assert version == first_run.versions[table], table


def test_decision_metadata_people_can_read(first_run, demo_env):
    """Lineage, evidence, tables and series are in the materialization, not only in the Delta rows."""
    meta = first_run.materializations["rollback_decisions"].metadata
    act = _decisions(first_run).query("state == 'act'").iloc[0]
    assert (meta["code_commit"].value, meta["notebook_commit"].value) == (act.code_commit, act.notebook_commit)
    assert meta["scorer_version"].value == act.scorer_version and meta["policy_version"].value == act.policy_version
    for table, version in json.loads(act.input_versions).items():
        assert meta[f"input_version/{table}"].value == version
    assert meta["flag_action_ids"].value == [act.decision_id]
    assert meta["postmortem"].value == f"reports/postmortems/postmortem-{act.decision_id}.html"  # postmortems writes it
    lineage = [r.data for r in meta["lineage"].records]
    assert lineage[0]["decision_id"] == act.decision_id and lineage[0]["code_commit"] == act.code_commit
    # evidence: one bullet per distinct quote, none repeated
    evidence = meta["evidence"].value
    bullets = [line for line in evidence.splitlines() if line.startswith("- ")]
    assert 1 <= len(bullets) <= 5 and len(set(bullets)) == len(bullets)
    assert act.decision_id in evidence
    # tables carry their column schema; paths are relative to the lake root
    actions = meta["actions"]
    assert {c.name for c in actions.schema.columns} >= {"flag_key", "cohort", "relative_rise", "reason"}
    for name, mat in first_run.materializations.items():
        if "delta_path" in mat.metadata:
            path = mat.metadata["delta_path"].value
            assert str(demo_env.lake_root) not in path and path == name, (name, path)


def test_per_flag_series_under_stable_keys(first_run):
    meta = first_run.materializations["cohort_baselines"].metadata
    baselines = first_run.tables["cohort_baselines"]
    for flag in ("checkout-redesign", "reco-model", "search-v2"):
        row = baselines[(baselines.flag_key == flag) & (baselines.cohort == "all") & baselines.release_live].iloc[0]
        assert meta[f"{flag}/negative_share"].value == round(row.negative_share, 4)
        assert meta[f"{flag}/n"].value == row.n
        assert isinstance(meta[f"{flag}/relative_rise"].value, float)


def test_time_travel_reproduces_baseline_counts(first_run, demo_env):
    lake = demo_env.lake
    d = _decisions(first_run)
    versions = json.loads(d.input_versions.iloc[0])
    stored = lake.read(COHORT_BASELINES, version=versions["cohort_baselines"])
    # Every decision's counts are the stored baseline row it was made from.
    joined = d.merge(stored, on=["flag_key", "release_version", "cohort", "baseline_kind"], suffixes=("", "_b"))
    assert len(joined) == len(d)
    assert (joined.n == joined.n_b).all() and (joined.baseline_n == joined.baseline_n_b).all()
    # Recomputing from the scored table and releases as they were reproduces the stored baselines exactly.
    columns = list(dict.fromkeys([*BASELINE_INPUT_COLUMNS, "text"]))
    scored = lake.read(SCORED_SENTIMENT, columns=columns, version=versions["scored_sentiment"])
    releases = lake.read(RELEASE_ARTIFACTS, version=versions["release_artifacts"])
    as_of = pd.Timestamp(stored.as_of.iloc[0])
    again = compute_baselines(scored, releases, as_of, PolicyConfig.load().windows)
    key = ["flag_key", "release_version", "cohort", "baseline_kind"]
    counts = ["n", "n_negative", "n_excluded", "baseline_n", "baseline_n_negative"]
    left = stored[key + counts].sort_values(key).reset_index(drop=True)
    right = again[key + counts].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


# ------------------------------------------------------------------------------------------------ reruns
def test_rerun_on_unchanged_data_is_idempotent(first_run, second_run):
    assert second_run.run_id != first_run.run_id
    raw_meta = second_run.materializations["raw_feedback"].metadata
    assert raw_meta["files_ingested"].value == 0
    assert raw_meta["rows_inserted"].value == 0
    assert second_run.versions["raw_feedback"] == first_run.versions["raw_feedback"]
    assert second_run.materializations["enriched_feedback"].metadata["rows_attributed"].value == 0
    assert second_run.materializations["scored_sentiment"].metadata["rows_scored"].value == 0
    first_ids = json.loads(json.dumps(first_run.materializations["rollback_decisions"].metadata["actionable_decision_ids"].value))
    second_ids = second_run.materializations["rollback_decisions"].metadata["actionable_decision_ids"].value
    assert first_ids and first_ids == second_ids
    assert second_run.materializations["rollback_decisions"].metadata["decisions_new"].value == 0
    before, after = first_run.tables["rollback_decisions"], second_run.tables["rollback_decisions"]
    assert len(after) == len(before)
    assert set(after.decision_id) == set(before.decision_id)
    # The first record (and its run id) is kept.
    assert set(after.run_id) == {first_run.run_id}
    assert (
        second_run.materializations["rollback_decisions"].tags["dagster/data_version"]
        == first_run.materializations["rollback_decisions"].tags["dagster/data_version"]
    )


def test_new_landing_file_is_ingested_alone(second_run, demo_env, graph_defs, dagster_instance):
    lake = demo_env.lake
    raw_before = lake.read(RAW_FEEDBACK, columns=["event_id"])
    extra = demo_env.frame.drop(columns="_truth").head(25).copy()
    extra["event_id"] = [f"extra-{i:03d}" for i in range(len(extra))]
    path = demo_env.landing / "feedback_jsonl" / "feedback_extra.jsonl"
    with open(path, "w") as handle:
        for record in extra.to_dict("records"):
            record["created_at"] = record["created_at"].isoformat()
            record["rating"] = None if pd.isna(record["rating"]) else int(record["rating"])
            handle.write(json.dumps(record) + "\n")

    resources = {"lake": LakeResource(root=str(demo_env.lake_root)), "landing": LandingZoneResource(path=str(demo_env.landing))}
    context = dg.build_sensor_context(instance=dagster_instance, resources=resources)
    requests = landing_zone_sensor(context)
    assert isinstance(requests, list) and len(requests) == 1
    request = requests[0]
    assert request.run_config["ops"]["raw_feedback"]["config"]["files"] == [str(path)]

    result = run_job(graph_defs, dagster_instance, run_config=request.run_config)
    third = capture(result, lake)
    raw_meta = third.materializations["raw_feedback"].metadata
    assert raw_meta["files_ingested"].value == 1
    assert raw_meta["rows_valid"].value == 25 and raw_meta["rows_inserted"].value == 25
    assert len(lake.read(RAW_FEEDBACK, columns=["event_id"])) == len(raw_before) + 25
    enriched = third.materializations["enriched_feedback"].metadata
    assert enriched["full_reattribution"].value is False
    assert enriched["rows_attributed"].value == 25
    assert third.materializations["scored_sentiment"].metadata["rows_scored"].value == 25
    assert third.materializations["scored_sentiment"].metadata["scored_in"].value == "step process"  # one chunk
    daily = third.materializations["sentiment_daily"].metadata
    assert daily["summed_while_scoring"].value is False and daily["full_rebuild"].value is False
    ledger = lake.read(LANDING_FILES)
    assert ledger.path.tolist().count(str(path)) == 1
    assert len(ledger) == len(demo_env.files) + 1
    # and the sensor now has nothing left to ask for
    assert isinstance(landing_zone_sensor(dg.build_sensor_context(instance=dagster_instance, resources=resources)),
                      dg.SkipReason)


def test_code_references_link_to_git_when_configured(monkeypatch, tmp_path):
    from rollback_assets.definitions import build_definitions

    monkeypatch.setenv("ROLLBACK_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("ROLLBACK_GIT_URL", "https://github.com/acme/rollback-assets")
    monkeypatch.setenv("ROLLBACK_GIT_BRANCH", "release")
    assets = build_definitions().resolve_assets_def("rollback_decisions")
    (reference,) = assets.specs_by_key[assets.key].metadata["dagster/code_references"].code_references
    assert reference.url.startswith("https://github.com/acme/rollback-assets/tree/release/rollback_assets/defs/assets.py#L")
