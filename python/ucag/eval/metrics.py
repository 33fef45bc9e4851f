"""Evaluation metrics of saliency maps (docs/algorithm.md §6), batched on the model's device.

Every metric returns a [MetricResult][ucag.eval.metrics.MetricResult]: ``values`` (numpy,
one value per image) and ``mean``; deletion and insertion also carry ``curves`` (B, T+1),
and their values are the curves' AUCs; ROAD's curves hold one probability per percentile.
Saliency maps may be numpy or torch (B, H, W); masks are boolean or integer (B, H, W)
(nonzero is the object); targets are class indices in the model's range (a list or a
tensor), or one target per image of any kind [ucag.targets][ucag.targets] reads (binary,
multi-label, segmentation, similarity, grad-cam target objects): the curves then hold the
target's own confidence (sigmoid, mean category probability over the mask, (1 + cos) / 2;
docs/algorithm.md §3.1) where a class has its softmax probability. Inputs that would give
an undefined value raise a ValueError naming the argument instead of a NaN. The model runs
in eval mode; its modes come back afterwards.
``batch_size`` (default 8, the fastest EfficientNet-Lite0 batch on 2 CPU cores) counts
perturbed inputs per forward: raise it on a GPU. A chunk that runs out of device memory is
halved and retried; ``MetricResult.batch_size`` is the size that ran last.
``precision`` and ``channels_last`` (deletion, insertion, ROAD, map density) run the model's
forwards under autocast and channels-last (docs/algorithm.md §10); the probabilities are
computed in float32 from the outputs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import nn

from .._chunks import run_in_chunks
from .._core import Grid
from .._inputs import logits_of
from .._model_state import eval_mode, model_device
from ..checks import is_int, positive_int
from ..options import DEFAULT_CHANNELS_LAST, DEFAULT_PRECISION, ChannelsLast, Precision
from ..postprocess import gaussian_blur
from ..precision import ComputePlan, compute_plan
from ..targets import Target, is_class_only, model_output, resolve, row_confidence

#: Saliency maps (B, H, W) or ground-truth masks (B, H, W), numpy or torch.
Maps: TypeAlias = torch.Tensor | np.ndarray
#: One class index per image: a list of ints, or a 1-D integer tensor or array.
ClassIndices: TypeAlias = Sequence[int] | torch.Tensor | np.ndarray
#: What the metrics take as targets: class indices, or one target per image of any kind
#: `ucag.targets.as_target` reads.
MetricTargets: TypeAlias = ClassIndices | Sequence[Any]
#: Class indices (the softmax path), or one `ucag.targets.Target` per row.
RowTargets: TypeAlias = torch.Tensor | list[Target]


@dataclass
class MetricResult:
    """One value per image, their mean, and for deletion/insertion the probability curves.

    Attributes:
        name: The metric's name, as the summary shows it.
        values: One value per image, (B,).
        curves: The probability curves (deletion, insertion: (B, T+1); ROAD: (B, P)); None
            for the other metrics.
        batch_size: Perturbed inputs per forward at the end (below the requested one after an
            out-of-memory back-off); None for the metrics that run no model.
    """

    name: str
    values: np.ndarray
    curves: np.ndarray | None = None
    batch_size: int | None = None

    @property
    def mean(self) -> float:
        """The mean of ``values`` over the images."""
        return float(self.values.mean())

    def __repr__(self) -> str:
        return f"MetricResult({self.name}: mean {self.mean:.4f} over {len(self.values)} images)"


def _saliency(
    saliency: Maps, batch: int | None, size: tuple[int, ...] | None, device: torch.device | None = None
) -> torch.Tensor:
    s = torch.as_tensor(saliency.detach() if isinstance(saliency, torch.Tensor) else np.asarray(saliency))
    if s.dim() != 3:
        raise ValueError(f"saliency: expected shape (B, H, W), got {tuple(s.shape)}")
    if batch is not None and s.shape[0] != batch:
        raise ValueError(f"saliency: {s.shape[0]} maps for {batch} images")
    if size is not None and tuple(s.shape[-2:]) != tuple(size):
        raise ValueError(f"saliency: maps of {tuple(s.shape[-2:])} for images of {tuple(size)}")
    s = s.float()
    if not torch.isfinite(s).all():
        raise ValueError("saliency: contains NaN or Inf values")
    return s.to(device) if device is not None else s


def _masks(masks: Maps, saliency: torch.Tensor) -> torch.Tensor:
    if isinstance(masks, torch.Tensor):
        m = masks.detach()
    else:
        array = np.asarray(masks)
        if array.dtype.kind not in "biu":
            hint = "; threshold a soft mask first, e.g. masks > 0.5" if array.dtype.kind == "f" else ""
            raise TypeError(
                f"masks: expected boolean or integer masks (nonzero = object), got dtype {array.dtype}{hint}"
            )
        m = torch.as_tensor(array)
    if m.is_floating_point() or m.is_complex():
        # A soft mask has no single right threshold (`!= 0` would count a 0.2 background as object).
        raise TypeError(
            f"masks: expected boolean or integer masks (nonzero = object), got {m.dtype}; threshold a soft mask first, e.g. masks > 0.5"
        )
    if m.shape != saliency.shape:
        raise ValueError(f"masks: expected shape {tuple(saliency.shape)} like the saliency, got {tuple(m.shape)}")
    m = m.bool().to(saliency.device)
    empty = [b for b in range(len(m)) if not m[b].any()]
    if empty:
        raise ValueError(f"masks: images {empty} have empty masks; the metric is undefined there")
    return m


def _targets(model: nn.Module, x: torch.Tensor, targets: MetricTargets) -> RowTargets:
    """Class indices (B,) long for softmax classes, else one checked target per image
    (`ucag.targets.resolve`, one forward of the first image in eval mode)."""
    batch, device = x.shape[0], x.device
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        t = targets.detach() if isinstance(targets, torch.Tensor) else torch.as_tensor(targets)
        if t.dim() != 1 or t.shape[0] != batch or t.is_floating_point():
            raise ValueError(f"targets: expected {batch} integer class indices, got {tuple(t.shape)} {t.dtype}")
    if not isinstance(targets, (torch.Tensor, np.ndarray, Sequence)) or isinstance(targets, str):
        raise ValueError(f"targets: expected {batch} integer class indices or targets, got {type(targets).__name__}")
    items = targets.tolist() if isinstance(targets, (torch.Tensor, np.ndarray)) else list(targets)
    if len(items) != batch or any(isinstance(t, (float, np.floating)) for t in items):
        raise ValueError(f"targets: expected {batch} integer class indices or targets, got {items!r}")
    with eval_mode(model):
        resolved = resolve(model, x, items)
    if is_class_only(resolved):
        return torch.tensor([t.category for t in resolved], dtype=torch.long, device=device)
    return resolved


def _pick(targets: RowTargets, rows: torch.Tensor | slice) -> RowTargets:
    if isinstance(targets, torch.Tensor):
        return targets[rows]
    indices = range(len(targets))[rows] if isinstance(rows, slice) else rows.tolist()
    return [targets[i] for i in indices]


def _confidence(output: Any, targets: RowTargets) -> torch.Tensor:
    """Each row's probability of its target: the softmax probability of a class index, or
    the target's own confidence (`ucag.targets`)."""
    if isinstance(targets, torch.Tensor):
        return torch.softmax(logits_of(output).float(), dim=1).gather(1, targets[:, None])[:, 0]
    return row_confidence(targets, model_output(output, len(targets)).float())


