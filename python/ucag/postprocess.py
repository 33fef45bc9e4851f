"""Post-processing of raw UCAG maps (docs/algorithm.md §5), on the maps' own device."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import positive_int, positive_real
from .options import Postprocess, check_choice


def check_blur(blur: object) -> None:
    """``blur`` is None or a (kernel, sigma) pair: a positive odd int and a finite number > 0."""
    if blur is None:
        return
    if not isinstance(blur, (tuple, list)) or len(blur) != 2:
        raise TypeError(f"blur: expected None or a (kernel, sigma) pair, got {blur!r}")
    kernel, sigma = blur
    if positive_int("blur (kernel size)", kernel, " (odd)") % 2 != 1:
        raise ValueError(f"blur (kernel size): expected a positive int (odd), got {kernel!r}")
    positive_real("blur (sigma)", sigma)


def gaussian_blur(maps: torch.Tensor, kernel: int = 5, sigma: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) maps with reflect borders."""
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
    """ReLU, per-image min-max scaling to [0, 1] with (M - min) / (max - min + 1e-7), then
    the Gaussian blur (kernel 5, sigma 3: the authors' evaluation setting)."""
    maps = raw.clamp_min(0)
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    maps = (maps - lo) / (hi - lo + 1e-7)
    if blur is not None:
        maps = gaussian_blur(maps, *blur)
    return maps


def postprocess(raw: torch.Tensor, mode: Postprocess, blur: tuple[int, float] | None = (5, 3.0)) -> torch.Tensor:
    if mode == "cam":
        return cam_postprocess(raw, blur)
    if mode == "none":
        return raw
    check_choice("postprocess", mode, Postprocess)
    raise AssertionError("unreachable: a valid postprocess is applied above")
