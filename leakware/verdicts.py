"""In-process verdicts: per-key statistics, liveness checks, retention paths and leak events.

`Analysis.observe` runs on the request thread after each sample and only updates bounded
statistics. Everything that walks the heap (a full collection, the check of which witnesses are
still alive, the search for a retention path) runs in a pass on one daemon thread per process,
while holding the window lock, and at most as often as ``confirm_interval`` and a 2 % duty cycle
allow.

A sample's witnesses are first checked after a later sample of the same key, so that a batch
which the key's next request replaces is seen freed. A witness found alive is then kept, a few per
type, and checked again on every pass: a bounded structure evicts it eventually, a leak never
does.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import sysconfig
import threading
import time
import weakref
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from leakware.events import LEAK, VERDICT
from leakware.naming import type_name
from leakware.paths import NO_ROOT, TIME_BUDGET, retention_path
from leakware.retained import Witness
from leakware.signature import leak_signature
from leakware.stats import (
    MIN_SAMPLES,
    SOLO,
    Judgement,
    KeyStats,
    Sample,
    attribute,
    judge,
    rank_types,
    type_group,
)

if TYPE_CHECKING:
    from leakware.events import Emitter
    from leakware.faults import Faults
    from leakware.settings import Settings

__all__ = ["OVERFLOW_ROUTE", "Analysis"]

#: Route of the shared bucket for keys beyond ``max_routes``.
OVERFLOW_ROUTE = "<other>"
#: Witnesses taken from one sample, the app's own classes first.
WITNESSES_PER_SAMPLE = 8
#: Witnesses per key waiting for their first check. A sample whose witnesses do not fit is not
#: checked at all, so a busy route cannot push out a rare one's, and the samples that are
#: checked stay a fair draw.
MAX_PENDING = 96
#: Samples per key waiting for their check, witnesses or not.
MAX_WAITING_SAMPLES = 64
#: Witnesses kept for re-checks after they were found alive, per type and per key.
KEPT_PER_TYPE = 3
MAX_KEPT = 24
#: Types per key whose retention paths are remembered.
MAX_PATHS = 4
#: A liveness pass may take at most this fraction of wall time.
DUTY_CYCLE = 0.02
#: How long the worker waits for an open window to close before skipping a pass.
LOCK_TIMEOUT = 5.0
#: Seconds a retention path search may take at exit, when the process is waiting to stop.
FINAL_PATH_BUDGET = 1.0
#: Modules whose app-or-library answer is remembered.
MAX_KNOWN_MODULES = 4096
#: Objects a retention path search starts from at most.
MAX_PATH_TARGETS = 64
#: Types per verdict event listed with their per-request numbers.
MAX_TYPE_STATS = 10

Key = tuple[str, str, str | None]


@dataclasses.dataclass(slots=True)
class _Pending:
    """One witness of a key, waiting for its first check or kept for re-checks."""

    key: Key
    witness: Witness
    #: The key's sample number when the object was retained. The object is checked only after
    #: a later sample of the same key, so that a batch which the next request replaces is freed.
    taken_at: int
    #: Whether a check found it alive; kept witnesses are checked again on every pass.
    alive: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Waiting:
    """A sample accepted for checking, before its turn comes."""

    number: int
    #: The types it retained.
    present: frozenset[str]
    #: Other requests in flight during its window.
    in_flight: int


class Analysis:
    """Statistics and verdicts for the keys of one middleware."""

    def __init__(self, settings: Settings, emitter: Emitter, faults: Faults) -> None:
        self._settings = settings
        self._emitter = emitter
        self._faults = faults
        self._in_app = AppModules()
        self._untracked = UntrackedTypes()
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._keys: OrderedDict[Key, KeyStats] = OrderedDict()
        #: Witnesses per key: those waiting for their first check and those kept alive.
        self._pending: dict[Key, list[_Pending]] = {}
        #: Per key, the samples accepted for checking and not checked yet, oldest first.
        self._waiting: dict[Key, deque[_Waiting]] = {}
        #: The newest witness per (key, type) found alive: where its retention path starts.
        self._survivors: dict[tuple[Key, str], Witness] = {}
        self._paths: dict[tuple[Key, str], list[str]] = {}
        self._verdicts: dict[Key, tuple[str, tuple[str, ...]]] = {}
        self._reported: set[str] = set()
        # The first pass waits a full interval, like every later one.
        self._last_pass = time.monotonic()
        self._pass_cost = 0.0
        self._next_path_search = 0.0
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    def after_fork(self) -> None:
        """Forget the parent's worker thread and locks; keep nothing measured by the parent."""
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._wake = threading.Event()
        self._worker = None
        self._pid = os.getpid()
        self._keys.clear()
        self._pending.clear()
        self._waiting.clear()
        self._survivors.clear()
        self._paths.clear()
        self._verdicts.clear()
        self._reported.clear()

    # -- request thread -------------------------------------------------------------------

    def observe(self, sample: Sample, witnesses: list[Witness]) -> None:
        """Fold one sample in and queue it and its witnesses for a later liveness check."""
        with self._lock:
            stats = self._stats_for(sample)
            stats.add(sample, self._in_app)
            if sample.in_flight <= SOLO or stats.solo_samples < MIN_SAMPLES:
                # Objects from a shared window may be another request's; once the key has
                # enough solo samples, only those are checked for liveness.
                self._accept(stats, sample, witnesses)
            judgement = self._judge(stats)
        self._publish(stats, judgement)
        if self._due():
            self._start_worker()
            self._wake.set()

    def _stats_for(self, sample: Sample) -> KeyStats:
        key = sample.key
        stats = self._keys.get(key)
        if stats is None:
            if len(self._keys) >= self._settings.max_routes:
                key = (sample.method, OVERFLOW_ROUTE, None)
                stats = self._keys.get(key)
            if stats is None:
                stats = KeyStats(*key)
                self._keys[key] = stats
        return stats

    def _accept(self, stats: KeyStats, sample: Sample, witnesses: list[Witness]) -> None:
        waiting = self._waiting.setdefault(stats.key, deque())
        pending = self._pending.setdefault(stats.key, [])
        room = MAX_PENDING - sum(1 for item in pending if not item.alive)
        if len(waiting) >= MAX_WAITING_SAMPLES or (witnesses and room <= 0):
            return
        chosen = self._choose(stats, witnesses)[: min(room, WITNESSES_PER_SAMPLE)]
        present = frozenset(name for name, _, _ in sample.types)
        waiting.append(_Waiting(stats.samples, present, sample.in_flight))
        pending.extend(_Pending(stats.key, witness, stats.samples) for witness in chosen)

    def _choose(self, stats: KeyStats, witnesses: list[Witness]) -> list[Witness]:
        """Order witnesses by how much their check says, so that the ones that fit are best.

        The app's own classes come first, then the types this key retains on most of its
        samples (what it leaks) before the ones it retains now and then (what requests beside
        it left in its window), then the rest as `rank_types` orders them. Each type gets one
        witness before any type gets a second, except that the app's classes get their second
        before other types get their first.
        """
        ranked = rank_types({witness.type for witness in witnesses}, stats, self._in_app)
        position = {name: index for index, name in enumerate(ranked)}

        def presence(name: str) -> int:
            totals = stats.types.get(name)
            share = totals.present / stats.samples if totals is not None else 0.0
            return -round(share * 4)

        seen: dict[str, int] = {}
        order: list[tuple[int, int, int, int, Witness]] = []
        for index, witness in enumerate(witnesses):
            repeat = seen[witness.type] = seen.get(witness.type, -1) + 1
            group = type_group(witness.type, self._in_app)
            # The app's classes get their second witness before other types get their first:
            # in a shared window, one witness of the leaked class may be another request's.
            turn = repeat if group == 0 else repeat + 1
            order.append((turn, group, presence(witness.type), position[witness.type] * 64
                          + index, witness))
        order.sort(key=lambda entry: entry[:4])
        return [entry[-1] for entry in order]

    def _judge(self, stats: KeyStats, owned: dict[Key, set[str]] | None = None) -> Judgement:
        if owned is None:
            owned = attribute(self._keys.values())
        return judge(stats, owned.get(stats.key, set()), in_app=self._in_app,
                     untracked=self._untracked)

    def _due(self) -> bool:
        if not self._waiting and not self._pending and not self._suspects():
            return False
        interval = max(self._settings.confirm_interval, self._pass_cost / DUTY_CYCLE)
        return time.monotonic() - self._last_pass >= interval

    def _suspects(self) -> bool:
        return any(verdict == "insufficient" for verdict, _ in self._verdicts.values())

    # -- events ---------------------------------------------------------------------------

    def _publish(self, stats: KeyStats, judgement: Judgement, *, force: bool = False) -> None:
        # A verdict event goes out when the verdict or the types it names change, so a log
        # shows each key's history without one event per sample.
        state = (judgement.verdict, judgement.types[:1])
        with self._publish_lock:
            if not force and self._verdicts.get(stats.key) == state:
                return
            self._verdicts[stats.key] = state
            self._emitter.emit(VERDICT, **self._verdict_fields(stats, judgement))
        if judgement.verdict == "leak":
            self._start_worker()
            self._wake.set()

    def _verdict_fields(self, stats: KeyStats, judgement: Judgement) -> dict[str, object]:
        leaked = judgement.types[0] if judgement.types else None
        objects, size = stats.per_request(leaked) if leaked else (0.0, 0.0)
        type_stats = []
        for name in judgement.types[:MAX_TYPE_STATS]:
            type_objects, type_bytes = stats.per_request(name)
            type_stats.append({
                "type": name,
                "objects_per_request": round(type_objects, 2),
                "bytes_per_request": round(type_bytes, 1),
            })
        return {
            "method": stats.method,
            "route": stats.route,
            "exception": stats.exception,
            "status": stats.status,
            "verdict": judgement.verdict,
            "confidence": judgement.confidence,
            "reason": judgement.reason,
            "type": leaked,
            "types": list(judgement.types),
            "type_stats": type_stats,
            "freed_types": list(judgement.freed),
            "objects_per_request": round(objects, 2),
            "bytes_per_request": round(size, 1),
            "threads_per_request": round(stats.threads / max(stats.samples, 1), 3),
            "samples": stats.samples,
            "leaking_samples": stats.types[leaked].present if leaked in stats.types else 0,
        }

    # -- worker thread --------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._closed:
            return
        worker = self._worker
        if worker is not None and worker.is_alive() and self._pid == os.getpid():
            return
        self._worker = threading.Thread(
            target=_run_worker, args=(weakref.ref(self),), name="leakware-analysis", daemon=True
        )
        self._worker.start()

    def run_pass(self, *, final: bool = False) -> None:
        """Check witnesses after a full collection, then publish verdicts and new leaks."""
        from leakware.measure import window_lock

        # The whole pass holds the window lock: the collection and the referrer searches must
        # not run while the heap is frozen, and what the pass keeps (verdict state, survivors)
        # must not land in a request's window.
        lock = window_lock()
        if not lock.acquire(timeout=LOCK_TIMEOUT):
            return
        started = time.perf_counter()
        try:
            gc.collect()
            self._check_witnesses()
            with self._lock:
                owned = attribute(self._keys.values())
                judged = [(stats, self._judge(stats, owned)) for stats in self._keys.values()]
            self._pass_cost = time.perf_counter() - started
            leaks = []
            for stats, judgement in judged:
                self._publish(stats, judgement, force=final)
                if judgement.verdict == "leak":
                    leaks.append((stats, judgement))
            self._report_leaks(leaks, final=final)
        finally:
            lock.release()
            self._last_pass = time.monotonic()

    def _check_witnesses(self) -> None:
        with self._lock:
            ready = self._ready_samples()
            numbers = {key: {sample.number for sample in samples} for key, samples in ready.items()}
            due = [
                item
                for key, items in self._pending.items()
                for item in items
                if item.alive or item.taken_at in numbers.get(key, ())
            ]
        scanned = _alive_addresses([item.witness for item in due if item.witness.needs_scan()])
        alive = {
            id(item): (item.witness.address in scanned if item.witness.needs_scan()
                       else item.witness.alive_by_reference())
            for item in due
        }
        with self._lock:
            for key, samples in ready.items():
                self._settle_samples(key, samples, alive)
            for key, items in list(self._pending.items()):
                self._settle_kept(key, items, alive)
                if not items:
                    del self._pending[key]

    def _ready_samples(self) -> dict[Key, list[_Waiting]]:
        """Take, per key, the waiting samples that a later sample of the key followed."""
        ready: dict[Key, list[_Waiting]] = {}
        for key, waiting in list(self._waiting.items()):
            stats = self._keys.get(key)
            if stats is None:
                del self._waiting[key]
                continue
            while waiting and waiting[0].number < stats.samples:
                ready.setdefault(key, []).append(waiting.popleft())
            if not waiting:
                del self._waiting[key]
        return ready

    def _settle_samples(self, key: Key, samples: list[_Waiting], alive: dict[int, bool]) -> None:
        """Record the first check of each ready sample's witnesses, oldest sample first."""
        stats = self._keys[key]
        items = self._pending.get(key, [])
        kept_per_type: dict[str, int] = {}
        for item in items:
            if item.alive:
                kept_per_type[item.witness.type] = kept_per_type.get(item.witness.type, 0) + 1
        kept = sum(kept_per_type.values())
        for waiting in samples:
            sample = waiting.number
            stats.checked += 1
            witnessed = {item.witness.type for item in items if item.taken_at == sample}
            for name, totals in stats.types.items():
                if name in waiting.present:
                    totals.checked_present += 1
                    if name not in witnessed:
                        continue  # retained, but whether for good is unknown
                totals.observed += 1
                totals.exposure += waiting.in_flight
            found: dict[str, list[bool]] = {}
            for item in items:
                if item.taken_at == sample and not item.alive:
                    found.setdefault(item.witness.type, []).append(alive[id(item)])
            for name, checks in found.items():
                checked = stats.types.get(name)
                if checked is not None:
                    checked.record_check(sample, alive=sum(checks), freed=checks.count(False))
            kept = self._keep_survivors(
                key, sample, items, alive, kept_per_type=kept_per_type, kept=kept
            )
        # Witnesses of checked samples that were not kept are done.
        numbers = {waiting.number for waiting in samples}
        items[:] = [item for item in items if item.alive or item.taken_at not in numbers]

    def _keep_survivors(
        self,
        key: Key,
        sample: int,
        items: list[_Pending],
        alive: dict[int, bool],
        *,
        kept_per_type: dict[str, int],
        kept: int,
    ) -> int:
        """Keep the witnesses of one sample found alive for later re-checks, within the bounds
        per type and in all; return the new number kept."""
        stats = self._keys[key]
        for item in items:
            if item.taken_at != sample or item.alive or not alive[id(item)]:
                continue
            checked_type = stats.types.get(item.witness.type)
            if checked_type is None:
                continue
            self._survivors[(key, item.witness.type)] = item.witness
            if kept < MAX_KEPT and kept_per_type.get(item.witness.type, 0) < KEPT_PER_TYPE:
                item.alive = True
                checked_type.kept += 1
                kept += 1
                kept_per_type[item.witness.type] = kept_per_type.get(item.witness.type, 0) + 1
        return kept

    def _settle_kept(self, key: Key, items: list[_Pending], alive: dict[int, bool]) -> None:
        """Drop kept witnesses that a re-check found freed and count them as evicted, then count
        the kept witnesses that have outlived the youngest eviction of their type."""
        stats = self._keys.get(key)
        if stats is None:
            items.clear()
            return
        remaining = []
        for item in items:
            if not item.alive or alive.get(id(item), True):
                remaining.append(item)
                continue
            totals = stats.types.get(item.witness.type)
            if totals is not None:
                totals.evicted += 1
                age = stats.samples - item.taken_at
                totals.evicted_age = min(totals.evicted_age, age) if totals.evicted_age else age
            if self._survivors.get((key, item.witness.type)) is item.witness:
                del self._survivors[(key, item.witness.type)]
        items[:] = remaining
        at_risk: dict[str, int] = {}
        for item in remaining:
            totals = stats.types.get(item.witness.type)
            if (
                item.alive
                and totals is not None
                and totals.evicted_age
                and stats.samples - item.taken_at >= totals.evicted_age
            ):
                at_risk[item.witness.type] = at_risk.get(item.witness.type, 0) + 1
        for name, totals in stats.types.items():
            totals.at_risk = at_risk.get(name, 0)

    def _report_leaks(self, leaks: list[tuple[KeyStats, Judgement]], *, final: bool) -> None:
        """Emit a leak event for each leak whose signature is new.

        A leak event carries the retention path, so it waits for its path search. Searches are
        paced on their own: after one that took t seconds, the next waits t / `DUTY_CYCLE`, so
        that slow searches never delay the liveness checks. The last pass, at exit, searches
        for every path still missing, each within `FINAL_PATH_BUDGET`.
        """
        for stats, judgement in leaks:
            leaked = judgement.types[0]
            path = self._paths.get((stats.key, leaked))
            if path is None and self._want_paths():
                if not final and time.monotonic() < self._next_path_search:
                    continue
                started = time.perf_counter()
                with self._faults.guard("paths.search", "paths"):
                    path = self._path_for(stats.key, leaked, FINAL_PATH_BUDGET if final else None)
                cost = time.perf_counter() - started
                self._next_path_search = time.monotonic() + cost / DUTY_CYCLE
                if path is not None and len(self._paths) < MAX_PATHS * len(self._keys):
                    self._paths[(stats.key, leaked)] = path
            self._emit_leak(stats, judgement, path or [])

    def _want_paths(self) -> bool:
        return self._settings.retention_paths and "paths" not in self._faults.disabled

    def _emit_leak(self, stats: KeyStats, judgement: Judgement, path: list[str]) -> None:
        leaked = judgement.types[0]
        signature = leak_signature(stats.method, stats.route, stats.exception, leaked, path)
        if signature in self._reported:
            return
        self._reported.add(signature)
        fields = self._verdict_fields(stats, judgement)
        fields.update(retention_path=path, signature=signature)
        self._emitter.emit(LEAK, **fields)

    def _path_for(self, key: Key, leaked: str, budget: float | None) -> list[str] | None:
        """Search the path from the objects of the leaked type that this key's witnesses show
        alive; when none of them reaches a root, from every object of the type in the heap.

        Starting from several objects finds the one closest to its root, which matters when
        every request extends a chain, as a traceback that grows with each raise does.
        """
        deadline = time.monotonic() + (budget if budget is not None else TIME_BUDGET)
        path: list[str] = []
        for in_heap in (False, True):
            targets = _instances(leaked) if in_heap else self._alive_witnessed(key, leaked)
            left = deadline - time.monotonic()
            if not targets or left <= 0:
                continue
            path = retention_path(*targets, time_budget=left)
            targets.clear()
            if path[:1] != [NO_ROOT]:
                break
        return path

    def _alive_witnessed(self, key: Key, leaked: str) -> list[object]:
        """Return the objects of the leaked type that this key's witnesses show alive, newest
        first."""
        items = [item for item in self._pending.get(key, ()) if item.witness.type == leaked]
        items.sort(key=lambda item: item.taken_at, reverse=True)
        witnesses = [item.witness for item in items]
        survivor = self._survivors.get((key, leaked))
        if survivor is not None:
            witnesses.append(survivor)
        del items
        scanned = _scan_for([witness for witness in witnesses if witness.needs_scan()])
        found: list[object] = []
        for witness in witnesses:
            obj = witness.ref() if witness.ref is not None else scanned.get(witness.address)
            if obj is not None and all(obj is not other for other in found):
                found.append(obj)
        return found

    def close(self) -> None:
        """Run a last pass and publish every key's verdict, so that short runs end with
        verdicts in the log (at interpreter exit)."""
        if self._closed or self._pid != os.getpid():
            return
        self._closed = True
        self._wake.set()
        if self._keys:
            self.run_pass(final=True)


