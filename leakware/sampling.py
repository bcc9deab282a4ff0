"""The sampling decision, made before the app runs: warm-up, base rate and error boosts.

The decision for an unsampled request is a counter step and one ``random()`` call. Only when a
route failed recently does the sampler look at the request path, to apply the error boost.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import OrderedDict

from leakware.routes import normalise_path

__all__ = ["Sampler"]

#: Routes under an error boost at the same time; the oldest boost is dropped beyond this.
MAX_BOOSTED_ROUTES = 64


class Sampler:
    """Decides which requests are measured.

    The first ``warmup`` requests of the process are never sampled, so caches fill before
    measurement starts. After that each request is sampled with probability ``rate``, except
    that after a request fails, the next ``boost_requests`` requests to the same route (method
    and normalised path) are sampled with probability ``boost_rate``.
    """

    def __init__(self, rate: float, warmup: int, boost_rate: float, boost_requests: int) -> None:
        self.rate = rate
        self.warmup = warmup
        self.boost_rate = max(boost_rate, rate)
        self.boost_requests = boost_requests
        self._seen = itertools.count()
        self._boosts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        #: A request whose random draw, uniform in [0, 1), is at or above this value is not
        #: sampled, so adapters can skip `should_sample` for it. It is the rate once warm-up is
        #: over and no route is boosted, and 1 before, so that every request gets here.
        self.cutoff = 1.0

    def reset(self) -> None:
        """Start counting warm-up requests again (after ``fork``)."""
        self._seen = itertools.count()
        self._boosts = OrderedDict()
        self._lock = threading.Lock()
        self.cutoff = 1.0

    def should_sample(self, method: str, path: str, draw: float | None = None) -> bool:
        """Decide for one request; ``path`` is read only while an error boost is active.

        ``draw`` is the request's random number when the caller already drew one, uniform in
        [0, 1) and below `cutoff` unless a window is open.
        """
        if draw is None:
            draw = random.random()
        # next() on itertools.count is atomic under the GIL, unlike `self.n += 1`.
        if next(self._seen) < self.warmup:
            return False
        if self._boosts:
            if self._boosted(method, path):
                return draw < self.boost_rate
        elif self.cutoff != self.rate:
            # Warm-up is over, or the last boost ended.
            with self._lock:
                if not self._boosts:
                    self.cutoff = self.rate
        return draw < self.rate

    def boosted(self, method: str, path: str) -> bool:
        """Return whether requests to this route are currently under an error boost."""
        return _route_key(method, path) in self._boosts

    def note_failure(self, method: str, path: str) -> None:
        """Start or renew the error boost for the route of a failed request."""
        if not self.boost_requests:
            return
        key = _route_key(method, path)
        with self._lock:
            self.cutoff = 1.0
            self._boosts[key] = self.boost_requests
            self._boosts.move_to_end(key)
            while len(self._boosts) > MAX_BOOSTED_ROUTES:
                self._boosts.popitem(last=False)

    def _boosted(self, method: str, path: str) -> bool:
        key = _route_key(method, path)
        with self._lock:
            remaining = self._boosts.get(key)
            if remaining is None:
                return False
            if remaining <= 1:
                del self._boosts[key]
            else:
                self._boosts[key] = remaining - 1
        return True


def _route_key(method: str, path: str) -> str:
    return f"{method} {normalise_path(path)}"
