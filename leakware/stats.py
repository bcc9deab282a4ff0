"""Per-key statistics across samples and the verdict they support.

A key is (method, route template, exception type). One sample's retained objects are evidence,
not a verdict: caches fill on their first requests, a batch can stay alive until the next request
replaces it, a bounded structure evicts what it kept, and a window shares the heap with requests
running beside it. This module keeps bounded statistics per key and turns them into one of four
verdicts:

``leak``
    Objects of one type that the key retains were confirmed alive after a later request of the
    key and a full collection, on at least `MIN_CONFIRMED` samples; most of the type's checked
    objects survived, none of the long-lived ones were freed later, and the key has not stopped
    retaining them.
``warming``
    What the key retained stays alive, but the key stopped retaining: a cache that filled, or a
    singleton built on first use.
``clean``
    The key retains nothing attributable to it, or what it retained was freed later: a transient
    object that outlived its window, a bounded structure that evicts, a batch that the next
    request replaces.
``insufficient``
    Too few samples, or persistent retention not yet checked either way.

The same code judges keys inside the process, where witnesses (objects checked again later)
supply the liveness evidence, and in ``leakware report``, which rebuilds the statistics from
sample events alone.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

__all__ = [
    "ATOMS",
    "MIN_CONFIRMED",
    "MIN_SAMPLES",
    "SOLO",
    "Judgement",
    "KeyStats",
    "Sample",
    "TypeTotals",
    "Verdict",
    "attribute",
    "judge",
    "rank_types",
    "type_group",
]

Verdict = Literal["leak", "warming", "clean", "insufficient"]

#: Samples a key needs before it gets any verdict other than ``insufficient``.
MIN_SAMPLES = 3
#: Samples whose retained objects of a type must be confirmed alive before the type leaks. One
#: is what a lazily built singleton or a first-use import leaves, two what a couple of windows
#: shared with another key's leaking requests can show.
MIN_CONFIRMED = 3
#: Recent samples that decide whether retention is still happening.
RECENT = 8
#: Types tracked per key. Beyond this, a new type replaces the least telling one (see
#: `KeyStats.add`), so that a window crowded by concurrent requests cannot push out the class
#: that a key leaks.
MAX_TYPES = 48
#: A type counts as retained by a sample when it has at least this many objects in it.
MIN_OBJECTS = 1
#: Samples with this many other requests in flight or fewer count as solo, trustworthy windows.
SOLO = 0
#: A key owns a type its samples share with other keys only when its retention per sample is at
#: least this fraction of the largest key's; below that, the objects came from the other key's
#: requests running concurrently.
OWNERSHIP_RATIO = 0.5
#: Upper bound on the chance that a key's confirmed retention of a type comes from the requests
#: that ran beside its windows, below which the retention is the key's own.
SIGNIFICANCE = 0.01
#: Retention has stopped when a gap this unlikely follows the last retaining sample, given how
#: often the key retained before: a cache that filled, not a leak that grows now and then.
STOPPED_PROBABILITY = 0.01
#: A type is transient when fewer than this fraction of the checked samples that retained it
#: had a witness of it alive at its first check.
MIN_SURVIVAL = 2 / 3
#: A type evicts when this many objects that were alive at one check were freed at a later one,
#: and no fewer kept objects of the type have lived as long and survive: a leak may lose a stray
#: object, but a bounded structure loses every object that reaches the age it evicts at.
MIN_EVICTED = 2


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
    """One type's retention across a key's samples, and the liveness checks of its objects."""

    objects: int = 0
    bytes: int = 0
    #: Samples that retained at least `MIN_OBJECTS` of the type.
    present: int = 0
    #: The key's sample numbers (from 1) of the first and the latest of those samples.
    first_present: int = 0
    last_present: int = 0
    #: The same for solo samples: no other request was in flight during their window.
    solo_objects: int = 0
    solo_bytes: int = 0
    solo_present: int = 0
    #: Presence in the most recent samples, newest last.
    recent: deque[bool] = dataclasses.field(default_factory=lambda: deque(maxlen=RECENT))
    #: Checked samples (see `KeyStats.checked`) that retained the type.
    checked_present: int = 0
    #: Checked samples that showed whether the type was retained for good: those that did not
    #: retain it, and those with a witness of it. The clock of `first_confirmed` and
    #: `last_confirmed`.
    observed: int = 0
    #: Other requests in flight during those samples' windows, summed: how much chance other
    #: requests had to leave objects of the type in them.
    exposure: int = 0
    #: Witnesses of this type found alive at their first check, and found freed.
    confirmed: int = 0
    freed: int = 0
    #: Witnesses kept for later re-checks after they were found alive, and how many of those a
    #: later check found freed (a bounded structure evicted them).
    kept: int = 0
    evicted: int = 0
    #: The youngest age, in the key's samples, at which a kept witness was found freed, and the
    #: kept witnesses alive at the latest check that are at least that old.
    evicted_age: int = 0
    at_risk: int = 0
    #: Samples with a witness found alive at its first check, and the `observed` count when the
    #: first and the latest of them were checked.
    confirmed_samples: int = 0
    first_confirmed: int = 0
    last_confirmed: int = 0
    #: Samples whose witnesses were all freed at their first check.
    freed_samples: int = 0

    def record_check(self, taken_at: int, *, alive: int, freed: int) -> None:
        """Record the first liveness check of the witnesses taken at sample ``taken_at``: how
        many were ``alive`` and how many ``freed``, after `observed` has counted the sample.

        The sample retained the type for good when any witness is alive: one window can hold
        a leaked object next to a transient one of the same type from a request beside it.
        """
        self.confirmed += alive
        self.freed += freed
        if not alive:
            self.freed_samples += 1
            return
        self.confirmed_samples += 1
        self.first_confirmed = self.first_confirmed or self.observed
        self.last_confirmed = self.observed


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
    #: Samples whose witnesses were checked; a sample without witnesses counts once its turn
    #: came.
    checked: int = 0
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    types: dict[str, TypeTotals] = dataclasses.field(default_factory=dict)
    #: Objects retained per sample, newest last.
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

    def add(self, sample: Sample, in_app: Callable[[str], bool] | None = None) -> None:
        """Fold one sample into the statistics; ``in_app`` ranks types as in `rank_types`."""
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
            totals = self._totals(name, in_app)
            if totals is None:
                continue
            totals.objects += objects
            totals.bytes += size
            totals.present += 1
            totals.first_present = totals.first_present or self.samples
            totals.last_present = self.samples
            if solo:
                totals.solo_objects += objects
                totals.solo_bytes += size
                totals.solo_present += 1
        for name, totals in self.types.items():
            totals.recent.append(name in seen)

    def _totals(self, name: str, in_app: Callable[[str], bool] | None) -> TypeTotals | None:
        totals = self.types.get(name)
        if totals is not None:
            return totals
        if len(self.types) >= MAX_TYPES:
            # The least telling type goes: the worst group (builtins before classes), then the
            # fewest samples. It is replaced by a type of a better group, or by any type when
            # it was seen only once.
            def worth(type_name: str) -> tuple[int, int, int]:
                old = self.types[type_name]
                return (-type_group(type_name, in_app), old.present, old.confirmed_samples)

            victim = min(self.types, key=worth)
            better = type_group(name, in_app) < type_group(victim, in_app)
            if not better and self.types[victim].present > 1:
                return None
            del self.types[victim]
        totals = TypeTotals()
        # A type first seen late was absent from every earlier sample.
        totals.recent.extend([False] * min(self.samples - 1, RECENT))
        self.types[name] = totals
        return totals

    def per_request(self, name: str) -> tuple[float, float]:
        """Return the objects and bytes of type ``name`` retained per sampled request.

        With enough solo samples, only those count: a window that other requests shared also
        holds what they had allocated so far.
        """
        totals = self.types.get(name)
        if totals is None or not self.samples:
            return 0.0, 0.0
        if self.solo_samples >= MIN_SAMPLES:
            return totals.solo_objects / self.solo_samples, totals.solo_bytes / self.solo_samples
        return totals.objects / self.samples, totals.bytes / self.samples


@dataclasses.dataclass(frozen=True, slots=True)
class Judgement:
    """A key's verdict with its confidence (0 to 1) and the types it applies to."""

    verdict: Verdict
    confidence: float
    #: The types behind the verdict, most telling first: the leaking types of a leak, the
    #: types still waiting for a check, or the types a warming key retained; none when clean.
    types: tuple[str, ...]
    reason: str
    #: Types the key retained whose objects were found freed later.
    freed: tuple[str, ...] = ()


