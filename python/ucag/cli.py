"""The ``ucag`` command line.

``ucag explain IMAGE...`` explains images with a CAM method with and without UCAG and
writes, per image, one PNG with the photo, the base map and the UCAG map side by side.
``ucag demo`` runs ``explain`` on the bundled photos with the bundled sample model.
``ucag evaluate`` measures methods with and without UCAG over a dataset
(:func:`ucag.eval.evaluate`); under ``torchrun`` it shards the dataset.
``ucag tune`` sweeps UCAG settings on the user's images (:func:`ucag.eval.tune`).

The command line is the application on top of both layers: it uses the library and the
evaluation toolkit (:mod:`ucag.eval`), and its method choices come from the registry.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

import ucag

from .eval.registry import BASELINES, METHODS, VARIANTS, method, methods_of_kind
from .eval.runner import DEFAULT_METRICS, IMAGENET_MEAN, IMAGENET_STD, METRICS

if TYPE_CHECKING:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from .data import SampleModel

#: Methods ``explain``, ``demo`` and ``tune`` can put under UCAG (every registered base).
BASE_METHODS = methods_of_kind("gradcam", "propagation")


def _load_user_model(spec: str, weights: str | None, layer: str, mean: Sequence[float], std: Sequence[float]) -> SampleModel:
    from .data import SampleModel

    module_name, _, factory_name = spec.partition(":")
    if not factory_name:
        raise ValueError(f"--model: expected 'package.module:factory', got {spec!r}")
    model = getattr(importlib.import_module(module_name), factory_name)()
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except RuntimeError as err:
            raise ValueError(f"--weights: {weights} does not fit {spec}: {err}") from err
    if not layer:
        raise ValueError("--layer: required with --model (the CAM target layer, e.g. layer4)")
    target = model.get_submodule(layer)
    names = [str(i) for i in range(1000)]
    return SampleModel(model=model.eval(), target_layer=target, class_names=names, mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]))


def _read_image(path: str) -> tuple[str, np.ndarray]:
    from .data import SAMPLE_PHOTOS, sample_image

    p = Path(path)
    if not p.exists():
        if path in SAMPLE_PHOTOS:
            return path, sample_image(path).rgb
        raise ValueError(f"IMAGE: no such file {path!r} (bundled photos: {', '.join(SAMPLE_PHOTOS)})")
    from PIL import Image

    return p.stem, np.asarray(Image.open(p).convert("RGB"))


def explain(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only; no window
    import matplotlib.pyplot as plt

    from . import viz
    from .data import load_sample_model

    if args.model:
        sm = _load_user_model(args.model, args.weights, args.layer, args.mean, args.std)
    else:
        sm = load_sample_model()
    spec = method(args.method)
    method_name = spec.display_name
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with spec.build(sm.model, sm.target_layer) as cam, ucag.UCAG(cam, units=args.units, batch_size=args.batch_size, progress=args.progress) as explainer:
        for path in args.images:
            name, rgb = _read_image(path)
            x = sm.preprocess(rgb)
            with torch.no_grad():
                probs = sm.model(x).softmax(1)[0]
            target = int(probs.argmax()) if args.target is None else args.target
            start = time.perf_counter()
            base_map = cam(input_tensor=x, targets=[_classifier_target(target)])[0]
            base_time = time.perf_counter() - start
            start = time.perf_counter()
            explanation = explainer.explain(x, [target])
            ucag_time = time.perf_counter() - start
            ucag_map = explanation.saliency[0].cpu().numpy()
            photo = (sm.denormalize(x)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            label = sm.class_names[target] if target < len(sm.class_names) else str(target)
            title = f"{name}: class {target} '{label}', confidence {float(probs[target]):.3f}"
            panels = {method_name: base_map, f"UCAG({method_name})": ucag_map}
            if explainer.postprocess == "none":  # signed maps: red for the class, blue against
                fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.6), layout="constrained")
                axes[0].imshow(photo)
                axes[0].set_axis_off()
                axes[0].set_title("image")
                for ax, (panel, signed) in zip(axes[1:], panels.items(), strict=True):
                    viz.show_signed(signed, photo, ax=ax, title=panel)
            else:
                fig = viz.compare([photo], {panel: [m] for panel, m in panels.items()})
            fig.suptitle(title)
            path_png = out_dir / f"{name}_{args.method}.png"
            fig.savefig(path_png, dpi=90)
            plt.close(fig)
            print(f"{title}; {method_name} {base_time:.1f} s, UCAG {ucag_time:.1f} s -> {path_png}")
    return 0


def _classifier_target(index: int) -> ClassifierOutputTarget:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return ClassifierOutputTarget(index)


def demo(args: argparse.Namespace) -> int:
    args.images = args.photos
    return explain(args)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="importable factory 'package.module:function' returning the model (default: the sample model)")
    p.add_argument("--weights", help="local weights file (a state dict) for --model")
    p.add_argument("--layer", help="dotted name of the CAM target layer in --model, e.g. layer4")
    p.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN, help="input normalisation mean for --model")
    p.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD, help="input normalisation std for --model")


def _add_explain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="gradcam", choices=BASE_METHODS, help="base method (default gradcam)")
    p.add_argument("--units", type=int, default=6, help="patches per axis (default 6)")
    p.add_argument("--target", type=int, default=None, help="class index to explain (default: the prediction)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per forward/backward (default 16)")
    p.add_argument("--out", default="out", help="folder for the PNGs (default ./out)")
    p.add_argument("--progress", action="store_true", help="show a progress bar per image")
    _add_model_options(p)


#: What ``ucag evaluate --samples`` compares (the methods of the paper's Table 1 and two more).
SAMPLE_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam")


def _init_distributed() -> torch.device:
    """Join the process group a launcher such as torchrun describes (gloo on CPU, NCCL on
    GPU) and pick this process's device."""
    import os

    dist = torch.distributed
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.device(f"cuda:{local_rank}" if cuda else "cpu")


