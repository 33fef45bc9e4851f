"""The explainer: [UCAG][ucag.explainer.UCAG] wraps an attribution method and returns UCAG maps.

Flow of one call (docs/algorithm.md §1-5): resolve one target class per image; unfold every
image into the grid's upsampled patches (Rust); run the base method on the patches in
chunks of ``batch_size`` across all images, each patch with its image's target; weight the
partial maps by the model's confidence on each patch (Rust); fold them into one raw map per
image (Rust); post-process.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from . import _core, kernels
from ._call import GradCamCallable
from ._chunks import run_in_chunks
from ._inputs import Targets, check_input, target_objects
from ._model_state import eval_mode, model_device
from .bases.adapters import GradCamAdapter, PatchAttribution, make_adapter
from .checks import positive_int, probability
from .grid import GridSpec, PatchSize
from .models import LayerSuggestion, layer_suggestion, model_input_size, model_size_multiple
from .options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHANNELS_LAST,
    DEFAULT_GLOBAL_WEIGHT,
    DEFAULT_PRECISION,
    DEFAULT_SCALE,
    DEFAULT_UNITS,
    ChannelsLast,
    Confidence,
    FoldWindow,
    GlobalView,
    Postprocess,
    Precision,
    Weighting,
    check_choice,
)
from .postprocess import cam_postprocess, check_blur
from .postprocess import postprocess as apply_postprocess
from .precision import ComputePlan, check_channels_last, check_precision, compute_plan
from .targets import Target, confidence_weights, describe, is_class_only, patch_boxes, resolve, row_confidence

#: The arguments of `UCAG` that are not settings: what it explains, with what.
_NOT_SETTINGS = ("self", "base", "model", "attribute_kwargs")


@dataclass
class Explanation:
    """Everything a UCAG call computed, to show how the map was built.

    Attributes:
        saliency: Post-processed maps (B, H, W) (torch, on the model's device).
        raw: Signed, unnormalised UCAG maps M_b (B, H, W).
        partials: The base method's partial map of every patch (B·N, h', w'); row b·N + p.
        partials_normalised: True when the base method could only give normalised maps.
        probabilities: The model's confidence in the target on every patch (B·N,): the
            softmax probability of a class, or what the target's kind defines
            (docs/algorithm.md §3.1).
        weights: Confidence weight of every patch (B·N,).
        targets: The class (or category, or binary side) explained for each image (B,); -1
            for targets without one (similarity, score).
        grid: The patch geometry.
        base: The base method's name.
        postprocess: The post-processing ``saliency`` received, ``"cam"`` or ``"none"``.
        explained: The [Target][ucag.targets.Target] of each image.
        truncated_backward: True when the backward pass stopped at the target layer.
        global_view: How the full-image map was fused (None: not at all, the paper's method).
        global_map: The base method's raw map of the full image, resized to (B, H, W), when
            fused.
        fused: The fused map (B, H, W) that post-processing received instead of ``raw``.
        chunk_size: Patches per forward/backward at the end of the call (below
            ``batch_size`` after an out-of-memory back-off).
        precision: The arithmetic the base method's forwards and backwards ran in
            (``"fp32"``, ``"bf16"``, ``"fp16"``; docs/algorithm.md §10).
        channels_last: Whether the patches were handed to the model channels-last.
    """

    saliency: torch.Tensor
    raw: torch.Tensor
    partials: torch.Tensor
    partials_normalised: bool
    probabilities: torch.Tensor
    weights: torch.Tensor
    targets: torch.Tensor
    grid: _core.Grid
    base: str
    postprocess: str
    explained: list[Target] = dataclasses.field(default_factory=list)
    truncated_backward: bool = False
    global_view: GlobalView | None = None
    global_map: torch.Tensor | None = None
    fused: torch.Tensor | None = None
    chunk_size: int | None = None
    precision: Precision = "fp32"
    channels_last: bool = False

    def __repr__(self) -> str:
        B = self.raw.shape[0]
        return (
            f"Explanation(base={self.base}, images={B}, maps={tuple(self.raw.shape[1:])}, "
            f"partials={tuple(self.partials.shape)}{' normalised' if self.partials_normalised else ' raw'}, "
            f"postprocess={self.postprocess!r}, truncated_backward={self.truncated_backward}, global_view={self.global_view!r}, grid={self.grid!r})"
        )

    def facts(self) -> str:
        """One line on how the maps were made: the base, the grid, the targets, the post-processing.

        Returns:
            The line, e.g. ``"GradCAM · 1 image 224×224 · 6×6 patches of 124×124 px → 322×322
                · class 281 · weights 1.22–1.66 · postprocess 'cam'"``.
        """
        grid = self.grid
        images = self.raw.shape[0]
        height, width = grid.image_size
        labels = [describe(target) for target in self.explained[:4]]
        more = f" +{len(self.explained) - 4}" if len(self.explained) > 4 else ""
        parts = [
            self.base,
            f"{images} image{'s' if images != 1 else ''} {height}×{width}",
            f"{grid.units}×{grid.units} patches of {grid.patch_size[0]}×{grid.patch_size[1]} px"
            f" → {grid.scaled_size[0]}×{grid.scaled_size[1]}",
            ", ".join(labels) + more if labels else "targets " + ", ".join(str(int(t)) for t in self.targets[:4]),
            f"weights {float(self.weights.min()):.2f}–{float(self.weights.max()):.2f}",
            f"postprocess {self.postprocess!r}",
        ]
        if self.global_view is not None:
            parts.append(f"global view {self.global_view!r}")
        if self.truncated_backward:
            parts.append("backward stopped at the target layer")
        if self.precision != "fp32" or self.channels_last:
            parts.append(self.precision + (" channels-last" if self.channels_last else ""))
        return " · ".join(parts)

    def _repr_html_(self) -> str | None:
        """Jupyter's view: the facts and ucag.viz.show_explanation's figure (text without matplotlib)."""
        try:
            from .viz import explanation_html

            return explanation_html(self)
        except ImportError:
            return None


class UCAG(GradCamCallable):
    """Unfold and Conquer Attribution Guidance around an existing attribution method.

    A pytorch-grad-cam *class* with ``model=`` (``UCAG(GradCAM, model=model)``) is built at
    the layer [layer_suggestion][ucag.models.layer_suggestion] finds, with the
    ``reshape_transform`` a ViT or Swin needs (``layer_suggestion`` keeps the choice and its
    reason); a CAM object built on a transformer's layer without a ``reshape_transform``
    gets the matching one for UCAG's calls. The model may return logits as a tensor, a
    tuple or a dict / Hugging Face ``ModelOutput`` (``logits``).

    Defaults are the paper's (docs/algorithm.md §1-4): a 6 x 6 grid of patches of 124/224
    of the image, upsampled x2.6, weighted by ``exp(p)``. ``units``, ``patch_size`` and
    ``scale`` — or ``scaled_size`` — form the [GridSpec][ucag.grid.GridSpec] (``grid_spec``).

    Fixed-resolution models (ViT, DeiT, Swin from timm; torchvision's ViT; Hugging Face
    ViTs — [model_input_size][ucag.models.model_input_size]) accept only their input size:
    when neither ``scale`` nor ``scaled_size`` is given, the patches are resized to it
    automatically (each patch then grows by input size / patch size); a ``scaled_size`` or
    ``scale`` that gives another size is an error that says what to pass. The forward pass
    that picks the predicted class sees the image resized to the model's size.

    Call it like a pytorch-grad-cam object: ``explainer(input_tensor=x, targets=[...])``
    returns numpy float32 (B, H, W) maps; [explain][ucag.explainer.UCAG.explain] returns the
    full [Explanation][ucag.explainer.Explanation]. Inputs on another device than the model
    are moved to it. Use it as a context manager to release the base method's hooks on
    exit, as grad-cam's ``with GradCAM(...) as cam`` does.

    For gradient-based CAMs the backward pass stops at the target layer (about 3x faster on
    CPU, same maps); methods that need input gradients (FullGrad, Captum, zennit) keep the
    full backward. Probability-only forwards (``targets=None``, logits for adapters that
    cannot expose them) run under ``torch.inference_mode()``.

    Args:
        base: A pytorch-grad-cam CAM object (or CAM class, see above), a Captum
            ``Attribution``, a zennit ``Attributor``, one of
            [ucag.bases.propagation][ucag.bases.propagation]'s methods, or a plain callable
            ``fn(patches, targets) -> maps``.
        model: The model to explain; required for a plain callable and a CAM class, found
            inside the other bases when None.
        units: Patches per axis (n; n * n patches).
        patch_size: Pixels (an int or an (h, w) pair), a fraction of the image side in
            (0, 1], ``"image"``, or None for the paper's 124/224 of the side.
        scale: The factor each patch is upsampled by (None: 2.6, or a fixed-resolution
            model's input size).
        scaled_size: The patches' size in pixels after upsampling, instead of ``scale``.
        weighting: How a patch's confidence p becomes its weight (§3): ``"exp"`` (exp(p),
            the paper's), ``"prob"`` (p) or ``"uniform"`` (1).
        confidence: How integer targets are read on (B, K) logits: ``"softmax"`` classes
            (the paper's) or ``"sigmoid"`` labels of a multi-label head (§3.1).
        fold: How the weighted partial maps are blended (§4.1): ``"box"`` is the paper's
            fold (every patch pixel counts 1, divided by the number of patches that contain
            it, which jumps at every patch edge and leaves straight seams); ``"linear"`` and
            ``"cosine"`` taper each patch side inside the image over its overlap with the
            next patch and divide by the sum of the windows, so no seams.
        batch_size: Patches per forward/backward, or ``"auto"`` (64 on a GPU, 16 on the
            CPU); halved for good whenever a chunk runs out of device memory.
        postprocess: ``"cam"`` (ReLU, min-max to [0, 1], Gaussian blur ``blur``; §5),
            ``"none"`` (the signed raw map), or ``"auto"``: "cam" for CAM-style bases and
            "none" for the others (zennit, LRP).
        blur: The Gaussian blur's (kernel, sigma) of ``"cam"`` post-processing, or None.
        progress: Show a progress bar over the chunks (tqdm).
        truncate_backward: Stop a gradient-based CAM's backward pass at its target layer;
            False forces the full backward everywhere.
        global_view: Fuse the UCAG map with the base method's map of the full image
            (``"product"`` or ``"mean"``; [fuse_global_view][ucag.explainer.fuse_global_view]),
            or None: not at all, the paper's method.
        global_weight: The global map's weight in ``"mean"`` fusion, in [0, 1].
        precision: The arithmetic of the base method's forwards and backwards
            (docs/algorithm.md §10): ``"fp32"`` (the default), ``"bf16"`` or ``"fp16"``
            (``torch.autocast`` on the model's device; fp16 is refused on the CPU, where it
            is slower than fp32). Partial maps, confidences, the fold and post-processing
            stay float32, and the forward that picks the predicted class runs in float32.
            Only gradient-based pytorch-grad-cam CAMs (Grad-CAM, Grad-CAM++, LayerCAM,
            XGrad-CAM, HiResCAM...) lower it, as measured faithful; other bases run in
            float32, with a warning.
        channels_last: Hand the patches to the model channels-last: True, False or
            ``"auto"`` (channels-last where the precision is lowered and the model has 2-D
            convolutions). The model itself is never converted.
        attribute_kwargs: Options for a Captum method's ``attribute`` (a dict, e.g.
            ``{"n_steps": 16}``), checked against its signature on construction.

    Raises:
        TypeError: A setting has the wrong type or is unknown, ``base`` is a class that is
            not a pytorch-grad-cam CAM, or ``base``/``attribute_kwargs`` cannot be used.
        ValueError: A setting is out of range, both ``scale`` and ``scaled_size`` are given,
            ``scaled_size`` does not fit a fixed-resolution model, or the model is missing
            where it is needed. Every message starts with the argument's name.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                       nn.Flatten(), nn.Linear(4, 2))
        >>> def saliency(patches, targets):  # any fn(patches, targets) -> maps
        ...     return patches.abs().sum(dim=1)
        >>> explainer = UCAG(saliency, model=model, units=2, patch_size=24, scale=2.0)
        >>> maps = explainer(torch.rand(2, 3, 32, 32), targets=[0, 1])
        >>> maps.shape, maps.dtype
        ((2, 32, 32), dtype('float32'))
        >>> explanation = explainer.explain(torch.rand(1, 3, 32, 32), targets=[1])
        >>> tuple(explanation.partials.shape), tuple(explanation.weights.shape)
        ((4, 48, 48), (4,))
    """

    def __init__(
        self,
        base: Any,
        *,
        model: nn.Module | None = None,
        units: int = DEFAULT_UNITS,
        patch_size: PatchSize = None,
        scale: float | None = None,
        scaled_size: int | tuple[int, int] | None = None,
        weighting: Weighting = "exp",
        confidence: Confidence = "softmax",
        fold: FoldWindow = "box",
        batch_size: int | Literal["auto"] = DEFAULT_BATCH_SIZE,
        postprocess: Literal["auto", Postprocess] = "auto",
        blur: tuple[int, float] | None = (5, 3.0),
        progress: bool = False,
        truncate_backward: bool = True,
        global_view: GlobalView | None = None,
        global_weight: float = DEFAULT_GLOBAL_WEIGHT,
        precision: Precision = DEFAULT_PRECISION,
        channels_last: ChannelsLast = DEFAULT_CHANNELS_LAST,
        attribute_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        grid_spec = self.check_settings(
            units=units,
            patch_size=patch_size,
            scale=scale,
            scaled_size=scaled_size,
            weighting=weighting,
            confidence=confidence,
            fold=fold,
            batch_size=batch_size,
            postprocess=postprocess,
            blur=blur,
            progress=progress,
            truncate_backward=truncate_backward,
            global_view=global_view,
            global_weight=global_weight,
            precision=precision,
            channels_last=channels_last,
        )
        self.global_view: GlobalView | None = global_view
        self.global_weight = float(global_weight)
        #: The suggested target layer when ``base`` is a CAM class (None otherwise).
        self.layer_suggestion: LayerSuggestion | None = None
        if isinstance(base, type):
            base, self.layer_suggestion = _cam_with_suggested_layer(base, model)
        self.adapter = make_adapter(base, model, attribute_kwargs)
        self.adapter.truncate = self.adapter.truncatable and truncate_backward
        self.base = base
        self.model: nn.Module = self.adapter.model
        #: The one input size the model accepts (ucag.models.model_input_size), or None.
        self.model_input_size = model_input_size(self.model)
        if self.model_input_size is not None:
            if scale is None and scaled_size is None:
                grid_spec = dataclasses.replace(grid_spec, scaled_size=self.model_input_size)
            elif grid_spec.scaled_size not in (None, self.model_input_size):
                raise ValueError(
                    f"scaled_size: {type(self.model).__name__} takes only {_size(self.model_input_size)} inputs, got scaled_size={grid_spec.scaled_size}; "
                    f"pass scaled_size={self.model_input_size} or leave scale and scaled_size out"
                )
        #: What the model's input sides must be multiples of (ucag.models.model_size_multiple).
        self.model_size_multiple = 1 if self.model_input_size is not None else model_size_multiple(self.model)
        m = self.model_size_multiple
        if m > 1:
            if scale is None and scaled_size is None:
                grid_spec = dataclasses.replace(grid_spec, size_multiple=m)
            elif grid_spec.scaled_size is not None and any(side % m for side in grid_spec.scaled_size):  # type: ignore[union-attr]
                raise ValueError(
                    f"scaled_size: {type(self.model).__name__} takes sides that are multiples of {m}, got scaled_size={grid_spec.scaled_size}"
                )
        self.grid_spec = grid_spec
        self.weighting: Weighting = weighting
        #: How integer targets are read on (B, K) logits: "softmax" classes (the paper's) or
        #: "sigmoid" labels of a multi-label head (docs/algorithm.md §3.1).
        self.confidence: Confidence = confidence
        self.fold: FoldWindow = fold
        self.batch_size = batch_size
        #: Patches per forward/backward now: ``batch_size`` ("auto": 64 on a GPU, 16 on the
        #: CPU), halved for good whenever a chunk runs out of device memory.
        self.chunk_size = (
            batch_size if isinstance(batch_size, int) else (64 if model_device(self.model).type == "cuda" else 16)
        )
        self._released = False
        if postprocess == "auto":
            postprocess = "cam" if self.adapter.map_kind == "cam" else "none"
        self.postprocess: Literal["cam", "none"] = postprocess
        self.blur = blur
        self.progress = progress
        #: The arithmetic asked for (docs/algorithm.md §10); see compute_plan for what runs.
        self.precision: Precision = precision
        #: The inputs' layout asked for: True, False or "auto".
        self.channels_last: ChannelsLast = channels_last
        plan = self.compute_plan()  # fp16 on the CPU, or a device without autocast, fails here
        if precision != "fp32" and not plan.lowered:
            warnings.warn(
                f"precision: {self.adapter.name} runs in float32; {precision} is lowered only for gradient-based "
                "pytorch-grad-cam CAMs, where it is measured faithful (docs/algorithm.md §10)",
                UserWarning,
                stacklevel=2,
            )

    def compute_plan(self) -> ComputePlan:
        """How the base method's forwards and backwards run now, on the model's current device.

        Returns:
            The [ComputePlan][ucag.precision.ComputePlan] of ``precision`` and
                ``channels_last``; float32 for a base that does not lower its precision.

        Raises:
            ValueError: ``precision`` does not run on the model's device (fp16 on the CPU,
                bf16 on a CUDA device without it).
        """
        plan = compute_plan(self.model, self.precision, self.channels_last)
        if plan.lowered and not getattr(self.adapter, "mixed_precision", False):
            return compute_plan(self.model, "fp32", self.channels_last)
        return plan

    @staticmethod
    def settings() -> tuple[str, ...]:
        """The settings [UCAG][ucag.explainer.UCAG] takes besides the base, the model and Captum's options.

        Returns:
            Its keyword arguments' names, read from its signature, in order.

        Examples:
            >>> UCAG.settings()[:4]
            ('units', 'patch_size', 'scale', 'scaled_size')
        """
        return tuple(name for name in inspect.signature(UCAG.__init__).parameters if name not in _NOT_SETTINGS)

    @staticmethod
    def check_settings(**settings: Any) -> GridSpec:
        """Check settings as the constructor does, before a base method or model is touched.

        For callers that validate options up front ([evaluate][ucag.eval.runner.evaluate]).

        Args:
            **settings: Some of [settings][ucag.explainer.UCAG.settings]; the others take
                their defaults from [UCAG][ucag.explainer.UCAG]'s signature.

        Returns:
            The settings' [GridSpec][ucag.grid.GridSpec].

        Raises:
            TypeError: A name is not a setting, or a setting has the wrong type.
            ValueError: A setting is out of range, or both ``scale`` and ``scaled_size`` are
                given. Every message starts with the argument's name.

        Examples:
            >>> UCAG.check_settings(units=3).units
            3
            >>> UCAG.check_settings(weighting="softmax")
            Traceback (most recent call last):
                ...
            ValueError: weighting: expected 'exp', 'prob' or 'uniform', got 'softmax'
        """
        parameters = inspect.signature(UCAG.__init__).parameters
        unknown = sorted(set(settings) - set(UCAG.settings()))
        if unknown:
            raise TypeError(f"{unknown[0]}: not a UCAG setting; expected some of {', '.join(UCAG.settings())}")
        given = {name: parameters[name].default for name in UCAG.settings()} | settings
        scale, scaled_size = given["scale"], given["scaled_size"]
        if scale is not None and scaled_size is not None:
            raise ValueError(
                f"scaled_size: give scale or scaled_size, not both (got scale={scale!r}, scaled_size={scaled_size!r})"
            )
        grid_spec = GridSpec(
            given["units"], given["patch_size"], DEFAULT_SCALE if scale is None else scale, scaled_size
        )
        if given["batch_size"] != "auto":
            positive_int("batch_size", given["batch_size"], " or 'auto'")
        check_choice("weighting", given["weighting"], Weighting)
        check_choice(
            "confidence",
            given["confidence"],
            Confidence,
            " ('softmax' for single-label classes, 'sigmoid' for multi-label heads)",
        )
        kernels.check_fold_window(given["fold"], "fold")
        check_choice("postprocess", given["postprocess"], Literal["auto", Postprocess])
        check_blur(given["blur"])
        if given["global_view"] is not None:
            check_choice("global_view", given["global_view"], GlobalView, " (or None)")
        probability("global_weight", given["global_weight"])
        check_precision(given["precision"])
        check_channels_last(given["channels_last"])
        return grid_spec

    @property
    def units(self) -> int:
        """Patches per axis (n; n * n patches)."""
        return self.grid_spec.units

    @property
    def patch_size(self) -> PatchSize:
        """The patch size as given, normalised (an int becomes an (h, w) pair; None: 124/224 of the side)."""
        return self.grid_spec.patch_size

    @property
    def scale(self) -> float:
        """The factor each patch is upsampled by (unused when ``scaled_size`` is set)."""
        return self.grid_spec.scale

    @property
    def scaled_size(self) -> tuple[int, int] | None:
        """The (h, w) every patch is resized to, or None when ``scale`` decides."""
        size = self.grid_spec.scaled_size
        assert not isinstance(size, int)  # GridSpec normalises an int to a pair
        return size

    def __repr__(self) -> str:
        return (
            f"UCAG(base={self.adapter.name}, units={self.units}, patch_size={self.patch_size}, "
            + (f"scaled_size={self.scaled_size}, " if self.scaled_size else f"scale={self.scale}, ")
            + f"weighting={self.weighting!r}, "
            + (f"confidence={self.confidence!r}, " if self.confidence != "softmax" else "")
            + f"fold={self.fold!r}, batch_size={self.batch_size}, postprocess={self.postprocess!r}"
            + (f", global_view={self.global_view!r}, global_weight={self.global_weight}" if self.global_view else "")
            + (f", precision={self.precision!r}" if self.precision != "fp32" else "")
            + (f", channels_last={self.channels_last!r}" if self.channels_last != "auto" else "")
            + ")"
        )

    def __enter__(self) -> UCAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.adapter.release()
        self._released = True

    def grid_for(self, size: tuple[int, int]) -> _core.Grid:
        """The grid for images of ``size`` (H, W).

        Args:
            size: The images' (H, W).

        Returns:
            The patch geometry, from the explainer's [GridSpec][ucag.grid.GridSpec].

        Raises:
            ValueError: The settings do not fit images of this size, the upsampled patches'
                sides are not multiples of what the model needs, or a fixed-resolution
                model's patches are not resized to its input size.
        """
        grid = self.grid_spec.grid(size)
        m = self.model_size_multiple
        if any(side % m for side in grid.scaled_size):
            raise ValueError(
                f"scale: {type(self.model).__name__} takes sides that are multiples of {m}, but {_size(grid.patch_size)} patches upsampled x{self.scale:g} are "
                f"{_size(grid.scaled_size)}; pass a scaled_size of multiples of {m} instead of scale (or leave both out: UCAG then rounds to multiples of {m})"
            )
        if self.model_input_size is not None and grid.scaled_size != self.model_input_size:
            patch = grid.patch_size
            raise ValueError(
                f"scale: {type(self.model).__name__} takes only {_size(self.model_input_size)} inputs, but {_size(patch)} patches upsampled x{self.scale:g} "
                f"are {_size(grid.scaled_size)}; pass scaled_size={self.model_input_size} instead of scale (or leave both out: UCAG then uses the model's size)"
            )
        return grid

    def _call_maps(
        self, input_tensor: torch.Tensor, targets: Targets, *, aug_smooth: bool, eigen_smooth: bool
    ) -> torch.Tensor:
        return self.explain(input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth).saliency

    def _model_view(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the model can take it: resized (bilinear, antialiased) to a
        fixed-resolution model's input size, for the forward that picks the predicted class
        or checks the targets; ``x`` itself otherwise."""
        size = self.model_input_size
        if size is None or tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    def _patch_chunks(self, x: torch.Tensor, grid: _core.Grid) -> Iterator[torch.Tensor]:
        """Chunks of ``chunk_size`` patches across all images, unfolding one image at a time
        so peak memory does not grow with the number of images."""
        pending: list[torch.Tensor] = []
        count = 0
        for b in range(x.shape[0]):
            pending.append(kernels.unfold(x[b : b + 1], grid))
            count += grid.num_patches
            while count >= self.chunk_size:
                rows = torch.cat(pending) if len(pending) > 1 else pending[0]
                size = self.chunk_size  # read once: a back-off while the chunk runs changes it
                yield rows[:size]
                rest = rows[size:]
                pending, count = ([rest] if len(rest) else []), len(rest)
        if count:
            yield torch.cat(pending) if len(pending) > 1 else pending[0]

    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Targets = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> Explanation:
        """The UCAG explanation of a (B, C, H, W) batch for one target per image.

        Args:
            input_tensor: (B, C, H, W) floating-point images, moved to the model's device.
            targets: One target per image: class indices (ints or a 1-D integer tensor),
                pytorch-grad-cam target objects or [ucag.targets][ucag.targets] objects; None
                for the model's prediction.
            aug_smooth: pytorch-grad-cam's test-time augmentation smoothing (grad-cam bases
                only).
            eigen_smooth: pytorch-grad-cam's first-principal-component smoothing (grad-cam
                bases only).

        Returns:
            The post-processed and raw maps with every intermediate result (partial maps,
                probabilities, weights, grid).

        Raises:
            RuntimeError: The explainer's ``with`` block has ended (the hooks are released).
            TypeError: ``input_tensor`` is not a floating-point tensor, or targets the base
                method cannot follow.
            ValueError: ``input_tensor`` is not a non-empty (B, C, H, W) batch, a target is
                out of range, the grid does not fit the images, or a smoothing option is set
                for a base without it.
        """
        if self._released:
            raise RuntimeError(
                "UCAG: this explainer's with block has ended and released the base method's hooks; create a new UCAG (and base) to explain more"
            )
        check_input(input_tensor)
        x = input_tensor.detach().to(model_device(self.model))
        grid = self.grid_for((x.shape[-2], x.shape[-1]))
        with eval_mode(self.model):
            explained = self.resolve_targets(x, targets)
            target_ids = torch.tensor(
                [-1 if t.category is None else t.category for t in explained], dtype=torch.long, device=x.device
            )
            patches = self.attribute_patches(
                x, grid, target_ids, explained, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
            )
            global_map = (
                self.attribute_global(x, target_ids, explained, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
                if self.global_view
                else None
            )
        return dataclasses.replace(self.conquer(patches, grid, target_ids, global_map), explained=explained)

    def resolve_targets(self, x: torch.Tensor, targets: Targets) -> list[Target]:
        """One checked [Target][ucag.targets.Target] per image ([resolve][ucag.targets.resolve], one forward).

        Args:
            x: (B, C, H, W) images on the model's device (resized for a fixed-resolution
                model before the forward).
            targets: What [explain][ucag.explainer.UCAG.explain] takes; None for the model's
                prediction.

        Returns:
            The resolved targets, one per image.

        Raises:
            TypeError: Targets other than softmax classes with a base that does not follow
                grad-cam target objects, or something that is not a target.
            ValueError: The number of targets is not B, or a target does not fit the model's
                output or the image size.
        """
        explained = resolve(self.model, self._model_view(x), targets, self.confidence)
        if not is_class_only(explained) and not isinstance(self.adapter, GradCamAdapter):
            kind = next(t.kind for t in explained if type(t).kind != "class")
            raise TypeError(
                f"targets: {kind} targets need a pytorch-grad-cam base, which follows target objects; {self.adapter.name} takes class indices (docs/algorithm.md §3.1)"
            )
        return explained

    def attribute_patches(
        self,
        x: torch.Tensor,
        grid: _core.Grid,
        target_ids: torch.Tensor,
        targets: Targets = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> PatchAttribution:
        """The base method on every patch of every image (docs/algorithm.md §2), in chunks.

        Chunks of ``chunk_size`` patches run across all images, one image unfolded at a time.

        Args:
            x: (B, C, H, W) images on the model's device.
            grid: The patch geometry for the images' size.
            target_ids: (B,) class of each image (-1 for targets without one).
            targets: The resolved [Target][ucag.targets.Target] objects (one per image) or
                the caller's targets, whose grad-cam target objects the base follows.
            aug_smooth: pytorch-grad-cam's test-time augmentation smoothing.
            eigen_smooth: pytorch-grad-cam's first-principal-component smoothing.

        Returns:
            Partial maps (B·N, h', w') and logits (B·N, K), or, for targets other than
                softmax classes (resolved [Target][ucag.targets.Target] objects), each patch's
                confidence in its target on the patch (§3.1).
        """
        n = grid.num_patches
        chunks = self._patch_chunks(x, grid)
        row_ids = target_ids.repeat_interleave(n).clamp(min=0)
        if isinstance(targets, list) and _resolved(targets) and not is_class_only(targets):
            boxes = patch_boxes(grid.offsets_y, grid.offsets_x, grid.patch_size)
            on_patches = [t.on_patch(box, grid.image_size) for t in targets for box in boxes]
            return self._attribute_chunks(
                chunks, row_ids, [t.gradient_object() for t in on_patches], aug_smooth, eigen_smooth, on_patches
            )
        return self._attribute_chunks(chunks, row_ids, target_objects(targets, n), aug_smooth, eigen_smooth)

    def attribute_global(
        self,
        x: torch.Tensor,
        target_ids: torch.Tensor,
        targets: Targets = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> torch.Tensor:
        """The global view: the base method on the full images.

        Args:
            x: (B, C, H, W) images on the model's device.
            target_ids: (B,) class of each image (-1 for targets without one).
            targets: The resolved targets or the caller's, whose grad-cam target objects the
                base follows.
            aug_smooth: pytorch-grad-cam's test-time augmentation smoothing.
            eigen_smooth: pytorch-grad-cam's first-principal-component smoothing.

        Returns:
            The raw maps (B, H, W), resized to (H, W) with the fold's bilinear resize (§4).

        Raises:
            ValueError: A fixed-resolution model does not take images of this size.
        """
        x_model = self._model_view(x)
        if x_model is not x:
            raise ValueError(
                f"global_view: {type(self.model).__name__} takes only {_size(self.model_input_size or (0, 0))} inputs, the images are {_size(tuple(x.shape[-2:]))}; resize them or drop global_view"
            )
        chunks = (x[s : s + self.chunk_size] for s in range(0, len(x), self.chunk_size))
        maps = self._attribute_chunks(
            chunks, target_ids.clamp(min=0), target_objects(targets), aug_smooth, eigen_smooth
        ).maps[:, None]
        return F.interpolate(maps, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False, antialias=False)[
            :, 0
        ]

    def _attribute_chunks(
        self,
        chunks: Iterator[torch.Tensor],
        row_targets: torch.Tensor,
        objects: list[Any] | None,
        aug_smooth: bool,
        eigen_smooth: bool,
        confidence_of: list[Target] | None = None,
    ) -> PatchAttribution:
        """The base method on each chunk, each row for its target (and grad-cam target
        object), with a progress bar when asked; the parts joined. With ``confidence_of``
        (one target per row), each row's confidence in it is read from the chunk's outputs,
        which are then dropped. A chunk that runs out of device memory is split and retried
        (`ucag._chunks.run_in_chunks`)."""
        if self.progress:
            from tqdm.auto import tqdm

            chunks = tqdm(
                chunks, total=-(-len(row_targets) // self.chunk_size), desc=f"UCAG[{self.adapter.name}]", unit="chunk"
            )
        parts: list[PatchAttribution] = []
        start = 0
        plan = self.compute_plan()
        # a CAM reads its target layers' activations and gradients as numpy: float32 there
        layers = getattr(self.adapter, "precision_layers", ())
        for chunk in chunks:
            offset = start
            start += len(chunk)

            def attribute(rows: slice, chunk: torch.Tensor = chunk, offset: int = offset) -> PatchAttribution:
                picked = slice(offset + rows.start, offset + rows.stop)
                with plan.model_calls(layers):
                    part = self.adapter(
                        plan.layout(chunk[rows]),
                        row_targets[picked],
                        target_objects=objects[picked] if objects else None,
                        aug_smooth=aug_smooth,
                        eigen_smooth=eigen_smooth,
                    )
                if confidence_of is None:
                    return part
                probabilities = row_confidence(confidence_of[picked], part.logits.detach())
                present = torch.tensor([t.present() for t in confidence_of[picked]], device=probabilities.device)
                return dataclasses.replace(
                    part,
                    logits=part.logits.new_empty((len(part.logits), 0)),
                    probabilities=probabilities,
                    present=present,
                )

            done, self.chunk_size = run_in_chunks(len(chunk), self.chunk_size, attribute, "patches")
            parts += done
        return _concatenated(parts)

    def conquer(
        self,
        patches: PatchAttribution,
        grid: _core.Grid,
        target_ids: torch.Tensor,
        global_map: torch.Tensor | None = None,
        *,
        weighting: Weighting | None = None,
        fold: FoldWindow | None = None,
        global_view: GlobalView | None | Literal["default"] = "default",
        global_weight: float | None = None,
    ) -> Explanation:
        """Conquer computed partial maps: weight, fold, fuse and post-process them.

        Confidence weighting, fold, the optional global-view fusion and post-processing
        (docs/algorithm.md §3-5). ``weighting``, ``fold``, ``global_view`` and
        ``global_weight`` override the explainer's own settings, so one patch pass can be
        conquered several ways ([tune][ucag.eval.tuning.tune]).

        Args:
            patches: What [attribute_patches][ucag.explainer.UCAG.attribute_patches] returned.
            grid: The patch geometry the patches were unfolded with.
            target_ids: (B,) class of each image (-1 for targets without one).
            global_map: The global view from
                [attribute_global][ucag.explainer.UCAG.attribute_global], needed when a
                global view is fused.
            weighting: Overrides the explainer's ``weighting``.
            fold: Overrides the explainer's ``fold``.
            global_view: Overrides the explainer's ``global_view`` (None: no fusion);
                ``"default"`` keeps it.
            global_weight: Overrides the explainer's ``global_weight``.

        Returns:
            The explanation (its ``explained`` targets left empty).

        Raises:
            ValueError: A global view is to be fused without ``global_map``, or an override
                is not a valid value.
        """
        weighting = self.weighting if weighting is None else weighting
        fold = self.fold if fold is None else fold
        view: GlobalView | None = self.global_view if global_view == "default" else global_view
        global_weight = self.global_weight if global_weight is None else global_weight
        partials = patches.maps
        if patches.probabilities is not None:  # a target kind's own confidence (§3.1)
            probabilities = patches.probabilities.float().to(partials.device)
            weights = confidence_weights(probabilities, weighting, patches.present)
        else:
            logits = patches.logits.float().to(partials.device)
            patch_targets = target_ids.repeat_interleave(grid.num_patches).to(partials.device)
            # one softmax on the device gives both (the weights derive from the probabilities)
            probabilities, weights = kernels.confidence(logits, patch_targets, weighting, return_probabilities=True)
        raw = kernels.fold(partials, weights, grid, fold)
        fused = None
        if view is not None:
            if global_map is None:
                raise ValueError(f"global_view: {view!r} needs the global map (attribute_global)")
            fused = fuse_global_view(raw, global_map.to(raw.device), view, global_weight)
        saliency = apply_postprocess(raw if fused is None else fused, self.postprocess, self.blur)
        plan = self.compute_plan()
        return Explanation(
            saliency=saliency,
            raw=raw,
            partials=partials,
            partials_normalised=patches.normalised,
            probabilities=probabilities,
            weights=weights,
            targets=target_ids,
            grid=grid,
            base=self.adapter.name,
            postprocess=self.postprocess,
            truncated_backward=self.adapter.truncate,
            global_view=view,
            global_map=global_map if view is not None else None,
            fused=fused,
            chunk_size=self.chunk_size,
            precision=plan.precision,
            channels_last=plan.channels_last,
        )


def _size(size: tuple[int, ...]) -> str:
    return "x".join(str(int(v)) for v in size)


def _cam_with_suggested_layer(cam_class: type, model: nn.Module | None) -> tuple[Any, LayerSuggestion]:
    """A pytorch-grad-cam class built on ``model`` at the suggested target layer, with the
    reshape_transform a transformer's tokens need (ucag.models.layer_suggestion)."""
    if not (cam_class.__module__ or "").startswith("pytorch_grad_cam"):
        raise TypeError(
            f"base: a class must be a pytorch-grad-cam CAM class (e.g. GradCAM), got {cam_class.__name__}; pass an object for other libraries"
        )
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: building {cam_class.__name__} needs model= (the classifier to explain)")
    suggestion = layer_suggestion(model)
    modes = [(m, m.training) for m in model.modules()]
    cam = cam_class(model=model, target_layers=[suggestion.layer], reshape_transform=suggestion.reshape_transform)
    for m, training in modes:  # grad-cam puts the model in eval mode for good; UCAG's calls do it for their duration
        m.training = training
    return cam, suggestion


def _concatenated(parts: list[PatchAttribution]) -> PatchAttribution:
    shapes = {tuple(p.maps.shape[-2:]) for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"base: partial maps of one call must share one size, got {sorted(shapes)}")
    maps = torch.cat([p.maps for p in parts]).float()
    probabilities = [p.probabilities for p in parts if p.probabilities is not None]
    joined = torch.cat(probabilities).to(maps.device) if len(probabilities) == len(parts) else None
    present = (
        torch.cat([p.present for p in parts if p.present is not None]).to(maps.device) if joined is not None else None
    )
    return PatchAttribution(
        maps, torch.cat([p.logits for p in parts]).to(maps.device), any(p.normalised for p in parts), joined, present
    )


def _resolved(targets: Any) -> bool:
    """True for a list of `ucag.targets.Target` (what `UCAG.resolve_targets` gives)."""
    return isinstance(targets, list) and bool(targets) and all(isinstance(t, Target) for t in targets)


def fuse_global_view(
    raw: torch.Tensor, global_map: torch.Tensor, mode: GlobalView, weight: float = 0.5
) -> torch.Tensor:
    """Fuse UCAG maps with the full-image maps (docs/algorithm.md §5).

    Both are ReLU'd and min-max scaled to [0, 1] per image first.

    Args:
        raw: Raw UCAG maps (B, H, W).
        global_map: The base method's raw maps of the full images (B, H, W).
        mode: ``"product"`` multiplies them; ``"mean"`` blends them as
            ``(1 - weight) * ucag + weight * global``.
        weight: The global maps' weight in ``"mean"``.

    Returns:
        The fused maps (B, H, W).

    Raises:
        ValueError: ``mode`` is not ``"product"`` or ``"mean"``.

    Examples:
        >>> import torch
        >>> ucag_map = torch.tensor([[[0.0, 2.0]]])
        >>> global_map = torch.tensor([[[2.0, 0.0]]])
        >>> fuse_global_view(ucag_map, global_map, "mean", weight=0.25).tolist()
        [[[0.25, 0.75]]]
    """
    ucag_map, global_part = cam_postprocess(raw, blur=None), cam_postprocess(global_map, blur=None)
    if mode == "product":
        return ucag_map * global_part
    if mode == "mean":
        return (1 - weight) * ucag_map + weight * global_part
    check_choice("global_view", mode, GlobalView, " (or None)")
    raise AssertionError("unreachable: a valid global_view is fused above")
