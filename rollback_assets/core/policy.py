"""Rollback policy: readable thresholds in YAML, a swappable decision rule, deterministic decision rows.

A rule turns cohort baselines into verdicts (state, action, severity, statistic, bound, reason).
`make_decisions` adds everything a postmortem needs: a decision id derived from the inputs, the
recommended target, evidence and lineage. Replacing the rule changes nothing else.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Protocol

import numpy as np
import pandas as pd
from .baselines import BASELINE_KINDS, SAME_PERIOD_KINDS, relative_rise, relative_rises
from .policy_config import PolicyConfig, Thresholds
from .releases import DEFAULT_LADDER
from .schemas import DECISIONS

__all__ = ["PolicyConfig", "Thresholds", "make_decisions", "register_rule", "rule_for"]

VERDICT_COLUMNS = ["baseline_kind", "state", "action", "severity", "statistic", "bound", "reason"]


class Rule(Protocol):
    def __call__(self, baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
        """One verdict row (VERDICT_COLUMNS) per KEY (flag_key, release_version, cohort, window_end), indexed by it."""
        ...


# One verdict per judged release × cohort × look (window_end): a batch of looks is judged at once.
KEY = ["flag_key", "release_version", "cohort", "window_end"]


def _baseline_rank(baselines: pd.DataFrame, config: PolicyConfig) -> tuple[np.ndarray, np.ndarray]:
    """(rank, usable): concurrent, last_good, age_matched, then rolling; a same-period baseline is usable
    when it has min_baseline_sample rows, the rolling one only where no same-period baseline is."""
    min_n = baselines.flag_key.map({f: config.for_flag(f).min_baseline_sample for f in baselines.flag_key.unique()})
    order = {kind: i for i, kind in enumerate([*BASELINE_KINDS, "declared"])}
    rank = baselines.baseline_kind.map(order).fillna(len(order)).to_numpy()
    same_period = baselines.baseline_kind.isin([*SAME_PERIOD_KINDS, "declared"]).to_numpy()
    usable = same_period & (baselines.baseline_n >= min_n).to_numpy()
    return rank, usable


def with_declared_baselines(baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """Add a `declared` baseline row where a flag declares reference_negative_share and a key has no
    usable same-period baseline (see Thresholds)."""
    declared = {f: config.for_flag(f) for f in baselines.flag_key.unique()}
    declared = {f: t for f, t in declared.items() if t.reference_negative_share is not None}
    if not declared:
        return baselines
    _, usable = _baseline_rank(baselines, config)
    covered = baselines[usable][KEY].drop_duplicates()
    keys = baselines[baselines.flag_key.isin(list(declared))].drop_duplicates(KEY)
    keys = keys.merge(covered, on=KEY, how="left", indicator=True)
    keys = keys[keys["_merge"] == "left_only"].drop(columns="_merge")
    if keys.empty:
        return baselines
    share = keys.flag_key.map(lambda f: declared[f].reference_negative_share)
    weight = keys.flag_key.map(lambda f: declared[f].reference_weight)
    rows = keys.assign(baseline_kind="declared", baseline_versions="declared in policy", baseline_n=weight,
                       baseline_n_negative=(share * weight).round().astype(int), baseline_negative_share=share,
                       baseline_mean_sentiment=None)
    rows = rows.dropna(axis=1, how="all")
    # A column no measured baseline filled takes the declared rows' type (pandas will stop ignoring an
    # all-missing column when it picks a concatenation's types).
    empty = {c: rows[c].dtype for c in rows.columns if c in baselines and baselines[c].isna().all()}
    return pd.concat([baselines.astype(empty), rows], ignore_index=True)


def choose_baseline(baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """One baseline per key: the first usable of concurrent, last_good, age_matched; else rolling."""
    if baselines.empty:
        return baselines
    rank, usable = _baseline_rank(baselines, config)
    fallback = np.where(baselines.baseline_kind.to_numpy() == "rolling", 50, 100 + rank)
    ordered = baselines.assign(_rank=np.where(usable, rank, fallback)).sort_values("_rank", kind="stable")
    return ordered.drop_duplicates(KEY).drop(columns="_rank")


def eligible_baselines(baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """Every usable same-period baseline per key (each is tested, alpha split between them), or the
    one `choose_baseline` picks where none is usable. Adds `n_baselines` per key."""
    if baselines.empty:
        return baselines.assign(n_baselines=pd.Series(dtype=int))
    _, usable = _baseline_rank(baselines, config)
    key_tested = pd.Series(usable, index=baselines.index).groupby([baselines[k] for k in KEY], observed=True).transform("any")
    # Row positions, then one take: concatenating the two parts instead checks every value of an
    # all-None column (a tenth of a second per 100k rows).
    untested = np.flatnonzero(~key_tested.to_numpy())
    chosen = choose_baseline(baselines.iloc[untested].set_axis(untested), config).index.to_numpy(dtype=np.int64)
    out = baselines.iloc[np.concatenate([np.flatnonzero(usable), chosen])].reset_index(drop=True)
    out["n_baselines"] = out.groupby(KEY, observed=True).baseline_kind.transform("size")
    return out.sort_values(KEY + ["baseline_kind"], kind="stable").reset_index(drop=True)


STATE_PRIORITY = {"act": 0, "hold": 1, "pass": 3, "insufficient_data": 2}


def combine_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One verdict per key from the verdicts against each tested baseline: any act wins (the strongest
    evidence), then any hold; pass only when every baseline rules the rise out; else insufficient."""
    if verdicts.empty:
        return verdicts
    not_pass = (verdicts.state != "pass").groupby([verdicts[k] for k in KEY], observed=True).transform("any")
    priority = verdicts.state.map(STATE_PRIORITY).where(not_pass, -1)
    ordered = verdicts.assign(_p=priority.to_numpy(), _s=-verdicts.statistic.fillna(0).astype(float))
    ordered = ordered.sort_values(["_p", "_s"], kind="stable")
    return ordered.drop_duplicates(KEY).drop(columns=["_p", "_s"])


