"""A decision's postmortem: what was decided and why, what happened to the flag, and proof that the
numbers come from the inputs the decision names.

Everything is read back from the lake: the decision row, the Delta versions of its inputs (time
travel), the audit trail. The figures are recomputed from `scored_sentiment` and `release_artifacts`
at those versions with the same baseline code, and compared with the stored decision; the report
says whether they match. Output: one self-contained HTML page (inline SVG chart, no external assets)
and the same content as Markdown (with the chart as an SVG file next to it).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import reporting
from .baselines import BASELINE_INPUT_COLUMNS, compute_baselines, relative_rise
from .evidence import distinct_quotes
from .lake import Lake
from .policy import PolicyConfig
from .schemas import DECISIONS, FLAG_ACTIONS, RELEASE_ARTIFACTS, SCORED_SENTIMENT
from .vocabulary import AuditStatus, DecisionAction, DecisionState

RECOMPUTED_FIGURES = ("n", "baseline_n", "negative_share", "baseline_negative_share", "relative_rise", "mean_confidence")
TOLERANCE = 1e-9


@dataclass
class Postmortem:
    decision: dict
    sentence: str
    figures: pd.DataFrame  # figure, stored, recomputed, matches
    matches: bool
    cohorts: pd.DataFrame
    daily: pd.DataFrame  # day, series, negative_share, n
    looks: pd.DataFrame  # window_end, negative_share, baseline_negative_share, state, action
    evidence: list[str]
    topic_shift: pd.DataFrame  # topic, current_share, baseline_share, change
    actions: pd.DataFrame
    lineage: dict
    notes: list[str] = field(default_factory=list)


def build(lake: Lake, decision_id: str, policy: PolicyConfig | None = None) -> Postmortem:
    decisions = lake.read(DECISIONS)
    found = decisions[decisions.decision_id == decision_id]
    if found.empty:
        raise ValueError(f"no decision {decision_id} in {lake.uri(DECISIONS)}")
    d = found.iloc[0].to_dict()
    policy = policy or PolicyConfig.load()
    notes = []
    if policy.version != d["policy_version"]:
        notes.append(f"The policy loaded now is {policy.version}; the decision used {d['policy_version']}: "
                     "windows are taken from the loaded policy.")
    versions = json.loads(d["input_versions"] or "{}")
    scored = lake.read(SCORED_SENTIMENT, columns=list(dict.fromkeys([*BASELINE_INPUT_COLUMNS, "text"])),
                       version=versions.get("scored_sentiment"))
    releases = lake.read(RELEASE_ARTIFACTS, version=versions.get("release_artifacts"))
    as_of = pd.Timestamp(d["window_end"])
    again = compute_baselines(scored, releases, as_of, policy.windows)
    key = (again.flag_key == d["flag_key"]) & (again.release_version == d["release_version"]) & \
          (again.cohort == d["cohort"]) & (again.baseline_kind == d["baseline_kind"])
    figures = _compare(d, again[key].iloc[0].to_dict() if key.any() else None)
    return Postmortem(
        decision=d,
        sentence=_sentence(d),
        figures=figures,
        matches=bool(len(figures)) and bool(figures.matches.all()),
        cohorts=_cohorts(decisions, d),
        daily=_daily(scored, releases, d, policy),
        looks=_looks(decisions, d),
        evidence=distinct_quotes(json.loads(d["evidence"] or "[]")),
        topic_shift=_topic_shift(scored, releases, d, policy),
        actions=_actions(lake, d),
        lineage={"decision_id": d["decision_id"], "dagster_run_id": d["run_id"], "code_commit": d["code_commit"],
                 "notebook_commit": d["notebook_commit"], "model": f"{d['model_name'] or '-'} {d['model_version'] or ''}".strip(),
                 "scorer_version": d["scorer_version"], "policy": f"{d['policy_name']} {d['policy_version']}",
                 **{f"{table}@": version for table, version in sorted(versions.items())}},
        notes=notes,
    )


def _compare(stored: dict, recomputed: dict | None) -> pd.DataFrame:
    rows = []
    for name in RECOMPUTED_FIGURES:
        if recomputed is None:
            rows.append({"figure": name, "stored": stored.get(name), "recomputed": None, "matches": False})
            continue
        value = relative_rise(recomputed["negative_share"], recomputed["baseline_negative_share"]) \
            if name == "relative_rise" else recomputed.get(name)
        rows.append({"figure": name, "stored": stored.get(name), "recomputed": value, "matches": _same(stored.get(name), value)})
    return pd.DataFrame(rows)


def _same(a, b) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    return math.isclose(float(a), float(b), rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _sentence(d: dict) -> str:
    target = f" to {int(d['target_rollout'])} %" if d["action"] == DecisionAction.STEP_DOWN and pd.notna(d["target_rollout"]) else ""
    verb = {DecisionState.ACT: "acted", DecisionState.HOLD: "held", DecisionState.PASS: "passed",
            DecisionState.INSUFFICIENT_DATA: "waited for data"}.get(d["state"], d["state"])
    return (f"On {pd.Timestamp(d['window_end']):%Y-%m-%d %H:%M} UTC the guardrail {verb} on flag {d['flag_key']} release "
            f"{d['release_version']} for cohort {d['cohort']}: {d['action'].replace('_', ' ')}{target} "
            f"({d['severity']}). {d['reason']}")


def _cohorts(decisions: pd.DataFrame, d: dict) -> pd.DataFrame:
    same_look = decisions[(decisions.flag_key == d["flag_key"]) & (decisions.release_version == d["release_version"])
                          & (decisions.window_end == d["window_end"]) & (decisions.policy_version == d["policy_version"])]
    columns = ["cohort", "baseline_kind", "state", "action", "n", "negative_share", "baseline_n", "baseline_negative_share",
               "relative_rise", "bound"]
    return same_look.sort_values(["state", "relative_rise"], ascending=[True, False])[columns].reset_index(drop=True)


def _cohort_rows(scored: pd.DataFrame, cohort: str) -> pd.DataFrame:
    return scored if cohort == "all" else scored[scored.cohort == cohort]


def _daily(scored: pd.DataFrame, releases: pd.DataFrame, d: dict, policy: PolicyConfig) -> pd.DataFrame:
    """Daily negative share (excluded topics left out) of the release and of each earlier release of the
    flag, in the decision's cohort, from the rolling window before the release to the decision's look."""
    flag_releases = releases[releases.flag_key == d["flag_key"]].sort_values("released_at")
    this = flag_releases[flag_releases.version == d["release_version"]]
    start = (this.released_at.iloc[0] if len(this) else pd.Timestamp(d["window_start"])) - pd.Timedelta(days=policy.windows.rolling_days)
    rows = _cohort_rows(scored[(scored.attributed_flag == d["flag_key"]) & (scored.created_at >= start)
                               & (scored.created_at <= pd.Timestamp(d["window_end"]))], d["cohort"])
    rows = rows[~rows.topic_excluded.astype(bool) & rows.release_version.notna()]
    if rows.empty:
        return pd.DataFrame(columns=["day", "series", "negative_share", "n"])
    frame = pd.DataFrame({"day": rows.created_at.dt.floor("D"), "series": rows.release_version.astype(str),
                          "negative": (rows.sentiment_label == "negative").astype(int)})
    daily = frame.groupby(["series", "day"], observed=True).negative.agg(["mean", "size"]).reset_index()
    return daily.rename(columns={"mean": "negative_share", "size": "n"})


def _looks(decisions: pd.DataFrame, d: dict) -> pd.DataFrame:
    same = decisions[(decisions.flag_key == d["flag_key"]) & (decisions.release_version == d["release_version"])
                     & (decisions.cohort == d["cohort"]) & (decisions.baseline_kind == d["baseline_kind"])]
    return same.sort_values("window_end")[["window_end", "negative_share", "baseline_negative_share", "state", "action",
                                           "decision_id"]].reset_index(drop=True)


def _topic_shift(scored: pd.DataFrame, releases: pd.DataFrame, d: dict, policy: PolicyConfig) -> pd.DataFrame:
    """What is new in the complaints: each topic's share of negatives in the release vs its baseline."""
    window = scored[(scored.attributed_flag == d["flag_key"]) & (scored.created_at >= pd.Timestamp(d["window_start"]))
                    & (scored.created_at <= pd.Timestamp(d["window_end"]))]
    window = _cohort_rows(window, d["cohort"])
    negative = window[(window.sentiment_label == "negative") & ~window.topic_excluded.astype(bool)]
    current = negative[negative.release_version == d["release_version"]].issue_category.value_counts(normalize=True)
    baseline = negative[negative.release_version != d["release_version"]].issue_category.value_counts(normalize=True)
    shift = pd.DataFrame({"current_share": current, "baseline_share": baseline}).fillna(0.0)
    shift["change"] = shift.current_share - shift.baseline_share
    shift = shift.sort_values("change", ascending=False).head(6)
    return shift.rename_axis("topic").reset_index()


