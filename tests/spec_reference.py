"""An independent, deliberately plain PyTorch implementation of docs/algorithm.md §1, §3 and §4.

The tests compare ucag's Rust kernels against it: per-patch ``F.interpolate`` calls and
explicit loops that place, weight and count, written from the definitions alone.
"""

from __future__ import annotations

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


def fold(maps: torch.Tensor, weights: torch.Tensor, g: Geometry) -> torch.Tensor:
    """M_b = sum_p w * place_p(bilinear(E, patch size)) / D."""
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
        for y in g.offsets_y:
            for xo in g.offsets_x:
                k = b * n + p
                resized = F.interpolate(maps[k][None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
                canvas[y : y + h, xo : xo + w] += weights[k] * resized
                count[y : y + h, xo : xo + w] += 1
                p += 1
        out.append(canvas / count)
    return torch.stack(out)
