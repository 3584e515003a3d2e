"""Generic signed-webhook backend, for flag systems without a client here (an internal service,
a Lambda in front of a config store, ...).

Contract (what a receiver implements):
  GET  {url}/flags/{flag_key}   -> 200 {"flag_key", "enabled", "rollout", "variant"}
  POST {url}/flags/{flag_key}   body {"flag_key", "enabled", "rollout", "variant",
                                      "idempotency_key", "comment"}
                                -> 200 with the new state (same shape as GET);
                                   202 {"status": "awaiting_approval"} when a human must approve.
Every request (GET with an empty body) carries X-Rollback-Timestamp / X-Rollback-Signature
(`rollback_assets.core.signing`, HMAC-SHA256 over "timestamp." + body) and an Idempotency-Key header
on POST; a receiver must treat a repeated key as a no-op that returns the current state.
"""

from __future__ import annotations

import json

import httpx

from ..signing import sign
from .base import (
    ApprovalRequiredError,
    FlagState,
    FlagTarget,
    PermanentBackendError,
    raise_for_response,
    transport_error,
)


class WebhookBackend:
    name = "webhook"

    def __init__(self, url: str, secret: str, timeout: float = 10.0, client: httpx.Client | None = None):
        if not secret:
            raise ValueError("webhook: secret is required (e.g. from ROLLBACK_WEBHOOK_SECRET)")
        self.url = url.rstrip("/")
        self._secret = secret
        self._client = client or httpx.Client(timeout=timeout)

    def secrets(self) -> tuple[str, ...]:
        return (self._secret,)

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, flag_key: str, body: bytes = b"", headers: dict | None = None) -> httpx.Response:
        h = {"Content-Type": "application/json", **sign(self._secret, body), **(headers or {})}
        try:
            resp = self._client.request(method, f"{self.url}/flags/{flag_key}", content=body, headers=h)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.name, self.secrets()) from None
        raise_for_response(resp, self.name, self.secrets())
        return resp

    @staticmethod
    def _parse(flag_key: str, resp: httpx.Response) -> FlagState:
        try:
            d = resp.json()
            return FlagState(flag_key, bool(d["enabled"]), int(d["rollout"]), d.get("variant"))
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentBackendError(f"webhook: unexpected response for {flag_key!r}: {exc}") from None

    def get_state(self, flag_key: str) -> FlagState:
        return self._parse(flag_key, self._send("GET", flag_key))

    def apply(self, flag_key: str, target: FlagTarget, *, idempotency_key: str, comment: str = "") -> FlagState:
        body = json.dumps(
            {
                "flag_key": flag_key,
                "enabled": target.enabled,
                "rollout": int(target.rollout),
                "variant": target.variant,
                "idempotency_key": idempotency_key,
                "comment": comment,
            },
            sort_keys=True,
        ).encode()
        resp = self._send("POST", flag_key, body, {"Idempotency-Key": idempotency_key})
        if resp.status_code == 202:
            raise ApprovalRequiredError(f"webhook: change to {flag_key!r} awaits approval at the receiver", 202)
        return self._parse(flag_key, resp)
