"""Relevance-propagation bases for UCAG: LRP, ``c*LRP``, SGLRP and FullGrad (the paper's Table 4).

Each class here is usable on its own, with pytorch-grad-cam's call convention:

```python
lrp = LRP(model)
maps = lrp(input_tensor=x, targets=[ClassifierOutputTarget(281)])  # numpy (B, H, W)
```

and as the ``base`` of [UCAG][ucag.explainer.UCAG]. Maps are RAW and SIGNED (LRP family: positive =
evidence for the target, negative = evidence against it; the paper shows them red/blue), so
UCAG's ``postprocess="auto"`` resolves to ``"none"`` for them.

- [LRP][ucag.bases.propagation.LRP] — Layer-wise Relevance Propagation through zennit: by default the
  epsilon-plus-flat composite (flat rule on the first layer, z+ on the other convolutions,
  epsilon on fully connected layers, relevance passed through activations, batch norms and
  average pools normalised), with the canonizers a model needs (torchvision ResNet / VGG:
  zennit's own; any other model: every batch norm that directly consumes a convolution's or
  linear layer's output is merged into it, found by tracing one forward pass). The output
  relevance is the target's logit, so the input relevance sums to it where the rules
  conserve relevance (zero biases, no batch norm left unmerged, no bare tensor additions).
- [ContrastiveLRP][ucag.bases.propagation.ContrastiveLRP] — ``c*LRP`` / CLRP (Gu, Yang & Tresp,
  ACCV 2018): the LRP relevance of the target minus that of its "dual" concept, all other classes, each receiving an equal
  share ``y_t / (K - 1)`` of the target's score (the paper's first variant, CLRP1).
- [SoftmaxGradientLRP][ucag.bases.propagation.SoftmaxGradientLRP] — SGLRP (Iwana, Kuroki &
  Uchida, ICCVW 2019): the output relevance is the gradient of the target's softmax probability with respect to the logits,
  ``y_t (1 - y_t)`` for the target and ``-y_t y_k`` for every other class ``k`` (``y`` the
  softmax), propagated with the same rules.
- [FullGrad][ucag.bases.propagation.FullGrad] — pytorch-grad-cam's FullGrad (Srinivas & Fleuret 2019), returning its RAW
  map: the sum of the normalised input-gradient and bias-gradient components before
  grad-cam's final min-max scaling (grad-cam's own output is that map min-max scaled).

Because LRP is linear in the output relevance for a fixed input (every zennit rule is), ``c*LRP``
is computed in ONE backward pass from the output relevance ``R_target - R_dual``.

**How UCAG uses them.** Each object has ``ucag_adapter(model=None)``, which returns its
[Adapter][ucag.bases.adapters.Adapter] (``map_kind = "signed"``) taking the logits from the
method's own forward pass; [make_adapter][ucag.bases.adapters.make_adapter] uses it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._call import GradCamCallable
from .._inputs import Targets, check_input, resolve_targets, target_objects
from .._model_state import eval_mode, model_device
from .adapters import BaseAdapter, MapKind, PatchAttribution

# --------------------------------------------------------------------------------------
# Output relevances: (n, K) logits and (n,) targets -> the (n, K) relevance of the outputs.
# --------------------------------------------------------------------------------------


def _one_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.one_hot(targets.to(logits.device).long(), logits.shape[-1]).to(logits.dtype)


def _target_column(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return values.gather(1, targets.to(values.device).long()[:, None])


def lrp_output_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Plain LRP's output relevance: the target's logit on the target, 0 elsewhere.

    Args:
        logits: The logits (n, K).
        targets: One class index per row (n,).

    Returns:
        The output relevance (n, K).

    Examples:
        >>> import torch
        >>> from ucag.bases.propagation import lrp_output_relevance
        >>> lrp_output_relevance(torch.tensor([[2.0, 1.0, 4.0]]), torch.tensor([0]))
        tensor([[2., 0., 0.]])
    """
    return logits * _one_hot(logits, targets)


