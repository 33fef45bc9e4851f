"""Faithfulness of the bf16 path: UCAG maps and their deletion/insertion at bf16 against fp32.

On the bundled photos and the pretrained sample model, for each gradient-based CAM, one run
computes the UCAG map at fp32 (contiguous) and at bf16 + channels-last ("auto"), and
compares (docs/algorithm.md §10):

- the maps on [0, 1]: Spearman rank correlation (lowest over the photos) and max |difference|;
- the patch weights exp(p): max |difference|;
- deletion and insertion AUC (RISE, 224 px, 8 rows per step), as a results table reports
  them (the mean over the photos): the whole bf16 pipeline (bf16 maps measured by bf16
  forwards) against the fp32 one; and, per photo, the mean |difference| of the whole
  pipeline and of the maps alone (bf16 maps measured by fp32 forwards).

Thresholds (issue 29): Spearman >= 0.99 on every photo, and the mean deletion and insertion
AUC within 0.005 of fp32's. A method that misses them is listed as kept in float32.

Usage: python benchmarks/precision_faithfulness.py [--methods GradCAM,GradCAMPlusPlus,LayerCAM]
       [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch
from scipy.stats import spearmanr

METHODS = ("GradCAM", "GradCAMPlusPlus", "LayerCAM", "XGradCAM", "HiResCAM")
SPEARMAN_MIN = 0.99
AUC_TOLERANCE = 0.005


def compare(method: str, sm, images: torch.Tensor, targets: list[int]) -> dict:
    import pytorch_grad_cam

    import ucag
    from ucag.eval import metrics

    cam = getattr(pytorch_grad_cam, method)(model=sm.model, target_layers=[sm.target_layer])
    runs = {}
    for precision in ("fp32", "bf16"):
        explainer = ucag.UCAG(cam, precision=precision)
        explanations = [explainer.explain(images[i : i + 1], [t]) for i, t in enumerate(targets)]
        maps = torch.cat([e.saliency for e in explanations])
        weights = torch.cat([e.weights for e in explanations])
        curves = {
            name: getattr(metrics, name)(sm.model, images, maps, targets, precision=precision).values
            for name in ("deletion", "insertion")
        }
        runs[precision] = (maps, weights, curves)
    maps32, weights32, auc32 = runs["fp32"]
    maps16, weights16, auc16 = runs["bf16"]
    rho = [
        float(spearmanr(maps32[i].flatten().numpy(), maps16[i].flatten().numpy()).statistic)
        for i in range(len(targets))
    ]
    maps_only = {
        name: getattr(metrics, name)(sm.model, images, maps16, targets).values for name in ("deletion", "insertion")
    }
    row = {
        "method": method,
        "spearman_min": min(rho),
        "spearman_mean": float(np.mean(rho)),
        "map_max_abs_diff": float((maps32 - maps16).abs().max()),
        "weight_max_abs_diff": float((weights32 - weights16).abs().max()),
    }
    for name in ("deletion", "insertion"):
        pipeline = np.abs(auc16[name] - auc32[name])
        alone = np.abs(maps_only[name] - auc32[name])
        row[f"{name}_fp32"] = float(auc32[name].mean())
        row[f"{name}_bf16"] = float(auc16[name].mean())
        row[f"{name}_mean_abs_diff"] = float(pipeline.mean())
        row[f"{name}_max_abs_diff"] = float(pipeline.max())
        row[f"{name}_maps_only_mean_abs_diff"] = float(alone.mean())
    row["faithful"] = bool(
        row["spearman_min"] >= SPEARMAN_MIN
        and abs(row["deletion_bf16"] - row["deletion_fp32"]) <= AUC_TOLERANCE
        and abs(row["insertion_bf16"] - row["insertion_fp32"]) <= AUC_TOLERANCE
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS[:3]))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from ucag.data import SAMPLE_PHOTOS, load_sample_model, sample_image

    sm = load_sample_model()
    images = torch.cat([sm.preprocess(sample_image(name).rgb) for name in SAMPLE_PHOTOS])
    with torch.inference_mode():
        targets = sm.model(images).argmax(1).tolist()
    print(f"bf16 + channels-last against fp32, UCAG on {len(SAMPLE_PHOTOS)} photos, {platform.processor() or 'cpu'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; targets: the predicted classes {targets}")
    print()
    print(
        "| UCAG(method) | Spearman, min / mean | max abs diff, maps | max abs diff, weights "
        "| deletion, fp32 → bf16 | insertion, fp32 → bf16 "
        "| per photo mean abs diff, deletion / insertion: pipeline; maps alone | bf16 faithful |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for method in args.methods.split(","):
        row = compare(method, sm, images, targets)
        rows.append(row)
        print(
            f"| {method} | {row['spearman_min']:.4f} / {row['spearman_mean']:.4f} | {row['map_max_abs_diff']:.3f} "
            f"| {row['weight_max_abs_diff']:.4f} "
            f"| {row['deletion_fp32']:.4f} → {row['deletion_bf16']:.4f} "
            f"| {row['insertion_fp32']:.4f} → {row['insertion_bf16']:.4f} "
            f"| {row['deletion_mean_abs_diff']:.4f} / {row['insertion_mean_abs_diff']:.4f}; "
            f"{row['deletion_maps_only_mean_abs_diff']:.4f} / {row['insertion_maps_only_mean_abs_diff']:.4f} "
            f"| {'yes' if row['faithful'] else 'no: stays fp32'} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
