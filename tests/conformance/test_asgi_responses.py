"""ASGI responses are the same with and without leakware, WebSocket and lifespan scopes pass
through untouched, and a client that leaves mid-stream ends the measurement cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from conformance.harness import (
    call_asgi,
    events_so_far,
    http_scope,
    raw_exchange,
    read_until,
    uvicorn_server,
    wait_for,
)
from leakware.asgi import LeakwareMiddleware

LARGE_BODY = bytes(range(256)) * 256 * 128  # 8 MiB


def make_shop() -> Starlette:
    """Build a fresh Starlette app; ``app.state.tasks`` lists the background tasks that ran."""

    async def plain(request: Request) -> Response:
        return PlainTextResponse("plain body\n", headers={"X-Shop": "1"})

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for number in range(5):
                yield f"chunk {number}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def background(request: Request) -> Response:
        task = BackgroundTask(request.app.state.tasks.append, "receipt mailed")
        return PlainTextResponse("order placed\n", background=task)

    async def deleted(request: Request) -> Response:
        return Response(status_code=204, headers={"X-Deleted": "cart"})

    async def unchanged(request: Request) -> Response:
        return Response(status_code=304, headers={"ETag": '"v7"'})

    async def large(request: Request) -> Response:
        return Response(LARGE_BODY, media_type="application/octet-stream")

    async def echo(request: Request) -> Response:
        return Response(await request.body(), status_code=201, media_type="application/json")

    async def crash(request: Request) -> Response:
        raise LookupError("no such basket")

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"echo: {text}")
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/plain", plain, methods=["GET", "HEAD"]),
            Route("/stream", stream),
            Route("/background", background),
            Route("/deleted", deleted, methods=["DELETE"]),
            Route("/unchanged", unchanged),
            Route("/large", large),
            Route("/echo", echo, methods=["POST"]),
            Route("/crash", crash),
            WebSocketRoute("/chat", chat),
        ]
    )
    app.state.tasks = []
    return app


async def raw_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A framework-free app that streams its body in three messages."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for number in range(3):
        await send({"type": "http.response.body", "body": f"part {number}\n".encode(),
                    "more_body": number < 2})


#: (request method, path, request body)
Case = tuple[str, str, bytes]

CASES = [
    pytest.param(("GET", "/plain", b""), id="plain"),
    pytest.param(("HEAD", "/plain", b""), id="HEAD"),
    pytest.param(("GET", "/stream", b""), id="streaming"),
    pytest.param(("GET", "/background", b""), id="background task"),
    pytest.param(("DELETE", "/deleted", b""), id="204"),
    pytest.param(("GET", "/unchanged", b""), id="304"),
    pytest.param(("GET", "/large", b""), id="large body"),
    pytest.param(("POST", "/echo", b'{"sku": "T-1"}'), id="request body"),
    pytest.param(("GET", "/crash", b""), id="app raises"),
    pytest.param(("GET", "/missing", b""), id="404"),
]

RATES = [pytest.param(0.0, id="rate 0"), pytest.param(1.0, id="rate 1")]


def _samples(log_file: Path) -> list[dict[str, Any]]:
    return events_so_far(log_file, "leakware.sample")


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("case", CASES)
def test_asgi_response_in_process(
    case: Case, rate: float, measured: dict[str, Any], log_file: Path
) -> None:
    """The server receives the same messages and exception as from the bare app."""
    method, path, body = case
    bare_app = make_shop()
    wrapped_app = make_shop()
    middleware = LeakwareMiddleware(wrapped_app, **{**measured, "sample_rate": rate})

    bare = call_asgi(bare_app, http_scope(path, method), body)
    wrapped = call_asgi(middleware, http_scope(path, method), body)

    assert wrapped.comparable() == bare.comparable()
    assert wrapped_app.state.tasks == bare_app.state.tasks
    assert len(_samples(log_file)) == (1 if rate else 0)


@pytest.mark.parametrize("rate", RATES)
def test_asgi_messages_passed_as_sent(rate: float, measured: dict[str, Any]) -> None:
    """Each message reaches the server as the very object the app sent, in order."""
    sent: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for message in (
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": b"a", "more_body": True},
            {"type": "http.response.body", "body": b"b"},
        ):
            sent.append(message)
            await send(message)

    result = call_asgi(LeakwareMiddleware(app, **{**measured, "sample_rate": rate}))

    assert len(result.messages) == len(sent) == 3
    assert all(got is made for got, made in zip(result.messages, sent, strict=True))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three uvicorn servers on loopback: the bare app, and the app under leakware at sample
    rate 0 and at sample rate 1."""
    log_file = tmp_path_factory.mktemp("asgi") / "leakware.jsonl"
    measured = {"warmup_requests": 0, "log_file": str(log_file)}
    shops = {"bare": make_shop(), "rate 0": make_shop(), "rate 1": make_shop()}
    unsampled_app = LeakwareMiddleware(shops["rate 0"], sample_rate=0.0, **measured)
    sampled_app = LeakwareMiddleware(shops["rate 1"], sample_rate=1.0, **measured)
    with (
        uvicorn_server(shops["bare"]) as bare,
        uvicorn_server(unsampled_app) as unsampled,
        uvicorn_server(sampled_app) as sampled,
    ):
        yield {
            "ports": {"bare": bare, "rate 0": unsampled, "rate 1": sampled},
            "shops": shops,
            "log_file": log_file,
        }


