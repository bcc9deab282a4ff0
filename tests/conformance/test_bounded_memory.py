"""leakware's own memory stays flat under sustained sampling, and per-route state is bounded
by LEAKWARE_MAX_ROUTES with an overflow bucket, so a scanner that requests random URLs cannot
grow it."""

from __future__ import annotations

import gc
import random
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events

from leakware import measure
from leakware.sampling import MAX_BOOSTED_ROUTES
from leakware.verdicts import MAX_PENDING, OVERFLOW_ROUTE
from leakware.wsgi import LeakwareMiddleware

REQUESTS = 100_000
CHECKPOINTS = 10
MAX_ROUTES = 50


def shop(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """An app that keeps nothing. Orders return 200 and every other path fails with a 500."""
    if environ["PATH_INFO"].startswith("/orders/"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"order"]
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"failed"]


def scanner_path(rng: random.Random) -> str:
    # Lower-case words survive path normalisation, so each one is a distinct route.
    return "/" + "".join(rng.choices(string.ascii_lowercase, k=10))


def serve(middleware: Callable[..., Any], path: str) -> None:
    """Run one request the way a server does, with the least overhead of its own."""
    response = middleware({"REQUEST_METHOD": "GET", "PATH_INFO": path}, _start_response)
    for _ in response:
        pass
    close = getattr(response, "close", None)
    if close is not None:
        close()


def _start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
    return None


def state_sizes(middleware: LeakwareMiddleware) -> dict[str, int]:
    """Return the size of each structure leakware keeps per process."""
    core = middleware.core
    analysis = core.analysis
    return {
        "keys": len(analysis._keys),
        "pending witnesses": sum(len(items) for items in analysis._pending.values()),
        "survivors": len(analysis._survivors),
        "verdicts": len(analysis._verdicts),
        "reported leaks": len(analysis._reported),
        "boosted routes": len(core.sampler._boosts),
        "fault kinds": len(core.faults.counts),
        "handled exception files": len(measure._STATE.handled._in_app),
    }


def footprint() -> tuple[int, int]:
    """Return the interpreter's allocated memory blocks and tracked objects after a collection."""
    gc.collect()
    return sys.getallocatedblocks(), len(gc.get_objects())


@pytest.mark.slow
def test_memory_flat_over_100k_requests() -> None:
    """100,000 sampled requests, a tenth of them from a scanner, leave leakware's memory flat."""
    middleware = LeakwareMiddleware(
        shop, sample_rate=1.0, warmup_requests=0, log_file="/dev/null", max_routes=MAX_ROUTES
    )
    rng = random.Random(20)
    per_checkpoint = REQUESTS // CHECKPOINTS
    footprints = []
    sizes = []

    for _ in range(CHECKPOINTS):
        for _ in range(per_checkpoint):
            if rng.random() < 0.1:
                serve(middleware, scanner_path(rng))
            else:
                serve(middleware, f"/orders/{rng.randrange(10**9)}")
        footprints.append(footprint())
        sizes.append(state_sizes(middleware))

    core = middleware.core
    assert core.samples + core.busy_skips == REQUESTS
    # The analysis thread keeps the window lock while it checks the heap, so some requests pass
    # through unmeasured. Most must still be measured for the test to mean anything.
    assert core.samples > REQUESTS // 2
    # The bounded structures fill during the first fifth; after that nothing may grow. Growth
    # of even one object per 40 requests would exceed these limits.
    (filled_blocks, filled_objects), (last_blocks, last_objects) = footprints[1], footprints[-1]
    assert last_objects - filled_objects <= 2000, footprints
    assert last_blocks - filled_blocks <= 5000, footprints
    final = sizes[-1]
    assert final["keys"] == MAX_ROUTES + 1, sizes
    assert final["verdicts"] <= final["keys"], sizes
    assert final["pending witnesses"] <= final["keys"] * MAX_PENDING, sizes
    assert final["boosted routes"] <= MAX_BOOSTED_ROUTES, sizes
    assert final["fault kinds"] == 0, sizes


def test_scanner_routes_overflow(
    log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Routes beyond LEAKWARE_MAX_ROUTES share the "<other>" bucket in the analysis."""
    monkeypatch.setenv("LEAKWARE_MAX_ROUTES", "20")
    middleware = LeakwareMiddleware(
        shop, sample_rate=1.0, warmup_requests=0, log_file=str(log_file)
    )
    rng = random.Random(7)

    for _ in range(2000):
        serve(middleware, scanner_path(rng))
    middleware.core.close()

    keys = middleware.core.analysis._keys
    assert middleware.core.samples > 100
    assert len(keys) == 21
    assert ("GET", OVERFLOW_ROUTE, None) in keys
    verdict_routes = {event["route"] for event in read_events(log_file, "leakware.verdict")}
    assert OVERFLOW_ROUTE in verdict_routes
    assert len(verdict_routes) <= 21
    assert len(middleware.core.sampler._boosts) <= MAX_BOOSTED_ROUTES
