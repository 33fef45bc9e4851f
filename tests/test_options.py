"""One vocabulary (ucag.options): UCAG's signature, the grid spec, tune and the CLI take
their allowed values and defaults from it, and every choice option refuses a value outside
its Literal with the argument named, before any work."""

from __future__ import annotations

import doctest
import inspect

import pytest

import ucag
from ucag import UCAG, options
from ucag.cli import main
from ucag.eval.tuning import Setting


def test_the_module_examples_run():
    assert doctest.testmod(options).failed == 0


def test_defaults_come_from_the_options_module(capsys):
    signature = inspect.signature(ucag.UCAG.__init__).parameters
    assert signature["units"].default == options.DEFAULT_UNITS
    assert ucag.GridSpec().units == options.DEFAULT_UNITS and ucag.GridSpec().scale == options.DEFAULT_SCALE
    assert Setting().units == options.DEFAULT_UNITS and Setting().scale == options.DEFAULT_SCALE
    assert signature["batch_size"].default == options.DEFAULT_BATCH_SIZE
    assert signature["global_weight"].default == options.DEFAULT_GLOBAL_WEIGHT
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    assert f"(default {options.DEFAULT_SCALE})" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argument", "literal"),
    [
        ("weighting", options.Weighting),
        ("confidence", options.Confidence),
        ("fold", options.FoldWindow),
        ("global_view", options.GlobalView),
    ],
)
def test_every_choice_is_checked_against_its_literal(argument, literal):
    for value in options.choices(literal):
        UCAG.check_settings(**{argument: value})
    with pytest.raises(ValueError, match=rf"^{argument}: expected '"):
        UCAG.check_settings(**{argument: "no-such-choice"})
    # not a string at all: refused the same way, not compared element-wise
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        UCAG.check_settings(**{argument: 3})


def test_messages_list_the_choices():
    with pytest.raises(ValueError, match=r"^postprocess: expected 'auto', 'cam' or 'none', got 'max'$"):
        UCAG.check_settings(postprocess="max")
    assert options.describe_choices(("a",)) == "'a'"