class AppModules:
    """Tells whether a module is the app's own code, by where its file lives: the standard
    library, installed packages and leakware itself are not."""

    def __init__(self) -> None:
        paths = sysconfig.get_paths()
        prefixes = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")
                    if paths.get(name)}
        prefixes.add(os.path.dirname(os.path.abspath(__file__)))
        self._library = tuple(sorted(prefixes))
        self._known: dict[str, bool] = {}

    def __call__(self, module: str) -> bool:
        known = self._known.get(module)
        if known is not None:
            return known
        file = getattr(sys.modules.get(module), "__file__", None)
        in_app = isinstance(file, str) and not os.path.abspath(file).startswith(self._library)
        if len(self._known) < MAX_KNOWN_MODULES:
            self._known[module] = in_app
        return in_app


class UntrackedTypes:
    """Tells whether a type, by name, has instances the garbage collector does not track, such
    as ``select.epoll``: a window counts them only through the containers that hold them, and
    no witness can follow them."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        known = self._known.get(name)
        if known is not None:
            return known
        cls = _resolve(name)
        untracked = isinstance(cls, type) and not cls.__flags__ & _HAVE_GC
        if len(self._known) < MAX_KNOWN_MODULES:
            self._known[name] = untracked
        return untracked


# Py_TPFLAGS_HAVE_GC: instances of the type can be tracked by the garbage collector.
_HAVE_GC = 1 << 14


def _resolve(name: str) -> object:
    """Return the class that ``name`` (``module.QualName``) names, if its module has it."""
    module_name, _, qualname = name.rpartition(".")
    module = sys.modules.get(module_name)
    while module is None and "." in module_name:
        # A nested class: ``module.Outer.Inner``.
        module_name, _, outer = module_name.rpartition(".")
        qualname = f"{outer}.{qualname}"
        module = sys.modules.get(module_name)
    found: object = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is None and module is not None:
        # Some C types are exposed under another name (``_thread.LockType`` is ``lock``).
        found = next((value for value in list(vars(module).values())
                      if isinstance(value, type) and value.__qualname__ == qualname), None)
    return found


def _scan_for(witnesses: list[Witness]) -> dict[int, object]:
    """Find the witnessed objects that are still alive, by address, in one heap pass."""
    if not witnesses:
        return {}
    wanted = {witness.address: witness for witness in witnesses}
    found: dict[int, object] = {}
    for obj in gc.get_objects():
        witness = wanted.get(id(obj))
        if witness is not None and witness.matches(obj):
            found[id(obj)] = obj
    return found


def _alive_addresses(witnesses: list[Witness]) -> set[int]:
    return set(_scan_for(witnesses))


def _instances(name: str) -> list[object]:
    """Return up to `MAX_PATH_TARGETS` objects whose type is called ``name``."""
    objects = gc.get_objects()
    classes = {cls for cls in set(map(type, objects)) if type_name(cls) == name}
    found = [obj for obj in objects if type(obj) in classes][-MAX_PATH_TARGETS:]
    del objects
    return found


def _run_worker(ref: weakref.ref[Analysis]) -> None:
    while True:
        analysis = ref()
        if analysis is None or analysis._closed:
            return
        wake = analysis._wake
        del analysis
        wake.wait(timeout=1.0)
        wake.clear()
        analysis = ref()
        if analysis is None or analysis._closed:
            return
        if analysis._due():
            with analysis._faults.guard("analysis.pass", "analysis"):
                analysis.run_pass()
        del analysis
