"""Traffic capture: what is recorded, what is dropped, and that replay reads it back."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import find_finding, free_port, leakware_env, read_events, server
from werkzeug.test import Client, EnvironBuilder

from leakware import capture
from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
from leakware.cli import main
from leakware.settings import SettingsError
from leakware.wsgi import LeakwareMiddleware

ECHO_APP = '''
"""Apps that respond with what they received, and append it to $RECORD_FILE if set."""

import json
import os


def _answer(method, path, query, body):
    seen = {"method": method, "path": path, "query": query, "body": body.decode("latin-1")}
    if os.environ.get("RECORD_FILE"):
        with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(seen) + "\\n")
    return json.dumps(seen).encode()


def wsgi_app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    answer = _answer(environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"],
                     body)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [answer]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = _answer(scope["method"], scope["path"], scope["query_string"].decode(), body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})


def _wrap():
    from leakware.asgi import LeakwareMiddleware as Asgi
    from leakware.wsgi import LeakwareMiddleware as Wsgi

    return Wsgi(wsgi_app), Asgi(asgi_app)


wsgi, asgi = _wrap()
'''

SECRETS = {
    "Authorization": "Bearer secret-token",
    "Cookie": "session=secret-cookie",
    "X-Api-Key": "secret-key",
    "Proxy-Authorization": "Basic c2VjcmV0",
}


@pytest.fixture
def echo_app(tmp_path: Path) -> Path:
    """A directory with the module ``echo_app``."""
    (tmp_path / "echo_app.py").write_text(ECHO_APP, encoding="utf-8")
    return tmp_path


def _captured(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _send(port: int, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
    headers = {**SECRETS, "X-Trace": "trace-1"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _server_round_trip(
    command: list[str], port: int, echo_app: Path, tmp_path: Path, spec: str
) -> None:
    capture_file = tmp_path / "capture.jsonl"
    env = leakware_env(tmp_path / "events.jsonl", capture_file=str(capture_file),
                       sample_rate="0")
    env["PYTHONPATH"] = os.pathsep.join([str(echo_app), env["PYTHONPATH"]])
    with server(command, port, env, ready_path="/ready"):
        got = _send(port, "GET", "/items/7?color=red&size=2")
        posted = _send(port, "POST", "/orders", b'{"items": [1, 2]}')

    # The app saw exactly what was sent.
    assert got == {"method": "GET", "path": "/items/7", "query": "color=red&size=2", "body": ""}
    assert posted["body"] == '{"items": [1, 2]}'

    ready, item, order = _captured(capture_file)
    assert ready["path"] == "/ready"
    assert (item["method"], item["path"], item["query"]) == ("GET", "/items/7", "color=red&size=2")
    assert "body" not in item
    assert (order["method"], order["path"], order["body"]) == ("POST", "/orders",
                                                               '{"items": [1, 2]}')
    for record in (item, order):
        headers = dict(record["headers"])
        assert headers["x-trace"] == "trace-1"
        assert not {name.lower() for name in SECRETS} & set(headers)
        assert "content-length" not in headers
    assert "secret" not in capture_file.read_text()

    # Replaying the capture sends the same requests again, through the same app.
    record_file = tmp_path / "replayed.jsonl"
    os.environ["RECORD_FILE"] = str(record_file)
    out = io.StringIO()
    try:
        code = main(["replay", spec, "--traffic", str(capture_file), "--format", "json"],
                    stdout=out)
    finally:
        del os.environ["RECORD_FILE"]
    assert code == 0
    report = json.loads(out.getvalue())
    replayed = _captured(record_file)
    assert [entry["path"] for entry in replayed] == ["/ready", "/items/7", "/orders"]
    assert replayed[1]["query"] == "color=red&size=2"
    assert replayed[2]["body"] == '{"items": [1, 2]}'
    assert find_finding(report, "/orders", method="POST")["samples"] == 1
    assert report["replay"]["statuses"] == {"200": 3}


@pytest.mark.server
def test_capture_round_trip_gunicorn(
    echo_app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests captured under gunicorn replay to the same WSGI app with the same content."""
    monkeypatch.chdir(echo_app)
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind",
               f"127.0.0.1:{port}", "--log-level", "warning", "echo_app:wsgi"]
    _server_round_trip(command, port, echo_app, tmp_path, "echo_app:wsgi_app")


