"""Rollback policy: readable thresholds in YAML, a swappable decision rule, deterministic decision rows.

A rule turns cohort baselines into verdicts (state, action, severity, statistic, bound, reason).
`make_decisions` adds everything a postmortem needs: a decision id derived from the inputs, the
recommended target, evidence and lineage. Replacing the rule changes nothing else.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import yaml

from .baselines import WindowConfig, relative_rise
from .schemas import DECISIONS

STATES = ("act", "hold", "pass", "insufficient_data")
VERDICT_COLUMNS = ["baseline_kind", "state", "action", "severity", "statistic", "bound", "reason"]


@dataclass(frozen=True)
class Thresholds:
    min_relative_rise: float = 0.30
    min_sample: int = 200
    min_baseline_sample: int = 200
    min_mean_confidence: float = 0.80
    require_high_risk_topic: bool = True
    severe_relative_rise: float = 1.0
    approval: str = "auto"
    cooldown_hours: float = 6.0
    extra: dict = field(default_factory=dict)  # rule-specific settings (e.g. alpha for a sequential rule)


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
        text = (
            Path(path).read_text()
            if path
            else resources.files("rollback_assets.config").joinpath("policy.yaml").read_text()
        )
        return cls.from_dict(yaml.safe_load(text))

    @classmethod
    def from_dict(cls, spec: dict) -> "PolicyConfig":
        defaults = _thresholds(Thresholds(), spec.get("defaults") or {})
        overrides = {flag: _thresholds(defaults, body or {}) for flag, body in (spec.get("flags") or {}).items()}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return cls(
            name=spec.get("name", "fixed-rule"),
            version=f"{spec.get('name', 'fixed-rule')}-v{spec.get('version', 0)}-{digest}",
            windows=WindowConfig(**(spec.get("windows") or {})),
            defaults=defaults,
            overrides=overrides,
        )


def _thresholds(base: Thresholds, body: dict) -> Thresholds:
    known = {f.name for f in fields(Thresholds)} - {"extra"}
    extra = {**base.extra, **{k: v for k, v in body.items() if k not in known}}
    return replace(base, **{k: v for k, v in body.items() if k in known}, extra=extra)


class Rule(Protocol):
    def __call__(self, baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
        """One verdict row (VERDICT_COLUMNS) per (flag_key, release_version, cohort), indexed by those."""
        ...


def choose_baseline(baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """Prefer the concurrent baseline; fall back to the rolling one where it is too thin."""
    if baselines.empty:
        return baselines
    min_n = baselines.flag_key.map(lambda f: config.for_flag(f).min_baseline_sample)
    concurrent_ok = (baselines.baseline_kind == "concurrent") & (baselines.baseline_n >= min_n)
    rank = np.where(concurrent_ok, 0, np.where(baselines.baseline_kind == "rolling", 1, 2))
    ordered = baselines.assign(_rank=rank).sort_values("_rank", kind="stable")
    return ordered.drop_duplicates(["flag_key", "release_version", "cohort"]).drop(columns="_rank")


def fixed_rule(baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """The seed article's rule: rise >= 30 %, n >= 200, mean confidence >= 0.8, high-risk topic."""
    chosen = choose_baseline(baselines, config)
    verdicts = [_fixed_verdict(row, config.for_flag(row.flag_key)) for row in chosen.itertuples()]
    out = pd.DataFrame(verdicts, columns=["state", "action", "severity", "statistic", "bound", "reason"], index=chosen.index)
    out["baseline_kind"] = chosen.baseline_kind
    out[["flag_key", "release_version", "cohort"]] = chosen[["flag_key", "release_version", "cohort"]]
    return out.set_index(["flag_key", "release_version", "cohort"])[VERDICT_COLUMNS]


def _fixed_verdict(row, t: Thresholds) -> tuple:
    rise = relative_rise(row.negative_share, row.baseline_negative_share)
    if row.n < t.min_sample or row.baseline_n < t.min_baseline_sample:
        return ("insufficient_data", "none", "none", rise, None,
                f"Not enough feedback yet: {row.n} rows (minimum {t.min_sample}) against a baseline of "
                f"{row.baseline_n} (minimum {t.min_baseline_sample}).")
    if rise is None or rise < t.min_relative_rise:
        return ("pass", "none", "none", rise, None,
                f"Negative share {row.negative_share:.0%} is within {t.min_relative_rise:.0%} of the baseline {row.baseline_negative_share:.0%}.")
    top_topic = (json.loads(row.top_topics or "[]") or [[None]])[0][0]
    on_surface = row.n_negative_high_risk >= 0.5 * max(row.n_negative, 1)
    if t.require_high_risk_topic and not on_surface:
        return ("hold", "hold_promotion", "low", rise, None,
                f"Negative share rose {rise:.0%}, but the complaints (mostly '{top_topic}') are not on a high-risk surface; promotion is held for a human.")
    if (row.mean_confidence or 0) < t.min_mean_confidence:
        return ("hold", "hold_promotion", "low", rise, None,
                f"Negative share rose {rise:.0%}, but the scorer's mean confidence {row.mean_confidence:.2f} is below {t.min_mean_confidence:.2f}; promotion is held.")
    severe = rise >= t.severe_relative_rise or (row.mean_urgency_high or 0) >= 0.5
    return ("act", "disable" if severe else "step_down", "severe" if severe else "moderate", rise, None,
            f"Negative share rose {rise:.0%} ({row.baseline_negative_share:.0%} to {row.negative_share:.0%}, n={row.n}), mostly about {top_topic}.")


