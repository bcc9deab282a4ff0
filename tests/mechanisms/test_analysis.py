"""The in-process analysis: when witnesses are checked, what their checks make of a key, and
the leak events it writes."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_events

from leakware.events import Emitter
from leakware.faults import Faults
from leakware.naming import type_name
from leakware.retained import TypeStat, pick_witnesses
from leakware.settings import Settings
from leakware.stats import Sample
from leakware.verdicts import MAX_PENDING, Analysis


class Cart:
    """What the test routes retain."""


#: Carts kept for good by the leaking route.
KEPT: list[Cart] = []
#: The last cart only: each request replaces the one before.
LAST: list[Cart] = []
#: The last three carts: a bounded structure.
RECENT: deque[Cart] = deque(maxlen=3)

CART = type_name(Cart)


@pytest.fixture(autouse=True)
def _empty_holders() -> Iterator[None]:
    yield
    KEPT.clear()
    LAST.clear()
    RECENT.clear()


@pytest.fixture
def analysis(log_file: Path) -> Iterator[Analysis]:
    emitter = Emitter(str(log_file))
    settings = Settings(confirm_interval=3600.0, log_file=str(log_file))
    analysis = Analysis(settings, emitter, Faults(emitter))
    yield analysis
    analysis._closed = True
    emitter.close()


def _serve(analysis: Analysis, route: str, cart: Cart) -> None:
    """Report one sample of ``route`` that retained ``cart``, with a witness of it."""
    sample = Sample("GET", route, None, 200, 1, 64, ((CART, 1, 64),), 0, 0, 0)
    analysis.observe(sample, pick_witnesses([cart], [TypeStat(CART, 1, 64)]))


def _verdicts(log_file: Path, route: str) -> list[dict[str, Any]]:
    return [event for event in read_events(log_file, "leakware.verdict") if event["route"] == route]


def test_witness_checked_after_next_sample(analysis: Analysis) -> None:
    """A sample's witnesses are checked only once a later sample of the key arrived."""
    cart = Cart()
    KEPT.append(cart)
    _serve(analysis, "/keep", cart)
    analysis.run_pass()
    totals = analysis._keys[("GET", "/keep", None)].types[CART]

    assert totals.confirmed == 0

    KEPT.append(Cart())
    _serve(analysis, "/keep", KEPT[-1])
    analysis.run_pass()

    assert totals.confirmed == 1


def test_kept_carts_leak(analysis: Analysis, log_file: Path) -> None:
    """Carts kept for good become one leak event, with the module list as their holder."""
    for _ in range(6):
        KEPT.append(Cart())
        _serve(analysis, "/keep", KEPT[-1])
        analysis.run_pass()
    analysis.run_pass()
    leaks = read_events(log_file, "leakware.leak")

    assert len(leaks) == 1
    assert leaks[0]["verdict"] == "leak"
    assert leaks[0]["type"] == CART
    assert leaks[0]["retention_path"] == [f"module {__name__}", "list", CART]
    assert leaks[0]["type_stats"][0] == {
        "type": CART, "objects_per_request": 1.0, "bytes_per_request": 64.0
    }


def test_replaced_cart_clean(analysis: Analysis, log_file: Path) -> None:
    """A cart that the next request replaces is freed when checked: not a leak."""
    for _ in range(6):
        LAST[:] = [Cart()]
        _serve(analysis, "/last", LAST[0])
        analysis.run_pass()

    assert _verdicts(log_file, "/last")[-1]["verdict"] == "clean"
    assert read_events(log_file, "leakware.leak") == []


def test_bounded_structure_clean(analysis: Analysis, log_file: Path) -> None:
    """Carts that a bounded structure evicts after a while are counted evicted: not a leak."""
    for _ in range(24):
        RECENT.append(Cart())
        _serve(analysis, "/recent", RECENT[-1])
        analysis.run_pass()
    totals = analysis._keys[("GET", "/recent", None)].types[CART]

    assert totals.evicted >= 2
    assert _verdicts(log_file, "/recent")[-1]["verdict"] == "clean"


def test_pending_witnesses_bounded(analysis: Analysis) -> None:
    """Without passes, a key holds at most `MAX_PENDING` witnesses waiting for a check."""
    for _ in range(MAX_PENDING * 2):
        KEPT.append(Cart())
        _serve(analysis, "/keep", KEPT[-1])

    assert len(analysis._pending[("GET", "/keep", None)]) <= MAX_PENDING


def test_close_publishes_every_key(analysis: Analysis, log_file: Path) -> None:
    """The last pass, at exit, writes a verdict for every key, changed or not."""
    for route in ("/a", "/b"):
        _serve(analysis, route, Cart())
    before = len(read_events(log_file, "leakware.verdict"))

    analysis.close()
    after = read_events(log_file, "leakware.verdict")

    assert len(after) == before + 2
    assert {event["route"] for event in after[before:]} == {"/a", "/b"}
