"""The tracemalloc engine: the young-generation window plus the source lines that allocated.

tracemalloc is started when the window opens and stopped when it closes, so only the measured
request pays for tracing (5 to 7 times slower with one frame per allocation on CPython 3.11).
It sees what the young engine cannot, strings and numbers included, as retained blocks per
source line. When the app already runs tracemalloc, leakware never starts or stops it, and the
window reports no sites.

A site counts every block allocated inside the window and still allocated when it ends, after a
collection. That includes blocks that the request's own environ or scope still holds, which are
freed with the request, and the memory of objects the young engine also counts.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from typing import ClassVar

from leakware.engines.young import YoungEngine, YoungSnapshot, YoungWindow
from leakware.retained import Retained, Site

__all__ = ["TraceEngine"]

#: Allocation sites listed per window.
MAX_SITES = 10

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TraceEngine:
    """Snapshot engine that adds retained allocation sites to the young-generation summary."""

    name: ClassVar[str] = "tracemalloc"
    blind_spots: ClassVar[tuple[str, ...]] = (
        *YoungEngine.blind_spots[1:],
        "allocation sites are missing when the app itself already runs tracemalloc",
    )
    blind_spot_codes: ClassVar[tuple[str, ...]] = YoungEngine.blind_spot_codes[1:]

    def __init__(self, *, top_types: int, frames: int) -> None:
        self._young = YoungEngine(top_types=top_types)
        self._frames = frames

    def open(self) -> TraceWindow:
        return TraceWindow(self._young, self._frames)


class TraceWindow:
    """One window of the tracemalloc engine."""

    __slots__ = ("_ours", "_young")

    def __init__(self, young: YoungEngine, frames: int) -> None:
        self._ours = not tracemalloc.is_tracing()
        if self._ours:
            tracemalloc.start(frames)
        try:
            self._young: YoungWindow = young.open()
        except BaseException:
            self._stop()
            raise

    def stop(self) -> TraceSnapshot:
        try:
            young = self._young.stop()
            traces = tracemalloc.take_snapshot() if self._ours else None
        finally:
            self._stop()
        return TraceSnapshot(young, traces)

    def abort(self) -> None:
        try:
            self._young.abort()
        finally:
            self._stop()

    def _stop(self) -> None:
        if self._ours:
            self._ours = False
            tracemalloc.stop()


class TraceSnapshot:
    """A young-generation snapshot plus the traces of blocks still allocated."""

    __slots__ = ("_traces", "_young")

    def __init__(self, young: YoungSnapshot, traces: tracemalloc.Snapshot | None) -> None:
        self._young = young
        self._traces = traces

    def summarise(self, transient: list[object]) -> Retained:
        retained = self._young.summarise(transient)
        if retained.expired:
            return retained
        if self._traces is None:
            # The app traces: types are all there is, with the young engine's blind spots.
            retained.blind_spots = [*YoungEngine.blind_spot_codes, "app_traces"]
        else:
            retained.sites = _sites(self._traces)
            self._traces = None
            retained.blind_spots = list(TraceEngine.blind_spot_codes)
        return retained


def _sites(snapshot: tracemalloc.Snapshot) -> list[Site]:
    excluded = [tracemalloc.__file__, os.path.join(_PACKAGE_DIR, "*")]
    guppy = sys.modules.get("guppy")
    guppy_file = getattr(guppy, "__file__", None)
    if guppy_file:
        # guppy3, when loaded, replaces a callback object on every collection, including the
        # one that ends the window.
        excluded.append(os.path.join(os.path.dirname(os.path.abspath(guppy_file)), "*"))
    own = snapshot.filter_traces([tracemalloc.Filter(False, pattern) for pattern in excluded])
    sites: list[Site] = []
    for stat in own.statistics("lineno")[:MAX_SITES]:
        frame = stat.traceback[0]
        sites.append(Site(frame.filename, frame.lineno, stat.count, stat.size))
    return sites
