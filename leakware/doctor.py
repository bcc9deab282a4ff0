"""The heap monitor: one thread per process that reports how the heap grew, type by type.

Turned on with ``LEAKWARE_MONITOR=1`` (or ``monitor=True``). The thread starts on the first request
a process serves, so under ``gunicorn --preload`` it runs in each worker and never in the master,
which imports the app but serves nothing. It waits ``monitor_warmup`` seconds, takes a baseline
census, and then every ``monitor_interval`` seconds emits one ``leakware.heap`` event:

``interval``, ``seconds``, ``since``
    The event's number (1 for the first after the baseline), the seconds since the baseline, and
    the baseline's UTC timestamp, which distinguishes two processes that reused a pid.
``objects``, ``objects_growth``
    Objects the garbage collector tracks, now and relative to the baseline.
``types``
    Up to ``top_types`` types that grew the most: ``{"type", "objects", "bytes"}``, where
    ``objects`` is the exact growth in count and ``bytes`` an estimate (see below).
``rss_bytes``, ``rss_growth_bytes``, ``rss_source``
    Resident set size. ``rss_source`` is ``"statm"`` for the current size from
    ``/proc/self/statm`` (Linux). Where that file does not exist it is ``"maxrss"``, the peak size
    from ``getrusage``, which never goes down. Both are ``null`` when neither is available.
``threads``, ``threads_growth``
    Live Python threads, leakware's own (named ``leakware-...``) not counted.
``frozen_objects``, ``sized_objects``, ``census_ms``
    Objects in the permanent generation (`gc.freeze`), which the census cannot see; how many
    objects were measured for the byte estimates; and the census's own cost.

The census lists every tracked object (`gc.get_objects`) and counts them by type, so counts are
exact. Measuring every object's size as well costs about twice as much (measured with
benchmarks/bench_doctor.py on a heap of a million objects), so sizes come from every n-th object,
at most `SIZE_SAMPLE` of them, and a type's ``bytes`` is its growth in count times the mean size
of its measured objects. Strings, numbers and other untracked objects are not
counted, and no collection runs first, so cyclic garbage waiting for the collector counts as
growth until it is collected: a leak grows at every interval, garbage comes and goes.

Only type names, counts and sizes are written, never values.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar

from leakware.events import HEAP
from leakware.naming import type_name

if TYPE_CHECKING:
    from leakware.events import Emitter
    from leakware.faults import Faults
    from leakware.settings import Settings

__all__ = [
    "SIZE_SAMPLE",
    "Census",
    "HeapMonitor",
    "count_threads",
    "monitor_for",
    "read_rss",
    "take_census",
]

#: Maximum number of objects measured with `sys.getsizeof` per census, for the byte estimates.
SIZE_SAMPLE = 20_000
#: Objects counted per step. The interpreter can switch threads between steps, so a request
#: thread waits for one step instead of the whole count.
COUNT_STEP = 65_536
#: How long a census waits for an open measurement window to close before skipping a turn.
LOCK_TIMEOUT = 5.0
#: How long interpreter exit waits for a census in progress.
STOP_TIMEOUT = 2.0

# sizeof(PyGC_Head) on 64-bit builds, which sys.getsizeof adds for tracked objects. Used only
# for a type that has no measured object, as a floor under its size estimate.
_GC_HEADER = 16

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclasses.dataclass(slots=True)
class Census:
    """The tracked objects of the process at one moment, by type name."""

    objects: int
    counts: dict[str, int]
    #: Mean shallow size in bytes of the measured objects of each type.
    mean_sizes: dict[str, float]
    #: Shallow size in bytes of one object of types that no measured object covers.
    fallback_sizes: dict[str, int]
    sized_objects: int

    def mean_size(self, name: str) -> float:
        """Return the estimated size of one ``name`` object, in bytes."""
        mean = self.mean_sizes.get(name)
        return mean if mean is not None else float(self.fallback_sizes.get(name, 0))


def take_census(size_sample: int = SIZE_SAMPLE) -> Census:
    """Count every object the garbage collector tracks by type, and estimate sizes by type.

    Holds a reference to every object until it returns; keeps none afterwards.
    """
    objects = gc.get_objects()
    total = len(objects)
    by_class: Counter[type] = Counter()
    for start in range(0, total, COUNT_STEP):
        by_class.update(map(type, objects[start : start + COUNT_STEP]))

    stride = max(1, -(-total // max(size_sample, 1)))  # rounded up: at most size_sample
    sample = objects[::stride]
    del objects
    sampled, sampled_bytes = _sizes_by_class(sample)
    sample.clear()

    # Two classes can share a name (one module loaded twice): they are merged, as in samples.
    counts: dict[str, int] = {}
    sizes: dict[str, list[int]] = {}
    fallback: dict[str, int] = {}
    for cls, count in by_class.items():
        name = type_name(cls)
        counts[name] = counts.get(name, 0) + count
        if cls in sampled:
            pair = sizes.setdefault(name, [0, 0])
            pair[0] += sampled_bytes[cls]
            pair[1] += sampled[cls]
        else:
            fallback[name] = _basic_size(cls)
    by_class.clear()
    mean_sizes = {name: size / number for name, (size, number) in sizes.items()}
    return Census(total, counts, mean_sizes, fallback, sum(sampled.values()))


def _sizes_by_class(sample: list[object]) -> tuple[dict[type, int], dict[type, int]]:
    """Return how many objects of ``sample`` were measured per class, and their total size."""
    kinds = list(map(type, sample))
    sizes: list[int | None]
    try:
        sizes = list(map(sys.getsizeof, sample))
    except Exception:  # a __sizeof__ written by the app may raise anything; skip that object
        sizes = [_size_or_none(obj) for obj in sample]
    measured: dict[type, int] = {}
    totals: dict[type, int] = {}
    for cls, size in zip(kinds, sizes, strict=True):
        if size is not None:
            measured[cls] = measured.get(cls, 0) + 1
            totals[cls] = totals.get(cls, 0) + size
    return measured, totals


def _size_or_none(obj: object) -> int | None:
    try:
        return sys.getsizeof(obj)
    except Exception:
        return None


def _basic_size(cls: type) -> int:
    basic = getattr(cls, "__basicsize__", 0)
    return (basic if isinstance(basic, int) else 0) + _GC_HEADER


def count_threads() -> int:
    """Return how many Python threads are alive, leaving out leakware's own."""
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith("leakware-"))


