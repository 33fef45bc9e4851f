"""Evaluation datasets read from the user's local copies into one sample type.

This module owns reading evaluation data: every reader turns one on-disk format into
[EvalSample][ucag.eval.datasets.EvalSample] objects (the photo, the class to explain, the
ground-truth mask), which the evaluation runner feeds to the metrics of docs/algorithm.md §6.
Nothing here downloads.

Readers are [EvalDataset][ucag.eval.datasets.EvalDataset]s (torch ``Dataset``s): random
access, reading files lazily in ``__getitem__`` so a distributed runner can shard by index,
with ``class_names`` and ``sample_id(i)``, which names a sample without reading its files
(to skip finished work):

- [ImageNetVal][ucag.eval.datasets.ImageNetVal] — ImageNet validation, a flat folder plus
  ``val.txt`` or an ImageFolder tree; no masks.
- [VOCDetection2007][ucag.eval.datasets.VOCDetection2007] — PASCAL VOC 2007, one sample per
  (image, class present), mask = union of that class's boxes.
- [COCODetection2014][ucag.eval.datasets.COCODetection2014] — COCO 2014, one sample per
  (image, category present), mask = union of that category's instance masks (crowd regions
  included).
- [ImageNetSegmentation][ucag.eval.datasets.ImageNetSegmentation] — ``gtsegs_ijcv.mat``
  (Guillaumin et al. 2014), the segmentation protocol of Gur et al. 2021 / Chefer et al.
  2021; explains the prediction.
- [SampleImages][ucag.eval.datasets.SampleImages] — the photos bundled through
  [ucag.data][ucag.data].

[open_dataset][ucag.eval.datasets.open_dataset] builds a reader from a command-line spec such
as ``voc2007:ROOT``. Samples are dataclasses, which torch's default collate cannot batch:
give a DataLoader ``collate_fn=collate_samples``.

Optional dependencies (Pillow, torchvision, pycocotools, h5py) are imported only by the
readers that need them; a missing one raises an ImportError that says
``pip install 'ucag[datasets]'``.
"""

from __future__ import annotations

import contextlib
import io
import operator
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import Dataset

from ..extras import require

__all__ = [
    "COCODetection2014",
    "DATASET_SPECS",
    "EvalDataset",
    "EvalSample",
    "ImageNetSegmentation",
    "ImageNetVal",
    "SampleImages",
    "VOC_CLASSES",
    "VOCDetection2007",
    "collate_samples",
    "open_dataset",
]

#: The 20 PASCAL VOC classes in the standard (alphabetical) order: target = position here.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

#: Number of ImageNet-1k classes, the output space of the models these datasets feed.
IMAGENET_NUM_CLASSES = 1000

#: Image file extensions of an ImageFolder tree (torchvision's IMG_EXTENSIONS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: The forms ``open_dataset`` accepts.
DATASET_SPECS = (
    "samples",
    "imagenet:ROOT[:LABELS]",
    "voc2007:ROOT",
    "coco2014:ROOT:ANNOTATIONS",
    "imagenet-seg:PATH",
)


