"""`rollback-assets`: release registration, and the contract every command keeps (help on every option,
documented exit codes, one-line errors without a traceback, --json results, progress on stderr)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rollback_assets.cli import EXIT_USAGE, build_parser, main
from rollback_assets.core.lake import Lake
from rollback_assets.core.schemas import RELEASE_ARTIFACTS


def test_register_from_flags(tmp_path, capsys):
    lake_root = tmp_path / "lake"
    code = main([
        "--lake", str(lake_root), "release", "register", "--flag", "checkout-redesign", "--version", "5.3",
        "--released-at", "2026-10-01T08:00:00Z", "--product", "shop-app", "--code-commit", "abc123",
        "--surfaces", "checkout,payments", "--ladder", "100,50,10,0", "--owner", "team@acme.test",
        "--fallback-variant", "classic",
    ])
    assert code == 0
    assert "registered checkout-redesign 5.3" in capsys.readouterr().out
    rows = Lake(lake_root).read(RELEASE_ARTIFACTS)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row.flag_key, row.version, row["product"], row.code_commit) == ("checkout-redesign", "5.3", "shop-app", "abc123")
    assert list(row.ladder) == [100, 50, 10, 0] and list(row.surfaces) == ["checkout", "payments"]
    assert row.released_at == pd.Timestamp("2026-10-01T08:00:00Z")
    assert row.fallback_variant == "classic" and row.owner == "team@acme.test"

    # registering the same flag+version again updates it, it does not duplicate
    assert main(["--lake", str(lake_root), "release", "register", "--flag", "checkout-redesign", "--version", "5.3",
                 "--released-at", "2026-10-02T08:00:00Z"]) == 0
    rows = Lake(lake_root).read(RELEASE_ARTIFACTS)
    assert len(rows) == 1 and rows.released_at.iloc[0] == pd.Timestamp("2026-10-02T08:00:00Z")


def _error_message(argv, capsys) -> str:
    try:
        code = main(argv)
    except ValueError as error:  # surfaced as an exception naming the problem
        return str(error)
    assert code != 0  # or as a non-zero exit with the message on stderr
    return capsys.readouterr().err


def test_invalid_ladder_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    lake_root = tmp_path / "lake"
    argv = ["--lake", str(lake_root), "release", "register", "--flag", "f", "--version", "1", "--ladder", "100,25,50,0"]
    message = _error_message(argv, capsys)
    assert "ladder" in message and "[100, 25, 50, 0]" in message
    assert not Lake(lake_root).exists(RELEASE_ARTIFACTS)


def test_missing_flag_or_version(tmp_path, capsys):
    assert main(["--lake", str(tmp_path / "lake"), "release", "register", "--flag", "f"]) == 2
    assert "--flag and --version" in capsys.readouterr().err
    assert not Lake(tmp_path / "lake").exists(RELEASE_ARTIFACTS)


def test_register_from_yaml_file(tmp_path, capsys):
    path = tmp_path / "releases.yaml"
    path.write_text(
        "releases:\n"
        "  - {flag_key: search-v2, version: '2.0', released_at: '2026-09-01T08:00:00+00:00', product: shop-search}\n"
        "  - {flag_key: search-v2, version: '2.1', released_at: '2026-09-26T08:00:00+00:00', product: shop-search,\n"
        "     ladder: [100, 10, 0], owner: search-team@acme.test}\n"
    )
    lake_root = tmp_path / "lake"
    assert main(["--lake", str(lake_root), "release", "register", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "registered search-v2 2.0" in out and "registered search-v2 2.1" in out
    rows = Lake(lake_root).read(RELEASE_ARTIFACTS).sort_values("version")
    assert rows.version.tolist() == ["2.0", "2.1"]
    assert list(rows.ladder.iloc[1]) == [100, 10, 0] and list(rows.ladder.iloc[0]) == [100, 25, 5, 0]


def test_lake_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLBACK_LAKE", str(tmp_path / "envlake"))
    assert main(["release", "register", "--flag", "f", "--version", "1", "--released-at", "2026-09-01"]) == 0
    assert Lake(tmp_path / "envlake").read(RELEASE_ARTIFACTS).flag_key.tolist() == ["f"]


def test_invalid_yaml_ladder_writes_nothing(tmp_path, capsys):
    path = tmp_path / "releases.yaml"
    path.write_text("- {flag_key: f, version: '1', released_at: '2026-09-01', ladder: [0, 100]}\n")
    message = _error_message(["--lake", str(tmp_path / "lake"), "release", "register", "--file", str(path)], capsys)
    assert "ladder" in message and "[0, 100]" in message
    assert not Lake(tmp_path / "lake").exists(RELEASE_ARTIFACTS)


# ------------------------------------------------------------------------------------------------ the CLI contract
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _parsers(parser: argparse.ArgumentParser, path=("rollback-assets",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_has_help_and_every_command_documents_exit_codes():
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest} has no help"
        assert "2  usage or config error" in (parser.epilog or ""), f"{' '.join(path)} does not document exit codes"


def _registered(tmp_path) -> str:
    lake = str(tmp_path / "lake")
    assert main(["--lake", lake, "release", "register", "--flag", "checkout-redesign", "--version", "5.2",
                 "--released-at", "2026-09-01T08:00:00Z"]) == 0
    return lake


@pytest.mark.parametrize("argv, says", [
    (["reject", "d-404", "--reason", "x"], "unknown decision 'd-404'"),
    (["approve", "d-404"], "unknown decision 'd-404'"),
    (["postmortem", "d-404", "--out", "pm"], "no decision d-404"),
    (["force", "checkout-redesing", "--rollout", "5", "--reason", "x"], "unknown flag 'checkout-redesing'"),
    (["override", "hold", "checkout-redesing", "--reason", "x"], "unknown flag 'checkout-redesing'"),
    (["promote", "checkout-redesing", "--to", "50"], "unknown flag 'checkout-redesing'"),
    (["override", "hold", "checkout-redesign", "--reason", "x", "--until", "next week"], "--until: 'next week' is not an ISO time"),
    (["release", "register", "--file", "missing.yaml"], "missing.yaml: no such file"),
    (["release", "register", "--flag", "f", "--version", "1", "--released-at", "yesterday"],
     "release register (f 1): released_at: Input should be a valid datetime"),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROLLBACK_FLAGD_FILE", str(tmp_path / "flags.json"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    lake = _registered(tmp_path)
    capsys.readouterr()
    assert main(["--lake", lake, *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("rollback-assets: ") and err.count("\n") == 1, err
    assert says in err
    if "unknown flag" in says:
        assert "registered: checkout-redesign" in err


@pytest.mark.parametrize("variable, value, says", [
    ("ROLLBACK_FLAG_BACKEND", "unleesh", "environment: ROLLBACK_FLAG_BACKEND: Input should be 'flagd', 'unleash', "
                                         "'launchdarkly' or 'webhook' (got 'unleesh')"),
    ("ROLLBACK_POLICY", "POLICY", "policy.yaml: defaults.min_sampel: unknown setting"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, variable, value, says):
    policy = tmp_path / "policy.yaml"
    policy.write_text("defaults:\n  min_sampel: 10\n")
    monkeypatch.setenv(variable, str(policy) if value == "POLICY" else value)
    lake = _registered(tmp_path)
    capsys.readouterr()
    assert main(["--lake", lake, "force", "checkout-redesign", "--rollout", "5", "--reason", "x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_a_mistake_never_shows_a_traceback(tmp_path):
    """The console entry point, as a user runs it."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "ROLLBACK_LAKE": str(tmp_path / "lake"), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "rollback_assets.cli", "reject", "d-404", "--reason", "x"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_USAGE
    assert "Traceback" not in done.stderr and done.stderr.strip().startswith("rollback-assets: unknown decision 'd-404'")


