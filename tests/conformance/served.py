"""The app that the multi-process tests run under gunicorn, configured from LEAKWARE_*.

``/orders/<id>`` returns the id and the pid of the worker process that served it, after
a short pause so that concurrent requests spread over the workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from leakware.wsgi import LeakwareMiddleware


def orders(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    time.sleep(0.02)
    order = environ["PATH_INFO"].rsplit("/", 1)[-1]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"order {order} from {os.getpid()}".encode()]


app = LeakwareMiddleware(orders)
