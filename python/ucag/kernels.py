"""The public kernels [unfold][ucag.kernels.unfold], [confidence][ucag.kernels.confidence]
and [fold][ucag.kernels.fold] (docs/algorithm.md sections 1, 3 and 4): one place that
checks the arguments every path shares and sends each call where its data is.

- numpy arrays, and CPU float32/float64 tensors as zero-copy numpy views (the output is
  wrapped back without a copy) -> the portable core ``ucag._core`` (ndarray + rayon, GIL
  released). On the CPU it is also the faster path where the tch module loads: 2-4x the
  tch kernels' speed for fold and unfold (``benchmarks/kernels.py``);
- other tensors on cpu/cuda (CUDA, CPU half precision) when the tch module matches the
  installed torch -> ``ucag._tch`` (libtorch on the tensor's device);
- every other tensor -> torch operations on its device ([ucag.torch_ops][ucag.torch_ops]).

``UCAG_KERNELS=tch`` sends every cpu/cuda tensor to the tch module; ``portable`` never
loads it. Which applies is [ucag.show_config][ucag.runtime.show_config]'s business
([ucag.runtime][ucag.runtime]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt
import torch

from . import _core, runtime, torch_ops
from ._core import Grid
from .options import FoldWindow, Weighting, check_choice, choices

#: How the fold weighs each patch's pixels (docs/algorithm.md §4.1): "box" is the paper's
#: fold (weight 1, divided by the coverage D); "linear" and "cosine" taper the patch sides
#: inside the image and divide by the sum of the windows, which removes the seams.
FOLD_WINDOWS: tuple[FoldWindow, ...] = choices(FoldWindow)  # type: ignore[assignment]
Array = TypeVar("Array", torch.Tensor, npt.NDArray[np.float32], npt.NDArray[np.float64])
Targets = torch.Tensor | Sequence[int] | npt.NDArray[np.integer]


def tensor_path(tensor: torch.Tensor) -> runtime.KernelPath:
    """The kernels a call on ``tensor`` runs ([kernel_path][ucag.runtime.kernel_path]).

    Args:
        tensor: The tensor the call takes (its device type and dtype decide).

    Returns:
        ``"tch"``, ``"portable"`` or ``"torch ops"``.
    """
    return runtime.kernel_path(tensor.device.type, tensor.dtype)


def _check_grid(grid: object) -> Grid:
    if not isinstance(grid, Grid):
        raise TypeError(f"grid: must be a ucag.Grid, got {type(grid).__name__}")
    return grid


def _check_tensor(argument: str, tensor: torch.Tensor) -> None:
    if tensor.device.type == "meta":
        raise ValueError(f"{argument}: is on a 'meta' device (no values); ucag needs tensors with data")
    if tensor.layout != torch.strided:
        raise TypeError(f"{argument}: must be a dense tensor, got layout {tensor.layout}; call .to_dense() first")
    if not tensor.is_floating_point():
        raise TypeError(
            f"{argument}: must be a floating-point tensor (float16/bfloat16/float32/float64), got {tensor.dtype}"
        )


def _check_finite(argument: str, tensor: torch.Tensor) -> None:
    # min and max propagate NaN and reach +-Inf: one pass, one host read.
    extremes = torch.stack(torch.aminmax(tensor.detach())).double().cpu().tolist()
    if not all(math.isfinite(v) for v in extremes):
        raise ValueError(f"{argument}: contains NaN or Inf values")


def _check_same_device(argument: str, tensor: torch.Tensor, reference: str, device: torch.device) -> None:
    if tensor.device != device:
        raise ValueError(f"{argument}: is on {tensor.device} but {reference} is on {device}; move both to one device")


def _numpy_view(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's own memory as a numpy array (no copy for a plain CPU tensor)."""
    return tensor.detach().resolve_neg().numpy()


def _tch() -> ModuleType:
    """The tch module, where `tensor_path` chose it (it is loaded then)."""
    module = runtime.tch_module()
    if module is None:  # pragma: no cover - tensor_path returns "tch" only with the module
        raise RuntimeError("the tch module is not loaded")
    return module


def _geometry(grid: Grid) -> tuple:
    return grid.__getnewargs__()


