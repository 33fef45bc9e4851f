"""MkDocs hook: what the site computes when it is built.

- Formulas written in LaTeX become MathML: display math is a fenced block with the language
  ``math``, inline math a code span ``#!math ...`` (pymdownx.superfences and
  pymdownx.inlinehilite call the formatters below). The browser renders MathML itself, so
  the site needs no math script and no network; a formula latex2mathml cannot parse fails
  the build, naming the formula.
- A line ``<!-- ucag: cli-help COMMAND -->`` becomes the help of ``ucag COMMAND``, and
  ``<!-- ucag: methods -->``, ``<!-- ucag: variants -->``, ``<!-- ucag: metrics -->`` the
  tables of the evaluation toolkit's registries, so a method, variant or metric registered
  in ucag appears in the docs without editing them.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from typing import Any

from latex2mathml.converter import convert

_DIRECTIVE = re.compile(r"^<!-- ucag: (?P<what>[a-z-]+)(?: (?P<argument>[a-z-]+))? -->$", re.MULTILINE)


def _mathml(source: str, display: str) -> str:
    try:
        return convert(source.strip(), display=display)
    except Exception as error:  # latex2mathml raises its own exception types
        raise ValueError(f"docs: cannot render the formula {source.strip()!r} as MathML: {error}") from error


def _fence(source: str, language: str, css_class: str, options: dict, md: Any, **kwargs: Any) -> str:
    return f'<div class="math-display">{_mathml(source, "block")}</div>'


def _inline(source: str, language: str, css_class: str, md: Any) -> str:
    return _mathml(source, "inline")


def _cli_help(command: str) -> str:
    from ucag.cli import main

    output = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page has one width
    try:
        with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
            main([command, "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return f"```text\n$ ucag {command} --help\n{output.getvalue().rstrip()}\n```"


def _methods() -> str:
    from ucag.eval.registry import METHODS

    rows = ["| name | method | kind | notes |", "|---|---|---|---|"]
    for spec in METHODS.values():
        notes = []
        if spec.runs_once:
            notes.append("runs once per image (no UCAG variant)")
        if spec.class_indices_only:
            notes.append("class indices only")
        if not spec.uses_layer:
            notes.append("no target layer")
        rows.append(f"| `{spec.name}` | {spec.display_name} | {spec.kind} | {'; '.join(notes)} |")
    return "\n".join(rows)


def _variants() -> str:
    from ucag.eval.registry import VARIANT_SPECS

    rows = ["| variant | prefix | baseline | notes |", "|---|---|---|---|"]
    for spec in VARIANT_SPECS.values():
        notes = []
        if spec.needs_gradcam_class:
            notes.append("needs a pytorch-grad-cam class")
        if spec.follows_targets:
            notes.append("follows target objects")
        rows.append(
            f"| `{spec.name}` | {spec.prefix or '(none)'} | {'yes' if spec.baseline else 'no'} | {'; '.join(notes)} |"
        )
    return "\n".join(rows)


def _metrics() -> str:
    from ucag.eval.measures import MEASURES

    rows = ["| metric | columns | default | needs masks |", "|---|---|---|---|"]
    for spec in MEASURES.values():
        columns = ", ".join(f"{column.title} {'↓' if column.lower_is_better else '↑'}" for column in spec.columns)
        rows.append(
            f"| `{spec.name}` | {columns} | {'yes' if spec.default else 'no'} | {'yes' if spec.needs_mask else 'no'} |"
        )
    return "\n".join(rows)


def _expand(match: re.Match[str]) -> str:
    what, argument = match["what"], match["argument"]
    if what == "cli-help" and argument:
        return _cli_help(argument)
    generators = {"methods": _methods, "variants": _variants, "metrics": _metrics}
    if what in generators and argument is None:
        return generators[what]()
    raise ValueError(f"docs: unknown directive {match.group(0)!r}")


def on_config(config: Any) -> Any:
    """Register the math formatters with superfences and inlinehilite."""
    extension_configs = config.mdx_configs
    fences = extension_configs.setdefault("pymdownx.superfences", {}).setdefault("custom_fences", [])
    fences.append({"name": "math", "class": "math", "format": _fence})
    inline = extension_configs.setdefault("pymdownx.inlinehilite", {}).setdefault("custom_inline", [])
    inline.append({"name": "math", "class": "math", "format": _inline})
    return config


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Expand the ``<!-- ucag: ... -->`` directives."""
    return _DIRECTIVE.sub(_expand, markdown)
