"""Fixtures for the conformance suite: measured options and a check that no test leaves
leakware's process-wide state behind."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leakware import measure


@pytest.fixture
def measured(log_file: Path) -> dict[str, Any]:
    """Options that measure every request from the first one and log to ``log_file``."""
    return {"sample_rate": 1.0, "warmup_requests": 0, "log_file": str(log_file)}


@pytest.fixture(autouse=True, scope="session")
def _settled_collector() -> None:
    """Run one full collection before the suite.

    On CPython 3.12.1 a full collection raises gc.get_freeze_count() by a few hundred (375 in a
    fresh interpreter, 0 before the collection and again after gc.unfreeze()), without any
    call to gc.freeze(). After one collection the count changes only when something freezes
    or unfreezes. Observed on 3.12.1; 3.10, 3.11 and 3.13 report 0 throughout.
    """
    gc.collect()


@pytest.fixture(autouse=True)
def _process_state_restored() -> Iterator[None]:
    """Each test ends with no window open and the collector and tracer as it found them."""
    gc_enabled = gc.isenabled()
    frozen = gc.get_freeze_count()
    tracing = tracemalloc.is_tracing()
    yield
    assert measure._STATE.open is None, "a measurement window is still open"
    # The analysis thread takes the lock for its heap checks, which last well under a second.
    lock = measure._STATE.window_lock
    assert lock.acquire(timeout=10), "the window lock is still held"
    lock.release()
    assert gc.isenabled() == gc_enabled
    assert gc.get_freeze_count() == frozen
    assert tracemalloc.is_tracing() == tracing
