"""ucag.eval.datasets against small synthetic copies written in each dataset's on-disk format.

One helper per format builds a miniature dataset under tmp_path exactly as the real one
is laid out (ImageNet val.txt and ImageFolder, VOCdevkit, COCO instances JSON, the MATLAB
v7.3 gtsegs_ijcv.mat), with hand-known labels and masks to compare against.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ucag.eval import datasets
from ucag.eval.datasets import (
    COCODetection2014,
    EvalSample,
    ImageNetSegmentation,
    ImageNetVal,
    SampleImages,
    VOCDetection2007,
    open_dataset,
)

h5py = pytest.importorskip("h5py")
pycocotools_coco = pytest.importorskip("pycocotools.coco")


def grid(rows: str) -> np.ndarray:
    """A bool mask drawn as text: one string per row, '#' = True, '.' = False."""
    return np.array([[c == "#" for c in row] for row in rows.split()], dtype=bool)


def save_photo(path: Path, height: int, width: int, mode: str = "RGB", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


# ---------------------------------------------------------------------------------------
# ImageNet


def write_imagenet_flat(root: Path) -> Path:
    """A flat val folder (an RGB, a grayscale and a CMYK JPEG) and its val.txt; returns val.txt."""
    save_photo(root / "val" / "ILSVRC2012_val_00000001.JPEG", 5, 7, "RGB")
    save_photo(root / "val" / "ILSVRC2012_val_00000002.JPEG", 6, 4, "L")
    save_photo(root / "val" / "ILSVRC2012_val_00000003.JPEG", 3, 3, "CMYK")
    labels = root / "val.txt"
    labels.write_text(
        "ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n\nILSVRC2012_val_00000003.JPEG 0\n"
    )
    return labels


def write_imagenet_folder(root: Path) -> None:
    """An ImageFolder tree with two WordNet-id folders (created out of order) and a stray text file."""
    save_photo(root / "n01443537" / "ILSVRC2012_val_00000236.JPEG", 4, 4)
    save_photo(root / "n01440764" / "ILSVRC2012_val_00000293.JPEG", 4, 5)
    save_photo(root / "n01440764" / "ILSVRC2012_val_00002138.JPEG", 5, 4, "L")
    (root / "n01440764" / "notes.txt").write_text("not an image")


def test_imagenet_flat_folder(tmp_path):
    labels = write_imagenet_flat(tmp_path)
    ds = ImageNetVal(tmp_path / "val", labels)
    assert len(ds) == 3 and ds.layout == "flat"
    assert len(ds.class_names) == 1000 and ds.class_names[0] == "tench"
    samples = list(ds)
    assert [s.id for s in samples] == [f"ILSVRC2012_val_0000000{i}" for i in (1, 2, 3)]
    assert [s.target for s in samples] == [65, 970, 0]
    assert [s.class_name for s in samples] == [ds.class_names[65], ds.class_names[970], "tench"]
    assert [s.rgb.shape for s in samples] == [(5, 7, 3), (6, 4, 3), (3, 3, 3)]
    assert all(s.rgb.dtype == np.uint8 and s.mask is None and not s.difficult for s in samples)
    gray = samples[1].rgb
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert ds[-1].id == samples[2].id and ds.sample_id(1) == samples[1].id
    with pytest.raises(IndexError):
        ds[3]
    assert "3 images" in repr(ds) and "val.txt" in repr(ds)


def test_imagenet_image_folder(tmp_path):
    write_imagenet_folder(tmp_path)
    with pytest.warns(UserWarning, match="2 class sub-folders"):
        ds = ImageNetVal(tmp_path)
    assert ds.layout == "imagefolder" and len(ds) == 3
    assert [ds.sample_id(i) for i in range(3)] == [
        "ILSVRC2012_val_00000293",
        "ILSVRC2012_val_00002138",
        "ILSVRC2012_val_00000236",
    ]
    assert [s.target for s in ds] == [0, 0, 1]  # position of the wnid in sorted order
    assert [s.class_name for s in ds] == ["tench", "tench", "goldfish"]
    assert ds[1].rgb.shape == (5, 4, 3)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ILSVRC2012_val_00000002.JPEG", "line 2: expected 'filename label'"),
        ("ILSVRC2012_val_00000002.JPEG dog", "line 2: label 'dog' is not an integer"),
        ("ILSVRC2012_val_00000002.JPEG 1000", "line 2: label 1000 outside 0..999"),
        ("ILSVRC2012_val_00000001.JPEG 3", "line 2: 'ILSVRC2012_val_00000001.JPEG' already labelled on line 1"),
    ],
)
def test_imagenet_malformed_labels(tmp_path, line, message):
    write_imagenet_flat(tmp_path)
    labels = tmp_path / "bad.txt"
    labels.write_text(f"ILSVRC2012_val_00000001.JPEG 65\n{line}\n")
    with pytest.raises(ValueError, match=message):
        ImageNetVal(tmp_path / "val", labels)


def test_imagenet_missing_paths(tmp_path):
    labels = write_imagenet_flat(tmp_path)
    with pytest.raises(FileNotFoundError, match="ImageNet val root.*nowhere"):
        ImageNetVal(tmp_path / "nowhere", labels)
    with pytest.raises(FileNotFoundError, match="labels file.*missing.txt"):
        ImageNetVal(tmp_path / "val", tmp_path / "missing.txt")
    (tmp_path / "val" / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="1 images.*ILSVRC2012_val_00000002.JPEG"):
        ImageNetVal(tmp_path / "val", labels)
    with pytest.raises(FileNotFoundError, match="no class sub-folders.*labels="):
        ImageNetVal(tmp_path / "val")  # a flat folder read as ImageFolder


# ---------------------------------------------------------------------------------------
# PASCAL VOC 2007


def voc_object(name: str, box: tuple[int, int, int, int], difficult: bool = False, parts: str = "") -> str:
    """One <object>; ``parts`` (person-layout <part> elements) go BEFORE the object's own
    bndbox so a reader that takes the first bndbox anywhere below <object> fails."""
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(difficult)}</difficult>{parts}"
        f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>"
        "</object>"
    )


def write_voc2007(root: Path, objects_by_image: dict[str, tuple[tuple[int, int], list[str]]]) -> None:
    """VOCdevkit/VOC2007 with JPEGImages, Annotations and ImageSets/Main/test.txt."""
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for index, (name, ((height, width), objects)) in enumerate(objects_by_image.items()):
        save_photo(voc / "JPEGImages" / f"{name}.jpg", height, width, seed=index)
        (voc / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>"
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{''.join(objects)}</annotation>"
        )
    (voc / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{n}\n" for n in objects_by_image))


#: A person-layout part: its box lies outside the person's and must not enter the mask.
HEAD_PART = "<part><name>head</name><bndbox><xmin>7</xmin><ymin>1</ymin><xmax>8</xmax><ymax>2</ymax></bndbox></part>"

VOC_IMAGES = {
    # 6 x 8: two dog boxes; a difficult person whose head part has a box of its own.
    "000001": (
        (6, 8),
        [
            voc_object("dog", (2, 1, 4, 3)),
            voc_object("person", (1, 5, 3, 6), difficult=True, parts=HEAD_PART),
            voc_object("dog", (6, 4, 8, 6)),
        ],
    ),
    # 4 x 5: a plain cat, then a difficult cat covering everything (the last instance's
    # flag is not the class's: difficult means ALL of them are).
    "000002": ((4, 5), [voc_object("cat", (2, 2, 3, 3)), voc_object("cat", (1, 1, 5, 4), difficult=True)]),
}


def test_voc2007_pairs_masks_and_difficult(tmp_path):
    write_voc2007(tmp_path, VOC_IMAGES)
    ds = VOCDetection2007(tmp_path)
    assert ds.class_names[0] == "aeroplane" and ds.class_names[-1] == "tvmonitor" and len(ds.class_names) == 20
    assert [ds.sample_id(i) for i in range(len(ds))] == ["000001:dog", "000001:person", "000002:cat"]
    dog, person, cat = ds
    assert (dog.target, dog.class_name, dog.difficult) == (11, "dog", False)
    assert (person.target, person.class_name, person.difficult) == (14, "person", True)
    assert (cat.target, cat.class_name, cat.difficult) == (7, "cat", False)  # one of two cats is difficult
    assert dog.rgb.shape == (6, 8, 3)
    # Box xmin=2..xmax=4, ymin=1..ymax=3 (1-based inclusive) covers columns 1..3, rows 0..2.
    np.testing.assert_array_equal(
        dog.mask,
        grid("""
            .###....
            .###....
            .###....
            .....###
            .....###
            .....###
        """),
    )
    np.testing.assert_array_equal(person.mask, grid("........ ........ ........ ........ ###..... ###....."))
    np.testing.assert_array_equal(cat.mask, np.ones((4, 5), dtype=bool))
    assert "3 (image, class) samples from 2 images" in repr(ds)


def test_voc2007_without_difficult(tmp_path):
    write_voc2007(tmp_path, VOC_IMAGES)
    ds = VOCDetection2007(tmp_path, include_difficult=False)
    assert [ds.sample_id(i) for i in range(len(ds))] == ["000001:dog", "000002:cat"]  # person was all difficult
    cat = ds[1]
    assert not cat.difficult
    np.testing.assert_array_equal(cat.mask, grid("..... .##.. .##.. ....."))


def test_voc2007_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOCdevkit/VOC2007"):
        VOCDetection2007(tmp_path)
    write_voc2007(tmp_path, {"000001": ((4, 4), [voc_object("unicorn", (1, 1, 2, 2))])})
    with pytest.raises(FileNotFoundError, match="image set 'val'"):
        VOCDetection2007(tmp_path, image_set="val")
    with pytest.raises(ValueError, match="000001.xml, object 1: unknown class 'unicorn'"):
        VOCDetection2007(tmp_path)
    (tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000001.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="000001.xml: malformed XML.*line 1"):
        VOCDetection2007(tmp_path)


# ---------------------------------------------------------------------------------------
# COCO 2014


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (iscrowd annotations): run lengths in column-major order,
    starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


CROWD = grid("""
    ..........
    ..........
    ..........
    ..........
    ........##
    ........##
