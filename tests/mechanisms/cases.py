"""Real-world leak mechanisms and look-alikes, written as plain functions that the Flask and
FastAPI apps in this package call from one route each.

Every leaking function retains a class of this module, so that a test can look for that class in
the report. The look-alikes retain objects too, for a while or once, and must not be reported as
leaks.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import logging
import queue
import re
import sqlite3
import sys
import threading
import urllib.parse
from multiprocessing.dummy import Pool as ThreadPool
from types import TracebackType
from typing import Any

import blinker

# -- leaks ------------------------------------------------------------------------------------


class Invoice:
    """A request's invoice; only the failed ones are kept, through their stored tracebacks."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.lines = [("item", number, 1.5)] * 10


class InvoiceError(Exception):
    """An invoice that cannot be totalled."""


ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

#: Failures kept for a status page that nobody reads: each keeps its frames and their locals.
RECENT_FAILURES: list[ExcInfo] = []


def total_invoice(number: int) -> float:
    """Total an invoice that always fails, and keep ``sys.exc_info()`` of the failure."""
    invoice = Invoice(number)
    try:
        raise InvoiceError("no tax rate for this region")
    except InvoiceError:
        RECENT_FAILURES.append(sys.exc_info())  # type: ignore[arg-type]
    return len(invoice.lines) * 1.5


