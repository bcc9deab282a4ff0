"""`leakware replay`: HAR and JSON-lines traffic sent in-process to WSGI and ASGI apps."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, find_finding

from leakware.cli import main
from leakware.replay import ReplayError, read_traffic

APPS = '''
"""Apps for the replay tests: each one appends what it received to $RECORD_FILE."""

import json
import os

LEAKED = []


class Widget:
    """What the /leak route keeps."""


def _record(entry):
    with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\\n")


def wsgi_app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    _record({
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "host": environ.get("HTTP_HOST"),
        "trace": environ.get("HTTP_X_TRACE"),
        "content_type": environ.get("CONTENT_TYPE"),
        "body": body.decode("latin-1"),
    })
    if environ["PATH_INFO"].startswith("/leak/"):
        LEAKED.append([Widget() for _ in range(200)])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            _record({"lifespan": message["type"]})
            if message["type"] == "lifespan.startup":
                scope["state"]["ready"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = dict(scope["headers"])
    _record({
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "host": headers.get(b"host", b"").decode(),
        "trace": headers.get(b"x-trace", b"").decode() or None,
        "content_length": headers.get(b"content-length", b"").decode() or None,
        "ready": scope["state"].get("ready"),
        "body": body.decode("latin-1"),
    })
    if scope["path"].startswith("/leak/"):
        LEAKED.append([Widget() for _ in range(200)])
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def failing_startup_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await asgi_app(scope, receive, send)


async def no_lifespan_app(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError("only http scopes are supported")
    await asgi_app(scope, receive, send)


def raising_app(environ, start_response):
    raise KeyError("boom")


NOT_AN_APP = 42
'''


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory, made current, with the test apps as module ``replay_apps``."""
    (tmp_path / "replay_apps.py").write_text(APPS, encoding="utf-8")
    (tmp_path / "broken_app.py").write_text("import no_such_dependency\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECORD_FILE", str(tmp_path / "record.jsonl"))
    return tmp_path


def _received(apps: Path) -> list[dict[str, Any]]:
    path = apps / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _lines(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _har(path: Path, *requests: dict[str, Any]) -> Path:
    entries = [{"startedDateTime": "2026-01-01T00:00:00Z", "request": request,
                "response": {"status": 200}} for request in requests]
    path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}), "utf-8")
    return path


def _replay_json(*argv: str) -> dict[str, Any]:
    out = io.StringIO()
    code = main(["replay", *argv, "--format", "json"], stdout=out)
    assert code == 0
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


def _replay_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    out = io.StringIO()
    code = main(["replay", *argv], stdout=out)
    assert code == 2
    assert out.getvalue() == ""
    return capsys.readouterr().err


# -- the example service --------------------------------------------------------------------


@pytest.mark.slow
def test_replay_har_finds_fastapi_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped HAR file replayed against the FastAPI example names the leaking route."""
    monkeypatch.chdir(ROOT)
    report = _replay_json("examples.fastapi_app:app", "--traffic", "examples/traffic.har")

    leak = find_finding(report, "/routes/{city}", "examples.fleet.NoRouteError")
    assert leak["verdict"] == "leak"
    assert leak["types"][0]["type"] == "examples.fleet.FloatingVehicle"
    assert leak["threads_per_request"] == pytest.approx(5.0)
    fixed = find_finding(report, "/v2/routes/{city}", "examples.fleet.NoRouteError")
    assert fixed["verdict"] == "clean"
    assert report["replay"]["interface"] == "asgi"
    assert report["replay"]["format"] == "har"
    assert report["replay"]["sent"] == 60
    assert set(report["replay"]["statuses"]) == {"200", "422"}


@pytest.mark.slow
def test_replay_jsonl_finds_flask_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped JSON-lines file replayed against the Flask example names the leaking route."""
    monkeypatch.chdir(ROOT)
    report = _replay_json("examples.flask_app:app", "--traffic", "examples/traffic.jsonl")

    leak = find_finding(report, "/routes/<city>", "examples.fleet.NoRouteError")
    assert leak["verdict"] == "leak"
    assert leak["types"][0]["type"] == "examples.fleet.FloatingVehicle"
    fixed = find_finding(report, "/v2/routes/<city>", "examples.fleet.NoRouteError")
    assert fixed["verdict"] == "clean"
    assert report["replay"]["interface"] == "wsgi"
    assert report["replay"]["format"] == "jsonl"
    assert report["replay"]["sent"] == 60


