"""Controls and peers of a comparison (docs/algorithm.md §6.9).

- **Controls** (floors): pytorch-grad-cam's ``RandomCAM`` (random channel weights at the
  target layer; [random_cam_maps][ucag.eval.peers.random_cam_maps], seeded per image so a
  run is reproducible and the global numpy RNG is left as it was) and its ``sobel_cam`` (the
  image's edges, no model at all; [sobel_maps][ucag.eval.peers.sobel_maps]). A method that
  does not beat them on a metric is not measured by that metric.
- **Peers**: pytorch-grad-cam's ``RefineCAM`` (the product of the base method's maps at one
  layer per resolution, [resolution_layers][ucag.models.resolution_layers];
  [refinecam_maps][ucag.eval.peers.refinecam_maps]) and ``SESS`` with the geometry of
  UCAG's own grid ([sess_matched_settings][ucag.eval.peers.sess_matched_settings]: one
  scale, a window equal to UCAG's upsampled patch and a step equal to its stride, so the
  same number of patches of the same size).

[ucag.eval.registry][ucag.eval.registry] runs them by name; the functions here are the parts with logic.
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
    """The uint8 RGB images a normalised batch came from.

    ``x * std + mean``, clipped to [0, 1], times 255, rounded.

    Args:
        inputs: the normalised batch (B, C, H, W), C = ``len(mean)``.
        mean: the per-channel means of the normalisation.
        std: the per-channel standard deviations, as many as ``mean``.

    Returns:
        (B, H, W, C) uint8 images.

    Raises:
        ValueError: ``inputs`` is not a (B, C, H, W) tensor with as many channels as ``mean``
            and ``std`` have values.

    Examples:
        >>> import torch
        >>> x = torch.tensor([-2.0, 0.0, 2.0]).reshape(1, 3, 1, 1)
        >>> unnormalized_rgb8(x, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        array([[[[  0, 128, 255]]]], dtype=uint8)
    """
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
    """pytorch-grad-cam's ``sobel_cam`` of every image of a normalised batch: the edge floor.

    No model is involved: the images are unnormalised
    ([unnormalized_rgb8][ucag.eval.peers.unnormalized_rgb8]) and their edges drawn.

    Args:
        inputs: the normalised batch (B, 3, H, W).
        mean: the per-channel means of the normalisation (required).
        std: the per-channel standard deviations (required).

    Returns:
        (B, H, W) float maps of the edges, 0-255.

    Raises:
        ValueError: ``mean`` or ``std`` is None, or ``inputs`` does not match them.
    """
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
    """A seed that depends only on the image's values, its target and ``seed``.

    The same image gets the same random map in every run, on every process.

    Args:
        image: one image, any shape (its float32 values are hashed).
        target: the class explained.
        seed: shifts every image's seed.

    Returns:
        A 32-bit seed.

    Examples:
        >>> import torch
        >>> image_seed(torch.ones(3, 8, 8), 5) == image_seed(torch.ones(3, 8, 8), 5)
        True
        >>> image_seed(torch.ones(3, 8, 8), 5) == image_seed(torch.ones(3, 8, 8), 6)
        False
    """
    digest = zlib.crc32(image.detach().float().cpu().contiguous().numpy().tobytes())
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, digest, int(target) & 0xFFFFFFFF]).generate_state(1)[0])


@contextlib.contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    """The global numpy RNG seeded with ``seed`` inside the block and restored after it.

    Grad-cam's ``RandomCAM`` draws from the global RNG.

    Args:
        seed: the seed, as ``numpy.random.seed`` takes it.

    Yields:
        Nothing; the block runs with the seeded RNG.

    Examples:
        >>> import numpy as np
        >>> with numpy_seeded(0):
        ...     first = np.random.rand()
        >>> with numpy_seeded(0):
        ...     again = np.random.rand()
        >>> first == again
        True
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def random_cam_maps(cam: Any, inputs: torch.Tensor, targets: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Grad-cam's ``RandomCAM`` on each image alone, seeded per image: the random floor.

    The global numpy RNG is seeded by [image_seed][ucag.eval.peers.image_seed] for each
    image and restored afterwards.

    Args:
        cam: a pytorch-grad-cam ``RandomCAM`` object.
        inputs: the normalised batch (B, C, H, W).
        targets: one class per image.
        seed: shifts every image's seed.

    Returns:
        (B, H, W) maps.

    Raises:
        TypeError: ``seed`` is not an int.
    """
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
    """RefineCAM's target layers.

    Args:
        model: the classifier.
        target_layer: the last layer, when the layers are found by resolution.
        input_size: the inputs' (H, W), for the traced forward pass.
        layers: the layers by name (dotted names in ``model.named_modules()``); default one
            per resolution ([resolution_layers][ucag.models.resolution_layers], found once
            per model, target layer and input size).
        count: how many resolutions, the last ones, when ``layers`` is None.

    Returns:
        The modules named ``layers``, or one per resolution for the last ``count``
            resolutions, ``target_layer`` last.

    Raises:
        ValueError: ``layers`` is not a non-empty list of names of modules of ``model``.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> refinecam_layers(model, model[2], (32, 32), layers=["0", "2"])
        [Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1)), Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1))]
    """
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
    """pytorch-grad-cam's ``RefineCAM`` (as shipped) with ``base_method`` at [refinecam_layers][ucag.eval.peers.refinecam_layers].

    The per-layer CAMs' hooks are removed on return (RefineCAM has no ``with`` of its own).

    Args:
        model: the classifier.
        target_layer: the last of the layers found by resolution.
        base_method: the pytorch-grad-cam class run at every layer (e.g. ``GradCAM``).
        inputs: the normalised batch (B, C, H, W).
        targets: one class per image.
        layers: the layers by name; default one per resolution (see
            [refinecam_layers][ucag.eval.peers.refinecam_layers]).
        count: how many resolutions, when ``layers`` is None.
        **options: keyword arguments of the base method (a ``reshape_transform`` among them
            replaces the one found for the model).

    Returns:
        (B, H, W) maps in [0, 1].

    Raises:
        ValueError: ``layers`` is not a non-empty list of names of modules of ``model``.
    """
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
    """SESS settings that reproduce UCAG's grid ([sess_matched_settings][ucag.eval.peers.sess_matched_settings]).

    Attributes:
        scale: the image is resized so its shorter side is ``scale`` (one scale).
        window_size: the side of SESS's window, UCAG's upsampled patch.
        step_size: the window's step, UCAG's stride upsampled alike.
        patches: how many windows SESS takes, UCAG's ``units`` x ``units`` for a square image.
        ucag_patches: how many patches UCAG takes, ``units`` x ``units``.
    """

    scale: int
    window_size: int
    step_size: int
    patches: int
    ucag_patches: int

    def options(self) -> dict[str, Any]:
        """The settings as SESS takes them.

        Returns:
            Keyword arguments of pytorch-grad-cam's ``SESS``: ``scales``, ``window_size``,
                ``step_size``.
        """
        return {"scales": [self.scale], "window_size": self.window_size, "step_size": self.step_size}


def _window_count(length: int, step: int, window: int) -> int:
    from pytorch_grad_cam.sess import window_starts

    return len(window_starts(length, step, window))


def sess_matched_settings(
    model: nn.Module | None, size: tuple[int, int], ucag_options: dict[str, Any] | None = None
) -> SessGeometry:
    """The SESS settings with UCAG's geometry for images of ``size`` (H, W).

    UCAG upsamples a p-pixel patch to S pixels (x2.6 by default: 124 -> 322 at 224): SESS
    resizes the image by S / p instead (224 -> 582) and slides an S-pixel window over it, by
    ceil((L - S) / (n - 1)) pixels, the smallest step with which its window positions —
    ``0, step, 2 step, ...`` and, last, ``L - S`` flush with the border — are n per axis;
    that is UCAG's stride (offsets evenly spread over the image) times S / p, rounded up.
    So SESS sees n x n windows of the same pixels at the same size as UCAG's patches. SESS
    windows are square: for a non-square image the geometry follows its shorter side and
    ``patches`` says how many windows SESS then takes. At 224 x 224 with UCAG's defaults:
    ``scale=582``, ``window_size=322``, ``step_size=52``, 36 windows.

    Args:
        model: the classifier, or None; a fixed-resolution model's input size is the
            upsampled patch, as [UCAG][ucag.explainer.UCAG] does, unless ``scale`` or
            ``scaled_size`` is given.
        size: the images' (H, W).
        ucag_options: UCAG's options; those of its grid (``units``, ``patch_size``, ``scale``,
            ``scaled_size``) count, UCAG's defaults otherwise.

    Returns:
        The matched settings.
    """
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
