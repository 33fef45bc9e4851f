"""Comparison baselines of the UCAG paper, called exactly like [UCAG][ucag.explainer.UCAG].

- [Upscale][ucag.baselines.Upscale] — the paper's Figure 2 ablation: explain the whole image
  upsampled by the UCAG scale, without unfolding it into patches;
- [CAMERAS][ucag.baselines.CAMERAS] — multi-scale accumulation of activations and gradients
  (Jalwana et al., CVPR 2021), the high-resolution CAM the paper compares against.

Both follow pytorch-grad-cam's call convention (``obj(input_tensor, targets)`` -> numpy
float32 (B, H, W)) and offer ``explain`` for the signed raw maps, so evaluation code can
treat them and [UCAG][ucag.explainer.UCAG] alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._call import GradCamCallable
from ._inputs import Targets, check_input, check_target_range, checked_logits, resolve_targets
from ._model_state import eval_mode, model_device
from .checks import positive_int, positive_real, size_pair
from .explainer import UCAG
from .grid import round_half_up
from .layers import Tap, attached, checked_target_layers
from .options import DEFAULT_SCALE, Postprocess, check_choice
from .postprocess import postprocess as apply_postprocess

# ---- Upscale: UCAG with one patch ---------------------------------------------------------


class Upscale(UCAG):
    """Explain the image upsampled by ``factor``, then bring the map back to (H, W).

    The paper's Figure 2 ablation: does UCAG's gain come from the higher resolution alone?
    Each image is upsampled bicubically (align_corners=False) to
    ``round_half_up(factor * (H, W))``, the base method explains it for the image's target,
    and its raw map is resized back to (H, W) bilinearly, then post-processed as UCAG does.

    This is UCAG with a one-patch grid: the patch is the whole image (docs/algorithm.md §1
    allows ``units=1`` exactly then) and every patch weighs 1, so the unfold, explain and
    fold steps compute "upsample, explain, resize back" with the same kernels and adapters
    as UCAG itself (§9.1); [explain][ucag.explainer.UCAG.explain] returns an
    [Explanation][ucag.explainer.Explanation] whose grid has one patch.

    Args:
        base: The attribution method, as for [UCAG][ucag.explainer.UCAG].
        factor: The upsampling factor, a finite number > 0 (default: UCAG's scale 2.6).
        model: The model, as for [UCAG][ucag.explainer.UCAG].
        postprocess: ``"auto"``, ``"cam"`` or ``"none"``, as for [UCAG][ucag.explainer.UCAG].
        blur: The Gaussian blur's (kernel, sigma) of ``"cam"`` post-processing, or None.
        batch_size: Images (one patch each) per forward/backward.
        truncate_backward: As for [UCAG][ucag.explainer.UCAG]: stop a CAM's backward pass at
            its target layer.
        attribute_kwargs: Keyword arguments of a Captum method's ``attribute``.

    Raises:
        TypeError: ``factor`` is not a number, or another argument has the wrong type (as
            for [UCAG][ucag.explainer.UCAG]).
        ValueError: ``factor`` is not finite and > 0, or another argument is out of range.
    """

    def __init__(
        self,
        base: Any,
        factor: float = DEFAULT_SCALE,
        *,
        model: nn.Module | None = None,
        postprocess: Literal["auto", "cam", "none"] = "auto",
        blur: tuple[int, float] | None = (5, 3.0),
        batch_size: int = 16,
        truncate_backward: bool = True,
        attribute_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.factor: float = positive_real("factor", factor)
        super().__init__(
            base,
            model=model,
            units=1,
            patch_size="image",
            scale=self.factor,
            weighting="uniform",
            batch_size=batch_size,
            postprocess=postprocess,
            blur=blur,
            truncate_backward=truncate_backward,
            attribute_kwargs=attribute_kwargs,
        )

    def __repr__(self) -> str:
        return f"Upscale(base={self.adapter.name}, factor={self.factor}, batch_size={self.batch_size}, postprocess={self.postprocess!r})"


# ---- CAMERAS ------------------------------------------------------------------------------

#: The official CAMERAS code's default input sizes, for a 224 px input:
#: ``range(224, 1000, 100)``, i.e. 224, 324, ..., 924 (8 resolutions).
CAMERAS_REFERENCE_SIZES: tuple[int, ...] = tuple(range(224, 1000, 100))
#: The input size the reference sizes are given for.
CAMERAS_REFERENCE_INPUT = 224

#: Elements of one (images, channels, H, W) block when fusing: bounds the memory of the
#: full-resolution temporaries (16 MiB each in float32) whatever the channel count.
_FUSION_BLOCK_ELEMENTS = 1 << 22

Resolution = int | tuple[int, int]


@dataclass
class CamerasExplanation:
    """What a CAMERAS call computed.

    Attributes:
        saliency: Post-processed maps (B, H, W) (torch, on the model's device).
        raw: Signed, unnormalised maps ``sum_k mean_grad_k * mean_act_k`` (B, H, W).
        targets: The class explained for each image (B,).
        resolutions: The input sizes (h, w) the activations and gradients were taken at.
        probabilities: Softmax probability of the target at each resolution (B, R).
        postprocess: The post-processing ``saliency`` received, ``"cam"`` or ``"none"``.
    """

    saliency: torch.Tensor
    raw: torch.Tensor
    targets: torch.Tensor
    resolutions: tuple[tuple[int, int], ...]
    probabilities: torch.Tensor
    postprocess: str

    def __repr__(self) -> str:
        return f"CamerasExplanation(images={self.raw.shape[0]}, maps={tuple(self.raw.shape[1:])}, resolutions={list(self.resolutions)}, postprocess={self.postprocess!r})"


def _as_resolutions(resolutions: Any) -> tuple[tuple[int, int], ...]:
    """Validate ``resolutions``: a non-empty sequence of sizes, each an int (square, as in
    the official code) or an (h, w) pair of positive ints."""
    if isinstance(resolutions, (str, bytes)) or not isinstance(resolutions, Sequence):
        raise TypeError(f"resolutions: expected a sequence of sizes (int or (h, w)), got {type(resolutions).__name__}")
    if len(resolutions) == 0:
        raise ValueError("resolutions: expected at least one size, got none")
    return tuple(size_pair("resolutions", size) for size in resolutions)


class CAMERAS(GradCamCallable):
    """CAMERAS: multi-scale accumulation and fusion of activations and gradients.

    Jalwana, Akhtar, Bennamoun, Mian, "CAMERAS: Enhanced Resolution And Sanity preserving
    Class Activation Mapping for image saliency", CVPR 2021 (official code:
    github.com/VisMIL/CAMERAS). For each input size in ``resolutions`` the batch is
    upsampled, run forward, and the target logit is backpropagated to ``target_layer``; the
    layer's activations A_r and gradients G_r are resized bilinearly to the input's (H, W)
    and averaged over the resolutions; the map fuses the averages,
    ``raw = sum_k mean_r(G_r)_k * mean_r(A_r)_k`` (no ReLU yet), and ``saliency`` is
    ``postprocess(raw)``.

    Defaults, from the official code:

    - ``resolutions=None``: 224, 324, ..., 924 px (``range(224, 1000, 100)``) on a 224 px
      input; an input of another size gets the same scale factors, size * (224 + 100 k) /
      224 for k = 0..7, rounded half up. An explicit list gives absolute sizes: an int is a
      square size (as in the official code), a pair is (h, w).
    - Upsampling is bicubic with align_corners=False, except at the input's own size, where
      the input is used as it is (as the official code does).
    - Resizing activations and gradients to (H, W) is bilinear, align_corners=False.

    Post-processing: the official code ends with ReLU and min-max scaling, which is
    ``postprocess="cam"`` with ``blur=None`` (up to the 1e-7 in the denominator). The
    default keeps the Gaussian blur (5, 3.0) of the UCAG authors' evaluation setting, so
    CAMERAS is post-processed exactly like the UCAG and Grad-CAM maps it is compared with;
    pass ``blur=None`` for the authors' own, sharper maps. ``"none"`` returns the raw map.

    Deviations from the official code: it handles batches (``batch_size`` images per
    forward/backward; results do not depend on it), non-square inputs, and always uses
    every resolution. With no class given, the official code drops the resolutions where
    the model predicts another class than at the first one; here ``targets=None`` means
    the model's prediction on the input and every resolution explains that class, as an
    explicit target does in both. Only the class index of a grad-cam target object
    (``category``) is used: CAMERAS backpropagates the target logit.

    The model's train/eval modes, ``requires_grad`` flags and hooks are restored after
    each call; the backward pass covers only the layers above ``target_layer`` (parameter
    gradients are switched off during the call).

    Args:
        model: The classifier to explain.
        target_layer: A submodule of ``model`` (or a [Tap][ucag.layers.Tap] on it) that runs
            once per forward and outputs a (B, C, h, w) tensor.
        resolutions: The input sizes, each an int (square) or an (h, w) pair; None for the
            official code's defaults, scaled to the input's size.
        postprocess: ``"cam"`` (ReLU, min-max, blur) or ``"none"`` (the raw map).
        blur: The Gaussian blur's (kernel, sigma) of ``"cam"``, or None (the official code).
        batch_size: Images per forward/backward; results do not depend on it.

    Raises:
        TypeError: ``model`` or ``target_layer`` is not a ``torch.nn.Module``, or
            ``resolutions`` or ``batch_size`` has the wrong type.
        ValueError: ``target_layer`` is not a submodule of ``model``, ``postprocess`` is not
            ``"cam"`` or ``"none"``, ``resolutions`` is empty or holds a size below 1, or
            ``batch_size`` is below 1.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module,
        *,
        resolutions: Sequence[Resolution] | None = None,
        postprocess: Literal["cam", "none"] = "cam",
        blur: tuple[int, float] | None = (5, 3.0),
        batch_size: int = 8,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(target_layer, nn.Module):
            raise TypeError(f"target_layer: expected a torch.nn.Module, got {type(target_layer).__name__}")
        tapped = isinstance(target_layer, Tap) and target_layer.site.model is model
        if not tapped and not any(m is target_layer for m in model.modules()):
            raise ValueError(f"target_layer: {type(target_layer).__name__} is not a submodule of model")
        check_choice("postprocess", postprocess, Postprocess)
        positive_int("batch_size", batch_size)
        self.model = model
        self.target_layer = target_layer
        self.resolutions = None if resolutions is None else _as_resolutions(resolutions)
        self.postprocess: Literal["cam", "none"] = postprocess
        self.blur = blur
        self.batch_size = batch_size

    def __repr__(self) -> str:
        resolutions = "default (224..924 px at 224)" if self.resolutions is None else list(self.resolutions)
        return f"CAMERAS(target_layer={type(self.target_layer).__name__}, resolutions={resolutions}, batch_size={self.batch_size}, postprocess={self.postprocess!r}, blur={self.blur})"

    def __enter__(self) -> CAMERAS:
        return self

    def __exit__(self, *exc: Any) -> None:
        """Nothing to release: each call removes its own hooks."""

    def resolutions_for(self, size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        """The input sizes (h, w) used for images of ``size`` (H, W).

        Args:
            size: The images' (H, W).

        Returns:
            The explicit ``resolutions``, or the official defaults scaled to ``size``:
                ``side * (224 + 100 k) / 224`` rounded half up, k = 0..7.
        """
        if self.resolutions is not None:
            return self.resolutions
        H, W = size
        ref = CAMERAS_REFERENCE_INPUT
        # exact: side * s / ref is a multiple of 1 / ref, never within a rounding error of a half
        return tuple((round_half_up(H * s / ref), round_half_up(W * s / ref)) for s in CAMERAS_REFERENCE_SIZES)

    def _call_maps(
        self, input_tensor: torch.Tensor, targets: Targets, *, aug_smooth: bool, eigen_smooth: bool
    ) -> torch.Tensor:
        for name, flag in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
            if flag:
                raise ValueError(f"{name}: CAMERAS does not support it")
        return self.explain(input_tensor, targets).saliency

    def explain(self, input_tensor: torch.Tensor, targets: Targets = None) -> CamerasExplanation:
        """The CAMERAS explanation of a (B, C, H, W) batch for one target per image.

        Args:
            input_tensor: (B, C, H, W) floating-point images, moved to the model's device.
            targets: One class per image (ints, a 1-D integer tensor or class target
                objects), or None for the model's prediction on the input.

        Returns:
            The maps, raw and post-processed, with the targets, the resolutions and the
                target's probability at each resolution.

        Raises:
            TypeError: ``input_tensor`` is not a floating-point tensor, or a target is not a
                class index.
            ValueError: ``input_tensor`` is not a non-empty (B, C, H, W) batch, a target is
                out of range, or ``target_layer`` does not run once, output a (B, C, h, w)
                tensor or influence the target logits.
        """
        check_input(input_tensor)
        x = input_tensor.detach().to(model_device(self.model))
        size = (x.shape[-2], x.shape[-1])
        resolutions = self.resolutions_for(size)
        raws, probabilities = [], []
        with eval_mode(self.model):
            target_ids = resolve_targets(self.model, x, targets)
            # Only the gradient at the target layer is needed: without parameter gradients
            # the forward keeps no graph below it (eval_mode restores the flags).
            self.model.requires_grad_(False)
            for start in range(0, x.shape[0], self.batch_size):
                rows = slice(start, start + self.batch_size)
                raw, probs = self._explain_chunk(x[rows], target_ids[rows], resolutions)
                raws.append(raw)
                probabilities.append(probs)
        raw = torch.cat(raws)
        return CamerasExplanation(
            saliency=apply_postprocess(raw, self.postprocess, self.blur),
            raw=raw,
            targets=target_ids,
            resolutions=resolutions,
            probabilities=torch.cat(probabilities),
            postprocess=self.postprocess,
        )

    def _explain_chunk(
        self, x: torch.Tensor, targets: torch.Tensor, resolutions: Sequence[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps (b, H, W) and target probabilities (b, R) of a chunk of images."""
        activations, gradients, probabilities = [], [], []
        for resolution in resolutions:
            # The input at its own size is used as it is, as in the official code.
            scaled = (
                x
                if resolution == tuple(x.shape[-2:])
                else F.interpolate(x, size=resolution, mode="bicubic", align_corners=False)
            )
            a, g, p = self._activations_and_gradients(scaled, targets)
            activations.append(a)
            gradients.append(g)
            probabilities.append(p)
        # Kept at feature-map resolution (a few MB); resized only in _fuse, block by block.
        return _fuse(activations, gradients, (x.shape[-2], x.shape[-1])), torch.stack(probabilities, dim=1)

    def _activations_and_gradients(
        self, x: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target-layer activations and gradients of the target logits (b, C, h, w) and
        the target probabilities (b,) for one input size."""
        outputs: list[torch.Tensor] = []

        def capture(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(f"target_layer: expected a (B, C, h, w) tensor output, got {shape}")
            # A leaf cut out of the graph: the gradient stops here. The layer passes on a
            # copy, so in-place operations after it (ReLU(inplace=True)) do not touch it.
            leaf = output.detach().requires_grad_(True)
            outputs.append(leaf)
            return leaf.clone()

        handle = self.target_layer.register_forward_hook(capture)
        try:
            with (
                torch.enable_grad(),
                attached([self.target_layer]),
                checked_target_layers(self.model, [self.target_layer], "target_layer"),
            ):
                logits = self.model(x)
        finally:
            handle.remove()
        if not outputs:  # more than once is the check's error
            raise ValueError(
                f"target_layer: {type(self.target_layer).__name__} did not run in a forward pass of {type(self.model).__name__}; CAMERAS needs a layer that runs exactly once"
            )
        logits = checked_logits(logits, len(x))
        check_target_range(targets, logits.shape[1])
        chosen = logits.gather(1, targets[:, None].to(logits.device))
        try:
            (gradient,) = torch.autograd.grad(chosen.sum(), outputs[0])
        except RuntimeError as err:
            raise ValueError(f"target_layer: the target logits do not depend on its output ({err})") from err
        probabilities = logits.detach().float().softmax(dim=1).gather(1, targets[:, None].to(logits.device))[:, 0]
        return outputs[0].detach(), gradient, probabilities


def _resize_matrix(source: int, target: int, like: torch.Tensor) -> torch.Tensor:
    """(target, source) matrix of 1-D linear resizing, align_corners=False, no antialias:
    ``F.interpolate``'s own weights, read off by resizing the identity."""
    identity = torch.eye(source, dtype=like.dtype, device=like.device)[None]
    return F.interpolate(identity, size=target, mode="linear", align_corners=False)[0].T


def _fuse(activations: list[torch.Tensor], gradients: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """``sum_k mean_r(resize(G_r))_k * mean_r(resize(A_r))_k`` at ``size``, (b, H, W),
    where resize is ``F.interpolate(mode="bilinear", align_corners=False)``.

    Bilinear resizing is separable and linear: ``resize(A_r)[k] = Y_r @ A_r[k] @ X_r.T``
    with the 1-D resizing matrices Y_r (H, h_r) and X_r (W, w_r). So the mean over
    resolutions is one matmul, ``[Y_1 ... Y_R] / R @ stack_r(A_r[k] @ X_r.T)``, several times
    faster on CPU than resizing every resolution separately (equal up to float rounding).
    Channels are fused in blocks: the full-resolution means of all C channels at once would
    take C·H·W floats per image (250 MB at 224 px with 1280 channels)."""
    H, W = size
    b, channels = activations[0].shape[:2]
    dtype = torch.promote_types(activations[0].dtype, torch.float32)
    like = torch.empty((), dtype=dtype, device=activations[0].device)
    rows = torch.cat([_resize_matrix(a.shape[-2], H, like) for a in activations], dim=1) / len(activations)
    columns_t = [_resize_matrix(a.shape[-1], W, like).T for a in activations]
    block = max(1, _FUSION_BLOCK_ELEMENTS // (b * H * W))

    def mean_resized(maps: list[torch.Tensor], c: slice) -> torch.Tensor:
        return rows @ torch.cat([m[:, c].to(dtype) @ x_t for m, x_t in zip(maps, columns_t, strict=True)], dim=-2)

    raw = torch.zeros((b, H, W), dtype=dtype, device=like.device)
    for start in range(0, channels, block):
        c = slice(start, start + block)
        raw += (mean_resized(gradients, c) * mean_resized(activations, c)).sum(dim=1)
    return raw
