"""Snapshot engines called directly: what each window counts, what it reports it cannot see, and
the collector and tracemalloc state it leaves behind."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import GUPPY_SAFE

from leakware.engines import ENGINE_NAMES, make_engine
from leakware.engines.guppy import GuppyEngine
from leakware.engines.trace import TraceEngine
from leakware.engines.young import YoungEngine
from leakware.naming import type_name
from leakware.retained import OLDER_OBJECT, Retained, exclusively_held, name_referrers

#: Objects created before any window, standing for the app's long-lived state.
OLDER: list[Any] = []
STORED: dict[str, Any] = {}


class Order:
    """A retained app object: an instance with a list and atoms."""

    def __init__(self, number: int) -> None:
        self.number = number + 100_000
        self.label = f"order-{number}"
        self.lines = [number, number + 1]


ORDER = type_name(Order)


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """Each test starts with empty app state and no frozen objects of its own."""
    OLDER.clear()
    STORED.clear()
    yield
    OLDER.clear()
    STORED.clear()


def measure(
    engine: Any, request: Callable[[], object], transient: list[object] | None = None
) -> Retained:
    """Run ``request`` inside one window of ``engine`` and summarise it."""
    window = engine.open()
    request()
    snapshot = window.stop()
    return snapshot.summarise(transient if transient is not None else [])


def counts(retained: Retained) -> dict[str, int]:
    return {stat.type: stat.objects for stat in retained.types}


def leak_orders(count: int = 50) -> None:
    OLDER.extend(Order(number) for number in range(count))


def leak_strings(count: int = 3000) -> None:
    OLDER.extend(f"customer-{number}-{id(OLDER)}" for number in range(count))


def leak_exc_info() -> None:
    orders = [Order(number) for number in range(20)]
    try:
        raise LookupError(f"{len(orders)} orders without stock")
    except LookupError:
        STORED["error"] = sys.exc_info()


# -- engine selection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("young", YoungEngine),
        pytest.param("guppy", GuppyEngine, marks=GUPPY_SAFE),
        ("tracemalloc", TraceEngine),
    ],
)
def test_make_engine_by_name(name: str, cls: type) -> None:
    """Each accepted name selects its engine, which states its blind spots in words and codes."""
    engine = make_engine(name, top_types=5, trace_frames=1)

    assert isinstance(engine, cls)
    assert engine.name == name
    assert engine.blind_spots
    assert engine.blind_spot_codes
    assert name in ENGINE_NAMES


def test_make_engine_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown snapshot engine 'heapy'"):
        make_engine("heapy", top_types=5, trace_frames=1)


# -- young engine ---------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["none frozen", "app froze"])
def app_froze(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Whether the app froze its objects before the window (the pre-fork pattern)."""
    if request.param:
        gc.collect()
        gc.freeze()
    try:
        yield bool(request.param)
    finally:
        if request.param:
            gc.unfreeze()


def test_young_counts_retained_containers(app_froze: bool) -> None:
    """Instances and lists kept by an older list are counted exactly, in both window modes."""
    retained = measure(YoungEngine(top_types=5), leak_orders)

    found = counts(retained)
    assert found[ORDER] == 50
    assert found["list"] == 50
    assert retained.referrers[ORDER] == [OLDER_OBJECT]


def test_young_counts_untracked_held_by_retained(app_froze: bool) -> None:
    """Strings and large ints that only retained containers hold are counted as untracked."""
    retained = measure(YoungEngine(top_types=5), leak_orders)

    found = counts(retained)
    assert found["str"] == 50
    assert found["int"] >= 50
    assert retained.untracked_objects == found["str"] + found["int"]
    assert retained.untracked_bytes > 0


def test_young_reports_what_it_cannot_see() -> None:
    """Strings kept by an older list are invisible to the young engine: the event still shows
    the allocated blocks and names the blind spot."""
    retained = measure(YoungEngine(top_types=5), leak_strings)

    assert retained.objects == 0
    assert retained.net_blocks >= 1500
    assert "untracked_held_by_older" in retained.blind_spots


def test_young_without_block_count() -> None:
    """An engine that skips the block count says so instead of reporting zero blocks."""
    retained = measure(YoungEngine(top_types=5, count_blocks=False), leak_strings)

    assert retained.net_blocks == 0
    assert "blocks_not_counted" in retained.blind_spots


def test_young_leaves_gc_state(app_froze: bool) -> None:
    """The app's frozen objects stay frozen, and collection is enabled again after the window."""
    frozen = gc.get_freeze_count()

    window = YoungEngine(top_types=5).open()
    leak_orders()
    window.stop()

    assert gc.get_freeze_count() == frozen
    assert gc.isenabled()


def test_young_keeps_gc_disabled_by_app(app_froze: bool) -> None:
    gc.disable()
    try:
        measure(YoungEngine(top_types=5), leak_orders)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_young_unfrozen_before_referrer_search() -> None:
    """When stop() returns, gc.get_referrers() sees older referrers again."""
    window = YoungEngine(top_types=5).open()
    leak_orders(1)
    window.stop()

    holders = gc.get_referrers(OLDER[0])
    assert any(holder is OLDER for holder in holders)


