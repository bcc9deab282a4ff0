"""WSGI responses are the same with and without leakware: status, headers and body byte for
byte, at sample rate 0 and 1, in process and through real servers on loopback."""

from __future__ import annotations

import os
import socket
import sys
import threading
import wsgiref.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events

from conformance.harness import (
    call_wsgi,
    raw_exchange,
    read_until,
    werkzeug_server,
    wsgi_environ,
    wsgiref_server,
)
from leakware.wsgi import LeakwareMiddleware

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def plain(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("X-Shop", "1")])
    return [b"plain body\n"]


def streaming(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (f"chunk {number}\n".encode() for number in range(5))


def generator_app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    # A generator app calls start_response only when the server requests the first chunk.
    start_response("200 OK", [("Content-Type", "text/csv")])
    yield b"id,name\n"
    yield b"1,teapot\n"


def file_download(environ: Environ, start_response: StartResponse) -> Any:
    handle = open(__file__, "rb")  # noqa: SIM115 - the server closes it through the wrapper
    size = os.fstat(handle.fileno()).st_size
    start_response("200 OK", [("Content-Type", "text/x-python"), ("Content-Length", str(size))])
    file_wrapper = environ.get("wsgi.file_wrapper", wsgiref.util.FileWrapper)
    return file_wrapper(handle, 4096)


def no_content(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("204 No Content", [("X-Deleted", "cart")])
    return []


def not_modified(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("304 Not Modified", [("ETag", '"v7"'), ("Cache-Control", "max-age=60")])
    return []


LARGE_CHUNK = bytes(range(256)) * 256  # 64 KiB
LARGE_CHUNKS = 128  # 8 MiB in all


def large(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    length = len(LARGE_CHUNK) * LARGE_CHUNKS
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(length))]
    )
    return (LARGE_CHUNK for _ in range(LARGE_CHUNKS))


def raises_midway(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"part one\n"
    yield b"part two\n"
    raise RuntimeError("the stream broke")


def raises_early(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise LookupError("no such basket")


def with_exc_info(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise KeyError("basket")
    except KeyError:
        start_response("500 Internal Server Error", [("X-Error", "basket")], sys.exc_info())
    return [b"basket failed\n"]


def legacy_write(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written, ")
    return [b"then returned\n"]


def echo(environ: Environ, start_response: StartResponse) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length)
    start_response("201 Created", [("Content-Type", "application/json")])
    return [data]


#: (app, request method, request body)
Case = tuple[Callable[..., Any], str, bytes | None]

CASES = [
    pytest.param((plain, "GET", None), id="plain"),
    pytest.param((streaming, "GET", None), id="streaming"),
    pytest.param((generator_app, "GET", None), id="generator app"),
    pytest.param((file_download, "GET", None), id="file wrapper"),
    pytest.param((plain, "HEAD", None), id="HEAD"),
    pytest.param((no_content, "DELETE", None), id="204"),
    pytest.param((not_modified, "GET", None), id="304"),
    pytest.param((large, "GET", None), id="large body"),
    pytest.param((raises_midway, "GET", None), id="raises midway"),
    pytest.param((raises_early, "GET", None), id="raises before start_response"),
    pytest.param((with_exc_info, "GET", None), id="start_response with exc_info"),
    pytest.param((legacy_write, "GET", None), id="write callable"),
    pytest.param((echo, "POST", b'{"sku": "T-1"}'), id="request body"),
]

RATES = [pytest.param(0.0, id="rate 0"), pytest.param(1.0, id="rate 1")]


def _samples(log_file: Path) -> list[dict[str, Any]]:
    return read_events(log_file, "leakware.sample")


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("case", CASES)
def test_wsgi_response_in_process(
    case: Case, rate: float, measured: dict[str, Any], log_file: Path
) -> None:
    """The server receives the same status, headers, body and exception as from the bare app."""
    app, method, data = case
    bare = call_wsgi(app, "/cart/7", method, data=data)
    wrapped = call_wsgi(
        LeakwareMiddleware(app, **{**measured, "sample_rate": rate}), "/cart/7", method, data=data
    )

    assert wrapped.comparable() == bare.comparable()
    assert len(_samples(log_file)) == (1 if rate else 0)


@pytest.mark.server
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "serve",
    [pytest.param(werkzeug_server, id="werkzeug"), pytest.param(wsgiref_server, id="wsgiref")],
)
def test_wsgi_response_on_server(
    serve: Callable[..., Any], case: Case, rate: float, measured: dict[str, Any], log_file: Path
) -> None:
    """A real server sends the same bytes to the client with and without leakware."""
    app, method, data = case
    wrapped_app = LeakwareMiddleware(app, **{**measured, "sample_rate": rate})
    with serve(app) as port:
        bare = raw_exchange(port, method, "/cart/7", body=data or b"")
    with serve(wrapped_app) as port:
        wrapped = raw_exchange(port, method, "/cart/7", body=data or b"")

    assert wrapped == bare
    assert len(_samples(log_file)) == (1 if rate else 0)


@pytest.mark.parametrize("rate", RATES)
def test_file_wrapper_returned_untouched(rate: float, measured: dict[str, Any]) -> None:
    """The server gets its own file wrapper back, so it can still send the file with sendfile."""
    middleware = LeakwareMiddleware(file_download, **{**measured, "sample_rate": rate})

    response = middleware(wsgi_environ(), lambda status, headers, exc_info=None: None)
    try:
        assert type(response) is wsgiref.util.FileWrapper
    finally:
        response.close()


@pytest.mark.server
@pytest.mark.parametrize(
    "serve",
    [pytest.param(werkzeug_server, id="werkzeug"), pytest.param(wsgiref_server, id="wsgiref")],
)
def test_wsgi_stream_incremental(serve: Callable[..., Any], measured: dict[str, Any]) -> None:
    """The first chunk reaches the client before the app produces the last one."""
    gate = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first chunk\n"
        yield b"last chunk\n" if gate.wait(timeout=5) else b"first chunk was held back\n"

    with (
        serve(LeakwareMiddleware(app, **measured)) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        sock.sendall(b"GET /feed HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        received = read_until(sock, b"first chunk", timeout=3)
        gate.set()
        while chunk := sock.recv(65536):
            received += chunk

    assert b"last chunk\n" in received
    assert b"held back" not in received