@pytest.mark.server
@pytest.mark.parametrize("rate", ["rate 0", "rate 1"])
@pytest.mark.parametrize("case", CASES)
def test_asgi_response_on_uvicorn(case: Case, rate: str, servers: dict[str, Any]) -> None:
    """uvicorn sends the same bytes to the client with and without leakware."""
    method, path, body = case
    before = len(_samples(servers["log_file"]))

    expected = before + (1 if rate == "rate 1" else 0)

    bare = raw_exchange(servers["ports"]["bare"], method, path, body=body)
    wrapped = raw_exchange(servers["ports"][rate], method, path, body=body)
    wait_for(lambda: len(_samples(servers["log_file"])) >= expected)

    assert wrapped == bare
    assert len(_samples(servers["log_file"])) == expected


@pytest.mark.server
def test_asgi_background_task_runs(servers: dict[str, Any]) -> None:
    """A background task runs after the response, and its request is measured."""
    log_file = servers["log_file"]
    app = servers["shops"]["rate 1"]
    app.state.tasks.clear()
    before = len(_samples(log_file))

    raw_exchange(servers["ports"]["rate 1"], "GET", "/background")
    wait_for(lambda: len(_samples(log_file)) > before)
    samples = _samples(log_file)[before:]

    assert app.state.tasks == ["receipt mailed"]
    assert [sample["route"] for sample in samples] == ["/background"]


@pytest.mark.server
def test_asgi_stream_incremental(measured: dict[str, Any]) -> None:
    """The first chunk reaches the client before the app produces the last one."""
    gate = threading.Event()

    async def feed(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk\n"
            released = await asyncio.to_thread(gate.wait, 5)
            yield b"last chunk\n" if released else b"first chunk was held back\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    app = LeakwareMiddleware(Starlette(routes=[Route("/feed", feed)]), **measured)
    with uvicorn_server(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /feed HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        received = read_until(sock, b"first chunk", timeout=3)
        gate.set()
        while chunk := sock.recv(65536):
            received += chunk

    assert b"last chunk\n" in received
    assert b"held back" not in received


@pytest.mark.server
@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "leakware"])
def test_asgi_client_disconnect_midstream(
    wrap: bool, measured: dict[str, Any], log_file: Path
) -> None:
    """A client that leaves mid-stream ends the app's stream, and the next request is served
    and measured."""
    cleaned_up = threading.Event()

    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"tick\n"
                    await asyncio.sleep(0.01)
            finally:
                cleaned_up.set()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def plain(request: Request) -> Response:
        return PlainTextResponse("still serving\n")

    shop = Starlette(routes=[Route("/ticks", endless), Route("/plain", plain)])
    app = LeakwareMiddleware(shop, **measured) if wrap else shop
    with uvicorn_server(app) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /ticks HTTP/1.1\r\nHost: localhost\r\n\r\n")
            read_until(sock, b"tick", timeout=5)
        assert cleaned_up.wait(timeout=10), "the app's stream was never closed"
        after = raw_exchange(port, "GET", "/plain")
        wait_for(lambda: len(_samples(log_file)) >= 2, timeout=5 if wrap else 0)

    assert after.startswith(b"HTTP/1.1 200 OK")
    assert after.endswith(b"still serving\n")
    if wrap:
        assert [sample["route"] for sample in _samples(log_file)] == ["/ticks", "/plain"]
        assert app.core.busy_skips == 0
        assert read_events(log_file, "leakware.error") == []


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
def test_non_http_scope_untouched(scope_type: str, measured: dict[str, Any]) -> None:
    """A WebSocket or lifespan scope reaches the app as the same objects, unchanged."""
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": f"{scope_type}.connect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    scope: dict[str, Any] = {"type": scope_type, "asgi": {"version": "3.0"}, "state": {}}
    if scope_type == "websocket":
        scope.update(path="/chat", raw_path=b"/chat", headers=[], query_string=b"")
    original = copy.deepcopy(scope)

    asyncio.run(LeakwareMiddleware(app, **measured)(scope, receive, send))

    assert len(seen) == 1
    assert seen[0][0] is scope
    assert seen[0][1] is receive
    assert seen[0][2] is send
    assert scope == original


def test_websocket_through_middleware(measured: dict[str, Any], log_file: Path) -> None:
    """A WebSocket conversation works through the middleware and is never sampled."""
    with (
        TestClient(LeakwareMiddleware(make_shop(), **measured)) as client,
        client.websocket_connect("/chat") as websocket,
    ):
        websocket.send_text("hello")
        reply = websocket.receive_text()

    assert reply == "echo: hello"
    assert _samples(log_file) == []


def test_lifespan_through_middleware(measured: dict[str, Any], log_file: Path) -> None:
    """Startup and shutdown handlers run through the middleware and are never sampled."""
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    shop = Starlette(lifespan=lifespan)
    with TestClient(LeakwareMiddleware(shop, **measured)):
        assert events == ["startup"]

    assert events == ["startup", "shutdown"]
    assert _samples(log_file) == []
