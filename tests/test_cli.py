"""`rollback-assets release register`: from flags or a YAML file into release_artifacts."""

from __future__ import annotations

import pandas as pd

from rollback_assets.cli import main
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
