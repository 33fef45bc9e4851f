"""Figures of evaluation results.

[plot_curves][ucag.eval.plots.plot_curves] draws deletion / insertion curves with their AUCs
(the metric's own trapezoid rule, [auc][ucag.eval.metrics.auc]), for notebooks and the
``curves.png`` of [evaluate][ucag.eval.runner.evaluate];
[plot_randomization][ucag.eval.plots.plot_randomization] and
[plot_randomization_curves][ucag.eval.plots.plot_randomization_curves] draw the
parameter-randomisation sanity check ([ucag.eval.sanity][ucag.eval.sanity],
docs/algorithm.md §6.8). They follow [ucag.viz][ucag.viz]'s conventions: they return the
Figure and draw into ``ax=`` / ``axes=`` when given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import torch

from ..checks import is_int
from ..display import shown_once
from ..figures import given_axes, map_array, pyplot
from ..viz import ImageLike, map_grid
from .metrics import MetricResult, auc
from .sanity import MEASURE_TITLES, MEASURES, RandomizationResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Deletion / insertion curves: a MetricResult or an array (B, T+1) / (T+1,).
CurvesLike: TypeAlias = MetricResult | np.ndarray | torch.Tensor

__all__ = ["CurvesLike", "plot_curves", "plot_randomization", "plot_randomization_curves"]


def _curve_rows(value: Any, argument: str) -> tuple[np.ndarray, np.ndarray]:
    """(B, T+1) curves and their B AUCs from a MetricResult or an array of curves."""
    if isinstance(value, MetricResult):
        if value.curves is None:
            raise ValueError(
                f"{argument}: this MetricResult ({value.name}) has no curves; deletion and insertion results do"
            )
        if value.name in ("deletion", "insertion") and not argument.startswith(value.name):
            raise ValueError(f"{argument}: got a {value.name} result; pass it as {value.name}=")
        curves = map_array(value.curves, argument)
        aucs = np.asarray(value.values, dtype=np.float64).reshape(-1)
    else:
        curves = map_array(value, argument)
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
    target probability. Each argument is a [MetricResult][ucag.eval.metrics.MetricResult]
    from [deletion][ucag.eval.metrics.deletion] / [insertion][ucag.eval.metrics.insertion],
    an array (B, T+1) or (T+1,) of curves, or a dict label -> either of those to compare
    methods (the same label gets the same colour in both panels). A batch is drawn as its
    mean curve with the mean AUC.

    Args:
        deletion: the deletion curves; give at least one of ``deletion`` and ``insertion``.
        insertion: the insertion curves.
        labels: for non-dict arguments: a string naming the method, or one label per image
            to draw every image's curve separately.
        ax: where to draw: one Axes (deletion dashed, insertion solid in it), or one Axes
            per given argument (deletion first); default a new figure with one panel each.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: curves that are not a MetricResult, numpy array or torch tensor of real
            numbers, ``labels`` that are neither a string nor a sequence of them, or ``ax``
            items that are not Axes.
        ValueError: neither curves given; curves that are not (B, T+1) or (T+1,) with T >= 1,
            hold NaN or Inf, or come without curves or from the other metric; an empty dict;
            ``labels`` with a dict or of the wrong length; the wrong number of axes.

    Examples:
        >>> import torch
        >>> fig = plot_curves(deletion=torch.linspace(1, 0, 11), insertion=torch.linspace(0, 1, 11), labels="toy")
        >>> [ax.get_legend().get_texts()[0].get_text() for ax in fig.axes]
        ['toy (AUC 0.500)', 'toy (AUC 0.500)']
        >>> import matplotlib.pyplot as plt
        >>> plt.close(fig)
    """
    kinds = [(name, value) for name, value in (("deletion", deletion), ("insertion", insertion)) if value is not None]
    if not kinds:
        raise ValueError("deletion, insertion: give at least one of them")
    series = {name: _curve_series(value, labels, name) for name, value in kinds}

    from matplotlib.axes import Axes as AxesType

    fig: Figure
    if ax is None:
        fig, grid = pyplot().subplots(
            1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False, layout="constrained"
        )
        panels = {name: grid[0, k] for k, (name, _) in enumerate(kinds)}
    elif isinstance(ax, AxesType):
        fig = cast("Figure", ax.figure)  # (a SubFigure when ax lies in one)
        panels = {name: ax for name, _ in kinds}
    else:
        flat = given_axes(ax, len(kinds), "ax")
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
    return shown_once(fig)


