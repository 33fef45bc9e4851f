"""The metrics [evaluate][ucag.eval.runner.evaluate] computes, by registration.

Each is one [MetricSpec][ucag.eval.measures.MetricSpec] in `MEASURES`: its name, the
results.csv columns it fills (with their titles and whether lower is better), what it needs
(a mask), whether it runs by default, and how it computes its columns for the maps of one
image. The runner, its summary, ``ucag evaluate --metrics`` and the tests read this
registry; registering a spec ([register_metric][ucag.eval.measures.register_metric]) is all
a new metric needs. The metric functions themselves are in
[ucag.eval.metrics][ucag.eval.metrics] (docs/algorithm.md §6).

A toy metric, the maps' mean value (lower is better):

```python
register_metric(MetricSpec(
    "map_mean", (Column("map_mean", "map mean", lower_is_better=True),),
    lambda given: {"map_mean": [float(m.mean()) for m in given.maps]},
))
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..options import DEFAULT_CHANNELS_LAST, DEFAULT_PRECISION, ChannelsLast, Precision
from . import metrics as M


@dataclass(frozen=True)
class Column:
    """One results.csv column: its name, its title in the summary, and its direction.

    Attributes:
        name: The column's name in results.csv.
        title: Its title in the summary table.
        lower_is_better: Whether a lower value is better (the summary's arrow).
    """

    name: str
    title: str
    lower_is_better: bool = False


@dataclass
class MetricInput:
    """What a metric gets for one image.

    Attributes:
        model: The model explained.
        target_layer: Its target layer.
        images: The image repeated once per map, (n, 3, H, W).
        maps: The maps (n, H, W) of every (method, variant), in order.
        targets: The target of each map.
        mask: The image's mask (H, W) resized to the input, where the dataset has one with
            pixels in it; None elsewhere.
        step: Deletion/insertion's step in pixels (None: their default).
        batch_size: The metrics' batch size (perturbed inputs per forward).
        explain: ``explain(model, layer)``, the same maps on another model.
        cache: Kept for the whole run.
        learnt_batch_size: Set by a metric that backed off its batch size after running out of memory.
        curves: The probability curves a metric drew, by name (deletion, insertion), (n, T + 1).
        precision: The arithmetic of the metrics' forwards (docs/algorithm.md §10).
        channels_last: The layout of the metrics' inputs: True, False or ``"auto"``.
    """

    model: nn.Module
    target_layer: nn.Module
    images: torch.Tensor
    maps: torch.Tensor
    targets: list[Any]
    mask: torch.Tensor | None
    step: int | None
    batch_size: int
    explain: Callable[[nn.Module, nn.Module], torch.Tensor]
    cache: dict[str, Any] = field(default_factory=dict)
    learnt_batch_size: int | None = None
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    precision: Precision = DEFAULT_PRECISION
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST

    def compute_options(self) -> dict[str, Any]:
        """The metric functions' keyword arguments for the run's precision and layout.

        Returns:
            ``precision`` and ``channels_last``.
        """
        return {"precision": self.precision, "channels_last": self.channels_last}


#: A metric's values: column name -> one value per map (None where undefined).
Values = dict[str, list[float | None]]


@dataclass(frozen=True)
class MetricSpec:
    """A metric of [evaluate][ucag.eval.runner.evaluate]: ``compute`` fills its ``columns`` for one image.

    Attributes:
        name: The metric's name (``ucag evaluate --metrics``).
        columns: The results.csv columns it fills.
        compute: ``compute(given)`` -> a list of values (None where undefined) per column
            name, one per map of the [MetricInput][ucag.eval.measures.MetricInput].
        needs_mask: It runs only where the image has a mask (its columns are empty elsewhere).
        default: It is part of ``evaluate``'s default metrics.
        per_class: Averaged per class first, then over classes (the pointing game's dataset protocol).
        curve: It draws a probability curve (curves.csv, curves.png).

    Raises:
        ValueError: The name is empty or there is no column.
    """

    name: str
    columns: tuple[Column, ...]
    compute: Callable[[MetricInput], Values]
    needs_mask: bool = False
    default: bool = False
    per_class: bool = False
    curve: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.columns:
            raise ValueError(f"metric: a metric needs a name and at least one column, got {self.name!r}")


#: Every metric ``evaluate`` knows, by name, in the order of results.csv's columns.
MEASURES: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to `MEASURES`, replacing one of the same name.

    Args:
        spec: The metric to register.

    Returns:
        ``spec`` itself.

    Raises:
        TypeError: ``spec`` is not a [MetricSpec][ucag.eval.measures.MetricSpec].
        ValueError: One of its columns is filled by another registered metric.
    """
    if not isinstance(spec, MetricSpec):
        raise TypeError(f"spec: expected a MetricSpec, got {type(spec).__name__}")
    taken = {c.name: s.name for s in MEASURES.values() if s.name != spec.name for c in s.columns}
    clash = [c.name for c in spec.columns if c.name in taken]
    if clash:
        raise ValueError(f"spec: column {clash[0]!r} is already filled by the metric {taken[clash[0]]!r}")
    MEASURES[spec.name] = spec
    return spec


def unregister_metric(name: str) -> None:
    """Remove a registered metric (for tests and plug-ins that registered one).

    Args:
        name: The metric's name; nothing happens when none is registered under it.
    """
    MEASURES.pop(name, None)


def metric_names() -> tuple[str, ...]:
    """The names of every registered metric.

    Returns:
        The names, in the order of results.csv's columns.
    """
    return tuple(MEASURES)


def default_metrics() -> tuple[str, ...]:
    """The names of the metrics [evaluate][ucag.eval.runner.evaluate] computes by default.

    Returns:
        The names of the metrics registered with ``default=True``, in registration order.
    """
    return tuple(name for name, spec in MEASURES.items() if spec.default)


def columns_of(names: Sequence[str]) -> list[Column]:
    """The columns the metrics ``names`` fill, in order.

    Args:
        names: Names of registered metrics.

    Returns:
        Their columns, metric by metric.
    """
    return [c for name in names for c in MEASURES[name].columns]


def column(name: str) -> Column:
    """The registered column ``name``.

    Args:
        name: A column name of results.csv.

    Returns:
        The registered column, or a plain column titled by its name where none is registered.

    Examples:
        >>> from ucag.eval.measures import column
        >>> column("deletion")
        Column(name='deletion', title='deletion', lower_is_better=True)
        >>> column("forward_passes").title
        'forward_passes'
    """
    return next((c for s in MEASURES.values() for c in s.columns if c.name == name), Column(name, name))


# ---------------------------------------------------------------------------------------
# The built-in metrics
# ---------------------------------------------------------------------------------------


def _curve(metric: Callable[..., Any], name: str) -> Callable[[MetricInput], Values]:
    def compute(given: MetricInput) -> Values:
        result = metric(
            given.model,
            given.images,
            given.maps,
            given.targets,
            step=given.step,
            batch_size=given.batch_size,
            **given.compute_options(),
        )
        given.learnt_batch_size = result.batch_size or given.batch_size
        assert result.curves is not None
        given.curves[name] = result.curves
        return {name: list(result.values)}

    return compute


def _road(given: MetricInput) -> Values:
    options = given.compute_options()
    most = M.road(given.model, given.images, given.maps, given.targets, batch_size=given.batch_size, **options)
    least = M.road(
        given.model, given.images, given.maps, given.targets, order="least", batch_size=given.batch_size, **options
    )
    given.learnt_batch_size = least.batch_size or given.batch_size
    return {
        "road_morf": list(most.values),
        "road_lerf": list(least.values),
        "road_combined": list(M.road_combined(most, least).values),
    }


def _density(given: MetricInput) -> Values:
    n = len(given.maps)
    values: Values = {"positive_density": [None] * n, "negative_density": [None] * n}
    flat = given.maps.flatten(1)
    varying = [i for i in range(n) if float(flat[i].max() - flat[i].min()) > 0]  # constant maps: undefined
    if varying:
        pos, neg = M.map_density(
            given.model,
            given.images[varying],
            given.maps[varying],
            [given.targets[i] for i in varying],
            batch_size=given.batch_size,
            **given.compute_options(),
        )
        given.learnt_batch_size = pos.batch_size or given.batch_size
        for j, i in enumerate(varying):
            values["positive_density"][i] = float(pos.values[j])
            values["negative_density"][i] = float(neg.values[j])
    return values


def _masks(given: MetricInput) -> tuple[torch.Tensor, torch.Tensor]:
    """The maps and the mask per map, on the CPU (the maps come over once)."""
    assert given.mask is not None
    return given.maps.cpu(), given.mask.expand(len(given.maps), -1, -1)


def _pointing_game(given: MetricInput) -> Values:
    maps, masks = _masks(given)
    return {"pointing_game": list(M.pointing_game(maps, masks).values)}


def _energy_pointing_game(given: MetricInput) -> Values:
    maps, masks = _masks(given)
    return {"energy_pointing_game": list(M.energy_pointing_game(maps, masks).values)}


def _segmentation(given: MetricInput) -> Values:
    maps, masks = _masks(given)
    values: Values = {"pixel_accuracy": [], "average_precision": []}
    for i in range(len(maps)):
        scores = M.segmentation_scores(maps[i : i + 1], masks[i : i + 1])
        values["pixel_accuracy"].append(scores.pixel_accuracy)
        values["average_precision"].append(scores.mean_ap)
    return values


def _randomization(given: MetricInput) -> Values:
    """Each map against the same method's map on the fully randomised model (docs/algorithm.md
    §6.8), built once per run with a fixed seed."""
    from .sanity import RANDOMIZATION_SEED, corresponding_module, map_similarities, randomize

    if "randomized_model" not in given.cache:
        model = randomize(given.model, seed=RANDOMIZATION_SEED, sample=given.images[:1])
        given.cache["randomized_model"] = model
        given.cache["randomized_layer"] = corresponding_module(given.model, model, given.target_layer)
    random_maps = given.explain(given.cache["randomized_model"], given.cache["randomized_layer"]).cpu()
    scores = map_similarities(given.maps.cpu(), random_maps)
    return {
        f"randomization_{measure}": [float(v) for v in scores[key]]
        for measure, key in (("spearman", "spearman_abs"), ("ssim", "ssim"), ("hog", "hog"))
    }


for _spec in (
    MetricSpec(
        "deletion",
        (Column("deletion", "deletion", lower_is_better=True),),
        _curve(M.deletion, "deletion"),
        default=True,
        curve=True,
    ),
    MetricSpec(
        "insertion", (Column("insertion", "insertion"),), _curve(M.insertion, "insertion"), default=True, curve=True
    ),
    MetricSpec(
        "density",
        (
            Column("positive_density", "positive density"),
            Column("negative_density", "negative density", lower_is_better=True),
        ),
        _density,
        default=True,
    ),
    MetricSpec(
        "pointing_game",
        (Column("pointing_game", "pointing game"),),
        _pointing_game,
        needs_mask=True,
        default=True,
        per_class=True,
    ),
    MetricSpec(
        "energy_pointing_game",
        (Column("energy_pointing_game", "energy pointing game"),),
        _energy_pointing_game,
        needs_mask=True,
        default=True,
    ),
    MetricSpec(
        "segmentation",
        (Column("pixel_accuracy", "pixel accuracy"), Column("average_precision", "mAP")),
        _segmentation,
        needs_mask=True,
    ),
    MetricSpec(
        "road",
        (
            Column("road_morf", "ROAD MoRF", lower_is_better=True),
            Column("road_lerf", "ROAD LeRF"),
            Column("road_combined", "ROAD combined"),
        ),
        _road,
    ),
    MetricSpec(
        "randomization",
        (
            Column("randomization_spearman", "randomized Spearman", lower_is_better=True),
            Column("randomization_ssim", "randomized SSIM", lower_is_better=True),
            Column("randomization_hog", "randomized HOG", lower_is_better=True),
        ),
        _randomization,
    ),
):
    register_metric(_spec)
