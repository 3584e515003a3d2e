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

from pydantic import BaseModel, ConfigDict, Field

from .baselines import WindowConfig
from .code_digest import closure_digest
from .config_file import ConfigError, read_yaml, validated
from .negatives_daily import EVIDENCE_CANDIDATES
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
    """`windows:`: the ranges checked here, the defaults those of `baselines.WindowConfig` (declared once)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: float = Field(WindowConfig.window_days, gt=0)
    rolling_releases: int = Field(WindowConfig.rolling_releases, ge=1)
    rolling_days: float = Field(WindowConfig.rolling_days, gt=0)
    evidence_quotes: int = Field(WindowConfig.evidence_quotes, ge=0, le=EVIDENCE_CANDIDATES)
    min_rows_to_judge: int = Field(WindowConfig.min_rows_to_judge, ge=1)
    one_vote_per_author: bool = WindowConfig.one_vote_per_author


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
        text = None if path else resources.files("rollback_assets.config").joinpath("policy.yaml").read_text()
        return cls.from_dict(read_yaml(where, text) or {}, source=where)

    @classmethod
    def from_dict(cls, spec: dict, source: str = "policy") -> "PolicyConfig":
        from .policy import RULES, rule_named  # the rule registry lives with the rules

        if not isinstance(spec, dict):
            raise ConfigError(f"{source}: a policy is a mapping with name, version, windows, defaults, flags")
        parsed = validated(PolicyFile, spec, source)
        overrides = {}
        for flag, body in parsed.flags.items():
            merged = {**parsed.defaults.model_dump(), **(body or {})}
            overrides[flag] = validated(Thresholds, merged, source, f"flags.{flag}.")
        try:
            rule = rule_named(parsed.name)
        except ValueError:
            raise ConfigError(f"{source}: name: {parsed.name!r} is not a decision rule (allowed: {', '.join(sorted(RULES))})") from None
        # The version names the settings and the code that applies them (the import closure of the
        # policy and of the rule: baselines, stats, ...): a changed statistic yields new decision ids
        # instead of a rerun silently keeping the old verdicts.
        code = closure_digest(__name__.rpartition(".")[0] + ".policy", rule.__module__)
        digest = hashlib.sha256((json.dumps(spec, sort_keys=True, default=str) + code).encode()).hexdigest()[:8]
        return cls(
            name=parsed.name,
            version=f"{parsed.name}-v{parsed.version}-{digest}",
            windows=WindowConfig(**parsed.windows.model_dump()),
            defaults=parsed.defaults,
            overrides=overrides,
        )
