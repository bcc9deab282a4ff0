"""Retention paths: the chain of referrer types from a root to a leaked object.

A path reads from the root to the leak, for example
``module shop.cache → dict → list → shop.models.Order`` or
``Thread → frame _guarded_task_generation → functools.partial → tuple → list → shop.Vehicle``.
Only type, module, class and function names appear in it, never values.

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

#: Steps searched back from the leaked object before giving up. A traceback that every
#: request extends adds a few steps per request.
MAX_DEPTH = 64
#: Seconds a search may take by default; each step is a pass over the heap.
TIME_BUDGET = 2.0
#: Objects kept per step of the backward search, module dicts aside.
MAX_FRONTIER = 256

#: Label of the first step when the search ends without reaching a root.
NO_ROOT = "<no root found>"

# Root kinds, in order of preference when one step of the search reaches several roots that
# are equally close to the leaked type's package (see `_Search._affinity`).
_MODULE, _CLASS, _THREAD = 0, 1, 2


def retention_path(
    target: object, *others: object, time_budget: float = TIME_BUDGET
) -> list[str]:
    """Return the names along the shortest chain of references from a root to ``target``, or
    to whichever of ``target`` and ``others`` is closest to a root.

    Roots are module globals, classes defined at module level (their attributes are globals
    too), and the locals of functions running on other threads. A frame that is no longer
    running, such as one kept by a stored traceback, is an ordinary step. When no root is found
    within `MAX_DEPTH` steps or ``time_budget`` seconds, the path starts with `NO_ROOT` and the
    oldest referrer found.
    """
    search = _Search(target, others)
    frontier: list[object] = [target, *others[: MAX_FRONTIER - 1]]
    previous: list[object] = []
    deadline = time.monotonic() + time_budget
    for depth in range(MAX_DEPTH):
        if time.monotonic() > deadline:
            break
        search.ours.add(id(frontier))
        # The targets are never their own roots: a leaked class is not its own holder.
        root = search.find_root(frontier, previous, include_targets=depth > 0)
        if root is not None:
            return _collapse(search.render(root))
        following = search.referrers(frontier)
        if not following:
            root = search.find_thread_root(frontier)
            if root is not None:
                return _collapse(search.render(root))
            break
        previous, frontier = frontier, following
    return [NO_ROOT, *_collapse(search.render(id(frontier[0])))]


def _collapse(path: list[str]) -> list[str]:
    """Replace each run of three or more equal steps, such as the tracebacks of an exception
    raised again on every request, with one step marked ``(repeated)``, so that the path, and
    the signature made from it, do not change as the chain grows."""
    collapsed: list[str] = []
    index = 0
    while index < len(path):
        end = index
        while end < len(path) and path[end] == path[index]:
            end += 1
        if end - index >= 3:
            collapsed.append(f"{path[index]} (repeated)")
        else:
            collapsed.extend(path[index:end])
        index = end
    return collapsed


class _Search:
    """The state of one backward search: what was visited, and how it links to the target."""

    # No instance dict: on Python 3.10 it would be one more referrer of the targets.
    __slots__ = ("frames", "labels", "modules", "ours", "parent", "target", "targets")

    def __init__(self, target: object, others: tuple[object, ...]) -> None:
        self.target = target
        self.targets = {id(target), *map(id, others)}
        self.modules = _module_dicts()
        self.frames = _thread_frames()
        #: Maps an object's id to the id of the object it refers to, one step closer to the
        #: targets.
        self.parent: dict[int, int] = {}
        self.labels: dict[int, str] = {id(obj): type_name(type(obj)) for obj in (target, *others)}
        # The search's own containers, and the frames running on this thread, are never steps.
        self.ours = {id(self.parent), id(self.labels), id(self.modules), id(self.frames),
                     id(self), id(others)}
        self.ours |= _stack_frame_ids()

    def referrers(self, frontier: list[object]) -> list[object]:
        """Return the unvisited objects that refer to the frontier, labelled and linked."""
        referrers = gc.get_referrers(*frontier)
        skip = self.ours | {id(referrers)}
        wanted = {id(obj) for obj in frontier}
        following: list[object] = []
        for holder in referrers:
            key = id(holder)
            if key in self.labels or key in skip:
                continue
            child = _first_child(holder, wanted)
            if child is None:
                continue
            if len(following) >= MAX_FRONTIER and key not in self.modules:
                # A full frontier still takes module dicts: they are roots, and which of them
                # is the best one is decided by `find_root`, not by the order of the heap.
                continue
            self.parent[key] = child
            self.labels[key] = _label(holder)
            following.append(holder)
        del referrers
        return following

    def find_root(
        self, frontier: list[object], previous: list[object], *, include_targets: bool
    ) -> int | None:
        """Return the id of the best root at this step of the search, after labelling it, or
        ``None``.

        The roots at this step are the module dicts and classes in ``frontier``, and the
        running frames whose locals hold an object of ``previous``: such a frame is one step
        from ``previous``, like ``frontier``. Module and class roots win over frames at the same
        distance, because a frame may be running only for a moment.
        """
        found: list[tuple[tuple[int, int], int, str]] = []
        for obj in frontier:
            if id(obj) in self.targets and not include_targets:
                continue
            name = self.modules.get(id(obj))
            if name is not None:
                found.append(((self._affinity(name, obj), _MODULE), id(obj), f"module {name}"))
            elif isinstance(obj, type) and _defined_at_module_level(obj):
                module = str(getattr(obj, "__module__", ""))
                rank = (self._affinity(module, obj), _CLASS)
                found.append((rank, id(obj), f"class {type_name(obj)}"))
        if found:
            _, root, label = min(found)
            self.labels[root] = label
            return root
        running = self._running_frame(frontier)
        if running is not None:
            return running
        return self.find_thread_root(previous)

    def _affinity(self, module: str, root: object) -> int:
        """Rank a root 0 when its module's package is the package of the leaked type or of a
        type on the chain below the root, so that ``class logging.Logger → dict →
        logging.Manager`` wins over another module that happens to keep a logger; 1 otherwise.
        """
        package = module.split(".", 1)[0]
        packages = {str(type(self.target).__module__).split(".", 1)[0]}
        key = self.parent.get(id(root))
        while key is not None:
            label = self.labels.get(key, "")
            if "." in label and " " not in label:
                packages.add(label.split(".", 1)[0])
            key = self.parent.get(key)
        return 0 if package in packages else 1

    def _running_frame(self, frontier: list[object]) -> int | None:
        # A running frame reached as a referrer (Python 3.10 reports frames that way).
        for obj in frontier:
            if id(obj) in self.frames:
                thread_name, frame = self.frames[id(obj)]
                return self._thread_root(thread_name, frame, None)
        return None

    def find_thread_root(self, frontier: list[object]) -> int | None:
        """Return the root made by a running frame whose locals hold an object of
        ``frontier``, or ``None``."""
        # Locals of running functions are not reachable through gc.get_referrers: look at each
        # thread's frames directly.
        wanted = {id(obj) for obj in frontier}
        for thread_name, frame in self.frames.values():
            child = _first_local(frame, wanted)
            if child is not None:
                return self._thread_root(thread_name, frame, child)
        return None

    def _thread_root(self, thread_name: str, frame: FrameType, child: int | None) -> int:
        frame_id = id(frame)
        thread_key = -frame_id
        if child is not None:
            self.parent[frame_id] = child
        self.parent[thread_key] = frame_id
        self.labels[frame_id] = f"frame {frame.f_code.co_name}"
        self.labels[thread_key] = thread_name
        return thread_key

    def render(self, root: int) -> list[str]:
        path = [self.labels[root]]
        key = root
        while key in self.parent:
            key = self.parent[key]
            path.append(self.labels[key])
        return path


def _label(holder: object) -> str:
    if isinstance(holder, FrameType):
        return f"frame {holder.f_code.co_name}"
    return type_name(type(holder))


def _defined_at_module_level(cls: type) -> bool:
    # A class counts as a root only when its module exposes it under its qualified name; a
    # class created at run time (per request, say) is an ordinary object on the path.
    module = sys.modules.get(str(getattr(cls, "__module__", "")))
    if module is None:
        return False
    found: object = module
    for part in str(getattr(cls, "__qualname__", "")).split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is cls


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


def _module_dicts() -> dict[int, str]:
    dicts: dict[int, str] = {}
    for name, module in list(sys.modules.items()):
        if isinstance(module, ModuleType):
            dicts[id(vars(module))] = name
    return dicts


def _stack_frame_ids() -> set[int]:
    ids: set[int] = set()
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        ids.add(id(frame))
        frame = frame.f_back
    return ids


def _thread_frames() -> dict[int, tuple[str, FrameType]]:
    names = {thread.ident: _thread_label(thread) for thread in threading.enumerate()}
    current = sys._current_frames()
    # Dropped first: a local that referred to this very frame would keep it, and the frames
    # below it, alive after the search started, as steps that lead nowhere.
    del current[threading.get_ident()]
    frames: dict[int, tuple[str, FrameType]] = {}
    for ident, top in current.items():
        frame: FrameType | None = top
        while frame is not None:
            frames[id(frame)] = (names.get(ident, "Thread"), frame)
            frame = frame.f_back
    return frames


def _thread_label(thread: threading.Thread) -> str:
    # The class name, not the thread's name: names can carry data such as a client address.
    return type_name(type(thread)) if type(thread) is not threading.Thread else "Thread"
