"""Every config mistake of issue 12 is refused where it is made, with the file, the key and what is allowed.

One row per mistake: the file as a team would write it (the shipped file with one typo), and the parts
its message must name. `python tests/test_config_mistakes.py` prints the mistake → message table.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from rollback_assets.core.config_file import ConfigError
from rollback_assets.core.landing import scan_landing_zone
from rollback_assets.core.mapping import load_mapping
from rollback_assets.core.policy_config import PolicyConfig
from rollback_assets.core.releases import load_releases_yaml
from rollback_assets.core.settings import Settings
from rollback_assets.core.taxonomy import Taxonomy


def _shipped(name: str) -> dict:
    return yaml.safe_load(resources.files("rollback_assets.config").joinpath(name).read_text())


def _write(folder: Path, name: str, spec) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _policy(folder, change):
    spec = _shipped("policy.yaml")
    change(spec)
    return lambda: PolicyConfig.load(_write(folder, "policy.yaml", spec))


def _set(section, key, value):
    return lambda spec: spec[section].__setitem__(key, value)


def _rename(section, old, new):
    return lambda spec: spec[section].__setitem__(new, spec[section].pop(old))


def _top_level_default(spec):
    spec["default"] = spec.pop("defaults")


def _taxonomy_typo(folder):
    spec = _shipped("taxonomy.yaml")
    spec["topics"]["checkout"]["surfce"] = spec["topics"]["checkout"].pop("surface")
    return lambda: Taxonomy.load(_write(folder, "taxonomy.yaml", spec))


def _mapping_typo(folder):
    spec = _shipped("mappings/google_play.yaml")
    spec["colums"] = spec.pop("columns")
    return lambda: load_mapping(_write(folder, "google_play.yaml", spec))


def _release_typo(folder):
    releases = [{"flag_key": "checkout-redesign", "version": "5.2", "released_at": "2026-09-01T10:00:00Z", "onwer": "ana"}]
    return lambda: load_releases_yaml(_write(folder, "releases.yaml", {"releases": releases}))


def _environment(**variables):
    return lambda folder: (lambda: Settings.from_env(variables))


# mistake, how to make it, what the message must contain (file, key, allowed values or range)
MISTAKES = [
    ("policy `min_sampel: 10`", lambda f: _policy(f, _rename("defaults", "min_sample", "min_sampel")),
     ["policy.yaml", "defaults.min_sampel: unknown setting", "allowed here:", "min_sample"]),
    ("policy top-level `default:`", lambda f: _policy(f, _top_level_default),
     ["policy.yaml", "default: unknown setting", "allowed here: defaults, flags, name, version, windows"]),
    ("policy `approval: aprove`", lambda f: _policy(f, _set("defaults", "approval", "aprove")),
     ["policy.yaml", "defaults.approval", "'auto' or 'approve'", "'aprove'"]),
    ("policy `min_sample: fifty`", lambda f: _policy(f, _set("defaults", "min_sample", "fifty")),
     ["policy.yaml", "defaults.min_sample", "valid integer", "'fifty'", "allowed: >= 1"]),
    ("policy `alpha: -1`", lambda f: _policy(f, _set("defaults", "alpha", -1)),
     ["policy.yaml", "defaults.alpha", "greater than 0", "-1", "allowed: > 0 and < 1"]),
    ("ROLLBACK_FLAG_BACKEND=unleesh", _environment(ROLLBACK_FLAG_BACKEND="unleesh"),
     ["environment", "ROLLBACK_FLAG_BACKEND", "'flagd', 'unleash', 'launchdarkly' or 'webhook'", "'unleesh'"]),
    ("ROLLBACK_DEPLOYMENT=prod", _environment(ROLLBACK_DEPLOYMENT="prod"),
     ["environment", "ROLLBACK_DEPLOYMENT", "'local', 'openai' or 'azure'", "'prod'"]),
    ("ROLLBACK_LANDING=s3://... (was scanned as a folder named s3:, found empty)", _environment(ROLLBACK_LANDING="s3://feedback/landing"),
     ["environment", "ROLLBACK_LANDING", "a folder", "mounted", "'s3://feedback/landing'"]),
    ("ROLLBACK_LLM_BUDGET_USD=ten", _environment(ROLLBACK_LLM_BUDGET_USD="ten"),
     ["environment", "ROLLBACK_LLM_BUDGET_USD", "valid number", "'ten'", "allowed: > 0"]),
    ("taxonomy `surfce:` (was a bare KeyError)", _taxonomy_typo,
     ["taxonomy.yaml", "topics.checkout.surfce: unknown setting", "allowed here: phrases, surface",
      "topics.checkout.surface: required setting is missing"]),
    ("mapping `colums:` (was a bare KeyError)", _mapping_typo,
     ["google_play.yaml", "colums: unknown setting", "columns: required setting is missing", "allowed here:"]),
    ("release YAML `onwer:` (was release_record() got an unexpected keyword argument)", _release_typo,
     ["releases.yaml", "releases[0] (checkout-redesign 5.2)", "onwer: unknown setting", "owner"]),
]


@pytest.mark.parametrize("mistake, make, parts", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_config_mistake_is_refused_naming_file_key_and_allowed(mistake, make, parts, tmp_path):
    load = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert "\n" not in message, "one line: it goes to a CLI error, a tick log, a run failure"
    for part in parts:
        assert part in message, f"{mistake}: {part!r} missing from {message!r}"


def test_stray_landing_folder_is_skipped_with_a_warning_never_a_stop(tmp_path):
    """A folder without a mapping, one with a broken mapping and a dangling link: each named, the good source read."""
    landing, mappings = tmp_path / "landing", tmp_path / "mappings"
    for folder in ("feedback_jsonl", "stray", "broken"):
        (landing / folder).mkdir(parents=True)
    (landing / "feedback_jsonl" / "a.jsonl").write_text("{}\n")
    (landing / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    mappings.mkdir()
    (mappings / "broken.yaml").write_text("name: broken\nformat: xml\n")
    scan = scan_landing_zone(landing, [mappings])
    assert [p.name for p, _ in scan.files] == ["a.jsonl"]
    problems = "\n".join(scan.problems)
    assert f"{landing / 'stray'}: no mapping named 'stray'" in problems
    assert "broken.yaml: format: Input should be 'csv', 'jsonl' or 'parquet' (got 'xml')" in problems
    assert f"{landing / 'gone'}" in problems


def test_unknown_rollback_variable_is_named_in_a_warning(caplog):
    settings = Settings.from_env({"ROLLBACK_FLAG_BACKEN": "unleash"})
    assert settings.flag_backend == "flagd"
    assert "ROLLBACK_FLAG_BACKEN not a setting and ignored" in caplog.text


if __name__ == "__main__":  # the mistake → message table for the docs and the closing note
    import tempfile

    print("| mistake | message |\n|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for mistake, make, _ in MISTAKES:
            try:
                make(Path(folder))()
            except ConfigError as error:
                print(f"| {mistake} | `{str(error).replace(folder + '/', '')}` |")
