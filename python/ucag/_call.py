"""What every entry point shares: input checks, targets, the model's device, preserved
model state and pytorch-grad-cam's call convention.

:class:`ucag.UCAG`, the baselines (:mod:`ucag.baselines`) and the propagation bases
(:mod:`ucag.bases.propagation`) all take a (B, C, H, W) batch and one target per image,
leave the model as they found it and can be called like a pytorch-grad-cam object; the
pieces for that live here, so none of them imports another for a helper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import nn

#: One target per image: class indices (ints or a 1-D integer tensor), pytorch-grad-cam
#: target objects (their ``category``), or None for the model's prediction.
Targets: TypeAlias = Sequence[Any] | torch.Tensor | None

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


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def target_index(target: Any, argument: str = "targets") -> int:
    """The class index of one target: an int, a one-element integer tensor or a
    pytorch-grad-cam target object with a ``category``."""
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, torch.Tensor) and target.numel() == 1 and not target.is_floating_point():
        return int(target.item())
    category = getattr(target, "category", None)  # grad-cam's ClassifierOutputTarget & co.
    if isinstance(category, (int, np.integer)):
        return int(category)
    raise TypeError(f"{argument}: expected class indices or ClassifierOutputTarget objects, got {type(target).__name__}")


def resolve_targets(model: nn.Module, x: torch.Tensor, targets: Targets) -> torch.Tensor:
    """One class index per image of ``x`` (B,) long: ``None`` is the model's prediction on
    ``x``; otherwise ints, a 1-D integer tensor or grad-cam target objects (their
    ``category``), one per image."""
    B = x.shape[0]
    if targets is None:
        # no_grad, not inference_mode: the indices may later index a tensor in a graph.
        with torch.no_grad():
            return model(x).argmax(dim=1)  # type: ignore[no-any-return]
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
    return torch.tensor([target_index(t) for t in items], dtype=torch.long, device=x.device)


def target_objects(targets: Targets, repeats: int = 1) -> list[Any] | None:
    """The pytorch-grad-cam target objects the user gave (e.g. a softmax target), each
    repeated for its image's ``repeats`` rows; None when the targets are plain indices."""
    if targets is None or isinstance(targets, torch.Tensor) or not any(hasattr(t, "category") for t in targets):
        return None
    return [t for t in targets for _ in range(repeats)]


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
        for m, mode in zip(modules, training, strict=True):
            m.training = mode
        for p, flag in requires_grad:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, saved in zip(modules, hooks, strict=True):
            for name, entries in saved.items():
                current = getattr(m, name)
                if current.keys() != entries.keys():
                    current.clear()
                    current.update(entries)


class GradCamCallable:
    """pytorch-grad-cam's call convention: ``obj(input_tensor=x, targets=[...])`` returns
    numpy float32 (B, H, W) maps. A class provides :meth:`_call_maps`, the torch maps a
    call returns."""

    def _call_maps(self, input_tensor: torch.Tensor, targets: Targets, *, aug_smooth: bool, eigen_smooth: bool) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Targets = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Numpy float32 (B, H, W) maps of ``input_tensor`` for ``targets``."""
        maps = self._call_maps(input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        return maps.detach().float().cpu().numpy()
