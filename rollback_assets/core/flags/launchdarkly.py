"""LaunchDarkly backend through the REST API's semantic patch.

  read     GET   /api/v2/flags/{project}/{flag}?env={env}  -> variations (with _id) and the env's
                 on / fallthrough (a variation index or a rollout of weights in 1/1000 %)
  change   PATCH /api/v2/flags/{project}/{flag}
           Content-Type: application/json; domain-model=launchdarkly.semanticpatch
           Authorization: <api token>   (no "Bearer")
           {"environmentKey", "comment", "instructions": [...]}
  instructions used: turnFlagOff, turnFlagOn, updateFallthroughVariationOrRollout with either
  {"variationId": id} or {"rolloutContextKind": "user", "rolloutWeights": {id: w, ...}} (sum 100000).

The release variation is the one whose value is `on_value` (True for boolean flags), the control is
`off_value`; a fallback variant is found by variation name or value. Status codes: 405 means the
environment requires an approval (ApprovalRequiredError), 400 mentioning a pending change / conflict
and 409/429/5xx are transient, other 4xx permanent. The idempotency key goes into the comment
(LaunchDarkly's audit log shows it) and an Idempotency-Key header.
"""

from __future__ import annotations

import httpx

from .base import (
    ApprovalRequiredError,
    FlagState,
    FlagTarget,
    PermanentBackendError,
    TransientBackendError,
    raise_for_response,
    redact,
    transport_error,
)

SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"
WEIGHT_TOTAL = 100_000


class LaunchDarklyBackend:
    name = "launchdarkly"

    def __init__(
        self,
        api_token: str,
        project: str = "default",
        environment: str = "production",
        base_url: str = "https://app.launchdarkly.com",
        on_value=True,
        off_value=False,
        context_kind: str = "user",
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ):
        if not api_token:
            raise ValueError("launchdarkly: api_token is required (e.g. from LAUNCHDARKLY_API_TOKEN)")
        self._token = api_token
        self.project = project
        self.environment = environment
        self.base_url = base_url.rstrip("/")
        self.on_value = on_value
        self.off_value = off_value
        self.context_kind = context_kind
        self._client = client or httpx.Client(timeout=timeout)

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def close(self) -> None:
        self._client.close()

    def _url(self, flag_key: str) -> str:
        return f"{self.base_url}/api/v2/flags/{self.project}/{flag_key}"

    def _send(self, method: str, url: str, **kw) -> httpx.Response:
        headers = {"Authorization": self._token, **kw.pop("headers", {})}
        try:
            resp = self._client.request(method, url, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.name, self.secrets()) from None
        if resp.status_code == 405:
            raise ApprovalRequiredError(
                f"launchdarkly: environment {self.environment!r} requires approval: {redact(resp.text[:300], self.secrets())}", 405
            )
        if resp.status_code == 400 and any(w in resp.text.lower() for w in ("pending", "conflict")):
            raise TransientBackendError(
                f"launchdarkly: conflicts with a pending change: {redact(resp.text[:300], self.secrets())}", 400
            )
        raise_for_response(resp, self.name, self.secrets())
        return resp

    def _flag(self, flag_key: str) -> dict:
        return self._send("GET", self._url(flag_key), params={"env": self.environment}).json()

    def _env(self, flag: dict) -> dict:
        env = (flag.get("environments") or {}).get(self.environment)
        if env is None:
            raise PermanentBackendError(f"launchdarkly: flag {flag.get('key')!r} has no environment {self.environment!r}")
        return env

    def _index(self, flag: dict, value=None, name: str | None = None) -> int:
        for i, v in enumerate(flag.get("variations", [])):
            if name is not None and (v.get("name") == name or v.get("value") == name):
                return i
            if name is None and v.get("value") == value and type(v.get("value")) is type(value):
                return i
        wanted = name if name is not None else value
        raise PermanentBackendError(f"launchdarkly: flag {flag.get('key')!r} has no variation {wanted!r}")

    def _state(self, flag_key: str, flag: dict) -> FlagState:
        env = self._env(flag)
        on_i = self._index(flag, self.on_value)
        off_i = self._index(flag, self.off_value)
        ft = env.get("fallthrough") or {}
        variations = flag.get("variations", [])
        if "rollout" in ft and ft["rollout"]:
            weights = {w["variation"]: w.get("weight", 0) for w in ft["rollout"].get("variations", [])}
            total = sum(weights.values()) or WEIGHT_TOTAL
            return FlagState(flag_key, bool(env.get("on")), round(100 * weights.get(on_i, 0) / total))
        idx = ft.get("variation")
        if idx == on_i:
            return FlagState(flag_key, bool(env.get("on")), 100)
        if idx == off_i or idx is None:
            return FlagState(flag_key, bool(env.get("on")), 0)
        v = variations[idx]
        return FlagState(flag_key, bool(env.get("on")), 0, variant=v.get("name") or str(v.get("value")))

    def get_state(self, flag_key: str) -> FlagState:
        return self._state(flag_key, self._flag(flag_key))

    def apply(self, flag_key: str, target: FlagTarget, *, idempotency_key: str, comment: str = "") -> FlagState:
        flag = self._flag(flag_key)
        env = self._env(flag)
        ids = [v["_id"] for v in flag.get("variations", [])]
        instructions: list[dict] = []
        if not target.enabled:
            instructions.append({"kind": "turnFlagOff"})
        else:
            if target.variant is not None:
                ft = {"variationId": ids[self._index(flag, name=target.variant)]}
            elif int(target.rollout) >= 100:
                ft = {"variationId": ids[self._index(flag, self.on_value)]}
            elif int(target.rollout) <= 0:
                ft = {"variationId": ids[self._index(flag, self.off_value)]}
            else:
                on_w = int(target.rollout) * 1000
                ft = {
                    "rolloutContextKind": self.context_kind,
                    "rolloutWeights": {
                        ids[self._index(flag, self.on_value)]: on_w,
                        ids[self._index(flag, self.off_value)]: WEIGHT_TOTAL - on_w,
                    },
                }
            instructions.append({"kind": "updateFallthroughVariationOrRollout", **ft})
            if not env.get("on"):
                instructions.append({"kind": "turnFlagOn"})
        body = {
            "environmentKey": self.environment,
            "comment": f"{comment} [idempotency-key {idempotency_key}]".strip(),
            "instructions": instructions,
        }
        resp = self._send(
            "PATCH",
            self._url(flag_key),
            json=body,
            headers={"Content-Type": SEMANTIC_PATCH, "Idempotency-Key": idempotency_key},
        )
        try:
            return self._state(flag_key, resp.json())
        except (ValueError, KeyError, PermanentBackendError):
            return self.get_state(flag_key)
