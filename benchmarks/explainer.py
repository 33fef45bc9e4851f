"""Explainer benchmark on the sample model.

1. Overhead: time of UCAG(GradCAM) on 4 images against the time of the base GradCAM run on
   the same already-unfolded patch batch (same chunks of batch_size). The difference is
   UCAG's own cost (unfold, confidence, fold, post-processing, Python glue); target < 5%.
   Two runs on a shared machine differ by more than 5%, so the share is also measured
   inside one UCAG call: total time minus the time spent in the base method's calls.
2. Memory: peak resident memory (VmHWM) of one UCAG call on 1 and on 16 images at the
   same batch_size, each in a fresh process; target within 1.2x.

Usage: python benchmarks/explainer.py [--images 4] [--memory-images 16] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def setup(n_images: int):
    import ucag
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from ucag.data import SAMPLE_PHOTOS, load_sample_model, sample_image

    sm = load_sample_model()
    photos = [sample_image(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)]).rgb for i in range(n_images)]
    x = torch.cat([sm.preprocess(p) for p in photos])
    cam = GradCAM(model=sm.model, target_layers=[sm.target_layer])
    return ucag, sm, x, cam, ClassifierOutputTarget


def overhead(n_images: int, batch_size: int, repeats: int) -> None:
    ucag, sm, x, cam, Target = setup(n_images)
    targets = sm.model(x).argmax(1).tolist()
    explainer = ucag.UCAG(cam, batch_size=batch_size)
    grid = explainer.grid_for(tuple(x.shape[-2:]))
    patches = ucag.unfold(x, grid)
    rows = [Target(t) for t in targets for _ in range(grid.num_patches)]

    def base_on_patches():
        for s in range(0, len(patches), batch_size):
            cam(input_tensor=patches[s : s + batch_size], targets=rows[s : s + batch_size])

    best = {"base GradCAM on unfolded patches": float("inf"), "UCAG(GradCAM)": float("inf")}
    for _ in range(repeats):  # interleaved, best of `repeats`
        for name, fn in (("base GradCAM on unfolded patches", base_on_patches), ("UCAG(GradCAM)", lambda: explainer(input_tensor=x, targets=targets))):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    base, total = best["base GradCAM on unfolded patches"], best["UCAG(GradCAM)"]
    print(f"overhead: {n_images} images x {grid.num_patches} patches, batch_size {batch_size}, best of {repeats}")
    for name, t in best.items():
        print(f"  {name:34s} {t:7.2f} s")
    print(f"  UCAG's own share, across runs      {100 * (total - base) / total:6.1f} %   (target < 5 %)")

    # Inside one call: time in the base method vs the whole call.
    adapter = explainer.adapter
    inside = [0.0]

    class TimedAdapter:
        def __getattr__(self, name):
            return getattr(adapter, name)

        def __call__(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return adapter(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - start

    explainer.adapter = TimedAdapter()
    start = time.perf_counter()
    explainer(input_tensor=x, targets=targets)
    whole = time.perf_counter() - start
    print(f"  one call: {whole:.2f} s, of which the base method {inside[0]:.2f} s")
    print(f"  UCAG's own share, within one call  {100 * (whole - inside[0]) / whole:6.1f} %   (target < 5 %)")


def high_water_mib() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss, not inherited from
    the parent that forked it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_memory_child(n_images: int, batch_size: int) -> None:
    ucag, sm, x, cam, _ = setup(n_images)
    before = high_water_mib()
    ucag.UCAG(cam, batch_size=batch_size)(input_tensor=x, targets=None)
    after = high_water_mib()
    print(json.dumps({"peak_mib": after, "growth_mib": after - before}))


def memory(n_small: int, n_large: int, batch_size: int) -> None:
    results = {}
    for n in (n_small, n_large):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--batch-size", str(batch_size)], check=True, capture_output=True, text=True).stdout
        results[n] = json.loads(out.strip().splitlines()[-1])
    print(f"memory: peak RSS of one call, batch_size {batch_size}, fresh process each")
    for n, r in results.items():
        print(f"  {n:3d} images: peak {r['peak_mib']:8.0f} MiB, grown during the call {r['growth_mib']:7.0f} MiB")
    ratio = results[n_large]["peak_mib"] / results[n_small]["peak_mib"]
    print(f"  peak ratio {n_large} / {n_small} images: {ratio:.2f}x   (target <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--memory-images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child, args.batch_size)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    overhead(args.images, args.batch_size, args.repeats)
    memory(1, args.memory_images, args.batch_size)


if __name__ == "__main__":
    main()
