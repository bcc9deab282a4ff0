"""Retention paths: from which root, and through which holders, a leaked object is reached."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from types import TracebackType

import pytest

from leakware.paths import NO_ROOT, retention_path

MODULE = __name__


class Order:
    """A leaked object."""

    def __init__(self, number: int) -> None:
        self.number = number


class OrderError(Exception):
    """Raised while an order is handled."""


class Registry:
    """Keeps orders in a class attribute."""

    orders: list[Order] = []  # noqa: RUF012 (the class attribute is the leak)


_BY_CUSTOMER: dict[str, Order] = {}
_FAILURES: list[tuple[type[BaseException], BaseException, TracebackType]] = []
_CLASSES: list[type] = []
_NESTED: list[object] = []


@pytest.fixture(autouse=True)
def _empty_roots() -> Iterator[None]:
    yield
    _BY_CUSTOMER.clear()
    _FAILURES.clear()
    _CLASSES.clear()
    _NESTED.clear()
    Registry.orders.clear()


def _fail(order: Order) -> None:
    raise OrderError("no stock")


def _store_failure(number: int) -> None:
    order = Order(number)
    try:
        _fail(order)
    except OrderError:
        _FAILURES.append(sys.exc_info())  # type: ignore[arg-type]


def _target(kind: type) -> object:
    # The leaked object is found by type, so that no local of the test refers to it before the
    # search starts.
    import gc

    return next(obj for obj in gc.get_objects() if type(obj) is kind)


def test_path_module_global() -> None:
    """A module global dict is the root, and the dict the step before the object."""
    _BY_CUSTOMER["customer"] = Order(1)

    path = retention_path(_target(Order))

    assert path == [f"module {MODULE}", "dict", f"{MODULE}.Order"]


def test_path_through_stored_traceback() -> None:
    """Frames kept by a stored traceback are steps on the path, named by their function."""
    _store_failure(2)

    path = retention_path(_target(Order))

    assert path[0] == f"module {MODULE}"
    assert path[1:4] == ["list", "tuple", "traceback"]
    assert "frame _store_failure" in path
    assert path[-1] == f"{MODULE}.Order"


def test_path_class_attribute() -> None:
    """A class defined at module level is a root for what its attributes hold."""
    Registry.orders.append(Order(3))

    path = retention_path(_target(Order))

    assert path[0] == f"class {MODULE}.Registry"
    assert path[-2:] == ["list", f"{MODULE}.Order"]


def test_path_runtime_class_not_root() -> None:
    """A class created at run time is not its own root; the list that keeps it is."""
    _CLASSES.append(type("Plugin", (Order,), {}))

    path = retention_path(next(cls for cls in _CLASSES))

    assert path == [f"module {MODULE}", "list", "type"]


def test_path_thread_local() -> None:
    """An object in a local of a function running on another thread is reached through the
    thread and the frame."""
    ready = threading.Event()
    release = threading.Event()

    def hold() -> None:
        order = Order(4)
        ready.set()
        release.wait(10)
        del order

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        ready.wait(10)
        path = retention_path(_target(Order))
    finally:
        release.set()
        thread.join()

    assert path == ["Thread", "frame hold", f"{MODULE}.Order"]


def test_path_repeated_steps_collapsed() -> None:
    """A run of equal steps becomes one step marked as repeated."""
    nested: list[object] = [Order(5)]
    for _ in range(6):
        nested = [nested]
    _NESTED.append(nested)
    del nested

    path = retention_path(_target(Order))

    assert path == [f"module {MODULE}", "list (repeated)", f"{MODULE}.Order"]


def test_path_no_root() -> None:
    """An object that only this thread's own frames hold has no root."""
    order = Order(6)

    path = retention_path(order)

    assert path[0] == NO_ROOT
    assert path[-1] == f"{MODULE}.Order"


def test_path_names_no_values() -> None:
    """Steps carry type, module, class and function names, never keys or values."""
    _BY_CUSTOMER["alice@example.test"] = Order(7)

    path = retention_path(_target(Order))

    assert not any("alice" in step or "7" in step for step in path)
