"""The code location: assets, checks, jobs, sensors and resources chosen per deployment.

ROLLBACK_DEPLOYMENT=local (default) runs on embedded parts under the project folder; set the
ROLLBACK_* variables to point at your lake, landing zone and policy elsewhere. ROLLBACK_ENGINE
(pandas | spark | databricks) picks where the heavy steps run (see rollback_assets/engines).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg

from .core.lake import Lake
from .core.schemas import RELEASE_ARTIFACTS
from .defs.engines import feedback_assets, launcher_from_env
from .engines import Engine, engine_from_env
from .defs.checks import STATIC_CHECKS, guardrail_checks
from .defs.governance import GOVERNANCE_CHECKS
from .defs.reports import postmortems, release_health
from .defs.resources import LakeResource, LandingZoneResource, ScorerResource, SettingsResource, default_path
from .defs.alerts import guardrail_alert, run_failure_alert
from .defs.flags import FLAG_ACTION_JOB_NAME, flag_actions, flag_control_from_env, rollback_decision_sensor
from .defs.sensors import FEEDBACK_JOB_NAME, landing_zone_sensor


def resources_for(deployment: str) -> dict:
    lake = LakeResource(root=default_path("ROLLBACK_LAKE", "lake"))
    landing = LandingZoneResource(
        path=default_path("ROLLBACK_LANDING", "landing"),
        mapping_dir=os.environ.get("ROLLBACK_MAPPINGS"),
        author_salt=dg.EnvVar("ROLLBACK_AUTHOR_SALT") if os.environ.get("ROLLBACK_AUTHOR_SALT") else "",
    )
    settings = SettingsResource(
        policy_path=os.environ.get("ROLLBACK_POLICY"),
        taxonomy_path=os.environ.get("ROLLBACK_TAXONOMY"),
        releases_path=os.environ.get("ROLLBACK_RELEASES"),
        kpis_path=os.environ.get("ROLLBACK_KPIS"),
    )
    flags = flag_control_from_env()
    by_deployment = {
        # Embedded parts only: offline scorer, local Delta tables, flagd flag file.
        "local": {"lake": lake, "landing": landing, "settings": settings, "scorer": ScorerResource(kind="auto"),
                  "flags": flags},
        # OpenAI (or any compatible server via OPENAI_BASE_URL), key from OPENAI_API_KEY.
        "openai": {"lake": lake, "landing": landing, "settings": settings,
                   "scorer": ScorerResource(kind="openai", model=os.environ.get("ROLLBACK_LLM_MODEL", "gpt-4o-mini"),
                                            budget_usd=_float_env("ROLLBACK_LLM_BUDGET_USD")),
                   "flags": flags},
        # Azure OpenAI: AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY, OPENAI_API_VERSION, deployment name.
        "azure": {"lake": lake, "landing": landing, "settings": settings,
                  "scorer": ScorerResource(kind="azure", deployment=os.environ.get("ROLLBACK_AZURE_DEPLOYMENT"),
                                           budget_usd=_float_env("ROLLBACK_LLM_BUDGET_USD")),
                  "flags": flags},
    }
    if deployment not in by_deployment:
        raise ValueError(f"ROLLBACK_DEPLOYMENT must be one of {sorted(by_deployment)}, got {deployment!r}")
    return by_deployment[deployment]


def _float_env(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def registered_flags(lake_root: str) -> list[str]:
    lake = Lake(lake_root)
    return sorted(set(lake.read(RELEASE_ARTIFACTS, columns=["flag_key"]).flag_key)) if lake.exists(RELEASE_ARTIFACTS) else []


def build_definitions(deployment: str | None = None, engine: Engine | None = None) -> dg.Definitions:
    engine = engine or engine_from_env()
    resources = resources_for(deployment or os.environ.get("ROLLBACK_DEPLOYMENT", "local"))
    launcher = launcher_from_env(engine)
    if launcher is not None:
        resources["spark_job_launcher"] = launcher
    feedback = feedback_assets(engine)
    checks = [*STATIC_CHECKS, guardrail_checks(registered_flags(resources["lake"].root)), *GOVERNANCE_CHECKS]
    feedback_job = dg.define_asset_job(
        FEEDBACK_JOB_NAME,
        selection=dg.AssetSelection.assets(*feedback),
        description="Landing zone to rollback decisions, with every check.",
    )
    flag_action_job = dg.define_asset_job(
        FLAG_ACTION_JOB_NAME,
        selection=dg.AssetSelection.assets(flag_actions, release_health, postmortems),
        description="Apply rollback decisions to the flag backend, exactly once each, audit it, refresh the reports.",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references: stable in practice, labelled beta
        assets = dg.with_source_code_references([*feedback, flag_actions, release_health, postmortems])
        if os.environ.get("ROLLBACK_GIT_URL"):  # code references open the file at that branch instead of on disk
            assets = dg.link_code_references_to_git(
                assets, git_url=os.environ["ROLLBACK_GIT_URL"], git_branch=os.environ.get("ROLLBACK_GIT_BRANCH", "main"),
                file_path_mapping=dg.AnchorBasedFilePathMapping(
                    local_file_anchor=Path(__file__), file_anchor_path_in_repository="rollback_assets/definitions.py"),
            )
    # Daily: retry anything still pending and re-run the fallback-age governance check.
    daily_flag_upkeep = dg.ScheduleDefinition(
        name="daily_flag_upkeep", job=flag_action_job, cron_schedule="0 6 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every day at 06:00 UTC: retry flag actions still pending and re-run the fallback-age check.",
    )
    return dg.Definitions(
        assets=assets,
        schedules=[daily_flag_upkeep],
        asset_checks=checks,
        jobs=[feedback_job, flag_action_job],
        sensors=[landing_zone_sensor, rollback_decision_sensor, guardrail_alert, run_failure_alert],
        resources=resources,
    )


defs = build_definitions()
