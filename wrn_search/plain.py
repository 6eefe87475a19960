"""Values as the plain Python data that ``json`` and ``yaml.safe_dump`` write (torch- and Ray-free)."""

from __future__ import annotations

import math
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, tuples as lists and non-finite floats as None,
    recursively through dicts and lists; anything else as it is."""
    if hasattr(value, "item") and not isinstance(value, (dict, list, tuple)):
        value = value.item()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
