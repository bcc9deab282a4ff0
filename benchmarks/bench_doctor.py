"""Measure what one heap monitor census costs on a large heap.

    python benchmarks/bench_doctor.py --objects 1000000 --repeat 7

Builds a heap of about ``--objects`` objects that the garbage collector tracks (instances of a
small class, dicts and lists), then times each of these ``--repeat`` times:

- ``gc.get_objects()`` alone, the floor of any census;
- `leakware.doctor.take_census`, what the monitor runs every interval;
- an exact census that measures every object's size, for comparison.

While each census runs, a second thread wakes every millisecond and records the longest gap it
saw: how long a request thread can wait for the interpreter lock. A last run under
`tracemalloc` gives the census's peak temporary memory. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

from leakware.doctor import take_census


class Record:
    """A small object with an attribute dict, like most application objects."""

    def __init__(self, number: int) -> None:
        self.number = number


def build_heap(target: int) -> list[object]:
    """Return a list that keeps enough objects alive for the process to track about ``target``.

    How many tracked objects each item adds differs between Python versions (before 3.11 an
    instance's attribute dict is a tracked object of its own), so the heap grows in batches
    until the count is reached.
    """
    heap: list[object] = []
    batch = 0
    while (missing := target - len(gc.get_objects())) > 0:
        size = max(min(missing // 8, 25_000), 1)
        start = batch * size
        heap.extend(Record(i) for i in range(start, start + size))
        heap.extend({"number": [i]} for i in range(start, start + size))
        heap.extend([i, str(i)] for i in range(start, start + size))
        batch += 1
    return heap


def exact_census() -> int:
    """Count and size every tracked object, the cost the monitor avoids by sampling sizes."""
    sizes: dict[type, int] = {}
    getsizeof = sys.getsizeof
    for obj in gc.get_objects():
        cls = type(obj)
        sizes[cls] = sizes.get(cls, 0) + getsizeof(obj)
    return len(sizes)


def time_with_pauses(run: Callable[[], object]) -> tuple[float, float]:
    """Run ``run`` once; return its seconds and the longest gap another thread saw, in seconds."""
    stop = threading.Event()
    longest = 0.0

    def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.01)
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    stop.set()
    ticker.join()
    return elapsed, longest


def measure(name: str, run: Callable[[], object], repeat: int) -> list[str]:
    times: list[float] = []
    pauses: list[float] = []
    for _ in range(repeat):
        elapsed, pause = time_with_pauses(run)
        times.append(elapsed)
        pauses.append(pause)
    return [
        name,
        f"{statistics.median(times) * 1000:.1f}",
        f"{min(times) * 1000:.1f}",
        f"{max(pauses) * 1000:.1f}",
    ]


def peak_memory(run: Callable[[], object]) -> float:
    """Return the peak memory ``run`` allocated, in MiB, measured with tracemalloc."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / (1024 * 1024)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="tracked objects to build")
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement")
    args = parser.parse_args()

    heap = build_heap(args.objects)
    census = take_census()
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{cpu_model()}, {os.cpu_count()} CPUs"
    )
    print(
        f"heap: {census.objects:,} tracked objects; sizes sampled from {census.sized_objects:,}"
    )
    print()
    rows = [
        measure("gc.get_objects() only", lambda: len(gc.get_objects()), args.repeat),
        measure("take_census() (monitor)", take_census, args.repeat),
        measure("exact sizes (not used)", exact_census, args.repeat),
    ]
    print("| census | median ms | min ms | longest wait of another thread, ms |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(f"take_census() peak temporary memory: {peak_memory(take_census):.1f} MiB")
    del heap
    return 0


if __name__ == "__main__":
    sys.exit(main())