def _actions(lake: Lake, d: dict) -> pd.DataFrame:
    columns = ["created_at", "kind", "status", "cohort", "before_rollout", "after_rollout", "before_variant", "after_variant",
               "actor", "approver", "reason"]
    if not lake.exists(FLAG_ACTIONS):
        return pd.DataFrame(columns=columns)
    audit = lake.read(FLAG_ACTIONS)
    caused = audit[(audit.decision_id == d["decision_id"])
                   | ((audit.flag_key == d["flag_key"]) & (audit.created_at >= pd.Timestamp(d["decided_at"])))]
    return caused.sort_values("created_at")[columns].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ rendering
def chart_svg(pm: Postmortem) -> str:
    """The release's daily negative share against earlier releases (the baselines), the looks and the action."""
    d = pm.decision
    fig, ax = reporting.figure()
    for series, rows in pm.daily.groupby("series"):
        rows = rows.sort_values("day")
        is_release = series == d["release_version"]
        ax.plot(rows.day, rows.negative_share, marker="." if is_release else None, linewidth=2.2 if is_release else 1.2,
                label=f"release {series}" + (" (judged)" if is_release else " (baseline)"), alpha=1 if is_release else 0.7)
    if len(pm.looks):
        ax.scatter(pm.looks.window_end, pm.looks.negative_share, s=60, marker="o", facecolors="none", edgecolors="black",
                   zorder=5, label="looks (decision evaluations)")
        ax.scatter(pm.looks.window_end, pm.looks.baseline_negative_share, s=40, marker="_", color="black", zorder=5,
                   label=f"{d['baseline_kind']} baseline at each look")
    acting = pm.looks[pm.looks.decision_id == d["decision_id"]]
    if len(acting) and d["action"] != "none":
        when = acting.window_end.iloc[0]
        ax.axvline(when, color="crimson", linestyle="--", linewidth=1)
        applied = pm.actions[pm.actions.status == AuditStatus.APPLIED]
        label = d["action"].replace("_", " ") + (f" {int(applied.before_rollout.iloc[0])}→{int(applied.after_rollout.iloc[0])} %"
                                                  if len(applied) and pd.notna(applied.after_rollout.iloc[0]) else "")
        ax.annotate(label, (when, ax.get_ylim()[1]), xytext=(-4, -14), textcoords="offset points", ha="right",
                    color="crimson", fontsize=9)
    ax.set_ylabel("negative share")
    ax.set_title(f"{d['flag_key']} — cohort {d['cohort']}", fontsize=10)
    ax.yaxis.set_major_formatter(reporting.PercentFormatter(1.0))
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return reporting.svg(fig)


