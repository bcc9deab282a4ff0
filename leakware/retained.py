"""What one measurement window retained, summarised by type, and the helpers engines share.

A summary holds type names, counts and sizes only. The only link back to live objects is
`Retained.witnesses`: weak references, which never keep anything alive.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import operator
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
    "sizes_of",
    "stack_frame_ids",
    "summarise",
]

#: Referrer name for objects held by something that existed before the window opened.
OLDER_OBJECT = "<older object>"

#: Upper bound on the holders visited when naming referrers, and on the objects followed when
#: looking for exclusively held ones. The type counts still cover every retained object, and
#: the whole summary costs about 1.5 µs per retained object (CPython 3.11, a leak of 40,000).
VISIT_BUDGET = 200_000

#: ``Py_TPFLAGS_HAVE_GC``: instances of a type without it are never tracked and have no
#: referents that ``gc.get_referents`` could list.
_HAVE_GC = 1 << 14

#: Leading types per window that get a second witness, and witnesses in all: objects checked
#: later to tell whether the retained objects are still alive.
WITNESS_TYPES = 8
MAX_WITNESSES = 64


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
    #: Codes of what this window's engine could not see; each engine lists its own in
    #: ``blind_spot_codes``, and a window may add one (``app_traces``).
    blind_spots: list[str] = dataclasses.field(default_factory=list)


def summarise(
    objects: list[object], sizes: list[int] | None = None
) -> tuple[int, int, list[TypeStat], list[type]]:
    """Count ``objects`` by type and size them with ``sys.getsizeof``, unless the caller passes
    their `sizes_of` already.

    Returns the total count, the total bytes, the per-type statistics (most objects first) and
    the classes in the same order as the statistics.
    """
    classes = list(map(type, objects))
    if sizes is None:
        sizes = sizes_of(objects)
    counts = Counter(classes)
    totals = dict.fromkeys(counts, 0)
    for cls, size in zip(classes, sizes, strict=True):
        totals[cls] += size
    ordered = [cls for cls, _ in counts.most_common()]
    stats = [TypeStat(type_name(cls), counts[cls], totals[cls]) for cls in ordered]
    return len(classes), sum(sizes), stats, ordered


def sizes_of(objects: list[object]) -> list[int]:
    """Return ``sys.getsizeof`` of each object, 0 for one whose ``__sizeof__`` fails."""
    try:
        return list(map(sys.getsizeof, objects, itertools.repeat(0)))
    except Exception:  # an app's __sizeof__ that raises: count that object as 0 bytes
        return [_size(obj) for obj in objects]


def _size(obj: object) -> int:
    try:
        return sys.getsizeof(obj, 0)
    except Exception:
        return 0


def name_referrers(
    holders: Iterable[object], objects: list[object], leading: list[type]
) -> dict[str, list[str]]:
    """Name, for each class in ``leading``, the types of the ``holders`` that refer to its
    instances among ``objects``, most common first.

    Instances that no holder refers to are attributed to `OLDER_OBJECT`: whatever keeps them
    alive existed before the window. After `VISIT_BUDGET` holders the search stops, and then
    nothing is attributed to `OLDER_OBJECT`, because the holder may be one not visited.
    """
    owner_of = dict(zip(map(id, objects), map(type, objects), strict=True))
    # Holders are grouped by class so that each class costs one gc.get_referents() call and
    # one pass over its references, rather than one Python-level call per holder.
    groups: dict[type, list[object]] = {}
    for holder in holders:
        cls = type(holder)
        group = groups.get(cls)
        if group is None:
            group = groups[cls] = []
        group.append(holder)
    found: dict[type, Counter[str]] = {cls: Counter() for cls in leading}
    referred: set[int] = set()
    budget = VISIT_BUDGET
    complete = True
    for holder_cls, group in groups.items():
        if not holder_cls.__flags__ & _HAVE_GC:
            continue  # objects outside the collector's reach refer to nothing it can list
        keys = [key for key in map(id, gc.get_referents(*group)) if key in owner_of]
        budget -= len(group)
        if budget < 0:
            complete = False
            break
        if not keys:
            continue
        holder_name = type_name(holder_cls)
        for owner, count in Counter(map(owner_of.__getitem__, keys)).items():
            counter = found.get(owner)
            if counter is not None:
                counter[holder_name] += count
        referred.update(keys)
    groups.clear()
    if complete:
        unreferred = owner_of.keys() - referred
        for owner, count in Counter(map(owner_of.__getitem__, unreferred)).items():
            counter = found.get(owner)
            if counter is not None:
                counter[OLDER_OBJECT] += count
    return {
        type_name(cls): [name for name, _ in found[cls].most_common(5)] for cls in leading
    }


def exclusively_held(
    roots: list[object],
    select: Callable[[list[object]], Iterable[object]],
    *,
    shared: int,
    limit: int = VISIT_BUDGET,
) -> dict[int, object]:
    """Find the objects that only ``roots`` and each other keep alive, among those reachable
    from ``roots`` through objects that ``select`` admits.

    ``select`` receives a batch of referents and returns the ones to consider. An admitted
    object is exclusively held when every reference to it comes from a root or from another
    exclusively held object: its reference count equals the references found along the way.
    Anything else that refers to it would keep it alive after the roots are gone. ``shared`` is
    the number of references the caller itself holds to each admitted object. At most ``limit``
    objects are followed. Returns the held objects by id; the caller must drop the dict
    promptly, since it keeps them alive.
    """
    own = _OWN_REFERENCES + shared
    skip = set(map(id, roots))
    found: dict[int, object] = {}
    inbound: Counter[int] = Counter()
    held: dict[int, object] = {}
    frontier = roots
    # Breadth-first from the roots, expanding only objects found to be held: an object that a
    # non-held object refers to can never be held itself. Each level costs a few passes in C
    # plus one reference count check per object whose inbound count changed.
    while frontier and len(found) < limit:
        keys = _admit(frontier, select, found)
        del frontier
        inbound.update(keys)
        candidates = set(keys) - skip
        candidates.difference_update(held)
        newly = _unshared(list(candidates), found, inbound, own)
        frontier = list(map(found.__getitem__, newly))
        held.update(zip(newly, frontier, strict=True))
    return held


def _admit(
    holders: list[object],
    select: Callable[[list[object]], Iterable[object]],
    found: dict[int, object],
) -> list[int]:
    # A helper of its own so that no temporary list outlives it: the caller compares reference
    # counts right after, and a stray reference would make an object look shared. Adds the
    # admitted referents of ``holders`` to ``found`` and returns their ids, once per reference.
    batch = list(select(gc.get_referents(*holders)))
    keys = list(map(id, batch))
    found.update(zip(keys, batch, strict=True))
    return keys


def _unshared(
    candidates: list[int], found: dict[int, object], inbound: Counter[int], own: int
) -> list[int]:
    # Keeps the candidates whose reference count, less ``own``, equals their inbound count.
    # Every step runs in C, since this is the one pass over every candidate.
    counts = _reference_counts(candidates, found)
    expected = map(inbound.__getitem__, candidates)
    surplus = map(operator.sub, counts, itertools.repeat(own))
    return list(itertools.compress(candidates, map(operator.eq, surplus, expected)))


def _reference_counts(keys: list[int], found: dict[int, object]) -> list[int]:
    return list(map(sys.getrefcount, map(found.__getitem__, keys)))


def _calibrate() -> int:
    # Measured rather than assumed, because how many references the dict and the iterators
    # add while an object is counted is an interpreter detail.
    found: dict[int, object] = {0: object()}
    return _reference_counts([0], found)[0]


_OWN_REFERENCES = _calibrate()


def stack_frame_ids() -> set[int]:
    """Return the ids of the frames on the calling thread's stack."""
    ids: set[int] = set()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        ids.add(id(frame))
        frame = frame.f_back
    return ids