""")


def write_coco2014(root: Path) -> Path:
    """val2014/ with three photos and instances_val2014.json: polygons, a crowd RLE, an
    image without annotations, category ids that are neither contiguous nor in order."""
    for image_id, (height, width) in {42: (6, 10), 73: (5, 5), 99: (4, 4)}.items():
        save_photo(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", height, width, seed=image_id)
    polygon = lambda x0, y0, x1, y1: [[x0, y0, x1, y0, x1, y1, x0, y1]]  # noqa: E731
    instances = {
        "info": {},
        "licenses": [],
        "images": [
            {"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "height": h, "width": w}
            for i, (h, w) in {73: (5, 5), 42: (6, 10), 99: (4, 4)}.items()
        ],
        "categories": [
            {"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 10, "name": "traffic light", "supercategory": "outdoor"},
        ],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 1, "iscrowd": 0, "area": 4.0, "bbox": [1, 1, 2, 2],
             "segmentation": polygon(1, 1, 3, 3)},
            {"id": 2, "image_id": 42, "category_id": 1, "iscrowd": 1, "area": 4.0, "bbox": [8, 4, 2, 2],
             "segmentation": uncompressed_rle(CROWD)},
            {"id": 3, "image_id": 42, "category_id": 18, "iscrowd": 0, "area": 6.0, "bbox": [5, 0, 3, 2],
             "segmentation": polygon(5, 0, 8, 2)},
            {"id": 4, "image_id": 73, "category_id": 10, "iscrowd": 0, "area": 9.0, "bbox": [0, 0, 3, 3],
             "segmentation": polygon(0, 0, 3, 3)},
        ],
    }  # fmt: skip
    path = root / "annotations" / "instances_val2014.json"
    path.parent.mkdir()
    path.write_text(json.dumps(instances))
    return path


# pycocotools' mask decoder predates NumPy 2's copy keyword; not ours to fix.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_coco2014_pairs_and_masks(tmp_path):
    annotations = write_coco2014(tmp_path)
    ds = COCODetection2014(tmp_path / "val2014", annotations)
    assert ds.class_names == ["person", "traffic light", "dog"]  # sorted ids 1, 10, 18
    # Image 99 has no annotations; pairs follow image id, then category id.
    assert [ds.sample_id(i) for i in range(len(ds))] == [
        "000000000042:person",
        "000000000042:dog",
        "000000000073:traffic_light",
    ]
    samples = list(ds)
    assert [(s.target, s.class_name) for s in samples] == [(0, "person"), (2, "dog"), (1, "traffic light")]
    assert samples[0].rgb.shape == (6, 10, 3) and samples[2].rgb.shape == (5, 5, 3)
    # The masks are pycocotools' own rasterisation, crowd region included.
    coco = pycocotools_coco.COCO(str(annotations))
    expected = [
        coco.annToMask(coco.anns[1]) | coco.annToMask(coco.anns[2]),
        coco.annToMask(coco.anns[3]),
        coco.annToMask(coco.anns[4]),
    ]
    for sample, mask in zip(samples, expected, strict=True):
        np.testing.assert_array_equal(sample.mask, mask.astype(bool))
    assert (samples[0].mask & CROWD).sum() == CROWD.sum()
    assert samples[0].mask[2, 2] and not samples[0].mask[0, 0]
    assert "3 (image, category) samples from 2 images, 3 categories" in repr(ds)


def test_coco2014_errors(tmp_path, capsys):
    annotations = write_coco2014(tmp_path)
    assert capsys.readouterr().out == ""
    with pytest.raises(FileNotFoundError, match="COCO 2014 image folder.*nowhere"):
        COCODetection2014(tmp_path / "nowhere", annotations)
    with pytest.raises(FileNotFoundError, match="COCO instances annotation file.*missing.json"):
        COCODetection2014(tmp_path / "val2014", tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  oops]}')
    with pytest.raises(ValueError, match="broken.json: malformed JSON.*line 2"):
        COCODetection2014(tmp_path / "val2014", broken)
    ds = COCODetection2014(tmp_path / "val2014", annotations)
    assert capsys.readouterr().out == ""  # pycocotools' progress lines are silenced
    (tmp_path / "val2014" / "COCO_val2014_000000000073.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="COCO_val2014_000000000073.jpg"):
        ds[2]


# ---------------------------------------------------------------------------------------
# ImageNet segmentation (gtsegs_ijcv.mat)


def write_gtsegs(path: Path, photos: list[np.ndarray], masks: list[np.ndarray]) -> None:
    """A gtsegs_ijcv.mat-like MATLAB v7.3 file: /value/img (N, 1) references to images
    stored (3, W, H) and /value/gt (N, 1) references to (1, 1) cells that reference the
    (W, H) masks; MATLAB writes column-major, hence the reversed axes."""
    with h5py.File(path, "w") as mat:
        refs = mat.create_group("#refs#")
        image_refs, cell_refs = [], []
        for index, (photo, mask) in enumerate(zip(photos, masks, strict=True)):
            image = refs.create_dataset(f"img{index}", data=photo.transpose(2, 1, 0) if photo.ndim == 3 else photo.T)
            stored_mask = refs.create_dataset(f"gt{index}", data=mask.T.astype(np.uint8))
            cell = refs.create_dataset(f"cell{index}", data=np.array([[stored_mask.ref]], dtype=h5py.ref_dtype))
            image_refs.append(image.ref)
            cell_refs.append(cell.ref)
        mat.create_dataset("value/img", data=np.array(image_refs, dtype=h5py.ref_dtype).reshape(-1, 1))
        mat.create_dataset("value/gt", data=np.array(cell_refs, dtype=h5py.ref_dtype).reshape(-1, 1))


def gtsegs_fixture(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    height, width = 4, 6  # non-square: a wrong transpose changes the shape or the pattern
    rows, cols = np.mgrid[:height, :width]
    photo = np.stack([rows * 10 + cols, rows, cols], axis=-1).astype(np.uint8)
    mask = grid("######  #.....  #.....  #.....")  # an asymmetric L
    gray = (np.arange(3 * 5).reshape(3, 5) * 7).astype(np.uint8)
    gray_mask = grid(".#### ..... .....")
    path = tmp_path / "gtsegs_ijcv.mat"
    write_gtsegs(path, [photo, gray], [mask, gray_mask])
    return path, [photo, np.repeat(gray[..., None], 3, axis=2)], [mask, gray_mask]


def test_imagenet_segmentation_orientation(tmp_path):
    path, photos, masks = gtsegs_fixture(tmp_path)
    with ImageNetSegmentation(path) as ds:
        assert len(ds) == 2 and len(ds.class_names) == 1000
        for index, sample in enumerate(ds):
            assert sample.id == f"gtsegs_{index:05d}"
            assert sample.target is None and sample.class_name == ""
            np.testing.assert_array_equal(sample.rgb, photos[index])
            np.testing.assert_array_equal(sample.mask, masks[index])
        assert ds[0].rgb[2, 5].tolist() == [25, 2, 5]  # row 2, column 5
    assert ds._file is None  # closed by the with block
    assert ds[1].mask.shape == (3, 5)  # and reopened on demand
    ds.close()
    assert "2 images with masks" in repr(ds)


def test_imagenet_segmentation_across_processes(tmp_path):
    path, photos, _ = gtsegs_fixture(tmp_path)
    ds = ImageNetSegmentation(path)
    ds[0]  # the parent now holds a handle, which the forked worker must not use
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy[1].rgb, photos[1])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=datasets.collate_samples)
    (batch,) = list(loader)
    assert [s.id for s in batch] == ["gtsegs_00000", "gtsegs_00001"]
    np.testing.assert_array_equal(batch[0].rgb, photos[0])
    np.testing.assert_array_equal(ds[1].rgb, photos[1])  # the parent's handle survived the worker
    ds.close()
    copy.close()


def test_imagenet_segmentation_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="gtsegs_ijcv.mat.*nowhere.mat"):
        ImageNetSegmentation(tmp_path / "nowhere.mat")
    not_hdf5 = tmp_path / "old.mat"
    not_hdf5.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(ValueError, match="not an HDF5 file"):
        ImageNetSegmentation(not_hdf5)
    other = tmp_path / "other.mat"
    with h5py.File(other, "w") as mat:
        mat["images"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="/value/img and /value/gt"):
        ImageNetSegmentation(other)


# ---------------------------------------------------------------------------------------
# Bundled photos


def test_sample_images_real_photos():
    from ucag.data import SAMPLE_PHOTOS, sample_image

    ds = SampleImages()
    assert len(ds) == len(SAMPLE_PHOTOS) and [ds.sample_id(i) for i in range(len(ds))] == list(SAMPLE_PHOTOS)
    samples = {s.id: s for s in ds}
    assert (samples["chelsea"].target, samples["chelsea"].class_name) == (285, "Egyptian cat")
    assert (samples["coffee"].target, samples["coffee"].class_name) == (967, "espresso")
    for name in ("astronaut", "rocket", "voc"):
        assert samples[name].target is None
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        assert samples[name].mask is None and samples[name].rgb.dtype == np.uint8
    voc = samples["voc"]
    instances = sample_image("voc").masks
    assert voc.mask.any() and voc.mask.shape == voc.rgb.shape[:2]
    np.testing.assert_array_equal(voc.mask, np.logical_or.reduce(instances, axis=0))
    assert [s.id for s in SampleImages(["voc", "coffee"])] == ["voc", "coffee"]
    with pytest.raises(ValueError, match="unknown photos \\['cat'\\]"):
        SampleImages(["cat"])


# ---------------------------------------------------------------------------------------
# Samples and specs


def test_eval_sample_checks_and_repr():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    sample = EvalSample("a", rgb, 7, np.ones((2, 3), dtype=bool), "cat", difficult=True)
    assert repr(sample) == "EvalSample('a', 3x2, target 7 'cat', mask 6 px, difficult)"
    assert "target prediction, mask none" in repr(EvalSample("b", rgb, None, None))
    with pytest.raises(ValueError, match="rgb must be uint8"):
        EvalSample("c", rgb.astype(np.float32), None, None)
    with pytest.raises(ValueError, match="mask must be bool"):
        EvalSample("d", rgb, None, np.ones((3, 2), dtype=bool))


def test_open_dataset(tmp_path):
    labels = write_imagenet_flat(tmp_path)
    write_voc2007(tmp_path / "voc", VOC_IMAGES)
    annotations = write_coco2014(tmp_path / "coco")
    path, _, _ = gtsegs_fixture(tmp_path)

    imagenet = open_dataset(f"imagenet:{tmp_path / 'val'}:{labels}")
    assert isinstance(imagenet, ImageNetVal) and imagenet.labels == labels and len(imagenet) == 3
    write_imagenet_folder(tmp_path / "tree")
    with pytest.warns(UserWarning):
        assert open_dataset(f"imagenet:{tmp_path / 'tree'}").layout == "imagefolder"
    voc = open_dataset(f"voc2007:{tmp_path / 'voc'}", include_difficult=False)
    assert isinstance(voc, VOCDetection2007) and len(voc) == 2
    coco = open_dataset(f"coco2014:{tmp_path / 'coco' / 'val2014'}:{annotations}")
    assert isinstance(coco, COCODetection2014) and len(coco) == 3
    segmentation = open_dataset(f"imagenet-seg:{path}")
    assert isinstance(segmentation, ImageNetSegmentation) and len(segmentation) == 2
    assert isinstance(open_dataset("samples", names=("chelsea",)), SampleImages)

    for spec in ("cifar10:/data", "imagenet:", "coco2014:/data", "voc2007:/a:/b", "samples:chelsea", ""):
        with pytest.raises(ValueError, match="expected one of samples, imagenet:ROOT\\[:LABELS\\], voc2007:ROOT"):
            open_dataset(spec)


def test_spec_paths_keep_windows_drives():
    assert datasets._split_paths("/data/val:/data/val.txt") == ["/data/val", "/data/val.txt"]
    assert datasets._split_paths(r"C:\imagenet\val:D:\labels\val.txt") == [r"C:\imagenet\val", r"D:\labels\val.txt"]
    assert datasets._split_paths("C:/coco:ann.json") == ["C:/coco", "ann.json"]