def match_statement(pm: Postmortem) -> str:
    versions = ", ".join(f"{table}@{pm.lineage.get(table + '@')}" for table in ("scored_sentiment", "release_artifacts"))
    if pm.matches:
        return (f"All {len(pm.figures)} figures ({', '.join(pm.figures.figure)}) recomputed from the Delta versions the "
                f"decision names ({versions}) match the stored decision.")
    wrong = ", ".join(pm.figures[~pm.figures.matches].figure)
    return f"MISMATCH: recomputed from {versions}, these figures differ from the stored decision: {wrong}."


def _sections(pm: Postmortem) -> list[tuple[str, object]]:
    """(title, body): body is a sentence, a list of lines, or a DataFrame."""
    lineage = pd.DataFrame({"field": list(pm.lineage), "value": [str(v) for v in pm.lineage.values()]})
    return [
        ("Decision", pm.sentence),
        ("Per-cohort evaluations at the same look", pm.cohorts),
        ("Evidence (distinct quotes)", pm.evidence or ["no quotes"]),
        ("What is new in the complaints (share of negatives by topic, release vs baseline)", pm.topic_shift),
        ("Flag actions", pm.actions if len(pm.actions) else "No flag action followed this decision."),
        ("Looks", pm.looks),
        ("Lineage", lineage),
        ("Recomputed from the named Delta versions (time travel)", pm.figures),
        ("Verdict", match_statement(pm) + (" " + " ".join(pm.notes) if pm.notes else "")),
    ]


def to_markdown(pm: Postmortem, chart_file: str) -> str:
    out = [f"# Postmortem: decision {pm.decision['decision_id']}", "", f"![negative share timeline]({chart_file})", ""]
    for title, body in _sections(pm):
        out.append(f"## {title}\n")
        if isinstance(body, pd.DataFrame):
            out.append(reporting.md_table(body))
        elif isinstance(body, list):
            out.extend(f"- {line}" for line in body)
        else:
            out.append(body)
        out.append("")
    return "\n".join(out)


def to_html(pm: Postmortem, svg: str) -> str:
    esc = html.escape
    parts = [f"<h1>Postmortem: decision {esc(pm.decision['decision_id'])}</h1>", f"<figure>{svg}</figure>"]
    for title, body in _sections(pm):
        parts.append(f"<h2>{esc(title)}</h2>")
        if isinstance(body, pd.DataFrame):
            parts.append(reporting.html_table(body))
        elif isinstance(body, list):
            parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in body) + "</ul>")
        else:
            css = (' class="ok"' if pm.matches else ' class="bad"') if title == "Verdict" else ""
            parts.append(f"<p{css}>{esc(body)}</p>")
    return reporting.page(f"Postmortem {pm.decision['decision_id']}", "".join(parts))


def file_stem(decision_id: str) -> str:
    return f"postmortem-{decision_id}"


def write(pm: Postmortem, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = file_stem(pm.decision["decision_id"])
    svg = chart_svg(pm)
    paths = {"html": out / f"{stem}.html", "markdown": out / f"{stem}.md", "chart": out / f"{stem}.svg"}
    paths["chart"].write_text(svg)
    paths["markdown"].write_text(to_markdown(pm, paths["chart"].name))
    paths["html"].write_text(to_html(pm, svg))
    return paths
