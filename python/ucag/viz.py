"""Pictures of saliency maps: ``ucag.viz`` owns everything the package draws.

- [overlay][ucag.viz.overlay] — a heat map blended over a photo, returned as an RGB array;
- [show_signed][ucag.viz.show_signed] — a signed raw map in red (positive) / blue (negative), centred at 0;
- [compare][ucag.viz.compare] — one row per image, one column per method;
- [show_partials][ucag.viz.show_partials] — the n x n partial maps of one image next to their folded result;
- [map_grid][ucag.viz.map_grid] — rows of maps of one image (a method's maps under changing conditions).

Figures of evaluation results (deletion / insertion curves) are in [ucag.eval.plots][ucag.eval.plots].

Conventions shared by every function:

- Colours are RGB, always. (pytorch-grad-cam's ``show_cam_on_image`` blends in BGR unless
  told otherwise, which shows blue cats in notebooks.)
- An *image* is a torch tensor (3, H, W) or (1, 3, H, W), float (in [0, 1], or normalised:
  then pass ``mean=`` and ``std=``) or uint8; a numpy array (H, W, 3), uint8 or float in
  [0, 1]; or a PIL image. Non-square images are fine everywhere.
- A *map* is a numpy array or torch tensor (H, W) (or (1, H, W)). A map of another size
  than its image is resized to the image with bilinear interpolation (align_corners=False,
  like the fold's resize in docs/algorithm.md §4): it is assumed to cover the whole image, as it
  does when the photo was resized (not cropped) to the model's input, as
  [PreparedModel.preprocess][ucag.data.PreparedModel.preprocess] does.
- Every function except [overlay][ucag.viz.overlay] returns the matplotlib ``Figure``. Passing ``ax=``
  (or ``axes=``) draws into existing axes instead of making a new figure. New figures come
  from ``pyplot``, so they show inline in Jupyter and with ``plt.show()`` in scripts;
  assign the result (``fig = viz.compare(...)``) so that Jupyter does not show it twice.

matplotlib is imported when a function draws, never at import, and no backend is chosen
here: that is the caller's (or the notebook's) business.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard, Union, cast

import numpy as np
import torch
import torch.nn.functional as F

from .checks import is_int, positive_int, probability
from .display import figure_html, shown_once
from .explainer import Explanation
from .figures import MapLike, given_axes, map_array, pyplot
from .targets import describe

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colorbar import Colorbar
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage
    from PIL.Image import Image as PILImage

#: A photo: tensor (3, H, W) / (1, 3, H, W), array (H, W, 3) or PIL image.
ImageLike = Union[torch.Tensor, np.ndarray, "PILImage"]

__all__ = ["compare", "explanation_html", "map_grid", "overlay", "show_explanation", "show_partials", "show_signed"]

#: How far outside [0, 1] a float image may stray and still be taken as a [0, 1] image:
#: resampling (bicubic) overshoots a little, while a normalised image forgotten without
#: ``mean``/``std`` spans about [-2, 2.6] and must be refused, not silently clipped.
FLOAT_IMAGE_SLACK = 0.02

#: Diverging colormap of signed maps: red positive, white zero, blue negative.
SIGNED_CMAP = "bwr"

#: ITU-R BT.601 luma weights. Signed maps are drawn over a grey photo so that the photo's
#: own reds and blues cannot be read as signs.
_LUMA = np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------------------
# Input conversion
# ---------------------------------------------------------------------------------------


def _channel_constants(value: Any, argument: str) -> np.ndarray:
    """``mean`` / ``std``: one number or one per RGB channel."""
    try:
        constants = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{argument}: expected a number or 3 numbers, got {value!r}") from err
    if constants.size == 1:
        constants = np.repeat(constants, 3)
    if constants.size != 3 or not np.isfinite(constants).all():
        raise ValueError(f"{argument}: expected a number or 3 finite numbers (R, G, B), got {value!r}")
    return constants


def _is_pil_image(value: Any) -> TypeGuard[PILImage]:
    # If PIL was never imported, the value cannot be a PIL image: no import needed.
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def _image_rgb(
    image: ImageLike, mean: Any = None, std: Any = None, argument: str = "image"
) -> tuple[np.ndarray, np.dtype]:
    """An image as float64 (H, W, 3) RGB in [0, 1], and the dtype `overlay` returns."""
    if (mean is None) != (std is None):
        raise ValueError("mean, std: give both (for a normalised image) or neither")
    out_dtype: np.dtype[Any]
    if _is_pil_image(image):
        if mean is not None:
            raise ValueError(f"{argument}: a PIL image is not normalised; drop mean= and std=")
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0, np.dtype(np.uint8)
    if isinstance(image, torch.Tensor):
        if image.device.type == "meta":
            raise ValueError(f"{argument}: a meta tensor has no values to draw")
        tensor = image.detach().cpu()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 3 or tensor.shape[0] != 3:
            raise ValueError(f"{argument}: expected a tensor (3, H, W) or (1, 3, H, W), got shape {tuple(image.shape)}")
        if tensor.dtype == torch.uint8:
            pixels, out_dtype = tensor.permute(1, 2, 0).numpy(), np.dtype(np.uint8)
        elif tensor.is_floating_point():  # float16 / bfloat16 have no numpy twin: go through float32
            pixels, out_dtype = tensor.float().permute(1, 2, 0).numpy(), np.dtype(np.float32)
        else:
            raise TypeError(f"{argument}: expected uint8 or floating-point pixels, got {tensor.dtype}")
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            hint = " (channels first? use image.transpose(1, 2, 0))" if image.ndim == 3 and image.shape[0] == 3 else ""
            raise ValueError(f"{argument}: expected an (H, W, 3) RGB array, got shape {image.shape}{hint}")
        pixels = image
        out_dtype = image.dtype
    else:
        raise TypeError(
            f"{argument}: expected a torch tensor, a numpy array or a PIL image, got {type(image).__name__}"
        )

    if pixels.dtype == np.uint8:
        if mean is not None:
            raise ValueError(f"{argument}: a uint8 image is not normalised; drop mean= and std=")
        return pixels.astype(np.float64) / 255.0, np.dtype(np.uint8)
    if pixels.dtype.kind != "f":
        raise TypeError(f"{argument}: expected uint8 or floating-point pixels, got {pixels.dtype}")
    rgb = pixels.astype(np.float64)
    if not np.isfinite(rgb).all():
        raise ValueError(f"{argument}: contains NaN or Inf values")
    if mean is not None:
        std_values = _channel_constants(std, "std")
        if (std_values <= 0).any():
            raise ValueError(f"std: expected positive values, got {std!r}")
        rgb = rgb * std_values + _channel_constants(mean, "mean")
        # Undoing a normalisation of a resampled image may leave tiny excursions: clip them.
        return np.clip(rgb, 0.0, 1.0), out_dtype
    low, high = float(rgb.min()), float(rgb.max())
    if low < -FLOAT_IMAGE_SLACK or high > 1.0 + FLOAT_IMAGE_SLACK:
        hint = (
            "divide by 255 (or pass uint8)"
            if low >= 0 and high <= 255
            else "if it is normalised, pass mean= and std= (e.g. PreparedModel.mean, PreparedModel.std)"
        )
        raise ValueError(f"{argument}: float pixels span [{low:.3g}, {high:.3g}], expected [0, 1]: {hint}")
    return np.clip(rgb, 0.0, 1.0), out_dtype


def _map_2d(value: MapLike, argument: str) -> np.ndarray:
    array = map_array(value, argument)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{argument}: expected one map (H, W) or (1, H, W), got shape {array.shape}")
    return array


def _resize_map(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (align_corners=False, no antialias: docs/algorithm.md §4's resize)."""
    if array.shape == tuple(size):
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))[None, None]
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _unit_range(array: np.ndarray) -> np.ndarray:
    """The map itself when already in [0, 1] (so a weak CAM map stays weak), else min-max
    scaled to [0, 1]; a constant map outside [0, 1] becomes all zeros."""
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return array
    if high == low:
        return np.zeros_like(array)
    return (array - low) / (high - low)


