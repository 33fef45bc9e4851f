"""Controls and peers of a comparison (docs/algorithm.md §6.9).

- **Controls** (floors): pytorch-grad-cam's ``RandomCAM`` (random channel weights at the
  target layer; :func:`random_cam_maps`, seeded per image so a run is reproducible and the
  global numpy RNG is left as it was) and its ``sobel_cam`` (the image's edges, no model at
  all; :func:`sobel_maps`). A method that does not beat them on a metric is not measured by
  that metric.
- **Peers**: pytorch-grad-cam's ``RefineCAM`` (the product of the base method's maps at one
  layer per resolution, :func:`ucag.models.resolution_layers`; :func:`refinecam_maps`) and
  ``SESS`` with the geometry of UCAG's own grid (:func:`sess_matched_settings`: one scale,
  a window equal to UCAG's upsampled patch and a step equal to its stride, so the same
  number of patches of the same size).

:mod:`ucag.eval.registry` runs them by name; the functions here are the parts with logic.
"""

from __future__ import annotations

import contextlib
import math
import weakref
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._inputs import LogitsOnly
from ..checks import is_int
from ..grid import GridSpec
from ..models import model_input_size, reshape_transform_for, resolution_layers
from ..options import DEFAULT_SCALE, DEFAULT_UNITS
from .compute import uncounted

#: The UCAG options that describe its grid (the rest: weighting, batch_size... do not).
GRID_OPTIONS = ("units", "patch_size", "scale", "scaled_size")


