"""ucag.viz on real maps of the real sample model: RGB order, dtypes, batch of one,
non-square images, round trips of normalised tensors, errors naming the argument, and one
figure compared pixel-wise with a stored reference.

Regenerate the reference image (after an intended change of the drawing) with
``UCAG_REGENERATE_BASELINES=1 python -m pytest tests/test_viz.py -k reference``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the tests draw off-screen; ucag.viz itself never picks a backend

import matplotlib.pyplot as plt
import matplotlib.testing
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.testing.compare import compare_images
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import ucag
import ucag.data
from ucag import viz
from ucag.eval import metrics, plot_curves

BASELINES = Path(__file__).parent / "baseline_images"
CAT = 285  # ImageNet "Egyptian cat"


@pytest.fixture(scope="module")
def sample(sample_model, photos):
    """One real model, photo, base map and UCAG explanations (square and 224 x 160),
    computed once: the model and the explanations are the slow part."""
    sm = sample_model
    photo = ucag.data.sample_image("chelsea").rgb
    x = photos["chelsea"]
    cam = GradCAM(model=sm.model, target_layers=[sm.target_layer])
    explainer = ucag.UCAG(cam, units=3)
    x_tall = x[..., :160].contiguous()  # non-square: 224 rows, 160 columns
    explanation = explainer.explain(x, [CAT])
    explanation_tall = explainer.explain(x_tall, [CAT])
    base_map = cam(input_tensor=x, targets=[ClassifierOutputTarget(CAT)])
    explainer.__exit__()
    return {
        "sm": sm,
        "photo": photo,
        "x": x,
        "x_tall": x_tall,
        "explanation": explanation,
        "explanation_tall": explanation_tall,
        "base_map": base_map,
    }


@pytest.fixture(scope="module")
def curves(sample):
    """Deletion and insertion of the real GradCAM and UCAG maps, in 4 coarse steps and one
    batch of two (one metric call per kind) to stay fast."""
    sm, x = sample["sm"], sample["x"]
    inputs = torch.cat([x, x])
    maps = torch.cat([torch.from_numpy(sample["base_map"]), sample["explanation"].saliency])
    out = {}
    for kind, metric in (("deletion", metrics.deletion), ("insertion", metrics.insertion)):
        both = metric(sm.model, inputs, maps, [CAT, CAT], step=224 * 56)
        out[kind] = {
            name: metrics.MetricResult(kind, both.values[k : k + 1], both.curves[k : k + 1])
            for k, name in enumerate(("GradCAM", "UCAG"))
        }
    return out


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def red_image(dtype=np.uint8, size=(12, 8)) -> np.ndarray:
    image = np.zeros((*size, 3), dtype=dtype)
    image[..., 0] = 255 if dtype == np.uint8 else 1.0
    return image


# --------------------------------------------------------------------------------------
# overlay
# --------------------------------------------------------------------------------------


def test_import_neither_imports_matplotlib_nor_picks_a_backend(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ucag.viz called matplotlib.use() at import")

    monkeypatch.setattr(matplotlib, "use", refuse)
    backend = matplotlib.get_backend()
    importlib.reload(viz)
    assert matplotlib.get_backend() == backend


def test_overlay_keeps_pure_red_uint8_red_at_alpha_zero(sample):
    red = red_image(np.uint8)
    out = viz.overlay(red, sample["explanation"].saliency[0])  # 224 x 224 map on a 12 x 8 image: resized
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(viz.overlay(red, sample["explanation"].saliency[0], alpha=0.0), red)
    assert out.shape == red.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overlay_keeps_pure_red_float_red_and_its_dtype(dtype):
    red = red_image(dtype)
    out = viz.overlay(red, np.random.default_rng(0).random((12, 8)), alpha=0.0)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, red)


def test_overlay_is_rgb_not_bgr():
    # jet(1) is dark red, jet(0) dark blue: at alpha 1 they must land in channels 0 and 2.
    black = np.zeros((4, 6, 3), dtype=np.uint8)
    hot = viz.overlay(black, np.ones((4, 6)), alpha=1.0)
    cold = viz.overlay(black, np.zeros((4, 6)), alpha=1.0)
    assert (hot[..., 0] > 100).all() and (hot[..., 2] == 0).all()
    assert (cold[..., 2] > 100).all() and (cold[..., 0] == 0).all()


def test_overlay_of_a_pil_image_is_uint8_rgb():
    red = red_image(np.uint8)
    out = viz.overlay(Image.fromarray(red), np.zeros((12, 8)), alpha=0.0)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, red)


@pytest.mark.parametrize("batched", [False, True])
def test_overlay_of_a_unit_range_tensor(batched):
    image = torch.rand(3, 10, 7, generator=torch.Generator().manual_seed(0))
    out = viz.overlay(image[None] if batched else image, torch.zeros(10, 7), alpha=0.0)
    assert out.dtype == np.float32 and out.shape == (10, 7, 3)
    np.testing.assert_allclose(out, image.permute(1, 2, 0).numpy(), atol=1e-6)


def test_overlay_of_a_uint8_tensor_is_uint8():
    image = torch.from_numpy(red_image(np.uint8)).permute(2, 0, 1)
    np.testing.assert_array_equal(viz.overlay(image, torch.zeros(12, 8), alpha=0.0), red_image(np.uint8))


def test_normalised_tensor_round_trips_to_the_photo(sample):
    sm, photo = sample["sm"], sample["photo"]  # chelsea is 300 x 451: not square
    normalised = sm.normalize(ucag.data.load_photo("chelsea")[None])
    back = viz.overlay(normalised, np.zeros(photo.shape[:2]), alpha=0.0, mean=sm.mean, std=sm.std)
    np.testing.assert_allclose(back, photo / 255.0, atol=1e-5)
    # The model input itself comes back as the denormalised photo.
    x = sample["x"]
    back = viz.overlay(x, sample["explanation"].saliency[0], alpha=0.0, mean=sm.mean, std=sm.std)
    np.testing.assert_allclose(back, sm.denormalize(x)[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_overlay_resizes_a_smaller_map_bilinearly(sample):
    image = red_image(np.float64, size=(28, 20))
    small = sample["explanation"].partials[0]  # a real 10 x 10 partial map, signed
    big = F.interpolate(small[None, None], size=(28, 20), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(viz.overlay(image, small), viz.overlay(image, big), atol=1e-6)


def test_overlay_min_max_scales_maps_outside_the_unit_range(sample):
    image = sample["photo"]
    raw = sample["explanation"].raw[0]  # signed
    scaled = (raw - raw.min()) / (raw.max() - raw.min())
    # Equal up to float32 rounding (two formulations of the min-max scaling), which may move
    # a value into the next colormap entry: a few levels, on a few pixels.
    for shown in (raw, raw * 40 + 7):
        difference = np.abs(viz.overlay(image, shown).astype(int) - viz.overlay(image, scaled).astype(int))
        assert difference.max() <= 3 and (difference > 0).mean() < 1e-3
    # A map already in [0, 1] keeps its values: a weak map stays weak.
    weak = sample["explanation"].saliency[0] * 0.2
    assert not np.array_equal(viz.overlay(image, weak), viz.overlay(image, weak / weak.max()))
    # A constant map outside [0, 1] carries no ranking: drawn as zeros.
    np.testing.assert_array_equal(viz.overlay(image, np.full((5, 5), 3.0)), viz.overlay(image, np.zeros((5, 5))))


RED = red_image(np.uint8)
OVERLAY_ERRORS = [
    ("channels-first array", dict(image=np.zeros((3, 12, 8), np.float32)), ValueError, "image"),
    ("grey array", dict(image=np.zeros((12, 8), np.uint8)), ValueError, "image"),
    ("normalised without mean/std", dict(image=torch.randn(3, 12, 8) * 2), ValueError, "image"),
    ("float 0-255", dict(image=RED.astype(np.float32)), ValueError, "image"),
    ("int64 array", dict(image=RED.astype(np.int64)), TypeError, "image"),
    ("int64 tensor", dict(image=torch.from_numpy(RED.astype(np.int64)).permute(2, 0, 1)), TypeError, "image"),
    ("nested list", dict(image=RED.tolist()), TypeError, "image"),
    ("batch of two", dict(image=torch.rand(2, 3, 12, 8)), ValueError, "image"),
    ("NaN pixel", dict(image=np.full((12, 8, 3), np.nan)), ValueError, "image"),
    ("uint8 with mean", dict(image=RED, mean=0.5, std=0.5), ValueError, "image"),
    ("mean without std", dict(image=torch.rand(3, 12, 8), mean=0.5), ValueError, "mean"),
    ("zero std", dict(image=torch.rand(3, 12, 8), mean=0.5, std=0.0), ValueError, "std"),
    ("two means", dict(image=torch.rand(3, 12, 8), mean=(0.5, 0.5), std=0.5), ValueError, "mean"),
    ("batch of maps", dict(saliency=np.zeros((2, 12, 8))), ValueError, "saliency"),
    ("map as list", dict(saliency=[[0.0]]), TypeError, "saliency"),
    ("NaN map", dict(saliency=np.full((12, 8), np.nan)), ValueError, "saliency"),
    ("complex map", dict(saliency=np.zeros((12, 8), complex)), TypeError, "saliency"),
    ("alpha above 1", dict(alpha=1.5), ValueError, "alpha"),
    ("alpha as string", dict(alpha="0.5"), TypeError, "alpha"),
    ("unknown cmap", dict(cmap="no-such-map"), ValueError, "cmap"),
]


@pytest.mark.parametrize("label,change,exc,argument", OVERLAY_ERRORS, ids=[c[0] for c in OVERLAY_ERRORS])
def test_overlay_rejects(label, change, exc, argument):
    kwargs = dict(image=RED, saliency=np.zeros((12, 8))) | change
    with pytest.raises(exc, match=rf"^{argument}\b"):
        viz.overlay(**kwargs)


# --------------------------------------------------------------------------------------
# show_signed
# --------------------------------------------------------------------------------------


def signed_artist(fig: Figure):
    return fig.axes[0].images[-1]


def test_show_signed_centres_the_real_raw_map_at_zero(sample):
    sm = sample["sm"]
    raw = sample["explanation"].raw[0]
    fig = viz.show_signed(raw, sample["x"], title="UCAG raw", mean=sm.mean, std=sm.std)
    assert isinstance(fig, Figure)
    limit = float(raw.abs().max())
    assert signed_artist(fig).get_clim() == pytest.approx((-limit, limit))
    assert signed_artist(fig).get_cmap().name == "bwr"
    assert len(fig.axes) == 2  # the map and its colorbar
    assert fig.axes[1].get_ylim() == pytest.approx((-limit, limit))
    assert fig.axes[0].get_title() == "UCAG raw"


def test_show_signed_of_an_all_zero_map():
    fig = viz.show_signed(np.zeros((6, 9)))
    assert signed_artist(fig).get_clim() == (-1.0, 1.0)


def test_show_signed_non_square_draws_into_given_axes(sample):
    fig, ax = plt.subplots()
    before = plt.get_fignums()
    raw = sample["explanation_tall"].raw  # (1, 224, 160)
    returned = viz.show_signed(raw, image=sample["x_tall"], ax=ax, mean=sample["sm"].mean, std=sample["sm"].std)
    assert returned is fig and plt.get_fignums() == before
    assert signed_artist(fig).get_array().shape == (224, 160)


def test_show_signed_resizes_a_small_map_to_the_photo(sample):
    fig = viz.show_signed(sample["explanation"].partials[0], image=sample["photo"])
    assert signed_artist(fig).get_array().shape == sample["photo"].shape[:2]


def test_show_signed_rejects_a_batch():
    with pytest.raises(ValueError, match=r"^raw\b"):
        viz.show_signed(np.zeros((2, 6, 9)))


# --------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------


def test_compare_a_batch_of_one(sample):
    sm, x = sample["sm"], sample["x"]
    maps = {"GradCAM": sample["base_map"], "UCAG": sample["explanation"].saliency}
    fig = viz.compare(x, maps, titles=["Egyptian cat"], mean=sm.mean, std=sm.std)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["image", "GradCAM", "UCAG"]
    assert fig.axes[0].get_ylabel() == "Egyptian cat"
    photo = sm.denormalize(x)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), photo, atol=1e-6)
    expected = viz.overlay(photo, sample["explanation"].saliency[0])
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), expected, atol=1e-6)


def test_compare_non_square_images_of_different_sizes(sample):
    photo = sample["photo"]  # 300 x 451
    crop = photo[:, :200]  # 300 x 200
    maps = {"UCAG": [sample["explanation"].saliency[0], sample["explanation_tall"].saliency[0]]}
    fig = viz.compare([photo, crop], maps, titles=["wide", "tall"])
    assert len(fig.axes) == 4
    assert fig.axes[3].images[0].get_array().shape == (300, 200, 3)
    assert fig.axes[1].images[0].get_array().shape == (300, 451, 3)


def test_compare_into_given_axes(sample):
    fig, axes = plt.subplots(1, 2)
    assert viz.compare(sample["photo"], {"UCAG": sample["explanation"].saliency}, axes=axes) is fig


COMPARE_ERRORS = [
    ("maps not a dict", dict(maps=[np.zeros((1, 8, 8))]), TypeError, "maps"),
    ("no methods", dict(maps={}), ValueError, "maps"),
    ("two maps for one image", dict(maps={"UCAG": np.zeros((2, 8, 8))}), ValueError, r"maps\['UCAG'\]"),
    ("titles a string", dict(titles="cat"), TypeError, "titles"),
    ("two titles", dict(titles=["a", "b"]), ValueError, "titles"),
    ("images a dict", dict(images={"a": 1}), TypeError, "images"),
    ("bad image in a list", dict(images=[np.zeros((8, 8))]), ValueError, r"images\[0\]"),
]


@pytest.mark.parametrize("label,change,exc,argument", COMPARE_ERRORS, ids=[c[0] for c in COMPARE_ERRORS])
def test_compare_rejects(label, change, exc, argument):
    kwargs = dict(images=RED, maps={"UCAG": np.zeros((1, 8, 8))}) | change
    with pytest.raises(exc, match=rf"^{argument}"):
        viz.compare(**kwargs)


def test_compare_rejects_the_wrong_number_of_axes():
    _, axes = plt.subplots(1, 3)
    with pytest.raises(ValueError, match=r"^axes\b"):
        viz.compare(RED, {"UCAG": np.zeros((1, 8, 8))}, axes=axes)


# --------------------------------------------------------------------------------------
# show_partials
# --------------------------------------------------------------------------------------


def test_show_partials_places_patches_row_major_on_a_non_square_image(sample):
    sm, explanation = sample["sm"], sample["explanation_tall"]
    grid = explanation.grid
    fig = viz.show_partials(explanation, sample["x_tall"], mean=sm.mean, std=sm.std)
    assert isinstance(fig, Figure)
    grey = sm.denormalize(sample["x_tall"])[0].permute(1, 2, 0).numpy() @ np.array([0.299, 0.587, 0.114])
    h, w = grid.patch_size
    for p in range(grid.num_patches):
        i, j = divmod(p, grid.units)
        ax = fig.axes[p]
        top, left = grid.offsets_y[i], grid.offsets_x[j]
        # The photo under cell (i, j) is patch p's own region of the image.
        np.testing.assert_allclose(ax.images[0].get_array(), grey[top : top + h, left : left + w], atol=1e-6)
        assert ax.get_title() == f"w {float(explanation.weights[p]):.2f}  p {float(explanation.probabilities[p]):.2f}"
    folded = fig.axes[grid.num_patches]
    assert folded.get_title().startswith("folded")
    expected = viz.overlay(sample["x_tall"], explanation.saliency[0], mean=sm.mean, std=sm.std)
    np.testing.assert_allclose(folded.images[0].get_array(), expected, atol=1e-6)


def test_show_partials_shares_one_signed_scale(sample):
    explanation = sample["explanation"]
    fig = viz.show_partials(explanation)  # no photo
    limit = float(explanation.partials.abs().max())
    n = explanation.grid.num_patches
    for ax in fig.axes[:n]:
        assert ax.images[-1].get_clim() == pytest.approx((-limit, limit))
    assert len(fig.axes) == n + 2  # patches, folded map, colorbar


def test_show_partials_into_given_axes(sample):
    fig, axes = plt.subplots(2, 5)
    assert viz.show_partials(sample["explanation"], sample["photo"], axes=axes) is fig


SHOW_PARTIALS_ERRORS = [
    ("not an explanation", dict(explanation={"raw": 1}), TypeError, "explanation"),
    ("index past the batch", dict(index=1), ValueError, "index"),
    ("negative index", dict(index=-1), ValueError, "index"),
    ("float index", dict(index=0.0), TypeError, "index"),
    ("three images for one", dict(image=torch.rand(3, 3, 224, 224)), ValueError, "image"),
]


@pytest.mark.parametrize("label,change,exc,argument", SHOW_PARTIALS_ERRORS, ids=[c[0] for c in SHOW_PARTIALS_ERRORS])
def test_show_partials_rejects(sample, label, change, exc, argument):
    kwargs = dict(explanation=sample["explanation"]) | change
    with pytest.raises(exc, match=rf"^{argument}\b"):
        viz.show_partials(**kwargs)


# --------------------------------------------------------------------------------------
# plot_curves
# --------------------------------------------------------------------------------------


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_plot_curves_compares_methods_with_their_aucs(curves):
    fig = plot_curves(curves["deletion"], curves["insertion"])
    assert isinstance(fig, Figure)
    deletion_ax, insertion_ax = fig.axes
    for ax, results in ((deletion_ax, curves["deletion"]), (insertion_ax, curves["insertion"])):
        assert legend_texts(ax) == [f"{name} (AUC {r.mean:.3f})" for name, r in results.items()]
        for line, result in zip(ax.get_lines(), results.values(), strict=True):
            np.testing.assert_allclose(line.get_xdata(), np.linspace(0, 1, result.curves.shape[1]))
            np.testing.assert_allclose(line.get_ydata(), result.curves[0])
    # A method keeps its colour in both panels.
    assert [line.get_color() for line in deletion_ax.get_lines()] == [
        line.get_color() for line in insertion_ax.get_lines()
    ]


def test_plot_curves_in_one_given_axes(curves):
    fig, ax = plt.subplots()
    deletion, insertion = curves["deletion"]["UCAG"], curves["insertion"]["UCAG"]
    assert plot_curves(deletion, insertion, labels="UCAG", ax=ax) is fig
    assert legend_texts(ax) == [
        f"deletion: UCAG (AUC {deletion.mean:.3f})",
        f"insertion: UCAG (AUC {insertion.mean:.3f})",
    ]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["--", "-"]


def test_plot_curves_of_arrays_per_image():
    rows = np.array([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]])  # AUCs 0.5 and 1 (trapezoid rule)
    fig = plot_curves(deletion=torch.from_numpy(rows), labels=["a", "b"])
    assert legend_texts(fig.axes[0]) == ["a (AUC 0.500)", "b (AUC 1.000)"]
    fig = plot_curves(insertion=rows)  # a batch: its mean curve
    assert legend_texts(fig.axes[0]) == ["AUC 0.750"]
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [1.0, 0.75, 0.5])


PLOT_CURVES_ERRORS = [
    ("nothing", dict(), ValueError, "deletion"),
    ("swapped", dict(deletion="insertion"), ValueError, "deletion"),
    ("labels with a dict", dict(deletion="dict", labels=["x"]), ValueError, "labels"),
    ("one point", dict(deletion=np.ones((2, 1))), ValueError, "deletion"),
    ("3-D curves", dict(insertion=np.ones((2, 3, 4))), ValueError, "insertion"),
    ("labels per image miscounted", dict(insertion=np.ones((2, 4)), labels=["a"]), ValueError, "labels"),
    ("no curves", dict(deletion="pointing"), ValueError, "deletion"),
]


@pytest.mark.parametrize("label,kwargs,exc,argument", PLOT_CURVES_ERRORS, ids=[c[0] for c in PLOT_CURVES_ERRORS])
def test_plot_curves_rejects(curves, label, kwargs, exc, argument):
    stand_ins = {
        "insertion": curves["insertion"]["UCAG"],
        "dict": curves["deletion"],
        "pointing": metrics.MetricResult("pointing_game", np.ones(1)),
    }
    kwargs = {k: stand_ins.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(exc, match=rf"^{argument}\b"):
        plot_curves(**kwargs)


# --------------------------------------------------------------------------------------
# Pixel comparison with a stored reference
# --------------------------------------------------------------------------------------


def test_show_signed_matches_the_reference_image(tmp_path):
    """A fixed synthetic signed map (non-square, both signs) over a fixed synthetic photo,
    3 x 3 inches at 50 dpi, fixed title, default style and test fonts."""
    rows, columns = np.mgrid[0:24, 0:32]
    raw = np.sin(rows / 4.0) * np.cos(columns / 5.0) - 0.2
    photo = np.stack([rows / 23.0, columns / 31.0, np.full(rows.shape, 0.5)], axis=-1)
    name = "show_signed.png"
    with matplotlib.rc_context():
        matplotlib.style.use("default")
        matplotlib.testing.set_font_settings_for_testing()
        matplotlib.testing.set_reproducibility_for_testing()
        fig, ax = plt.subplots(figsize=(3, 3), dpi=50)
        viz.show_signed(raw, image=photo, ax=ax, title="signed map")
        actual = tmp_path / name
        fig.savefig(actual, dpi=50, metadata={"Software": None})
    if os.environ.get("UCAG_REGENERATE_BASELINES"):
        BASELINES.mkdir(exist_ok=True)
        (BASELINES / name).write_bytes(actual.read_bytes())
    result = compare_images(str(BASELINES / name), str(actual), tol=2.0)
    assert result is None, result