def fixed_rule(baselines: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """The seed article's rule: rise >= 30 %, n >= 200, mean confidence >= 0.8, high-risk topic."""
    chosen = choose_baseline(baselines, config)
    verdicts = [_fixed_verdict(row, config.for_flag(row.flag_key)) for row in chosen.itertuples()]
    out = pd.DataFrame(verdicts, columns=["state", "action", "severity", "statistic", "bound", "reason"], index=chosen.index)
    out["baseline_kind"] = chosen.baseline_kind
    out[KEY] = chosen[KEY]
    return out.set_index(KEY)[VERDICT_COLUMNS]


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
    return rule_named(config.name)


def rule_named(name: str) -> Rule:
    if name not in RULES:
        from . import sequential_policy  # noqa: F401  (registers "sequential" on import)
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"policy names rule {name!r}; known rules: {sorted(RULES)}") from None


DECISION_ID_KEYS = ("flag_key", "release_version", "cohort", "baseline_kind", "window_start", "window_end",
                    "n", "n_negative", "baseline_n", "baseline_n_negative")


def decision_ids(rows: pd.DataFrame, policy_version: str) -> list[str]:
    """Same inputs, same id: a rerun on unchanged data reproduces the decision rather than adding one.

    The id hashes the JSON list of the row's DECISION_ID_KEYS as text plus the policy version. Built a
    column at a time (each distinct value encoded once): replay makes ids for every look at once.
    """
    columns = [_json_texts(rows[key]) for key in DECISION_ID_KEYS]
    tail = ", " + json.dumps(policy_version) + "]"
    return [hashlib.sha256(("[" + ", ".join(parts) + tail).encode()).hexdigest()[:20] for parts in zip(*columns)]


