"""Shared fixtures: generated demo data in a temp landing zone + lake, a temp Dagster instance, the graph run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from rollback_assets.core import demo_data, pipeline
from rollback_assets.core.flags import make_flag_backend
from rollback_assets.core.lake import Lake
from rollback_assets.core.releases import load_releases_yaml

from flag_actions_support import WEBHOOK_SECRET
from webhook_receiver import WebhookReceiver

ENV_CLEARED = ("ROLLBACK_RELEASES", "ROLLBACK_POLICY", "ROLLBACK_TAXONOMY", "ROLLBACK_MAPPINGS",
               "ROLLBACK_AUTHOR_SALT", "ROLLBACK_DEPLOYMENT")
TEST_SALT = "test-salt-not-secret"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def poll(fn, ok, timeout=10.0, every=0.05):
    """`fn()` until `ok` accepts its value or `timeout` seconds pass; the last value either way
    (SDKs and flag servers apply a change a moment after the call returns)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(every)


@dataclass
class DemoEnv:
    root: Path
    lake_root: Path
    landing: Path
    releases_file: Path
    files: list[Path]
    frame: pd.DataFrame

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_root)


def make_demo_env(root: Path, rows_per_day: int = 1000, days: int = demo_data.DAYS) -> DemoEnv:
    """Demo landing zone written to `root/landing`, releases registered in `root/lake` (as the CLI demo does)."""
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=rows_per_day, days=days))
    landing, lake_root = root / "landing", root / "lake"
    releases_file = root / "releases.yaml"
    files = demo_data.write_landing_zone(frame, landing, releases_file)
    pipeline.register_releases(Lake(lake_root), load_releases_yaml(releases_file))
    return DemoEnv(root, lake_root, landing, releases_file, files, frame)


def set_env(mp: pytest.MonkeyPatch, env: DemoEnv) -> None:
    for name in ENV_CLEARED:
        mp.delenv(name, raising=False)
    mp.setenv("ROLLBACK_LAKE", str(env.lake_root))
    mp.setenv("ROLLBACK_LANDING", str(env.landing))
    mp.setenv("ROLLBACK_AUTHOR_SALT", TEST_SALT)  # required: the support-ticket mapping hashes requester ids


@pytest.fixture
def rx():
    """A local receiver for the signed webhook flag backend, holding `checkout` at 100 %; it counts every request."""
    receiver = WebhookReceiver(WEBHOOK_SECRET).start()
    receiver.flags["checkout"] = {"enabled": True, "rollout": 100, "variant": None}
    yield receiver
    receiver.stop()


@pytest.fixture
def backend(rx):
    """The signed webhook flag backend, talking to `rx`."""
    return make_flag_backend("webhook", url=rx.url, secret=WEBHOOK_SECRET)


@pytest.fixture
def lake(tmp_path) -> Lake:
    """An empty lake of the test's own."""
    return Lake(tmp_path / "lake")


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance, run_config: dict | None = None):
    return defs.resolve_job_def("feedback_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config={**QUIET, **(run_config or {})}
    )


@dataclass
class GraphRun:
    """Everything a test needs from one run, captured right after it (later runs change the lake)."""

    result: object
    run_id: str
    materializations: dict  # asset name -> AssetMaterialization
    checks: dict  # check name -> AssetCheckEvaluation
    versions: dict = field(default_factory=dict)  # table name -> Delta version after the run
    tables: dict = field(default_factory=dict)  # table name -> frame snapshot


def capture(result, lake: Lake, tables=()) -> GraphRun:
    from rollback_assets.core.schemas import TABLES

    mats = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            mats[mat.asset_key.to_user_string()] = mat
    checks = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    versions = {name: lake.version(t) for name, t in TABLES.items()}
    snap = {name: lake.read(TABLES[name]) for name in tables}
    return GraphRun(result, result.run_id, mats, checks, versions, snap)


@pytest.fixture(scope="session")
def dagster_instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory) -> DemoEnv:
    """Full-size demo data (1000 rows/day: the bad cohort has >= 200 rows in its 7-day window)."""
    return make_demo_env(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def graph_defs(demo_env):
    """`build_definitions()` with the env pointing at the temp lake and landing zone."""
    from rollback_assets.definitions import build_definitions

    with pytest.MonkeyPatch.context() as mp:
        set_env(mp, demo_env)
        yield build_definitions()


@pytest.fixture(scope="session")
def first_run(demo_env, graph_defs, dagster_instance) -> GraphRun:
    # Chunks of 20k rows (the demo has ~42k): the first run then goes the way a large backfill does, the
    # scorer in its worker process and each chunk's days summed while the next is scored
    # (pipeline.score_and_aggregate); the tests on it hold that path to the same decisions and sums.
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(pipeline, "CHUNK_ROWS", 20_000)
        result = run_job(graph_defs, dagster_instance)
    return capture(result, demo_env.lake, tables=("rollback_decisions", "cohort_baselines", "raw_feedback", "quarantine"))


@pytest.fixture(scope="session")
def second_run(first_run, demo_env, graph_defs, dagster_instance) -> GraphRun:
    """The same job again on unchanged landing data."""
    result = run_job(graph_defs, dagster_instance)
    return capture(result, demo_env.lake, tables=("rollback_decisions",))


_exit_status: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without native teardown once pytest has reported (see rollback_assets/process.py)."""
    if _exit_status and not getattr(config, "workerinput", None):
        from rollback_assets.process import exit_now

        exit_now(_exit_status[-1])