def contrastive_output_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``c*LRP``'s output relevance: ``R_target - R_dual``.

    ``R_target = y_t`` on the target, and the dual (all other classes) shares the same score
    equally, ``y_t / (K - 1)`` each.

    Args:
        logits: The logits (n, K).
        targets: One class index per row (n,).

    Returns:
        The output relevance (n, K): ``y_t`` on the target and ``-y_t / (K - 1)`` on every
            other class.

    Raises:
        ValueError: When the model has fewer than two classes.

    Examples:
        >>> import torch
        >>> from ucag.bases.propagation import contrastive_output_relevance
        >>> contrastive_output_relevance(torch.tensor([[2.0, 1.0, 4.0]]), torch.tensor([0]))
        tensor([[ 2., -1., -1.]])
    """
    K = logits.shape[-1]
    if K < 2:
        raise ValueError("ContrastiveLRP: the model must have at least two classes (the dual is all other classes)")
    one_hot = _one_hot(logits, targets)
    return _target_column(logits, targets) * (one_hot - (1 - one_hot) / (K - 1))


def softmax_gradient_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SGLRP's output relevance: the gradient of the target's softmax probability.

    Args:
        logits: The logits z (n, K).
        targets: One class index per row (n,).

    Returns:
        The output relevance (n, K): ``d softmax(z)_t / d z_k`` = ``y_t (1 - y_t)`` for
            k = t, ``-y_t y_k`` otherwise (``y`` the softmax of the logits).

    Examples:
        >>> import torch
        >>> from ucag.bases.propagation import softmax_gradient_relevance
        >>> softmax_gradient_relevance(torch.tensor([[2.0, 1.0, 4.0]]), torch.tensor([0])).round(decimals=4)
        tensor([[ 0.1012, -0.0048, -0.0964]])
    """
    probs = torch.softmax(logits, dim=-1)
    return _target_column(probs, targets) * (_one_hot(probs, targets) - probs)


# --------------------------------------------------------------------------------------
# Canonizers
# --------------------------------------------------------------------------------------


def traced_batchnorm_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[tuple[str], str]]:
    """Every batch norm whose input is exactly the output tensor of one convolution / linear module.

    Found by running ``example`` through the model once (no grad). Unlike zennit's
    ``SequentialMergeBatchNorm`` this does not rely on the order modules were assigned in,
    nor on convolutions being leaves (the sample EfficientNet's convolutions hold their
    padding module as a child). A module called more than once, or a batch norm fed by
    several, is left out.

    Args:
        model: The model.
        example: An input the model runs on (one image is enough).

    Returns:
        The pairs ``[((linear_name,), batch_norm_name), ...]``, by module name, as zennit's
            ``NamedMergeBatchNorm`` takes them.
    """
    from zennit.types import BatchNorm, Linear

    names = {module: name for name, module in model.named_modules()}
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (name, output kept alive)
    pairs: list[tuple[tuple[str], str]] = []

    def after_linear(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            produced[id(output)] = (names[module], output)

    def before_norm(module: nn.Module, args: Any) -> None:
        if args and isinstance(args[0], torch.Tensor):
            source = produced.get(id(args[0]))
            if source is not None and source[1] is args[0]:
                pair = ((source[0],), names[module])
                if pair not in pairs:
                    pairs.append(pair)

    handles = []
    for module in model.modules():
        if isinstance(module, Linear):
            handles.append(module.register_forward_hook(after_linear))
        elif isinstance(module, BatchNorm) and module.weight is not None and module.running_var is not None:
            handles.append(module.register_forward_pre_hook(before_norm))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    # a module called more than once (shared), or a batch norm fed by several, cannot be merged
    linears = [linear for (linear,), _ in pairs]
    norms = [norm for _, norm in pairs]
    return [pair for pair in pairs if linears.count(pair[0][0]) == 1 and norms.count(pair[1]) == 1]


@functools.cache
def _exact_merge_class() -> type:
    from zennit.canonizers import NamedMergeBatchNorm

    class ExactNamedMergeBatchNorm(NamedMergeBatchNorm):
        """zennit's ``NamedMergeBatchNorm``, whose emptied batch norm is exactly the identity.

        zennit resets the batch norm to mean 0, variance 1, so it still divides by
        ``sqrt(1 + eps)``: negligible for torchvision's eps = 1e-5, but the sample
        EfficientNet's 49 batch norms use eps = 1e-3 and their product moves its logits by
        about 2%. Here the variance becomes ``1 - eps``."""

        @staticmethod
        def merge_batch_norm(modules: Any, batch_norm: nn.modules.batchnorm._BatchNorm) -> None:
            NamedMergeBatchNorm.merge_batch_norm(modules, batch_norm)
            if batch_norm.eps < 1:
                assert batch_norm.running_var is not None  # zennit's merge above has just reset it
                batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)

    return ExactNamedMergeBatchNorm


