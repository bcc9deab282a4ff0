"""The framework-free core: sampling, the exclusive measurement window, and the sample event.

Adapters call `Core.should_sample` for every request. For a sampled request they fill an
`Outcome`, call `Core.begin` right before the app runs and `Core.finish` when the response is
complete. The core never imports a web framework, and nothing it does can raise into a request:
every step runs inside the fault guard.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from leakware.doctor import monitor_for
from leakware.engines import Engine, Snapshot, Window, make_engine
from leakware.events import SAMPLE, STOP, Emitter
from leakware.faults import Faults
from leakware.handled import HandledExceptions
from leakware.naming import type_name
from leakware.retained import Retained
from leakware.routes import normalise_path
from leakware.sampling import Sampler
from leakware.settings import Settings, SettingsError
from leakware.stats import Sample
from leakware.verdicts import Analysis

__all__ = ["ENVIRON_KEY", "Core", "Measurement", "Outcome"]

#: Key under which the middleware marks a request in the WSGI environ or the ASGI scope. A
#: second leakware middleware that finds it passes the request straight through.
ENVIRON_KEY = "leakware.request"

@dataclasses.dataclass(slots=True)
class Outcome:
    """What the adapter learned about one request. Holds names and numbers, never objects.

    ``path`` is the raw request path. It is kept only while the request runs, to find its route
    when the app has no router, and is never written anywhere.
    """

    method: str
    path: str
    route: str | None = None
    status: int | None = None
    exception: str | None = None

    def failed(self, exc: BaseException, method: str, path: str) -> None:
        """Record an exception that the framework turned into a response (first one wins)."""
        if self.exception is None:
            self.exception = type_name(type(exc))


#: One entry per request inside any leakware middleware of the process. Adapters append on
#: entry and pop on exit; both are atomic under the GIL, so len() counts requests in flight.
ACTIVE: list[None] = []


class _ProcessState:
    """Measurement state shared by every leakware middleware in the process.

    A window is process-wide (the heap is), so at most one is open at a time.
    """

    def __init__(self) -> None:
        self.window_lock = threading.Lock()
        self.open: Measurement | None = None
        self.handled = HandledExceptions()

    def reset(self) -> None:
        # A forked child has one thread: whatever the parent's other threads held is void.
        self.__init__()  # type: ignore[misc]
        ACTIVE.clear()


_STATE = _ProcessState()
_CORES: weakref.WeakSet[Core] = weakref.WeakSet()


class _Reaper:
    """A daemon thread that abandons a window open longer than its ``max_window_seconds``.

    Requests that start during a window also check its deadline, but a long response with no
    other traffic would keep the heap frozen until the next request without this thread.
    """

    #: Seconds between two checks.
    PERIOD = 0.5

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pid = 0

    def ensure(self) -> None:
        """Start the thread in this process if it is not running."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=_reap, name="leakware-reaper", daemon=True)
        self._thread.start()


def _reap() -> None:
    while True:
        time.sleep(_Reaper.PERIOD)
        _expire_overdue()


def _expire_overdue() -> None:
    # A function of its own so that no reference to a measurement outlives the check: a local
    # of the loop would keep the last one alive through the next sleep.
    measurement = _STATE.open
    if measurement is None or time.monotonic() <= measurement.deadline:
        return
    if measurement.owner is not None:
        measurement.owner._expire(measurement)


_REAPER = _Reaper()


def _after_fork_in_child() -> None:
    _STATE.reset()
    for core in list(_CORES):
        core.after_fork()


def window_lock() -> threading.Lock:
    """Return the lock held while a window is open; heap walks must hold it too."""
    return _STATE.window_lock


os.register_at_fork(after_in_child=_after_fork_in_child)