def attribute(keys: Iterable[KeyStats]) -> dict[tuple[str, str, str | None], set[str]]:
    """Decide which retained types belong to which key.

    A window also sees what requests running beside it allocated. A type belongs to a key when
    most of the key's solo samples (no other request in flight) retain it. Otherwise, where
    liveness checks confirmed the type, the type belongs to the key when the key retained it
    for good more often than requests running beside its windows explain (see `_exceeds`):
    what one key leaks lands now and then in other keys' windows, the more often the more
    requests share them. Otherwise the solo samples decide, when there are enough of them for
    the type's absence to mean something, and with too few, the type belongs to the key when
    the key retains at least `OWNERSHIP_RATIO` as much of it per request as the key that
    retains the most of it.
    """
    keys = list(keys)
    largest: dict[str, float] = {}
    confirmed: dict[str, int] = {}
    exposure: dict[str, int] = {}
    for stats in keys:
        for name, totals in stats.types.items():
            largest[name] = max(largest.get(name, 0.0), totals.objects / max(stats.samples, 1))
            confirmed[name] = confirmed.get(name, 0) + totals.confirmed_samples
            exposure[name] = exposure.get(name, 0) + totals.exposure
    owned: dict[tuple[str, str, str | None], set[str]] = {}
    for stats in keys:
        names: set[str] = set()
        for name, totals in stats.types.items():
            if stats.solo_samples >= MIN_SAMPLES and totals.solo_present * 2 >= stats.solo_samples:
                # Retained on most windows that no other request shared: the key's own, even
                # when the key's leak also lands in other keys' windows and is confirmed there.
                names.add(name)
                continue
            if totals.confirmed_samples:
                others = exposure[name] - totals.exposure
                # Confirmed retention per request in flight, in the other keys' windows.
                rate = (confirmed[name] - totals.confirmed_samples) / others if others else 0.0
                expected = rate * totals.exposure
                if _exceeds(totals.confirmed_samples, totals.observed, expected):
                    names.add(name)
                elif (
                    MIN_CONFIRMED <= totals.confirmed_samples == totals.observed
                    and totals.objects / max(stats.samples, 1) >= largest[name]
                ):
                    # Too few samples for the test above, but every checked sample kept the
                    # type alive and no key retains more of it per request: the key's own.
                    names.add(name)
                continue
            if stats.solo_samples >= MIN_SAMPLES and (
                totals.solo_present or _absent_from_solo_significant(stats, totals)
            ):
                if totals.solo_present and totals.present * 2 < stats.samples:
                    names.add(name)  # sporadic, e.g. only for new inputs: judged by liveness
                continue
            rate = totals.objects / max(stats.samples, 1)
            if rate >= OWNERSHIP_RATIO * largest[name]:
                names.add(name)
        owned[stats.key] = names
    return owned