# -- what the app receives ------------------------------------------------------------------


def test_replay_wsgi_receives_request(apps: Path) -> None:
    """A JSON-lines request reaches a WSGI app with its method, path, query, headers and body."""
    traffic = _lines(
        apps / "traffic.jsonl",
        {"method": "POST", "path": "/orders/a%20b", "query": {"dry_run": "1", "tag": ["x", "y"]},
         "headers": {"Host": "shop.test", "X-Trace": "abc", "Content-Type": "application/json",
                     "Content-Length": "999"},
         "body": '{"items": 2}'},
        {"method": "PUT", "path": "/blobs?kind=raw", "body_base64": "AAEC/w=="},
    )
    report = _replay_json("replay_apps:wsgi_app", "--traffic", str(traffic))

    first, second = _received(apps)
    assert first["method"] == "POST"
    assert first["path"] == "/orders/a b"
    assert first["query"] == "dry_run=1&tag=x&tag=y"
    assert first["host"] == "shop.test"
    assert first["trace"] == "abc"
    assert first["content_type"] == "application/json"
    assert first["body"] == '{"items": 2}'
    assert second["method"] == "PUT"
    assert second["query"] == "kind=raw"
    assert second["body"] == "\x00\x01\x02\xff"
    assert report["replay"]["statuses"] == {"200": 2}


def test_replay_asgi_receives_request(apps: Path) -> None:
    """A HAR request reaches an ASGI app inside lifespan startup and shutdown."""
    traffic = _har(
        apps / "traffic.har",
        {"method": "POST", "url": "https://shop.test/orders/a%20b",
         "queryString": [{"name": "dry_run", "value": "1"}],
         "headers": [{"name": ":authority", "value": "shop.test"},
                     {"name": "x-trace", "value": "abc"}],
         "postData": {"mimeType": "text/plain", "text": "hello"}},
        {"method": "GET", "url": "http://shop.test/health?full=1", "headers": []},
    )
    report = _replay_json("replay_apps:asgi_app", "--traffic", str(traffic))

    startup, first, second, shutdown = _received(apps)
    assert startup == {"lifespan": "lifespan.startup"}
    assert first["method"] == "POST"
    assert first["path"] == "/orders/a b"
    assert first["raw_path"] == "/orders/a%20b"
    assert first["query"] == "dry_run=1"
    assert first["host"] == "shop.test"
    assert first["trace"] == "abc"
    assert first["content_length"] == "5"
    assert first["body"] == "hello"
    assert first["ready"] is True
    assert second["query"] == "full=1"
    assert second["body"] == ""
    assert shutdown == {"lifespan": "lifespan.shutdown"}
    assert report["replay"]["interface"] == "asgi"
    assert report["replay"]["statuses"] == {"201": 2}


@pytest.mark.parametrize("app", ["wsgi_app", "asgi_app"], ids=["wsgi", "asgi"])
def test_replay_passes_confirm_leak(apps: Path, app: str) -> None:
    """Three passes give the leaking route enough samples for a confirmed leak."""
    traffic = _lines(
        apps / "traffic.jsonl",
        {"method": "GET", "path": "/leak/1"},
        {"method": "GET", "path": "/health"},
        {"method": "GET", "path": "/leak/2"},
    )
    report = _replay_json(f"replay_apps:{app}", "--traffic", str(traffic), "--passes", "3")

    assert len(_received(apps)) == 9 + (2 if app == "asgi_app" else 0)
    leak = find_finding(report, "/leak/{id}")
    assert leak["verdict"] == "leak"
    assert leak["samples"] == 6
    assert leak["types"][0]["type"] == "replay_apps.Widget"
    assert leak["objects_per_request"] >= 200
    assert find_finding(report, "/health")["verdict"] != "leak"
    assert {"findings", "lines_read", "lines_skipped"} <= set(report)
    assert report["replay"]["passes"] == 3
    assert report["replay"]["sent"] == 9


