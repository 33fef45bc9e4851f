"""Attribution methods by name, for the command line and the evaluation runner, and the
propagation methods (LRP, c*LRP, SGLRP, raw FullGrad; implemented in :mod:`ucag.propagation`).

:data:`CAM_METHODS` maps short names to pytorch-grad-cam classes (plus ``"cameras"``,
:class:`ucag.baselines.CAMERAS`). A comparison runs each method in one or more
*variants*: ``"base"`` (the method itself), ``"ucag"`` (:class:`ucag.UCAG` around it),
``"upscale"`` (:class:`ucag.baselines.Upscale`, the paper's Figure 2 ablation) and
``"sess"`` (pytorch-grad-cam's own ``SESS``, the patch-based peer, run through its own API).
:func:`explain_with` computes one variant's maps, all post-processed the same way so only
the method differs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .postprocess import cam_postprocess
from .propagation import PROPAGATION_METHODS, ContrastiveLRP, FullGrad, LRP, SoftmaxGradientLRP, propagation_method

#: Short names -> pytorch-grad-cam class names.
CAM_METHODS = {
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
#: Propagation methods by name for comparisons ("fullgrad" above is grad-cam's own class).
PROPAGATION_NAMES = ("lrp", "clrp", "sglrp")
#: Every method name :func:`explain_with` accepts.
METHODS = (*CAM_METHODS, *PROPAGATION_NAMES, "cameras")
#: How each method is written in tables and figures.
DISPLAY_NAMES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "gradcamelementwise": "Grad-CAM (element-wise)",
    "eigencam": "Eigen-CAM",
    "eigengradcam": "EigenGrad-CAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
    "fullgrad": "FullGrad",
    "cameras": "CAMERAS",
    "lrp": "LRP",
    "clrp": "c*LRP",
    "sglrp": "SGLRP",
}
VARIANTS = ("base", "ucag", "upscale", "sess")
#: Baselines a comparison can add (see :func:`comparison_pairs`).
BASELINES = ("upscale", "sess", "cameras")


def cam_class(method: str) -> type:
    """The pytorch-grad-cam class of a short method name."""
    if method not in CAM_METHODS:
        raise ValueError(f"method: expected one of {', '.join(CAM_METHODS)}, got {method!r}")
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, CAM_METHODS[method])


def display_name(method: str, variant: str = "base") -> str:
    """``"Grad-CAM"``, ``"UCAG(Grad-CAM)"``, ``"SESS(Grad-CAM)"``..."""
    name = DISPLAY_NAMES.get(method, method)
    prefix = {"base": "", "ucag": "UCAG", "upscale": "Upscale", "sess": "SESS"}[variant]
    return f"{prefix}({name})" if prefix else name


def comparison_pairs(methods: Sequence[str], variants: Sequence[str] = ("base", "ucag"), baselines: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The (method, variant) pairs a comparison runs: every method in every variant, then
    for each baseline: ``"upscale"`` and ``"sess"`` around every method, ``"cameras"`` once
    on its own. Duplicates are dropped; the order is kept."""
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: expected names from {', '.join(METHODS)}, got {m!r}")
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"variants: expected names from {', '.join(VARIANTS)}, got {v!r}")
    for b in baselines:
        if b not in BASELINES:
            raise ValueError(f"baselines: expected names from {', '.join(BASELINES)}, got {b!r}")
    not_cams = [m for m in methods if m not in CAM_METHODS]
    if not_cams and ("sess" in variants or "sess" in baselines):
        raise ValueError(f"variants: SESS takes a pytorch-grad-cam class and cannot run around {', '.join(not_cams)}")
    pairs = [(m, v) for m in methods for v in variants]
    for b in baselines:
        pairs += [("cameras", "base")] if b == "cameras" else [(m, b) for m in methods]
    if not pairs:
        raise ValueError("methods: give at least one method (or a baseline)")
    return list(dict.fromkeys(pairs))


@contextlib.contextmanager
def _base_method(method: str, model: nn.Module, target_layer: nn.Module, cameras_options: dict[str, Any]) -> Iterator[Any]:
    """A fresh base method whose hooks are removed on exit: hooks left on the layer would
    copy activations on every forward of the metrics."""
    if method == "cameras":
        from .baselines import CAMERAS

        yield CAMERAS(model, target_layer, **{**cameras_options, "postprocess": "none"})
        return
    if method in PROPAGATION_NAMES:
        yield propagation_method(method, model)
        return
    with cam_class(method)(model=model, target_layers=[target_layer]) as cam:
        yield cam


def explain_with(
    method: str,
    variant: str,
    model: nn.Module,
    target_layer: nn.Module,
    inputs: torch.Tensor,
    targets: Sequence[int],
    *,
    ucag_options: dict[str, Any] | None = None,
    baseline_options: dict[str, dict[str, Any]] | None = None,
    blur: tuple[int, float] | None = (5, 3.0),
) -> torch.Tensor:
    """Maps (B, H, W) in [0, 1] of ``method`` in ``variant`` for ``inputs`` and ``targets``.

    Every map gets SPEC section 5's "cam" post-processing (ReLU, min-max, the ``blur``) so a
    comparison differs only in the method. ``ucag_options`` go to :class:`ucag.UCAG`
    (units, patch_size, scale, weighting, batch_size); ``baseline_options`` maps
    "upscale", "sess" and "cameras" to keyword arguments of :class:`ucag.baselines.Upscale`
    (e.g. ``factor``), pytorch-grad-cam's ``SESS`` (e.g. ``num_scales``) and
    :class:`ucag.baselines.CAMERAS` (e.g. ``resolutions``)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from .explainer import UCAG

    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    targets = [int(t) for t in targets]
    options = {name: dict((baseline_options or {}).get(name, {})) for name in BASELINES}
    unknown = set(baseline_options or {}) - set(BASELINES)
    if unknown:
        raise ValueError(f"baseline_options: expected keys from {', '.join(BASELINES)}, got {sorted(unknown)}")
    if variant == "sess":
        from pytorch_grad_cam import SESS

        with SESS(model=model, target_layers=[target_layer], base_method=cam_class(method), **options["sess"]) as sess:
            maps = sess(inputs, [ClassifierOutputTarget(t) for t in targets])
        return cam_postprocess(torch.as_tensor(maps), blur)
    with _base_method(method, model, target_layer, options["cameras"]) as base:
        if variant == "base":
            if method == "cameras":
                raw = base.explain(inputs, targets).raw
            else:
                raw = torch.as_tensor(base(input_tensor=inputs, targets=[ClassifierOutputTarget(t) for t in targets]))
            return cam_postprocess(raw.float(), blur)
        if method == "cameras":  # a plain callable for the patches: its raw maps
            cameras = base
            base = lambda patches, patch_targets: cameras.explain(patches, patch_targets).raw  # noqa: E731
        if variant == "ucag":
            explainer = UCAG(base, model=model, postprocess="cam", blur=blur, **(ucag_options or {}))
        else:
            from .baselines import Upscale

            batch = {k: v for k, v in (ucag_options or {}).items() if k == "batch_size"}
            explainer = Upscale(base, model=model, postprocess="cam", blur=blur, **{**batch, **options["upscale"]})
        return explainer.explain(inputs, targets).saliency


__all__ = [
    "BASELINES",
    "CAM_METHODS",
    "DISPLAY_NAMES",
    "METHODS",
    "PROPAGATION_METHODS",
    "VARIANTS",
    "ContrastiveLRP",
    "FullGrad",
    "LRP",
    "SoftmaxGradientLRP",
    "cam_class",
    "comparison_pairs",
    "display_name",
    "explain_with",
    "propagation_method",
]
