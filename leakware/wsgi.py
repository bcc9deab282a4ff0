"""WSGI middleware: measure what sampled requests leave behind in any WSGI app.

.. code-block:: python

    from leakware.wsgi import LeakwareMiddleware

    app = LeakwareMiddleware(app, sample_rate=0.05)

The measurement of a sampled request ends when the server closes the response iterable, as
PEP 3333 requires it to once the response is sent (also on errors and client disconnects), so a
streaming response is measured to its end and never buffered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from random import random
from typing import TYPE_CHECKING, Any

from leakware.measure import _STATE, ACTIVE, ENVIRON_KEY, Core, Measurement, Outcome
from leakware.naming import type_name
from leakware.routes import UNMATCHED
from leakware.settings import Options, Settings

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from leakware._compat import Unpack

__all__ = ["LeakwareMiddleware"]

# Bound once, because the unsampled path runs for every request.
_enter = ACTIVE.append
_leave = ACTIVE.pop


class LeakwareMiddleware:
    """Measure a sample of the requests that a WSGI app serves.

    Put it outermost, so that it sees exceptions before an error-page middleware swallows them.
    For Flask, prefer `leakware.flask.init_app`, which also sees the exceptions Flask turns into
    error responses.

    Args:
        app: the WSGI application to wrap.
        **options: any `leakware.settings.Settings` field, for example ``sample_rate=0.05``;
            unset fields come from ``LEAKWARE_*`` environment variables.

    Raises:
        leakware.settings.SettingsError: an invalid option or environment variable.
    """

    def __init__(self, app: WSGIApplication, **options: Unpack[Options]) -> None:
        from leakware.capture import capture_wsgi

        self.core = Core(Settings.load(options))
        self.app = capture_wsgi(app, self.core)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        core = self.core
        if not core.enabled or ENVIRON_KEY in environ:
            return self.app(environ, start_response)

        # Most requests cost one random draw: at or above the cutoff, and with no window open
        # that they would overlap, they are not sampled.
        draw = random()
        if draw < core.sampler.cutoff or _STATE.open is not None:
            method = environ.get("REQUEST_METHOD", "GET")
            path = environ.get("PATH_INFO", "")
            if core.should_sample(method, path, draw):
                return self._measure(environ, start_response, method, path)

        environ[ENVIRON_KEY] = core
        _enter(None)
        try:
            return self.app(environ, start_response)
        except Exception as exc:
            core.failed(exc, environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""))
            raise
        finally:
            _leave()

    def _measure(
        self, environ: WSGIEnvironment, start_response: StartResponse, method: str, path: str
    ) -> Iterable[bytes]:
        core = self.core
        outcome = Outcome(method, path)
        environ[ENVIRON_KEY] = outcome
        # Everything the measurement needs is allocated before the window opens, so none of it
        # is counted as retained by the request.
        response = _MeasuredResponse(core, outcome, environ)
        catching_start_response = response.wrap(start_response)
        abandon = response.abandon
        ACTIVE.append(None)
        measurement = core.begin(outcome)
        if measurement is None:
            try:
                return self.app(environ, start_response)
            finally:
                ACTIVE.pop()

        response.measurement = measurement
        try:
            iterable = self.app(environ, catching_start_response)
        except BaseException as exc:
            outcome.exception = type_name(type(exc))
            outcome.status = outcome.status or 500
            ACTIVE.pop()
            response.finish([exc])
            raise
        ACTIVE.pop()

        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(iterable, file_wrapper):
            # Returned untouched so that the server can still send the file with sendfile();
            # reading a file allocates next to nothing, so the window can end here.
            response.finish([])
            return iterable
        response.iterable = iterable
        measurement.abandon = abandon
        if hasattr(type(iterable), "__len__"):
            # Switching the class allocates nothing inside the window, unlike a new wrapper.
            response.__class__ = _SizedMeasuredResponse
        return response


class _MeasuredResponse(Iterator[bytes]):
    """Yields the app's body chunks as they come, and ends the measurement on ``close()``."""

    __slots__ = (
        "_closed",
        "_core",
        "_environ",
        "_headers",
        "_iterator",
        "_outcome",
        "iterable",
        "measurement",
    )

    def __init__(self, core: Core, outcome: Outcome, environ: WSGIEnvironment) -> None:
        self._core = core
        self._outcome = outcome
        self._environ: WSGIEnvironment | None = environ
        self._headers: list[Any] = []
        self._iterator: Iterator[bytes] | None = None
        self._closed = False
        self.iterable: Iterable[bytes] | None = None
        self.measurement: Measurement | None = None

    def wrap(self, start_response: StartResponse) -> StartResponse:
        """Return a ``start_response`` that records the status and otherwise changes nothing."""
        outcome = self._outcome
        headers = self._headers

        def catching_start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Any:
            try:
                outcome.status = int(status[:3])
            except (TypeError, ValueError):
                # An invalid status is the server's to reject, in its own start_response.
                outcome.status = None
            # The server keeps this list until the response is sent; it belongs to the request.
            headers[:] = [response_headers]
            if exc_info is None:
                return start_response(status, response_headers)
            return start_response(status, response_headers, exc_info)

        return catching_start_response

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            assert self.iterable is not None, "iterated after close()"
            iterator = self._iterator = iter(self.iterable)
        try:
            return next(iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            if self._outcome.exception is None:
                self._outcome.exception = type_name(type(exc))
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._close_iterable()
        finally:
            self.finish([])

    def _close_iterable(self) -> None:
        # The app's iterable is closed exactly once, by the object the app returned (not an
        # iterator made from it). Our references go first, so that the measurement below does
        # not count the response as retained.
        close = getattr(self.iterable, "close", None)
        self.iterable = None
        self._iterator = None
        if close is None:
            return
        try:
            close()
        except BaseException as exc:
            if self._outcome.exception is None:
                self._outcome.exception = type_name(type(exc))
            raise
        finally:
            del close

    def abandon(self) -> None:
        """End the measurement of a response that will never be closed; the app's iterable,
        still referenced by whoever abandoned it, counts as transient."""
        self.finish([self.iterable])

    def finish(self, extra_transient: list[object]) -> None:
        """End the measurement; the request's environ and headers count as transient."""
        measurement = self.measurement
        environ = self._environ
        if measurement is None or environ is None:
            return
        self.measurement = None
        self._environ = None
        transient: list[object] = [environ, *self._headers, *extra_transient]
        self._headers.clear()
        del extra_transient
        self._core.finish(measurement, transient, _route, environ)


class _SizedMeasuredResponse(_MeasuredResponse):
    """A measured response whose app iterable has a length.

    Servers such as wsgiref and waitress call ``len()`` on the response and send a
    ``Content-Length`` header when it contains a single chunk, so the length must stay visible.
    """

    __slots__ = ()

    def __len__(self) -> int:
        iterable = self.iterable
        if iterable is None:  # closed
            return 0
        return len(iterable)  # type: ignore[arg-type]


def _route(environ: WSGIEnvironment) -> str | None:
    # werkzeug stores the request object in the environ; Flask's request carries the URL rule
    # that matched. Other frameworks fall back to the normalised path.
    request = environ.get("werkzeug.request")
    if request is not None and hasattr(request, "url_rule"):
        rule = request.url_rule
        if rule is None:
            return UNMATCHED
        return str(rule.rule)
    return None
