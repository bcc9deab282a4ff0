"""`leakware report`: real events in, ranked findings out, bad lines counted and skipped."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from leakware.cli import main
from leakware.wsgi import LeakwareMiddleware

REPORT_KEYS = {"findings", "lines_read", "lines_skipped"}
FINDING_KEYS = {
    "method", "route", "status", "exception", "samples", "leaking_samples",
    "objects_per_request", "bytes_per_request", "types", "verdict", "confidence",
    "retention_path", "signature", "first_seen",
}


class Basket:
    """An object the leaking route keeps."""


BASKETS: list[list[Basket]] = []


def _shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"].startswith("/baskets/"):
        BASKETS.append([Basket() for _ in range(50)])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log written by the real middleware: /baskets/{id} leaks 50 objects per request."""
    path = tmp_path_factory.mktemp("report") / "events.jsonl"
    # With a long confirm interval only the final pass at close() checks liveness, so no
    # background pass holds the window while requests arrive and every request is sampled.
    middleware = LeakwareMiddleware(
        _shop, sample_rate=1.0, warmup_requests=0, log_file=str(path), confirm_interval=60.0
    )
    client = Client(middleware)
    for number in range(12):
        client.get(f"/baskets/{number}", buffered=True)
        client.get("/health", buffered=True)
    middleware.core.close()
    BASKETS.clear()
    return path


def _samples(path: Path, route: str) -> int:
    # Requests that arrive while the analysis thread holds the window are passed through
    # unmeasured, so the number of samples is read from the log rather than assumed.
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return sum(1 for r in records if r["event"] == "leakware.sample" and r["route"] == route)


def _report(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["report", *args], stdout=out)
    return code, out.getvalue()


def test_report_json_shape(events_file: Path) -> None:
    """The JSON document has the documented top-level and per-finding keys."""
    code, output = _report("--format", "json", str(events_file))
    document = json.loads(output)

    assert code == 0
    assert set(document) >= REPORT_KEYS
    assert document["lines_skipped"] == 0
    for finding in document["findings"]:
        assert set(finding) >= FINDING_KEYS
        for entry in finding["types"]:
            assert {"type", "objects_per_request", "bytes_per_request"} <= set(entry)


def test_report_leak_ranked_first(events_file: Path) -> None:
    """The leaking route comes first, with its type named module.QualName and its count."""
    document = json.loads(_report("--format", "json", str(events_file))[1])
    first = document["findings"][0]
    types = {entry["type"]: entry for entry in first["types"]}
    basket = f"{__name__}.Basket"

    assert (first["method"], first["route"], first["exception"]) == ("GET", "/baskets/{id}", None)
    assert first["verdict"] == "leak"
    assert basket in types
    assert types[basket]["objects_per_request"] == pytest.approx(50, abs=1)
    assert first["retention_path"][0] == f"module {__name__}"
    assert first["retention_path"][-1] == basket
    assert len(first["signature"]) == 16


def test_report_healthy_route_not_leak(events_file: Path) -> None:
    """The route that keeps nothing is not reported as a leak."""
    document = json.loads(_report("--format", "json", str(events_file))[1])
    health = [f for f in document["findings"] if f["route"] == "/health"]

    assert len(health) == 1
    assert health[0]["verdict"] != "leak"
    assert health[0]["samples"] == _samples(events_file, "/health")


def test_report_skips_bad_lines(events_file: Path, tmp_path: Path) -> None:
    """Lines that are not JSON objects or not leakware events are counted and skipped."""
    mixed = tmp_path / "mixed.jsonl"
    good = events_file.read_text().splitlines()
    bad = ["not json", "{truncated", "[1, 2]", '{"event": "app.request"}',
           '{"event": "leakware.sample", "method": "GET"}', ""]
    mixed.write_text("\n".join([*bad[:3], *good, *bad[3:]]) + "\n")

    document = json.loads(_report("--format", "json", str(mixed))[1])

    assert document["lines_read"] == len(good) + len(bad)
    assert document["lines_skipped"] == len(bad)
    assert document["findings"][0]["route"] == "/baskets/{id}"


def test_report_merges_files(events_file: Path, tmp_path: Path) -> None:
    """Two files (two workers) merge into one finding per key."""
    copy = tmp_path / "worker2.jsonl"
    copy.write_text(events_file.read_text())

    document = json.loads(_report("--format", "json", str(events_file), str(copy))[1])
    health = [f for f in document["findings"] if f["route"] == "/health"]

    assert health[0]["samples"] == 2 * _samples(events_file, "/health")


def test_report_verdict_filter(events_file: Path) -> None:
    """--verdict leak keeps only the leaks."""
    document = json.loads(_report("--format", "json", "--verdict", "leak", str(events_file))[1])

    assert [f["route"] for f in document["findings"]] == ["/baskets/{id}"]


def test_report_table_fits_width(events_file: Path) -> None:
    """The table names the leak and fits in 100 columns."""
    code, output = _report(str(events_file))

    assert code == 0
    assert "/baskets/{id}" in output
    assert "leak" in output
    assert max(len(line) for line in output.splitlines()) <= 100


def test_report_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file is a clear error with exit code 2, not a traceback."""
    missing = tmp_path / "nope.jsonl"

    code, _ = _report(str(missing))

    assert code == 2
    assert f"leakware: error: {missing}: no such file" in capsys.readouterr().err


def test_report_directory_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory instead of a file is a clear error."""
    code, _ = _report(str(tmp_path))

    assert code == 2
    assert "is a directory" in capsys.readouterr().err


def test_report_empty_log(tmp_path: Path) -> None:
    """An empty log gives an empty report, not an error."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")

    document = json.loads(_report("--format", "json", str(empty))[1])

    assert document["findings"] == []
    assert document["lines_read"] == 0


def test_report_path_matches_leading_type(events_file: Path, tmp_path: Path) -> None:
    """When a key has leak events for two types, the finding's retention path is the one for
    the type its verdict leads with, even if the other event came later."""
    records = [json.loads(line) for line in events_file.read_text().splitlines()]
    leak = next(r for r in records if r["event"] == "leakware.leak")
    other = {**leak, "type": "werkzeug.wrappers.request.Request",
             "retention_path": ["module shop", "dict", "werkzeug.wrappers.request.Request"],
             "signature": "0" * 16, "timestamp": "9999-01-01T00:00:00Z"}
    log = tmp_path / "two-leaks.jsonl"
    log.write_text(events_file.read_text() + json.dumps(other) + "\n")

    document = json.loads(_report("--format", "json", str(log))[1])
    finding = next(f for f in document["findings"] if f["route"] == leak["route"])

    assert finding["retention_path"] == leak["retention_path"]
    assert finding["signature"] == leak["signature"]
