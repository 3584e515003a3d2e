"""Decisions to flag changes at the Dagster level: feedback_job on demo data, the decision sensor, the
flag_action_job, the CLI overrides, against a real flagd file (read with the OpenFeature flagd provider in
FILE mode) and a real Unleash server (read with the Unleash Python SDK).

Backend calls are COUNTED at the backend: `counting_backend_from_settings` wraps the backend the one
factory (`core.flags.backend_from_settings`) builds and appends one JSON line per `apply` call to a log
file. It replaces that factory, so the Dagster resources and the CLI both use it, configured from the
same environment variables as in production.

One feedback_job run (module fixture) produces the decisions; every test acts on its own copy of that
lake and its own flag file. The Dagster instance is shared, so a sensor context without a cursor sees
the decision materializations, as the daemon does after a restart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._serdes import serialize_value

import rollback_assets.core.flags as core_flags
import rollback_assets.defs.flags as flags_module
from rollback_assets.cli import main
from rollback_assets.core import demo_data, pipeline
from rollback_assets.core.flags import FlagTarget, TransientBackendError, make_flag_backend
from rollback_assets.core.lake import Lake
from rollback_assets.core.releases import load_releases_yaml
from rollback_assets.core.schemas import DECISIONS, FLAG_ACTIONS

from conftest import poll
from unleash_server import unleash_server  # noqa: F401  (session fixture: a real unleash-server)
from test_postgres_instance import PG, pg_database  # noqa: F401  (a fresh database on the local PostgreSQL)

of_api = pytest.importorskip("openfeature.api")
from openfeature.contrib.provider.flagd import FlagdProvider  # noqa: E402
from openfeature.contrib.provider.flagd.config import ResolverType  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402

BAD_FLAG, BAD_VERSION, BAD_COHORT = "checkout-redesign", "5.2", "device=mobile|locale=de-DE"
FLAGS = sorted({r["flag_key"] for r in demo_data.releases()})
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
USERS = [f"user-{i}" for i in range(2000)]
LOG_ENV, FAIL_ENV, DELAY_ENV = "ROLLBACK_TEST_APPLY_LOG", "ROLLBACK_TEST_FAIL_APPLIES", "ROLLBACK_TEST_APPLY_DELAY"
ENV_CLEARED = ("ROLLBACK_RELEASES", "ROLLBACK_POLICY", "ROLLBACK_TAXONOMY", "ROLLBACK_MAPPINGS", "ROLLBACK_AUTHOR_SALT",
               "ROLLBACK_DEPLOYMENT", "ROLLBACK_FLAG_BACKEND", "ROLLBACK_NOTIFY_URL", "ROLLBACK_ACTOR", "UNLEASH_URL",
               "UNLEASH_ADMIN_TOKEN", "UNLEASH_ENVIRONMENT")


# ------------------------------------------------------------------------------------------ counting backend
class CountingBackend:
    """The real backend, with every apply() call logged; the first `fail` calls raise a transient error."""

    def __init__(self, inner, log: Path, fail: int):
        self.inner, self.log, self.fail = inner, log, fail
        self.name = inner.name

    def get_state(self, flag_key):
        return self.inner.get_state(flag_key)

    def secrets(self):
        return self.inner.secrets()

    def apply(self, flag_key, target, *, idempotency_key, comment=""):
        failed_so_far = sum(1 for c in read_calls(self.log) if not c["ok"])
        entry = {"flag": flag_key, "key": idempotency_key, "enabled": target.enabled, "rollout": target.rollout,
                 "variant": target.variant}
        time.sleep(getattr(self, "delay", 0))  # a slow backend: widens the window two racing runs would share
        if failed_so_far < self.fail:
            _append(self.log, {**entry, "ok": False})
            raise TransientBackendError(f"{self.name}: injected outage {failed_so_far + 1}/{self.fail} (503)", 503)
        state = self.inner.apply(flag_key, target, idempotency_key=idempotency_key, comment=comment)
        _append(self.log, {**entry, "ok": True})
        return state


_backend_from_settings = core_flags.backend_from_settings


def counting_backend_from_settings(*args, **kwargs):
    backend = CountingBackend(_backend_from_settings(*args, **kwargs), Path(os.environ[LOG_ENV]), int(os.environ.get(FAIL_ENV, "0")))
    backend.delay = float(os.environ.get(DELAY_ENV, "0"))
    return backend


def _append(log: Path, entry: dict) -> None:
    with open(log, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def read_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def applied_calls(log: Path) -> list[dict]:
    return [c for c in read_calls(log) if c["ok"]]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def base(tmp_path_factory, instance):
    """Demo data, releases registered, feedback_job run once; a pristine copy of the lake it left."""
    root = tmp_path_factory.mktemp("flag_pipeline")
    landing, lake_root, releases_file = root / "landing", root / "lake", root / "releases.yaml"
    demo_data.write_landing_zone(demo_data.generate(demo_data.DemoSpec()), landing, releases_file)
    pipeline.register_releases(Lake(lake_root), load_releases_yaml(releases_file))
    with pytest.MonkeyPatch.context() as mp:
        _set_env(mp, lake_root, landing, root / "unused-flags.json", root / "unused.log")
        from rollback_assets.definitions import build_definitions

        defs = build_definitions()
        result = defs.resolve_job_def("feedback_job").execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
    decisions = Lake(lake_root).read(DECISIONS)
    acting = decisions[decisions.state == "act"]
    assert list(zip(acting.flag_key, acting.release_version, acting.cohort)) == [(BAD_FLAG, BAD_VERSION, BAD_COHORT)]
    snapshot = root / "lake-after-feedback"
    shutil.copytree(lake_root, snapshot)
    return {"root": root, "landing": landing, "snapshot": snapshot, "decision_id": acting.decision_id.iloc[0],
            "feedback_run_id": result.run_id}


def _set_env(mp, lake_root, landing, flag_file, log, **extra):
    for name in (*ENV_CLEARED, "DAGSTER_HOME"):  # no DAGSTER_HOME: CLI writes are not reported anywhere
        mp.delenv(name, raising=False)
    mp.setenv("ROLLBACK_LAKE", str(lake_root))
    mp.setenv("ROLLBACK_LANDING", str(landing))
    mp.setenv("ROLLBACK_AUTHOR_SALT", "test-salt-not-secret")
    mp.setenv("ROLLBACK_FLAGD_FILE", str(flag_file))
    mp.setenv(LOG_ENV, str(log))
    mp.setenv(FAIL_ENV, "0")
    for k, v in extra.items():
        mp.setenv(k, str(v))
    mp.setattr(core_flags, "backend_from_settings", counting_backend_from_settings)


class World:
    """One scenario: its own lake copy, flag file and apply log; definitions built from the environment."""

    def __init__(self, base, instance, tmp_path, mp, **env):
        self.instance, self.decision_id, self.base = instance, base["decision_id"], base
        self.lake_root = tmp_path / "lake"
        shutil.copytree(base["snapshot"], self.lake_root)
        self.flag_file, self.log = tmp_path / "flags.json", tmp_path / "apply.log"
        seed = make_flag_backend("flagd", path=self.flag_file)
        for flag in FLAGS:
            seed.apply(flag, FlagTarget(True, 100), idempotency_key=f"seed-{flag}")
        _set_env(mp, self.lake_root, base["landing"], self.flag_file, self.log, **env)
        self.defs = self.build()
        self.cursor = None

    @staticmethod
    def build():
        from rollback_assets.definitions import build_definitions

        return build_definitions()

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_root)

    def tick(self, fresh: bool = False) -> tuple[list[dg.RunRequest], object]:
        """One sensor evaluation as the daemon does it; `fresh` = a restarted daemon without a cursor."""
        sensor = self.defs.resolve_sensor_def("rollback_decision_sensor")
        with dg.build_sensor_context(instance=self.instance, cursor=None if fresh else self.cursor,
                                     resources=self.defs.resources, definitions=self.defs) as context:
            raw = sensor(context)
            if not fresh:
                self.cursor = context.cursor
        requests = [r for r in (raw if isinstance(raw, list) else [raw]) if isinstance(r, dg.RunRequest)]
        return requests, raw

    def run(self, request: dg.RunRequest):
        """Run the request's flag_action_job even if its run key already ran (stronger than the daemon)."""
        result = self.defs.resolve_job_def("flag_action_job").execute_in_process(
            instance=self.instance, run_config={**QUIET, **request.run_config},
            tags={**request.tags, "dagster/run_key": request.run_key}, raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result

    def action(self, action_id=None) -> dict:
        rows = self.lake.read(FLAG_ACTIONS)
        rows = rows[rows.action_id == (action_id or self.decision_id)]
        assert len(rows) == 1, rows
        return rows.iloc[0].to_dict()

    def state(self, flag=BAD_FLAG):
        return make_flag_backend("flagd", path=self.flag_file).get_state(flag)


@pytest.fixture
def world(base, instance, tmp_path, monkeypatch):
    return World(base, instance, tmp_path, monkeypatch)


@pytest.fixture
def openfeature(world):
    of_api.set_provider(FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(world.flag_file)))
    client = of_api.get_client()
    deadline = time.monotonic() + 10
    while client.get_boolean_details(BAD_FLAG, False, EvaluationContext(targeting_key="probe")).reason != "STATIC":
        assert time.monotonic() < deadline, "flagd provider did not load the flag file"
        time.sleep(0.05)
    yield client
    of_api.shutdown()


