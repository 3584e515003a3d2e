"""How the LLM scorer reaches OpenAI or Azure OpenAI: the async client, and one chat completion with
our own retry loop.

The SDK's retries are off (`max_retries=0`) so that every attempt is counted in the scorer's stats
(`requests`, `batches`, `retries`, `rate_limited`) and a server's Retry-After is honoured up to a
limit: 429 / 408 / 409 / 5xx, timeouts, connection errors and an HTTP 200 whose body is not a chat
completion are retried (Retry-After first, else exponential backoff with jitter); anything else fails
the request at once. A failure is raised as `RequestFailed` with a reason that never contains the key.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


class RequestFailed(Exception):
    """A request that failed after its retries; carries a secret-free reason."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2**attempt) * (0.75 + 0.25 * random.random())


def make_client(provider: str, *, api_key: str, model: str, timeout: float, base_url: str | None,
                azure_endpoint: str | None, api_version: str | None):
    """The SDK's async client: Azure by endpoint + deployment (or any compatible base_url), else OpenAI
    (base_url, env OPENAI_BASE_URL, or api.openai.com)."""
    import openai

    common = dict(api_key=api_key, timeout=timeout, max_retries=0)
    if provider == "azure":
        if base_url:
            return openai.AsyncAzureOpenAI(base_url=base_url, api_version=api_version, **common)
        return openai.AsyncAzureOpenAI(azure_endpoint=azure_endpoint, azure_deployment=model, api_version=api_version, **common)
    return openai.AsyncOpenAI(base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None, **common)


async def create_completion(client, request: dict[str, Any], retry: RetryPolicy, stats: dict, *,
                            on_response: Callable[[Any], None], scrub: Callable[[str], str], label: str):
    """One chat completion (`request`: the create() arguments), retried as the module docstring says.
    `on_response` sees the completion inside the retry loop: a body it cannot read counts as a bad response."""
    import openai

    attempt = 0
    while True:
        stats["requests"] += 1
        if attempt == 0:
            stats["batches"] += 1
        delay: float | None = None
        try:
            completion = await client.chat.completions.create(**request)
            on_response(completion)
            return completion
        except openai.APIStatusError as exc:
            status = exc.status_code
            reason = f"HTTP {status}"
            if status == 429:
                stats["rate_limited"] += 1
            if status not in (408, 409, 429) and status < 500:
                raise RequestFailed(reason) from None
            delay = retry_after(exc.response.headers if exc.response is not None else None)
            if delay is not None and delay > retry.max_retry_after:
                raise RequestFailed(f"{reason}, Retry-After {delay:.0f}s too long") from None
        except openai.APITimeoutError:
            reason = "timeout"
        except openai.APIConnectionError:
            reason = "connection error"
        except (openai.APIResponseValidationError, ValueError, TypeError) as exc:
            # An HTTP 200 whose body is not a chat completion: treat as a retryable server fault.
            reason = f"bad response body ({type(exc).__name__})"
        except openai.OpenAIError as exc:
            raise RequestFailed(scrub(type(exc).__name__)) from None
        if attempt >= retry.max_retries:
            raise RequestFailed(f"{reason} after {attempt + 1} attempts")
        if delay is None:
            delay = retry.backoff(attempt)
        log.info("%s: %s, retry %d/%d in %.2fs", label, reason, attempt + 1, retry.max_retries, delay)
        stats["retries"] += 1
        attempt += 1
        await asyncio.sleep(delay)


def retry_after(headers) -> float | None:
    """Seconds the server asks us to wait (`retry-after-ms`, or `retry-after` as seconds or an HTTP date)."""
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None
