"""What every picture shares, for [ucag.viz][ucag.viz] and the evaluation toolkit's plots
([ucag.eval.plots][ucag.eval.plots], [ucag.eval.sanity][ucag.eval.sanity]): a map checked
and read as an array, the axes a caller passes, and matplotlib's pyplot, an optional
dependency."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .extras import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: One saliency map (H, W) or a batch (B, H, W).
MapLike = torch.Tensor | np.ndarray


def pyplot() -> ModuleType:
    """``matplotlib.pyplot``, imported on first use.

    Returns:
        The ``matplotlib.pyplot`` module.

    Raises:
        ImportError: matplotlib is not installed; the message names the ``examples`` extra.
    """
    return require("matplotlib.pyplot", "examples", "ucag.viz")


def map_array(value: MapLike, argument: str) -> np.ndarray:
    """A map as a finite float64 numpy array, any number of dimensions.

    Args:
        value: A torch tensor (any device; not a meta tensor) or a numpy array of real
            numbers (bool, int, unsigned or float).
        argument: The argument's name, which starts every error message.

    Returns:
        A float64 copy of the values, detached and on the CPU.

    Raises:
        TypeError: ``value`` is neither a tensor nor an array, or holds no real numbers.
        ValueError: ``value`` is a meta tensor, empty, or contains NaN or Inf.

    Examples:
        >>> import torch
        >>> array = map_array(torch.ones(2, 3, dtype=torch.float16), "saliency")
        >>> array.dtype, array.shape
        (dtype('float64'), (2, 3))
    """
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            raise ValueError(f"{argument}: a meta tensor has no values to draw")
        tensor = value.detach().cpu()
        array = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    elif isinstance(value, np.ndarray):
        array = value
    else:
        raise TypeError(f"{argument}: expected a numpy array or torch tensor, got {type(value).__name__}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument}: expected real numbers, got {array.dtype}")
    array = array.astype(np.float64)
    if array.size == 0:
        raise ValueError(f"{argument}: the map is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        raise ValueError(f"{argument}: contains NaN or Inf values")
    return array


def given_axes(axes: Any, count: int, argument: str) -> list[Axes] | None:
    """The caller's axes as a flat list of ``count`` axes.

    Args:
        axes: None, one matplotlib ``Axes``, or any (nested) sequence or array of them.
        count: How many axes the plot needs.
        argument: The argument's name, which starts every error message.

    Returns:
        The axes, flattened in row-major order; None when ``axes`` is None.

    Raises:
        TypeError: An item is not a matplotlib ``Axes``.
        ValueError: There are not exactly ``count`` axes.
    """
    if axes is None:
        return None
    from matplotlib.axes import Axes as AxesType

    flat = [axes] if isinstance(axes, AxesType) else list(np.asarray(axes, dtype=object).reshape(-1))
    if not all(isinstance(a, AxesType) for a in flat):
        raise TypeError(f"{argument}: expected matplotlib Axes")
    if len(flat) != count:
        raise ValueError(f"{argument}: this plot needs {count} axes, got {len(flat)}")
    return flat
