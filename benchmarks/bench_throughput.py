"""Throughput of the example service at several sample rates, against the service alone.

    python benchmarks/bench_throughput.py
    python benchmarks/bench_throughput.py --quick

The service is the Flask example (the routes of ``examples/flask_app.py``: the leaking routing
endpoint, its fixed version, the zone cache and the health check), called as raw WSGI in this
process with the request mix of ``examples/traffic.py``. About one request in eleven leaks
10,000 vehicles and a thread pool. Variants: the app alone, and the app behind leakware with the
young engine at sample rates 0, 1 %, 10 % and 100 %. All other settings keep their defaults, so
the analysis thread runs its liveness checks and retention paths as it would in production.

Each round sends the same block of requests to every variant, in an order that rotates from
round to round, and times the block. After each block the pools that block leaked are closed,
outside the timed part, so that thousands of idle threads do not build up and slow the later
rounds. A result is the median requests per second over rounds.
"""

from __future__ import annotations

import argparse
import gc
import io
import queue
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import interleave, machine, median, print_table
from examples.fleet import NoRouteError, plan_routes, plan_routes_fixed
from examples.traffic import make_paths
from examples.zones import zones_for


def make_app(options: dict[str, Any] | None) -> Any:
    """Build the example's Flask app; ``options`` are leakware's, or ``None`` for no leakware."""
    from flask import Flask, jsonify, request

    app = Flask(f"fleet-{id(options)}")

    @app.errorhandler(NoRouteError)
    def no_route(exc: NoRouteError) -> Any:
        return jsonify(error="no route for this trip"), 422

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok")

    @app.get("/routes/<city>")
    def routes(city: str) -> Any:
        return jsonify(city=city, etas=plan_routes(city, request.args.get("to", 0.5, type=float)))

    @app.get("/v2/routes/<city>")
    def routes_fixed(city: str) -> Any:
        destination = request.args.get("to", 0.5, type=float)
        return jsonify(city=city, etas=plan_routes_fixed(city, destination))

    @app.get("/cities/<city>/zones")
    def zones(city: str) -> Any:
        return jsonify(city=city, zones=len(zones_for(city)))

    if options is not None:
        from leakware.flask import init_app

        init_app(app, **options)
    return app


def environs(paths: list[str]) -> list[dict[str, Any]]:
    from werkzeug.test import create_environ

    return [create_environ(path, "http://127.0.0.1/") for path in paths]


def block(app: Any, templates: list[dict[str, Any]]) -> Callable[[], float]:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def run() -> float:
        started = time.perf_counter()
        for template in templates:
            environ = dict(template)
            environ["wsgi.input"] = io.BytesIO(b"")
            body = app(environ, start_response)
            for _chunk in body:
                pass
            body.close()
        elapsed = time.perf_counter() - started
        end_leaked_pools()
        return len(templates) / elapsed

    return run


def end_leaked_pools() -> None:
    """Let the pools that failed requests left open finish (the app's bug, cleaned up here)."""
    pools = [
        obj
        for obj in gc.get_objects()
        if type(obj).__name__ == "ThreadPool" and getattr(obj, "_state", None) == "RUN"
    ]
    for pool in pools:
        pool.close()
    for obj in gc.get_objects():
        if type(obj).__name__ == "callable_iterator":
            target = getattr(obj.__reduce__()[1][0], "__self__", None)
            if isinstance(target, queue.Queue):
                target.put(None)
    for pool in pools:
        pool.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    parser.add_argument("--block", type=int, default=100, help="requests per block")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 15

    log_dir = Path(tempfile.mkdtemp())
    variants: dict[str, Callable[[], float]] = {}
    logs: dict[str, Path] = {}
    templates = environs(make_paths(args.block, seed=2018))
    variants["app alone"] = block(make_app(None), templates)
    for rate in (0.0, 0.01, 0.1, 1.0):
        name = f"leakware young, rate {rate:.0%}"
        logs[name] = log_dir / f"rate-{rate}.jsonl"
        options = {"sample_rate": rate, "log_file": str(logs[name])}
        variants[name] = block(make_app(options), templates)

    interleave(variants, 1)  # warm-up: leakware's first 20 requests are never sampled
    results = interleave(variants, rounds)
    medians = {name: median(values) for name, values in results.items()}

    print(f"Machine: {machine()}")
    print(f"Command: {' '.join(['python', *sys.argv])}")
    print(f"Blocks of {args.block} requests, {rounds} rounds, median requests per second.\n")
    bare = medians["app alone"]
    total = (rounds + 1) * args.block
    rows = []
    for name, value in medians.items():
        samples = "-"
        if name in logs and logs[name].exists():
            with logs[name].open() as log:
                count = sum('"leakware.sample"' in line for line in log)
            samples = f"{count:,} of {total:,}"
        rows.append([name, f"{value:,.0f}", f"{value / bare:.2f}", samples])
    print_table(["variant", "requests/s", "vs app alone", "requests sampled"], rows)
    print(
        "\nA failed request turns on the error boost for its route (half of its next 20 "
        "requests are sampled), so even rate 0 samples some of the failing routing requests."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
