"""Post-processing of raw UCAG maps (docs/algorithm.md §5), on the maps' own device."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import positive_int, positive_real
from .options import Postprocess, check_choice


def check_blur(blur: object) -> None:
    """Check that ``blur`` is None or a (kernel, sigma) pair: a positive odd int and a finite number > 0.

    Args:
        blur: The blur setting to check.

    Raises:
        TypeError: ``blur`` is not None or a pair, the kernel size is not an int or sigma
            is not a number.
        ValueError: The kernel size is not a positive odd int, or sigma is not finite and > 0.
    """
    if blur is None:
        return
    if not isinstance(blur, (tuple, list)) or len(blur) != 2:
        raise TypeError(f"blur: expected None or a (kernel, sigma) pair, got {blur!r}")
    kernel, sigma = blur
    if positive_int("blur (kernel size)", kernel, " (odd)") % 2 != 1:
        raise ValueError(f"blur (kernel size): expected a positive int (odd), got {kernel!r}")
    positive_real("blur (sigma)", sigma)


def gaussian_blur(maps: torch.Tensor, kernel: int = 5, sigma: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) maps with reflect borders.

    Maps whose smaller side is not larger than ``kernel // 2`` are padded by replicating
    their borders instead (reflection needs more pixels).

    Args:
        maps: (B, H, W) floating-point maps, on any device.
        kernel: The kernel size, a positive odd int.
        sigma: The Gaussian's standard deviation in pixels, a finite number > 0.

    Returns:
        The blurred maps (B, H, W), in the maps' dtype and on their device.

    Raises:
        TypeError: ``kernel`` is not an int or ``sigma`` not a number.
        ValueError: ``kernel`` is not a positive odd int or ``sigma`` not finite and > 0.

    Examples:
        >>> import torch
        >>> impulse = torch.zeros(1, 5, 5)
        >>> impulse[0, 2, 2] = 1.0
        >>> blurred = gaussian_blur(impulse, kernel=3, sigma=1.0)
        >>> blurred.shape
        torch.Size([1, 5, 5])
        >>> [round(v, 3) for v in blurred[0, 2].tolist()]
        [0.0, 0.124, 0.204, 0.124, 0.0]
    """
    check_blur((kernel, sigma))
    offsets = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(maps.dtype).to(maps.device)
    pad = kernel // 2
    x = maps[:, None]
    mode = "reflect" if min(maps.shape[-2:]) > pad else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, weights.view(1, 1, 1, kernel))
    x = F.conv2d(x, weights.view(1, 1, kernel, 1))
    return x[:, 0]


def cam_postprocess(raw: torch.Tensor, blur: tuple[int, float] | None = (5, 3.0)) -> torch.Tensor:
    """pytorch-grad-cam's post-processing of raw maps (docs/algorithm.md §5).

    ReLU, per-image min-max scaling to [0, 1] with (M - min) / (max - min + 1e-7), then
    the Gaussian blur (kernel 5, sigma 3 by default: the authors' evaluation setting).

    Args:
        raw: Signed raw maps (B, H, W).
        blur: The Gaussian blur's (kernel, sigma), or None for no blur.

    Returns:
        The post-processed maps (B, H, W) in [0, 1], in the maps' dtype and on their device.

    Raises:
        TypeError: ``blur`` is not None or a (kernel, sigma) pair of numbers.
        ValueError: ``blur``'s kernel is not a positive odd int or its sigma not finite and > 0.

    Examples:
        >>> import torch
        >>> raw = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]]])
        >>> [[round(v, 4) for v in row] for row in cam_postprocess(raw, blur=None)[0].tolist()]
        [[0.0, 0.0], [0.3333, 1.0]]
        >>> cam_postprocess(torch.randn(2, 8, 8)).shape  # blurred with (5, 3.0)
        torch.Size([2, 8, 8])
    """
    maps = raw.clamp_min(0)
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    maps = (maps - lo) / (hi - lo + 1e-7)
    if blur is not None:
        maps = gaussian_blur(maps, *blur)
    return maps


def postprocess(raw: torch.Tensor, mode: Postprocess, blur: tuple[int, float] | None = (5, 3.0)) -> torch.Tensor:
    """Post-process raw maps the way ``mode`` names (docs/algorithm.md §5).

    Args:
        raw: Signed raw maps (B, H, W).
        mode: ``"cam"`` for [cam_postprocess][ucag.postprocess.cam_postprocess] (ReLU,
            min-max to [0, 1], Gaussian blur), ``"none"`` for the raw maps themselves.
        blur: The Gaussian blur's (kernel, sigma) for ``"cam"``, or None for no blur.

    Returns:
        The post-processed maps (B, H, W); ``raw`` itself (not a copy) for ``"none"``.

    Raises:
        ValueError: ``mode`` is not ``"cam"`` or ``"none"``.
    """
    if mode == "cam":
        return cam_postprocess(raw, blur)
    if mode == "none":
        return raw
    check_choice("postprocess", mode, Postprocess)
    raise AssertionError("unreachable: a valid postprocess is applied above")
