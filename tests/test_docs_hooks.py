"""The documentation site's build hook (docs/hooks/ucag_docs.py): LaTeX becomes MathML, and
the pages' directives become the CLI's help and the registries' tables, so that a method or
metric registered in ucag appears in the docs without editing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("latex2mathml", reason="the docs requirements (requirements-dev.txt)")

HOOK = Path(__file__).resolve().parent.parent / "docs" / "hooks" / "ucag_docs.py"


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("ucag_docs_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_math_becomes_mathml(hook) -> None:
    block = hook._fence(r"w_k = \exp(p_k)", "math", "math", {}, None)
    assert block.startswith('<div class="math-display"><math') and 'display="block"' in block
    assert "<msub><mi>w</mi><mi>k</mi></msub>" in block
    inline = hook._inline(r"\frac{1}{T}", "math", "math", None)
    assert inline.startswith("<math") and "<mfrac>" in inline and 'display="block"' not in inline


def test_directives_expand_to_the_cli_help_and_the_registries(hook) -> None:
    page = "# CLI\n\n<!-- ucag: cli-help tune -->\n\n<!-- ucag: metrics -->\n\n<!-- ucag: methods -->\n"
    expanded = hook.on_page_markdown(page)
    assert "$ ucag tune --help" in expanded and "--units UNITS" in expanded
    assert "| `deletion` | deletion ↓ | yes | no |" in expanded
    assert "| `gradcam` | Grad-CAM | gradcam |" in expanded
    assert "<!-- ucag:" not in expanded


def test_a_method_registered_later_appears_in_the_table(hook) -> None:
    from ucag.eval import registry

    name = "docs-test-method"

    @registry.register_method(name, "Docs Test CAM", "gradcam")
    def factory(model, target_layer, **options):  # pragma: no cover - never called
        raise AssertionError

    try:
        assert f"| `{name}` | Docs Test CAM | gradcam |" in hook.on_page_markdown("<!-- ucag: methods -->")
    finally:
        del registry.METHODS[name]


def test_an_unknown_directive_fails_the_build(hook) -> None:
    with pytest.raises(ValueError, match="unknown directive"):
        hook.on_page_markdown("<!-- ucag: nothing -->")