@dataclass
class EvalSample:
    """One thing to explain and score.

    Attributes:
        id: the sample's id, unique in its dataset.
        rgb: the original photo, uint8 (H, W, 3).
        target: the class index to explain, or None to explain the model's own prediction.
        mask: a bool (H, W) ground truth at the photo's resolution, None when the dataset
            has none.
        class_name: the target's name ("" when unknown).
        difficult: VOC's flag: every instance of this class in the image is marked difficult.

    Raises:
        ValueError: ``rgb`` is not uint8 (H, W, 3), or ``mask`` is neither None nor a bool
            array of the photo's (H, W).

    Examples:
        >>> import numpy as np
        >>> rgb = np.zeros((4, 6, 3), dtype=np.uint8)
        >>> EvalSample("cat_1", rgb, target=281, mask=np.ones((4, 6), dtype=bool), class_name="tabby")
        EvalSample('cat_1', 6x4, target 281 'tabby', mask 24 px)
    """

    id: str
    rgb: np.ndarray
    target: int | None
    mask: np.ndarray | None
    class_name: str = ""
    difficult: bool = False

    def __post_init__(self) -> None:
        # Cheap checks here catch a reader bug at its source instead of deep in a metric.
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(
                f"EvalSample {self.id}: rgb must be uint8 (H, W, 3), got {self.rgb.dtype} {self.rgb.shape}"
            )
        if self.mask is not None and (self.mask.dtype != np.bool_ or self.mask.shape != self.rgb.shape[:2]):
            raise ValueError(
                f"EvalSample {self.id}: mask must be bool {self.rgb.shape[:2]}, got {self.mask.dtype} {self.mask.shape}"
            )

    def __repr__(self) -> str:
        target = "prediction" if self.target is None else f"{self.target} {self.class_name!r}"
        mask = "none" if self.mask is None else f"{int(self.mask.sum())} px"
        extra = ", difficult" if self.difficult else ""
        return f"EvalSample({self.id!r}, {self.rgb.shape[1]}x{self.rgb.shape[0]}, target {target}, mask {mask}{extra})"


def collate_samples(batch: list[EvalSample]) -> list[EvalSample]:
    """``collate_fn`` for a DataLoader over these readers: keeps the samples as a list.

    Photos differ in size, so they cannot be stacked.

    Args:
        batch: the samples the DataLoader gathered.

    Returns:
        The samples, as a list.
    """
    return list(batch)


def _optional_import(module: str, reader: str) -> ModuleType:
    return require(module, "datasets", reader)


