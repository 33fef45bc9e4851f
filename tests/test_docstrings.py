"""Every public name of ucag has a docstring in one format (Google style: a summary, then
Args / Returns / Yields / Raises / Examples sections), every argument it documents exists and
every argument it has is documented, and the examples of every public module run as doctests.

The API reference of the documentation site (docs/api/) is rendered from these docstrings by
mkdocstrings with the same parser (griffe's Google parser), so a warning here is a warning in
``mkdocs build --strict``.

Public: the modules of ucag, ucag.bases and ucag.eval whose names do not start with an
underscore; in each, the names of its ``__all__`` or, without one, the functions and classes
it defines whose names do not start with an underscore; in each public class, the methods,
static and class methods and properties it defines (``__call__`` included).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import torch  # noqa: F401  (libtorch before the tch module)

griffe = pytest.importorskip("griffe", reason="griffe comes with mkdocstrings-python (requirements-dev.txt)")

#: The public packages whose non-underscore modules are public.
PACKAGES = ("ucag", "ucag.bases", "ucag.eval")

#: Names whose docstrings must carry an ``Examples`` section that runs as a doctest: small,
#: fast functions (the kernels, the grid, post-processing, argument checks, a metric on a toy
#: model) whose example teaches the call.
MUST_HAVE_EXAMPLES = (
    "ucag.kernels.unfold",
    "ucag.kernels.confidence",
    "ucag.kernels.fold",
    "ucag.grid.GridSpec",
    "ucag.Grid",
    "ucag.postprocess.cam_postprocess",
    "ucag.postprocess.gaussian_blur",
    "ucag.checks.positive_int",
    "ucag.checks.size_pair",
    "ucag.eval.metrics.deletion",
    "ucag.eval.metrics.insertion",
    "ucag.targets.ClassTarget",
)


def public_modules() -> list[str]:
    names = ["ucag"]
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.extend(
            f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__) if not info.name.startswith("_")
        )
    return sorted(set(names))


MODULES = public_modules()
#: Doctests also run in the private modules, whose public names are re-exported (e.g.
#: ``ucag.models.LogitsOnly`` from ``ucag._inputs``): doctest skips objects defined elsewhere.
DOCTEST_MODULES = sorted(
    set(MODULES)
    | {
        f"ucag.{info.name}"
        for info in pkgutil.iter_modules(importlib.import_module("ucag").__path__)
        if info.name.startswith("_") and info.name not in ("__main__", "_core", "_tch")
    }
)


def _is_documentable(value: Any) -> bool:
    return inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value)


def _public_names(module: ModuleType) -> list[str]:
    exported = vars(module).get("__all__")
    if exported is not None:
        return list(exported)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and _is_documentable(value)
        and getattr(value, "__module__", None) == module.__name__
    ]


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if (
            inspect.isfunction(value)
            or isinstance(value, property)
            or inspect.ismethoddescriptor(value)
            or inspect.isgetsetdescriptor(value)
        ):
            yield name, value


def public_objects(module_name: str) -> list[tuple[str, Any]]:
    """(qualified name, object) of every public function, class and class member of one module."""
    module = importlib.import_module(module_name)
    found: list[tuple[str, Any]] = []
    for name in _public_names(module):
        value = getattr(module, name, None)
        home = str(getattr(value, "__module__", ""))
        if not _is_documentable(value) or not home.startswith("ucag"):
            continue
        if home != module_name and home in MODULES:
            continue  # re-exported: checked once, in the module that defines it
        found.append((f"{module_name}.{name}", value))
        if inspect.isclass(value):
            found.extend((f"{module_name}.{name}.{member}", item) for member, item in _members(value))
    return found


def _documented_parameters(value: Any) -> list[str]:
    """The parameters a reader must find documented: those of a function or method, or of a
    class's constructor, less ``self``/``cls``."""
    if inspect.isclass(value) and getattr(value, "_is_protocol", False):
        return []  # a Protocol's runtime __init__(*args, **kwargs) is typing's, not the class's
    target = value.__init__ if inspect.isclass(value) and "__init__" in vars(value) else value
    if inspect.isclass(value) and target is value:
        # a pyo3 class or one without its own __init__: its __new__ or dataclass signature
        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):
            return []
    else:
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            return []
    names = []
    for parameter in signature.parameters.values():
        if parameter.name in ("self", "cls"):
            continue
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "")
        names.append(prefix + parameter.name)
    return names


def _returns_something(value: Any) -> bool:
    if inspect.isclass(value) or isinstance(value, property) or inspect.isgetsetdescriptor(value):
        return False
    if getattr(value, "__name__", "") in ("__init__", "__call__") and inspect.isfunction(value):
        annotation = inspect.signature(value).return_annotation
        return annotation not in (None, "None", inspect.Signature.empty)
    try:
        annotation = inspect.signature(value).return_annotation
    except (TypeError, ValueError):
        return True
    if annotation is inspect.Signature.empty:
        # pyo3 methods carry no annotations; their stubs (_core.pyi) do, and they all return
        return inspect.ismethoddescriptor(value) or inspect.isbuiltin(value)
    return annotation not in (None, "None", "NoReturn", "Never")


