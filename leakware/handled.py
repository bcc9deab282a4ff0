"""Exceptions raised and caught inside the app during a window, seen through ``_monitoring()``.

A view that catches its own exception and returns a normal response never lets the middleware see
it. On CPython 3.12 and later, ``_monitoring()`` reports every ``except`` clause that catches an
exception; leakware turns the event on only while a window is open and keeps the exceptions that
were caught in the app's own code, not in the standard library or installed packages. On 3.10
and 3.11 nothing is recorded.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import CodeType
from typing import Any

from leakware.naming import type_name

__all__ = ["AVAILABLE", "HandledExceptions"]

AVAILABLE = sys.version_info >= (3, 12)

#: Distinct exception types kept per window.
MAX_TYPES = 10

_TOOL_NAME = "leakware"


def _library_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    prefixes = {paths[name] for name in names if paths.get(name)}
    prefixes.add(os.path.dirname(os.path.abspath(__file__)))  # leakware itself
    prefixes.add("<")  # frozen modules and generated code such as "<string>"
    return tuple(sorted(prefixes))


def _monitoring() -> Any:
    # Looked up at run time: the module exists from 3.12 on, and type checking targets 3.10.
    return vars(sys)["monitoring"]


class HandledExceptions:
    """Records the types of exceptions that app code caught while a window is open.

    Only one instance is active at a time, because windows are exclusive per process. The
    recorded list is allocated before the window opens so it never shows up as retained.
    """

    def __init__(self) -> None:
        self.types: list[str] = []
        self._tool: int | None = None
        self._library = _library_prefixes()
        self._in_app: dict[str, bool] = {}

    def start(self) -> None:
        """Clear the list and start listening, if ``_monitoring()`` exists and has a free id."""
        self.types.clear()
        if not AVAILABLE:
            return
        monitoring: Any = _monitoring()
        for tool in (4, 3):  # ids that CPython does not reserve for debuggers or profilers
            try:
                monitoring.use_tool_id(tool, _TOOL_NAME)
            except ValueError:
                continue
            self._tool = tool
            monitoring.register_callback(
                tool, monitoring.events.EXCEPTION_HANDLED, self._on_handled
            )
            monitoring.set_events(tool, monitoring.events.EXCEPTION_HANDLED)
            return

    def stop(self) -> None:
        """Stop listening and give the tool id back."""
        tool = self._tool
        if tool is None:
            return
        self._tool = None
        monitoring: Any = _monitoring()
        monitoring.set_events(tool, 0)
        monitoring.register_callback(tool, monitoring.events.EXCEPTION_HANDLED, None)
        monitoring.free_tool_id(tool)

    def _on_handled(self, code: CodeType, _offset: int, exception: BaseException) -> None:
        filename = code.co_filename
        in_app = self._in_app.get(filename)
        if in_app is None:
            in_app = not filename.startswith(self._library)
            if len(self._in_app) < 4096:
                self._in_app[filename] = in_app
        if not in_app or len(self.types) >= MAX_TYPES:
            return
        name = type_name(type(exception))
        if name not in self.types:
            self.types.append(name)
