"""Inputs and targets, as every entry point takes them: the (B, C, H, W) batch check, class
targets (other kinds live in :mod:`ucag.targets`) and the logits in whatever a model returns.

:class:`ucag.UCAG`, the baselines (:mod:`ucag.baselines`), the propagation bases
(:mod:`ucag.bases.propagation`) and the evaluation toolkit take their helpers from here, so
none of them imports another for one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import nn

#: One target per image: class indices (ints or a 1-D integer tensor), pytorch-grad-cam
#: target objects, :mod:`ucag.targets` objects, or None for the model's prediction.
Targets: TypeAlias = Sequence[Any] | torch.Tensor | None


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


def logits_of(output: Any, argument: str = "model") -> torch.Tensor:
    """The logits in a model's output.

    Args:
        output: What the model returned.
        argument: The argument name the error message starts with.

    Returns:
        The tensor itself, a ``logits`` entry or attribute (a Hugging Face ``ModelOutput``, a
            dict), an ``out`` entry (torchvision's segmentation models'
            ``OrderedDict(out=..., aux=...)``), or the first element of a tuple or list
            (models that also return features or auxiliary heads).

    Raises:
        TypeError: ``output`` holds no logits in any of these forms; the message names
            ``argument``.

    Examples:
        >>> import torch
        >>> from ucag.models import logits_of
        >>> logits_of((torch.zeros(2, 10), "features")).shape
        torch.Size([2, 10])
        >>> logits_of({"logits": torch.zeros(2, 10)}).shape
        torch.Size([2, 10])
    """
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
    """``model`` with `logits_of` applied to its output.

    For libraries that index a model's output as a tensor. It owns no parameters of its own;
    hooks on ``model``'s layers see the same calls.

    Args:
        model: A model that returns its logits in a tuple, a dict or a ``ModelOutput``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.models import LogitsOnly
        >>> class WithFeatures(nn.Module):
        ...     def forward(self, x):
        ...         return x.mean((2, 3)), x  # (logits, features)
        >>> LogitsOnly(WithFeatures())(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``model``'s logits on the inputs.

        Args:
            *args: Passed on to ``model``.
            **kwargs: Passed on to ``model``.

        Returns:
            The logits in ``model``'s output (`logits_of`).

        Raises:
            TypeError: ``model``'s output holds no logits.
        """
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
