"""The method and variant registries: every attribution method a comparison can run, and every way it runs one.

Each is defined once.

Each method is registered under a short name with its display name, its kind and a
factory, the way zennit registers composites
([register_method][ucag.eval.registry.register_method]); what sets it apart in a comparison
(it runs once, it takes class indices only, its own maps in the base variant...) is on its
entry, [MethodSpec][ucag.eval.registry.MethodSpec]. The command line's choices,
[evaluate][ucag.eval.runner.evaluate], the benchmarks and the notebooks read `METHODS`;
nothing else keeps a table of method names.

- kind ``"gradcam"``: a pytorch-grad-cam class (``gradcam_class`` names it);
- kind ``"propagation"``: a method of [ucag.bases.propagation][ucag.bases.propagation] (LRP, ``c*LRP``, SGLRP,
  FullGrad's raw map — "fullgrad" is that one everywhere; SESS, which can only wrap a
  pytorch-grad-cam class, wraps grad-cam's ``FullGrad``, the same method);
- kind ``"baseline"``: a whole-image baseline of [ucag.baselines][ucag.baselines] (CAMERAS);
- kind ``"control"``: a floor no method should fall to (docs/algorithm.md §6.9): ``"random"``
  (pytorch-grad-cam's ``RandomCAM``, random channel weights at the target layer, seeded per
  image) and ``"sobel"`` (its ``sobel_cam``, the image's edges).
  Controls run once per comparison, as baselines, never around UCAG.

A comparison runs each method in one or more *variants*, registered the same way with the
function that computes their maps ([register_variant][ucag.eval.registry.register_variant],
`VARIANT_SPECS`): ``"base"`` (the method itself), ``"ucag"`` ([UCAG][ucag.explainer.UCAG]
around it), ``"upscale"`` ([Upscale][ucag.baselines.Upscale], the paper's Figure 2
ablation) and ``"sess"`` (pytorch-grad-cam's own ``SESS``, the patch-based peer, run
through its own API, with its defaults: 12 scales), ``"sess-matched"`` (``SESS`` with one
scale, window and step that reproduce UCAG's grid: the same number of patches of the same
size, [sess_matched_settings][ucag.eval.peers.sess_matched_settings]) and ``"refinecam"``
(pytorch-grad-cam's ``RefineCAM``: the method at one layer per resolution, multiplied;
[refinecam_layers][ucag.eval.peers.refinecam_layers]).
[explain_with][ucag.eval.registry.explain_with] computes one variant's maps, all
post-processed the same way so only the method differs, from the two entries alone. The
tables of names others import (`VARIANTS`, `BASELINES`, `ONCE`...) are read from the
registries at each use, so registering is all a new entry takes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, overload

import torch
import torch.nn.functional as F
from torch import nn

from .._inputs import LogitsOnly
from ..baselines import CAMERAS, Upscale
from ..bases.adapters import GradCamAdapter
from ..bases.propagation import LRP, ContrastiveLRP, FullGrad, SoftmaxGradientLRP
from ..explainer import UCAG
from ..layers import attached
from ..models import reshape_transform_for
from ..options import DEFAULT_CHANNELS_LAST, DEFAULT_PRECISION, ChannelsLast, Precision
from ..postprocess import cam_postprocess
from ..targets import Target
from .compute import uncounted
from .peers import random_cam_maps, refinecam_maps, sess_matched_settings, sobel_maps

MethodKind: TypeAlias = Literal["gradcam", "propagation", "baseline", "control"]
#: ``factory(model, target_layer, **options)`` -> a base method object.
Factory: TypeAlias = Callable[..., Any]
#: ``explain(base, request)`` -> the raw (B, H, W) maps of a built method for a request.
Explain: TypeAlias = Callable[[Any, "Request"], torch.Tensor]
#: ``run(spec, request)`` -> a variant's (B, H, W) maps in [0, 1] of the method ``spec``.
VariantRun: TypeAlias = Callable[["MethodSpec", "Request"], torch.Tensor]


@dataclass(frozen=True)
class Request:
    """One [explain_with][ucag.eval.registry.explain_with] call, as a variant's ``run`` and a method's hooks read it.

    Attributes:
        model: The model explained.
        target_layer: The layer of the CAM methods.
        inputs: The normalised images (B, C, H, W).
        targets: One per image: class indices or [ucag.targets][ucag.targets] objects.
        ucag_options: Keyword arguments of [UCAG][ucag.explainer.UCAG].
        baseline_options: The checked keyword arguments of each baseline, by name
            ([options][ucag.eval.registry.Request.options]).
        blur: The "cam" post-processing's blur (kernel size, sigma), or None.
        mean: The inputs' normalisation (the Sobel control needs it), or None.
        std: Its standard deviations, or None.
        precision: The arithmetic of UCAG's patch passes (docs/algorithm.md §10); the other
            variants' maps are computed in float32.
        channels_last: The layout of UCAG's patches: True, False or ``"auto"``.
        learnt: What a run learns and keeps between its calls: UCAG's patches per
            forward/backward after an out-of-memory back-off, per method.
    """

    model: nn.Module
    target_layer: nn.Module
    inputs: torch.Tensor
    targets: list[Any]
    ucag_options: dict[str, Any] = field(default_factory=dict)
    baseline_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    blur: tuple[int, float] | None = (5, 3.0)
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    precision: Precision = DEFAULT_PRECISION
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST
    learnt: dict[str, int] = field(default_factory=dict)

    def options(self, key: str) -> dict[str, Any]:
        """A copy of the keyword arguments given for baseline ``key``.

        Args:
            key: A baseline's name (``"upscale"``, ``"cameras"``...).

        Returns:
            A new dict of its keyword arguments; empty where none were given.
        """
        return dict(self.baseline_options.get(key, {}))


def _no_options(request: Request) -> dict[str, Any]:
    """The default ``build_options``: no keyword arguments for the factory.

    Args:
        request: The call (unused).

    Returns:
        An empty dict.
    """
    return {}


def _gradcam_call(base: Any, request: Request) -> torch.Tensor:
    """The default ``explain``: the built method called as pytorch-grad-cam calls its CAMs.

    Args:
        base: The built method.
        request: The call whose inputs and targets it explains.

    Returns:
        The method's raw maps (B, H, W).
    """
    return torch.as_tensor(base(input_tensor=request.inputs, targets=_cam_targets(request.targets)))


def _itself(base: Any) -> Any:
    """The default ``patch_base``: UCAG and Upscale run the built method itself.

    Args:
        base: The built method.

    Returns:
        ``base``.
    """
    return base


@dataclass(frozen=True)
class MethodSpec:
    """One registered method, and how a comparison runs it.

    Attributes:
        name: Short, for the command line.
        display_name: For tables and figures.
        kind: ``"gradcam"``, ``"propagation"``, ``"baseline"`` or ``"control"`` (see the
            module docstring).
        factory: ``factory(model, target_layer, **options)`` -> a base method object.
        gradcam_class: Where pytorch-grad-cam has the method, its class name (the class SESS wraps).
        runs_once: It runs on its own once per comparison rather than in every variant of
            every method (CAMERAS, the controls).
        class_indices_only: It takes no [ucag.targets][ucag.targets] object beyond a class
            (CAMERAS, Random-CAM, the methods without a pytorch-grad-cam class).
        uses_layer: It reads the target layer (not the propagation methods, nor Sobel).
        build_options: ``build_options(request)``, the factory's keyword arguments in a
            comparison (CAMERAS' baseline options, Sobel's mean and std).
        explain: ``explain(base, request)``, the raw maps of the built method in the base
            variant (by default its pytorch-grad-cam call).
        patch_base: ``patch_base(base)``, what UCAG and Upscale run on the patches (by
            default the built method itself).
    """

    name: str
    display_name: str
    kind: MethodKind
    factory: Factory = field(repr=False)
    gradcam_class: str | None = None
    runs_once: bool = False
    class_indices_only: bool = False
    uses_layer: bool = True
    build_options: Callable[[Request], dict[str, Any]] = field(default=_no_options, repr=False)
    explain: Explain = field(default=_gradcam_call, repr=False)
    patch_base: Callable[[Any], Any] = field(default=_itself, repr=False)

    @contextlib.contextmanager
    def build(self, model: nn.Module, target_layer: nn.Module, **options: Any) -> Iterator[Any]:
        """A fresh base method whose hooks are removed on exit.

        Hooks left on the layer would copy activations on every forward of the metrics.

        Args:
            model: The model to explain.
            target_layer: The layer the method reads.
            **options: Keyword arguments of the factory.

        Returns:
            A context manager that yields the built method.
        """
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
    name: str,
    display_name: str,
    kind: MethodKind,
    gradcam_class: str | None = None,
    *,
    runs_once: bool | None = None,
    class_indices_only: bool | None = None,
    uses_layer: bool | None = None,
    build_options: Callable[[Request], dict[str, Any]] = _no_options,
    explain: Explain = _gradcam_call,
    patch_base: Callable[[Any], Any] = _itself,
) -> Callable[[Factory], Factory]:
    """Register ``factory(model, target_layer, **options)`` as method ``name``.

    The arguments are [MethodSpec][ucag.eval.registry.MethodSpec]'s fields.

    Args:
        name: The short name, for the command line.
        display_name: The name in tables and figures.
        kind: ``"gradcam"``, ``"propagation"``, ``"baseline"`` or ``"control"``.
        gradcam_class: The pytorch-grad-cam class name of the method, where it has one.
        runs_once: Left out: True for a baseline or a control.
        class_indices_only: Left out: True for a method without a pytorch-grad-cam class.
        uses_layer: Left out: False for a propagation method, True for the others.
        build_options: ``build_options(request)`` -> the factory's keyword arguments.
        explain: ``explain(base, request)`` -> the raw maps in the base variant.
        patch_base: ``patch_base(base)`` -> what UCAG and Upscale run on the patches.

    Returns:
        A decorator that registers the factory and returns it unchanged.

    Raises:
        ValueError: (by the decorator) a method ``name`` is registered already.
    """

    def decorate(factory: Factory) -> Factory:
        if name in METHODS:
            raise ValueError(f"name: a method {name!r} is registered already")
        METHODS[name] = MethodSpec(
            name,
            display_name,
            kind,
            factory,
            gradcam_class,
            runs_once=kind in ("baseline", "control") if runs_once is None else runs_once,
            class_indices_only=gradcam_class is None if class_indices_only is None else class_indices_only,
            uses_layer=kind != "propagation" if uses_layer is None else uses_layer,
            build_options=build_options,
            explain=explain,
            patch_base=patch_base,
        )
        return factory

    return decorate


def gradcam_class(name: str) -> type:
    """The pytorch-grad-cam class of a method (for SESS, and for users of grad-cam).

    Args:
        name: A registered method's name.

    Returns:
        The class, e.g. ``pytorch_grad_cam.GradCAM`` for ``"gradcam"``.

    Raises:
        ValueError: No method ``name`` is registered, or it has no pytorch-grad-cam class.
    """
    spec = method(name)
    if spec.gradcam_class is None:
        raise ValueError(
            f"method: {name!r} has no pytorch-grad-cam class; those that do: {', '.join(methods_of_kind('gradcam'))}, fullgrad"
        )
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, spec.gradcam_class)  # type: ignore[no-any-return]


def _oriented_maps(base: Any, request: Request) -> torch.Tensor:
    """A projection method's maps: grad-cam's own keeps the principal component's arbitrary
    sign (and ReLUs it away when inverted), so the adapter's raw, oriented map, resized to
    the input."""
    inputs, targets = request.inputs, request.targets
    ids = torch.as_tensor([t.category or 0 if isinstance(t, Target) else t for t in targets], device=inputs.device)
    objects = _cam_targets(targets) if any(isinstance(t, Target) for t in targets) else None
    maps = GradCamAdapter(base, request.model)(inputs, ids, target_objects=objects).maps
    return F.interpolate(maps[:, None], size=tuple(inputs.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]


def _register_gradcam(name: str, display_name: str, class_name: str, explain: Explain) -> None:
    def factory(model: nn.Module, target_layer: nn.Module, **options: Any) -> Any:
        # grad-cam indexes the model's output as a tensor (LogitsOnly reads a tuple or a
        # ModelOutput) and needs a transformer's token layout (reshape_transform_for)
        options.setdefault("reshape_transform", reshape_transform_for(model, [target_layer]))
        return gradcam_class(name)(model=LogitsOnly(model), target_layers=[target_layer], **options)

    register_method(name, display_name, "gradcam", class_name, explain=explain)(factory)


for _name, _display, _class, _explain in (
    ("gradcam", "Grad-CAM", "GradCAM", _gradcam_call),
    ("gradcam++", "Grad-CAM++", "GradCAMPlusPlus", _gradcam_call),
    ("xgradcam", "XGrad-CAM", "XGradCAM", _gradcam_call),
    ("layercam", "LayerCAM", "LayerCAM", _gradcam_call),
    ("hirescam", "HiResCAM", "HiResCAM", _gradcam_call),
    ("gradcamelementwise", "Grad-CAM (element-wise)", "GradCAMElementWise", _gradcam_call),
    ("eigencam", "Eigen-CAM", "EigenCAM", _oriented_maps),
    ("eigengradcam", "EigenGrad-CAM", "EigenGradCAM", _oriented_maps),
    ("scorecam", "Score-CAM", "ScoreCAM", _gradcam_call),
    ("ablationcam", "Ablation-CAM", "AblationCAM", _gradcam_call),
):
    _register_gradcam(_name, _display, _class, _explain)


def _register_propagation(name: str, display_name: str, method_class: type, gradcam_class: str | None = None) -> None:
    def factory(model: nn.Module, target_layer: nn.Module, **options: Any) -> Any:
        return method_class(model, **options)  # the whole model's relevance: no target layer

    # class indices only, even with a grad-cam class for SESS: the base, UCAG and Upscale
    # variants run the propagation method, which explains a class
    register_method(name, display_name, "propagation", gradcam_class, class_indices_only=True)(factory)


_register_propagation("fullgrad", "FullGrad", FullGrad, gradcam_class="FullGrad")
_register_propagation("lrp", "LRP", LRP)
_register_propagation("clrp", "c*LRP", ContrastiveLRP)
_register_propagation("sglrp", "SGLRP", SoftmaxGradientLRP)


def _cameras_patch_base(cameras: CAMERAS) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A plain callable for the patches: CAMERAS' raw maps (UCAG post-processes them)."""

    def base(patches: torch.Tensor, patch_targets: torch.Tensor) -> torch.Tensor:
        return cameras.explain(patches, patch_targets).raw

    return base


