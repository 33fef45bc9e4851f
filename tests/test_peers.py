"""Controls (Random-CAM, Sobel) and peers (SESS on UCAG's grid, RefineCAM) of a comparison,
and the forward/backward passes each map costs (docs/algorithm.md, "§6.9 controls and
peers"), on the bundled model and photos."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import ucag
from ucag.eval.compute import count_passes, uncounted
from ucag.eval.datasets import SampleImages
from ucag.eval.peers import image_seed, refinecam_layers, sess_matched_settings, unnormalized_rgb8
from ucag.eval.registry import BASELINES, CONTROLS, comparison_pairs, explain_with
from ucag.eval.runner import PASS_COLUMNS, evaluate
from ucag.grid import GridSpec
from ucag.postprocess import cam_postprocess

pytest.importorskip("pytorch_grad_cam")

STEP = 224 * 56  # 4 deletion/insertion steps
FAST = {"units": 2}


@pytest.fixture(scope="module")
def sm(sample_model):
    return sample_model


@pytest.fixture(scope="module")
def photo(sm):
    return ucag.data.preprocess_image(ucag.data.sample_image("chelsea").rgb, sm.mean, sm.std, 224)


def _explain(sm, name, variant, x, **kwargs):
    return explain_with(name, variant, sm.model, sm.target_layer, x, [282], mean=sm.mean, std=sm.std, **kwargs)


def test_controls_and_peers_are_registered_baselines():
    assert CONTROLS == ("random", "sobel")
    assert {"sess", "sess-matched", "refinecam", "random", "sobel"} <= set(BASELINES)
    pairs = comparison_pairs(["gradcam"], ["base"], ["random", "sobel", "sess-matched", "refinecam"])
    # controls once per comparison, peers around every method
    assert pairs == [
        ("gradcam", "base"),
        ("random", "base"),
        ("sobel", "base"),
        ("gradcam", "sess-matched"),
        ("gradcam", "refinecam"),
    ]
    with pytest.raises(ValueError, match="^methods: 'random' is a control"):
        comparison_pairs(["random"], ["base"])
    with pytest.raises(
        ValueError, match="^baselines: RefineCAM takes a pytorch-grad-cam class and cannot run around lrp"
    ):
        comparison_pairs(["lrp"], ["base"], ["refinecam"])


def test_passes_per_image_follow_each_methods_geometry(sm, photo):
    H, W = photo.shape[-2:]
    with count_passes(sm.model) as base:
        _explain(sm, "gradcam", "base", photo)
    assert (base.forward, base.backward, base.pixels) == (1, 1, H * W)

    grid = GridSpec(**FAST).grid((H, W))
    n, (sh, sw) = grid.num_patches, grid.scaled_size
    with count_passes(sm.model) as patches:
        _explain(sm, "gradcam", "ucag", photo, ucag_options=FAST)
    # one forward of the image to check the target, then every patch forward and backward
    assert (patches.forward, patches.backward) == (n + 1, n)
    assert patches.pixels == n * sh * sw + H * W

    geometry = sess_matched_settings(sm.model, (H, W), FAST)
    assert geometry.patches == geometry.ucag_patches == n and geometry.window_size == sh
    with count_passes(sm.model) as sess:
        _explain(sm, "gradcam", "sess-matched", photo, ucag_options=FAST)
    # SESS scores every window (no grad), then explains every window: twice the patches
    assert (sess.forward, sess.backward) == (2 * n, n)
    assert sess.pixels == 2 * n * geometry.window_size**2

    with count_passes(sm.model) as sobel:
        _explain(sm, "sobel", "base", photo)
    assert (sobel.forward, sobel.backward, sobel.pixels) == (0, 0, 0)
    with count_passes(sm.model) as paused, uncounted():
        sm.model(photo)
    assert paused.forward == 0


def test_sess_matched_reproduces_ucags_default_grid():
    geometry = sess_matched_settings(None, (224, 224))
    grid = GridSpec().grid((224, 224))
    assert geometry.patches == grid.num_patches == 36
    assert geometry.window_size == grid.scaled_size[0]  # 124 px patches upsampled x2.6
    # the image resized by the patches' upsampling factor, the window sliding by UCAG's stride
    assert geometry.scale == round(224 * grid.scaled_size[0] / grid.patch_size[0])
    stride = (grid.offsets_y[-1] - grid.offsets_y[0]) / (grid.units - 1)
    assert geometry.step_size == pytest.approx(stride * grid.scaled_size[0] / grid.patch_size[0], abs=1)
    assert geometry.options() == {
        "scales": [geometry.scale],
        "window_size": geometry.window_size,
        "step_size": geometry.step_size,
    }
    for options in (
        {"units": 3},
        {"units": 8, "scale": 2.0},
        {"units": 4, "patch_size": 0.65},
        {"units": 1, "patch_size": "image"},
    ):
        assert (
            sess_matched_settings(None, (224, 224), options).patches == GridSpec(**options).grid((224, 224)).num_patches
        ), options


def test_random_control_is_reproducible_and_leaves_numpy_alone(sm, photo):
    state = np.random.get_state()
    first = _explain(sm, "random", "base", photo)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(state, after, strict=True))
    assert torch.equal(first, _explain(sm, "random", "base", photo))
    other = _explain(sm, "random", "base", photo, baseline_options={"random": {"seed": 1}})
    assert not torch.equal(first, other)
    assert first.shape == (1, 224, 224) and float(first.min()) >= 0 and float(first.max()) <= 1
    assert image_seed(photo[0], 282) != image_seed(photo[0], 281)


def test_sobel_control_is_grad_cams_sobel_cam_on_the_image(sm, photo):
    from pytorch_grad_cam.sobel_cam import sobel_cam

    rgb = unnormalized_rgb8(photo, sm.mean, sm.std)[0]
    resized = ucag.data.preprocess_image(ucag.data.sample_image("chelsea").rgb, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 224)
    assert (
        np.abs(rgb.astype(np.int16) - (resized[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)).max() <= 1
    )
    expected = cam_postprocess(torch.from_numpy(sobel_cam(rgb).astype(np.float32))[None])
    assert torch.allclose(_explain(sm, "sobel", "base", photo), expected)
    with pytest.raises(ValueError, match="^mean: the Sobel control needs"):
        explain_with("sobel", "base", sm.model, sm.target_layer, photo, [282])


def test_refinecam_runs_at_one_layer_per_resolution(sm, photo):
    layers = refinecam_layers(sm.model, sm.target_layer, (224, 224))
    names = {id(m): n for n, m in sm.model.named_modules()}
    assert [names[id(m)] for m in layers] == ["_blocks.4", "_blocks.10", "head_activation"]
    assert layers[-1] is sm.target_layer
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[-2:]))) for m in layers]
    try:
        refinecam_layers(sm.model, sm.target_layer, (224, 224))  # cached: no trace
        with torch.no_grad():
            sm.model(photo)
    finally:
        for h in hooks:
            h.remove()
    assert shapes == [(28, 28), (14, 14), (7, 7)]
    with count_passes(sm.model) as passes:
        maps = _explain(sm, "gradcam", "refinecam", photo)
    assert (passes.forward, passes.backward) == (3, 3)  # one Grad-CAM per layer
    assert maps.shape == (1, 224, 224) and float(maps.min()) >= 0 and float(maps.max()) <= 1 and float(maps.max()) > 0.5
    two = _explain(
        sm, "gradcam", "refinecam", photo, baseline_options={"refinecam": {"layers": ["_blocks.10", "head_activation"]}}
    )
    assert not torch.equal(maps, two)
    with pytest.raises(ValueError, match="^layers: .* has no module 'nope'"):
        _explain(sm, "gradcam", "refinecam", photo, baseline_options={"refinecam": {"layers": ["nope"]}})


def test_evaluation_rows_floors_and_passes(sm, tmp_path):
    summary = evaluate(
        sm.model,
        sm.target_layer,
        SampleImages(["coffee"]),
        tmp_path,
        methods=["gradcam"],
        variants=["base", "ucag"],
        baselines=["random", "sobel", "sess-matched", "refinecam"],
        metrics=["deletion", "insertion"],
        mean=sm.mean,
        std=sm.std,
        ucag_options=FAST,
        step=STEP,
        progress=False,
        plot=False,
    )
    with open(tmp_path / "results.csv", encoding="utf-8", newline="") as f:
        rows = {(r["method"], r["variant"]): r for r in csv.DictReader(f)}
    assert list(rows) == [
        ("gradcam", "base"),
        ("gradcam", "ucag"),
        ("random", "base"),
        ("sobel", "base"),
        ("gradcam", "sess-matched"),
        ("gradcam", "refinecam"),
    ]
    for row in rows.values():
        assert 0 <= float(row["deletion"]) <= 1 and 0 <= float(row["insertion"]) <= 1
        assert all(row[c] != "" for c in PASS_COLUMNS)
    n = GridSpec(**FAST).grid((224, 224)).num_patches
    passes = {key: (int(r["forward_passes"]), int(r["backward_passes"])) for key, r in rows.items()}
    assert passes == {
        ("gradcam", "base"): (1, 1),
        ("gradcam", "ucag"): (n + 1, n),
        ("random", "base"): (1, 1),
        ("sobel", "base"): (0, 0),
        ("gradcam", "sess-matched"): (2 * n, n),
        ("gradcam", "refinecam"): (3, 3),
    }
    assert summary.floors == [("random", "base"), ("sobel", "base")]
    assert summary.cell("gradcam", "ucag", "forward_passes").mean == n + 1
    table = (tmp_path / "summary.md").read_text()
    assert "| *Random-CAM (floor)* |" in table and "| *Sobel (floor)* |" in table
    assert "| method | forward passes | backward passes | Mpx forwarded |" in table
    assert "| SESS-matched(Grad-CAM) |" in table and "| RefineCAM(Grad-CAM) |" in table
    assert table == summary.markdown()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["floors"] == [["random", "base"], ["sobel", "base"]]
    assert {c["column"] for c in saved["passes"]} == set(PASS_COLUMNS)
    assert all(c["column"] not in PASS_COLUMNS for c in saved["cells"])
