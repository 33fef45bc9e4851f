"""The package's layering, checked on its import statements: the library never imports
the evaluation toolkit (``ucag.eval``), and nothing imports ``ucag.explainer`` for a
helper, only for the explainer itself. The package root and the command line sit above
both layers and may import either. And nothing ties the package to Linux: the macOS and
Windows wheels carry the same Python."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "ucag"
#: Modules above both layers.
APPLICATION = {"ucag", "ucag.cli", "ucag.__main__"}
#: What other modules may take from ucag.explainer.
EXPLAINER_API = {"UCAG", "Explanation"}


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
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if not _module_name(p).startswith("ucag.eval") and _module_name(p) not in APPLICATION],
    ids=_module_name,
)
def test_the_library_never_imports_the_evaluation_toolkit(path):
    offending = [target for target, _ in _imports(path) if target == "ucag.eval" or target.startswith("ucag.eval.")]
    assert not offending, f"{_module_name(path)} imports {offending}"


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_nothing_imports_the_explainer_for_a_helper(path):
    helpers = sorted(
        {name for target, names in _imports(path) if target == "ucag.explainer" for name in names} - EXPLAINER_API
    )
    assert not helpers, (
        f"{_module_name(path)} takes {helpers} from ucag.explainer; shared helpers live in ucag._inputs, ucag._model_state, ucag._chunks, ucag.checks"
    )


def test_the_checks_see_relative_imports():
    """The checks would pass vacuously if relative imports were not resolved."""
    runner = _imports(PACKAGE / "eval" / "runner.py")
    assert any(target == "ucag.eval.registry" for target, _ in runner)
    assert any(target == "ucag._inputs" for target, _ in runner)


#: Modules whose import ties the package to one operating system (or shells out).
PLATFORM_BOUND_MODULES = {
    "subprocess",
    "fcntl",
    "resource",
    "pwd",
    "grp",
    "termios",
    "pty",
    "posix",
    "msvcrt",
    "winreg",
}
#: Filesystem paths that exist on Linux only.
LINUX_PATHS = ("/proc", "/sys/", "/tmp", "/dev/shm", "/etc/")


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_the_package_runs_on_every_platform_a_wheel_is_built_for(path):
    # macOS and Windows wheels carry the same Python (docs/platforms.md): no shell-outs,
    # no POSIX-only modules, no Linux paths, no os.fork/os.system
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound = [target for target, _ in _imports(path) if target.split(".")[0] in PLATFORM_BOUND_MODULES]
    paths = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(LINUX_PATHS)
    ]
    calls = [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("os.fork", "os.system", "os.popen", "os.sched_getaffinity", "os.uname")
    ]
    assert not (bound or paths or calls), f"{_module_name(path)}: {bound + paths + calls}"


def test_the_platform_check_sees_what_it_looks_for(monkeypatch):
    # a module (never written) with one of each: the check must name all three
    probe = PACKAGE / "_platform_probe_for_tests.py"
    source = 'import os\nimport subprocess\nLIMIT = "/proc/meminfo"\nos.system("ls")\n'
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    with pytest.raises(AssertionError, match=r"subprocess.*/proc/meminfo.*os\.system"):
        test_the_package_runs_on_every_platform_a_wheel_is_built_for(probe)


def test_import_ucag_leaves_the_evaluation_toolkit_unloaded_until_used():
    # run in a fresh interpreter: this test session has long imported ucag.eval
    code = """
import sys
import ucag
assert not [m for m in sys.modules if m.startswith("ucag.eval")], "import ucag loaded the toolkit"
assert {"ucag.viz", "ucag.data", "ucag.bases", "ucag.models", "ucag.postprocess"} <= set(sys.modules)
namespace = {}
exec("from ucag import *", namespace)
assert "eval" not in namespace and namespace["UCAG"] is ucag.UCAG, "a star import shadows the builtin eval"
import ucag.eval.runner, ucag.eval.tuning
assert ucag.evaluate is ucag.eval.runner.evaluate and ucag.tune is ucag.eval.tuning.tune
assert {"eval", "evaluate", "tune"} <= set(dir(ucag))
try:
    ucag.metrics
except AttributeError as err:
    assert "from ucag.eval import metrics" in str(err)
else:
    raise AssertionError("ucag.metrics resolved")
try:
    ucag.no_such_name
except AttributeError as err:
    assert "no_such_name" in str(err)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
