"""Turn events into findings: one per (method, route, exception), ranked most-leaking first.

Samples from every file and process are merged per key. Verdicts come from the processes that
observed the samples, because only they could check whether retained objects stayed alive: a
``leakware.leak`` event wins, then the verdict event backed by the most samples. Keys that no
process judged are judged here from the samples alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from leakware.report.reader import Events
from leakware.stats import KeyStats, Sample, attribute, judge, rank_types

__all__ = ["Finding", "build_findings"]

#: Types listed per finding.
MAX_TYPES = 10

Key = tuple[str, str, "str | None"]

_RANK = {"leak": 0, "insufficient": 1, "warming": 2, "clean": 3}


@dataclasses.dataclass(slots=True)
class Finding:
    """What the report says about one key."""

    method: str
    route: str
    exception: str | None
    status: int | None
    samples: int
    leaking_samples: int
    objects_per_request: float
    bytes_per_request: float
    threads_per_request: float
    net_blocks_per_request: float
    types: list[dict[str, Any]]
    referrers: dict[str, list[str]]
    handled_exceptions: list[str]
    verdict: str
    confidence: float
    reason: str
    retention_path: list[str]
    signature: str | None
    first_seen: str | None
    last_seen: str | None
    pids: list[int]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class _KeyEvidence:
    stats: KeyStats
    samples: list[Sample] = dataclasses.field(default_factory=list)
    referrers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    handled: set[str] = dataclasses.field(default_factory=set)
    pids: set[int] = dataclasses.field(default_factory=set)
    first_seen: str | None = None
    last_seen: str | None = None


def build_findings(events: Events) -> list[Finding]:
    """Group sample events by key, attach verdicts, and rank the findings."""
    evidence = _collect(events)
    owned = attribute(item.stats for item in evidence.values())
    verdicts = _process_verdicts(events)
    findings = [
        _finding(key, item, owned.get(key, set()), verdicts.get(key))
        for key, item in evidence.items()
    ]
    findings.sort(key=lambda f: (_RANK.get(f.verdict, 9), -f.objects_per_request, f.route))
    return findings


def _collect(events: Events) -> dict[Key, _KeyEvidence]:
    evidence: dict[Key, _KeyEvidence] = {}
    ordered = sorted(events.samples, key=lambda record: str(record.get("timestamp", "")))
    for record in ordered:
        sample = _sample(record)
        if sample is None:
            continue
        item = evidence.get(sample.key)
        if item is None:
            item = evidence[sample.key] = _KeyEvidence(KeyStats(*sample.key))
        item.stats.add(sample)
        item.samples.append(sample)
        referrers = record.get("referrers")
        if isinstance(referrers, dict):
            for name, kinds in referrers.items():
                if isinstance(kinds, list) and name not in item.referrers:
                    item.referrers[str(name)] = [str(kind) for kind in kinds]
        handled = record.get("handled_exceptions")
        if isinstance(handled, list):
            item.handled.update(str(name) for name in handled)
        if isinstance(record.get("pid"), int):
            item.pids.add(record["pid"])
        stamp = record.get("timestamp")
        if isinstance(stamp, str):
            item.first_seen = item.first_seen or stamp
            item.last_seen = stamp
    return evidence


def _sample(record: dict[str, Any]) -> Sample | None:
    try:
        types = tuple(
            (str(entry["type"]), int(entry["objects"]), int(entry.get("bytes", 0)))
            for entry in record["types"]
        )
        return Sample(
            method=str(record["method"]),
            route=str(record["route"]),
            exception=None if record.get("exception") is None else str(record["exception"]),
            status=record["status"] if isinstance(record.get("status"), int) else None,
            objects=int(record["retained_objects"]),
            bytes=int(record.get("retained_bytes", 0)),
            types=types,
            net_blocks=int(record.get("net_blocks", 0)),
            threads=int(record.get("threads", 0)),
            in_flight=int(record.get("in_flight", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _process_verdicts(events: Events) -> dict[Key, dict[str, Any]]:
    """Pick the verdict the processes give each key.

    A process's verdict on a key can change as samples come in (a cache can look like a leak
    until it stops growing), so each process's latest verdict counts: the event backed by the
    most samples, the later one on a tie. Across processes a leak wins; otherwise the process
    with the most samples decides. The retention path and signature come from the leak event
    for the verdict's leading type, or from the key's weightiest leak event when that type has
    none.
    """
    latest: dict[tuple[Key, Any], dict[str, Any]] = {}
    for records in (events.verdicts, events.leaks):
        # A leak event replaces a verdict only where the process wrote no verdict event.
        known = set(latest)
        for record in records:
            key = _key(record)
            if key is None or (key, record.get("pid")) in known:
                continue
            current = latest.get((key, record.get("pid")))
            if current is None or _weight(record) >= _weight(current):
                latest[(key, record.get("pid"))] = record
    # Per key and leaked type: a key's leading type can change after its first leak event, as
    # when a stored traceback keeps both the app's object and the framework's request context.
    leak_details: dict[tuple[Key, Any], dict[str, Any]] = {}
    for record in events.leaks:
        key = _key(record)
        if key is None:
            continue
        for slot in ((key, record.get("type")), (key, None)):
            if _weight(record) >= _weight(leak_details.get(slot, {})):
                leak_details[slot] = record
    chosen: dict[Key, dict[str, Any]] = {}
    for (key, _), record in latest.items():
        current = chosen.get(key)
        if current is None or _rank_process(record) > _rank_process(current):
            chosen[key] = record
    for key, record in chosen.items():
        details = leak_details.get((key, record.get("type"))) or leak_details.get((key, None))
        if record.get("verdict") == "leak" and details is not None:
            chosen[key] = {**record, "retention_path": details.get("retention_path"),
                           "signature": details.get("signature")}
    return chosen


def _rank_process(record: dict[str, Any]) -> tuple[bool, int, str]:
    return (record.get("verdict") == "leak", *_weight(record))


def _key(record: dict[str, Any]) -> Key | None:
    method, route = record.get("method"), record.get("route")
    if not isinstance(method, str) or not isinstance(route, str):
        return None
    exception = record.get("exception")
    return (method, route, exception if isinstance(exception, str) else None)


def _weight(record: dict[str, Any]) -> tuple[int, str]:
    samples = record.get("samples")
    return (samples if isinstance(samples, int) else 0, str(record.get("timestamp", "")))


def _finding(
    key: Key, item: _KeyEvidence, owned: set[str], process: dict[str, Any] | None
) -> Finding:
    stats = item.stats
    judgement = judge(stats, owned, use_net_blocks=process is None)
    verdict, confidence, reason = judgement.verdict, judgement.confidence, judgement.reason
    named = list(judgement.types)
    numbers: dict[str, tuple[float, float]] = {}
    path: list[str] = []
    signature = None
    if process is not None and isinstance(process.get("verdict"), str):
        verdict = process["verdict"]
        confidence = float(process.get("confidence", confidence))
        reason = str(process.get("reason", reason))
        if isinstance(process.get("retention_path"), list):
            path = [str(step) for step in process["retention_path"]]
        signature = process.get("signature")
        if isinstance(process.get("types"), list):
            # The process judged the types with liveness checks the samples do not carry, and
            # counted every retained type, not only the leading ones a sample event lists.
            named = [str(name) for name in process["types"]]
            numbers = _type_numbers(process)

    def per_request(name: str) -> tuple[float, float]:
        return numbers.get(name) or stats.per_request(name)

    named_set = set(named)
    others = [name for name in rank_types(stats.types, stats) if name not in named_set]
    types = [
        {
            "type": name,
            "objects_per_request": round(per_request(name)[0], 2),
            "bytes_per_request": round(per_request(name)[1], 1),
            "owned": name in named_set,
        }
        for name in [*named, *others][:MAX_TYPES]
    ]
    leaking = sum(
        1 for sample in item.samples
        if any(name in named_set for name, objects, _ in sample.types if objects > 0)
    )
    if process is not None and isinstance(process.get("leaking_samples"), int):
        # A sample event lists only its leading types; the process counted every type.
        leaking = max(leaking, min(process["leaking_samples"], stats.samples))
    samples = max(stats.samples, 1)
    return Finding(
        method=key[0],
        route=key[1],
        exception=key[2],
        status=stats.status,
        samples=stats.samples,
        leaking_samples=leaking,
        objects_per_request=round(sum(per_request(name)[0] for name in named), 2),
        bytes_per_request=round(sum(per_request(name)[1] for name in named), 1),
        threads_per_request=round(stats.threads / samples, 3),
        net_blocks_per_request=round(stats.net_blocks / samples, 1),
        types=types,
        referrers={name: item.referrers[name] for name in named if name in item.referrers},
        handled_exceptions=sorted(item.handled),
        verdict=verdict,
        confidence=round(confidence, 2),
        reason=reason,
        retention_path=path,
        signature=signature if isinstance(signature, str) else None,
        first_seen=item.first_seen,
        last_seen=item.last_seen,
        pids=sorted(item.pids),
    )


def _type_numbers(process: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Return the per-request numbers a verdict event gives for the types it names."""
    numbers: dict[str, tuple[float, float]] = {}
    entries = process.get("type_stats")
    if not isinstance(entries, list):
        return numbers
    for entry in entries:
        try:
            numbers[str(entry["type"])] = (
                float(entry["objects_per_request"]), float(entry["bytes_per_request"])
            )
        except (KeyError, TypeError, ValueError):
            continue
    return numbers
