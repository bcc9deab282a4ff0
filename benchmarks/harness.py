"""Shared helpers for the benchmark scripts: interleaved rounds, medians and the machine line.

Every script measures the variants it compares side by side in one process: each round runs
every variant once, in an order that rotates from round to round, and a result is the median
over rounds. A slow minute on this shared machine then slows every variant alike, and the
ratios between variants survive it even when the absolute times do not.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

__all__ = ["format_seconds", "interleave", "machine", "median", "print_table", "timed"]

T = TypeVar("T")


def machine() -> str:
    """Return one line naming the CPU, the core count and the Python that ran the script."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{model}, {os.cpu_count()} cores, {python}, {sys.platform}"


def interleave(
    variants: Mapping[str, Callable[[], T]],
    rounds: int,
    *,
    rounds_for: Mapping[str, int] | None = None,
) -> dict[str, list[T]]:
    """Run each variant once per round, rotating the order, and collect what each returns.

    A variant returns its own measurement (seconds, or a tuple of them), so that it can leave
    set-up out of the timed part. ``rounds_for`` lowers the number of rounds for slow variants;
    they run in the first rounds only.
    """
    names = list(variants)
    results: dict[str, list[T]] = {name: [] for name in names}
    limits = rounds_for or {}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if index < limits.get(name, rounds):
                results[name].append(variants[name]())
    return results


def timed(function: Callable[[], object]) -> float:
    """Return the seconds one call of ``function`` takes."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def format_seconds(seconds: float) -> str:
    """Format a duration with a unit that keeps three significant digits."""
    if math.isnan(seconds):  # the variant did not run
        return "-"
    magnitude = abs(seconds)
    if magnitude >= 1:
        return f"{seconds:.2f} s"
    if magnitude >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a Markdown table."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
