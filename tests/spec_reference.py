"""An independent, deliberately plain PyTorch implementation of docs/algorithm.md §1, §3 and §4.

The tests compare ucag's Rust kernels against it: per-patch ``F.interpolate`` calls and
explicit loops that place, weight and count, written from the definitions alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def round_half_up(num: int, den: int) -> int:
    return (2 * num + den) // (2 * den)


@dataclass
class Geometry:
    image: tuple[int, int]
    units: int
    patch: tuple[int, int]
    scaled: tuple[int, int]
    offsets_y: list[int]
    offsets_x: list[int]


def geometry(image, units=6, patch=None, scale=2.6, scaled=None) -> Geometry:
    H, W = image
    if patch is None:
        patch = (round_half_up(124 * H, 224), round_half_up(124 * W, 224))
    h, w = patch
    if scaled is None:
        scaled = (max(1, int(scale * h + 0.5)), max(1, int(scale * w + 0.5)))

    def offsets(size, side):
        if units == 1:
            return [0]
        return [(2 * i * (size - side) + (units - 1)) // (2 * (units - 1)) for i in range(units)]

    return Geometry((H, W), units, (h, w), scaled, offsets(H, h), offsets(W, w))


def unfold(x: torch.Tensor, g: Geometry) -> torch.Tensor:
    """P[b*N + p] = bicubic(x[b, :, y_i:y_i+h, x_j:x_j+w], scaled size)."""
    h, w = g.patch
    rows = []
    for b in range(x.shape[0]):
        for y in g.offsets_y:
            for xo in g.offsets_x:
                crop = x[b : b + 1, :, y : y + h, xo : xo + w]
                rows.append(F.interpolate(crop, size=g.scaled, mode="bicubic", align_corners=False)[0])
    return torch.stack(rows)


def confidence(logits: torch.Tensor, targets, mode: str = "exp") -> torch.Tensor:
    p = torch.softmax(logits, dim=1)[torch.arange(logits.shape[0]), torch.as_tensor(targets)]
    return {"exp": p.exp(), "prob": p, "uniform": torch.ones_like(p)}[mode]


def taper(window: str, side: int, size: int, offsets: list[int], i: int) -> torch.Tensor:
    """Patch i's window along one axis (docs/algorithm.md §4.1), pixel by pixel: a side
    inside the image ramps over its overlap with the neighbouring patch, at most half the
    patch; ramp value at pixel k from the edge: t = (k + 0.5) / T, linear t, cosine
    (1 - cos(pi t)) / 2."""
    profile = torch.ones(side, dtype=torch.float64)
    if window == "box":
        return profile
    o = offsets[i]
    start = min(offsets[i - 1] + side - o, side // 2) if i > 0 and o > 0 else 0
    end = min(o + side - offsets[i + 1], side // 2) if i + 1 < len(offsets) and o + side < size else 0

    def ramp(k: int, length: int) -> float:
        t = (k + 0.5) / length
        return t if window == "linear" else 0.5 - 0.5 * math.cos(math.pi * t)

    for k in range(start):
        profile[k] = ramp(k, start)
    for k in range(end):
        profile[side - 1 - k] = ramp(k, end)
    return profile


def fold(maps: torch.Tensor, weights: torch.Tensor, g: Geometry, window: str = "box") -> torch.Tensor:
    """M_b = sum_p w * W_p * place_p(bilinear(E, patch size)) / sum_p W_p (W_p = 1: D)."""
    if maps.dim() == 4:
        maps = maps[:, 0]
    n = g.units * g.units
    B = maps.shape[0] // n
    H, W = g.image
    h, w = g.patch
    out = []
    for b in range(B):
        canvas = torch.zeros(H, W, dtype=maps.dtype)
        count = torch.zeros(H, W, dtype=maps.dtype)
        p = 0
        for i, y in enumerate(g.offsets_y):
            for j, xo in enumerate(g.offsets_x):
                k = b * n + p
                resized = F.interpolate(maps[k][None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
                patch_window = torch.outer(taper(window, h, H, g.offsets_y, i), taper(window, w, W, g.offsets_x, j)).to(
                    maps.dtype
                )
                canvas[y : y + h, xo : xo + w] += weights[k] * patch_window * resized
                count[y : y + h, xo : xo + w] += patch_window
                p += 1
        out.append(canvas / count)
    return torch.stack(out)
