"""Per-key statistics across samples and the verdict they support.

A key is (method, route template, exception type). One sample's retained objects are evidence,
not a verdict: caches fill on their first requests, a batch can stay alive until the next request
replaces it, and a window shares the heap with requests running beside it. This module keeps
bounded statistics per key and turns them into one of four verdicts:

``leak``
    The key retains objects of the same types on most recent samples, and the retained objects
    were confirmed: still alive after later requests and a full collection (weak references), or
    their type's live population grew with the samples (types without weak references).
``warming``
    The key retained on its first samples and no longer does: a cache filled and stopped.
``clean``
    The key retains nothing attributable to it, or what it retained was later freed (a bounded
    structure that evicts, a batch that the next request replaces).
``insufficient``
    Too few samples, or persistent retention not yet confirmed either way.

The same code judges keys inside the process and in ``leakware report``, which rebuilds the
statistics from sample events.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Literal

__all__ = [
    "MIN_SAMPLES",
    "Judgement",
    "KeyStats",
    "Sample",
    "TypeTotals",
    "Verdict",
    "attribute",
    "judge",
]

Verdict = Literal["leak", "warming", "clean", "insufficient"]

#: Samples a key needs before it gets any verdict other than ``insufficient``.
MIN_SAMPLES = 3
#: Recent samples that decide whether retention is still happening.
RECENT = 8
#: Types tracked per key; the type with the fewest retained objects is dropped beyond this.
MAX_TYPES = 32
#: A type counts as retained by a sample when it has at least this many objects in it.
MIN_OBJECTS = 1
#: Samples with this many other requests in flight or fewer count as solo, trustworthy windows.
SOLO = 0
#: A key owns a type its samples share with other keys only when its retention per sample is at
#: least this fraction of the largest key's; below that, the objects came from the other key's
#: requests running concurrently.
OWNERSHIP_RATIO = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One measured request, as the analysis sees it: names and numbers only."""

    method: str
    route: str
    exception: str | None
    status: int | None
    objects: int
    bytes: int
    #: (type name, objects, bytes) for each retained type, most objects first.
    types: tuple[tuple[str, int, int], ...]
    net_blocks: int
    threads: int
    in_flight: int

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.method, self.route, self.exception)


@dataclasses.dataclass(slots=True)
class TypeTotals:
    """One type's retention across a key's samples."""

    objects: int = 0
    bytes: int = 0
    #: Samples that retained at least `MIN_OBJECTS` of the type.
    present: int = 0
    solo_objects: int = 0
    solo_present: int = 0
    #: Presence in the most recent samples, newest last.
    recent: deque[bool] = dataclasses.field(default_factory=lambda: deque(maxlen=RECENT))
    #: Presence in the first `RECENT` samples of the key.
    early: list[bool] = dataclasses.field(default_factory=list)
    #: Witnesses of this type found alive on a later check, and found freed.
    confirmed: int = 0
    freed: int = 0


@dataclasses.dataclass(slots=True)
class KeyStats:
    """Bounded statistics for one (method, route, exception) key."""

    method: str
    route: str
    exception: str | None
    samples: int = 0
    solo_samples: int = 0
    objects: int = 0
    bytes: int = 0
    net_blocks: int = 0
    threads: int = 0
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    types: dict[str, TypeTotals] = dataclasses.field(default_factory=dict)
    #: Objects retained per sample, newest last, for the warming test.
    recent_objects: deque[int] = dataclasses.field(default_factory=lambda: deque(maxlen=RECENT))

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.method, self.route, self.exception)

    @property
    def status(self) -> int | None:
        """Return the most frequent response status of the key."""
        if not self.statuses:
            return None
        return max(self.statuses.items(), key=lambda item: (item[1], -item[0]))[0]

    def add(self, sample: Sample) -> None:
        """Fold one sample into the statistics."""
        self.samples += 1
        solo = sample.in_flight <= SOLO
        self.solo_samples += solo
        self.objects += sample.objects
        self.bytes += sample.bytes
        self.net_blocks += sample.net_blocks
        self.threads += sample.threads
        self.recent_objects.append(sample.objects)
        if sample.status is not None and (
            sample.status in self.statuses or len(self.statuses) < 16
        ):
            self.statuses[sample.status] = self.statuses.get(sample.status, 0) + 1
        seen = set()
        for name, objects, size in sample.types:
            if objects < MIN_OBJECTS:
                continue
            seen.add(name)
            totals = self._totals(name)
            if totals is None:
                continue
            totals.objects += objects
            totals.bytes += size
            totals.present += 1
            if solo:
                totals.solo_objects += objects
                totals.solo_present += 1
        for name, totals in self.types.items():
            present = name in seen
            totals.recent.append(present)
            if len(totals.early) < RECENT:
                totals.early.append(present)

    def _totals(self, name: str) -> TypeTotals | None:
        totals = self.types.get(name)
        if totals is not None:
            return totals
        if len(self.types) >= MAX_TYPES:
            smallest = min(self.types, key=lambda type_name: self.types[type_name].objects)
            if self.types[smallest].present > 1:
                return None
            del self.types[smallest]
        totals = TypeTotals()
        # A type first seen late was absent from every earlier sample.
        missed = min(self.samples - 1, RECENT)
        totals.recent.extend([False] * missed)
        totals.early.extend([False] * min(self.samples - 1, RECENT))
        self.types[name] = totals
        return totals

    def per_request(self, name: str) -> tuple[float, float]:
        """Return the objects and bytes of type ``name`` retained per sampled request."""
        totals = self.types.get(name)
        if totals is None or not self.samples:
            return 0.0, 0.0
        return totals.objects / self.samples, totals.bytes / self.samples