def read_rss() -> tuple[int | None, str | None]:
    """Return the resident set size in bytes and where it came from (see the module docs)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * _PAGE_SIZE, "statm"
    except (OSError, IndexError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None, None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and the BSDs, in bytes on macOS.
    return peak * (1 if sys.platform == "darwin" else 1024), "maxrss"


@dataclasses.dataclass(slots=True)
class _Baseline:
    census: Census
    rss: int | None
    threads: int
    monotonic: float
    timestamp: str


class HeapMonitor:
    """The heap monitor of one process; `monitor_for` returns the process's only instance.

    Args:
        settings: ``monitor_warmup``, ``monitor_interval`` and ``top_types`` are read.
        emitter: where ``leakware.heap`` events go.
        faults: the fault guard. A failed census switches the ``monitor`` part off, and the
            thread ends; a failed write switches ``emit`` off, as for every other event.
    """

    #: The process's monitor, set by `monitor_for` and cleared by `stop`.
    current: ClassVar[HeapMonitor | None] = None

    def __init__(self, settings: Settings, emitter: Emitter, faults: Faults) -> None:
        self.warmup = settings.monitor_warmup
        self.interval = settings.monitor_interval
        self.top_types = settings.top_types
        self._emitter = emitter
        self._faults = faults
        self._reset()

    def _reset(self) -> None:
        """Set the state of a monitor that has not started, which is also the state of a
        forked child: the parent's thread does not exist there."""
        #: Whether the thread was started in this process. Read on every request, so it is a
        #: plain attribute rather than a call.
        self.started = False
        self._stopped = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the monitor thread in this process, once; later calls return at once."""
        with self._lock:
            if self.started or self._stopped:
                return
            self.started = True
            self._thread = threading.Thread(
                target=self._run, name="leakware-monitor", daemon=True
            )
            self._thread.start()
        _at_exit(self.stop)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for a census in progress to end.

        A stopped monitor does not start again in this process.
        """
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if HeapMonitor.current is self:
            HeapMonitor.current = None

    def _run(self) -> None:
        baseline: _Baseline | None = None
        number = 0
        delay = self.warmup
        while not self._stop.wait(delay):
            delay = self.interval
            if self._faults.is_off("monitor") or self._faults.is_off("emit"):
                return
            if baseline is None:
                # None when a window stayed open too long: the next interval tries again.
                with self._faults.guard("monitor.baseline", "monitor"):
                    baseline = self._baseline()
                continue
            fields = None
            with self._faults.guard("monitor.census", "monitor"):
                fields = self._measure(baseline, number + 1)
            if fields is None:
                continue
            number += 1
            with self._faults.guard("monitor.emit", "emit"):
                self._emitter.emit(HEAP, **fields)

    def _baseline(self) -> _Baseline | None:
        census = self._locked_census()
        if census is None:
            return None
        rss, _ = read_rss()
        baseline = _Baseline(
            census=census,
            rss=rss,
            threads=count_threads(),
            monotonic=time.monotonic(),
            # The same form as the "timestamp" of every event.
            timestamp=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        )
        # The baseline's own containers were created after its census; counting them in keeps
        # the monitor out of the growth it reports.
        for own in (baseline, census):
            if gc.is_tracked(own):
                name = type_name(type(own))
                census.counts[name] = census.counts.get(name, 0) + 1
                census.objects += 1
        return baseline

    def _locked_census(self) -> Census | None:
        """Take a census while no measurement window is open, or return ``None`` if one stays
        open for `LOCK_TIMEOUT` seconds or the monitor is stopping."""
        from leakware.measure import window_lock

        # A young-engine window freezes the heap, and gc.get_objects() then lists only the
        # window's objects; the census's own objects would also count as the request's.
        lock = window_lock()
        deadline = time.monotonic() + LOCK_TIMEOUT
        while not lock.acquire(timeout=0.1):
            if self._stop.is_set() or time.monotonic() > deadline:
                return None
        try:
            return take_census()
        finally:
            lock.release()

    def _measure(self, baseline: _Baseline, number: int) -> dict[str, object] | None:
        started = time.perf_counter()
        census = self._locked_census()
        if census is None:
            return None
        cost = time.perf_counter() - started
        rss, rss_source = read_rss()
        threads = count_threads()
        before = baseline.census.counts
        growth = [
            (count - before.get(name, 0), name)
            for name, count in census.counts.items()
            if count > before.get(name, 0)
        ]
        growth.sort(key=lambda item: (-item[0], item[1]))
        types = [
            {"type": name, "objects": grown, "bytes": round(grown * census.mean_size(name))}
            for grown, name in growth[: self.top_types]
        ]
        return {
            "interval": number,
            "seconds": round(time.monotonic() - baseline.monotonic, 1),
            "since": baseline.timestamp,
            "objects": census.objects,
            "objects_growth": census.objects - baseline.census.objects,
            "types": types,
            "rss_bytes": rss,
            "rss_growth_bytes": None if rss is None or baseline.rss is None else rss - baseline.rss,
            "rss_source": rss_source,
            "threads": threads,
            "threads_growth": threads - baseline.threads,
            "frozen_objects": gc.get_freeze_count(),
            "sized_objects": census.sized_objects,
            "census_ms": round(cost * 1000, 1),
        }


def monitor_for(settings: Settings, emitter: Emitter, faults: Faults) -> HeapMonitor | None:
    """Return the process's heap monitor, created on first use, or ``None`` when the settings
    leave it off. Its thread does not run until `HeapMonitor.start`.

    A process has one monitor however many middlewares it has; it writes to the log of the
    first middleware that turned it on.
    """
    if not settings.monitor:
        return None
    if HeapMonitor.current is None:
        HeapMonitor.current = HeapMonitor(settings, emitter, faults)
    return HeapMonitor.current


def _after_fork_in_child() -> None:
    if HeapMonitor.current is not None:
        HeapMonitor.current._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _at_exit(callback: Callable[[], None]) -> None:
    # Registered after the middleware's own exit hook, and these hooks run newest first, so the
    # thread stops before the middleware closes the log file it writes to. threading runs them
    # before it joins other threads, which a leaking app can make wait forever.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(callback)
            return
        except RuntimeError:  # the interpreter is already shutting down
            pass
    import atexit

    atexit.register(callback)
