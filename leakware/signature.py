"""Leak signatures: a stable hash that groups the same leak across workers, restarts and days."""

from __future__ import annotations

import hashlib

__all__ = ["leak_signature"]


def leak_signature(
    method: str, route: str, exception: str | None, leaked_type: str, path: list[str]
) -> str:
    """Return a 16-hex-digit hash of what identifies a leak.

    Only names go in: the route template, the exception and leaked type names, and the type names
    along the retention path, so two processes that find the same leak compute the same value.
    """
    parts = [method, route, exception or "", leaked_type, *path]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:16]
