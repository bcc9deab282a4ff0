"""Each engine leaves the garbage collector and tracemalloc exactly as it found them: enabled or
disabled, thresholds, the app's own frozen objects, and whether and how deep tracemalloc traces."""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events

from conformance.harness import GUPPY_SAFE, call_wsgi, wsgi_environ
from leakware.wsgi import LeakwareMiddleware

ENGINES = ["young", "tracemalloc", "guppy"]


@dataclasses.dataclass(frozen=True)
class GcState:
    """The process-wide state an engine may touch."""

    enabled: bool
    thresholds: tuple[int, ...]
    frozen: int
    tracing: bool
    #: Frames stored per allocation, while tracing; the limit has no effect otherwise.
    trace_frames: int | None

    @classmethod
    def now(cls) -> GcState:
        tracing = tracemalloc.is_tracing()
        return cls(
            gc.isenabled(),
            gc.get_threshold(),
            gc.get_freeze_count(),
            tracing,
            tracemalloc.get_traceback_limit() if tracing else None,
        )


@pytest.fixture
def app_state(request: pytest.FixtureRequest) -> Iterator[Callable[[], GcState]]:
    """Yield a function that puts the collector and tracemalloc in the state the app chose and
    returns it; everything is undone after the test.

    The test calls it right before the request, so that no object frozen by it is freed by the
    test machinery before the state is compared.
    """
    enabled, frozen, tracing = request.param
    thresholds = gc.get_threshold()
    was_enabled = gc.isenabled()

    def prepare() -> GcState:
        # CPython 3.12 raises the freeze count at a full collection (see conftest.py), so the
        # count is settled before it is recorded.
        gc.collect()
        gc.set_threshold(1234, 56, 78)
        if not enabled:
            gc.disable()
        if tracing:
            tracemalloc.start(5)
        if frozen:
            # The pre-fork pattern: freeze what exists so that forked workers share the pages.
            gc.freeze()
        return GcState.now()

    try:
        yield prepare
    finally:
        if tracing:
            tracemalloc.stop()
        if frozen:
            gc.unfreeze()
            gc.collect()  # restores the freeze count CPython 3.12 reports after a collection
        gc.set_threshold(*thresholds)
        if was_enabled:
            gc.enable()


STATES = [
    ((enabled, frozen, tracing), f"{gc_id}-{frozen_id}-{tracing_id}")
    for enabled, gc_id in ((True, "gc on"), (False, "gc off"))
    for frozen, frozen_id in ((False, "none frozen"), (True, "app froze"))
    for tracing, tracing_id in ((False, "not tracing"), (True, "app traces"))
]
#: guppy walks the whole heap of the test process, which takes seconds per window, so it runs
#: in the two states furthest apart. The other engines run in every state.
GUPPY_STATES = ["gc on-none frozen-not tracing", "gc off-app froze-app traces"]

ENGINE_STATES = [
    pytest.param(
        engine, state, id=f"{engine}-{state_id}", marks=[GUPPY_SAFE] if engine == "guppy" else []
    )
    for engine in ENGINES
    for state, state_id in STATES
    if engine != "guppy" or state_id in GUPPY_STATES
]


def allocating(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """An app that creates garbage cycles and keeps nothing."""
    for number in range(200):
        node: dict[str, Any] = {"n": number}
        node["self"] = node
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def raising(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    allocating(environ, lambda *args: None)
    raise LookupError("no such order")


@pytest.mark.parametrize(("engine", "app_state"), ENGINE_STATES, indirect=["app_state"])
@pytest.mark.parametrize("app", [allocating, raising], ids=["response", "exception"])
def test_state_restored_after_window(
    engine: str,
    app: Callable[..., Any],
    app_state: Callable[[], GcState],
    measured: dict[str, Any],
    log_file: Path,
) -> None:
    """After a measured request the collector and tracer are exactly as before it."""
    middleware = LeakwareMiddleware(app, **{**measured, "engine": engine})
    before = app_state()

    call_wsgi(middleware)

    assert GcState.now() == before
    samples = read_events(log_file, "leakware.sample")
    assert [sample["engine"] for sample in samples] == [engine]


@pytest.mark.parametrize(("engine", "app_state"), ENGINE_STATES, indirect=["app_state"])
def test_state_restored_after_abort(
    engine: str, app_state: Callable[[], GcState], measured: dict[str, Any], log_file: Path
) -> None:
    """A window abandoned after max_window_seconds restores the state when the next request
    ends it, and the late close of its response changes nothing."""
    options = {**measured, "engine": engine, "max_window_seconds": 0.01}
    middleware = LeakwareMiddleware(allocating, **options)
    start_response = lambda status, headers, exc_info=None: None  # noqa: E731
    before = app_state()

    stalled = middleware(wsgi_environ("/stalled"), start_response)
    list(stalled)
    time.sleep(0.05)
    # From another thread, as a server would: the next request on the same thread would end
    # the stalled measurement as an abandoned response instead.
    runner = threading.Thread(target=call_wsgi, args=(middleware, "/next"))
    runner.start()
    runner.join()  # finds the stalled window expired and aborts it
    state_after_abort = GcState.now()
    stalled.close()  # type: ignore[attr-defined]

    assert state_after_abort == before
    assert GcState.now() == before
    assert [sample["route"] for sample in read_events(log_file, "leakware.sample")] == ["/next"]
