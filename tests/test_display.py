"""How ucag's results show themselves in Jupyter (ucag.display, Explanation._repr_html_, the
toolkit's tables, viz figures shown once), on a toy CNN; the last test runs a real kernel."""

from __future__ import annotations

import base64
import io
import re
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import ucag
from ucag import viz
from ucag.display import table_html
from ucag.eval.runner import Cell, EvaluationSummary

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
pytest.importorskip("pytorch_grad_cam")
Image = pytest.importorskip("PIL.Image")


def _toy_explanation(images: int = 2, units: int = 3) -> ucag.Explanation:
    from pytorch_grad_cam import GradCAM

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
    ).eval()
    with ucag.UCAG(GradCAM(model=model, target_layers=[model[1]]), units=units) as explainer:
        return explainer.explain(torch.rand(images, 3, 32, 32), [1, 3][:images])


def _png_of(html: str) -> Image.Image:
    match = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert match, "no PNG image in the HTML"
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def test_explanation_shows_its_maps_weights_and_facts() -> None:
    explanation = _toy_explanation()
    facts = explanation.facts()
    assert facts.startswith("GradCAM · 2 images 32×32 · 3×3 patches of 18×18 px → 47×47 · class 1, class 3 · weights ")
    assert "postprocess 'cam'" in facts
    low, high = float(explanation.weights.min()), float(explanation.weights.max())
    assert f"weights {low:.2f}–{high:.2f}" in facts
    html = explanation._repr_html_()
    assert html is not None and html.startswith('<div class="ucag-explanation">')
    assert facts.replace("'", "&#x27;") in html
    picture = _png_of(html)
    # two rows (images) of three panels (map, raw, weights): wider than tall, not blank
    assert picture.width > picture.height > 200
    pixels = np.asarray(picture.convert("L"), dtype=np.float64)
    assert pixels.std() > 20


def test_explanation_draws_at_most_count_images_and_says_so() -> None:
    explanation = _toy_explanation(images=2)
    html = viz.explanation_html(explanation, count=1)
    assert "(1 more not drawn)" in html
    assert _png_of(html).height < _png_of(viz.explanation_html(explanation, count=2)).height
    with pytest.raises(ValueError, match="count: expected a positive int"):
        viz.explanation_html(explanation, count=0)
    with pytest.raises(TypeError, match="explanation: expected a ucag Explanation"):
        viz.show_explanation("not an explanation")  # type: ignore[arg-type]


def test_show_explanation_weights_panel_is_the_grid_of_weights() -> None:
    explanation = _toy_explanation(images=1, units=3)
    figure = viz.show_explanation(explanation)
    weights_axes = figure.axes[2]
    shown = weights_axes.images[0].get_array()
    expected = explanation.weights[:9].reshape(3, 3).double().numpy()
    np.testing.assert_allclose(np.asarray(shown), expected)
    # the values are written in the cells
    assert len(weights_axes.texts) == 9
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_table_html_escapes_and_emphasises() -> None:
    html = table_html(["method", "a<b"], [["x & y", "1"], ["floor", "2"]], [False, True])
    assert "<th>a&lt;b</th>" in html and "<td>x &amp; y</td>" in html
    assert "<td><em>floor</em></td>" in html
    with pytest.raises(ValueError, match="rows: row 0 has 1 cells, the header 2"):
        table_html(["a", "b"], [["only one"]])


def _summary() -> EvaluationSummary:
    cells = [
        Cell("gradcam", "base", "deletion", 0.146, 0.02, 5),
        Cell("gradcam", "ucag", "deletion", 0.115, 0.01, 5),
        Cell("random", "base", "deletion", 0.178, 0.03, 5),
    ]
    differences = [Cell("gradcam", "ucag", "deletion", -0.031, 0.036, 5)]
    return EvaluationSummary(
        out=__import__("pathlib").Path("out"),
        images=5,
        columns=["deletion"],
        cells=cells,
        differences=differences,
        floors=[("random", "base")],
    )


def test_evaluation_summary_shows_the_markdown_tables_as_html() -> None:
    summary = _summary()
    html = summary._repr_html_()
    markdown = summary.markdown()
    # the same rows, cell for cell
    markdown_rows = [
        [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("| ") and not line.startswith("| method")
    ]
    html_rows = [re.findall(r"<td>(?:<em>)?(.*?)(?:</em>)?</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]
    html_rows = [row for row in html_rows if row]
    assert html_rows == markdown_rows
    assert html.count("<table>") == 2  # the summary and the paired differences
    assert "<td><em>Random-CAM (floor)</em></td>" in html or "(floor)</em></td>" in html
    assert "over 5 images" in html


def test_randomization_result_shows_its_table() -> None:
    from ucag.eval.sanity import MEASURES, RandomizationResult, Stage

    stages = [Stage("head", ["head"]), Stage("all", ["head", "body"])]
    scores = {measure: np.array([[0.5, 0.7], [0.1, 0.3]]) for measure in MEASURES}
    result = RandomizationResult(
        mode="cascading",
        seed=0,
        stages=stages,
        targets=[1, 2],
        trained_maps=np.zeros((2, 4, 4)),
        maps=np.random.default_rng(0).random((2, 2, 4, 4)),
        scores=scores,
    )
    html = result._repr_html_()
    assert html.count("<tr>") == 3  # header and two stages
    assert "<td>head</td>" in html and "<td>0.600</td>" in html and "<td>0/2</td>" in html
    assert "cascading randomisation (seed 0), mean over 2 images." in html
    assert result.markdown().startswith("| stage |")


def test_a_notebook_shows_each_figure_once() -> None:
    """In a real kernel with the inline backend: a figure returned as the cell's value, or
    assigned, is shown once; an explanation shows as HTML with its picture; a plain pyplot
    figure returned as the value is shown twice (the control: the count can see doubles)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    setup = textwrap.dedent(
        """
        %matplotlib inline
        import torch, ucag
        from torch import nn
        from pytorch_grad_cam import GradCAM
        from ucag import viz
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        x = torch.rand(1, 3, 24, 24)
        with ucag.UCAG(GradCAM(model=model, target_layers=[model[1]]), units=2) as explainer:
            explanation = explainer.explain(x, [1])
        """
    )
    cells = [
        setup,
        "viz.show_explanation(explanation)",
        "fig = viz.show_explanation(explanation)",
        "viz.compare(x[0], {'UCAG': explanation.saliency[0]})",
        "explanation",
        "import matplotlib.pyplot as plt\nplain = plt.figure()\nplain.add_subplot().plot([0, 1])\nplain",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()

    def images(cell: object) -> int:
        return sum(1 for output in cell.outputs if "image/png" in output.get("data", {}))  # type: ignore[attr-defined]

    shown = notebook.cells
    assert [images(cell) for cell in shown[1:4]] == [1, 1, 1]
    html_outputs = [output for output in shown[4].outputs if "text/html" in output.get("data", {})]
    assert len(html_outputs) == 1 and images(shown[4]) == 0
    assert "ucag-explanation" in html_outputs[0]["data"]["text/html"]
    assert "<img" in html_outputs[0]["data"]["text/html"]
    assert images(shown[5]) == 2
