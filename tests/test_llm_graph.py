"""The LLM scorer selected through the Dagster resources (deployment `openai`), against the
OpenAI-compatible stub on a real loopback socket, with the real openai SDK."""

import json
import shutil

import dagster as dg
import pytest

from rollback_assets.core.schemas import DECISIONS, SCORED_SENTIMENT
from rollback_assets.definitions import build_definitions

from conftest import make_demo_env, run_job, set_env
from llm_stub_server import StubServer

KEY = "sk-graph-test-7d1f0c2e9a"


@pytest.fixture(scope="module")
def stub():
    with StubServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def llm_env(tmp_path, monkeypatch, stub):
    env = make_demo_env(tmp_path, rows_per_day=40)
    set_env(monkeypatch, env)
    monkeypatch.setenv("ROLLBACK_DEPLOYMENT", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    stub.reset()
    return env


def _materialization_metadata(instance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.asset_materialization.metadata


def _check(result, name):
    return next(e.asset_check_evaluation_data for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.asset_check_evaluation_data.check_name == name)


def test_llm_scores_flow_into_rows_and_decision_lineage(llm_env, stub):
    instance = dg.DagsterInstance.ephemeral()
    result = run_job(build_definitions(), instance)
    scored_step = [e for e in result.all_events if e.step_key == "scored_sentiment" and e.event_type_value == "STEP_SUCCESS"]
    assert scored_step, "scored_sentiment must succeed through the LLM path"

    scored = llm_env.lake.read(SCORED_SENTIMENT, columns=["scorer", "scorer_version", "urgency", "intent", "label_source",
                                                          "rating"])
    # Rated reviews take the customer's stars and cost no tokens; the rest is read by the LLM.
    by_text = scored[scored.label_source == "text"]
    assert len(by_text) and scored.rating[scored.label_source == "rating"].notna().all()
    assert by_text.scorer_version.str.startswith("openai:").all() and by_text.rating.isna().all()
    assert (scored.scorer[scored.label_source == "rating"] == "rating").all()
    assert by_text.urgency.notna().all() and by_text.intent.notna().all()
    assert stub.stats()["requests"] > 0

    decisions = llm_env.lake.read(DECISIONS)
    assert decisions.scorer_version.str.contains("openai:").all()

    metadata = _materialization_metadata(instance, "scored_sentiment")
    stats = metadata["scorer_stats"].value
    assert stats["tokens_in"] > 0 and stats["fallback_rows"] == 0
    assert _check(result, "llm_budget_respected").passed
    every_value = json.dumps({k: str(v.value) for k, v in metadata.items()})
    assert KEY not in every_value
    assert all(KEY not in json.dumps(r["body"]) for r in stub.requests)


def test_rescoring_the_same_feedback_sends_no_requests(llm_env, stub):
    instance = dg.DagsterInstance.ephemeral()
    run_job(build_definitions(), instance)
    first = stub.stats()["requests"]
    assert first > 0
    # Lose the scored table: every row is scored again, and every answer comes from the Delta cache.
    shutil.rmtree(llm_env.lake.uri(SCORED_SENTIMENT))
    run_job(build_definitions(), instance)
    assert stub.stats()["requests"] == first
    assert _materialization_metadata(instance, "scored_sentiment")["scorer_stats"].value["cache_hits"] > 0


def test_exhausted_budget_falls_back_and_fails_the_warn_check(llm_env, stub, monkeypatch):
    monkeypatch.setenv("ROLLBACK_LLM_BUDGET_USD", "0.01")
    result = run_job(build_definitions(), dg.DagsterInstance.ephemeral())
    scored = llm_env.lake.read(SCORED_SENTIMENT, columns=["scorer_version", "label_source"])
    fallback = scored.scorer_version[scored.label_source == "text"].str.contains("fallback-from=openai")
    assert fallback.any() and (~fallback).any(), "spends up to the budget, then the offline scorer takes over"
    check = _check(result, "llm_budget_respected")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["budget_exhausted"].value is True