def pick_witnesses(objects: Iterable[object], stats: list[TypeStat]) -> list[Witness]:
    """Pick objects to check again later: one of each type, most retained types first, then a
    second one of each leading type.

    A leading type's two witnesses are its first and its last object in ``objects``, which
    lists objects in the order they were created. When a request ran beside the window, its
    objects of the type sit together at one end, so one of the two is likely the sampled
    request's own.
    """
    leading = {stat.type for stat in stats[:WITNESS_TYPES]}
    names: dict[type, str] = {}
    firsts_by_type: dict[str, Witness | None] = {}
    # The latest object of each leading type, held only until this function returns.
    lasts: dict[str, object] = {}
    for obj in objects:
        cls = type(obj)
        name = names.get(cls)
        if name is None:
            name = names[cls] = type_name(cls)
            firsts_by_type[name] = None
        if firsts_by_type[name] is None:
            # Some objects of a type take no witness (an untracked tuple); try the next one.
            firsts_by_type[name] = _witness(obj, name)
        elif name in leading:
            lasts[name] = obj
    # Every type's first witness comes before any type's second, so that a window crowded with
    # other requests' types still gives each of its rare types, often the leaked class, one.
    firsts: list[Witness] = []
    seconds: list[Witness] = []
    for stat in stats:
        first = firsts_by_type.get(stat.type)
        if first is None:
            continue
        firsts.append(first)
        last = lasts.get(stat.type)
        second = _witness(last, stat.type) if last is not None else None
        if second is not None:
            seconds.append(second)
    lasts.clear()
    return [*firsts, *seconds][:MAX_WITNESSES]


def _witness(obj: object, name: str) -> Witness | None:
    if type(obj).__weakrefoffset__:
        try:
            return Witness(name, weakref.ref(obj), id(obj), ())
        except TypeError:  # a few C types report an offset but refuse weak references
            pass
    if gc.is_tracked(obj):
        return Witness(name, None, id(obj), _fingerprint(obj))
    return None
