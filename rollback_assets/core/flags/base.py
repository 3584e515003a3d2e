"""The flag backend protocol, the state it returns, and the two kinds of failure.

A backend sets a flag to an *absolute* state (enabled, rollout %, variant) — never "one step down" —
so replaying a call is harmless. Every call carries an idempotency key (the action id) that backends
forward where the service supports one, and returns the state read back after the change.

Errors:
  TransientBackendError   5xx, timeouts, connection refused, conflicts with a pending change: retry.
  PermanentBackendError   4xx that will not change by retrying (bad token, unknown flag/variant).
  ApprovalRequiredError   the service wants a human approval first (LaunchDarkly 405).
Error messages are redacted: they never contain the backend's credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Protocol, runtime_checkable

import httpx


def describe_exposure(enabled: bool | None, rollout: int | None, variant: str | None) -> str:
    """A flag state or target as people read it: off, variant X, N%, or ? when unknown."""
    if enabled is None:
        return "?"
    if not enabled:
        return "off"
    if variant:
        return f"variant {variant}"
    return f"{rollout}%"


@dataclass(frozen=True)
class FlagState:
    """What the flag serves. `rollout` is the % of users on the release (0..100) while `enabled`;
    `variant` names the fallback variant served to everyone when the flag was switched, else None."""

    flag_key: str
    enabled: bool
    rollout: int
    variant: str | None = None

    @property
    def effective_rollout(self) -> int:
        """% of users actually exposed to the release: 0 when disabled or switched to a fallback."""
        if not self.enabled or self.variant is not None:
            return 0
        return int(self.rollout)

    def matches(self, target: "FlagTarget") -> bool:
        if not target.enabled:
            return not self.enabled
        if target.variant is not None:
            return self.enabled and self.variant == target.variant
        return self.enabled and self.variant is None and int(self.rollout) == int(target.rollout)


@dataclass(frozen=True)
class FlagTarget:
    """The state an action asks for. enabled=False turns the flag off (the safe default is served);
    variant set switches everyone to that variant; otherwise `rollout` % get the release."""

    enabled: bool
    rollout: int
    variant: str | None = None

    def __post_init__(self):
        if not 0 <= int(self.rollout) <= 100:
            raise ValueError(f"rollout must be within 0..100, got {self.rollout}")


class FlagBackendError(Exception):
    transient = False

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class TransientBackendError(FlagBackendError):
    transient = True


class PermanentBackendError(FlagBackendError):
    transient = False


class ApprovalRequiredError(PermanentBackendError):
    """The backend accepted the request as needing approval (or refused it until approved)."""


@runtime_checkable
class FlagBackend(Protocol):
    name: str  # flagd | unleash | launchdarkly | webhook

    def get_state(self, flag_key: str) -> FlagState: ...

    def apply(self, flag_key: str, target: FlagTarget, *, idempotency_key: str, comment: str = "") -> FlagState:
        """Set the flag to `target`; return the state read back afterwards."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Credential strings to scrub from any text that leaves the backend."""
        ...


_PATTERNS = (  # each keeps <pre> and <post> and masks what lies between
    re.compile(r"(?i)(?P<pre>authorization['\"]?\s*[:=]\s*['\"]?(?:bearer\s+)?)[^\s'\",}]+(?P<post>)"),
    re.compile(r"(?i)(?P<pre>(?:api[_-]?key|token|secret|password)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}&]+(?P<post>)"),
    re.compile(r"(?P<pre>://[^/:@\s]+:)[^@/\s]+(?P<post>@)"),  # user:password@host
    re.compile(r"(?P<pre>)(?:\*|[\w-]+):(?:\*|[\w-]+)\.[0-9a-f]{16,}(?P<post>)"),  # Unleash-style tokens
    re.compile(r"(?P<pre>)\b(?:api|sdk|mob)-[0-9a-f]{8}-[0-9a-f-]{27,}(?P<post>)"),  # LaunchDarkly-style keys
)


def redact(text: object, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and anything shaped like a credential replaced by ***."""
    out = str(text)
    for s in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        out = out.replace(s, "***")
    for pat in _PATTERNS:
        out = pat.sub(r"\g<pre>***\g<post>", out)
    return out


def raise_for_response(resp: httpx.Response, backend: str, secrets: Iterable[str] = ()) -> None:
    """Map an HTTP error response onto transient / permanent / approval errors (redacted)."""
    if resp.status_code < 400:
        return
    body = redact(resp.text[:500], secrets)
    msg = f"{backend}: {resp.request.method} {resp.request.url.path} -> {resp.status_code}: {body}"
    if resp.status_code >= 500 or resp.status_code in (408, 409, 423, 425, 429):
        raise TransientBackendError(msg, resp.status_code)
    raise PermanentBackendError(msg, resp.status_code)


def transport_error(exc: httpx.HTTPError, backend: str, secrets: Iterable[str] = ()) -> TransientBackendError:
    """Timeouts, refused connections and other transport failures are transient."""
    return TransientBackendError(redact(f"{backend}: {type(exc).__name__}: {exc}", secrets))
