"""Under gunicorn with several workers, each worker measures its own requests, its events carry
its pid, and ``leakware report`` merges the workers' events into one finding per route."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    find_finding,
    free_port,
    get,
    leakware_env,
    read_events,
    run_report,
    server,
)

pytestmark = [pytest.mark.server]

WORKERS = 2
REQUESTS = 48
CLIENTS = 8


def stop_gracefully(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop gunicorn with SIGTERM, which lets each worker finish and exit normally."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.parametrize(
    "worker_options",
    [
        pytest.param(["--worker-class", "sync"], id="sync"),
        pytest.param(["--worker-class", "sync", "--preload"], id="sync preloaded"),
        pytest.param(["--worker-class", "gthread", "--threads", "4"], id="gthread"),
    ],
)
def test_workers_merged_in_report(worker_options: list[str], log_file: Path) -> None:
    """Every worker's samples carry its pid, and the report merges them per route."""
    port = free_port()
    env = leakware_env(log_file, sample_rate="1", warmup_requests="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env["PYTHONPATH"]])
    command = [
        sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), *worker_options,
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "conformance.served:app",
    ]

    with server(command, port, env, ready_path="/orders/ready") as process:
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda n: get(port, f"/orders/{n}"), range(REQUESTS)))
        stop_gracefully(process)
        master = process.pid

    served_by: set[int] = set()
    for number, (status, body) in enumerate(results):
        text = body.decode()
        assert status == 200
        assert text.startswith(f"order {number} from ")
        served_by.add(int(text.rsplit(" ", 1)[-1]))
    samples = [s for s in read_events(log_file, "leakware.sample") if s["route"] != "/orders/ready"]
    sample_pids = {sample["pid"] for sample in samples}

    assert len(served_by) == WORKERS, "the load did not reach every worker"
    assert master not in served_by
    assert sample_pids == served_by
    stops = {event["pid"]: event for event in read_events(log_file, "leakware.stop")}
    assert set(stops) >= served_by
    # Each worker's first request (one of them the readiness probe) is its warm-up.
    measured_or_skipped = sum(stops[pid]["samples"] + stops[pid]["busy_skips"] for pid in served_by)
    assert measured_or_skipped == REQUESTS + 1 - WORKERS

    report = run_report(log_file)
    finding = find_finding(report, "/orders/{id}")
    assert sorted(finding["pids"]) == sorted(served_by)
    assert finding["samples"] == len(samples)
    assert report["samples"] == len(read_events(log_file, "leakware.sample"))
