"""The young-generation engine: measure only what the window allocated, at a cost flat in heap size.

``gc.freeze()`` moves every tracked object into the permanent generation, so when the window
closes, ``gc.collect()`` walks only the objects created since, and ``gc.get_objects()`` lists
exactly the tracked objects the request created that are still alive. ``gc.unfreeze()`` then
returns the old objects to the oldest generation.

``gc.unfreeze()`` cannot tell the app's frozen objects from ours, so when the app has frozen
objects itself (the pre-fork pattern) the window uses the generations instead: it empties the
young generations, pauses automatic collection, and at the end collects generation 0 and reads
the survivors from generation 1. The permanent generation is never touched in that mode.
"""

from __future__ import annotations

import gc
import sys
from typing import ClassVar

from leakware.retained import (
    Retained,
    exclusively_held,
    name_referrers,
    pick_witnesses,
    stack_frame_ids,
    summarise,
)

__all__ = ["YoungEngine", "summarise_young"]


class YoungEngine:
    """Snapshot engine over the objects created inside the window."""

    name: ClassVar[str] = "young"
    blind_spots: ClassVar[tuple[str, ...]] = (
        "objects the garbage collector does not track (str, int, float, bytes, tuples and "
        "dicts of atoms), unless a retained container is their only holder",
        "allocations by other threads or tasks during the window are counted with the request",
        "an older dict of atoms that receives a container during the window counts as retained",
    )

    def __init__(self, *, top_types: int) -> None:
        self._top_types = top_types

    def open(self) -> YoungWindow:
        return YoungWindow(self._top_types)


class YoungWindow:
    """One window of the young-generation engine."""

    __slots__ = ("_app_frozen", "_blocks", "_closed", "_gc_enabled", "_top_types")

    def __init__(self, top_types: int) -> None:
        self._top_types = top_types
        self._closed = False
        self._gc_enabled = gc.isenabled()
        self._app_frozen = gc.get_freeze_count() > 0
        if self._app_frozen:
            gc.collect(1)
            gc.disable()
        self._blocks = sys.getallocatedblocks()
        if not self._app_frozen:
            gc.freeze()

    def close(self, transient: list[object]) -> Retained:
        if self._closed:
            return Retained(expired=True)
        self._closed = True
        try:
            if self._app_frozen:
                gc.collect(0)
                young = gc.get_objects(generation=1)
            else:
                gc.collect()
                young = gc.get_objects()
            net_blocks = sys.getallocatedblocks() - self._blocks
        finally:
            self._restore()
        retained = summarise_young(young, transient, self._top_types)
        retained.net_blocks = net_blocks
        return retained

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._restore()

    def _restore(self) -> None:
        if self._app_frozen:
            if self._gc_enabled:
                gc.enable()
        else:
            gc.unfreeze()


def summarise_young(young: list[object], transient: list[object], top_types: int) -> Retained:
    """Summarise the survivors of a window, leaving out what only the request itself holds.

    ``young`` must be the only other holder of each survivor: the caller passes the list from
    ``gc.get_objects()`` and keeps no other reference.
    """
    young_ids = set(map(id, young))
    # The roots themselves, the list that carries them and the frames running right now (on
    # Python 3.10 every call has a tracked frame object) belong to this measurement.
    own = {id(transient), *map(id, transient), *stack_frame_ids()}
    young[:] = [obj for obj in young if id(obj) not in own]
    if transient:
        # The request's environ or scope is still alive when the window closes; objects that
        # only it keeps alive (the framework's request object, path parameters) die with it.
        request_owned = exclusively_held(transient, lambda obj: id(obj) in young_ids, shared=1)
        kept = [obj for obj in young if id(obj) not in request_owned]
        del request_owned
    else:
        kept = list(young)
    young.clear()

    # Strings, numbers and atom-only containers are invisible to gc.get_objects(); count the
    # ones that retained containers are the only holders of, since they are retained too.
    untracked = exclusively_held(kept, _untracked, shared=0)
    untracked_objects = list(untracked.values())
    untracked.clear()
    _, untracked_bytes, _, _ = summarise(untracked_objects)

    total, total_bytes, stats, ids = summarise([*kept, *untracked_objects])
    retained = Retained(
        objects=total,
        bytes=total_bytes,
        types=stats,
        referrers=name_referrers(kept, ids, top_types),
        untracked_objects=len(untracked_objects),
        untracked_bytes=untracked_bytes,
        witnesses=pick_witnesses(kept, stats),
    )
    del kept, untracked_objects
    return retained


def _untracked(obj: object) -> bool:
    return not gc.is_tracked(obj)
