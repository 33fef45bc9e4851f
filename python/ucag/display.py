"""What Jupyter shows of ucag's results: figures shown once, figures and tables as HTML.

A figure made with pyplot is shown by Jupyter's inline backend at the end of the cell, and
shown again when it is also the cell's value; [shown_once][ucag.display.shown_once] makes
the second showing the only one. [figure_html][ucag.display.figure_html] and
[table_html][ucag.display.table_html] are the pieces of the ``_repr_html_`` of
[Explanation][ucag.explainer.Explanation] and of the evaluation toolkit's results. Nothing
here imports matplotlib or IPython until it is called.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class _ShowOnce:
    """The ``_ipython_display_`` of a figure returned as a cell's value: the figure leaves
    pyplot (so the inline backend does not show it again at the end of the cell), then is
    shown once by IPython's own figure formatter (which keeps the notebook's figure format)."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure

    def __call__(self) -> None:
        from IPython.display import display

        figure = self.figure
        del figure._ipython_display_  # type: ignore[attr-defined]
        import matplotlib.pyplot as plt

        plt.close(figure)
        display(figure)


def shown_once(figure: Figure) -> Figure:
    """Mark a pyplot figure to be shown once in Jupyter, whether or not it is the cell's value.

    Without this, a function that makes a pyplot figure and returns it shows it twice when
    its call ends a cell: once as the cell's value, once when the inline backend shows the
    open figures. Outside IPython nothing changes.

    Args:
        figure: A matplotlib figure, usually one that pyplot manages.

    Returns:
        The same figure.

    Examples:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from ucag.display import shown_once
        >>> figure = shown_once(plt.figure())
        >>> callable(figure._ipython_display_)
        True
        >>> plt.close(figure)
    """
    figure._ipython_display_ = _ShowOnce(figure)  # type: ignore[attr-defined]
    return figure


def figure_html(figure: Figure, alt: str, dpi: int = 80) -> str:
    """A figure as an HTML ``<img>`` holding its PNG, for ``_repr_html_`` methods.

    Args:
        figure: The figure; it is drawn once, and not closed.
        alt: The image's alternative text.
        dpi: Dots per inch of the PNG.

    Returns:
        An ``<img>`` element with the PNG as a data URI.

    Examples:
        >>> from matplotlib.figure import Figure
        >>> from ucag.display import figure_html
        >>> figure_html(Figure(figsize=(1, 1)), "an empty figure")[:32]
        '<img alt="an empty figure" src="'
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def table_html(header: Sequence[str], rows: Sequence[Sequence[str]], emphasised: Sequence[bool] = ()) -> str:
    """An HTML table of text cells (escaped), for ``_repr_html_`` methods.

    Args:
        header: The column titles.
        rows: The rows, each as many cells as ``header``.
        emphasised: Per row, whether it is shown in italics (e.g. the floors of a summary).

    Returns:
        A ``<table>`` element.

    Raises:
        ValueError: If a row has a different number of cells than ``header``.

    Examples:
        >>> from ucag.display import table_html
        >>> print(table_html(["method", "deletion ↓"], [["Grad-CAM", "0.146"]]))
        <table><thead><tr><th>method</th><th>deletion ↓</th></tr></thead><tbody><tr><td>Grad-CAM</td><td>0.146</td></tr></tbody></table>
    """
    for index, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"rows: row {index} has {len(row)} cells, the header {len(header)}")
    head = "".join(f"<th>{html.escape(title)}</th>" for title in header)
    body = []
    for index, row in enumerate(rows):
        italic = index < len(emphasised) and emphasised[index]
        cells = "".join(
            f"<td>{'<em>' if italic else ''}{html.escape(cell)}{'</em>' if italic else ''}</td>" for cell in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
