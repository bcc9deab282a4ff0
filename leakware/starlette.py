"""Starlette and FastAPI support for the ASGI middleware: route templates and handled exceptions.

Nothing here runs unless the wrapped app is built on Starlette. Route templates come from
matching the request against the app's routes again after the response, mounts included
(``/api`` + ``/users/{user_id}``). Exceptions that an ``exception_handlers`` entry turns into a
response never reach the middleware, so their handlers are wrapped to record the type first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from leakware.routes import UNMATCHED

__all__ = ["find_routes", "instrument_handlers", "route_template"]

#: `.app` links followed from the middleware towards the router.
_MAX_DEPTH = 32
_WRAPPED = "__leakware_wrapped__"

Recorder = Callable[[Any, BaseException], None]


def _chain(app: Any) -> list[Any]:
    # Middleware classes conventionally keep the next app in `.app`; a Starlette app keeps its
    # built stack in `.middleware_stack` and its router in `.router`.
    seen: list[Any] = []
    node = app
    while node is not None and len(seen) < _MAX_DEPTH and all(node is not s for s in seen):
        seen.append(node)
        node = getattr(node, "middleware_stack", None) or getattr(node, "app", None)
    return seen


def find_routes(app: Any) -> list[Any] | None:
    """Return the route list of the first Starlette router behind ``app``, if any."""
    try:
        from starlette.routing import BaseRoute
    except ImportError:  # pragma: no cover - starlette is a dependency
        return None
    for node in _chain(app):
        router = getattr(node, "router", node)
        routes = getattr(router, "routes", None)
        if isinstance(routes, list) and all(isinstance(route, BaseRoute) for route in routes):
            return routes
    return None


def route_template(routes: list[Any], scope: dict[str, Any]) -> str:
    """Return the template of the route that ``scope`` matches, with mount prefixes."""
    from starlette.routing import Host, Match, Mount

    partial: str | None = None
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, (Mount, Host)):
            inner_scope = {**scope, **child_scope}
            inner = route_template(list(route.routes), inner_scope) if route.routes else UNMATCHED
            prefix = route.path if isinstance(route, Mount) else ""
            template = prefix + (inner if inner != UNMATCHED else "/{path}")
        else:
            template = str(getattr(route, "path", UNMATCHED))
        if match is Match.FULL:
            return template
        if partial is None:
            partial = template  # matched the path, not the method: a 405
    return partial or UNMATCHED


def instrument_handlers(app: Any, record: Recorder) -> int:
    """Wrap the exception handlers of every Starlette layer behind ``app`` with ``record``.

    Returns how many handlers were wrapped. Safe to call more than once.
    """
    wrapped = 0
    for node in _chain(app):
        for attribute in ("_exception_handlers", "_status_handlers", "exception_handlers"):
            handlers = getattr(node, attribute, None)
            if not isinstance(handlers, dict):
                continue
            for key, handler in list(handlers.items()):
                if callable(handler) and not getattr(handler, _WRAPPED, False):
                    handlers[key] = _wrap(handler, record)
                    wrapped += 1
    return wrapped


def _wrap(handler: Callable[..., Any], record: Recorder) -> Callable[..., Any]:
    from starlette._utils import is_async_callable

    if is_async_callable(handler):

        async def recording_async_handler(conn: Any, exc: BaseException) -> Any:
            record(conn, exc)
            return await handler(conn, exc)

        wrapper: Callable[..., Any] = recording_async_handler
    else:

        def recording_handler(conn: Any, exc: BaseException) -> Any:
            record(conn, exc)
            return handler(conn, exc)

        wrapper = recording_handler
    functools.update_wrapper(wrapper, handler)
    setattr(wrapper, _WRAPPED, True)
    return wrapper
