"""UCAG's grid settings, independent of the image size: [GridSpec][ucag.grid.GridSpec].

A [GridSpec][ucag.grid.GridSpec] says how to cut any image: ``units`` patches per axis, the
patch size (pixels, an (h, w) pair, a fraction of the image side, the whole image, or the
paper's default of 124/224 of the side) and the upsampling ``scale`` (or a fixed
``scaled_size``). [GridSpec.grid][ucag.grid.GridSpec.grid] gives the Rust
[Grid][ucag.Grid] (offsets, scaled size, coverage) for one image size (docs/algorithm.md
§1). The explainer, the Upscale baseline and [tune][ucag.eval.tuning.tune] all describe
their grids this way.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ._core import Grid
from .checks import is_int, is_real, positive_int, positive_real, size_pair
from .options import DEFAULT_SCALE, DEFAULT_UNITS

#: A patch size: pixels (int: square, or an (h, w) pair), a fraction of the image side in
#: (0, 1] (rounded half up per side), "image" (the whole image), or None (124/224 of the side).
PatchSize: TypeAlias = int | tuple[int, int] | float | Literal["image"] | None


def round_half_up(value: float) -> int:
    """``floor(value + 0.5)``: 0.5 rounds up, unlike Python's ``round`` (to even).

    Args:
        value: A finite number.

    Returns:
        The nearest int, halves rounded up.

    Examples:
        >>> round_half_up(2.5), round(2.5)
        (3, 2)
    """
    return math.floor(value + 0.5)


def _patch_size(value: object) -> PatchSize:
    """``value`` validated and normalised (an int becomes an (h, w) pair)."""
    if value is None or value == "image":
        return value
    if is_int(value):
        value = (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        h, w = int(value[0]), int(value[1])
        if h < 1 or w < 1:
            raise ValueError(f"patch_size: must be positive, got ({h}, {w})")
        return (h, w)
    if is_real(value):
        fraction = float(value)
        if not (0.0 < fraction <= 1.0):
            raise ValueError(
                f"patch_size: a float is a fraction of the image side and must lie in (0, 1], got {value!r}"
            )
        return fraction
    raise TypeError(
        f"patch_size: must be an int or an (h, w) pair of ints (pixels), a float in (0, 1] (a fraction of the image side), 'image' or None, got {value!r}"
    )


def _scaled_size(value: object) -> tuple[int, int] | None:
    """``scaled_size`` validated: None, or a positive int or (h, w) pair of them."""
    return None if value is None else size_pair("scaled_size", value)


@dataclass(frozen=True)
class GridSpec:
    """How to cut an image of any size into UCAG's patches (docs/algorithm.md §1).

    Invalid settings raise here, naming the argument; what depends on the image (a patch
    larger than the image, ``units=1`` with a patch smaller than it) raises in
    [grid][ucag.grid.GridSpec.grid]. The fields hold the normalised values (an int size
    becomes an (h, w) pair).

    Attributes:
        units: Patches per axis (n; n * n patches).
        patch_size: The patch size, a `PatchSize`: pixels (an int or an (h, w) pair), a
            fraction of the image side in (0, 1], ``"image"``, or None for the paper's 124/224
            of the image side.
        scale: The factor each patch is upsampled by before attribution.
        scaled_size: When given (pixels, or an (h, w) pair), the size every patch is resized
            to instead (what a fixed-resolution model needs; ``scale`` is then unused).
        size_multiple: Without a ``scaled_size``, each side of the upsampled patches is
            rounded to the nearest multiple of it (at least one multiple), for models whose
            inputs must be multiples of their patch size
            ([model_size_multiple][ucag.models.model_size_multiple]).

    Raises:
        TypeError: A setting has the wrong type (``units`` not an int, ``patch_size`` none of
            the forms above, ...).
        ValueError: A setting is out of range (``units`` < 1, a fraction outside (0, 1], a
            ``scale`` that is not finite and > 0, ...).

    Examples:
        >>> spec = GridSpec()
        >>> spec.grid((224, 224))
        Grid(image_size=(224, 224), units=6, patch_size=(124, 124), scaled_size=(322, 322), num_patches=36)
        >>> GridSpec(units=3, patch_size=0.5).grid((100, 60)).patch_size
        (50, 30)
        >>> GridSpec(size_multiple=16).grid((224, 224)).scaled_size
        (320, 320)
    """

    units: int = DEFAULT_UNITS
    patch_size: PatchSize = None
    scale: float = DEFAULT_SCALE
    scaled_size: int | tuple[int, int] | None = None
    size_multiple: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", positive_int("units", self.units))
        object.__setattr__(self, "scale", positive_real("scale", self.scale))
        object.__setattr__(self, "size_multiple", positive_int("size_multiple", self.size_multiple))
        object.__setattr__(self, "patch_size", _patch_size(self.patch_size))
        object.__setattr__(self, "scaled_size", _scaled_size(self.scaled_size))

    def patch_pixels(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The patch (h, w) in pixels for images of ``size`` (H, W).

        Args:
            size: The images' (H, W).

        Returns:
            The (h, w) patch; None for the default, which the Rust grid computes exactly as
                ``round_half_up(124 * side / 224)``.
        """
        patch = self.patch_size
        if patch is None or isinstance(patch, tuple):
            return patch
        if patch == "image":
            return (int(size[0]), int(size[1]))
        assert isinstance(patch, float)
        return (max(1, round_half_up(patch * size[0])), max(1, round_half_up(patch * size[1])))

    def grid(self, size: tuple[int, int]) -> Grid:
        """The [Grid][ucag.Grid] for images of ``size`` (H, W) (cached).

        Args:
            size: The images' (H, W).

        Returns:
            The grid: offsets, patch and scaled sizes, coverage.

        Raises:
            ValueError: The settings do not fit images of this size (a patch larger than the
                image, ``units`` beyond the patch positions an axis has, ...); the message
                names the argument.
        """
        return _grid(self, (int(size[0]), int(size[1])))


@functools.lru_cache(maxsize=256)
def _grid(spec: GridSpec, size: tuple[int, int]) -> Grid:
    grid = Grid(
        size, units=spec.units, patch_size=spec.patch_pixels(size), scale=spec.scale, scaled_size=spec.scaled_size
    )
    m = spec.size_multiple
    if m == 1 or spec.scaled_size is not None:
        return grid
    rounded = tuple(max(m, round_half_up(side / m) * m) for side in grid.scaled_size)
    if rounded == tuple(grid.scaled_size):
        return grid
    return Grid(size, units=spec.units, patch_size=spec.patch_pixels(size), scale=spec.scale, scaled_size=rounded)
