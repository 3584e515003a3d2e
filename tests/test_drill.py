"""The kill-switch drill end to end: staging lake and instance, the landing and decision sensors, the
flagd flag stepped down, the result reported to the main instance, staging cleaned up."""

from __future__ import annotations

import dagster as dg

from rollback_assets.cli import main

ENV = ("ROLLBACK_LAKE", "ROLLBACK_LANDING", "ROLLBACK_FLAGD_FILE", "ROLLBACK_FLAG_BACKEND", "ROLLBACK_RELEASES",
       "ROLLBACK_POLICY", "ROLLBACK_NOTIFY_URL", "ROLLBACK_DEPLOYMENT")


def test_drill_detects_and_steps_the_flag_down(tmp_path, monkeypatch, capsys):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "main_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    staging = tmp_path / "staging"

    code = main(["drill", "--flag", "search-v2", "--rows-per-day", "600", "--workdir", str(staging)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "drill-" in out and "on search-v2: PASSED" in out
    assert "landing_zone_sensor: 2 feedback run(s)" in out  # history, then the injected delivery
    assert "flag on at 100 % -> on at 25 %" in out
    assert "step_down applied, 100 % -> 25" in out
    assert not staging.exists(), "staging is removed unless --keep"

    with dg.DagsterInstance.get() as instance:
        (record,) = instance.fetch_observations(dg.AssetKey("flag_actions"), limit=5).records
    meta = {k: v.value for k, v in record.asset_observation.metadata.items()}
    assert meta["flag"] == "search-v2" and meta["detected"] is True and meta["flag_changed"] is True
    assert 0 < meta["seconds_to_detection"] <= meta["seconds_to_flag_change"]
    assert "step_down applied" in meta["audit_trail"] and meta["flag_after"] == "on at 25 %"
    assert instance.get_runs() == [], "the drill's runs live in its staging instance, not the main one"
