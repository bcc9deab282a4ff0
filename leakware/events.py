"""The JSON-lines event stream: event names, the schema version and the sink they go to.

leakware never calls ``structlog.configure()``, which belongs to the application. It wraps its own
line sink with its own processor chain, so the app's logging configuration is left alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = [
    "ERROR",
    "HEAP",
    "LEAK",
    "SAMPLE",
    "SCHEMA_VERSION",
    "STOP",
    "Emitter",
]

#: Bumped when a key is renamed or its meaning changes; new keys do not bump it.
SCHEMA_VERSION = 1

SAMPLE = "leakware.sample"
LEAK = "leakware.leak"
VERDICT = "leakware.verdict"
ERROR = "leakware.error"
HEAP = "leakware.heap"
STOP = "leakware.stop"


class _FileSink:
    """A structlog logger that writes each rendered event with one ``write(2)`` call.

    The file is opened with ``O_APPEND``, so lines from several worker processes that share a
    log file are never interleaved within a line.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def msg(self, message: str) -> None:
        data = (message + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # A short write is rare but legal.
            data = data[written:]
            written = os.write(self._fd, data)

    info = warning = error = msg

    def close(self) -> None:
        # -1 makes a late write fail with EBADF instead of landing in whatever file reuses
        # the descriptor number.
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class _StderrSink:
    """A structlog logger that writes to whatever ``sys.stderr`` is at the time of the event."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    info = warning = error = msg

    def close(self) -> None:
        pass


def _order_keys(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    # The event name, schema and timestamp lead each line so that `grep` and humans find them.
    head = {
        "event": event_dict.pop("event"),
        "schema": SCHEMA_VERSION,
        "timestamp": event_dict.pop("timestamp"),
    }
    head.update(event_dict)
    return head


class Emitter:
    """Writes leakware events as JSON lines to ``log_file`` (appending) or to stderr.

    Raises:
        OSError: when ``log_file`` cannot be opened; the caller turns it into a settings error.
    """

    def __init__(self, log_file: str | None) -> None:
        self._sink: _FileSink | _StderrSink
        self._sink = _StderrSink() if log_file is None else _FileSink(log_file)
        self.log_file = log_file
        self._logger = structlog.wrap_logger(
            self._sink,
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _order_keys,
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.BoundLogger,
        )
        #: Set when writing an event raised. A broken sink (full disk, closed stream, broken
        #: pipe) is not tried again, so every later event is dropped.
        self.failed = False
        self._closed = False

    def emit(self, event: str, /, **fields: Any) -> None:
        """Write one event; the first exception from the sink propagates to the caller's guard.

        Events emitted after a failure or after `close` are dropped without an error.
        """
        if self.failed or self._closed:
            return
        try:
            self._logger.info(event, pid=os.getpid(), **fields)
        except Exception:
            self.failed = True
            raise

    def close(self) -> None:
        self._closed = True
        self._sink.close()
