"""The release-health dashboard: one offline HTML page per flag (and an index), from the lake alone.

Per flag: the negative share per release over time, the decisions and flag actions over time, how
often it was rolled back, how long from release to detection and from decision to the flag change,
and what is open (holds, approvals). Written by the `release_health` asset and by
`rollback-assets dashboard`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import reporting
from .actions.plan import COOLDOWN_KINDS, active_hold, describe_hold
from .lake import Lake
from .schemas import DECISIONS, FLAG_ACTIONS, RELEASE_ARTIFACTS, SCORED_SENTIMENT
from .vocabulary import AUTOMATIC_KINDS, AuditStatus, DecisionState


@dataclass
class FlagHealth:
    flag_key: str
    daily: pd.DataFrame  # day, release_version, negative_share, n
    decisions: pd.DataFrame  # acting / holding decisions over time
    states: pd.DataFrame  # per look: counts of each state
    actions: pd.DataFrame
    rollbacks: int
    mitigation: pd.DataFrame  # per release: released_at, detected (look), detection_days, flag change, decision_to_change
    open_holds: list[str]
    awaiting_approval: int


def flag_health(lake: Lake, flag_key: str, now: datetime | None = None) -> FlagHealth:
    releases = lake.read(RELEASE_ARTIFACTS)
    releases = releases[releases.flag_key == flag_key].sort_values("released_at")
    scored = lake.read(SCORED_SENTIMENT, columns=["attributed_flag", "release_version", "created_at", "sentiment_label",
                                                  "topic_excluded"])
    rows = scored[(scored.attributed_flag == flag_key) & scored.release_version.notna() & ~scored.topic_excluded.astype(bool)]
    daily = (pd.DataFrame({"day": rows.created_at.dt.floor("D"), "release_version": rows.release_version.astype(str),
                           "negative": (rows.sentiment_label == "negative").astype(int)})
             .groupby(["release_version", "day"], observed=True).negative.agg(["mean", "size"]).reset_index()
             .rename(columns={"mean": "negative_share", "size": "n"}))
    decisions = lake.read(DECISIONS) if lake.exists(DECISIONS) else DECISIONS.empty_frame()
    decisions = decisions[decisions.flag_key == flag_key]
    states = (decisions.groupby(["window_end", "release_version", "state"]).size().unstack(fill_value=0).reset_index()
              if len(decisions) else pd.DataFrame(columns=["window_end", "release_version"]))
    acting = decisions[decisions.state.isin([DecisionState.ACT, DecisionState.HOLD])].sort_values("window_end")
    audit = lake.read(FLAG_ACTIONS) if lake.exists(FLAG_ACTIONS) else FLAG_ACTIONS.empty_frame()
    audit = audit[audit.flag_key == flag_key].sort_values("created_at")
    applied = audit[(audit.status == AuditStatus.APPLIED) & audit.kind.isin(COOLDOWN_KINDS)]
    hold = active_hold(audit, flag_key, now or datetime.now(timezone.utc))
    return FlagHealth(
        flag_key=flag_key,
        daily=daily,
        decisions=acting[["window_end", "release_version", "cohort", "state", "action", "target_rollout", "relative_rise",
                          "n", "decision_id"]].reset_index(drop=True),
        states=states,
        actions=audit[["created_at", "kind", "status", "release_version", "cohort", "before_rollout", "after_rollout",
                       "actor", "approver", "decision_id"]].reset_index(drop=True),
        rollbacks=int(applied.kind.isin(AUTOMATIC_KINDS).sum()),
        mitigation=_mitigation(releases, acting, applied),
        open_holds=[describe_hold(hold)] if hold else [],
        awaiting_approval=int((audit.status == AuditStatus.AWAITING_APPROVAL).sum()),
    )


def _mitigation(releases: pd.DataFrame, acting: pd.DataFrame, applied: pd.DataFrame) -> pd.DataFrame:
    """Per release that was acted on: release → first acting look (data time, how long the feedback took
    to be conclusive) and decision → applied flag change (wall time, how long the machinery took)."""
    out = []
    for release in releases.itertuples():
        acts = acting[(acting.release_version == release.version) & (acting.state == DecisionState.ACT)]
        if acts.empty:
            continue
        first = acts.iloc[0]
        change = applied[applied.decision_id.isin(acts.decision_id)]
        changed_at = change.created_at.min() if len(change) else None
        out.append({
            "release": release.version, "released_at": release.released_at, "first_acting_look": first.window_end,
            "release_to_detection_days": round((first.window_end - release.released_at).total_seconds() / 86400, 1),
            "flag_changed_at": changed_at,
            "decision_to_change_seconds": round((changed_at - first.decided_at).total_seconds(), 1) if changed_at is not None else None,
        })
    return pd.DataFrame(out, columns=["release", "released_at", "first_acting_look", "release_to_detection_days",
                                      "flag_changed_at", "decision_to_change_seconds"])


def trend_svg(health: FlagHealth) -> str:
    fig, ax = reporting.figure()
    for version, rows in health.daily.groupby("release_version"):
        rows = rows.sort_values("day")
        ax.plot(rows.day, rows.negative_share, label=f"release {version}", linewidth=1.4)
    for look in health.decisions[health.decisions.state == DecisionState.ACT].itertuples():
        ax.axvline(look.window_end, color="crimson", linestyle="--", linewidth=1)
        ax.annotate(f"{look.action.replace('_', ' ')} ({look.cohort})", (look.window_end, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(-4, -12), textcoords="offset points", ha="right",
                    fontsize=8, color="crimson")
    ax.set_ylabel("negative share (daily)")
    ax.set_title(f"{health.flag_key}: sentiment per release", fontsize=10)
    ax.yaxis.set_major_formatter(reporting.PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    if len(health.daily):
        ax.legend(fontsize=7, loc="upper left")
    return reporting.svg(fig)


def to_html(health: FlagHealth) -> str:
    esc = html.escape
    open_items = [*health.open_holds] + ([f"{health.awaiting_approval} action(s) awaiting approval"] if health.awaiting_approval else [])
    body = [
        f"<h1>Release health: {esc(health.flag_key)}</h1>",
        "<p class='figures'>"
        f"<span>rollbacks: <b>{health.rollbacks}</b></span>"
        f"<span>releases acted on: <b>{len(health.mitigation)}</b></span>"
        f"<span>open holds: <b>{len(health.open_holds)}</b></span>"
        f"<span>awaiting approval: <b>{health.awaiting_approval}</b></span></p>",
        f"<figure>{trend_svg(health)}</figure>",
        "<h2>Time to mitigation</h2>",
        reporting.html_table(health.mitigation) if len(health.mitigation) else "<p>No release of this flag was acted on.</p>",
        "<h2>Decisions that acted or held</h2>",
        reporting.html_table(health.decisions) if len(health.decisions) else "<p>None.</p>",
        "<h2>Evaluations per look</h2>",
        reporting.html_table(health.states) if len(health.states) else "<p>Not evaluated yet.</p>",
        "<h2>Flag actions</h2>",
        reporting.html_table(health.actions) if len(health.actions) else "<p>No flag action.</p>",
        "<h2>Open</h2>",
        "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in open_items) + "</ul>" if open_items else "<p>Nothing open.</p>",
    ]
    return reporting.page(f"Release health: {health.flag_key}", "".join(body))


def file_name(flag_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", flag_key) + ".html"


def write(lake: Lake, out_dir: str | Path, now: datetime | None = None) -> dict[str, FlagHealth]:
    """One page per registered flag plus index.html; returns the health figures per flag."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flags = sorted(set(lake.read(RELEASE_ARTIFACTS, columns=["flag_key"]).flag_key)) if lake.exists(RELEASE_ARTIFACTS) else []
    result = {}
    for flag in flags:
        health = flag_health(lake, flag, now)
        (out / file_name(flag)).write_text(to_html(health))
        result[flag] = health
    rows = "".join(
        f"<tr><td><a href='{file_name(f)}'>{html.escape(f)}</a></td><td>{h.rollbacks}</td><td>{len(h.open_holds)}</td>"
        f"<td>{h.awaiting_approval}</td></tr>" for f, h in result.items())
    (out / "index.html").write_text(reporting.page("Release health", (
        "<h1>Release health</h1><table><thead><tr><th>flag</th><th>rollbacks</th><th>open holds</th>"
        f"<th>awaiting approval</th></tr></thead><tbody>{rows}</tbody></table>")))
    return result
