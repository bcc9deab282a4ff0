"""ASGI middleware: measure what sampled requests leave behind in any ASGI app.

.. code-block:: python

    from leakware.asgi import LeakwareMiddleware

    app.add_middleware(LeakwareMiddleware, sample_rate=0.05)  # FastAPI or Starlette
    app = LeakwareMiddleware(app)                              # any ASGI app

It is a pure ASGI middleware. Lifespan and WebSocket scopes pass straight through, and a sampled
request is measured from the call into the app until that call returns, which is after the last
body chunk is sent and background tasks have run.
"""

from __future__ import annotations

from random import random
from typing import TYPE_CHECKING, Any

from leakware.measure import _STATE, ACTIVE, ENVIRON_KEY, Core, Outcome
from leakware.naming import type_name
from leakware.settings import Options, Settings
from leakware.starlette import find_routes, instrument_handlers, route_template

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from leakware._compat import Unpack

__all__ = ["LeakwareMiddleware"]

# Bound once, because the unsampled path runs for every request.
_enter = ACTIVE.append
_leave = ACTIVE.pop


class LeakwareMiddleware:
    """Measure a sample of the HTTP requests that an ASGI app serves.

    With Starlette and FastAPI, routes are named by their templates (``/users/{user_id}``) and
    exceptions that ``exception_handlers`` turn into responses are recorded too. Other ASGI apps
    get normalised paths.

    Args:
        app: the ASGI application to wrap.
        **options: any `leakware.settings.Settings` field, for example ``sample_rate=0.05``;
            unset fields come from ``LEAKWARE_*`` environment variables.

    Raises:
        leakware.settings.SettingsError: an invalid option or environment variable.
    """

    def __init__(self, app: ASGIApp, **options: Unpack[Options]) -> None:
        from leakware.capture import capture_asgi

        self.core = Core(Settings.load(options))
        self.app = capture_asgi(app, self.core)
        self._instrumented = False
        self._instrument()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self.core
        if scope["type"] != "http" or not core.enabled or ENVIRON_KEY in scope:
            await self.app(scope, receive, send)
            return

        # Most requests cost one random draw: at or above the cutoff, and with no window open
        # that they would overlap, they are not sampled.
        draw = random()
        if draw < core.sampler.cutoff or _STATE.open is not None:
            method = scope.get("method", "GET")
            path = scope.get("path", "")
            if core.should_sample(method, path, draw):
                await self._measure(scope, receive, send, method, path)
                return

        scope[ENVIRON_KEY] = core
        _enter(None)
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            core.failed(exc, scope.get("method", "GET"), scope.get("path", ""))
            raise
        finally:
            _leave()

    async def _measure(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        core = self.core
        if not self._instrumented:
            # A Starlette app builds its middleware stack on its first request, after this
            # middleware was created around it.
            self._instrument()
        outcome = Outcome(method, path)
        # Routing rewrites the scope (mounts change root_path), so the route is matched on a
        # copy taken before the app runs. Like everything below, it is allocated before the
        # window opens.
        route_context = (self.app, dict(scope))
        failure: list[BaseException] = []
        scope[ENVIRON_KEY] = outcome

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome.status = message["status"]
            await send(message)

        ACTIVE.append(None)
        measurement = core.begin(outcome)
        if measurement is None:
            try:
                await self.app(scope, receive, send)
            finally:
                ACTIVE.pop()
            return

        try:
            await self.app(scope, receive, recording_send)
        except BaseException as exc:
            outcome.exception = type_name(type(exc))
            outcome.status = outcome.status or 500
            failure.append(exc)
            raise
        finally:
            ACTIVE.pop()
            core.finish(measurement, [scope, *failure], _route, route_context)
            failure.clear()

    def _instrument(self) -> None:
        with self.core.faults.guard("starlette.instrument", "routes"):
            if instrument_handlers(self.app, self._record):
                self._instrumented = True

    def _record(self, conn: Any, exc: BaseException) -> None:
        # Called by the wrapped exception handlers, inside the app.
        with self.core.faults.guard("starlette.record_exception", "routes"):
            scope = conn.scope
            marker = scope.get(ENVIRON_KEY)
            if isinstance(marker, (Core, Outcome)):
                marker.failed(exc, scope.get("method", ""), scope.get("path", ""))


def _route(context: tuple[ASGIApp, dict[str, Any]]) -> str | None:
    app, scope = context
    routes = find_routes(app)
    if routes is None:
        return None
    return route_template(routes, scope)