def _repeated(targets: RowTargets, times: int) -> RowTargets:
    if isinstance(targets, torch.Tensor):
        return targets.repeat_interleave(times)
    return [t for t in targets for _ in range(times)]


def _forward(model: nn.Module, batch: torch.Tensor, plan: ComputePlan) -> Any:
    """The model's output on ``batch`` at the plan's precision and layout."""
    with plan.autocast():
        return model(plan.layout(batch))


def _probabilities(
    model: nn.Module, inputs: torch.Tensor, targets: RowTargets, batch_size: int, plan: ComputePlan
) -> tuple[torch.Tensor, int]:
    """Probability of each row's target (`_confidence`), in chunks, under
    inference_mode; and the chunk size that ran last."""

    def probabilities(rows: slice) -> torch.Tensor:
        return _confidence(_forward(model, inputs[rows], plan), _pick(targets, rows))

    with torch.inference_mode():
        out, size = run_in_chunks(len(inputs), batch_size, probabilities, "inputs")
    return torch.cat(out), size


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under (B, T+1) curves by the trapezoid rule over [0, 1]: (sum(s) - s_0/2 - s_T/2) / T.

    Args:
        curves: (B, T+1) scores s_0 ... s_T at evenly spaced steps, T >= 1.

    Returns:
        The (B,) areas.

    Examples:
        >>> import torch
        >>> from ucag.eval.metrics import auc
        >>> auc(torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]))
        tensor([0.5000, 1.0000])
    """
    steps = curves.shape[1] - 1
    return (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / steps


def _perturbation_curves(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: torch.Tensor,
    targets: RowTargets,
    start: torch.Tensor,
    end: torch.Tensor,
    step: int | None,
    batch_size: int,
    plan: ComputePlan,
) -> MetricResult:
    B, C, H, W = inputs.shape
    step = 8 * W if step is None else int(step)
    if step < 1:
        raise ValueError(f"step: expected a positive number of pixels, got {step}")
    T = math.ceil(H * W / step)
    # rank[b, pixel] = position of the pixel in descending-saliency order (ties: lower index first)
    order = torch.argsort(-saliency.flatten(1), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(H * W, device=order.device).expand(B, -1))
    rank = rank.view(B, 1, H, W)
    # all (image, step) pairs, built chunk by chunk on the device: step k has changed the
    # min(k * step, H * W) top-ranked pixels from `start` to `end`
    pairs = [(b, k) for b in range(B) for k in range(T + 1)]
    scores = torch.empty(B, T + 1, device=inputs.device)

    def score(rows: slice) -> None:
        chunk = pairs[rows]
        b_idx = torch.tensor([b for b, _ in chunk], device=inputs.device)
        k_idx = torch.tensor([k for _, k in chunk], device=inputs.device)
        changed = rank[b_idx] < (k_idx * step).view(-1, 1, 1, 1)
        batch = torch.where(changed, end[b_idx], start[b_idx])
        scores[b_idx, k_idx] = _confidence(_forward(model, batch, plan), _pick(targets, b_idx))

    with torch.inference_mode():
        _, size = run_in_chunks(len(pairs), batch_size, score, "inputs")
    return MetricResult("", auc(scores).cpu().numpy(), scores.cpu().numpy(), size)


def deletion(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Maps,
    targets: MetricTargets,
    *,
    step: int | None = None,
    batch_size: int = 8,
    precision: Precision = DEFAULT_PRECISION,
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
) -> MetricResult:
    """Deletion (RISE): the AUC of the target probability as the most salient pixels are removed.

    Pixels are removed (all channels set to 0 in the normalised input space) in descending
    saliency order, ``step`` pixels per step; ties go in flat pixel order. Lower is better.

    Args:
        model: The classifier (its modes come back afterwards).
        inputs: Normalised images (B, C, H, W), a float tensor.
        saliency: The maps (B, H, W), numpy or torch.
        targets: One target per image: class indices, or any kind of target
            [ucag.targets][ucag.targets] reads (see the module docstring).
        step: Pixels removed per step (default 8 * W); the curve has ceil(H * W / step) + 1 points.
        batch_size: Perturbed inputs per forward (halved on out-of-memory).
        precision: The forwards' arithmetic: ``"fp32"``, ``"bf16"`` or ``"fp16"``
            ([compute_plan][ucag.precision.compute_plan]).
        channels_last: The forwards' input layout: True, False or ``"auto"``.

    Returns:
        The AUC per image as ``values`` and the (B, T+1) probability ``curves``.

    Raises:
        TypeError: ``batch_size`` is not an int, or a target is of a kind the metric cannot read.
        ValueError: ``inputs``, ``saliency``, ``targets``, ``step`` or ``batch_size`` do not fit
            (shapes, NaN or Inf, a class outside the model's range, a step below 1...).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.eval.metrics import deletion
        >>> model = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(3, 2))
        >>> with torch.no_grad():  # class 0: the brightest pixel
        ...     _ = model[2].weight.copy_(torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]))
        ...     _ = model[2].bias.zero_()
        >>> image = torch.zeros(1, 3, 16, 16)
        >>> image[..., :4, :4] = 1.0  # a bright square, top left
        >>> square = (image[:, 0] > 0).float()  # a map on the square
        >>> on = deletion(model, image, square, [0], step=32)
        >>> print(on.curves.round(3))  # the probability falls once the square is gone
        [[0.998 0.5   0.5   0.5   0.5   0.5   0.5   0.5   0.5  ]]
        >>> off = deletion(model, image, 1 - square, [0], step=32)  # a map off the object
        >>> round(on.mean, 3), round(off.mean, 3)  # lower is better
        (0.531, 0.966)
    """
    x, s, t, plan = _prepare(model, inputs, saliency, targets, batch_size, precision, channels_last)
    with eval_mode(model):
        result = _perturbation_curves(model, x, s, t, x, torch.zeros_like(x), step, batch_size, plan)
    result.name = "deletion"
    return result


def insertion(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Maps,
    targets: MetricTargets,
    *,
    step: int | None = None,
    batch_size: int = 8,
    precision: Precision = DEFAULT_PRECISION,
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
) -> MetricResult:
    """Insertion (RISE): the AUC of the target probability as the most salient pixels are restored.

    Starts from the image blurred with a Gaussian (kernel 51, sigma 50, reflect borders) and
    restores original pixels in descending saliency order, ``step`` pixels per step. Higher
    is better.

    Args:
        model: The classifier (its modes come back afterwards).
        inputs: Normalised images (B, C, H, W), a float tensor.
        saliency: The maps (B, H, W), numpy or torch.
        targets: One target per image: class indices, or any kind of target
            [ucag.targets][ucag.targets] reads (see the module docstring).
        step: Pixels restored per step (default 8 * W); the curve has ceil(H * W / step) + 1 points.
        batch_size: Perturbed inputs per forward (halved on out-of-memory).
        precision: The forwards' arithmetic: ``"fp32"``, ``"bf16"`` or ``"fp16"``
            ([compute_plan][ucag.precision.compute_plan]).
        channels_last: The forwards' input layout: True, False or ``"auto"``.

    Returns:
        The AUC per image as ``values`` and the (B, T+1) probability ``curves``.

    Raises:
        TypeError: ``batch_size`` is not an int, or a target is of a kind the metric cannot read.
        ValueError: ``inputs``, ``saliency``, ``targets``, ``step`` or ``batch_size`` do not fit
            (shapes, NaN or Inf, a class outside the model's range, a step below 1...).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.eval.metrics import insertion
        >>> model = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(3, 2))
        >>> with torch.no_grad():  # class 0: the brightest pixel
        ...     _ = model[2].weight.copy_(torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]))
        ...     _ = model[2].bias.zero_()
        >>> image = torch.zeros(1, 3, 16, 16)
        >>> image[..., :4, :4] = 1.0  # a bright square, top left
        >>> square = (image[:, 0] > 0).float()  # a map on the square
        >>> on = insertion(model, image, square, [0], step=32)
        >>> print(on.curves.round(3))  # the probability rises once the square is back
        [[0.877 0.998 0.998 0.998 0.998 0.998 0.998 0.998 0.998]]
        >>> off = insertion(model, image, 1 - square, [0], step=32)  # a map off the object
        >>> round(on.mean, 3), round(off.mean, 3)  # higher is better
        (0.99, 0.884)
    """
    x, s, t, plan = _prepare(model, inputs, saliency, targets, batch_size, precision, channels_last)
    B, C, H, W = x.shape
    blurred = gaussian_blur(x.reshape(B * C, H, W), 51, 50.0).view(B, C, H, W)
    with eval_mode(model):
        result = _perturbation_curves(model, x, s, t, blurred, x, step, batch_size, plan)
    result.name = "insertion"
    return result


def _prepare(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Maps,
    targets: MetricTargets,
    batch_size: int,
    precision: Precision,
    channels_last: ChannelsLast,
) -> tuple[torch.Tensor, torch.Tensor, RowTargets, ComputePlan]:
    """The inputs on the model's device, the checked maps and targets (the targets fit the
    model's output: one forward of the first image, in eval mode, tells it) and the plan of
    the forwards."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
        raise ValueError(f"inputs: expected a float tensor (B, C, H, W), got {getattr(inputs, 'shape', type(inputs))}")
    positive_int("batch_size", batch_size)
    if inputs.shape[0] == 0:
        raise ValueError("inputs: the batch is empty")
    device = model_device(model)
    x = inputs.detach().to(device)
    s = _saliency(saliency, x.shape[0], x.shape[-2:], device)
    plan = compute_plan(model, precision, channels_last)
    return x, s, _targets(model, x, targets), plan