def share_on(client) -> float:
    return sum(client.get_boolean_value(BAD_FLAG, False, EvaluationContext(targeting_key=u)) for u in USERS) / len(USERS)



def flag_actions_metadata(result) -> dict:
    mats = result.asset_materializations_for_node("flag_actions")
    assert len(mats) == 1
    return {k: v.value for k, v in mats[0].metadata.items()}


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------ flagd end to end
def test_decision_to_flagd_exactly_once(world, openfeature, base):
    assert share_on(openfeature) == 1.0
    requests, _ = world.tick()
    assert [r.run_key for r in requests] == [world.decision_id], "exactly one run, keyed by the decision id"
    assert requests[0].run_config == {"ops": {"flag_actions": {"config": {"decision_ids": [world.decision_id]}}}}

    result = world.run(requests[0])
    assert [c["rollout"] for c in applied_calls(world.log)] == [25] and applied_calls(world.log)[0]["key"] == world.decision_id
    row = world.action()
    assert (row["status"], row["kind"], row["before_rollout"], row["after_rollout"], row["actor"]) == ("applied", "step_down", 100, 25, "auto")
    assert (row["cohort"], row["release_version"], row["backend"]) == (BAD_COHORT, BAD_VERSION, "flagd")
    assert json.loads(row["lineage"])["action_run_id"] == result.run_id
    got = poll(lambda: share_on(openfeature), lambda s: abs(s - 0.25) < 0.03)
    assert abs(got - 0.25) < 0.03, f"OpenFeature sees {got:.3f} of users on, expected ~0.25"

    # The materialization shows backend, the number of backend calls and who / why / which decision.
    meta = flag_actions_metadata(result)
    assert meta["backend"] == "flagd" and meta["backend_calls"] == 1 and meta["by_status"] == {"applied": 1}
    table = meta["actions"]
    columns = {c.name: c for c in table.schema.columns}
    assert {"actor", "approver", "reason", "decision_id", "before_rollout", "after_rollout", "cohort", "release_version"} <= set(columns)
    assert columns["actor"].description  # the column schema comes from schemas.py
    (record,) = [r.data for r in table.records]
    assert (record["flag_key"], record["release_version"], record["cohort"], record["kind"], record["status"],
            record["before_rollout"], record["after_rollout"], record["actor"], record["approver"]) == (
        BAD_FLAG, BAD_VERSION, BAD_COHORT, "step_down", "applied", 100, 25, "auto", None)
    assert record["decision_id"] == world.decision_id and "checkout" in record["reason"]  # why: the decision's reason
    assert (meta["flag"], meta["release"], meta["cohort"], meta["decision_id"]) == (BAD_FLAG, BAD_VERSION, BAD_COHORT, world.decision_id)
    assert meta["decisions"] == dg.AssetKey("rollback_decisions")  # a link back to the decision asset
    assert meta["decision_run_0"] == base["feedback_run_id"]

    # decisions re-materialized (same inputs: the same decision id), a new tick, the job run again
    rerun = world.defs.resolve_job_def("feedback_job").execute_in_process(instance=world.instance, raise_on_error=False, run_config=QUIET)
    mat = rerun.asset_materializations_for_node("rollback_decisions")[0]
    assert mat.metadata["actionable_decision_ids"].value == [world.decision_id]
    requests, _ = world.tick()
    assert [r.run_key for r in requests] == [world.decision_id]
    again = world.run(requests[0])
    assert flag_actions_metadata(again)["backend_calls"] == 0

    # a daemon restart: no cursor, every decision materialization in the instance is seen again
    requests, _ = world.tick(fresh=True)
    assert {r.run_key for r in requests} == {world.decision_id}
    for request in requests:
        world.run(request)
    _, raw = world.tick()
    assert isinstance(raw, dg.SkipReason), "nothing new, nothing pending"

    assert len(read_calls(world.log)) == 1, read_calls(world.log)  # the backend was called once, ever
    assert world.state().rollout == 25 and world.action()["status"] == "applied"
    assert share_on(openfeature) == pytest.approx(0.25, abs=0.03)


