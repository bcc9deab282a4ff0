"""Route names for apps without a router: the request path with its variable parts replaced.

Numbers, UUIDs, long hex strings and anything else that does not look like a fixed word
become placeholders, so ``/users/42/orders/9f1c...`` is reported as ``/users/{id}/orders/{hex}``.
The raw path itself is never logged.
"""

from __future__ import annotations

import re

__all__ = ["UNMATCHED", "normalise_path"]

#: Route name for a request that no route of a framework's router matched.
UNMATCHED = "<unmatched>"

_MAX_SEGMENTS = 12
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
# A fixed path word: lower-case letters, maybe digits after them and inner dashes, dots or
# underscores, short. Anything else (mixed case, long, encoded, an e-mail address) may be data.
_WORD = re.compile(r"[a-z][a-z0-9]*([._-][a-z0-9]+)*")
_MAX_WORD = 32


def normalise_path(path: str) -> str:
    """Return ``path`` with every segment that may carry data replaced by a placeholder."""
    segments = path.split("/")
    names = [_segment(segment) for segment in segments[: _MAX_SEGMENTS + 1]]
    if len(segments) > _MAX_SEGMENTS + 1:
        names.append("{more}")
    return "/".join(names)


def _segment(segment: str) -> str:
    if not segment:
        return segment
    if _NUMBER.fullmatch(segment):
        return "{id}"
    if _UUID.fullmatch(segment):
        return "{uuid}"
    if _HEX.fullmatch(segment):
        return "{hex}"
    if len(segment) <= _MAX_WORD and _WORD.fullmatch(segment) and not _has_long_digit_run(segment):
        return segment
    return "{value}"


def _has_long_digit_run(segment: str) -> bool:
    # "v2" or "utf-8" are words; "order123456" carries an identifier.
    return re.search(r"\d{3,}", segment) is not None
