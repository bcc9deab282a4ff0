"""The mechanisms as a Flask app, measured by ``leakware.flask.init_app`` from LEAKWARE_*
variables. Run it with ``flask --app mechanisms.flask_app run`` (``tests`` on the path)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from leakware.flask import init_app
from mechanisms import cases

app = Flask(__name__)
init_app(app)
# One access-log line per request would drown the test output.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _number(name: str) -> int:
    return request.args.get(name, 0, type=int)


@app.errorhandler(cases.QuoteUnavailable)
def quote_unavailable(exc: cases.QuoteUnavailable) -> ResponseReturnValue:
    return jsonify(error="quotes are unavailable"), 503


@app.errorhandler(cases.NoDepotError)
def no_depot(exc: cases.NoDepotError) -> ResponseReturnValue:
    return jsonify(error="no depot"), 422


@app.errorhandler(cases.OutOfStock)
def out_of_stock(exc: cases.OutOfStock) -> ResponseReturnValue:
    return jsonify(error="out of stock"), 409


@app.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(status="ok")


# -- leaks ------------------------------------------------------------------------------------


@app.get("/leak/stored-exception")
def stored_exception() -> ResponseReturnValue:
    return jsonify(total=cases.total_invoice(_number("n")))


@app.get("/leak/shared-exception")
def shared_exception() -> ResponseReturnValue:
    return jsonify(amount=cases.quote(_number("n")).amount)


@app.get("/leak/thread-pool")
def thread_pool() -> ResponseReturnValue:
    return jsonify(total=cases.sort_parcels(fail=_number("fail") == 1))


@app.get("/leak/lru-method")
def lru_method() -> ResponseReturnValue:
    return jsonify(price=cases.price_for("eu", _number("tier")))


@app.get("/leak/logger")
def logger() -> ResponseReturnValue:
    return jsonify(records=cases.audit("view"))


@app.get("/leak/signal")
def signal() -> ResponseReturnValue:
    return jsonify(notes=cases.place_order(_number("n")))


@app.get("/leak/dict-by-input")
def dict_by_input() -> ResponseReturnValue:
    return jsonify(items=cases.session_for(request.args.get("user", "")))


@app.get("/leak/class-per-request")
def class_per_request() -> ResponseReturnValue:
    return jsonify(options=cases.make_plugin(_number("n")))


@app.get("/leak/future-callbacks")
def future_callbacks() -> ResponseReturnValue:
    return jsonify(topic=cases.subscribe(_number("n")))


# -- look-alikes ------------------------------------------------------------------------------


@app.get("/ok/re-cache")
def re_cache() -> ResponseReturnValue:
    kind = request.args.get("kind", "kind0")
    return jsonify(valid=cases.parse_code(kind, f"{kind}-{_number('n')}"))


@app.get("/ok/lru-bounded")
def lru_bounded() -> ResponseReturnValue:
    return jsonify(history=len(cases.rate_for(request.args.get("currency", "EUR")).history))


@app.get("/ok/urlsplit")
def urlsplit() -> ResponseReturnValue:
    return jsonify(path=cases.split_url(_number("n")))


@app.get("/ok/singleton")
def singleton() -> ResponseReturnValue:
    return jsonify(entries=cases.catalog_size())


@app.get("/ok/sawtooth")
def sawtooth() -> ResponseReturnValue:
    return jsonify(visits=cases.record_visit(_number("n")))


@app.get("/ok/sqlite")
def sqlite() -> ResponseReturnValue:
    return jsonify(value=cases.query(_number("n")))


@app.get("/ok/spike")
def spike() -> ResponseReturnValue:
    return jsonify(total=cases.spike(20_000))


@app.get("/ok/error-handler")
def error_handler() -> ResponseReturnValue:
    cases.reserve(_number("n"))
    return jsonify(reserved=True)


@app.get("/ok/server-error")
def server_error() -> ResponseReturnValue:
    cases.crash(_number("n"))
    return jsonify(handled=True)


@app.get("/ok/rate-limited")
def rate_limited() -> ResponseReturnValue:
    if cases.throttled(_number("n")):
        return jsonify(error="slow down"), 429
    return jsonify(allowed=True)
