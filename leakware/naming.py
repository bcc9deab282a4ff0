"""Names for types and exceptions as they appear in events: ``module.QualName``, builtins bare."""

from __future__ import annotations

__all__ = ["type_name"]

_BARE_MODULES = frozenset({"builtins"})


def type_name(cls: type) -> str:
    """Return ``cls`` as ``module.QualName``, or just the name for builtins such as ``list``."""
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    if not isinstance(module, str) or module in _BARE_MODULES:
        return str(qualname)
    return f"{module}.{qualname}"
