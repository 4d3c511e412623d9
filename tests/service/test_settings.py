"""Settings come from ILCS_* variables, are validated, built once, and can be overridden per app."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from model_zoo.checkpoint import SHIPPED_CHECKPOINT
from service.deps import get_app_settings
from service.main import create_app
from service.settings import Settings, get_settings


@pytest.fixture
def env(monkeypatch):
    """A clean ILCS_* environment; returns ``monkeypatch.setenv``."""
    import os

    for name in list(os.environ):
        if name.startswith("ILCS_"):
            monkeypatch.delenv(name)
    return monkeypatch.setenv


def test_defaults_serve_the_shipped_checkpoint_on_the_best_device(env):
    s = Settings()
    assert s.checkpoint == SHIPPED_CHECKPOINT and s.device == "auto"
    assert s.api_keys == [] and s.heatmap == "gray" and (s.host, s.port) == ("0.0.0.0", 8000)


def test_environment_variables_configure_the_service(env):
    env("ILCS_MAX_BATCH_SIZE", "32")
    env("ILCS_MAX_DELAY_MS", "7.5")
    env("ILCS_HEATMAP", "overlay")
    env("ILCS_CALIBRATE", "true")
    s = Settings()
    assert (s.max_batch_size, s.max_delay_ms, s.heatmap, s.calibrate) == (32, 7.5, "overlay", True)


@pytest.mark.parametrize(
    ("value", "keys"),
    [("a, b ,,c", ["a", "b", "c"]), ('["x,y", "z"]', ["x,y", "z"]), ("", []), ("solo", ["solo"])],
)
def test_api_keys_as_a_comma_separated_or_json_list(env, value, keys):
    env("ILCS_API_KEYS", value)
    assert Settings().api_keys == keys


@pytest.mark.parametrize(
    ("name", "value"),
    [("ILCS_MAX_BATCH_SIZE", "0"), ("ILCS_HEATMAP", "rainbow"), ("ILCS_LOW_CONFIDENCE_THRESHOLD", "2")],
)
def test_invalid_values_are_refused_naming_the_setting(env, name, value):
    env(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("ILCS_").lower()):
        Settings()


def test_get_settings_is_built_once(env):
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_an_unreadable_key_file_is_a_clear_error_at_start(settings, tmp_path):
    with pytest.raises(ValueError, match="ILCS_API_KEYS_FILE"):
        create_app(settings(api_keys_file=tmp_path / "no-such-file"))


def test_routes_take_settings_from_the_dependency(live, settings, png):
    app = create_app(settings())
    app.dependency_overrides[get_app_settings] = lambda: settings(heatmap="none")
    with live(app=app) as svc:
        assert svc.classify(png).json()["heatmap"] is None
