"""ucag.GridSpec: the grid settings independent of the image size, against the Rust grid
and the explainer that uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ucag
from ucag.grid import GridSpec, round_half_up


def test_default_spec_is_the_papers_grid():
    spec = GridSpec()
    assert (spec.units, spec.patch_size, spec.scale) == (6, None, 2.6)
    assert spec.grid((224, 224)) == ucag.Grid(224)
    assert spec.grid((224, 224)).patch_size == (124, 124) and spec.grid((224, 224)).scaled_size == (322, 322)
    assert spec.grid((300, 170)) == ucag.Grid((300, 170))


@pytest.mark.parametrize(
    ("patch", "size", "expected"),
    [
        (100, (224, 224), (100, 100)),
        ((90, 110), (224, 224), (90, 110)),
        ([90, 110], (224, 224), (90, 110)),
        (np.int64(80), (224, 224), (80, 80)),
        (0.5, (224, 300), (112, 150)),
        (124 / 224, (224, 224), (124, 124)),
        (0.375, (12, 12), (5, 5)),  # 4.5 rounds half up, not to even
        (1.0, (100, 80), (100, 80)),
        ("image", (100, 80), (100, 80)),
    ],
)
def test_patch_size_forms(patch, size, expected):
    spec = GridSpec(units=3, patch_size=patch)
    assert spec.grid(size).patch_size == expected
    assert spec.grid(size) == ucag.Grid(size, units=3, patch_size=expected)


def test_a_fraction_gives_at_least_one_pixel():
    assert GridSpec(units=3, patch_size=0.01).patch_pixels((20, 20)) == (1, 1)


def test_round_half_up():
    assert [round_half_up(v) for v in (0.5, 1.5, 2.5, 2.4999, -0.5)] == [1, 2, 3, 2, 0]


def test_specs_are_frozen_and_hashable():
    spec = GridSpec(4, (10, 12), 2.0)
    with pytest.raises(AttributeError):
        spec.units = 5  # type: ignore[misc]
    assert GridSpec(4, [10, 12], 2) == spec and hash(GridSpec(4, [10, 12], 2)) == hash(spec)
    assert GridSpec(4, 10) == GridSpec(4, (10, 10))


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"units": 0}, ValueError, "units"),
        ({"units": 2.0}, TypeError, "units"),
        ({"units": True}, TypeError, "units"),
        ({"patch_size": 0}, ValueError, "patch_size"),
        ({"patch_size": (10, -1)}, ValueError, "patch_size"),
        ({"patch_size": 1.5}, ValueError, "patch_size"),
        ({"patch_size": 0.0}, ValueError, "patch_size"),
        ({"patch_size": float("nan")}, ValueError, "patch_size"),
        ({"patch_size": "whole"}, TypeError, "patch_size"),
        ({"patch_size": (10, 10, 10)}, TypeError, "patch_size"),
        ({"patch_size": True}, TypeError, "patch_size"),
        ({"scale": 0}, ValueError, "scale"),
        ({"scale": float("inf")}, ValueError, "scale"),
        ({"scale": "2"}, TypeError, "scale"),
    ],
)
def test_bad_settings_raise_at_once_naming_the_argument(kwargs, error, argument):
    with pytest.raises(error, match=f"^{argument}: "):
        GridSpec(**kwargs)


def test_size_dependent_errors_come_from_the_grid():
    with pytest.raises(ValueError, match="patch_size"):
        GridSpec(patch_size=300).grid((224, 224))
    with pytest.raises(ValueError, match="units"):
        GridSpec(units=1, patch_size=100).grid((224, 224))
    assert GridSpec(units=1, patch_size="image").grid((224, 200)).num_patches == 1


def test_explainer_takes_any_patch_form_and_builds_no_probe_grid():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5)
    ).eval()
    x = torch.randn(1, 3, 40, 60)

    def base(patches, targets):
        return patches.mean(dim=1)

    by_fraction = ucag.UCAG(base, model=model, units=3, patch_size=0.5, scale=1.5).explain(x, [1])
    by_pixels = ucag.UCAG(base, model=model, units=3, patch_size=(20, 30), scale=1.5).explain(x, [1])
    assert by_fraction.grid == by_pixels.grid
    torch.testing.assert_close(by_fraction.raw, by_pixels.raw, rtol=0, atol=0)
    explainer = ucag.UCAG(base, model=model, units=3, patch_size=0.5, scale=1.5)
    assert explainer.grid_spec == GridSpec(3, 0.5, 1.5) and explainer.patch_size == 0.5
    # a patch larger than one image is an error for that image only, not at construction
    large = ucag.UCAG(base, model=model, units=2, patch_size=50)
    with pytest.raises(ValueError, match="patch_size"):
        large.explain(x[..., :40, :40], [1])
    assert large.explain(torch.randn(1, 3, 64, 64), [1]).grid.patch_size == (50, 50)


def test_scaled_size_replaces_scale_and_is_checked():
    """``scaled_size`` (what a fixed-resolution model needs) fixes the patches' size after
    upsampling, whatever ``scale`` says; bad values name the argument."""
    assert GridSpec(2, None, 2.6, 100).grid((50, 50)).scaled_size == (100, 100)
    assert GridSpec(2, 0.5, 9.0, (64, 48)).grid((40, 30)).scaled_size == (64, 48)
    assert GridSpec(2, 0.5, 9.0, [64, 48]).scaled_size == (64, 48)
    bad_values = [(0, ValueError), (-1, ValueError), ((0, 5), ValueError)]
    bad_values += [(bad, TypeError) for bad in (True, 2.5, (1, 2, 3), "224")]  # not a size at all
    for bad, error in bad_values:
        with pytest.raises(error, match=r"scaled_size: expected a positive int or an \(h, w\) pair"):
            GridSpec(2, None, 2.6, bad)
