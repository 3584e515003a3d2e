"""Feature-flag backends behind one protocol, and `make_flag_backend` to build one from config.

Credentials are passed in by the caller (read from environment variables such as
UNLEASH_ADMIN_TOKEN, LAUNCHDARKLY_API_TOKEN, ROLLBACK_WEBHOOK_SECRET); backends never log them and
scrub them from every error message.
"""

from __future__ import annotations

from .base import (
    ApprovalRequiredError,
    FlagBackend,
    FlagBackendError,
    FlagState,
    FlagTarget,
    PermanentBackendError,
    TransientBackendError,
    redact,
)

BACKEND_KINDS = ("flagd", "unleash", "launchdarkly", "webhook")


def make_flag_backend(kind: str, **config) -> FlagBackend:
    """Build a backend.

    flagd:        path, on_variant="on", off_variant="off", create_missing=True
    unleash:      url, admin_token, environment="development", project="default", timeout=10
    launchdarkly: api_token, project="default", environment="production",
                  base_url="https://app.launchdarkly.com", on_value=True, off_value=False
    webhook:      url, secret, timeout=10
    """
    kind = kind.lower()
    if kind == "flagd":
        from .flagd import FlagdFileBackend

        return FlagdFileBackend(**config)
    if kind == "unleash":
        from .unleash import UnleashBackend

        return UnleashBackend(**config)
    if kind == "launchdarkly":
        from .launchdarkly import LaunchDarklyBackend

        return LaunchDarklyBackend(**config)
    if kind == "webhook":
        from .webhook import WebhookBackend

        return WebhookBackend(**config)
    raise ValueError(f"unknown flag backend {kind!r}; expected one of {BACKEND_KINDS}")


__all__ = [
    "ApprovalRequiredError",
    "BACKEND_KINDS",
    "FlagBackend",
    "FlagBackendError",
    "FlagState",
    "FlagTarget",
    "PermanentBackendError",
    "TransientBackendError",
    "make_flag_backend",
    "redact",
]