@register_method(
    "cameras",
    "CAMERAS",
    "baseline",
    build_options=lambda request: {**request.options("cameras"), "postprocess": "none"},
    explain=lambda cameras, request: cameras.explain(request.inputs, request.targets).raw,
    patch_base=_cameras_patch_base,
)
def _cameras(model: nn.Module, target_layer: nn.Module, **options: Any) -> CAMERAS:
    return CAMERAS(model, target_layer, **options)


# each image's random map seeded by the image itself (random_cam_maps), the same in every run
@register_method(
    "random",
    "Random-CAM",
    "control",
    explain=lambda cam, request: random_cam_maps(cam, request.inputs, request.targets, **request.options("random")),
)
def _random_cam(model: nn.Module, target_layer: nn.Module, **options: Any) -> Any:
    from pytorch_grad_cam import RandomCAM

    options.setdefault("reshape_transform", reshape_transform_for(model, [target_layer]))
    return RandomCAM(LogitsOnly(model), [target_layer], **options)


class SobelControl:
    """The edge floor: pytorch-grad-cam's ``sobel_cam`` of the unnormalised image.

    See [sobel_maps][ucag.eval.peers.sobel_maps]; it runs no model (0 forward, 0 backward passes).

    Args:
        mean: The inputs' normalisation, per channel (needed to recover the image).
        std: Its standard deviations, per channel.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        self.mean, self.std = mean, std

    def __call__(self, inputs: torch.Tensor, targets: Any = None) -> torch.Tensor:
        """The edge maps of the normalised ``inputs``.

        A plain ``fn(patches, targets)`` base for [UCAG][ucag.explainer.UCAG].

        Args:
            inputs: Normalised images (B, 3, H, W).
            targets: Ignored: the edges are the same whatever the target.

        Returns:
            The (B, H, W) float edge maps, 0-255.

        Raises:
            ValueError: ``mean`` or ``std`` was not given, or ``inputs`` do not match them.
        """
        return sobel_maps(inputs, self.mean, self.std)  # a ValueError naming mean without them


# the image's edges whatever the target, so any kind of target; no model layer read
@register_method(
    "sobel",
    "Sobel",
    "control",
    class_indices_only=False,
    uses_layer=False,
    build_options=lambda request: {"mean": request.mean, "std": request.std},
    explain=lambda sobel, request: sobel(request.inputs),
)
def _sobel(model: nn.Module, target_layer: nn.Module, **options: Any) -> SobelControl:
    return SobelControl(**options)


def method(name: str) -> MethodSpec:
    """The registered method ``name``.

    Args:
        name: A method's short name.

    Returns:
        Its [MethodSpec][ucag.eval.registry.MethodSpec].

    Raises:
        ValueError: No method ``name`` is registered (the message lists the names).

    Examples:
        >>> from ucag.eval.registry import method
        >>> spec = method("gradcam")
        >>> spec.display_name, spec.kind, spec.gradcam_class
        ('Grad-CAM', 'gradcam', 'GradCAM')
    """
    if name not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def methods_of_kind(*kinds: MethodKind) -> tuple[str, ...]:
    """The names of the registered methods of the given kinds, in registration order.

    Args:
        *kinds: ``"gradcam"``, ``"propagation"``, ``"baseline"`` and/or ``"control"``.

    Returns:
        The names.

    Examples:
        >>> from ucag.eval.registry import methods_of_kind
        >>> methods_of_kind("control")
        ('random', 'sobel')
    """
    return tuple(name for name, spec in METHODS.items() if spec.kind in kinds)


@dataclass(frozen=True)
class VariantSpec:
    """One registered variant: a way a comparison runs each method.

    Attributes:
        name: Short, for the command line.
        prefix: Of the method's display name: "UCAG" shows "UCAG(Grad-CAM)"; empty for the
            method itself.
        run: ``run(spec, request)``, its maps of a method.
        wraps: It runs around the method (all but "base", the only variant a control runs in).
        needs_gradcam_class: It wraps a pytorch-grad-cam class (SESS, RefineCAM).
        follows_targets: It explains any [ucag.targets][ucag.targets] object, not class indices only.
        baseline: A comparison may add it with ``baselines=``, around every method.
    """

    name: str
    prefix: str
    run: VariantRun = field(repr=False)
    wraps: bool = True
    needs_gradcam_class: bool = False
    follows_targets: bool = False
    baseline: bool = False


#: Every registered variant by short name, in registration order.
VARIANT_SPECS: dict[str, VariantSpec] = {}


def register_variant(
    name: str,
    prefix: str,
    *,
    wraps: bool = True,
    needs_gradcam_class: bool = False,
    follows_targets: bool = False,
    baseline: bool = False,
) -> Callable[[VariantRun], VariantRun]:
    """Register ``run(spec, request)`` as variant ``name``.

    ``run`` returns the (B, H, W) maps in [0, 1] of the method ``spec`` for a
    [Request][ucag.eval.registry.Request], post-processed as the others' ("cam"). The
    arguments are [VariantSpec][ucag.eval.registry.VariantSpec]'s fields.

    Args:
        name: The short name, for the command line.
        prefix: Of the method's display name (empty for the method itself).
        wraps: It runs around the method.
        needs_gradcam_class: It wraps a pytorch-grad-cam class.
        follows_targets: It explains any [ucag.targets][ucag.targets] object.
        baseline: A comparison may add it with ``baselines=``.

    Returns:
        A decorator that registers ``run`` and returns it unchanged.

    Raises:
        ValueError: (by the decorator) a variant ``name`` is registered already.
    """

    def decorate(run: VariantRun) -> VariantRun:
        if name in VARIANT_SPECS:
            raise ValueError(f"name: a variant {name!r} is registered already")
        VARIANT_SPECS[name] = VariantSpec(name, prefix, run, wraps, needs_gradcam_class, follows_targets, baseline)
        return run

    return decorate


def variant_spec(name: str) -> VariantSpec:
    """The registered variant ``name``.

    Args:
        name: A variant's short name.

    Returns:
        Its [VariantSpec][ucag.eval.registry.VariantSpec].

    Raises:
        ValueError: No variant ``name`` is registered (the message lists the names).
    """
    if name not in VARIANT_SPECS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANT_SPECS)}, got {name!r}")
    return VARIANT_SPECS[name]


@contextlib.contextmanager
def _built(spec: MethodSpec, request: Request) -> Iterator[Any]:
    """The method built for ``request`` (`MethodSpec.build`), its hooks removed on exit."""
    with contextlib.ExitStack() as stack:
        with uncounted():  # building the method (and tracing a transformer's layout): set-up
            options = spec.build_options(request)
            base = stack.enter_context(spec.build(request.model, request.target_layer, **options))
        yield base


@register_variant("base", "", wraps=False, follows_targets=True)
def _base(spec: MethodSpec, request: Request) -> torch.Tensor:
    with _built(spec, request) as base:
        return cam_postprocess(spec.explain(base, request).float(), request.blur)


@register_variant("ucag", "UCAG", follows_targets=True)
def _ucag(spec: MethodSpec, request: Request) -> torch.Tensor:
    learnt_key = f"ucag_batch_size[{spec.name}]"
    options = dict(request.ucag_options)
    if learnt_key in request.learnt:  # an earlier sample's out-of-memory back-off holds for the run
        options["batch_size"] = request.learnt[learnt_key]
    with _built(spec, request) as base:
        with uncounted():
            explainer = UCAG(
                spec.patch_base(base),
                model=request.model,
                postprocess="cam",
                blur=request.blur,
                precision=request.precision,
                channels_last=request.channels_last,
                **options,
            )
        explanation = explainer.explain(request.inputs, request.targets)
    if explanation.chunk_size is not None:
        request.learnt[learnt_key] = explanation.chunk_size
    return explanation.saliency


@register_variant("upscale", "Upscale", follows_targets=True, baseline=True)
def _upscale(spec: MethodSpec, request: Request) -> torch.Tensor:
    # of UCAG's options only the batch size: Upscale has no grid
    batch = {k: v for k, v in request.ucag_options.items() if k == "batch_size"}
    with _built(spec, request) as base:
        with uncounted():
            explainer = Upscale(
                spec.patch_base(base),
                model=request.model,
                postprocess="cam",
                blur=request.blur,
                **{**batch, **request.options("upscale")},
            )
        return explainer.explain(request.inputs, request.targets).saliency


def _sess_maps(spec: MethodSpec, request: Request, key: str, matched: bool) -> torch.Tensor:
    """pytorch-grad-cam's ``SESS`` around the method's grad-cam class, on UCAG's grid where
    ``matched``, with the baseline options of ``key``."""
    from pytorch_grad_cam import SESS

    model, layer, inputs = request.model, request.target_layer, request.inputs
    with uncounted():  # set-up (a transformer's layout is traced), not the per-image cost
        sess_options: dict[str, Any] = {"reshape_transform": reshape_transform_for(model, [layer])}
        if matched:
            size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
            sess_options.update(sess_matched_settings(model, size, request.ucag_options).options())
        sess_options.update(request.options(key))
        sess = SESS(
            model=LogitsOnly(model), target_layers=[layer], base_method=gradcam_class(spec.name), **sess_options
        )
    with sess:
        maps = sess(inputs, _cam_targets(request.targets))
    return cam_postprocess(torch.as_tensor(maps), request.blur)


@register_variant("sess", "SESS", needs_gradcam_class=True, follows_targets=True, baseline=True)
def _sess(spec: MethodSpec, request: Request) -> torch.Tensor:
    return _sess_maps(spec, request, "sess", matched=False)


@register_variant("sess-matched", "SESS-matched", needs_gradcam_class=True, follows_targets=True, baseline=True)
def _sess_matched(spec: MethodSpec, request: Request) -> torch.Tensor:
    return _sess_maps(spec, request, "sess-matched", matched=True)


@register_variant("refinecam", "RefineCAM", needs_gradcam_class=True, baseline=True)
def _refinecam(spec: MethodSpec, request: Request) -> torch.Tensor:
    maps = refinecam_maps(
        request.model,
        request.target_layer,
        gradcam_class(spec.name),
        request.inputs,
        request.targets,
        **request.options("refinecam"),
    )
    return cam_postprocess(maps.float(), request.blur)


class _Prefixes(Mapping[str, str]):
    """Each registered variant's prefix, read from `VARIANT_SPECS` at each use."""

    def __getitem__(self, name: str) -> str:
        return VARIANT_SPECS[name].prefix

    def __iter__(self) -> Iterator[str]:
        return iter(VARIANT_SPECS)

    def __len__(self) -> int:
        return len(VARIANT_SPECS)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Names(Sequence[str]):
    """The registered names ``select`` picks, read at each use (so an entry registered
    later is among them); equal to the tuple of the same names."""

    def __init__(self, select: Callable[[], tuple[str, ...]]) -> None:
        self._select = select

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._select()[index]

    def __len__(self) -> int:
        return len(self._select())

    def __iter__(self) -> Iterator[str]:
        return iter(self._select())

    def __contains__(self, name: object) -> bool:
        return name in self._select()

    def __eq__(self, other: object) -> bool:
        return self._select() == (tuple(other) if isinstance(other, _Names) else other)

    def __repr__(self) -> str:
        return repr(self._select())


