"""The method registry: every attribution method a comparison can run, defined once.

Each method is registered under a short name with its display name, its kind and a
factory, the way zennit registers composites (:func:`register_method`). The command
line's choices, :func:`ucag.eval.evaluate`, the benchmarks and the notebooks read
:data:`METHODS`; nothing else keeps a table of method names.

- kind ``"gradcam"``: a pytorch-grad-cam class (``gradcam_class`` names it);
- kind ``"propagation"``: a method of :mod:`ucag.bases.propagation` (LRP, c*LRP, SGLRP,
  FullGrad's raw map — "fullgrad" is that one everywhere; SESS, which can only wrap a
  pytorch-grad-cam class, wraps grad-cam's ``FullGrad``, the same method);
- kind ``"baseline"``: a whole-image baseline of :mod:`ucag.baselines` (CAMERAS);
- kind ``"control"``: a floor no method should fall to (docs/algorithm.md §6.9): ``"random"`` (pytorch-grad-cam's ``RandomCAM``, random channel weights at the
  target layer, seeded per image) and ``"sobel"`` (its ``sobel_cam``, the image's edges).
  Controls run once per comparison, as baselines, never around UCAG.

A comparison runs each method in one or more *variants* (:data:`VARIANTS`): ``"base"`` (the
method itself), ``"ucag"`` (:class:`ucag.UCAG` around it), ``"upscale"``
(:class:`ucag.baselines.Upscale`, the paper's Figure 2 ablation) and ``"sess"``
(pytorch-grad-cam's own ``SESS``, the patch-based peer, run through its own API, with its
defaults: 12 scales), ``"sess-matched"`` (``SESS`` with one scale, window and step that
reproduce UCAG's grid: the same number of patches of the same size,
:func:`ucag.eval.peers.sess_matched_settings`) and ``"refinecam"`` (pytorch-grad-cam's
``RefineCAM``: the method at one layer per resolution, multiplied;
:func:`ucag.eval.peers.refinecam_layers`). :func:`explain_with` computes one variant's maps,
all post-processed the same way so only the method differs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

from .._call import LogitsOnly
from ..baselines import CAMERAS, Upscale
from ..bases.adapters import GradCamAdapter
from ..bases.propagation import LRP, ContrastiveLRP, FullGrad, SoftmaxGradientLRP
from ..explainer import UCAG
from ..layers import attached
from ..models import reshape_transform_for
from ..postprocess import cam_postprocess
from ..targets import Target
from .compute import uncounted
from .peers import random_cam_maps, refinecam_maps, sess_matched_settings, sobel_maps

MethodKind: TypeAlias = Literal["gradcam", "propagation", "baseline", "control"]
#: ``factory(model, target_layer, **options)`` -> a base method object.
Factory: TypeAlias = Callable[..., Any]


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: ``name`` (short, for the command line), ``display_name``
    (tables and figures), ``kind`` (see the module docstring), ``factory`` and, where
    pytorch-grad-cam has the method, ``gradcam_class`` (the class SESS wraps)."""

    name: str
    display_name: str
    kind: MethodKind
    factory: Factory = field(repr=False)
    gradcam_class: str | None = None

    @contextlib.contextmanager
    def build(self, model: nn.Module, target_layer: nn.Module, **options: Any) -> Iterator[Any]:
        """A fresh base method whose hooks are removed on exit: hooks left on the layer
        would copy activations on every forward of the metrics."""
        base = self.factory(model, target_layer, **options)
        try:
            yield base
        finally:
            hooks = getattr(base, "activations_and_grads", None)
            if hooks is not None:
                hooks.release()


#: Every registered method by short name, in registration order.
METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str, display_name: str, kind: MethodKind, gradcam_class: str | None = None
) -> Callable[[Factory], Factory]:
    """Register ``factory(model, target_layer, **options)`` as method ``name``."""

    def decorate(factory: Factory) -> Factory:
        if name in METHODS:
            raise ValueError(f"name: a method {name!r} is registered already")
        METHODS[name] = MethodSpec(name, display_name, kind, factory, gradcam_class)
        return factory

    return decorate


