"""An app's exception reaches the server as the same object, with its cause, context and
traceback frames intact, also when leakware's own measurement fails at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from types import CodeType, TracebackType
from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.harness import FaultyEngine, call_asgi, call_wsgi, http_scope, wsgi_environ
from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
from leakware.flask import init_app
from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware


class BillError(Exception):
    """The app's own exception."""


def split_bill(raised: list[BaseException]) -> None:
    """Raise a BillError caused by a ValueError while a KeyError is being handled."""
    try:
        {}["basket"]
    except KeyError:
        cause = ValueError("negative total")
        error = BillError("cannot split the bill")
        raised.append(error)
        raise error from cause


def codes(traceback: TracebackType | None) -> list[CodeType]:
    found = []
    while traceback is not None:
        found.append(traceback.tb_frame.f_code)
        traceback = traceback.tb_next
    return found


def check_intact(caught: BaseException | None, raised: list[BaseException]) -> None:
    """Assert that ``caught`` is the app's exception with its chain and frames unchanged."""
    assert caught is raised[0]
    assert isinstance(caught.__cause__, ValueError)
    assert caught.__cause__.args == ("negative total",)
    assert isinstance(caught.__context__, KeyError)
    assert caught.__suppress_context__ is True
    assert codes(caught.__traceback__)[-1] is split_bill.__code__


def wsgi_raises_early(raised: list[BaseException]) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        split_bill(raised)
        return []

    return app


def wsgi_raises_midway(raised: list[BaseException]) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first line\n"
        split_bill(raised)

    return app


WSGI_APPS = [
    pytest.param(wsgi_raises_early, id="before start_response"),
    pytest.param(wsgi_raises_midway, id="while iterating"),
]
RATES = [pytest.param(0.0, id="rate 0"), pytest.param(1.0, id="rate 1")]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("make_app", WSGI_APPS)
def test_wsgi_exception_intact(
    make_app: Callable[..., Any], rate: float, measured: dict[str, Any]
) -> None:
    """The server catches the app's exception object with cause, context and frames."""
    bare_raised: list[BaseException] = []
    raised: list[BaseException] = []
    bare = call_wsgi(make_app(bare_raised))

    result = call_wsgi(WsgiMiddleware(make_app(raised), **{**measured, "sample_rate": rate}))

    check_intact(result.error, raised)
    # The app's frames, from the app function inwards, are those of the bare run.
    app_frames = codes(bare.error.__traceback__)[1:] if bare.error else []
    assert codes(result.error.__traceback__)[-len(app_frames):] == app_frames


@pytest.mark.parametrize("make_app", WSGI_APPS)
def test_wsgi_exception_intact_engine_fails(
    make_app: Callable[..., Any], measured: dict[str, Any]
) -> None:
    """An engine that fails while the app's exception propagates does not touch it."""
    raised: list[BaseException] = []
    middleware = WsgiMiddleware(make_app(raised), **measured)
    engine = FaultyEngine("stop")
    middleware.core.engine = engine

    result = call_wsgi(middleware)

    assert engine.calls == 2  # opened, then failed to stop
    check_intact(result.error, raised)


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit])
@pytest.mark.parametrize("rate", RATES)
def test_wsgi_base_exception_intact(
    kind: type[BaseException], rate: float, measured: dict[str, Any]
) -> None:
    """An exception that is not an Exception subclass propagates as the same object."""
    raised = kind("stop now")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise raised

    with pytest.raises(kind) as caught:
        call_wsgi(WsgiMiddleware(app, **{**measured, "sample_rate": rate}))

    assert caught.value is raised


@pytest.mark.parametrize("rate", RATES)
def test_flask_exception_intact(rate: float, measured: dict[str, Any]) -> None:
    """A view's exception propagated by Flask reaches the server unchanged."""
    raised: list[BaseException] = []
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.get("/bill")
    def bill() -> str:
        split_bill(raised)
        return "split"

    init_app(app, **{**measured, "sample_rate": rate})

    result = call_wsgi(app, "/bill")

    check_intact(result.error, raised)


