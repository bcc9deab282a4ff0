"""The guppy3 engine: the exact reference, at a cost that grows with the whole heap.

``setrelheap()`` records every object reachable when the window opens; ``heap()`` at the end
collects garbage and returns what is reachable now and was not then. That sees every object,
strings and numbers included, but walks the entire heap twice: tens of milliseconds at 100k live
objects and seconds at millions. Use it for replay, tests and small services.

Between the two traversals the heap is frozen with ``gc.freeze()``, unless the app froze objects
itself. Otherwise the set of every reachable object that ``setrelheap()`` builds sits in the
youngest generation, and each of the first collections during the request walks all of it.
Frozen, the request runs at its normal speed, and the collection that ``heap()`` starts with
walks only the window's objects.

Referrers are named from the retained objects themselves, as in the young engine. guppy's own
``byrcs`` would name older referrers too, but it builds the referrer graph of the whole heap,
which costs about as much as the two traversals together.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from types import FrameType
from typing import Any, ClassVar

from leakware.retained import (
    Retained,
    exclusively_held,
    name_referrers,
    pick_witnesses,
    stack_frame_ids,
    summarise,
)

__all__ = ["GuppyEngine", "GuppySnapshot"]



class GuppyEngine:
    """Snapshot engine that diffs two guppy3 heap traversals."""

    name: ClassVar[str] = "guppy"
    blind_spots: ClassVar[tuple[str, ...]] = (
        "objects that are alive but unreachable from guppy's root, such as objects held only "
        "by a C extension",
        "on Python 3.11 and later guppy creates the __dict__ of instances it visits, so "
        "retained instances also show one retained dict each",
        "allocations by other threads or tasks during the window are counted with the request",
    )
    blind_spot_codes: ClassVar[tuple[str, ...]] = (
        "unreachable_from_root",
        "materialised_dicts",
        "other_threads",
    )

    def __init__(self, *, top_types: int) -> None:
        self._top_types = top_types
        # Imported here so that the default engine never loads guppy3.
        from guppy import hpy

        self._hpy = hpy

    def open(self) -> GuppyWindow:
        return GuppyWindow(self._hpy(), self._top_types)


class GuppyWindow:
    """One window of the guppy3 engine; it owns a fresh guppy session.

    A session memoizes referrer graphs that hold strong references to heap objects, so each
    window gets its own session and drops it when it closes.
    """

    __slots__ = ("_blocks", "_frozen", "_session", "_top_types")

    def __init__(self, session: Any, top_types: int) -> None:
        self._top_types = top_types
        self._session: Any = session
        # A list allocated before the reference heap is taken, so that the block count stored
        # in it after is the only object the window itself adds.
        self._blocks = [0]
        session.setrelheap()
        self._blocks[0] = sys.getallocatedblocks()
        self._frozen = gc.get_freeze_count() == 0
        if self._frozen:
            gc.freeze()

    def stop(self) -> GuppySnapshot:
        session = self._session
        if session is None:
            return GuppySnapshot(None, 0, self._top_types, set())
        self._session = None
        try:
            heap = session.heap()
        finally:
            self._thaw()
        net_blocks = sys.getallocatedblocks() - self._blocks[0]
        # guppy materialises the frames of the stack it runs on: this call's callers, and its
        # own frames, which the result keeps alive.
        own = {id(self._blocks[0]), *stack_frame_ids()}
        return GuppySnapshot(heap, net_blocks, self._top_types, own)

    def abort(self) -> None:
        self._session = None
        self._thaw()

    def _thaw(self) -> None:
        if self._frozen:
            self._frozen = False
            gc.unfreeze()


class GuppySnapshot:
    """The objects guppy3 found new at the end of a window, held until they are summarised."""

    __slots__ = ("_heap", "_net_blocks", "_own", "_top_types")

    def __init__(self, heap: Any, net_blocks: int, top_types: int, own: set[int]) -> None:
        self._heap = heap
        self._net_blocks = net_blocks
        self._top_types = top_types
        #: Ids of objects the window created for itself.
        self._own = own

    def summarise(self, transient: list[object]) -> Retained:
        heap = self._heap
        self._heap = None
        if heap is None:
            return Retained(expired=True)
        own = {id(transient), *map(id, transient), *stack_frame_ids(), *self._own}
        objects = [
            obj for obj in heap.nodes if id(obj) not in own and not _guppy_frame(obj)
        ]
        del heap
        return _summarise(objects, transient, self._top_types, self._net_blocks)


def _guppy_frame(obj: object) -> bool:
    return isinstance(obj, FrameType) and obj.f_code.co_filename.startswith(_guppy_dir())


@functools.cache
def _guppy_dir() -> str:
    import guppy

    return os.path.dirname(os.path.abspath(str(guppy.__file__)))


def _summarise(
    objects: list[object], transient: list[object], top_types: int, net_blocks: int
) -> Retained:
    ids = set(map(id, objects))
    if transient:
        request_owned = exclusively_held(
            transient, lambda batch: [obj for obj in batch if id(obj) in ids], shared=1
        )
        kept = [obj for obj in objects if id(obj) not in request_owned]
        del request_owned
    else:
        kept = list(objects)
    objects.clear()
    total, total_bytes, stats, classes = summarise(kept)
    retained = Retained(
        objects=total,
        bytes=total_bytes,
        types=stats,
        referrers=name_referrers(kept, kept, classes[:top_types]),
        net_blocks=net_blocks,
        witnesses=pick_witnesses(kept, stats),
        blind_spots=list(GuppyEngine.blind_spot_codes),
    )
    del kept
    return retained