# ------------------------------------------------------------------------------------------ failing backend
def test_transient_backend_failures_stay_pending_then_apply_once(world, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "1000")  # the backend is down
    (request,), _ = world.tick()
    first = world.run(request)
    row = world.action()
    first_attempts = row["attempts"]
    assert row["status"] == "pending" and first_attempts >= 3, "FlagPolicy.max_attempts (3) tries before leaving it pending"
    assert first_attempts == len(read_calls(world.log)), "the audit counts every backend attempt"
    assert f"injected outage {first_attempts}/1000 (503)" in row["last_error"]
    assert world.state().rollout == 100 and set(flag_actions_metadata(first)["by_status"]) == {"pending"}

    requests, _ = world.tick()
    assert [r.run_key for r in requests] == [f"retry:{world.decision_id}:{first_attempts}"]
    assert requests[0].run_config["ops"]["flag_actions"]["config"]["decision_ids"] == []
    world.run(requests[0])  # still down
    row = world.action()
    second_attempts = row["attempts"]
    assert row["status"] == "pending" and second_attempts > first_attempts == len(read_calls(world.log)) - (second_attempts - first_attempts)

    requests, _ = world.tick()  # a new attempt count: a new run key, so the daemon runs it
    assert [r.run_key for r in requests] == [f"retry:{world.decision_id}:{second_attempts}"]
    monkeypatch.setenv(FAIL_ENV, str(second_attempts))  # the backend has recovered
    world.run(requests[0])
    row = world.action()
    assert (row["status"], row["attempts"], row["last_error"], row["after_rollout"]) == ("applied", second_attempts + 1, None, 25)
    assert [c["key"] for c in applied_calls(world.log)] == [world.decision_id]
    assert len(read_calls(world.log)) == second_attempts + 1 and world.state().rollout == 25

    _, raw = world.tick()
    assert isinstance(raw, dg.SkipReason)
    for request in world.tick(fresh=True)[0]:
        world.run(request)
    assert len(applied_calls(world.log)) == 1 and len(read_calls(world.log)) == second_attempts + 1


