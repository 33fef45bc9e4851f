"""Kernel benchmark: the kernel paths and pure-PyTorch formulations, side by side.

fold:   B=32 images x N=36 partial maps of 322x322 into 224x224 raw maps, on
        - the tch path (UCAG_KERNELS=tch: libtorch, the tensor's device), when it loads,
        - the portable path on torch tensors (UCAG_KERNELS=portable: on the CPU zero-copy
          numpy views into the ndarray + rayon kernel; on CUDA torch operations),
        - the portable core on numpy arrays (CPU),
        - the pure-PyTorch reference formulation (one batched F.interpolate, then the 36
          weighted patches added into the canvas and divided by the coverage),
        - the per-patch loop of the test suite's reference (for information).
unfold: B=32 images of 224x224 into 36 patches of 322x322, on the same paths and a
        per-patch F.interpolate loop.

Prints each best-of-R time, the ratios to the pure-PyTorch formulation and, when both run,
portable time / tch time. Usage: python benchmarks/kernels.py [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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
        print(f"  {name:34s} {t * 1000:9.1f} ms   {label} = {base / t:5.2f}x")
    if "ucag tch" in times and "ucag portable (tensors)" in times:
        ratio = times["ucag portable (tensors)"] / times["ucag tch"]
        print(
            f"  portable time / tch time = {ratio:.2f} (portable {'slower' if ratio > 1 else 'faster'} by {abs(ratio - 1) * 100:.0f}%)"
        )


@contextlib.contextmanager
def kernels_setting(value: str) -> Iterator[None]:
    """UCAG_KERNELS=value for the calls inside (ucag reads it at every call)."""
    before = os.environ.get("UCAG_KERNELS")
    os.environ["UCAG_KERNELS"] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ["UCAG_KERNELS"]
        else:
            os.environ["UCAG_KERNELS"] = before


def kernel_paths(
    call: Callable[[], object], numpy_call: Callable[[], object] | None
) -> dict[str, Callable[[], object]]:
    """The ucag paths that run here, each as a candidate for race()."""

    def on(setting: str) -> Callable[[], None]:
        def run() -> None:
            with kernels_setting(setting):
                call()

        return run

    paths: dict[str, Callable[[], object]] = {}
    if ucag.runtime.tch_module() is not None:
        paths["ucag tch"] = on("tch")
    paths["ucag portable (tensors)"] = on("portable")
    if numpy_call is not None:
        paths["ucag portable (numpy arrays)"] = numpy_call
    return paths


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
    ucag.show_config()
    gen = torch.Generator().manual_seed(0)

    maps = torch.randn(B * N, *grid.scaled_size, generator=gen)
    weights = torch.rand(B * N, generator=gen) + 1
    maps_np, weights_np = maps.numpy(), weights.numpy()
    maps_d, weights_d = maps.to(dev), weights.to(dev)
    check = torch_reference_fold(maps_d, weights_d, grid).cpu()
    with kernels_setting("portable"):
        portable_fold = ucag.fold(maps_d, weights_d, grid).cpu()
    for out in (
        ucag.fold(maps_d, weights_d, grid).cpu(),
        portable_fold,
        torch.from_numpy(ucag.fold(maps_np, weights_np, grid)),
    ):
        # (the first is the default path: tch or torch ops on CUDA, portable on the CPU)
        assert ((out - check).abs().max() / check.abs().max()).item() < 1e-5

    print(f"\nfold: {B} x {N} maps of {grid.scaled_size} -> {B} x {grid.image_size} (best of {R}, interleaved)")
    candidates = {"pure-PyTorch reference": lambda: torch_reference_fold(maps_d, weights_d, grid)}  # noqa: F821  (run before the del below)
    # (the lambdas run before the del below)
    candidates |= kernel_paths(
        lambda: ucag.fold(maps_d, weights_d, grid),  # noqa: F821
        (lambda: ucag.fold(maps_np, weights_np, grid)) if dev == "cpu" else None,  # noqa: F821
    )
    times = race(candidates, R, dev)
    if dev == "cpu":
        geom = spec_reference.geometry((224, 224))
        loop = {"per-patch reference loop (tests)": lambda: spec_reference.fold(maps, weights, geom)}  # noqa: F821
        times.update(race(loop, 1, dev))
    report(times, "pure-PyTorch reference", "reference time / this")
    del maps, weights, maps_np, weights_np, maps_d, weights_d

    images = torch.rand(B, 3, 224, 224, generator=gen)
    images_d = images.to(dev)
    expected = torch_reference_unfold(images_d, grid)
    with kernels_setting("portable"):
        assert ((ucag.unfold(images_d, grid) - expected).abs().max() / expected.abs().max()).item() < 1e-5
    if ucag.runtime.tch_module() is not None:
        with kernels_setting("tch"):
            assert torch.equal(ucag.unfold(images_d, grid), expected)  # the same ATen calls
    del expected
    print(f"\nunfold: {B} x 3 x 224 x 224 -> {B * N} x 3 x {grid.scaled_size} (best of {R}, interleaved)")
    images_np = images.numpy()
    candidates = {"per-patch F.interpolate loop": lambda: torch_reference_unfold(images_d, grid)}
    candidates |= kernel_paths(
        lambda: ucag.unfold(images_d, grid), (lambda: ucag.unfold(images_np, grid)) if dev == "cpu" else None
    )
    report(race(candidates, R, dev), "per-patch F.interpolate loop", "loop time / this")


if __name__ == "__main__":
    main()
