"""A local receiver implementing the signed-webhook flag contract (rollback_assets.core.flags.webhook)
and a notification endpoint. It verifies every signature with the shared signing helper, dedupes
changes by Idempotency-Key and counts what really reached it."""

from __future__ import annotations

import json
import threading
from collections import Counter

from loopback import JsonHandler, LoopbackServer

from rollback_assets.core.signing import SignatureError, verify


class WebhookReceiver(LoopbackServer):
    def __init__(self, secret: str):
        self.secret = secret
        self.flags: dict[str, dict] = {}
        self.applied: dict[str, dict] = {}  # idempotency key -> resulting state
        self.changes = Counter()  # flag -> state changes actually made
        self.posts: list[dict] = []  # every accepted POST body
        self.notifications: list[dict] = []
        self.rejected_signatures = 0
        self.flag_posts = 0  # every flag POST that reached the receiver, failed or not
        self.fail_next: list[int] = []  # statuses for the next flag POSTs (simulated outage)
        self.notify_fail_next: list[int] = []
        self.approval_flags: set[str] = set()
        self.lock = threading.Lock()
        super().__init__()

    def _handler(self):
        rx = self

        class Handler(JsonHandler):
            def _body(self) -> bytes | None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    verify(rx.secret, raw, dict(self.headers.items()))
                except SignatureError as exc:
                    with rx.lock:
                        rx.rejected_signatures += 1
                    self._reply(401, {"error": str(exc)})
                    return None
                return raw

            def do_GET(self):
                if self._body() is None:
                    return
                key = self.path.rsplit("/", 1)[-1]
                with rx.lock:
                    state = rx.flags.get(key)
                if state is None:
                    return self._reply(404, {"error": "unknown flag"})
                self._reply(200, {"flag_key": key, **state})

            def do_POST(self):
                raw = self._body()
                if raw is None:
                    return
                payload = json.loads(raw)
                with rx.lock:
                    if self.path == "/notify":
                        if rx.notify_fail_next:
                            return self._reply(rx.notify_fail_next.pop(0), {"error": "down"})
                        rx.notifications.append(payload)
                        return self._reply(200, {"ok": True})
                    rx.flag_posts += 1
                    if rx.fail_next:
                        return self._reply(rx.fail_next.pop(0), {"error": "simulated outage"})
                    key = self.path.rsplit("/", 1)[-1]
                    if key not in rx.flags:
                        return self._reply(404, {"error": "unknown flag"})
                    if key in rx.approval_flags:
                        return self._reply(202, {"status": "awaiting_approval"})
                    idem = self.headers.get("Idempotency-Key")
                    assert idem and idem == payload["idempotency_key"]
                    if idem in rx.applied:
                        return self._reply(200, {"flag_key": key, **rx.applied[idem]})
                    rx.posts.append(payload)
                    state = {"enabled": payload["enabled"], "rollout": payload["rollout"], "variant": payload["variant"]}
                    rx.flags[key] = state
                    rx.applied[idem] = state
                    rx.changes[key] += 1
                    self._reply(200, {"flag_key": key, **state})

        return Handler
