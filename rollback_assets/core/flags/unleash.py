"""Unleash backend through the Admin API (tested against unleash-server 7.5.1).

The release is one `flexibleRollout` strategy per environment (created on first use):
  rollout r     strategy parameters.rollout = "r" (a string), no strategy variants, environment on
  variant V     rollout "100" with a single strategy variant V at full weight, environment on
  disabled      POST .../environments/{env}/off (strategies are kept, so a human can turn it back on)
The idempotency key is sent as an `Idempotency-Key` header (Unleash ignores it; calls are absolute,
so a replay converges to the same state). Unleash clients see a change after their refresh interval.
"""

from __future__ import annotations

import httpx

from .base import FlagState, FlagTarget, PermanentBackendError, raise_for_response, transport_error

ROLLOUT_STRATEGY = "flexibleRollout"


class UnleashBackend:
    name = "unleash"

    def __init__(
        self,
        url: str,
        admin_token: str,
        environment: str = "development",
        project: str = "default",
        timeout: float = 10.0,
        create_missing: bool = False,
        client: httpx.Client | None = None,
    ):
        if not admin_token:
            raise ValueError("unleash: admin_token is required (e.g. from UNLEASH_ADMIN_TOKEN)")
        self.url = url.rstrip("/")
        if self.url.endswith("/api"):
            self.url = self.url[: -len("/api")]
        self._token = admin_token
        self.environment = environment
        self.project = project
        self.create_missing = create_missing
        self._client = client or httpx.Client(timeout=timeout)

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, idempotency_key: str | None = None, **kw) -> httpx.Response:
        headers = {"Authorization": self._token, "Accept": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            resp = self._client.request(method, self.url + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.name, self.secrets()) from None
        raise_for_response(resp, self.name, self.secrets())
        return resp

    def _feature_path(self, flag_key: str) -> str:
        return f"/api/admin/projects/{self.project}/features/{flag_key}"

    def _env(self, feature: dict) -> dict:
        for env in feature.get("environments", []):
            if env.get("name") == self.environment:
                return env
        raise PermanentBackendError(f"unleash: flag {feature.get('name')!r} has no environment {self.environment!r}")

    @staticmethod
    def _rollout_strategy(env: dict) -> dict | None:
        for s in env.get("strategies", []):
            if s.get("name") == ROLLOUT_STRATEGY and not s.get("disabled"):
                return s
        return None

    def _state(self, flag_key: str, feature: dict) -> FlagState:
        env = self._env(feature)
        strategy = self._rollout_strategy(env)
        if strategy is None:
            # Unleash's "default" strategy (or none) serves everyone when the environment is on.
            return FlagState(flag_key, bool(env.get("enabled")), 100 if env.get("strategies") else 0)
        rollout = int(float(strategy.get("parameters", {}).get("rollout", 0)))
        variants = strategy.get("variants") or []
        variant = variants[0]["name"] if len(variants) == 1 else None
        return FlagState(flag_key, bool(env.get("enabled")), rollout, variant)

    def _feature(self, flag_key: str) -> dict | None:
        try:
            return self._request("GET", self._feature_path(flag_key)).json()
        except PermanentBackendError as exc:
            if exc.status_code == 404:
                return None
            raise

    def get_state(self, flag_key: str) -> FlagState:
        feature = self._feature(flag_key)
        if feature is None:
            raise PermanentBackendError(f"unleash: no flag {flag_key!r} in project {self.project!r}", 404)
        return self._state(flag_key, feature)

    def apply(self, flag_key: str, target: FlagTarget, *, idempotency_key: str, comment: str = "") -> FlagState:
        path = self._feature_path(flag_key)
        env_path = f"{path}/environments/{self.environment}"
        feature = self._feature(flag_key)
        if feature is None:
            if not self.create_missing:
                raise PermanentBackendError(f"unleash: no flag {flag_key!r} in project {self.project!r}", 404)
            self._request(
                "POST", f"/api/admin/projects/{self.project}/features", idempotency_key,
                json={"name": flag_key, "type": "release", "description": comment[:100] or None},
            )
            feature = self._feature(flag_key)
        env = self._env(feature)
        if not target.enabled:
            if env.get("enabled"):
                self._request("POST", f"{env_path}/off", idempotency_key)
        else:
            strategy = self._rollout_strategy(env)
            rollout = 100 if target.variant is not None else int(target.rollout)
            variants = (
                [{"name": target.variant, "weight": 1000, "weightType": "variable", "stickiness": "default"}]
                if target.variant is not None
                else []
            )
            params = {"rollout": str(rollout), "stickiness": "default", "groupId": flag_key}
            if strategy is None:
                self._request(
                    "POST", f"{env_path}/strategies", idempotency_key,
                    json={"name": ROLLOUT_STRATEGY, "parameters": params, "variants": variants, "constraints": []},
                )
            else:
                params = {**strategy.get("parameters", {}), "rollout": str(rollout)}
                body = {
                    "name": ROLLOUT_STRATEGY,
                    "title": strategy.get("title"),
                    "disabled": False,
                    "constraints": strategy.get("constraints", []),
                    "segments": strategy.get("segments", []),
                    "parameters": params,
                    "variants": variants,
                }
                self._request("PUT", f"{env_path}/strategies/{strategy['id']}", idempotency_key, json=body)
            if not env.get("enabled"):
                self._request("POST", f"{env_path}/on", idempotency_key)
        return self.get_state(flag_key)