def gradcam_class(name: str) -> type:
    """The pytorch-grad-cam class of a method (for SESS, and for users of grad-cam)."""
    spec = method(name)
    if spec.gradcam_class is None:
        raise ValueError(
            f"method: {name!r} has no pytorch-grad-cam class; those that do: {', '.join(methods_of_kind('gradcam'))}, fullgrad"
        )
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, spec.gradcam_class)  # type: ignore[no-any-return]


def _register_gradcam(name: str, display_name: str, class_name: str) -> None:
    def factory(model: nn.Module, target_layer: nn.Module, **options: Any) -> Any:
        # grad-cam indexes the model's output as a tensor (LogitsOnly reads a tuple or a
        # ModelOutput) and needs a transformer's token layout (reshape_transform_for)
        options.setdefault("reshape_transform", reshape_transform_for(model, [target_layer]))
        return gradcam_class(name)(model=LogitsOnly(model), target_layers=[target_layer], **options)

    register_method(name, display_name, "gradcam", class_name)(factory)


for _name, _display, _class in (
    ("gradcam", "Grad-CAM", "GradCAM"),
    ("gradcam++", "Grad-CAM++", "GradCAMPlusPlus"),
    ("xgradcam", "XGrad-CAM", "XGradCAM"),
    ("layercam", "LayerCAM", "LayerCAM"),
    ("hirescam", "HiResCAM", "HiResCAM"),
    ("gradcamelementwise", "Grad-CAM (element-wise)", "GradCAMElementWise"),
    ("eigencam", "Eigen-CAM", "EigenCAM"),
    ("eigengradcam", "EigenGrad-CAM", "EigenGradCAM"),
    ("scorecam", "Score-CAM", "ScoreCAM"),
    ("ablationcam", "Ablation-CAM", "AblationCAM"),
):
    _register_gradcam(_name, _display, _class)


#: Methods whose maps are a principal component's projection, with its arbitrary sign.
PROJECTION_METHODS = ("eigencam", "eigengradcam")


def _register_propagation(name: str, display_name: str, method_class: type, gradcam_class: str | None = None) -> None:
    def factory(model: nn.Module, target_layer: nn.Module, **options: Any) -> Any:
        return method_class(model, **options)  # the whole model's relevance: no target layer

    register_method(name, display_name, "propagation", gradcam_class)(factory)


_register_propagation("fullgrad", "FullGrad", FullGrad, gradcam_class="FullGrad")
_register_propagation("lrp", "LRP", LRP)
_register_propagation("clrp", "c*LRP", ContrastiveLRP)
_register_propagation("sglrp", "SGLRP", SoftmaxGradientLRP)


@register_method("cameras", "CAMERAS", "baseline")
def _cameras(model: nn.Module, target_layer: nn.Module, **options: Any) -> CAMERAS:
    return CAMERAS(model, target_layer, **options)


@register_method("random", "Random-CAM", "control")
def _random_cam(model: nn.Module, target_layer: nn.Module, **options: Any) -> Any:
    from pytorch_grad_cam import RandomCAM

    options.setdefault("reshape_transform", reshape_transform_for(model, [target_layer]))
    return RandomCAM(LogitsOnly(model), [target_layer], **options)