def asgi_raises(raised: list[BaseException]) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        split_bill(raised)

    return app


def asgi_raises_midway(raised: list[BaseException]) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        split_bill(raised)

    return app


def starlette_raises(raised: list[BaseException]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        split_bill(raised)
        return Response()

    return Starlette(routes=[Route("/", endpoint)])


ASGI_APPS = [
    pytest.param(asgi_raises, id="before the response"),
    pytest.param(asgi_raises_midway, id="while streaming"),
    pytest.param(starlette_raises, id="starlette endpoint"),
]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("make_app", ASGI_APPS)
def test_asgi_exception_intact(
    make_app: Callable[..., Any], rate: float, measured: dict[str, Any]
) -> None:
    """The server catches the app's exception object with cause, context and frames."""
    raised: list[BaseException] = []

    result = call_asgi(AsgiMiddleware(make_app(raised), **{**measured, "sample_rate": rate}))

    check_intact(result.error, raised)


@pytest.mark.parametrize("make_app", ASGI_APPS)
def test_asgi_exception_intact_engine_fails(
    make_app: Callable[..., Any], measured: dict[str, Any]
) -> None:
    """An engine that fails while the app's exception propagates does not touch it."""
    raised: list[BaseException] = []
    middleware = AsgiMiddleware(make_app(raised), **measured)
    middleware.core.engine = FaultyEngine("stop")

    result = call_asgi(middleware)

    check_intact(result.error, raised)


@pytest.mark.parametrize("rate", RATES)
def test_asgi_cancellation_intact(rate: float, measured: dict[str, Any]) -> None:
    """A cancelled request task propagates its CancelledError through the middleware."""

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(30)

    async def run() -> asyncio.Task[None]:
        middleware = AsgiMiddleware(slow, **{**measured, "sample_rate": rate})
        task = asyncio.create_task(middleware(http_scope(), receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return task

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    task = asyncio.run(run())

    assert task.cancelled()


class OddError(Exception):
    """An app exception whose status attributes raise when read, as lazy properties can."""

    @property
    def status_code(self) -> int:
        raise LookupError("status not loaded")

    @property
    def code(self) -> int:
        raise LookupError("code not loaded")


@pytest.mark.parametrize("rate", RATES)
def test_wsgi_odd_exception_intact(rate: float, measured: dict[str, Any]) -> None:
    """An exception whose attributes raise when read still reaches the server unchanged."""
    raised = OddError("odd")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise raised

    result = call_wsgi(WsgiMiddleware(app, **{**measured, "sample_rate": rate}))

    assert result.error is raised
    assert raised.__context__ is None


@pytest.mark.parametrize("rate", RATES)
def test_asgi_odd_exception_intact(rate: float, measured: dict[str, Any]) -> None:
    """An exception whose attributes raise when read still reaches the server unchanged."""
    raised = OddError("odd")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise raised

    result = call_asgi(AsgiMiddleware(app, **{**measured, "sample_rate": rate}))

    assert result.error is raised
    assert raised.__context__ is None


def test_wsgi_bad_status_error_from_server(measured: dict[str, Any]) -> None:
    """A status that is not a string fails in the server's start_response, as without
    leakware."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(None, [])
        return [b""]

    def strict_start_response(status: Any, headers: Any, exc_info: Any = None) -> Any:
        if not isinstance(status, str):
            raise TypeError("status must be a str")
        return None

    middleware = WsgiMiddleware(app, **measured)

    with pytest.raises(TypeError) as bare:
        app(wsgi_environ(), strict_start_response)
    with pytest.raises(TypeError) as wrapped:
        middleware(wsgi_environ(), strict_start_response)

    assert wrapped.value.args == bare.value.args == ("status must be a str",)