def _absent_from_solo_significant(stats: KeyStats, totals: TypeTotals) -> bool:
    """Return whether the type's absence from all of the key's solo samples is significant,
    so that the type is not the key's.

    A type the key retains on only some requests, such as a session made for new users only,
    is missing from a few solo samples by chance as often as not: at the rate the key's samples
    show it, all solo samples would miss it with a chance above `SIGNIFICANCE`.
    """
    share = totals.present / max(stats.samples, 1)
    return math.pow(1.0 - share, stats.solo_samples) < SIGNIFICANCE


def _exceeds(count: int, trials: int, expected: float) -> bool:
    """Return whether ``count`` events in ``trials`` are significantly more than the
    ``expected`` number: a quarter more, and a Chernoff bound on the chance of at least
    ``count`` events in ``trials`` at the expected rate below `SIGNIFICANCE`."""
    if trials <= 0:
        return False
    if expected <= 0.0:
        return count > 0
    if count < 1.25 * expected:
        return False
    baseline = min(expected / trials, 1.0)
    rate = min(count / trials, 1.0)
    if baseline >= 1.0 or rate <= baseline:
        return False
    divergence = rate * math.log(rate / baseline)
    if rate < 1.0:
        divergence += (1.0 - rate) * math.log((1.0 - rate) / (1.0 - baseline))
    return -trials * divergence < math.log(SIGNIFICANCE)


