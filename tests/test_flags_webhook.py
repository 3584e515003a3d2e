"""Signed webhook backend and signed notifications against a local receiver that verifies the
HMAC signature with the same helper."""

from __future__ import annotations

import json

import pytest

from rollback_assets.core.flags import (
    ApprovalRequiredError,
    FlagState,
    FlagTarget,
    PermanentBackendError,
    TransientBackendError,
    make_flag_backend,
)
from rollback_assets.core.notify import NotifyError, WebhookNotifier, build_notification
from rollback_assets.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, sign, verify

from flag_actions_support import WEBHOOK_SECRET as SECRET


def test_sign_verify_roundtrip_and_tamper():
    body = b'{"a": 1}'
    headers = sign(SECRET, body, timestamp=1_700_000_000)
    verify(SECRET, body, headers, now=1_700_000_010)
    with pytest.raises(SignatureError):
        verify(SECRET, b'{"a": 2}', headers, now=1_700_000_010)
    with pytest.raises(SignatureError):
        verify("other-secret", body, headers, now=1_700_000_010)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, body, headers, now=1_700_000_000 + 3600)  # replayed an hour later
    forged = {**headers, TIMESTAMP_HEADER: "1700000005"}  # timestamp is part of the signed payload
    with pytest.raises(SignatureError):
        verify(SECRET, body, forged, now=1_700_000_010)
    assert headers[SIGNATURE_HEADER].startswith("v1=") and SECRET not in json.dumps(headers)


def test_webhook_backend_applies_signed_changes(rx):
    backend = make_flag_backend("webhook", url=rx.url, secret=SECRET)
    assert backend.get_state("checkout") == FlagState("checkout", True, 100)
    assert backend.apply("checkout", FlagTarget(True, 25), idempotency_key="a1") == FlagState("checkout", True, 25)
    # Same idempotency key again: the receiver does not change anything a second time.
    assert backend.apply("checkout", FlagTarget(True, 25), idempotency_key="a1") == FlagState("checkout", True, 25)
    assert rx.changes["checkout"] == 1 and rx.rejected_signatures == 0
    assert backend.apply("checkout", FlagTarget(False, 0), idempotency_key="a2").enabled is False
    assert rx.posts[-1]["idempotency_key"] == "a2"


def test_webhook_backend_error_classes(rx):
    backend = make_flag_backend("webhook", url=rx.url, secret=SECRET)
    bad = make_flag_backend("webhook", url=rx.url, secret="wrong-secret-value")
    with pytest.raises(PermanentBackendError) as e:
        bad.get_state("checkout")
    assert e.value.status_code == 401 and rx.rejected_signatures == 1
    assert "wrong-secret-value" not in str(e.value)
    rx.fail_next = [503]
    with pytest.raises(TransientBackendError):
        backend.apply("checkout", FlagTarget(True, 25), idempotency_key="b1")
    rx.approval_flags.add("checkout")
    with pytest.raises(ApprovalRequiredError):
        backend.apply("checkout", FlagTarget(True, 25), idempotency_key="b1")
    with pytest.raises(PermanentBackendError):
        backend.get_state("unknown")
    dead = make_flag_backend("webhook", url="http://127.0.0.1:9", secret=SECRET, timeout=1)
    with pytest.raises(TransientBackendError):
        dead.get_state("checkout")


def test_signed_notification_body(rx):
    notifier = WebhookNotifier(rx.url + "/notify", SECRET)
    row = {
        "action_id": "dec-123", "decision_id": "dec-123", "flag_key": "checkout", "cohort": "device=mobile",
        "release_version": "7.1", "kind": "step_down", "status": "applied", "actor": "auto",
        "before_enabled": True, "before_rollout": 100, "before_variant": None,
        "target_rollout": 25, "after_enabled": True, "after_rollout": 25, "after_variant": None,
        "reason": "Negative share on mobile checkout rose from 8% to 21%.",
    }
    decision = {
        "decision_id": "dec-123", "severity": "moderate", "negative_share": 0.21, "baseline_negative_share": 0.08,
        "relative_rise": 1.6, "n": 400, "baseline_n": 900, "statistic": 5.1,
        "evidence": json.dumps(["Checkout button does nothing", "Payment spinner forever", "Cannot pay on my phone"]),
    }
    payload = build_notification(row, decision)
    notifier.notify(payload)
    got = rx.notifications[-1]
    assert got["dedup_key"] == "dec-123:applied" and got["severity"] == "error" and got["source"] == "rollback-assets"
    assert got["flag_key"] == "checkout" and got["cohort"] == "device=mobile" and got["decision_id"] == "dec-123"
    assert got["statistics"]["negative_share"] == 0.21 and got["statistics"]["n"] == 400
    assert got["evidence"][0] == "Checkout button does nothing"
    assert "100% -> 25%" in got["text"] and "> Payment spinner forever" in got["text"]
    assert "100% -> 25%" in got["summary"]

    approval = build_notification({**row, "status": "awaiting_approval", "after_rollout": None, "after_enabled": None}, decision)
    assert approval["summary"].startswith("Approval needed") and "rollback-assets approve dec-123" in approval["text"]
    assert approval["dedup_key"] == "dec-123:awaiting_approval"

    # The receiver refuses a notification signed with another secret, and the error leaks neither secret nor URL token.
    bad = WebhookNotifier(rx.url + "/notify?token=hunter2hunter2", "not-the-secret", retries=0)
    with pytest.raises(NotifyError) as e:
        bad.notify(payload)
    assert "not-the-secret" not in str(e.value) and "hunter2hunter2" not in str(e.value)
    # A transient 503 is retried.
    rx.notify_fail_next = [503]
    WebhookNotifier(rx.url + "/notify", SECRET, retries=1).notify(payload)
    assert len(rx.notifications) == 2
