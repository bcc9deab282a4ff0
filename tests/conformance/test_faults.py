"""leakware's own faults never reach a request.

Each kind of fault is reported once as a ``leakware.error`` event that names the exception type
and where it happened, never its message. Repeats are counted, and the failing part is switched
off instead of being retried on every request.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route

from conformance.harness import GUPPY_SAFE, FaultyEngine, call_asgi, call_wsgi, http_scope
from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
from leakware.events import Emitter
from leakware.faults import _MAX_KINDS as MAX_KINDS
from leakware.faults import Faults
from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware

SECRET = "secret-heap-contents"
ENGINE_FAULT = "conformance.harness.EngineFault"
REQUESTS = 20


def orders(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Order", "1")])
    yield b"order "
    yield environ["PATH_INFO"].encode()


def served_correctly(app: Callable[..., Any]) -> None:
    """Assert that every one of `REQUESTS` requests gets the bare app's exact response."""
    for number in range(REQUESTS):
        path = f"/orders/{number}"
        assert call_wsgi(app, path).comparable() == call_wsgi(orders, path).comparable()


def error_lines(text: str) -> list[dict[str, Any]]:
    """Parse the ``leakware.error`` events among the lines of ``text``."""
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == "leakware.error"]


def check_reported_once(errors: list[dict[str, Any]], where: str, error: str) -> None:
    assert len(errors) == 1, errors
    assert (errors[0]["where"], errors[0]["error"]) == (where, error)
    assert isinstance(errors[0]["pid"], int)
    assert SECRET not in json.dumps(errors[0])


@pytest.mark.parametrize(
    ("fail_on", "where", "error", "calls"),
    [
        pytest.param("open", "engine.open", ENGINE_FAULT, 1, id="open"),
        pytest.param("stop", "engine.stop", ENGINE_FAULT, 2, id="stop"),
        pytest.param("summarise", "engine.summarise", ENGINE_FAULT, 3, id="summarise"),
        pytest.param("malformed", "core.finish", "AttributeError", 3, id="malformed summary"),
    ],
)
def test_engine_fault_reported_once(
    fail_on: str, where: str, error: str, calls: int, log_file: Path
) -> None:
    """A failing engine is called for one request only, then measuring is off."""
    middleware = WsgiMiddleware(orders, sample_rate=1.0, warmup_requests=0, log_file=str(log_file))
    engine = FaultyEngine(fail_on)
    middleware.core.engine = engine

    served_correctly(middleware)

    assert engine.calls == calls
    check_reported_once(read_events(log_file, "leakware.error"), where, error)
    assert read_events(log_file, "leakware.sample") == []
    assert middleware.core.faults.is_off("measure")


def test_asgi_engine_fault_reported_once(measured: dict[str, Any], log_file: Path) -> None:
    """The ASGI middleware serves every request when the engine raises, and reports it once."""

    async def hello(request: Request) -> Response:
        return PlainTextResponse(f"hello {request.path_params['name']}")

    bare = Starlette(routes=[Route("/hello/{name}", hello)])
    middleware = AsgiMiddleware(Starlette(routes=[Route("/hello/{name}", hello)]), **measured)
    engine = FaultyEngine("open")
    middleware.core.engine = engine

    for number in range(REQUESTS):
        scope = http_scope(f"/hello/n{number}")
        assert call_asgi(middleware, scope).comparable() == call_asgi(bare, scope).comparable()

    assert engine.calls == 1
    check_reported_once(read_events(log_file, "leakware.error"), "engine.open", ENGINE_FAULT)


