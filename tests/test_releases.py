"""Release identity: builds of one release pool together, in feedback and in registration."""

import pandas as pd
import pytest

from rollback_assets.core.ingest import read_file
from rollback_assets.core.mapping import load_mapping
from rollback_assets.core.releases import VersionRule, release_record

STORE = VersionRule.from_spec("store_build")


@pytest.mark.parametrize("raw, release", [
    ("8.104.0 build 5 50619", "8.104"),
    ("8.104.2", "8.104"),
    ("8.104", "8.104"),
    ("24.07.29.3", "24.07.29"),
    ("1.72.6", "1.72"),
    ("model-v3", "model-v3"),  # not a store version: its own release, unchanged
])
def test_store_build_rule(raw, release):
    assert STORE.release_of(pd.Series([raw])).iloc[0] == release


def test_parts_and_pattern_rules_and_nulls():
    assert VersionRule(parts=1).release_of(pd.Series(["5.2.1", None])).tolist() == ["5", None]
    custom = VersionRule(pattern=r"^v(?P<release>\d+)")
    assert custom.release_of(pd.Series(["v12-rc1", "nightly"])).tolist() == ["12", "nightly"]


@pytest.mark.parametrize("spec, message", [
    ({"pattern": "(unclosed"}, "not a valid regex"),
    ({"pattern": r"^\d+"}, "named group"),
    ({"parts": 0}, ">= 1"),
    ({"pattern": "x", "parts": 2}, "not both"),
    ("semver", "a version rule is"),
])
def test_bad_rules_are_refused_with_a_reason(spec, message):
    with pytest.raises(ValueError, match=message):
        VersionRule.from_spec(spec)


def test_registration_normalises_with_the_same_rule():
    record = release_record("app", "8.104.0 build 5 50619", "2024-02-19", version_rule=STORE)
    assert record["version"] == "8.104" and record["adoption"] == "randomized"
    with pytest.raises(ValueError, match="adoption must be one of"):
        release_record("app", "1.0", "2024-01-01", adoption="random")


def test_google_play_export_pools_builds_and_keeps_the_raw_string(tmp_path):
    path = tmp_path / "play.csv"
    path.write_text(
        "appId,reviewId,content,score,thumbsUpCount,reviewCreatedVersion,at,appVersion\n"
        "com.x,r1,bad update,1,0,8.104.0 build 5 50619,2024-02-19 07:52:44,8.104.0 build 5 50619\n"
        "com.x,r2,fine,5,0,8.104.1 build 2 50620,2024-02-20 07:52:44,\n"
        "com.x,r3,no version,4,0,,2024-02-20 08:00:00,\n"
        "com.x,r4,bad stars,6,0,8.104.1,2024-02-20 08:00:00,\n"
    )
    result = read_file(path, load_mapping("google_play"), author_salt="s")
    valid = result.valid.set_index("event_id")
    assert valid.app_version.tolist() == ["8.104", "8.104", None]
    assert valid.app_build.tolist() == ["8.104.0 build 5 50619", "8.104.1 build 2 50620", None]
    assert valid.rating_scale.tolist() == ["stars"] * 3
    assert result.quarantined.reason.tolist() == ["rating out of range for scale stars (1-5)"]


def test_rows_without_a_version_are_not_charged_to_a_self_selected_live_release():
    from rollback_assets.core.attribution import attribute
    from rollback_assets.core.releases import releases_frame

    at = pd.Timestamp("2024-03-01", tz="UTC")
    feedback = pd.DataFrame({
        "event_id": ["a", "b"], "created_at": [at, at], "product": ["app", "web"],
        "app_version": [None, None], "device": None, "locale": None,
    })
    releases = releases_frame([
        release_record("app-flag", "8.104", at - pd.Timedelta(days=3), product="app", adoption="self_selected"),
        release_record("web-flag", "2.1", at - pd.Timedelta(days=3), product="web"),
    ])
    out = attribute(feedback, releases).set_index("event_id")
    assert out.loc["a", "attribution"] == "none" and out.loc["a", "release_version"] is None
    assert out.loc["b", "attribution"] == "time" and out.loc["b", "release_version"] == "2.1"
