"""Argument checks shared by every entry point: whole numbers that are not bools, positive
counts, finite positive numbers, probabilities, sizes in pixels, and a nested error quoted
on one line inside ours.

Every check names the argument and says what was expected, and follows one convention:
a value of the wrong type raises ``TypeError``, a value of the right type out of range
raises ``ValueError``. ``bool`` is an ``int`` to Python but never a count or a number here.

>>> positive_int("units", 6)
6
>>> positive_int("batch_size", 0)
Traceback (most recent call last):
    ...
ValueError: batch_size: expected a positive int, got 0
>>> probability("global_weight", True)
Traceback (most recent call last):
    ...
TypeError: global_weight: expected a number in [0, 1], got True
>>> size_pair("scaled_size", 322)
(322, 322)
>>> quote_error(KeyError("layer4"))
"KeyError: 'layer4'"
"""

from __future__ import annotations

import math
import numbers
from typing import TypeGuard

#: The longest nested message :func:`quote_error` keeps.
QUOTE_LIMIT = 200


def is_int(value: object) -> TypeGuard[int]:
    """A whole number (Python or numpy integer) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[float]:
    """A real number (int, float, numpy scalar) that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(argument: str, value: object, hint: str = "") -> int:
    """``value`` as an int >= 1, or an error naming ``argument`` (``hint`` is added to what
    was expected, e.g. ``" or 'auto'"``)."""
    if not is_int(value):
        raise TypeError(f"{argument}: expected a positive int{hint}, got {value!r}")
    if value < 1:
        raise ValueError(f"{argument}: expected a positive int{hint}, got {value!r}")
    return int(value)


def positive_real(argument: str, value: object) -> float:
    """``value`` as a finite float > 0, or an error naming ``argument``."""
    if not is_real(value):
        raise TypeError(f"{argument}: expected a finite number > 0, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{argument}: expected a finite number > 0, got {value!r}")
    return number


def probability(argument: str, value: object) -> float:
    """``value`` as a float in [0, 1], or an error naming ``argument``."""
    if not is_real(value):
        raise TypeError(f"{argument}: expected a number in [0, 1], got {value!r}")
    number = float(value)
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise ValueError(f"{argument}: expected a number in [0, 1], got {value!r}")
    return number


def size_pair(argument: str, value: object) -> tuple[int, int]:
    """A size in pixels, ``side`` or ``(h, w)``, as an (h, w) pair of positive ints."""
    what = "a positive int or an (h, w) pair of positive ints (pixels)"
    pair = (value, value) if is_int(value) else value
    if isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{argument}: expected {what}, got {value!r}")
    if not all(is_int(side) for side in pair):
        raise TypeError(f"{argument}: expected {what}, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{argument}: expected {what}, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def quote_error(err: BaseException, limit: int = QUOTE_LIMIT) -> str:
    """``Type: message`` of a nested error on one line, at most ``limit`` characters, to
    quote inside a message of ours (a torch error spans several lines)."""
    text = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
