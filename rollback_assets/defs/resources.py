"""Swappable parts, one ConfigurableResource each; `definitions.py` picks them per deployment."""

import json
import os
import pickle
from pathlib import Path

import dagster as dg

from ..core.attribution import DEFAULT_COHORT_DIMENSIONS
from ..core.ingest import Mapping, load_mapping
from ..core.lake import Lake
from ..core.storage import Files
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
    """Root of the Delta tables: a local folder by default, or an `s3://`, `abfss://` or `gs://` URL.
    Credentials and endpoint options come from the environment (AWS_* / AZURE_* / GOOGLE_*, see
    `core/storage.py`), never from this config, so they never show in the UI."""

    root: str

    def lake(self) -> Lake:
        return Lake(self.root)

    def model_dir(self) -> Files:
        """The sentiment model store, `<lake>/models`."""
        return self.lake().files("models")


class LandingZoneResource(dg.ConfigurableResource):
    """Folder of incoming files: one subfolder per source, named after its mapping."""

    path: str
    mapping_dir: str | None = None  # your own mappings; shipped ones are found by name too
    author_salt: str = ""

    def candidates(self) -> list[tuple[Path, Mapping]]:
        root = Path(self.path)
        if not root.exists():
            return []
        search = [Path(self.mapping_dir)] if self.mapping_dir else []
        out = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            mapping = load_mapping(folder.name, search)
            suffixes = {"csv": (".csv",), "jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}[mapping.format]
            out.extend((f, mapping) for f in sorted(folder.iterdir()) if f.suffix in suffixes)
        return out


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


MODEL_POINTER = "current.json"


def model_pointer(model_dir: Files) -> dict | None:
    return json.loads(model_dir.read_bytes(MODEL_POINTER)) if model_dir.exists(MODEL_POINTER) else None


def current_model(model_dir: Files) -> CalibratedScorer | None:
    chosen = model_pointer(model_dir)
    if not chosen or not chosen.get("use_calibrated"):
        return None
    return pickle.loads(model_dir.read_bytes(chosen["file"]))


def save_model(model_dir: Files, model: CalibratedScorer, rated_rows: int) -> str:
    """The model file first, then the pointer: a reader sees the old model or the new one, whole."""
    name = f"{model.version}.pkl"
    uri = model_dir.write_bytes(name, pickle.dumps(model))
    model_dir.write_bytes(MODEL_POINTER, json.dumps(
        {"file": name, "version": model.version, "rated_rows": rated_rows, "use_calibrated": model.validation.calibrated_wins}
    ).encode())
    return uri
