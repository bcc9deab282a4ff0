"""Read leakware events back from JSON-lines files.

Logs are often shared with the app's own output, cut short by a crash, or rotated mid-line, so a
line that is not JSON, not a JSON object, or not a leakware event is counted and skipped, never
fatal. A missing or unreadable file is an error.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["Events", "ReportInputError", "read_events"]


class ReportInputError(Exception):
    """An input file that cannot be read at all."""


@dataclasses.dataclass(slots=True)
class Events:
    """Every leakware event found, by kind, and how many lines were read and skipped."""

    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    verdicts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    leaks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    heap: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stops: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    lines_read: int = 0
    lines_skipped: int = 0


_KINDS = {
    "leakware.sample": "samples",
    "leakware.verdict": "verdicts",
    "leakware.leak": "leaks",
    "leakware.heap": "heap",
    "leakware.error": "errors",
    "leakware.stop": "stops",
}

#: Keys a sample event needs before the report can use it.
_SAMPLE_KEYS = ("method", "route", "retained_objects", "types")
#: Keys and types a heap event needs before the report can use it.
_HEAP_KEYS = (("pid", int), ("interval", int), ("types", list))


def read_events(paths: Iterable[str]) -> Events:
    """Parse every line of every file in ``paths``.

    Raises:
        ReportInputError: a file is missing or cannot be read.
    """
    events = Events()
    for path in paths:
        for line in _lines(path):
            events.lines_read += 1
            record = _parse(line)
            kind = _KINDS.get(str(record.get("event"))) if record is not None else None
            if record is None or kind is None or not _usable(kind, record):
                events.lines_skipped += 1
                continue
            getattr(events, kind).append(record)
    return events


def _lines(path: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield from handle
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise ReportInputError(msg) from None
    except IsADirectoryError:
        msg = f"{path}: is a directory, expected a JSON-lines log file"
        raise ReportInputError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc.strerror})"
        raise ReportInputError(msg) from None


def _parse(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _usable(kind: str, record: dict[str, Any]) -> bool:
    if kind == "heap":
        # The report groups heap events by pid and interval number, and reads their types.
        return all(isinstance(record.get(key), want) for key, want in _HEAP_KEYS)
    if kind != "samples":
        return True
    if not all(key in record for key in _SAMPLE_KEYS):
        return False
    return isinstance(record["types"], list) and isinstance(record["retained_objects"], int)
