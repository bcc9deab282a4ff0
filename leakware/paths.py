"""Retention paths: the chain of referrer types from a root to a leaked object.

A path reads from the root to the leak, for example
``module shop.cache → dict → list → shop.models.Order`` or
``Thread → frame → multiprocessing.pool.IMapIterator → collections.deque → shop.Vehicle``.
Only type, module and function names appear in it, never values.

Every step back is a pass over the whole heap (``gc.get_referrers``), tens of milliseconds on a
large heap, so paths are computed off the request path, once per leak, while no window is open.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from types import FrameType, ModuleType

from leakware.naming import type_name

__all__ = ["retention_path"]

#: Steps searched back from the leaked object before giving up.
MAX_DEPTH = 32
#: Seconds a search may take; each step is a pass over the heap.
TIME_BUDGET = 5.0
#: Objects kept per step of the backward search.
MAX_FRONTIER = 256


def retention_path(target: object) -> list[str]:
    """Return the names along the shortest chain of references from a root to ``target``.

    Roots are module globals, the stacks of running threads, and classes. When no root is found
    within `MAX_DEPTH` steps, the path starts with the oldest referrer found.
    """
    modules = _module_dicts()
    frames = _thread_frames()
    # Breadth-first search backwards. `parent` maps an object's id to the id of the object it
    # refers to, one step closer to the target.
    parent: dict[int, int] = {}
    labels: dict[int, str] = {id(target): type_name(type(target))}
    frontier: list[object] = [target]
    ours = {id(parent), id(labels), id(modules), id(frames)}
    deadline = time.monotonic() + TIME_BUDGET
    for _ in range(MAX_DEPTH):
        if time.monotonic() > deadline:
            break
        ours.add(id(frontier))
        root = _find_root(frontier, modules, frames, parent, labels)
        if root is not None:
            return _render(root, parent, labels)
        referrers = gc.get_referrers(*frontier)
        ours.add(id(referrers))
        following: list[object] = []
        wanted = {id(obj) for obj in frontier}
        for holder in referrers:
            key = id(holder)
            if key in labels or key in ours or isinstance(holder, FrameType):
                continue
            child = _first_child(holder, wanted)
            if child is None:
                continue
            parent[key] = child
            labels[key] = type_name(type(holder))
            following.append(holder)
            if len(following) >= MAX_FRONTIER:
                break
        del referrers
        if not following:
            break
        frontier = following
    oldest = id(frontier[0])
    return ["<no root found>", *_render(oldest, parent, labels)]


def _find_root(
    frontier: list[object],
    modules: dict[int, str],
    frames: dict[int, tuple[str, FrameType]],
    parent: dict[int, int],
    labels: dict[int, str],
) -> int | None:
    for obj in frontier:
        name = modules.get(id(obj))
        if name is not None:
            labels[id(obj)] = f"module {name}"
            return id(obj)
        if isinstance(obj, type):
            labels[id(obj)] = f"class {type_name(obj)}"
            return id(obj)
    # Locals of running functions are not reachable through gc.get_referrers: look at each
    # thread's frames directly.
    wanted = {id(obj) for obj in frontier}
    for frame_id, (thread_name, frame) in frames.items():
        child = _first_local(frame, wanted)
        if child is None:
            continue
        thread_key = -frame_id
        parent[frame_id] = child
        parent[thread_key] = frame_id
        labels[frame_id] = f"frame {frame.f_code.co_name}"
        labels[thread_key] = thread_name
        return thread_key
    return None


def _first_local(frame: FrameType, wanted: set[int]) -> int | None:
    # gc.get_referents() does not list the locals of a running frame; f_locals does.
    for value in list(frame.f_locals.values()):
        if id(value) in wanted:
            return id(value)
    return None


def _first_child(holder: object, wanted: set[int]) -> int | None:
    for ref in gc.get_referents(holder):
        if id(ref) in wanted:
            return id(ref)
    return None


def _render(root: int, parent: dict[int, int], labels: dict[int, str]) -> list[str]:
    path = [labels[root]]
    key = root
    while key in parent:
        key = parent[key]
        path.append(labels[key])
    return path


def _module_dicts() -> dict[int, str]:
    dicts: dict[int, str] = {}
    for name, module in list(sys.modules.items()):
        if isinstance(module, ModuleType):
            dicts[id(vars(module))] = name
    return dicts


def _thread_frames() -> dict[int, tuple[str, FrameType]]:
    names = {thread.ident: _thread_label(thread) for thread in threading.enumerate()}
    here = threading.get_ident()
    frames: dict[int, tuple[str, FrameType]] = {}
    for ident, top in sys._current_frames().items():
        if ident == here:
            continue
        frame: FrameType | None = top
        while frame is not None:
            frames[id(frame)] = (names.get(ident, "Thread"), frame)
            frame = frame.f_back
    return frames


def _thread_label(thread: threading.Thread) -> str:
    # The class name, not the thread's name: names can carry data such as a client address.
    return type_name(type(thread)) if type(thread) is not threading.Thread else "Thread"
