"""Adapters: each framework's requests become samples with the route template, method, status
and exception type, including exceptions that the framework turned into responses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, abort
from helpers import read_events
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from werkzeug.test import Client

from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
from leakware.flask import init_app
from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware


class OutOfStock(Exception):
    """Raised by the test apps' views."""


def _measured(log_file: Path) -> dict[str, Any]:
    return {"sample_rate": 1.0, "warmup_requests": 0, "log_file": str(log_file)}


def _samples(log_file: Path) -> list[dict[str, Any]]:
    return read_events(log_file, "leakware.sample")


# -- any WSGI app ---------------------------------------------------------------------------


def _orders(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/fail":
        raise OutOfStock("order 42 cannot be filled")
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"created"]


def test_wsgi_route_normalised(log_file: Path) -> None:
    """A bare WSGI app's route is its path with the id replaced."""
    client = Client(WsgiMiddleware(_orders, **_measured(log_file)))

    response = client.get("/orders/42?coupon=SPRING", buffered=True)
    sample = _samples(log_file)[0]

    assert response.status_code == 201
    assert (sample["method"], sample["route"], sample["status"]) == ("GET", "/orders/{id}", 201)
    assert sample["exception"] is None


def test_wsgi_exception_recorded(log_file: Path) -> None:
    """An exception that propagates is recorded by qualified name and re-raised unchanged."""
    client = Client(WsgiMiddleware(_orders, **_measured(log_file)))

    with pytest.raises(OutOfStock, match="order 42"):
        client.get("/fail", buffered=True)
    sample = _samples(log_file)[0]

    assert sample["exception"] == f"{__name__}.OutOfStock"
    assert sample["status"] == 500


def test_wsgi_disabled_passes_through(log_file: Path) -> None:
    """enabled=False calls the app and writes nothing."""
    client = Client(WsgiMiddleware(_orders, enabled=False, **_measured(log_file)))

    response = client.get("/orders/1", buffered=True)

    assert response.status_code == 201
    assert read_events(log_file) == []


def test_wsgi_rate_zero_no_samples(log_file: Path) -> None:
    """At sample rate 0 no request is measured."""
    options = {**_measured(log_file), "sample_rate": 0.0}
    client = Client(WsgiMiddleware(_orders, **options))

    for number in range(20):
        client.get(f"/orders/{number}", buffered=True)

    assert _samples(log_file) == []


# -- Flask ----------------------------------------------------------------------------------


def _flask_app(log_file: Path) -> Flask:
    app = Flask(__name__)

    @app.errorhandler(OutOfStock)
    def out_of_stock(exc: OutOfStock) -> tuple[str, int]:
        return "sold out", 409

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    @app.get("/stock/<sku>")
    def stock(sku: str) -> str:
        raise OutOfStock(f"sku {sku} is sold out")

    @app.get("/crash")
    def crash() -> str:
        raise ZeroDivisionError("boom")

    @app.get("/gone")
    def gone() -> str:
        abort(410)

    init_app(app, **_measured(log_file))
    return app


def test_flask_route_is_rule(log_file: Path) -> None:
    """Flask requests are named by their URL rule, never the path."""
    client = _flask_app(log_file).test_client()

    client.get("/users/7", buffered=True)
    client.get("/users/8", buffered=True)

    assert {s["route"] for s in _samples(log_file)} == {"/users/<int:user_id>"}


def test_flask_errorhandler_exception_recorded(log_file: Path) -> None:
    """An exception turned into a 409 by an errorhandler is still recorded."""
    client = _flask_app(log_file).test_client()

    response = client.get("/stock/ABC-1", buffered=True)
    sample = _samples(log_file)[0]

    assert response.status_code == 409
    assert sample["exception"] == f"{__name__}.OutOfStock"
    assert sample["status"] == 409
    assert sample["route"] == "/stock/<sku>"


def test_flask_unhandled_500_recorded(log_file: Path) -> None:
    """An unhandled exception that Flask turns into a 500 is recorded."""
    client = _flask_app(log_file).test_client()

    response = client.get("/crash", buffered=True)
    sample = _samples(log_file)[0]

    assert response.status_code == 500
    assert (sample["exception"], sample["status"]) == ("ZeroDivisionError", 500)


def test_flask_http_exception_recorded(log_file: Path) -> None:
    """abort() raises an HTTPException, recorded like any other exception."""
    client = _flask_app(log_file).test_client()

    client.get("/gone", buffered=True)

    assert _samples(log_file)[0]["exception"] == "werkzeug.exceptions.Gone"


def test_flask_unclosed_responses_measured(log_file: Path) -> None:
    """Responses that a test client never closes end their measurement when the same thread
    starts the next request, so every request but the last is sampled."""
    client = _flask_app(log_file).test_client()

    for number in range(5):
        assert client.get(f"/users/{number}").status_code == 200

    assert len(_samples(log_file)) == 4


def test_flask_unmatched_path(log_file: Path) -> None:
    """A path that matches no rule is reported as <unmatched>, not as the path."""
    client = _flask_app(log_file).test_client()

    client.get("/wp-admin/setup.php", buffered=True)
    sample = _samples(log_file)[0]

    assert sample["route"] == "<unmatched>"
    assert sample["status"] == 404


