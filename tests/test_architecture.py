"""The package's layering, checked on its import statements: the library never imports
the evaluation toolkit (``ucag.eval``), and nothing imports ``ucag.explainer`` for a
helper, only for the explainer itself. The package root and the command line sit above
both layers and may import either."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "ucag"
#: Modules above both layers.
APPLICATION = {"ucag", "ucag.cli", "ucag.__main__"}
#: What other modules may take from ucag.explainer.
EXPLAINER_API = {"UCAG", "Explanation", "Weighting", "GlobalView"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import statement in a module."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            found.append((target, names))
            # `from . import eval` imports a submodule by name
            found += [(f"{target}.{name}", []) for name in names]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_both_layers():
    names = {_module_name(p) for p in MODULES}
    assert {"ucag.explainer", "ucag.bases.adapters", "ucag.eval.runner", "ucag.eval.registry"} <= names


@pytest.mark.parametrize("path", [p for p in MODULES if not _module_name(p).startswith("ucag.eval") and _module_name(p) not in APPLICATION], ids=_module_name)
def test_the_library_never_imports_the_evaluation_toolkit(path):
    offending = [target for target, _ in _imports(path) if target == "ucag.eval" or target.startswith("ucag.eval.")]
    assert not offending, f"{_module_name(path)} imports {offending}"


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_nothing_imports_the_explainer_for_a_helper(path):
    helpers = sorted({name for target, names in _imports(path) if target == "ucag.explainer" for name in names} - EXPLAINER_API)
    assert not helpers, f"{_module_name(path)} takes {helpers} from ucag.explainer; shared helpers live in ucag._call"


def test_the_checks_see_relative_imports():
    """The checks would pass vacuously if relative imports were not resolved."""
    runner = _imports(PACKAGE / "eval" / "runner.py")
    assert any(target == "ucag.eval.registry" for target, _ in runner)
    assert any(target == "ucag._call" for target, _ in runner)
