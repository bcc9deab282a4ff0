"""``leakware replay``: send recorded requests to an app in-process and report what leaked.

The requests come from a HAR file (what browsers and many proxies export) or from JSON lines,
one request per line, the format that `leakware.capture` writes::

    {"method": "GET", "path": "/routes/london", "query": "to=2.0",
     "headers": [["accept", "application/json"]], "body": ""}

``query`` may also be an object of names to values, ``headers`` an object of names to values,
and a binary body is given as ``"body_base64"``. A line that is not a JSON object or lacks a
valid ``method`` or ``path`` is skipped with a warning that names its line number.

The app, given as ``module:attribute``, runs in a child process, wrapped in leakware's own
middleware with every request measured (sample rate 1, no warm-up) and events written to a
temporary log. Requests go one at a time: WSGI apps get an environ built by werkzeug, ASGI apps
(async callables taking ``scope, receive, send``) get a minimal in-process ASGI server that also
runs the lifespan protocol when the app supports it. The report is built from that log with
the code of ``leakware report``.

The child process exits with ``os._exit`` once its events are written, because a leaking app
can keep the interpreter from exiting: ``multiprocessing`` joins leaked pool threads at exit,
which can wait forever.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

__all__ = [
    "ReplayError",
    "ReplayRequest",
    "Traffic",
    "describe_replay",
    "load_app",
    "read_traffic",
    "run_replay",
]

#: Warnings printed for skipped requests; the rest are counted in one last warning.
MAX_WARNINGS = 20

# RFC 9110 token characters: what a method name may contain.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Characters left as they are when a path is percent-encoded; "%" keeps existing escapes.
_PATH_SAFE = "/:@!$&'()*+,;=%"
# Replay sets the body length itself.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


class ReplayError(Exception):
    """A problem with the app or the traffic file that the user can fix."""


@dataclasses.dataclass(slots=True)
class ReplayRequest:
    """One request to send. ``path`` is percent-encoded and ``query`` is the raw query string."""

    method: str
    path: str
    query: str = ""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    body: bytes = b""
    body_truncated: bool = False

    def as_line(self) -> dict[str, Any]:
        """Return the request in the JSON-lines replay format, the body base64-encoded."""
        line: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": [list(pair) for pair in self.headers],
            "body_base64": base64.b64encode(self.body).decode("ascii"),
        }
        if self.body_truncated:
            line["body_truncated"] = True
        return line


@dataclasses.dataclass(slots=True)
class Traffic:
    """The requests read from a traffic file and the warnings for those skipped."""

    format: str
    requests: list[ReplayRequest]
    warnings: list[str]


# -- reading traffic files --------------------------------------------------------------------


def read_traffic(path: str) -> Traffic:
    """Read a HAR file or a JSON-lines file of requests; which one is detected from the content.

    Raises:
        ReplayError: the file is missing, unreadable, empty, neither HAR nor JSON lines, or
            has no valid request.
    """
    text = _read_text(path)
    stripped = text.strip()
    if not stripped:
        msg = f"{path} is empty; expected a HAR file or JSON lines with one request per line"
        raise ReplayError(msg)
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except ValueError:
            document = None
        if isinstance(document, dict) and "log" in document:
            traffic = _read_har(path, document)
            return _checked(path, traffic)
    return _checked(path, _read_json_lines(path, text))


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise ReplayError(msg) from None
    except IsADirectoryError:
        msg = f"{path} is a directory; expected a HAR file or a JSON-lines file"
        raise ReplayError(msg) from None
    except UnicodeDecodeError:
        msg = f"{path} is not UTF-8 text; expected a HAR file or a JSON-lines file"
        raise ReplayError(msg) from None
    except OSError as exc:
        msg = f"{path} cannot be read ({exc.strerror})"
        raise ReplayError(msg) from None


def _checked(path: str, traffic: Traffic) -> Traffic:
    if not traffic.requests:
        msg = f"{path} contains no valid request ({len(traffic.warnings)} skipped)"
        if traffic.warnings:
            msg += f"; the first: {traffic.warnings[0]}"
        raise ReplayError(msg)
    return traffic


def _read_json_lines(path: str, text: str) -> Traffic:
    traffic = Traffic("jsonl", [], [])
    objects = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            traffic.warnings.append(f"{path} line {number}: not a JSON object; request skipped")
            continue
        objects += 1
        try:
            traffic.requests.append(_request_from_line(record))
        except ValueError as exc:
            traffic.warnings.append(f"{path} line {number}: {exc}; request skipped")
    if objects == 0:
        msg = (
            f"{path} is neither a HAR file (a JSON object with log.entries) nor JSON lines "
            "(one JSON object per line with a method and a path)"
        )
        raise ReplayError(msg)
    return traffic


def _text_field(record: dict[str, Any], name: str) -> str:
    """Return the non-empty string ``record[name]``; the ``ValueError`` names what is wrong."""
    value = record.get(name)
    if value is None:
        raise ValueError(f'missing "{name}"')
    if not isinstance(value, str) or not value:
        raise ValueError(f'"{name}" must be a non-empty string')
    return value


def _request_from_line(record: dict[str, Any]) -> ReplayRequest:
    """Build a request from one JSON line; the ``ValueError`` names what is missing or invalid."""
    method = _method(record.get("method"))
    target = _text_field(record, "path")
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        path, query_in_path, host = parts.path or "/", parts.query, parts.netloc
    else:
        path, _, query_in_path = target.partition("?")
        host = ""
    if not path.startswith("/"):
        raise ValueError(f'"path" must start with "/", got {path[:40]!r}')
    query = _query(record.get("query"), query_in_path)
    headers = _headers(record.get("headers"))
    if host and not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("host", host))
    return ReplayRequest(
        method=method,
        path=quote(path, safe=_PATH_SAFE),
        query=query,
        headers=headers,
        body=_body(record),
        body_truncated=record.get("body_truncated") is True,
    )


def _method(value: object) -> str:
    if value is None:
        raise ValueError('missing "method"')
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f'"method" must be an HTTP method such as "GET", got {value!r:.40}')
    return value


def _query(value: object, fallback: str) -> str:
    if value is None or value == "":
        return fallback
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return urlencode({str(k): v for k, v in value.items()}, doseq=True)
    raise ValueError('"query" must be a string or an object of names to values')


def _headers(value: object) -> list[tuple[str, str]]:
    if value is None:
        return []
    pairs: Iterable[Any]
    if isinstance(value, Mapping):
        pairs = value.items()
    elif isinstance(value, list):
        pairs = value
    else:
        raise ValueError('"headers" must be a list of [name, value] pairs or an object')
    headers = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError('"headers" must be a list of [name, value] pairs or an object')
        name, header_value = pair
        if name.lower() in _FRAMING_HEADERS:
            continue
        headers.append((name, str(header_value)))
    return headers


def _body(record: dict[str, Any]) -> bytes:
    encoded = record.get("body_base64")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise ValueError('"body_base64" must be a string')
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError('"body_base64" is not valid base64') from None
    body = record.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise ValueError('"body" must be a string; use "body_base64" for binary data')
    return body.encode("utf-8")


def _read_har(path: str, document: dict[str, Any]) -> Traffic:
    log = document.get("log")
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        msg = f"{path} is not a valid HAR file: log.entries is missing or not a list"
        raise ReplayError(msg)
    traffic = Traffic("har", [], [])
    for number, entry in enumerate(entries, start=1):
        request = entry.get("request") if isinstance(entry, dict) else None
        try:
            if not isinstance(request, dict):
                raise ValueError('missing "request"')
            traffic.requests.append(_request_from_har(request))
        except ValueError as exc:
            traffic.warnings.append(f"{path} entry {number}: {exc}; request skipped")
    return traffic


def _request_from_har(request: dict[str, Any]) -> ReplayRequest:
    method = _method(request.get("method"))
    url = _text_field(request, "url")
    parts = urlsplit(url)
    query = parts.query
    if not query and isinstance(request.get("queryString"), list):
        query = urlencode(_name_values(request["queryString"]))

    headers: list[tuple[str, str]] = []
    authority = parts.netloc
    for name, value in _name_values(request.get("headers") or []):
        # HTTP/2 exports carry pseudo-headers; only the authority means something to the app.
        if name.startswith(":"):
            authority = value if name == ":authority" else authority
            continue
        if name.lower() not in _FRAMING_HEADERS:
            headers.append((name, value))
    if authority and not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("host", authority))

    return ReplayRequest(
        method=method,
        path=quote(parts.path or "/", safe=_PATH_SAFE),
        query=query,
        headers=headers,
        body=_har_body(request.get("postData")),
    )


def _name_values(items: object) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise ValueError("headers and queryString must be lists of {name, value} objects")
    pairs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError("headers and queryString must be lists of {name, value} objects")
        pairs.append((item["name"], str(item.get("value", ""))))
    return pairs


def _har_body(post_data: object) -> bytes:
    if not isinstance(post_data, dict):
        return b""
    text = post_data.get("text")
    if isinstance(text, str):
        # HAR 1.2 has no encoding field for request bodies; some exporters add one for binary.
        if post_data.get("encoding") == "base64":
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("postData.text is not valid base64") from None
        return text.encode("utf-8")
    params = post_data.get("params")
    if isinstance(params, list):
        return urlencode(_name_values(params)).encode("ascii")
    return b""


# -- loading the app --------------------------------------------------------------------------


def load_app(spec: str) -> tuple[Any, str]:
    """Import the app named ``module:attribute`` and return it with ``"wsgi"`` or ``"asgi"``.

    The current directory is searched first, as WSGI and ASGI servers do.

    Raises:
        ReplayError: the spec is malformed, the module or attribute is missing, importing the
            module failed, or the object is not a WSGI or ASGI application.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        msg = f"invalid app {spec!r}: expected module:attribute, e.g. examples.fastapi_app:app"
        raise ReplayError(msg)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            msg = (
                f"cannot import module {module_name!r}: no module named {exc.name!r}; run "
                "leakware from the directory that contains it, or add that directory to "
                "PYTHONPATH"
            )
            raise ReplayError(msg) from None
        msg = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise ReplayError(msg) from None
    except Exception as exc:
        msg = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise ReplayError(msg) from None

    app: Any = module
    for name in attribute.split("."):
        try:
            app = getattr(app, name)
        except AttributeError:
            msg = f"module {module_name!r} has no attribute {attribute!r}"
            raise ReplayError(msg) from None
    if inspect.isclass(app) or not callable(app):
        got = f"the class {app.__name__}" if inspect.isclass(app) else type(app).__name__
        msg = f"{spec} is not a WSGI or ASGI application: expected a callable object, got {got}"
        raise ReplayError(msg)
    return app, ("asgi" if _is_async_callable(app) else "wsgi")