def _colormap(cmap: str | Colormap) -> Colormap:
    import matplotlib

    if isinstance(cmap, matplotlib.colors.Colormap):
        return cmap
    if not isinstance(cmap, str):
        raise TypeError(f"cmap: expected a colormap name or Colormap, got {type(cmap).__name__}")
    try:
        return matplotlib.colormaps[cmap]
    except KeyError as err:
        raise ValueError(f"cmap: unknown colormap {cmap!r}") from err


def _grey(rgb: np.ndarray) -> np.ndarray:
    grey: np.ndarray = rgb @ _LUMA
    return grey


def _symmetric_limit(array: np.ndarray) -> float:
    """max |value|, for colour limits centred at zero. An all-zero map would give the
    degenerate range [0, 0]; use [-1, 1] so it is drawn white (zero) instead."""
    limit = float(np.abs(array).max())
    return limit if limit > 0.0 else 1.0


def _bare(ax: Axes) -> None:
    """No ticks or frame, but keep axis labels visible (``set_axis_off`` would hide them)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _image_batch(images: Any, argument: str = "images") -> list[Any]:
    """A batch of images as a list of single images (each still in its input type)."""
    if isinstance(images, torch.Tensor):
        if images.dim() == 4:
            return list(images)
        if images.dim() == 3:
            return [images]
        raise ValueError(f"{argument}: expected a tensor (B, 3, H, W) or (3, H, W), got shape {tuple(images.shape)}")
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        if images.ndim == 3:
            return [images]
        raise ValueError(f"{argument}: expected an array (B, H, W, 3) or (H, W, 3), got shape {images.shape}")
    if _is_pil_image(images):
        return [images]
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        if len(images) == 0:
            raise ValueError(f"{argument}: no images given")
        return list(images)
    raise TypeError(
        f"{argument}: expected a tensor, an array, a PIL image or a list of them, got {type(images).__name__}"
    )


def _map_batch(value: Any, count: int, argument: str) -> list[np.ndarray]:
    """One (H, W) map per image from a (B, H, W) array/tensor, or a list of (H, W) maps."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        maps = [_map_2d(m, f"{argument}[{k}]") for k, m in enumerate(value)]
    else:
        array = map_array(value, argument)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"{argument}: expected maps (B, H, W), got shape {array.shape}")
        maps = list(array)
    if len(maps) != count:
        raise ValueError(f"{argument}: {len(maps)} maps for {count} images")
    return maps


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------


