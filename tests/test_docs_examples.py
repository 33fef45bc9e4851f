"""The code on the README's and the documentation site's first pages runs as written, on the
pretrained sample model, and gives what the text says it gives."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import ucag

pytestmark = pytest.mark.pretrained
pytest.importorskip("pytorch_grad_cam")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_and_home_page_show_the_same_quick_start() -> None:
    readme = python_blocks(ROOT / "README.md")[0]
    home = python_blocks(ROOT / "docs" / "index.md")[0]
    code = lambda block: [line.split("#")[0].rstrip() for line in block.splitlines()]  # noqa: E731
    assert code(readme) == code(home)


def test_the_quick_start_runs_and_returns_what_it_says() -> None:
    namespace: dict = {}
    exec(python_blocks(ROOT / "README.md")[0], namespace)
    maps, explanation = namespace["maps"], namespace["explanation"]
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (1, 224, 224)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert isinstance(explanation, ucag.Explanation)
    assert explanation.grid.units == 6 and explanation.grid.scaled_size == (322, 322)
    # the map of the call and of explain are the same UCAG map of class 281
    np.testing.assert_allclose(maps[0], explanation.saliency[0].numpy(), atol=1e-5)
    assert "class 281" in explanation.facts() and "ucag-explanation" in (explanation._repr_html_() or "")


def test_the_jupyter_quick_start_page_runs() -> None:
    blocks = python_blocks(ROOT / "docs" / "quickstart.md")
    namespace: dict = {}
    exec(blocks[0], namespace)
    assert isinstance(namespace["explanation"], ucag.Explanation)
    exec(blocks[1], namespace)  # the viz calls
    import matplotlib.pyplot as plt

    assert len(plt.get_fignums()) == 2
    plt.close("all")
    assert torch.is_tensor(namespace["explanation"].partials)
