"""Parameter-randomisation sanity check (docs/algorithm.md §6.8) on the bundled photos.

Cascading randomisation of the sample model (EfficientNet-Lite0) in a few stages; per stage
the mean over the photos of the similarity between the trained model's map and the
randomised model's, for Grad-CAM, UCAG(Grad-CAM) with its default settings, and SobelCAM
(an edge detector that ignores the model: the paper's control, which keeps similarity 1).
Maps: the registry's "cam" post-processing without blur (ReLU, min-max), so the absolute and
signed Spearman correlations coincide and only the absolute one is printed. Targets: each
photo's ImageNet label where it has one, else the trained model's prediction, kept at
every stage.

Usage: python benchmarks/sanity.py [--stages 6] [--seed 0] [--size 224] [--figure out.png]
"""

from __future__ import annotations

import argparse
import time

import torch

from ucag.data import SAMPLE_PHOTOS, load_sample_model, preprocess_image, sample_image
from ucag.eval.sanity import randomization_check, registry_explainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--figure", help="save plot_randomization and its curves here (two PNGs)")
    args = parser.parse_args()

    sample = load_sample_model()
    model = sample.model
    photos = [sample_image(name) for name in SAMPLE_PHOTOS]
    x = torch.cat([preprocess_image(p.rgb, sample.mean, sample.std, args.size) for p in photos])
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    targets = [p.label if p.label is not None else predicted[i] for i, p in enumerate(photos)]

    # the registry's edge-map control: grad-cam's sobel_cam on the unnormalised photo
    sobel = registry_explainer("sobel", mean=sample.mean, std=sample.std)
    explainers = {
        "Grad-CAM": registry_explainer("gradcam"),
        "UCAG(Grad-CAM)": registry_explainer("gradcam", "ucag"),
        "SobelCAM": sobel,
    }
    results = {}
    for label, explain in explainers.items():
        start = time.perf_counter()
        results[label] = randomization_check(
            model, explain, x, targets, stages=args.stages, seed=args.seed, progress=False
        )
        print(f"{label}: {time.perf_counter() - start:.0f} s", flush=True)

    first = next(iter(results.values()))
    print(
        f"\nCascading randomisation of EfficientNet-Lite0, {len(photos)} photos ({', '.join(SAMPLE_PHOTOS)}) at {args.size} px, seed {args.seed}, targets {targets}"
    )
    print(
        "Mean over the photos of the similarity to the trained model's map: Spearman(abs) / SSIM / HOG [constant maps, scored 0]\n"
    )
    print("| stage (randomised from the top down to) | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for k, stage in enumerate(first.stage_names):
        cells = [
            " / ".join(f"{r.scores[m][k].mean():.3f}" for m in ("spearman_abs", "ssim", "hog"))
            + f" [{int(r.constant_maps[k].sum())}]"
            for r in results.values()
        ]
        print(f"| {stage} | " + " | ".join(cells) + " |")

    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        from ucag.eval.plots import plot_randomization, plot_randomization_curves

        stem = args.figure.removesuffix(".png")
        plot_randomization(results, image=x[0], mean=sample.mean, std=sample.std).savefig(f"{stem}.png", dpi=90)
        plot_randomization_curves(results).savefig(f"{stem}_curves.png", dpi=90)
        print(f"\nfigures: {stem}.png, {stem}_curves.png")


if __name__ == "__main__":
    main()