def unfold(images: Array, grid: Grid) -> Array:
    """Patches of every image, bicubically resized to the grid's scaled size (docs/algorithm.md §1).

    Args:
        images: (B, C, H, W) floating torch tensor (any device, any strides) or numpy
            float32/float64 array, of the grid's image size.
        grid: The patch geometry.

    Returns:
        (B·N, C, S_h, S_w) patches of the same kind, dtype and device, without gradient;
            row b·N + p is patch p (row-major) of image b.

    Raises:
        TypeError: ``grid`` is not a [Grid][ucag.Grid], or ``images`` is not a dense
            floating-point tensor or float32/float64 array.
        ValueError: ``images`` has the wrong shape for the grid, contains NaN or Inf, or is
            a meta tensor. Every message starts with the argument's name.

    Examples:
        >>> import torch
        >>> from ucag import Grid
        >>> grid = Grid((8, 8), units=2, patch_size=6, scale=2.0)
        >>> unfold(torch.rand(3, 3, 8, 8), grid).shape
        torch.Size([12, 3, 12, 12])
    """
    grid = _check_grid(grid)
    if not isinstance(images, torch.Tensor):
        return _core.unfold(images, grid)
    _check_tensor("images", images)
    path = tensor_path(images)
    if path == "tch":
        patches: torch.Tensor = _tch().unfold(images, _geometry(grid))
        return patches
    if path == "portable":
        return torch.from_numpy(_core.unfold(_numpy_view(images), grid))
    _core.check_images(list(images.shape), grid)
    _check_finite("images", images)
    return torch_ops.unfold(images, grid)


def _check_target_tensor(targets: torch.Tensor, device: torch.device) -> None:
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"targets: must hold integer class indices, got {targets.dtype}")
    _check_same_device("targets", targets, "logits", device)
    if targets.dim() != 1:
        raise ValueError(f"targets: must be 1-D (rows,), got shape {list(targets.shape)}")


# mypy reports the Literal overloads as overlapping the bool one with incompatible returns
# only because it instantiates the TypeVar with different numpy dtypes in each (false positive).
@overload
def confidence(  # type: ignore[overload-overlap]
    logits: Array, targets: Targets, mode: Weighting = "exp", *, return_probabilities: Literal[False] = False
) -> Array: ...
@overload
def confidence(  # type: ignore[overload-overlap]
    logits: Array, targets: Targets, mode: Weighting = "exp", *, return_probabilities: Literal[True]
) -> tuple[Array, Array]: ...
@overload
def confidence(
    logits: Array, targets: Targets, mode: Weighting = "exp", *, return_probabilities: bool
) -> Array | tuple[Array, Array]: ...
def confidence(
    logits: Array, targets: Targets, mode: Weighting = "exp", *, return_probabilities: bool = False
) -> Array | tuple[Array, Array]:
    """Per-patch weights from logits (docs/algorithm.md §3).

    The softmax probability p of each row's target class, mapped by ``mode``: "exp" ->
    exp(p) (the paper), "prob" -> p, "uniform" -> 1.

    Args:
        logits: (rows, K) floating torch tensor or numpy float array.
        targets: One class per row: a sequence of ints, or an integer tensor on the logits'
            device.
        mode: How a probability becomes a weight: ``"exp"``, ``"prob"`` or ``"uniform"``.
        return_probabilities: Also return the probabilities.

    Returns:
        (rows,) weights in the logits' kind, dtype and device; with
            ``return_probabilities=True``, ``(probabilities, weights)`` from one softmax, equal
            bit for bit to what two calls with "prob" and ``mode`` return.

    Raises:
        TypeError: ``logits`` is not a dense floating-point tensor or array, or a target
            tensor does not hold integers.
        ValueError: A bad shape, a target count other than one per row, a class out of
            range, an unknown ``mode``, NaN or Inf logits, or tensors on different devices.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
        >>> [round(w, 4) for w in confidence(logits, [0, 1]).tolist()]  # exp(p)
        [2.4128, 1.6487]
        >>> probabilities, weights = confidence(logits, [0, 1], "uniform", return_probabilities=True)
        >>> [round(p, 4) for p in probabilities.tolist()], weights.tolist()
        ([0.8808, 0.5], [1.0, 1.0])
    """
    if not isinstance(logits, torch.Tensor):
        listed = targets.tolist() if isinstance(targets, torch.Tensor) else targets
        return _core.confidence(logits, listed, mode, return_probabilities=return_probabilities)
    _check_tensor("logits", logits)
    shape = list(logits.shape)
    if isinstance(targets, torch.Tensor):
        _check_target_tensor(targets, logits.device)
    path = tensor_path(logits)
    if path == "tch":
        if not isinstance(targets, torch.Tensor):  # ints, one per row, in range: checked by the core
            targets = torch.tensor(_core.confidence_targets(shape, targets, mode), device=logits.device)
        weighted: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = _tch().confidence(
            logits, targets, mode, return_probabilities=return_probabilities
        )
        return weighted
    host: Sequence[int] | npt.NDArray[np.integer] = targets.tolist() if isinstance(targets, torch.Tensor) else targets
    if path == "portable":  # the core checks the targets
        result = _core.confidence(_numpy_view(logits), host, mode, return_probabilities=return_probabilities)
        if isinstance(result, tuple):
            return torch.from_numpy(result[0]), torch.from_numpy(result[1])
        return torch.from_numpy(result)
    # Torch ops read the targets on the host, as one checked list.
    host = _core.confidence_targets(shape, host, mode)
    _check_finite("logits", logits)
    # a target tensor is already on the device: no copy back from the host list
    on_device = (
        targets.long()
        if isinstance(targets, torch.Tensor)
        else torch.tensor(host, dtype=torch.int64, device=logits.device)
    )
    return torch_ops.confidence(logits, on_device, mode, return_probabilities=return_probabilities)


