"""Metrics benchmark: deletion + insertion for 16 images on the sample model.

Side by side in one run: ucag.metrics' batched implementation (several images and steps
share one forward pass, ordering and replacement on the model's device), a step-by-step
loop (one forward per step and image, as in the RISE reference code), and the bare cost of
the same forward passes. Targets: >= 3x faster than the loop, within 1.3x of the forwards.

Usage: python benchmarks/metrics.py [--images 16] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from ucag.data import SAMPLE_PHOTOS, load_sample_model, sample_image
from ucag.eval import metrics
from ucag.postprocess import gaussian_blur


def loop_metric(model, x, saliency, targets, mode):
    """One forward per step and image (the RISE reference code's structure)."""
    B, C, H, W = x.shape
    step = 8 * W
    T = math.ceil(H * W / step)
    areas = []
    with torch.inference_mode():
        for b in range(B):
            order = torch.argsort(-saliency[b].flatten(), stable=True)
            if mode == "deletion":
                current, end = x[b : b + 1].clone(), torch.zeros_like(x[b : b + 1])
            else:
                current, end = gaussian_blur(x[b], 51, 50.0)[None], x[b : b + 1]
            scores = []
            for k in range(T + 1):
                if k:
                    idx = order[(k - 1) * step : k * step]
                    current.view(1, C, -1)[..., idx] = end.reshape(1, C, -1)[..., idx]
                scores.append(torch.softmax(model(current), 1)[0, targets[b]])
            s = torch.stack(scores)
            areas.append((s.sum() - s[0] / 2 - s[-1] / 2) / T)
    return torch.stack(areas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sm = load_sample_model(args.device)
    x = torch.cat(
        [sm.preprocess(sample_image(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)]).rgb) for i in range(args.images)]
    ).to(args.device)
    with torch.inference_mode():
        targets = sm.model(x).argmax(1)
    g = torch.Generator().manual_seed(0)
    saliency = torch.nn.functional.interpolate(
        torch.rand(len(x), 1, 7, 7, generator=g), size=(224, 224), mode="bilinear"
    )[:, 0].to(args.device)
    steps = math.ceil(224 * 224 / (8 * 224)) + 1
    forwards = 2 * len(x) * steps

    def bare_forwards():
        with torch.inference_mode():
            for s in range(0, forwards, args.batch_size):
                sm.model(x[:1].expand(min(args.batch_size, forwards - s), -1, -1, -1).contiguous())

    def batched():
        d = metrics.deletion(sm.model, x, saliency, targets, batch_size=args.batch_size)
        i = metrics.insertion(sm.model, x, saliency, targets, batch_size=args.batch_size)
        return d.values, i.values

    def looped():
        return loop_metric(sm.model, x, saliency, targets, "deletion"), loop_metric(
            sm.model, x, saliency, targets, "insertion"
        )

    times = {}
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    batched()  # warm-up (CUDA context, kernels)
    for name, fn in (
        ("bare forward passes", bare_forwards),
        ("ucag.metrics (batched)", batched),
        ("step-by-step loop", looped),
    ):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times[name] = time.perf_counter() - start
        if name != "bare forward passes":
            times[name + " result"] = out
    d_b, i_b = times.pop("ucag.metrics (batched) result")
    d_l, i_l = times.pop("step-by-step loop result")
    assert torch.allclose(torch.as_tensor(d_b), d_l.cpu(), atol=1e-4) and torch.allclose(
        torch.as_tensor(i_b), i_l.cpu(), atol=1e-4
    )
    print(
        f"deletion + insertion on {x.device}, {len(x)} images x {steps} steps = {forwards} forwards, batch_size {args.batch_size}"
    )
    for name, t in times.items():
        print(f"  {name:26s} {t:7.2f} s")
    ours = times["ucag.metrics (batched)"]
    print(
        f"  loop / batched = {times['step-by-step loop'] / ours:.2f}x (target >= 3x); batched / forwards = {ours / times['bare forward passes']:.2f}x (target <= 1.3x)"
    )


if __name__ == "__main__":
    main()