@pytest.mark.server
def test_capture_round_trip_uvicorn(
    echo_app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests captured under uvicorn replay to the same ASGI app; lifespan is not captured."""
    monkeypatch.chdir(echo_app)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "echo_app:asgi", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    _server_round_trip(command, port, echo_app, tmp_path, "echo_app:asgi_app")


# -- in-process details ---------------------------------------------------------------------


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(len(body)).encode()]


def _quiet(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def capture_file(tmp_path: Path) -> Path:
    """A capture file path."""
    return tmp_path / "capture.jsonl"


def _call(app: Any, path: str, headers: dict[str, str]) -> list[bytes]:
    # werkzeug's test Client replaces a Cookie header with its cookie jar, so the environ is
    # built directly.
    environ = EnvironBuilder(path=path, headers=headers).get_environ()
    response = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return list(response)
    finally:
        getattr(response, "close", lambda: None)()


def _middleware(app: Any, log_file: Path, capture_file: Path, **options: Any) -> Any:
    options.setdefault("sample_rate", 0.0)
    return LeakwareMiddleware(app, log_file=str(log_file), capture_file=str(capture_file),
                              **options)


def test_capture_keeps_listed_headers(log_file: Path, capture_file: Path) -> None:
    """A sensitive header named in ``capture_keep_headers`` is kept; the others are dropped."""
    middleware = _middleware(_quiet, log_file, capture_file,
                             capture_keep_headers=("Authorization",))
    assert _call(middleware, "/", SECRETS) == [b"ok"]

    (record,) = _captured(capture_file)
    headers = dict(record["headers"])
    assert headers["authorization"] == "Bearer secret-token"
    assert "cookie" not in headers
    assert "x-api-key" not in headers
    assert "proxy-authorization" not in headers


def test_capture_keep_headers_from_env(
    log_file: Path, capture_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LEAKWARE_CAPTURE_FILE`` and ``LEAKWARE_CAPTURE_KEEP_HEADERS`` turn capture on."""
    monkeypatch.setenv("LEAKWARE_CAPTURE_FILE", str(capture_file))
    monkeypatch.setenv("LEAKWARE_CAPTURE_KEEP_HEADERS", "cookie, X-Api-Key")
    middleware = LeakwareMiddleware(_quiet, log_file=str(log_file), sample_rate=0.0)
    assert _call(middleware, "/", SECRETS) == [b"ok"]

    (record,) = _captured(capture_file)
    assert set(dict(record["headers"])) >= {"cookie", "x-api-key"}
    assert "authorization" not in dict(record["headers"])


def test_capture_body_truncated(log_file: Path, capture_file: Path) -> None:
    """A body beyond the bound is cut in the capture and reaches the app whole."""
    body = bytes(range(256)) * 400
    middleware = _middleware(_echo, log_file, capture_file)
    response = Client(middleware).post("/upload", data=body)

    assert response.get_data() == str(len(body)).encode()
    (record,) = _captured(capture_file)
    assert record["body_truncated"] is True
    assert "body" not in record
    assert base64.b64decode(record["body_base64"]) == body[: capture.MAX_BODY_BYTES]


class _SpyInput(io.BytesIO):
    """A ``wsgi.input`` that counts the calls that read from it."""

    reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def test_capture_reads_nothing_unread(log_file: Path, capture_file: Path) -> None:
    """When the app does not read the body, capture does not read it either."""
    spy = _SpyInput(b"unread body")
    environ = EnvironBuilder(path="/ping", method="POST", data=b"unread body").get_environ()
    environ["wsgi.input"] = spy
    middleware = _middleware(_quiet, log_file, capture_file)

    response = middleware(environ, lambda status, headers, exc_info=None: None)
    assert list(response) == [b"ok"]
    assert spy.reads == 0
    (record,) = _captured(capture_file)
    assert "body" not in record


def test_capture_seek_not_doubled(log_file: Path, capture_file: Path) -> None:
    """A body read twice after a seek is captured once."""

    def twice(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        first = stream.read()
        stream.seek(0)
        second = stream.read()
        start_response("200 OK", [])
        return [first + second]

    environ = EnvironBuilder(path="/", method="POST", data=b"abc").get_environ()
    environ["wsgi.input"] = io.BytesIO(b"abc")
    middleware = _middleware(twice, log_file, capture_file)

    assert list(middleware(environ, lambda *args: None)) == [b"abcabc"]
    (record,) = _captured(capture_file)
    assert record["body"] == "abc"


def test_capture_readline_iteration(log_file: Path, capture_file: Path) -> None:
    """Lines read by iterating over ``wsgi.input`` are captured in order."""

    def lines(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        count = sum(1 for _ in environ["wsgi.input"])
        start_response("200 OK", [])
        return [str(count).encode()]

    middleware = _middleware(lines, log_file, capture_file)
    response = Client(middleware).post("/", data=b"one\ntwo\nthree\n")

    assert response.get_data() == b"3"
    assert _captured(capture_file)[0]["body"] == "one\ntwo\nthree\n"


def test_capture_asgi_body_chunks(log_file: Path, capture_file: Path) -> None:
    """An ASGI body that arrives in chunks is captured whole; the app gets every message."""
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        more = True
        while more:
            message = await receive()
            received.append(message)
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    messages = [
        {"type": "http.request", "body": b"\xff\x00", "more_body": True},
        {"type": "http.request", "body": b"tail", "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "PATCH", "path": "/files/a b", "raw_path": b"/files/a%20b",
             "query_string": b"v=1", "headers": [(b"host", b"files.test"), (b"cookie", b"x=1")]}
    middleware = AsgiMiddleware(app, log_file=str(log_file), capture_file=str(capture_file),
                                sample_rate=0.0)
    asyncio.run(middleware(scope, receive, send))

    assert [message["body"] for message in received] == [b"\xff\x00", b"tail"]
    assert sent[0]["status"] == 204
    (record,) = _captured(capture_file)
    assert record["method"] == "PATCH"
    assert record["path"] == "/files/a%20b"
    assert record["query"] == "v=1"
    assert record["headers"] == [["host", "files.test"]]
    assert base64.b64decode(record["body_base64"]) == b"\xff\x00tail"


def test_capture_fault_stays_inside(
    log_file: Path, capture_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing write is one error event and turns capture off; responses do not change."""

    def failing_write(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(capture.CaptureFile, "write", failing_write)
    middleware = _middleware(_echo, log_file, capture_file)
    client = Client(middleware)

    assert client.post("/", data=b"abc").get_data() == b"3"
    assert client.post("/", data=b"abcd").get_data() == b"4"
    (error,) = read_events(log_file, "leakware.error")
    assert error["where"] == "capture.write"
    assert error["error"] == "OSError"
    assert error["disabled"] == "capture"
    assert "disk full" not in log_file.read_text()


def test_capture_file_owner_only(log_file: Path, capture_file: Path) -> None:
    """The capture file is created readable and writable by its owner only."""
    _middleware(_quiet, log_file, capture_file)

    assert stat.S_IMODE(capture_file.stat().st_mode) == 0o600


def test_capture_off_by_default(log_file: Path) -> None:
    """Without a capture file, or with leakware disabled, the app is not wrapped."""
    assert LeakwareMiddleware(_quiet, log_file=str(log_file)).app is _quiet
    disabled = LeakwareMiddleware(_quiet, log_file=str(log_file), enabled=False,
                                  capture_file=str(log_file.parent / "c.jsonl"))
    assert disabled.app is _quiet
    assert not (log_file.parent / "c.jsonl").exists()


def test_capture_file_invalid(log_file: Path, tmp_path: Path) -> None:
    """A capture file that cannot be opened fails at start-up, naming the setting."""
    missing = tmp_path / "no" / "such" / "dir.jsonl"
    with pytest.raises(SettingsError, match=r"LEAKWARE_CAPTURE_FILE=.*cannot open it"):
        LeakwareMiddleware(_quiet, log_file=str(log_file), capture_file=str(missing))


def test_capture_stops_when_full(
    log_file: Path, capture_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Capture stops adding lines once the file reaches its size bound."""
    monkeypatch.setattr(capture, "MAX_FILE_BYTES", 400)
    middleware = _middleware(_quiet, log_file, capture_file)
    client = Client(middleware)
    for number in range(20):
        client.get(f"/items/{number}")

    lines = _captured(capture_file)
    assert 0 < len(lines) < 20
    assert capture_file.stat().st_size <= 400
    assert middleware.app.capture.full is True


def test_capture_not_retained(log_file: Path, capture_file: Path, tmp_path: Path) -> None:
    """Capturing a measured request adds nothing to what the request retains."""
    retained = {}
    for name, path in (("plain", None), ("capture", capture_file)):
        events = tmp_path / f"events-{name}.jsonl"
        middleware = LeakwareMiddleware(
            _echo, log_file=str(events), capture_file=None if path is None else str(path),
            sample_rate=1.0, warmup_requests=0, confirm_interval=60.0,
        )
        client = Client(middleware)
        for number in range(8):
            client.post(f"/orders/{number}", data=b'{"n": 1}', buffered=True)
        samples = read_events(events, "leakware.sample")
        retained[name] = [sample["retained_objects"] for sample in samples[-4:]]

    assert len(retained["capture"]) == 4
    assert retained["capture"] == retained["plain"]
    assert len(_captured(capture_file)) == 8