def _return_annotation(value: Any) -> Any:
    try:
        return inspect.signature(value).return_annotation
    except (TypeError, ValueError):
        return inspect.Signature.empty


def _docstring(value: Any) -> str | None:
    if isinstance(value, property):
        return inspect.cleandoc(value.__doc__) if value.__doc__ else None
    return inspect.getdoc(value)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def docstring_problems(qualified: str, value: Any) -> list[str]:
    """What is wrong with one docstring, as lines naming the object; empty when it is right."""
    text = _docstring(value)
    if not text:
        return [f"{qualified}: no docstring"]
    collector = _Collect()
    logger = logging.getLogger("griffe")
    logger.addHandler(collector)
    try:
        sections = griffe.Docstring(text, parser=griffe.Parser.google).parse()
    finally:
        logger.removeHandler(collector)
    # types come from the annotations, which the parser is not shown here (mkdocstrings is)
    problems = [f"{qualified}: {m}" for m in collector.messages if "No type or annotation" not in m]
    kinds: dict[str, list[Any]] = {}
    for section in sections:
        kinds.setdefault(section.kind.value, []).append(section)
    is_data_class = inspect.isclass(value) and hasattr(value, "__dataclass_fields__")
    documented: set[str] = set()
    for kind in ("parameters", "other parameters") + (("attributes",) if is_data_class else ()):
        for section in kinds.get(kind, []):
            documented.update(item.name for item in section.value)
    # griffe keeps the stars of *args/**kwargs in Args entries; accept either spelling
    documented |= {name.lstrip("*") for name in documented}
    expected = [] if isinstance(value, property) or inspect.isgetsetdescriptor(value) else _documented_parameters(value)
    missing = [name for name in expected if name not in documented and name.lstrip("*") not in documented]
    if missing:
        problems.append(f"{qualified}: arguments not documented in its Args section: {', '.join(missing)}")
    unknown = sorted(name for name in documented if name.lstrip("*") not in {p.lstrip("*") for p in expected})
    if unknown and not is_data_class:
        problems.append(f"{qualified}: documents arguments it does not have: {', '.join(unknown)}")
    for section in kinds.get("returns", []) + kinds.get("yields", []):
        # griffe reads each line at the section's indent as one more returned value: a
        # description's second line must be indented further
        annotation = str(_return_annotation(value))
        if len(section.value) > 1 and not annotation.startswith(("tuple", "Tuple")):
            problems.append(
                f"{qualified}: its Returns/Yields section reads as {len(section.value)} values "
                "(indent a description's continuation lines)"
            )
    if _returns_something(value) and not ({"returns", "yields"} & set(kinds)):
        problems.append(f"{qualified}: returns a value but has no Returns (or Yields) section")
    if qualified in MUST_HAVE_EXAMPLES and "examples" not in kinds:
        problems.append(f"{qualified}: needs an Examples section (MUST_HAVE_EXAMPLES)")
    return problems


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_have_google_docstrings(module_name: str) -> None:
    problems = [
        line for qualified, value in public_objects(module_name) for line in docstring_problems(qualified, value)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_examples_run_as_doctests(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_names_that_must_show_an_example_have_one_that_runs() -> None:
    finder = doctest.DocTestFinder()
    for qualified in MUST_HAVE_EXAMPLES:
        module_name, _, name = qualified.rpartition(".")
        value = getattr(importlib.import_module(module_name), name)
        examples = sum(len(test.examples) for test in finder.find(value, qualified))
        assert examples > 0, f"{qualified} has no doctest examples"


def test_the_check_finds_a_missing_argument_and_an_unknown_one() -> None:
    def scaled(image: torch.Tensor, factor: float) -> torch.Tensor:
        """Scale an image.

        Args:
            image: the image.
            gain: a factor.

        Returns:
            The scaled image.
        """
        return image * factor

    problems = docstring_problems("scaled", scaled)
    assert any("not documented" in line and "factor" in line for line in problems), problems
    assert any("does not have" in line and "gain" in line for line in problems), problems

    def undocumented(x: int) -> int:
        return x

    assert docstring_problems("undocumented", undocumented) == ["undocumented: no docstring"]

    def no_returns(x: int) -> int:
        """Twice x.

        Args:
            x: a number.
        """
        return 2 * x

    assert docstring_problems("no_returns", no_returns) == [
        "no_returns: returns a value but has no Returns (or Yields) section"
    ]


def test_the_stub_documents_grid_as_the_extension_does() -> None:
    """The site renders ucag.Grid from the stub (python/ucag/_core.pyi), help() from the
    extension (src/python.rs): one text, kept equal here."""
    import ast
    from pathlib import Path

    import ucag

    stub = Path(ucag.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text(encoding="utf-8"))
    grid = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Grid")
    documented = {"Grid": ast.get_docstring(grid)} | {
        node.name: ast.get_docstring(node)
        for node in grid.body
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node)
    }
    assert len(documented) >= 10
    for name, text in documented.items():
        runtime = inspect.getdoc(ucag.Grid if name == "Grid" else getattr(ucag.Grid, name))
        assert runtime == text, f"Grid.{name}: the stub's docstring differs from src/python.rs's"
