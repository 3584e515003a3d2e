"""An OpenAI-compatible Chat Completions stub for tests and benchmarks: no network, no model.

Also a developer tool: point the LLM scorer at it (`OPENAI_BASE_URL=http://127.0.0.1:8999/v1`, any
`OPENAI_API_KEY`) to run `make ui` or `replay --scorer openai` offline.

    python tests/llm_stub_server.py --port 8999 [--latency 0.3] [--api-key KEY]
        [--fault 429 --fault 500 ...] [--always wrong_enum] [--retry-after 1] [--hang-seconds 30]

Routes
  POST /v1/chat/completions                                         OpenAI; needs `Authorization: Bearer KEY`
  POST /openai/deployments/{deployment}/chat/completions?api-version=V   Azure; needs `api-key: KEY` and api-version
  (with no --api-key any non-empty credential is accepted; a missing one is a 401 either way)
  GET  /_stub/stats      {"requests", "completions", "prompt_tokens", "completion_tokens", "faults_served", ...}
  GET  /_stub/requests   every completion request received: path, query, headers (credentials masked), body
  POST /_stub/config     JSON: {"latency": s, "faults": [...], "always": [...], "retry_after": "1", "hang_seconds": s}
                         ("faults" are appended to the one-shot queue; "always" replaces the persistent list)
  POST /_stub/reset      clears counters, recorded requests, queued and persistent faults

Answers: each review in the user message's JSON ({"reviews": [{"id", "text"}]}) is scored on its own
with the offline VADER lexicon and the keyword taxonomy, so answers are plausible and deterministic,
and one review never influences another's answer.

Faults: a one-shot queue (each request pops one), a persistent list (applied to every request) and a
per-request header `x-stub-fault: name[,name]`. Names:
  429[:secs]     429 with `Retry-After: secs` (default --retry-after)    500 / 503   server error
  hang           sleep --hang-seconds before answering (client timeout)  bad_body    HTTP 200, non-JSON body
  malformed_json content is not JSON         cut_off      finish_reason "length", content cut in half
  refusal        message.refusal set         missing_ids  first result dropped
  extra_ids      an unknown id added         duplicate_ids first result repeated with another score
  wrong_enum     first result's label "very_negative"   out_of_range first result's score 3.5
  text:MARK=fault  (persistent list only) apply `fault` to the results of reviews whose text contains
                   MARK: wrong_enum / out_of_range / missing_ids on those items only.

Tokens are counted as ceil(characters / 4) of the message contents and of the answer.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import OTHER, Taxonomy

_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_ITEM_FAULTS = {"wrong_enum", "out_of_range", "missing_ids"}


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class StubState:
    def __init__(self, latency=0.0, api_key=None, faults=(), always=(), retry_after="1", hang_seconds=30.0):
        self.lock = threading.Lock()
        self.latency = float(latency)
        self.api_key = api_key
        self.retry_after = str(retry_after)
        self.hang_seconds = float(hang_seconds)
        self.queue: list[str] = list(faults)
        self.always: list[str] = list(always)
        self.scorer = LexiconScorer()
        self.taxonomy = Taxonomy.load()
        self.reset_counters()

    def reset_counters(self) -> None:
        self.requests = 0
        self.completions = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.faults_served: list[str] = []
        self.recorded: list[dict] = []
        self.rejected_auth = 0

    def stats(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "completions": self.completions,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "faults_served": list(self.faults_served),
                "rejected_auth": self.rejected_auth,
                "queued_faults": list(self.queue),
                "always": list(self.always),
                "latency": self.latency,
            }

    def configure(self, spec: dict) -> None:
        with self.lock:
            if "latency" in spec:
                self.latency = float(spec["latency"])
            if "retry_after" in spec:
                self.retry_after = str(spec["retry_after"])
            if "hang_seconds" in spec:
                self.hang_seconds = float(spec["hang_seconds"])
            if "faults" in spec:
                self.queue.extend(spec["faults"])
            if "always" in spec:
                self.always = list(spec["always"])

    def reset(self) -> None:
        with self.lock:
            self.queue.clear()
            self.always.clear()
            self.reset_counters()

    def served(self, fault: str) -> None:
        with self.lock:
            self.faults_served.append(fault)

    def record(self, handler, parts, query: dict, raw: bytes, azure) -> tuple[dict | None, list[str], tuple]:
        """Count and keep a completion request (credentials masked); (its JSON body or None, the faults it
        gets from the persistent list and the one-shot queue, (latency, retry_after, hang_seconds) now)."""
        headers = {k.lower(): ("<masked>" if k.lower() in ("authorization", "api-key") else v) for k, v in handler.headers.items()}
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        with self.lock:
            self.requests += 1
            self.recorded.append(
                {"t": time.time(), "path": parts.path, "query": query, "headers": headers, "raw": text, "body": body,
                 "deployment": azure.group(1) if azure else None}
            )
            faults = list(self.always)
            if self.queue:
                faults.append(self.queue.pop(0))
            return body, faults, (self.latency, self.retry_after, self.hang_seconds)

    # -- answers --------------------------------------------------------------------------------
    def answer(self, reviews: list[dict]) -> list[dict]:
        texts = [str(r.get("text", "")) for r in reviews]
        scores = self.scorer.score(texts)
        topics = self.taxonomy.classify(pd.Series(texts, dtype=object))
        out = []
        for i, review in enumerate(reviews):
            score = round(float(scores["sentiment_score"].iloc[i]), 4)
            label = str(scores["sentiment_label"].iloc[i])
            category = str(topics["issue_category"].iloc[i])
            surface = topics["affected_surface"].iloc[i] or OTHER
            high_risk = bool(topics["high_risk"].iloc[i])
            urgency = "high" if score <= -0.6 or (score < -0.05 and high_risk) else "medium" if score < -0.05 else "low"
            intent = (
                "question" if texts[i].rstrip().endswith("?")
                else "bug_report" if category == "crashes"
                else "complaint" if label == "negative"
                else "praise" if label == "positive"
                else "other"
            )
            out.append(
                {
                    "id": review.get("id"),
                    "sentiment_score": score,
                    "sentiment_label": label,
                    "confidence": round(float(scores["confidence"].iloc[i]), 4),
                    "issue_category": category,
                    "affected_surface": surface,
                    "urgency": urgency,
                    "intent": intent,
                    "rationale": f"lexicon {score:+.2f} on {category}",
                }
            )
        return out


_TRANSPORT_FAULTS = ("429", "500", "502", "503", "hang", "bad_body")


def _split_faults(faults: list[str]) -> tuple[list[str], dict[str, str]]:
    """(faults on the whole request, {text mark: fault} for `text:MARK=fault`)."""
    whole: list[str] = []
    by_text: dict[str, str] = {}
    for fault in faults:
        if fault.startswith("text:") and "=" in fault:
            mark, name = fault[5:].rsplit("=", 1)
            by_text[mark] = name
        else:
            whole.append(fault)
    return whole, by_text


def _text_faults(reviews: list[dict], results: list[dict], by_text: dict[str, str], served) -> list[dict]:
    """Spoil the answers of the reviews whose text carries a mark."""
    out: list[dict | None] = list(results)
    for i, review in enumerate(reviews):
        for mark, name in by_text.items():
            if mark in str(review.get("text", "")) and out[i] is not None:
                served(f"text:{mark}={name}")
                if name == "wrong_enum":
                    out[i]["sentiment_label"] = "very_negative"
                elif name == "out_of_range":
                    out[i]["sentiment_score"] = 3.5
                elif name == "missing_ids":
                    out[i] = None
    return [r for r in out if r is not None]


def _answer_faults(results: list[dict], whole: list[str], served) -> tuple[str, str, str | None]:
    """(message content, finish_reason, refusal) after the faults that spoil an answer."""
    finish, refusal, content = "stop", None, None
    for fault in whole:
        if fault in _TRANSPORT_FAULTS or fault.startswith("429:"):
            continue
        served(fault)
        if fault == "missing_ids" and results:
            results = results[1:]
        elif fault == "extra_ids":
            results.append({**(results[0] if results else {}), "id": f"zz-{uuid.uuid4().hex[:6]}"})
        elif fault == "duplicate_ids" and results:
            results.append({**results[0], "sentiment_score": -results[0]["sentiment_score"]})
        elif fault == "wrong_enum" and results:
            results[0]["sentiment_label"] = "very_negative"
        elif fault == "out_of_range" and results:
            results[0]["sentiment_score"] = 3.5
        elif fault == "malformed_json":
            content = '{"results": [{"id": "r0", "sentiment_score": 0.5,, oops'
        elif fault == "cut_off":
            finish = "length"
        elif fault == "refusal":
            refusal, content = "I can't help with that.", ""
    content = content if content is not None else json.dumps({"results": results})
    if finish == "length":
        content = content[: len(content) // 2]
    return content, finish, refusal


def _completion(model: str, content: str, finish: str, refusal: str | None, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes | dict, headers: dict | None = None, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _error(self, status: int, message: str, headers=None, code=None):
        self._send(status, {"error": {"message": message, "type": "stub_error", "code": code}}, headers)

    def do_GET(self):
        state = self.server.state
        path = urlsplit(self.path).path
        if path == "/_stub/stats":
            return self._send(200, state.stats())
        if path == "/_stub/requests":
            with state.lock:
                return self._send(200, {"requests": list(state.recorded)})
        return self._error(404, "not found")

    def do_POST(self):
        state = self.server.state
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path == "/_stub/config":
            state.configure(json.loads(raw or b"{}"))
            return self._send(200, state.stats())
        if parts.path == "/_stub/reset":
            state.reset()
            return self._send(200, state.stats())
        azure = _AZURE_PATH.match(parts.path)
        if parts.path != "/v1/chat/completions" and not azure:
            return self._error(404, f"no route {parts.path}")
        query = parse_qs(parts.query)
        body, faults, (latency, retry_after, hang) = state.record(self, parts, query, raw, azure)
        faults += [f.strip() for f in (self.headers.get("x-stub-fault") or "").split(",") if f.strip()]

        if not self._authorized(azure is not None, query):
            with state.lock:
                state.rejected_auth += 1
            return self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        if body is None or not isinstance(body.get("messages"), list):
            return self._error(400, "body is not a chat completion request")
        if latency:
            time.sleep(latency)
        whole, by_text = _split_faults(faults)
        if self._transport_fault(whole, retry_after, hang):
            return None

        user = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), None)
        try:
            reviews = json.loads(user["content"])["reviews"] if user else []
            if not isinstance(reviews, list):
                raise ValueError
        except (ValueError, TypeError, KeyError):
            return self._error(400, "user message is not {\"reviews\": [...]}")
        results = _text_faults(reviews, state.answer(reviews), by_text, state.served)
        content, finish, refusal = _answer_faults(results, whole, state.served)
        prompt_tokens = sum(_tokens(str(m.get("content", ""))) for m in body["messages"])
        completion_tokens = _tokens(content)
        with state.lock:
            state.completions += 1
            state.prompt_tokens += prompt_tokens
            state.completion_tokens += completion_tokens
        model = body.get("model") or (azure.group(1) if azure else "stub")
        self._send(200, _completion(model, content, finish, refusal, prompt_tokens, completion_tokens),
                   {"x-request-id": uuid.uuid4().hex})

    def _transport_fault(self, whole: list[str], retry_after: str, hang: float) -> bool:
        """Serve the first fault that replaces the answer (429, 5xx, a bad body); `hang` only delays it."""
        state = self.server.state
        for fault in whole:
            name, _, arg = fault.partition(":")
            if name == "429":
                state.served(fault)
                self._error(429, "Rate limit reached", {"Retry-After": arg or retry_after}, "rate_limit_exceeded")
                return True
            if name in ("500", "502", "503"):
                state.served(fault)
                self._error(int(name), "The server had an error while processing your request.")
                return True
            if name == "hang":
                state.served(fault)
                time.sleep(hang)
            if name == "bad_body":
                state.served(fault)
                self._send(200, b'{"id": "chatcmpl-x", "choices": [{"message": {"content": ', content_type="application/json")
                return True
        return False

    def _authorized(self, azure: bool, query: dict) -> bool:
        want = self.server.state.api_key
        if azure:
            if not query.get("api-version"):
                return False
            got = self.headers.get("api-key")
        else:
            auth = self.headers.get("Authorization") or ""
            got = auth[7:] if auth.startswith("Bearer ") else None
        return bool(got) and (want is None or got == want)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    state: StubState


class StubServer:
    """In-process stub: `with StubServer(latency=0.0) as stub: OpenAI(base_url=stub.openai_base_url)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **state_kwargs):
        self.state = StubState(**state_kwargs)
        self._server = _Server((host, port), _Handler)
        self._server.state = self.state
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[dict]:
        with self.state.lock:
            return list(self.state.recorded)

    def stats(self) -> dict:
        return self.state.stats()

    def configure(self, **spec) -> None:
        self.state.configure(spec)

    def reset(self) -> None:
        self.state.reset()

    def start(self) -> "StubServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="llm-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every completion")
    parser.add_argument("--api-key", default=None, help="credential to require (default: any non-empty)")
    parser.add_argument("--fault", action="append", default=[], help="one-shot fault, repeatable, served in order")
    parser.add_argument("--always", action="append", default=[], help="fault applied to every request")
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    stub = StubServer(
        args.host, args.port, latency=args.latency, api_key=args.api_key, faults=args.fault, always=args.always,
        retry_after=args.retry_after, hang_seconds=args.hang_seconds,
    )
    print(f"llm stub listening on http://{args.host}:{stub.port}", flush=True)
    try:
        stub._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub._server.server_close()


if __name__ == "__main__":
    main()