def test_one_run_executes_each_action_once(world, monkeypatch):
    """A decision run whose backend call fails leaves ONE pending action after max_attempts (3) tries, and its
    metadata lists that action once. (flag_actions currently retries the row it has just written in the same
    run: 6 attempts, double backoff, by_status {"pending": 2}.)"""
    monkeypatch.setenv(FAIL_ENV, "1000")
    (request,), _ = world.tick()
    result = world.run(request)
    meta = flag_actions_metadata(result)
    assert meta["by_status"] == {"pending": 1}, meta["by_status"]
    assert world.action()["attempts"] == 3 == len(read_calls(world.log))


# ------------------------------------------------------------------------------------------ flag-file faults
def _invalid_json(world):
    world.flag_file.write_text('{"flags": {"checkout-redesign": {"state": "ENAB')


def _a_directory(world):
    world.flag_file.unlink()
    world.flag_file.mkdir()


def _flag_missing(world):
    doc = json.loads(world.flag_file.read_text())
    del doc["flags"][BAD_FLAG]
    world.flag_file.write_text(json.dumps(doc))


def _unwritable(world):
    """No new file can be made in the flag file's folder (the backend writes aside, then renames).
    Root ignores mode bits, so as root the folder is made immutable instead."""
    folder = world.flag_file.parent
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        message = f"cannot make {folder} unwritable as root: chattr: {done.stderr.strip()}"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def _repair(world, good: bytes):
    if world.flag_file.is_dir():
        world.flag_file.rmdir()
    world.flag_file.write_bytes(good)


FLAG_FILE_FAULTS = {  # fault -> (inject, what last_error says)
    "invalid_json": (_invalid_json, "is not valid JSON"),
    "a_directory": (_a_directory, "cannot read flags.json"),
    "flag_missing": (_flag_missing, f"no flag '{BAD_FLAG}'"),
    "unwritable": (_unwritable, "cannot write flags.json"),
}


@pytest.mark.parametrize("fault", sorted(FLAG_FILE_FAULTS))
def test_flag_file_fault_leaves_a_pending_action_applied_once_after_repair(world, fault):
    inject, error = FLAG_FILE_FAULTS[fault]
    good = world.flag_file.read_bytes()
    undo = inject(world)
    try:
        (request,), _ = world.tick()
        world.run(request)
        row = world.action()
        assert row["status"] == "pending" and error in row["last_error"], row
        assert row["attempts"] >= 1 and applied_calls(world.log) == []
        assert row["kind"] == "step_down" and row["cohort"] == BAD_COHORT and row["lineage"]

        (retry,), _ = world.tick()  # still broken: the next tick retries, the row stays pending
        assert retry.run_key == f"retry:{world.decision_id}:{row['attempts']}"
        world.run(retry)
        again = world.action()
        assert again["status"] == "pending" and again["attempts"] > row["attempts"] and applied_calls(world.log) == []
    finally:
        if undo:
            undo()
    _repair(world, good)

    requests, _ = world.tick()
    assert [r.run_key for r in requests] == [f"retry:{world.decision_id}:{again['attempts']}"]
    world.run(requests[0])
    row = world.action()
    assert (row["status"], row["before_rollout"], row["after_rollout"], row["last_error"]) == ("applied", 100, 25, None)
    assert [c["key"] for c in applied_calls(world.log)] == [world.decision_id] and world.state().rollout == 25

    _, raw = world.tick()
    assert isinstance(raw, dg.SkipReason)
    for request in world.tick(fresh=True)[0]:
        world.run(request)
    assert len(applied_calls(world.log)) == 1, "applied exactly once, counted at the backend"


