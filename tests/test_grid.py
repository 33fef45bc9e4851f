"""ucag.Grid: geometry from docs/algorithm.md §1, against the reference arithmetic."""

import inspect
import itertools
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


def test_signature_and_argument_forms():
    assert str(inspect.signature(ucag.Grid)) == "(image_size, units=6, patch_size=None, scale=2.6, scaled_size=None)"
    g = ucag.Grid(np.array([64, 48]), units=np.int64(3), patch_size=[40, 30], scale=np.float32(1.5))
    assert (g.image_size, g.units, g.patch_size, g.scaled_size) == ((64, 48), 3, (40, 30), (60, 45))


def valid_before_the_limits(image, units, patch):
    """The rules before the image-size limits: the patch fits the image, units=1 takes the
    whole image, neighbouring patches leave no pixel uncovered."""
    r = ref.geometry(image, units, patch)
    h, w = r.patch
    if h > image[0] or w > image[1] or (units == 1 and (h, w) != image):
        return False
    return all(
        b - a <= side for offsets, side in ((r.offsets_y, h), (r.offsets_x, w)) for a, b in itertools.pairwise(offsets)
    )


def test_the_units_limit_is_the_only_new_refusal_of_small_grids():
    """Every grid valid before stays valid, except those with more units than the image's
    shorter side: an axis of S pixels has at most S distinct patch positions."""
    sides = (1, 2, 3, 5, 8, 13, 21)
    for image in [(h, w) for h in sides for w in sides]:
        for units in range(1, 12):
            for patch in (None, image, (max(1, image[0] // 2), max(1, image[1] // 3))):
                before = valid_before_the_limits(image, units, patch)
                try:
                    g = ucag.Grid(image, units=units, patch_size=patch)
                except ValueError as err:
                    assert not before or units > min(image), (image, units, patch, err)
                    if before:
                        assert str(err).startswith(
                            f"units: must be at most {min(image)}, the shorter side of image_size {image}"
                        ), err
                    continue
                assert before and units <= min(image), (image, units, patch)
                r = ref.geometry(image, units, patch)
                assert (list(g.offsets_y), list(g.offsets_x)) == (r.offsets_y, r.offsets_x)


def test_grids_at_the_limits_are_valid():
    g = ucag.Grid((64, 40), units=40, patch_size=(25, 1), scaled_size=(32768, 32768))
    assert g.offsets_x == tuple(range(40)) and g.scaled_size == (32768, 32768)
    # a patch as large as the image repeats its one position, and stays valid
    g = ucag.Grid((100, 80), units=3, patch_size=(100, 80))
    assert g.offsets_y == (0, 0, 0) and g.coverage().min() == 9
    # round_half_up(scale * 35) <= 32768 exactly when scale < 32768.5 / 35
    assert ucag.Grid(64, patch_size=35, scale=936.24).scaled_size == (32768, 32768)
    g = ucag.Grid((2**31, 2**31), units=1024, scale=1e-9)  # 2^62 pixels: within the pixel limit
    assert g.num_patches == 2**20


@pytest.mark.parametrize(
    "kwargs,exc,message",
    [
        (
            dict(image_size=2**62),
            ValueError,
            "image_size: (4611686018427387904, 4611686018427387904) has 21267647932558653966460912964485513216 pixels, more than the 9223372036854775807 elements an array can address",
        ),
        (
            dict(image_size=(2**64, 3)),
            ValueError,
            "image_size: each side must be at most 9223372036854775807, got (18446744073709551616, 3)",
        ),
        (dict(image_size=(2**64, -3)), ValueError, "image_size: must be positive, got (18446744073709551616, -3)"),
        (dict(image_size=64.0), TypeError, "image_size: must be an int or an (h, w) pair of ints, got float"),
        (
            dict(image_size=64, units=65),
            ValueError,
            "units: must be at most 64, the shorter side of image_size (64, 64): an axis of S pixels has at most S distinct patch positions, got 65",
        ),
        (
            dict(image_size=(300, 40), units=41, patch_size=1),
            ValueError,
            "units: must be at most 40, the shorter side of image_size (300, 40)",
        ),
        (
            dict(image_size=2000, units=1025),
            ValueError,
            "units: must be at most 1024 (1024^2 patches per image), got 1025",
        ),
        (
            dict(image_size=64, units=2**64),
            ValueError,
            "units: must be at most 1024 (1024^2 patches per image), got 18446744073709551616",
        ),
        (dict(image_size=64, units=-(2**64)), ValueError, "units: must be at least 1, got -18446744073709551616"),
        (dict(image_size=64, units=1.5), TypeError, "units: must be an int, got float"),
        (dict(image_size=64, units=None), TypeError, "units: must be an int, got NoneType"),
        (
            dict(image_size=64, patch_size=(2**70, 3)),
            ValueError,
            "patch_size: each side must be at most 9223372036854775807, got (1180591620717411303424, 3)",
        ),
        (
            dict(image_size=64, scale=1e300),
            ValueError,
            "scale: must be below 936.2428571428571 for patch_size (35, 35): scaled patches are limited to 32768 px per side, got 1e300",
        ),
        (
            dict(image_size=64, patch_size=35, scale=936.25),
            ValueError,
            "scale: must be below 936.2428571428571 for patch_size (35, 35)",
        ),
        (
            dict(image_size=64, scale=10**400),
            ValueError,
            "scale: must be a finite number > 0, got 100000000000...0000 (401 characters): beyond the float range",
        ),
        (dict(image_size=64, scale="big"), TypeError, "scale: must be a number, got str"),
        (
            dict(image_size=64, scaled_size=2**40),
            ValueError,
            "scaled_size: each side must be at most 32768 px, got (1099511627776, 1099511627776)",
        ),
        (
            dict(image_size=64, scaled_size=(5, 32769)),
            ValueError,
            "scaled_size: each side must be at most 32768 px, got (5, 32769)",
        ),
    ],
)
def test_limits_name_the_argument_and_the_limit(kwargs, exc, message):
    with pytest.raises(exc) as raised:
        ucag.Grid(**kwargs)
    assert str(raised.value).startswith(message)