def _json_texts(values: pd.Series) -> list[str]:
    """json.dumps(str(value)) per value, as Python prints it (numpy scalars boxed, as to_dict would)."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return ['"' + text + '"' for text in map(str, values.tolist())]  # digits, '.', 'e', 'nan': nothing to escape
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        codes, uniques = pd.factorize(values, use_na_sentinel=False)  # a few looks: print each once
        printed = [json.dumps(str(value)) for value in uniques]
        return [printed[code] for code in codes.tolist()]
    listed = values.tolist()
    encoded: dict = {}  # keyed by (type, value): 1 and 1.0 are equal keys but print differently
    return [encoded[key] if key in encoded else encoded.setdefault(key, json.dumps(str(key[1])))
            for key in zip(map(type, listed), listed)]


def make_decisions(
    baselines: pd.DataFrame,
    releases: pd.DataFrame,
    config: PolicyConfig,
    lineage: dict,
    decided_at: pd.Timestamp | None,
    business_kpis: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Decision rows for every evaluated cohort. `lineage` holds scorer_version, input_versions, run_id.
    `decided_at` None: each row's look (window_end), for a batch of looks.
    `business_kpis` reaches rules that take it (the sequential rule); others ignore it."""
    if baselines.empty:
        return DECISIONS.empty_frame()
    baselines = with_declared_baselines(baselines, config)
    rule = rule_for(config)
    takes_kpis = "business_kpis" in inspect.signature(rule).parameters
    verdicts = (rule(baselines, config, business_kpis=business_kpis) if takes_kpis else rule(baselines, config)).reset_index()
    merged = verdicts.merge(baselines, on=[*KEY, "baseline_kind"], how="left")
    release_cols = ["flag_key", "version", "code_commit", "notebook_commit", "model_name", "model_version", "ladder", "fallback_variant"]
    merged = merged.merge(
        releases[release_cols].rename(columns={"version": "release_version"}), on=["flag_key", "release_version"], how="left"
    )
    rise = relative_rises(merged.negative_share, merged.baseline_negative_share)
    merged["relative_rise"] = rise if not np.isnan(rise).all() else np.full(len(rise), None, dtype=object)
    # Only an act or a disable can change (the rest keep their action and have no target): a batch of
    # looks is mostly neither.
    states, actions = merged.state.to_numpy(dtype=object), merged.action.to_numpy(dtype=object).copy()
    fallbacks, live, ladders = (merged[c].to_numpy(dtype=object) for c in ("fallback_variant", "release_live", "ladder"))
    for i in np.flatnonzero((states == "act") | (actions == "disable")).tolist():
        actions[i] = _final_action(states[i], actions[i], fallbacks[i], live[i])
    merged["action"] = actions
    targets = [None] * len(merged)
    for i in np.flatnonzero(np.isin(actions, list(_TARGET_ACTIONS))).tolist():
        targets[i] = _target(actions[i], ladders[i])
    merged["target_rollout"] = targets
    merged["policy_name"] = config.name
    merged["policy_version"] = config.version
    merged["scorer_version"] = lineage.get("scorer_version")
    merged["input_versions"] = json.dumps(lineage.get("input_versions", {}), sort_keys=True)
    merged["run_id"] = lineage.get("run_id")
    merged["decided_at"] = decided_at if decided_at is not None else merged.window_end
    merged["decision_id"] = decision_ids(merged, config.version)
    out = merged[DECISIONS.names].sort_values(["flag_key", "cohort"])  # the columns kept first: one copy of them, not three
    out.index = pd.RangeIndex(len(out))
    return out


def _final_action(state: str, action: str, fallback_variant, release_live) -> str:
    """A superseded release is no longer what users get: stepping the flag down would punish the
    release that replaced it. It is marked bad instead (`block_release`: never a last-known-good
    baseline, its owner told, the promotion gate refuses the flag while it stands)."""
    if state == "act" and release_live in (False,):  # None (unknown) counts as live
        return "block_release"
    if action == "disable" and isinstance(fallback_variant, str) and fallback_variant:
        return "switch_variant"
    return action


_TARGET_ACTIONS = ("step_down", "disable", "switch_variant")  # the actions that carry a target rollout


def _target(action: str, ladder) -> int | None:
    """The recommendation as seen from full exposure; the flag action re-reads the live rollout."""
    if action not in _TARGET_ACTIONS:
        return None
    steps = list(ladder) if ladder is not None else list(DEFAULT_LADDER)
    if action == "step_down":
        return int(steps[1]) if len(steps) > 1 else 0
    return int(steps[-1])  # disable, switch_variant: the ladder's last rung


def known_bad_releases(decisions: pd.DataFrame) -> frozenset:
    """(flag, version) of every release a decision acted on: never again a last-known-good baseline."""
    if decisions.empty:
        return frozenset()
    acted = decisions[decisions.state == "act"]
    return frozenset(zip(acted.flag_key, acted.release_version))


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