def test_json_output_is_one_object_and_notes_go_to_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    lake = str(tmp_path / "lake")
    assert main(["--lake", lake, "release", "register", "--json", "--flag", "search-v2", "--version", "2.1",
                 "--released-at", "2026-09-26T08:00:00Z", "--ladder", "100,10,0"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["registered"] == [{"flag_key": "search-v2", "version": "2.1", "released_at": "2026-09-26 08:00:00+00:00",
                                     "ladder": [100, 10, 0]}]
    assert result["delta_version"] == 0
    assert "not recorded in Dagster" in captured.err

    assert main(["--lake", lake, "dashboard", "--json", "--out", str(tmp_path / "dash")]) == 0
    pages = json.loads(capsys.readouterr().out)
    assert set(pages["flags"]) == {"search-v2"} and pages["index"].endswith("index.html")


def test_replay_reports_progress_on_stderr_and_its_summary_as_json(tmp_path, monkeypatch, capsys):
    import rollback_assets.core.replay_cli as replay

    monkeypatch.setattr(replay, "run_replay_cli", lambda args: {"rows": 3, "decisions": 1})
    assert main(["replay", "--json", "--feedback", "f.csv", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"rows": 3, "decisions": 1}
    assert captured.err.startswith("rollback-assets: replay: scoring f.csv")
