"""In-process verdicts: per-key statistics, liveness checks, retention paths and leak events.

`Analysis.observe` runs on the request thread after each sample and only updates bounded
statistics. Everything that walks the heap (a full collection to check whether retained objects
are still alive, counting a type's population, searching a retention path) runs on one daemon
thread per process, while no measurement window is open, and at most as often as
``confirm_interval`` and a 2 % duty cycle allow.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

from leakware.events import LEAK, VERDICT
from leakware.naming import type_name
from leakware.paths import retention_path
from leakware.retained import Witness
from leakware.signature import leak_signature
from leakware.stats import Judgement, KeyStats, Sample, attribute, judge

if TYPE_CHECKING:
    from leakware.events import Emitter
    from leakware.faults import Faults
    from leakware.settings import Settings

__all__ = ["OVERFLOW_ROUTE", "Analysis"]

#: Route of the shared bucket for keys beyond ``max_routes``.
OVERFLOW_ROUTE = "<other>"
#: Witnesses kept per key for liveness checks. A key's new witnesses are dropped while it has
#: this many, so a busy route cannot push out a rare one's.
MAX_PENDING = 64
#: A liveness pass may take at most this fraction of wall time.
DUTY_CYCLE = 0.02
#: How long the worker waits for an open window to close before skipping a pass.
LOCK_TIMEOUT = 5.0

Key = tuple[str, str, str | None]


@dataclasses.dataclass(slots=True)
class _Pending:
    """One witness of a key, checked again on later passes."""

    key: Key
    witness: Witness
    #: The key's sample count when the object was retained. The object is checked only after
    #: a later sample of the same key, so that a batch which the next request replaces is freed.
    taken_at: int
    #: Whether an earlier pass found it alive (and counted it as confirmed).
    alive: bool = False


class Analysis:
    """Statistics and verdicts for the keys of one middleware."""

    def __init__(self, settings: Settings, emitter: Emitter, faults: Faults) -> None:
        self._settings = settings
        self._emitter = emitter
        self._faults = faults
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._keys: OrderedDict[Key, KeyStats] = OrderedDict()
        self._pending: dict[Key, list[_Pending]] = {}
        #: One witness per (key, type) found alive, the starting point of the retention path.
        self._survivors: dict[tuple[Key, str], Witness] = {}
        self._verdicts: dict[Key, tuple[str, tuple[str, ...]]] = {}
        self._reported: set[str] = set()
        self._last_pass = 0.0
        self._pass_cost = 0.0
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
        self._survivors.clear()
        self._verdicts.clear()
        self._reported.clear()

    # -- request thread -------------------------------------------------------------------

    def observe(self, sample: Sample, witnesses: list[Witness]) -> None:
        """Fold one sample in and queue its witnesses for a later liveness check."""
        with self._lock:
            stats = self._stats_for(sample)
            stats.add(sample)
            pending = self._pending.setdefault(stats.key, [])
            for witness in witnesses[: max(MAX_PENDING - len(pending), 0)]:
                pending.append(_Pending(stats.key, witness, stats.samples))
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

    def _judge(self, stats: KeyStats) -> Judgement:
        owned = attribute(self._keys.values())
        return judge(stats, owned.get(stats.key, set()))

    def _due(self) -> bool:
        if not self._pending and not self._suspects():
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
            "objects_per_request": round(objects, 2),
            "bytes_per_request": round(size, 1),
            "threads_per_request": round(stats.threads / max(stats.samples, 1), 3),
            "samples": stats.samples,
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
        """Check pending witnesses after a full collection, then publish verdicts."""
        from leakware.measure import window_lock

        lock = window_lock()
        if not lock.acquire(timeout=LOCK_TIMEOUT):
            return
        started = time.perf_counter()
        try:
            gc.collect()
            self._check_witnesses()
        finally:
            lock.release()
            self._pass_cost = time.perf_counter() - started
            self._last_pass = time.monotonic()
        with self._lock:
            judged = [(stats, self._judge(stats)) for stats in self._keys.values()]
        for stats, judgement in judged:
            self._publish(stats, judgement, force=final)
            if judgement.verdict == "leak":
                self._report_leak(stats, judgement)

    def _check_witnesses(self) -> None:
        with self._lock:
            pending = [item for items in self._pending.values() for item in items]
            ready = [item for item in pending if self._ready(item)]
        scanned = _alive_addresses([item.witness for item in ready if item.witness.needs_scan()])
        with self._lock:
            for item in ready:
                witness = item.witness
                if witness.needs_scan():
                    alive = witness.address in scanned
                else:
                    alive = witness.alive_by_reference()
                self._settle(item, alive)
            # Freed witnesses are done. Living ones are checked again on later passes, in case a
            # bounded structure evicts them eventually.
            for key, items in list(self._pending.items()):
                items[:] = [item for item in items if item.alive or not self._ready(item)]
                if not items:
                    del self._pending[key]

    def _ready(self, item: _Pending) -> bool:
        stats = self._keys.get(item.key)
        return stats is not None and stats.samples > item.taken_at

    def _settle(self, item: _Pending, alive: bool) -> None:
        stats = self._keys.get(item.key)
        totals = stats.types.get(item.witness.type) if stats is not None else None
        if totals is None:
            item.alive = False
            return
        if not alive:
            totals.freed += 1
            if item.alive:
                totals.confirmed -= 1
            item.alive = False
            return
        if not item.alive:
            item.alive = True
            totals.confirmed += 1
        self._survivors.setdefault((item.key, item.witness.type), item.witness)

    def _report_leak(self, stats: KeyStats, judgement: Judgement) -> None:
        leaked = judgement.types[0]
        path: list[str] = []
        if self._settings.retention_paths and "paths" not in self._faults.disabled:
            with self._faults.guard("paths.search", "paths"):
                path = self._path_for(stats.key, leaked)
        signature = leak_signature(stats.method, stats.route, stats.exception, leaked, path)
        if signature in self._reported:
            return
        self._reported.add(signature)
        fields = self._verdict_fields(stats, judgement)
        fields.update(retention_path=path, signature=signature)
        self._emitter.emit(LEAK, **fields)

    def _path_for(self, key: Key, leaked: str) -> list[str]:
        from leakware.measure import window_lock

        witness = self._survivors.get((key, leaked))
        lock = window_lock()
        if not lock.acquire(timeout=LOCK_TIMEOUT):
            return []
        target: object | None = None
        try:
            if witness is not None and witness.ref is not None:
                target = witness.ref()
            elif witness is not None:
                target = _scan_for([witness]).get(witness.address)
            if target is None:
                target = _find_instance(leaked)
            if target is None:
                return []
            return retention_path(target)
        finally:
            target = None
            lock.release()

    def close(self) -> None:
        """Run a last pass and publish every key's verdict, so that short runs end with
        verdicts in the log (at interpreter exit)."""
        if self._closed or self._pid != os.getpid():
            return
        self._closed = True
        self._wake.set()
        if self._keys:
            self.run_pass(final=True)


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


def _find_instance(name: str) -> object | None:
    objects = gc.get_objects()
    classes = {cls for cls in set(map(type, objects)) if type_name(cls) == name}
    # The newest object of the type is the likeliest to be one the leak retained.
    found: object | None = None
    for obj in reversed(objects):
        if type(obj) in classes:
            found = obj
            break
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
