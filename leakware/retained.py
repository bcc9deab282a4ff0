"""What one measurement window retained, summarised by type, and the helpers engines share.

A summary holds type names, counts and sizes only. The only link back to live objects is
`Retained.witnesses`: weak references, which never keep anything alive.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from types import FrameType

from leakware.naming import type_name

__all__ = [
    "OLDER_OBJECT",
    "Retained",
    "Site",
    "TypeStat",
    "Witness",
    "exclusively_held",
    "pick_witnesses",
    "stack_frame_ids",
    "summarise",
]

#: Referrer name for objects held by something that existed before the window opened.
OLDER_OBJECT = "<older object>"

#: Upper bound on referents visited when naming referrers or following untracked objects, so
#: that a request which leaves a million objects behind still costs milliseconds to summarise.
VISIT_BUDGET = 200_000

#: Leading types per window that get witnesses, and witnesses per type: objects checked later
#: to tell whether the retained objects are still alive.
WITNESS_TYPES = 8
WITNESSES_PER_TYPE = 2
MAX_WITNESSES = 32


@dataclasses.dataclass(frozen=True, slots=True)
class TypeStat:
    """Retained objects of one type: how many and their shallow size in bytes."""

    type: str
    objects: int
    bytes: int


@dataclasses.dataclass(frozen=True, slots=True)
class Site:
    """Retained memory allocated at one source line (``tracemalloc`` engine only)."""

    file: str
    line: int
    blocks: int
    bytes: int


@dataclasses.dataclass(frozen=True, slots=True)
class Witness:
    """A way to tell later whether one retained object is still alive, without keeping it alive.

    Objects that support weak references get one. Other tracked containers (list, dict, tuple,
    most exceptions) are recognised by their id, type and the ids of their first referents: an
    id alone could be reused by a new object at the same address.
    """

    type: str
    ref: weakref.ref[object] | None
    address: int
    fingerprint: tuple[int, ...]

    def needs_scan(self) -> bool:
        """Return whether checking this witness needs a pass over ``gc.get_objects()``."""
        return self.ref is None

    def matches(self, obj: object) -> bool:
        """Return whether ``obj``, found at this witness's address, is the witnessed object."""
        return type_name(type(obj)) == self.type and _fingerprint(obj) == self.fingerprint

    def alive_by_reference(self) -> bool:
        return self.ref is not None and self.ref() is not None


def _fingerprint(obj: object) -> tuple[int, ...]:
    return tuple(id(ref) for ref in gc.get_referents(obj)[:3])


@dataclasses.dataclass(slots=True)
class Retained:
    """Objects created inside a window and still alive after it closed and a collection ran."""

    objects: int = 0
    bytes: int = 0
    #: Every retained type, most objects first.
    types: list[TypeStat] = dataclasses.field(default_factory=list)
    #: For the leading types: the types of the objects that refer to them, most common first.
    referrers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: Untracked objects (str, int, ...) counted because only retained containers hold them.
    untracked_objects: int = 0
    untracked_bytes: int = 0
    #: Change in the interpreter's allocated memory blocks across the window, after collection;
    #: it includes what the engine cannot see, and frees of older objects.
    net_blocks: int = 0
    #: New threads still running when the window closed.
    threads: int = 0
    #: Allocation sites of retained memory, largest first (``tracemalloc`` engine only).
    sites: list[Site] = dataclasses.field(default_factory=list)
    #: A few retained objects to check again later, for confirming the leak.
    witnesses: list[Witness] = dataclasses.field(default_factory=list)
    #: Set when the window was abandoned (too long, or a fault); nothing was measured.
    expired: bool = False


def summarise(objects: Iterable[object]) -> tuple[int, int, list[TypeStat], dict[type, set[int]]]:
    """Count ``objects`` by type and size them with ``sys.getsizeof``.

    Returns the total count, total bytes, the per-type statistics (most objects first) and, per
    type, the ids of its objects, which later steps use to name referrers.
    """
    getsizeof = sys.getsizeof
    counts: Counter[type] = Counter()
    sizes: Counter[type] = Counter()
    ids: dict[type, set[int]] = {}
    for obj in objects:
        cls = type(obj)
        counts[cls] += 1
        sizes[cls] += getsizeof(obj)
        ids.setdefault(cls, set()).add(id(obj))
    stats = [TypeStat(type_name(cls), count, sizes[cls]) for cls, count in counts.most_common()]
    return sum(counts.values()), sum(sizes.values()), stats, ids


