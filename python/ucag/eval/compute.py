"""Counting what a method costs: the model's forward and backward passes, in samples.

[count_passes][ucag.eval.compute.count_passes] hooks a model for the length of a ``with`` block and counts every
forward pass through it by the rows of its output (a forward of a batch of 36 patches is
36 forward passes), the pixels those rows had (H x W of each input image, so patches
upsampled x2.6 weigh their real cost), and every backward pass that reaches its output by
the rows of that gradient (a backward through a batch of 36 outputs is 36 backward passes).
The evaluation runner counts every map this way (docs/algorithm.md §6.9): equal *compute*
between UCAG and its peers is then a number in the table, not a claim. Set-up work that is
not the method's per-image cost — a traced forward pass of a blank image to find layers
([resolution_layers][ucag.models.resolution_layers]), building a method — runs under
[uncounted][ucag.eval.compute.uncounted].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._inputs import logits_of


@dataclass
class PassCount:
    """What a model ran inside [count_passes][ucag.eval.compute.count_passes].

    Attributes:
        forward: Forward passes, counted in samples (rows of the output).
        backward: Backward passes that reached the logits, counted in samples (rows of the gradient).
        pixels: The input pixels (H x W per row) of those forward passes.
        calls: The number of forward calls (batches).
    """

    forward: int = 0
    backward: int = 0
    pixels: int = 0
    calls: int = 0

    @property
    def megapixels(self) -> float:
        """Input pixels forwarded, in millions (10^6)."""
        return self.pixels / 1e6


def _input_pixels(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int] | None:
    """(rows, H x W) of the first image batch (a tensor of 3 or more dims) among the call's
    arguments; None when there is none."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dim() >= 3:
            return int(value.shape[0]), int(value.shape[-2]) * int(value.shape[-1])
    return None


_paused = [0]  # > 0 inside uncounted(): the hooks let passes through without counting


@contextlib.contextmanager
def uncounted() -> Iterator[None]:
    """Pause every [count_passes][ucag.eval.compute.count_passes] inside this block.

    For set-up such as tracing a model to choose its layers, not the method's per-image cost.
    Blocks nest.

    Returns:
        A context manager that yields None.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.eval.compute import count_passes, uncounted
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
        >>> with count_passes(model) as passes:
        ...     _ = model(torch.zeros(3, 3, 2, 2))
        ...     with uncounted():
        ...         _ = model(torch.zeros(5, 3, 2, 2))
        >>> passes.forward
        3
    """
    _paused[0] += 1
    try:
        yield
    finally:
        _paused[0] -= 1


@contextlib.contextmanager
def count_passes(model: nn.Module) -> Iterator[PassCount]:
    """Count ``model``'s forward and backward passes inside the block.

    See the module docstring for what is counted; the hooks are removed on exit. The model may
    return logits as a tensor, a tuple or a dict / ``ModelOutput`` (`ucag._inputs.logits_of`).
    Forward passes of ``model`` made through a wrapper (``LogitsOnly(model)``, grad-cam's
    objects) are counted; backward passes are counted when a gradient reaches the logits, so
    a backward stopped early (UCAG's truncated backward) still counts once per row.

    Args:
        model: The model whose passes are counted.

    Returns:
        A context manager that yields the [PassCount][ucag.eval.compute.PassCount], filled in
            as the block runs.

    Raises:
        TypeError: ``model`` is not a `torch.nn.Module`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.eval.compute import count_passes
        >>> model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> with count_passes(model) as passes:
        ...     model(torch.zeros(4, 3, 8, 8)).sum().backward()
        >>> passes.forward, passes.backward, passes.calls, passes.megapixels
        (4, 4, 1, 0.000256)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    count = PassCount()

    def count_backward(grad: torch.Tensor) -> None:
        if _paused[0]:
            return
        count.backward += int(grad.shape[0]) if grad.dim() else 1

    def count_forward(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if _paused[0]:
            return
        try:
            logits = logits_of(output)
        except (TypeError, ValueError):
            logits = None
        shape = _input_pixels(args, kwargs)
        rows = int(logits.shape[0]) if logits is not None and logits.dim() else (shape[0] if shape else 1)
        count.forward += rows
        count.calls += 1
        if shape is not None:
            count.pixels += rows * shape[1]
        if logits is not None and logits.requires_grad:
            logits.register_hook(count_backward)

    handle = model.register_forward_hook(count_forward, with_kwargs=True)
    try:
        yield count
    finally:
        handle.remove()


__all__ = ["PassCount", "count_passes", "uncounted"]