def test_daily_upkeep_retries_a_pending_action(world):
    good = world.flag_file.read_bytes()
    _invalid_json(world)
    (request,), _ = world.tick()
    world.run(request)
    assert world.action()["status"] == "pending"
    _repair(world, good)
    schedule = world.defs.resolve_schedule_def("daily_flag_upkeep")
    assert schedule.job_name == "flag_action_job"
    upkeep = world.defs.resolve_job_def("flag_action_job").execute_in_process(instance=world.instance, run_config=QUIET,
                                                                               raise_on_error=False)
    assert upkeep.success and flag_actions_metadata(upkeep)["backend_calls"] == 1
    assert world.action()["status"] == "applied" and len(applied_calls(world.log)) == 1 and world.state().rollout == 25


KILLED_RUN = """
import json, os, signal, sys
import dagster as dg
from dagster._serdes import deserialize_value
from rollback_assets.core.actions import ledger
from rollback_assets.definitions import build_definitions

def killed(*args, **kwargs):  # the process dies here: after the run started, before the intent row
    os.kill(os.getpid(), signal.SIGKILL)

ledger.record_intent = killed
instance = dg.DagsterInstance.from_ref(deserialize_value(sys.argv[1]))
run_config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}, **json.loads(sys.argv[2])}
build_definitions().resolve_job_def("flag_action_job").execute_in_process(
    instance=instance, run_config=run_config, tags={"dagster/run_key": sys.argv[3]})
"""


def test_a_run_killed_before_its_intent_row_is_recovered_by_the_next_tick(world):
    (request,), _ = world.tick()
    assert request.run_key == world.decision_id and request.tags["dagster/max_runtime"]
    worktree = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([worktree, os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, serialize_value(world.instance.get_ref()),
                             json.dumps(request.run_config), request.run_key], env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    run = world.instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": world.decision_id}), limit=1)[0]  # the newest
    assert run.status == dg.DagsterRunStatus.STARTED, "a killed run looks alive until run monitoring ends it"
    rows = world.lake.read(FLAG_ACTIONS)
    assert world.decision_id not in set(rows.action_id), "killed before the intent row"

    requests, _ = world.tick()
    assert requests == [], "no second run while the first still looks alive"
    # What run monitoring does once the run is past its dagster/max_runtime tag:
    world.instance.report_run_failed(run, message="run worker gone")
    (recovery,), _ = world.tick()
    assert recovery.run_key == f"{world.decision_id}#1"
    assert recovery.run_config["ops"]["flag_actions"]["config"]["decision_ids"] == [world.decision_id]
    world.run(recovery)
    row = world.action()
    assert (row["status"], row["before_rollout"], row["after_rollout"]) == ("applied", 100, 25)
    assert [c["key"] for c in applied_calls(world.log)] == [world.decision_id]
    _, raw = world.tick()
    assert isinstance(raw, dg.SkipReason)


RACING_RUN = """
import json, sys
sys.path.insert(0, sys.argv[4])
import dagster as dg
from dagster._serdes import deserialize_value
import rollback_assets.core.flags as core_flags
import test_flag_pipeline as tests

core_flags.backend_from_settings = tests.counting_backend_from_settings  # as World does: count calls at the backend
from rollback_assets.definitions import build_definitions

instance = dg.DagsterInstance.from_ref(deserialize_value(sys.argv[1]))
result = build_definitions().resolve_job_def("flag_action_job").execute_in_process(
    instance=instance, run_config={**tests.QUIET, **json.loads(sys.argv[2])}, tags={"dagster/run_key": sys.argv[3]},
    raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def test_flag_action_runs_take_the_flag_backend_pool_one_at_a_time(base, tmp_path, monkeypatch):
    """Two run workers for one decision at the same moment, on an instance configured like the shipped
    dagster.yaml: one backend call. Usually the second waits for the pool, then finds the action applied;
    when Dagster's slot claim lets both through together (it is not atomic), the action row's claim
    stops the second (without either, both plan from the same state and both call the slow backend)."""
    shipped = yaml.safe_load((Path(flags_module.__file__).parents[2] / "dagster_home" / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides={"concurrency": shipped["concurrency"]}) as instance:
        world = World(base, instance, tmp_path, monkeypatch, **{DELAY_ENV: 5})
        assert _race_two_workers(instance, flags_module._action_request(world.decision_id, [world.decision_id])) == [0, 0]
    assert [c["key"] for c in read_calls(world.log)] == [world.decision_id]
    assert world.action()["status"] == "applied" and world.state().rollout == 25


def _race_two_workers(instance: dg.DagsterInstance, request: dg.RunRequest) -> list[int]:
    """Two processes run the request's flag_action_job at once (RACING_RUN); their exit codes."""
    tests_dir = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir.parent), os.environ.get("PYTHONPATH", "")])}
    workers = [subprocess.Popen([sys.executable, "-c", RACING_RUN, serialize_value(instance.get_ref()),
                                 json.dumps(request.run_config), f"{request.run_key}:{i}", str(tests_dir)], env=env)
               for i in range(2)]
    return [w.wait(timeout=300) for w in workers]


