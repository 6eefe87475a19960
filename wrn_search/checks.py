"""Input checks shared by the spec, the search space, the datasets and the trainer.

Every bad input is a one-line :class:`ValueError` that starts with the field
(``"search.samples: must be an integer >= 1, got 0"``) and states the allowed
values; the CLI prints it as ``wrn-search <command>: error: ...`` and exits with
code 2. Keeping the checks here keeps that wording the same everywhere. Bools
are never numbers: ``True`` is not a batch size.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Collection
from typing import Any

from wrn_search.errors import BadInput


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` (NaN and infinities included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shown(value: Any) -> str:
    """``repr(value)``, with the middle of an integer of hundreds of digits left out: the message stays one line."""
    return reprlib.repr(value) if is_int(value) else repr(value)


def require_int(value: Any, where: str, minimum: int, maximum: int | None = None) -> int:
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"from {minimum:,} to {maximum:,}"
        raise BadInput(f"{where}: must be an integer {allowed}, got {shown(value)}")
    return value


def require_number(value: Any, where: str, low: float = -math.inf, high: float = math.inf,
                   open_low: bool = False, open_high: bool = False) -> float:
    """A finite number from ``low`` to ``high``, both ends included unless ``open_low`` / ``open_high``."""
    finite = is_int(value) or (is_number(value) and math.isfinite(value))  # isfinite(10**400) overflows
    if not (finite and (low < value if open_low else low <= value) and (value < high if open_high else value <= high)):
        raise BadInput(f"{where}: must be a number{_interval(low, high, open_low, open_high)}, got {shown(value)}")
    return value


def require_choice(value: Any, where: str, allowed: Collection[str]) -> str:
    if value not in allowed:
        raise BadInput(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return value


def require_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{where}: must be true or false, got {value!r}")
    return value


def _interval(low: float, high: float, open_low: bool, open_high: bool) -> str:
    """`` > 0`` for a half-line, `` in [0, 1)`` for an interval, nothing for all finite numbers."""
    if high == math.inf:
        return "" if low == -math.inf else f" {'>' if open_low else '>='} {low:g}"
    return f" in {'(' if open_low or low == -math.inf else '['}{low:g}, {high:g}{')' if open_high else ']'}"
