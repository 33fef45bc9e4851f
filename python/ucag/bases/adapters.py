"""Adapters: run an existing attribution method on a chunk of patches.

[Adapter][ucag.bases.adapters.Adapter] is the one contract a base method meets for
[UCAG][ucag.explainer.UCAG]: a name, the model, the kind of map it gives, whether its
backward pass may stop at the target layer, a call ``adapter(patches, targets) ->
PatchAttribution`` (one partial map per patch, at whatever resolution the method produces,
plus the model's logits on the patches: from the method's own forward pass where it exposes
them, else from one extra forward under ``torch.inference_mode``) and
[Adapter.release][ucag.bases.adapters.Adapter.release] for its hooks.
[make_adapter][ucag.bases.adapters.make_adapter] picks the adapter for a pytorch-grad-cam,
Captum or zennit object or a plain callable; a base may bring its own
(``base.ucag_adapter(model)``, as [ucag.bases.propagation][ucag.bases.propagation]'s
methods do).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._inputs import LogitsOnly, logits_of
from ..layers import attached, checked_target_layers
from ..models import reshape_transform_for
from .truncation import can_truncate, truncated_backward

#: "cam": CAM-style maps, post-processed (ReLU, min-max, blur) by default; "signed":
#: relevance maps whose sign and scale carry meaning (LRP family), kept raw by default.
MapKind: TypeAlias = Literal["cam", "signed"]


@dataclass
class PatchAttribution:
    """Partial maps (n, h', w') and the logits (n, K) of the same patches.

    For targets other than a softmax class ([ucag.targets][ucag.targets]), the model's
    confidence in each patch's target (n,) instead, and whether the target is present on
    each patch (the outputs, which may be dense, are not kept: ``logits`` is then (n, 0)).

    Attributes:
        maps: The partial maps (n, h', w'), one per patch, at the method's resolution.
        logits: The model's logits on the patches (n, K); (n, 0) for targets other than a
            softmax class.
        normalised: True when the maps are the method's normalised output rather than raw
            maps (``Explanation.partials_normalised``).
        probabilities: The model's confidence in each patch's target (n,), for targets
            other than a softmax class; None otherwise.
        present: Whether the target is present on each patch (n,) bool; None for everywhere.
    """

    maps: torch.Tensor
    logits: torch.Tensor
    normalised: bool = False
    probabilities: torch.Tensor | None = None
    present: torch.Tensor | None = None


def _as_maps(result: Any, device: torch.device, argument: str, rows: int) -> torch.Tensor:
    """A method's result for ``rows`` patches, (n, h, w), (n, 1, h, w) or (n, C, h, w)
    (summed over channels), torch or numpy -> float (n, h, w); anything else is an error
    naming ``argument``."""
    if isinstance(result, tuple):
        result = result[0]
    if not isinstance(result, torch.Tensor):
        array = np.asarray(result) if result is not None else None
        if array is None or array.dtype.kind not in "biuf":
            raise TypeError(
                f"{argument}: expected maps (n, h, w) as a torch tensor or numpy array, got {type(result).__name__}"
            )
        result = torch.as_tensor(array)
    maps: torch.Tensor = result.detach().to(device)
    if maps.dim() == 4:
        maps = maps.sum(dim=1)
    if maps.dim() != 3:
        raise ValueError(f"{argument}: expected maps of shape (n, h, w) or (n, C, h, w), got {tuple(maps.shape)}")
    if maps.shape[0] != rows:
        raise ValueError(f"{argument}: returned {maps.shape[0]} maps for {rows} patches; expected one map per patch")
    if not maps.is_floating_point():
        maps = maps.float()
    return maps


def inference_logits(model: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """The model's logits on ``patches`` from one forward under ``torch.inference_mode``.

    For methods that do not expose those of their own forward.

    Args:
        model: The model.
        patches: The patches (n, C, h, w).

    Returns:
        The logits (n, K) (the tensor in the model's output, as ``ucag._inputs.logits_of``
            finds it).

    Raises:
        TypeError: When the model's output holds no tensor where one is looked for.
    """
    with torch.inference_mode():
        return logits_of(model(patches))


@contextlib.contextmanager
def _attributes(obj: Any, **values: Any) -> Iterator[None]:
    """``obj``'s attributes set to ``values`` for the block (those it lacked removed after)."""
    missing = object()
    saved = {name: obj.__dict__.get(name, missing) for name in values}
    for name, value in values.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


