"""Names that moved between the supported Python versions."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    from typing import Unpack
else:
    from typing_extensions import Unpack

__all__ = ["Unpack"]
