"""Kernel benchmark: fold and unfold against pure-PyTorch formulations, side by side.

fold:   B=32 images x N=36 partial maps of 322x322 into 224x224 raw maps, on
        - the numpy path (ndarray + rayon kernel, GIL released),
        - the torch path (tch, the tensor's device),
        - the pure-PyTorch reference formulation (one batched F.interpolate, then the 36
          weighted patches added into the canvas and divided by the coverage),
        - the per-patch loop of the test suite's SPEC reference (for information).
unfold: B=32 images of 224x224 into 36 patches of 322x322, on the torch path, the numpy
        path, and a per-patch F.interpolate loop.

Prints each best-of-R time and the ratios. Usage: python benchmarks/kernels.py [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import ucag

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import spec_reference  # noqa: E402


def race(candidates: dict, repeats: int, device: str) -> dict:
    """Best time of each candidate over `repeats` rounds, interleaved so that the machine's
    load drifts (these 2-core machines are shared) hit every candidate alike."""
    best = {name: float("inf") for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def report(times: dict, baseline: str, label: str) -> None:
    base = times[baseline]
    for name, t in times.items():
        print(f"  {name:30s} {t * 1000:9.1f} ms   {label} = {base / t:5.2f}x")


def torch_reference_fold(maps: torch.Tensor, weights: torch.Tensor, grid: ucag.Grid) -> torch.Tensor:
    n = grid.num_patches
    B = maps.shape[0] // n
    h, w = grid.patch_size
    resized = F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)
    weighted = (resized[:, 0] * weights[:, None, None]).view(B, n, h, w)
    canvas = maps.new_zeros(B, *grid.image_size)
    count = maps.new_zeros(grid.image_size)
    for p in range(n):
        y, x = grid.offsets_y[p // grid.units], grid.offsets_x[p % grid.units]
        canvas[:, y : y + h, x : x + w] += weighted[:, p]
        count[y : y + h, x : x + w] += 1
    return canvas / count


def torch_reference_unfold(images: torch.Tensor, grid: ucag.Grid) -> torch.Tensor:
    h, w = grid.patch_size
    patches = [
        F.interpolate(images[:, :, y : y + h, x : x + w], size=grid.scaled_size, mode="bicubic", align_corners=False)
        for y in grid.offsets_y
        for x in grid.offsets_x
    ]
    return torch.stack(patches, 1).flatten(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dev, B, R = args.device, args.batch, args.repeats
    grid = ucag.Grid(224)
    N = grid.num_patches
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}; {grid}")
    gen = torch.Generator().manual_seed(0)

    maps = torch.randn(B * N, *grid.scaled_size, generator=gen)
    weights = torch.rand(B * N, generator=gen) + 1
    maps_np, weights_np = maps.numpy(), weights.numpy()
    maps_d, weights_d = maps.to(dev), weights.to(dev)
    check = torch_reference_fold(maps_d, weights_d, grid).cpu()
    for out in (ucag.fold(maps_d, weights_d, grid).cpu(), torch.from_numpy(ucag.fold(maps_np, weights_np, grid))):
        assert ((out - check).abs().max() / check.abs().max()).item() < 1e-5

    print(f"\nfold: {B} x {N} maps of {grid.scaled_size} -> {B} x {grid.image_size} (best of {R}, interleaved)")
    candidates = {
        "pure-PyTorch reference": lambda: torch_reference_fold(maps_d, weights_d, grid),
        "ucag torch/tch": lambda: ucag.fold(maps_d, weights_d, grid),
    }
    if dev == "cpu":
        candidates["ucag numpy/rayon"] = lambda: ucag.fold(maps_np, weights_np, grid)
    times = race(candidates, R, dev)
    if dev == "cpu":
        geom = spec_reference.geometry((224, 224))
        times.update(race({"per-patch SPEC loop (tests)": lambda: spec_reference.fold(maps, weights, geom)}, 1, dev))
    report(times, "pure-PyTorch reference", "reference time / this")
    del maps, weights, maps_np, weights_np, maps_d, weights_d

    images = torch.rand(B, 3, 224, 224, generator=gen)
    images_d = images.to(dev)
    assert torch.equal(ucag.unfold(images_d, grid), torch_reference_unfold(images_d, grid))
    print(f"\nunfold: {B} x 3 x 224 x 224 -> {B * N} x 3 x {grid.scaled_size} (best of {R}, interleaved)")
    candidates = {
        "per-patch F.interpolate loop": lambda: torch_reference_unfold(images_d, grid),
        "ucag torch/tch": lambda: ucag.unfold(images_d, grid),
    }
    if dev == "cpu":
        images_np = images.numpy()
        candidates["ucag numpy/rayon"] = lambda: ucag.unfold(images_np, grid)
    report(race(candidates, R, dev), "per-patch F.interpolate loop", "loop time / this")


if __name__ == "__main__":
    main()
