"""The optional dependencies: [require][ucag.extras.require] imports one, or raises an
ImportError that names what needed it and the extra of ``pip install 'ucag[...]'`` that
installs it (pyproject.toml's ``[project.optional-dependencies]``).

Examples:
    >>> require("math", "examples", "this example").sqrt(4.0)
    2.0
    >>> require("no_such_module_here", "examples", "ucag.viz")
    Traceback (most recent call last):
        ...
    ImportError: ucag.viz needs no_such_module_here: pip install 'ucag[examples]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The extras pyproject.toml declares.
EXTRAS = ("examples", "evaluation", "datasets", "models", "captum", "zennit", "notebooks", "docs")


def require(module: str, extra: str, needed_by: str) -> ModuleType:
    """``module``, imported; an ImportError naming ``needed_by`` and the ``extra`` when it is missing.

    Args:
        module: The module's dotted name, e.g. ``"matplotlib.pyplot"``.
        extra: The extra that installs it, one of `EXTRAS`.
        needed_by: What needs it, named in the error (e.g. ``"ucag.viz"``).

    Returns:
        The imported module.

    Raises:
        ValueError: ``extra`` is not one of `EXTRAS`.
        ImportError: The module cannot be imported; the message names ``needed_by``, the
            module's top-level package and ``pip install 'ucag[<extra>]'``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra: expected one of {', '.join(EXTRAS)}, got {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{needed_by} needs {module.split('.')[0]}: pip install 'ucag[{extra}]'") from err