#: Types the garbage collector never tracks. Retained ones are counted through the containers
#: that hold them, so they follow their containers' verdict instead of getting one of their own.
ATOMS = frozenset({"str", "int", "float", "bytes", "bool", "complex", "NoneType", "bytearray"})


def rank_types(
    names: Iterable[str], stats: KeyStats, in_app: Callable[[str], bool] | None = None
) -> list[str]:
    """Order type names by how much they say about a leak: the app's own classes first (when
    ``in_app`` tells, by module name, which modules are the app's), then classes of installed
    libraries, standard-library classes, builtin containers, and atoms last; most retained
    objects first within each group."""

    def order(name: str) -> tuple[int, int, str]:
        totals = stats.types.get(name)
        return (type_group(name, in_app), -(totals.objects if totals else 0), name)

    return sorted(names, key=order)


def type_group(name: str, in_app: Callable[[str], bool] | None = None) -> int:
    """Return the group `rank_types` puts ``name`` in, from 0 (the app's classes) to 4 (atoms)."""
    if name in ATOMS:
        return 4
    module, dot, _ = name.rpartition(".")
    if not dot:
        return 3
    top = module.split(".", 1)[0].lstrip("_")
    if top in _STDLIB or top in _SERVERS or module.startswith("werkzeug.serving"):
        return 2
    return 0 if in_app is not None and in_app(module) else 1


_STDLIB = frozenset(name.lstrip("_") for name in sys.stdlib_module_names)
#: Servers and protocol libraries whose objects live as long as a client's connection: a window
#: in which a client connects holds them until the client leaves. Like the standard library's
#: classes, they leak only when retained on most samples.
_SERVERS = frozenset({"uvicorn", "h11", "httptools", "gunicorn", "hypercorn", "h2", "wsproto",
                      "waitress", "granian"})
#: The `type_group` of standard-library classes; builtins and atoms come after.
_STDLIB_GROUP = 2
_OWN_PREFIX = "leakware."

# What one type's evidence says, from `_classify`.
_LEAKING = "leaking"
_EVICTING = "evicting"
_TRANSIENT = "transient"
_STOPPED = "stopped"
_UNCONFIRMED = "unconfirmed"
_OCCASIONAL = "occasional"
_UNWITNESSED = "unwitnessed"


