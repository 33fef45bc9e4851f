"""Backward truncation at the target layer: same maps, restored state, never where the
base method needs input gradients."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchvision
from captum.attr import Saliency
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from zennit.attribution import Gradient

import ucag
import ucag.data

# Every gradient-based CAM class of grad-cam 1.5.7 that needs nothing below its target layers.
GRADIENT_CAMS = [
    "GradCAM",
    "HiResCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "EigenGradCAM",
    "RandomCAM",
]


@pytest.fixture(scope="module")
def sample(sample_model, photos):
    sm = sample_model
    x = photos["coffee"]
    return sm.model, [sm.target_layer], [sm.model._blocks[-1], sm.target_layer], x, [967]


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.nn.functional.interpolate(
        ucag.data.load_photo("astronaut")[None], size=(112, 112), antialias=True, mode="bilinear"
    )
    return model, [model.layer4], [model.layer3, model.layer4], (x - 0.45) / 0.25, [3]


def state_of(model):
    return (
        [p.requires_grad for p in model.parameters()],
        {
            name: (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
            for name, m in model.named_modules()
        },
        [m.training for m in model.modules()],
    )


def run(cam, x, targets, truncate):
    np.random.seed(7)  # RandomCAM draws its weights with numpy
    return ucag.UCAG(cam, units=2, truncate_backward=truncate).explain(x, targets)


CASES = [(f, n, "single") for f in ("sample", "resnet") for n in GRADIENT_CAMS]
CASES += [("resnet", n, "multi") for n in GRADIENT_CAMS] + [
    ("sample", "GradCAM", "multi"),
    ("sample", "LayerCAM", "multi"),
]
# the pretrained model's cases are end-to-end checks (the fixture is looked up by name)
CASES = [pytest.param(*case, marks=pytest.mark.pretrained) if case[0] == "sample" else case for case in CASES]


@pytest.mark.parametrize("fixture,name,layers", CASES)
def test_truncated_equals_full(request, fixture, name, layers):
    model, single, multi, x, targets = request.getfixturevalue(fixture)
    cam = getattr(pgc, name)(model, single if layers == "single" else multi)
    before = state_of(model)
    fast_run = run(cam, x, targets, True)
    assert state_of(model) == before
    full_run = run(cam, x, targets, False)
    assert fast_run.truncated_backward and not full_run.truncated_backward
    torch.testing.assert_close(fast_run.raw, full_run.raw, rtol=1e-5, atol=1e-6 * float(full_run.raw.abs().max()))
    torch.testing.assert_close(fast_run.weights, full_run.weights)


def test_state_restored_after_a_call_that_raised(resnet):
    model, single, _, x, _ = resnet
    model.fc.bias.requires_grad_(False)  # a mixed set of flags must come back as it was
    cam = pgc.GradCAM(model, single)  # registers grad-cam's own hooks
    before = state_of(model)

    class Exploding(ClassifierOutputTarget):
        def __call__(self, output):
            raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        ucag.UCAG(cam, units=2).explain(x, [Exploding(3)])
    assert state_of(model) == before
    with pytest.raises(RuntimeError, match="target failed"):
        ucag.fast(cam)(x, [Exploding(3)])
    assert state_of(model) == before
    model.fc.bias.requires_grad_(True)
    cam.activations_and_grads.release()


def test_methods_needing_input_gradients_are_never_truncated(resnet):
    model, single, _, x, targets = resnet
    for base in (
        pgc.FullGrad(model, single),
        pgc.ShapleyCAM(model, single),
        pgc.EigenCAM(model, single),
        Saliency(model),
        Gradient(model),
    ):
        e = ucag.UCAG(base, units=2, batch_size=4).explain(x, targets)
        assert not e.truncated_backward, type(base).__name__
        assert torch.isfinite(e.raw).all()
    with pytest.raises(ValueError, match="cam"):
        ucag.fast(pgc.FullGrad(model, single))


@pytest.mark.parametrize("name", ["GradCAM", "GradCAMPlusPlus", "LayerCAM"])
def test_fast_cam_equals_the_cam(sample, resnet, name):
    for model, _single, multi, x, targets in (sample, resnet):
        cam = getattr(pgc, name)(model, multi)
        objects = [ClassifierOutputTarget(t) for t in targets] * (len(x) // len(targets))
        before = state_of(model)
        expected = cam(input_tensor=x, targets=objects)
        got = ucag.fast(cam)(input_tensor=x, targets=objects)
        assert state_of(model) == before
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), rtol=1e-5, atol=1e-6)
        assert ucag.fast(cam).target_layers is cam.target_layers  # the CAM's own attributes


def test_an_in_place_op_after_the_target_layer_still_works():
    # VGG-style features: the target layer's output goes straight into ReLU(inplace=True),
    # which a leaf that requires grad would refuse.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    model = torch.nn.Sequential(
        conv, torch.nn.ReLU(inplace=True), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)
    ).eval()
    x = torch.randn(1, 3, 40, 40)
    with pgc.GradCAM(model=model, target_layers=[conv]) as cam:
        fast, full = run(cam, x, [2], True), run(cam, x, [2], False)
    assert fast.truncated_backward and not full.truncated_backward
    torch.testing.assert_close(fast.raw, full.raw, rtol=1e-4, atol=1e-6)


def test_transformer_fast_path_is_off_inside_and_restored_after():
    """With no parameter requiring grad, torch 2.4 runs nn.TransformerEncoderLayer fused,
    skipping the hooked submodules: the truncation turns that path off, and back on after,
    also when the block raises."""
    from ucag.bases.truncation import truncated_backward

    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval()
    assert torch.backends.mha.get_fastpath_enabled()
    with truncated_backward(layer, [layer.norm1]):
        assert not torch.backends.mha.get_fastpath_enabled()
        x = torch.randn(2, 5, 8)
        out = layer(x)
        assert out.requires_grad  # the hook on norm1 ran and cut there: a graph to backprop
    assert torch.backends.mha.get_fastpath_enabled()
    with pytest.raises(RuntimeError, match="boom"), truncated_backward(layer, [layer.norm1]):
        raise RuntimeError("boom")
    assert torch.backends.mha.get_fastpath_enabled()