#: How each variant prefixes the method's display name.
VARIANTS: Mapping[str, str] = _Prefixes()
#: The controls (floors), by method name (kind ``"control"``).
CONTROLS: Sequence[str] = _Names(lambda: methods_of_kind("control"))
#: The methods that run once per comparison, not around each method (CAMERAS, the controls).
ONCE: Sequence[str] = _Names(lambda: tuple(name for name, spec in METHODS.items() if spec.runs_once))
#: Baselines a comparison can add (see `comparison_pairs`): variants around every
#: method, then methods that run once on their own (`ONCE`).
BASELINES: Sequence[str] = _Names(lambda: (*(name for name, v in VARIANT_SPECS.items() if v.baseline), *ONCE))
#: The variants that need a pytorch-grad-cam class (SESS and RefineCAM wrap one).
GRADCAM_VARIANTS: Sequence[str] = _Names(
    lambda: tuple(name for name, v in VARIANT_SPECS.items() if v.needs_gradcam_class)
)
#: The variants that follow a target object (so any kind of `ucag.targets`).
TARGET_VARIANTS: Sequence[str] = _Names(lambda: tuple(name for name, v in VARIANT_SPECS.items() if v.follows_targets))


def display_name(name: str, variant: str = "base") -> str:
    """The name of a method in a variant, for tables and figures.

    Args:
        name: A method's short name (an unregistered name is shown as it is).
        variant: A registered variant's short name.

    Returns:
        ``"Grad-CAM"``, ``"UCAG(Grad-CAM)"``, ``"SESS(Grad-CAM)"``...

    Examples:
        >>> from ucag.eval.registry import display_name
        >>> display_name("gradcam"), display_name("gradcam", "ucag")
        ('Grad-CAM', 'UCAG(Grad-CAM)')
    """
    shown = METHODS[name].display_name if name in METHODS else name
    prefix = VARIANTS[variant]
    return f"{prefix}({shown})" if prefix else shown


