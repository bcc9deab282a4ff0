"""An app wrapped by leakware twice is measured once per request, because the inner middleware
finds the outer one's mark and passes the request straight through."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from helpers import read_events
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from conformance.harness import call_asgi, call_wsgi, http_scope
from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
from leakware.flask import init_app
from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware

REQUESTS = 5


def orders(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"orders"]


def _samples(log_file: Path) -> list[dict[str, Any]]:
    return read_events(log_file, "leakware.sample")


def test_wsgi_wrapped_twice(measured: dict[str, Any], log_file: Path) -> None:
    """Two nested WSGI middlewares write one sample per request, from the outer one."""
    inner = WsgiMiddleware(orders, **measured)
    outer = WsgiMiddleware(inner, **measured)

    bodies = [call_wsgi(outer, f"/orders/{n}").body for n in range(REQUESTS)]

    assert bodies == [b"orders"] * REQUESTS
    assert len(_samples(log_file)) == REQUESTS
    assert (outer.core.samples, inner.core.samples) == (REQUESTS, 0)
    assert inner.core.busy_skips == 0


def test_wsgi_outer_unsampled(measured: dict[str, Any], log_file: Path) -> None:
    """When the outer middleware decides not to sample, the inner one does not measure."""
    inner = WsgiMiddleware(orders, **measured)
    outer = WsgiMiddleware(inner, **{**measured, "sample_rate": 0.0})

    for number in range(REQUESTS):
        call_wsgi(outer, f"/orders/{number}")

    assert _samples(log_file) == []
    assert inner.core.busy_skips == 0


def test_flask_init_app_and_wsgi(measured: dict[str, Any], log_file: Path) -> None:
    """init_app plus a WSGI middleware around the Flask app measure each request once."""
    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    hooked = init_app(app, **measured)
    outer = WsgiMiddleware(app, **measured)

    bodies = [call_wsgi(outer, f"/users/{n}").body for n in range(REQUESTS)]

    assert bodies == [f"user {n}".encode() for n in range(REQUESTS)]
    assert [s["route"] for s in _samples(log_file)] == ["/users/<int:user_id>"] * REQUESTS
    assert (hooked.core.samples, hooked.core.busy_skips) == (0, 0)


def test_flask_init_app_twice(measured: dict[str, Any], log_file: Path) -> None:
    """Calling init_app twice on one app still measures each request once."""
    app = Flask(__name__)

    @app.get("/health")
    def health() -> str:
        return "ok"

    first = init_app(app, **measured)
    second = init_app(app, **measured)

    for _ in range(REQUESTS):
        assert call_wsgi(app, "/health").body == b"ok"

    assert len(_samples(log_file)) == REQUESTS
    assert first.core.busy_skips == second.core.busy_skips == 0


@pytest.mark.parametrize("outer_rate", [0.0, 1.0], ids=["outer rate 0", "outer rate 1"])
def test_asgi_wrapped_twice(outer_rate: float, measured: dict[str, Any], log_file: Path) -> None:
    """Two nested ASGI middlewares measure each request at most once, from the outer one."""

    async def item(request: Request) -> Response:
        return PlainTextResponse(f"item {request.path_params['item_id']}")

    inner = AsgiMiddleware(Starlette(routes=[Route("/items/{item_id}", item)]), **measured)
    outer = AsgiMiddleware(inner, **{**measured, "sample_rate": outer_rate})

    bodies = [
        call_asgi(outer, http_scope(f"/items/{n}")).messages[1]["body"] for n in range(REQUESTS)
    ]

    assert bodies == [f"item {n}".encode() for n in range(REQUESTS)]
    expected = REQUESTS if outer_rate else 0
    assert [s["route"] for s in _samples(log_file)] == ["/items/{item_id}"] * expected
    assert (inner.core.samples, inner.core.busy_skips) == (0, 0)
