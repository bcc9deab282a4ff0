"""Fixtures shared by every test: a clean leakware environment and a log file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_leakware_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests start without LEAKWARE_* variables, whatever the shell running them has set."""
    import os

    for name in list(os.environ):
        if name.startswith("LEAKWARE_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(autouse=True)
def _no_open_window() -> Iterator[None]:
    """A window a test left open (a response never closed) is abandoned after the test, so
    that it cannot turn the next test's samples into busy skips."""
    yield
    from leakware import measure

    measurement = measure._STATE.open
    if measurement is not None:
        for core in list(measure._CORES):
            core._expire(measurement)
            break


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """A fresh JSON-lines log file path for leakware to append to."""
    return tmp_path / "leakware.jsonl"