def test_young_abort_from_other_thread(app_froze: bool) -> None:
    """An expired window is aborted by another request's thread and restores the collector."""
    frozen = gc.get_freeze_count()
    window = YoungEngine(top_types=5).open()

    aborter = threading.Thread(target=window.abort)
    aborter.start()
    aborter.join()
    leak_orders()
    retained = window.stop().summarise([])

    assert retained.expired
    assert gc.get_freeze_count() == frozen
    assert gc.isenabled()


def test_young_exc_info_in_global() -> None:
    """A stored exc_info keeps the exception, its traceback, the frame and its locals."""
    retained = measure(YoungEngine(top_types=10), leak_exc_info)

    found = counts(retained)
    assert found["LookupError"] == 1
    assert found["traceback"] == 1
    assert found[ORDER] == 20
    assert found["frame"] >= 1


def test_young_request_owned_not_counted() -> None:
    """Objects that only the request's environ holds die with it and are not counted."""
    environ: dict[str, Any] = {"PATH_INFO": "/orders"}

    def handle() -> None:
        environ["app.orders"] = [Order(number) for number in range(10)]
        leak_orders(3)

    retained = measure(YoungEngine(top_types=5), handle, [environ])

    assert counts(retained)[ORDER] == 3


def test_young_witnesses_are_weak() -> None:
    """Witnesses tell whether a retained object is alive without keeping it alive."""
    retained = measure(YoungEngine(top_types=5), leak_orders)
    order_witnesses = [w for w in retained.witnesses if w.type == ORDER]

    assert len(order_witnesses) == 2
    assert all(witness.alive_by_reference() for witness in order_witnesses)
    OLDER.clear()
    assert not any(witness.alive_by_reference() for witness in order_witnesses)


# -- guppy engine ---------------------------------------------------------------------------


@GUPPY_SAFE
def test_guppy_sees_strings() -> None:
    retained = measure(GuppyEngine(top_types=5), lambda: leak_strings(300))

    assert counts(retained)["str"] == 300
    assert retained.referrers["str"] == [OLDER_OBJECT]
    assert "unreachable_from_root" in retained.blind_spots


@GUPPY_SAFE
def test_guppy_leaves_gc_state(app_froze: bool) -> None:
    frozen = gc.get_freeze_count()

    retained = measure(GuppyEngine(top_types=5), leak_orders)

    assert counts(retained)[ORDER] == 50
    assert gc.get_freeze_count() == frozen
    assert gc.isenabled()


@GUPPY_SAFE
def test_guppy_own_objects_not_counted() -> None:
    """guppy's frames and the window's own block count are not the request's."""
    engine = GuppyEngine(top_types=5)
    measure(engine, lambda: None)
    retained = measure(engine, lambda: None)

    assert "frame" not in counts(retained)
    # What remains is guppy's cache entries for the classes of its new session: a weak
    # reference and its integer keys, sometimes a dict.
    assert retained.objects <= 8


# -- tracemalloc engine ---------------------------------------------------------------------


@pytest.fixture(
    params=[False, pytest.param(True, marks=GUPPY_SAFE)], ids=["without guppy", "guppy loaded"]
)
def guppy_loaded(request: pytest.FixtureRequest) -> bool:
    """With guppy3 loaded and used once, its collection hooks are active in the process."""
    if request.param:
        from guppy import hpy

        hpy().heap()
    return bool(request.param)


def test_tracemalloc_sites_name_leak_line(guppy_loaded: bool) -> None:
    """Retained strings, invisible to the type counts, show up at the line that built them."""
    assert not tracemalloc.is_tracing()

    retained = measure(TraceEngine(top_types=5, frames=1), leak_strings)

    leak_line = leak_strings.__code__.co_firstlineno + 1
    top = retained.sites[0]
    assert (top.file, top.line) == (__file__, leak_line)
    assert top.blocks >= 3000
    assert all("guppy" not in site.file for site in retained.sites)
    assert not tracemalloc.is_tracing()


def test_tracemalloc_traces_only_inside_window() -> None:
    engine = TraceEngine(top_types=5, frames=3)
    tracing: list[bool] = []

    measure(engine, lambda: tracing.append(tracemalloc.is_tracing()))

    assert tracing == [True]
    assert not tracemalloc.is_tracing()


def test_tracemalloc_app_tracing_untouched() -> None:
    """When the app already traces, the window neither restarts nor stops tracemalloc, reports
    no sites, and says so."""
    tracemalloc.start(7)
    try:
        retained = measure(TraceEngine(top_types=5, frames=1), leak_orders)

        assert tracemalloc.is_tracing()
        assert tracemalloc.get_traceback_limit() == 7
        assert retained.sites == []
        assert "app_traces" in retained.blind_spots
        assert counts(retained)[ORDER] == 50
    finally:
        tracemalloc.stop()


# -- shared helpers -------------------------------------------------------------------------


def test_exclusively_held_skips_shared() -> None:
    """An object that something outside the roots also refers to is not held."""
    shared = [1]
    root: list[Any] = [shared, [[2]]]

    held = exclusively_held([root], lambda batch: batch, shared=0)

    assert id(root[1]) in held
    assert id(root[1][0]) in held
    assert id(shared) not in held


def test_name_referrers_older_holder() -> None:
    """Objects that no retained object refers to are attributed to an older object."""
    inner = [Order(1)]
    loose = Order(2)
    objects: list[object] = [inner, inner[0], loose]

    referrers = name_referrers(objects, objects, [Order])

    assert referrers[ORDER] == ["list", OLDER_OBJECT]
