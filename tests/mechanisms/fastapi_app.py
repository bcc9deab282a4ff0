"""The mechanisms as a FastAPI app, measured by ``leakware.asgi.LeakwareMiddleware`` from
LEAKWARE_* variables. Run it with ``uvicorn mechanisms.fastapi_app:app`` (``tests`` on the path).

Endpoints that only compute are plain ``def`` functions, which FastAPI runs on worker threads;
the others are ``async def``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from leakware.asgi import LeakwareMiddleware
from mechanisms import cases

app = FastAPI(title="mechanisms")
app.add_middleware(LeakwareMiddleware)


@app.exception_handler(cases.NoDepotError)
async def no_depot(request: Request, exc: cases.NoDepotError) -> JSONResponse:
    return JSONResponse({"error": "no depot"}, status_code=422)


@app.exception_handler(cases.OutOfStock)
async def out_of_stock(request: Request, exc: cases.OutOfStock) -> JSONResponse:
    return JSONResponse({"error": "out of stock"}, status_code=409)


@app.exception_handler(cases.BatchFailed)
async def batch_failed(request: Request, exc: cases.BatchFailed) -> JSONResponse:
    return JSONResponse({"error": "batch rejected"}, status_code=500)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# -- leaks ------------------------------------------------------------------------------------


@app.get("/leak/stored-exception")
async def stored_exception(n: int = 0) -> dict[str, float]:
    return {"total": cases.total_invoice(n)}


@app.get("/leak/shared-exception")
async def shared_exception(n: int = 0) -> JSONResponse:
    # Caught here rather than by an exception handler: Starlette's handlers clear the
    # traceback of the exception they turn into a response (starlette 1.x), which hides
    # this leak.
    try:
        return JSONResponse({"amount": cases.quote(n).amount})
    except cases.QuoteUnavailable:
        return JSONResponse({"error": "quotes are unavailable"}, status_code=503)


@app.get("/leak/thread-pool")
def thread_pool(fail: int = 0) -> dict[str, float]:
    return {"total": cases.sort_parcels(fail=fail == 1)}


@app.get("/leak/lru-method")
def lru_method(tier: int = 0) -> dict[str, float]:
    return {"price": cases.price_for("eu", tier)}


@app.get("/leak/logger")
async def logger() -> dict[str, int]:
    return {"records": cases.audit("view")}


@app.get("/leak/signal")
async def signal(n: int = 0) -> dict[str, int]:
    return {"notes": cases.place_order(n)}


@app.get("/leak/dict-by-input")
def dict_by_input(user: str = "") -> dict[str, int]:
    return {"items": cases.session_for(user)}


@app.get("/leak/class-per-request")
async def class_per_request(n: int = 0) -> dict[str, int]:
    return {"options": cases.make_plugin(n)}


@app.get("/leak/future-callbacks")
async def future_callbacks(n: int = 0) -> dict[str, int]:
    return {"topic": cases.subscribe(n)}


# -- look-alikes ------------------------------------------------------------------------------


@app.get("/ok/re-cache")
def re_cache(kind: str = "kind0", n: int = 0) -> dict[str, bool]:
    return {"valid": cases.parse_code(kind, f"{kind}-{n}")}


@app.get("/ok/lru-bounded")
async def lru_bounded(currency: str = "EUR") -> dict[str, int]:
    return {"history": len(cases.rate_for(currency).history)}


@app.get("/ok/urlsplit")
async def urlsplit(n: int = 0) -> dict[str, str]:
    return {"path": cases.split_url(n)}


@app.get("/ok/singleton")
async def singleton() -> dict[str, int]:
    return {"entries": cases.catalog_size()}


@app.get("/ok/sawtooth")
async def sawtooth(n: int = 0) -> dict[str, int]:
    return {"visits": cases.record_visit(n)}


@app.get("/ok/sqlite")
def sqlite(n: int = 0) -> dict[str, int]:
    return {"value": cases.query(n)}


@app.get("/ok/spike")
def spike() -> dict[str, int]:
    return {"total": cases.spike(20_000)}


@app.get("/ok/error-handler")
async def error_handler(n: int = 0) -> dict[str, bool]:
    cases.reserve(n)
    return {"reserved": True}


@app.get("/ok/server-error")
async def server_error(n: int = 0) -> dict[str, bool]:
    cases.crash(n)
    return {"handled": True}


@app.get("/ok/rate-limited")
async def rate_limited(n: int = 0) -> JSONResponse:
    if cases.throttled(n):
        return JSONResponse({"error": "slow down"}, status_code=429)
    return JSONResponse({"allowed": True})


@app.get("/ok/sync-error")
def sync_error(size: int = 200) -> dict[str, int]:
    return {"processed": cases.process_batch(size)}
