"""Explainer benchmark on the sample model (and on a ResNet-50, the paper's model).

1. Speed, one run, interleaved, best of R: UCAG(Grad-CAM) on 4 photos (the backward pass
   stopped at the target layer) against (a) the bare no-grad forward passes of the same
   144 patches, (b) the untruncated UCAG run, (c) pytorch-grad-cam's own GradCAM on the same
   patches, and (d) grad-cam's SESS (default settings) on the same photos. Targets: within
   1.3x of (a), at least 2.5x faster than (b). Repeated for a torchvision ResNet-50 with
   random weights at 224 px.
2. Overhead: UCAG's own share of one call (unfold, confidence, fold, post-processing, glue):
   the call's time minus the time spent in the base method; target < 5%.
3. Memory: peak resident memory (VmHWM) of one UCAG call on 1 and on 16 images at the
   same batch_size, each in a fresh process; target within 1.2x.

Usage: python benchmarks/explainer.py [--images 4] [--memory-images 16] [--batch-size 16]
       [--skip-resnet] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def setup(n_images: int):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import ucag
    from ucag.data import SAMPLE_PHOTOS, load_sample_model, sample_image

    sm = load_sample_model()
    photos = [sample_image(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)]).rgb for i in range(n_images)]
    x = torch.cat([sm.preprocess(p) for p in photos])
    cam = GradCAM(model=sm.model, target_layers=[sm.target_layer])
    return ucag, sm, x, cam, ClassifierOutputTarget


def race(candidates: dict, repeats: int) -> dict:
    best = {name: float("inf") for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def speed(label: str, model, layer, x, batch_size: int, repeats: int, with_sess: bool) -> None:
    from pytorch_grad_cam import SESS, GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import ucag

    with torch.inference_mode():
        targets = model(x).argmax(1).tolist()
    cam = GradCAM(model=model, target_layers=[layer])
    fast = ucag.UCAG(cam, batch_size=batch_size)
    full = ucag.UCAG(cam, batch_size=batch_size, truncate_backward=False)
    grid = fast.grid_for(tuple(x.shape[-2:]))
    patches = ucag.unfold(x, grid)
    rows = [ClassifierOutputTarget(t) for t in targets for _ in range(grid.num_patches)]

    def forwards_only():
        with torch.inference_mode():
            for s in range(0, len(patches), batch_size):
                model(patches[s : s + batch_size])

    def gradcam_on_patches():
        for s in range(0, len(patches), batch_size):
            cam(input_tensor=patches[s : s + batch_size], targets=rows[s : s + batch_size])

    candidates = {
        "UCAG(GradCAM), truncated backward": lambda: fast(input_tensor=x, targets=targets),
        "(a) no-grad forwards of the patches": forwards_only,
        "(b) UCAG(GradCAM), full backward": lambda: full(input_tensor=x, targets=targets),
        "(c) grad-cam GradCAM on the patches": gradcam_on_patches,
    }
    if with_sess:
        sess = SESS(model=model, target_layers=[layer])
        candidates["(d) grad-cam SESS on the photos"] = lambda: sess(x, [ClassifierOutputTarget(t) for t in targets])
    times = race(candidates, repeats)
    ours = times["UCAG(GradCAM), truncated backward"]
    print(
        f"\nspeed, {label}: {len(x)} images x {grid.num_patches} patches of {grid.scaled_size}, batch_size {batch_size}, best of {repeats}"
    )
    for name, t in times.items():
        print(f"  {name:38s} {t:7.2f} s   this / UCAG = {t / ours:5.2f}x")
    print(
        f"  UCAG / (a) = {ours / times['(a) no-grad forwards of the patches']:.2f}x (target <= 1.3x); (b) / UCAG = {times['(b) UCAG(GradCAM), full backward'] / ours:.2f}x (target >= 2.5x)"
    )


def overhead(x, cam, batch_size: int) -> None:
    """UCAG's own share of one call: total time minus the time spent in the base method."""
    import ucag

    explainer = ucag.UCAG(cam, batch_size=batch_size)
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
    explainer(input_tensor=x, targets=None)
    whole = time.perf_counter() - start
    print(
        f"\noverhead: one UCAG(GradCAM) call on {len(x)} images: {whole:.2f} s, of which the base method {inside[0]:.2f} s"
    )
    print(
        f"  UCAG's own share (unfold, confidence, fold, post-processing, glue): {100 * (whole - inside[0]) / whole:.1f} %   (target < 5 %)"
    )


def high_water_mib() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss, not inherited from
    the parent that forked it)."""
    with open("/proc/self/status", encoding="utf-8") as status:
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
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--batch-size", str(batch_size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
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
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child, args.batch_size)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    _, sm, x, cam, _ = setup(args.images)
    speed("sample EfficientNet-Lite0", sm.model, sm.target_layer, x, args.batch_size, args.repeats, with_sess=True)
    overhead(x, cam, args.batch_size)
    if not args.skip_resnet:
        import torchvision

        torch.manual_seed(0)
        resnet = torchvision.models.resnet50(weights=None).eval()
        speed("ResNet-50 (random weights) at 224 px", resnet, resnet.layer4, x, args.batch_size, 1, with_sess=False)
    if not args.skip_memory:
        memory(1, args.memory_images, args.batch_size)


if __name__ == "__main__":
    main()