def _results(results: Any) -> dict[str, RandomizationResult]:
    """Label -> result from one result or a dict of them, all with the same stages."""
    if isinstance(results, RandomizationResult):
        results = {"": results}
    if not isinstance(results, Mapping) or not results:
        raise TypeError(
            f"results: expected a RandomizationResult or a non-empty dict label -> RandomizationResult, got {type(results).__name__}"
        )
    for label, result in results.items():
        if not isinstance(result, RandomizationResult):
            raise TypeError(f"results[{label!r}]: expected a RandomizationResult, got {type(result).__name__}")
    first = next(iter(results.values()))
    for label, result in results.items():
        if result.stage_names != first.stage_names or result.mode != first.mode:
            raise ValueError(
                f"results[{label!r}]: other stages or mode than the first result; compare results of the same check"
            )
    return {str(k): v for k, v in results.items()}


def plot_randomization(
    results: RandomizationResult | Mapping[str, RandomizationResult],
    image_index: int = 0,
    *,
    image: ImageLike | None = None,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    cmap: str = "gray",
    axes: Any = None,
) -> Figure:
    """One image's maps through the randomisation, in the style of Adebayo et al.'s Figure 2.

    One row per method (the dict's labels), columns the trained model's map ("trained"),
    then the map after each stage (cascading: top stage first, then the top two, …). Drawn
    by [map_grid][ucag.viz.map_grid] (``|map| / max |map|`` per map).

    Args:
        results: a [RandomizationResult][ucag.eval.sanity.RandomizationResult], or a dict
            label -> result to compare methods (same stages and mode).
        image_index: which image of the results.
        image: the photo, drawn first in every row.
        mean: the normalisation of a normalised float ``image``.
        std: the normalisation of a normalised float ``image``.
        cmap: the colormap of the maps.
        axes: rows x columns axes to draw into (columns counting the photo's); default a
            new figure.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: ``results`` is not a result or a non-empty dict of them.
        ValueError: results of other stages or mode than the first, or ``image_index`` out
            of range.
    """
    found = _results(results)
    first = next(iter(found.values()))
    batch = len(first.targets)
    if not is_int(image_index) or not 0 <= image_index < batch:
        raise ValueError(f"image_index: expected an index from 0 to {batch - 1}, got {image_index!r}")
    rows = {
        label or "map": [r.trained_maps[image_index]] + [r.maps[k, image_index] for k in range(len(r.stages))]
        for label, r in found.items()
    }
    titles = ["trained"] + first.stage_names
    return map_grid(rows, titles, image=image, mean=mean, std=std, cmap=cmap, axes=axes)


def plot_randomization_curves(
    results: RandomizationResult | Mapping[str, RandomizationResult],
    measures: Sequence[str] = ("spearman_abs", "ssim", "hog"),
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """The similarity to the trained model's map per stage (docs/algorithm.md §6.8).

    One panel per measure, one line per method (the dict's labels), the mean over images
    with a band of ± one standard deviation. The first point ("trained") is 1 by definition.

    Args:
        results: a [RandomizationResult][ucag.eval.sanity.RandomizationResult], or a dict
            label -> result to compare methods (same stages and mode).
        measures: the measures to draw, names from ``ucag.eval.sanity.MEASURES``.
        ax: one Axes per measure to draw into; default a new figure.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: ``results`` is not a result or a non-empty dict of them, or ``ax`` items
            are not Axes.
        ValueError: results of other stages or mode than the first, an unknown or no
            measure, or the wrong number of axes.
    """
    found = _results(results)
    if isinstance(measures, str) or not measures or any(m not in MEASURES for m in measures):
        raise ValueError(f"measures: expected names from {', '.join(MEASURES)}, got {measures!r}")
    fig: Figure
    if ax is None:
        fig, grid = pyplot().subplots(
            1, len(measures), figsize=(4.2 * len(measures), 3.8), squeeze=False, layout="constrained"
        )
        panels = list(grid[0])
    else:
        flat = given_axes(ax, len(measures), "ax")
        assert flat is not None
        fig = cast("Figure", flat[0].figure)  # (a SubFigure when the axes lie in one)
        panels = flat
    first = next(iter(found.values()))
    labels = ["trained"] + first.stage_names
    x = np.arange(len(labels))
    for panel, measure in zip(panels, measures, strict=True):
        for k, (label, result) in enumerate(found.items()):
            scores = result.scores[measure]
            mean = np.concatenate([[1.0], scores.mean(axis=1)])
            spread = np.concatenate([[0.0], scores.std(axis=1)])
            panel.plot(x, mean, marker="o", markersize=3, color=f"C{k % 10}", label=label or None)
            panel.fill_between(x, mean - spread, mean + spread, color=f"C{k % 10}", alpha=0.15, linewidth=0)
        panel.axhline(0.0, color="grey", linewidth=0.6)
        panel.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        panel.set_ylim(-1.05 if measure.startswith("spearman") else -0.05, 1.05)
        panel.set_ylabel(MEASURE_TITLES[measure])
        panel.set_title(f"{MEASURE_TITLES[measure]}, {first.mode} randomisation", fontsize=9)
        if any(found):
            panel.legend(fontsize=7)
    return shown_once(fig)
