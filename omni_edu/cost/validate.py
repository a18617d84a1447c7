"""Input checks shared by the cost tool: sizes and times that cannot be used say so in the
learner's words.
"""

from __future__ import annotations

import math
import numbers


def positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise a ValueError in the learner's words when ``value`` is not a usable size."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} should be a number; got {value!r} ({type(value).__name__})")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} should be a finite number; got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name} should be {bound}; got {value}. Sizes and times cannot be negative."
        )
