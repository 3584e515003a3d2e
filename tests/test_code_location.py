"""The code location as Dagster loads it: no data read at load, honest code versions, core logs in the run."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pytest
import yaml

from rollback_assets.core import code_digest, pipeline, stats
from rollback_assets.core.lake import Lake
from rollback_assets.core.policy_config import PolicyConfig
from rollback_assets.defs.checks import GUARDRAIL_CHECK
from rollback_assets.defs.metadata import code_version

SHIPPED_INSTANCE = Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml"


def test_definitions_load_without_reading_the_lake(monkeypatch, tmp_path):
    """A flag registered after the code location loaded is judged by the next run: nothing at load
    depends on the lake, so there is nothing to reload."""
    def no_data(*args, **kwargs):
        raise AssertionError("the code location read the lake while loading")

    for method in ("read", "read_arrow", "exists", "dataset", "version"):
        monkeypatch.setattr(Lake, method, no_data)
    monkeypatch.setenv("ROLLBACK_LAKE", str(tmp_path / "lake"))
    from rollback_assets.definitions import build_definitions

    graph = build_definitions().get_repository_def().asset_graph
    assert dg.AssetCheckKey(dg.AssetKey("rollback_decisions"), GUARDRAIL_CHECK) in graph.asset_check_keys


def _edited(monkeypatch, module_name: str) -> None:
    """As if `module_name`'s source had been edited (its digest changes, nothing is written)."""
    real = code_digest.source_digest
    monkeypatch.setattr(code_digest, "source_digest",
                        lambda name: real(name) + ("-edited" if name == module_name else ""))


def test_code_version_covers_the_import_closure(monkeypatch):
    """rollback_decisions runs pipeline → policy → sequential_policy → stats: a changed statistic marks it
    stale even where `stats` is not named, and a module it never runs does not."""
    before = code_version(pipeline)
    _edited(monkeypatch, "rollback_assets.core.dashboard")
    assert code_version(pipeline) == before
    _edited(monkeypatch, stats.__name__)
    assert code_version(pipeline) != before


def test_policy_version_changes_with_the_rules_code(monkeypatch):
    """A changed statistic yields new decision ids (the id hashes the policy version)."""
    before = PolicyConfig.load().version
    _edited(monkeypatch, stats.__name__)
    assert PolicyConfig.load().version != before


def test_a_core_warning_reaches_the_runs_event_log():
    """With the shipped instance config, a warning the core logs during a run (here: settings read in the
    run with a typo'd variable) is an event of that run, at WARNING."""
    python_logs = yaml.safe_load(SHIPPED_INSTANCE.read_text())["python_logs"]

    @dg.asset
    def reads_settings() -> None:
        from rollback_assets.core.settings import Settings

        Settings.from_env({"ROLLBACK_POLICI": "policy.yaml"})

    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        result = dg.materialize([reads_settings], instance=instance)
        records = instance.all_logs(result.run_id)
    warnings = [r for r in records if r.level == logging.WARNING and "ROLLBACK_POLICI not a setting" in r.user_message]
    assert warnings, "the core's warning is not in the run's event log"


@pytest.mark.parametrize("name", ["rollback_assets.core.policy", "rollback_assets.core.pipeline"])
def test_closure_is_read_from_the_source(name):
    closure = code_digest.import_closure(name)
    assert "rollback_assets.core.stats" in closure  # lazily imported (policy.rule_named): still covered
    assert not any(m.startswith("rollback_assets.defs") for m in closure), "the core never imports the shell"
