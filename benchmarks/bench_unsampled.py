"""Cost of the unsampled path: a trivial endpoint alone against the same endpoint behind leakware
at sample rate 0.

    python benchmarks/bench_unsampled.py
    python benchmarks/bench_unsampled.py --quick

Two endpoints, each called directly, without a server or test client, so that leakware's share
is as large as it can be:

- a Starlette app with one route returning a plain-text response, called as raw ASGI
  (``await app(scope, receive, send)`` inside one event loop);
- a Flask app with one view returning a string, called as raw WSGI (``app(environ,
  start_response)``, then the body is read and closed).

Each round runs a block of calls of every variant, in an order that rotates from round to
round, and records the mean time per call of the block. Times are medians over rounds. The
ratio is the median over rounds of the ratio between the two blocks of an endpoint in the same
round, which cancels most of the drift of a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import format_seconds, interleave, machine, median, print_table


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    return Starlette(routes=[Route("/ping", ping)])


def flask_app() -> Any:
    from flask import Flask

    app = Flask("unsampled")

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    return app


def asgi_block(app: Any, calls: int) -> Callable[[], float]:
    scope_template: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ping",
        "raw_path": b"/ping",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    request_message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request_message

    async def send(message: dict[str, Any]) -> None:
        pass

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await app(dict(scope_template), receive, send)
        return (time.perf_counter() - started) / calls

    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(run())


def wsgi_block(app: Any, calls: int) -> Callable[[], float]:
    from werkzeug.test import create_environ

    environ_template = create_environ("/ping", "http://127.0.0.1/")

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def run() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            environ = dict(environ_template)
            environ["wsgi.input"] = io.BytesIO(b"")
            body = app(environ, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return (time.perf_counter() - started) / calls

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="11 rounds instead of 41")
    parser.add_argument("--calls", type=int, default=1000, help="calls per block")
    args = parser.parse_args(argv)
    rounds = 11 if args.quick else 41

    from leakware.asgi import LeakwareMiddleware as AsgiMiddleware
    from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware

    log_file = str(Path(tempfile.mkdtemp()) / "leakware.jsonl")
    options: dict[str, Any] = {"sample_rate": 0.0, "log_file": log_file}
    starlette_bare = starlette_app()
    starlette_wrapped = AsgiMiddleware(starlette_app(), **options)
    flask_bare = flask_app()
    flask_wrapped = flask_app()
    flask_wrapped.wsgi_app = WsgiMiddleware(flask_wrapped.wsgi_app, **options)

    variants = {
        "starlette raw ASGI": asgi_block(starlette_bare, args.calls),
        "starlette raw ASGI + leakware": asgi_block(starlette_wrapped, args.calls),
        "flask raw WSGI": wsgi_block(flask_bare, args.calls),
        "flask raw WSGI + leakware": wsgi_block(flask_wrapped, args.calls),
    }
    interleave(variants, 1)  # warm-up: imports, caches, leakware's warm-up requests
    results = interleave(variants, rounds)
    medians = {name: median(values) for name, values in results.items()}

    print(f"Machine: {machine()}")
    print(f"Command: {' '.join(['python', *sys.argv])}")
    print(
        f"Blocks of {args.calls} calls, {rounds} rounds. Times are medians of the per-call "
        "means; the ratio is the median of the per-round ratios, each from two blocks run "
        "side by side.\n"
    )
    rows = []
    for endpoint in ("starlette raw ASGI", "flask raw WSGI"):
        bare = medians[endpoint]
        wrapped = medians[f"{endpoint} + leakware"]
        pairs = zip(results[f"{endpoint} + leakware"], results[endpoint], strict=True)
        ratio = median([with_leakware / alone for with_leakware, alone in pairs])
        rows.append(
            [
                endpoint,
                format_seconds(bare),
                format_seconds(wrapped),
                format_seconds(wrapped - bare),
                f"{ratio:.3f}",
            ]
        )
    print_table(["endpoint", "alone", "leakware, rate 0", "added", "ratio"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
