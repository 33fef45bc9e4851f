"""What every picture shares, for :mod:`ucag.viz` and the evaluation toolkit's plots
(:mod:`ucag.eval.plots`, :mod:`ucag.eval.sanity`): a map checked and read as an array, the
axes a caller passes, and matplotlib's pyplot, an optional dependency."""

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
    """``matplotlib.pyplot``; an ImportError naming the examples extra without matplotlib."""
    return require("matplotlib.pyplot", "examples", "ucag.viz")


def map_array(value: MapLike, argument: str) -> np.ndarray:
    """A map as a finite float64 numpy array, any number of dimensions."""
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
    """The caller's axes as a flat list of ``count`` axes (None when none were given)."""
    if axes is None:
        return None
    from matplotlib.axes import Axes as AxesType

    flat = [axes] if isinstance(axes, AxesType) else list(np.asarray(axes, dtype=object).reshape(-1))
    if not all(isinstance(a, AxesType) for a in flat):
        raise TypeError(f"{argument}: expected matplotlib Axes")
    if len(flat) != count:
        raise ValueError(f"{argument}: this plot needs {count} axes, got {len(flat)}")
    return flat
