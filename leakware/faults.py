"""The fault guard: leakware's own errors are reported once, counted, and never reach a request.

Each guarded block names where it runs and which part of leakware to switch off when it fails.
The first failure of a kind (place and exception type) becomes one ``leakware.error`` event; the
exception message is never logged, because it can quote heap contents. Repeats only increase a
counter, and the failed part stays off for the life of the process instead of failing again on
every request.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from leakware.events import ERROR, SCHEMA_VERSION
from leakware.naming import type_name

if TYPE_CHECKING:
    from leakware.events import Emitter

__all__ = ["Faults", "Part"]

#: Parts that a fault can switch off. ``measure`` stops sampling; ``emit`` stops all output,
#: which also stops sampling since nothing could be reported.
Part = Literal["measure", "emit", "routes", "analysis", "paths", "monitor", "capture"]

#: Distinct fault kinds remembered per process; later new kinds are still counted in bulk.
_MAX_KINDS = 64


class Faults:
    """Records leakware's own faults and the parts they switched off."""

    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.overflow = 0
        self.disabled: set[str] = set()

    def is_off(self, part: Part) -> bool:
        """Return whether ``part`` was switched off by an earlier fault."""
        return part in self.disabled

    @contextmanager
    def guard(self, where: str, part: Part) -> Iterator[None]:
        """Run the block; on ``Exception``, record it, switch ``part`` off and carry on."""
        try:
            yield
        except Exception as exc:
            self.record(where, exc, part)

    def record(self, where: str, exc: BaseException, part: Part) -> None:
        """Count one fault at ``where``; the first of its kind is reported as an event."""
        error = type_name(type(exc))
        key = (where, error)
        with self._lock:
            first_of_part = part not in self.disabled
            self.disabled.add(part)
            if part == "emit" or self._emitter.failed:
                # Nothing can be reported any more (the analysis or monitor may be the first
                # to find the sink broken), so measuring would only cost the app time.
                self.disabled.update(("emit", "measure"))
            count = self.counts.get(key, 0) + 1
            if key in self.counts or len(self.counts) < _MAX_KINDS:
                self.counts[key] = count
            else:
                # Kinds beyond the limit are neither remembered nor reported one by one.
                self.overflow += 1
                count = 0
        if count == 1:
            self._report(where=where, error=error, disabled=part if first_of_part else None)

    def _report(self, **fields: object) -> None:
        if "emit" not in self.disabled:
            try:
                self._emitter.emit(ERROR, **fields)
            except Exception as exc:
                self.record("events.emit", exc, "emit")
            else:
                return
        _write_stderr(ERROR, fields)

    def summary_fields(self) -> list[dict[str, object]]:
        """Return one entry per fault kind with its count, for the exit report."""
        with self._lock:
            return [
                {"where": where, "error": error, "count": count}
                for (where, error), count in self.counts.items()
            ]


def _write_stderr(event: str, fields: dict[str, object]) -> None:
    # Last resort when the configured sink is what failed: one JSON line on stderr, with the
    # same leading keys as the emitter writes.
    timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    line = json.dumps(
        {"event": event, "schema": SCHEMA_VERSION, "timestamp": timestamp, "pid": os.getpid(),
         **fields}
    )
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass
