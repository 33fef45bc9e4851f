"""Digests of the maps every entry point computes on the bundled photos, to show that a
refactor leaves them bit-identical.

Run it before and after a change and compare the two outputs line by line::

    python benchmarks/maps_digest.py > before.txt   # on the old commit
    python benchmarks/maps_digest.py > after.txt    # on the new one
    diff before.txt after.txt                       # no output: every map is bit-identical

Each line names a computation (base method, variant, setting) and gives the SHA-256 of
the bytes of its raw and post-processed maps (float32, C order) on two photos with the
sample EfficientNet-Lite0, and the mean of the map so a changed line shows how much
it moved. Runs on the CPU in about two minutes on two cores.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _find(*paths: str) -> Any:
    """The first attribute that exists among dotted ``module:attr`` paths (the refactor
    moves modules; the script runs on both sides of it)."""
    for path in paths:
        module_name, _, attr = path.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {paths} exists")


def digest(array: Any) -> str:
    a = np.ascontiguousarray(torch.as_tensor(array).detach().float().cpu().numpy())
    return f"{hashlib.sha256(a.tobytes()).hexdigest()[:16]} mean={a.mean():.6g}"


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import ucag
    import ucag.data

    sm = ucag.data.load_sample_model()
    model, layer = sm.model, sm.target_layer
    x = torch.cat([sm.preprocess(ucag.data.sample_image(name).rgb) for name in ("chelsea", "voc")])
    targets = [285, 245]
    LRP = _find("ucag.bases.propagation:LRP", "ucag.propagation:LRP")
    ContrastiveLRP = _find("ucag.bases.propagation:ContrastiveLRP", "ucag.propagation:ContrastiveLRP")
    explain_with = _find(
        "ucag.eval.runner:explain_with", "ucag.eval.registry:explain_with", "ucag.methods:explain_with"
    )
    tune = _find("ucag.eval.tuning:tune", "ucag.tuning:tune")

    lines: list[str] = []

    def record(name: str, compute: Callable[[], Any]) -> None:
        result = compute()
        if hasattr(result, "raw"):
            lines.append(f"{name}: raw {digest(result.raw)} saliency {digest(result.saliency)}")
        else:
            lines.append(f"{name}: {digest(result)}")
        print(lines[-1], flush=True)

    import inspect

    # Captum's options: a dict since the house refactor, loose keyword arguments before it
    as_dict = "attribute_kwargs" in inspect.signature(ucag.UCAG).parameters

    def ucag_with(
        base_factory: Callable[[], Any], attribute: dict[str, Any] | None = None, **options: Any
    ) -> Callable[[], Any]:
        if attribute:
            options |= {"attribute_kwargs": attribute} if as_dict else attribute

        def run() -> Any:
            base = base_factory()
            with ucag.UCAG(base, model=model, **options) as explainer:
                return explainer.explain(x, targets)

        return run

    record("ucag gradcam", ucag_with(lambda: GradCAM(model, [layer])))
    record("ucag gradcam untruncated", ucag_with(lambda: GradCAM(model, [layer]), truncate_backward=False))
    record("ucag gradcam++ prob", ucag_with(lambda: GradCAMPlusPlus(model, [layer]), weighting="prob"))
    record("ucag layercam uniform units=4", ucag_with(lambda: LayerCAM(model, [layer]), weighting="uniform", units=4))
    record(
        "ucag eigencam patch=(100,90) scale=2",
        ucag_with(lambda: EigenCAM(model, [layer]), patch_size=(100, 90), scale=2.0),
    )
    record("ucag gradcam global product", ucag_with(lambda: GradCAM(model, [layer]), global_view="product"))
    record(
        "ucag gradcam global mean 0.3",
        ucag_with(lambda: GradCAM(model, [layer]), global_view="mean", global_weight=0.3),
    )
    record(
        "ucag gradcam target objects",
        lambda: ucag.UCAG(GradCAM(model, [layer])).explain(x, [ClassifierOutputTarget(t) for t in targets]),
    )
    record("ucag gradcam call numpy", lambda: ucag.UCAG(GradCAM(model, [layer]))(input_tensor=x, targets=targets))
    record("ucag lrp", ucag_with(lambda: LRP(model), units=3))
    record("ucag clrp", ucag_with(lambda: ContrastiveLRP(model), units=3))

    from captum.attr import IntegratedGradients, LayerGradCam

    record("ucag captum layergradcam", ucag_with(lambda: LayerGradCam(model, layer)))
    record(
        "ucag captum integrated gradients",
        ucag_with(lambda: IntegratedGradients(model), {"n_steps": 4}, units=2, patch_size=150),
    )

    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    record("ucag zennit", ucag_with(lambda: Gradient(model, EpsilonPlusFlat()), units=3))
    record("ucag callable", ucag_with(lambda: lambda patches, t: patches.mean(dim=1), units=3))
    record("upscale gradcam", lambda: ucag.baselines.Upscale(GradCAM(model, [layer]), model=model).explain(x, targets))
    record("cameras", lambda: ucag.baselines.CAMERAS(model, layer, resolutions=[224, 324]).explain(x, targets))
    record("lrp on its own", lambda: LRP(model)(input_tensor=x, targets=targets))
    for method, variant in (
        ("gradcam", "base"),
        ("gradcam", "ucag"),
        ("gradcam", "upscale"),
        ("gradcam++", "sess"),
        ("lrp", "ucag"),
        ("fullgrad", "base"),
        ("cameras", "base"),
    ):
        options = {"units": 3} if variant == "ucag" else {}
        record(
            f"explain_with {method} {variant}",
            lambda m=method, v=variant, o=options: explain_with(
                m,
                v,
                model,
                layer,
                x,
                targets,
                ucag_options=o,
                baseline_options={"cameras": {"resolutions": [224, 324]}, "sess": {"num_scales": 2}},
            ),
        )
    result = tune(
        model,
        GradCAM(model, [layer]),
        x,
        targets,
        space={"units": (3, 4), "weighting": ("exp", "uniform"), "global_view": (None, "product")},
        progress=False,
        step=224 * 28,
    )
    for row in result.rows:
        lines.append(f"tune {row.setting.label()}: deletion {digest(row.deletion)} insertion {digest(row.insertion)}")
        print(lines[-1], flush=True)
    print(f"tune best: {result.call}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
