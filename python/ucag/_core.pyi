"""Type stubs for the portable Rust extension ``ucag._core`` (see src/python.rs).

Every function raises ValueError/TypeError (bad arguments) or MemoryError (a result this
machine cannot hold) whose message starts with the argument's name; a bug inside raises
RuntimeError("ucag internal error: ... (please report)"), never a BaseException."""

from collections.abc import Sequence
from typing import Literal, Self, TypeVar, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "Grid",
    "unfold",
    "fold",
    "confidence",
    "check_images",
    "check_fold_inputs",
    "confidence_targets",
    "__version__",
]

__version__: str

_Size = int | tuple[int, int] | Sequence[int]
_Weighting = Literal["exp", "prob", "uniform"]
_Targets = int | Sequence[int] | npt.NDArray[np.integer]

@final
class Grid:
    """Geometry of the spatial unfoldment (docs/algorithm.md section 1).

    A `units` x `units` grid of overlapping patches over an image of `image_size` pixels,
    each resized to `scaled_size`.

    Args:
        image_size: (H, W) of the images, an int (square) or an (h, w) pair; H * W at most
            2**63 - 1 pixels.
        units: Patches per axis, 1 <= `units` <= min(1024, H, W) (an axis of S pixels has at
            most S distinct patch positions); `units=1` needs a patch equal to the image.
        patch_size: (h, w) of a patch, an int or a pair, within the image; None for
            round_half_up(124/224 * side).
        scale: The upsampling factor: `scaled_size` defaults to round_half_up(scale * patch).
        scaled_size: The size every patch is resized to (an int or an (h, w) pair) instead of
            `scale`. Scaled sides are at most 32768 px (so `scale` < 32768.5 / max(h, w)).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: Invalid geometry; the message starts with the argument's name and says
            the limit.

    Examples:
        >>> import ucag
        >>> grid = ucag.Grid(224)  # the paper's grid: 6 x 6 patches of 124/224 of the side
        >>> grid.patch_size, grid.scaled_size, grid.num_patches
        ((124, 124), (322, 322), 36)
        >>> grid.offsets_y
        (0, 20, 40, 60, 80, 100)
        >>> ucag.Grid((8, 8), units=2, patch_size=6, scale=2.0).coverage().tolist()[0]
        [1, 1, 2, 2, 2, 2, 1, 1]
    """

    def __new__(
        cls,
        image_size: _Size,
        units: int = 6,
        patch_size: _Size | None = None,
        scale: float = 2.6,
        scaled_size: _Size | None = None,
    ) -> Self: ...
    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images this grid unfolds."""
    @property
    def units(self) -> int:
        """Patches per axis (n); the grid has n * n patches."""
    @property
    def patch_size(self) -> tuple[int, int]:
        """(h, w) of a patch in image pixels."""
    @property
    def scaled_size(self) -> tuple[int, int]:
        """(S_h, S_w) every patch is resized to before attribution."""
    @property
    def offsets_y(self) -> tuple[int, ...]:
        """Row offset of each patch row, top to bottom."""
    @property
    def offsets_x(self) -> tuple[int, ...]:
        """Column offset of each patch column, left to right."""
    @property
    def num_patches(self) -> int:
        """N = units * units."""
    def coverage(self) -> npt.NDArray[np.int32]:
        """The duplication matrix D: how many patches contain each pixel.

        Returns:
            D as an int32 numpy array (H, W).

        Raises:
            MemoryError: D cannot be allocated; the message names `image_size`.
            ValueError: D would take more than 2**63 - 1 bytes.
        """
    def fold_weights(
        self, window: Literal["box", "linear", "cosine"] = "box"
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The fold's window (docs/algorithm.md section 4.1) as float64 arrays.

        Patch (i, j) weighs its pixel (r, c) by rows[i, r] * columns[j, c]; the fold divides
        pixel (y, x) by row_sums[y] * column_sums[x]. "box" (the paper's fold) gives ones and
        the coverage counts.

        Args:
            window: "box", "linear" or "cosine".

        Returns:
            The row profiles (units, h) and column profiles (units, w) of the patch
                positions, and the sums of the placed profiles (H,) and (W,), as the tuple
                `(rows, columns, row_sums, column_sums)`.

        Raises:
            ValueError: `window` is not "box", "linear" or "cosine".
        """
    def __getnewargs__(self) -> tuple[tuple[int, int], int, tuple[int, int], float, tuple[int, int]]:
        """Pickles as the explicit patch and scaled sizes, which rebuild the same grid."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __repr__(self) -> str: ...

_Float = TypeVar("_Float", npt.NDArray[np.float32], npt.NDArray[np.float64])

def unfold(images: _Float, grid: Grid) -> _Float:
    """Patches of every image, bicubically resized to the grid's scaled size
    (docs/algorithm.md section 1): (B, C, H, W) -> (B*N, C, S_h, S_w), same dtype (numpy
    only; torch tensors go through ucag.kernels)."""

# (type: ignore: mypy instantiates _Float with different dtypes in the overloads it
# compares, a false positive)
@overload
def confidence(  # type: ignore[overload-overlap]
    logits: _Float, targets: _Targets, mode: _Weighting = "exp", *, return_probabilities: Literal[False] = False
) -> _Float:
    """Per-patch weights (docs/algorithm.md section 3) from (rows, K) logits: the softmax
    probability p of each row's target class mapped by ``mode`` ("exp" -> exp(p), "prob"
    -> p, "uniform" -> 1), (rows,) in the logits' dtype; with ``return_probabilities``,
    (probabilities, weights) from one softmax."""

@overload
def confidence(  # type: ignore[overload-overlap]
    logits: _Float, targets: _Targets, mode: _Weighting = "exp", *, return_probabilities: Literal[True]
) -> tuple[_Float, _Float]: ...
@overload
def confidence(
    logits: _Float, targets: _Targets, mode: _Weighting = "exp", *, return_probabilities: bool
) -> _Float | tuple[_Float, _Float]: ...
def fold(
    maps: _Float, weights: npt.NDArray[np.floating], grid: Grid, window: Literal["box", "linear", "cosine"] = "box"
) -> _Float:
    """Conquer (docs/algorithm.md section 4): (B*N, [1,] h', w') partial maps and (B*N,)
    weights -> (B, H, W) raw UCAG maps in the maps' dtype; ``window`` "box" is the paper's
    fold, "linear" and "cosine" the tapered ones (section 4.1)."""

def check_images(shape: Sequence[int], grid: Grid) -> int:
    """The shape checks of ``unfold`` for a (B, C, H, W) batch shape; returns B."""

def check_fold_inputs(maps_shape: Sequence[int], weights_shape: Sequence[int], grid: Grid) -> tuple[int, int, int]:
    """The shape checks of ``fold``; returns (B, h', w')."""

def confidence_targets(logits_shape: Sequence[int], targets: _Targets, mode: str) -> list[int]:
    """The checks of ``confidence`` on the logits' shape, the targets and the mode; returns
    the targets as a list of ints."""
