"""Optional dependencies (ucag.extras): a missing one is an ImportError (the CLI: one
error line) naming what needed it and the extra that installs it."""

from __future__ import annotations

import doctest
import sys

import pytest

from ucag import data, extras, figures
from ucag.cli import main
from ucag.eval import datasets


def test_the_module_examples_run():
    assert doctest.testmod(extras).failed == 0


def test_the_extras_named_are_those_pyproject_declares():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert set(extras.EXTRAS) == set(pyproject["project"]["optional-dependencies"])
    with pytest.raises(ValueError, match="^extra: expected one of examples, "):
        extras.require("math", "everything", "a test")


@pytest.mark.parametrize(
    ("blocked", "call", "message"),
    [
        ("matplotlib.pyplot", lambda: figures.pyplot(), "ucag.viz needs matplotlib: pip install 'ucag[examples]'"),
        ("skimage", lambda: data._examples_import("skimage"), "ucag.data needs skimage: pip install 'ucag[examples]'"),
        (
            "h5py",
            lambda: datasets._optional_import("h5py", "ImageNetSegmentation"),
            "ImageNetSegmentation needs h5py: pip install 'ucag[datasets]'",
        ),
    ],
)
def test_a_missing_dependency_names_its_extra(monkeypatch, blocked, call, message):
    monkeypatch.setitem(sys.modules, blocked, None)  # import raises ImportError
    with pytest.raises(ImportError) as caught:
        call()
    assert str(caught.value) == message


def test_the_cli_says_which_extra_a_model_source_needs(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)
    assert main(["explain", "chelsea", "--model", "timm:resnet18"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["ucag: error: --model: timm:resnet18 needs timm: pip install 'ucag[models]'"]
