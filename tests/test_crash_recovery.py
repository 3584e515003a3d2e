"""kill -9 at step boundaries converges: after the production recovery (a rerun of the steps, the
flag step recovering unacted decisions and pending rows) every table and the flag equal an
uninterrupted run's, and the flag was written exactly once. One kill point per kind of boundary
(ledger, watermark, before the pending audit row, between the flag write and the applied row);
bench/chaos.py runs every boundary (tests/crash_harness.py lists them) and kills at random moments.
"""

from __future__ import annotations

import pytest

from rollback_assets.core import demo_data

import crash_harness as H


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """A world that has not run yet, and the snapshot an uninterrupted run of its copy leaves."""
    root = tmp_path_factory.mktemp("crash")
    # Small but decisive: the bad cohort acts (one flag change), so the flag step is exercised.
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=300, bad_negative_rate=0.6))
    template = H.make_world(root / "template", frame)
    reference = H.copy_world(template, root / "reference")
    assert H.run_child(reference) == 0
    expected = H.snapshot(reference)
    acted = expected["flag_actions"]
    assert len(acted) == 1 and acted.status.iloc[0] == "applied", "the demo must change one flag"
    assert list(expected["flag_writes"].values()) == [1]
    return root, template, expected


@pytest.mark.parametrize("kill_point", H.FAST_KILL_POINTS)
def test_kill_minus_9_at_a_step_boundary_converges_to_the_uninterrupted_result(worlds, kill_point):
    root, template, expected = worlds
    outcome = H.kill_and_recover(template, expected, kill_point, root / f"point-{H.FAST_KILL_POINTS.index(kill_point)}")
    assert outcome.killed, f"the run never reached {kill_point!r}"
    assert outcome.differences == [], outcome.differences