def _safe_id(text: str) -> str:
    """``text`` with every run of characters unsafe in file names or CSV cells made '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {str(path)!r} is not a directory")


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {str(path)!r} is not a file")


def _read_rgb(path: Path, reader: str) -> np.ndarray:
    """A photo as writable uint8 (H, W, 3); grayscale, CMYK, palette and RGBA images
    (all present in ImageNet), 16-bit and float ones are converted by ``ucag.data.rgb8``."""
    from ..data import rgb8

    image_module = _optional_import("PIL.Image", reader)
    try:
        with image_module.open(path) as image:
            image.load()
            return rgb8(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"{reader}: image {str(path)!r} not found") from None


def _imagenet_class_names(reader: str) -> list[str]:
    _optional_import("torchvision", reader)
    from ..data import imagenet_class_names

    return imagenet_class_names()


class EvalDataset(Dataset[EvalSample]):
    """What every reader is: ``len``, ``ds[i] -> EvalSample``, iteration, ``class_names`` and ``sample_id(i)``.

    Indices may be negative; past the end they raise IndexError. Subclasses give
    ``__len__``, ``sample_id`` and ``_load``.

    Attributes:
        class_names: the name of every class index.
    """

    class_names: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """The id of one sample, without reading any file (to skip finished work).

        Args:
            index: the sample's index (negative counts from the end).

        Returns:
            The sample's id.

        Raises:
            IndexError: ``index`` is out of range.
        """
        raise NotImplementedError

    def _load(self, index: int) -> EvalSample:
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {size} samples")
        return index

    def __getitem__(self, index: int) -> EvalSample:
        return self._load(self._check_index(index))

    def __iter__(self) -> Iterator[EvalSample]:
        for index in range(len(self)):
            yield self._load(index)


# ---------------------------------------------------------------------------------------
# ImageNet validation


class ImageNetVal(EvalDataset):
    """ImageNet validation images with their labels; no masks.

    Two layouts:

    - ``labels`` given: ``root`` is a flat folder of images and ``labels`` a text file
      whose lines are ``filename label`` (the common ``val.txt``), the label a 0-based
      torchvision class index. The labels file defines the samples and their order.
    - ``labels`` None: ``root`` is a torchvision ImageFolder tree, one sub-folder per
      WordNet id; the class index is the position of the wnid among the sorted
      sub-folders. That is torchvision's index only when all 1000 folders are there, so a
      tree with fewer warns.

    Ids are the file names without extension (``ILSVRC2012_val_00000001``); in an
    ImageFolder tree where those repeat, they are prefixed with the wnid.

    Args:
        root: the folder of images, or the ImageFolder tree.
        labels: the labels file (``val.txt``), or None for an ImageFolder tree.

    Raises:
        FileNotFoundError: ``root`` or ``labels`` is missing, an image the labels name is
            missing, or the tree has no class sub-folders or no images.
        ValueError: a malformed labels line (not ``filename label``, a label outside
            0..999, a file labelled twice), no labels at all, ids that collide, or more than
            1000 class sub-folders.
        ImportError: torchvision (the ``datasets`` extra) is not installed.
    """

    def __init__(self, root: str | os.PathLike, labels: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        self.labels = None if labels is None else Path(labels)
        _require_dir(self.root, "ImageNet val root (a folder of images, or one sub-folder per WordNet id)")
        self.class_names = _imagenet_class_names("ImageNetVal")
        if self.labels is None:
            self.layout = "imagefolder"
            self._paths, self._targets, self._ids = self._index_image_folder()
        else:
            self.layout = "flat"
            self._paths, self._targets, self._ids = self._index_flat_folder(self.labels)

    def _index_flat_folder(self, labels: Path) -> tuple[list[Path], list[int], list[str]]:
        _require_file(labels, "ImageNet labels file (lines 'filename label', e.g. val.txt)")
        names: list[str] = []
        targets: list[int] = []
        first_line_of: dict[str, int] = {}
        with open(labels, encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                fields = line.split()
                if not fields:
                    continue  # blank lines (e.g. a trailing one) carry nothing
                where = f"{labels}, line {line_number}"
                if len(fields) != 2:
                    raise ValueError(f"{where}: expected 'filename label', got {line.rstrip()!r}")
                name, label_text = fields
                try:
                    label = int(label_text)
                except ValueError:
                    raise ValueError(f"{where}: label {label_text!r} is not an integer") from None
                if not 0 <= label < IMAGENET_NUM_CLASSES:
                    raise ValueError(f"{where}: label {label} outside 0..{IMAGENET_NUM_CLASSES - 1}")
                if name in first_line_of:
                    raise ValueError(f"{where}: {name!r} already labelled on line {first_line_of[name]}")
                first_line_of[name] = line_number
                names.append(name)
                targets.append(label)
        if not names:
            raise ValueError(f"{labels}: no 'filename label' lines")
        # One directory listing instead of a stat per image: fast even for 50,000 files.
        present = set(os.listdir(self.root))
        missing = [n for n in names if n not in present and not (self.root / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"ImageNetVal: {len(missing)} images named in {str(labels)!r} are missing from {str(self.root)!r}, e.g. {missing[0]!r}"
            )
        ids = [_safe_id(os.path.splitext(n)[0]) for n in names]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{labels}: file names that differ only in extension or punctuation give duplicate ids")
        return [self.root / n for n in names], targets, ids

    def _index_image_folder(self) -> tuple[list[Path], list[int], list[str]]:
        wnids = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        if not wnids:
            raise FileNotFoundError(
                f"ImageNetVal: {str(self.root)!r} has no class sub-folders (ImageFolder layout); for a flat folder of images pass labels=<path of val.txt>"
            )
        if len(wnids) > IMAGENET_NUM_CLASSES:
            raise ValueError(f"ImageNetVal: {len(wnids)} class sub-folders in {str(self.root)!r}, ImageNet has 1000")
        if len(wnids) < IMAGENET_NUM_CLASSES:
            warnings.warn(
                f"ImageNetVal: {len(wnids)} class sub-folders in {str(self.root)!r}, not 1000: targets are positions among these folders and do not match an ImageNet model's classes",
                stacklevel=3,
            )
        paths: list[Path] = []
        targets: list[int] = []
        stems: list[str] = []
        owners: list[str] = []
        for target, wnid in enumerate(wnids):
            # Same walk as torchvision's ImageFolder: recursive, sorted, by extension.
            for folder, _, files in sorted(os.walk(self.root / wnid, followlinks=True)):
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        paths.append(Path(folder) / name)
                        targets.append(target)
                        stems.append(_safe_id(os.path.splitext(name)[0]))
                        owners.append(wnid)
        if not paths:
            raise FileNotFoundError(f"ImageNetVal: no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(self.root)!r}")
        ids = stems if len(set(stems)) == len(stems) else [f"{w}_{s}" for w, s in zip(owners, stems, strict=True)]
        return paths, targets, ids

    def __len__(self) -> int:
        return len(self._paths)

    def sample_id(self, index: int) -> str:
        return self._ids[self._check_index(index)]

    def _load(self, index: int) -> EvalSample:
        target = self._targets[index]
        return EvalSample(
            id=self._ids[index],
            rgb=_read_rgb(self._paths[index], "ImageNetVal"),
            target=target,
            mask=None,
            class_name=self.class_names[target],
        )

    def __repr__(self) -> str:
        source = f"labels={str(self.labels)!r}" if self.labels is not None else "ImageFolder layout"
        return f"ImageNetVal(root={str(self.root)!r}, {source}: {len(self)} images, {len(self.class_names)} classes)"


# ---------------------------------------------------------------------------------------
# PASCAL VOC 2007


class _Box(NamedTuple):
    """A VOC box converted to 0-based half-open pixel ranges: rows top..bottom-1, columns
    left..right-1."""

    top: int
    left: int
    bottom: int
    right: int


class _VOCPair(NamedTuple):
    image: int  # position in the image set
    target: int  # position in VOC_CLASSES
    boxes: tuple[_Box, ...]
    difficult: bool


def _voc_box(bndbox: Any, where: str) -> _Box:
    """VOC's 1-based inclusive (xmin, ymin, xmax, ymax) as 0-based half-open ranges: pixel
    columns xmin-1 .. xmax-1, so the slice [xmin-1 : xmax]."""
    try:
        xmin, ymin, xmax, ymax = (round(float(bndbox.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: bndbox needs numeric xmin, ymin, xmax, ymax") from None
    if xmax < xmin or ymax < ymin:
        raise ValueError(f"{where}: empty bndbox ({xmin}, {ymin}, {xmax}, {ymax})")
    return _Box(top=ymin - 1, left=xmin - 1, bottom=ymax, right=xmax)


class VOCDetection2007(EvalDataset):
    """PASCAL VOC 2007 detection, one sample per (image, class present in it).

    ``root`` contains ``VOCdevkit/VOC2007`` (read through torchvision's ``VOCDetection``).
    ``target`` is the class's position in ``VOC_CLASSES``; ``mask`` the union of that
    class's boxes; ``difficult`` is True when every instance of the class is difficult.
    With ``include_difficult=False`` difficult instances leave the masks and classes with
    only difficult instances are dropped. Ids are ``"<image>:<class>"``, e.g. ``"000005:chair"``.
    The annotations are parsed once here; ``__getitem__`` only reads the photo.

    Args:
        root: the folder that contains ``VOCdevkit/VOC2007``.
        image_set: the image set, a file of ``VOCdevkit/VOC2007/ImageSets/Main`` without
            ``.txt`` (``"test"``, ``"val"``, ``"trainval"``...).
        include_difficult: keep the instances marked difficult.

    Raises:
        FileNotFoundError: ``VOCdevkit/VOC2007``, the image set's file or an annotation is
            missing.
        ValueError: a malformed annotation (bad XML, an unknown class, a missing or empty
            box).
        ImportError: torchvision (the ``datasets`` extra) is not installed.
    """

    def __init__(self, root: str | os.PathLike, image_set: str = "test", include_difficult: bool = True) -> None:
        self.root = Path(root)
        self.image_set = image_set
        self.include_difficult = include_difficult
        self.class_names = list(VOC_CLASSES)
        voc_root = self.root / "VOCdevkit" / "VOC2007"
        _require_dir(voc_root, "PASCAL VOC 2007 (expected ROOT/VOCdevkit/VOC2007)")
        _require_file(
            voc_root / "ImageSets" / "Main" / f"{image_set}.txt",
            f"PASCAL VOC 2007 image set {image_set!r} (expected VOCdevkit/VOC2007/ImageSets/Main/{image_set}.txt)",
        )
        voc = _optional_import("torchvision.datasets", "VOCDetection2007").VOCDetection(
            self.root, year="2007", image_set=image_set, download=False
        )
        self._images = [Path(p) for p in voc.images]
        self._pairs = [pair for index, xml in enumerate(voc.annotations) for pair in self._parse(index, Path(xml))]

    def _parse(self, image_index: int, xml_path: Path) -> list[_VOCPair]:
        """The (image, class) pairs of one annotation file, classes in VOC order."""
        _require_file(xml_path, "PASCAL VOC annotation (VOCdevkit/VOC2007/Annotations/<image>.xml)")
        # Plain ElementTree: VOCDetection.parse_voc_xml builds a dict of the whole tree,
        # several times slower, and these files are trusted local annotations.
        from xml.etree import ElementTree

        try:
            annotation = ElementTree.parse(xml_path).getroot()
        except ElementTree.ParseError as err:
            raise ValueError(f"{xml_path}: malformed XML ({err})") from None
        boxes_of: dict[int, list[_Box]] = {}
        all_difficult: dict[int, bool] = {}
        for number, obj in enumerate(annotation.findall("object"), start=1):
            where = f"{xml_path}, object {number}"
            name = (obj.findtext("name") or "").strip()
            if name not in VOC_CLASSES:
                raise ValueError(f"{where}: unknown class {name!r}, expected one of the 20 VOC classes")
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            bndbox = obj.find("bndbox")  # the object's own box, not those of its parts
            if bndbox is None:
                raise ValueError(f"{where}: no bndbox")
            box = _voc_box(bndbox, where)
            if difficult and not self.include_difficult:
                continue
            target = VOC_CLASSES.index(name)
            boxes_of.setdefault(target, []).append(box)
            all_difficult[target] = all_difficult.get(target, True) and difficult
        return [_VOCPair(image_index, t, tuple(boxes_of[t]), all_difficult[t]) for t in sorted(boxes_of)]

    def __len__(self) -> int:
        return len(self._pairs)

    def sample_id(self, index: int) -> str:
        pair = self._pairs[self._check_index(index)]
        return f"{self._images[pair.image].stem}:{VOC_CLASSES[pair.target]}"

    def _load(self, index: int) -> EvalSample:
        pair = self._pairs[index]
        rgb = _read_rgb(self._images[pair.image], "VOCDetection2007")
        mask = np.zeros(rgb.shape[:2], dtype=bool)
        for box in pair.boxes:
            # Slicing clips boxes that overrun the photo, as a few VOC boxes do by a pixel.
            mask[max(box.top, 0) : box.bottom, max(box.left, 0) : box.right] = True
        return EvalSample(
            id=self.sample_id(index),
            rgb=rgb,
            target=pair.target,
            mask=mask,
            class_name=VOC_CLASSES[pair.target],
            difficult=pair.difficult,
        )

    def __repr__(self) -> str:
        return f"VOCDetection2007(root={str(self.root)!r}, image_set={self.image_set!r}, include_difficult={self.include_difficult}: {len(self)} (image, class) samples from {len(self._images)} images)"


# ---------------------------------------------------------------------------------------
# COCO 2014


class COCODetection2014(EvalDataset):
    """COCO 2014 (val) instances, one sample per (image, category present in it).

    ``root`` holds the images named by ``annotation_file`` (``instances_val2014.json``),
    loaded with pycocotools as torchvision's ``CocoDetection`` does (images in sorted id
    order). ``target`` is the category's contiguous index: the sorted category ids map to
    0..79, named in ``class_names``. ``mask`` is the union of ``coco.annToMask`` over the
    category's annotations, crowd (RLE) regions included: they are pixels of that category
    too, and leaving them out would call hits on a crowd of people misses. Images without
    annotations are skipped. Ids are ``"<12-digit image id>:<category>"``, e.g.
    ``"000000000042:dog"``, spaces in names made ``_``.

    Args:
        root: the image folder (``val2014/``).
        annotation_file: the instances file (``instances_val2014.json``).

    Raises:
        FileNotFoundError: ``root`` or ``annotation_file`` is missing.
        ValueError: ``annotation_file`` is not a COCO instances file (malformed JSON, an
            annotation of an unknown category...).
        ImportError: pycocotools (the ``datasets`` extra) is not installed.
    """

    def __init__(self, root: str | os.PathLike, annotation_file: str | os.PathLike) -> None:
        self.root = Path(root)
        self.annotation_file = Path(annotation_file)
        _require_dir(self.root, "COCO 2014 image folder (e.g. val2014/)")
        _require_file(self.annotation_file, "COCO instances annotation file (e.g. instances_val2014.json)")
        coco_module = _optional_import("pycocotools.coco", "COCODetection2014")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            try:
                self.coco = coco_module.COCO(str(self.annotation_file))
            except ValueError as err:  # json's errors give the line and column
                raise ValueError(f"{self.annotation_file}: malformed JSON: {err}") from None
            except (AssertionError, KeyError, TypeError) as err:
                raise ValueError(f"{self.annotation_file}: not a COCO instances file ({err!r})") from None
        category_ids = sorted(self.coco.cats)
        self._target_of = {category: index for index, category in enumerate(category_ids)}
        self.class_names = [self.coco.cats[c]["name"] for c in category_ids]
        # (image id, category id, annotation ids), built once so __getitem__ queries nothing.
        self._pairs: list[tuple[int, int, list[int]]] = []
        for image_id in sorted(self.coco.imgs):
            annotations_of: dict[int, list[int]] = {}
            for annotation in self.coco.imgToAnns.get(image_id, []):
                category = annotation["category_id"]
                if category not in self._target_of:
                    raise ValueError(
                        f"{self.annotation_file}: annotation {annotation['id']} has unknown category {category}"
                    )
                annotations_of.setdefault(category, []).append(annotation["id"])
            self._pairs += [(image_id, c, annotations_of[c]) for c in sorted(annotations_of)]

    def __len__(self) -> int:
        return len(self._pairs)

    def sample_id(self, index: int) -> str:
        image_id, category, _ = self._pairs[self._check_index(index)]
        return f"{image_id:012d}:{_safe_id(self.coco.cats[category]['name'])}"

    def _load(self, index: int) -> EvalSample:
        image_id, category, annotation_ids = self._pairs[index]
        info = self.coco.imgs[image_id]
        rgb = _read_rgb(self.root / info["file_name"], "COCODetection2014")
        if rgb.shape[:2] != (info["height"], info["width"]):
            raise ValueError(
                f"{self.root / info['file_name']}: photo is {rgb.shape[1]}x{rgb.shape[0]}, annotations say {info['width']}x{info['height']}"
            )
        mask = np.zeros(rgb.shape[:2], dtype=bool)
        for annotation in self.coco.loadAnns(annotation_ids):
            mask |= self.coco.annToMask(annotation).astype(bool)
        target = self._target_of[category]
        return EvalSample(
            id=self.sample_id(index), rgb=rgb, target=target, mask=mask, class_name=self.class_names[target]
        )

    def __repr__(self) -> str:
        images = len({image_id for image_id, _, _ in self._pairs})
        return f"COCODetection2014(root={str(self.root)!r}, annotation_file={str(self.annotation_file)!r}: {len(self)} (image, category) samples from {images} images, {len(self.class_names)} categories)"


# ---------------------------------------------------------------------------------------
# ImageNet segmentation (gtsegs_ijcv.mat)


class ImageNetSegmentation(EvalDataset):
    """The ImageNet-segmentation set ``gtsegs_ijcv.mat`` (Guillaumin et al., IJCV 2014), as
    used by Gur et al. 2021 and Chefer et al. 2021.

    A MATLAB v7.3 (HDF5) file: ``/value/img`` is (N, 1) references, each to an image stored
    column-major as (3, W, H); ``/value/gt`` is (N, 1) references, each to a (1, 1) cell
    whose reference points at the (W, H) mask. ``target`` is None (the protocol explains
    the model's prediction), ``mask`` = gt > 0, ids ``gtsegs_00000`` ... by position.

    The HDF5 file is opened on first access in each process, because h5py handles must not
    cross a fork; [close][ucag.eval.datasets.ImageNetSegmentation.close] (or ``with``) closes
    it, and pickling leaves it behind.

    Args:
        path: the path of ``gtsegs_ijcv.mat``.

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: ``path`` is not an HDF5 file with the layout of ``gtsegs_ijcv.mat``.
        ImportError: h5py or torchvision (the ``datasets`` extra) is not installed.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        _require_file(self.path, "ImageNet-segmentation file gtsegs_ijcv.mat (MATLAB v7.3 / HDF5)")
        h5py = _optional_import("h5py", "ImageNetSegmentation")
        self.class_names = _imagenet_class_names("ImageNetSegmentation")
        self._file: Any = None
        self._file_pid: int | None = None
        try:
            with h5py.File(self.path, "r") as mat:
                self._length = self._check_layout(mat)
        except OSError as err:
            raise ValueError(f"{self.path}: not an HDF5 file (MATLAB v7.3, like gtsegs_ijcv.mat): {err}") from None

    def _check_layout(self, mat: Any) -> int:
        images, masks = mat.get("/value/img"), mat.get("/value/gt")
        if images is None or masks is None:
            raise ValueError(f"{self.path}: no /value/img and /value/gt datasets; not the gtsegs_ijcv.mat layout")
        if images.ndim != 2 or images.shape[1] != 1 or masks.shape != images.shape:
            raise ValueError(
                f"{self.path}: /value/img {images.shape} and /value/gt {masks.shape} should both be (N, 1)"
            )
        return int(images.shape[0])

    def _open(self) -> Any:
        if self._file is None or self._file_pid != os.getpid():
            # A handle inherited through fork is dropped, never used or closed here.
            self._file = _optional_import("h5py", "ImageNetSegmentation").File(self.path, "r")
            self._file_pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close this process's HDF5 handle (reopened on the next access)."""
        if self._file is not None and self._file_pid == os.getpid():
            self._file.close()
        self._file = None
        self._file_pid = None

    def __enter__(self) -> ImageNetSegmentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = state["_file_pid"] = None  # h5py handles do not pickle
        return state

    def __len__(self) -> int:
        return self._length

    def sample_id(self, index: int) -> str:
        return f"gtsegs_{self._check_index(index):05d}"

    def _load(self, index: int) -> EvalSample:
        mat = self._open()
        # MATLAB stores arrays column-major, so h5py sees them with the axes reversed.
        stored_image = np.asarray(mat[mat["/value/img"][index, 0]][()])
        cell = mat[mat["/value/gt"][index, 0]]
        stored_mask = np.asarray(mat[cell[0, 0]][()])
        if stored_image.ndim == 2:  # a grayscale photo stored as (W, H)
            rgb = np.repeat(stored_image.T[:, :, None], 3, axis=2)
        elif stored_image.ndim == 3 and stored_image.shape[0] == 3:
            rgb = stored_image.transpose(2, 1, 0)
        else:
            raise ValueError(f"{self.path}: image {index} has shape {stored_image.shape}, expected (3, W, H)")
        mask = stored_mask.T > 0
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"{self.path}: sample {index}: mask {mask.shape} does not match image {rgb.shape[:2]}")
        return EvalSample(
            id=self.sample_id(index), rgb=np.ascontiguousarray(rgb, dtype=np.uint8), target=None, mask=mask
        )

    def __repr__(self) -> str:
        return f"ImageNetSegmentation(path={str(self.path)!r}: {len(self)} images with masks, explaining predictions)"


