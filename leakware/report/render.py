"""Render findings as a table for people or as one JSON object for programs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from leakware.report.heap import build_heap, heap_as_json, write_heap_table

if TYPE_CHECKING:
    from leakware.report.findings import Finding
    from leakware.report.reader import Events

__all__ = ["render_json", "render_table"]

#: Width the table is laid out for.
WIDTH = 100


def render_json(
    findings: list[Finding],
    events: Events,
    file: TextIO,
    *,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"findings": [...], "lines_read": N, "lines_skipped": N, ...}`` and a newline.

    ``extra`` adds keys after the standard ones, for commands that report more.
    """
    document: dict[str, Any] = {
        "findings": [finding.as_dict() for finding in findings],
        "lines_read": events.lines_read,
        "lines_skipped": events.lines_skipped,
        "samples": len(events.samples),
        "errors": _errors(events),
        "heap": heap_as_json(build_heap(events)),
    }
    if extra:
        document.update(extra)
    json.dump(document, file, indent=2)
    file.write("\n")


def render_table(findings: list[Finding], events: Events, file: TextIO) -> None:
    """Write a table that fits in `WIDTH` columns, one block per finding."""
    write = file.write
    write(
        f"leakware report: {len(findings)} routes from {len(events.samples)} samples "
        f"({events.lines_read} lines read, {events.lines_skipped} skipped)\n"
    )
    if not findings:
        write("No samples found. Is LEAKWARE_LOG_FILE set, and did any request get sampled?\n")
        write_heap_table(build_heap(events), write)
        return
    header = (
        f"{'#':>2} {'VERDICT':<12} {'CONF':>4} {'METHOD':<6} {'ROUTE':<24} {'EXCEPTION':<18} "
        f"{'STATUS':>6} {'SAMPLES':>9} {'OBJ/REQ':>9}"
    )
    write("\n" + header + "\n" + "-" * len(header) + "\n")
    for index, finding in enumerate(findings, start=1):
        _write_finding(write, index, finding)
    for error in _errors(events):
        write(f"leakware fault: {error['error']} in {error['where']}\n")
    write_heap_table(build_heap(events), write)


def _write_finding(write: Any, index: int, finding: Finding) -> None:
    exception = _short(finding.exception or "-", 18)
    samples = f"{finding.leaking_samples}/{finding.samples}"
    write(
        f"{index:>2} {finding.verdict:<12} {finding.confidence:>4.2f} {finding.method:<6} "
        f"{_short(finding.route, 24):<24} {exception:<18} {_status(finding.status):>6} "
        f"{samples:>9} {finding.objects_per_request:>9,.1f}\n"
    )
    indent = " " * 3
    if finding.exception and len(finding.exception) > 18:
        write(f"{indent}exception: {finding.exception}\n")
    if len(finding.route) > 24:
        write(f"{indent}route: {finding.route}\n")
    owned = [entry for entry in finding.types if entry["owned"]][:3]
    for entry in owned:
        kilobytes = entry["bytes_per_request"] / 1024
        write(
            f"{indent}retains {entry['objects_per_request']:,.1f} "
            f"{_short(entry['type'], 60)} per request ({kilobytes:,.1f} KiB)\n"
        )
        referrers = finding.referrers.get(entry["type"])
        if referrers:
            write(f"{indent}  referred to by: {_short(', '.join(referrers), WIDTH - 20)}\n")
    if finding.threads_per_request >= 0.05:
        write(f"{indent}threads left running: {finding.threads_per_request:.1f} per request\n")
    if finding.retention_path:
        write(f"{indent}held by: {_wrap_path(finding.retention_path, len(indent) + 9)}\n")
    if finding.verdict != "clean":
        write(f"{indent}why: {finding.reason}\n")
    if finding.signature:
        write(f"{indent}signature: {finding.signature}  first seen: {finding.first_seen}\n")


def _wrap_path(path: list[str], offset: int) -> str:
    lines: list[str] = []
    current = ""
    for step in path:
        piece = step if not current else f" → {step}"
        if current and offset + len(current) + len(piece) > WIDTH:
            lines.append(current + " →")
            current = step
        else:
            current += piece
    lines.append(current)
    return ("\n" + " " * offset).join(lines)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _status(status: int | None) -> str:
    return "-" if status is None else str(status)


def _errors(events: Events) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], int] = {}
    for record in events.errors:
        key = (str(record.get("where", "?")), str(record.get("error", "?")))
        seen[key] = seen.get(key, 0) + int(record.get("count", 1) or 1)
    return [{"where": where, "error": error, "count": count}
            for (where, error), count in sorted(seen.items())]
