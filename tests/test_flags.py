"""The one place a flag backend is built from a deployment's settings (core/flags/__init__.py): what the
CLI reads from the environment and what FlagControlResource holds become the same backend."""

from __future__ import annotations

import pytest

from rollback_assets.core.flags import DEFAULT_FLAGD_FILE, backend_from_settings
from rollback_assets.core.settings import Settings
from rollback_assets.defs.flags import FlagControlResource, flag_control_from_env


def test_environment_and_resource_build_the_same_backend(monkeypatch):
    env = {"ROLLBACK_FLAG_BACKEND": "webhook", "ROLLBACK_FLAG_WEBHOOK_URL": "http://127.0.0.1:9/flags",
           "ROLLBACK_WEBHOOK_SECRET": "whsec-0123456789", "UNLEASH_URL": "http://unused", "HOME": "/root"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resource = flag_control_from_env(Settings.from_env(env))
    assert resource.backend == "webhook" and resource.webhook_url == "http://127.0.0.1:9/flags"
    from_env = resource.process_config_and_initialize().client()  # the secret resolved as a run resolves it
    assert from_env._secret == "whsec-0123456789"
    from_resource = FlagControlResource(backend="webhook", webhook_url="http://127.0.0.1:9/flags",
                                        webhook_secret="whsec-0123456789").client()
    assert (from_env.name, from_env.url) == (from_resource.name, from_resource.url) == ("webhook", "http://127.0.0.1:9/flags")


def test_defaults_come_from_the_backend_and_the_project():
    assert backend_from_settings().path == DEFAULT_FLAGD_FILE
    assert backend_from_settings("unleash", unleash_url="http://u", unleash_admin_token="t", unleash_environment=None).environment == "development"


def test_unknown_backend_or_setting_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="launchdarkly"):
        backend_from_settings("unleesh")
    with pytest.raises(ValueError, match="flagd_path"):
        backend_from_settings("flagd", flagd_file="x")
