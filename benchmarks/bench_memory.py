"""leakware's own memory after 10,000 and 100,000 requests.

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --quick     # 10,000 requests only

A small WSGI app with six routes is called as raw WSGI behind leakware with the young engine,
once at the default sample rate of 1 % and once at 100 %, each in a fresh subprocess. One route
keeps a few objects per request in a cache that evicts, so samples retain something and
witnesses pile up. At each checkpoint, after a full collection, leakware's memory is the
deep size (`pympler.asizeof`) of the middleware's core and of the process-wide measurement
state: settings, sampler, statistics per route, pending witnesses, fault counters. The app,
which the core does not reference, is not included; neither is memory that leakware's code
allocated and handed to the app, nor interpreter memory such as freed blocks kept by pymalloc.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import machine, print_table

#: Cache of the "/orders" route: it evicts the oldest entries beyond this many.
CACHE_LIMIT = 5_000
CACHE: list[object] = []

PATHS = [
    "/health",
    "/users/{n}",
    "/users/{n}/orders",
    "/items/{n}",
    "/search?q=term{n}",
    "/orders",
]


class Entry:
    def __init__(self, number: int) -> None:
        self.number = number
        self.tags = [str(number)]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/orders":
        CACHE.extend(Entry(number) for number in range(5))
        del CACHE[:-CACHE_LIMIT]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def leakware_bytes(middleware: Any) -> int:
    from pympler import asizeof

    from leakware import measure

    return int(asizeof.asizeof(middleware.core, measure._STATE, measure.ACTIVE))


def run_child(rate: float, checkpoints: list[int]) -> dict[str, Any]:
    """Serve ``max(checkpoints)`` requests and return leakware's memory at each checkpoint."""
    from werkzeug.test import create_environ

    from leakware.wsgi import LeakwareMiddleware

    log_file = Path(tempfile.mkdtemp()) / "leakware.jsonl"
    middleware = LeakwareMiddleware(app, sample_rate=rate, log_file=str(log_file))
    templates = [
        create_environ(path.format(n=number), "http://127.0.0.1/")
        for number in range(50)
        for path in PATHS
    ]

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    results: dict[str, Any] = {"rate": rate, "checkpoints": []}
    started = time.perf_counter()
    for number in range(1, max(checkpoints) + 1):
        environ = dict(templates[number % len(templates)])
        environ["wsgi.input"] = io.BytesIO(b"")
        body = middleware(environ, start_response)
        for _chunk in body:
            pass
        getattr(body, "close", lambda: None)()
        if number in checkpoints:
            gc.collect()
            results["checkpoints"].append(
                {
                    "requests": number,
                    "leakware_bytes": leakware_bytes(middleware),
                    "samples": middleware.core.samples,
                    "busy_skips": middleware.core.busy_skips,
                    "seconds": time.perf_counter() - started,
                }
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="stop after 10,000 requests")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        checkpoints = [int(part) for part in args.checkpoints.split(",")]
        print(json.dumps(run_child(args.child, checkpoints)))
        return 0

    checkpoints = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rows = []
    for rate in (0.01, 1.0):
        command = [
            sys.executable,
            __file__,
            "--child",
            str(rate),
            "--checkpoints",
            ",".join(map(str, checkpoints)),
        ]
        env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKWARE_")}
        output = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        result = json.loads(output.stdout.strip().splitlines()[-1])
        for point in result["checkpoints"]:
            rows.append(
                [
                    f"{rate:.0%}",
                    f"{point['requests']:,}",
                    f"{point['samples']:,}",
                    f"{point['busy_skips']:,}",
                    f"{point['leakware_bytes'] / 1024:,.0f} KiB",
                ]
            )

    print(f"Machine: {machine()}")
    print(f"Command: {' '.join(['python', *sys.argv])}\n")
    print_table(
        ["sample rate", "requests", "samples", "skipped: window busy", "leakware's memory"], rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
