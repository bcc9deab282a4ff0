"""leakware keeps no strong reference to a request: the environ or scope, the response body and
the app's exception are all freed after the request and one collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from conformance.harness import GUPPY_SAFE, call_asgi, call_wsgi, http_scope
from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware


class Sentinel:
    """An object that supports weak references; only the request refers to it."""


class Body:
    """A response body the server iterates and closes."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"receipt\n"

    def close(self) -> None:
        pass


class ReceiptError(Exception):
    """The app's exception."""


#: Rate 0 takes the path that measures nothing. guppy walks the whole heap of the test process
#: (seconds per window), so only the first case of each test runs it.
CHEAP_ENGINE_RATES = [
    pytest.param("young", 0.0, id="unsampled"),
    pytest.param("young", 1.0, id="young"),
    pytest.param("tracemalloc", 1.0, id="tracemalloc"),
]
ENGINE_RATES = [*CHEAP_ENGINE_RATES, pytest.param("guppy", 1.0, id="guppy", marks=GUPPY_SAFE)]


def _options(measured: dict[str, Any], engine: str, rate: float) -> dict[str, Any]:
    return {**measured, "engine": engine, "sample_rate": rate}


def _sampled(log_file: Path) -> int:
    return len(read_events(log_file, "leakware.sample"))


@pytest.mark.parametrize(("engine", "rate"), ENGINE_RATES)
def test_wsgi_response_freed(
    engine: str, rate: float, measured: dict[str, Any], log_file: Path
) -> None:
    """The environ's sentinel and the response body die with the request."""
    refs: list[weakref.ref[Any]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        body = Body()
        refs.append(weakref.ref(body))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    middleware = WsgiMiddleware(app, **_options(measured, engine, rate))
    sentinel = Sentinel()
    refs.append(weakref.ref(sentinel))

    result = call_wsgi(middleware, extra={"shop.sentinel": sentinel})
    del sentinel
    gc.collect()

    assert result.body == b"receipt\n"
    assert [ref() for ref in refs] == [None, None]
    assert _sampled(log_file) == (1 if rate else 0)


@pytest.mark.parametrize(
    ("engine", "rate", "midway"),
    [
        *[
            pytest.param(*p.values, False, id=f"{p.id}-raises early", marks=p.marks)
            for p in ENGINE_RATES
        ],
        *[pytest.param(*p.values, True, id=f"{p.id}-raises midway") for p in CHEAP_ENGINE_RATES],
    ],
)
def test_wsgi_exception_freed(
    engine: str, rate: float, midway: bool, measured: dict[str, Any], log_file: Path
) -> None:
    """The app's exception and the environ's sentinel die once the server drops them."""
    refs: list[weakref.ref[Any]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        error = ReceiptError("printer jammed")
        refs.append(weakref.ref(error))
        if midway:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial"
        raise error

    middleware = WsgiMiddleware(app, **_options(measured, engine, rate))
    sentinel = Sentinel()
    refs.append(weakref.ref(sentinel))

    result = call_wsgi(middleware, extra={"shop.sentinel": sentinel})
    assert isinstance(result.error, ReceiptError)
    del sentinel, result
    gc.collect()

    assert [ref() for ref in refs] == [None, None]
    assert _sampled(log_file) == (1 if rate else 0)


@pytest.mark.parametrize(
    ("engine", "rate", "fails"),
    [
        *[
            pytest.param(*p.values, False, id=f"{p.id}-response", marks=p.marks)
            for p in ENGINE_RATES
        ],
        *[pytest.param(*p.values, True, id=f"{p.id}-exception") for p in CHEAP_ENGINE_RATES],
    ],
)
def test_asgi_request_freed(
    engine: str, rate: float, fails: bool, measured: dict[str, Any], log_file: Path
) -> None:
    """The scope's sentinel, the response object and the app's exception die with the
    request."""
    refs: list[weakref.ref[Any]] = []

    async def receipt(request: Request) -> Response:
        if fails:
            error = ReceiptError("printer jammed")
            refs.append(weakref.ref(error))
            raise error
        response = PlainTextResponse("receipt\n")
        refs.append(weakref.ref(response))
        return response

    app = Starlette(routes=[Route("/receipt", receipt)])
    middleware = AsgiMiddleware(app, **_options(measured, engine, rate))
    scope = http_scope("/receipt")
    sentinel = Sentinel()
    scope["shop.sentinel"] = sentinel
    refs.append(weakref.ref(sentinel))

    result = call_asgi(middleware, scope)
    assert isinstance(result.error, ReceiptError) == fails
    del sentinel, scope, result
    gc.collect()

    assert [ref() for ref in refs] == [None, None]
    assert _sampled(log_file) == (1 if rate else 0)