class Measurement:
    """One open window and what the core needs to finish it. Created before the window opens,
    so that the measurement's own objects are older than the window and never counted."""

    __slots__ = (
        "_done",
        "abandon",
        "deadline",
        "in_flight",
        "outcome",
        "owner",
        "rate",
        "started",
        "thread",
        "threads",
        "transition",
        "window",
    )

    def __init__(self, outcome: Outcome, rate: float, max_seconds: float) -> None:
        self.outcome = outcome
        self.rate = rate
        self.window: Window | None = None
        self.threads = {thread.ident for thread in threading.enumerate()}
        self.in_flight = len(ACTIVE) - 1
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + max_seconds
        self.transition = threading.Lock()
        self._done = False
        self.thread = threading.get_ident()
        #: Set by a WSGI adapter once the app returned its response: ends the measurement if
        #: the response is abandoned without close().
        self.abandon: Callable[[], None] | None = None
        self.owner: Core | None = None

    def end(self) -> Window | None:
        """Claim the window for closing or aborting; only the first caller gets it."""
        with self.transition:
            if self._done:
                return None
            self._done = True
            return self.window


class Core:
    """Sampling, measurement and reporting for one middleware instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        try:
            self.emitter = Emitter(settings.log_file)
        except OSError as exc:
            # Named both ways: the value may have come from either source.
            msg = (
                f"log_file (LEAKWARE_LOG_FILE)={settings.log_file!r} is invalid: cannot open "
                f"it for appending ({exc.strerror}); expected a writable file path"
            )
            raise SettingsError(msg) from None
        self.faults = Faults(self.emitter)

        try:
            self.engine: Engine = make_engine(
                settings.engine, top_types=settings.top_types, trace_frames=settings.trace_frames
            )
        except ImportError as exc:
            # guppy3 is missing or broken. The app is served unmeasured and the fault is reported
            # once. The young engine is a placeholder that is never opened, since measuring is off.
            self.faults.record("engine.load", exc, "measure")
            self.engine = make_engine(
                "young", top_types=settings.top_types, trace_frames=settings.trace_frames
            )

        self.sampler = Sampler(
            settings.sample_rate,
            settings.warmup_requests,
            settings.error_sample_rate,
            settings.error_boost_requests,
        )
        self.analysis = Analysis(settings, self.emitter, self.faults)
        self.monitor = monitor_for(settings, self.emitter, self.faults)
        #: Sampled requests passed through unmeasured because another window was open.
        self.busy_skips = 0
        self.samples = 0
        self._closed = False
        self._blind_spots = list(self.engine.blind_spot_codes)
        _CORES.add(self)
        _at_exit(_close_at_exit, weakref.ref(self))

    def after_fork(self) -> None:
        self.sampler.reset()
        self.analysis.after_fork()
        self.busy_skips = 0

    # -- the per-request path -------------------------------------------------------------

    def should_sample(self, method: str, path: str, draw: float | None = None) -> bool:
        """Decide whether to measure this request. Costs well under a microsecond when not.

        Adapters skip this call when a window is closed and their draw is at or above
        ``self.sampler.cutoff``, and pass the draw otherwise (see `Sampler.should_sample`).
        """
        if self.monitor is not None and not self.monitor.started:
            # Here and not in __init__, so that a pre-fork master, which serves no requests,
            # never runs the monitor thread.
            self.monitor.start()
        measurement = _STATE.open
        if measurement is not None:
            self._overlapping(measurement)
        if "measure" in self.faults.disabled:
            return False
        return self.sampler.should_sample(method, path, draw)

    def _overlapping(self, measurement: Measurement) -> None:
        abandon = measurement.abandon
        if abandon is not None and measurement.thread == threading.get_ident():
            # A WSGI server finishes a response before it starts the next request on the same
            # thread, so the earlier response was abandoned without close(), as test clients
            # do. Its measurement ends now instead of blocking every later one.
            with self.faults.guard("engine.abandon", "measure"):
                abandon()
            return
        # Another request starts while a window is open: it shares the heap with the window.
        measurement.in_flight += 1
        if time.monotonic() > measurement.deadline:
            self._expire(measurement)

    def begin(self, outcome: Outcome) -> Measurement | None:
        """Open the process's window for ``outcome``'s request, or return ``None`` when another
        window is open or the engine fails."""
        # Before the lock and the window: the reaper's thread object must not be counted.
        _REAPER.ensure()
        if not _STATE.window_lock.acquire(blocking=False):
            self.busy_skips += 1
            return None
        rate = self.sampler.rate
        if self.sampler.boosted(outcome.method, outcome.path):
            rate = self.sampler.boost_rate
        measurement = Measurement(outcome, rate, self.settings.max_window_seconds)
        measurement.owner = self
        handled = _STATE.handled
        with self.faults.guard("engine.open", "measure"):
            handled.start()
            measurement.window = self.engine.open()
            _STATE.open = measurement
            return measurement
        handled.stop()
        _STATE.window_lock.release()
        return None

    def finish(
        self,
        measurement: Measurement,
        transient: list[object],
        resolve_route: Callable[[Any], str | None],
        route_context: Any,
    ) -> None:
        """Stop the window, summarise it, name the route and report the sample. Never raises
        an Exception.

        ``transient`` lists the request's own objects (environ or scope, a propagating
        exception): what only they keep alive is not counted. The route is resolved with
        ``resolve_route(route_context)`` after the window closed. The caller creates both before
        the window opened, because anything created inside the window and still referenced
        here would be counted as retained.
        """
        outcome = measurement.outcome
        snapshot: Snapshot | None = None
        window = measurement.end()
        elapsed = time.perf_counter() - measurement.started
        closing = time.perf_counter()
        try:
            if window is not None:
                # A plain try rather than the fault guard: the guard's context manager object
                # would be alive, and counted, when the window stops.
                try:
                    snapshot = window.stop()
                except Exception as exc:
                    self.faults.record("engine.stop", exc, "measure")
        finally:
            # Threads and requests that start from here on are not the window's: the census
            # happens, and overlap counting ends, as soon as the window has stopped.
            threads = {thread.ident for thread in threading.enumerate()} - measurement.threads
            handled = list(_STATE.handled.types)
            # Without the window, another request expired it. That request releases the lock
            # once its abort is done, and releasing it here too would let a new window open
            # while the abort still runs.
            owned = window is not None and self._stop_counting(measurement)

        # The lock stays held while the summary and the analysis run: what they allocate and
        # keep (witnesses, statistics) must never land in another request's window.
        try:
            retained: Retained | None = None
            if snapshot is not None:
                with self.faults.guard("engine.summarise", "measure"):
                    retained = snapshot.summarise(transient)
            cost = time.perf_counter() - closing
            del transient, snapshot
            if outcome.exception is not None or (outcome.status or 0) >= 500:
                self.sampler.note_failure(outcome.method, outcome.path)
            if retained is None or retained.expired:
                return
            route = outcome.route
            if route is None and "routes" not in self.faults.disabled:
                with self.faults.guard("routes.resolve", "routes"):
                    route = resolve_route(route_context)
            outcome.route = route or normalise_path(outcome.path)
            retained.threads = len(threads)
            self._report(measurement, retained, handled, elapsed, cost)
        except Exception as exc:
            # A malformed summary from an engine, or a bug here, must not reach the request.
            # Measuring stops, as for any engine fault.
            self.faults.record("core.finish", exc, "measure")
        finally:
            if owned:
                _STATE.window_lock.release()

    def _stop_counting(self, measurement: Measurement) -> bool:
        """Mark the window as stopped; return whether this measurement still holds the lock
        (it does not when another request expired the window)."""
        if _STATE.open is not measurement:
            # Expired earlier: the exception recorder may belong to a newer window by now.
            return False
        with self.faults.guard("engine.release", "measure"):
            _STATE.handled.stop()
        _STATE.open = None
        return True

    def _release(self, measurement: Measurement) -> None:
        if self._stop_counting(measurement):
            _STATE.window_lock.release()

    def _expire(self, measurement: Measurement) -> None:
        window = measurement.end()
        if window is None:
            return
        with self.faults.guard("engine.abort", "measure"):
            window.abort()
        self._release(measurement)

    def _report(
        self,
        measurement: Measurement,
        retained: Retained,
        handled: list[str],
        elapsed: float,
        cost: float,
    ) -> None:
        outcome = measurement.outcome
        top = retained.types[: self.settings.top_types]
        self.samples += 1
        fields: dict[str, Any] = {
            "method": outcome.method,
            "route": outcome.route,
            "status": outcome.status,
            "exception": outcome.exception,
            "handled_exceptions": handled,
            "engine": self.engine.name,
            "retained_objects": retained.objects,
            "retained_bytes": retained.bytes,
            "untracked_objects": retained.untracked_objects,
            "untracked_bytes": retained.untracked_bytes,
            "net_blocks": retained.net_blocks,
            "threads": retained.threads,
            "types": [
                {"type": stat.type, "objects": stat.objects, "bytes": stat.bytes} for stat in top
            ],
            "referrers": retained.referrers,
            "sites": [dataclasses.asdict(site) for site in retained.sites],
            "blind_spots": retained.blind_spots or self._blind_spots,
            "in_flight": measurement.in_flight,
            "busy_skips": self.busy_skips,
            "sample_rate": measurement.rate,
            "duration_ms": round(elapsed * 1000, 3),
            "measure_ms": round(cost * 1000, 3),
        }
        with self.faults.guard("events.emit", "emit"):
            self.emitter.emit(SAMPLE, **fields)
        with self.faults.guard("analysis.observe", "analysis"):
            if "analysis" not in self.faults.disabled:
                sample = Sample(
                    method=outcome.method,
                    route=outcome.route or "",
                    exception=outcome.exception,
                    status=outcome.status,
                    objects=retained.objects,
                    bytes=retained.bytes,
                    types=tuple((stat.type, stat.objects, stat.bytes) for stat in retained.types),
                    net_blocks=retained.net_blocks,
                    threads=retained.threads,
                    in_flight=measurement.in_flight,
                )
                self.analysis.observe(sample, retained.witnesses)

    # -- hooks for frameworks that turn exceptions into responses -------------------------

    def failed(self, exc: BaseException, method: str, path: str) -> None:
        """Note a failed request that was not sampled, to start its route's error boost.

        An HTTP error below 500 (a 404, a validation error) is the client's, not a failure.
        """
        try:
            code = getattr(exc, "status_code", None) or getattr(exc, "code", None)
        except Exception:  # a property of the app's exception failed: there is no code
            code = None
        if isinstance(code, int) and code < 500:
            return
        with self.faults.guard("sampling.note_failure", "measure"):
            self.sampler.note_failure(method, path)

    def close(self) -> None:
        """Run the final analysis, report the totals and close the log file (at interpreter
        exit). ``leakware.stop`` is the last event a process writes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # Requests served after this point (a server still draining) pass through unmeasured.
        self.faults.disabled.add("measure")
        measurement = _STATE.open
        if measurement is not None:
            # A response nobody closed would hold the window, and the final pass needs it.
            self._expire(measurement)
        with self.faults.guard("analysis.close", "analysis"):
            self.analysis.close()
        if "emit" not in self.faults.disabled:
            with self.faults.guard("events.emit", "emit"):
                self.emitter.emit(
                    STOP,
                    samples=self.samples,
                    busy_skips=self.busy_skips,
                    faults=self.faults.summary_fields(),
                )
        self.emitter.close()


def _at_exit(callback: Callable[[weakref.ref[Core]], None], ref: weakref.ref[Core]) -> None:
    # threading runs these hooks when the main thread finishes, before it joins other threads
    # and before any atexit handler. A leaking app can hang either of those (the multiprocessing
    # handler joins pool threads that wait forever), and the final verdicts must be written
    # first. atexit is the fallback if the private hook ever goes away.
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(callback, ref)
        return
    try:
        register(callback, ref)
    except RuntimeError:  # the interpreter is already shutting down
        atexit.register(callback, ref)


def _close_at_exit(ref: weakref.ref[Core]) -> None:
    core = ref()
    if core is not None:
        core.close()

