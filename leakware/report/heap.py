"""Heap growth over time, per process and per type, from the heap monitor's ``leakware.heap``
events.

Each monitor run is one series, identified by the pid and the baseline time (``since``), so two
processes that reused a pid stay apart. A type appears in an event only while it is among the
types that grew the most, so a series has gaps (``None``) where a type was not listed.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leakware.report.reader import Events

__all__ = ["ProcessHeap", "TypeGrowth", "build_heap", "heap_as_json", "write_heap_table"]

#: Types listed per process in the table; the JSON output lists every type seen.
TABLE_TYPES = 10

_POINT_KEYS = (
    "interval",
    "timestamp",
    "seconds",
    "objects",
    "objects_growth",
    "rss_bytes",
    "rss_growth_bytes",
    "threads",
    "threads_growth",
)


@dataclasses.dataclass(slots=True)
class TypeGrowth:
    """One type's growth since the baseline at each point of a series."""

    type: str
    objects: list[int | None]
    bytes: list[int | None]

    @property
    def first(self) -> int | None:
        """Return the growth at the first point where the type was listed."""
        return next((value for value in self.objects if value is not None), None)

    @property
    def last(self) -> int | None:
        """Return the growth at the last point where the type was listed."""
        return next((value for value in reversed(self.objects) if value is not None), None)

    def rising(self) -> tuple[int, int]:
        """Return how many steps between two listed points grew, out of how many such steps."""
        known = [value for value in self.objects if value is not None]
        steps = list(itertools.pairwise(known))
        return sum(1 for before, after in steps if after > before), len(steps)


@dataclasses.dataclass(slots=True)
class ProcessHeap:
    """The heap events of one monitor run, in interval order."""

    pid: int
    since: str
    rss_source: str | None
    points: list[dict[str, Any]]
    types: list[TypeGrowth]


def build_heap(events: Events) -> list[ProcessHeap]:
    """Group heap events into one series per monitor run, oldest run first."""
    runs: dict[tuple[int, str], dict[int, dict[str, Any]]] = {}
    for record in events.heap:
        key = (int(record["pid"]), str(record.get("since", "")))
        # The same log read twice would repeat every interval; the first copy wins.
        runs.setdefault(key, {}).setdefault(int(record["interval"]), record)
    processes = [_series(pid, since, by_interval) for (pid, since), by_interval in runs.items()]
    processes.sort(key=lambda process: (process.since, process.pid))
    return processes


def _series(pid: int, since: str, by_interval: dict[int, dict[str, Any]]) -> ProcessHeap:
    records = [by_interval[number] for number in sorted(by_interval)]
    growth: dict[str, TypeGrowth] = {}
    for index, record in enumerate(records):
        for entry in record["types"]:
            if not isinstance(entry, dict) or "type" not in entry:
                continue
            name = str(entry["type"])
            series = growth.get(name)
            if series is None:
                unlisted: list[int | None] = [None] * len(records)
                series = growth[name] = TypeGrowth(name, unlisted, list(unlisted))
            series.objects[index] = _int(entry.get("objects"))
            series.bytes[index] = _int(entry.get("bytes"))
    types = sorted(growth.values(), key=lambda series: (-(series.last or 0), series.type))
    rss_source = records[-1].get("rss_source")
    return ProcessHeap(
        pid=pid,
        since=since,
        rss_source=rss_source if isinstance(rss_source, str) else None,
        points=[{key: record.get(key) for key in _POINT_KEYS} for record in records],
        types=types,
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def heap_as_json(processes: list[ProcessHeap]) -> list[dict[str, Any]]:
    """Return the series as JSON-ready dicts, one per monitor run."""
    documents = []
    for process in processes:
        types = []
        for series in process.types:
            rising, steps = series.rising()
            types.append({
                "type": series.type,
                "objects_growth": series.objects,
                "bytes_growth": series.bytes,
                "first": series.first,
                "last": series.last,
                "rising_steps": rising,
                "steps": steps,
            })
        documents.append({
            "pid": process.pid,
            "since": process.since,
            "intervals": len(process.points),
            "rss_source": process.rss_source,
            "points": process.points,
            "types": types,
        })
    return documents


def write_heap_table(processes: list[ProcessHeap], write: Callable[[str], object]) -> None:
    """Write one block per monitor run: totals first, then the types that grew the most."""
    if not processes:
        return
    runs = f"{len(processes)} monitor run" + ("" if len(processes) == 1 else "s")
    write(f"\nHeap growth since each process's baseline ({runs})\n")
    for process in processes:
        _write_process(process, write)


def _write_process(process: ProcessHeap, write: Callable[[str], object]) -> None:
    last = process.points[-1]
    write(
        f"\npid {process.pid}, baseline {process.since}: {len(process.points)} intervals "
        f"over {_number(last.get('seconds'), '{:,.1f}')} s\n"
    )
    rss = "peak RSS MiB" if process.rss_source == "maxrss" else "RSS MiB"
    write(
        f"  objects {_change(last, 'objects', 'objects_growth')}   "
        f"{rss} {_change(last, 'rss_bytes', 'rss_growth_bytes', 1024 * 1024)}   "
        f"threads {_change(last, 'threads', 'threads_growth')}\n"
    )
    if not process.types:
        write("  no type grew\n")
        return
    header = f"  {'TYPE':<48} {'FIRST':>10} {'LAST':>10} {'LAST KiB':>11} {'RISING':>8}"
    write(header + "\n")
    for series in process.types[:TABLE_TYPES]:
        rising, steps = series.rising()
        last_bytes = next((value for value in reversed(series.bytes) if value is not None), None)
        kilobytes = "-" if last_bytes is None else f"{last_bytes / 1024:,.1f}"
        name = series.type if len(series.type) <= 48 else series.type[:47] + "…"
        write(
            f"  {name:<48} {_number(series.first):>10} {_number(series.last):>10} "
            f"{kilobytes:>11} {f'{rising}/{steps}':>8}\n"
        )


def _change(point: dict[str, Any], now_key: str, growth_key: str, unit: int = 1) -> str:
    """Return "baseline → now (+growth)" for one measure of the last point, in ``unit``."""
    now, growth = point.get(now_key), point.get(growth_key)
    if not isinstance(now, int) or not isinstance(growth, int):
        return "unknown"
    if unit == 1:
        return f"{now - growth:,} → {now:,} ({growth:+,})"
    return f"{(now - growth) / unit:,.1f} → {now / unit:,.1f} ({growth / unit:+,.1f})"


def _number(value: object, form: str = "{:,}") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return form.format(value)
