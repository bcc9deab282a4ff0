"""The example service on Flask, with leakware configured from LEAKWARE_* variables.

Run it with ``flask --app examples.flask_app run`` or any WSGI server. The routes are the same
as in fastapi_app.py; a trip off the map becomes a 422 through an ``errorhandler``.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from examples.fleet import NoRouteError, plan_routes, plan_routes_fixed
from examples.zones import zones_for
from leakware.flask import init_app

app = Flask(__name__)
init_app(app)


@app.errorhandler(NoRouteError)
def no_route(exc: NoRouteError) -> ResponseReturnValue:
    return jsonify(error="no route for this trip"), 422


@app.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(status="ok")


@app.get("/routes/<city>")
def routes(city: str) -> ResponseReturnValue:
    return jsonify(city=city, etas=plan_routes(city, request.args.get("to", 0.5, type=float)))


@app.get("/v2/routes/<city>")
def routes_fixed(city: str) -> ResponseReturnValue:
    destination = request.args.get("to", 0.5, type=float)
    return jsonify(city=city, etas=plan_routes_fixed(city, destination))


@app.get("/cities/<city>/zones")
def zones(city: str) -> ResponseReturnValue:
    return jsonify(city=city, zones=len(zones_for(city)))
