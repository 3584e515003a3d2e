"""Notifications for every automatic flag change and every pending approval.

One signed JSON webhook (HMAC-SHA256, `rollback_assets.core.signing`) whose body is readable by
Slack-compatible receivers (`text`) and by PagerDuty-Events-like receivers (`summary`, `severity`,
`source`, `dedup_key`, `event_action`), plus the flag, cohort, statistics, evidence quotes and the
decision id. `dedup_key` is stable per action and status, so a retried send is deduplicated downstream.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Protocol

import httpx

from .flags.base import describe_exposure, redact
from .signing import sign
from .vocabulary import CHANGE_KINDS, ActionKind, AuditStatus, Severity

PD_SEVERITY = {Severity.SEVERE: "critical", Severity.MODERATE: "error", Severity.LOW: "warning", Severity.NONE: "info"}
STAT_FIELDS = (
    "negative_share",
    "baseline_negative_share",
    "relative_rise",
    "n",
    "baseline_n",
    "statistic",
    "bound",
    "mean_confidence",
    "window_start",
    "window_end",
)


class NotifyError(RuntimeError):
    pass


class Notifier(Protocol):
    def notify(self, payload: Mapping[str, Any]) -> None: ...


def should_notify(action_row: Mapping[str, Any]) -> bool:
    status, kind = action_row.get("status"), action_row.get("kind")
    return (status in (AuditStatus.AWAITING_APPROVAL, AuditStatus.FAILED)
            or (status == AuditStatus.APPLIED and kind in CHANGE_KINDS))


def _plain(v):
    if v is None:
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and v != v:  # NaN
        return None
    return v


def _describe(row: Mapping[str, Any]) -> str:
    before = describe_exposure(row.get("before_enabled"), row.get("before_rollout"), row.get("before_variant"))
    if row.get("status") == AuditStatus.APPLIED:
        after = describe_exposure(row.get("after_enabled"), row.get("after_rollout"), row.get("after_variant"))
    else:
        target_enabled = row.get("target_rollout") is not None or bool(row.get("target_variant"))
        after = describe_exposure(target_enabled, row.get("target_rollout"), row.get("target_variant"))
    return f"{before} -> {after}"


def build_notification(
    action_row: Mapping[str, Any],
    decision: Mapping[str, Any] | None = None,
    *,
    source: str = "rollback-assets",
    approve_hint: bool = True,
) -> dict:
    """The JSON body for one flag_actions row (and the decision that caused it, if any)."""
    row = {k: _plain(v) for k, v in action_row.items()}
    dec = {k: _plain(v) for k, v in (decision or {}).items()}
    flag, status, kind = row.get("flag_key"), row.get("status"), row.get("kind")
    severity_word = dec.get("severity") or (Severity.SEVERE if kind == ActionKind.DISABLE else Severity.MODERATE)
    cohort = row.get("cohort") or dec.get("cohort")
    change = _describe(row)
    if status == AuditStatus.AWAITING_APPROVAL:
        headline = f"Approval needed: {kind} {flag} {change}"
        pd_severity = "warning" if severity_word != Severity.SEVERE else "critical"
    elif status == AuditStatus.FAILED:
        headline = f"Flag change FAILED: {kind} {flag} {change}"
        pd_severity = "critical"
    else:
        headline = f"Flag {flag}: {kind} {change}"
        pd_severity = PD_SEVERITY.get(severity_word, "warning")
    reason = row.get("reason") or dec.get("reason") or ""
    evidence = dec.get("evidence")
    if isinstance(evidence, str):
        try:
            evidence = json.loads(evidence)
        except ValueError:
            evidence = [evidence]
    evidence = [e if isinstance(e, str) else (e.get("text") if isinstance(e, dict) and "text" in e else json.dumps(e)) for e in (evidence or [])][:5]
    stats = {k: dec[k] for k in STAT_FIELDS if dec.get(k) is not None}
    summary = f"{headline} (cohort {cohort or 'all'}; release {row.get('release_version') or dec.get('release_version') or '?'})"
    lines = [f"*{summary}*"]
    if reason:
        lines.append(reason)
    if stats.get("negative_share") is not None and stats.get("baseline_negative_share") is not None:
        lines.append(
            f"Negative share {stats['negative_share']:.1%} vs baseline {stats['baseline_negative_share']:.1%}"
            + (f" (n={stats['n']} vs {stats.get('baseline_n')})" if "n" in stats else "")
        )
    lines += [f"> {q}" for q in evidence]
    if status == AuditStatus.AWAITING_APPROVAL and approve_hint:
        lines.append(
            f"Approve: `rollback-assets approve {row.get('action_id')}` · "
            f"reject: `rollback-assets reject {row.get('action_id')} --reason ...`"
        )
    lines.append(f"decision {row.get('decision_id') or '-'} · action {row.get('action_id')} · actor {row.get('actor')}")
    return {
        "text": "\n".join(lines),
        "summary": summary[:1024],
        "severity": pd_severity,
        "source": source,
        "dedup_key": f"{row.get('action_id')}:{status}",
        "event_action": "trigger",
        "component": flag,
        "group": "feature-flags",
        "class": kind,
        "flag_key": flag,
        "cohort": cohort,
        "release_version": row.get("release_version") or dec.get("release_version"),
        "status": status,
        "kind": kind,
        "change": change,
        "decision_id": row.get("decision_id"),
        "action_id": row.get("action_id"),
        "actor": row.get("actor"),
        "approver": row.get("approver"),
        "reason": reason,
        "statistics": stats,
        "evidence": evidence,
        "custom_details": {"statistics": stats, "evidence": evidence, "reason": reason},
    }


class WebhookNotifier:
    """POST signed notifications. The URL and secret come from the caller (e.g. ROLLBACK_NOTIFY_URL,
    ROLLBACK_WEBHOOK_SECRET); errors never include either."""

    def __init__(self, url: str, secret: str, timeout: float = 5.0, retries: int = 2, client: httpx.Client | None = None):
        if not secret:
            raise ValueError("notify: secret is required (e.g. from ROLLBACK_WEBHOOK_SECRET)")
        self._url = url
        self._secret = secret
        self.retries = retries
        self._client = client or httpx.Client(timeout=timeout)

    def _secrets(self) -> tuple[str, ...]:
        return (self._secret, self._url)

    def notify(self, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload, sort_keys=True, default=str).encode()
        last = None
        for _ in range(self.retries + 1):
            headers = {"Content-Type": "application/json", "Idempotency-Key": str(payload.get("dedup_key", "")), **sign(self._secret, body)}
            try:
                resp = self._client.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code < 300:
                return
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if resp.status_code < 500 and resp.status_code != 429:
                break
        raise NotifyError(redact(f"notification failed: {last}", self._secrets()))


def webhook_notifier(url: str | None, secret: str | None) -> WebhookNotifier | None:
    """The notifier a deployment configured (ROLLBACK_NOTIFY_URL + ROLLBACK_WEBHOOK_SECRET), or None:
    notifications are optional, flag changes are not."""
    return WebhookNotifier(url, secret) if url and secret else None
