"""The app's response iterable is closed exactly once, whatever happens to the request and to
leakware's own measurement."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events

from conformance.harness import FaultyEngine, call_wsgi, raw_exchange, werkzeug_server, wsgi_environ
from leakware.wsgi import LeakwareMiddleware


class CloseError(Exception):
    """Raised by a body's close()."""


class TrackedBody:
    """A response body that counts its close() calls; it can fail while iterating or closing."""

    def __init__(self, fail_at: int | None = None, close_error: bool = False) -> None:
        self.chunks = [b"one\n", b"two\n", b"three\n"]
        self.fail_at = fail_at
        self.close_error = close_error
        self.closes = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("the body failed midway")
            yield chunk

    def close(self) -> None:
        self.closes += 1
        if self.close_error:
            raise CloseError("close failed")


def body_app(body: TrackedBody) -> Callable[..., TrackedBody]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> TrackedBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return app


def _start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
    return lambda data: None


RATES = [pytest.param(0.0, id="rate 0"), pytest.param(1.0, id="rate 1")]


@pytest.mark.parametrize("rate", RATES)
def test_close_after_full_iteration(rate: float, measured: dict[str, Any]) -> None:
    """A response read to its end is closed once."""
    body = TrackedBody()

    result = call_wsgi(LeakwareMiddleware(body_app(body), **{**measured, "sample_rate": rate}))

    assert result.body == b"one\ntwo\nthree\n"
    assert body.closes == 1


@pytest.mark.parametrize("rate", RATES)
def test_close_when_iteration_raises(rate: float, measured: dict[str, Any]) -> None:
    """A body that raises while iterating is still closed once."""
    body = TrackedBody(fail_at=1)

    result = call_wsgi(LeakwareMiddleware(body_app(body), **{**measured, "sample_rate": rate}))

    assert isinstance(result.error, RuntimeError)
    assert body.closes == 1


@pytest.mark.parametrize("rate", RATES)
def test_close_when_client_leaves_early(rate: float, measured: dict[str, Any]) -> None:
    """A server that stops after the first chunk (client gone) closes the body once."""
    body = TrackedBody()
    middleware = LeakwareMiddleware(body_app(body), **{**measured, "sample_rate": rate})

    response = middleware(wsgi_environ(), _start_response)
    first = next(iter(response))
    response.close()  # type: ignore[attr-defined]

    assert first == b"one\n"
    assert body.closes == 1


@pytest.mark.parametrize("rate", RATES)
def test_close_without_iteration(rate: float, measured: dict[str, Any], log_file: Path) -> None:
    """A server that closes the response without reading it closes the body once."""
    body = TrackedBody()
    middleware = LeakwareMiddleware(body_app(body), **{**measured, "sample_rate": rate})

    middleware(wsgi_environ(), _start_response).close()  # type: ignore[attr-defined]

    assert body.closes == 1
    assert len(read_events(log_file, "leakware.sample")) == (1 if rate else 0)


@pytest.mark.parametrize("rate", RATES)
def test_close_error_reaches_server(rate: float, measured: dict[str, Any], log_file: Path) -> None:
    """An exception from the body's close() reaches the server, and the measurement still ends."""
    body = TrackedBody(close_error=True)
    middleware = LeakwareMiddleware(body_app(body), **{**measured, "sample_rate": rate})

    with pytest.raises(CloseError):
        call_wsgi(middleware)

    assert body.closes == 1
    exceptions = [sample["exception"] for sample in read_events(log_file, "leakware.sample")]
    assert exceptions == ([f"{__name__}.CloseError"] if rate else [])


@pytest.mark.parametrize("fail_on", ["open", "stop", "summarise", "malformed"])
def test_close_when_engine_fails(fail_on: str, measured: dict[str, Any], log_file: Path) -> None:
    """When leakware's own measurement fails, the body is still closed once per request."""
    bodies = [TrackedBody() for _ in range(3)]
    waiting = list(bodies)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> TrackedBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return waiting.pop(0)

    middleware = LeakwareMiddleware(app, **measured)
    middleware.core.engine = FaultyEngine(fail_on)

    results = [call_wsgi(middleware) for _ in bodies]

    assert [result.body for result in results] == [b"one\ntwo\nthree\n"] * 3
    assert [body.closes for body in bodies] == [1, 1, 1]
    assert len(read_events(log_file, "leakware.error")) == 1


def test_close_when_log_sink_fails(measured: dict[str, Any]) -> None:
    """When the event cannot be written, the body is still closed once."""
    body = TrackedBody()
    middleware = LeakwareMiddleware(body_app(body), **{**measured, "log_file": "/dev/full"})

    result = call_wsgi(middleware)

    assert result.body == b"one\ntwo\nthree\n"
    assert body.closes == 1


@pytest.mark.server
def test_close_once_on_server(measured: dict[str, Any], log_file: Path) -> None:
    """Under werkzeug's server each request's body is closed once."""
    bodies: list[TrackedBody] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> TrackedBody:
        bodies.append(TrackedBody(fail_at=1 if environ["PATH_INFO"] == "/broken" else None))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return bodies[-1]

    with werkzeug_server(LeakwareMiddleware(app, **measured)) as port:
        for path in ("/ok", "/broken", "/ok"):
            raw_exchange(port, "GET", path)

    assert [body.closes for body in bodies] == [1, 1, 1]
    assert len(read_events(log_file, "leakware.sample")) == 3