def unnormalized_rgb8(inputs: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The (B, H, W, 3) uint8 RGB images a normalised (B, 3, H, W) batch came from:
    ``x * std + mean``, clipped to [0, 1], times 255, rounded."""
    if (
        not isinstance(inputs, torch.Tensor)
        or inputs.dim() != 4
        or inputs.shape[1] != len(mean)
        or len(mean) != len(std)
    ):
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(
            f"inputs: expected a (B, {len(mean)}, H, W) batch normalised with {len(mean)} means and stds, got {shape}"
        )
    x = inputs.detach().float().cpu()
    m = torch.tensor([float(v) for v in mean])[:, None, None]
    s = torch.tensor([float(v) for v in std])[:, None, None]
    rgb = ((x * s + m).clamp(0, 1) * 255).round().to(torch.uint8)
    return rgb.permute(0, 2, 3, 1).contiguous().numpy()


def sobel_maps(inputs: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """pytorch-grad-cam's ``sobel_cam`` of every image of the normalised batch ``inputs``
    (unnormalised with ``mean`` and ``std`` first): (B, H, W) float maps of the edges,
    0-255, no model involved (the edge floor)."""
    from pytorch_grad_cam.sobel_cam import sobel_cam

    if mean is None or std is None:
        raise ValueError(
            "mean: the Sobel control needs the inputs' mean and std to recover the image; pass mean= and std="
        )
    images = unnormalized_rgb8(inputs, mean, std)
    return torch.stack(
        [torch.from_numpy(np.asarray(sobel_cam(np.ascontiguousarray(image)), dtype=np.float32)) for image in images]
    )


def image_seed(image: torch.Tensor, target: int, seed: int = 0) -> int:
    """A seed that depends only on the image's values, its target and ``seed``: the same
    image gets the same random map in every run, on every process."""
    digest = zlib.crc32(image.detach().float().cpu().contiguous().numpy().tobytes())
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, digest, int(target) & 0xFFFFFFFF]).generate_state(1)[0])


@contextlib.contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    """The global numpy RNG seeded with ``seed`` inside the block and restored after it
    (grad-cam's ``RandomCAM`` draws from the global RNG)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def random_cam_maps(cam: Any, inputs: torch.Tensor, targets: Sequence[int], seed: int = 0) -> torch.Tensor:
    """grad-cam's ``RandomCAM`` object ``cam`` on each image alone, with the global numpy
    RNG seeded by :func:`image_seed` (``seed`` shifts every image's seed) and restored:
    (B, H, W) maps, the random floor."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if not is_int(seed):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    maps = []
    for i, target in enumerate(targets):
        with numpy_seeded(image_seed(inputs[i], int(target), seed)):
            maps.append(
                torch.as_tensor(cam(input_tensor=inputs[i : i + 1], targets=[ClassifierOutputTarget(int(target))]))[0]
            )
    return torch.stack(maps)


#: resolution_layers' choice per model, by (target layer, input size, count): the traced
#: forward runs once per model, not once per image (nor inside an image's pass count)
_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, tuple[int, int], int], list[nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def refinecam_layers(
    model: nn.Module,
    target_layer: nn.Module,
    input_size: tuple[int, int],
    layers: Sequence[str] | None = None,
    count: int = 3,
) -> list[nn.Module]:
    """RefineCAM's target layers: the modules named ``layers`` (dotted names in
    ``model.named_modules()``), or one per resolution for the last ``count`` resolutions,
    ``target_layer`` last (:func:`ucag.models.resolution_layers`, found once per model,
    target layer and input size)."""
    if layers is not None:
        if isinstance(layers, str) or not layers or not all(isinstance(n, str) for n in layers):
            raise ValueError(f"layers: expected a list of module names, got {layers!r}")
        named = dict(model.named_modules())
        missing = [n for n in layers if n not in named]
        if missing:
            raise ValueError(f"layers: {type(model).__name__} has no module {missing[0]!r}")
        return [named[n] for n in layers]
    known = _LAYERS.setdefault(model, {})
    key = (id(target_layer), (int(input_size[0]), int(input_size[1])), count)
    if key not in known:
        with uncounted():  # a traced forward of a blank image: set-up, not this image's cost
            known[key] = [s.layer for s in resolution_layers(model, target_layer, count, input_size)]
    return list(known[key])


def refinecam_maps(
    model: nn.Module,
    target_layer: nn.Module,
    base_method: type,
    inputs: torch.Tensor,
    targets: Sequence[int],
    layers: Sequence[str] | None = None,
    count: int = 3,
    **options: Any,
) -> torch.Tensor:
    """pytorch-grad-cam's ``RefineCAM`` (as shipped) with ``base_method`` at
    :func:`refinecam_layers`: (B, H, W) maps in [0, 1]. ``options`` go to the base method.
    The per-layer CAMs' hooks are removed on return (RefineCAM has no ``with`` of its own)."""
    from pytorch_grad_cam import RefineCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    chosen = refinecam_layers(model, target_layer, (int(inputs.shape[-2]), int(inputs.shape[-1])), layers, count)
    with uncounted():
        transform = options.pop("reshape_transform", None) or reshape_transform_for(model, chosen)
        refine = RefineCAM(LogitsOnly(model), chosen, transform, base_method=base_method, **options)
    try:
        return torch.as_tensor(refine(inputs, [ClassifierOutputTarget(int(t)) for t in targets]))
    finally:
        for cam in refine.base_cam_per_layer:
            cam.activations_and_grads.release()


@dataclass(frozen=True)
class SessGeometry:
    """SESS settings that reproduce UCAG's grid (:func:`sess_matched_settings`): the image
    is resized so its shorter side is ``scale`` (one scale), a ``window_size`` window — UCAG's
    upsampled patch — slides over it by ``step_size`` — UCAG's stride, upsampled alike — and
    gives ``patches`` windows, UCAG's ``units`` x ``units`` for a square image."""

    scale: int
    window_size: int
    step_size: int
    patches: int
    ucag_patches: int

    def options(self) -> dict[str, Any]:
        """Keyword arguments of pytorch-grad-cam's ``SESS``."""
        return {"scales": [self.scale], "window_size": self.window_size, "step_size": self.step_size}


def _window_count(length: int, step: int, window: int) -> int:
    from pytorch_grad_cam.sess import window_starts

    return len(window_starts(length, step, window))


def sess_matched_settings(
    model: nn.Module | None, size: tuple[int, int], ucag_options: dict[str, Any] | None = None
) -> SessGeometry:
    """The SESS settings with UCAG's geometry for images of ``size`` (H, W) under
    ``ucag_options`` (units, patch_size, scale, scaled_size; UCAG's defaults otherwise, and
    a fixed-resolution model's input size as the upsampled patch, as :class:`ucag.UCAG`
    does).

    UCAG upsamples a p-pixel patch to S pixels (x2.6 by default: 124 -> 322 at 224): SESS
    resizes the image by S / p instead (224 -> 582) and slides an S-pixel window over it, by
    ceil((L - S) / (n - 1)) pixels, the smallest step with which its window positions —
    ``0, step, 2 step, ...`` and, last, ``L - S`` flush with the border — are n per axis;
    that is UCAG's stride (offsets evenly spread over the image) times S / p, rounded up.
    So SESS sees n x n windows of the same pixels at the same size as UCAG's patches. SESS
    windows are square: for a non-square image the geometry follows its shorter side and
    ``patches`` says how many windows SESS then takes."""
    options = {k: v for k, v in (ucag_options or {}).items() if k in GRID_OPTIONS}
    scale, scaled_size = options.get("scale"), options.get("scaled_size")
    fixed = model_input_size(model) if model is not None else None
    if fixed is not None and scale is None and scaled_size is None:
        scaled_size = fixed
    spec = GridSpec(
        options.get("units", DEFAULT_UNITS),
        options.get("patch_size"),
        DEFAULT_SCALE if scale is None else scale,
        scaled_size,
    )
    grid = spec.grid((int(size[0]), int(size[1])))
    short = 0 if size[0] <= size[1] else 1
    patch, window = grid.patch_size[short], grid.scaled_size[short]
    length = max(window, math.floor(size[short] * window / patch + 0.5))
    n = grid.units
    step = window if n == 1 or length == window else max(1, math.ceil((length - window) / (n - 1)))
    long_length = int(size[1 - short] * length / size[short])  # torchvision's resize of the longer side
    patches = _window_count(length, step, window) * _window_count(long_length, step, window)
    return SessGeometry(
        scale=int(length), window_size=int(window), step_size=int(step), patches=patches, ucag_patches=n * n
    )


__all__ = [
    "GRID_OPTIONS",
    "SessGeometry",
    "image_seed",
    "numpy_seeded",
    "random_cam_maps",
    "refinecam_layers",
    "refinecam_maps",
    "sess_matched_settings",
    "sobel_maps",
    "unnormalized_rgb8",
]