def default_canonizers(model: nn.Module, example: torch.Tensor | None = None) -> list[Any]:
    """The canonizers [LRP][ucag.bases.propagation.LRP] uses for a model.

    Args:
        model: The model.
        example: One input image, to trace the batch norms of a model other than a
            torchvision ResNet / VGG; None for no tracing.

    Returns:
        zennit's ``ResNetCanonizer`` / ``VGGCanonizer`` for torchvision ResNets / VGGs;
            otherwise an (exact) ``NamedMergeBatchNorm`` of
            [traced_batchnorm_pairs][ucag.bases.propagation.traced_batchnorm_pairs], or an
            empty list (no ``example``, or no batch norm to merge).
    """
    try:
        import torchvision.models as tvm
        from zennit.torchvision import ResNetCanonizer, VGGCanonizer

        if isinstance(model, tvm.ResNet):
            return [ResNetCanonizer()]
        if isinstance(model, tvm.VGG):
            return [VGGCanonizer()]
    except ImportError:  # pragma: no cover - torchvision is optional
        pass
    if example is None:
        return []
    pairs = traced_batchnorm_pairs(model, example)
    return [_exact_merge_class()(pairs)] if pairs else []


def _same_function(model: nn.Module, composite: Any, example: torch.Tensor) -> bool:
    """Whether the model computes the same outputs with the composite registered (a
    canonizer must never change the function)."""
    with torch.no_grad():
        reference = model(example)
        with composite.context(model):
            canonized = model(example)
    scale = reference.abs().max().clamp_min(1e-6)
    return bool(((canonized - reference).abs().max() / scale) < 1e-3)


# --------------------------------------------------------------------------------------
# Shared call convention
# --------------------------------------------------------------------------------------


