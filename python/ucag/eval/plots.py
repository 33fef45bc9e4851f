"""Figures of evaluation results: :func:`plot_curves` draws deletion / insertion curves
with their AUCs (the metric's own trapezoid rule, :func:`ucag.eval.metrics.auc`), for
notebooks and the ``curves.png`` of :func:`ucag.eval.evaluate`. It follows
:mod:`ucag.viz`'s conventions: it returns the Figure and draws into ``ax=`` when given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import torch

from ..viz import _given_axes, _map_array, _pyplot
from .metrics import MetricResult, auc

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Deletion / insertion curves: a MetricResult or an array (B, T+1) / (T+1,).
CurvesLike: TypeAlias = MetricResult | np.ndarray | torch.Tensor

__all__ = ["CurvesLike", "plot_curves"]


def _curve_rows(value: Any, argument: str) -> tuple[np.ndarray, np.ndarray]:
    """(B, T+1) curves and their B AUCs from a MetricResult or an array of curves."""
    if isinstance(value, MetricResult):
        if value.curves is None:
            raise ValueError(f"{argument}: this MetricResult ({value.name}) has no curves; deletion and insertion results do")
        if value.name in ("deletion", "insertion") and not argument.startswith(value.name):
            raise ValueError(f"{argument}: got a {value.name} result; pass it as {value.name}=")
        curves = _map_array(value.curves, argument)
        aucs = np.asarray(value.values, dtype=np.float64).reshape(-1)
    else:
        curves = _map_array(value, argument)
        aucs = None
    if curves.ndim == 1:
        curves = curves[None]
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ValueError(f"{argument}: expected curves (B, T+1) or (T+1,) with T >= 1, got shape {curves.shape}")
    if aucs is None:
        aucs = auc(torch.from_numpy(curves.astype(np.float64))).numpy()
    if aucs.shape[0] != curves.shape[0]:
        raise ValueError(f"{argument}: {aucs.shape[0]} AUC values for {curves.shape[0]} curves")
    return curves, aucs


def _curve_series(value: Any, labels: Any, argument: str) -> list[tuple[str, np.ndarray, float]]:
    """(legend label, curve, AUC) for every line to draw from one argument."""
    if isinstance(value, Mapping):
        if labels is not None:
            raise ValueError("labels: the dict keys already name the curves; drop labels=")
        if len(value) == 0:
            raise ValueError(f"{argument}: the dict is empty")
        series = []
        for name, result in value.items():
            curves, aucs = _curve_rows(result, f"{argument}[{name!r}]")
            series.append((str(name), curves.mean(0), float(aucs.mean())))
        return series
    curves, aucs = _curve_rows(value, argument)
    if labels is None or isinstance(labels, str):
        # The mean curve's AUC is the mean of the AUCs: the trapezoid rule is linear.
        return [(labels or "", curves.mean(0), float(aucs.mean()))]
    if not isinstance(labels, Sequence):
        raise TypeError(f"labels: expected a string or one string per curve, got {type(labels).__name__}")
    if len(labels) != curves.shape[0]:
        raise ValueError(f"labels: {len(labels)} labels for {curves.shape[0]} curves in {argument}")
    return [(str(label), curves[k], float(aucs[k])) for k, label in enumerate(labels)]


def plot_curves(
    deletion: CurvesLike | Mapping[str, CurvesLike] | None = None,
    insertion: CurvesLike | Mapping[str, CurvesLike] | None = None,
    labels: str | Sequence[str] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Deletion and insertion curves (docs/algorithm.md §6.1) with their AUCs in the legend.

    The x axis is the fraction of pixels changed, k / T for step k of T; the y axis the
    target probability. Each argument is a :class:`ucag.eval.metrics.MetricResult` from
    ``metrics.deletion`` / ``metrics.insertion``, an array (B, T+1) or (T+1,) of curves,
    or a dict label -> either of those to compare methods (the same label gets the same
    colour in both panels). A batch is drawn as its mean curve with the mean AUC.

    Args:
        deletion, insertion: the curves; give at least one.
        labels: for non-dict arguments: a string naming the method, or one label per image
            to draw every image's curve separately.
        ax: where to draw: one Axes (deletion dashed, insertion solid in it), or one Axes
            per given argument (deletion first); default a new figure with one panel each.

    Returns:
        The matplotlib Figure.
    """
    kinds = [(name, value) for name, value in (("deletion", deletion), ("insertion", insertion)) if value is not None]
    if not kinds:
        raise ValueError("deletion, insertion: give at least one of them")
    series = {name: _curve_series(value, labels, name) for name, value in kinds}

    from matplotlib.axes import Axes as AxesType

    fig: Figure
    if ax is None:
        fig, grid = _pyplot().subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False, layout="constrained")
        panels = {name: grid[0, k] for k, (name, _) in enumerate(kinds)}
    elif isinstance(ax, AxesType):
        fig = cast("Figure", ax.figure)  # (a SubFigure when ax lies in one)
        panels = {name: ax for name, _ in kinds}
    else:
        flat = _given_axes(ax, len(kinds), "ax")
        assert flat is not None  # (None only for ax=None, handled above)
        fig = cast("Figure", flat[0].figure)  # (a SubFigure when the axes lie in one)
        panels = {name: flat[k] for k, (name, _) in enumerate(kinds)}
    shared = len(set(map(id, panels.values()))) < len(panels)

    # One colour per label across both panels, so a method is recognisable in each.
    label_order = list(dict.fromkeys(label for lines in series.values() for label, _, _ in lines))
    better = {"deletion": "lower", "insertion": "higher"}
    changed = {"deletion": "deleted", "insertion": "inserted"}
    for name, lines in series.items():
        panel = panels[name]
        for label, curve, area in lines:
            fractions = np.linspace(0.0, 1.0, curve.shape[0])
            text = f"{label} (AUC {area:.3f})" if label else f"AUC {area:.3f}"
            panel.plot(
                fractions,
                curve,
                color=f"C{label_order.index(label) % 10}",
                linestyle="--" if shared and name == "deletion" else "-",
                label=f"{name}: {text}" if shared else text,
            )
        panel.set_xlim(0.0, 1.0)
        panel.set_xlabel("fraction of pixels changed" if shared else f"fraction of pixels {changed[name]}")
        panel.set_ylabel("target probability")
        if not shared:
            panel.set_title(f"{name.capitalize()} ({better[name]} AUC is better)")
        panel.legend(fontsize=8)
    return fig