def judge(
    stats: KeyStats,
    owned: set[str],
    *,
    use_net_blocks: bool = False,
    in_app: Callable[[str], bool] | None = None,
    untracked: Callable[[str], bool] | None = None,
) -> Judgement:
    """Give ``stats`` its verdict, considering only the types in ``owned``.

    Each owned type is classified on its own (see `_classify`) and the key leaks when any type
    leaks. Without liveness checks (the report judging from samples alone), persistent
    retention stays ``insufficient``, unless ``use_net_blocks`` is set and the interpreter's
    allocated memory blocks grew by at least half of the retained objects. ``in_app`` orders
    the types as in `rank_types`. Types for which ``untracked`` is true have no objects that a
    liveness check could follow, like `ATOMS`, so they go with their containers' verdict.
    """
    names = rank_types((name for name in owned if name in stats.types), stats, in_app)
    if stats.samples < MIN_SAMPLES:
        confidence = stats.samples / MIN_SAMPLES
        return Judgement("insufficient", round(confidence, 2), tuple(names), "too few samples")

    states = {name: _classify(stats, name) for name in names if name not in ATOMS}

    def is_atom(name: str) -> bool:
        # Atoms, types whose objects no check could follow, and leakware's own per-request
        # objects (alive only while the app keeps the request) go with their containers.
        if name in ATOMS or states[name] == _UNWITNESSED or name.startswith(_OWN_PREFIX):
            return True
        return untracked is not None and untracked(name)

    judged = [name for name in names if not is_atom(name)]
    # NOTE: so a leak made only of atoms (strings appended to an older list) is judged clean:
    # no witness can follow such objects, and the young engine does not see them at all.
    if not judged:
        return Judgement("clean", _saturate(stats.samples), (), "nothing retained")
    significant = _significant(stats, judged, in_app)
    freed = tuple(name for name in judged if states[name] in {_EVICTING, _TRANSIENT})
    atoms = tuple(name for name in names if is_atom(name) and not name.startswith(_OWN_PREFIX))

    leaking = [name for name in judged if states[name] == _LEAKING]
    if leaking:
        # The leak is what the leading type's samples retain: a type that leaked on far fewer
        # samples came from elsewhere, such as a connection opened during one window.
        least = stats.types[leaking[0]].present / 2
        leaking = [name for name in leaking if stats.types[name].present >= least]
        totals = stats.types[leaking[0]]
        survival = totals.confirmed_samples / (totals.confirmed_samples + totals.freed_samples)
        confidence = survival * _saturate(totals.confirmed_samples)
        return Judgement("leak", round(confidence, 2), (*leaking, *atoms),
                         "retained objects stay alive after later requests and a collection",
                         freed)
    unconfirmed = [name for name in judged if states[name] == _UNCONFIRMED and name in significant]
    if unconfirmed and use_net_blocks and _net_growth(stats, unconfirmed):
        presence = _recent_presence(stats.types[unconfirmed[0]])
        return Judgement("leak", round(0.5 * _saturate(stats.samples) * presence, 2),
                         (*unconfirmed, *atoms),
                         "memory grew by about what the samples retained; not checked for "
                         "liveness", freed)
    if unconfirmed:
        presence = _recent_presence(stats.types[unconfirmed[0]])
        return Judgement("insufficient", round(0.5 * presence, 2), (*unconfirmed, *atoms),
                         "retention not yet confirmed by a later liveness check", freed)
    stopped = [name for name in judged if states[name] == _STOPPED and name in significant]
    if stopped:
        totals = stats.types[stopped[0]]
        return Judgement("warming", _saturate(stats.samples - totals.last_present), tuple(stopped),
                         "retention stopped after the first samples", freed)
    if any(states[name] == _EVICTING for name in judged):
        reason = "what was retained was freed later, as a bounded structure evicts"
    else:
        reason = "nothing retained stays alive"
    return Judgement("clean", _saturate(stats.samples), (), reason, freed)