class SobelControl:
    """The edge floor: pytorch-grad-cam's ``sobel_cam`` of the unnormalised image
    (:func:`ucag.eval.peers.sobel_maps`); it runs no model (0 forward, 0 backward passes)."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        self.mean, self.std = mean, std

    def __call__(self, inputs: torch.Tensor, targets: Any = None) -> torch.Tensor:
        """(B, H, W) edge maps of the normalised ``inputs``; ``targets`` are ignored (a
        plain ``fn(patches, targets)`` base for :class:`ucag.UCAG`)."""
        return sobel_maps(inputs, self.mean, self.std)  # a ValueError naming mean without them


@register_method("sobel", "Sobel", "control")
def _sobel(model: nn.Module, target_layer: nn.Module, **options: Any) -> SobelControl:
    return SobelControl(**options)


def method(name: str) -> MethodSpec:
    """The registered method ``name``, or a ValueError listing the names."""
    if name not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def methods_of_kind(*kinds: MethodKind) -> tuple[str, ...]:
    """The names of the registered methods of the given kinds, in registration order."""
    return tuple(name for name, spec in METHODS.items() if spec.kind in kinds)


#: How each variant prefixes the method's display name.
VARIANTS: dict[str, str] = {
    "base": "",
    "ucag": "UCAG",
    "upscale": "Upscale",
    "sess": "SESS",
    "sess-matched": "SESS-matched",
    "refinecam": "RefineCAM",
}
#: The controls (floors), by method name (kind ``"control"``).
CONTROLS: tuple[str, ...] = methods_of_kind("control")
#: Baselines a comparison can add (see :func:`comparison_pairs`): variants around every
#: method, then methods that run once on their own (CAMERAS and the controls).
BASELINES = ("upscale", "sess", "sess-matched", "refinecam", "cameras", *CONTROLS)
#: The baselines that run once per comparison, not around each method.
ONCE = ("cameras", *CONTROLS)
#: The variants that need a pytorch-grad-cam class (SESS and RefineCAM wrap one).
GRADCAM_VARIANTS = ("sess", "sess-matched", "refinecam")


def display_name(name: str, variant: str = "base") -> str:
    """``"Grad-CAM"``, ``"UCAG(Grad-CAM)"``, ``"SESS(Grad-CAM)"``..."""
    shown = METHODS[name].display_name if name in METHODS else name
    prefix = VARIANTS[variant]
    return f"{prefix}({shown})" if prefix else shown


def comparison_pairs(
    methods: Sequence[str], variants: Sequence[str] = ("base", "ucag"), baselines: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The (method, variant) pairs a comparison runs: every method in every variant, then
    for each baseline: ``"upscale"``, ``"sess"``, ``"sess-matched"`` and ``"refinecam"``
    around every method, ``"cameras"``, ``"random"`` and ``"sobel"`` once on their own.
    Duplicates are dropped; the order is kept."""
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: expected names from {', '.join(METHODS)}, got {m!r}")
        if METHODS[m].kind == "control":
            raise ValueError(
                f"methods: {m!r} is a control (a floor), not a method to compare; ask for it with baselines=[{m!r}] (--baselines {m})"
            )
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"variants: expected names from {', '.join(VARIANTS)}, got {v!r}")
    for b in baselines:
        if b not in BASELINES:
            raise ValueError(f"baselines: expected names from {', '.join(BASELINES)}, got {b!r}")
    no_class = [m for m in methods if METHODS[m].gradcam_class is None]
    wrapping = [v for v in GRADCAM_VARIANTS if v in variants or v in baselines]
    if no_class and wrapping:
        where = "variants" if any(v in variants for v in wrapping) else "baselines"
        raise ValueError(
            f"{where}: {VARIANTS[wrapping[0]]} takes a pytorch-grad-cam class and cannot run around {', '.join(no_class)}"
        )
    pairs = [(m, v) for m in methods for v in variants]
    for b in baselines:
        pairs += [(b, "base")] if b in ONCE else [(m, b) for m in methods]
    if not pairs:
        raise ValueError("methods: give at least one method (or a baseline)")
    return list(dict.fromkeys(pairs))


def check_baseline_options(baseline_options: dict[str, dict[str, Any]] | None) -> None:
    """``baseline_options`` maps baseline names to keyword dicts, or a ValueError."""
    unknown = set(baseline_options or {}) - set(BASELINES)
    if unknown:
        raise ValueError(f"baseline_options: expected keys from {', '.join(BASELINES)}, got {sorted(unknown)}")
    for key, value in (baseline_options or {}).items():
        if not isinstance(value, dict):
            raise TypeError(f"baseline_options: {key!r} needs a dict of keyword arguments, got {type(value).__name__}")


