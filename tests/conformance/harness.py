"""Drivers that call WSGI and ASGI apps the way servers do, real servers on loopback run in a
thread of the test process, and a raw HTTP client that returns every byte the server sent.

In-process drivers make byte-for-byte comparisons exact: they record what the app handed to the
server, including exceptions. The loopback servers check the same through a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import socket
import threading
import time
import wsgiref.simple_server
import wsgiref.util
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.test import EnvironBuilder

from leakware.retained import Retained
from leakware.settings import GUPPY_UNSAFE

Headers = Sequence[tuple[str, str]]


# -- WSGI in process --------------------------------------------------------------------------


@dataclasses.dataclass
class WsgiResult:
    """What a PEP 3333 server received from one call of an app."""

    status: str | None
    headers: list[tuple[str, str]] | None
    body: bytes
    error: BaseException | None

    def comparable(self) -> tuple[object, ...]:
        """Return the fields two runs must agree on; an exception compares by type and args."""
        error = None if self.error is None else (type(self.error), self.error.args)
        return (self.status, self.headers, self.body, error)


def wsgi_environ(
    path: str = "/", method: str = "GET", headers: Headers = (), data: bytes | None = None
) -> dict[str, Any]:
    """Build a WSGI environ that offers ``wsgi.file_wrapper``, as most production servers do."""
    environ: dict[str, Any] = EnvironBuilder(
        path=path, method=method, headers=list(headers), data=data
    ).get_environ()
    environ["wsgi.file_wrapper"] = wsgiref.util.FileWrapper
    return environ


def call_wsgi(
    app: Callable[..., Any],
    path: str = "/",
    method: str = "GET",
    *,
    headers: Headers = (),
    data: bytes | None = None,
    extra: dict[str, Any] | None = None,
) -> WsgiResult:
    """Run one request like a PEP 3333 server: iterate the response, then always close it.

    ``extra`` is merged into the environ. An exception from the app or from iteration is caught
    and returned in ``error``; the ``start_response`` rules about ``exc_info`` and headers
    already sent are enforced.
    """
    state: dict[str, Any] = {"sent": False}
    body: list[bytes] = []

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            if state["sent"]:
                raise exc_info[1].with_traceback(exc_info[2])
        elif "status" in state:
            raise AssertionError("start_response called a second time without exc_info")
        state["status"] = status
        state["headers"] = list(response_headers)
        return write

    def write(data: bytes) -> None:
        state["sent"] = True
        body.append(bytes(data))

    environ = wsgi_environ(path, method, headers, data)
    environ.update(extra or {})
    iterable = None
    error: BaseException | None = None
    try:
        iterable = app(environ, start_response)
        for chunk in iterable:
            state["sent"] = True
            body.append(bytes(chunk))
    except Exception as exc:
        error = exc
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return WsgiResult(state.get("status"), state.get("headers"), b"".join(body), error)


# -- ASGI in process --------------------------------------------------------------------------


@dataclasses.dataclass
class AsgiResult:
    """The messages an ASGI server received from one call of an app, and its exception."""

    messages: list[dict[str, Any]]
    error: BaseException | None

    def comparable(self) -> tuple[object, ...]:
        error = None if self.error is None else (type(self.error), self.error.args)
        return (self.messages, error)


def http_scope(path: str = "/", method: str = "GET", headers: Headers = ()) -> dict[str, Any]:
    """Build the scope that uvicorn would pass for a plain HTTP/1.1 request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def call_asgi(
    app: Callable[..., Awaitable[None]],
    scope: dict[str, Any] | None = None,
    body: bytes = b"",
) -> AsgiResult:
    """Run one HTTP request through ``app`` on a new event loop.

    ``receive`` returns the request body once, then waits until the response is complete and
    returns ``http.disconnect``, as servers do.
    """
    return asyncio.run(_call_asgi(app, scope or http_scope(), body))


async def _call_asgi(
    app: Callable[..., Awaitable[None]], scope: dict[str, Any], body: bytes
) -> AsgiResult:
    messages: list[dict[str, Any]] = []
    finished = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    error: BaseException | None = None
    try:
        await app(scope, receive, send)
    except Exception as exc:
        error = exc
    finally:
        finished.set()
    return AsgiResult(messages, error)


# -- servers on loopback ----------------------------------------------------------------------


class _QuietWerkzeugHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _QuietWsgirefHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def werkzeug_server(app: Callable[..., Any]) -> Iterator[int]:
    """Serve ``app`` with werkzeug's threaded server on a loopback port; yield the port."""
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=_QuietWerkzeugHandler
    )
    with _serving(server.serve_forever, server.shutdown, server.server_close):
        yield server.server_port


