"""WriteBehind: a step's commits on a second thread, in order, stopping at the first that fails."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from rollback_assets.core.lake import Lake, WriteBehind
from rollback_assets.core.schemas import LANDING_FILES


def _ledger_rows(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"file_digest": name, "path": name, "mapping": "m", "rows_valid": 1, "rows_quarantined": 0,
                          "raw_version": 0, "ingested_at": pd.Timestamp("2026-09-01", tz="UTC")} for name in names])


def test_writes_commit_in_order_and_wait_gives_the_last_version(tmp_path):
    lake = Lake(tmp_path / "lake")
    with WriteBehind(lake) as writes:
        for name in ("a", "b", "c"):
            writes.submit(Lake.append, LANDING_FILES, _ledger_rows([name]), metadata={"chunk": name})
        version = writes.wait()
    assert version == lake.version(LANDING_FILES) == 2
    assert [lake.commits_after(LANDING_FILES, None)[i]["chunk"] for i in range(3)] == ["a", "b", "c"]


def test_a_failed_write_stops_the_writes_after_it(tmp_path):
    lake = Lake(tmp_path / "lake")

    def fails(_lake, *args):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with WriteBehind(lake) as writes:
            writes.submit(Lake.append, LANDING_FILES, _ledger_rows(["a"]))
            writes.submit(fails)
            writes.submit(Lake.append, LANDING_FILES, _ledger_rows(["c"]))  # raises the failure: never written
    assert list(lake.read(LANDING_FILES).path) == ["a"]


def test_leaving_on_an_error_waits_for_the_write_in_flight(tmp_path):
    lake, release = Lake(tmp_path / "lake"), threading.Event()

    def slow_append(twin, table, frame):
        assert release.wait(30)
        return twin.append(table, frame)

    with pytest.raises(RuntimeError, match="the step failed"):
        with WriteBehind(lake) as writes:
            writes.submit(slow_append, LANDING_FILES, _ledger_rows(["a"]))
            threading.Timer(0.2, release.set).start()
            raise RuntimeError("the step failed")
    assert list(lake.read(LANDING_FILES).path) == ["a"]  # written before the step's error was raised


def test_writes_use_a_twin_of_the_lake_not_the_callers(tmp_path):
    lake, seen = Lake(tmp_path / "lake"), []
    with WriteBehind(lake) as writes:
        writes.submit(lambda twin: seen.append((type(twin), twin.root, twin is lake, threading.current_thread().name)))
        writes.wait()
    kind, root, same, thread = seen[0]
    assert kind is Lake and root == lake.root and not same and thread.startswith("delta-write")


def test_a_write_failing_behind_a_failed_step_is_logged_not_lost(tmp_path, caplog):
    lake, release = Lake(tmp_path / "lake"), threading.Event()

    def fails_late(_twin):
        assert release.wait(30)
        raise OSError("disk full")

    with pytest.raises(RuntimeError, match="the step failed"):
        with WriteBehind(lake) as writes:
            writes.submit(fails_late)
            threading.Timer(0.2, release.set).start()
            raise RuntimeError("the step failed")
    assert "disk full" in caplog.text
