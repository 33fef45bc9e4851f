"""ucag.baselines (Upscale, CAMERAS) against independent computations written here from
their definitions: plain F.interpolate calls, forward hooks and autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import ucag
import ucag.data
from conftest import assert_close_across_batches
from ucag.baselines import CAMERAS, CamerasExplanation, Upscale
from ucag.bases.adapters import GradCamAdapter
from ucag.postprocess import cam_postprocess

# ---- independent references ---------------------------------------------------------------


def layer_activations_and_gradients(model, layer, x, targets):
    """The layer's output A and the gradient G of the summed target logits w.r.t. it."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    t = torch.as_tensor(targets)
    (grad,) = torch.autograd.grad(logits[torch.arange(len(t)), t].sum(), store["a"])
    return store["a"].detach(), grad


def bilinear(maps, size):
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def upscale_gradcam_reference(model, layer, x, targets, factor):
    """Upsample bicubically to round_half_up(factor * size), Grad-CAM's raw map there
    (sum_k alpha_k A_k, no ReLU), resize back bilinearly."""
    H, W = x.shape[-2:]
    scaled = (int(factor * H + 0.5), int(factor * W + 0.5))
    up = F.interpolate(x, size=scaled, mode="bicubic", align_corners=False)
    a, g = layer_activations_and_gradients(model, layer, up, targets)
    cam = (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True)
    return bilinear(cam, (H, W))[:, 0]


def cameras_reference(model, layer, x, targets, sizes):
    """Mean over input sizes of the bilinearly resized activations and gradients, fused as
    sum_k mean(G)_k * mean(A)_k (the official code's order of operations)."""
    H, W = x.shape[-2:]
    sum_a = sum_g = 0
    for size in sizes:
        xs = x if size == (H, W) else F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        a, g = layer_activations_and_gradients(model, layer, xs, targets)
        sum_a = sum_a + bilinear(a, (H, W))
        sum_g = sum_g + bilinear(g, (H, W))
    return ((sum_g / len(sizes)) * (sum_a / len(sizes))).sum(dim=1)


def assert_rel(actual, expected, rtol):
    err = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert err <= rtol, f"relative error {err:.3g}"


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(sample_model, photos):
    return sample_model, photos["chelsea"]


@pytest.fixture(scope="module")
def small_pair(sample):
    """Two real photos at 96 px: cheap multi-image CAMERAS runs on the sample model."""
    sm, _ = sample
    photos = [sm.preprocess(ucag.data.sample_image(name).rgb) for name in ("chelsea", "coffee")]
    return sm, F.interpolate(torch.cat(photos), size=(96, 96), mode="bilinear", antialias=True)