def _classify(stats: KeyStats, name: str) -> str:
    """Classify what the key's samples and the liveness checks say about one type.

    ``evicting``: objects alive at one check were freed at a later one (a bounded cache, a list
    pruned now and then, a batch kept until the thread's next job). ``transient``: most objects
    were already freed at their first check. ``leaking``: confirmed alive on `MIN_CONFIRMED`
    samples and still being retained, on most samples and on `MIN_CONFIRMED` twice for a builtin
    or standard-library type. ``stopped``: retained
    on some samples, then no more for longer than chance explains. ``unconfirmed``: retained on
    most recent samples, not yet checked. ``unwitnessed``: retained on `MIN_SAMPLES` checked
    samples without one witness (untracked objects such as dicts of strings, which a window
    counts through their containers). ``occasional``: anything else.
    """
    totals = stats.types[name]
    checked = totals.confirmed_samples + totals.freed_samples
    if not checked and totals.checked_present >= MIN_SAMPLES:
        return _UNWITNESSED
    if totals.evicted >= MIN_EVICTED and totals.evicted >= totals.at_risk:
        return _EVICTING
    if checked and totals.confirmed_samples < MIN_SURVIVAL * checked:
        return _TRANSIENT
    if totals.confirmed_samples >= MIN_CONFIRMED:
        if _stopped(totals.confirmed_samples, totals.first_confirmed, totals.last_confirmed,
                    totals.observed):
            return _STOPPED
        if type_group(name) >= _STDLIB_GROUP and totals.present * 2 < stats.samples:
            # Every route allocates dicts, frames, locks and weak references, so a few of them
            # in a window are as likely another request's as this key's: builtin and
            # standard-library types leak only when retained on most samples. A class of the
            # app or a library that only some requests retain is judged on its own.
            # NOTE: so a standard-library object kept only for new inputs (a logger per new
            # tenant) is not reported unless an app or library class is kept with it.
            return _OCCASIONAL
        if type_group(name) >= _STDLIB_GROUP and totals.confirmed_samples < 2 * MIN_CONFIRMED:
            # Such objects alive in two windows are too little evidence; some freed ones too
            # mean they were another request's.
            waiting = totals.freed_samples == 0 and _recent_presence(totals) >= 0.5
            return _UNCONFIRMED if waiting else _OCCASIONAL
        return _LEAKING
    if _stopped(totals.present, totals.first_present, totals.last_present, stats.samples):
        return _STOPPED
    if totals.confirmed_samples == 0 and _recent_presence(totals) >= 0.5:
        return _UNCONFIRMED
    return _OCCASIONAL


def _stopped(count: int, first: int, last: int, now: int) -> bool:
    """Return whether ``count`` events between times ``first`` and ``last`` (inclusive) and
    none since, up to ``now``, mean the events stopped.

    Two tests, each at `STOPPED_PROBABILITY`. First, the quiet time since ``last`` is at least
    as long as the time the events went on for, and improbable at the rate they went on at: a
    cache that filled on the first samples. Second, whatever the rate, events spread evenly from
    ``first`` to ``now`` would rarely all fall before ``last``: a fill that went on for a while.
    A leak that grows now and then, for new inputs only, fails both. A single event stops as
    soon as two more time steps pass without one.
    """
    if count == 0:
        return False
    gap = now - last
    if count == 1:
        return gap >= 2
    span = last - first + 1
    # The rate while the events went on, with one more step added so that a short burst does
    # not count as a certainty.
    rate = count / (span + 1)
    if gap >= span and math.pow(1.0 - rate, gap) < STOPPED_PROBABILITY:
        return True
    # After the first event, the other count - 1 fell among the span - 1 steps up to `last`
    # rather than anywhere among the now - first steps up to `now`.
    return _log_comb(span - 1, count - 1) - _log_comb(now - first, count - 1) < math.log(
        STOPPED_PROBABILITY
    )


def _log_comb(n: int, k: int) -> float:
    """Return the natural logarithm of the binomial coefficient C(n, k)."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _significant(
    stats: KeyStats, names: list[str], in_app: Callable[[str], bool] | None = None
) -> set[str]:
    """Return the types that decide an unconfirmed or warming verdict: the app's own classes,
    the three types that retained the most objects, and any other with a tenth of the retained
    objects. A few stray objects that no check has reached yet do not hold a verdict back, but
    one object of the app's class per request is what many leaks look like."""
    by_objects = sorted(names, key=lambda name: stats.types[name].objects, reverse=True)
    total = sum(stats.types[name].objects for name in names)
    return set(by_objects[:3]) | {
        name for name in names
        if stats.types[name].objects * 10 >= total or type_group(name, in_app) == 0
    }


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