@dataclasses.dataclass(frozen=True, slots=True)
class Judgement:
    """A key's verdict with its confidence (0 to 1) and the types it applies to."""

    verdict: Verdict
    confidence: float
    #: Types attributed to the key, most objects first.
    types: tuple[str, ...]
    reason: str


def attribute(keys: Iterable[KeyStats]) -> dict[tuple[str, str, str | None], set[str]]:
    """Decide which retained types belong to which key.

    A window also sees what requests running beside it allocated. A type belongs to a key when
    the key's solo samples (no other request in flight) show it, or, with too few solo samples,
    when the key retains at least `OWNERSHIP_RATIO` as much of it per request as the key that
    retains the most of it.
    """
    keys = list(keys)
    largest: dict[str, float] = {}
    for stats in keys:
        for name, totals in stats.types.items():
            rate = totals.objects / max(stats.samples, 1)
            largest[name] = max(largest.get(name, 0.0), rate)
    owned: dict[tuple[str, str, str | None], set[str]] = {}
    for stats in keys:
        names: set[str] = set()
        for name, totals in stats.types.items():
            if stats.solo_samples >= MIN_SAMPLES:
                if totals.solo_present * 2 >= stats.solo_samples:
                    names.add(name)
                elif totals.solo_present and totals.present * 2 < stats.samples:
                    names.add(name)  # sporadic, e.g. only for new inputs: judged by liveness
                continue
            rate = totals.objects / max(stats.samples, 1)
            if rate >= OWNERSHIP_RATIO * largest[name]:
                names.add(name)
        owned[stats.key] = names
    return owned


#: Types the garbage collector never tracks. Retained ones are counted through the containers
#: that hold them, so they follow their containers' verdict instead of getting one of their own.
ATOMS = frozenset({"str", "int", "float", "bytes", "bool", "complex", "NoneType", "bytearray"})


def rank_types(names: Iterable[str], stats: KeyStats) -> list[str]:
    """Order type names by how much they say about a leak: classes of the app and its
    libraries first, then standard-library classes, builtin containers, and atoms last; most
    retained objects first within each group."""

    def order(name: str) -> tuple[int, int, str]:
        totals = stats.types.get(name)
        return (_type_group(name), -(totals.objects if totals else 0), name)

    return sorted(names, key=order)


def _type_group(name: str) -> int:
    if name in ATOMS:
        return 3
    module, dot, _ = name.rpartition(".")
    if not dot:
        return 2
    top = module.split(".", 1)[0].lstrip("_")
    return 1 if top in _STDLIB else 0


_STDLIB = frozenset(name.lstrip("_") for name in sys.stdlib_module_names)