# ---------------------------------------------------------------------------------------
# Bundled photos


class SampleImages(EvalDataset):
    """The photos bundled through [ucag.data][ucag.data] (needs the ``examples`` extra).

    chelsea and coffee carry their ImageNet class as ``target``; the others have None (explain
    the prediction). Only the ``voc`` photo has a mask: the union of all its annotated
    instances (people, chairs, tables, a bottle), since there is no single target class to
    pick instances by. Ids are the photo names.

    Args:
        names: the photos, names from ``ucag.data.SAMPLE_PHOTOS``; default all of them.

    Raises:
        ValueError: an unknown photo name.
        ImportError: torchvision (the ``datasets`` extra) is not installed.
    """

    def __init__(self, names: tuple[str, ...] | list[str] | None = None) -> None:
        from .. import data

        self.names = tuple(data.SAMPLE_PHOTOS if names is None else names)
        unknown = [n for n in self.names if n not in data.SAMPLE_PHOTOS]
        if unknown:
            raise ValueError(f"SampleImages: unknown photos {unknown}, expected names from {data.SAMPLE_PHOTOS}")
        self.class_names = _imagenet_class_names("SampleImages")

    def __len__(self) -> int:
        return len(self.names)

    def sample_id(self, index: int) -> str:
        return self.names[self._check_index(index)]

    def _load(self, index: int) -> EvalSample:
        from ..data import sample_image

        photo = sample_image(self.names[index])
        mask = None if photo.masks is None else np.any(np.asarray(photo.masks, dtype=bool), axis=0)
        return EvalSample(
            id=photo.name,
            rgb=np.ascontiguousarray(photo.rgb, dtype=np.uint8),
            target=photo.label,
            mask=mask,
            class_name="" if photo.label is None else self.class_names[photo.label],
        )

    def __repr__(self) -> str:
        return f"SampleImages({', '.join(self.names)})"


