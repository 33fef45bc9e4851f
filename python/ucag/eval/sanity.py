"""The model-parameter randomisation sanity check (Adebayo et al., NeurIPS 2018; docs/algorithm.md §6.8).

[randomization_check][ucag.eval.sanity.randomization_check] explains the same inputs with a trained
model and with copies whose parameters are re-initialised stage by stage, and measures how
similar the maps stay. A map that survives the randomisation of the model it claims to
explain is not explaining the model (an edge detector passes through unchanged).

- [randomization_stages][ucag.eval.sanity.randomization_stages] — the model's parameterised blocks, output first;
- [randomize][ucag.eval.sanity.randomize] — a re-initialised copy of a model (some stages or all of them);
- [registry_explainer][ucag.eval.sanity.registry_explainer] — an ``explain`` callable from
  [ucag.eval.registry][ucag.eval.registry];
- [map_similarities][ucag.eval.sanity.map_similarities] — the four similarity measures between two batches of maps;
- [RandomizationResult][ucag.eval.sanity.RandomizationResult] — the scores and maps per stage, with a Markdown
  summary.

The user's model is never modified: every randomisation works on a ``copy.deepcopy``.
Figures of a result are in [ucag.eval.plots][ucag.eval.plots]
([plot_randomization][ucag.eval.plots.plot_randomization]).
"""

from __future__ import annotations

import copy
import html
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from torch import nn

from .._inputs import resolve_targets
from .._model_state import eval_mode, model_device
from ..checks import is_int
from ..display import table_html
from ..figures import map_array
from ..layers import Tap
from ..models import layer_by_name, layer_suggestion, trace_size

#: ``explain(model, inputs, targets) -> maps (B, H, W)``: any attribution method.
Explain: TypeAlias = Callable[[nn.Module, torch.Tensor, list[int]], torch.Tensor | np.ndarray]
#: A stage specification: "blocks", "modules", a number of stages, or explicit module names.
Stages: TypeAlias = Literal["blocks", "modules"] | int | Sequence[str | Sequence[str]]
Mode: TypeAlias = Literal["cascading", "independent"]

#: The similarity measures, in the order of ``RandomizationResult.scores``.
MEASURES = ("spearman_abs", "spearman_signed", "ssim", "hog")
MEASURE_TITLES = {
    "spearman_abs": "Spearman (abs)",
    "spearman_signed": "Spearman (signed)",
    "ssim": "SSIM",
    "hog": "HOG similarity",
}
#: The seed of the runner's "randomization" metric (recorded in config.json).
RANDOMIZATION_SEED = 0
#: Standard deviation of the fallback initialisation of parameters with fewer than 2 dimensions.
SMALL_PARAMETER_STD = 0.02
#: HOG settings (scikit-image's defaults): maps need at least 3 cells of 8 px per side.
HOG_OPTIONS: dict[str, Any] = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (3, 3)}
MIN_MAP_SIDE = 24

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

__all__ = [
    "MEASURES",
    "RANDOMIZATION_SEED",
    "Explain",
    "RandomizationResult",
    "Stage",
    "corresponding_module",
    "map_similarities",
    "randomization_check",
    "randomization_stages",
    "randomize",
    "registry_explainer",
]


