"""The example service under real servers over loopback: real traffic, real JSON lines written
by the middleware, and the real output of `leakware report`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    find_finding,
    free_port,
    leakware_env,
    read_events,
    run_report,
    server,
    stop_when_flushed,
)

from examples.fleet import FLEET_SIZE
from examples.traffic import make_paths, send

pytestmark = pytest.mark.server

VEHICLE = "examples.fleet.FloatingVehicle"
FAILURE = "examples.fleet.NoRouteError"


def _run(command: list[str], port: int, log_file: Path, requests: int = 160) -> dict[str, Any]:
    env = leakware_env(
        log_file, sample_rate="1", warmup_requests="5", confirm_interval="1", max_routes="50"
    )
    with server(command, port, env, ready_path="/health") as process:
        results = send("127.0.0.1", port, make_paths(requests, seed=7))
        stop_when_flushed(process, log_file)
    assert results["routes 422"] >= 5, results
    return run_report(log_file)


def _check_story(report: dict[str, Any], failing_route: str, fixed_route: str) -> None:
    first = report["findings"][0]
    types = {entry["type"]: entry for entry in first["types"]}

    assert (first["route"], first["exception"], first["verdict"]) == (
        failing_route, FAILURE, "leak"
    )
    assert first["status"] == 422
    assert types[VEHICLE]["objects_per_request"] == pytest.approx(FLEET_SIZE, rel=0.01)
    assert first["threads_per_request"] == pytest.approx(5, abs=0.5)
    assert "functools.partial" in first["retention_path"]
    assert first["retention_path"][-1] == VEHICLE

    for route, exception in [
        (fixed_route, FAILURE),
        (fixed_route, None),
        (failing_route, None),
        ("/health", None),
    ]:
        finding = find_finding(report, route, exception)
        assert finding["verdict"] != "leak", finding
        assert finding["objects_per_request"] < 50, finding


def test_fastapi_example_under_uvicorn(log_file: Path) -> None:
    """Under uvicorn, the failing routing requests are the leak: 10,000 vehicles and 5 threads
    each, held by the pool's task generator; the fix and the healthy routes are not leaks."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]

    report = _run(command, port, log_file)

    _check_story(report, "/routes/{city}", "/v2/routes/{city}")
    zones = find_finding(report, "/cities/{city}/zones")
    assert zones["verdict"] in {"warming", "clean"}
    assert report["lines_skipped"] == 0
    assert {e["event"] for e in read_events(log_file)} >= {
        "leakware.sample", "leakware.verdict", "leakware.leak", "leakware.stop"
    }


def test_flask_example_under_werkzeug(log_file: Path) -> None:
    """Under werkzeug's threaded server, Flask's errorhandler turns the failure into a 422,
    and the report still names its exception, the vehicles and the threads."""
    port = free_port()
    command = [sys.executable, "-m", "flask", "--app", "examples.flask_app", "run",
               "--host", "127.0.0.1", "--port", str(port), "--no-reload", "--no-debugger"]

    report = _run(command, port, log_file)

    _check_story(report, "/routes/<city>", "/v2/routes/<city>")


def test_report_table_from_server_log(log_file: Path) -> None:
    """The table report of a real server log names the leak on its first row."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    _run(command, port, log_file, requests=80)

    table = subprocess.run(
        [sys.executable, "-m", "leakware", "report", str(log_file)],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [line for line in table.splitlines() if line[:2].strip().isdigit()]

    assert "leak" in rows[0]
    assert "/routes/{city}" in rows[0]
    assert VEHICLE in table