def test_on_postgres_the_sensor_creates_the_pool_before_two_runs_race_for_it(base, tmp_path, monkeypatch, pg_database):
    """Dagster creates a pool at its first claim; on PostgreSQL two runs doing that at once crash one of
    them (InFailedSqlTransaction: 8 of 8 trials with two processes claiming a fresh pool together). The
    sensor creates the pool when it first asks for a flag run, so two racing runs on a fresh PostgreSQL
    instance both finish, and the backend is called once."""
    shipped = yaml.safe_load((Path(flags_module.__file__).parents[2] / "dagster_home" / "dagster.yaml").read_text())
    storage = {"postgres": {"postgres_db": {"username": PG["user"], "password": "", "hostname": PG["host"],
                                            "db_name": pg_database, "port": PG["port"], "scheme": "postgresql+psycopg2"}}}
    with dg.instance_for_test(overrides={"concurrency": shipped["concurrency"], "storage": storage}) as instance:
        world = World(base, instance, tmp_path, monkeypatch, **{DELAY_ENV: 2})
        assert flags_module.FLAG_POOL not in instance.event_log_storage.get_concurrency_keys()
        requests, _ = world.tick()
        assert [r.run_key for r in requests] == [world.decision_id]  # found in the lake: no audit row yet
        assert instance.event_log_storage.get_concurrency_info(flags_module.FLAG_POOL).slot_count == 1
        assert _race_two_workers(instance, requests[0]) == [0, 0]
    assert [c["key"] for c in read_calls(world.log)] == [world.decision_id]
    assert world.action()["status"] == "applied"


def test_a_run_holds_the_rows_it_planned_only_while_it_can_still_be_acting(monkeypatch):
    """`still_running` as the flag_actions asset answers it: a started or canceling run holds its rows, an
    ended one does not, nor one older than a flag run can be (a killed run launched without a
    dagster/max_runtime tag, from the UI or the daily upkeep, would otherwise look alive for ever)."""
    from dagster._core.storage.dagster_run import DagsterRun

    with dg.instance_for_test() as instance:
        statuses = {"started": dg.DagsterRunStatus.STARTED, "canceling": dg.DagsterRunStatus.CANCELING,
                    "ended": dg.DagsterRunStatus.SUCCESS, "failed": dg.DagsterRunStatus.FAILURE}
        for run_id, status in statuses.items():
            instance.add_run(DagsterRun(job_name="flag_action_job", run_id=run_id, status=status))
        held = {run_id: flags_module._in_flight(instance, run_id) for run_id in [*statuses, "unknown"]}
        assert held == {"started": True, "canceling": True, "ended": False, "failed": False, "unknown": False}
        monkeypatch.setattr(flags_module, "ACTION_RUN_MAX_SECONDS", 0)
        assert not flags_module._in_flight(instance, "started")


# ------------------------------------------------------------------------------------------ humans
def test_hold_skips_then_release_rechecks_and_promote_is_refused(world, capsys):
    until = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    code, out, _ = cli(capsys, "override", "hold", BAD_FLAG, "--until", until, "--reason", "launch week freeze", "--actor", "alice")
    assert code == 0 and "hold on checkout-redesign" in out

    (request,), _ = world.tick()
    result = world.run(request)
    row = world.action()
    assert row["status"] == "skipped" and "flag held by human:alice" in row["reason"] and "launch week freeze" in row["reason"]
    assert read_calls(world.log) == [] and world.state().rollout == 100
    meta = flag_actions_metadata(result)
    assert meta["backend_calls"] == 0 and meta["by_status"] == {"skipped": 1}
    assert "held by human:alice" in meta["actions"].records[0].data["reason"]
    requests, _ = world.tick()
    assert requests == [], "no re-check while the hold is active"

    code, _, err = cli(capsys, "promote", BAD_FLAG, "--to", "100", "--actor", "bob")
    assert code == 3
    assert f"refused: promotion of {BAD_FLAG} to 100 % is blocked: guardrail check failing" in err
    assert BAD_COHORT in err  # says which cohort keeps the guardrail red
    assert read_calls(world.log) == []

    code, out, _ = cli(capsys, "override", "release", BAD_FLAG, "--actor", "alice", "--reason", "freeze over")
    assert code == 0
    requests, _ = world.tick()
    assert len(requests) == 1 and requests[0].run_key.startswith(f"recheck:{world.decision_id}:")
    world.run(requests[0])
    row = world.action()
    assert (row["status"], row["before_rollout"], row["after_rollout"]) == ("applied", 100, 25)
    assert len(applied_calls(world.log)) == 1 and world.state().rollout == 25
    assert world.tick()[0] == [], "an applied action is not re-checked"

    code, _, err = cli(capsys, "promote", BAD_FLAG, "--to", "100", "--actor", "bob")
    assert code == 3 and "guardrail check failing" in err and world.state().rollout == 25