# ---------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One randomisation step: a name and the modules whose own parameters it re-initialises.

    Attributes:
        name: the stage's name, for tables and figures.
        modules: the qualified names of the modules whose own parameters it re-initialises
            (``""`` is the model itself, for parameters it holds directly, such as a ViT's
            class token).
    """

    name: str
    modules: tuple[str, ...]


def _is_norm(module: nn.Module) -> bool:
    return (
        isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
        or "Norm" in type(module).__name__
    )


def _own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _call_order(model: nn.Module, sample: torch.Tensor | None) -> dict[str, int]:
    """Qualified name -> the position of its first call in one forward pass of a zero
    input (``sample``'s shape, or 1 x 3 x ``ucag.models.trace_size``), for every module
    with parameters of its own that the forward pass calls."""
    order: dict[str, int] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any) -> None:
            order.setdefault(name, len(order))

        return record

    for name, module in model.named_modules():
        if name and _own_parameters(module):
            handles.append(module.register_forward_pre_hook(hook(name)))
    device = model_device(model)
    x = (
        torch.zeros(1, *sample.shape[1:], dtype=sample.dtype, device=device)
        if sample is not None
        else torch.zeros(1, 3, *trace_size(model), device=device)
    )
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    except Exception as err:
        raise ValueError(
            f"model: cannot trace a forward pass on a {'x'.join(map(str, x.shape))} input to find its stages ({type(err).__name__}: {err})"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
    return order


def _block_of(model: nn.Module, name: str) -> str:
    """The block a module belongs to: walking down from the model, the first module that
    is not a container (Sequential, ModuleList, ModuleDict)."""
    parts = name.split(".")
    module = model
    for depth, part in enumerate(parts):
        module = getattr(module, part) if not isinstance(module, nn.ModuleDict) else module[part]
        if not isinstance(module, _CONTAINERS):
            return ".".join(parts[: depth + 1])
    return name


def randomization_stages(
    model: nn.Module, stages: Stages = "blocks", sample: torch.Tensor | None = None
) -> list[Stage]:
    """The stages of the randomisation, top (output) first (docs/algorithm.md §6.8).

    The order comes from one traced forward pass (forward pre-hooks on a zero input of
    ``sample``'s shape, or 1 x 3 x [trace_size][ucag.models.trace_size]), not from names: a
    module's position is when the pass first calls it. Only modules the pass calls count;
    parameters the model holds itself form the stage nearest the input.

    Args:
        model: the classifier.
        stages: ``"blocks"`` (default): one stage per block (the first non-container module
            below the model: ``layer3.1`` of a ResNet, ``_blocks.7`` of an EfficientNet,
            ``blocks.5`` of a ViT); a block of normalisation layers only (a stem's
            BatchNorm) joins the block called before it. ``"modules"``: one stage per
            module with parameters of its own. An int n: the blocks, in order, grouped
            into n contiguous stages of nearly equal size (the larger ones nearest the
            input). A sequence: explicit stages, top first, each a module name or a list of
            names; a named module brings all its parameterised sub-modules.
        sample: an input whose shape (and dtype) the trace uses.

    Returns:
        The stages, output first.

    Raises:
        TypeError: ``stages`` is of none of these forms (a bool, an empty list, an entry
            that is not a name or a list of names).
        ValueError: an unknown string, a number of stages outside 1 .. the number of blocks,
            a name that is not a module of ``model``, a stage without parameters, stages that
            overlap; or the traced forward pass fails.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
        ... )
        >>> [stage.name for stage in randomization_stages(model)]  # the BatchNorm joins its conv
        ['5', '0+1']
        >>> [stage.name for stage in randomization_stages(model, "modules")]
        ['5', '1', '0']
        >>> randomization_stages(model, 1)
        [Stage(name='5 … 0+1', modules=('5', '0', '1'))]
    """
    order = _call_order(model, sample)
    modules = dict(model.named_modules())
    root_stage = [Stage(f"({type(model).__name__})", ("",))] if _own_parameters(model) else []
    if isinstance(stages, str):
        if stages not in ("blocks", "modules"):
            raise ValueError(
                f"stages: expected 'blocks', 'modules', a number of stages or lists of module names, got {stages!r}"
            )
        if stages == "modules":
            return [Stage(name, (name,)) for name in sorted(order, key=order.__getitem__, reverse=True)] + root_stage
        return _blocks(model, order, modules) + root_stage
    if isinstance(stages, bool):
        raise TypeError(f"stages: expected 'blocks', 'modules', an int or lists of module names, got {stages!r}")
    if isinstance(stages, (int, np.integer)):
        blocks = _blocks(model, order, modules) + root_stage
        n = int(stages)
        if not 1 <= n <= len(blocks):
            raise ValueError(
                f"stages: expected a number of stages from 1 to {len(blocks)} (the model's blocks), got {stages!r}"
            )
        sizes = [len(blocks) // n + (k >= n - len(blocks) % n) for k in range(n)]
        grouped, start = [], 0
        for size in sizes:
            part = blocks[start : start + size]
            start += size
            name = part[0].name if len(part) == 1 else f"{part[0].name} … {part[-1].name}"
            grouped.append(Stage(name, tuple(m for s in part for m in s.modules)))
        return grouped
    if isinstance(stages, Sequence) and not isinstance(stages, bytes) and len(stages) > 0:
        return _explicit_stages(model, stages, modules)
    raise TypeError(
        f"stages: expected 'blocks', 'modules', a positive int or a non-empty list of module names, got {stages!r}"
    )


def _blocks(model: nn.Module, order: dict[str, int], modules: dict[str, nn.Module]) -> list[Stage]:
    """One stage per block, top first; norm-only blocks merged into the block before."""
    blocks: dict[str, list[str]] = {}
    for name in sorted(order, key=order.__getitem__):
        blocks.setdefault(_block_of(model, name), []).append(name)
    merged: list[tuple[list[str], list[str]]] = []  # (block names, module names), input first
    for block, names in blocks.items():
        if merged and all(_is_norm(modules[n]) for n in names):
            merged[-1][0].append(block)
            merged[-1][1].extend(names)
        else:
            merged.append(([block], list(names)))
    return [Stage("+".join(b), tuple(n)) for b, n in reversed(merged)]


def _explicit_stages(
    model: nn.Module, stages: Sequence[str | Sequence[str]], modules: dict[str, nn.Module]
) -> list[Stage]:
    result: list[Stage] = []
    seen: dict[str, str] = {}
    for k, stage in enumerate(stages):
        names = [stage] if isinstance(stage, str) else stage
        if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) for n in names):
            raise TypeError(f"stages[{k}]: expected a module name or a non-empty list of module names, got {stage!r}")
        owners: list[str] = []
        for name in names:
            if name not in modules:
                raise ValueError(
                    f"stages[{k}]: {name!r} is not a module of {type(model).__name__} (its names are those of model.named_modules())"
                )
            prefix = f"{name}." if name else ""
            owners += [
                n
                for n, m in modules[name].named_modules(prefix=name)
                if _own_parameters(m) and (n == name or n.startswith(prefix))
            ]
        owners = list(dict.fromkeys(owners))
        if not owners:
            raise ValueError(f"stages[{k}]: {stage!r} holds no parameters")
        for owner in owners:
            if owner in seen:
                raise ValueError(f"stages[{k}]: {owner!r} is in stage {seen[owner]!r} already; stages must not overlap")
            seen[owner] = str(stage)
        result.append(Stage(stage if isinstance(stage, str) else "+".join(stage), tuple(owners)))
    return result


# ---------------------------------------------------------------------------------------
# Re-initialisation
# ---------------------------------------------------------------------------------------


def _fallback_init(parameter: torch.Tensor, generator: torch.Generator) -> None:
    """Truncated normal N(0, σ²) cut at ±2σ: σ = 1/√fan_in for a parameter of 2 or more
    dimensions (fan_in = the product of all but the first), else ``SMALL_PARAMETER_STD``."""
    fan_in = math.prod(parameter.shape[1:]) if parameter.dim() >= 2 else 0
    std = 1.0 / math.sqrt(fan_in) if fan_in > 0 else SMALL_PARAMETER_STD
    values = torch.empty(parameter.shape, dtype=torch.float32)
    nn.init.trunc_normal_(values, std=std, a=-2 * std, b=2 * std, generator=generator)
    parameter.copy_(values)


def _reinitialize(model: nn.Module, stage: Stage, seed: int) -> None:
    """Re-initialise the own parameters of ``stage``'s modules in place, seeded.

    A module with ``reset_parameters`` (every torch.nn layer) gets its own initialisation,
    the state before training (a norm layer's running statistics are reset too); the
    parameters of its sub-modules are restored afterwards, so that a stage never touches
    another stage's modules. Any other parameter: ``_fallback_init``."""
    modules = dict(model.named_modules())
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        for name in stage.modules:
            module = modules[name]
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and module is not model:
                kept = {n: p.detach().clone() for n, p in module.named_parameters() if "." in n}
                reset()
                for n, p in module.named_parameters():
                    if n in kept:
                        p.copy_(kept[n])
            else:
                for p in module.parameters(recurse=False):
                    _fallback_init(p, generator)


def _stage_seed(seed: int, index: int) -> int:
    """Stage ``index``'s seed: the same random parameters in both modes."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as err:
        raise TypeError(
            f"model: the randomisation works on a copy, and copy.deepcopy failed ({type(err).__name__}: {err})"
        ) from err


def randomize(
    model: nn.Module,
    stages: Stages = "blocks",
    *,
    seed: int = 0,
    upto: int | None = None,
    sample: torch.Tensor | None = None,
) -> nn.Module:
    """A copy of ``model`` (in eval mode) with its top stages re-initialised.

    Each stage gets the seed [randomization_check][ucag.eval.sanity.randomization_check]
    gives it, so the copy is the model of the cascade's step ``upto``. ``model`` itself is
    not modified.

    Args:
        model: the classifier.
        stages: the stages, as [randomization_stages][ucag.eval.sanity.randomization_stages]
            takes them.
        seed: the seed of the re-initialisation, a non-negative int.
        upto: how many stages to re-initialise, from the top; default all of them (the end
            of the cascade).
        sample: an input whose shape (and dtype) the trace of the stages uses.

    Returns:
        The re-initialised copy, in eval mode.

    Raises:
        TypeError: ``model`` cannot be copied with ``copy.deepcopy``, or ``stages`` is of
            none of the forms [randomization_stages][ucag.eval.sanity.randomization_stages] takes.
        ValueError: a negative or non-int ``seed``, ``upto`` outside 0 .. the number of stages,
            or a bad ``stages``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        ... )
        >>> top = randomize(model, upto=1)  # only the top stage, the Linear layer
        >>> torch.equal(top[4].weight, model[4].weight), torch.equal(top[0].weight, model[0].weight)
        (False, True)
    """
    _check_seed(seed)
    found = randomization_stages(model, stages, sample)
    if upto is None:
        upto = len(found)
    if not is_int(upto) or not 0 <= upto <= len(found):
        raise ValueError(f"upto: expected a number of stages from 0 to {len(found)}, got {upto!r}")
    work = _copy(model).eval()
    for index, stage in enumerate(found[:upto]):
        _reinitialize(work, stage, _stage_seed(seed, index))
    return work


def _check_seed(seed: Any) -> None:
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")


# ---------------------------------------------------------------------------------------
# Similarity measures
# ---------------------------------------------------------------------------------------


def _constant(a: np.ndarray) -> bool:
    return bool(a.size == 0 or np.ptp(a) == 0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if _constant(a) or _constant(b):
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / math.sqrt(float(a @ a) * float(b @ b)), -1.0, 1.0))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    if _constant(a) or _constant(b):
        return 0.0
    return _pearson(rankdata(a.ravel()), rankdata(b.ravel()))


def _unit_abs(a: np.ndarray) -> np.ndarray:
    """|map| / max |map| (Adebayo et al.'s normalisation); an all-zero map stays zero."""
    a = np.abs(a)
    peak = float(a.max())
    return a / peak if peak > 0 else a


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    if _constant(a) or _constant(b):
        return 0.0
    return float(structural_similarity(_unit_abs(a), _unit_abs(b), data_range=1.0))


def _hog_similarity(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.feature import hog

    if _constant(a) or _constant(b):
        return 0.0
    return _pearson(hog(_unit_abs(a), **HOG_OPTIONS), hog(_unit_abs(b), **HOG_OPTIONS))


def _maps(value: Any, argument: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = map_array(value, argument)  # finite float64, or a TypeError/ValueError naming the argument
    if array.ndim != 3:
        raise ValueError(f"{argument}: expected maps (B, H, W), got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{argument}: expected maps of shape {shape}, got {array.shape}")
    if min(array.shape[1:]) < MIN_MAP_SIDE:
        raise ValueError(
            f"{argument}: the HOG similarity needs maps of at least {MIN_MAP_SIDE} x {MIN_MAP_SIDE} pixels, got {array.shape[1:]}"
        )
    return array


def map_similarities(reference: torch.Tensor | np.ndarray, other: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """The four similarity measures of docs/algorithm.md §6.8 between two batches of maps.

    One value per image, keyed by the names of ``MEASURES``:

    - ``spearman_abs``: Spearman rank correlation of |reference| and |other| (ties get
      their average rank);
    - ``spearman_signed``: the same on the maps as they are (signed);
    - ``ssim``: SSIM (scikit-image's defaults: 7 x 7 uniform window) of the maps normalised
      as Adebayo et al. do, |map| / max |map|, with data range 1;
    - ``hog``: Pearson correlation of the HOG descriptors (9 orientations, 8 x 8 px cells,
      3 x 3 cell blocks) of those normalised maps.

    A measure whose input map is constant (an all-zero map after randomisation, say) has
    no defined value; it is 0 (no similarity), never NaN.

    Args:
        reference: the maps (B, H, W) to compare with, numpy or torch; at least 24 x 24.
        other: maps of the same shape.

    Returns:
        Measure name -> (B,) float array of similarities.

    Raises:
        TypeError: a map that is not a numpy array or torch tensor of real numbers.
        ValueError: maps that are not (B, H, W), are smaller than 24 x 24, differ in shape,
            or hold NaN or Inf.

    Examples:
        >>> import numpy as np
        >>> maps = np.random.default_rng(0).random((2, 32, 32))
        >>> {name: values.tolist() for name, values in map_similarities(maps, 2 * maps).items()}
        {'spearman_abs': [1.0, 1.0], 'spearman_signed': [1.0, 1.0], 'ssim': [1.0, 1.0], 'hog': [1.0, 1.0]}
        >>> map_similarities(maps, np.zeros_like(maps))["ssim"]  # a constant map: no similarity
        array([0., 0.])
    """
    a = _maps(reference, "reference")
    b = _maps(other, "other", a.shape)
    scores = {m: np.zeros(len(a)) for m in MEASURES}
    for i in range(len(a)):
        scores["spearman_abs"][i] = _spearman(np.abs(a[i]), np.abs(b[i]))
        scores["spearman_signed"][i] = _spearman(a[i], b[i])
        scores["ssim"][i] = _ssim(a[i], b[i])
        scores["hog"][i] = _hog_similarity(a[i], b[i])
    return scores


# ---------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------


@dataclass
class RandomizationResult:
    """What [randomization_check][ucag.eval.sanity.randomization_check] measured.

    Entry k of every per-stage array is stage k; in cascading mode, stage k's model has
    stages 0 … k re-initialised.

    Attributes:
        mode: ``"cascading"`` or ``"independent"``.
        seed: the seed of the re-initialisation.
        stages: the stages, top first.
        targets: the classes explained at every stage (the trained model's).
        trained_maps: (B, H, W) maps of the trained model.
        maps: (S, B, H, W) maps of the randomised models.
        scores: measure (the names of ``MEASURES``) -> (S, B) similarities between the trained
            model's map and the randomised model's.
    """

    mode: str
    seed: int
    stages: list[Stage]
    targets: list[int]
    trained_maps: np.ndarray
    maps: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def stage_names(self) -> list[str]:
        """The stages' names, top first."""
        return [s.name for s in self.stages]

    def mean(self, measure: str = "spearman_abs") -> np.ndarray:
        """The mean over images of one measure, per stage.

        Args:
            measure: one of the names of ``MEASURES``.

        Returns:
            (S,) the means, top stage first.

        Raises:
            ValueError: ``measure`` is not one of the measures.
        """
        if measure not in self.scores:
            raise ValueError(f"measure: expected one of {', '.join(MEASURES)}, got {measure!r}")
        return np.asarray(self.scores[measure].mean(axis=1))

    @property
    def constant_maps(self) -> np.ndarray:
        """(S, B) bool: the randomised model's map is constant (every measure 0 there, by
        definition; a randomisation that kills the gradient gives all-zero CAM maps)."""
        flat = self.maps.reshape(*self.maps.shape[:2], -1)
        return np.asarray(flat.max(axis=-1) == flat.min(axis=-1))

    def table(self) -> list[dict[str, Any]]:
        """The summary per stage.

        Returns:
            One dict per stage, top first: ``stage`` (its name), the mean over images of every
                measure and ``constant_maps``, how many of the stage's maps are constant.
        """
        constant = self.constant_maps.sum(axis=1)
        return [
            {
                "stage": s.name,
                **{m: float(self.scores[m][k].mean()) for m in MEASURES},
                "constant_maps": int(constant[k]),
            }
            for k, s in enumerate(self.stages)
        ]

    def markdown(self, digits: int = 3) -> str:
        """[table][ucag.eval.sanity.RandomizationResult.table] as a Markdown table.

        Args:
            digits: the decimals of the means.

        Returns:
            The table, a line on the mode, seed and number of images under it.
        """
        header, rows = self._rows(digits)
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + f"\n\n{self._caption()}\n"

    def _rows(self, digits: int) -> tuple[list[str], list[list[str]]]:
        """The table's header and rows of text cells, for markdown() and the notebook view."""
        header = ["stage", *(MEASURE_TITLES[m] for m in MEASURES), "constant maps"]
        rows = [
            [str(row["stage"])]
            + [f"{row[m]:.{digits}f}" for m in MEASURES]
            + [f"{row['constant_maps']}/{len(self.targets)}"]
            for row in self.table()
        ]
        return header, rows

    def _caption(self) -> str:
        return f"{self.mode} randomisation (seed {self.seed}), mean over {len(self.targets)} images."

    def _repr_html_(self) -> str:
        """Jupyter's view: the per-stage table and its caption as HTML."""
        header, rows = self._rows(3)
        return f'<div class="ucag-randomization">{table_html(header, rows)}<p>{html.escape(self._caption())}</p></div>'

    def __repr__(self) -> str:
        return f"RandomizationResult({self.mode}, {len(self.stages)} stages, {len(self.targets)} images)"


def randomization_check(
    model: nn.Module,
    explain: Explain,
    inputs: torch.Tensor,
    targets: Sequence[int] | torch.Tensor | None = None,
    *,
    mode: Mode = "cascading",
    stages: Stages = "blocks",
    seed: int = 0,
    progress: bool = True,
) -> RandomizationResult:
    """The model-parameter randomisation test of Adebayo et al. (2018), docs/algorithm.md §6.8.

    ``explain`` runs on a trained copy of ``model`` and on copies whose stages
    ([randomization_stages][ucag.eval.sanity.randomization_stages]) are re-initialised
    ([randomize][ucag.eval.sanity.randomize]): in ``"cascading"`` mode the top stage, then
    the top two, … down to all of them; in ``"independent"`` mode one stage at a time, the
    others trained. Every map is compared with the trained model's by
    [map_similarities][ucag.eval.sanity.map_similarities]. Stage k's parameters are drawn
    with a seed derived from (``seed``, k), so both modes draw the same random values.

    Args:
        model: the classifier; never modified (the check works on copies, in eval mode).
        explain: ``explain(model, inputs, targets) -> maps (B, H, W)``, any attribution
            method (e.g. [registry_explainer][ucag.eval.sanity.registry_explainer]); it must
            find its layers in the model it is given, not in ``model``. Maps must be at
            least 24 x 24.
        inputs: the normalised images (B, C, H, W).
        targets: one class per image; default the trained model's predictions. The same
            classes are explained at every stage.
        mode: ``"cascading"`` or ``"independent"``.
        stages: see [randomization_stages][ucag.eval.sanity.randomization_stages].
        seed: the seed of the re-initialisation, a non-negative int.
        progress: show a progress bar over the stages.

    Returns:
        The scores and maps per stage.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module`` (or cannot be copied), or
            ``explain`` is not callable.
        ValueError: ``inputs`` is not a (B, C, H, W) tensor, an unknown ``mode``, a negative
            or non-int ``seed``, a bad ``stages``, or maps from ``explain`` that are not one
            (H, W) map per image of the trained model's shape.

    Examples:
        A gradient x input explanation of a tiny CNN, cascading down its two stages:

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        ... )
        >>> def explain(model, inputs, targets):
        ...     x = inputs.clone().requires_grad_(True)
        ...     model(x)[range(len(targets)), targets].sum().backward()
        ...     return (x.grad * x).sum(1)
        >>> result = randomization_check(model, explain, torch.randn(2, 3, 32, 32), [0, 1], progress=False)
        >>> result
        RandomizationResult(cascading, 2 stages, 2 images)
        >>> result.stage_names, result.maps.shape, result.scores["ssim"].shape
        (['4', '0'], (2, 2, 32, 32), (2, 2))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not callable(explain):
        raise TypeError(
            f"explain: expected a callable explain(model, inputs, targets) -> maps, got {type(explain).__name__}"
        )
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError(
            f"inputs: expected a tensor (B, C, H, W), got {tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__}"
        )
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode: expected 'cascading' or 'independent', got {mode!r}")
    _check_seed(seed)
    found = randomization_stages(model, stages, inputs[:1])
    trained = _copy(model).eval()
    inputs = inputs.to(model_device(trained))
    chosen = resolve_targets(trained, inputs, targets).tolist()
    reference = _explain(explain, trained, inputs, chosen, "explain (trained model)", None)
    del trained
    maps = np.zeros((len(found), *reference.shape))
    scores = {m: np.zeros((len(found), len(reference))) for m in MEASURES}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(found), unit="stage", desc=f"{mode} randomisation")
    work = _copy(model).eval() if mode == "cascading" else None
    for index, stage in enumerate(found):
        if mode == "cascading":
            assert work is not None
            current = work
        else:
            current = _copy(model).eval()
        _reinitialize(current, stage, _stage_seed(seed, index))
        maps[index] = _explain(explain, current, inputs, chosen, f"explain (stage {stage.name!r})", reference.shape)
        for measure, values in map_similarities(reference, maps[index]).items():
            scores[measure][index] = values
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return RandomizationResult(mode, int(seed), found, chosen, reference, maps, scores)


def _explain(
    explain: Explain,
    model: nn.Module,
    inputs: torch.Tensor,
    targets: list[int],
    argument: str,
    shape: tuple[int, ...] | None,
) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a randomised model's degenerate maps
        maps = explain(model, inputs, list(targets))
    array = _maps(maps, argument, shape)
    if len(array) != len(inputs):
        raise ValueError(f"{argument}: {len(array)} maps for {len(inputs)} images")
    return array


def corresponding_module(model: nn.Module, copied: nn.Module, module: nn.Module) -> nn.Module:
    """The module of ``copied`` (a copy of ``model``) at ``module``'s place in ``model``.

    Args:
        model: the original model.
        copied: a copy of ``model`` (``copy.deepcopy``, or a randomised copy).
        module: a module of ``model``, or a [Tap][ucag.layers.Tap] (then the same call site
            in ``copied``).

    Returns:
        The corresponding module of ``copied``.

    Raises:
        ValueError: ``module`` is not a module of ``model`` (or the Tap's call site is not
            in ``copied``).

    Examples:
        >>> import copy
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> copied = copy.deepcopy(model)
        >>> corresponding_module(model, copied, model[0]) is copied[0]
        True
    """
    if isinstance(module, Tap):
        return layer_by_name(copied, module.name)
    for name, candidate in model.named_modules():
        if candidate is module:
            return copied.get_submodule(name)
    raise ValueError(f"target_layer: not a module of {type(model).__name__}")


def registry_explainer(
    name: str,
    variant: str = "base",
    layer_name: str | None = None,
    *,
    blur: tuple[int, float] | None = None,
    **explain_with_options: Any,
) -> Explain:
    """An ``explain`` for [randomization_check][ucag.eval.sanity.randomization_check] from a registered method.

    [explain_with][ucag.eval.registry.explain_with] computes the maps. The maps get its
    "cam" post-processing (ReLU, min-max) but by default no blur (``blur=None``): a blur
    adds structure that both maps share. These maps are non-negative, so for them the
    absolute and the signed Spearman correlations coincide; pass an ``explain`` of your own
    for raw signed maps.

    Args:
        name: the registered method, as in [explain_with][ucag.eval.registry.explain_with].
        variant: the variant, as in [explain_with][ucag.eval.registry.explain_with].
        layer_name: the qualified name of the target layer, looked up in the model each call
            gets (the randomised copy); default the name
            [layer_suggestion][ucag.models.layer_suggestion] finds for the first model (the
            trained copy).
        blur: ``explain_with``'s blur, ``(kernel size, sigma)``; default none.
        **explain_with_options: ``explain_with``'s other options (``ucag_options``,
            ``baseline_options``, ``mean``/``std``), passed through.

    Returns:
        ``explain(model, inputs, targets) -> maps (B, H, W)``.

    Raises:
        ValueError: an unknown ``name`` or ``variant``.
        TypeError: ``layer_name`` is neither a str nor None.
    """
    from .registry import VARIANTS, explain_with, method

    method(name)  # a ValueError for an unknown name, now rather than at the first stage
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    if layer_name is not None and not isinstance(layer_name, str):
        raise TypeError(f"layer_name: expected a module name (str) or None, got {type(layer_name).__name__}")

    # per architecture: the check's first call gets the trained copy, so the name is the
    # one the original model's layer_suggestion gives, whatever randomisation follows
    found: dict[tuple[type, tuple[str, ...], tuple[int, ...]], str] = {}

    def explain(model: nn.Module, inputs: torch.Tensor, targets: list[int]) -> torch.Tensor:
        layer = layer_name
        if layer is None:
            key = (type(model), tuple(n for n, _ in model.named_modules()), tuple(inputs.shape[1:]))
            if key not in found:
                found[key] = layer_suggestion(model, (int(inputs.shape[-2]), int(inputs.shape[-1]))).name
            layer = found[key]
        try:
            target_layer = layer_by_name(model, layer)
        except ValueError as err:
            raise ValueError(f"layer_name: {layer!r} is not a layer of {type(model).__name__} ({err})") from err
        return explain_with(name, variant, model, target_layer, inputs, targets, blur=blur, **explain_with_options)

    return explain
