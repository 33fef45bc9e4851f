"""The explainer: :class:`UCAG` wraps an attribution method and returns UCAG maps.

Flow of one call (SPEC sections 1-5): resolve one target class per image; unfold every
image into the grid's upsampled patches (Rust); run the base method on the patches in
chunks of ``batch_size`` across all images, each patch with its image's target; weight the
partial maps by the model's confidence on each patch (Rust); fold them into one raw map per
image (Rust); post-process.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _core, kernels
from .adapters import PatchAttribution, make_adapter, model_device
from .postprocess import cam_postprocess
from .postprocess import postprocess as apply_postprocess

Weighting = Literal["exp", "prob", "uniform"]
GlobalView = Literal["product", "mean"]


@dataclass
class Explanation:
    """Everything a UCAG call computed, to show how the map was built.

    saliency: post-processed maps (B, H, W) (torch, on the model's device).
    raw: signed, unnormalised UCAG maps M_b (B, H, W).
    partials: the base method's partial map of every patch (B*N, h', w'); row b*N + p.
    partials_normalised: True when the base method could only give normalised maps.
    probabilities: softmax probability of the target on every patch (B*N,).
    weights: confidence weight of every patch (B*N,).
    targets: the class explained for each image (B,).
    grid: the patch geometry.
    truncated_backward: True when the backward pass stopped at the target layer.
    global_view: how the full-image map was fused (None: not at all, the paper's method).
    global_map: the base method's raw map of the full image, resized to (B, H, W), when fused.
    fused: the fused map (B, H, W) that post-processing received instead of ``raw``.
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
    truncated_backward: bool = False
    global_view: GlobalView | None = None
    global_map: torch.Tensor | None = None
    fused: torch.Tensor | None = None

    def __repr__(self) -> str:
        B = self.raw.shape[0]
        return (
            f"Explanation(base={self.base}, images={B}, maps={tuple(self.raw.shape[1:])}, "
            f"partials={tuple(self.partials.shape)}{' normalised' if self.partials_normalised else ' raw'}, "
            f"postprocess={self.postprocess!r}, truncated_backward={self.truncated_backward}, global_view={self.global_view!r}, grid={self.grid!r})"
        )


#: The per-module hook registries of torch.nn.Module.
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
)


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore the model's train/eval modes, ``requires_grad`` flags and hooks on exit,
    also when the body raises (hooks added inside are removed, removed ones come back)."""
    modules = list(model.modules())
    training = [m.training for m in modules]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    hooks = [{name: dict(getattr(m, name)) for name in _HOOK_DICTS if hasattr(m, name)} for m in modules]
    try:
        yield
    finally:
        for m, mode in zip(modules, training):
            m.training = mode
        for p, flag in requires_grad:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, saved in zip(modules, hooks):
            for name, entries in saved.items():
                current = getattr(m, name)
                if current.keys() != entries.keys():
                    current.clear()
                    current.update(entries)


def _target_index(target: Any, argument: str = "targets") -> int:
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, torch.Tensor) and target.numel() == 1 and not target.is_floating_point():
        return int(target.item())
    category = getattr(target, "category", None)  # grad-cam's ClassifierOutputTarget & co.
    if isinstance(category, (int, np.integer)):
        return int(category)
    raise TypeError(f"{argument}: expected class indices or ClassifierOutputTarget objects, got {type(target).__name__}")


Targets = Sequence[Any] | torch.Tensor | None


def check_input(input_tensor: Any) -> None:
    """A (B, C, H, W) floating-point batch with at least one image, or a clear error."""
    if not isinstance(input_tensor, torch.Tensor):
        raise TypeError(f"input_tensor: expected a torch.Tensor (B, C, H, W), got {type(input_tensor).__name__}")
    if input_tensor.dim() != 4:
        raise ValueError(f"input_tensor: expected shape (B, C, H, W), got {tuple(input_tensor.shape)}")
    if not input_tensor.is_floating_point():
        raise TypeError(f"input_tensor: expected a floating-point tensor, got {input_tensor.dtype}")
    if input_tensor.shape[0] == 0:
        raise ValueError("input_tensor: the batch is empty")


def resolve_targets(model: nn.Module, x: torch.Tensor, targets: Targets) -> torch.Tensor:
    """One class index per image of ``x`` (B,) long: ``None`` is the model's prediction on
    ``x``; otherwise ints, a 1-D integer tensor or grad-cam target objects (their
    ``category``), one per image."""
    B = x.shape[0]
    if targets is None:
        # no_grad, not inference_mode: the indices may later index a tensor in a graph.
        with torch.no_grad():
            return model(x).argmax(dim=1)
    if isinstance(targets, torch.Tensor):
        if targets.is_floating_point() or targets.dim() != 1:
            raise TypeError(f"targets: expected a 1-D integer tensor, got {targets.dtype} of shape {tuple(targets.shape)}")
        items = targets.tolist()
    elif isinstance(targets, (str, bytes)) or not isinstance(targets, (Sequence, np.ndarray)):
        raise TypeError(f"targets: expected a list with one target per image, got {type(targets).__name__}")
    else:
        items = list(targets)
    if len(items) != B:
        raise ValueError(f"targets: got {len(items)} targets for {B} images; give one per image (or None)")
    return torch.tensor([_target_index(t) for t in items], dtype=torch.long, device=x.device)


class UCAG:
    """Unfold and Conquer Attribution Guidance around an existing attribution method.

    ``base`` is a pytorch-grad-cam CAM object, a Captum ``Attribution``, a zennit
    ``Attributor`` or a plain callable ``fn(patches, targets) -> maps`` (then ``model=`` is
    required). Defaults are the paper's (SPEC): a 6 x 6 grid of patches of 124/224 of the
    image, upsampled x2.6, weighted by ``exp(p)``.

    ``postprocess="auto"`` means "cam" (ReLU, min-max to [0, 1], Gaussian blur ``blur``) for
    CAM-style bases and "none" (the signed raw map) for propagation methods (zennit, LRP).

    Call it like a pytorch-grad-cam object: ``explainer(input_tensor=x, targets=[...])``
    returns numpy float32 (B, H, W) maps; :meth:`explain` returns the full
    :class:`Explanation`. Inputs on another device than the model are moved to it.
    Use it as a context manager to release the base method's hooks on exit, as grad-cam's
    ``with GradCAM(...) as cam`` does.

    For gradient-based CAMs the backward pass stops at the target layer (about 3x faster on
    CPU, same maps); methods that need input gradients (FullGrad, Captum, zennit) keep the
    full backward. ``truncate_backward=False`` forces the full backward everywhere.
    Probability-only forwards (``targets=None``, logits for adapters that cannot expose
    them) run under ``torch.inference_mode()``.
    """

    def __init__(
        self,
        base: Any,
        *,
        model: nn.Module | None = None,
        units: int = 6,
        patch_size: int | tuple[int, int] | None = None,
        scale: float = 2.6,
        weighting: Weighting = "exp",
        batch_size: int = 16,
        postprocess: Literal["auto", "cam", "none"] = "auto",
        blur: tuple[int, float] | None = (5, 3.0),
        progress: bool = False,
        truncate_backward: bool = True,
        global_view: GlobalView | None = None,
        global_weight: float = 0.5,
        **attribute_kwargs: Any,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if weighting not in ("exp", "prob", "uniform"):
            raise ValueError(f"weighting: expected 'exp', 'prob' or 'uniform', got {weighting!r}")
        if postprocess not in ("auto", "cam", "none"):
            raise ValueError(f"postprocess: expected 'auto', 'cam' or 'none', got {postprocess!r}")
        if global_view not in (None, "product", "mean"):
            raise ValueError(f"global_view: expected None, 'product' or 'mean', got {global_view!r}")
        if not isinstance(global_weight, (int, float)) or not 0.0 <= global_weight <= 1.0:
            raise ValueError(f"global_weight: expected a number in [0, 1], got {global_weight!r}")
        self.global_view: GlobalView | None = global_view
        self.global_weight = float(global_weight)
        self.adapter = make_adapter(base, model, **attribute_kwargs)
        if hasattr(self.adapter, "truncate"):
            self.adapter.truncate = self.adapter.truncatable and truncate_backward
        self.base = base
        self.model: nn.Module = self.adapter.model
        self.units, self.patch_size, self.scale = units, patch_size, scale
        self.weighting: Weighting = weighting
        self.batch_size = batch_size
        if postprocess == "auto":
            postprocess = "cam" if self.adapter.map_kind == "cam" else "none"
        self.postprocess: Literal["cam", "none"] = postprocess
        self.blur = blur
        self.progress = progress
        self._grids: dict[tuple[int, int], _core.Grid] = {}
        # Fail early on a bad setting (units, patch_size, scale): build one grid now.
        _core.Grid(patch_size if patch_size is not None else 224, units=units, patch_size=patch_size, scale=scale)

    def __repr__(self) -> str:
        return (
            f"UCAG(base={self.adapter.name}, units={self.units}, patch_size={self.patch_size}, scale={self.scale}, "
            f"weighting={self.weighting!r}, batch_size={self.batch_size}, postprocess={self.postprocess!r}"
            + (f", global_view={self.global_view!r}, global_weight={self.global_weight}" if self.global_view else "")
            + ")"
        )

    def __enter__(self) -> "UCAG":
        return self

    def __exit__(self, *exc: Any) -> None:
        release = getattr(getattr(self.base, "activations_and_grads", None), "release", None)
        if release is not None:
            release()

    def grid_for(self, size: tuple[int, int]) -> _core.Grid:
        """The grid for images of ``size`` (cached)."""
        if size not in self._grids:
            self._grids[size] = _core.Grid(size, units=self.units, patch_size=self.patch_size, scale=self.scale)
        return self._grids[size]

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Targets = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """pytorch-grad-cam's call convention: numpy float32 (B, H, W) maps."""
        explanation = self.explain(input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        return explanation.saliency.detach().float().cpu().numpy()

    def _patch_chunks(self, x: torch.Tensor, grid: _core.Grid) -> Iterator[torch.Tensor]:
        """Chunks of ``batch_size`` patches across all images, unfolding one image at a time
        so peak memory does not grow with the number of images."""
        pending: list[torch.Tensor] = []
        count = 0
        for b in range(x.shape[0]):
            pending.append(kernels.unfold(x[b : b + 1], grid))
            count += grid.num_patches
            while count >= self.batch_size:
                rows = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield rows[: self.batch_size]
                rest = rows[self.batch_size :]
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
        """The UCAG explanation of a (B, C, H, W) batch for one target per image."""
        check_input(input_tensor)
        x = input_tensor.detach().to(model_device(self.model))
        grid = self.grid_for(tuple(x.shape[-2:]))
        with preserved_state(self.model):
            target_ids = resolve_targets(self.model, x, targets)
            smoothing = {"aug_smooth": aug_smooth, "eigen_smooth": eigen_smooth}
            patches = self.attribute_patches(x, grid, target_ids, targets, **smoothing)
            global_map = self.attribute_global(x, target_ids, targets, **smoothing) if self.global_view else None
        return self.conquer(patches, grid, target_ids, global_map)

    def attribute_patches(self, x: torch.Tensor, grid: _core.Grid, target_ids: torch.Tensor, targets: Targets = None, **smoothing: bool) -> PatchAttribution:
        """The base method on every patch of every image (SPEC section 2), in chunks of
        ``batch_size``: partial maps (B*N, h', w') and logits (B*N, K)."""
        n = grid.num_patches
        objects = _target_objects(targets, n)
        parts = [
            self.adapter(patches, rows_targets, **smoothing, **({"target_objects": rows_objects} if objects else {}))
            for patches, rows_targets, rows_objects in self._with_targets(self._patch_chunks(x, grid), target_ids.repeat_interleave(n), objects)
        ]
        return _concatenated(parts)

    def attribute_global(self, x: torch.Tensor, target_ids: torch.Tensor, targets: Targets = None, **smoothing: bool) -> torch.Tensor:
        """The base method on the full images, its raw maps resized to (H, W) with SPEC
        section 4's bilinear R: the global view (B, H, W)."""
        objects = _target_objects(targets, 1)
        chunks = (x[s : s + self.batch_size] for s in range(0, len(x), self.batch_size))
        parts = [
            self.adapter(images, rows_targets, **smoothing, **({"target_objects": rows_objects} if objects else {}))
            for images, rows_targets, rows_objects in self._with_targets(chunks, target_ids, objects)
        ]
        maps = _concatenated(parts).maps[:, None]
        return F.interpolate(maps, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False, antialias=False)[:, 0]

    def _with_targets(self, chunks: Iterator[torch.Tensor], row_targets: torch.Tensor, objects: list[Any] | None):
        """Each chunk with its rows' targets (and grad-cam target objects), with a progress
        bar when asked."""
        if self.progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, total=-(-len(row_targets) // self.batch_size), desc=f"UCAG[{self.adapter.name}]", unit="chunk")
        start = 0
        for chunk in chunks:
            rows = slice(start, start + len(chunk))
            yield chunk, row_targets[rows], (objects[rows] if objects else None)
            start += len(chunk)

    def conquer(
        self,
        patches: PatchAttribution,
        grid: _core.Grid,
        target_ids: torch.Tensor,
        global_map: torch.Tensor | None = None,
        *,
        weighting: Weighting | None = None,
        global_view: GlobalView | None | Literal["default"] = "default",
        global_weight: float | None = None,
    ) -> Explanation:
        """Confidence weighting, fold, the optional global-view fusion and post-processing
        (SPEC sections 3-5) of computed partial maps. ``weighting``, ``global_view`` and
        ``global_weight`` override the explainer's own settings, so one patch pass can be
        conquered several ways (:func:`ucag.tune`)."""
        weighting = self.weighting if weighting is None else weighting
        global_view = self.global_view if global_view == "default" else global_view
        global_weight = self.global_weight if global_weight is None else global_weight
        partials = patches.maps
        logits = patches.logits.float().to(partials.device)
        patch_targets = target_ids.repeat_interleave(grid.num_patches).to(partials.device)
        probabilities = kernels.confidence(logits, patch_targets, "prob")
        weights = kernels.confidence(logits, patch_targets, weighting)
        raw = kernels.fold(partials, weights, grid)
        fused = None
        if global_view is not None:
            if global_map is None:
                raise ValueError(f"global_view: {global_view!r} needs the global map (attribute_global)")
            fused = fuse_global_view(raw, global_map.to(raw.device), global_view, global_weight)
        saliency = apply_postprocess(raw if fused is None else fused, self.postprocess, self.blur)
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
            truncated_backward=bool(getattr(self.adapter, "truncate", False)),
            global_view=global_view,
            global_map=global_map if global_view is not None else None,
            fused=fused,
        )


def _target_objects(targets: Targets, repeats: int) -> list[Any] | None:
    """grad-cam target objects given by the user, each repeated for its image's rows."""
    if targets is None or isinstance(targets, torch.Tensor) or not any(hasattr(t, "category") for t in targets):
        return None
    return [t for t in targets for _ in range(repeats)]


def _concatenated(parts: list[PatchAttribution]) -> PatchAttribution:
    shapes = {tuple(p.maps.shape[-2:]) for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"base: partial maps of one call must share one size, got {sorted(shapes)}")
    maps = torch.cat([p.maps for p in parts]).float()
    return PatchAttribution(maps, torch.cat([p.logits for p in parts]).to(maps.device), any(p.normalised for p in parts))


def fuse_global_view(raw: torch.Tensor, global_map: torch.Tensor, mode: GlobalView, weight: float = 0.5) -> torch.Tensor:
    """Fuse UCAG maps with the full-image maps, both ReLU'd and min-max scaled to [0, 1]
    per image: ``"product"`` multiplies them; ``"mean"`` blends them as
    ``(1 - weight) * ucag + weight * global``."""
    ucag_map, global_part = cam_postprocess(raw, blur=None), cam_postprocess(global_map, blur=None)
    if mode == "product":
        return ucag_map * global_part
    if mode == "mean":
        return (1 - weight) * ucag_map + weight * global_part
    raise ValueError(f"global_view: expected None, 'product' or 'mean', got {mode!r}")