def judge(stats: KeyStats, owned: set[str], *, use_net_blocks: bool = False) -> Judgement:
    """Give ``stats`` its verdict, considering only the types in ``owned``.

    Each owned type is classified on its own: still retained and confirmed alive (leaking),
    retained on most recent samples but not yet checked (unconfirmed), retained only on the
    first samples (warming), or freed when checked later. The key leaks when any type leaks.

    With ``use_net_blocks``, persistent retention that no liveness check confirmed or refuted
    counts as a leak when the interpreter's allocated memory blocks grew by at least half of
    the retained objects. The report uses this for keys that no process judged.
    """
    names = rank_types((name for name in owned if name in stats.types), stats)
    if stats.samples < MIN_SAMPLES:
        confidence = stats.samples / MIN_SAMPLES
        return Judgement("insufficient", round(confidence, 2), tuple(names), "too few samples")
    judged = [name for name in names if name not in ATOMS] or names
    if not judged:
        return Judgement("clean", _saturate(stats.samples), (), "nothing retained")
    significant = _significant(stats, judged)

    leaking: list[str] = []
    unconfirmed: list[str] = []
    warming: list[str] = []
    for name in judged:
        state = _classify(stats, name)
        if state == "leaking":
            leaking.append(name)
        elif state == "unconfirmed" and name in significant:
            unconfirmed.append(name)
        elif state == "warming" and name in significant:
            warming.append(name)
    atoms = [name for name in names if name in ATOMS]

    if leaking:
        totals = stats.types[leaking[0]]
        checks = totals.confirmed + totals.freed
        survival = totals.confirmed / checks if checks else 1.0
        presence = max(_recent_presence(totals), totals.present / stats.samples)
        confidence = survival * _saturate(stats.samples) * presence
        return Judgement("leak", round(confidence, 2), (*leaking, *atoms),
                         "retained objects stay alive after later requests and a collection")
    if unconfirmed and use_net_blocks and _net_growth(stats, unconfirmed):
        presence = _recent_presence(stats.types[unconfirmed[0]])
        return Judgement("leak", round(0.5 * _saturate(stats.samples) * presence, 2),
                         (*unconfirmed, *atoms),
                         "memory grew by about what the samples retained; not checked for "
                         "liveness")
    if unconfirmed:
        presence = _recent_presence(stats.types[unconfirmed[0]])
        return Judgement("insufficient", round(0.5 * presence, 2), (*unconfirmed, *atoms),
                         "retention not yet confirmed by a later liveness check")
    if warming:
        recent = len(stats.types[warming[0]].recent)
        return Judgement("warming", _saturate(recent), tuple(warming),
                         "retention stopped after the first samples")
    return Judgement("clean", _saturate(stats.samples), (),
                     "nothing retained stays alive")


def _significant(stats: KeyStats, names: list[str]) -> set[str]:
    """Return the types that decide an unconfirmed or warming verdict: the three that retained
    the most objects and any other with a tenth of the retained objects. A few stray objects
    that no check has reached yet do not hold a verdict back."""
    by_objects = sorted(names, key=lambda name: stats.types[name].objects, reverse=True)
    total = sum(stats.types[name].objects for name in names)
    return set(by_objects[:3]) | {
        name for name in names if stats.types[name].objects * 10 >= total
    }


def _classify(stats: KeyStats, name: str) -> str:
    totals = stats.types[name]
    checks = totals.confirmed + totals.freed
    # The tail is the newer half of the recent samples: a cache that filled on the first
    # samples is absent from it, a leak is not.
    recent = list(totals.recent)
    tail = recent[len(recent) // 2 :]
    still_retaining = any(tail)
    if checks and totals.freed * 3 > totals.confirmed:
        return "freed"
    if not still_retaining:
        return "warming" if totals.present else "occasional"
    if totals.present < 2:
        return "occasional"  # retained once: a lazily built singleton, not a leak
    if checks and totals.confirmed:
        # Alive when checked again, and still being retained: on most samples, or now and then
        # for good, as a structure that grows only for new inputs does.
        return "leaking"
    if _recent_presence(totals) >= 0.5:
        return "unconfirmed"
    return "occasional"


def _recent_presence(totals: TypeTotals) -> float:
    return sum(totals.recent) / max(len(totals.recent), 1)


def _net_growth(stats: KeyStats, names: list[str]) -> bool:
    retained = sum(stats.types[name].objects for name in names)
    return retained > 0 and stats.net_blocks * 2 >= retained


def _saturate(count: int) -> float:
    """Map a count of consistent observations to a confidence that approaches 1."""
    return round(1.0 - math.pow(0.5, count / 2), 2)


def iter_types(stats: KeyStats, names: Iterable[str]) -> Iterator[tuple[str, float, float]]:
    """Yield (type, objects per request, bytes per request) for ``names``."""
    for name in names:
        objects, size = stats.per_request(name)
        yield name, objects, size
