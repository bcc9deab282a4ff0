"""The request mix that the mechanism tests send: which paths, how often, and by how many
clients at once."""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["plan", "send"]

#: Requests per route. The look-alikes that evict (the URL-split cache, the sqlite cursor list)
#: need more requests than their capacity before their first entries are freed.
_COUNTS = {
    "/leak/stored-exception": 40,
    "/leak/shared-exception": 40,
    "/leak/thread-pool": 60,
    "/leak/lru-method": 40,
    "/leak/logger": 40,
    "/leak/signal": 40,
    "/leak/dict-by-input": 100,
    "/leak/class-per-request": 40,
    "/leak/future-callbacks": 40,
    "/ok/re-cache": 60,
    "/ok/lru-bounded": 60,
    "/ok/urlsplit": 300,
    "/ok/singleton": 30,
    "/ok/sawtooth": 60,
    "/ok/sqlite": 300,
    "/ok/spike": 20,
    "/ok/error-handler": 30,
    "/ok/server-error": 30,
    "/ok/rate-limited": 30,
    "/health": 40,
}

_FASTAPI_COUNTS = {"/openapi.json": 20, "/ok/sync-error": 40}


def _query(route: str, index: int, rng: random.Random) -> str:
    if route == "/leak/thread-pool":
        return f"fail={index % 2}"
    if route == "/leak/dict-by-input":
        # Half the requests come from a few regular users, half from users never seen before.
        return f"user=regular{rng.randrange(4)}" if index % 2 else f"user=new{index}"
    if route == "/ok/re-cache":
        return f"kind=kind{index % 20}&n={index}"
    if route == "/ok/lru-bounded":
        return f"currency={('EUR', 'USD', 'GBP', 'JPY', 'CHF', 'SEK')[index % 6]}"
    if route == "/leak/lru-method":
        return f"tier={index % 5}"
    return f"n={index}"


def plan(framework: str, seed: int = 2018) -> list[str]:
    """Return every request path of a run, shuffled; each route's requests keep their order."""
    rng = random.Random(seed)
    counts = dict(_COUNTS)
    if framework == "fastapi":
        counts.update(_FASTAPI_COUNTS)
    queues = {
        route: [f"{route}?{_query(route, index, rng)}" for index in range(count)]
        for route, count in counts.items()
    }
    slots = [route for route, count in counts.items() for _ in range(count)]
    rng.shuffle(slots)
    return [queues[route].pop(0) for route in slots]


def send(
    port: int, paths: list[str], clients: int = 1, seconds: float = 0.0
) -> Counter[tuple[str, int]]:
    """Send ``paths`` in order from ``clients`` threads, each over its own keep-alive
    connection, spread over at least ``seconds``; count the responses by route and status.

    The requests go out in bursts of ``clients``, so that they overlap. Spreading the bursts
    gives the middleware's background checks, which run a few times a second at most, time to
    see what earlier requests left behind.
    """
    results: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    iterator = iter(paths)
    started = time.monotonic()
    step = seconds / max(len(paths), 1)
    sent = 0

    def next_path() -> str | None:
        nonlocal sent
        with lock:
            path = next(iterator, None)
            due = started + (sent - sent % clients) * step
            sent += 1
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return path

    def client() -> None:
        _client(port, next_path, results, lock)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _client(
    port: int,
    next_path: Callable[[], str | None],
    results: Counter[tuple[str, int]],
    lock: threading.Lock,
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        while (path := next_path()) is not None:
            status = _get(connection, path)
            with lock:
                results[(path.split("?")[0], status)] += 1
    finally:
        connection.close()


def _get(connection: http.client.HTTPConnection, path: str) -> int:
    # A server may close a keep-alive connection after an error response; the request is then
    # sent again once, on a new connection.
    for attempt in range(2):
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        except (ConnectionError, http.client.RemoteDisconnected):
            connection.close()
            if attempt:
                raise
    raise AssertionError("unreachable")
