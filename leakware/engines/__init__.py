"""Snapshot engines: each is one way to learn what a measurement window retained.

The core calls `Engine.open` right before the app handles a sampled request, `Window.stop` when
the response is finished, and `Snapshot.summarise` right after. Only one window is open per
process at a time, and the core holds its window lock from `Engine.open` until `summarise` has
returned. `Window.abort` may be called from another thread instead of `Window.stop`, when the
window outlived ``max_window_seconds``. An engine returns a `~leakware.retained.Retained` summary
and never a strong reference to a measured object.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from leakware.retained import Retained

__all__ = ["ENGINE_NAMES", "Engine", "Snapshot", "Window", "make_engine"]


class Snapshot(Protocol):
    """What a window found when it ended, before it is summarised."""

    def summarise(self, transient: list[object]) -> Retained:
        """Summarise what the window retained.

        Runs after the window ended, with the garbage collector and tracemalloc already as the
        app had them, so any referrer search may run here. Its cost grows with what the request
        retained, never with the size of the heap.

        ``transient`` lists objects that belong to the request itself (its environ or scope):
        whatever only they keep alive dies with the request and is not counted.
        """


class Window(Protocol):
    """One open measurement window."""

    def stop(self) -> Snapshot:
        """End the window and take what it retained. When this returns, the heap and the
        collector are as they were before the window opened."""

    def abort(self) -> None:
        """End the window without measuring, restoring everything the engine changed."""


class Engine(Protocol):
    """A snapshot technique."""

    #: The value of ``LEAKWARE_ENGINE`` that selects this engine.
    name: ClassVar[str]
    #: What this engine cannot see, in plain words.
    blind_spots: ClassVar[tuple[str, ...]]
    #: The same blind spots as short codes, for the ``blind_spots`` key of sample events.
    blind_spot_codes: ClassVar[tuple[str, ...]]

    def open(self) -> Window:
        """Start a window. Only one window is open per process at a time."""


#: Accepted values of ``LEAKWARE_ENGINE``.
ENGINE_NAMES = ("young", "guppy", "tracemalloc")


def make_engine(name: str, *, top_types: int, trace_frames: int) -> Engine:
    """Return the engine that ``LEAKWARE_ENGINE`` calls ``name``.

    Raises:
        ValueError: ``name`` is not one of `ENGINE_NAMES`.
        ImportError: the guppy engine was requested and guppy3 cannot be imported.
    """
    if name not in ENGINE_NAMES:
        msg = f"unknown snapshot engine {name!r}; expected one of {', '.join(ENGINE_NAMES)}"
        raise ValueError(msg)
    if name == "guppy":
        from leakware.engines.guppy import GuppyEngine

        return GuppyEngine(top_types=top_types)
    if name == "tracemalloc":
        from leakware.engines.trace import TraceEngine

        return TraceEngine(top_types=top_types, frames=trace_frames)
    from leakware.engines.young import YoungEngine

    return YoungEngine(top_types=top_types)