def evaluate(args: argparse.Namespace) -> int:
    from .data import load_sample_model
    from .eval.datasets import open_dataset
    from .eval.runner import evaluate as run_evaluation

    device = torch.device(args.device) if args.device else _init_distributed()
    if args.model:
        sm = _load_user_model(args.model, args.weights, args.layer, args.mean, args.std)
        sm.model.to(device)
    else:
        sm = load_sample_model(device)
    dataset = open_dataset("samples" if args.samples else args.dataset)
    methods = args.methods or (SAMPLE_METHODS if args.samples else ("gradcam",))
    options = {"units": args.units, "batch_size": args.batch_size}
    if args.global_view:
        options["global_view"] = args.global_view
    summary = run_evaluation(
        sm.model,
        sm.target_layer,
        dataset,
        args.out,
        methods=methods,
        variants=args.variants,
        baselines=args.baselines,
        metrics=args.metrics,
        mean=sm.mean,
        std=sm.std,
        input_size=sm.input_size,
        ucag_options=options,
        step=args.step,
        metric_batch_size=args.metric_batch_size,
        limit=args.limit,
        progress=not args.no_progress,
    )
    if torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        # every rank finishes before any tears down: a rank that destroyed its group and
        # exited while another still held the connection aborted at exit now and then
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if rank != 0:
            return 0
    print(summary.markdown())
    print(f"per-image results, summary and curves in {summary.out}/")
    return 0


