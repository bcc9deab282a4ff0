"""The routing domain behind the example apps: vehicles, trips and a thread pool.

`plan_routes` is the bug from the story this project comes from. It feeds trips lazily to a
`multiprocessing.dummy.Pool` and reads the results before closing the pool. When a trip cannot
be routed, the worker raises, the exception leaves the loop early, and the code that would end
the trip feed and close the pool never runs. The pool's task handler waits for more trips
forever, and it holds the estimator, which holds the whole fleet: 10,000 vehicles and 5 threads
stay alive per failing request. `plan_routes_fixed` is the same work with the clean-up in a
``finally`` block.
"""

from __future__ import annotations

import functools
import math
import queue
from collections.abc import Iterator
from multiprocessing.dummy import Pool as ThreadPool

__all__ = [
    "FLEET_SIZE",
    "FloatingVehicle",
    "NoRouteError",
    "plan_routes",
    "plan_routes_fixed",
    "trips_for",
]

#: Vehicles loaded for every routing request.
FLEET_SIZE = 10_000
#: Workers in each request's pool; the pool adds three handler threads of its own.
POOL_SIZE = 2


class NoRouteError(Exception):
    """A trip ends outside the area the router has a map of."""


class FloatingVehicle:
    """A shared vehicle parked somewhere in the city."""

    def __init__(self, vehicle_id: int, lat: float, lon: float) -> None:
        self.vehicle_id = vehicle_id
        self.lat = lat
        self.lon = lon


def load_fleet(city: str) -> list[FloatingVehicle]:
    """Return the city's vehicles, spread over a 10 km grid."""
    seed = sum(map(ord, city))
    return [
        FloatingVehicle(i, 51.5 + ((i * 7919 + seed) % 1000) / 10_000, -0.1 + (i % 997) / 10_000)
        for i in range(FLEET_SIZE)
    ]


def trips_for(city: str, destination: float) -> list[tuple[float, float]]:
    """Return the trips a request asks to route; ``destination`` beyond 1.0 is off the map."""
    return [(51.5 + step / 100, -0.1 + destination * step / 80) for step in range(8)]


def estimate_eta(fleet: list[FloatingVehicle], trip: tuple[float, float]) -> float:
    """Return minutes until the nearest vehicle reaches the start of ``trip``."""
    lat, lon = trip
    if lon > 0.0:
        raise NoRouteError("trip ends outside the mapped area")
    nearest = min(math.hypot(v.lat - lat, v.lon - lon) for v in fleet[:2000])
    return round(nearest * 600, 1)


def _feed(trips: queue.Queue[tuple[float, float] | None]) -> Iterator[tuple[float, float]]:
    # Trips arrive one by one from a queue; None ends the feed.
    return iter(trips.get, None)  # type: ignore[arg-type]


def plan_routes(city: str, destination: float) -> list[float]:
    """Route every trip of a request. Leaks when a trip cannot be routed."""
    fleet = load_fleet(city)
    trips = trips_for(city, destination)
    pending: queue.Queue[tuple[float, float] | None] = queue.Queue()
    pool = ThreadPool(POOL_SIZE)
    etas = pool.imap(functools.partial(estimate_eta, fleet), _feed(pending))
    for trip in trips:
        pending.put(trip)
    results = [next(etas) for _ in trips]  # raises NoRouteError from the worker
    pending.put(None)
    pool.close()
    pool.join()
    return results


def plan_routes_fixed(city: str, destination: float) -> list[float]:
    """Route every trip of a request, ending the feed and closing the pool whatever happens."""
    fleet = load_fleet(city)
    trips = trips_for(city, destination)
    pending: queue.Queue[tuple[float, float] | None] = queue.Queue()
    pool = ThreadPool(POOL_SIZE)
    try:
        etas = pool.imap(functools.partial(estimate_eta, fleet), _feed(pending))
        for trip in trips:
            pending.put(trip)
        return [next(etas) for _ in trips]
    finally:
        pending.put(None)
        pool.close()
        pool.join()