class TinyNet(nn.Module):
    """A tiny CNN (fixed random weights) with a module that never runs; ``inplace`` makes
    the ReLU after the CAM layer ``conv2`` overwrite its output."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU(inplace=inplace)
        self.head = nn.Linear(8, 5)
        self.unused = nn.Conv2d(8, 8, 1)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(torch.relu(self.conv1(x))))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny():
    model = TinyNet()
    torch.manual_seed(1)
    return model, torch.randn(2, 3, 20, 28)


# ---- Upscale ------------------------------------------------------------------------------


def test_upscale_is_upsample_explain_resize_back(sample):
    sm, x = sample
    with Upscale(pgc.GradCAM(sm.model, [sm.target_layer])) as upscale:
        e = upscale.explain(x, [285])
    assert isinstance(e, ucag.Explanation)
    assert e.grid.num_patches == 1 and e.grid.patch_size == (224, 224) and e.grid.scaled_size == (582, 582)
    assert e.partials.shape == (1, 18, 18) and not e.partials_normalised  # raw Grad-CAM at 582 px
    assert torch.equal(e.weights, torch.ones(1))
    expected = upscale_gradcam_reference(sm.model, sm.target_layer, x, [285], 2.6)
    assert_rel(e.raw, expected, 1e-4)
    torch.testing.assert_close(e.saliency, cam_postprocess(e.raw))


def test_upscale_with_factor_one_is_the_base_raw_map(sample):
    sm, x = sample
    cam = pgc.GradCAM(sm.model, [sm.target_layer])
    raw = Upscale(cam, factor=1).explain(x, torch.tensor([285])).raw
    base = GradCamAdapter(cam)(x, torch.tensor([285])).maps  # grad-cam's own raw map, 7 x 7
    assert base.shape == (1, 7, 7)
    assert_rel(raw, bilinear(base[:, None], (224, 224))[:, 0], 1e-5)


@pytest.mark.batch_comparison
def test_upscale_non_square_batch_equals_reference_and_single_calls(tiny):
    model, x = tiny
    upscale = Upscale(pgc.GradCAM(model, [model.conv2]), factor=1.7, batch_size=1)
    e = upscale.explain(x, [1, 3])
    assert e.raw.shape == (2, 20, 28) and e.grid.scaled_size == (34, 48)
    expected = upscale_gradcam_reference(model, model.conv2, x, [1, 3], 1.7)
    assert_rel(e.raw, expected, 1e-4)
    for b, t in enumerate([1, 3]):
        assert_close_across_batches(upscale.explain(x[b : b + 1], [t]).raw[0], e.raw[b])
    maps = upscale(x, [ClassifierOutputTarget(1), ClassifierOutputTarget(3)])
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (2, 20, 28)


@pytest.mark.parametrize("factor", [0, -1.5, math.nan, math.inf])
def test_upscale_rejects_a_bad_factor(tiny, factor):
    model, _ = tiny
    with pytest.raises(ValueError, match="factor"):
        Upscale(pgc.GradCAM(model, [model.conv2]), factor=factor)


def test_upscale_rejects_a_non_number_factor_and_keeps_ucag_checks(tiny):
    model, _ = tiny
    with pytest.raises(TypeError, match="factor"):
        Upscale(pgc.GradCAM(model, [model.conv2]), factor="2")
    with pytest.raises(ValueError, match="batch_size"):
        Upscale(pgc.GradCAM(model, [model.conv2]), batch_size=0)
    with pytest.raises(ValueError, match="postprocess"):
        Upscale(pgc.GradCAM(model, [model.conv2]), postprocess="relu")
    assert repr(Upscale(pgc.GradCAM(model, [model.conv2]), 3)) == (
        "Upscale(base=GradCAM, factor=3.0, batch_size=16, postprocess='cam')"
    )


def test_upscale_context_manager_releases_gradcam_hooks(tiny):
    model, x = tiny
    before = len(model.conv2._forward_hooks)
    with Upscale(pgc.GradCAM(model, [model.conv2]), factor=1.5) as upscale:
        upscale(x[:1], [0])
    assert len(model.conv2._forward_hooks) == before


# ---- CAMERAS ------------------------------------------------------------------------------


def test_cameras_single_resolution_equals_reference(sample):
    sm, x = sample
    with CAMERAS(sm.model, sm.target_layer, resolutions=[224]) as cameras:
        e = cameras.explain(x, [285])
    assert isinstance(e, CamerasExplanation) and e.resolutions == ((224, 224),)
    expected = cameras_reference(sm.model, sm.target_layer, x, [285], [(224, 224)])
    assert_rel(e.raw, expected, 1e-4)
    torch.testing.assert_close(e.saliency, cam_postprocess(e.raw, (5, 3.0)))
    with torch.no_grad():
        p = sm.model(x).softmax(1)[0, 285]
    torch.testing.assert_close(e.probabilities, p.reshape(1, 1))


def test_cameras_two_resolutions_equal_reference(sample):
    sm, x = sample
    e = CAMERAS(sm.model, sm.target_layer, resolutions=[224, (288, 320)], blur=None).explain(x, [285])
    expected = cameras_reference(sm.model, sm.target_layer, x, [285], [(224, 224), (288, 320)])
    assert_rel(e.raw, expected, 1e-4)
    # without blur: the official code's ReLU and min-max scaling
    official = expected.clamp_min(0)
    official = (official - official.min()) / (official.max() - official.min())
    torch.testing.assert_close(e.saliency, official, atol=1e-5, rtol=0)


def test_cameras_default_resolutions(sample, small_pair):
    sm, _ = sample
    cameras = CAMERAS(sm.model, sm.target_layer)
    assert cameras.resolutions_for((224, 224)) == tuple((s, s) for s in range(224, 1000, 100))
    assert cameras.resolutions_for((112, 150)) == tuple(
        (int(112 * s / 224 + 0.5), int(150 * s / 224 + 0.5)) for s in range(224, 1000, 100)
    )
    _, x = small_pair
    x = x[:1]
    e = cameras.explain(x, [285])
    assert e.resolutions == tuple((int(96 * s / 224 + 0.5),) * 2 for s in range(224, 1000, 100))
    assert e.probabilities.shape == (1, 8)
    single = CAMERAS(sm.model, sm.target_layer, resolutions=[96]).explain(x, [285])
    assert e.saliency.shape == single.saliency.shape == (1, 96, 96)
    assert torch.isfinite(e.saliency).all() and float(e.saliency.min()) >= 0 and float(e.saliency.max()) <= 1
    assert (e.saliency - single.saliency).abs().max() > 0.05  # multi-scale changes the map


@pytest.mark.batch_comparison
def test_cameras_batch_equals_single_calls_and_targets_forms_agree(small_pair):
    sm, x = small_pair
    cameras = CAMERAS(sm.model, sm.target_layer, resolutions=[96, 128], batch_size=2)
    whole = cameras.explain(x, [285, 967])
    assert whole.saliency.shape == (2, 96, 96) and torch.isfinite(whole.raw).all()
    assert float(whole.saliency.min()) >= 0 and float(whole.saliency.max()) <= 1
    for b, t in enumerate([285, 967]):
        single = cameras.explain(x[b : b + 1], [t])
        assert_close_across_batches(single.raw[0], whole.raw[b])
    cameras.batch_size = 1
    for targets in (
        torch.tensor([285, 967]),
        [ClassifierOutputTarget(285), ClassifierOutputTarget(967)],
        np.array([285, 967]),
    ):
        assert_close_across_batches(cameras.explain(x, targets).raw, whole.raw)
    maps = cameras(x, [285, 967])  # at batch_size 1, the whole batch at 2
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (2, 96, 96)
    assert_close_across_batches(maps, whole.saliency)


def test_cameras_targets_none_is_the_prediction(tiny):
    model, x = tiny
    cameras = CAMERAS(model, model.conv2, resolutions=[(20, 28), 32])
    predicted = model(x).argmax(1)
    e = cameras.explain(x)
    assert torch.equal(e.targets, predicted)
    torch.testing.assert_close(e.raw, cameras.explain(x, predicted.tolist()).raw)


def test_cameras_with_in_place_op_after_the_layer_equals_reference(tiny):
    model, x = tiny
    overwriting = TinyNet(inplace=True)  # same weights; its ReLU overwrites conv2's output
    e = CAMERAS(overwriting, overwriting.conv2, resolutions=[(20, 28), 40]).explain(x, [2, 4])
    expected = cameras_reference(model, model.conv2, x, [2, 4], [(20, 28), (40, 40)])
    assert_rel(e.raw, expected, 1e-4)


def test_cameras_keeps_model_state_and_removes_its_hooks(tiny):
    model, x = tiny
    model.conv1.weight.requires_grad_(False)
    model.train()
    hooks = len(model.conv2._forward_hooks)
    try:
        CAMERAS(model, model.conv2, resolutions=[24]).explain(x, [0, 1])
        assert model.training and all(m.training for m in model.modules())
        assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad
        assert len(model.conv2._forward_hooks) == hooks
        with pytest.raises(ValueError, match="target_layer"):  # the layer never runs
            CAMERAS(model, model.unused, resolutions=[24]).explain(x, [0, 1])
        assert len(model.unused._forward_hooks) == 0
    finally:
        model.conv1.weight.requires_grad_(True)
        model.eval()


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        (dict(resolutions=[]), ValueError, "resolutions"),
        (dict(resolutions=[0]), ValueError, "resolutions"),
        (dict(resolutions=[(24, -3)]), ValueError, "resolutions"),
        (dict(resolutions=[24.0]), TypeError, "resolutions"),
        (dict(resolutions=[(24,)]), TypeError, "resolutions"),
        (dict(resolutions=24), TypeError, "resolutions"),
        (dict(resolutions="224"), TypeError, "resolutions"),
        (dict(postprocess="auto"), ValueError, "postprocess"),
        (dict(batch_size=0), ValueError, "batch_size"),
    ],
)
def test_cameras_rejects_bad_settings(tiny, kwargs, error, argument):
    model, _ = tiny
    with pytest.raises(error, match=argument):
        CAMERAS(model, model.conv2, **kwargs)


def test_cameras_rejects_bad_calls(tiny):
    model, x = tiny
    with pytest.raises(ValueError, match="target_layer"):
        CAMERAS(model, nn.ReLU())
    with pytest.raises(TypeError, match="target_layer"):
        CAMERAS(model, "conv2")
    cameras = CAMERAS(model, model.conv2, resolutions=[24])
    with pytest.raises(ValueError, match="input_tensor"):
        cameras.explain(x[0], [0])
    with pytest.raises(TypeError, match="input_tensor"):
        cameras.explain(x.numpy(), [0, 1])
    with pytest.raises(ValueError, match="targets"):
        cameras.explain(x, [0])
    with pytest.raises(TypeError, match="targets"):
        cameras.explain(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="targets"):
        cameras.explain(x, [0, 5])  # TinyNet has 5 classes
    with pytest.raises(ValueError, match="aug_smooth"):
        cameras(x, [0, 1], aug_smooth=True)
    assert "resolutions=[(24, 24)]" in repr(cameras) and "Conv2d" in repr(cameras)
    assert len(model.conv2._forward_hooks) == 0
