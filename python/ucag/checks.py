"""Argument checks shared by every entry point: whole numbers that are not bools, positive
counts, finite positive numbers, probabilities, sizes in pixels, and a nested error quoted
on one line inside ours.

Every check names the argument and says what was expected, and follows one convention:
a value of the wrong type raises ``TypeError``, a value of the right type out of range
raises ``ValueError``. ``bool`` is an ``int`` to Python but never a count or a number here.

Examples:
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

#: The longest nested message `quote_error` keeps.
QUOTE_LIMIT = 200


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a whole number (Python or numpy integer) that is not a bool.

    Args:
        value: Any object.

    Returns:
        True for an integer other than ``True``/``False``.
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a real number (int, float, numpy scalar) that is not a bool.

    Args:
        value: Any object.

    Returns:
        True for a real number other than ``True``/``False`` (NaN and Inf included).
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(argument: str, value: object, hint: str = "") -> int:
    """``value`` as an int >= 1, or an error naming ``argument``.

    Args:
        argument: The argument's name, which starts the error message.
        value: The value to check.
        hint: Added to what was expected in the message, e.g. ``" or 'auto'"``.

    Returns:
        ``value`` as a Python int.

    Raises:
        TypeError: ``value`` is not an int (or is a bool).
        ValueError: ``value`` is below 1.

    Examples:
        >>> positive_int("units", 6)
        6
        >>> positive_int("batch_size", 0, " or 'auto'")
        Traceback (most recent call last):
            ...
        ValueError: batch_size: expected a positive int or 'auto', got 0
    """
    if not is_int(value):
        raise TypeError(f"{argument}: expected a positive int{hint}, got {value!r}")
    if value < 1:
        raise ValueError(f"{argument}: expected a positive int{hint}, got {value!r}")
    return int(value)


def positive_real(argument: str, value: object) -> float:
    """``value`` as a finite float > 0, or an error naming ``argument``.

    Args:
        argument: The argument's name, which starts the error message.
        value: The value to check.

    Returns:
        ``value`` as a Python float.

    Raises:
        TypeError: ``value`` is not a real number (or is a bool).
        ValueError: ``value`` is not finite or not above 0.
    """
    if not is_real(value):
        raise TypeError(f"{argument}: expected a finite number > 0, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{argument}: expected a finite number > 0, got {value!r}")
    return number


def probability(argument: str, value: object) -> float:
    """``value`` as a float in [0, 1], or an error naming ``argument``.

    Args:
        argument: The argument's name, which starts the error message.
        value: The value to check.

    Returns:
        ``value`` as a Python float.

    Raises:
        TypeError: ``value`` is not a real number (or is a bool).
        ValueError: ``value`` lies outside [0, 1] (or is NaN).
    """
    if not is_real(value):
        raise TypeError(f"{argument}: expected a number in [0, 1], got {value!r}")
    number = float(value)
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise ValueError(f"{argument}: expected a number in [0, 1], got {value!r}")
    return number


def size_pair(argument: str, value: object) -> tuple[int, int]:
    """A size in pixels, ``side`` or ``(h, w)``, as an (h, w) pair of positive ints.

    Args:
        argument: The argument's name, which starts the error message.
        value: An int (a square size) or a tuple or list of two ints.

    Returns:
        The (h, w) pair of Python ints.

    Raises:
        TypeError: ``value`` is neither an int nor a pair of ints.
        ValueError: A side is below 1.

    Examples:
        >>> size_pair("scaled_size", 322)
        (322, 322)
        >>> size_pair("patch_size", [124, 96])
        (124, 96)
        >>> size_pair("scaled_size", (0, 322))
        Traceback (most recent call last):
            ...
        ValueError: scaled_size: expected a positive int or an (h, w) pair of positive ints (pixels), got (0, 322)
    """
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
    """``Type: message`` of a nested error on one line, to quote inside a message of ours.

    A torch error spans several lines; the quote joins them and cuts it to ``limit``.

    Args:
        err: The nested error.
        limit: The most characters the quote keeps (a cut quote ends with "...").

    Returns:
        The quote, on one line.
    """
    text = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
