"""Snapshot engines: each is one way to learn what a measurement window retained.

The core opens a window right before the app handles a sampled request and closes it when the
response is finished. An engine returns a `~leakware.retained.Retained` summary and never a
strong reference to a measured object.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from leakware.retained import Retained

__all__ = ["Engine", "Window", "make_engine"]


class Window(Protocol):
    """One open measurement window."""

    def close(self, transient: list[object]) -> Retained:
        """End the window and summarise what it retained.

        ``transient`` lists objects that belong to the request itself (its environ or scope):
        whatever only they keep alive dies with the request and is not counted.
        """

    def abort(self) -> None:
        """End the window without measuring, restoring everything the engine changed."""


class Engine(Protocol):
    """A snapshot technique."""

    #: The value of ``LEAKWARE_ENGINE`` that selects this engine.
    name: ClassVar[str]
    #: What this engine cannot see, in plain words.
    blind_spots: ClassVar[tuple[str, ...]]

    def open(self) -> Window:
        """Start a window. Only one window is open per process at a time."""


def make_engine(name: str, *, top_types: int, trace_frames: int) -> Engine:
    """Return the engine that ``LEAKWARE_ENGINE`` calls ``name``."""
    if name == "guppy":
        from leakware.engines.guppy import GuppyEngine

        return GuppyEngine(top_types=top_types)
    if name == "tracemalloc":
        from leakware.engines.trace import TraceEngine

        return TraceEngine(top_types=top_types, frames=trace_frames)
    from leakware.engines.young import YoungEngine

    return YoungEngine(top_types=top_types)