def test_cli_writes_show_in_the_dagster_ui_history(world, capsys, tmp_path, monkeypatch):
    """Holds, forced changes and release registrations made from the CLI are runless materializations."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    code, out, err = cli(capsys, "override", "hold", BAD_FLAG, "--reason", "launch week freeze", "--actor", "alice")
    assert code == 0 and f"recorded in Dagster ({home})" in err, "a note, on stderr: stdout is the result"
    code, out, _ = cli(capsys, "override", "release", BAD_FLAG, "--actor", "alice")
    code, out, _ = cli(capsys, "force", BAD_FLAG, "--rollout", "5", "--reason", "hotfix", "--actor", "bob")
    assert code == 0
    code, out, _ = cli(capsys, "release", "register", "--flag", BAD_FLAG, "--version", "5.3", "--code-commit", "abc1234")
    assert code == 0
    with dg.DagsterInstance.get() as instance:
        actions_ = instance.fetch_materializations(dg.AssetKey("flag_actions"), limit=10, ascending=True).records
        releases = instance.fetch_materializations(dg.AssetKey("release_artifacts"), limit=10).records
    events = [r.asset_materialization for r in actions_]
    assert all(r.run_id == "" for r in actions_), "runless: no run behind a CLI write"
    assert [e.metadata["kind"].value for e in events] == ["hold", "release_hold", "force"]
    forced = events[-1]
    assert (forced.metadata["actor"].value, forced.metadata["after_rollout"].value) == ("human:bob", 5)
    assert forced.metadata["delta_version"].value == world.lake.version(FLAG_ACTIONS)
    assert "5 %" in forced.description and BAD_FLAG in forced.description
    (registered,) = [r.asset_materialization for r in releases]
    assert f"{BAD_FLAG} 5.3" in registered.description and registered.metadata["code_commits"].value == "abc1234"


def test_release_health_dashboard_after_a_rollback_and_a_hold(world, capsys, tmp_path):
    """The flag_action_job run refreshes the dashboard asset; the CLI writes the same pages."""
    (request,), _ = world.tick()
    result = world.run(request)
    mats = result.asset_materializations_for_node("release_health")
    assert len(mats) == 1 and mats[0].metadata[f"{BAD_FLAG}/rollbacks"].value == 1
    page = (world.lake_root / mats[0].metadata["index"].value).with_name("checkout-redesign.html").read_text()
    assert "rollbacks: <b>1</b>" in page and "<svg" in page and world.decision_id in page
    assert "src=" not in page and "<link" not in page  # offline: nothing fetched
    # ... and the postmortem of the decision that caused the action, its figures recomputed by time travel
    (pm,) = result.asset_materializations_for_node("postmortems")
    assert pm.metadata["all_recomputed_match"].value is True
    (record,) = [r.data for r in pm.metadata["postmortems"].value.records]
    assert record["decision_id"] == world.decision_id and record["recomputed_matches"] is True
    page = (world.lake_root / record["page"]).read_text()
    assert "match the stored decision" in page and "step_down" in page and "human" not in page

    until = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    cli(capsys, "override", "hold", BAD_FLAG, "--until", until, "--reason", "launch week freeze", "--actor", "alice")
    code, out, _ = cli(capsys, "dashboard", "--out", str(tmp_path / "dash"))
    assert code == 0 and f"{BAD_FLAG}: 1 rollback(s), 1 open hold(s)" in out
    page = (tmp_path / "dash" / "checkout-redesign.html").read_text()
    assert "held by human:alice" in page and "launch week freeze" in page
    assert "release_to_detection_days" in page and "decision_to_change_seconds" in page
    index = (tmp_path / "dash" / "index.html").read_text()
    assert all(f">{flag}</a>" in index for flag in FLAGS)


def test_refused_promotion_is_audited(world, capsys):
    """core.actions.overrides.promote audits a refused promotion as a `rejected` promote row; the CLI must not lose it."""
    code, _, _ = cli(capsys, "promote", BAD_FLAG, "--to", "100", "--actor", "bob", "--reason", "looks fine to me")
    assert code == 3
    rows = world.lake.read(FLAG_ACTIONS)
    promotes = rows[rows.kind == "promote"]
    assert list(zip(promotes.status, promotes.actor)) == [("rejected", "human:bob")], "refused promotion left no audit row"


@pytest.fixture
def approve_world(base, instance, tmp_path, monkeypatch):
    policy = tmp_path / "policy.yaml"
    policy.write_text((Path(flags_module.__file__).parents[1] / "config" / "policy.yaml").read_text().replace(
        "flags: {}", f"flags:\n  {BAD_FLAG}:\n    approval: approve"))
    return World(base, instance, tmp_path, monkeypatch, ROLLBACK_POLICY=policy)


def test_approval_mode_waits_then_approve_applies_once(approve_world, capsys):
    world = approve_world
    (request,), _ = world.tick()
    result = world.run(request)
    row = world.action()
    assert row["status"] == "awaiting_approval" and "Approval mode" in row["reason"]
    assert read_calls(world.log) == [] and world.state().rollout == 100
    assert flag_actions_metadata(result)["by_status"] == {"awaiting_approval": 1}
    assert world.tick()[0] == [], "awaiting approval is neither retried nor re-checked"

    code, out, _ = cli(capsys, "approve", world.decision_id, "--actor", "carol", "--reason", "confirmed with support")
    assert code == 0 and out.startswith("applied")
    row = world.action()
    assert (row["status"], row["approver"], row["after_rollout"]) == ("applied", "human:carol", 25)
    approvals = world.lake.read(FLAG_ACTIONS)
    approvals = approvals[approvals.kind == "approve"]
    assert list(zip(approvals.actor, approvals.decision_id, approvals.reason)) == [("human:carol", world.decision_id, "confirmed with support")]
    assert world.state().rollout == 25

    for request in world.tick(fresh=True)[0]:
        world.run(request)
    assert len(read_calls(world.log)) == 1


def test_approval_mode_reject_never_changes_the_flag(approve_world, capsys):
    world = approve_world
    (request,), _ = world.tick()
    world.run(request)
    code, out, _ = cli(capsys, "reject", world.decision_id, "--reason", "false alarm: translation bug", "--actor", "dave")
    assert code == 0 and "rejected" in out
    row = world.action()
    assert row["status"] == "rejected" and row["approver"] == "human:dave" and "false alarm" in row["reason"]
    for request in world.tick(fresh=True)[0]:
        world.run(request)
    assert world.action()["status"] == "rejected"
    assert read_calls(world.log) == [] and world.state().rollout == 100


# ------------------------------------------------------------------------------------------ Unleash
def test_decision_to_unleash_exactly_once(base, instance, tmp_path, monkeypatch, unleash_server):  # noqa: F811
    UnleashClient = pytest.importorskip("UnleashClient").UnleashClient
    seed = make_flag_backend("unleash", url=unleash_server.url, admin_token=unleash_server.admin_token,
                             environment=unleash_server.environment, create_missing=True)
    seed.apply(BAD_FLAG, FlagTarget(True, 100), idempotency_key="seed")
    sdk = UnleashClient(url=unleash_server.api_url, app_name="flag-pipeline-test", environment=unleash_server.environment,
                        custom_headers={"Authorization": unleash_server.client_token}, refresh_interval=1,
                        disable_metrics=True, disable_registration=True, cache_directory=str(tmp_path / "unleash-cache"))
    sdk.initialize_client()
    try:
        users = USERS[:1000]

        def share():
            return sum(sdk.is_enabled(BAD_FLAG, {"userId": u}) for u in users) / len(users)

        assert poll(share, lambda s: s == 1.0, timeout=15, every=0.25) == 1.0
        world = World(base, instance, tmp_path, monkeypatch, ROLLBACK_FLAG_BACKEND="unleash", UNLEASH_URL=unleash_server.url,
                      UNLEASH_ADMIN_TOKEN=unleash_server.admin_token, UNLEASH_ENVIRONMENT=unleash_server.environment)
        requests, _ = world.tick()
        assert [r.run_key for r in requests] == [world.decision_id]
        result = world.run(requests[0])
        row = world.action()
        assert (row["status"], row["backend"], row["before_rollout"], row["after_rollout"]) == ("applied", "unleash", 100, 25)
        meta = flag_actions_metadata(result)
        assert meta["backend"] == "unleash" and meta["backend_calls"] == 1
        assert unleash_server.admin_token not in json.dumps({k: str(v) for k, v in meta.items()}) + json.dumps(row, default=str)
        assert seed.get_state(BAD_FLAG).rollout == 25
        got = poll(share, lambda s: abs(s - 0.25) < 0.05, timeout=15, every=0.25)
        assert abs(got - 0.25) < 0.05, f"the Unleash SDK sees {got:.3f} of users on, expected ~0.25"

        for request in world.tick(fresh=True)[0]:
            world.run(request)
        assert len(read_calls(world.log)) == 1 and seed.get_state(BAD_FLAG).rollout == 25
    finally:
        sdk.destroy()