RULES: dict[str, Rule] = {"fixed-rule": fixed_rule}


def register_rule(name: str, rule: Rule) -> None:
    RULES[name] = rule


def rule_for(config: PolicyConfig) -> Rule:
    if config.name not in RULES:
        from . import sequential_policy  # noqa: F401  (registers "sequential" on import)
    try:
        return RULES[config.name]
    except KeyError:
        raise ValueError(f"policy names rule {config.name!r}; known rules: {sorted(RULES)}") from None


def decision_id(row: dict, policy_version: str) -> str:
    """Same inputs, same id: a rerun on unchanged data reproduces the decision rather than adding one."""
    keys = ("flag_key", "release_version", "cohort", "baseline_kind", "window_start", "window_end",
            "n", "n_negative", "baseline_n", "baseline_n_negative")
    payload = json.dumps([str(row[k]) for k in keys] + [policy_version])
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def make_decisions(
    baselines: pd.DataFrame,
    releases: pd.DataFrame,
    config: PolicyConfig,
    lineage: dict,
    decided_at: pd.Timestamp,
    business_kpis: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Decision rows for every evaluated cohort. `lineage` holds scorer_version, input_versions, run_id.
    `business_kpis` reaches rules that take it (the sequential rule); others ignore it."""
    if baselines.empty:
        return DECISIONS.empty_frame()
    rule = rule_for(config)
    takes_kpis = "business_kpis" in inspect.signature(rule).parameters
    verdicts = (rule(baselines, config, business_kpis=business_kpis) if takes_kpis else rule(baselines, config)).reset_index()
    merged = verdicts.merge(baselines, on=["flag_key", "release_version", "cohort", "baseline_kind"], how="left")
    release_cols = ["flag_key", "version", "code_commit", "notebook_commit", "model_name", "model_version", "ladder", "fallback_variant"]
    merged = merged.merge(
        releases[release_cols].rename(columns={"version": "release_version"}), on=["flag_key", "release_version"], how="left"
    )
    merged["relative_rise"] = [relative_rise(a, b) for a, b in zip(merged.negative_share, merged.baseline_negative_share)]
    merged["action"] = [
        _final_action(a, fallback) for a, fallback in zip(merged.action, merged.fallback_variant)
    ]
    merged["target_rollout"] = [_target(a, ladder) for a, ladder in zip(merged.action, merged.ladder)]
    merged["policy_name"] = config.name
    merged["policy_version"] = config.version
    merged["scorer_version"] = lineage.get("scorer_version")
    merged["input_versions"] = json.dumps(lineage.get("input_versions", {}), sort_keys=True)
    merged["run_id"] = lineage.get("run_id")
    merged["decided_at"] = decided_at
    merged["decision_id"] = [decision_id(r, config.version) for r in merged.to_dict("records")]
    return merged.sort_values(["flag_key", "cohort"]).reset_index(drop=True)[DECISIONS.names]


def _final_action(action: str, fallback_variant) -> str:
    if action == "disable" and isinstance(fallback_variant, str) and fallback_variant:
        return "switch_variant"
    return action


def _target(action: str, ladder) -> int | None:
    """The recommendation as seen from full exposure; the flag action re-reads the live rollout."""
    steps = list(ladder) if ladder is not None else [100, 25, 5, 0]
    if action == "step_down":
        return int(steps[1]) if len(steps) > 1 else 0
    if action in ("disable", "switch_variant"):
        return int(steps[-1])
    return None


def latest_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """Each flag's most recent evaluation (decisions accumulate across runs)."""
    if decisions.empty:
        return decisions
    return decisions[decisions.window_end == decisions.groupby("flag_key").window_end.transform("max")]


def guardrail_status(decisions: pd.DataFrame, flag_key: str) -> tuple[bool, str]:
    """(passing, why) for one flag: it fails while its latest evaluation acts on any cohort."""
    latest = latest_decisions(decisions[decisions.flag_key == flag_key])
    acting = latest[latest.state == "act"]
    if acting.empty:
        return True, f"no cohort of {flag_key} calls for action"
    worst = acting.sort_values("relative_rise", ascending=False).iloc[0]
    return False, f"{len(acting)} cohort(s) of {flag_key} call for action, e.g. {worst.cohort}: {worst.reason}"