def tune(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only; no window
    import matplotlib.pyplot as plt

    from .data import load_sample_model
    from .eval.tuning import tune as run_tune

    sm = _load_user_model(args.model, args.weights, args.layer, args.mean, args.std) if args.model else load_sample_model()
    names, photos = zip(*(_read_image(path) for path in args.images), strict=True)
    x = torch.cat([sm.preprocess(rgb) for rgb in photos])
    space = {
        "units": args.units,
        "patch_fraction": args.patch_fractions,
        "scale": args.scales,
        "weighting": args.weightings,
        "global_view": [None if v == "none" else v for v in args.global_views],
    }
    with method(args.method).build(sm.model, sm.target_layer) as cam:
        result = run_tune(sm.model, cam, x, space=space, objective=args.objective, step=args.step, batch_size=args.batch_size, progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.md").write_text(result.markdown())
    with open(out / "tune.csv", "w") as f:
        f.write("units,patch_fraction,scale,weighting,global_view,image,deletion,insertion\n")
        for r in result.rows:
            s = r.setting
            for name, d, i in zip(names, r.deletion, r.insertion, strict=True):
                f.write(f"{s.units},{s.patch_fraction!r},{s.scale!r},{s.weighting},{s.global_view or ''},{name},{d!r},{i!r}\n")
    fig = result.plot()
    fig.savefig(out / "tune.png", dpi=100)
    plt.close(fig)
    print(result.markdown())
    print(f"table, per-image scores and plot in {out}/ (tune.md, tune.csv, tune.png)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .data import SAMPLE_PHOTOS

    parser = argparse.ArgumentParser(prog="ucag", description="UCAG saliency maps from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain", help="explain images (files or bundled photo names) with and without UCAG")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_explain_options(p)
    p.set_defaults(run=explain)
    p = sub.add_parser("demo", help="run explain on the bundled photos with the sample model")
    p.add_argument("--photos", nargs="+", default=["chelsea", "coffee", "voc"], choices=SAMPLE_PHOTOS)
    _add_explain_options(p)
    p.set_defaults(run=demo)
    p = sub.add_parser("evaluate", help="measure methods with and without UCAG over a dataset (resumable; torchrun shards it)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", action="store_true", help="the bundled photos with the sample model")
    source.add_argument("--dataset", help="samples | imagenet:ROOT[:LABELS] | voc2007:ROOT | coco2014:ROOT:ANNOTATIONS | imagenet-seg:PATH")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), help=f"default: {' '.join(SAMPLE_METHODS)} with --samples, else gradcam")
    p.add_argument("--variants", nargs="+", default=["base", "ucag"], choices=list(VARIANTS), help="default: base ucag")
    p.add_argument("--baselines", nargs="*", default=[], choices=BASELINES, help="also run these baselines")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=METRICS, help="default: all but segmentation")
    p.add_argument("--units", type=int, default=6, help="UCAG patches per axis (default 6)")
    p.add_argument("--batch-size", type=int, default=16, help="UCAG patches per forward/backward (default 16)")
    p.add_argument("--global-view", choices=["product", "mean"], help="fuse UCAG with the full-image map (beyond the paper)")
    p.add_argument("--metric-batch-size", type=int, default=8, help="perturbed images per forward in the metrics (default 8)")
    p.add_argument("--step", type=int, default=None, help="pixels per deletion/insertion step (default 8 * width)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--out", default="evaluation", help="output folder; rerun to resume (default ./evaluation)")
    p.add_argument("--device", help="e.g. cpu or cuda:0 (default: cuda:LOCAL_RANK when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model_options(p)
    p.set_defaults(run=evaluate)
    p = sub.add_parser("tune", help="find UCAG settings for a model on your images (deletion/insertion per setting)")
    p.add_argument("images", nargs="*", metavar="IMAGE", default=list(SAMPLE_PHOTOS[:4]), help="files or bundled photo names (default: four bundled photos)")
    p.add_argument("--method", default="gradcam", choices=BASE_METHODS, help="base method (default gradcam)")
    p.add_argument("--units", type=int, nargs="+", default=[4, 6, 8], help="patches per axis to try (default 4 6 8)")
    p.add_argument("--patch-fractions", type=float, nargs="+", default=[124 / 224, 0.65], help="patch side / image side to try")
    p.add_argument("--scales", type=float, nargs="+", default=[2.6], help="upsampling factors to try (default 2.6)")
    p.add_argument("--weightings", nargs="+", default=["exp", "uniform"], choices=["exp", "prob", "uniform"])
    p.add_argument("--global-views", nargs="+", default=["none", "product"], choices=["none", "product", "mean"])
    p.add_argument("--objective", default="insertion-deletion", choices=["insertion-deletion", "insertion", "deletion"])
    p.add_argument("--step", type=int, default=None, help="pixels per deletion/insertion step (default 8 * width)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per forward/backward (default 16)")
    p.add_argument("--out", default="tune", help="output folder (default ./tune)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model_options(p)
    p.set_defaults(run=tune)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (ValueError, TypeError, ImportError) as err:
        print(f"ucag: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
