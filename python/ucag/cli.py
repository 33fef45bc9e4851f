"""The ``ucag`` command line.

``ucag explain IMAGE...`` explains images with a CAM method with and without UCAG and
writes, per image, one PNG with the photo, the base map and the UCAG map side by side.
``ucag demo`` runs ``explain`` on the bundled photos with the bundled sample model.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ucag

#: --method names -> pytorch-grad-cam classes.
METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
    "fullgrad": "FullGrad",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_user_model(spec: str, weights: str | None, layer: str, mean, std):
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
    return SampleModel(model=model.eval(), target_layer=target, class_names=names, mean=tuple(mean), std=tuple(std))


def _read_image(path: str) -> tuple[str, np.ndarray]:
    from .data import SAMPLE_PHOTOS, sample_image

    p = Path(path)
    if not p.exists():
        if path in SAMPLE_PHOTOS:
            return path, sample_image(path).rgb
        raise ValueError(f"IMAGE: no such file {path!r} (bundled photos: {', '.join(SAMPLE_PHOTOS)})")
    from PIL import Image

    return p.stem, np.asarray(Image.open(p).convert("RGB"))


def _figure(photo: np.ndarray, base_map: np.ndarray, ucag_map: np.ndarray, title: str, method: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.9), layout="constrained")
    panels = [(None, "photo"), (base_map, method), (ucag_map, f"UCAG({method})")]
    for ax, (saliency, label) in zip(axes, panels):
        ax.imshow(photo)
        if saliency is not None:
            ax.imshow(saliency, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(title)
    return fig


def explain(args: argparse.Namespace) -> int:
    import pytorch_grad_cam

    from .data import load_sample_model

    if args.model:
        sm = _load_user_model(args.model, args.weights, args.layer, args.mean, args.std)
    else:
        sm = load_sample_model()
    cam_class = getattr(pytorch_grad_cam, METHODS[args.method])
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cam = cam_class(model=sm.model, target_layers=[sm.target_layer])
    with ucag.UCAG(cam, units=args.units, batch_size=args.batch_size, progress=args.progress) as explainer:
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
            fig = _figure(photo, base_map, ucag_map, title, cam_class.__name__)
            path_png = out_dir / f"{name}_{args.method}.png"
            fig.savefig(path_png, dpi=90)
            import matplotlib.pyplot as plt

            plt.close(fig)
            print(f"{title}; {cam_class.__name__} {base_time:.1f} s, UCAG {ucag_time:.1f} s -> {path_png}")
    return 0


def _classifier_target(index: int):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return ClassifierOutputTarget(index)


def demo(args: argparse.Namespace) -> int:
    args.images = args.photos
    return explain(args)


def _add_explain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="gradcam", choices=sorted(METHODS), help="CAM method (default gradcam)")
    p.add_argument("--units", type=int, default=6, help="patches per axis (default 6)")
    p.add_argument("--target", type=int, default=None, help="class index to explain (default: the prediction)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per forward/backward (default 16)")
    p.add_argument("--out", default="out", help="folder for the PNGs (default ./out)")
    p.add_argument("--progress", action="store_true", help="show a progress bar per image")
    p.add_argument("--model", help="importable factory 'package.module:function' returning the model (default: the sample model)")
    p.add_argument("--weights", help="local weights file (a state dict) for --model")
    p.add_argument("--layer", help="dotted name of the CAM target layer in --model, e.g. layer4")
    p.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN, help="input normalisation mean for --model")
    p.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD, help="input normalisation std for --model")


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
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, ImportError) as err:
        print(f"ucag: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
