"""The example service on FastAPI, with leakware configured from LEAKWARE_* variables.

Run it with ``uvicorn examples.fastapi_app:app``. Routes:

- ``GET /routes/{city}?to=X`` routes trips with a thread pool; ``to`` above 1.0 is off the map,
  the worker raises `NoRouteError`, and the request leaks its fleet (the bug);
- ``GET /v2/routes/{city}?to=X`` does the same work and cleans up (the fix);
- ``GET /cities/{city}/zones`` fills a per-city cache on first use;
- ``GET /health`` allocates nothing that outlives it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from examples.fleet import NoRouteError, plan_routes, plan_routes_fixed
from examples.zones import zones_for
from leakware.asgi import LeakwareMiddleware

app = FastAPI(title="fleet")
app.add_middleware(LeakwareMiddleware)


@app.exception_handler(NoRouteError)
async def no_route(request: Request, exc: NoRouteError) -> JSONResponse:
    return JSONResponse({"error": "no route for this trip"}, status_code=422)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/routes/{city}")
async def routes(city: str, to: float = 0.5) -> dict[str, object]:
    return {"city": city, "etas": plan_routes(city, to)}


@app.get("/v2/routes/{city}")
async def routes_fixed(city: str, to: float = 0.5) -> dict[str, object]:
    return {"city": city, "etas": plan_routes_fixed(city, to)}


@app.get("/cities/{city}/zones")
async def zones(city: str) -> dict[str, object]:
    return {"city": city, "zones": len(zones_for(city))}
