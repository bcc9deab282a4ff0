"""Settings: keyword arguments win over LEAKWARE_* variables, which win over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from leakware.settings import FIELDS, GUPPY_UNSAFE, Settings, SettingsError
from leakware.wsgi import LeakwareMiddleware


def test_settings_defaults_without_input() -> None:
    """No arguments and no environment give the documented defaults."""
    settings = Settings.load({}, environ={})

    assert settings == Settings()
    assert settings.engine == "young"
    assert settings.sample_rate == 0.01
    assert settings.log_file is None


def test_settings_environment_parsed() -> None:
    """Each kind of environment value is parsed into its Python type."""
    settings = Settings.load(
        {},
        environ={
            "LEAKWARE_ENABLED": "off",
            "LEAKWARE_SAMPLE_RATE": " 0.25 ",
            "LEAKWARE_WARMUP_REQUESTS": "0",
            "LEAKWARE_ENGINE": "tracemalloc",
            "LEAKWARE_LOG_FILE": "/tmp/events.jsonl",
            "LEAKWARE_CAPTURE_KEEP_HEADERS": "Authorization, X-Api-Key",
            "LEAKWARE_MONITOR": "YES",
        },
    )

    assert settings.enabled is False
    assert settings.sample_rate == 0.25
    assert settings.warmup_requests == 0
    assert settings.engine == "tracemalloc"
    assert settings.log_file == "/tmp/events.jsonl"
    assert settings.capture_keep_headers == ("authorization", "x-api-key")
    assert settings.monitor is True


def test_settings_argument_beats_environment() -> None:
    """A keyword argument overrides the environment variable for the same setting."""
    settings = Settings.load({"sample_rate": 1.0}, environ={"LEAKWARE_SAMPLE_RATE": "0.5"})

    assert settings.sample_rate == 1.0


def test_settings_empty_log_file_means_stderr() -> None:
    """An empty LEAKWARE_LOG_FILE is the same as not setting it."""
    settings = Settings.load({}, environ={"LEAKWARE_LOG_FILE": ""})

    assert settings.log_file is None


@pytest.mark.parametrize(
    ("environ", "setting", "value"),
    [
        pytest.param({"LEAKWARE_SAMPLE_RATE": "1.5"}, "LEAKWARE_SAMPLE_RATE", "1.5", id="rate"),
        pytest.param({"LEAKWARE_ENGINE": "heapy"}, "LEAKWARE_ENGINE", "heapy", id="engine"),
        pytest.param({"LEAKWARE_ENABLED": "maybe"}, "LEAKWARE_ENABLED", "maybe", id="bool"),
        pytest.param(
            {"LEAKWARE_WARMUP_REQUESTS": "-1"}, "LEAKWARE_WARMUP_REQUESTS", "-1", id="count"
        ),
    ],
)
def test_settings_invalid_environment(environ: dict[str, str], setting: str, value: str) -> None:
    """An invalid variable fails with its name, its value and what is accepted."""
    with pytest.raises(SettingsError) as caught:
        Settings.load({}, environ=environ)

    message = str(caught.value)
    assert setting in message
    assert repr(value) in message
    assert "expected" in message


def test_settings_invalid_argument_names_option() -> None:
    """An invalid keyword argument fails with the option name rather than the variable."""
    with pytest.raises(SettingsError, match=r"sample_rate=-0\.1 is invalid: expected a number"):
        Settings.load({"sample_rate": -0.1}, environ={})


def test_settings_bool_rate_rejected() -> None:
    """True is not a sample rate, although bool is an int subclass."""
    with pytest.raises(SettingsError, match="sample_rate=True"):
        Settings.load({"sample_rate": True}, environ={})


def test_settings_unknown_option_raises() -> None:
    """A misspelled keyword argument is a TypeError that names it and lists the valid ones."""
    with pytest.raises(TypeError, match=r"'sample_rat'.*sample_rate"):
        Settings.load({"sample_rat": 0.5}, environ={})


def test_settings_unknown_variable_warns() -> None:
    """An unknown LEAKWARE_* variable is ignored with a warning that names it."""
    with pytest.warns(RuntimeWarning, match="LEAKWARE_SAMPEL_RATE"):
        settings = Settings.load({}, environ={"LEAKWARE_SAMPEL_RATE": "1"})

    assert settings.sample_rate == Settings().sample_rate


def test_settings_every_field_has_variable() -> None:
    """Every setting can be given as an environment variable named after it."""
    for name, field in FIELDS.items():
        assert field.env == f"LEAKWARE_{name.upper()}"


def test_middleware_unwritable_log_file(tmp_path: Path) -> None:
    """A log file in a missing directory fails when the middleware is created."""
    target = tmp_path / "missing" / "events.jsonl"

    with pytest.raises(SettingsError, match=r"LEAKWARE_LOG_FILE\)=.*missing.*cannot open"):
        LeakwareMiddleware(_app, log_file=str(target))


def test_middleware_reads_environment(monkeypatch: pytest.MonkeyPatch, log_file: Path) -> None:
    """The middleware takes settings from the environment when no argument is given."""
    monkeypatch.setenv("LEAKWARE_SAMPLE_RATE", "0.75")
    monkeypatch.setenv("LEAKWARE_LOG_FILE", str(log_file))

    middleware = LeakwareMiddleware(_app)

    assert middleware.core.settings.sample_rate == 0.75
    assert middleware.core.settings.log_file == str(log_file)


def _app(environ: object, start_response: object) -> list[bytes]:
    return [b""]


@pytest.mark.skipif(not GUPPY_UNSAFE, reason="guppy is accepted on this CPython")
def test_settings_guppy_refused_where_unsafe() -> None:
    """Where guppy3 can hang the interpreter, the guppy engine is refused at start-up with a
    message that says why."""
    with pytest.raises(SettingsError, match=r"guppy is unavailable on CPython 3\.12"):
        Settings.load({}, environ={"LEAKWARE_ENGINE": "guppy"})


@pytest.mark.skipif(GUPPY_UNSAFE, reason="guppy is refused on this CPython")
def test_settings_guppy_accepted() -> None:
    """Elsewhere the guppy engine is accepted."""
    settings = Settings.load({"engine": "guppy"}, environ={})

    assert settings.engine == "guppy"