class Quote:
    """A price quote, alive as long as the frame that built it."""

    def __init__(self, amount: int) -> None:
        self.amount = amount
        self.breakdown = {"base": amount, "fees": [amount // 10] * 5}


class QuoteUnavailable(Exception):
    """Raised as one shared instance."""


#: One instance raised by every failing request: each raise prepends the request's frames to
#: its traceback, which therefore grows without bound.
UNAVAILABLE = QuoteUnavailable("quotes are unavailable")


def quote(amount: int) -> Quote:
    """Build a quote, then fail with the shared exception instance."""
    current = Quote(amount)
    if current.amount >= 0:
        raise UNAVAILABLE
    return current


class Parcel:
    """A parcel that a depot's pool sorts."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.weight = number % 17 + 0.5


class NoDepotError(Exception):
    """A parcel that no depot accepts."""


PARCELS_PER_BATCH = 300


def _weigh(parcels: list[Parcel], index: int) -> float:
    if index < 0:
        raise NoDepotError("no depot for this parcel")
    return parcels[index].weight


def sort_parcels(fail: bool) -> float:
    """Weigh parcels on a thread pool fed from a queue; a failing parcel leaves the pool open.

    The end-of-feed marker and ``close()`` come after the results are read, so when reading
    raises, the pool's task handler waits for more work forever, holding the parcels, and its
    threads keep running.
    """
    parcels = [Parcel(number) for number in range(PARCELS_PER_BATCH)]
    feed: queue.Queue[int | None] = queue.Queue()
    pool = ThreadPool(2)
    weights = pool.imap(functools.partial(_weigh, parcels), iter(feed.get, None))
    indexes = [0, 1, -1 if fail else 2, 3]
    for index in indexes:
        feed.put(index)
    total = sum(next(weights) for _ in indexes)
    feed.put(None)
    pool.close()
    pool.join()
    return total


class Pricing:
    """A per-request pricing helper whose cached method keeps every instance alive."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.table = {tier: tier * 1.1 for tier in range(20)}

    @functools.cache  # noqa: B019 - the leak under test
    def price(self, tier: int) -> float:
        return self.table[tier % 20]


def price_for(region: str, tier: int) -> float:
    return Pricing(region).price(tier)


class AuditHandler(logging.Handler):
    """Collects a request's audit records."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_request_ids = itertools.count()


def audit(action: str) -> int:
    """Log through a logger named after the request: every logger and handler stays forever."""
    logger = logging.getLogger(f"mechanisms.audit.request{next(_request_ids)}")
    logger.propagate = False
    handler = AuditHandler()
    logger.addHandler(handler)
    logger.warning("audited")
    return len(handler.records)


order_placed = blinker.Signal("order-placed")


class OrderListener:
    """Per-request state that listens to a process-wide signal."""

    def __init__(self, order: int) -> None:
        self.order = order
        self.notes = [f"order {order}"]

    def on_order(self, sender: object, **extra: Any) -> None:
        self.notes.append("placed")


def place_order(order: int) -> int:
    """Connect a per-request listener with a strong reference and never disconnect it."""
    listener = OrderListener(order)
    order_placed.connect(listener.on_order, weak=False)
    return len(listener.notes)


class UserSession:
    """A user's session, created on the user's first request."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.cart: list[str] = []


#: Sessions by user name, never pruned: grows by one entry per new user.
SESSIONS: dict[str, UserSession] = {}


def session_for(user: str) -> int:
    session = SESSIONS.get(user)
    if session is None:
        session = SESSIONS[user] = UserSession(user)
    return len(session.cart)


class PluginMeta(type):
    """Registers every class made with it."""

    registry: dict[str, type] = {}  # noqa: RUF012 (the class attribute is the leak)

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        PluginMeta.registry[f"{cls.__module__}.{name}.{len(PluginMeta.registry)}"] = cls


class Plugin(metaclass=PluginMeta):
    """Base of the plugins."""

    options: dict[str, int] = {}  # noqa: RUF012 (shared by every subclass on purpose)


def make_plugin(size: int) -> int:
    """Create and register a class for one request's settings."""
    plugin = PluginMeta("RequestPlugin", (Plugin,), {"options": {"size": size}})
    return len(plugin.options)


class Subscriber:
    """Per-request state waiting for a start-up event that never comes."""

    def __init__(self, topic: int) -> None:
        self.topic = topic
        self.inbox: list[object] = []


#: A start-up future that is never completed: each callback added to it stays forever.
WARMED_UP: concurrent.futures.Future[None] = concurrent.futures.Future()


def _deliver(subscriber: Subscriber, future: concurrent.futures.Future[None]) -> None:
    subscriber.inbox.append(future.result())


def subscribe(topic: int) -> int:
    WARMED_UP.add_done_callback(functools.partial(_deliver, Subscriber(topic)))
    return topic


# -- look-alikes ------------------------------------------------------------------------------


PATTERN_KINDS = tuple(f"kind{number}" for number in range(20))


def parse_code(kind: str, code: str) -> bool:
    """Match with a pattern built from the input: fills ``re``'s bounded cache once per kind."""
    return re.match(rf"^{kind}-(\d+)$", code) is not None


class Rate:
    """An exchange rate, cached per currency."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.history = [1.0] * 8


CURRENCIES = ("EUR", "USD", "GBP", "JPY", "CHF", "SEK")


@functools.lru_cache(maxsize=16)
def rate_for(currency: str) -> Rate:
    return Rate(currency)


def split_url(number: int) -> str:
    """Split a URL that is new on every call: ``urllib.parse`` caches the last results (128 on
    Python 3.11 and later, 20 before), so every call retains its result for a while."""
    return urllib.parse.urlsplit(f"https://shop.test/items/{number}?ref=mail").path


class Catalog:
    """Built once, on first use, and kept for the life of the process."""

    def __init__(self) -> None:
        self.entries = {number: [number, number * 2] for number in range(300)}


_catalog: Catalog | None = None


def catalog_size() -> int:
    global _catalog  # noqa: PLW0603 (a lazily built singleton is the case under test)
    if _catalog is None:
        _catalog = Catalog()
    return len(_catalog.entries)


class Visit:
    """One visit, kept in a list that is emptied every `PRUNE_EVERY` visits."""

    def __init__(self, page: int) -> None:
        self.page = page


PRUNE_EVERY = 25
_visits: list[Visit] = []
_visits_lock = threading.Lock()


def record_visit(page: int) -> int:
    with _visits_lock:
        if len(_visits) >= PRUNE_EVERY:
            _visits.clear()
        _visits.append(Visit(page))
        return len(_visits)


_database = sqlite3.connect(":memory:", check_same_thread=False)
_database_lock = threading.Lock()


def query(number: int) -> int:
    """Run a query on a long-lived connection. The connection keeps a weak reference to each
    cursor and drops the dead ones every 200 cursors: a sawtooth, not a leak."""
    with _database_lock:
        row = _database.execute("select ? * 2", (number,)).fetchone()
    return int(row[0])


class Scratch:
    """A large temporary structure."""

    def __init__(self, number: int) -> None:
        self.values = [number] * 50


def spike(size: int) -> int:
    """Allocate a lot, use it, and free all of it before returning."""
    scratch = [Scratch(number) for number in range(size)]
    total = sum(len(item.values) for item in scratch)
    del scratch
    return total


class OutOfStock(Exception):
    """Turned into a 409 by the app's error handler."""


class Crash(Exception):
    """Not handled by the app: the framework answers 500."""


class RateLimited(Exception):
    """Caught by the view itself, which answers 429."""


class Batch:
    """A sync endpoint's work, alive while its worker thread holds the failure."""

    def __init__(self, size: int) -> None:
        self.items = [[number] for number in range(size)]


class BatchFailed(Exception):
    """A batch that cannot be processed."""


def reserve(item: int) -> None:
    raise OutOfStock(f"item {item} is out of stock")


def crash(item: int) -> None:
    raise Crash(f"cannot handle item {item}")


def throttled(client: int) -> bool:
    """Return whether the client is over its limit, by catching the limiter's own exception."""
    try:
        if client >= 0:
            raise RateLimited("too many requests")
    except RateLimited:
        return True
    return False


def process_batch(size: int) -> int:
    batch = Batch(size)
    if batch.items:
        raise BatchFailed("batch rejected")
    return 0