#: ROAD's percentiles (Rong et al., 2022; pytorch-grad-cam's defaults).
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def road(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Maps,
    targets: MetricTargets,
    *,
    order: str = "most",
    percentiles: Sequence[int] = ROAD_PERCENTILES,
    batch_size: int = 8,
    precision: Precision = DEFAULT_PRECISION,
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
) -> MetricResult:
    """ROAD (remove and debias, Rong et al. 2022) through pytorch-grad-cam's noisy linear imputation.

    docs/algorithm.md §6.7: at percentile p, ``order="most"`` (MoRF) imputes the pixels
    whose map value is at or above the map's p-th percentile — the (100 − p)% most
    relevant —, ``order="least"`` (LeRF) the (100 − p)% least relevant, each image from its
    remaining pixels plus a little noise (grad-cam's ``NoisyLinearImputer``, seeded per
    image so a rerun gives the same numbers). ``curves`` (B, P) hold the target's
    probability on the imputed images (softmax for a class, the target's own confidence
    otherwise), one column per percentile; ``values`` their mean over the percentiles.
    MoRF: lower is better; LeRF: higher is better;
    [road_combined][ucag.eval.metrics.road_combined] is their difference. The imputation
    runs on the CPU (a sparse solve per image and percentile), the forwards in chunks of
    ``batch_size`` on the model's device.

    Args:
        model: The classifier (its modes come back afterwards).
        inputs: Normalised images (B, C, H, W), a float tensor.
        saliency: The maps (B, H, W), numpy or torch.
        targets: One target per image: class indices, or any kind of target
            [ucag.targets][ucag.targets] reads.
        order: ``"most"`` (MoRF) or ``"least"`` (LeRF).
        percentiles: The percentiles p, integers in (0, 100).
        batch_size: Imputed images per forward (halved on out-of-memory).
        precision: The forwards' arithmetic: ``"fp32"``, ``"bf16"`` or ``"fp16"``
            ([compute_plan][ucag.precision.compute_plan]).
        channels_last: The forwards' input layout: True, False or ``"auto"``.

    Returns:
        The mean over the percentiles per image as ``values`` and the (B, P) ``curves``.

    Raises:
        TypeError: ``batch_size`` is not an int, or a target is of a kind the metric cannot read.
        ValueError: ``order`` or ``percentiles`` is not one of those above, or ``inputs``,
            ``saliency``, ``targets`` or ``batch_size`` do not fit.
    """
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, RemoveLeastRelevantFirst, RemoveMostRelevantFirst

    if order not in ("most", "least"):
        raise ValueError(f"order: expected 'most' (MoRF) or 'least' (LeRF), got {order!r}")
    valid = isinstance(percentiles, Sequence) and not isinstance(percentiles, str) and len(percentiles) > 0
    if not valid or not all(is_int(p) and 0 < p < 100 for p in percentiles):
        raise ValueError(f"percentiles: expected a non-empty list of integers in (0, 100), got {percentiles!r}")
    levels = [int(p) for p in percentiles]
    x, s, t, plan = _prepare(model, inputs, saliency, targets, batch_size, precision, channels_last)
    remove = RemoveMostRelevantFirst if order == "most" else RemoveLeastRelevantFirst
    images, maps = x.cpu(), s.cpu()
    imputed = torch.empty((len(x) * len(levels), *x.shape[1:]), dtype=x.dtype)
    state = torch.random.get_rng_state()
    try:
        with warnings.catch_warnings():
            # grad-cam's imputer hands torch tensors to numpy, which numpy 2 warns about
            warnings.filterwarnings("ignore", message="__array_wrap__ must accept context", category=DeprecationWarning)
            for b in range(len(x)):
                torch.manual_seed(b)  # the imputer's noise: the same for every method's map of image b
                for k, p in enumerate(levels):
                    imputed[b * len(levels) + k] = remove(p, NoisyLinearImputer())(images[b], maps[b])
    finally:
        torch.random.set_rng_state(state)
    rows = _repeated(t, len(levels))
    with eval_mode(model):
        probabilities, size = _probabilities(model, imputed.to(x.device), rows, batch_size, plan)
    curves = probabilities.view(len(x), len(levels)).cpu().numpy()
    return MetricResult(f"ROAD ({'MoRF' if order == 'most' else 'LeRF'})", curves.mean(axis=1), curves, size)


