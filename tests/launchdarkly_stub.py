"""A local stand-in for LaunchDarkly's REST API (flags GET + semantic-patch PATCH), strict about the
documented contract, that also writes the flags in the SDK's flag-data shape so the real
`launchdarkly-server-sdk` file data source can evaluate what a change produced.

Enforced: Authorization present (and equal to the configured token; no "Bearer"), Content-Type
`application/json; domain-model=launchdarkly.semanticpatch`, environmentKey present and known,
instruction kinds known, rolloutWeights keyed by existing variation _ids and summing to 100000,
variationId existing; 400 when the flag has a pending (scheduled / approval) change in that
environment; 405 when the environment requires approvals.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from loopback import JsonHandler, LoopbackServer

SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"


class LaunchDarklyStub(LoopbackServer):
    def __init__(self, token: str, sdk_file: Path, sdk_environment: str = "production", project: str = "default"):
        self.token = token
        self.sdk_file = Path(sdk_file)
        self.sdk_environment = sdk_environment
        self.project = project
        self.flags: dict[str, dict] = {}
        self.pending: set[tuple[str, str]] = set()  # (flag, env) with a pending change
        self.approval_required: set[str] = set()  # environments that require approvals
        self.patches: list[dict] = []  # accepted PATCH bodies (+ idempotency key)
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.fail_next: list[int] = []  # status codes to answer the next PATCHes with (5xx simulation)
        self.lock = threading.Lock()
        super().__init__()

    # -- data -----------------------------------------------------------------------------------
    def add_boolean_flag(self, key: str, environments=("production", "test"), on=True, extra_variations=()) -> dict:
        variations = [
            {"_id": str(uuid.uuid4()), "value": True, "name": "on"},
            {"_id": str(uuid.uuid4()), "value": False, "name": "off"},
        ]
        variations += [{"_id": str(uuid.uuid4()), "value": v, "name": v} for v in extra_variations]
        flag = {
            "key": key,
            "kind": "boolean" if not extra_variations else "multivariate",
            "variations": variations,
            "environments": {
                env: {"on": on, "fallthrough": {"variation": 0}, "offVariation": 1, "_version": 1, "salt": uuid.uuid4().hex}
                for env in environments
            },
        }
        with self.lock:
            self.flags[key] = flag
            self._write_sdk_file()
        return flag

    def _sdk_flag(self, flag: dict) -> dict:
        env = flag["environments"][self.sdk_environment]
        return {
            "key": flag["key"],
            "version": env["_version"],
            "on": env["on"],
            "variations": [v["value"] for v in flag["variations"]],
            "fallthrough": env["fallthrough"],
            "offVariation": env["offVariation"],
            "salt": env["salt"],
            "targets": [],
            "contextTargets": [],
            "rules": [],
            "prerequisites": [],
            "trackEvents": False,
            "deleted": False,
        }

    def _write_sdk_file(self) -> None:
        doc = {"flags": {k: self._sdk_flag(f) for k, f in self.flags.items() if self.sdk_environment in f["environments"]}}
        fd, tmp = tempfile.mkstemp(dir=self.sdk_file.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.sdk_file)

    # -- contract -------------------------------------------------------------------------------
    def _patch(self, flag_key: str, headers, raw: bytes) -> tuple[int, dict]:
        if self.fail_next:
            return self.fail_next.pop(0), {"code": "internal_server_error", "message": "simulated outage"}
        if headers.get("Content-Type") != SEMANTIC_PATCH:
            return 415, {"code": "unsupported_media_type", "message": f"expected {SEMANTIC_PATCH}"}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"code": "invalid_request", "message": "body is not JSON"}
        env_key = body.get("environmentKey")
        if not env_key:
            return 400, {"code": "invalid_request", "message": "environmentKey is required"}
        flag = self.flags.get(flag_key)
        if flag is None:
            return 404, {"code": "not_found", "message": "Unknown resource"}
        env = flag["environments"].get(env_key)
        if env is None:
            return 400, {"code": "invalid_request", "message": f"unknown environment {env_key}"}
        if env_key in self.approval_required:
            return 405, {"code": "method_not_allowed", "message": "This environment requires approvals; create an approval request"}
        if (flag_key, env_key) in self.pending:
            return 400, {"code": "conflict", "message": "The flag has a pending change that conflicts with this update"}
        instructions = body.get("instructions")
        if not isinstance(instructions, list) or not instructions:
            return 400, {"code": "invalid_request", "message": "instructions must be a non-empty list"}
        ids = {v["_id"]: i for i, v in enumerate(flag["variations"])}
        new = json.loads(json.dumps(env))
        for ins in instructions:
            kind = ins.get("kind")
            if kind == "turnFlagOn":
                new["on"] = True
            elif kind == "turnFlagOff":
                new["on"] = False
            elif kind == "updateFallthroughVariationOrRollout":
                if "variationId" in ins:
                    if ins["variationId"] not in ids:
                        return 400, {"code": "invalid_request", "message": "unknown variationId"}
                    new["fallthrough"] = {"variation": ids[ins["variationId"]]}
                elif "rolloutWeights" in ins:
                    weights = ins["rolloutWeights"]
                    if any(k not in ids for k in weights):
                        return 400, {"code": "invalid_request", "message": "rolloutWeights names an unknown variation id"}
                    if sum(weights.values()) != 100000 or any((not isinstance(w, int)) or w < 0 for w in weights.values()):
                        return 400, {"code": "invalid_request", "message": "rolloutWeights must be non-negative integers summing to 100000"}
                    new["fallthrough"] = {
                        "rollout": {
                            "variations": [{"variation": ids[k], "weight": w} for k, w in weights.items()],
                            "contextKind": ins.get("rolloutContextKind", "user"),
                        }
                    }
                else:
                    return 400, {"code": "invalid_request", "message": "variationId or rolloutWeights required"}
            else:
                return 400, {"code": "invalid_request", "message": f"unknown instruction kind {kind!r}"}
        new["_version"] = env["_version"] + 1
        flag["environments"][env_key] = new
        self.patches.append({**body, "_idempotency_key": headers.get("Idempotency-Key")})
        self._write_sdk_file()
        return 200, flag

    def _handler(self):
        stub = self

        class Handler(JsonHandler):
            def _reply(self, status: int, payload: dict):
                super()._reply(status, payload)
                stub.requests.append((self.command, self.path, status))

            def _flag_key(self):
                parts = urlparse(self.path).path.strip("/").split("/")
                if len(parts) == 5 and parts[:3] == ["api", "v2", "flags"] and parts[3] == stub.project:
                    return parts[4]
                return None

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization")
                if not auth:
                    self._reply(401, {"code": "unauthorized", "message": "No authorization header"})
                    return False
                if auth != stub.token:  # LaunchDarkly access tokens are sent as-is, no "Bearer"
                    self._reply(401, {"code": "unauthorized", "message": "Invalid access token"})
                    return False
                return True

            def do_GET(self):
                if not self._authorized():
                    return
                key = self._flag_key()
                with stub.lock:
                    flag = stub.flags.get(key) if key else None
                    if flag is None:
                        return self._reply(404, {"code": "not_found", "message": "Unknown resource"})
                    env = parse_qs(urlparse(self.path).query).get("env")
                    out = dict(flag)
                    if env:
                        out["environments"] = {e: v for e, v in flag["environments"].items() if e in env}
                    self._reply(200, out)

            def do_PATCH(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._authorized():
                    return
                key = self._flag_key()
                if key is None:
                    return self._reply(404, {"code": "not_found", "message": "Unknown resource"})
                with stub.lock:
                    status, payload = stub._patch(key, self.headers, raw)
                self._reply(status, payload)

        return Handler