def test_full_disk_reported_once(
    measured: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    """A log file on a full disk (/dev/full) is reported once on stderr and never written
    again."""
    middleware = WsgiMiddleware(orders, **{**measured, "log_file": "/dev/full"})

    served_correctly(middleware)
    middleware.core.close()

    check_reported_once(error_lines(capfd.readouterr().err), "events.emit", "OSError")
    assert middleware.core.samples == 1
    assert middleware.core.faults.is_off("measure")


def test_closed_stderr_sink(measured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Events bound for a closed stderr stream are dropped and requests are still served."""
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    middleware = WsgiMiddleware(orders, **{**measured, "log_file": None})

    served_correctly(middleware)
    middleware.core.close()

    assert middleware.core.faults.counts == {("events.emit", "ValueError"): 1}
    assert middleware.core.samples == 1


def test_broken_pipe_reported_once(
    measured: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A log pipe whose reader has gone is reported once on stderr and never written again."""
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    middleware = WsgiMiddleware(orders, **{**measured, "log_file": str(fifo)})
    os.close(reader)

    served_correctly(middleware)
    middleware.core.close()

    check_reported_once(error_lines(capfd.readouterr().err), "events.emit", "BrokenPipeError")
    assert middleware.core.samples == 1


def test_unwritable_descriptor_reported_once(
    measured: dict[str, Any], log_file: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A log file descriptor that stopped accepting writes (EBADF, as after a close) is
    reported once on stderr and never written again."""
    middleware = WsgiMiddleware(orders, **measured)
    descriptor = next(
        int(name)
        for name in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{name}") == str(log_file.resolve())
    )
    # A read-only descriptor in its place: writes fail with EBADF, and unlike a closed one its
    # number cannot be reused by a file opened later in the test process.
    read_only = os.open(os.devnull, os.O_RDONLY)
    os.dup2(read_only, descriptor)
    os.close(read_only)

    served_correctly(middleware)
    middleware.core.close()

    check_reported_once(error_lines(capfd.readouterr().err), "events.emit", "OSError")
    assert middleware.core.samples == 1
    assert log_file.read_text() == ""


@GUPPY_SAFE
@pytest.mark.parametrize("adapter", ["wsgi", "asgi"])
def test_guppy_unimportable(
    adapter: str, measured: dict[str, Any], log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LEAKWARE_ENGINE=guppy and guppy3 not importable, requests are served unmeasured and
    the import failure is reported once."""
    monkeypatch.setitem(sys.modules, "guppy", None)
    monkeypatch.setenv("LEAKWARE_ENGINE", "guppy")

    if adapter == "wsgi":
        middleware = WsgiMiddleware(orders, **measured)
        served_correctly(middleware)
    else:
        async def hello(request: Request) -> Response:
            return PlainTextResponse("hello")

        middleware = AsgiMiddleware(Starlette(routes=[Route("/", hello)]), **measured)
        for _ in range(REQUESTS):
            assert call_asgi(middleware).messages[1]["body"] == b"hello"

    errors = read_events(log_file, "leakware.error")
    assert len(errors) == 1
    assert errors[0]["error"] in {"ImportError", "ModuleNotFoundError"}
    assert read_events(log_file, "leakware.sample") == []


def test_route_fault_switches_routes_off(measured: dict[str, Any], log_file: Path) -> None:
    """A route that cannot be matched again after the response is reported once, and later
    requests fall back to normalised paths."""

    class RouterOnlyRoute(Route):
        # Matches only inside the app's own router, which adds itself to the scope first.
        def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
            scope["router"]
            return super().matches(scope)

    async def item(request: Request) -> Response:
        return PlainTextResponse("item")

    app = Starlette(routes=[RouterOnlyRoute("/items/{id}", item)])
    middleware = AsgiMiddleware(app, **measured)

    bodies = [
        call_asgi(middleware, http_scope(f"/items/{n}")).messages[1]["body"] for n in range(3)
    ]

    assert bodies == [b"item"] * 3
    check_reported_once(read_events(log_file, "leakware.error"), "routes.resolve", "KeyError")
    assert [s["route"] for s in read_events(log_file, "leakware.sample")] == ["/items/{id}"] * 3


def test_repeats_counted_not_logged(log_file: Path) -> None:
    """A fault kind seen again is counted; only the first one is written."""
    emitter = Emitter(str(log_file))
    faults = Faults(emitter)

    for _ in range(5):
        with faults.guard("routes.resolve", "routes"):
            raise KeyError(SECRET)
    with faults.guard("analysis.observe", "analysis"):
        raise ZeroDivisionError(SECRET)

    errors = read_events(log_file, "leakware.error")
    assert [(e["where"], e["error"]) for e in errors] == [
        ("routes.resolve", "KeyError"),
        ("analysis.observe", "ZeroDivisionError"),
    ]
    assert faults.counts == {
        ("routes.resolve", "KeyError"): 5,
        ("analysis.observe", "ZeroDivisionError"): 1,
    }
    assert SECRET not in log_file.read_text()


def test_repeats_beyond_kind_limit_not_logged(log_file: Path) -> None:
    """Past the limit of remembered fault kinds, new kinds are counted in bulk, and repeats of
    them are never written."""
    faults = Faults(Emitter(str(log_file)))

    for _ in range(3):
        for number in range(MAX_KINDS + 6):
            faults.record(f"place.{number}", KeyError(SECRET), "routes")

    errors = read_events(log_file, "leakware.error")
    assert len(errors) == MAX_KINDS
    assert len({(error["where"], error["error"]) for error in errors}) == MAX_KINDS
    assert faults.overflow == 6 * 3
    assert set(faults.counts.values()) == {3}


def test_stop_event_counts_faults(measured: dict[str, Any], log_file: Path) -> None:
    """The process's last event carries each fault kind with its count."""
    middleware = WsgiMiddleware(orders, **measured)
    middleware.core.engine = FaultyEngine("open")

    served_correctly(middleware)
    middleware.core.close()

    stop = read_events(log_file, "leakware.stop")
    assert len(stop) == 1
    assert stop[0]["faults"] == [{"where": "engine.open", "error": ENGINE_FAULT, "count": 1}]
