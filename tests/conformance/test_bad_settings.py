"""Every setting rejects invalid values when the middleware is constructed, from the environment
and as a keyword argument, with a message that names the setting, the value and what is
accepted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from flask import Flask
from starlette.applications import Starlette

from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
from leakware.flask import init_app
from leakware.settings import FIELDS, SettingsError
from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware

#: Replaced by the test's temporary directory, which is not a file.
DIRECTORY = "<a directory>"
#: What an invalid path is reported to need, where the path itself is well-formed.
WRITABLE = "a writable file path"


class Invalid(NamedTuple):
    """An invalid value for one setting, given as an environment variable or a keyword."""

    name: str
    source: str
    value: Any
    #: The accepted values the message must name, where they differ from the setting's usual
    #: description.
    accepted: str | None = None


def case(name: str, source: str, value: Any, label: str, accepted: str | None = None) -> Any:
    return pytest.param(Invalid(name, source, value, accepted), id=f"{name} {source} {label}")


INVALID = [
    case("enabled", "env", "maybe", "not a boolean word"),
    case("enabled", "env", "2", "number"),
    case("enabled", "kwarg", "yes", "string"),
    case("enabled", "kwarg", 1, "int"),
    case("sample_rate", "env", "1.5", "above 1"),
    case("sample_rate", "env", "-0.1", "negative"),
    case("sample_rate", "env", "nan", "nan"),
    case("sample_rate", "env", "half", "word"),
    case("sample_rate", "env", "", "empty"),
    case("sample_rate", "kwarg", 2, "above 1"),
    case("sample_rate", "kwarg", float("inf"), "infinite"),
    case("sample_rate", "kwarg", True, "bool"),
    case("sample_rate", "kwarg", "0.5", "string"),
    case("warmup_requests", "env", "-1", "negative"),
    case("warmup_requests", "env", "1.5", "fraction"),
    case("warmup_requests", "env", "many", "word"),
    case("warmup_requests", "kwarg", -1, "negative"),
    case("warmup_requests", "kwarg", 2.0, "float"),
    case("warmup_requests", "kwarg", True, "bool"),
    case("engine", "env", "heapy", "unknown engine"),
    case("engine", "env", "", "empty"),
    case("engine", "kwarg", "memray", "unknown engine"),
    case("engine", "kwarg", None, "None"),
    case("log_file", "env", DIRECTORY, "directory", WRITABLE),
    case("log_file", "env", "/nonexistent-dir/leakware.jsonl", "missing directory", WRITABLE),
    case("log_file", "kwarg", "", "empty"),
    case("log_file", "kwarg", 42, "int"),
    case("log_file", "kwarg", DIRECTORY, "directory", WRITABLE),
    case("top_types", "env", "0", "zero"),
    case("top_types", "env", "101", "above 100"),
    case("top_types", "env", "ten", "word"),
    case("top_types", "kwarg", 0, "zero"),
    case("top_types", "kwarg", 2.5, "float"),
    case("max_window_seconds", "env", "0", "zero"),
    case("max_window_seconds", "env", "-5", "negative"),
    case("max_window_seconds", "env", "inf", "infinite"),
    case("max_window_seconds", "env", "soon", "word"),
    case("max_window_seconds", "kwarg", 0, "zero"),
    case("max_window_seconds", "kwarg", float("nan"), "nan"),
    case("max_window_seconds", "kwarg", "30", "string"),
    case("error_sample_rate", "env", "2", "above 1"),
    case("error_sample_rate", "kwarg", -0.5, "negative"),
    case("error_boost_requests", "env", "-1", "negative"),
    case("error_boost_requests", "env", "1000001", "above the maximum"),
    case("error_boost_requests", "kwarg", 2.5, "float"),
    case("max_routes", "env", "0", "zero"),
    case("max_routes", "env", "100001", "above the maximum"),
    case("max_routes", "kwarg", None, "None"),
    case("max_routes", "kwarg", 0, "zero"),
    case("confirm_interval", "env", "-1", "negative"),
    case("confirm_interval", "env", "never", "word"),
    case("confirm_interval", "kwarg", "10", "string"),
    case("retention_paths", "env", "perhaps", "not a boolean word"),
    case("retention_paths", "kwarg", "false", "string"),
    case("monitor", "env", "2", "number"),
    case("monitor", "kwarg", 1, "int"),
    case("monitor_interval", "env", "0", "zero"),
    case("monitor_interval", "kwarg", -1, "negative"),
    case("monitor_warmup", "env", "-1", "negative"),
    case("monitor_warmup", "kwarg", "60", "string"),
    case("capture_file", "env", DIRECTORY, "directory", WRITABLE),
    case("capture_file", "kwarg", "", "empty"),
    case("capture_file", "kwarg", 7, "int"),
    case("capture_file", "kwarg", DIRECTORY, "directory", WRITABLE),
    case("capture_keep_headers", "kwarg", "authorization", "bare string"),
    case("capture_keep_headers", "kwarg", ["x-trace", ""], "empty name"),
    case("capture_keep_headers", "kwarg", [1], "int name"),
    case("capture_keep_headers", "kwarg", 5, "int"),
    case("capture_keep_headers", "env", "x-trace, bad header", "name with a space"),
    case("capture_keep_headers", "kwarg", ["x-trace:1"], "name with a colon"),
    case("trace_frames", "env", "0", "zero"),
    case("trace_frames", "env", "101", "above 100"),
    case("trace_frames", "kwarg", 0, "zero"),
    case("trace_frames", "kwarg", "1", "string"),
]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


@pytest.mark.parametrize("invalid", INVALID)
def test_invalid_setting_rejected(
    invalid: Invalid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Construction fails with a message naming the setting, the value and what is accepted."""
    name, source, value, accepted = invalid
    field = FIELDS[name]
    if value == DIRECTORY:
        value = str(tmp_path)
    options: dict[str, Any] = {}
    if source == "env":
        monkeypatch.setenv(field.env, value)
    else:
        options[name] = value

    with pytest.raises(SettingsError) as caught:
        WsgiMiddleware(app, **options)

    message = str(caught.value)
    assert field.env in message if source == "env" else (name in message or field.env in message)
    assert repr(value) in message
    assert f"expected {accepted or field.accepted}" in message


def test_every_setting_has_cases() -> None:
    """The table covers every setting both as an environment variable and as a keyword."""
    covered = {(param.values[0].name, param.values[0].source) for param in INVALID}

    missing = [
        (name, source)
        for name in FIELDS
        for source in ("env", "kwarg")
        if (name, source) not in covered
    ]

    assert missing == []


@pytest.mark.parametrize("source", ["env", "kwarg"])
@pytest.mark.parametrize("adapter", ["asgi", "flask"])
def test_other_adapters_reject(
    adapter: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ASGI middleware and Flask's init_app reject invalid settings the same way."""
    options: dict[str, Any] = {}
    if source == "env":
        monkeypatch.setenv("LEAKWARE_SAMPLE_RATE", "1.5")
    else:
        options["sample_rate"] = 1.5

    with pytest.raises(SettingsError, match=r"sample_rate|SAMPLE_RATE") as caught:
        if adapter == "asgi":
            AsgiMiddleware(Starlette(), **options)
        else:
            init_app(Flask(__name__), **options)

    assert "1.5" in str(caught.value)
    assert "expected a number from 0 to 1" in str(caught.value)