# -- Starlette and FastAPI ------------------------------------------------------------------


async def _item(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


async def _sold_out(request: Request) -> PlainTextResponse:
    raise OutOfStock("item 9 sold out")


async def _crash(request: Request) -> PlainTextResponse:
    raise ZeroDivisionError("boom")


async def _out_of_stock(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "sold out"}, status_code=409)


def _starlette_app(log_file: Path) -> Starlette:
    app = Starlette(
        routes=[
            Mount("/api", routes=[Route("/items/{item_id:int}", _item)]),
            Route("/sold-out", _sold_out),
            Route("/crash", _crash),
        ],
        exception_handlers={OutOfStock: _out_of_stock},
    )
    app.add_middleware(AsgiMiddleware, **_measured(log_file))
    return app


async def _get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path)


async def test_starlette_mount_template(log_file: Path) -> None:
    """A route under a Mount is named by the mount prefix and the route template."""
    app = _starlette_app(log_file)

    response = await _get(app, "/api/items/12")
    sample = _samples(log_file)[0]

    assert response.status_code == 200
    assert sample["route"] == "/api/items/{item_id:int}"


async def test_starlette_handler_exception_recorded(log_file: Path) -> None:
    """An exception that an exception handler turns into a 409 is recorded."""
    app = _starlette_app(log_file)

    response = await _get(app, "/sold-out")
    sample = _samples(log_file)[0]

    assert response.status_code == 409
    assert (sample["exception"], sample["status"]) == (f"{__name__}.OutOfStock", 409)


async def test_starlette_unhandled_exception_recorded(log_file: Path) -> None:
    """An unhandled exception is recorded on its way to the server error middleware."""
    app = _starlette_app(log_file)

    response = await _get(app, "/crash")
    sample = _samples(log_file)[0]

    assert response.status_code == 500
    assert (sample["exception"], sample["status"]) == ("ZeroDivisionError", 500)


async def test_starlette_unmatched_path(log_file: Path) -> None:
    """An unknown path is <unmatched>; the router's 404 is recorded as an HTTPException."""
    app = _starlette_app(log_file)

    response = await _get(app, "/.env")
    sample = _samples(log_file)[0]

    assert response.status_code == 404
    assert sample["route"] == "<unmatched>"
    assert sample["exception"] == "starlette.exceptions.HTTPException"


def _fastapi_app() -> Any:
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    @app.exception_handler(OutOfStock)
    async def out_of_stock(request: Request, exc: OutOfStock) -> JSONResponse:
        return JSONResponse({"error": "sold out"}, status_code=409)

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        if user_id == 0:
            raise HTTPException(status_code=404)
        return {"id": user_id}

    @app.get("/stock/{sku}")
    def stock(sku: str) -> dict[str, str]:
        raise OutOfStock(sku)

    @app.get("/limited")
    async def limited() -> JSONResponse:
        try:
            raise OutOfStock("all gone")
        except OutOfStock:
            return JSONResponse({"error": "try later"}, status_code=429)

    return app


async def test_fastapi_route_template(log_file: Path) -> None:
    """FastAPI routes are named by their path template."""
    app = _fastapi_app()
    app.add_middleware(AsgiMiddleware, **_measured(log_file))

    await _get(app, "/users/5")
    await _get(app, "/users/0")
    samples = _samples(log_file)

    assert [s["route"] for s in samples] == ["/users/{user_id}", "/users/{user_id}"]
    assert samples[1]["exception"] == "fastapi.exceptions.HTTPException"
    assert samples[1]["status"] == 404


async def test_fastapi_wrapped_app_handlers(log_file: Path) -> None:
    """Wrapping the whole FastAPI app still records exceptions its handlers turn into
    responses, and still finds route templates."""
    app = AsgiMiddleware(_fastapi_app(), **_measured(log_file))

    response = await _get(app, "/stock/X1")
    sample = _samples(log_file)[0]

    assert response.status_code == 409
    assert sample["route"] == "/stock/{sku}"
    assert sample["exception"] == f"{__name__}.OutOfStock"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring exists from 3.12 on")
async def test_fastapi_caught_exception_listed(log_file: Path) -> None:
    """An exception the view catches itself appears in handled_exceptions."""
    app = _fastapi_app()
    app.add_middleware(AsgiMiddleware, **_measured(log_file))

    response = await _get(app, "/limited")
    sample = _samples(log_file)[0]

    assert response.status_code == 429
    assert sample["exception"] is None
    assert sample["handled_exceptions"] == [f"{__name__}.OutOfStock"]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="before 3.12 nothing is recorded")
async def test_fastapi_caught_exception_unseen(log_file: Path) -> None:
    """Before 3.12, exceptions caught inside the view are not recorded."""
    app = _fastapi_app()
    app.add_middleware(AsgiMiddleware, **_measured(log_file))

    await _get(app, "/limited")

    assert _samples(log_file)[0]["handled_exceptions"] == []
