"""Swappable parts, one ConfigurableResource each; `definitions.py` picks them per deployment."""

import json
import os
import pickle
from pathlib import Path

import dagster as dg

from ..core.attribution import DEFAULT_COHORT_DIMENSIONS
from ..core.ingest import Mapping, landing_candidates
from ..core.lake import Lake
from ..core.policy import PolicyConfig
from ..core.scoring.base import Scorer
from ..core.scoring.calibrated import CalibratedScorer
from ..core.scoring.lexicon import LexiconScorer
from ..core.scoring.llm import make_scorer
from ..core.taxonomy import Taxonomy

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_path(env: str, relative: str) -> str:
    return os.environ.get(env) or str(PROJECT_ROOT / relative)


class LakeResource(dg.ConfigurableResource):
    """Root of the Delta tables (a local folder by default; any path deltalake can write)."""

    root: str

    def lake(self) -> Lake:
        return Lake(self.root)

    def model_dir(self) -> Path:
        return Path(self.root) / "models"


class LandingZoneResource(dg.ConfigurableResource):
    """Folder of incoming files: one subfolder per source, named after its mapping."""

    path: str
    mapping_dir: str | None = None  # your own mappings; shipped ones are found by name too
    author_salt: str = ""

    def candidates(self) -> list[tuple[Path, Mapping]]:
        return landing_candidates(self.path, self.mapping_dir)


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
    """Which scorer reads the text.

    auto: the calibrated model where it beat the lexicon on held-out rows, else the lexicon.
    lexicon: always the lexicon. openai | azure: the LLM scorer (see core/scoring/llm.py); its key comes
    from the environment (OPENAI_API_KEY / AZURE_OPENAI_API_KEY, or an EnvVar given as api_key).
    """

    kind: str = "auto"
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
        if self.kind == "lexicon":
            return LexiconScorer()
        if self.kind == "auto":
            return current_model(lake.model_dir()) or LexiconScorer()
        if self.kind in ("openai", "azure"):
            options = {
                "model": self.model, "deployment": self.deployment, "base_url": self.base_url,
                "azure_endpoint": self.azure_endpoint, "api_version": self.api_version, "api_key": self.api_key,
                "batch_size": self.batch_size, "concurrency": self.concurrency, "budget_usd": self.budget_usd,
                "prompt_version": self.prompt_version, "cache_root": lake.root,
            }
            return make_scorer(self.kind, taxonomy=taxonomy, **{k: v for k, v in options.items() if v is not None})
        raise ValueError(f"unknown scorer kind {self.kind!r}: auto, lexicon, openai or azure")


def model_pointer(model_dir: Path) -> dict | None:
    pointer = model_dir / "current.json"
    return json.loads(pointer.read_text()) if pointer.exists() else None


def current_model(model_dir: Path) -> CalibratedScorer | None:
    chosen = model_pointer(model_dir)
    if not chosen or not chosen.get("use_calibrated"):
        return None
    with open(model_dir / chosen["file"], "rb") as handle:
        return pickle.load(handle)


def save_model(model_dir: Path, model: CalibratedScorer, rated_rows: int) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"{model.version}.pkl"
    with open(path, "wb") as handle:
        pickle.dump(model, handle)
    (model_dir / "current.json").write_text(
        json.dumps({"file": path.name, "version": model.version, "rated_rows": rated_rows,
                    "use_calibrated": model.validation.calibrated_wins})
    )
    return path