# ---------------------------------------------------------------------------------------
# Command-line specs


def _split_paths(text: str) -> list[str]:
    """``text`` split at ':' except where the colon belongs to a Windows drive (``C:\\``)."""
    pieces = text.split(":")
    parts: list[str] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        is_drive = len(piece) == 1 and piece.isalpha() and i + 1 < len(pieces) and pieces[i + 1][:1] in ("\\", "/")
        if is_drive:
            parts.append(f"{piece}:{pieces[i + 1]}")
            i += 2
        else:
            parts.append(piece)
            i += 1
    return parts


def open_dataset(spec: str, **kwargs: Any) -> EvalDataset:
    """The reader a command-line spec names.

    Args:
        spec: ``samples`` -> [SampleImages][ucag.eval.datasets.SampleImages];
            ``imagenet:ROOT[:LABELS]`` -> [ImageNetVal][ucag.eval.datasets.ImageNetVal];
            ``voc2007:ROOT`` -> [VOCDetection2007][ucag.eval.datasets.VOCDetection2007];
            ``coco2014:ROOT:ANNOTATIONS`` -> [COCODetection2014][ucag.eval.datasets.COCODetection2014];
            ``imagenet-seg:PATH`` -> [ImageNetSegmentation][ucag.eval.datasets.ImageNetSegmentation].
            A Windows drive's colon (``C:\\data``) does not split the paths.
        **kwargs: keyword arguments of the reader's constructor.

    Returns:
        The reader.

    Raises:
        ValueError: ``spec`` is none of these forms.
    """
    kind, _, rest = spec.partition(":")
    paths = _split_paths(rest) if rest else []
    if all(paths):  # an empty path ("imagenet:" or "coco2014:ROOT:") matches no form
        if kind == "samples" and not paths:
            return SampleImages(**kwargs)
        if kind == "imagenet" and len(paths) in (1, 2):
            return ImageNetVal(*paths, **kwargs)
        if kind == "voc2007" and len(paths) == 1:
            return VOCDetection2007(paths[0], **kwargs)
        if kind == "coco2014" and len(paths) == 2:
            return COCODetection2014(*paths, **kwargs)
        if kind == "imagenet-seg" and len(paths) == 1:
            return ImageNetSegmentation(paths[0], **kwargs)
    raise ValueError(f"dataset {spec!r}: expected one of {', '.join(DATASET_SPECS)}")