def explain_with(
    name: str,
    variant: str,
    model: nn.Module,
    target_layer: nn.Module,
    inputs: torch.Tensor,
    targets: Sequence[int | Target],
    *,
    ucag_options: dict[str, Any] | None = None,
    baseline_options: dict[str, dict[str, Any]] | None = None,
    blur: tuple[int, float] | None = (5, 3.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Maps (B, H, W) in [0, 1] of method ``name`` in ``variant`` for ``inputs`` and ``targets``.

    Every map gets the "cam" post-processing (docs/algorithm.md §5: ReLU, min-max, the
    ``blur``) so a comparison differs only in the method. ``ucag_options`` go to
    :class:`ucag.UCAG` (units, patch_size, scale, weighting, batch_size);
    ``baseline_options`` maps "upscale", "sess", "sess-matched", "refinecam", "cameras" and
    "random" to keyword arguments of :class:`ucag.baselines.Upscale` (e.g. ``factor``),
    pytorch-grad-cam's ``SESS`` (e.g. ``num_scales``; for "sess-matched" the scale, window
    and step come from UCAG's grid unless given), :func:`ucag.eval.peers.refinecam_maps`
    (``layers``: module names, ``count``: resolutions, default 3),
    :class:`ucag.baselines.CAMERAS` (e.g. ``resolutions``) and
    :func:`ucag.eval.peers.random_cam_maps` (``seed``, default 0). ``mean`` and ``std``
    (the inputs' normalisation) are needed by the Sobel control, which works on the image
    itself (docs/algorithm.md §6.9).

    ``targets`` are class indices, or :mod:`ucag.targets` objects (binary, multi-label...)
    for the comparisons :func:`check_target_support` accepts."""
    spec = method(name)
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    if spec.kind == "control" and variant != "base":
        raise ValueError(f"variant: the control {name!r} runs on its own (variant 'base'), not as {variant!r}")
    targets = [t if isinstance(t, Target) else int(t) for t in targets]
    if not all(type(t) is int for t in targets):
        check_target_support([(name, variant)], next(t for t in targets if isinstance(t, Target)).kind)
    check_baseline_options(baseline_options)
    with attached([target_layer]):  # a Tap target layer (ucag.layers) reads its call site for every method
        return _explain_with(
            name, variant, model, target_layer, inputs, targets, ucag_options, baseline_options, blur, mean, std
        )


def _explain_with(
    name: str,
    variant: str,
    model: nn.Module,
    target_layer: nn.Module,
    inputs: torch.Tensor,
    targets: list[Any],
    ucag_options: dict[str, Any] | None,
    baseline_options: dict[str, dict[str, Any]] | None,
    blur: tuple[int, float] | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> torch.Tensor:
    spec = method(name)
    options = {key: dict((baseline_options or {}).get(key, {})) for key in BASELINES}
    if variant in ("sess", "sess-matched"):
        from pytorch_grad_cam import SESS

        with uncounted():  # set-up (a transformer's layout is traced), not the per-image cost
            sess_options = {"reshape_transform": reshape_transform_for(model, [target_layer])}
            if variant == "sess-matched":
                size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
                sess_options.update(sess_matched_settings(model, size, ucag_options).options())
            sess_options.update(options[variant])
            sess = SESS(
                model=LogitsOnly(model), target_layers=[target_layer], base_method=gradcam_class(name), **sess_options
            )
        with sess:
            maps = sess(inputs, _cam_targets(targets))
        return cam_postprocess(torch.as_tensor(maps), blur)
    if variant == "refinecam":
        return cam_postprocess(
            refinecam_maps(model, target_layer, gradcam_class(name), inputs, targets, **options["refinecam"]).float(),
            blur,
        )
    if name == "sobel":
        return cam_postprocess(SobelControl(mean, std)(inputs), blur)
    method_options = {**options["cameras"], "postprocess": "none"} if name == "cameras" else {}
    with contextlib.ExitStack() as stack:
        with uncounted():  # building the method (and tracing a transformer's layout): set-up
            base = stack.enter_context(spec.build(model, target_layer, **method_options))
        if name == "random":
            return cam_postprocess(random_cam_maps(base, inputs, targets, **options["random"]).float(), blur)
        if variant == "base":
            if isinstance(base, CAMERAS):
                raw = base.explain(inputs, targets).raw
            elif name in PROJECTION_METHODS:
                # grad-cam's own map keeps the principal component's arbitrary sign (and ReLUs
                # it away when inverted): the adapter's raw, oriented map, resized to the input
                ids = torch.as_tensor(
                    [t.category or 0 if isinstance(t, Target) else t for t in targets], device=inputs.device
                )
                objects = _cam_targets(targets) if any(isinstance(t, Target) for t in targets) else None
                maps = GradCamAdapter(base, model)(inputs, ids, target_objects=objects).maps
                raw = F.interpolate(maps[:, None], size=tuple(inputs.shape[-2:]), mode="bilinear", align_corners=False)[
                    :, 0
                ]
            else:
                raw = torch.as_tensor(base(input_tensor=inputs, targets=_cam_targets(targets)))
            return cam_postprocess(raw.float(), blur)
        if isinstance(base, CAMERAS):  # a plain callable for the patches: its raw maps
            cameras = base

            def base(patches: torch.Tensor, patch_targets: torch.Tensor) -> torch.Tensor:
                return cameras.explain(patches, patch_targets).raw

        explainer: UCAG
        with uncounted():
            if variant == "ucag":
                explainer = UCAG(base, model=model, postprocess="cam", blur=blur, **(ucag_options or {}))
            else:
                batch = {k: v for k, v in (ucag_options or {}).items() if k == "batch_size"}
                explainer = Upscale(base, model=model, postprocess="cam", blur=blur, **{**batch, **options["upscale"]})
        return explainer.explain(inputs, targets).saliency


def _cam_targets(targets: Sequence[Any]) -> list[Any]:
    """pytorch-grad-cam target objects: a class index becomes a ClassifierOutputTarget, a
    :mod:`ucag.targets` object is one already."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return [t if isinstance(t, Target) else ClassifierOutputTarget(int(t)) for t in targets]


#: The variants that follow a target object (so any kind of :mod:`ucag.targets`).
TARGET_VARIANTS = ("base", "ucag", "upscale", "sess", "sess-matched")


def check_target_support(pairs: Sequence[tuple[str, str]], kind: str) -> None:
    """Raise ValueError naming ``methods`` (or ``variants``) when a (method, variant) pair
    cannot explain ``kind`` targets: beyond softmax classes, the pytorch-grad-cam methods
    in the variants of :data:`TARGET_VARIANTS` and the Sobel control (which ignores the
    target) can; methods and baselines that take class indices cannot."""
    if kind == "class":
        return
    methods = sorted(
        {m for m, _ in pairs if m in ("random", "cameras") or (m != "sobel" and method(m).gradcam_class is None)}
    )
    if methods:
        raise ValueError(
            f"methods: {', '.join(methods)} take class indices only; {kind} targets need pytorch-grad-cam methods (docs/algorithm.md §3.1)"
        )
    variants = sorted({v for m, v in pairs if m not in ONCE and v not in TARGET_VARIANTS})
    if variants:
        raise ValueError(
            f"variants: {', '.join(variants)} take class indices only; {kind} targets work with {', '.join(TARGET_VARIANTS)}"
        )


__all__ = [
    "BASELINES",
    "CONTROLS",
    "GRADCAM_VARIANTS",
    "METHODS",
    "ONCE",
    "PROJECTION_METHODS",
    "VARIANTS",
    "MethodKind",
    "MethodSpec",
    "SobelControl",
    "TARGET_VARIANTS",
    "check_baseline_options",
    "check_target_support",
    "comparison_pairs",
    "display_name",
    "explain_with",
    "gradcam_class",
    "method",
    "methods_of_kind",
    "register_method",
]
