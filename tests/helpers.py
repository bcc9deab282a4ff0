"""Shared test helpers: reading leakware's real output back, and real servers on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from leakware.settings import GUPPY_UNSAFE

ROOT = Path(__file__).resolve().parent.parent

#: Marks a test that runs the guppy engine, which leakware refuses where guppy3 can hang.
GUPPY_SAFE = pytest.mark.skipif(
    GUPPY_UNSAFE, reason="leakware refuses the guppy engine on CPython 3.12.0 and 3.12.1"
)


def read_events(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """Parse every JSON line leakware wrote to ``path``; keep only ``event`` if given."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if event is not None:
        records = [record for record in records if record.get("event") == event]
    return records


def run_report(*paths: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``leakware report --format json`` in a subprocess and parse its output."""
    result = subprocess.run(
        [sys.executable, "-m", "leakware", "report", "--format", "json", *extra,
         *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def find_finding(
    report: dict[str, Any], route: str, exception: str | None = None, method: str = "GET"
) -> dict[str, Any]:
    """Return the finding for (method, route, exception); fail the test if there is none."""
    for finding in report["findings"]:
        if (finding["method"], finding["route"], finding["exception"]) == (
            method, route, exception
        ):
            return finding
    keys = [(f["method"], f["route"], f["exception"]) for f in report["findings"]]
    raise AssertionError(f"no finding for {(method, route, exception)}; found {keys}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def leakware_env(log_file: Path, **settings: str) -> dict[str, str]:
    """Return a copy of the environment with leakware settings for a server subprocess."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKWARE_")}
    env["LEAKWARE_LOG_FILE"] = str(log_file)
    for name, value in settings.items():
        env[f"LEAKWARE_{name.upper()}"] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def server(
    command: list[str], port: int, env: Mapping[str, str], ready_path: str = "/"
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command until the block ends, then stop it with SIGINT (SIGKILL after 15 s).

    The block starts once an HTTP request to ``ready_path`` gets any response.
    """
    process = subprocess.Popen(command, env=dict(env), cwd=ROOT)
    try:
        _wait_ready(process, port, ready_path)
        yield process
    finally:
        stop(process)


def stop_when_flushed(
    process: subprocess.Popen[bytes], log_file: Path, timeout: float = 30.0
) -> None:
    """Stop a server with SIGINT and wait for leakware's final ``leakware.stop`` event, then kill
    the process if it is still running.

    The example apps leak thread pools, and multiprocessing waits for those threads at exit,
    so a leaking server never exits on its own; leakware writes its last events before that.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if any(r.get("event") == "leakware.stop" for r in read_events(log_file)):
            break
        time.sleep(0.1)
    if process.poll() is None:
        process.kill()
    process.wait()


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a server with SIGINT, and kill it if it has not exited after ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], port: int, path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with code {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not start within 30 s")


def get(port: int, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """Send one GET to the loopback server; return the status and the body."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
