"""The arithmetic and memory layout of the model's forwards and backwards (docs/algorithm.md §10).

[compute_plan][ucag.precision.compute_plan] turns the ``precision`` and ``channels_last``
options of [UCAG][ucag.explainer.UCAG], the metrics, ``evaluate``, ``tune`` and the CLI
into a [ComputePlan][ucag.precision.ComputePlan]: the model's calls run under
``torch.autocast`` for the model's device, the inputs are handed over channels-last, and the
outputs of the given layers (a CAM's target layers, which pytorch-grad-cam reads as numpy)
are cast back to float32. The model itself is never changed: no parameter is converted to
another dtype or memory format (a channels-last input is enough for the convolutions to run
channels-last, benchmarks/throughput.py). Partial maps, confidences, the fold and
post-processing stay float32.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    >>> plan = compute_plan(model, "bf16")
    >>> plan
    ComputePlan(precision='bf16', channels_last=True, device_type='cpu')
    >>> with plan.model_calls(layers=[model[0]]):
    ...     logits = model(plan.layout(torch.rand(2, 3, 8, 8)))
    >>> logits.dtype
    torch.bfloat16
    >>> compute_plan(model, "fp16")
    Traceback (most recent call last):
        ...
    ValueError: precision: 'fp16' on the CPU is slower than float32 (0.38x on EfficientNet-Lite0, 0.07x on ResNet-50: the CPU has no float16 arithmetic, autocast emulates it); use 'bf16', or 'fp16' on a CUDA device
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._model_state import model_device
from .options import ChannelsLast, Precision, check_choice

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: object) -> None:
    """Check a ``precision`` option's value (before any model is looked at).

    Args:
        precision: The value given.

    Raises:
        ValueError: It is not ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Examples:
        >>> check_precision("bf16")
        >>> check_precision("float16")
        Traceback (most recent call last):
            ...
        ValueError: precision: expected 'fp32', 'bf16' or 'fp16', got 'float16'
    """
    check_choice("precision", precision, Precision)


def check_channels_last(channels_last: object) -> None:
    """Check a ``channels_last`` option's value.

    Args:
        channels_last: The value given.

    Raises:
        TypeError: It is not True, False or ``"auto"``.

    Examples:
        >>> check_channels_last("auto")
        >>> check_channels_last("yes")
        Traceback (most recent call last):
            ...
        TypeError: channels_last: expected True, False or 'auto', got 'yes'
    """
    if not (isinstance(channels_last, bool) or channels_last == "auto"):
        raise TypeError(f"channels_last: expected True, False or 'auto', got {channels_last!r}")


def has_convolutions(model: nn.Module) -> bool:
    """Whether the model has a 2-D convolution (what a channels-last layout speeds up).

    Args:
        model: The model.

    Returns:
        True when one of its modules is an ``nn.Conv2d``.

    Examples:
        >>> from torch import nn
        >>> has_convolutions(nn.Sequential(nn.Conv2d(3, 4, 3))), has_convolutions(nn.Linear(3, 4))
        (True, False)
    """
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass(frozen=True)
class ComputePlan:
    """How a model's forwards and backwards run: the autocast dtype and the inputs' layout.

    Made by [compute_plan][ucag.precision.compute_plan], which checks the options against the
    model's device.

    Attributes:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast to that dtype).
        channels_last: Whether inputs are handed to the model channels-last.
        device_type: The device type autocast runs for (the model's).
    """

    precision: Precision = "fp32"
    channels_last: bool = False
    device_type: str = "cpu"

    @property
    def lowered(self) -> bool:
        """Whether the model runs below float32."""
        return self.precision != "fp32"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast block of this plan's precision.

        Returns:
            ``torch.autocast`` for the model's device and the plan's dtype; for ``"fp32"`` a
                block that changes nothing (an autocast the caller opened stays in force).
        """
        if not self.lowered:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.precision])

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the layout the model is to see.

        Args:
            x: A batch of inputs.

        Returns:
            ``x`` channels-last where the plan says so and ``x`` is 4-D (a copy unless it
                is already), else ``x`` itself.
        """
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def model_calls(self, layers: Sequence[nn.Module] = ()) -> Iterator[None]:
        """A block whose model calls run at this plan's precision.

        Under autocast, the floating outputs of ``layers`` are cast to float32 (by forward
        hooks that run before any other hook on them), so what a CAM reads at its target
        layers, its activations and their gradients, is float32. Hooks are removed on exit,
        also when the block raises.

        Args:
            layers: The layers whose outputs are read as float32 (a CAM's target layers).

        Yields:
            None; the block runs under the plan.
        """
        if not self.lowered:
            yield
            return
        handles = [layer.register_forward_hook(_float32_output, prepend=True) for layer in layers]
        try:
            with self.autocast():
                yield
        finally:
            for handle in handles:
                handle.remove()


def _float32_output(module: nn.Module, args: Any, output: Any) -> Any:
    """A forward hook's new output: floating tensors as float32 (tuples and lists walked)."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (tuple, list)):
        return type(output)(_float32_output(module, args, o) for o in output)
    return output


def compute_plan(model: nn.Module, precision: Precision = "fp32", channels_last: ChannelsLast = "auto") -> ComputePlan:
    """The [ComputePlan][ucag.precision.ComputePlan] of these options for the model on its device.

    ``channels_last="auto"`` means channels-last where the precision is lowered and the
    model has 2-D convolutions (docs/algorithm.md §10): it is then worth 1.3-1.4x over
    bf16 alone on the CPU (benchmarks/throughput.py), and the float32 default keeps its
    arithmetic.

    Args:
        model: The model (its parameters' device decides autocast's).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        channels_last: True, False or ``"auto"``.

    Returns:
        The checked plan.

    Raises:
        ValueError: An unknown precision; ``"fp16"`` on the CPU (slower than float32, see
            the message); ``"bf16"`` on a CUDA device without bfloat16; a lowered precision
            on a device autocast does not support.
        TypeError: ``channels_last`` is not True, False or ``"auto"``.

    Examples:
        >>> from torch import nn
        >>> compute_plan(nn.Linear(3, 2), "bf16")
        ComputePlan(precision='bf16', channels_last=False, device_type='cpu')
    """
    check_precision(precision)
    check_channels_last(channels_last)
    device = model_device(model).type
    if precision == "fp16" and device == "cpu":
        raise ValueError(
            "precision: 'fp16' on the CPU is slower than float32 (0.38x on EfficientNet-Lite0, 0.07x on ResNet-50: "
            "the CPU has no float16 arithmetic, autocast emulates it); use 'bf16', or 'fp16' on a CUDA device"
        )
    if precision != "fp32" and not torch.amp.is_autocast_available(device):
        raise ValueError(f"precision: torch has no autocast for {device} devices; use 'fp32' there")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision: this CUDA device has no bfloat16 arithmetic; use 'fp16' (or 'fp32')")
    if channels_last == "auto":
        channels_last = precision != "fp32" and has_convolutions(model)
    return ComputePlan(precision, bool(channels_last), device)
