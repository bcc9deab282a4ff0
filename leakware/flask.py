"""Flask integration: the WSGI middleware plus the exceptions Flask turns into responses.

.. code-block:: python

    from leakware.flask import init_app

    init_app(app)  # settings from LEAKWARE_* environment variables

Flask catches a view's exception and turns it into an error response (its ``errorhandler``
functions, or a 500 for an unhandled exception), so a WSGI middleware never sees it. ``init_app``
records the exception type of such requests too, and names routes by their URL rule
(``/users/<int:user_id>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leakware.measure import ENVIRON_KEY, Core, Outcome
from leakware.routes import UNMATCHED
from leakware.wsgi import LeakwareMiddleware

if TYPE_CHECKING:
    from flask import Flask

    from leakware._compat import Unpack
    from leakware.settings import Options

__all__ = ["init_app"]

_HOOKED = "_leakware_hooked"


def init_app(app: Flask, **options: Unpack[Options]) -> LeakwareMiddleware:
    """Wrap ``app.wsgi_app`` with `leakware.wsgi.LeakwareMiddleware` and hook Flask's error
    handling.

    Args:
        app: the Flask application.
        **options: any `leakware.settings.Settings` field; unset fields come from ``LEAKWARE_*``
            environment variables.

    Returns:
        The middleware, which is now ``app.wsgi_app``.

    Raises:
        leakware.settings.SettingsError: an invalid option or environment variable.
    """
    middleware = LeakwareMiddleware(app.wsgi_app, **options)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    if not getattr(app, _HOOKED, False):
        _hook_routes(app, middleware.core)
        _hook_errors(app, middleware.core)
        setattr(app, _HOOKED, True)
    return middleware


def _hook_routes(app: Flask, core: Core) -> None:
    # Flask clears the request object out of the environ when the request ends, so the rule is
    # copied into the outcome while the request runs.
    from flask import request, request_started

    def record_rule(sender: Flask, **extra: Any) -> None:
        with core.faults.guard("flask.record_route", "routes"):
            outcome = request.environ.get(ENVIRON_KEY)
            if isinstance(outcome, Outcome):
                rule = request.url_rule
                outcome.route = UNMATCHED if rule is None else rule.rule

    request_started.connect(record_rule, app, weak=False)


def _hook_errors(app: Flask, core: Core) -> None:
    # handle_user_exception sees every exception a view raises, whether an errorhandler turns
    # it into a response or it goes on to handle_exception and becomes a 500.
    handle_user_exception = app.handle_user_exception

    def recording_handle_user_exception(e: Exception) -> Any:
        _record(core, e)
        return handle_user_exception(e)

    app.handle_user_exception = recording_handle_user_exception  # type: ignore[method-assign]

    handle_exception = app.handle_exception

    def recording_handle_exception(e: Exception) -> Any:
        _record(core, e)
        return handle_exception(e)

    app.handle_exception = recording_handle_exception  # type: ignore[method-assign]


def _record(core: Core, exc: BaseException) -> None:
    from flask import request

    with core.faults.guard("flask.record_exception", "routes"):
        marker = request.environ.get(ENVIRON_KEY)
        if isinstance(marker, (Core, Outcome)):
            marker.failed(exc, request.method, request.path)