class _PropagationAdapter(BaseAdapter):
    """What ``ucag.UCAG`` calls: one chunk of patches -> ``PatchAttribution``,
    with the logits of the method's own forward pass."""

    map_kind: MapKind = "signed"

    def __init__(self, method: _Method, model: nn.Module | None = None) -> None:
        if model is not None and model is not method.model:
            raise ValueError("model: differs from the model the propagation method was built with")
        self.method = method
        self.model = method.model

    @property
    def name(self) -> str:
        return self.method.name

    def __call__(
        self,
        patches: torch.Tensor,
        targets: torch.Tensor,
        *,
        target_objects: list[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> PatchAttribution:
        with eval_mode(self.model):
            return self.method._attribute(
                patches, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, target_objects=target_objects
            )


class _Method(GradCamCallable):
    """Shared: the grad-cam call convention, ``attribute`` and the UCAG hook."""

    model: nn.Module

    @property
    def name(self) -> str:
        return type(self).__name__

    def ucag_adapter(self, model: nn.Module | None = None, **options: Any) -> _PropagationAdapter:
        """The adapter [UCAG][ucag.explainer.UCAG] runs on the patches (see the module docstring).

        Args:
            model: The model; None, or the one the method was built with.
            **options: Captum-style attribute options: none are taken.

        Returns:
            The adapter (``map_kind = "signed"``), taking the logits from the method's own
                forward pass.

        Raises:
            TypeError: When ``options`` are given.
            ValueError: When ``model`` differs from the one the method was built with.
        """
        if options:
            raise TypeError(f"{self.name} takes no attribute options, got {sorted(options)}")
        return _PropagationAdapter(self, model)

    def _attribute(
        self,
        x: torch.Tensor,
        targets: torch.Tensor,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        target_objects: list[Any] | None = None,
    ) -> PatchAttribution:
        raise NotImplementedError

    def attribute(
        self,
        input_tensor: torch.Tensor,
        targets: Targets = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> PatchAttribution:
        """Raw maps (B, H, W) and the logits (B, K) of the same forward pass.

        The model runs in eval mode (as grad-cam runs it); its modes, ``requires_grad``
        flags and hooks are restored afterwards.

        Args:
            input_tensor: The images (B, C, H, W), floating point.
            targets: Class indices, grad-cam ``ClassifierOutputTarget`` objects or a 1-D
                integer tensor, one per image; None explains the prediction.
            aug_smooth: grad-cam's test-time augmentation smoothing (refused: the maps are raw).
            eigen_smooth: grad-cam's first-principal-component smoothing (FullGrad only).

        Returns:
            The maps and logits, as torch tensors on the model's device.

        Raises:
            TypeError: When ``input_tensor`` is not a floating-point tensor, or a target is
                not a class.
            ValueError: When ``input_tensor`` is not a non-empty (B, C, H, W) batch, the
                targets do not fit the model's output, or a smoothing option is refused.
        """
        check_input(input_tensor)
        x = input_tensor.detach().to(model_device(self.model))
        with eval_mode(self.model):  # as grad-cam runs it; the modes are restored on exit
            ids = resolve_targets(self.model, x, targets)
            # grad-cam target objects: FullGrad honours them (e.g. softmax targets)
            objects = target_objects(targets)
            return self._attribute(x, ids, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, target_objects=objects)

    def _call_maps(
        self, input_tensor: torch.Tensor, targets: Targets, *, aug_smooth: bool, eigen_smooth: bool
    ) -> torch.Tensor:
        """The raw maps (the call returns them as numpy, grad-cam's convention)."""
        return self.attribute(input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth).maps

    def __repr__(self) -> str:
        return f"{self.name}(model={type(self.model).__name__})"


class LRP(_Method):
    """Layer-wise Relevance Propagation (Bach et al. 2015) through zennit.

    Maps: input relevance summed over channels, signed, at the input resolution. The output
    relevance is the target logit
    ([output_relevance][ucag.bases.propagation.LRP.output_relevance]), so where the rules
    conserve relevance the map sums to it. For models other than torchvision ResNet / VGG,
    the batch norms to merge are found by tracing the first call's first image; if merging
    them would change the model's outputs, LRP warns and runs without merging.

    Args:
        model: The classifier.
        composite: None (default) for zennit's ``EpsilonPlusFlat`` with the canonizers of
            [default_canonizers][ucag.bases.propagation.default_canonizers]; the name of a
            zennit composite (a key of ``zennit.composites.COMPOSITES``, e.g.
            ``"epsilon_plus"``, ``"epsilon_alpha2_beta1_flat"``), built with the same
            canonizers; or a zennit ``Composite`` instance, used as it is.
        epsilon: The epsilon rule's stabiliser for the default/named composites.

    Raises:
        TypeError: When ``model`` is not a ``torch.nn.Module``, or ``composite`` is neither
            None, a name nor a zennit composite.
        ValueError: When ``composite`` names no zennit composite.
    """

    def __init__(self, model: nn.Module, composite: Any = None, *, epsilon: float = 1e-6) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if composite is not None and not isinstance(composite, str) and not hasattr(composite, "register"):
            raise TypeError(
                f"composite: expected None, a zennit composite name or a zennit Composite, got {type(composite).__name__}"
            )
        if isinstance(composite, str):
            from zennit.composites import COMPOSITES

            if composite not in COMPOSITES:
                raise ValueError(f"composite: expected one of {', '.join(sorted(COMPOSITES))}, got {composite!r}")
        self.model = model
        self.composite_spec = composite
        self.epsilon = epsilon
        self._composite: Any = composite if composite is not None and not isinstance(composite, str) else None

    @property
    def name(self) -> str:
        """The class name with the composite's, e.g. ``LRP[EpsilonPlusFlat]``."""
        spec = self.composite_spec
        label = "EpsilonPlusFlat" if spec is None else spec if isinstance(spec, str) else type(spec).__name__
        return f"{type(self).__name__}[{label}]"

    @staticmethod
    def output_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The relevance of the model's outputs that is propagated to the input.

        Args:
            logits: The logits (n, K).
            targets: One class index per row (n,).

        Returns:
            The output relevance (n, K)
                ([lrp_output_relevance][ucag.bases.propagation.lrp_output_relevance]).
        """
        return lrp_output_relevance(logits, targets)

    @property
    def composite(self) -> Any:
        """The zennit composite in use (None until the first call for a default one)."""
        return self._composite

    def _build_composite(self, x: torch.Tensor) -> Any:
        from zennit.composites import COMPOSITES, EpsilonPlusFlat

        example = x[:1].detach()
        canonizers = default_canonizers(self.model, example)
        traced = bool(canonizers) and type(canonizers[0]).__name__ == "ExactNamedMergeBatchNorm"

        def build(cans: list[Any]) -> Any:
            if self.composite_spec is None:
                return EpsilonPlusFlat(epsilon=self.epsilon, canonizers=cans)
            kind = COMPOSITES[self.composite_spec]
            try:
                return kind(epsilon=self.epsilon, canonizers=cans)
            except TypeError:
                return kind(canonizers=cans)

        composite = build(canonizers)
        if traced and not _same_function(self.model, composite, example):
            warnings.warn(
                f"{self.name}: merging the batch norms into their layers changed the model's outputs; running without merging",
                stacklevel=3,
            )
            composite = build([])
        return composite

    def _attribute(
        self,
        x: torch.Tensor,
        targets: torch.Tensor,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        target_objects: list[Any] | None = None,
    ) -> PatchAttribution:
        from zennit.attribution import Gradient

        if aug_smooth or eigen_smooth:
            raise ValueError(f"{'aug_smooth' if aug_smooth else 'eigen_smooth'}: {self.name} does not support it")
        if self._composite is None:
            self._composite = self._build_composite(x)
        targets = targets.to(x.device)

        def output_relevance(output: torch.Tensor) -> torch.Tensor:
            return self.output_relevance(output.detach(), targets)

        with torch.enable_grad(), warnings.catch_warnings():
            # zennit's hooks may trigger torch's full-backward-hook notices; they are harmless here.
            warnings.filterwarnings("ignore", message=".*backward hook.*")
            output, relevance = Gradient(self.model, self._composite)(x.detach().clone(), output_relevance)
        return PatchAttribution(relevance.detach().sum(dim=1), output.detach())


class ContrastiveLRP(LRP):
    """``c*LRP`` / Contrastive LRP (Gu, Yang & Tresp, "Understanding Individual Decisions of CNNs
    via Contrastive Backpropagation", ACCV 2018).

    ``R = LRP(x, y_t e_t) - LRP(x, dual)``, the dual concept being all other classes with the
    target's score ``y_t`` shared equally among them (``y_t / (K - 1)`` each: the paper's
    CLRP1). Computed in one pass from the output relevance ``y_t e_t - dual`` (LRP is linear
    in the output relevance). Signed: regions that speak for the target over the other
    classes are positive, regions that speak for the others negative. The paper displays
    ``max(0, R)``; here the map stays signed (UCAG's "cam" post-processing applies the ReLU).

    Args:
        model: The classifier.
        composite: The zennit composite, as for [LRP][ucag.bases.propagation.LRP].
        epsilon: The epsilon rule's stabiliser for the default/named composites.

    Raises:
        TypeError: When ``model`` is not a ``torch.nn.Module``, or ``composite`` is neither
            None, a name nor a zennit composite.
        ValueError: When ``composite`` names no zennit composite.
    """

    @staticmethod
    def output_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The relevance of the model's outputs that is propagated to the input.

        Args:
            logits: The logits (n, K).
            targets: One class index per row (n,).

        Returns:
            The output relevance (n, K)
                ([contrastive_output_relevance][ucag.bases.propagation.contrastive_output_relevance]).

        Raises:
            ValueError: When the model has fewer than two classes.
        """
        return contrastive_output_relevance(logits, targets)


class SoftmaxGradientLRP(LRP):
    """SGLRP (Iwana, Kuroki & Uchida, "Explaining Convolutional Neural Networks using Softmax
    Gradient Layer-wise Relevance Propagation", ICCVW 2019).

    The output relevance is the gradient of the target's softmax probability with respect
    to the logits: ``y_t (1 - y_t)`` on the target, ``-y_t y_k`` on every other class ``k``
    (``y`` the softmax of the logits), propagated with the LRP rules. Signed, class
    discriminative.

    Args:
        model: The classifier.
        composite: The zennit composite, as for [LRP][ucag.bases.propagation.LRP].
        epsilon: The epsilon rule's stabiliser for the default/named composites.

    Raises:
        TypeError: When ``model`` is not a ``torch.nn.Module``, or ``composite`` is neither
            None, a name nor a zennit composite.
        ValueError: When ``composite`` names no zennit composite.
    """

    @staticmethod
    def output_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The relevance of the model's outputs that is propagated to the input.

        Args:
            logits: The logits (n, K).
            targets: One class index per row (n,).

        Returns:
            The output relevance (n, K)
                ([softmax_gradient_relevance][ucag.bases.propagation.softmax_gradient_relevance]).
        """
        return softmax_gradient_relevance(logits, targets)


# --------------------------------------------------------------------------------------
# FullGrad
# --------------------------------------------------------------------------------------


def _fullgrad_per_layer(cam: Any, input_tensor: torch.Tensor) -> np.ndarray:
    """grad-cam's ``FullGrad.compute_cam_per_layer`` (without eigen_smooth), with each bias
    component's per-channel normalised maps summed over channels BEFORE the bilinear resize
    instead of after. The resize is linear, so the map is the same up to float rounding,
    but it takes one resize per layer instead of one per channel (21,008 on the sample
    EfficientNet, the bulk of grad-cam's run time on 322 x 322 patches). (B, 1, H, W)."""
    import cv2
    from pytorch_grad_cam.utils.image import scale_accross_batch_and_channels

    target_size = cam.get_target_width_height(input_tensor)
    assert input_tensor.grad is not None  # grad-cam's FullGrad has just run the backward pass
    grad_x_input = np.abs(input_tensor.grad.data.cpu().numpy() * input_tensor.data.cpu().numpy())
    total: np.ndarray = scale_accross_batch_and_channels(grad_x_input, target_size).sum(axis=1)
    gradients = [g.cpu().data.numpy() for g in cam.activations_and_grads.gradients]
    if len(gradients) != len(cam.bias_data):
        raise RuntimeError("FullGrad: one gradient per bias layer expected")
    for bias, grads in zip(cam.bias_data, gradients, strict=True):
        component = np.abs(bias[None, :, None, None] * grads)
        component = component - component.min(axis=(2, 3), keepdims=True)
        component = component / (1e-7 + component.max(axis=(2, 3), keepdims=True))
        summed = component.sum(axis=1)
        total = total + np.stack([cv2.resize(m.astype(np.float32), target_size) for m in summed])
    return total.astype(np.float32)[:, None]


class FullGrad(_Method):
    """FullGrad (Srinivas & Fleuret, NeurIPS 2019) through pytorch-grad-cam's ``FullGrad``.

    Returns grad-cam's RAW map: the sum of the normalised |input-gradient x input| and
    |bias x gradient| components of every conv / batch-norm layer with a bias, before
    grad-cam's final min-max scaling (grad-cam's own output is exactly this map min-max
    scaled per image). Non-negative, not normalised per patch: under UCAG the partial maps
    are raw (``Explanation.partials_normalised`` is False).

    grad-cam's hooks, bias extraction, forward and backward run as they are. With
    ``exact=False`` (default) the per-layer sum is reordered (channels summed before the
    resize, which is linear; see ``_fullgrad_per_layer``), which gives the same map up to
    float rounding and is much faster; ``exact=True`` runs grad-cam's own per-channel loop.
    ``eigen_smooth`` always uses grad-cam's code. A fresh grad-cam object is built per call
    and its hooks are removed afterwards, so none stay on the model; images run in chunks of
    ``chunk_size`` (grad-cam keeps every layer's gradients in memory).

    Args:
        model: The classifier.
        exact: Run grad-cam's own per-channel loop instead of the reordered sum.
        chunk_size: How many images run through grad-cam at once.

    Raises:
        TypeError: When ``model`` is not a ``torch.nn.Module``.
        ValueError: When ``chunk_size`` is not a positive int.
    """

    def __init__(self, model: nn.Module, *, exact: bool = False, chunk_size: int = 4) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
        self.model = model
        self.exact = exact
        self.chunk_size = chunk_size

    def _attribute(
        self,
        x: torch.Tensor,
        targets: torch.Tensor,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        target_objects: list[Any] | None = None,
    ) -> PatchAttribution:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if aug_smooth:
            raise ValueError(
                "aug_smooth: FullGrad's raw maps cannot be augmentation-smoothed (grad-cam undoes it only on normalised maps)"
            )
        ids = [int(t) for t in targets.tolist()]
        if target_objects:
            objects = [
                o if callable(o) else ClassifierOutputTarget(i) for o, i in zip(target_objects, ids, strict=True)
            ]
        else:
            objects = [ClassifierOutputTarget(i) for i in ids]
        maps, logits = [], []
        cam = pytorch_grad_cam.FullGrad(self.model, [])  # a fresh one: its hooks are removed below
        try:
            original = cam.compute_cam_per_layer
            captured: list[np.ndarray] = []

            def capture(input_tensor: torch.Tensor, target_category: Any, smooth: bool) -> np.ndarray:
                per_layer: np.ndarray
                if self.exact or smooth:
                    per_layer = original(input_tensor, target_category, smooth)
                else:
                    per_layer = _fullgrad_per_layer(cam, input_tensor)
                captured.append(np.sum(per_layer, axis=1))
                return per_layer

            cam.compute_cam_per_layer = capture
            for start in range(0, x.shape[0], self.chunk_size):
                chunk = slice(start, start + self.chunk_size)
                with torch.enable_grad():
                    cam(input_tensor=x[chunk], targets=objects[chunk], eigen_smooth=eigen_smooth)
                maps.append(torch.from_numpy(np.ascontiguousarray(captured.pop())).to(x.device))
                logits.append(cam.outputs.detach())
                cam.outputs = None  # drop the retained graph before the next chunk
        finally:
            cam.activations_and_grads.release()
        return PatchAttribution(torch.cat(maps).float(), torch.cat(logits))


__all__: Sequence[str] = [
    "LRP",
    "ContrastiveLRP",
    "SoftmaxGradientLRP",
    "FullGrad",
    "contrastive_output_relevance",
    "default_canonizers",
    "lrp_output_relevance",
    "softmax_gradient_relevance",
    "traced_batchnorm_pairs",
]
