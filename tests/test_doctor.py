"""The heap monitor: census, ``leakware.heap`` events, fork safety and the report's heap section."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, free_port, leakware_env, read_events, run_report, server, stop
from werkzeug.test import Client

from leakware import doctor
from leakware.doctor import count_threads, read_rss, take_census
from leakware.wsgi import LeakwareMiddleware

HEAP_KEYS = {
    "event", "schema", "timestamp", "pid", "interval", "seconds", "since", "objects",
    "objects_growth", "types", "rss_bytes", "rss_growth_bytes", "rss_source", "threads",
    "threads_growth", "frozen_objects", "sized_objects", "census_ms",
}

LEAKY_APP = '''
"""A service that keeps 500 Parcel objects and one waiting thread per request."""

import os
import threading
import time

PARCELS = []
NEVER = threading.Event()


class Parcel:
    """What every request leaves behind."""


def wsgi_app(environ, start_response):
    PARCELS.append([Parcel() for _ in range(500)])
    threading.Thread(target=NEVER.wait, daemon=True).start()
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    PARCELS.append([Parcel() for _ in range(500)])
    threading.Thread(target=NEVER.wait, daemon=True).start()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def _wrap():
    from leakware.asgi import LeakwareMiddleware as Asgi
    from leakware.wsgi import LeakwareMiddleware as Wsgi

    return Wsgi(wsgi_app), Asgi(asgi_app)


wsgi, asgi = _wrap()
'''


class Crate:
    """Objects the census tests count."""


class BrokenSize:
    """An object whose ``__sizeof__`` raises."""

    def __sizeof__(self) -> int:
        raise RuntimeError("no size")


@pytest.fixture
def leaky_app(tmp_path: Path) -> Path:
    """A directory with the module ``leaky_app``."""
    (tmp_path / "leaky_app.py").write_text(LEAKY_APP, encoding="utf-8")
    return tmp_path


@pytest.fixture
def no_monitor() -> Iterator[None]:
    """The process has no heap monitor before the test and none running after it."""
    assert doctor.HeapMonitor.current is None
    yield
    if doctor.HeapMonitor.current is not None:
        doctor.HeapMonitor.current.stop()


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        time.sleep(0.05)


def _env(log_file: Path, app_dir: Path, **settings: str) -> dict[str, str]:
    env = leakware_env(log_file, monitor="1", monitor_warmup="0", **settings)
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), env["PYTHONPATH"]])
    return env


# -- the census -----------------------------------------------------------------------------


def test_census_counts_instances() -> None:
    """The census counts every tracked instance of a type."""
    before = take_census().counts.get(f"{__name__}.Crate", 0)
    crates = [Crate() for _ in range(3000)]
    census = take_census()

    assert census.counts[f"{__name__}.Crate"] - before == 3000
    assert census.objects >= 3000
    del crates


def test_census_ignores_collected_garbage() -> None:
    """Objects freed before the census are not counted."""
    crates = [Crate() for _ in range(1000)]
    del crates
    gc.collect()

    assert take_census().counts.get(f"{__name__}.Crate", 0) == 0


def test_census_sizes_fixed_objects() -> None:
    """The estimated size of an object of a fixed-size type is its exact size."""
    crates = [Crate() for _ in range(3000)]
    census = take_census()

    assert census.mean_size(f"{__name__}.Crate") == sys.getsizeof(crates[0])
    assert 0 < census.sized_objects <= census.objects
    del crates


def test_census_sample_bounded() -> None:
    """At most about ``size_sample`` objects are measured, and unmeasured types get a size."""
    crates = [Crate() for _ in range(3000)]
    census = take_census(size_sample=100)

    assert census.sized_objects <= 100
    assert census.mean_size(f"{__name__}.Crate") > 0
    del crates


def test_census_survives_broken_sizeof() -> None:
    """An object whose ``__sizeof__`` raises is counted but not measured."""
    broken = [BrokenSize() for _ in range(10)]
    census = take_census()

    assert census.counts[f"{__name__}.BrokenSize"] == 10
    assert census.mean_size(f"{__name__}.BrokenSize") > 0
    del broken


def test_count_threads_skips_own() -> None:
    """Threads named ``leakware-...`` are not counted; the app's threads are."""
    release = threading.Event()
    before = count_threads()
    threads = [
        threading.Thread(target=release.wait, name="leakware-test", daemon=True),
        threading.Thread(target=release.wait, name="app-worker", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        assert count_threads() == before + 1
    finally:
        release.set()
        for thread in threads:
            thread.join()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_read_rss_statm() -> None:
    """RSS comes from /proc/self/statm and agrees with VmRSS in /proc/self/status."""
    rss, source = read_rss()
    status = Path("/proc/self/status").read_text()
    vm_rss = next(int(line.split()[1]) * 1024 for line in status.splitlines()
                  if line.startswith("VmRSS:"))

    assert source == "statm"
    assert rss is not None
    assert abs(rss - vm_rss) < 8 * 1024 * 1024


# -- the monitor in this process ------------------------------------------------------------


def _ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_monitor_off_by_default(log_file: Path) -> None:
    """Without ``monitor`` the core has no monitor."""
    middleware = LeakwareMiddleware(_ok, log_file=str(log_file))

    assert middleware.core.monitor is None


def test_monitor_starts_on_request(log_file: Path, no_monitor: None) -> None:
    """The thread starts with the first request, and one monitor serves every middleware."""
    first = LeakwareMiddleware(_ok, log_file=str(log_file), monitor=True, monitor_warmup=60)
    second = LeakwareMiddleware(_ok, log_file=str(log_file), monitor=True)
    names = {thread.name for thread in threading.enumerate()}

    assert first.core.monitor is second.core.monitor
    assert "leakware-monitor" not in names
    assert Client(first).get("/").status_code == 200
    assert "leakware-monitor" in {thread.name for thread in threading.enumerate()}


def test_monitor_fault_stays_inside(
    log_file: Path, no_monitor: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing census becomes one error event and switches the monitor off; requests pass."""

    def failing_census() -> None:
        raise RuntimeError("census failed")

    monkeypatch.setattr(doctor, "take_census", failing_census)
    middleware = LeakwareMiddleware(
        _ok, log_file=str(log_file), monitor=True, monitor_warmup=0, monitor_interval=0.05,
        sample_rate=0.0,
    )
    client = Client(middleware)

    assert client.get("/").status_code == 200
    _wait_for(lambda: bool(read_events(log_file, "leakware.error")))
    monitor = middleware.core.monitor
    assert monitor is not None and monitor._thread is not None
    monitor._thread.join(5)
    assert not monitor._thread.is_alive()
    assert client.get("/").status_code == 200
    (error,) = read_events(log_file, "leakware.error")
    assert error["where"] == "monitor.baseline"
    assert error["error"] == "RuntimeError"
    assert error["disabled"] == "monitor"
    assert read_events(log_file, "leakware.heap") == []


def test_monitor_stops_at_exit(leaky_app: Path, log_file: Path) -> None:
    """A process with a running monitor exits promptly and cleanly, its events complete."""
    script = (
        "import time\n"
        "from werkzeug.test import Client\n"
        "import leaky_app\n"
        "client = Client(leaky_app.wsgi)\n"
        "for _ in range(4):\n"
        "    client.get('/')\n"
        "    time.sleep(0.15)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=_env(log_file, leaky_app, monitor_interval="0.1", sample_rate="0"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    assert result.returncode == 0
    assert result.stderr == ""
    assert time.monotonic() - started < 30
    events = read_events(log_file)
    assert events[-1]["event"] == "leakware.stop"
    heap = [event for event in events if event["event"] == "leakware.heap"]
    assert len(heap) >= 2
    assert [event["interval"] for event in heap] == list(range(1, len(heap) + 1))


# -- the monitor under real servers ---------------------------------------------------------


def _get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return str(response.read().decode())


@pytest.mark.server
def test_monitor_events_under_uvicorn(leaky_app: Path, log_file: Path) -> None:
    """Heap events from a uvicorn worker show the leaked type and threads growing."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "leaky_app:asgi", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    env = _env(log_file, leaky_app, monitor_interval="0.25", sample_rate="0")
    with server(command, port, env, ready_path="/") as process:
        for _ in range(6):
            _get(port)
            time.sleep(0.3)
        _wait_for(lambda: len(read_events(log_file, "leakware.heap")) >= 5)
        stop(process)

    heap = read_events(log_file, "leakware.heap")
    assert all(set(event) == HEAP_KEYS for event in heap)
    assert {event["pid"] for event in heap} == {process.pid}
    parcels = [
        next((entry for entry in event["types"] if entry["type"] == "leaky_app.Parcel"), None)
        for event in heap
    ]
    growth = [entry["objects"] for entry in parcels if entry is not None]
    assert growth == sorted(growth)
    assert growth[-1] >= 5 * 500
    last = parcels[-1]
    assert last is not None
    # Parcel and Crate are both plain classes, so their objects have the same fixed size.
    assert last["bytes"] == last["objects"] * sys.getsizeof(Crate())
    assert heap[-1]["threads_growth"] >= 5
    assert heap[-1]["rss_source"] == "statm"
    assert heap[-1]["rss_bytes"] > 0
    assert heap[-1]["census_ms"] > 0

    report = run_report(log_file)
    (series,) = report["heap"]
    assert series["pid"] == process.pid
    assert series["intervals"] == len(heap)
    parcel = next(entry for entry in series["types"] if entry["type"] == "leaky_app.Parcel")
    assert parcel["last"] == growth[-1]
    assert parcel["rising_steps"] >= 3
    assert {"findings", "lines_read", "lines_skipped"} <= set(report)


@pytest.mark.server
def test_monitor_in_gunicorn_workers(leaky_app: Path, log_file: Path) -> None:
    """Under ``gunicorn --preload`` each worker runs a monitor and the master runs none."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2",
               "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "leaky_app:wsgi"]
    env = _env(log_file, leaky_app, monitor_interval="0.2", sample_rate="0")
    with server(command, port, env, ready_path="/") as process:
        # Each sync worker serves one request at a time, so four slow requests at once reach
        # both workers.
        pids: set[str] = set()
        lock = threading.Lock()

        def fetch() -> None:
            pid = _get(port, "/slow")
            with lock:
                pids.add(pid)

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        workers = {int(pid) for pid in pids}
        assert len(workers) == 2

        def both_reported() -> bool:
            return {event["pid"] for event in read_events(log_file, "leakware.heap")} >= workers

        _wait_for(both_reported)
        master = process.pid

    heap = read_events(log_file, "leakware.heap")
    assert master not in workers
    assert {event["pid"] for event in heap} == workers
    assert len({event["since"] for event in heap}) == 2
    report = run_report(log_file)
    assert {series["pid"] for series in report["heap"]} == workers


def test_report_table_heap_section(log_file: Path) -> None:
    """The table has a heap section with each type's first and last growth."""
    base = {"event": "leakware.heap", "schema": 1, "pid": 4242, "since": "2026-01-01T00:00:00Z",
            "objects": 1000, "rss_bytes": 50 * 1024 * 1024, "rss_source": "statm",
            "threads": 3, "threads_growth": 1}
    lines = []
    for number in (1, 2, 3):
        event = {**base, "timestamp": f"2026-01-01T00:00:{number}0Z", "interval": number,
                 "seconds": 10.0 * number, "objects_growth": 100 * number,
                 "rss_growth_bytes": number * 1024 * 1024,
                 "types": [{"type": "shop.Basket", "objects": 100 * number,
                            "bytes": 5600 * number}]}
        lines.append(event)
    log_file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = subprocess.run(
        [sys.executable, "-m", "leakware", "report", str(log_file)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )

    assert "Heap growth since each process's baseline (1 monitor run)" in result.stdout
    assert "pid 4242, baseline 2026-01-01T00:00:00Z: 3 intervals over 30.0 s" in result.stdout
    assert "threads 2 → 3 (+1)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "shop.Basket" in line)
    assert row.split() == ["shop.Basket", "100", "300", "16.4", "2/2"]
