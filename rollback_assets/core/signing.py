"""One HMAC-SHA256 signing helper for everything this project sends over HTTP (webhook flag backend,
notifications) and for receivers that verify it.

Signed payload: ``f"{timestamp}.".encode() + body`` where ``timestamp`` is Unix seconds. Headers:
``X-Rollback-Timestamp: <timestamp>`` and ``X-Rollback-Signature: v1=<hex digest>``. Receivers reject
signatures older than a tolerance (default 5 minutes) to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping

TIMESTAMP_HEADER = "X-Rollback-Timestamp"
SIGNATURE_HEADER = "X-Rollback-Signature"
SIGNATURE_VERSION = "v1"


class SignatureError(ValueError):
    pass


def _digest(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that authenticate `body`; the secret itself never leaves this function."""
    if not secret:
        raise ValueError("signing secret is empty")
    ts = str(int(time.time() if timestamp is None else timestamp))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"{SIGNATURE_VERSION}={_digest(secret, ts, body)}"}


def verify(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless `headers` carry a fresh, valid signature of `body`."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts = lower.get(TIMESTAMP_HEADER.lower())
    sig = lower.get(SIGNATURE_HEADER.lower())
    if not ts or not sig:
        raise SignatureError("missing signature headers")
    try:
        age = abs((time.time() if now is None else now) - int(ts))
    except ValueError as exc:
        raise SignatureError("malformed timestamp") from exc
    if age > tolerance_s:
        raise SignatureError(f"timestamp outside tolerance ({age:.0f}s)")
    expected = f"{SIGNATURE_VERSION}={_digest(secret, ts, body)}"
    if not hmac.compare_digest(expected, sig.strip()):
        raise SignatureError("signature mismatch")