@runtime_checkable
class Adapter(Protocol):
    """What [UCAG][ucag.explainer.UCAG] needs from a base method.

    A protocol: any object with these members is an adapter (``isinstance`` checks them).
    ``name``: how the method is written in reprs and progress bars. Calling it explains a
    chunk of patches, each for its own target; ``target_objects`` are the user's
    pytorch-grad-cam target objects (one per row) where given.
    [release][ucag.bases.adapters.Adapter.release] removes the hooks the method holds on the
    model. An adapter may also say that UCAG can run it below float32
    (``mixed_precision``, and ``precision_layers`` whose outputs stay float32; see
    [BaseAdapter][ucag.bases.adapters.BaseAdapter] and docs/algorithm.md §10); without them
    it runs in float32.

    Attributes:
        model: The classifier the method explains.
        map_kind: ``"cam"`` (CAM-style maps, post-processed by default) or ``"signed"``
            (relevance maps whose sign and scale carry meaning, kept raw by default).
        truncatable: Whether the backward pass may stop at the target layer
            ([ucag.bases.truncation][ucag.bases.truncation]).
        truncate: Whether it does.
    """

    model: nn.Module
    map_kind: MapKind
    truncatable: bool
    truncate: bool

    @property
    def name(self) -> str:
        """How the method is written in reprs and progress bars."""
        ...

    def __call__(
        self,
        patches: torch.Tensor,
        targets: torch.Tensor,
        *,
        target_objects: list[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> PatchAttribution:
        """Explain a chunk of patches, each for its own target.

        Args:
            patches: The patches (n, C, h, w).
            targets: One class index per patch (n,).
            target_objects: The user's pytorch-grad-cam target objects, one per patch, where
                given (they take precedence over ``targets`` for the gradient).
            aug_smooth: grad-cam's test-time augmentation smoothing.
            eigen_smooth: grad-cam's first-principal-component smoothing.

        Returns:
            One partial map per patch and the model's logits on the patches.
        """
        ...

    def release(self) -> None:
        """Remove the hooks the method holds on the model."""
        ...


def oriented(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Principal-component maps with their arbitrary sign fixed.

    Each map is negated where it correlates negatively with its ``reference`` map, so a
    solver's sign choice cannot invert a partial map (docs/algorithm.md §2,
    "Principal-component maps are oriented").

    Args:
        maps: Principal-component maps (n, h, w).
        reference: One reference map per map (n, h, w): the channel sum of the matrix it was
            projected from (where the features, or the class evidence, are).

    Returns:
        The maps (n, h, w), each negated where it correlated negatively with its reference.

    Examples:
        >>> import torch
        >>> from ucag.bases.adapters import oriented
        >>> reference = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
        >>> oriented(torch.tensor([[[1.0, -1.0], [1.0, -1.0]]]), reference).tolist()
        [[[-1.0, 1.0], [-1.0, 1.0]]]
    """
    centred = reference - reference.mean(dim=(-2, -1), keepdim=True)
    agreement = (maps * centred).sum(dim=(-2, -1))
    return torch.where(agreement[:, None, None] < 0, -maps, maps)


def _mean_of_layers(per_layer: list[torch.Tensor]) -> torch.Tensor:
    """Raw maps of several target layers: resize to the finest layer (bilinear), average."""
    if len(per_layer) == 1:
        return per_layer[0]
    h = max(m.shape[-2] for m in per_layer)
    w = max(m.shape[-1] for m in per_layer)
    resized = [
        m
        if m.shape[-2:] == (h, w)
        else F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        for m in per_layer
    ]
    return torch.stack(resized).mean(dim=0)


class BaseAdapter:
    """Defaults of [Adapter][ucag.bases.adapters.Adapter] for adapters to build on.

    A CAM-style map, a full backward pass, nothing to release, no smoothing options; a
    subclass provides the name and ``_attribute``.
    """

    model: nn.Module
    map_kind: MapKind = "cam"
    truncatable: bool = False
    truncate: bool = False
    #: Whether UCAG may run the method below float32 (docs/algorithm.md §10): only where
    #: that is measured faithful.
    mixed_precision: bool = False
    #: The layers whose outputs stay float32 under a lowered precision.
    precision_layers: tuple[nn.Module, ...] = ()

    @property
    def name(self) -> str:
        """How the method is written in reprs and progress bars (a subclass provides it)."""
        raise NotImplementedError

    def release(self) -> None:
        """Nothing to release: the method holds no hooks between calls."""

    def __call__(
        self,
        patches: torch.Tensor,
        targets: torch.Tensor,
        *,
        target_objects: list[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> PatchAttribution:
        """The method on a chunk of patches, each for its own target.

        A method without grad-cam's smoothing options (the default) refuses them rather than
        ignoring them.

        Args:
            patches: The patches (n, C, h, w).
            targets: One class index per patch (n,).
            target_objects: The user's pytorch-grad-cam target objects (ignored here).
            aug_smooth: Must be False.
            eigen_smooth: Must be False.

        Returns:
            One partial map per patch and the model's logits on the patches.

        Raises:
            ValueError: When ``aug_smooth`` or ``eigen_smooth`` is set.
        """
        for option, flag in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
            if flag:
                raise ValueError(f"{option}: {self.name} does not support it")
        return self._attribute(patches, targets)

    def _attribute(self, patches: torch.Tensor, targets: torch.Tensor) -> PatchAttribution:
        """Partial maps and logits of a chunk of patches, each for its target."""
        raise NotImplementedError


class GradCamAdapter(BaseAdapter):
    """A pytorch-grad-cam object (any CAM class grad-cam 1.5.7 exports).

    For classes that build their maps through ``BaseCAM.get_cam_image`` (Grad-CAM,
    Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, EigenCAM, ScoreCAM, AblationCAM, ...), the
    partial maps are the RAW per-layer maps ``get_cam_image`` returns — before grad-cam's
    ReLU and min-max scaling (docs/algorithm.md §2) — captured during grad-cam's own call;
    several target layers are averaged after resizing to the finest one. Maps built from a
    principal component (Eigen-CAM, EigenGrad-CAM, KPCA-CAM, ``eigen_smooth``) are
    [oriented][ucag.bases.adapters.oriented] first. The logits are grad-cam's own forward
    outputs (``cam.outputs``). With ``aug_smooth`` (whose augmentations are undone only on
    the final map), for grad-cam's FullGrad (which bypasses ``get_cam_image``;
    [FullGrad][ucag.bases.propagation.FullGrad] gives its raw map) and for the wrapper classes (FinerCAM, RefineCAM, SESS), the partial maps are
    grad-cam's normalised output and, where the object keeps no logits, one extra forward
    supplies them.

    Gradient-based classes run with the backward pass stopped at the target layer
    ([ucag.bases.truncation][ucag.bases.truncation]) unless ``truncate`` is set to False.
    [release][ucag.bases.adapters.GradCamAdapter.release] removes grad-cam's hooks, as
    ``with GradCAM(...) as cam`` does on exit.

    Args:
        cam: A pytorch-grad-cam object.
        model: The model it explains; None to find it inside ``cam``
            ([find_model][ucag.bases.adapters.find_model]).

    Raises:
        ValueError: When ``model`` is None and none is found inside ``cam``.
    """

    def __init__(self, cam: Any, model: nn.Module | None = None) -> None:
        self.cam = cam
        self.model = model if model is not None else find_model(cam)
        self.captures_raw = hasattr(cam, "get_cam_image") and hasattr(cam, "activations_and_grads")
        #: Gradient-based CAMs need nothing below their target layers (see ucag.bases.truncation).
        self.truncatable = can_truncate(cam)
        self.truncate = self.truncatable
        #: The gradient-based CAMs run below float32 where asked (docs/algorithm.md §10):
        #: their target layers' activations and gradients, which they read, stay float32.
        self.mixed_precision = self.truncatable and self.captures_raw
        self.precision_layers = tuple(cam.target_layers) if self.mixed_precision else ()
        #: The token layout of a transformer's target layers, applied during calls when the
        #: CAM was built without a ``reshape_transform`` (ucag.models.reshape_transform_for).
        self.reshape_transform = (
            reshape_transform_for(self.model, cam.target_layers)
            if self.captures_raw and cam.reshape_transform is None
            else None
        )

    @property
    def name(self) -> str:
        """The CAM's class name."""
        return type(self.cam).__name__

    def _projection_reference(self, method: Callable[..., Any], args: tuple[Any, ...], eigen_smooth: bool) -> Any:
        """What a principal-component map is oriented against (``oriented``), None for
        maps whose sign is already meaningful: the activations for Eigen-CAM and KPCA-CAM,
        gradients x activations for EigenGrad-CAM (the matrices they project), and a CAM's
        own map without ``eigen_smooth`` when it projects with it."""
        from pytorch_grad_cam import KPCA_CAM, EigenCAM, EigenGradCAM

        activations, grads = args[3], args[4]
        if isinstance(self.cam, EigenGradCAM):
            return (np.asarray(grads) * np.asarray(activations)).sum(axis=1)
        if isinstance(self.cam, (EigenCAM, KPCA_CAM)):
            return np.asarray(activations).sum(axis=1)
        if eigen_smooth:
            return method(self.cam, *args, False)
        return None

    def release(self) -> None:
        """Remove grad-cam's hooks from the model, as ``with GradCAM(...) as cam`` does on exit."""
        hooks = getattr(self.cam, "activations_and_grads", None)
        if hooks is not None:
            hooks.release()

    def __call__(
        self,
        patches: torch.Tensor,
        targets: torch.Tensor,
        *,
        target_objects: list[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> PatchAttribution:
        """The CAM on a chunk of patches, each for its own target.

        Args:
            patches: The patches (n, C, h, w).
            targets: One class index per patch (n,), explained through grad-cam's
                ``ClassifierOutputTarget`` unless ``target_objects`` are given.
            target_objects: The user's pytorch-grad-cam target objects, one per patch (e.g.
                ``ClassifierOutputSoftmaxTarget``), which keep their meaning.
            aug_smooth: grad-cam's test-time augmentation smoothing (the maps are then
                grad-cam's normalised output).
            eigen_smooth: grad-cam's first-principal-component smoothing.

        Returns:
            One partial map per patch (raw where captured, else normalised) and grad-cam's
                logits on the patches.

        Raises:
            ValueError: When a wrapper class (FinerCAM, RefineCAM, SESS) does not take the
                smoothing option that is set.
        """
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if not self.truncate and not any(p.requires_grad for p in self.model.parameters()):
            # A frozen model builds no graph from its weights: let the patches carry one, so
            # the target layer's activations still get their gradient.
            patches = patches.detach().requires_grad_(True)
        # The user's own target objects (e.g. ClassifierOutputSoftmaxTarget) keep their meaning.
        cam_targets = target_objects or [ClassifierOutputTarget(int(t)) for t in targets.tolist()]
        kwargs = {"aug_smooth": aug_smooth, "eigen_smooth": eigen_smooth}
        if not self.captures_raw:
            # Wrapper classes take only some of BaseCAM's keyword arguments.
            accepted = inspect.signature(self.cam.forward).parameters
            for key in [k for k in kwargs if k not in accepted]:
                if kwargs.pop(key):
                    raise ValueError(f"{key}: {self.name} does not support it")
            layers = _wrapped_target_layers(self.cam)
            with attached(layers), checked_target_layers(self.model, layers):
                out = self.cam(patches, cam_targets, **kwargs)
            return PatchAttribution(
                _as_maps(out, patches.device, "base", len(patches)), inference_logits(self.model, patches), True
            )
        captured: list[torch.Tensor] = []
        method = type(self.cam).get_cam_image

        def capture(
            input_tensor: Any, target_layer: Any, targets: Any, activations: Any, grads: Any, eigen_smooth: bool = False
        ) -> Any:
            args = (input_tensor, target_layer, targets, activations, grads)
            result = method(self.cam, *args, eigen_smooth)
            maps = _as_maps(result, patches.device, "base", len(patches))
            reference = self._projection_reference(method, args, eigen_smooth)
            captured.append(
                maps if reference is None else oriented(maps, _as_maps(reference, patches.device, "base", len(patches)))
            )
            return result

        # For this call only: the class method shadowed by the capture; the model seen
        # through logits_of (grad-cam indexes its output as a tensor); the token layout.
        logits_model = LogitsOnly(self.model)
        transform = {"reshape_transform": self.reshape_transform} if self.reshape_transform else {}
        with (
            _attributes(self.cam, get_cam_image=capture, model=logits_model, **transform),
            _attributes(self.cam.activations_and_grads, model=logits_model, **transform),
            attached(self.cam.target_layers),
            checked_target_layers(self.model, self.cam.target_layers),
            truncated_backward(self.model, self.cam.target_layers) if self.truncate else contextlib.nullcontext(),
        ):
            out = self.cam(input_tensor=patches, targets=cam_targets, **kwargs)
        logits = getattr(self.cam, "outputs", None)
        if isinstance(logits, torch.Tensor):
            # Keep the outputs but not their autograd graph: grad-cam holds it until its
            # next call, which would keep a whole chunk's activations alive into the next.
            logits = self.cam.outputs = logits.detach()
        else:
            logits = inference_logits(self.model, patches)
        if captured and not aug_smooth:
            return PatchAttribution(_mean_of_layers(captured), logits, False)
        return PatchAttribution(_as_maps(out, patches.device, "base", len(patches)), logits, True)


def _wrapped_target_layers(cam: Any) -> list[Any]:
    """The target layers of grad-cam's wrapper classes (SESS, FinerCAM: ``base_cam``;
    RefineCAM: one CAM per layer)."""
    inner = getattr(cam, "base_cam", None)
    if inner is not None:
        return list(getattr(inner, "target_layers", []) or [])
    per_layer = getattr(cam, "base_cam_per_layer", None)
    if per_layer:
        return [layer for c in per_layer for layer in (getattr(c, "target_layers", []) or [])]
    return list(getattr(cam, "target_layers", []) or [])


def captum_map_kind(attribution: Any, attribute_kwargs: dict[str, Any]) -> MapKind:
    """The kind of map a Captum method gives.

    Args:
        attribution: A Captum ``Attribution``.
        attribute_kwargs: The options its ``attribute`` is called with.

    Returns:
        ``"cam"`` for LayerGradCam and Saliency with ``abs`` (its default), ``"signed"`` for
            every other Captum method; a NoiseTunnel is what the method it wraps is.
    """
    inner = getattr(attribution, "attribution_method", None)  # NoiseTunnel
    if inner is not None and type(attribution).__name__ == "NoiseTunnel":
        return captum_map_kind(inner, attribute_kwargs)
    name = type(attribution).__name__
    if name == "LayerGradCam" or (name == "Saliency" and attribute_kwargs.get("abs", True)):
        return "cam"
    return "signed"


#: What UCAG itself passes to a Captum method's ``attribute``, per chunk of patches.
_CAPTUM_OWN = ("inputs", "target")


def check_attribute_kwargs(attribution: Any, attribute_kwargs: Mapping[str, Any]) -> None:
    """Check the options for a Captum method's ``attribute`` before any patch runs.

    Args:
        attribution: A Captum ``Attribution``.
        attribute_kwargs: The options its ``attribute`` is to be called with.

    Raises:
        TypeError: Naming ``attribute_kwargs``, for an option the method's ``attribute`` does
            not take, or one UCAG sets itself (``inputs``, ``target``).
    """
    taken = sorted(k for k in attribute_kwargs if k in _CAPTUM_OWN)
    if taken:
        raise TypeError(f"attribute_kwargs: {taken[0]!r} is set by UCAG for every chunk of patches; drop it")
    try:
        parameters = inspect.signature(attribution.attribute).parameters
    except (TypeError, ValueError, AttributeError):
        return  # nothing to check against
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(attribute_kwargs) - set(parameters))
    if unknown:
        accepted = ", ".join(n for n in parameters if n not in _CAPTUM_OWN)
        raise TypeError(
            f"attribute_kwargs: {type(attribution).__name__}.attribute takes no {unknown[0]!r}; it takes {accepted}"
        )


class CaptumAdapter(BaseAdapter):
    """Any Captum ``Attribution`` (LayerGradCam, GuidedGradCam, IntegratedGradients,
    Saliency, LRP, ...), called as ``attribute(patches, target=targets, **attribute_kwargs)``.
    Layer-level results are used as they are (LayerGradCam's default keeps them raw);
    input-level (n, C, h, w) results are summed over channels. Captum does not expose the
    logits of its forward pass, so one extra forward of ``forward_func`` supplies them.

    The maps are "cam" maps only for LayerGradCam and for Saliency's absolute gradients;
    every other method (gradient x input, Integrated Gradients, DeepLift, GradientShap,
    occlusion, LRP, layer attributions, ...) gives signed evidence for and against the
    class, which ``postprocess="auto"`` keeps (no ReLU).

    Args:
        attribution: A Captum ``Attribution``.
        model: The model it explains; None to find it inside ``attribution`` (its
            ``forward_func``).
        **attribute_kwargs: Options for every call of ``attribute``, checked here
            ([check_attribute_kwargs][ucag.bases.adapters.check_attribute_kwargs]).

    Raises:
        TypeError: For an option ``attribute`` does not take, or one UCAG sets itself.
        ValueError: When ``model`` is None and none is found inside ``attribution``.
    """

    def __init__(self, attribution: Any, model: nn.Module | None = None, **attribute_kwargs: Any) -> None:
        check_attribute_kwargs(attribution, attribute_kwargs)
        self.attribution = attribution
        self.model = model if model is not None else find_model(attribution)
        self.attribute_kwargs = attribute_kwargs
        self.map_kind = captum_map_kind(attribution, attribute_kwargs)

    @property
    def name(self) -> str:
        """The Captum method's class name."""
        return type(self.attribution).__name__

    def _logits_forward(self) -> contextlib.AbstractContextManager[None]:
        """Captum indexes its ``forward_func``'s output by target: for the call, a model that
        returns a tuple or a ModelOutput is seen through logits_of (LRP, which walks the
        model's own layers, keeps it as it is)."""
        forward = getattr(self.attribution, "forward_func", None)
        if forward is not self.model or "LRP" in type(self.attribution).__name__:
            return contextlib.nullcontext()
        return _attributes(self.attribution, forward_func=lambda *args, **kwargs: logits_of(forward(*args, **kwargs)))

    def _attribute(self, patches: torch.Tensor, targets: torch.Tensor) -> PatchAttribution:
        with warnings.catch_warnings():
            # The patches are ucag's own fresh tensors: Captum may mark them as requiring grad.
            warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
            with self._logits_forward():
                result = self.attribution.attribute(patches, target=targets, **self.attribute_kwargs)
        return PatchAttribution(
            _as_maps(result, patches.device, "base", len(patches)), inference_logits(self.model, patches)
        )


class ZennitAdapter(BaseAdapter):
    """A zennit ``Attributor`` (e.g. ``Gradient(model, EpsilonPlusFlat())``): the output
    relevance is the one-hot target, the relevance is summed over channels (signed), and the
    logits come from the attributor's own forward pass.

    Args:
        attributor: A zennit ``Attributor``.
        model: The model it explains; None for the attributor's own ``model``.
    """

    map_kind: MapKind = "signed"

    def __init__(self, attributor: Any, model: nn.Module | None = None) -> None:
        self.attributor = attributor
        self.model = model if model is not None else attributor.model

    @property
    def name(self) -> str:
        """The attributor's class name, with its composite's in brackets where it has one."""
        composite = getattr(self.attributor, "composite", None)
        suffix = f"[{type(composite).__name__}]" if composite is not None else ""
        return type(self.attributor).__name__ + suffix

    def _attribute(self, patches: torch.Tensor, targets: torch.Tensor) -> PatchAttribution:

        def one_hot(output: torch.Tensor) -> torch.Tensor:
            return F.one_hot(targets.to(output.device), output.shape[-1]).to(output.dtype)

        # zennit differentiates the model's output as a tensor: see a tuple or a
        # ModelOutput through logits_of for the call (rules still attach to the same layers)
        with _attributes(self.attributor, model=LogitsOnly(self.attributor.model)):
            output, relevance = self.attributor(patches, one_hot)
        return PatchAttribution(_as_maps(relevance, patches.device, "base", len(patches)), output.detach())


class CallableAdapter(BaseAdapter):
    """A plain function ``fn(patches, targets) -> maps`` ((n, h, w), (n, 1, h, w) or
    (n, C, h, w), torch or numpy). The logits come from one extra forward of ``model``,
    which must be given.

    Args:
        fn: The method: ``fn(patches, targets) -> maps``.
        model: The model it explains (required).

    Raises:
        ValueError: When ``model`` is None.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], Any], model: nn.Module | None) -> None:
        if model is None:
            raise ValueError("model: a plain callable base needs model= (to weight patches by the model's confidence)")
        self.fn = fn
        self.model = model

    @property
    def name(self) -> str:
        """The function's ``__name__`` (its class name for a callable object without one)."""
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def _attribute(self, patches: torch.Tensor, targets: torch.Tensor) -> PatchAttribution:
        return PatchAttribution(
            _as_maps(self.fn(patches, targets), patches.device, "base", len(patches)),
            inference_logits(self.model, patches),
        )


def find_model(base: Any) -> nn.Module:
    """The classifier inside a base method object.

    Args:
        base: A pytorch-grad-cam, Captum or zennit object.

    Returns:
        Its ``model`` (unwrapped from ``LogitsOnly``), ``forward_func`` or
            ``base_cam.model``, or the first per-layer CAM's model (RefineCAM).

    Raises:
        ValueError: When no model is found.
    """
    for path in ("model", "forward_func", "base_cam.model"):
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, LogitsOnly):  # the model a CAM was built on through ucag's registry
            return obj.model
        if isinstance(obj, nn.Module):
            return obj
    layers = getattr(base, "base_cam_per_layer", None)  # RefineCAM
    if layers:
        return layers[0].model  # type: ignore[no-any-return]
    raise ValueError(f"model: cannot find the model inside {type(base).__name__}; pass model=")


def make_adapter(
    base: Any, model: nn.Module | None = None, attribute_kwargs: Mapping[str, Any] | None = None
) -> Adapter:
    """The [Adapter][ucag.bases.adapters.Adapter] for a base method.

    Args:
        base: The base method: an object with its own ``ucag_adapter(model)`` (as
            [ucag.bases.propagation][ucag.bases.propagation]'s methods have), a
            pytorch-grad-cam, Captum or zennit object, or a callable
            ``fn(patches, targets) -> maps``.
        model: The model it explains; None to find it inside ``base`` (required for a
            plain callable).
        attribute_kwargs: Options for a Captum method's ``attribute``, checked against its
            signature here; None for none.

    Returns:
        The base's own adapter where it supplies one, else the one chosen by its library.

    Raises:
        TypeError: When ``attribute_kwargs`` is not a dict of keyword arguments, has an option
            the method does not take, is given for a base other than Captum's, or ``base`` is
            none of the above.
        ValueError: When the model is not given and cannot be found, or differs from the one
            a propagation method was built with.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.bases import make_adapter
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                       nn.Flatten(), nn.Linear(4, 2))
        >>> def saliency(patches, targets):
        ...     return patches.abs().sum(dim=1)
        >>> adapter = make_adapter(saliency, model)
        >>> adapter.name, adapter.map_kind
        ('saliency', 'cam')
        >>> part = adapter(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))
        >>> tuple(part.maps.shape), tuple(part.logits.shape)
        ((2, 8, 8), (2, 2))
    """
    if attribute_kwargs is None:
        attribute_kwargs = {}
    if not isinstance(attribute_kwargs, Mapping) or not all(isinstance(k, str) for k in attribute_kwargs):
        raise TypeError(
            f"attribute_kwargs: expected a dict of keyword arguments, got {type(attribute_kwargs).__name__}"
        )
    own = getattr(base, "ucag_adapter", None)
    if callable(own):
        return own(model, **attribute_kwargs)  # type: ignore[no-any-return]
    module = type(base).__module__ or ""
    if module.startswith("captum"):
        return CaptumAdapter(base, model, **attribute_kwargs)
    if attribute_kwargs:
        raise TypeError(
            f"attribute_kwargs: only Captum bases take attribute options, got {sorted(attribute_kwargs)} for {type(base).__name__}"
        )
    if module.startswith("pytorch_grad_cam"):
        return GradCamAdapter(base, model)
    if module.startswith("zennit"):
        return ZennitAdapter(base, model)
    if callable(base):
        return CallableAdapter(base, model)
    raise TypeError(
        f"base: expected a pytorch-grad-cam, Captum or zennit object or a callable, got {type(base).__name__}"
    )