def test_replay_table_names_route(apps: Path) -> None:
    """The table output starts with what was sent, then the report."""
    traffic = _lines(apps / "traffic.jsonl", {"method": "GET", "path": "/leak/1"})
    out = io.StringIO()
    assert main(["replay", "replay_apps:wsgi_app", "--traffic", str(traffic)], stdout=out) == 0

    text = out.getvalue()
    assert text.startswith("leakware replay: 1 requests (1 pass of 1, 0 skipped)")
    assert "responses: 200 x 1" in text
    assert "/leak/{id}" in text


def test_replay_app_exception_counts_500(apps: Path) -> None:
    """An exception from the app counts as a 500 response and the replay goes on."""
    traffic = _lines(
        apps / "t.jsonl", {"method": "GET", "path": "/a"}, {"method": "GET", "path": "/b"}
    )
    report = _replay_json("replay_apps:raising_app", "--traffic", str(traffic))

    assert report["replay"]["statuses"] == {"500": 2}
    assert report["replay"]["raised"] == {"KeyError": 2}
    assert find_finding(report, "/a", "KeyError")["samples"] == 1


def test_replay_without_lifespan_warns(apps: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ASGI app that rejects the lifespan scope is replayed without it, with a warning."""
    traffic = _lines(apps / "t.jsonl", {"method": "GET", "path": "/a"})
    report = _replay_json("replay_apps:no_lifespan_app", "--traffic", str(traffic))

    assert report["replay"]["statuses"] == {"201": 1}
    err = capsys.readouterr().err
    assert "does not support the ASGI lifespan protocol" in err
    assert "ValueError: only http scopes are supported" in err


# -- bad input ------------------------------------------------------------------------------


def test_replay_startup_failure_errors(apps: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A failed lifespan startup stops the replay with the app's message."""
    traffic = _lines(apps / "t.jsonl", {"method": "GET", "path": "/a"})
    err = _replay_error(capsys, "replay_apps:failing_startup_app", "--traffic", str(traffic))

    assert "lifespan startup failed: database unreachable" in err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("no_such_module:app", "cannot import module 'no_such_module'", id="module"),
        pytest.param("replay_apps:missing", "module 'replay_apps' has no attribute 'missing'",
                     id="attribute"),
        pytest.param("replay_apps:NOT_AN_APP", "is not a WSGI or ASGI application",
                     id="not callable"),
        pytest.param("replay_apps:Widget", "got the class Widget", id="class"),
        pytest.param("replay_apps", "expected module:attribute", id="no attribute"),
        pytest.param("broken_app:app",
                     "importing 'broken_app' failed: ModuleNotFoundError: No module named "
                     "'no_such_dependency'", id="import fails"),
    ],
)
def test_replay_app_unloadable(
    apps: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    """An app that cannot be imported or is not an app is an error that names the reason."""
    traffic = _lines(apps / "t.jsonl", {"method": "GET", "path": "/a"})
    err = _replay_error(capsys, spec, "--traffic", str(traffic))

    assert err.startswith("leakware: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param("[tool]\nname = 1\n", "is neither a HAR file", id="toml"),
        pytest.param('[{"method": "GET"}]', "is neither a HAR file", id="json array"),
        pytest.param('{"log": {"pages": []}}', "log.entries is missing", id="har no entries"),
        pytest.param('{"path": "/a"}\n', 'contains no valid request (1 skipped); the first: '
                     'TRAFFIC line 1: missing "method"', id="no valid request"),
    ],
)
def test_replay_traffic_invalid(
    apps: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    """A traffic file that contains no request is an error that names the file."""
    traffic = apps / "traffic.txt"
    traffic.write_text(content, encoding="utf-8")
    err = _replay_error(capsys, "replay_apps:wsgi_app", "--traffic", str(traffic))

    assert str(traffic) in err
    assert message.replace("TRAFFIC", str(traffic)) in err


def test_replay_traffic_missing(apps: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A traffic file that does not exist is an error."""
    err = _replay_error(capsys, "replay_apps:wsgi_app", "--traffic", "nowhere.har")

    assert err == "leakware: error: nowhere.har: no such file\n"


def test_replay_bad_lines_skipped(apps: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Lines without a method or a path are skipped with warnings that give line numbers."""
    traffic = apps / "traffic.jsonl"
    traffic.write_text(
        '{"method": "GET", "path": "/a"}\n'
        '{"path": "/b"}\n'
        "\n"
        '{"method": "GET"}\n'
        "not json\n"
        '{"method": "GET", "path": "relative"}\n'
        '{"method": "GET", "path": "/c", "headers": "x"}\n',
        encoding="utf-8",
    )
    report = _replay_json("replay_apps:wsgi_app", "--traffic", str(traffic))

    assert report["replay"]["requests"] == 1
    assert report["replay"]["skipped"] == 5
    assert [entry["path"] for entry in _received(apps)] == ["/a"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        f'leakware: warning: {traffic} line 2: missing "method"; request skipped',
        f'leakware: warning: {traffic} line 4: missing "path"; request skipped',
        f"leakware: warning: {traffic} line 5: not a JSON object; request skipped",
        f'leakware: warning: {traffic} line 6: "path" must start with "/", got \'relative\'; '
        "request skipped",
        f'leakware: warning: {traffic} line 7: "headers" must be a list of [name, value] pairs '
        "or an object; request skipped",
    ]


def test_replay_passes_invalid(capsys: pytest.CaptureFixture[str]) -> None:
    """``--passes`` below 1 is a usage error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "app:app", "--traffic", "t.har", "--passes", "0"])

    assert exit_info.value.code == 2
    assert "--passes: invalid value '0': expected a whole number, 1 or more" in (
        capsys.readouterr().err
    )


# -- reading traffic files ------------------------------------------------------------------


def test_read_traffic_har_entries(tmp_path: Path) -> None:
    """HAR entries become requests; pseudo-headers and framing headers are dropped."""
    path = _har(
        tmp_path / "t.har",
        {"method": "POST", "url": "http://api.test:8080/form",
         "headers": [{"name": ":method", "value": "POST"},
                     {"name": "Content-Length", "value": "7"},
                     {"name": "Accept", "value": "*/*"}],
         "postData": {"mimeType": "application/x-www-form-urlencoded",
                      "params": [{"name": "a", "value": "1"}, {"name": "b", "value": "x y"}]}},
        {"method": "GET"},
    )
    traffic = read_traffic(str(path))

    assert traffic.format == "har"
    (request,) = traffic.requests
    assert request.method == "POST"
    assert request.path == "/form"
    assert request.headers == [("host", "api.test:8080"), ("Accept", "*/*")]
    assert request.body == b"a=1&b=x+y"
    assert traffic.warnings == [f'{path} entry 2: missing "url"; request skipped']


def test_read_traffic_single_line(tmp_path: Path) -> None:
    """A file with one JSON object is JSON lines, not a HAR file."""
    path = _lines(tmp_path / "one.jsonl", {"method": "DELETE", "path": "/items/7?force=1"})
    traffic = read_traffic(str(path))

    assert traffic.format == "jsonl"
    assert traffic.requests[0].method == "DELETE"
    assert traffic.requests[0].path == "/items/7"
    assert traffic.requests[0].query == "force=1"


def test_read_traffic_bad_base64(tmp_path: Path) -> None:
    """A file whose only request has an invalid base64 body has no valid request."""
    path = _lines(tmp_path / "t.jsonl", {"method": "POST", "path": "/", "body_base64": "@@"})
    with pytest.raises(ReplayError, match='"body_base64" is not valid base64'):
        read_traffic(str(path))


def test_read_traffic_shipped_files() -> None:
    """The shipped HAR and JSON-lines samples contain the same 60 requests."""
    har = read_traffic(str(ROOT / "examples" / "traffic.har"))
    lines = read_traffic(str(ROOT / "examples" / "traffic.jsonl"))

    assert len(har.requests) == len(lines.requests) == 60
    assert [(r.path, r.query) for r in har.requests] == [
        (r.path, r.query) for r in lines.requests
    ]
    assert har.warnings == lines.warnings == []
