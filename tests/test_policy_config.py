"""The policy file is strict: every mistake is refused at load, naming the file, the key and what is allowed."""

import pytest

from rollback_assets.core.policy import PolicyConfig

BASE = """\
name: sequential
version: 1
windows:
  window_days: 28
defaults:
  alpha: 0.05
  min_sample: 100
flags:
  checkout:
    approval: approve
"""


def _load(tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return PolicyConfig.load(path), str(path)


@pytest.mark.parametrize("mistake, replacement, message", [
    ("  min_sample: 100", "  min_sampel: 10", r"defaults\.min_sampel: unknown setting \(allowed here: .*min_sample"),
    ("defaults:", "default:", r"default: unknown setting \(allowed here: .*defaults"),
    ("    approval: approve", "    approval: aprove", r"flags\.checkout\.approval: Input should be 'auto' or 'approve'"),
    ("  min_sample: 100", "  min_sample: fifty", r"defaults\.min_sample: .*integer.*'fifty'"),
    ("  alpha: 0.05", "  alpha: -1", r"defaults\.alpha: Input should be greater than 0"),
    ("  alpha: 0.05", "  alpha: 5", r"defaults\.alpha: Input should be less than 1"),
    ("  window_days: 28", "  window_days: -5", r"windows\.window_days: Input should be greater than 0"),
    ("  min_sample: 100", "  min_sample: -1", r"defaults\.min_sample: Input should be greater than or equal to 1"),
    ("name: sequential", "name: sequentail", r"name: 'sequentail' is not a decision rule"),
    ("    approval: approve", "    min_sampel: 3", r"flags\.checkout\.min_sampel: unknown setting"),
])
def test_each_mistake_is_refused_with_file_and_key(tmp_path, mistake, replacement, message):
    assert mistake in BASE
    with pytest.raises(ValueError, match=message) as error:
        _load(tmp_path, BASE.replace(mistake, replacement))
    assert str(tmp_path / "policy.yaml") in str(error.value)


def test_a_valid_file_loads_with_overrides_and_code_defaults(tmp_path):
    config, _ = _load(tmp_path, BASE)
    assert config.for_flag("checkout").approval == "approve" and config.for_flag("other").approval == "auto"
    assert config.for_flag("checkout").min_sample == 100  # inherited from defaults
    assert config.defaults.margin == 0.05  # not in the file: the one code default
    assert config.windows.window_days == 28 and config.version.startswith("sequential-v1-")


def test_invalid_yaml_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="not valid YAML"):
        _load(tmp_path, "defaults: [unclosed")


def test_shipped_policies_load():
    from importlib import resources

    for name in ("policy.yaml", "policy_fixed_rule.yaml"):
        path = resources.files("rollback_assets.config").joinpath(name)
        assert PolicyConfig.load(str(path)).name in ("sequential", "fixed-rule")
