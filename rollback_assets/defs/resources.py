"""Swappable parts, one ConfigurableResource each; `definitions.py` picks them per deployment."""

from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import PrivateAttr

from ..core.attribution import DEFAULT_COHORT_DIMENSIONS
from ..core.landing import LandingScan, scan_landing_zone
from ..core.lake import Lake
from ..core.policy import PolicyConfig
from ..core.scoring.base import Scorer
from ..core.scoring.model_store import ModelStore
from ..core.scoring.registry import ALIASES, SCORER_KINDS, make_scorer
from ..core.taxonomy import Taxonomy

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class LakeResource(dg.ConfigurableResource):
    """Root of the Delta tables: a local folder by default, or an `s3://`, `abfss://` or `gs://` URL.
    Credentials and endpoint options come from the environment (AWS_* / AZURE_* / GOOGLE_*, see
    `core/storage.py`), never from this config, so they never show in the UI."""

    root: str
    _lake: Lake | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """One Lake for the run's steps in this process (Dagster calls this once per run and process), so
        a table's snapshot is opened once and then brought up to date from its new commits: an open
        replays the table's log (~30 ms a table at 90 days of daily runs) and a run's steps and checks
        opened tables ~45 times, ~1 s of a new day that grew with history."""
        self._lake = Lake(self.root)

    def lake(self) -> Lake:
        """The run's Lake; outside a run (a check or asset invoked directly) a fresh one per call."""
        return self._lake if self._lake is not None else Lake(self.root)

    def model_store(self) -> ModelStore:
        """The sentiment model store, `<lake>/models` (local or object storage)."""
        return ModelStore(self.lake().files("models"))


class LandingZoneResource(dg.ConfigurableResource):
    """Folder of incoming files: one subfolder per source, named after its mapping.

    `author_salt` keys the hash of personal columns (user names, requester ids); it comes from
    ROLLBACK_AUTHOR_SALT and must not be empty when a mapping hashes something (ingest refuses).
    """

    path: str
    mapping_dir: str | None = None  # your own mappings; shipped ones are found by name too
    author_salt: str = ""

    def scan(self) -> LandingScan:
        return scan_landing_zone(self.path, [Path(self.mapping_dir)] if self.mapping_dir else [])


class SettingsResource(dg.ConfigurableResource):
    """What a team tunes without code: cohort dimensions, policy and taxonomy files, releases file."""

    cohort_dimensions: list[str] = list(DEFAULT_COHORT_DIMENSIONS)
    policy_path: str | None = None
    taxonomy_path: str | None = None
    releases_path: str | None = None  # optional YAML synced into release_artifacts on each run
    kpis_path: str | None = None  # optional CSV of business KPIs per flag and cohort

    def policy(self) -> PolicyConfig:
        return PolicyConfig.load(self.policy_path)

    def taxonomy(self) -> Taxonomy:
        return Taxonomy.load(self.taxonomy_path)


class ScorerResource(dg.ConfigurableResource):
    """Which scorer reads the text of rows without a rating (core/scoring/registry.py names the kinds).

    auto: the calibrated model where it beat the lexicon on held-out rows, else the lexicon.
    openai | azure: the LLM scorer (core/scoring/llm.py); its key comes from the environment
    (OPENAI_API_KEY / AZURE_OPENAI_API_KEY, or an EnvVar given as api_key).
    """

    kind: Literal[(*SCORER_KINDS, *ALIASES)] = "auto"
    model: str = "gpt-4o-mini"
    deployment: str | None = None
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    api_key: str | None = None
    batch_size: int = 20
    concurrency: int = 8
    budget_usd: float | None = None
    prompt_version: str | None = None

    def scorer(self, lake: LakeResource, taxonomy: Taxonomy) -> Scorer:
        if self.kind in ("openai", "azure"):
            options = {
                "model": self.model, "deployment": self.deployment, "base_url": self.base_url,
                "azure_endpoint": self.azure_endpoint, "api_version": self.api_version, "api_key": self.api_key,
                "batch_size": self.batch_size, "concurrency": self.concurrency, "budget_usd": self.budget_usd,
                "prompt_version": self.prompt_version, "cache_root": lake.root,
            }
            return make_scorer(self.kind, taxonomy, **{k: v for k, v in options.items() if v is not None})
        return make_scorer(self.kind, taxonomy, text_model=lake.model_store().current())
