"""The guppy3 engine: the exact reference, at a cost that grows with the whole heap.

``setrelheap()`` records every object reachable when the window opens; ``heap()`` at the end
collects garbage and returns what is reachable now and was not then. That sees every object,
strings and numbers included, but walks the entire heap twice: tens of milliseconds at 100k live
objects and seconds at millions. Use it for replay, tests and small services.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from leakware.naming import type_name
from leakware.retained import (
    Retained,
    exclusively_held,
    pick_witnesses,
    stack_frame_ids,
    summarise,
)

__all__ = ["GuppyEngine"]


class GuppyEngine:
    """Snapshot engine that diffs two guppy3 heap traversals."""

    name: ClassVar[str] = "guppy"
    blind_spots: ClassVar[tuple[str, ...]] = (
        "objects that are alive but unreachable from guppy's root, such as objects held only "
        "by a C extension",
        "on Python 3.11 and later guppy creates the __dict__ of instances it visits, so "
        "retained instances also show one retained dict each",
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

    __slots__ = ("_blocks", "_session", "_top_types")

    def __init__(self, session: Any, top_types: int) -> None:
        self._top_types = top_types
        self._session: Any = session
        session.setrelheap()
        self._blocks = sys.getallocatedblocks()

    def close(self, transient: list[object]) -> Retained:
        session = self._session
        if session is None:
            return Retained(expired=True)
        self._session = None
        heap = session.heap()
        net_blocks = sys.getallocatedblocks() - self._blocks
        referrers = _referrers_by_kind(heap, self._top_types)
        # guppy creates frame objects for the running stack; those are ours, not the request's.
        own = {id(transient), *map(id, transient), *stack_frame_ids()}
        objects = [obj for obj in heap.nodes if id(obj) not in own]
        del heap, session
        return _summarise(objects, transient, referrers, net_blocks)

    def abort(self) -> None:
        self._session = None


def _referrers_by_kind(heap: Any, top_types: int) -> dict[str, list[str]]:
    referrers: dict[str, list[str]] = {}
    for row in list(heap.bytype.partition.get_rows())[:top_types]:
        kinds = [str(kind.name) for kind in row.set.byrcs.partition.get_rows()]
        referrers[type_name(row.kind.arg)] = kinds[:5]
    return referrers


def _summarise(
    objects: list[object],
    transient: list[object],
    referrers: dict[str, list[str]],
    net_blocks: int,
) -> Retained:
    ids = set(map(id, objects))
    if transient:
        request_owned = exclusively_held(transient, lambda obj: id(obj) in ids, shared=1)
        kept = [obj for obj in objects if id(obj) not in request_owned]
        del request_owned
    else:
        kept = list(objects)
    objects.clear()
    total, total_bytes, stats, _ = summarise(kept)
    retained = Retained(
        objects=total,
        bytes=total_bytes,
        types=stats,
        referrers={name: kinds for name, kinds in referrers.items() if name in _names(stats)},
        net_blocks=net_blocks,
        witnesses=pick_witnesses(kept, stats),
    )
    del kept
    return retained


def _names(stats: list[Any]) -> set[str]:
    return {stat.type for stat in stats}