def comparison_pairs(
    methods: Sequence[str], variants: Sequence[str] = ("base", "ucag"), baselines: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The (method, variant) pairs a comparison runs.

    Every method in every variant, then for each baseline: ``"upscale"``, ``"sess"``,
    ``"sess-matched"`` and ``"refinecam"`` around every method, ``"cameras"``, ``"random"``
    and ``"sobel"`` once on their own. Duplicates are dropped; the order is kept.

    Args:
        methods: Names of registered methods (not controls).
        variants: Names of registered variants, each method runs in all.
        baselines: Names from `BASELINES`.

    Returns:
        The (method, variant) pairs.

    Raises:
        ValueError: A name is unknown, a method is a control, a variant or baseline that
            wraps a pytorch-grad-cam class meets a method without one, or there is no pair.

    Examples:
        >>> from ucag.eval.registry import comparison_pairs
        >>> comparison_pairs(["gradcam"], baselines=["upscale", "random"])
        [('gradcam', 'base'), ('gradcam', 'ucag'), ('gradcam', 'upscale'), ('random', 'base')]
    """
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
    """Check that ``baseline_options`` maps baseline names to keyword dicts.

    Args:
        baseline_options: Keyword arguments by baseline name (names from `BASELINES`), or None.

    Raises:
        ValueError: A key is not a baseline's name.
        TypeError: A value is not a dict.
    """
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
    precision: Precision = DEFAULT_PRECISION,
    channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
    learnt: dict[str, int] | None = None,
) -> torch.Tensor:
    """The maps of method ``name`` in ``variant`` for ``inputs`` and ``targets``.

    Every map gets the "cam" post-processing (docs/algorithm.md §5: ReLU, min-max, the
    ``blur``) so a comparison differs only in the method.

    Args:
        name: A registered method's short name.
        variant: A registered variant's short name (a control runs in ``"base"`` only).
        model: The model to explain.
        target_layer: The layer of the CAM methods.
        inputs: Normalised images (B, C, H, W).
        targets: One per image: class indices, or [ucag.targets][ucag.targets] objects
            (binary, multi-label...) for the comparisons
            [check_target_support][ucag.eval.registry.check_target_support] accepts.
        ucag_options: Go to [UCAG][ucag.explainer.UCAG] (units, patch_size, scale, weighting,
            batch_size).
        baseline_options: Maps "upscale", "sess", "sess-matched", "refinecam", "cameras" and
            "random" to keyword arguments of [Upscale][ucag.baselines.Upscale] (e.g.
            ``factor``), pytorch-grad-cam's ``SESS`` (e.g. ``num_scales``; for
            "sess-matched" the scale, window and step come from UCAG's grid unless given),
            [refinecam_maps][ucag.eval.peers.refinecam_maps] (``layers``: module names,
            ``count``: resolutions, default 3), [CAMERAS][ucag.baselines.CAMERAS] (e.g.
            ``resolutions``) and [random_cam_maps][ucag.eval.peers.random_cam_maps]
            (``seed``, default 0).
        blur: The post-processing's blur (kernel size, sigma), or None.
        mean: The inputs' normalisation, needed by the Sobel control, which works on the
            image itself (docs/algorithm.md §6.9).
        std: Its standard deviations, with ``mean``.
        precision: The arithmetic of UCAG's patch passes, ``"fp32"``, ``"bf16"`` or
            ``"fp16"`` (docs/algorithm.md §10); the other variants run in float32.
        channels_last: The layout of UCAG's patches: True, False or ``"auto"``.
        learnt: A dict kept across calls where UCAG's batch size after an out-of-memory
            back-off is remembered (None: not kept).

    Returns:
        The maps (B, H, W) in [0, 1].

    Raises:
        ValueError: An unknown method or variant, a control in a variant other than
            ``"base"``, targets the pair cannot explain, or unknown baseline options.
        TypeError: A baseline's options are not a dict.
    """
    spec = method(name)
    plan = variant_spec(variant)
    if spec.kind == "control" and plan.wraps:
        raise ValueError(f"variant: the control {name!r} runs on its own (variant 'base'), not as {variant!r}")
    targets = [t if isinstance(t, Target) else int(t) for t in targets]
    if not all(type(t) is int for t in targets):
        check_target_support([(name, variant)], next(t for t in targets if isinstance(t, Target)).kind)
    check_baseline_options(baseline_options)
    request = Request(
        model,
        target_layer,
        inputs,
        targets,
        dict(ucag_options or {}),
        dict(baseline_options or {}),
        blur,
        mean,
        std,
        precision,
        channels_last,
        {} if learnt is None else learnt,
    )
    with attached([target_layer]):  # a Tap target layer (ucag.layers) reads its call site for every method
        return plan.run(spec, request)


def _cam_targets(targets: Sequence[Any]) -> list[Any]:
    """pytorch-grad-cam target objects: a class index becomes a ClassifierOutputTarget, a
    `ucag.targets` object is one already."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return [t if isinstance(t, Target) else ClassifierOutputTarget(int(t)) for t in targets]


def check_target_support(pairs: Sequence[tuple[str, str]], kind: str) -> None:
    """Check that every (method, variant) pair can explain ``kind`` targets.

    Beyond softmax classes, the methods that are not ``class_indices_only`` (the
    pytorch-grad-cam methods; the Sobel control, which ignores the target) can, in the
    variants that follow targets (`TARGET_VARIANTS`).

    Args:
        pairs: The (method, variant) pairs of a comparison.
        kind: The targets' kind: ``"class"``, ``"binary"``, ``"multilabel"``...

    Raises:
        ValueError: Naming ``methods`` (or ``variants``) when a pair cannot explain them, or
            an unknown method.
    """
    if kind == "class":
        return
    methods = sorted({m for m, _ in pairs if method(m).class_indices_only})
    if methods:
        raise ValueError(
            f"methods: {', '.join(methods)} take class indices only; {kind} targets need pytorch-grad-cam methods (docs/algorithm.md §3.1)"
        )
    variants = sorted({v for m, v in pairs if not method(m).runs_once and v not in TARGET_VARIANTS})
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
    "TARGET_VARIANTS",
    "VARIANT_SPECS",
    "VARIANTS",
    "Explain",
    "MethodKind",
    "MethodSpec",
    "Request",
    "SobelControl",
    "VariantRun",
    "VariantSpec",
    "check_baseline_options",
    "check_target_support",
    "comparison_pairs",
    "display_name",
    "explain_with",
    "gradcam_class",
    "method",
    "methods_of_kind",
    "register_method",
    "register_variant",
    "variant_spec",
]