def check_fold_window(window: object, argument: str = "window") -> FoldWindow:
    """``window`` if it names a fold window (`FOLD_WINDOWS`), else a ValueError naming ``argument``.

    Args:
        window: The value to check.
        argument: The argument's name, which starts the error message.

    Returns:
        ``window``, unchanged.

    Raises:
        ValueError: ``window`` is not ``"box"``, ``"linear"`` or ``"cosine"``.
    """
    check_choice(argument, window, FoldWindow, " ('box' is the paper's fold)")
    return window  # type: ignore[return-value]


def fold(maps: Array, weights: Array, grid: Grid, window: FoldWindow = "box") -> Array:
    """Conquer: weighted partial maps -> one raw map per image (docs/algorithm.md §4).

    Resize each partial map bilinearly to the patch size, weight it, add it at its patch's
    place and divide by the coverage D ("box", the paper's fold) — or, with a tapered
    ``window`` ("linear", "cosine"), weigh each patch's pixels by its window and divide by
    the sum of the windows (§4.1; [Grid.fold_weights][ucag.Grid.fold_weights]).

    Args:
        maps: (B·N, h', w') or (B·N, 1, h', w') partial maps at any resolution.
        weights: (B·N,) patch weights. Both torch tensors on one device, or both numpy
            arrays.
        grid: The patch geometry the maps were unfolded with.
        window: The fold window: ``"box"``, ``"linear"`` or ``"cosine"``.

    Returns:
        The raw (signed, unnormalised) UCAG maps (B, H, W) in the maps' kind, dtype and
            device.

    Raises:
        TypeError: ``grid`` is not a [Grid][ucag.Grid], ``maps`` and ``weights`` are not of
            one kind, or not dense floating-point data.
        ValueError: Bad shapes (a row count that is not a multiple of N, weights that do not
            match), an unknown ``window``, NaN or Inf values, or tensors on different devices.

    Examples:
        >>> import torch
        >>> from ucag import Grid
        >>> grid = Grid((8, 8), units=2, patch_size=6, scale=2.0)  # 4 patches, offsets 0 and 2
        >>> raw = fold(torch.ones(4, 3, 3), torch.tensor([1.0, 2.0, 3.0, 4.0]), grid)
        >>> raw.shape
        torch.Size([1, 8, 8])
        >>> raw[0, [0, 0, 7, 7], [0, 7, 0, 7]].tolist()  # each corner lies in one patch
        [1.0, 2.0, 3.0, 4.0]
        >>> raw[0, 4, 4].item()  # the centre lies in all four: their mean
        2.5
    """
    grid = _check_grid(grid)
    window = check_fold_window(window)
    if not isinstance(maps, torch.Tensor):
        return _core.fold(maps, weights, grid, window)
    if not isinstance(weights, torch.Tensor):
        raise TypeError("weights: must be a torch.Tensor because maps is one")
    _check_tensor("maps", maps)
    _check_tensor("weights", weights)
    _check_same_device("weights", weights, "maps", maps.device)
    path = tensor_path(maps)
    if path == "tch":
        raw: torch.Tensor = _tch().fold(maps, weights, _geometry(grid), window)
        return raw
    if path == "portable":
        if weights.dtype not in runtime.PORTABLE_DTYPES:
            weights = weights.to(maps.dtype)
        return torch.from_numpy(_core.fold(_numpy_view(maps), _numpy_view(weights), grid, window))
    _core.check_fold_inputs(list(maps.shape), list(weights.shape), grid)
    _check_finite("weights", weights)
    resized = torch_ops.resize_maps(maps, grid)
    # Checked after resizing, as the other paths do: the resized maps hold every value the
    # fold reads (a NaN that bilinear down-sampling skips cannot reach the result).
    _check_finite("maps", resized)
    return torch_ops.fold(resized, maps.dtype, weights, grid, window)