def road_combined(most: MetricResult, least: MetricResult) -> MetricResult:
    """ROAD's combined score, (LeRF − MoRF) / 2 per image (pytorch-grad-cam's ``ROADCombined``).

    Higher is better.

    Args:
        most: The MoRF result of [road][ucag.eval.metrics.road] (``order="most"``).
        least: The LeRF result of the same maps (``order="least"``).

    Returns:
        The combined score per image (no curves).

    Raises:
        ValueError: The two results hold different numbers of values.
    """
    if most.values.shape != least.values.shape:
        raise ValueError(f"least: {least.values.shape[0]} values for {most.values.shape[0]} MoRF values")
    return MetricResult("ROAD (combined)", (least.values - most.values) / 2)


def pointing_game(saliency: Maps, masks: Maps, tolerance: int = 15) -> MetricResult:
    """Pointing game (TorchRay protocol): whether each map's maximum lands on the object.

    A hit when a mask pixel lies within ``tolerance`` px of the map's maximum (squared
    distance < tolerance^2; the first maximum in flat order on ties).

    Args:
        saliency: The maps (B, H, W), numpy or torch.
        masks: The objects (B, H, W), boolean or integer (nonzero is the object).
        tolerance: The radius in pixels around the maximum.

    Returns:
        ``values`` 1 (hit) or 0 (miss) per image.

    Raises:
        TypeError: ``masks`` are not boolean or integer.
        ValueError: ``saliency`` is not (B, H, W) or not finite, ``masks`` have another shape,
            or a mask is empty.

    Examples:
        >>> import torch
        >>> from ucag.eval.metrics import pointing_game
        >>> maps = torch.zeros(2, 32, 32)
        >>> maps[0, 5, 5] = maps[1, 30, 30] = 1.0
        >>> masks = torch.zeros(2, 32, 32, dtype=torch.bool)
        >>> masks[:, :8, :8] = True
        >>> pointing_game(maps, masks).values
        array([1., 0.], dtype=float32)
    """
    s = _saliency(saliency, None, None)
    m = _masks(masks, s)
    B, H, W = s.shape
    peak = s.flatten(1).argmax(dim=1)
    py, px = peak // W, peak % W
    yy = torch.arange(H).view(1, H, 1)
    xx = torch.arange(W).view(1, 1, W)
    near = (yy - py.view(B, 1, 1)) ** 2 + (xx - px.view(B, 1, 1)) ** 2 < tolerance**2
    hits = (near & m).flatten(1).any(dim=1)  # distance 0 is inside: a mask pixel under the peak hits
    return MetricResult("pointing game", hits.float().numpy())


