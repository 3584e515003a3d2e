"""The deployment's environment settings (ROLLBACK_*, and the flag backends' own variables), typed.

Why a model: `ROLLBACK_FLAG_BACKEND=unleesh` used to load and fail at the first flag change, hours
later, inside a run; a budget of `ten` failed as a bare `float()` error. Read here, a wrong value is
refused when the code location (or the CLI) loads, naming the variable and what is allowed. Secrets
(tokens, salts, webhook secrets) are not settings: the Dagster shell passes them as `dg.EnvVar`, so
they are resolved in the run and never shown in run config.

Add a setting: one field here with its alias (the variable), type, default and description; then use
it where the resources are built (definitions.py, defs/flags.py) or in the CLI.
"""

from __future__ import annotations

import logging
import os
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .config_file import validated
from .flags import BACKEND_KINDS

log = logging.getLogger(__name__)

DEPLOYMENTS = ("local", "openai", "azure")
# Read elsewhere on purpose: engines/__init__.py (no pydantic needed on a Spark cluster), secrets (dg.EnvVar),
# the CLI's actor, the Databricks launcher's options, and test hooks.
_READ_ELSEWHERE_PREFIXES = ("ROLLBACK_ENGINE", "ROLLBACK_SPARK_", "ROLLBACK_DATABRICKS_", "ROLLBACK_DBFS_", "ROLLBACK_AUTHOR_SALT",
                            "ROLLBACK_WEBHOOK_SECRET", "ROLLBACK_ACTOR", "ROLLBACK_TEST_")


class Settings(BaseModel):
    """One field per variable; `None` means "not set": the shipped default named in the description."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    deployment: Literal[DEPLOYMENTS] = Field("local", alias="ROLLBACK_DEPLOYMENT",
                                             description="which scorer: local (offline), openai or azure")
    lake: str | None = Field(None, alias="ROLLBACK_LAKE", description="lake root folder or URL (default ./lake)")
    landing: str | None = Field(None, alias="ROLLBACK_LANDING", description="landing zone folder, local or mounted (default ./landing)")
    mappings: str | None = Field(None, alias="ROLLBACK_MAPPINGS", description="folder of your own mapping YAMLs")
    policy: str | None = Field(None, alias="ROLLBACK_POLICY", description="policy YAML (default: shipped policy.yaml)")
    taxonomy: str | None = Field(None, alias="ROLLBACK_TAXONOMY", description="taxonomy YAML (default: shipped)")
    releases: str | None = Field(None, alias="ROLLBACK_RELEASES", description="releases YAML synced on each run")
    kpis: str | None = Field(None, alias="ROLLBACK_KPIS", description="business KPI CSV")
    flag_backend: Literal[BACKEND_KINDS] = Field("flagd", alias="ROLLBACK_FLAG_BACKEND")
    flagd_file: str | None = Field(None, alias="ROLLBACK_FLAGD_FILE", description="flagd file (default ./flags/flags.json)")
    flag_webhook_url: str | None = Field(None, alias="ROLLBACK_FLAG_WEBHOOK_URL")
    notify_url: str | None = Field(None, alias="ROLLBACK_NOTIFY_URL", description="signed notifications go here")
    unleash_url: str | None = Field(None, alias="UNLEASH_URL")
    unleash_environment: str | None = Field(None, alias="UNLEASH_ENVIRONMENT")
    launchdarkly_base_url: str | None = Field(None, alias="LAUNCHDARKLY_BASE_URL")
    launchdarkly_project: str | None = Field(None, alias="LAUNCHDARKLY_PROJECT")
    launchdarkly_environment: str | None = Field(None, alias="LAUNCHDARKLY_ENVIRONMENT")
    llm_model: str = Field("gpt-4o-mini", alias="ROLLBACK_LLM_MODEL", min_length=1)
    llm_budget_usd: float | None = Field(None, alias="ROLLBACK_LLM_BUDGET_USD", gt=0)
    azure_deployment: str | None = Field(None, alias="ROLLBACK_AZURE_DEPLOYMENT")
    git_url: str | None = Field(None, alias="ROLLBACK_GIT_URL", description="code references open files there")
    git_branch: str = Field("main", alias="ROLLBACK_GIT_BRANCH")

    @field_validator("landing")
    @classmethod
    def _landing_is_a_folder(cls, value):
        """Landing files are listed and read as files (pandas engine and the Spark job alike): an
        object-store URL would be taken for a folder named `s3:` and found empty, run after run."""
        if value is not None and "://" in value:
            raise ValueError("the landing zone is a folder path: local, or an object store mounted as a folder "
                             "(e.g. /Volumes/... or /dbfs/... on Databricks); a URL is not read")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings in `environ` (default: this process's); empty values count as not set."""
        env = os.environ if environ is None else environ
        known = {f.alias for f in cls.model_fields.values()}
        values = {name: value for name, value in env.items() if name in known and value != ""}
        unknown = sorted(n for n in env if n.startswith("ROLLBACK_") and n not in known
                         and not n.startswith(_READ_ELSEWHERE_PREFIXES))
        if unknown:  # a typo'd name would otherwise be silently ignored
            log.warning("environment: %s not a setting and ignored (settings: %s)", ", ".join(unknown),
                        ", ".join(sorted(k for k in known if k.startswith("ROLLBACK_"))))
        return validated(cls, values, "environment")
