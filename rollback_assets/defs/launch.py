"""Work done outside the daemon that still shows in the UI: runs that belong to the code location, and
writes made from the CLI reported as runless asset events.

`execute_in_process` records runs without a code-location origin, so the UI's job, sensor and Overview
views do not list them and location-scoped sensors (the failure alert) ignore them. Here a run is
created against the origin `workspace.yaml` gives the code location (the one `dagster dev` and the
daemon load) and then executed in this process, as a run worker would: same tags, same origin, no
second interpreter to start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
from dagster._core.definitions.selector import InstigatorSelector
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus
from dagster._core.workspace.load_target import WorkspaceFileTarget

from .resources import PROJECT_ROOT

WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
DEFINITIONS_MODULE = "rollback_assets.definitions"
# One process, steps in order: the demo's runs are small and a subprocess per step costs seconds each.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def _repository_origin() -> RemoteRepositoryOrigin:
    [origin] = WorkspaceFileTarget(paths=[str(WORKSPACE_FILE)]).create_origins()
    return RemoteRepositoryOrigin(origin, SINGLETON_REPOSITORY_NAME)


def record_sensor_tick(instance: dg.DagsterInstance, sensor_name: str, started: float, run_ids: Sequence[str],
                       run_keys: Sequence[str], skip_reason: str | None = None) -> None:
    """The tick a daemon would have stored for one sensor evaluation, so the sensor's page lists it with
    the runs it requested (the daemon's own ticks follow; its cursor starts fresh and skips used run keys)."""
    origin = _repository_origin()
    selector = InstigatorSelector(location_name=origin.code_location_origin.location_name,
                                  repository_name=origin.repository_name, name=sensor_name)
    instance.create_tick(TickData(
        instigator_origin_id=origin.get_instigator_origin(sensor_name).get_id(),
        instigator_name=sensor_name,
        instigator_type=InstigatorType.SENSOR,
        status=TickStatus.SUCCESS if run_ids else TickStatus.SKIPPED,
        timestamp=started,
        end_timestamp=time.time(),
        run_ids=list(run_ids),
        run_keys=list(run_keys),
        skip_reason=skip_reason,
        selector_id=selector.get_id(),
    ))


def run_in_code_location(
    instance: dg.DagsterInstance, defs: dg.Definitions, job_name: str, run_config: Mapping | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.DagsterRun:
    """Create the run with the workspace's code-location origin, execute it here, return the finished run.

    It executes `defs`' own job (built from this process's environment), not a re-import of the module, so
    a caller that pointed the environment at a staging lake (the drill) runs against that lake."""
    origin = _repository_origin()
    recon_job = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, "defs", working_directory=str(PROJECT_ROOT)
    ).get_reconstructable_job(job_name)
    job_def = defs.resolve_job_def(job_name)
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config={**IN_PROCESS, **(run_config or {})},
        tags=dict(tags or {}),
        remote_job_origin=origin.get_job_origin(job_name),
        job_code_origin=recon_job.get_python_origin(),
    )
    execute_run(InMemoryJob(job_def), run, instance)
    return instance.get_run_by_id(run.run_id)


def report_out_of_run_write(asset_name: str, description: str, metadata: Mapping, data_version: str | None = None,
                            observation: bool = False) -> str | None:
    """A CLI write (release registration, hold, approval, forced change) as a runless materialization of the
    asset it changed, so the asset's history in the UI is complete. Returns the instance's $DAGSTER_HOME,
    or None when none is set (the write itself is in the lake either way)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home or not Path(home).is_dir():
        return None
    tags = {"dagster/data_version": data_version} if data_version else None
    with dg.DagsterInstance.get() as instance:
        event = dg.AssetObservation if observation else dg.AssetMaterialization  # observation: nothing was written
        instance.report_runless_asset_event(event(
            asset_key=asset_name, description=description, tags=tags,
            metadata={k: v for k, v in metadata.items() if v is not None},
        ))
    return home


def tick_sensor(instance: dg.DagsterInstance, defs: dg.Definitions, sensor_name: str, cursor: str | None = None,
                run_config: Mapping | None = None) -> tuple[list[dg.DagsterRun], str | None, str | None]:
    """One tick as the daemon does it: evaluate the sensor, start each requested run whose run key has no
    run yet (with the daemon's tags, in the code location), record the tick. Returns (runs, cursor, skip reason)."""
    sensor = defs.resolve_sensor_def(sensor_name)
    started = time.time()
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources, definitions=defs) as context:
        result = sensor(context)
        cursor = context.cursor
    skip = result.skip_message if isinstance(result, dg.SkipReason) else None
    requests = [r for r in (result if isinstance(result, list) else []) if isinstance(r, dg.RunRequest)]
    runs, run_keys = [], []
    for request in requests:
        tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor.name}
        if instance.get_runs(filters=dg.RunsFilter(tags={k: tags[k] for k in ("dagster/run_key", "dagster/sensor_name")}), limit=1):
            continue
        job_name = request.job_name or sensor.job_name
        runs.append(run_in_code_location(instance, defs, job_name, run_config={**(run_config or {}), **request.run_config}, tags=tags))
        run_keys.append(request.run_key)
    record_sensor_tick(instance, sensor.name, started, [r.run_id for r in runs], run_keys, skip_reason=skip)
    return runs, cursor, skip
