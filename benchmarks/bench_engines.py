"""Added time per measured request against heap size, for each snapshot technique.

    python benchmarks/bench_engines.py            # 100k, 1M and 3M live objects
    python benchmarks/bench_engines.py --quick    # 100k and 1M, fewer rounds

The heap is built from 10-object units of app-like data: instances, strings, numbers, lists,
tuples and dicts. At 3M objects the garbage collector tracks about 28 % of the objects in the
process. One request
allocates about 10,000 objects, one in five transient units sits in a reference cycle, and it
retains 100 objects (20 instances, each with a string, an int, a list and the list's string) in
an older list.

Per heap size, every round runs the bare request and each technique around the same request, in
an order that rotates from round to round. Each technique's time outside the request (snapshot
before, snapshot after, grouping) is timed apart from the request itself, and both are medians
over rounds. A technique's added time is its time outside the request plus how much slower the
request ran under it than alone, which is what tracing or a fresh heap snapshot in the youngest
generation costs. The slow techniques run fewer rounds. Prints Markdown tables and the ratios
that the project's targets are stated in.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    format_seconds,
    interleave,
    machine,
    median,
    print_table,
    timed,
)
from leakware.engines.guppy import GuppyEngine
from leakware.engines.young import YoungEngine

#: Long-lived objects, standing for the app's heap.
HEAP: list[object] = []
#: The older list that each request leaks into.
OLDER: list[object] = []


class User:
    def __init__(self, number: int) -> None:
        self.name = f"user-{number}"
        self.uid = number + 1_000_000
        self.tags = [f"t{number}a", f"t{number}b"]
        self.prefs = {"score": number * 0.5 + 0.25}
        self.created = (f"2024-{number}",)


class Order:
    def __init__(self, number: int) -> None:
        self.oid = number + 2_000_000
        self.ref = f"ref-{number}"
        self.lines = [(f"sku-{number}", number + 3_000_000), (f"sku-{number}b", number + 4_000_000)]


class Thing:
    """The unit a request allocates: an instance, a string, an int, a list and its string."""

    def __init__(self, number: int) -> None:
        self.name = f"thing-{number}"
        self.number = number + 5_000_000
        self.tags = [f"tag-{number}"]
        self.peer: Thing | None = None


def grow_heap(objects: int) -> None:
    """Add 10-object units to `HEAP` until it contains about ``objects`` objects."""
    start = len(HEAP) * 10
    for number in range(start // 10, objects // 10):
        kind = number % 3
        if kind == 0:
            HEAP.append(User(number))
        elif kind == 1:
            HEAP.append(Order(number))
        else:
            HEAP.append(
                {
                    "id": number + 6_000_000,
                    "name": f"record-{number}",
                    "vals": [number * 0.1, number * 0.2],
                    "pair": (f"a{number}", f"b{number}"),
                }
            )
    gc.collect()


def request() -> None:
    """Allocate about 10,000 objects and keep 100 of them in `OLDER`."""
    scratch = []
    for number in range(1980):
        thing = Thing(number)
        if number % 5 == 0:
            thing.peer = thing
        scratch.append(thing)
    OLDER.extend(Thing(number) for number in range(20))
    del scratch


#: What one run of a technique measured: seconds outside the request (snapshots, collection,
#: grouping) and seconds of the request itself, which tracing or a fresh snapshot can slow.
Timing = tuple[float, float]


def phases(before: Callable[[], object], after: Callable[[], object]) -> Timing:
    """Run ``before``, the request and ``after``, and time the request apart from the rest."""
    started = time.perf_counter()
    before()
    request_started = time.perf_counter()
    request()
    request_ended = time.perf_counter()
    after()
    ended = time.perf_counter()
    return (request_started - started) + (ended - request_ended), request_ended - request_started


def bare_request() -> Timing:
    return 0.0, timed(request)


def engine_window(engine: YoungEngine | GuppyEngine) -> Callable[[], Timing]:
    def run() -> Timing:
        windows: list[Any] = []
        return phases(
            lambda: windows.append(engine.open()), lambda: windows[0].stop().summarise([])
        )

    return run


def raw_guppy() -> Timing:
    from guppy import hpy

    session = hpy()
    return phases(session.setrelheap, session.heap)


def guppy_byrcs() -> Timing:
    """Time only what the guppy engine used to add: ``byrcs`` of the ten leading types."""
    from guppy import hpy

    session = hpy()
    session.setrelheap()
    request_time = timed(request)
    heap = session.heap()
    started = time.perf_counter()
    for row in list(heap.bytype.partition.get_rows())[:10]:
        list(row.set.byrcs.partition.get_rows())
    return time.perf_counter() - started, request_time


def tracemalloc_diff() -> Timing:
    snapshots: list[tracemalloc.Snapshot] = []

    def before() -> None:
        tracemalloc.start(1)
        snapshots.append(tracemalloc.take_snapshot())

    def after() -> None:
        gc.collect()
        tracemalloc.take_snapshot().compare_to(snapshots[0], "lineno")
        tracemalloc.stop()

    return phases(before, after)


def pympler_diff() -> Timing:
    from pympler import muppy, summary

    summaries: list[Any] = []

    def before() -> None:
        summaries.append(summary.summarize(muppy.get_objects()))

    def after() -> None:
        summary.get_diff(summaries[0], summary.summarize(muppy.get_objects()))

    return phases(before, after)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k and 1M objects, 3 rounds")
    parser.add_argument("--rounds", type=int, default=7, help="rounds for the fast variants")
    args = parser.parse_args(argv)
    sizes = [100_000, 1_000_000] if args.quick else [100_000, 1_000_000, 3_000_000]
    rounds = 3 if args.quick else args.rounds

    young = YoungEngine(top_types=10)
    guppy = GuppyEngine(top_types=10)
    variants: dict[str, Callable[[], Timing]] = {
        "request only": bare_request,
        "young engine": engine_window(young),
        "young engine without net_blocks": engine_window(
            YoungEngine(top_types=10, count_blocks=False)
        ),
        "guppy3 engine": engine_window(guppy),
        "raw guppy3 setrelheap()+heap()": raw_guppy,
        "guppy3 byrcs of 10 types (extra)": guppy_byrcs,
        "tracemalloc start, snapshot diff, stop": tracemalloc_diff,
        "Pympler summary diff": pympler_diff,
    }
    print(f"Machine: {machine()}")
    print(f"Command: {' '.join(['python', *sys.argv])}\n")

    outside: dict[str, dict[int, float]] = {name: {} for name in variants}
    inside: dict[str, dict[int, float]] = {name: {} for name in variants}
    for size in sizes:
        grow_heap(size)
        slow = 3 if size < 3_000_000 else 2
        limits = {
            "raw guppy3 setrelheap()+heap()": max(slow, rounds // 2),
            "guppy3 engine": max(slow, rounds // 2),
            "guppy3 byrcs of 10 types (extra)": 1,
            "Pympler summary diff": 1 if size > 100_000 else slow,
        }
        # One untimed round: guppy's first heap() call materialises every instance's
        # __dict__, and caches fill.
        interleave({name: variants[name] for name in variants if "Pympler" not in name}, 1)
        results = interleave(variants, rounds, rounds_for=limits)
        for name, values in results.items():
            outside[name][size] = median([value[0] for value in values])
            inside[name][size] = median([value[1] for value in values])
        tracked = len(gc.get_objects())
        print(f"heap of {size:,} objects: {tracked:,} tracked, rounds {rounds}", file=sys.stderr)

    bare = inside["request only"]

    def added(name: str, size: int) -> float:
        # A request that runs slower under the technique adds to its cost, one that runs
        # faster (within the noise) does not subtract from it.
        return outside[name][size] + max(inside[name][size] - bare[size], 0.0)

    header = ["technique", *(f"N={size:,}" for size in sizes)]
    rows = [["request alone", *(format_seconds(bare[size]) for size in sizes)]]
    for name in variants:
        if name == "request only":
            continue
        cells = []
        for size in sizes:
            slowdown = inside[name][size] / bare[size]
            cell = format_seconds(outside[name][size])
            if "extra" not in name:
                cell += f" (req x{slowdown:.1f})"
            cells.append(cell)
        rows.append([name, *cells])
    print("Time outside the request, median, and the request's own time against the request")
    print("alone (req xR); the extra row is on top of the guppy3 rows:\n")
    print_table(header, rows)

    largest = sizes[-1]
    raw = added("raw guppy3 setrelheap()+heap()", largest)
    raw_over_young = raw / added("young engine", largest)
    print("\nRatios from this run (added time = outside the request + any request slowdown):\n")
    ratio_rows = [[f"raw guppy3 / young engine at N={largest:,}", f"{raw_over_young:,.0f}"]]
    for name in ("young engine", "young engine without net_blocks"):
        ratio = outside[name][largest] / outside[name][sizes[0]]
        ratio_rows.append(
            [f"{name}, outside the request, N={largest:,} / N={sizes[0]:,}", f"{ratio:.2f}"]
        )
    for size in sizes:
        ratio = added("guppy3 engine", size) / added("raw guppy3 setrelheap()+heap()", size)
        ratio_rows.append([f"guppy3 engine / raw guppy3 at N={size:,}", f"{ratio:.2f}"])
    print_table(["ratio", "value"], ratio_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