def _is_async_callable(obj: Any) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 - the method itself is inspected
    )


# -- the child process: sending requests ------------------------------------------------------


def _wrap(app: Any, interface: str, options: dict[str, Any]) -> tuple[Any, Any]:
    """Wrap ``app`` in leakware's middleware; return the callable to send to and its core."""
    if interface == "asgi":
        from leakware.asgi import LeakwareMiddleware as AsgiMiddleware

        middleware: Any = AsgiMiddleware(app, **options)
        return middleware, middleware.core
    if _is_flask(app):
        # The Flask integration also records exceptions that error handlers turn into responses.
        from leakware.flask import init_app

        flask_middleware = init_app(app, **options)
        return app, flask_middleware.core
    from leakware.wsgi import LeakwareMiddleware as WsgiMiddleware

    middleware = WsgiMiddleware(app, **options)
    return middleware, middleware.core


def _is_flask(app: Any) -> bool:
    try:
        from flask import Flask
    except ImportError:  # Flask is optional
        return False
    return isinstance(app, Flask)


def _send_wsgi(app: Any, request: ReplayRequest) -> int:
    from werkzeug.test import EnvironBuilder

    host = _host(request)
    builder = EnvironBuilder(
        path=request.path,
        base_url=f"http://{host}",
        query_string=request.query,
        method=request.method,
        headers=request.headers,
        data=request.body,
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    statuses: list[int] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        statuses.append(int(status.split(" ", 1)[0]))
        return _discard

    iterable = app(environ, start_response)
    try:
        for _ in iterable:
            pass
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return statuses[-1] if statuses else 0


def _discard(data: bytes) -> None:
    pass


def _host(request: ReplayRequest) -> str:
    for name, value in request.headers:
        if name.lower() == "host" and value:
            return value
    return "localhost"


async def _send_asgi(app: Any, request: ReplayRequest, state: dict[str, Any]) -> int:
    host = _host(request)
    name, _, port = host.partition(":")
    headers = [
        (key.lower().encode("latin-1"), _header_bytes(value)) for key, value in request.headers
    ]
    if not any(key == b"host" for key, _ in headers):
        headers.insert(0, (b"host", host.encode("latin-1")))
    if request.body:
        headers.append((b"content-length", str(len(request.body)).encode("ascii")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": unquote(request.path),
        "raw_path": request.path.encode("ascii", "replace"),
        "query_string": request.query.encode("latin-1", "replace"),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": (name, int(port) if port.isdigit() else 80),
        "state": dict(state),
    }
    finished = asyncio.Event()
    body_sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        # Like a server, report the client as gone only once the response is complete.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return status


def _header_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


class _Lifespan:
    """Runs the ASGI lifespan protocol around the replay, when the app supports it."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.state: dict[str, Any] = {}
        self.failure: str | None = None
        self.unsupported: str | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        self._task = asyncio.ensure_future(self._run(scope))
        await self._messages.put({"type": "lifespan.startup"})
        await self._started.wait()
        if self.failure is not None:
            msg = f"the app's lifespan startup failed: {self.failure}"
            raise ReplayError(msg)

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._messages.put({"type": "lifespan.shutdown"})
        await self._stopped.wait()
        await self._task

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self._app(scope, self._messages.get, self._send)
        except Exception as exc:
            # An app without lifespan support raises on the unknown scope type, as servers
            # expect; it is then replayed without startup and shutdown.
            if not self._started.is_set():
                self.unsupported = f"{type(exc).__name__}: {exc}"
        finally:
            self._started.set()
            self._stopped.set()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._started.set()
        elif kind == "lifespan.startup.failed":
            self.failure = str(message.get("message", "")) or "no message"
            self._started.set()
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            self._stopped.set()


@dataclasses.dataclass(slots=True)
class _Tally:
    sent: int = 0
    statuses: Counter[str] = dataclasses.field(default_factory=Counter)
    raised: Counter[str] = dataclasses.field(default_factory=Counter)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, status: int | None, exc: BaseException | None = None) -> None:
        self.sent += 1
        if exc is not None:
            self.raised[type(exc).__name__] += 1
            status = status or 500
        self.statuses[str(status or 0)] += 1


def _replay_wsgi(app: Any, requests: list[ReplayRequest], passes: int) -> _Tally:
    tally = _Tally()
    for request in _passes(requests, passes):
        try:
            status = _send_wsgi(app, request)
        except Exception as exc:  # a server responds with 500 when the app raises
            tally.add(500, exc)
        else:
            tally.add(status)
    return tally


async def _replay_asgi(app: Any, requests: list[ReplayRequest], passes: int) -> _Tally:
    tally = _Tally()
    lifespan = _Lifespan(app)
    await lifespan.startup()
    if lifespan.unsupported is not None:
        tally.notes.append(
            f"the app does not support the ASGI lifespan protocol ({lifespan.unsupported}); "
            "replayed without startup and shutdown"
        )
    for request in _passes(requests, passes):
        try:
            status = await _send_asgi(app, request, lifespan.state)
        except Exception as exc:  # a server responds with 500 when the app raises
            tally.add(500, exc)
        else:
            tally.add(status)
    await lifespan.shutdown()
    return tally


def _passes(requests: list[ReplayRequest], passes: int) -> Iterator[ReplayRequest]:
    for _ in range(passes):
        yield from requests


def _child_main(argv: list[str]) -> int:
    """Replay in this process: ``APP REQUESTS LOG RESULT PASSES ENGINE``. Exits the process."""
    spec, requests_path, log_file, result_path, passes, engine = argv
    result: dict[str, Any]
    try:
        result = _replay_here(spec, requests_path, log_file, int(passes), engine)
        code = 0
    except ReplayError as exc:
        result = {"error": str(exc)}
        code = 2
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skips the interpreter's exit: see the module docs for why.
    os._exit(code)


def _replay_here(
    spec: str, requests_path: str, log_file: str, passes: int, engine: str
) -> dict[str, Any]:
    requests = read_traffic(requests_path).requests
    app, interface = load_app(spec)
    options = {
        "enabled": True,
        "sample_rate": 1.0,
        "warmup_requests": 0,
        # Liveness passes hold the window, and a request arriving meanwhile would go
        # unmeasured. Replay sends requests back to back, so the only pass is the final one.
        "confirm_interval": 86400.0,
        "engine": engine,
        "log_file": log_file,
        "monitor": False,
        "capture_file": None,
    }
    target, core = _wrap(app, interface, options)
    if interface == "asgi":
        tally = asyncio.run(_replay_asgi(target, requests, passes))
    else:
        tally = _replay_wsgi(target, requests, passes)
    # The final liveness pass turns the samples into verdicts.
    core.close()
    return {
        "interface": interface,
        "sent": tally.sent,
        "statuses": dict(sorted(tally.statuses.items())),
        "raised": dict(sorted(tally.raised.items())),
        "notes": tally.notes,
    }


# -- the parent: the command ------------------------------------------------------------------


def run_replay(
    spec: str,
    traffic_path: str,
    *,
    passes: int,
    engine: str,
    log_file: str,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """Replay ``traffic_path`` against the app ``spec`` in a child process, writing events to
    ``log_file``. Returns a summary of what was sent; ``warn`` receives each warning.

    Raises:
        ReplayError: bad traffic, an app that cannot be loaded, or a failed child process.
    """
    traffic = read_traffic(traffic_path)
    for warning in traffic.warnings[:MAX_WARNINGS]:
        warn(warning)
    if len(traffic.warnings) > MAX_WARNINGS:
        warn(f"{len(traffic.warnings) - MAX_WARNINGS} more requests skipped")

    with tempfile.TemporaryDirectory(prefix="leakware-replay-") as workdir:
        requests_path = os.path.join(workdir, "requests.jsonl")
        result_path = os.path.join(workdir, "result.json")
        with open(requests_path, "w", encoding="utf-8") as handle:
            for request in traffic.requests:
                handle.write(json.dumps(request.as_line()) + "\n")
        result = _run_child(
            [spec, requests_path, log_file, result_path, str(passes), engine], result_path
        )

    if "error" in result:
        raise ReplayError(str(result["error"]))
    for note in result.get("notes", []):
        warn(str(note))
    return {
        "app": spec,
        "interface": result["interface"],
        "traffic": traffic_path,
        "format": traffic.format,
        "requests": len(traffic.requests),
        "skipped": len(traffic.warnings),
        "truncated_bodies": sum(1 for request in traffic.requests if request.body_truncated),
        "passes": passes,
        "sent": result["sent"],
        "statuses": result["statuses"],
        "raised": result["raised"],
    }


def describe_replay(summary: Mapping[str, Any]) -> str:
    """Return the lines that open the table output: what was sent and the response statuses."""
    passes = summary["passes"]
    rounds = "1 pass" if passes == 1 else f"{passes} passes"
    lines = [
        f"leakware replay: {summary['sent']} requests ({rounds} of {summary['requests']}, "
        f"{summary['skipped']} skipped) from {summary['traffic']} to {summary['app']} "
        f"({summary['interface'].upper()})",
        "  responses: " + _counts(summary["statuses"]),
    ]
    if summary["raised"]:
        lines.append("  the app raised: " + _counts(summary["raised"]))
    if summary["truncated_bodies"]:
        lines.append(
            f"  {summary['truncated_bodies']} requests were recorded with a truncated body "
            "and were sent with what was recorded"
        )
    return "\n".join(lines) + "\n\n"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} x {count}" for name, count in counts.items()) or "none"


def _run_child(argv: list[str], result_path: str) -> dict[str, Any]:
    env = dict(os.environ)
    # Replayed requests must not be recorded again, nor watched by a heap monitor, by the app's
    # own leakware middleware.
    env.pop("LEAKWARE_CAPTURE_FILE", None)
    env.pop("LEAKWARE_MONITOR", None)
    completed = subprocess.run(
        [sys.executable, "-m", "leakware.replay", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # The app's own output goes to stderr, so that stdout holds only the report.
    for stream in (completed.stdout, completed.stderr):
        if stream:
            sys.stderr.write(stream if stream.endswith("\n") else stream + "\n")
    try:
        result: dict[str, Any] = json.loads(Path(result_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        msg = (
            f"the replay process exited with code {completed.returncode} before it finished; "
            "its output is above"
        )
        raise ReplayError(msg) from None
    return result


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