def energy_pointing_game(saliency: Maps, masks: Maps) -> MetricResult:
    """Energy-based pointing game (Score-CAM): the share of the map's energy on the object.

    With the map clipped at 0, sum(S * mask) / sum(S); 0 where the map is all zero.

    Args:
        saliency: The maps (B, H, W), numpy or torch.
        masks: The objects (B, H, W), boolean or integer (nonzero is the object).

    Returns:
        The share in [0, 1] per image.

    Raises:
        TypeError: ``masks`` are not boolean or integer.
        ValueError: ``saliency`` is not (B, H, W) or not finite, ``masks`` have another shape,
            or a mask is empty.
    """
    s = _saliency(saliency, None, None).clamp_min(0)
    m = _masks(masks, s)
    total = s.flatten(1).sum(1)
    inside = (s * m).flatten(1).sum(1)
    values = torch.where(total > 0, inside / total.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(total))
    return MetricResult("energy pointing game", values.numpy())


def map_density(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Maps,
    targets: MetricTargets,
    *,
    batch_size: int = 8,
    precision: Precision = DEFAULT_PRECISION,
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
) -> tuple[MetricResult, MetricResult]:
    """Positive and negative map density (CAMERAS) on maps min-max scaled to [0, 1].

    positive = p(x * S) / mean(S), negative = p(x * (1 - S)) / mean(1 - S), p the target
    probability. Higher positive and lower negative are better.

    Args:
        model: The classifier (its modes come back afterwards).
        inputs: Normalised images (B, C, H, W), a float tensor.
        saliency: The maps (B, H, W), numpy or torch.
        targets: One target per image: class indices, or any kind of target
            [ucag.targets][ucag.targets] reads.
        batch_size: Masked inputs per forward (halved on out-of-memory).
        precision: The forwards' arithmetic: ``"fp32"``, ``"bf16"`` or ``"fp16"``
            ([compute_plan][ucag.precision.compute_plan]).
        channels_last: The forwards' input layout: True, False or ``"auto"``.

    Returns:
        The positive and the negative density, one value per image each.

    Raises:
        TypeError: ``batch_size`` is not an int, or a target is of a kind the metric cannot read.
        ValueError: A map is constant (it has no density), or ``inputs``, ``saliency``,
            ``targets`` or ``batch_size`` do not fit.
    """
    x, s, t, plan = _prepare(model, inputs, saliency, targets, batch_size, precision, channels_last)
    flat = s.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    constant = (hi - lo <= 0).nonzero().flatten().tolist()
    if constant:
        raise ValueError(f"saliency: maps {constant} are constant; map density is undefined for them")
    scaled = (s - lo.view(-1, 1, 1)) / (hi - lo).view(-1, 1, 1)
    S = scaled[:, None]
    with eval_mode(model):
        p_pos, batch_size = _probabilities(model, x * S, t, batch_size, plan)
        p_neg, batch_size = _probabilities(model, x * (1 - S), t, batch_size, plan)
    positive = p_pos / scaled.flatten(1).mean(1)
    negative = p_neg / (1 - scaled).flatten(1).mean(1)
    return (
        MetricResult("positive density", positive.cpu().numpy(), batch_size=batch_size),
        MetricResult("negative density", negative.cpu().numpy(), batch_size=batch_size),
    )


