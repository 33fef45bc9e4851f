"""The UCAG kernels as torch operations on the tensor's own device, for tensors the tch
module does not take (another torch than it was built for; devices other than cpu/cuda;
half precision on the CPU without it). They issue the same ATen calls in the same order
as the tch kernels (tch/src/kernels.rs), so both give the same numbers. Inputs arrive
validated by [ucag.kernels][ucag.kernels]: these functions check nothing themselves.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F

from ._core import Grid


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels sum in: float32 at least.

    Half inputs would lose the sum of overlapping patches.

    Args:
        dtype: The input's floating-point dtype.

    Returns:
        ``torch.float64`` for float64 input, ``torch.float32`` otherwise.
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def patch_origins(grid: Grid) -> list[tuple[int, int]]:
    """(row, column) of every patch's top-left pixel, row-major.

    Args:
        grid: The patch geometry.

    Returns:
        The N origins, patch p = i * units + j at ``(offsets_y[i], offsets_x[j])``.
    """
    return [(y, x) for y in grid.offsets_y for x in grid.offsets_x]


@torch.no_grad()
def unfold(images: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(B, C, H, W) -> (B·N, C, S_h, S_w) bicubic patches; row b·N + p = patch p of image b.

    Args:
        images: (B, C, H, W) floating-point images of the grid's image size.
        grid: The patch geometry.

    Returns:
        The patches resized to the grid's scaled size, in the images' dtype and on their
            device, without gradient.
    """
    batch, channels = images.shape[:2]
    ph, pw = grid.patch_size
    sh, sw = grid.scaled_size
    out = images.new_empty((batch, grid.num_patches, channels, sh, sw))
    for p, (y, x) in enumerate(patch_origins(grid)):
        crop = images[:, :, y : y + ph, x : x + pw]
        out[:, p] = F.interpolate(crop, size=(sh, sw), mode="bicubic", align_corners=False)
    return out.view(batch * grid.num_patches, channels, sh, sw)


@overload
def confidence(
    logits: torch.Tensor, targets: torch.Tensor, mode: str, *, return_probabilities: Literal[False] = False
) -> torch.Tensor: ...
@overload
def confidence(
    logits: torch.Tensor, targets: torch.Tensor, mode: str, *, return_probabilities: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def confidence(
    logits: torch.Tensor, targets: torch.Tensor, mode: str, *, return_probabilities: bool
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...
@torch.no_grad()
def confidence(
    logits: torch.Tensor, targets: torch.Tensor, mode: str, *, return_probabilities: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Softmax probability of each row's target, weighted by ``mode``.

    Args:
        logits: (rows, K) floating-point logits.
        targets: (rows,) int64 class indices on the logits' device.
        mode: ``"exp"`` (exp(p)), ``"prob"`` (p) or ``"uniform"`` (1).
        return_probabilities: Also return the probabilities.

    Returns:
        (rows,) weights in the logits' dtype. With ``return_probabilities``,
            (probabilities, weights) from the same softmax, each cast to the logits' dtype once
            (as two calls with "prob" and ``mode`` would give them).
    """
    probabilities = torch.softmax(logits, 1, dtype=accumulation_dtype(logits.dtype)).gather(1, targets[:, None])[:, 0]
    if mode == "exp":
        weights = probabilities.exp().to(logits.dtype)
    elif mode == "prob":
        # a tensor of its own (a cast to the same dtype would return the probabilities)
        weights = probabilities.to(logits.dtype, copy=True)
    else:
        weights = torch.ones_like(probabilities).to(logits.dtype)
    if return_probabilities:
        return probabilities.to(logits.dtype), weights
    return weights


@torch.no_grad()
def resize_maps(maps: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(B·N, [1,] h', w') -> (B·N, 1, h, w) bilinear at the patch size, accumulation dtype.

    Args:
        maps: (B·N, h', w') or (B·N, 1, h', w') partial maps.
        grid: The patch geometry (its patch size (h, w) is the target size).

    Returns:
        The maps at the patch size in [accumulation_dtype][ucag.torch_ops.accumulation_dtype]
            (not resampled when already that size).
    """
    rows, (mh, mw) = maps.shape[0], maps.shape[-2:]
    ph, pw = grid.patch_size
    resized = maps.reshape(rows, 1, mh, mw).to(accumulation_dtype(maps.dtype))
    if (mh, mw) != (ph, pw):
        resized = F.interpolate(resized, size=(ph, pw), mode="bilinear", align_corners=False)
    return resized


@torch.no_grad()
def fold(
    resized: torch.Tensor,
    maps_dtype: torch.dtype,
    weights: torch.Tensor,
    grid: Grid,
    window: Literal["box", "linear", "cosine"] = "box",
) -> torch.Tensor:
    """The fold: resized partial maps, weighted and windowed, added at their patches.

    Each map times its weight and its fold window is added at its patch, and the sum is
    divided by the sum of the windows (the coverage D for "box").

    Args:
        resized: (B·N, 1, h, w) maps from [resize_maps][ucag.torch_ops.resize_maps].
        maps_dtype: The dtype of the result (the original maps' dtype).
        weights: (B·N,) patch weights on the maps' device.
        grid: The patch geometry.
        window: The fold window: ``"box"``, ``"linear"`` or ``"cosine"``.

    Returns:
        Raw UCAG maps (B, H, W) in ``maps_dtype``.
    """
    n = grid.num_patches
    ph, pw = grid.patch_size
    batch = resized.shape[0] // n
    kind = resized.dtype
    rows, columns, row_sums, column_sums = (torch.from_numpy(a) for a in grid.fold_weights(window))
    weighted = (resized * weights.to(kind).reshape(-1, 1, 1, 1)).reshape(batch, n, ph, pw)
    if window != "box":
        # patch p = (i, j) weighs its pixels by rows[i] x columns[j], row-major like the patches
        patch_windows = (rows[:, None, :, None] * columns[None, :, None, :]).reshape(n, ph, pw)
        weighted = weighted * patch_windows.to(kind).to(resized.device)
    canvas = torch.zeros((batch, *grid.image_size), dtype=kind, device=resized.device)
    for p, (y, x) in enumerate(patch_origins(grid)):
        canvas[:, y : y + ph, x : x + pw] += weighted[:, p]
    divisor = torch.outer(row_sums, column_sums).to(kind).to(resized.device)
    return canvas.div_(divisor).to(maps_dtype)
