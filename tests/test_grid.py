"""ucag.Grid: geometry from docs/algorithm.md §1, against the reference arithmetic."""

import pickle

import numpy as np
import pytest

import spec_reference as ref
import ucag


def test_paper_defaults():
    g = ucag.Grid(224)
    assert g.image_size == (224, 224)
    assert g.units == 6 and g.num_patches == 36
    assert g.patch_size == (124, 124)
    assert g.scaled_size == (322, 322)
    assert g.offsets_y == (0, 20, 40, 60, 80, 100)
    assert g.offsets_x == g.offsets_y
    assert "Grid(image_size=(224, 224), units=6" in repr(g)


@pytest.mark.parametrize(
    "image,units,patch,scale,scaled",
    [
        ((224, 224), 6, None, 2.6, None),
        ((101, 57), 4, None, 2.0, None),
        ((300, 33), 8, None, 1.3, None),
        ((32, 300), 5, (20, 200), 1.0, None),
        ((45, 45), 1, 45, 2.6, None),
        ((64, 80), 3, None, 2.6, (50, 60)),
        ((7, 9), 2, (4, 5), 0.1, None),
    ],
)
def test_geometry_matches_reference(image, units, patch, scale, scaled):
    g = ucag.Grid(image, units=units, patch_size=patch, scale=scale, scaled_size=scaled)
    patch_pair = (patch, patch) if isinstance(patch, int) else patch
    r = ref.geometry(image, units, patch_pair, scale, scaled)
    assert g.patch_size == r.patch
    assert g.scaled_size == r.scaled
    assert list(g.offsets_y) == r.offsets_y
    assert list(g.offsets_x) == r.offsets_x
    cov = g.coverage()
    assert cov.dtype == np.int32 and cov.shape == image
    expected = np.zeros(image, dtype=np.int32)
    h, w = r.patch
    for y in r.offsets_y:
        for x in r.offsets_x:
            expected[y : y + h, x : x + w] += 1
    np.testing.assert_array_equal(cov, expected)
    assert cov.min() >= 1


def test_grid_is_frozen_hashable_and_picklable():
    g = ucag.Grid((120, 90), units=4)
    with pytest.raises(AttributeError):
        g.units = 3
    assert g == ucag.Grid((120, 90), units=4)
    assert hash(g) == hash(ucag.Grid((120, 90), units=4))
    assert g != ucag.Grid((120, 90), units=5)
    assert pickle.loads(pickle.dumps(g)) == g


@pytest.mark.parametrize(
    "kwargs,argument,exc",
    [
        (dict(image_size=0), "image_size", ValueError),
        (dict(image_size=(-3, 10)), "image_size", ValueError),
        (dict(image_size=(1, 2, 3)), "image_size", ValueError),
        (dict(image_size="big"), "image_size", TypeError),
        (dict(image_size=224, units=0), "units", ValueError),
        (dict(image_size=224, units=-2), "units", ValueError),
        (dict(image_size=224, units=1), "units", ValueError),
        (dict(image_size=224, patch_size=300), "patch_size", ValueError),
        (dict(image_size=224, patch_size=(10, 10), units=3), "patch_size", ValueError),
        (dict(image_size=224, scale=0.0), "scale", ValueError),
        (dict(image_size=224, scale=-2.6), "scale", ValueError),
        (dict(image_size=224, scale=float("nan")), "scale", ValueError),
        (dict(image_size=224, scale=float("inf")), "scale", ValueError),
        (dict(image_size=224, scale=1e6), "scale", ValueError),
        (dict(image_size=224, scaled_size=(0, 5)), "scaled_size", ValueError),
    ],
)
def test_invalid_geometry_names_the_argument(kwargs, argument, exc):
    with pytest.raises(exc, match=argument):
        ucag.Grid(**kwargs)
