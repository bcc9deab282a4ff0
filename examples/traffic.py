"""Send a reproducible mix of requests to an example server on a loopback port.

    python -m examples.traffic --port 8000 --requests 300

About a third of the requests go to the leaking routing endpoint, and a quarter of those ask for
a trip off the map, which fails. The rest go to the fixed endpoint, the zone cache and the
health check. The same seed gives the same requests.
"""

from __future__ import annotations

import argparse
import http.client
import random
import sys
from collections import Counter

__all__ = ["make_paths", "send"]

CITIES = ("london", "paris", "berlin", "madrid", "rome")


def make_paths(count: int, seed: int) -> list[str]:
    """Return ``count`` request paths drawn from the example's traffic mix."""
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        city = rng.choice(CITIES)
        draw = rng.random()
        destination = 2.0 if rng.random() < 0.25 else 0.5
        if draw < 0.35:
            paths.append(f"/routes/{city}?to={destination}")
        elif draw < 0.55:
            paths.append(f"/v2/routes/{city}?to={destination}")
        elif draw < 0.70:
            paths.append(f"/cities/{city}/zones")
        else:
            paths.append("/health")
    return paths


def send(host: str, port: int, paths: list[str]) -> Counter[str]:
    """Send GET requests one after another over one keep-alive connection; count the results
    by route and status."""
    results: Counter[str] = Counter()
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        for path in paths:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            results[f"{path.split('?')[0].split('/')[1]} {response.status}"] += 1
    finally:
        connection.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2018)
    args = parser.parse_args(argv)
    results = send(args.host, args.port, make_paths(args.requests, args.seed))
    for name, count in sorted(results.items()):
        print(f"  {count:4d} x {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