def overlay(
    image: ImageLike,
    saliency: MapLike,
    cmap: str | Colormap = "jet",
    alpha: float = 0.5,
    *,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
) -> np.ndarray:
    """A saliency heat map blended over a photo: ``(1 - alpha) * image + alpha * cmap(saliency)``.

    Args:
        image: the photo (see the module docstring): a tensor (3, H, W) / (1, 3, H, W) in
            [0, 1] or normalised (then give ``mean`` and ``std``) or uint8; an (H, W, 3)
            array, uint8 or float in [0, 1]; or a PIL image.
        saliency: one map (H, W) or (1, H, W), numpy or torch. A map already in [0, 1] is
            coloured as is (so a weak map looks weak); any other map is min-max scaled to
            [0, 1] first (a constant one becomes 0). A map of another size than the image is
            then resized to it bilinearly.
        cmap: matplotlib colormap (name or object) of the heat map.
        alpha: weight of the heat map, in [0, 1]; 0 returns the photo unchanged.
        mean: the normalisation mean of a normalised float image (one number or one per
            RGB channel); the photo is ``image * std + mean`` clipped to [0, 1].
        std: the normalisation standard deviation, given with ``mean``.

    Returns:
        An (H, W, 3) RGB array (never BGR) at the image's size: uint8 for uint8 and PIL
            inputs, otherwise float in [0, 1] (the numpy input's float dtype, float32 for
            tensors). Show it with ``plt.imshow`` or save it with PIL as is.

    Raises:
        TypeError: an argument of the wrong type (the message names it).
        ValueError: an argument of the wrong shape or out of range, such as a float image
            outside [0, 1] without ``mean`` and ``std`` (the message names it).

    Examples:
        >>> import numpy as np
        >>> from ucag.viz import overlay
        >>> photo = np.zeros((4, 4, 3), dtype=np.uint8)
        >>> blended = overlay(photo, np.eye(4), alpha=0.5)
        >>> blended.shape, blended.dtype
        ((4, 4, 3), dtype('uint8'))
        >>> blended[0, 0].tolist(), blended[0, 1].tolist()  # jet: 1 is dark red, 0 dark blue
        ([64, 0, 0], [0, 0, 64])
    """
    rgb, out_dtype = _image_rgb(image, mean, std)
    alpha = probability("alpha", alpha)
    colormap = _colormap(cmap)
    # Scale before resizing: the range is the map's own, not that of its resampled values.
    heat_map = _resize_map(_unit_range(_map_2d(saliency, "saliency")), rgb.shape[:2])
    heat = colormap(heat_map)[..., :3]
    blended: np.ndarray = (1.0 - alpha) * rgb + alpha * heat
    if out_dtype == np.uint8:
        levels: np.ndarray = np.clip(np.rint(blended * 255.0), 0, 255)
        return levels.astype(np.uint8)
    clipped: np.ndarray = np.clip(blended, 0.0, 1.0)
    return clipped.astype(out_dtype)


