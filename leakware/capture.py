"""Traffic capture: record the requests an app receives, for ``leakware replay`` to send again.

Off by default. ``LEAKWARE_CAPTURE_FILE=path`` (or ``capture_file=...``) appends one JSON line per
HTTP request to that file, in the format ``leakware replay`` reads::

    {"method": "POST", "path": "/orders", "query": "dry_run=1",
     "headers": [["content-type", "application/json"]], "body": "{\\"items\\": 2}"}

A body that is not UTF-8 text is stored as ``"body_base64"``; a body cut at `MAX_BODY_BYTES` also
carries ``"body_truncated": true``.

**The capture file contains request data**: paths, query strings, header values and bodies,
which can include personal data. It is created readable by its owner only. The headers in
`SENSITIVE_HEADERS` are dropped unless named in ``LEAKWARE_CAPTURE_KEEP_HEADERS``; every other
header is written as received.

Capture changes neither the request the app receives nor the response it returns, and it reads
no body bytes that the app does not read:

- WSGI: ``wsgi.input`` is replaced by a wrapper that copies the bytes the app reads. The line is
  written when the app call returns (or raises), so body bytes that the app reads later, while
  the response iterable is consumed, are not recorded. The app's response iterable is returned
  untouched.
- ASGI: ``receive`` is wrapped to copy ``http.request`` bodies, and the line is written when the
  app call returns. Lifespan and WebSocket scopes pass straight through.

Writes are bounded: bodies stop at `MAX_BODY_BYTES`, at most `MAX_HEADERS` headers are kept and
values longer than `MAX_HEADER_BYTES` are dropped, and capture stops when the file reaches
`MAX_FILE_BYTES`. Each line is one ``write(2)`` on a file opened with ``O_APPEND``, so worker
processes that share the file never interleave within a line. Every step runs inside the fault
guard (part ``capture``). A failure in capture's own code turns capture off for the process, and
the request goes on unchanged.
"""

from __future__ import annotations

import base64
import json
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from leakware.settings import SettingsError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from leakware.faults import Faults
    from leakware.measure import Core

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_FILE_BYTES",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "SENSITIVE_HEADERS",
    "CaptureAsgiMiddleware",
    "CaptureFile",
    "CaptureWsgiMiddleware",
    "capture_asgi",
    "capture_wsgi",
]

#: Headers that carry credentials; dropped unless listed in ``LEAKWARE_CAPTURE_KEEP_HEADERS``.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"}
)
#: Body bytes recorded per request; the rest is cut and the line marked ``body_truncated``.
MAX_BODY_BYTES = 64 * 1024
#: Headers recorded per request.
MAX_HEADERS = 100
#: Header values longer than this many bytes are dropped.
MAX_HEADER_BYTES = 8 * 1024
#: Capture stops once the file is this large, whichever processes wrote it.
MAX_FILE_BYTES = 64 * 1024 * 1024

# Replay computes these from the body it sends, so recorded values would be wrong or misleading.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
# Characters that may appear unescaped in a URL path (RFC 3986 pchar, and "/").
_PATH_SAFE = "/:@!$&'()*+,;="


