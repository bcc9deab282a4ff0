"""Settings: keyword arguments first, then ``LEAKWARE_*`` environment variables, then defaults.

Everything is parsed and validated once, when a middleware is constructed, so a bad value fails
at start-up instead of on the first sampled request.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

__all__ = ["ENV_PREFIX", "Options", "Settings", "SettingsError"]

ENV_PREFIX = "LEAKWARE_"


class SettingsError(ValueError):
    """An invalid setting: the message names the setting, the value and what is accepted."""


class Options(TypedDict, total=False):
    """Keyword arguments accepted by every leakware middleware; see `Settings` for each one."""

    enabled: bool
    sample_rate: float
    warmup_requests: int
    engine: str
    log_file: str | None
    top_types: int
    max_window_seconds: float
    error_sample_rate: float
    error_boost_requests: int
    max_routes: int
    confirm_interval: float
    retention_paths: bool
    monitor: bool
    monitor_interval: float
    monitor_warmup: float
    capture_file: str | None
    capture_keep_headers: tuple[str, ...]
    trace_frames: int


ENGINES = ("young", "guppy", "tracemalloc")

#: CPython releases on which guppy3 (3.1.7) can hang or crash the process: its heap traversal
#: ends in a garbage collection that never returns once asyncio's default executor has run, as
#: every FastAPI sync endpoint does.
# NOTE: reproduced on 3.12.1; 3.12.0 is refused with it because it is older and untested. Later
# 3.12 releases were not available to test.
GUPPY_UNSAFE = sys.version_info[:3] in {(3, 12, 0), (3, 12, 1)}
#: The engines this interpreter accepts.
AVAILABLE_ENGINES = tuple(name for name in ENGINES if not (GUPPY_UNSAFE and name == "guppy"))


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Validated leakware settings.

    Each field can be given as a keyword argument or as the environment variable named in
    `FIELDS`. Keyword arguments win over the environment.
    """

    #: Master switch. When false the middleware calls the app and does nothing else.
    enabled: bool = True
    #: Fraction of requests to measure, from 0 to 1.
    sample_rate: float = 0.01
    #: Requests each process serves before sampling starts, so that caches fill first.
    warmup_requests: int = 20
    #: Snapshot engine: ``young`` (default, cheap), ``guppy`` (exact, walks the heap) or
    #: ``tracemalloc`` (young engine plus allocation sites).
    engine: str = "young"
    #: Append JSON lines to this file; ``None`` writes them to stderr.
    log_file: str | None = None
    #: Number of types listed per event.
    top_types: int = 10
    #: A measurement window open longer than this many seconds is abandoned.
    max_window_seconds: float = 30.0
    #: Sample rate for a route during its error boost.
    error_sample_rate: float = 0.5
    #: After a request fails, how many further requests to its route use `error_sample_rate`;
    #: 0 turns the boost off.
    error_boost_requests: int = 20
    #: Distinct (method, route, exception) keys tracked per process; the rest share one bucket.
    max_routes: int = 200
    #: Minimum seconds between two liveness passes (a full collection and a check of retained
    #: objects). Passes are also spaced so that they take at most 2 % of the time, so on a large
    #: heap, where a pass costs more, they run less often than this.
    confirm_interval: float = 1.0
    #: Compute the chain of referrers that keeps a confirmed leak alive.
    retention_paths: bool = True
    #: Run the background heap monitor.
    monitor: bool = False
    #: Seconds between two heap monitor events.
    monitor_interval: float = 10.0
    #: Seconds the heap monitor waits before it takes its baseline.
    monitor_warmup: float = 60.0
    #: Record every request to this file for later replay. Contains request data.
    capture_file: str | None = None
    #: Sensitive headers to keep in captured traffic (dropped by default).
    capture_keep_headers: tuple[str, ...] = ()
    #: Frames stored per allocation by the ``tracemalloc`` engine.
    trace_frames: int = 1

    @classmethod
    def load(
        cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from keyword ``options``, falling back to ``environ`` (default
        ``os.environ``).

        Raises:
            TypeError: an unknown keyword option.
            SettingsError: an invalid value, from either source.
        """
        if environ is None:
            environ = os.environ
        unknown = sorted(set(options) - set(FIELDS))
        if unknown:
            msg = f"unknown leakware option {unknown[0]!r}; accepted options: {', '.join(FIELDS)}"
            raise TypeError(msg)
        _warn_unknown_env(environ)

        values: dict[str, Any] = {}
        for name, field in FIELDS.items():
            if name in options:
                values[name] = field.check(name, options[name])
            elif field.env in environ:
                values[name] = field.parse(field.env, environ[field.env])
        return cls(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    """How one setting is read from text (the environment) and checked as a Python value."""

    env: str
    accepted: str
    parse_text: Callable[[str], Any]
    check_value: Callable[[Any], Any]

    def parse(self, label: str, text: str) -> Any:
        try:
            return self.check_value(self.parse_text(text.strip()))
        except (TypeError, ValueError):
            raise SettingsError(_invalid(label, text, self.accepted)) from None

    def check(self, label: str, value: Any) -> Any:
        try:
            return self.check_value(value)
        except (TypeError, ValueError):
            raise SettingsError(_invalid(label, value, self.accepted)) from None


def _invalid(label: str, value: object, accepted: str) -> str:
    return f"{label}={value!r} is invalid: expected {accepted}"


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _text_to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _check_rate(value: Any) -> float:
    number = _check_number(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(value)
    return number


def _check_number(value: Any) -> float:
    # bool is an int subclass, and True is never a sensible rate or duration.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _check_positive(value: Any) -> float:
    number = _check_number(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _check_non_negative(value: Any) -> float:
    number = _check_number(value)
    if number < 0:
        raise ValueError(value)
    return number


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(value)
        if not low <= value <= high:
            raise ValueError(value)
        return value

    return check


def _check_engine(value: Any) -> str:
    if value not in AVAILABLE_ENGINES:
        raise ValueError(value)
    return str(value)


def _engines_accepted() -> str:
    accepted = f"one of {', '.join(AVAILABLE_ENGINES)}"
    if GUPPY_UNSAFE:
        version = ".".join(map(str, sys.version_info[:3]))
        accepted += f" (guppy is unavailable on CPython {version}, where guppy3 can hang)"
    return accepted


def _check_path(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(value)
    path = os.fspath(value)
    if not isinstance(path, str) or not path.strip():
        raise ValueError(value)
    return path


def _text_to_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


#: An HTTP header name: a token as RFC 9110 defines it.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(
        isinstance(item, str) and _HEADER_NAME.fullmatch(item) for item in value
    ):
        raise TypeError(value)
    return tuple(item.lower() for item in value)


def _text_to_path(text: str) -> str | None:
    return text or None


_MAX_INT = sys.maxsize

FIELDS: dict[str, _Field] = {
    "enabled": _Field("LEAKWARE_ENABLED", "one of 1, 0, true, false, yes, no, on, off",
                      _text_to_bool, _check_bool),
    "sample_rate": _Field("LEAKWARE_SAMPLE_RATE", "a number from 0 to 1", float, _check_rate),
    "warmup_requests": _Field("LEAKWARE_WARMUP_REQUESTS", "a whole number of requests, 0 or more",
                              int, _int_range(0, _MAX_INT)),
    "engine": _Field("LEAKWARE_ENGINE", _engines_accepted(), str, _check_engine),
    "log_file": _Field("LEAKWARE_LOG_FILE", "a file path", _text_to_path, _check_path),
    "top_types": _Field("LEAKWARE_TOP_TYPES", "a whole number from 1 to 100",
                        int, _int_range(1, 100)),
    "max_window_seconds": _Field("LEAKWARE_MAX_WINDOW_SECONDS", "a number of seconds above 0",
                                 float, _check_positive),
    "error_sample_rate": _Field("LEAKWARE_ERROR_SAMPLE_RATE", "a number from 0 to 1",
                                float, _check_rate),
    "error_boost_requests": _Field("LEAKWARE_ERROR_BOOST_REQUESTS",
                                   "a whole number of requests, 0 or more",
                                   int, _int_range(0, 1_000_000)),
    "max_routes": _Field("LEAKWARE_MAX_ROUTES", "a whole number from 1 to 100000",
                         int, _int_range(1, 100_000)),
    "confirm_interval": _Field("LEAKWARE_CONFIRM_INTERVAL", "a number of seconds, 0 or more",
                               float, _check_non_negative),
    "retention_paths": _Field("LEAKWARE_RETENTION_PATHS",
                              "one of 1, 0, true, false, yes, no, on, off",
                              _text_to_bool, _check_bool),
    "monitor": _Field("LEAKWARE_MONITOR", "one of 1, 0, true, false, yes, no, on, off",
                      _text_to_bool, _check_bool),
    "monitor_interval": _Field("LEAKWARE_MONITOR_INTERVAL", "a number of seconds above 0",
                               float, _check_positive),
    "monitor_warmup": _Field("LEAKWARE_MONITOR_WARMUP", "a number of seconds, 0 or more",
                             float, _check_non_negative),
    "capture_file": _Field("LEAKWARE_CAPTURE_FILE", "a file path", _text_to_path, _check_path),
    "capture_keep_headers": _Field("LEAKWARE_CAPTURE_KEEP_HEADERS",
                                   "a comma-separated list of header names",
                                   _text_to_names, _check_names),
    "trace_frames": _Field("LEAKWARE_TRACE_FRAMES", "a whole number from 1 to 100",
                           int, _int_range(1, 100)),
}

_KNOWN_ENV = frozenset(field.env for field in FIELDS.values())


def _warn_unknown_env(environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in _KNOWN_ENV:
            warnings.warn(
                f"unknown environment variable {name} is ignored; "
                f"known leakware variables: {', '.join(sorted(_KNOWN_ENV))}",
                RuntimeWarning,
                stacklevel=4,
            )
