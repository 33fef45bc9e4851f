"""Type stubs for the Rust extension ``ucag._core`` (see src/python.rs)."""

from typing import Literal, Sequence, TypeVar, overload

import numpy as np
import numpy.typing as npt
import torch

__version__: str

_Array = TypeVar("_Array", torch.Tensor, npt.NDArray[np.float32], npt.NDArray[np.float64])
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

def unfold(images: _Array, grid: Grid) -> _Array:
    """(B, C, H, W) -> (B*N, C, S_h, S_w) bicubic patches, same kind, dtype and device."""

@overload
def confidence(
    logits: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    mode: Literal["exp", "prob", "uniform"] = "exp",
) -> torch.Tensor: ...
@overload
def confidence(
    logits: npt.NDArray[np.floating],
    targets: Sequence[int] | npt.NDArray[np.integer],
    mode: Literal["exp", "prob", "uniform"] = "exp",
) -> npt.NDArray[np.floating]: ...
def fold(maps: _Array, weights: _Array, grid: Grid) -> _Array:
    """(B*N, [1,] h', w') partial maps and (B*N,) weights -> (B, H, W) raw UCAG maps."""