class CaptureFile:
    """The capture file: filters headers, bounds each line, and appends it.

    Raises:
        SettingsError: the file cannot be opened for appending.
    """

    def __init__(self, path: str, keep_headers: Iterable[str] = ()) -> None:
        try:
            # Owner-only, because the lines contain request data.
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            msg = (
                f"LEAKWARE_CAPTURE_FILE={path!r} is invalid: cannot open it for appending "
                f"({exc.strerror}); expected a writable file path"
            )
            raise SettingsError(msg) from None
        self.path = path
        self.dropped = SENSITIVE_HEADERS - {name.lower() for name in keep_headers}
        #: Set once the file reached `MAX_FILE_BYTES`; nothing more is written.
        self.full = False
        weakref.finalize(self, os.close, self._fd)

    def headers(self, pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
        """Return the headers to record, names lower-cased, within the bounds."""
        recorded: list[list[str]] = []
        for name, value in pairs:
            lowered = name.lower()
            if lowered in self.dropped or lowered in _FRAMING_HEADERS:
                continue
            if len(value) > MAX_HEADER_BYTES:
                continue
            recorded.append([lowered, value])
            if len(recorded) >= MAX_HEADERS:
                break
        return recorded

    def write(self, request: dict[str, Any], body: bytes, truncated: bool) -> None:
        """Append one request line; ``request`` contains method, path, query and headers."""
        if self.full:
            return
        record = dict(request)
        if body:
            try:
                record["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                record["body_base64"] = base64.b64encode(body).decode("ascii")
        if truncated:
            record["body_truncated"] = True
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        if os.fstat(self._fd).st_size + len(data) > MAX_FILE_BYTES:
            self.full = True
            return
        written = os.write(self._fd, data)
        while written < len(data):  # A short write is rare but legal.
            data = data[written:]
            written = os.write(self._fd, data)


class _BodyCopy:
    """The first `MAX_BODY_BYTES` bytes of a request body, in the order the app read them."""

    __slots__ = ("data", "position", "truncated")

    def __init__(self) -> None:
        self.data = bytearray()
        #: Offset in the body of the next byte the app reads.
        self.position = 0
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        start = self.position
        self.position += len(chunk)
        copied = len(self.data)
        if start > copied:
            # The app skipped bytes (a seek forward): what follows is not contiguous.
            self.truncated = True
            return
        fresh = chunk[copied - start :]
        room = MAX_BODY_BYTES - copied
        if len(fresh) > room:
            fresh = fresh[:room]
            self.truncated = True
        self.data += fresh


class _CopyingInput:
    """A ``wsgi.input`` that copies what the app reads; every other attribute is the stream's."""

    __slots__ = ("_copy", "_faults", "_stream")

    def __init__(self, stream: Any, copy: _BodyCopy, faults: Faults) -> None:
        self._stream = stream
        self._copy = copy
        self._faults = faults

    def _copied(self, chunk: bytes) -> bytes:
        with self._faults.guard("capture.read", "capture"):
            if isinstance(chunk, (bytes, bytearray)):
                self._copy.add(chunk)
        return chunk

    def read(self, *args: Any) -> bytes:
        return self._copied(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._copied(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        for line in lines:
            self._copied(line)
        return lines

    def __iter__(self) -> _CopyingInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._stream, name)
        if name != "seek":
            return attribute
        copy = self._copy

        def seek(*args: Any) -> Any:
            position = attribute(*args)
            if isinstance(position, int):
                copy.position = position
            return position

        return seek


class CaptureWsgiMiddleware:
    """Record each request a WSGI app receives in a `CaptureFile`; see the module docs."""

    def __init__(self, app: WSGIApplication, capture: CaptureFile, faults: Faults) -> None:
        self.app = app
        self.capture = capture
        self.faults = faults

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        faults = self.faults
        stream = environ.get("wsgi.input")
        # A second capture middleware around the same app records nothing more.
        if faults.is_off("capture") or self.capture.full or isinstance(stream, _CopyingInput):
            return self.app(environ, start_response)

        request: dict[str, Any] | None = None
        copy = _BodyCopy()
        with faults.guard("capture.request", "capture"):
            request = self._request(environ)
            if stream is not None:
                environ["wsgi.input"] = _CopyingInput(stream, copy, faults)
        try:
            return self.app(environ, start_response)
        finally:
            if request is not None:
                with faults.guard("capture.write", "capture"):
                    self.capture.write(request, bytes(copy.data), copy.truncated)

    def _request(self, environ: WSGIEnvironment) -> dict[str, Any]:
        # PEP 3333 decodes the path as latin-1; encoding it back gives the bytes the client sent.
        path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe=_PATH_SAFE) or "/"
        pairs = [
            (key[5:].replace("_", "-"), value)
            for key, value in environ.items()
            if key.startswith("HTTP_") and isinstance(value, str)
        ]
        if environ.get("CONTENT_TYPE"):
            pairs.append(("content-type", environ["CONTENT_TYPE"]))
        return {
            "method": environ.get("REQUEST_METHOD", "GET"),
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "headers": self.capture.headers(pairs),
        }


class _CopyingReceive:
    """An ASGI ``receive`` that copies the bodies of ``http.request`` messages."""

    __slots__ = ("_copy", "_faults", "_receive")

    def __init__(self, receive: Receive, copy: _BodyCopy, faults: Faults) -> None:
        self._receive = receive
        self._copy = copy
        self._faults = faults

    async def __call__(self) -> Message:
        message = await self._receive()
        with self._faults.guard("capture.read", "capture"):
            if message.get("type") == "http.request":
                self._copy.add(message.get("body", b""))
        return message


class CaptureAsgiMiddleware:
    """Record each HTTP request an ASGI app receives in a `CaptureFile`; see the module docs."""

    def __init__(self, app: ASGIApp, capture: CaptureFile, faults: Faults) -> None:
        self.app = app
        self.capture = capture
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.faults
        if (
            scope["type"] != "http"
            or faults.is_off("capture")
            or self.capture.full
            or isinstance(receive, _CopyingReceive)
        ):
            await self.app(scope, receive, send)
            return

        request: dict[str, Any] | None = None
        copy = _BodyCopy()
        copying_receive: Callable[[], Awaitable[Message]] = receive
        with faults.guard("capture.request", "capture"):
            # Read before the app runs: routing may rewrite the scope.
            request = self._request(scope)
            copying_receive = _CopyingReceive(receive, copy, faults)
        try:
            await self.app(scope, copying_receive, send)
        finally:
            if request is not None:
                with faults.guard("capture.write", "capture"):
                    self.capture.write(request, bytes(copy.data), copy.truncated)

    def _request(self, scope: Scope) -> dict[str, Any]:
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes) and raw_path:
            path = raw_path.decode("latin-1")
        else:
            path = quote(scope.get("path", "/").encode("utf-8"), safe=_PATH_SAFE)
        pairs = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope.get("headers", [])
        ]
        return {
            "method": scope.get("method", "GET"),
            "path": path,
            "query": bytes(scope.get("query_string", b"")).decode("latin-1"),
            "headers": self.capture.headers(pairs),
        }


def capture_wsgi(app: WSGIApplication, core: Core) -> WSGIApplication:
    """Return ``app`` wrapped for capture when the core's settings ask for it, else ``app``."""
    settings = core.settings
    if not settings.enabled or settings.capture_file is None:
        return app
    capture = CaptureFile(settings.capture_file, settings.capture_keep_headers)
    return CaptureWsgiMiddleware(app, capture, core.faults)


def capture_asgi(app: ASGIApp, core: Core) -> ASGIApp:
    """Return ``app`` wrapped for capture when the core's settings ask for it, else ``app``."""
    settings = core.settings
    if not settings.enabled or settings.capture_file is None:
        return app
    capture = CaptureFile(settings.capture_file, settings.capture_keep_headers)
    return CaptureAsgiMiddleware(app, capture, core.faults)