@contextlib.contextmanager
def wsgiref_server(app: Callable[..., Any]) -> Iterator[int]:
    """Serve ``app`` with the standard library's single-threaded wsgiref server."""
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, app, handler_class=_QuietWsgirefHandler
    )
    with _serving(server.serve_forever, server.shutdown, server.server_close):
        yield server.server_port


@contextlib.contextmanager
def _serving(
    serve: Callable[..., None], shutdown: Callable[[], None], close: Callable[[], None]
) -> Iterator[None]:
    thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        shutdown()
        close()
        thread.join(timeout=10)


@contextlib.contextmanager
def uvicorn_server(app: Callable[..., Awaitable[None]], **config: Any) -> Iterator[int]:
    """Serve ``app`` with uvicorn in a thread on a loopback port; yield the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "critical", "lifespan": "off", **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start within 20 s")
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


_DATE = re.compile(rb"(?im)^date: [^\r\n]*\r\n")


def raw_exchange(
    port: int, method: str = "GET", path: str = "/", headers: Headers = (), body: bytes = b""
) -> bytes:
    """Send one HTTP/1.1 request with ``Connection: close``; return every byte the server sent
    until it closed the connection, minus the ``Date`` header, which changes every second."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return _DATE.sub(b"", bytes(received))


def read_until(sock: socket.socket, marker: bytes, timeout: float) -> bytes:
    """Read from ``sock`` until ``marker`` arrives; fail if it takes longer than ``timeout``."""
    sock.settimeout(timeout)
    received = bytearray()
    while marker not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r} arrived")
        received += chunk
    return bytes(received)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return its last value.

    A server can send the whole response before the app call returns (background tasks run
    after it), so what leakware does at the end of a request may lag behind the client.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def events_so_far(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """Parse the complete lines leakware has written to ``path`` so far.

    A server thread may be writing while the test reads, so a last line without its newline is
    left for the next read.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]
    records = [json.loads(line) for line in lines if line.strip()]
    return [record for record in records if event is None or record.get("event") == event]


# -- fault injection --------------------------------------------------------------------------


class EngineFault(RuntimeError):
    """Raised by `FaultyEngine`; its message must never reach a log."""


class FaultyEngine:
    """A snapshot engine that raises on every call of one kind: ``open``, ``stop`` (the window
    ends) or ``summarise`` (the snapshot is summarised after the window ended). With
    ``malformed`` nothing raises, but the summary lists a type that is not a `TypeStat`, as a
    buggy engine might.

    ``calls`` counts the calls that reached it, to show that a failing part is switched off
    instead of being retried on every request.
    """

    name = "faulty"
    blind_spots = ()

    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on
        self.calls = 0

    def open(self) -> FaultyWindow:
        self._call("open")
        return FaultyWindow(self)

    def _call(self, kind: str) -> None:
        self.calls += 1
        if kind == self.fail_on:
            raise EngineFault(f"{kind} failed near secret-heap-contents")


class FaultyWindow:
    """A window of `FaultyEngine`; it is also its own snapshot."""

    def __init__(self, engine: FaultyEngine) -> None:
        self.engine = engine

    def stop(self) -> FaultyWindow:
        self.engine._call("stop")
        return self

    def summarise(self, transient: list[object]) -> Any:
        self.engine._call("summarise")
        if self.engine.fail_on == "malformed":
            return Retained(objects=1, types=[("dict", 1, 64)])
        return Retained()

    def abort(self) -> None:
        self.engine.calls += 1


class CountingEngine:
    """Wraps a real engine and records how many of its windows were open at the same time."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name
        self.blind_spots = engine.blind_spots
        self.opened = 0
        self.open_now = 0
        self.max_open = 0
        self._lock = threading.Lock()

    def open(self) -> CountingWindow:
        window = self.engine.open()
        with self._lock:
            self.opened += 1
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
        return CountingWindow(self, window)

    def closed(self) -> None:
        with self._lock:
            self.open_now -= 1


class CountingWindow:
    """A window of `CountingEngine`, delegating to the real engine's window."""

    def __init__(self, engine: CountingEngine, window: Any) -> None:
        self.engine = engine
        self.window = window

    def stop(self) -> Any:
        try:
            return self.window.stop()
        finally:
            self.engine.closed()

    def abort(self) -> None:
        try:
            self.window.abort()
        finally:
            self.engine.closed()


#: guppy3 3.1.7 hangs or crashes CPython 3.12.1 inside its heap traversal once asyncio's
#: default executor has run in the process, with or without leakware, so leakware refuses the
#: guppy engine there.
GUPPY_SAFE = pytest.mark.skipif(
    GUPPY_UNSAFE, reason="leakware refuses the guppy engine on CPython 3.12.0 and 3.12.1"
)
