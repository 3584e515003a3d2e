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

from .core.normalise import SALT_ENV
from .core.settings import Settings
from .defs.engines import feedback_assets, launcher_from_env
from .engines import Engine, engine_from_env
from .defs.checks import CHECKS
from .defs.governance import GOVERNANCE_CHECKS
from .defs.reports import postmortems, release_health
from .defs.resources import PROJECT_ROOT, LakeResource, LandingZoneResource, ScorerResource, SettingsResource
from .defs.alerts import guardrail_alert, run_failure_alert
from .defs.flags import FLAG_ACTION_JOB_NAME, flag_actions, flag_control_from_env, rollback_decision_sensor
from .defs.sensors import FEEDBACK_JOB_NAME, landing_zone_sensor


def resources_for(settings: Settings) -> dict:
    """The resources of `settings.deployment`. Secrets are `dg.EnvVar`s, resolved in the run."""
    lake = LakeResource(root=settings.lake or str(PROJECT_ROOT / "lake"))
    landing = LandingZoneResource(
        path=settings.landing or str(PROJECT_ROOT / "landing"),
        mapping_dir=settings.mappings,
        # Optional (only mappings that hash need it, and ingest refuses to hash without it): an EnvVar only
        # when set, since Dagster fails a run whose EnvVar is unset.
        author_salt=dg.EnvVar(SALT_ENV) if os.environ.get(SALT_ENV) else "",
    )
    resources = {"lake": lake, "landing": landing, "flags": flag_control_from_env(settings),
                 "settings": SettingsResource(policy_path=settings.policy, taxonomy_path=settings.taxonomy,
                                              releases_path=settings.releases, kpis_path=settings.kpis)}
    scorers = {
        # Embedded parts only: offline scorer, local Delta tables, flagd flag file.
        "local": ScorerResource(kind="auto"),
        # OpenAI (or any compatible server via OPENAI_BASE_URL), key from OPENAI_API_KEY.
        "openai": ScorerResource(kind="openai", model=settings.llm_model, budget_usd=settings.llm_budget_usd),
        # Azure OpenAI: AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY, OPENAI_API_VERSION, deployment name.
        "azure": ScorerResource(kind="azure", deployment=settings.azure_deployment, budget_usd=settings.llm_budget_usd),
    }
    return {**resources, "scorer": scorers[settings.deployment]}


def build_definitions(deployment: str | None = None, engine: Engine | None = None) -> dg.Definitions:
    """Reads settings, never data: what the guardrail covers is decided in the run (defs/checks.py)."""
    settings = Settings.from_env({**os.environ, "ROLLBACK_DEPLOYMENT": deployment} if deployment else None)
    engine = engine or engine_from_env()
    resources = resources_for(settings)
    launcher = launcher_from_env(engine)
    if launcher is not None:
        resources["spark_job_launcher"] = launcher
    feedback = feedback_assets(engine)
    checks = [*CHECKS, *GOVERNANCE_CHECKS]
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
        if settings.git_url:  # code references open the file at that branch instead of on disk
            assets = dg.link_code_references_to_git(
                assets, git_url=settings.git_url, git_branch=settings.git_branch,
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
