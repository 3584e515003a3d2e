"""Feature-flag backends behind one protocol, and the one place a backend is built from settings.

`make_flag_backend(kind, **config)` builds a backend from its own constructor arguments;
`backend_from_settings(**settings)` from the deployment's flat settings (the fields of the Dagster
`FlagControlResource`, which the CLI builds from the environment as the code location does), so the assets, the sensors and the CLI
reach the same flags the same way. Defaults live in the backend classes: a setting left None uses them.

Credentials are passed in by the caller (read from environment variables such as
UNLEASH_ADMIN_TOKEN, LAUNCHDARKLY_API_TOKEN, ROLLBACK_WEBHOOK_SECRET); backends never log them and
scrub them from every error message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

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

BackendKind = Literal["flagd", "unleash", "launchdarkly", "webhook"]
BACKEND_KINDS: tuple[str, ...] = get_args(BackendKind)
DEFAULT_FLAGD_FILE = Path(__file__).resolve().parents[3] / "flags" / "flags.json"  # the project's flags/ folder

# The deployment's flag settings: each one's environment variable (None: set only in Dagster config)
# and the backend constructor argument it becomes.
SETTINGS: dict[str, tuple[str | None, str, str]] = {  # setting -> (env var, backend, argument)
    "flagd_path": ("ROLLBACK_FLAGD_FILE", "flagd", "path"),
    "unleash_url": ("UNLEASH_URL", "unleash", "url"),
    "unleash_environment": ("UNLEASH_ENVIRONMENT", "unleash", "environment"),
    "unleash_project": (None, "unleash", "project"),
    "unleash_admin_token": ("UNLEASH_ADMIN_TOKEN", "unleash", "admin_token"),
    "launchdarkly_base_url": ("LAUNCHDARKLY_BASE_URL", "launchdarkly", "base_url"),
    "launchdarkly_project": ("LAUNCHDARKLY_PROJECT", "launchdarkly", "project"),
    "launchdarkly_environment": ("LAUNCHDARKLY_ENVIRONMENT", "launchdarkly", "environment"),
    "launchdarkly_api_token": ("LAUNCHDARKLY_API_TOKEN", "launchdarkly", "api_token"),
    "webhook_url": ("ROLLBACK_FLAG_WEBHOOK_URL", "webhook", "url"),
    "webhook_secret": ("ROLLBACK_WEBHOOK_SECRET", "webhook", "secret"),
}
BACKEND_ENV = "ROLLBACK_FLAG_BACKEND"
SECRET_SETTINGS = frozenset({"unleash_admin_token", "launchdarkly_api_token", "webhook_secret"})


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


def backend_from_settings(backend: str = "flagd", **settings: Any) -> FlagBackend:
    """The backend the deployment's settings name (keys of SETTINGS; None or absent: the default)."""
    backend = backend.lower()
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown flag backend settings {unknown}; expected some of {sorted(SETTINGS)}")
    config = {arg: settings[name] for name, (_, kind, arg) in SETTINGS.items()
              if kind == backend and settings.get(name) is not None}
    if backend == "flagd":
        config.setdefault("path", str(DEFAULT_FLAGD_FILE))
    return make_flag_backend(backend, **config)


__all__ = [
    "ApprovalRequiredError",
    "BACKEND_KINDS",
    "BackendKind",
    "backend_from_settings",
    "FlagBackend",
    "FlagBackendError",
    "FlagState",
    "FlagTarget",
    "PermanentBackendError",
    "TransientBackendError",
    "make_flag_backend",
    "redact",
]