def seam_score(raw: Maps, grid: Grid) -> MetricResult:
    """How visible the patch borders of ``grid`` are in maps (B, H, W) (docs/algorithm.md §4.1).

    The mean absolute difference between neighbouring pixels across a patch border (a
    patch's first or last row or column inside the image), divided by the mean absolute
    difference between all other neighbours. About 1: no seams; the paper's fold on
    Grad-CAM maps gives several. Use the raw maps (post-processing blurs seams away).

    Args:
        raw: Raw maps (B, H, W) over the grid's image, numpy or torch.
        grid: The [Grid][ucag.Grid] whose patches made the maps.

    Returns:
        The seam score per image.

    Raises:
        ValueError: The maps are not (B, H, W), not finite or not of the grid's image size; the
            grid has no patch border inside the image (units=1); or a map does not change off
            the borders (it has no score).
    """
    s = _saliency(raw, None, None).double()
    if tuple(s.shape[-2:]) != grid.image_size:
        raise ValueError(f"raw: maps of {tuple(s.shape[-2:])} px for a grid over {grid.image_size} px images")
    (ph, pw), (height, width) = grid.patch_size, grid.image_size

    def borders(size: int, patch: int, offsets: Sequence[int]) -> torch.Tensor:
        # difference d compares pixels d - 1 and d; a border lies where a patch starts or ends
        edges = {o for o in offsets if o > 0} | {o + patch for o in offsets if o + patch < size}
        flags = torch.zeros(size - 1, dtype=torch.bool)
        flags[[e - 1 for e in sorted(edges)]] = True
        return flags

    rows, cols = borders(height, ph, grid.offsets_y), borders(width, pw, grid.offsets_x)
    down = (s[:, 1:] - s[:, :-1]).abs()  # (B, H-1, W)
    across = (s[:, :, 1:] - s[:, :, :-1]).abs()  # (B, H, W-1)
    on = torch.cat([down[:, rows].flatten(1), across[:, :, cols].flatten(1)], 1)
    off = torch.cat([down[:, ~rows].flatten(1), across[:, :, ~cols].flatten(1)], 1)
    if on.shape[1] == 0:
        raise ValueError("grid: its patches have no borders inside the image (units=1), so there is no seam to score")
    flat = (off.mean(1) <= 0).nonzero().flatten().tolist()
    if flat:
        raise ValueError(f"raw: maps {flat} do not change off the patch borders; the seam score is undefined for them")
    return MetricResult("seam score", (on.mean(1) / off.mean(1)).numpy())


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision of continuous scores against binary labels, as scikit-learn computes it.

    The step-wise sum of (R_n - R_{n-1}) P_n over distinct score thresholds.

    Args:
        scores: Continuous scores, 1-D.
        labels: Binary labels (1 or True is positive) of the same length, at least one positive.

    Returns:
        The average precision, in [0, 1].

    Examples:
        >>> import torch
        >>> from ucag.eval.metrics import average_precision
        >>> average_precision(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0]))
        0.8333333333333333
    """
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order].double(), labels[order].double()
    tp = torch.cumsum(y, 0)
    # one threshold per distinct score: the last position of each run of equal scores
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp, count = tp[last], torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    precision, recall = tp / count, tp / y.sum()
    recall_prev = torch.cat([torch.zeros(1, dtype=torch.float64), recall[:-1]])
    return float(((recall - recall_prev) * precision).sum())


@dataclass
class SegmentationScores:
    """Weakly supervised segmentation: dataset-level pixel accuracy and mean AP.

    Attributes:
        pixel_accuracy: The binarised maps' accuracy over all pixels of all images.
        mean_ap: The mean over images of ``ap``.
        ap: The average precision of each continuous map against its mask, (B,).
    """

    pixel_accuracy: float
    mean_ap: float
    ap: np.ndarray


def segmentation_scores(saliency: Maps, masks: Maps, threshold: str | float = "mean") -> SegmentationScores:
    """Weakly supervised segmentation scores of maps against masks.

    Each map is binarised at ``threshold`` for the pixel accuracy over all pixels of all
    images; the average precision compares the continuous map with the mask, per image.

    Args:
        saliency: The maps (B, H, W), numpy or torch.
        masks: The objects (B, H, W), boolean or integer (nonzero is the object).
        threshold: ``"mean"`` (each map's own mean) or a number; pixels above it are the object.

    Returns:
        The pixel accuracy, the mean AP and each image's AP.

    Raises:
        TypeError: ``masks`` are not boolean or integer.
        ValueError: ``threshold`` is neither ``"mean"`` nor a number, ``saliency`` is not
            (B, H, W) or not finite, ``masks`` have another shape, or a mask is empty.
    """
    s = _saliency(saliency, None, None)
    m = _masks(masks, s)
    if threshold == "mean":
        cut = s.flatten(1).mean(1).view(-1, 1, 1)
    elif isinstance(threshold, (int, float)):
        cut = torch.full((len(s), 1, 1), float(threshold))
    else:
        raise ValueError(f"threshold: expected 'mean' or a number, got {threshold!r}")
    accuracy = float(((s > cut) == m).float().mean())
    ap = np.array([average_precision(s[b].flatten(), m[b].flatten()) for b in range(len(s))])
    return SegmentationScores(accuracy, float(ap.mean()), ap)


__all__: Sequence[str] = [
    "MetricResult",
    "SegmentationScores",
    "auc",
    "average_precision",
    "deletion",
    "energy_pointing_game",
    "insertion",
    "map_density",
    "pointing_game",
    "road",
    "road_combined",
    "seam_score",
    "segmentation_scores",
]