def _draw_signed(ax: Axes, raw: np.ndarray, grey: np.ndarray | None, alpha: float, limit: float) -> AxesImage:
    """A signed map (over a grey photo when given) in SIGNED_CMAP with limits ±limit."""
    if grey is not None:
        ax.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
    return ax.imshow(
        raw,
        cmap=SIGNED_CMAP,
        vmin=-limit,
        vmax=limit,
        alpha=alpha if grey is not None else 1.0,
        interpolation="bilinear",
    )


def _signed_colorbar(
    fig: Figure, ax: Axes | list[Axes], limit: float, label: str | None = None, **kwargs: Any
) -> Colorbar:
    """A colorbar at full opacity (the map itself may be drawn translucent)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(-limit, limit), cmap=SIGNED_CMAP)
    return fig.colorbar(mappable, ax=ax, label=label, **kwargs)


def show_signed(
    raw: MapLike,
    image: ImageLike | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    alpha: float = 0.6,
    colorbar: bool = True,
) -> Figure:
    """A signed raw map (e.g. ``Explanation.raw[b]``) as in the paper's qualitative figures.

    Positive values are red, negative blue, zero white, on limits symmetric about zero:
    ``±max|raw|`` (an all-zero map is drawn on ±1, all white). With ``image`` the map is
    blended (``alpha``) over the photo in grey, and a map of another size is resized to the
    photo bilinearly.

    Args:
        raw: one map (H, W) or (1, H, W), numpy or torch.
        image: optional photo underneath (see [overlay][ucag.viz.overlay] for the accepted
            forms).
        ax: axes to draw into; default a new figure.
        title: axes title.
        mean: the normalisation mean of a normalised float ``image``.
        std: the normalisation standard deviation of a normalised float ``image``.
        alpha: opacity of the map over the photo (ignored without a photo).
        colorbar: draw a colorbar of the signed values.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: an argument of the wrong type (the message names it).
        ValueError: an argument of the wrong shape or out of range (the message names it).
    """
    signed = _map_2d(raw, "raw")
    alpha = probability("alpha", alpha)
    grey = None
    if image is not None:
        rgb, _ = _image_rgb(image, mean, std)
        grey = _grey(rgb)
        signed = _resize_map(signed, grey.shape)
    fig: Figure
    if ax is None:
        height, width = signed.shape
        fig, ax = pyplot().subplots(
            figsize=(4.0 + (0.8 if colorbar else 0.0), 4.0 * height / width), layout="constrained"
        )
    else:
        fig = cast("Figure", ax.figure)  # (a SubFigure when ax lies in one)
    limit = _symmetric_limit(signed)
    _draw_signed(ax, signed, grey, alpha, limit)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    if colorbar:
        _signed_colorbar(fig, ax, limit)
    return shown_once(fig)


def compare(
    images: Any,
    maps: Mapping[str, Any],
    titles: Sequence[str] | None = None,
    *,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    cmap: str | Colormap = "jet",
    alpha: float = 0.5,
    axes: Any = None,
    cell_inches: float = 2.5,
) -> Figure:
    """Several methods side by side: one row per image, one column per method.

    The first column shows the photo, each further one an [overlay][ucag.viz.overlay] of a
    method's map.

    Args:
        images: a tensor batch (B, 3, H, W) (in [0, 1], or normalised: give ``mean`` and
            ``std``), an array (B, H, W, 3), or a list of single images in any form
            [overlay][ucag.viz.overlay] takes (their sizes may differ). One image alone works
            too.
        maps: method name -> its maps, (B, H, W) numpy or torch, or a list of B (H, W)
            maps. Each map is scaled and resized to its image as [overlay][ucag.viz.overlay]
            does. Names head the columns.
        titles: one title per image (e.g. the class explained), left of its row.
        mean: the normalisation mean of normalised float images.
        std: the normalisation standard deviation of normalised float images.
        cmap: the heat map colours, as in [overlay][ucag.viz.overlay].
        alpha: the heat map opacity, as in [overlay][ucag.viz.overlay].
        axes: B x (1 + number of methods) axes to draw into (any shape, row-major);
            default a new figure.
        cell_inches: width of one column of a new figure, in inches.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: an argument of the wrong type, such as ``maps`` that is not a dict (the
            message names it).
        ValueError: an argument of the wrong shape or out of range, such as no methods or a
            number of maps or titles that is not the number of images (the message names it).
    """
    photos = _image_batch(images)
    count = len(photos)
    if not isinstance(maps, Mapping):
        raise TypeError(f"maps: expected a dict method name -> maps, got {type(maps).__name__}")
    if len(maps) == 0:
        raise ValueError("maps: give at least one method")
    method_maps = {str(name): _map_batch(value, count, f"maps[{name!r}]") for name, value in maps.items()}
    if titles is not None:
        if isinstance(titles, (str, bytes)) or not isinstance(titles, Sequence):
            raise TypeError(f"titles: expected one string per image, got {type(titles).__name__}")
        if len(titles) != count:
            raise ValueError(f"titles: {len(titles)} titles for {count} images")
    rgbs = [_image_rgb(photo, mean, std, argument=f"images[{b}]")[0] for b, photo in enumerate(photos)]
    columns = 1 + len(method_maps)

    given = given_axes(axes, count * columns, "axes")
    fig: Figure
    if given is None:
        height, width = rgbs[0].shape[:2]
        fig, grid = pyplot().subplots(
            count,
            columns,
            figsize=(cell_inches * columns, cell_inches * count * height / width + 0.4),
            squeeze=False,  # so that B = 1 or a single method still gives a 2-D grid
            layout="constrained",
        )
    else:
        fig = cast("Figure", given[0].figure)  # (a SubFigure when the axes lie in one)
        grid = np.asarray(given, dtype=object).reshape(count, columns)

    for row, rgb in enumerate(rgbs):
        grid[row, 0].imshow(rgb)
        for column, per_image in enumerate(method_maps.values(), start=1):
            grid[row, column].imshow(overlay(rgb, per_image[row], cmap=cmap, alpha=alpha))
        for column in range(columns):
            _bare(grid[row, column])
        if titles is not None:
            grid[row, 0].set_ylabel(str(titles[row]))
    grid[0, 0].set_title("image")
    for column, name in enumerate(method_maps, start=1):
        grid[0, column].set_title(name)
    return shown_once(fig)


def show_partials(
    explanation: Explanation,
    image: Any = None,
    index: int = 0,
    *,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    cmap: str | Colormap = "jet",
    alpha: float = 0.5,
    axes: Any = None,
    cell_inches: float = 1.4,
) -> Figure:
    """How one UCAG map was built: the partial maps of one image next to its folded map.

    The n x n partial maps of image ``index`` are drawn next to the folded result
    ``explanation.saliency[index]``. Patch p = i * n + j is drawn at row i, column j, over its own region of the image
    (patches overlap, so neighbouring cells share content). Each partial map is resized to
    its patch bilinearly (as the fold does) and drawn signed (red positive, blue negative)
    on one colour scale shared by all patches of the image, ±max|partial|, so cells can be
    compared; each is titled with its confidence weight w and the target probability p on
    that patch. The fold sums the partials times w and divides by the coverage.

    Args:
        explanation: what [UCAG.explain][ucag.explainer.UCAG.explain] returned.
        image: optional photo: the batch that was explained (its image ``index`` is used)
            or that one image, in any form [compare][ucag.viz.compare] takes. Patches are
            cut from it at the explanation's size; a photo of another size is resized to it
            bilinearly.
        index: which image of the batch.
        mean: the normalisation mean of a normalised float ``image``.
        std: the normalisation standard deviation of a normalised float ``image``.
        cmap: colours of the folded map over the photo ([overlay][ucag.viz.overlay]).
        alpha: opacity of the folded map over the photo ([overlay][ucag.viz.overlay]).
        axes: n * n + 1 axes to draw into, flattened row-major: the patches, then the
            folded map; default a new figure.
        cell_inches: width of one patch cell of a new figure, in inches.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: ``explanation`` that is not an [Explanation][ucag.explainer.Explanation],
            an ``index`` that is not an int, or another argument of the wrong type (the
            message names it).
        ValueError: an ``index`` outside the batch, or an ``image`` batch of another size
            than the explanation's, or another argument out of range (the message names it).
    """
    if not isinstance(explanation, Explanation):
        raise TypeError(f"explanation: expected a ucag.Explanation, got {type(explanation).__name__}")
    batch = explanation.raw.shape[0]
    if not is_int(index):
        raise TypeError(f"index: expected an int, got {type(index).__name__}")
    if not 0 <= index < batch:
        raise ValueError(f"index: expected 0 <= index < {batch} (the number of images explained), got {index}")
    grid_geometry = explanation.grid
    units, patches = grid_geometry.units, grid_geometry.num_patches
    height, width = grid_geometry.image_size
    patch_height, patch_width = grid_geometry.patch_size
    rows = slice(index * patches, (index + 1) * patches)
    partials = explanation.partials[rows].detach().cpu().double().numpy()
    weights = explanation.weights[rows].detach().cpu().double().numpy()
    probabilities = explanation.probabilities[rows].detach().cpu().double().numpy()
    folded = explanation.saliency[index].detach().cpu().double().numpy()

    rgb = None
    if image is not None:
        photos = _image_batch(image, "image")
        if len(photos) not in (1, batch):
            raise ValueError(f"image: {len(photos)} images for an explanation of {batch}")
        rgb, _ = _image_rgb(photos[index if len(photos) > 1 else 0], mean, std)
        if rgb.shape[:2] != (height, width):
            rgb = np.stack([_resize_map(rgb[..., c], (height, width)) for c in range(3)], axis=-1).clip(0.0, 1.0)
    grey = _grey(rgb) if rgb is not None else None

    given = given_axes(axes, patches + 1, "axes")
    fig: Figure
    if given is None:
        # Patch cells on the left (n x n), the folded map as large as the whole grid on the right.
        cell_height = cell_inches * patch_height / patch_width
        fig = pyplot().figure(
            figsize=(2 * units * cell_inches + 1.2, units * (cell_height + 0.45) + 0.5), layout="constrained"
        )
        layout = fig.add_gridspec(units, 2 * units)
        patch_axes = [fig.add_subplot(layout[i, j]) for i in range(units) for j in range(units)]
        result_ax = fig.add_subplot(layout[:, units:])
    else:
        fig = cast("Figure", given[0].figure)  # (a SubFigure when the axes lie in one)
        patch_axes, result_ax = given[:patches], given[patches]

    limit = _symmetric_limit(partials)
    for p, ax in enumerate(patch_axes):
        i, j = divmod(p, units)
        top, left = grid_geometry.offsets_y[i], grid_geometry.offsets_x[j]
        partial = _resize_map(partials[p], (patch_height, patch_width))
        crop = grey[top : top + patch_height, left : left + patch_width] if grey is not None else None
        _draw_signed(ax, partial, crop, 0.6, limit)
        ax.set_axis_off()
        ax.set_title(f"w {weights[p]:.2f}  p {probabilities[p]:.2f}", fontsize=8)
    kind = "normalised by the base method" if explanation.partials_normalised else "raw"
    _signed_colorbar(fig, patch_axes, limit, label=f"partial map ({kind})", location="left", shrink=0.8)

    if rgb is not None:
        result_ax.imshow(overlay(rgb, folded, cmap=cmap, alpha=alpha))
    else:
        result_ax.imshow(_unit_range(folded), cmap=_colormap(cmap), vmin=0.0, vmax=1.0)
    result_ax.set_axis_off()
    result_ax.set_title(f"folded UCAG map ({explanation.postprocess})")
    explained = explanation.explained[index] if explanation.explained else None
    target = (
        f"class {int(explanation.targets[index])}"
        if explained is None or explained.kind == "class"
        else describe(explained)
    )
    fig.suptitle(f"{explanation.base} on {units} x {units} patches, {target}")
    return shown_once(fig)


def map_grid(
    rows: Mapping[str, Sequence[MapLike]],
    column_titles: Sequence[str] | None = None,
    *,
    image: ImageLike | None = None,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    cmap: str | Colormap = "gray",
    over_image: bool = False,
    alpha: float = 0.5,
    axes: Any = None,
    cell_inches: float = 1.8,
) -> Figure:
    """A grid of maps: one row per entry of ``rows``, one column per map.

    Meant for one image's maps under changing conditions, such as Adebayo et al.'s
    cascading randomisation figure ([plot_randomization][ucag.eval.plots.plot_randomization]). Every map
    is drawn as ``|map| / max |map|`` on its own scale (an all-zero map stays black), so a
    faint map still shows its structure.

    Args:
        rows: row label -> its maps, each (H, W) or (1, H, W), numpy or torch; every row
            has the same number of maps.
        column_titles: one title per map column.
        image: a photo (any form [overlay][ucag.viz.overlay] takes) shown in a first column
            of every row, and under the maps with ``over_image``.
        mean: the normalisation mean of a normalised float ``image``.
        std: the normalisation standard deviation of a normalised float ``image``.
        cmap: the colormap of the maps (grey by default, as in the paper).
        over_image: blend each map over ``image`` ([overlay][ucag.viz.overlay] with
            ``alpha``) instead of drawing it alone.
        alpha: the opacity of the maps over ``image`` with ``over_image``, in [0, 1].
        axes: rows x columns axes to draw into (columns counting the photo's); default a
            new figure.
        cell_inches: width of one column of a new figure, in inches.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: ``rows`` that is not a dict of non-empty lists of maps, or another
            argument of the wrong type (the message names it).
        ValueError: no rows, rows of different lengths, a number of ``column_titles`` that
            is not the number of map columns, ``over_image`` without ``image``, or another
            argument out of range (the message names it).
    """
    if not isinstance(rows, Mapping):
        raise TypeError(f"rows: expected a dict row label -> list of maps, got {type(rows).__name__}")
    if len(rows) == 0:
        raise ValueError("rows: give at least one row")
    grid_maps: dict[str, list[np.ndarray]] = {}
    for label, maps in rows.items():
        if isinstance(maps, (str, bytes)) or not isinstance(maps, Sequence) or len(maps) == 0:
            raise TypeError(f"rows[{label!r}]: expected a non-empty list of maps, got {type(maps).__name__}")
        grid_maps[str(label)] = [_map_2d(m, f"rows[{label!r}][{k}]") for k, m in enumerate(maps)]
    count = len(next(iter(grid_maps.values())))
    for label, maps in grid_maps.items():
        if len(maps) != count:
            raise ValueError(f"rows[{label!r}]: {len(maps)} maps, but the first row has {count}")
    if column_titles is not None:
        if isinstance(column_titles, (str, bytes)) or not isinstance(column_titles, Sequence):
            raise TypeError(f"column_titles: expected one string per map column, got {type(column_titles).__name__}")
        if len(column_titles) != count:
            raise ValueError(f"column_titles: {len(column_titles)} titles for {count} map columns")
    if over_image and image is None:
        raise ValueError("over_image: needs image=")
    alpha = probability("alpha", alpha)
    rgb = _image_rgb(image, mean, std)[0] if image is not None else None
    colormap = _colormap(cmap)
    first = 1 if rgb is not None else 0
    columns = first + count

    given = given_axes(axes, len(grid_maps) * columns, "axes")
    fig: Figure
    if given is None:
        height, width = (rgb if rgb is not None else next(iter(grid_maps.values()))[0]).shape[:2]
        fig, grid = pyplot().subplots(
            len(grid_maps),
            columns,
            figsize=(cell_inches * columns, (cell_inches * height / width + 0.3) * len(grid_maps) + 0.3),
            squeeze=False,
            layout="constrained",
        )
    else:
        fig = cast("Figure", given[0].figure)  # (a SubFigure when the axes lie in one)
        grid = np.asarray(given, dtype=object).reshape(len(grid_maps), columns)

    for row, (label, maps) in enumerate(grid_maps.items()):
        if rgb is not None:
            grid[row, 0].imshow(rgb)
        for column, raw in enumerate(maps, start=first):
            magnitude = np.abs(raw)
            peak = float(magnitude.max())
            scaled = magnitude / peak if peak > 0 else magnitude
            if over_image:
                assert rgb is not None
                grid[row, column].imshow(overlay(rgb, scaled, cmap=colormap, alpha=alpha))
            else:
                grid[row, column].imshow(scaled, cmap=colormap, vmin=0.0, vmax=1.0)
        for column in range(columns):
            _bare(grid[row, column])
        grid[row, 0].set_ylabel(label)
    if rgb is not None:
        grid[0, 0].set_title("image")
    for column, title in enumerate(column_titles or [], start=first):
        grid[0, column].set_title(str(title), fontsize=8)
    return shown_once(fig)


def _draw_explanation(fig: Figure, explanation: Explanation, count: int, cmap: str | Colormap) -> None:
    """Draw ``count`` images' rows of an explanation into an empty figure (see show_explanation)."""
    grid = explanation.grid
    units = grid.units
    patches = units * units
    colormap = _colormap(cmap)
    axes = fig.subplots(count, 3, squeeze=False)
    for row in range(count):
        saliency = _map_2d(explanation.saliency[row], "explanation.saliency")
        raw = _map_2d(explanation.raw[row], "explanation.raw")
        weights = map_array(explanation.weights[row * patches : (row + 1) * patches], "explanation.weights")
        weights = weights.reshape(units, units)
        axes[row, 0].imshow(saliency, cmap=colormap, vmin=0.0, vmax=max(1.0, float(saliency.max())))
        limit = _symmetric_limit(raw)
        _draw_signed(axes[row, 1], raw, None, 1.0, limit)
        shown = axes[row, 2].imshow(weights, cmap="viridis")
        if units <= 8:
            middle = (float(weights.min()) + float(weights.max())) / 2
            for i in range(units):
                for j in range(units):
                    axes[row, 2].text(
                        j,
                        i,
                        f"{weights[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if weights[i, j] > middle else "white",
                    )
        fig.colorbar(shown, ax=axes[row, 2], fraction=0.046, pad=0.04)
        for column in range(3):
            _bare(axes[row, column])
        label = describe(explanation.explained[row]) if row < len(explanation.explained) else f"image {row}"
        axes[row, 0].set_ylabel(label, fontsize=8)
    axes[0, 0].set_title(f"map ({explanation.postprocess})", fontsize=9)
    axes[0, 1].set_title(f"raw, ±{_symmetric_limit(_map_2d(explanation.raw[0], 'explanation.raw')):.3g}", fontsize=9)
    axes[0, 2].set_title(f"patch weights ({units} × {units})", fontsize=9)


def show_explanation(explanation: Explanation, *, count: int = 4, cmap: str | Colormap = "jet") -> Figure:
    """What one UCAG call computed, as one figure: per image, the map, the raw map and the weights.

    Each row is one image of the batch: the post-processed map, the raw (signed) folded
    map on a scale symmetric about zero (red positive, blue negative), and the confidence
    weight of every patch at its place on the grid (written in the cells up to 8 × 8). The
    title is [Explanation.facts][ucag.explainer.Explanation.facts]. In Jupyter an
    [Explanation][ucag.explainer.Explanation] shows this figure by itself.

    Args:
        explanation: What [UCAG.explain][ucag.explainer.UCAG.explain] returned.
        count: The most images to draw (the first ones of the batch).
        cmap: The colormap of the post-processed map.

    Returns:
        The matplotlib Figure, shown once when it ends a notebook cell.

    Raises:
        TypeError: If ``explanation`` is not an Explanation, or ``count`` not an int.
        ValueError: If ``count`` is not positive.
    """
    if not isinstance(explanation, Explanation):
        raise TypeError(f"explanation: expected a ucag Explanation, got {type(explanation).__name__}")
    count = min(positive_int("count", count), explanation.raw.shape[0])
    fig = pyplot().figure(figsize=(7.2, 2.3 * count + 0.5), layout="constrained")
    _draw_explanation(fig, explanation, count, cmap)
    fig.suptitle(explanation.facts(), fontsize=8)
    return shown_once(fig)


def explanation_html(explanation: Explanation, count: int = 4) -> str:
    """An explanation as HTML: its facts and [show_explanation][ucag.viz.show_explanation]'s figure.

    The figure is drawn outside pyplot, so Jupyter's inline backend never shows it twice.
    This is [Explanation][ucag.explainer.Explanation]'s ``_repr_html_``.

    Args:
        explanation: What [UCAG.explain][ucag.explainer.UCAG.explain] returned.
        count: The most images to draw.

    Returns:
        An HTML fragment: a line of facts and a PNG image.
    """
    from matplotlib.figure import Figure as PlainFigure

    count = min(positive_int("count", count), explanation.raw.shape[0])
    fig = PlainFigure(figsize=(7.2, 2.3 * count), layout="constrained")
    _draw_explanation(fig, explanation, count, "jet")
    more = explanation.raw.shape[0] - count
    facts = html.escape(explanation.facts()) + (f" ({more} more not drawn)" if more > 0 else "")
    return f'<div class="ucag-explanation"><p><code>{facts}</code></p>{figure_html(fig, facts)}</div>'
