"""The policy file, typed and strict: every setting declared once, with its range and default.

A typo (`min_sampel`), a wrong type (`min_sample: fifty`), a value out of range (`alpha: -1`) or an
unknown choice (`approval: aprove`) is refused when the file loads, with the file, the key and what is
allowed, instead of silently falling back to a default or failing later inside a run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .baselines import WindowConfig
from .vocabulary import ApprovalMode


class Thresholds(BaseModel):
    """Per-flag settings (under `defaults:`, overridable under `flags: <key>:`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_relative_rise: float = Field(0.30, gt=0, description="rise that counts (pass once it is ruled out; severity)")
    min_sample: int = Field(100, ge=1, description="rows on each side below which a cohort is insufficient_data")
    min_baseline_sample: int = Field(100, ge=1, description="a same-period baseline thinner than this is not used")
    min_mean_confidence: float = Field(0.80, ge=0.5, le=1, description="full-weight scorer confidence")
    require_high_risk_topic: bool = Field(True, description="a rise off the release's surfaces holds, never acts")
    severe_relative_rise: float = Field(1.0, gt=0, description="rise that goes straight to the fallback")
    approval: ApprovalMode = Field("auto", description="approve: a human approves every flag change")
    cooldown_hours: float = Field(6.0, ge=0, description="no second automatic change to a flag within this time")
    max_fallback_days: float | None = Field(
        None, gt=0, description="governance: a fallback older than this names the owner (None: the check's default)")
    reference_negative_share: float | None = Field(
        None, gt=0, lt=1, description="cold start: the negative share the flag normally runs at (a declared baseline)")
    reference_weight: int = Field(1000, ge=1, description="rows the declared baseline counts as")
    # the sequential rule (core/sequential_policy.py)
    alpha: float = Field(0.05, gt=0, lt=1, description="P(any false rollback of a release, all looks and cohorts)")
    margin: float = Field(0.05, ge=0, lt=1, description="rises up to this relative size are noise")
    tau_rel: float = Field(0.30, gt=0, description="relative rise the test finds fastest (power only)")
    flag_alpha_share: float = Field(0.5, gt=0, lt=1, description="share of alpha for the flag as a whole")
    min_cohorts: int = Field(1, ge=1, description="split the cohorts' alpha over at least this many")
    kpi_min_change: float = Field(0.05, ge=0, description="a business KPI moving this much the bad way corroborates")


class WindowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: float = Field(7.0, gt=0)
    rolling_releases: int = Field(3, ge=1)
    rolling_days: float = Field(28.0, gt=0)
    evidence_quotes: int = Field(5, ge=0, le=20)
    min_rows_to_judge: int = Field(20, ge=1)
    one_vote_per_author: bool = True


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("sequential", min_length=1)
    version: int | str = 0
    windows: WindowSettings = WindowSettings()
    defaults: Thresholds = Thresholds()
    flags: dict[str, dict] = Field(default_factory=dict)


@dataclass(frozen=True)
class PolicyConfig:
    name: str
    version: str
    windows: WindowConfig
    defaults: Thresholds
    overrides: dict[str, Thresholds]

    def for_flag(self, flag_key: str) -> Thresholds:
        return self.overrides.get(flag_key, self.defaults)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PolicyConfig":
        where = str(path) if path else "rollback_assets/config/policy.yaml"
        text = Path(path).read_text() if path else resources.files("rollback_assets.config").joinpath("policy.yaml").read_text()
        try:
            spec = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{where}: not valid YAML: {error}") from None
        return cls.from_dict(spec, source=where)

    @classmethod
    def from_dict(cls, spec: dict, source: str = "policy") -> "PolicyConfig":
        from .policy import RULES, rule_for  # the rule registry lives with the rules

        if not isinstance(spec, dict):
            raise ValueError(f"{source}: a policy is a mapping with name, version, windows, defaults, flags")
        parsed = _validated(PolicyFile, spec, source, "")
        overrides = {}
        for flag, body in parsed.flags.items():
            merged = {**parsed.defaults.model_dump(), **(body or {})}
            overrides[flag] = _validated(Thresholds, merged, source, f"flags.{flag}.")
        # The version names the settings and the code that applies them: a changed statistic or
        # baseline yields new decision ids instead of a rerun silently keeping the old verdicts.
        digest = hashlib.sha256((json.dumps(spec, sort_keys=True, default=str) + _decision_code_digest()).encode()).hexdigest()[:8]
        config = cls(
            name=parsed.name,
            version=f"{parsed.name}-v{parsed.version}-{digest}",
            windows=WindowConfig(**parsed.windows.model_dump()),
            defaults=parsed.defaults,
            overrides=overrides,
        )
        try:
            rule_for(config)
        except ValueError:
            raise ValueError(f"{source}: name: {parsed.name!r} is not a decision rule; known: {sorted(RULES)}") from None
        return config


def _validated(model, data: dict, source: str, prefix: str):
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = prefix + ".".join(str(part) for part in item["loc"])
            if item["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(_fields(model, item["loc"])))
                problems.append(f"{key}: unknown setting (allowed here: {allowed})")
            else:
                problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
        raise ValueError(f"{source}: " + "; ".join(problems)) from None


def _fields(model, loc) -> list[str]:
    """The settings allowed where an unknown key was found."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return list(model.model_fields)


def _decision_code_digest() -> str:
    """Hash of the modules that turn scored rows into verdicts (read once per process)."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        folder = Path(__file__).parent
        sources = [(folder / f"{name}.py").read_bytes() for name in DECISION_MODULES]
        _CODE_DIGEST = hashlib.sha256(b"\0".join(sources)).hexdigest()
    return _CODE_DIGEST


DECISION_MODULES = ("baselines", "policy", "sequential_policy", "stats", "policy_config")
_CODE_DIGEST: str | None = None
