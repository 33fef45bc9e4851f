"""ucag.checks: one wording and one convention (TypeError for the wrong type, ValueError
for a value out of range) for every argument check, and its examples run as doctests."""

from __future__ import annotations

import doctest
import re

import numpy as np
import pytest

from ucag import checks, explainer


def test_the_examples_run():
    assert doctest.testmod(checks).failed == 0
    assert doctest.testmod(explainer).failed == 0  # UCAG.settings and UCAG.check_settings


@pytest.mark.parametrize(
    ("check", "good", "wrong_type", "out_of_range"),
    [
        (checks.positive_int, [(1, 1), (np.int64(7), 7)], [True, 2.0, "3", None], [0, -5]),
        (
            checks.positive_real,
            [(0.5, 0.5), (3, 3.0), (np.float32(2), 2.0)],
            [False, "1", None],
            [0, -1.0, float("nan"), float("inf")],
        ),
        (checks.probability, [(0, 0.0), (1, 1.0), (0.25, 0.25)], [True, "0.5", None], [-0.1, 1.5, float("nan")]),
        (
            checks.size_pair,
            [(4, (4, 4)), ((3, 5), (3, 5)), ([3, 5], (3, 5))],
            [True, 2.5, (1, 2, 3), "224", (1.0, 2)],
            [0, (0, 5)],
        ),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_each_check_accepts_refuses_and_names_the_argument(check, good, wrong_type, out_of_range):
    for value, expected in good:
        assert check("arg", value) == expected
        assert type(check("arg", value)) is type(expected)  # plain Python numbers out, not numpy's
    for value in wrong_type:
        with pytest.raises(TypeError, match=rf"^arg: expected .*, got {re.escape(repr(value))}$"):
            check("arg", value)
    for value in out_of_range:
        with pytest.raises(ValueError, match=r"^arg: expected "):
            check("arg", value)


def test_a_quoted_error_is_one_short_line():
    err = RuntimeError("first line\n  second line   with   spaces\n")
    assert checks.quote_error(err) == "RuntimeError: first line second line with spaces"
    assert checks.quote_error(ValueError()) == "ValueError"
    long = checks.quote_error(ValueError("x" * 500), limit=50)
    assert len(long) == 50 and long.endswith("...")
