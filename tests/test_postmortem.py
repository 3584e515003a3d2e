"""The postmortem of the demo's acting decision: its numbers recomputed from the Delta versions it names."""

from __future__ import annotations

import json
import shutil

from rollback_assets.cli import main
from rollback_assets.core import postmortem
from rollback_assets.core.lake import Lake
from rollback_assets.core.schemas import DECISIONS


def _acting(first_run):
    d = first_run.tables["rollback_decisions"]
    return d[(d.run_id == first_run.run_id) & (d.state == "act")].iloc[0]


def test_recomputed_figures_equal_the_stored_decision(first_run, demo_env):
    decision = _acting(first_run)
    report = postmortem.build(demo_env.lake, decision.decision_id)
    assert report.matches, report.figures
    figures = report.figures.set_index("figure")
    assert figures.loc["n", "recomputed"] == decision.n and figures.loc["baseline_n", "recomputed"] == decision.baseline_n
    assert abs(figures.loc["relative_rise", "recomputed"] - decision.relative_rise) < 1e-12
    # The named version is the one read, not the newest: lineage names scored_sentiment@<version>.
    versions = json.loads(decision.input_versions)
    assert report.lineage["scored_sentiment@"] == versions["scored_sentiment"] == first_run.versions["scored_sentiment"]
    assert report.lineage["code_commit"] == decision.code_commit
    assert "device=mobile|locale=de-DE" in report.sentence and "step down to 25 %" in report.sentence


def test_a_tampered_decision_is_reported_as_a_mismatch(first_run, demo_env, tmp_path):
    """The comparison can fail: the same lake with the decision's n changed does not match."""
    decision = _acting(first_run)
    copy = tmp_path / "lake"
    shutil.copytree(demo_env.lake_root, copy)
    lake = Lake(copy)
    rows = lake.read(DECISIONS)
    rows.loc[rows.decision_id == decision.decision_id, "n"] += 1
    lake.overwrite(DECISIONS, rows)
    report = postmortem.build(lake, decision.decision_id)
    assert not report.matches and list(report.figures[~report.figures.matches].figure) == ["n"]
    assert postmortem.match_statement(report).startswith("MISMATCH")


def test_cli_writes_self_contained_html_and_markdown(first_run, demo_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROLLBACK_LAKE", str(demo_env.lake_root))
    decision = _acting(first_run)
    code = main(["postmortem", decision.decision_id, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "match the stored decision" in out
    page = (tmp_path / f"postmortem-{decision.decision_id}.html").read_text()
    markdown = (tmp_path / f"postmortem-{decision.decision_id}.md").read_text()
    assert page.count("<svg") == 1 and "src=" not in page and "<link" not in page  # nothing fetched from elsewhere
    for text in ("step down to 25 %", "Per-cohort evaluations", "Flag actions", "Lineage", "match the stored decision"):
        assert text in page and text in markdown
    quotes = json.loads(decision.evidence)
    assert any(q[:40] in markdown for q in quotes)
    assert f"postmortem-{decision.decision_id}.svg" in markdown
