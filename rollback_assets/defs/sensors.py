"""The landing-zone sensor: new files start runs."""

import json

import dagster as dg

from ..core.landing import file_digest
from ..core.mapping import mapping_fingerprint
from ..core.schemas import LANDING_FILES
from .resources import LakeResource, LandingZoneResource

FEEDBACK_JOB_NAME = "feedback_job"


@dg.sensor(
    job_name=FEEDBACK_JOB_NAME, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts feedback_job for each new file in the landing zone (run key = content hash, so the same bytes "
                "never run twice, whatever the file is called).",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZoneResource, lake: LakeResource):
    """One run per new file. The run key is the file's content hash and its mapping's fingerprint, so the
    same bytes never run twice under one mapping, whatever the file is called, while a corrected
    re-delivery (new bytes) or a fixed mapping runs again. The cursor remembers (mtime, size) → hash so
    unchanged files are not re-read. A folder without a valid mapping is skipped with a warning naming it;
    the other sources go on."""
    known: dict = json.loads(context.cursor) if context.cursor else {}
    ingested = set(lake.lake().read(LANDING_FILES, columns=["file_digest"]).file_digest)
    scan = landing.scan()
    for problem in scan.problems:
        context.log.warning(problem)
    seen_now: dict = {}
    requests = []
    for path, mapping in scan.files:
        try:
            stat = path.stat()
            stamp = [stat.st_mtime_ns, stat.st_size]
            cached = known.get(str(path))
            digest = cached[2] if cached and cached[:2] == stamp else file_digest(path)
        except OSError as error:  # removed or unreadable between listing and reading: next tick sees it again
            context.log.warning(f"{path}: skipped this tick: {error}")
            continue
        seen_now[str(path)] = [*stamp, digest]
        if digest in ingested:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"landing:{digest}:{mapping_fingerprint(mapping)}",
                run_config={"ops": {"raw_feedback": {"config": {"files": [str(path)]}}}},
                tags={"rollback/source_file": path.name, "rollback/mapping": mapping.name},
            )
        )
    context.update_cursor(json.dumps(seen_now))
    if not requests:
        skipped = f"; {len(scan.problems)} problem(s): " + " | ".join(scan.problems) if scan.problems else ""
        return dg.SkipReason(f"no new landing-zone files{skipped}")
    return requests