def name_referrers(
    holders: Iterable[object], targets: dict[type, set[int]], top: int
) -> dict[str, list[str]]:
    """Name, for the ``top`` types in ``targets``, the types of the ``holders`` that refer to them.

    Objects that no holder refers to are attributed to `OLDER_OBJECT`: whatever keeps them alive
    existed before the window.
    """
    leading = sorted(targets, key=lambda cls: len(targets[cls]), reverse=True)[:top]
    owner_of: dict[int, type] = {}
    for cls in leading:
        for key in targets[cls]:
            owner_of[key] = cls
    found: dict[type, Counter[str]] = {cls: Counter() for cls in leading}
    referred: set[int] = set()
    budget = VISIT_BUDGET
    for holder in holders:
        referents = gc.get_referents(holder)
        budget -= len(referents)
        if budget < 0:
            break
        holder_name: str | None = None
        for ref in referents:
            owner = owner_of.get(id(ref))
            if owner is None:
                continue
            if holder_name is None:
                holder_name = type_name(type(holder))
            found[owner][holder_name] += 1
            referred.add(id(ref))
    for cls in leading:
        unreferred = sum(1 for key in targets[cls] if key not in referred)
        if unreferred:
            found[cls][OLDER_OBJECT] += unreferred
    return {
        type_name(cls): [name for name, _ in found[cls].most_common(5)] for cls in leading
    }


def exclusively_held(
    roots: list[object], admit: Callable[[object], bool], *, shared: int, limit: int = VISIT_BUDGET
) -> dict[int, object]:
    """Find the objects admitted by ``admit`` that only ``roots`` and each other keep alive.

    An admitted object reachable from ``roots`` is exclusively held when every reference to it
    comes from a root or from another exclusively held object: its reference count equals the
    references found along the way. Anything else that refers to it would keep it alive after
    the roots are gone. ``shared`` is the number of references the caller itself holds to each
    admitted object. Returns the held objects by id; the caller must drop the dict promptly.
    """
    found = _reachable(roots, admit, limit)
    inbound: Counter[int] = Counter()
    _count_references(roots, found, inbound)
    held: dict[int, object] = {}
    changed = True
    while changed:
        changed = False
        for key in list(found):
            if key in held or _references(found, key) - shared != inbound[key]:
                continue
            held[key] = found[key]
            changed = True
            _count_references([found[key]], found, inbound)
    return held


def _references(found: dict[int, object], key: int) -> int:
    """Return the references to ``found[key]`` other than ``found`` itself."""
    return sys.getrefcount(found[key]) - _OWN_REFERENCES


def _calibrate() -> int:
    # Measured rather than assumed, because how many references a subscript and a call
    # argument add is an interpreter detail.
    probe: dict[int, object] = {0: object()}
    return sys.getrefcount(probe[0])


_OWN_REFERENCES = _calibrate()


def _reachable(
    roots: list[object], admit: Callable[[object], bool], limit: int
) -> dict[int, object]:
    found: dict[int, object] = {}
    frontier = roots
    while frontier and len(found) < limit:
        following: list[object] = []
        for ref in gc.get_referents(*frontier):
            key = id(ref)
            if key not in found and admit(ref):
                found[key] = ref
                following.append(ref)
        frontier = following
    return found


def _count_references(
    holders: list[object], found: dict[int, object], inbound: Counter[int]
) -> None:
    # A helper of its own so that no temporary list outlives the count: the caller compares
    # reference counts right after, and a stray reference would make an object look shared.
    for ref in gc.get_referents(*holders):
        key = id(ref)
        if key in found:
            inbound[key] += 1


def stack_frame_ids() -> set[int]:
    """Return the ids of the frames on the calling thread's stack."""
    ids: set[int] = set()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        ids.add(id(frame))
        frame = frame.f_back
    return ids


def pick_witnesses(objects: Iterable[object], stats: list[TypeStat]) -> list[Witness]:
    """Pick objects to check again later: two of each leading type, then one of each other type,
    most retained types first."""
    leading = {stat.type for stat in stats[:WITNESS_TYPES]}
    candidates: dict[str, list[Witness]] = {}
    for obj in objects:
        name = type_name(type(obj))
        chosen = candidates.setdefault(name, [])
        if len(chosen) >= (WITNESSES_PER_TYPE if name in leading else 1):
            continue
        witness = _witness(obj, name)
        if witness is not None:
            chosen.append(witness)
    witnesses: list[Witness] = []
    for stat in stats:
        witnesses.extend(candidates.get(stat.type, ()))
    return witnesses[:MAX_WITNESSES]


def _witness(obj: object, name: str) -> Witness | None:
    if type(obj).__weakrefoffset__:
        try:
            return Witness(name, weakref.ref(obj), id(obj), ())
        except TypeError:  # a few C types report an offset but refuse weak references
            pass
    if gc.is_tracked(obj):
        return Witness(name, None, id(obj), _fingerprint(obj))
    return None
