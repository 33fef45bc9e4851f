"""What every entry point shares: input checks, class targets (other kinds live in
:mod:`ucag.targets`), the logits in whatever a model returns, the model's device,
preserved model state, chunked work that backs off on out-of-memory, and
pytorch-grad-cam's call convention.

:class:`ucag.UCAG`, the baselines (:mod:`ucag.baselines`) and the propagation bases
(:mod:`ucag.bases.propagation`) all take a (B, C, H, W) batch and one target per image,
leave the model as they found it and can be called like a pytorch-grad-cam object; the
pieces for that live here, so none of them imports another for a helper.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import numpy as np
import torch
from torch import nn

from .grid import GridSpec
from .kernels import check_fold_window
from .options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GLOBAL_WEIGHT,
    DEFAULT_SCALE,
    DEFAULT_UNITS,
    Confidence,
    GlobalView,
    Postprocess,
    Weighting,
    check_choice,
)
from .postprocess import check_blur

#: One target per image: class indices (ints or a 1-D integer tensor), pytorch-grad-cam
#: target objects, :mod:`ucag.targets` objects, or None for the model's prediction.
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


def logits_of(output: Any, argument: str = "model") -> torch.Tensor:
    """The logits in a model's output: the tensor itself, a ``logits`` entry or attribute
    (a Hugging Face ``ModelOutput``, a dict), an ``out`` entry (torchvision's segmentation
    models' ``OrderedDict(out=..., aux=...)``), or the first element of a tuple or list
    (models that also return features or auxiliary heads). TypeError naming ``argument``
    for anything else."""
    if isinstance(output, torch.Tensor):
        return output
    logits = (
        output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    )  # a ModelOutput is a Mapping too
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping) and isinstance(output.get("out"), torch.Tensor):  # torchvision's segmentation models
        return output["out"]  # type: ignore[no-any-return]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"{argument}: must return (B, K) logits: a tensor, a tuple whose first element they are, or a dict / ModelOutput with 'logits' (or 'out'); got {type(output).__name__}"
    )


class LogitsOnly(nn.Module):
    """``model`` with :func:`logits_of` applied to its output, for libraries that index a
    model's output as a tensor. It owns no parameters of its own; hooks on ``model``'s
    layers see the same calls."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return logits_of(self.model(*args, **kwargs))


def checked_logits(output: Any, rows: int, argument: str = "model") -> torch.Tensor:
    """The (rows, K) floating logits in a model's ``output`` (:func:`logits_of`), else an
    error that says what was returned."""
    logits = logits_of(output, argument)
    if logits.dim() != 2 or logits.shape[0] != rows or logits.shape[1] < 1 or not logits.is_floating_point():
        raise ValueError(
            f"{argument}: must return (B, K) floating logits for B = {rows} inputs, got {logits.dtype} of shape {tuple(logits.shape)}"
        )
    return logits


def check_target_range(targets: Sequence[int] | torch.Tensor, classes: int, argument: str = "targets") -> None:
    """Class indices in [0, classes), or a ValueError listing the ones that are not."""
    values = targets.tolist() if isinstance(targets, torch.Tensor) else list(targets)
    bad = [t for t in values if not 0 <= t < classes]
    if bad:
        raise ValueError(
            f"{argument}: class indices must lie in [0, {classes}) for this model's {classes} outputs, got {bad}"
        )


def resolve_targets(model: nn.Module, x: torch.Tensor, targets: Targets) -> torch.Tensor:
    """One class index per image of ``x`` (B,) long, for the methods that take class
    indices: ``None`` is the model's prediction on ``x``; otherwise ints, a 1-D integer
    tensor or class target objects, one per image, checked against the model's output
    (:func:`ucag.targets.resolve`, one forward) before any attribution runs. Targets of
    other kinds (binary, segmentation...) raise a TypeError that says where they work."""
    from .targets import ClassTarget, resolve

    resolved = resolve(model, x, targets)
    other = next((t for t in resolved if type(t) is not ClassTarget), None)
    if other is not None:
        raise TypeError(
            f"targets: {other.kind} targets work with ucag.UCAG around a pytorch-grad-cam base (docs/algorithm.md §3.1); this takes class indices"
        )
    return torch.tensor([t.category for t in resolved], dtype=torch.long, device=x.device)


def target_objects(targets: Targets, repeats: int = 1) -> list[Any] | None:
    """What the base method follows for the gradient, each repeated for its image's
    ``repeats`` rows: the user's pytorch-grad-cam target objects (e.g. a softmax target) and
    ``ucag.targets`` objects (:meth:`ucag.targets.Target.gradient_object`); None when the
    targets are plain class indices."""
    from .targets import ClassTarget, Target

    def plain(t: Any) -> bool:
        return isinstance(t, (int, np.integer)) or (type(t) is ClassTarget and t.gradient_target is None)

    if targets is None or isinstance(targets, torch.Tensor) or all(plain(t) for t in targets):
        return None
    objects = [
        t.gradient_object() if isinstance(t, Target) else ClassTarget(int(t)) if isinstance(t, (int, np.integer)) else t
        for t in targets
    ]
    return [o for o in objects for _ in range(repeats)]


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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (as pytorch-grad-cam runs it: no dropout, batch norms use and
    keep their running statistics) for the block; its modes, ``requires_grad`` flags and
    hooks come back on exit (:func:`preserved_state`)."""
    with preserved_state(model):
        model.eval()
        yield


#: What torch raises when a device runs out of memory (torch.OutOfMemoryError from 2.5 on).
OutOfMemoryError = torch.cuda.OutOfMemoryError

T = TypeVar("T")


def run_in_chunks(rows: int, size: int, run: Callable[[slice], T], what: str = "rows") -> tuple[list[T], int]:
    """``run`` on consecutive slices of at most ``size`` of ``rows`` rows, in order.

    When a slice runs out of device memory it is halved and retried (down to one row);
    what was computed before is kept, and the smaller size holds for the rest. Returns the
    results and the size that ran last, for the caller to remember. A warning reports
    each back-off."""
    results: list[T] = []
    start = 0
    while start < rows:
        stop = min(start + size, rows)
        try:
            results.append(run(slice(start, stop)))
        except OutOfMemoryError:
            if stop - start == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = (stop - start) // 2
            warnings.warn(
                f"out of memory with {stop - start} {what} per chunk; continuing with {size}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        start = stop
    return results, size


#: The settings :class:`ucag.UCAG` takes besides the base, the model and Captum's options.
SETTINGS = (
    "units",
    "patch_size",
    "scale",
    "scaled_size",
    "weighting",
    "confidence",
    "fold",
    "batch_size",
    "postprocess",
    "blur",
    "progress",
    "truncate_backward",
    "global_view",
    "global_weight",
)


def check_settings(**settings: Any) -> None:
    """Raise, naming the argument, for any invalid :class:`ucag.UCAG` setting among ``settings``
    (keys from :data:`SETTINGS`), before a base method or model is touched: what
    :class:`ucag.UCAG` checks on construction, for callers that validate options up front."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"{unknown[0]}: not a UCAG setting; expected some of {', '.join(SETTINGS)}")
    scale, scaled_size = settings.get("scale"), settings.get("scaled_size")
    if scale is not None and scaled_size is not None:
        raise ValueError(
            f"scaled_size: give scale or scaled_size, not both (got scale={scale!r}, scaled_size={scaled_size!r})"
        )
    if settings.keys() & {"units", "patch_size", "scale", "scaled_size"}:
        GridSpec(
            settings.get("units", DEFAULT_UNITS),
            settings.get("patch_size"),
            DEFAULT_SCALE if scale is None else scale,
            scaled_size,
        )
    batch_size = settings.get("batch_size", DEFAULT_BATCH_SIZE)
    if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive int or 'auto', got {batch_size!r}")
    check_choice("weighting", settings.get("weighting", "exp"), Weighting)
    check_choice(
        "confidence",
        settings.get("confidence", "softmax"),
        Confidence,
        " ('softmax' for single-label classes, 'sigmoid' for multi-label heads)",
    )
    if "fold" in settings:
        check_fold_window(settings["fold"], "fold")
    check_choice("postprocess", settings.get("postprocess", "auto"), Literal["auto", Postprocess])
    check_blur(settings.get("blur"))
    if settings.get("global_view") is not None:
        check_choice("global_view", settings["global_view"], GlobalView, " (or None)")
    weight = settings.get("global_weight", DEFAULT_GLOBAL_WEIGHT)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"global_weight: expected a number in [0, 1], got {weight!r}")


class GradCamCallable:
    """pytorch-grad-cam's call convention: ``obj(input_tensor=x, targets=[...])`` returns
    numpy float32 (B, H, W) maps. A class provides :meth:`_call_maps`, the torch maps a
    call returns."""

    def _call_maps(
        self, input_tensor: torch.Tensor, targets: Targets, *, aug_smooth: bool, eigen_smooth: bool
    ) -> torch.Tensor:
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
