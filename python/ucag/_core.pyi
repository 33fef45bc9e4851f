"""Type stubs for the portable Rust extension ``ucag._core`` (see src/python.rs)."""

from typing import Literal, Sequence, TypeVar

import numpy as np
import numpy.typing as npt

__version__: str

_Size = int | tuple[int, int] | Sequence[int]

class Grid:
    """Geometry of the spatial unfoldment (SPEC section 1)."""

    def __init__(
        self,
        image_size: _Size,
        units: int = 6,
        patch_size: _Size | None = None,
        scale: float = 2.6,
        scaled_size: _Size | None = None,
    ) -> None: ...
    @property
    def image_size(self) -> tuple[int, int]: ...
    @property
    def units(self) -> int: ...
    @property
    def patch_size(self) -> tuple[int, int]: ...
    @property
    def scaled_size(self) -> tuple[int, int]: ...
    @property
    def offsets_y(self) -> tuple[int, ...]: ...
    @property
    def offsets_x(self) -> tuple[int, ...]: ...
    @property
    def num_patches(self) -> int: ...
    def coverage(self) -> npt.NDArray[np.int32]: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

_Float = TypeVar("_Float", npt.NDArray[np.float32], npt.NDArray[np.float64])

def unfold(images: _Float, grid: Grid) -> _Float:
    """(B, C, H, W) -> (B*N, C, S_h, S_w) bicubic patches, same dtype (numpy only; torch
    tensors go through ucag.kernels)."""

def confidence(
    logits: _Float,
    targets: Sequence[int] | npt.NDArray[np.integer],
    mode: Literal["exp", "prob", "uniform"] = "exp",
) -> _Float: ...
def fold(maps: _Float, weights: npt.NDArray[np.floating], grid: Grid) -> _Float:
    """(B*N, [1,] h', w') partial maps and (B*N,) weights -> (B, H, W) raw UCAG maps."""

def check_images(shape: Sequence[int], grid: Grid) -> int: ...
def check_fold_inputs(maps_shape: Sequence[int], weights_shape: Sequence[int], grid: Grid) -> tuple[int, int, int]: ...
def confidence_targets(logits_shape: Sequence[int], targets: int | Sequence[int] | npt.NDArray[np.integer], mode: str) -> list[int]: ...
